"""Reply delivery for the webhook channel: a signed ``POST`` to the message's callback URL."""

from __future__ import annotations

import json

import aiohttp

from adapters.webhook.callback_url import (
    AddressRefused,
    CallbackPolicy,
    CallbackRefused,
    PublicAddressResolver,
    Trust,
)
from adapters.webhook.convert import callback_body
from adapters.webhook.signing import GatewaySecrets, signed_headers
from core.errors import DeliveryError
from core.models import Reply


def checked_session(policy: CallbackPolicy) -> aiohttp.ClientSession:
    """The session for callback URLs the operator did not name: its connector connects only
    to the addresses the policy allows (see :class:`PublicAddressResolver`)."""
    resolver = PublicAddressResolver(policy)
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, resolver=resolver))


class CallbackSender:
    """Posts replies to gateways, signed as callbacks with the gateway's secret. Non-2xx (but
    3xx) and timeouts are retryable DeliveryErrors; a redirect, and a URL or address the
    policy refuses, are final ones.

    URLs the operator configured go through ``session``; the others through ``checked``
    (from :func:`checked_session`), after ``policy`` vetted them once more: a message may
    have been queued under another configuration.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        secrets: GatewaySecrets,
        *,
        timeout_s: float = 10.0,
        policy: CallbackPolicy,
        checked: aiohttp.ClientSession,
    ) -> None:
        self.session = session
        self.secrets = secrets
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.policy = policy
        self.checked = checked

    def _session_for(self, url: str) -> aiohttp.ClientSession:
        try:
            trust = self.policy.vet(url)
        except CallbackRefused as exc:
            raise DeliveryError(f"callback_url refused: {exc}", retryable=False) from None
        return self.session if trust is Trust.CONFIGURED else self.checked

    async def send(self, reply: Reply) -> None:
        url = reply.reply_to.get("callback_url")
        if not url:
            raise DeliveryError("reply has no callback_url", retryable=False)
        session = self._session_for(url)
        body = json.dumps(callback_body(reply), ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json"}
        if secret := self.secrets.for_gateway(reply.account):
            headers.update(signed_headers(secret, body, purpose="callback"))
        try:
            async with session.post(
                url, data=body, headers=headers, timeout=self.timeout, allow_redirects=False
            ) as response:
                await response.read()
                status = response.status
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, AddressRefused):
                raise DeliveryError(
                    f"callback_url refused: {exc.os_error}", retryable=False
                ) from exc
            raise DeliveryError(f"callback failed: {type(exc).__name__}") from exc
        except aiohttp.InvalidURL as exc:  # e.g. an IPv4 address not written as a dotted quad
            raise DeliveryError(f"callback failed: {type(exc).__name__}", retryable=False) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryError(f"callback failed: {type(exc).__name__}") from exc
        if 300 <= status < 400:  # never followed: it could lead anywhere, retried or not
            raise DeliveryError(
                f"callback answered {status} (a redirect: not followed)",
                retryable=False,
                status=status,
            )
        if not 200 <= status < 300:
            raise DeliveryError(f"callback answered {status}", status=status)
