"""Request signing shared by inbound webhooks and outbound callbacks.

``X-Peakdesk-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>`` with the
unix timestamp in ``X-Peakdesk-Timestamp``; timestamps more than 300 s away are refused so a
captured request cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

TIMESTAMP_HEADER = "X-Peakdesk-Timestamp"
SIGNATURE_HEADER = "X-Peakdesk-Signature"
TOLERANCE_S = 300


class SignatureError(ValueError):
    """The request is not signed, or not signed with our secret, or too old."""


def signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def signed_headers(secret: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """The two headers that sign ``body`` (for callbacks, and for gateways and tests)."""
    timestamp = str(int(time.time() if now is None else now))
    return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: signature(secret, timestamp, body)}


def verify(secret: str, headers: Mapping[str, str], body: bytes, now: float | None = None) -> None:
    """Raise SignatureError unless ``headers`` sign ``body`` with ``secret`` and are fresh."""
    timestamp = headers.get(TIMESTAMP_HEADER)
    given = headers.get(SIGNATURE_HEADER)
    if not timestamp or not given:
        raise SignatureError(f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise SignatureError(f"{TIMESTAMP_HEADER} is not unix seconds") from None
    if abs((time.time() if now is None else now) - sent_at) > TOLERANCE_S:
        raise SignatureError(f"{TIMESTAMP_HEADER} is more than {TOLERANCE_S} s away")
    # A header that is not UTF-8 arrives with surrogate escapes: compare its raw bytes.
    given_raw = given.encode("utf-8", "surrogateescape")
    if not hmac.compare_digest(given_raw, signature(secret, timestamp, body).encode()):
        raise SignatureError("signature does not match")
