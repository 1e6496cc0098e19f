"""Freshness of WeChat's signed requests: a time window and a memory of used signatures.

WeChat's query signature covers the Token, the timestamp and the nonce, never the body: it
shows that WeChat signed that query at some time, not that this body came with it. So a
signed query is good once, and only near its time:

- its timestamp must lie within :data:`WINDOW_S` of this server's clock, either way (the
  servers' clocks must be in sync: NTP);
- it is remembered in Redis, shared by every process, for twice the window (SET NX with a
  TTL: one key, so it works the same on one server and on Redis Cluster), and a second use is
  refused. The memory is keyed by the signature rather than the nonce alone: WeChat signs the
  sorted, concatenated parts, so the same characters split differently into a timestamp and
  a nonce have the same signature, and are refused too.

A request that could not be stored (Redis out of reach, the queue full) gives its signature
back (:meth:`PushFreshness.release`), so that WeChat's retry with the same query is taken.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final

from redis.asyncio import Redis
from redis.exceptions import RedisError

from adapters.wechat.crypto import WeChatSignatureError
from core.errors import StoreUnavailable
from core.keys import Keys

log = logging.getLogger("peakdesk.wechat")

WINDOW_S: Final = 300
MAX_TIMESTAMP_DIGITS: Final = 12


class PushFreshness:
    """The time window and the memory of used signatures (see the module docstring)."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        *,
        window_s: int = WINDOW_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.window_s = window_s
        self.clock = clock

    def check_time(self, timestamp: str) -> None:
        """Raise WeChatSignatureError unless ``timestamp`` is within the window of now."""
        # ASCII digits only: int() would also take "+1", " 1" or other scripts' digits.
        if not (timestamp.isascii() and timestamp.isdigit()) or (
            len(timestamp) > MAX_TIMESTAMP_DIGITS
        ):
            raise WeChatSignatureError("timestamp is not a Unix time in seconds")
        if abs(int(self.clock()) - int(timestamp)) > self.window_s:
            raise WeChatSignatureError(
                f"timestamp more than {self.window_s} s from now: stale or replayed"
            )

    async def claim(self, signature: str, timestamp: str) -> None:
        """Remember a verified ``signature`` (with its ``timestamp``, no customer data);
        raise WeChatSignatureError if it was used before.

        Raises StoreUnavailable when Redis is out of reach (answer 503: WeChat retries).
        """
        # Twice the window: a timestamp at one edge stays remembered until past the other.
        try:
            fresh = await self.redis.set(
                self.keys.wechat_nonce(signature), timestamp, nx=True, ex=2 * self.window_s
            )
        except RedisError as exc:
            raise StoreUnavailable(f"nonce memory: {type(exc).__name__}") from exc
        if not fresh:
            raise WeChatSignatureError("nonce already used: a replayed request")

    async def release(self, signature: str) -> None:
        """Forget ``signature`` again: its request was not stored, WeChat will retry it.

        Best effort: when Redis cannot be reached to forget it, a retry with the same query
        is refused as a replay until the memory expires.
        """
        try:
            await self.redis.delete(self.keys.wechat_nonce(signature))
        except RedisError as exc:
            log.warning("wechat nonce not released: %s", type(exc).__name__)
