"""The aiohttp application: channel routes plus health, readiness and metrics.

``/healthz`` is liveness: the process answers at all. ``/readyz`` is for load balancers: 200
while this process can take traffic (Redis answers within ``READY_TIMEOUT_S``), 503 with a
``reason`` when Redis does not, and 503 ``stopping`` from the first SIGTERM on, while the
listener still serves (see ``bots.cli``), so the balancer takes the instance out before it
closes. A backlog never makes an instance unready: every instance shares the one queue, so
they would all fail together and the whole service would go dark exactly when customers
write most; the queue depth and the peak level are in the body for people, not for probes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import HttpVersion11, web
from aiohttp.typedefs import Middleware
from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.aio import BodyTimeout
from core.metrics import Metrics
from core.peak import PeakMonitor
from core.queue import PriorityQueue

log = logging.getLogger("peakdesk.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Under the usual probe timeouts (2-5 s), so the balancer reads our reason instead of timing
# out; a healthy Redis answers PING in about a millisecond.
READY_TIMEOUT_S = 1.0


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give aiohttp's own errors (404, 405, 413...) a JSON body; never leak a stack trace.
    A body that came too slowly (bots.connections) is a 408, and the connection closes."""
    try:
        return await handler(request)
    except BodyTimeout as exc:
        response = web.json_response({"error": str(exc)}, status=408)
        response.force_close()
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return web.json_response(
            {"error": exc.reason},
            status=exc.status,
            headers={k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")},
        )
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return web.json_response({"error": "internal error"}, status=500)


def close_connections_while(draining: asyncio.Event) -> Middleware:
    """While draining, answer with ``Connection: close``: a client (or the balancer) keeping
    connections alive opens its next one through the balancer, to an instance that stays."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if draining.is_set():
            response.force_close()
        return response

    return middleware


def build_app(
    channel_routes: Iterable[web.RouteDef],
    redis: Redis,
    queue: PriorityQueue,
    metrics: Metrics,
    *,
    draining: asyncio.Event | None = None,
    peak: PeakMonitor | None = None,
    ready_timeout_s: float = READY_TIMEOUT_S,
) -> web.Application:
    """The app of one process; ``draining`` set = shutting down (``/readyz`` answers 503)."""
    draining = draining if draining is not None else asyncio.Event()
    app = web.Application(
        middlewares=[json_errors, close_connections_while(draining)],
        client_max_size=256 * 1024,
    )

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        if draining.is_set():
            return web.json_response(
                {"status": "stopping", "reason": "shutting down: finishing requests in flight"},
                status=503,
            )
        try:
            async with asyncio.timeout(ready_timeout_s):
                await redis.ping()
        except TimeoutError:
            reason = f"redis: no answer within {ready_timeout_s:g} s"
        except (RedisError, OSError) as exc:
            reason = f"redis: {type(exc).__name__}"
        else:
            return web.json_response({"status": "ready", **backlog()})
        return web.json_response({"status": "unavailable", "reason": reason}, status=503)

    def backlog() -> dict[str, object]:
        """For people reading the probe, never a reason to fail it (see the module docstring);
        the peak monitor's figures, refreshed every second, cost no Redis call here."""
        if peak is None:
            return {}
        return {
            "peak_level": peak.level,
            "queue_depth": {str(p): depth for p, depth in peak.depths.items()},
        }

    async def metrics_endpoint(_: web.Request) -> web.Response:
        try:
            for priority, depth in (await queue.depths()).items():
                metrics.depth.labels(str(priority)).set(depth)
        except (RedisError, OSError):
            pass  # the last known depths stay; /readyz reports the outage
        return web.Response(body=metrics.render(), headers={"Content-Type": metrics.content_type})

    routes = [
        *channel_routes,
        web.get("/healthz", healthz),
        web.get("/readyz", readyz),
        web.get("/metrics", metrics_endpoint),
    ]
    app.add_routes(
        web.RouteDef(r.method, r.path, r.handler, {**r.kwargs, "expect_handler": expect_continue})
        for r in routes
    )
    return app


async def expect_continue(request: web.Request) -> web.StreamResponse | None:
    """The ``Expect`` header, before any middleware runs: ``100-continue`` as aiohttp does it,
    anything else a JSON 417. aiohttp's own handler puts the header's value in its error
    text, and a value that is not UTF-8 then made it answer 500 (found by tests/fuzz)."""
    expect = request.headers.get("Expect", "")
    if request.version != HttpVersion11:
        return None
    if expect.lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return None
    return web.json_response({"error": "unsupported Expect header"}, status=417)
