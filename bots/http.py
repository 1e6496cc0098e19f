"""The aiohttp application: channel routes plus health, readiness and metrics."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.metrics import Metrics
from core.queue import PriorityQueue

log = logging.getLogger("peakdesk.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give aiohttp's own errors (404, 405, 413...) a JSON body; never leak a stack trace."""
    try:
        return await handler(request)
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


def build_app(
    channel_routes: Iterable[web.RouteDef], redis: Redis, queue: PriorityQueue, metrics: Metrics
) -> web.Application:
    app = web.Application(middlewares=[json_errors], client_max_size=256 * 1024)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        try:
            await redis.ping()
        except (RedisError, OSError) as exc:
            return web.json_response(
                {"status": "unavailable", "reason": f"redis: {type(exc).__name__}"}, status=503
            )
        return web.json_response({"status": "ready"})

    async def metrics_endpoint(_: web.Request) -> web.Response:
        try:
            for priority, depth in (await queue.depths()).items():
                metrics.depth.labels(str(priority)).set(depth)
        except (RedisError, OSError):
            pass  # the last known depths stay; /readyz reports the outage
        return web.Response(body=metrics.render(), headers={"Content-Type": metrics.content_type})

    app.add_routes(
        [
            *channel_routes,
            web.get("/healthz", healthz),
            web.get("/readyz", readyz),
            web.get("/metrics", metrics_endpoint),
        ]
    )
    return app
