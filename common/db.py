"""The MySQL pool (asyncmy) on app.ctx: queries, transactions retried whole, and SQL spans.

Every call runs shielded, so a client that hangs up never leaves a connection
mid-protocol or half a transaction. ScriptedTransaction sends a transaction as
scripts of statements, one round trip each; the seckill's use of it is told in
docs/seckill.md.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import asyncmy
import asyncmy.cursors
import asyncmy.errors
import pymysql
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Tracer
from sanic import Sanic

from common.config import Settings
from common.errors import ServiceUnavailable, error_response, problem_from_exception
from common.retry import AsyncRetrying
from common.telemetry import metrics

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
# pymysql's codes for "nothing answers there": refused, unknown host, gone away, lost.
UNREACHABLE = {2003, 2005, 2006, 2013}
MAX_ATTEMPTS = 8
# How long a closing pool waits for connections still lent out before it cuts them off.
CLOSE_WAIT_SECONDS = 5.0

Cursor = asyncmy.cursors.Cursor
DictCursor = asyncmy.cursors.DictCursor
# What the pool's connections raise; pymysql's, for the migrations and scripts that use it.
MySQLError = (asyncmy.errors.MySQLError, pymysql.err.MySQLError)
IntegrityError = (asyncmy.errors.IntegrityError, pymysql.err.IntegrityError)
OPERATIONAL_ERRORS = (asyncmy.errors.OperationalError, pymysql.err.OperationalError)
INTERFACE_ERRORS = (asyncmy.errors.InterfaceError, pymysql.err.InterfaceError)


def error_code(exc: BaseException) -> int | None:
    if isinstance(exc, MySQLError) and exc.args and isinstance(exc.args[0], int):
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
    """What one statement of a script gave: rows affected or returned, the rows, and the
    OK packet's insert id (the auto-increment value, or what LAST_INSERT_ID(expr) set)."""

    rowcount: int
    rows: list[dict]
    lastrowid: int | None = None


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
    results[0].lastrowid = cur.lastrowid
    while await cur.nextset():
        rows = list(await cur.fetchall()) if cur.description else []
        results.append(Result(cur.rowcount, rows, cur.lastrowid))
    if len(results) != len(statements):
        raise RuntimeError(f"a script of {len(statements)} statements gave {len(results)} results")
    return results


@dataclass(frozen=True, slots=True)
class Script(Generic[T]):
    """Statements to send in one round trip, and how to read their results."""

    statements: Sequence[tuple[str, Sequence[Any]]]
    read: Callable[[list[Result]], T]


NOTHING: Script[None] = Script((), lambda results: None)


