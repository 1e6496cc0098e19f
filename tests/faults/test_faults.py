"""Faults under steady load on a cluster of real processes: 2 gateways and 3 workers on a Redis
server of their own (AOF on), with the provider, the gateway's callback endpoint and the
Telegram Bot API faked in this process.

Every scenario asserts what a customer must be able to rely on whatever breaks: every message
sent is acknowledged (after retries), every acknowledged message is answered, none is lost,
none gets two different replies; and no process crashed by itself. The figures are printed
(``pytest -s`` shows them). The cluster is shared by the scenarios, in order, like a staging
system living through one bad day: starting five peakdesk processes costs about 25 s of CPU
(aiogram's types), more than a scenario. Heavier variants: ``benchmarks/faults.py``.

The Redis Cluster scenario (marker ``cluster``) runs first, on a cluster of its own: the same
processes on a Redis Cluster of 3 masters with a replica each (``tests/redis_cluster.py``)
and 6 lanes, one of whose masters is killed.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.faults.cluster import ClusterOptions, FaultCluster
from tests.faults.figures import Figures
from tests.faults.load import TEXTS
from tests.faults.scenarios import (
    MasterFailover,
    Timing,
    kill_workers,
    provider_down,
    restart_redis,
    run_scenario,
    telegram_down,
)
from tests.logscan import leaks
from tests.redis_cluster import cluster_tools_missing

pytestmark = [
    pytest.mark.faults,
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.timeout(180),
]

TIMING = Timing(warmup_s=3.0, after_s=4.0, drain_s=45.0, quiet_s=2.0)
# Outages of seconds instead of minutes: the reply retry ladder is shortened to match (3
# attempts, about 1.5 s, where the default 8 take about a minute), so an 8-s Telegram outage
# outlasts it as a minute-long one outlasts the default.
OPTIONS = ClusterOptions(settings={"WEBHOOK_CALLBACK_MAX_ATTEMPTS": "3"})
# The same on a Redis Cluster (3 masters, a replica each) with the queue in 6 lanes.
CLUSTER_OPTIONS = ClusterOptions(redis_cluster=True, shards=6, settings=OPTIONS.settings)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FaultCluster]:
    if shutil.which("redis-server") is None:  # the cluster runs a Redis server of its own
        message = "redis-server is not installed"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    workdir: Path = tmp_path_factory.mktemp("faults")
    async with FaultCluster(workdir, OPTIONS) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="module")
async def on_redis_cluster(tmp_path: Path) -> AsyncIterator[FaultCluster]:
    """A cluster of the scenario's own, on a Redis Cluster, stopped after it."""
    reason = cluster_tools_missing()
    if reason:
        message = f"no Redis Cluster for the fault suite: {reason}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    async with FaultCluster(tmp_path / "faults", CLUSTER_OPTIONS) as running:
        yield running


def check(figures: Figures, cluster: FaultCluster) -> None:
    print(f"\n{figures.line()}")
    assert figures.sent > 0
    assert figures.acknowledged == figures.sent, "messages never acknowledged"
    assert figures.lost == 0, f"lost: {figures.lost_keys[:10]}"
    assert figures.answered == figures.acknowledged
    assert figures.duplicates == 0, f"two different replies: {figures.duplicate_keys[:10]}"
    assert (figures.dead, figures.undelivered) == (0, 0)
    assert cluster.crashes() == []
    assert all(c.signature_ok for c in cluster.receiver.received)


def check_logs(cluster: FaultCluster) -> None:
    report = cluster.log_report()
    print(f"\nlog records {report.records}, errors {report.errors}, warnings:")
    for kind, count in report.warnings.most_common():
        print(f"  {count:>5} x {kind}")
    assert report.not_json == []
    assert report.errors == []
    lines = cluster.log_lines()
    assert lines
    private = (*cluster.secrets, *TEXTS)  # what the customers wrote is not logged either
    found = [leak for line in lines for leak in leaks(line, private)]
    assert found == []


# First: its processes and the shared cluster's (started by the next test) never compete for
# the CPU.
@pytest.mark.cluster
async def test_a_killed_redis_cluster_master_loses_and_repeats_nothing(
    on_redis_cluster: FaultCluster,
) -> None:
    cluster = on_redis_cluster
    fault = MasterFailover(down_s=2.0)
    figures = await run_scenario(cluster, "cluster", fault, timing=TIMING)
    print(f"\n{fault.summary()}", end="")
    check(figures, cluster)
    census, failover = fault.census, fault.failover
    assert census is not None and failover is not None and fault.lane is not None
    # The lanes lived on several masters: by their slots' owners and by the keys each held.
    assert len(set(census.lane_masters.values())) >= 2, census.lane_masters
    assert len([m for m, n in census.keys_per_master.items() if n]) >= 2, census
    assert census.lane_masters[fault.lane] == failover.killed.address
    assert census.keys_per_master[failover.killed.address] > 0  # the kill took lanes' keys
    assert cluster.redis_cluster is not None
    masters = await asyncio.to_thread(cluster.redis_cluster.masters)
    assert failover.killed.running and failover.killed not in masters  # back as a replica
    assert failover.promoted in masters
    assert all(p.running for p in cluster.processes)
    assert sum(w.kills for w in cluster.workers) == 1
    check_logs(cluster)


async def test_killed_workers_lose_and_repeat_nothing(cluster: FaultCluster) -> None:
    figures = await run_scenario(cluster, "kill", kill_workers(kills=3, every_s=3.0), timing=TIMING)
    check(figures, cluster)
    assert sum(w.kills for w in cluster.workers) == 3


async def test_redis_restarted_on_its_aof_loses_nothing(cluster: FaultCluster) -> None:
    figures = await run_scenario(cluster, "redis", restart_redis(down_s=3.0), timing=TIMING)
    check(figures, cluster)
    assert figures.refused > 0  # the gateways answered 503 while Redis was down
    print(f"slow AOF fsyncs: {cluster.slow_fsyncs()}")


async def test_provider_down_then_back(cluster: FaultCluster) -> None:
    figures = await run_scenario(cluster, "provider", provider_down(down_s=10.0), timing=TIMING)
    check(figures, cluster)
    assert figures.fallbacks > 0  # the outage was seen: customers got the apology
    assert figures.llm_back_s is not None  # and the provider answers again


async def test_telegram_api_failing_delays_replies_only(cluster: FaultCluster) -> None:
    figures = await run_scenario(cluster, "telegram", telegram_down(down_s=8.0), timing=TIMING)
    check(figures, cluster)
    assert figures.redelivered == 0


async def test_logs_are_json_and_carry_no_secret_or_customer_text(cluster: FaultCluster) -> None:
    """Runs last: every line the processes wrote, through all the faults above."""
    check_logs(cluster)
