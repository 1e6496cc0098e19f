"""A fake gateway callback endpoint over real HTTP: records replies, checks their callback
signatures, and can be scripted to fail (non-2xx statuses, slow answers)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from adapters.webhook.signing import SignatureError, verify


@dataclass(frozen=True, slots=True)
class Callback:
    headers: dict[str, str]
    body: dict[str, Any]
    raw: bytes  # the body as it came
    signature_ok: bool | None  # None when the receiver has no secret to check with
    at: float


class CallbackReceiver:
    """``POST /callback`` records a reply; scripted statuses are answered first, then 200."""

    def __init__(self, secret: str | None = None) -> None:
        self.secret = secret
        self.received: list[Callback] = []  # every request, failed ones included
        self._statuses: deque[tuple[int, float]] = deque()
        self._arrived = asyncio.Condition()
        app = web.Application()
        app.router.add_post("/callback", self._handle)
        self._server = TestServer(app, host="127.0.0.1", port=0)

    @property
    def url(self) -> str:
        return str(self._server.make_url("/callback"))

    @property
    def accepted(self) -> list[dict[str, Any]]:
        """Bodies of the callbacks that were answered 2xx."""
        return [c.body for c in self.received if c.body.get("_status", 200) < 300]

    def fail(self, status: int = 500, times: int = 1, delay: float = 0.0) -> None:
        self._statuses.extend([(status, delay)] * times)

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until ``count`` callbacks were accepted; return the accepted bodies."""
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.accepted) >= count)
        return self.accepted

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        signature_ok: bool | None = None
        if self.secret:
            try:
                verify(self.secret, request.headers, raw, purpose="callback")
                signature_ok = True
            except SignatureError:
                signature_ok = False
        status, delay = self._statuses.popleft() if self._statuses else (200, 0.0)
        if delay:
            await asyncio.sleep(delay)
        body = json.loads(raw)
        if status >= 300:
            body["_status"] = status
        async with self._arrived:
            self.received.append(
                Callback(dict(request.headers), body, raw, signature_ok, time.monotonic())
            )
            self._arrived.notify_all()
        return web.json_response({"ok": status < 300}, status=status)

    async def __aenter__(self) -> CallbackReceiver:
        await self._server.start_server()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._server.close()