class ScriptedTransaction:
    """A transaction sent as scripts, one round trip each, begun and ended by its owner.

    Only this class sends START TRANSACTION, COMMIT and ROLLBACK: begin() puts
    the first in front of the first script and commit() puts the second after
    the last, so the transaction takes no round trip of its own. On an error, or
    when its owner leaves it open (an error too), Database.scripted_transaction
    rolls it back.
    """

    def __init__(self, cur: Cursor):
        self._cur = cur
        self.open = False

    async def begin(self, script: Script[T]) -> T:
        """START TRANSACTION, then script: one round trip."""
        if self.open:
            raise RuntimeError("the transaction has begun already")
        self.open = True
        results = await run_script(self._cur, [("START TRANSACTION", ()), *script.statements])
        return script.read(results[1:])

    async def commit(self, script: Script[T] = NOTHING) -> T:
        """script, then COMMIT: one round trip, which ends the transaction."""
        if not self.open:
            raise RuntimeError("no transaction to commit")
        results = await run_script(self._cur, [*script.statements, ("COMMIT", ())])
        self.open = False
        return script.read(results[:-1])

    async def rollback(self) -> None:
        """End the transaction without keeping anything it wrote: one round trip."""
        if not self.open:
            raise RuntimeError("no transaction to roll back")
        await run_script(self._cur, [("ROLLBACK", ())])
        self.open = False


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
        self.pool: asyncmy.Pool | None = None
        self.sql_spans = sql_spans  # None while tracing is off

    async def connect(self) -> None:
        s = self.settings
        self.pool = await asyncmy.create_pool(
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
        """Close the pool; connections still lent out after CLOSE_WAIT_SECONDS are cut off,
        so a stop never waits forever for one (a transaction cut off this way is rolled
        back by MySQL)."""
        if self.pool is not None:
            self.pool.close()
            try:
                await asyncio.wait_for(self.pool.wait_closed(), CLOSE_WAIT_SECONDS)
            except TimeoutError:
                logger.warning(
                    "%s connection(s) still in use after %s s at close: cut off",
                    self.pool.size - self.pool.freesize,
                    CLOSE_WAIT_SECONDS,
                )
                self.pool.terminate()
                await self.pool.wait_closed()
            self.pool = None

    @asynccontextmanager
    async def _cursor(
        self, transaction: str | None = None, attempt: int = 1
    ) -> AsyncIterator[Cursor]:
        if self.pool is None:
            raise RuntimeError("database pool is not open")
        spans = self.sql_spans if self.sql_spans is not None and self.sql_spans.wanted() else None
        conn = await self.pool.acquire()
        try:
            async with conn.cursor(spans.cursor_class if spans else DictCursor) as cur:
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
        work: Callable[[Cursor], Awaitable[T]],
        name: str = "transaction",
        retry_on: frozenset[int] = frozenset(),
    ) -> T:
        """Run work(cursor) in one transaction, retried whole on deadlock or lock wait timeout.

        This method begins and commits it; work only writes. retry_on adds error
        codes that a fresh snapshot resolves, such as a duplicate key inserted by
        a concurrent transaction.
        """

        async def attempt(number: int) -> T:
            async with self._cursor(name, number) as cur:
                await cur.connection.begin()
                result = await work(cur)
                await cur.connection.commit()
                return result

        return await run_shielded(self._retrying(attempt, name, RETRYABLE | retry_on))

    async def scripted_transaction(
        self,
        work: Callable[[ScriptedTransaction], Awaitable[T]],
        name: str = "transaction",
        retry_on: frozenset[int] = frozenset(),
    ) -> T:
        """Run work(tx) in one ScriptedTransaction, retried whole as transaction() is.

        work begins and ends the transaction itself, through tx; here it is only
        rolled back, on an error or when work left it open (an error too).
        """

        async def attempt(number: int) -> T:
            async with self._cursor(name, number) as cur:
                tx = ScriptedTransaction(cur)
                result = await work(tx)
                if tx.open:  # _cursor rolls it back on the way out
                    raise RuntimeError(f"{name} left its transaction open")
                return result

        return await run_shielded(self._retrying(attempt, name, RETRYABLE | retry_on))

    @staticmethod
    async def _retrying(
        attempt: Callable[[int], Awaitable[T]], name: str, retryable: set[int]
    ) -> T:
        """attempt(1), attempt(2), ... until one succeeds or fails with an error not retryable."""
        async for retry in AsyncRetrying(
            retry_on=lambda exc: error_code(exc) in retryable,
            attempts=MAX_ATTEMPTS,
            wait=lambda number: random.uniform(0, 0.005 * number),  # jitter parts the colliders
            log=lambda exc, _: retried(name, exc),
        ):
            with retry, metrics.timed(metrics.DB_LATENCY, name):
                return await attempt(retry.number)
        raise AssertionError("unreachable")

    async def ping(self) -> bool:
        try:
            await asyncio.wait_for(self.fetch_one("SELECT 1 AS ok"), timeout=2)
            return True
        except Exception:
            return False


def retried(name: str, exc: BaseException) -> None:
    code = error_code(exc)
    metrics.count(metrics.DB_RETRIES, (name, str(code)))
    logger.info("retrying %s after MySQL error %s", name, code)


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


class TracedCursor(DictCursor):
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


class DatabaseUnavailable(ServiceUnavailable):
    code = "database_unavailable"


def database_problem(request, exc: BaseException):
    """MySQL out of reach (the pool cannot connect, a connection was lost) is a 503 with
    Retry-After, never a 500: the pool connects again by itself once the server answers."""
    if error_code(exc) in UNREACHABLE or isinstance(exc, INTERFACE_ERRORS):
        return error_response(DatabaseUnavailable("the database does not answer; try again"))
    return problem_from_exception(request, exc)


def setup_db(app: Sanic, settings: Settings) -> None:
    """Open the pool before the server starts and close it after it stops; answer 503 for
    whatever fails because MySQL cannot be reached."""
    for error in (*OPERATIONAL_ERRORS, *INTERFACE_ERRORS):
        app.error_handler.add(error, database_problem)

    @app.before_server_start
    async def open_pool(app: Sanic) -> None:
        tracer = getattr(app.ctx, "tracer", None)  # set by setup_tracing when tracing is on
        app.ctx.db = Database(settings, SqlSpans(tracer, settings) if tracer else None)
        await app.ctx.db.connect()

    @app.after_server_stop
    async def close_pool(app: Sanic) -> None:
        await app.ctx.db.close()
