"""The HTTP listener of one process, as ``peakdesk serve`` runs it: read timeouts and a cap on
open connections, so that slow or idle clients cannot hold the process's sockets (slowloris).

aiohttp's server has no read timeout of its own: a client sending a header line, or a body
byte, every few seconds kept its connection as long as it liked, and 300 of them under
``ulimit -n 256`` took every file the process had (``/healthz`` timed out). Each connection's
protocol here is a :class:`GuardedRequestHandler`:

- **Headers**: a request's headers must be complete ``PEAKDESK_HEADER_TIMEOUT_S`` after its
  first byte (after the connection opened, for the first request); else 408 and the
  connection closes (a connection that sent nothing closes without a word).
- **Body**: the body must have arrived ``PEAKDESK_BODY_TIMEOUT_S`` after the headers; else
  reading it raises :class:`core.aio.BodyTimeout`, the request is answered 408
  (``bots.http.json_errors``) and the connection closes.
- **Idle**: a kept-alive connection waiting for its next request closes after
  ``PEAKDESK_KEEPALIVE_S`` (aiohttp's keep-alive timeout).
- **Cap**: with ``PEAKDESK_MAX_CONNECTIONS`` open, a new connection makes room by closing the
  one that has done least: an idle one first (the longest idle), then the one longest still
  sending its headers, then its body. A connection whose request is being answered is never
  closed for another; with all of them busy the new one is closed at once. The cap is kept
  inside the process's file limit (``ulimit -n``), which is raised to fit it when the hard
  limit allows.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import os
import resource
import socket
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader

from bots.settings import Settings
from core.aio import BodyTimeout
from core.metrics import Metrics

log = logging.getLogger("peakdesk.http")

# Files kept free of client connections: Redis, the LLM provider, callbacks, channel APIs, and
# the connections accepted but not yet counted (up to a few ACCEPT_BATCHes).
RESERVED_FILES = 128
# Connections asyncio accepts in one go, before any of them reaches the guard. Its accept loop
# takes as many as the listen backlog at once: with 4096, a burst of new connections under a
# low `ulimit -n` hit "Too many open files" before the cap could close one (seen in a test
# with 300 slow clients under ulimit 256). The kernel's queue stays LISTEN_BACKLOG long.
ACCEPT_BATCH = 16
LISTEN_BACKLOG = 4096
# How often, at most, the log says that the cap closed connections.
CAP_WARNING_EVERY_S = 60.0


class Phase(enum.IntEnum):
    """Where a connection is; a lower phase is closed first to make room."""

    IDLE = 0  # no byte of a request yet (new, or kept alive between requests)
    HEADERS = 1  # part of a request's headers came
    BODY = 2  # the request is handled, its body still coming
    BUSY = 3  # the request is handled, its body all here (the answer may take a while)


class ConnectionGuard:
    """The open connections of one listener, and the cap on them."""

    def __init__(
        self,
        *,
        max_connections: int,
        header_timeout_s: float,
        body_timeout_s: float,
        metrics: Metrics | None = None,
    ) -> None:
        self.max_connections = max_connections
        self.header_timeout_s = header_timeout_s
        self.body_timeout_s = body_timeout_s
        self.metrics = metrics or Metrics()
        # The open connections by phase, each in the order they entered it (the first of a
        # phase has been in it longest): finding the one to close costs no scan.
        self._phases: dict[Phase, dict[GuardedRequestHandler, None]] = {p: {} for p in Phase}
        self._open = 0
        self._made_room = 0
        self._warned_at = -CAP_WARNING_EVERY_S

    @property
    def open(self) -> int:
        return self._open

    def admit(self, connection: GuardedRequestHandler) -> bool:
        """Take a new connection, closing another to make room at the cap; False when every
        open connection is busy answering (the new one must be closed)."""
        if self._open >= self.max_connections:
            victim = self._idlest()
            self._cap_reached(victim is not None)
            if victim is None:
                self.closed_for("refused")
                return False
            self.forget(victim)
            victim.force_close()
            self.closed_for("evicted")
        self._phases[connection.phase][connection] = None
        self._open += 1
        self.metrics.http_connections.set(self._open)
        return True

    def _idlest(self) -> GuardedRequestHandler | None:
        """The connection to close for a new one: an idle one, else one sending its headers,
        else its body; of those the one longest in its phase. None: all are busy."""
        for phase in (Phase.IDLE, Phase.HEADERS, Phase.BODY):
            for connection in self._phases[phase]:
                return connection
        return None

    def moved(self, connection: GuardedRequestHandler, was: Phase) -> None:
        """``connection`` left phase ``was`` for ``connection.phase`` (or began it again)."""
        if connection in self._phases[was]:
            del self._phases[was][connection]
            self._phases[connection.phase][connection] = None

    def forget(self, connection: GuardedRequestHandler) -> None:
        """``connection`` closed (or is being closed to make room)."""
        if connection in self._phases[connection.phase]:
            del self._phases[connection.phase][connection]
            self._open -= 1
            self.metrics.http_connections.set(self._open)

    def closed_for(self, reason: str) -> None:
        self.metrics.http_connections_closed.labels(reason).inc()

    def _cap_reached(self, made_room: bool) -> None:
        self._made_room += 1
        now = asyncio.get_running_loop().time()
        if now - self._warned_at >= CAP_WARNING_EVERY_S:
            self._warned_at = now
            log.warning(
                "%d connections open (PEAKDESK_MAX_CONNECTIONS): %s; %d new connections met "
                "the cap since the last warning (slow or idle clients, or too few processes)",
                self._open,
                "closing the idlest to make room" if made_room else "refusing new ones",
                self._made_room,
            )
            self._made_room = 0


class GuardedRequestHandler(web.RequestHandler):
    """aiohttp's protocol of one connection, with the read deadlines and the cap above."""

    def __init__(self, manager: web.Server, *, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.guard = guard
        self.phase = Phase.IDLE
        self._payload: StreamReader | None = None
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if not self.guard.admit(self):
            self.force_close()
            return
        self._arm(self.guard.header_timeout_s, self._headers_late)

    def data_received(self, data: bytes) -> None:
        if data and self.phase is Phase.IDLE:
            self._enter(Phase.HEADERS)
            if self._deadline is None:  # the first request's deadline runs from the start
                self._arm(self.guard.header_timeout_s, self._headers_late)
        super().data_received(data)
        if self.phase is Phase.BODY and self._payload is not None and self._payload.is_eof():
            self._enter(Phase.BUSY)

    def request_started(self, payload: StreamReader) -> None:
        """The request's headers are complete and its handler starts: the body's turn."""
        self._payload = payload
        if payload.is_eof():
            self._enter(Phase.BUSY)
        else:
            self._enter(Phase.BODY)
            self._arm(self.guard.body_timeout_s, self._body_late)

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        try:
            return await super().finish_response(request, resp, start_time)
        finally:
            self._payload = None
            self._enter(Phase.IDLE)  # aiohttp's keep-alive timeout takes over

    def connection_lost(self, exc: BaseException | None) -> None:
        self.guard.forget(self)
        self._disarm()
        super().connection_lost(exc)

    def _enter(self, phase: Phase) -> None:
        was, self.phase = self.phase, phase
        self.guard.moved(self, was)
        if phase in (Phase.IDLE, Phase.BUSY):
            self._disarm()

    def _arm(self, delay: float, callback: Any) -> None:
        self._disarm()
        self._deadline = self._loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _headers_late(self) -> None:
        self._deadline = None
        if self.phase > Phase.HEADERS or self.transport is None:
            return
        if self.phase is Phase.HEADERS:  # no request is being answered: ours to answer
            error = f"request headers not received within {self.guard.header_timeout_s:g} s"
            body = json.dumps({"error": error}).encode()
            self.transport.write(
                b"HTTP/1.1 408 Request Timeout\r\n"
                b"Content-Type: application/json; charset=utf-8\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
            )
        self.guard.closed_for("header_timeout")
        self.force_close()

    def _body_late(self) -> None:
        self._deadline = None
        if self.phase is Phase.BODY and self._payload is not None and not self._payload.is_eof():
            # The handler's read raises it: answered 408, then the connection closes.
            self._payload.set_exception(BodyTimeout(self.guard.body_timeout_s))
            self.guard.closed_for("body_timeout")


class _GuardedServer(web.Server):
    """aiohttp's server, making a :class:`GuardedRequestHandler` for each connection."""

    def __init__(self, plain: web.Server, guard: ConnectionGuard) -> None:
        # The app's handler, request factory and handler arguments, as the app made them.
        super().__init__(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            **plain._kwargs,
        )
        self.guard = guard
        make_request = self.request_factory

        def request_factory(
            message: RawRequestMessage,
            payload: StreamReader,
            protocol: web.RequestHandler,
            writer: AbstractStreamWriter,
            task: asyncio.Task[None],
        ) -> web.BaseRequest:
            if isinstance(protocol, GuardedRequestHandler):
                protocol.request_started(payload)
            return make_request(message, payload, protocol, writer, task)

        self.request_factory = request_factory

    def __call__(self) -> web.RequestHandler:
        return GuardedRequestHandler(self, guard=self.guard, loop=self._loop, **self._kwargs)


class _GuardedRunner(web.AppRunner):
    def __init__(self, app: web.Application, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.guard = guard

    async def _make_server(self) -> web.Server:
        return _GuardedServer(await super()._make_server(), self.guard)


def fit_file_limit(max_connections: int) -> int:
    """The connection cap this process can hold with ``RESERVED_FILES`` to spare: the soft
    file limit is raised to fit ``max_connections`` if the hard limit allows, else the cap
    is lowered to fit the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = max_connections + RESERVED_FILES
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return max_connections
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft >= needed:
        return max_connections
    cap = soft - RESERVED_FILES if soft > 2 * RESERVED_FILES else max(1, soft // 2)
    log.warning(
        "the file limit (ulimit -n %d) holds %d connections, not PEAKDESK_MAX_CONNECTIONS=%d: "
        "the cap is %d",
        soft,
        cap,
        max_connections,
        cap,
    )
    return cap


class Listener:
    """Serves ``app`` on ``settings.peakdesk_host`` and ``port`` (default
    ``settings.peakdesk_port``; 0 = any free port, see :attr:`port`)."""

    def __init__(
        self,
        app: web.Application,
        settings: Settings,
        port: int | None = None,
        *,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = s = settings
        self.guard = ConnectionGuard(
            max_connections=fit_file_limit(s.peakdesk_max_connections),
            header_timeout_s=s.peakdesk_header_timeout_s,
            body_timeout_s=s.peakdesk_body_timeout_s,
            metrics=metrics,
        )
        self.runner = _GuardedRunner(
            app,
            self.guard,
            access_log=None,
            handle_signals=False,
            keepalive_timeout=s.peakdesk_keepalive_s,
        )
        self._port = s.peakdesk_port if port is None else port
        self._site: web.TCPSite | None = None

    async def start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(
            self.runner, self.settings.peakdesk_host, self._port, backlog=ACCEPT_BATCH
        )
        await site.start()
        self._site = site
        # asyncio listens with the accept batch as the backlog: lengthen the kernel's queue
        # again, so that a burst of connections waits there rather than being refused.
        # (asyncio hands out wrappers without listen(): a duplicate of the descriptor is the
        # same socket.)
        server: asyncio.AbstractServer | None = getattr(site, "_server", None)
        for listening in getattr(server, "sockets", ()):
            with socket.socket(fileno=os.dup(listening.fileno())) as same:
                same.listen(LISTEN_BACKLOG)

    @property
    def port(self) -> int:
        """The port listened on (the one chosen when asked for 0)."""
        return self._site.port if self._site is not None else self._port

    @property
    def open_connections(self) -> int:
        return self.guard.open

    async def close(self) -> None:
        """Stop accepting, finish the requests in flight, close the connections."""
        await self.runner.cleanup()
