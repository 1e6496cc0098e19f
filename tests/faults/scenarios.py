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

from tests.faults.cluster import FaultCluster, LaneCensus
from tests.faults.figures import Figures, tally, unanswered
from tests.faults.load import SteadyLoad
from tests.redis_cluster import Failover

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


class MasterFailover:
    """On a Redis Cluster with lanes (``ClusterOptions(redis_cluster=True, shards=N)``): SIGKILL
    a random worker that is up and start it again at once; ``worker_lead_s`` later SIGKILL the
    master of the lane holding the most conversations and wait until its replica took over
    (the load goes on meanwhile); ``down_s`` of load on the promoted replica; then start the
    killed node again on its AOF: it rejoins as a replica. Over when it has rejoined and every
    replica is in sync. A fault (call it with the cluster) that keeps what it did."""

    def __init__(
        self,
        *,
        down_s: float,
        kill_worker: bool = True,
        worker_lead_s: float = 1.0,
        seed: int | None = None,
    ) -> None:
        self.down_s = down_s
        self.kill_worker = kill_worker
        self.worker_lead_s = worker_lead_s
        self.rng = random.Random(seed)
        self.worker: int | None = None  # the worker killed
        self.census: LaneCensus | None = None  # where the lanes lived just before the kill
        self.lane: int | None = None  # the lane whose master was killed
        self.failover: Failover | None = None
        self.rejoin_s: float | None = None  # the killed node's start until it rejoined

    async def __call__(self, cluster: FaultCluster) -> None:
        if self.kill_worker:
            while not (up := [i for i, w in enumerate(cluster.workers) if w.is_up()]):  # noqa: ASYNC110 - other processes' logs
                await asyncio.sleep(0.1)
            self.worker = self.rng.choice(up)
            await cluster.kill_worker(self.worker)
            await cluster.start_worker(self.worker)
            await asyncio.sleep(self.worker_lead_s)
        self.census = await cluster.lane_census()
        self.lane = self.census.busiest_lane()
        self.failover = await cluster.kill_master_of(cluster.lane_tag(self.lane))
        await asyncio.sleep(self.down_s)
        started = time.monotonic()
        await cluster.restart_redis_node(self.failover.killed)
        self.rejoin_s = time.monotonic() - started

    def summary(self) -> str:
        """What happened, for the figures."""
        if self.census is None or self.failover is None or self.lane is None:
            return "failover: not run"
        census, failover = self.census, self.failover
        masters = sorted(set(census.lane_masters.values()))
        lanes_of_victim = sorted(
            n for n, master in census.lane_masters.items() if master == failover.killed.address
        )
        keys = ", ".join(f"{m} {census.keys_per_master[m]}" for m in masters)
        worker = "none" if self.worker is None else f"worker-{self.worker}"
        rejoin = "-" if self.rejoin_s is None else f"{self.rejoin_s:.1f}s"
        return (
            f"failover: {len(census.lane_masters)} lanes on {len(masters)} masters (lane keys "
            f"{keys}; conversations per lane {dict(sorted(census.conversations.items()))}); "
            f"killed -9 master {failover.killed.address} of lanes {lanes_of_victim} (busiest "
            f"lane {self.lane}; {{prefix}} on {census.root_master}), replica "
            f"{failover.promoted.address} promoted and cluster ok after "
            f"{failover.seconds:.1f}s, killed node rejoined as a replica {rejoin} after its "
            f"restart; worker killed -9: {worker}"
        )
