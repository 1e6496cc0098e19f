"""Answers that missed the passive reply: customer-service messages through WeChat's API.

``POST {api}/cgi-bin/message/custom/send?access_token=...`` with
``{"touser": OpenID, "msgtype": "text", "text": {"content": ...}}``. The access token (from
``GET {api}/cgi-bin/token`` with the AppID and secret) is kept in Redis for every process,
until shortly before it expires; a token error drops it and the send is tried once more with
a fresh one. WeChat answers HTTP 200 with an ``errcode``:

- 45015: the customer wrote more than 48 hours ago, the account may no longer message them.
  Final: the outbox records the reply as undeliverable instead of retrying it forever.
- -1 (system busy) and HTTP or network failures: retried by the outbox with backoff.
- anything else (a bad AppID, an unknown OpenID...): final.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Final

import aiohttp
from redis.asyncio import Redis

from core.errors import DeliveryError
from core.keys import Keys
from core.models import Reply

log = logging.getLogger("peakdesk.wechat")

DEFAULT_API_BASE: Final = "https://api.weixin.qq.com"
TOKEN_ERRORS: Final = frozenset((40001, 40014, 42001))  # invalid, malformed, expired
OUTSIDE_WINDOW: Final = 45015
BUSY: Final = -1
TOKEN_MARGIN_S: Final = 300  # refreshed this long before WeChat says it expires
MAX_CONTENT_CHARS: Final = 2000


class WeChatSender:
    """Sends replies to WeChat customers as customer-service messages (see module doc)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        redis: Redis,
        keys: Keys,
        *,
        app_id: str,
        app_secret: str,
        api_base: str = DEFAULT_API_BASE,
        timeout_s: float = 10.0,
    ) -> None:
        self.session = session
        self.redis = redis
        self.keys = keys
        self.app_id = app_id
        self.app_secret = app_secret
        self.api_base = api_base.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def send(self, reply: Reply) -> None:
        openid = reply.reply_to.get("openid")
        if not openid:
            raise DeliveryError("reply has no openid", retryable=False)
        body = {
            "touser": openid,
            "msgtype": "text",
            "text": {"content": reply.text[:MAX_CONTENT_CHARS]},
        }
        for fresh in (False, True):
            token = await self._token(refresh=fresh)
            answer = await self._call(
                "POST", "/cgi-bin/message/custom/send", {"access_token": token}, body
            )
            code = int(answer.get("errcode") or 0)
            if code == 0:
                return
            if code in TOKEN_ERRORS and not fresh:
                await self.redis.delete(self._token_key)
                continue
            if code == OUTSIDE_WINDOW:
                log.info("ticket %s: outside WeChat's 48-hour window", reply.ticket_id)
                raise DeliveryError("outside the 48-hour customer-service window", retryable=False)
            raise DeliveryError(f"wechat errcode {code}", retryable=code == BUSY)

    @property
    def _token_key(self) -> str:
        return self.keys.wechat_token(self.app_id)

    async def _token(self, *, refresh: bool) -> str:
        if not refresh:
            cached = await self.redis.get(self._token_key)
            if cached:
                return str(cached)
        answer = await self._call(
            "GET",
            "/cgi-bin/token",
            {"grant_type": "client_credential", "appid": self.app_id, "secret": self.app_secret},
        )
        token, expires = answer.get("access_token"), answer.get("expires_in")
        if not isinstance(token, str) or not token:
            code = answer.get("errcode")
            raise DeliveryError(f"no access token (errcode {code})", retryable=code == BUSY)
        ttl = max(60, int(expires or 7200) - TOKEN_MARGIN_S)
        await self.redis.set(self._token_key, token, ex=ttl)
        return token

    async def _call(
        self, method: str, path: str, params: dict[str, str], body: Any = None
    ) -> dict[str, Any]:
        data = json.dumps(body, ensure_ascii=False).encode() if body is not None else None
        try:
            async with self.session.request(
                method,
                self.api_base + path,
                params=params,
                data=data,
                headers={"Content-Type": "application/json"} if data else None,
                timeout=self.timeout,
            ) as response:
                raw = await response.read()
                if response.status != 200:
                    raise DeliveryError(
                        f"wechat answered {response.status}", status=response.status
                    )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryError(f"wechat unreachable: {type(exc).__name__}") from exc
        try:
            answer = json.loads(raw)
        except ValueError as exc:
            raise DeliveryError("wechat answered no JSON") from exc
        if not isinstance(answer, dict):
            raise DeliveryError("wechat answered no JSON object")
        return answer
