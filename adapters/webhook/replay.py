"""Each webhook signature is accepted once, by every process together: a verified signature is
remembered in Redis for as long as its timestamp would still verify, and a second use of it,
on any gateway path, is refused.

A signature is used up only by a request that was accepted: when a request stored nothing
(refused for its body, the gateway limit, a full queue or a Redis outage) the ingress releases
it, so the gateway's retry of the identical request is no replay.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from adapters.webhook.signing import TOLERANCE_S, Signed
from core.keys import Keys
from core.store import GroupCommit, pipelined

# Kept this much longer than the timestamp's own window: processes whose clocks differ by
# less still refuse every replay.
CLOCK_MARGIN_S = 60


class SignatureMemory:
    """The signatures accepted lately (``{pd}:sig:<digest>``, one short key each)."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        # Claims of concurrent requests go together: one round trip per batch, not one each.
        self._claims: GroupCommit[Sequence[Any]] = GroupCommit(pipelined(redis))

    def _key(self, signed: Signed) -> str:
        return self.keys.signature_seen(hashlib.sha256(signed.signature.encode()).hexdigest()[:32])

    async def claim(self, signed: Signed, now: float | None = None) -> bool:
        """True the first time the signature is seen; RedisError when Redis cannot say."""
        valid_for = signed.sent_at + TOLERANCE_S - (time.time() if now is None else now)
        ttl = max(1, math.ceil(valid_for)) + CLOCK_MARGIN_S
        return bool(await self._claims.call(("SET", self._key(signed), "1", "NX", "EX", ttl)))

    async def release(self, signed: Signed) -> None:
        """Forget a signature whose request stored nothing (best effort: with Redis down, the
        claim most likely failed as well)."""
        with contextlib.suppress(RedisError):
            await self.redis.delete(self._key(signed))
