"""Hand-over to people: which conversations a person should take, shared by every process.

A channel marks a conversation when the customer asks for a person (Telegram ``/human``, say);
the support-staff side (Slack) reads and completes the hand-over.
"""

from __future__ import annotations

import time
from typing import cast

from redis.asyncio import Redis

from core.keys import Keys

REQUESTED = "requested"


class HandoverRegistry:
    """The hand-over state of conversations, in Redis (one hash per conversation)."""

    def __init__(self, redis: Redis, keys: Keys, *, ttl_s: int = 7 * 24 * 3600) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl_s = ttl_s

    async def request(self, conversation_key: str, reason: str) -> None:
        """Mark ``conversation_key`` as waiting for a person (idempotent)."""
        key = self.keys.handover(conversation_key)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, "requested_at", str(time.time()))
            pipe.hset(key, mapping={"status": REQUESTED, "reason": reason})
            pipe.expire(key, self.ttl_s)
            await pipe.execute()

    async def status(self, conversation_key: str) -> dict[str, str]:
        """The hand-over record of a conversation ({} when none)."""
        return cast(dict[str, str], await self.redis.hgetall(self.keys.handover(conversation_key)))
