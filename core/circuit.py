"""A circuit breaker: stop calling a dependency that keeps failing, then probe it now and then.

When a store API is down, every customer message would otherwise wait out its timeouts and
retries before hearing "the shop cannot be reached". After ``failure_threshold`` failures in a
row the circuit *opens* and callers fail at once; ``reset_after_s`` later it is *half open* and
lets one probe call through: a success closes it, a failure opens it for another period.

The state is per process and in memory, on purpose: each process learns for itself within a
few calls, and a breaker that needed Redis to decide would fail along with it. The methods never
await, so one breaker is safe to share between the tasks of one event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

# The states, as :attr:`CircuitBreaker.state` names them.
CLOSED: Final = "closed"
OPEN: Final = "open"
HALF_OPEN: Final = "half_open"


class CircuitBreaker:
    """Counts consecutive failures of one dependency and says whether to call it now.

    Callers ask :meth:`allow` before a call and report its outcome with :meth:`record_success`
    or :meth:`record_failure`. A probe that never reports (its task was cancelled) does not
    wedge the breaker: after another ``reset_after_s`` the next caller probes instead.
    """

    def __init__(
        self,
        failure_threshold: int = 5,
        reset_after_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        if reset_after_s < 0:
            raise ValueError("reset_after_s must be >= 0")
        self.failure_threshold = failure_threshold
        self.reset_after_s = reset_after_s
        self._clock = clock
        self._state: str = CLOSED
        self._failures = 0
        self._since = 0.0  # when the circuit opened, or when the probe went out

    def __repr__(self) -> str:
        return f"CircuitBreaker(state={self.state!r}, failures={self._failures})"

    @property
    def state(self) -> str:
        """``open`` reads as ``half_open`` once the next :meth:`allow` would let a probe out."""
        if self._state == OPEN and self._period_over():
            return HALF_OPEN
        return self._state

    def allow(self) -> bool:
        """True if a call may go out now (closed, or the one probe of a half-open circuit)."""
        if self._state == CLOSED:
            return True
        if not self._period_over():  # open, or half open with a probe still out
            return False
        self._state = HALF_OPEN
        self._since = self._clock()
        return True

    def record_success(self) -> None:
        """The dependency answered: close the circuit and forget earlier failures."""
        self._state = CLOSED
        self._failures = 0

    def record_failure(self) -> None:
        """The dependency failed: open the circuit at the threshold, or again after a probe."""
        self._failures += 1
        if self._state == HALF_OPEN or (
            self._state == CLOSED and self._failures >= self.failure_threshold
        ):
            self._state = OPEN
            self._since = self._clock()

    def _period_over(self) -> bool:
        return self._clock() - self._since >= self.reset_after_s
