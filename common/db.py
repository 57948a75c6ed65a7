"""The aiomysql pool on app.ctx, a retrying transaction() helper, and cancellation safety.

Every database call runs in a task of its own that the request handler only
awaits through asyncio.shield: when a client hangs up and Sanic cancels the
handler, the statement or transaction still runs to its end and the
connection returns to the pool in a clean state. Without this, a cancelled
query leaves a connection mid-protocol and the pool loses it.

While tracing is on, a statement run inside a traced request or batch gets a
span of its own (the SQL text, never the values), under a span per
transaction attempt.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import aiomysql
import pymysql
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Tracer
from sanic import Sanic

from common.config import Settings
from common.retry import AsyncRetrying

logger = logging.getLogger("seckill.db")

T = TypeVar("T")

# InnoDB conflicts that a fresh attempt of the whole transaction resolves.
DEADLOCK = 1213
LOCK_WAIT_TIMEOUT = 1205
DUPLICATE_KEY = 1062
# MariaDB with innodb_snapshot_isolation (the default from 11.6): a row changed
# since this transaction's snapshot was read; a fresh snapshot resolves it.
RECORD_CHANGED = 1020
RETRYABLE = {DEADLOCK, LOCK_WAIT_TIMEOUT, RECORD_CHANGED}
MAX_ATTEMPTS = 8

Cursor = aiomysql.Cursor


def error_code(exc: BaseException) -> int | None:
    if isinstance(exc, pymysql.err.MySQLError) and exc.args and isinstance(exc.args[0], int):
        return exc.args[0]
    return None


def placeholders(count: int) -> str:
    """'(%s, %s, ...)' for an IN list of count parameters."""
    if count < 1:
        raise ValueError("an IN list needs at least one value")
    return "(" + ", ".join(["%s"] * count) + ")"


def values_rows(rows: int, width: int) -> str:
    """'(%s, %s), (%s, %s)' for a multi-row INSERT of rows rows of width columns."""
    if rows < 1 or width < 1:
        raise ValueError("a VALUES list needs at least one row and one column")
    row = "(" + ", ".join(["%s"] * width) + ")"
    return ", ".join([row] * rows)


@dataclass(slots=True)
class Result:
    """What one statement of a script gave: rows affected or returned, and the rows."""

    rowcount: int
    rows: list[dict]


async def run_script(cur: Cursor, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[Result]:
    """Several parameterised statements in ONE round trip, with one Result each.

    The server runs them in order and stops at the first error, which is raised
    here; the results before it are lost with it (inside a transaction, the
    caller rolls back anyway). The statements are joined and formatted once, so
    none may hold a literal `%` (write `%%`). A round trip saved on the hot path
    is worth more than the statement's own time once the event loop is busy.
    """
    sql = ";\n".join(text for text, _ in statements)
    args = tuple(arg for _, params in statements for arg in params)
    await cur.execute(sql, args)
    results = [Result(cur.rowcount, list(await cur.fetchall()) if cur.description else [])]
    while await cur.nextset():
        results.append(Result(cur.rowcount, list(await cur.fetchall()) if cur.description else []))
    if len(results) != len(statements):
        raise RuntimeError(f"a script of {len(statements)} statements gave {len(results)} results")
    return results


def _retrieve(task: asyncio.Task) -> None:
    if not task.cancelled():
        task.exception()


async def run_shielded(coro: Awaitable[T]) -> T:
    """Run coro to completion even if the caller is cancelled."""
    task = asyncio.ensure_future(coro)
    task.add_done_callback(_retrieve)
    return await asyncio.shield(task)


class Database:
    """A pool of connections to one service's own database."""

    def __init__(self, settings: Settings, sql_spans: SqlSpans | None = None):
        self.settings = settings
        self.pool: aiomysql.Pool | None = None
        self.sql_spans = sql_spans  # None while tracing is off

    async def connect(self) -> None:
        s = self.settings
        self.pool = await aiomysql.create_pool(
            host=s.mysql_host,
            port=s.mysql_port,
            user=s.mysql_user,
            password=s.mysql_password,
            db=s.database,
            minsize=1,
            maxsize=s.db_pool_size,
            autocommit=True,
            charset="utf8mb4",
            pool_recycle=3600,
            init_command="SET time_zone = '+00:00'",
        )

    async def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            await self.pool.wait_closed()
            self.pool = None

    @asynccontextmanager
    async def _cursor(
        self, transaction: str | None = None, attempt: int = 1
    ) -> AsyncIterator[aiomysql.Cursor]:
        if self.pool is None:
            raise RuntimeError("database pool is not open")
        spans = self.sql_spans if self.sql_spans is not None and self.sql_spans.wanted() else None
        conn = await self.pool.acquire()
        try:
            async with conn.cursor(spans.cursor_class if spans else aiomysql.DictCursor) as cur:
                if spans is None or transaction is None:
                    yield cur
                else:
                    with spans.transaction(transaction, attempt):
                        yield cur
        except BaseException:
            # A connection whose state we cannot vouch for never goes back.
            if conn.get_transaction_status():
                try:
                    await conn.rollback()
                except Exception:
                    conn.close()
            raise
        finally:
            self.pool.release(conn)

    async def fetch_one(self, sql: str, args: Sequence[Any] = ()) -> dict | None:
        async def work() -> dict | None:
            async with self._cursor() as cur:
                await cur.execute(sql, args)
                return await cur.fetchone()

        return await run_shielded(work())

    async def fetch_all(self, sql: str, args: Sequence[Any] = ()) -> list[dict]:
        async def work() -> list[dict]:
            async with self._cursor() as cur:
                await cur.execute(sql, args)
                return list(await cur.fetchall())

        return await run_shielded(work())

    async def execute(self, sql: str, args: Sequence[Any] = (), name: str = "statement") -> int:
        """One statement on its own (autocommit: atomic by itself); returns the rows affected.

        Retried like a transaction on deadlock or lock wait timeout: rerunning a
        statement that failed changes nothing that it had not changed already.
        """

        async def attempt(_: int) -> int:
            async with self._cursor() as cur:
                return await cur.execute(sql, args)

        return await run_shielded(self._retrying(attempt, name, RETRYABLE))

    async def transaction(
        self,
        work: Callable[[aiomysql.Cursor], Awaitable[T]],
        name: str = "transaction",
        retry_on: frozenset[int] = frozenset(),
        scripted: bool = False,
    ) -> T:
        """Run work(cursor) in one transaction, retried whole on deadlock or lock wait timeout.

        retry_on adds error codes that a fresh snapshot resolves, such as a
        duplicate key inserted by a concurrent transaction.

        scripted=True: work sends START TRANSACTION in its first script and,
        when it gets that far, COMMIT in its last, so the transaction takes no
        round trip of its own; a transaction work leaves open is committed
        here. The rollback on error and the retries stay here either way.
        """
        return await run_shielded(self._transaction(work, name, RETRYABLE | retry_on, scripted))

    async def _transaction(
        self,
        work: Callable[[aiomysql.Cursor], Awaitable[T]],
        name: str,
        retryable: set[int],
        scripted: bool,
    ) -> T:
        async def attempt(number: int) -> T:
            async with self._cursor(name, number) as cur:
                if not scripted:
                    await cur.connection.begin()
                result = await work(cur)
                # The server's own flag: still in a transaction unless work's script committed.
                if not scripted or cur.connection.get_transaction_status():
                    await cur.connection.commit()
                return result

        return await self._retrying(attempt, name, retryable)

    @staticmethod
    async def _retrying(
        attempt: Callable[[int], Awaitable[T]], name: str, retryable: set[int]
    ) -> T:
        """attempt(1), attempt(2), ... until one succeeds or fails with an error not retryable."""
        async for retry in AsyncRetrying(
            retry_on=lambda exc: error_code(exc) in retryable,
            attempts=MAX_ATTEMPTS,
            wait=lambda number: random.uniform(0, 0.005 * number),  # jitter parts the colliders
            log=lambda exc, _: logger.info(
                "retrying %s after MySQL error %s", name, error_code(exc)
            ),
        ):
            with retry:
                return await attempt(retry.number)
        raise AssertionError("unreachable")

    async def ping(self) -> bool:
        try:
            await asyncio.wait_for(self.fetch_one("SELECT 1 AS ok"), timeout=2)
            return True
        except Exception:
            return False


