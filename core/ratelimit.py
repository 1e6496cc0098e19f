"""Rate limits shared by every process through Redis (GCRA in one Lua script).

Used where a platform limits us across all our processes: Telegram's 1 message a second per
chat and 30 a second per bot, say. Several limits are checked and counted together, so a
message waits for the tightest one and never uses up a slot it could not send.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from core.keys import Keys
from core.store import lua_script


@dataclass(frozen=True, slots=True)
class Rate:
    """``per_second`` on average, with up to ``burst`` at once."""

    per_second: float
    burst: int = 1

    @property
    def interval_ms(self) -> float:
        return 1000.0 / self.per_second

    @property
    def tolerance_ms(self) -> float:
        return self.interval_ms * (self.burst - 1)


class RateLimiter:
    """Named limits (``"tg:chat:42"``) kept in Redis under the project's key prefix."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.keys = keys
        self._script = redis.register_script(lua_script("gcra.lua"))

    async def try_acquire(self, limits: Sequence[tuple[str, Rate]]) -> float:
        """0.0 when a slot of every limit was taken, else the seconds to wait first."""
        args: list[float] = []
        for _, rate in limits:
            args += [rate.interval_ms, rate.tolerance_ms]
        wait_ms = await self._script(keys=[self.keys.rate(name) for name, _ in limits], args=args)
        return float(wait_ms) / 1000.0

    async def acquire(self, limits: Sequence[tuple[str, Rate]], *, timeout: float) -> None:
        """Wait until every limit allows one more; TimeoutError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while wait := await self.try_acquire(limits):
            if time.monotonic() + wait > deadline:
                raise TimeoutError(f"rate limit wait over {timeout:g} s")
            await asyncio.sleep(wait)
