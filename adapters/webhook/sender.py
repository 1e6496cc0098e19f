"""Reply delivery for the webhook channel: a signed ``POST`` to the message's callback URL."""

from __future__ import annotations

import json

import aiohttp

from adapters.webhook.convert import callback_body
from adapters.webhook.signing import GatewaySecrets, signed_headers
from core.errors import DeliveryError
from core.models import Reply


class CallbackSender:
    """Posts replies to gateways, signed as callbacks with the gateway's secret; any non-2xx
    or timeout is a retryable DeliveryError."""

    def __init__(
        self, session: aiohttp.ClientSession, secrets: GatewaySecrets, *, timeout_s: float = 10.0
    ) -> None:
        self.session = session
        self.secrets = secrets
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def send(self, reply: Reply) -> None:
        url = reply.reply_to.get("callback_url")
        if not url:
            raise DeliveryError("reply has no callback_url", retryable=False)
        body = json.dumps(callback_body(reply), ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json"}
        if secret := self.secrets.for_gateway(reply.account):
            headers.update(signed_headers(secret, body, purpose="callback"))
        try:
            async with self.session.post(
                url, data=body, headers=headers, timeout=self.timeout, allow_redirects=False
            ) as response:
                await response.read()
                if not 200 <= response.status < 300:
                    raise DeliveryError(
                        f"callback answered {response.status}", status=response.status
                    )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryError(f"callback failed: {type(exc).__name__}") from exc
