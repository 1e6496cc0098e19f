"""The LLM provider's limits, shared by every worker on every machine.

At peak the provider's rate limit, not our code, is the bottleneck: every process must pace
itself against one budget. :class:`ProviderLimits` keeps requests per minute
(``HOLYSHEEP_RPM``), tokens per minute (``HOLYSHEEP_TPM``, counted from an estimate before the
call and corrected with the usage after it) and calls in flight (``HOLYSHEEP_CONCURRENCY``,
leases that expire if their process dies) in Redis, each taken by one Lua script (GCRA with
Redis's clock).

It adapts: a 429, or ``x-ratelimit-remaining-*`` headers saying less than 0.5% is left, cut the
shared rate factor (x0.7, at most once per 2 s however many calls saw it); every successful
call raises it again by 0.01, back to the full limit. The LLM client asks before each attempt
and reports after it (:class:`core.llm.HolySheepClient` ``limits``).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from redis.asyncio import Redis

from core.keys import Keys
from core.store import lua_script

# Paced at 98% of the provider's limits: with the 1 s burst the GCRA allows, a minute never
# holds more than the limit, and the provider's sliding window keeps a little room.
HEADROOM: Final = 0.98
# Of a limit left, per the provider's headers, under which we slow down. Paced at 98%, we
# leave ~2% ourselves: less than that means another client shares the account (or the
# provider counts differently), and a larger threshold would cut us below the limit whenever
# we use it fully.
LOW_REMAINING: Final = 0.005
CUT: Final = 0.7
RAISE: Final = 0.01
LOWEST: Final = 0.1
COOLDOWN_MS: Final = 2000
PRIORITY_LAG_S: Final = 0.02  # per priority level, see ProviderLimits.acquire
LEASE_MS: Final = 120_000  # a call's concurrency slot, if its process dies holding it


def estimate_tokens(prompt_chars: int, max_tokens: int) -> int:
    """Tokens a call may use before we know: about 4 characters a token, plus the answer."""
    return prompt_chars // 4 + max_tokens


@dataclass(frozen=True, slots=True)
class Lease:
    id: str
    tokens: int


class ProviderLimits:
    """Requests/min, tokens/min and concurrency of the provider (see the module docstring).

    A limit of 0 (or None) is no limit.
    """

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        *,
        rpm: int | None = None,
        tpm: int | None = None,
        concurrency: int | None = None,
        burst_s: float = 1.0,
        cooldown_s: float = COOLDOWN_MS / 1000,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.rpm = (rpm or 0) * HEADROOM
        self.tpm = (tpm or 0) * HEADROOM
        self.concurrency = concurrency or 0
        self.burst_ms = burst_s * 1000
        self.cooldown_ms = cooldown_s * 1000
        self._acquire = redis.register_script(lua_script("provider_acquire.lua"))
        self._release = redis.register_script(lua_script("provider_release.lua"))

    @property
    def active(self) -> bool:
        return bool(self.rpm or self.tpm or self.concurrency)

    async def acquire(self, tokens: int, *, timeout: float, priority: int = 0) -> Lease:
        """Wait for a request, ``tokens`` and a slot under every limit; TimeoutError after
        ``timeout`` seconds (nothing taken then).

        Waiters of every process race for the next room; a less urgent one (higher
        ``priority``) asks ``PRIORITY_LAG_S`` later per level, so while urgent calls wait the
        room goes to them.
        """
        lease = Lease(secrets.token_hex(8), tokens)
        deadline = time.monotonic() + timeout
        while True:
            wait_ms = await self._acquire(
                keys=[
                    self.keys.provider("rpm"),
                    self.keys.provider("tpm"),
                    self.keys.provider("leases"),
                    self.keys.provider("factor"),
                ],
                args=[
                    self.rpm,
                    self.tpm,
                    self.concurrency,
                    tokens,
                    lease.id,
                    LEASE_MS,
                    self.burst_ms,
                ],
            )
            if not wait_ms:
                return lease
            wait = float(wait_ms) / 1000
            if time.monotonic() + wait > deadline:
                raise TimeoutError(f"provider limits: no room within {timeout:g} s")
            await asyncio.sleep(wait + priority * PRIORITY_LAG_S)

    async def release(
        self,
        lease: Lease,
        *,
        status: int | None,
        headers: Mapping[str, str] | None = None,
        used_tokens: int | None = None,
    ) -> float:
        """Report how the attempt went; returns the rate factor now in force."""
        outcome = "other"
        if status == 429:
            outcome = "throttled"
        elif status is not None and 200 <= status < 300:
            outcome = "low" if _little_left(headers or {}) else "ok"
        correction = used_tokens - lease.tokens if used_tokens is not None else 0
        factor = await self._release(
            keys=[
                self.keys.provider("tpm"),
                self.keys.provider("leases"),
                self.keys.provider("factor"),
                self.keys.provider("cut_at"),
            ],
            args=[lease.id, correction, self.tpm, outcome, self.cooldown_ms, CUT, RAISE, LOWEST],
        )
        return float(factor)

    async def factor(self) -> float:
        """The share of the provider's limits in use now (1.0 = all of it)."""
        value = await self.redis.get(self.keys.provider("factor"))
        return float(value) if value is not None else 1.0


def _little_left(headers: Mapping[str, str]) -> bool:
    """Whether ``x-ratelimit-remaining-*`` says under LOW_REMAINING of a limit is left."""
    for kind in ("requests", "tokens"):
        try:
            limit = float(headers.get(f"x-ratelimit-limit-{kind}", ""))
            remaining = float(headers.get(f"x-ratelimit-remaining-{kind}", ""))
        except ValueError:
            continue
        if limit > 0 and remaining / limit < LOW_REMAINING:
            return True
    return False
