"""``POST /admin/forget``: delete a customer's stored conversation data on any channel.

For the shop's privacy team (a data-deletion request that came by mail, a WeChat customer:
WeChat has no ``/forget`` command). Telegram customers can send ``/forget`` themselves, and a
webhook gateway can forward its customer's request to ``POST /webhook/{gateway}/forget``.
Authenticated with ``Authorization: Bearer <PEAKDESK_ADMIN_TOKEN>``; without that setting the
route answers 404, as if it did not exist.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from typing import Annotated, Protocol

from aiohttp import web
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError
from redis.exceptions import RedisError

from adapters.webhook.convert import Id, payload_error
from core.aio import read_limited
from core.models import named_conversation_key

MAX_BODY_BYTES = 4096


class Forgetter(Protocol):
    async def forget(self, conversation_key: str) -> int: ...


class ForgetRequest(BaseModel):
    """``channel`` (telegram, wechat, webhook, slack...), ``conversation_id`` (the Telegram
    chat id, the WeChat OpenID, the gateway's conversation id) and ``account`` (the gateway
    name; for Telegram and WeChat the configured bot or account is the default).

    As on the webhook: ``user_id`` names the user whose conversation it is when that is not
    the conversation's own id (a gateway's conversation of one user), ``group`` a conversation
    its members share (a Telegram group); ``conversation_id`` alone names a one-to-one
    conversation (a Telegram private chat, a WeChat OpenID)."""

    model_config = ConfigDict(strict=True, extra="forbid")

    channel: Annotated[str, StringConstraints(pattern=r"^[a-z]{1,16}$")]
    conversation_id: Id
    account: Id | None = None
    user_id: Id | None = None
    group: bool = False


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class AdminApi:
    def __init__(
        self,
        token: str | None,
        forgetter: Forgetter,
        default_accounts: Callable[[], Mapping[str, str]],
    ) -> None:
        self.token = token
        self.forgetter = forgetter
        self.default_accounts = default_accounts

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/admin/forget", self.forget)]

    async def forget(self, request: web.Request) -> web.Response:
        if not self.token:
            return _error(404, "not found")
        # A header that is not UTF-8 arrives with surrogate escapes: compare its raw bytes.
        given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(given, f"Bearer {self.token}".encode()):
            return _error(401, "Authorization: Bearer <PEAKDESK_ADMIN_TOKEN> required")
        try:
            body = await read_limited(request.content, MAX_BODY_BYTES)
        except (ValueError, ConnectionError) as exc:
            return _error(400, f"cannot read body: {type(exc).__name__}")
        if body is None:
            return _error(413, f"body over {MAX_BODY_BYTES} bytes")
        try:
            asked = ForgetRequest.model_validate_json(body)
        except ValidationError as exc:
            return _error(400, str(payload_error(exc)))
        account = asked.account or self.default_accounts().get(asked.channel)
        if account is None:
            return _error(400, f"account: required for channel {asked.channel}")
        try:
            deleted = await self.forgetter.forget(
                named_conversation_key(
                    asked.channel, account, asked.conversation_id, asked.user_id, asked.group
                )
            )
        except RedisError:
            return web.json_response(
                {"error": "store unavailable, retry later"},
                status=503,
                headers={"Retry-After": "5"},
            )
        return web.json_response({"status": "forgotten", "deleted": deleted})
