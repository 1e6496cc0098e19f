"""The lifecycle every fake of the outside world shares: an aiohttp app on 127.0.0.1."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from aiohttp import web
from aiohttp.test_utils import TestServer


class LoopbackServer:
    """``async with`` serves ``app`` on a free loopback port, without an access log (request
    paths can hold tokens, identities and ids); ``url(path)`` is where a path is served."""

    def __init__(self, app: web.Application) -> None:
        self._server = TestServer(app, host="127.0.0.1", port=0)

    async def __aenter__(self) -> Self:
        await self._server.start_server(access_log=None)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._server.close()

    def url(self, path: str = "") -> str:
        return str(self._server.make_url(path))
