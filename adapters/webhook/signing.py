"""Request signing of the webhook channel: gateways sign what they send us, we sign the reply
callbacks we send them.

``X-Peakdesk-Signature: sha256=<hex HMAC-SHA256(secret, signed string)>`` with the unix
timestamp in ``X-Peakdesk-Timestamp``. The signed string names what the request is for, so
that a signature made for one purpose never authorises another:

- a message (``POST /webhook/{gateway}``): ``"<timestamp>.<raw body>"``
- a forget request (``POST /webhook/{gateway}/forget``): ``"<timestamp>.forget.<raw body>"``
- a reply callback (ours, to the gateway): ``"<timestamp>.callback.<raw body>"``

None can be read as another: the timestamp holds no dot, and a JSON body never starts with
``forget.`` or ``callback.``. Timestamps more than 300 s away are refused; within that window
the ingress accepts each signature once (:mod:`adapters.webhook.replay`).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

TIMESTAMP_HEADER = "X-Peakdesk-Timestamp"
SIGNATURE_HEADER = "X-Peakdesk-Signature"
TOLERANCE_S = 300

Purpose = Literal["message", "forget", "callback"]


class SignatureError(ValueError):
    """The request is not signed, or not signed with our secret, or too old."""


@dataclass(frozen=True, slots=True)
class Signed:
    """A signature that verified, and the time it was made (unix seconds)."""

    signature: str
    sent_at: int


@dataclass(frozen=True, slots=True)
class GatewaySecrets:
    """Which secret signs for which gateway: its own (``WEBHOOK_SECRETS``), else the default
    (``WEBHOOK_SECRET``). A gateway with a secret of its own is not spoken for by the default."""

    default: str | None = None
    own: Mapping[str, str] = field(default_factory=dict)

    @property
    def configured(self) -> bool:
        return bool(self.default or self.own)

    def for_gateway(self, gateway: str) -> str | None:
        """The secret the gateway's requests and callbacks are signed with (None: none)."""
        return self.own.get(gateway, self.default)

    def has_own(self, gateway: str) -> bool:
        """Whether the gateway is a credential of its own (else: whoever holds the default)."""
        return gateway in self.own


def signature(secret: str, timestamp: str, body: bytes, purpose: Purpose = "message") -> str:
    label = b"" if purpose == "message" else purpose.encode() + b"."
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + label + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def signed_headers(
    secret: str, body: bytes, now: float | None = None, *, purpose: Purpose = "message"
) -> dict[str, str]:
    """The two headers that sign ``body`` for ``purpose`` (callbacks; gateways and tests)."""
    timestamp = str(int(time.time() if now is None else now))
    return {
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: signature(secret, timestamp, body, purpose),
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    now: float | None = None,
    *,
    purpose: Purpose = "message",
) -> Signed:
    """The signature, once ``headers`` sign ``body`` for ``purpose`` with ``secret`` and are
    fresh; SignatureError otherwise."""
    timestamp = headers.get(TIMESTAMP_HEADER)
    given = headers.get(SIGNATURE_HEADER)
    if not timestamp or not given:
        raise SignatureError(f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header")
    if not timestamp.isascii() or not timestamp.isdigit():
        raise SignatureError(f"{TIMESTAMP_HEADER} is not unix seconds")
    sent_at = int(timestamp)
    if abs((time.time() if now is None else now) - sent_at) > TOLERANCE_S:
        raise SignatureError(f"{TIMESTAMP_HEADER} is more than {TOLERANCE_S} s away")
    expected = signature(secret, timestamp, body, purpose)
    # A header that is not UTF-8 arrives with surrogate escapes: compare its raw bytes.
    if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode()):
        raise SignatureError("signature does not match")
    return Signed(expected, sent_at)
