"""Watching the run: ``/metrics`` and CPU sampled each second, and the progress line."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

import aiohttp

from bots.simulate.analysis import PRIORITIES
from bots.simulate.load import LoadGenerator
from bots.simulate.peakdesk import MetricsSample, PeakdeskProcess
from bots.simulate.provider import SimulatedProvider
from bots.simulate.scenario import Scenario
from bots.simulate.sink import CallbackSink


@dataclass(slots=True)
class Sampler:
    """About every second: peakdesk's queue depth per priority and degradation level (from
    ``/metrics``) and the CPU used by peakdesk and by this process, to tell a slow peakdesk
    from a busy machine."""

    peakdesk: PeakdeskProcess
    session: aiohttp.ClientSession
    clock: Callable[[], float]
    depths: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    levels: list[tuple[float, float]] = field(default_factory=list)  # the degradation ladder
    # peakdesk's own estimate of a new message's wait, per priority (what its acks promise)
    estimates: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    cpu: list[tuple[float, float | None, float]] = field(default_factory=list)  # at, pd, own
    last: MetricsSample | None = None
    failed: int = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = self.clock()
            await self.sample()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.05, 1.0 - (self.clock() - started)))

    async def sample(self) -> None:
        at = self.clock()
        self.cpu.append((at, self.peakdesk.cpu_s(), time.process_time()))
        sample = await self.peakdesk.scrape(self.session)
        if sample is None:
            self.failed += 1
            return
        self.last = sample
        depth = sample.by_label("peakdesk_queue_depth", "priority")
        self.depths.append((at, {p: depth.get(p, 0.0) for p in PRIORITIES}))
        level = sample.value("peakdesk_peak_level")
        if level is not None:  # a peakdesk with peak mode
            self.levels.append((at, level))
        estimate = sample.by_label("peakdesk_estimated_wait_seconds", "priority")
        if estimate:
            self.estimates.append((at, estimate))


@dataclass(slots=True)
class Progress:
    """One line every few seconds on stderr: where the run is and how peakdesk keeps up."""

    scenario: Scenario
    load: LoadGenerator
    sink: CallbackSink
    provider: SimulatedProvider
    sampler: Sampler
    clock: Callable[[], float]
    out: TextIO
    draining: bool = False

    def line(self) -> str:
        now = self.clock()
        phase = "drain" if self.draining else self.scenario.phase(now)
        second = int(now)
        recent = range(max(0, second - 5), second)
        sent = sum(self.load.seconds[i].sent for i in recent if i < len(self.load.seconds)) / 5
        calls = sum(
            self.provider.seconds[i].admitted for i in recent if i < len(self.provider.seconds)
        )
        depth = self.sampler.depths[-1][1] if self.sampler.depths else {}
        depths = " ".join(f"{p}:{depth.get(p, 0):,.0f}" for p in PRIORITIES)
        acks = sum(1 for r in self.sink.replies if r.is_ack)
        throttled = sum(s.throttled for s in self.provider.seconds)
        limit = self.provider.config.rpm
        return (
            f"[{now:6.0f}s {phase:<8}] sent {sent:6.1f}/s | depth {depths} | answered "
            f"{len(self.load.answered):,}/{self.load.accepted:,} acks {acks:,} | provider "
            f"{calls * 12:,}/min (limit {limit:,}) 429s {throttled:,}"
        )

    async def run(self, every_s: float, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)
            if not stop.is_set():  # the run prints the last line itself
                print(self.line(), file=self.out, flush=True)
