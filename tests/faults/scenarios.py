"""The fault scenarios, shared by the CI tests (``tests/faults/test_faults.py``) and the
heavier runs (``benchmarks/faults.py``).

Each run: steady load for ``warmup_s``; the fault (it returns when the fault is over: the last
worker killed, Redis answering again, the provider or Telegram back); the load goes on for
``after_s``; then the load stops, the messages still refused are sent again until
acknowledged, and the run waits until every acknowledged message is answered (at most
``drain_s``) and ``quiet_s`` longer for late duplicates.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tests.faults.cluster import FaultCluster
from tests.faults.figures import Figures, tally, unanswered
from tests.faults.load import SteadyLoad

Fault = Callable[[FaultCluster], Awaitable[None]]
_runs = itertools.count(1)  # each run its own Telegram chats, on a cluster shared by runs


@dataclass(frozen=True)
class Timing:
    warmup_s: float = 4.0
    after_s: float = 5.0
    drain_s: float = 60.0
    quiet_s: float = 2.0


@dataclass(frozen=True)
class Load:
    webhook_rate: float = 8.0  # messages a second
    telegram_rate: float = 2.0  # updates a second


async def run_scenario(
    cluster: FaultCluster,
    name: str,
    fault: Fault,
    *,
    load: Load | None = None,
    timing: Timing | None = None,
) -> Figures:
    """Run ``fault`` under steady load and return the figures (see the module docstring)."""
    load = load or Load()
    timing = timing or Timing()
    n = next(_runs)
    steady = SteadyLoad(
        cluster,
        f"{name}{n}-{random.getrandbits(24):06x}",
        webhook_rate=load.webhook_rate,
        telegram_rate=load.telegram_rate,
        chat_base=n * 1_000_000,
    )
    sending = asyncio.get_running_loop().create_task(steady.run_until_stopped())
    try:
        await asyncio.sleep(timing.warmup_s)
        await fault(cluster)
        fault_end = time.monotonic()
        await asyncio.sleep(timing.after_s)
    finally:
        steady.stop()
        await sending
    await steady.settle(timing.drain_s)
    deadline = time.monotonic() + timing.drain_s
    while unanswered(cluster, steady) and time.monotonic() < deadline:  # noqa: ASYNC110 - the fakes' records
        await asyncio.sleep(0.25)
    await asyncio.sleep(timing.quiet_s)
    figures = tally(name, cluster, steady, fault_end=fault_end)
    figures.dead, figures.undelivered = await cluster.dead_letters()
    return figures


# -- the faults ----------------------------------------------------------------------------


def no_fault(duration_s: float) -> Fault:
    """The baseline: the same load and times, nothing breaks."""

    async def fault(_: FaultCluster) -> None:
        await asyncio.sleep(duration_s)

    return fault


def kill_workers(kills: int, every_s: float, *, seed: int | None = None) -> Fault:
    """SIGKILL a random worker that is up every ``every_s`` and start it again at once (it
    takes a few seconds of CPU to be up again). Over when the last one was killed."""
    rng = random.Random(seed)

    async def fault(cluster: FaultCluster) -> None:
        for n in range(kills):
            if n:
                await asyncio.sleep(every_s)
            while not (up := [i for i, w in enumerate(cluster.workers) if w.is_up()]):  # noqa: ASYNC110 - other processes' logs
                await asyncio.sleep(0.1)
            index = rng.choice(up)
            await cluster.kill_worker(index)
            await cluster.start_worker(index)

    return fault


def restart_redis(down_s: float) -> Fault:
    """SIGKILL the Redis server, leave it down ``down_s``, start it again on its AOF. Over
    when it answers again."""

    async def fault(cluster: FaultCluster) -> None:
        await cluster.kill_redis()
        await asyncio.sleep(down_s)
        await cluster.start_redis()

    return fault


def provider_down(down_s: float, *, refused_share: float = 0.5) -> Fault:
    """The provider answers 503 to every call, then (the last ``refused_share`` of the time)
    refuses connections; then it is back."""

    async def fault(cluster: FaultCluster) -> None:
        cluster.provider_fails(503)
        await asyncio.sleep(down_s * (1 - refused_share))
        await cluster.provider_refuses()
        await asyncio.sleep(down_s * refused_share)
        await cluster.provider_back()

    return fault


def telegram_down(down_s: float, status: int = 502) -> Fault:
    """Telegram's ``sendMessage`` answers ``status`` for ``down_s``."""

    async def fault(cluster: FaultCluster) -> None:
        cluster.telegram.down("sendMessage", status)
        await asyncio.sleep(down_s)
        cluster.telegram.up("sendMessage")

    return fault
