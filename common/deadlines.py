"""Deadlines for slow clients: a request's head and body must arrive within a set time.

Sanic's REQUEST_TIMEOUT restarts with every byte received, so a client that sends one
byte a second holds its connection for as long as it likes. RequestDeadlineProtocol counts
from the request's first byte instead, and a new connection's first request from the
moment the connection opens: the head must be complete within REQUEST_HEAD_TIMEOUT_SECONDS,
and the body within REQUEST_BODY_TIMEOUT_SECONDS of the head. Past either, the answer is
408 `request_timeout` and the connection closes (one that has sent nothing at all is
closed without an answer). A keep-alive connection idle after an answer closes after
KEEP_ALIVE_TIMEOUT_SECONDS. Sanic checks its timeouts
every half of the shortest one, so a deadline is enforced within half that again.
"""

from __future__ import annotations

from time import monotonic as current_time  # the clock of Sanic's own timeouts

from sanic import Sanic
from sanic.exceptions import RequestTimeout
from sanic.http.constants import Stage
from sanic.server.protocols.http_protocol import HttpProtocol

from common.config import Settings


class RequestDeadlineProtocol(HttpProtocol):
    """HttpProtocol with a deadline for each request's head and one for its body.

    A module-level class, read by name: Sanic hands it to worker processes it spawns.
    """

    # Sanic's protocol classes have slots only (its metaclass adds them to subclasses too).
    __slots__ = ("head_deadline", "body_deadline", "_head_started", "_body_started", "_fresh")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Sanic's set of this server's open connections, each protocol in it while open:
        # what requests_in_flight reads, so nothing is counted per request.
        self.app.ctx.connections = self.connections
        self.head_deadline = self.app.config.REQUEST_TIMEOUT
        self.body_deadline = self.app.config.REQUEST_BODY_TIMEOUT
        self._head_started = self._body_started = 0.0
        self._fresh = True

    def connection_made(self, transport) -> None:
        # The first request's head is due within the deadline of the connection's opening:
        # a connection that sends nothing is no keep-alive connection to wait 75 s for.
        self._head_started, self._fresh = current_time(), True
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        http = getattr(self, "_http", None)  # a slot, set once the connection task starts
        # No Http yet or an idle one: a request begins; the first one's time runs already.
        if http is None or http.stage is Stage.IDLE:
            if self._fresh:
                self._fresh = False
            else:
                self._head_started = current_time()
            self._body_started = 0.0
        elif http.stage is Stage.HANDLER and not self._body_started:
            self._body_started = current_time()
        super().data_received(data)

    def check_timeouts(self) -> None:
        http = getattr(self, "_http", None)  # a slot, set once the connection task starts
        if self._task and http is not None and self._late(http):
            http.exception = RequestTimeout("the request did not arrive in time")
            # Sanic would otherwise read the rest of the body after answering, at the
            # client's pace; the connection closes after the 408 instead.
            http.request_body = None
            self._task.cancel("the request did not arrive in time")
            return
        super().check_timeouts()

    def _late(self, http) -> bool:
        now = current_time()
        if http.stage is Stage.REQUEST or (http.stage is Stage.IDLE and self._fresh):
            return now - self._head_started > self.head_deadline
        if http.stage is Stage.HANDLER and http.request_body:
            if not self._body_started:  # the head came, no body byte since
                self._body_started = now
            return now - self._body_started > self.body_deadline
        return False


def requests_in_flight(app: Sanic) -> int:
    """Requests of this worker's server being handled or answered now (their head is in and
    their answer not yet sent), read from its open connections: for the metrics' gauge."""
    busy = 0
    for connection in getattr(app.ctx, "connections", ()):
        http = getattr(connection, "_http", None)
        if http is not None and http.stage in (Stage.HANDLER, Stage.RESPONSE):
            busy += 1
    return busy


def setup_deadlines(app: Sanic, settings: Settings) -> None:
    """Sanic's timeouts from the settings; serve the app with RequestDeadlineProtocol."""
    app.config.REQUEST_TIMEOUT = settings.request_head_timeout_seconds
    app.config.REQUEST_BODY_TIMEOUT = settings.request_body_timeout_seconds
    app.config.KEEP_ALIVE_TIMEOUT = settings.keep_alive_timeout_seconds
