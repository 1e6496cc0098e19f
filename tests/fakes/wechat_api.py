"""A scriptable fake of WeChat's API (access tokens, customer-service messages) on loopback.

``GET /cgi-bin/token`` hands out numbered tokens; ``POST /cgi-bin/message/custom/send``
records what it is sent with a valid token. ``answer_next(errcode)`` scripts the errcode of
the next sends, in order (WeChat answers HTTP 200 with an errcode)::

    async with FakeWeChatAPI() as api:
        api.answer_next(42001)   # the next send: "access token expired"
        ...
        assert [m["text"]["content"] for m in api.sent] == [...]
"""

from __future__ import annotations

from collections import deque
from typing import Any

from aiohttp import web

from tests.fakes.loopback import LoopbackServer

APP_ID = "wx1234567890abcdef"
APP_SECRET = "wechat-test-secret"


class FakeWeChatAPI(LoopbackServer):
    def __init__(self) -> None:
        app = web.Application()
        app.router.add_get("/cgi-bin/token", self._token)
        app.router.add_post("/cgi-bin/message/custom/send", self._send)
        super().__init__(app)
        self.tokens_issued = 0
        self.valid: set[str] = set()
        self.sent: list[dict[str, Any]] = []
        self._script: deque[int] = deque()

    @property
    def base_url(self) -> str:
        return self.url("")

    def answer_next(self, *errcodes: int) -> None:
        self._script.extend(errcodes)

    def expire_tokens(self) -> None:
        self.valid.clear()

    async def _token(self, request: web.Request) -> web.Response:
        query = request.query
        if (query.get("appid"), query.get("secret")) != (APP_ID, APP_SECRET):
            return web.json_response({"errcode": 40013, "errmsg": "invalid appid"})
        self.tokens_issued += 1
        token = f"token-{self.tokens_issued}"
        self.valid.add(token)
        return web.json_response({"access_token": token, "expires_in": 7200})

    async def _send(self, request: web.Request) -> web.Response:
        if request.query.get("access_token") not in self.valid:
            return web.json_response({"errcode": 40001, "errmsg": "invalid credential"})
        if self._script:
            code = self._script.popleft()
            return web.json_response({"errcode": code, "errmsg": "scripted"})
        self.sent.append(await request.json())
        return web.json_response({"errcode": 0, "errmsg": "ok"})
