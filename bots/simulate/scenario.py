"""The peak: how many messages a second arrive at each moment, and what ``--scale`` shrinks.

The default is the issue's peak: a baseline of 1,000 messages a minute, 500 times that within
30 s, a hold, then a decay back to the baseline. Rates are given at real scale and multiplied
by ``scale`` so the run fits the machine; durations are never scaled (a customer waiting 30 s
waits 30 s whatever the scale), so time-based targets keep their meaning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

PHASES: Final = ("baseline", "ramp", "hold", "decay")


@dataclass(frozen=True, slots=True)
class Scenario:
    """Arrival rates (real scale, per minute) and phase durations (seconds, never scaled)."""

    scale: float = 0.01
    baseline_per_min: float = 1000.0
    peak_factor: float = 500.0
    baseline_s: float = 20.0
    ramp_s: float = 30.0
    hold_s: float = 60.0
    decay_s: float = 60.0

    def __post_init__(self) -> None:
        if not 0 < self.scale <= 1:
            raise ValueError("scale must be in (0, 1]")
        if self.baseline_per_min <= 0 or self.peak_factor < 1:
            raise ValueError("baseline must be > 0 and the peak factor >= 1")
        if min(self.baseline_s, self.ramp_s, self.hold_s, self.decay_s) < 0:
            raise ValueError("phase durations must be >= 0")

    @property
    def duration_s(self) -> float:
        return self.baseline_s + self.ramp_s + self.hold_s + self.decay_s

    @property
    def baseline_per_s(self) -> float:
        """The simulated (scaled) baseline rate in messages a second."""
        return self.baseline_per_min * self.scale / 60

    @property
    def peak_per_s(self) -> float:
        return self.baseline_per_s * self.peak_factor

    def phase(self, t: float) -> str:
        """The phase at ``t`` seconds from the start ("done" after the decay)."""
        edge = 0.0
        for name, length in zip(PHASES, self._lengths(), strict=True):
            edge += length
            if t < edge:
                return name
        return "done"

    def rate(self, t: float) -> float:
        """Messages a second at ``t`` (scaled): flat, linear up, flat, linear down, then 0."""
        base, peak = self.baseline_per_s, self.peak_per_s
        if t < 0 or t >= self.duration_s:
            return 0.0
        if t < self.baseline_s:
            return base
        t -= self.baseline_s
        if t < self.ramp_s:
            return base + (peak - base) * t / self.ramp_s
        t -= self.ramp_s
        if t < self.hold_s:
            return peak
        t -= self.hold_s
        return peak - (peak - base) * t / self.decay_s

    def expected_messages(self) -> float:
        """The integral of :meth:`rate`: first messages the curve asks for (scaled)."""
        base, peak = self.baseline_per_s, self.peak_per_s
        return (
            base * self.baseline_s
            + (base + peak) / 2 * self.ramp_s
            + peak * self.hold_s
            + (base + peak) / 2 * self.decay_s
        )

    def _lengths(self) -> tuple[float, float, float, float]:
        return (self.baseline_s, self.ramp_s, self.hold_s, self.decay_s)


@dataclass(frozen=True, slots=True)
class Scaled:
    """One quantity ``--scale`` shrank: its real-scale value and the simulated one."""

    what: str
    real: float
    simulated: float
    unit: str

    def as_dict(self) -> dict[str, object]:
        return {
            "what": self.what,
            "real": self.real,
            "simulated": self.simulated,
            "unit": self.unit,
        }


def scaled_limit(value: float, scale: float) -> int:
    """A real-scale limit shrunk by ``scale``: 0 (no limit) stays 0, others stay >= 1."""
    return 0 if value == 0 else max(1, round(value * scale))