class SqlSpans:
    """A span per SQL statement under a span per transaction, inside a traced request only."""

    def __init__(self, tracer: Tracer, settings: Settings):
        self.tracer = tracer
        self.database = settings.database
        self.attributes = {
            "db.system": "mysql",
            "db.name": settings.database,
            "server.address": settings.mysql_host,
            "server.port": settings.mysql_port,
        }
        self.cursor_class = type("TracedCursor", (TracedCursor,), {"spans": self})

    @staticmethod
    def wanted() -> bool:
        """Only under a recording span: background polling makes no traces of its own."""
        return trace.get_current_span().is_recording()

    def transaction(self, name: str, attempt: int) -> AbstractContextManager[Span]:
        return self.tracer.start_as_current_span(
            f"TRANSACTION {name}",
            kind=SpanKind.CLIENT,
            attributes={**self.attributes, "db.operation": "TRANSACTION", "db.attempt": attempt},
        )

    def statement(self, sql: str) -> AbstractContextManager[Span]:
        operation = sql.split(None, 1)[0].upper() if sql.strip() else "SQL"
        return self.tracer.start_as_current_span(
            f"{operation} {self.database}",
            kind=SpanKind.CLIENT,
            attributes={**self.attributes, "db.operation": operation, "db.statement": sql},
        )


class TracedCursor(aiomysql.DictCursor):
    """Records the statement as written, with its %s placeholders: never the values."""

    spans: SqlSpans
    _in_statement = False

    async def execute(self, query: str, args: Any = None) -> int:
        if self._in_statement:  # executemany's own execute calls carry the values inline
            return await super().execute(query, args)
        return await self._traced(query, super().execute, args)

    async def executemany(self, query: str, args: Any) -> int:
        return await self._traced(query, super().executemany, args)

    async def _traced(self, query: str, run: Any, args: Any) -> int:
        with self.spans.statement(query) as statement:
            self._in_statement = True
            try:
                rows = await run(query, args)
            finally:
                self._in_statement = False
            if rows is not None and rows >= 0:
                key = "db.response.returned_rows" if self.description else "db.rows_affected"
                statement.set_attribute(key, rows)
            return rows


def setup_db(app: Sanic, settings: Settings) -> None:
    """Open the pool before the server starts and close it after it stops."""

    @app.before_server_start
    async def open_pool(app: Sanic) -> None:
        tracer = getattr(app.ctx, "tracer", None)  # set by setup_tracing when tracing is on
        app.ctx.db = Database(settings, SqlSpans(tracer, settings) if tracer else None)
        await app.ctx.db.connect()

    @app.after_server_stop
    async def close_pool(app: Sanic) -> None:
        await app.ctx.db.close()
