"""A peakdesk cluster of real processes for fault tests: its own Redis server (AOF on) or
Redis Cluster (``ClusterOptions(redis_cluster=True)``), two gateways (``peakdesk serve
--workers 0``) and three workers (``peakdesk worker``), wired to fakes of the outside world
that run in the caller's event loop: an OpenAI-compatible provider behind a gate that can
refuse connections, a gateway's callback endpoint and the Telegram Bot API.

    async with FaultCluster(tmp_path) as cluster:
        await cluster.kill_worker(0)           # SIGKILL
        await cluster.start_worker(0)
        await cluster.kill_redis()             # SIGKILL, then the same port and AOF again:
        await cluster.start_redis()
        cluster.provider_fails(503)            # every provider call answered 503
        await cluster.provider_refuses()       # connection refused
        await cluster.provider_back()
        cluster.telegram.down("sendMessage", 502)

    options = ClusterOptions(redis_cluster=True, shards=6)
    async with FaultCluster(tmp_path, options) as cluster:   # on a LocalRedisCluster
        census = await cluster.lane_census()   # which master holds which lane, and its keys
        failover = await cluster.kill_master_of(cluster.lane_tag(0))  # until promoted
        await cluster.restart_redis_node(failover.killed)  # it rejoins as a replica

Every process gets the same settings (one key prefix, secrets of this cluster's own, JSON
logs, short claim and probe times) and nothing else of the caller's environment's peakdesk
settings; its output stays in ``workdir`` for :meth:`FaultCluster.log_lines`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

from redis.crc import key_slot

from core.keys import Keys
from core.store import connect_redis
from tests.fakes.callback_receiver import CallbackReceiver
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.telegram_api import BOT_ID, FakeTelegramAPI
from tests.faults.processes import (
    REPO_ROOT,
    PeakdeskProcess,
    PortGate,
    RedisServer,
    free_port,
)
from tests.redis_cluster import Failover, LocalRedisCluster, Node

# Settings of the caller's environment that never reach the cluster's processes.
FOREIGN_SETTINGS = (
    "PEAKDESK_",
    "HOLYSHEEP_",
    "WEBHOOK_",
    "REDIS_",
    "TELEGRAM_",
    "SLACK_",
    "WECHAT_",
    "STORE_",
)


@dataclass(frozen=True)
class ClusterOptions:
    """The shape of the cluster and the settings that make faults show within seconds."""

    gateways: int = 2
    workers: int = 3
    loops: int = 2  # worker loops per worker process
    max_concurrent: int = 20  # LLM calls in flight per worker process
    claim_idle_s: float = 2.0  # a killed worker's messages are taken over after this
    provider_probe_s: float = 3.0  # the provider circuit breaker's probe period
    llm_latency_s: float = 0.2  # the fake provider's answer time
    appendfsync: str = "everysec"  # see RedisServer (and LocalRedisCluster's nodes)
    # A LocalRedisCluster (3 masters with a replica each, tests/redis_cluster.py) instead of
    # one redis-server: PEAKDESK_REDIS_CLUSTER=true, REDIS_URL a replica's node (never the
    # master a scenario kills, so a process started during a failover finds the cluster).
    redis_cluster: bool = False
    shards: int = 1  # PEAKDESK_SHARDS: the queue's lanes
    settings: Mapping[str, str] = field(default_factory=dict)  # more (or other) settings


class FaultCluster:
    """Redis, gateways, workers and the fakes (see the module docstring)."""

    def __init__(self, workdir: Path, options: ClusterOptions | None = None) -> None:
        self.workdir = workdir
        self.options = options = options or ClusterOptions()
        self.prefix = f"fault{uuid.uuid4().hex[:8]}"  # on a Redis Cluster: see _spread_prefix
        self.webhook_secret = secrets.token_urlsafe(32)
        self.llm_key = "sk-" + secrets.token_urlsafe(24)
        self.bot_token = f"{BOT_ID}:{secrets.token_urlsafe(27)}"
        self.telegram_secret = secrets.token_urlsafe(32)
        self.redis = (
            None if options.redis_cluster else RedisServer(workdir, appendfsync=options.appendfsync)
        )
        self.redis_cluster: LocalRedisCluster | None = None  # started with the cluster
        self._seed: Node | None = None  # the node of REDIS_URL on a Redis Cluster
        self.failovers: list[Failover] = []
        self.llm = FakeOpenAI(latency=options.llm_latency_s, api_key=self.llm_key)
        self.provider = PortGate(0)  # the upstream port is known once the fake listens
        self.receiver = CallbackReceiver(secret=self.webhook_secret)
        self.telegram = FakeTelegramAPI(token=self.bot_token)
        self.gateways: list[PeakdeskProcess] = []
        self.workers: list[PeakdeskProcess] = []
        self._stack = contextlib.AsyncExitStack()

    @property
    def secrets(self) -> tuple[str, ...]:
        """What must never appear in a log line."""
        return (
            self.webhook_secret,
            self.llm_key,
            self.bot_token,
            self.bot_token.split(":", 1)[1],
            self.telegram_secret,
        )

    @property
    def processes(self) -> list[PeakdeskProcess]:
        return [*self.gateways, *self.workers]

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        await self._stack.enter_async_context(self.llm)
        upstream = urlsplit(self.llm.base_url).port
        assert upstream is not None
        self.provider.upstream_port = upstream
        await self.provider.open()
        self._stack.push_async_callback(self.provider.close)
        await self._stack.enter_async_context(self.receiver)
        await self._stack.enter_async_context(self.telegram)
        if self.redis is not None:
            await self.redis.start()
            await self.redis.wait_ready()
        else:
            self.redis_cluster = await self._stack.enter_async_context(
                LocalRedisCluster(appendfsync=self.options.appendfsync)
            )
            self.prefix = await asyncio.to_thread(self._spread_prefix)
            self._seed = await asyncio.to_thread(self._a_replica)
        env = self.environment()
        n = self.options
        for i in range(n.gateways):
            port = free_port()
            args = ["serve", "--workers", "0", "--port", str(port)]
            self.gateways.append(
                PeakdeskProcess(f"gateway-{i}", args, self.workdir, env, port=port)
            )
        for i in range(n.workers):
            args = ["worker", "--workers", str(n.loops)]
            self.workers.append(PeakdeskProcess(f"worker-{i}", args, self.workdir, env))
        for process in self.processes:
            await process.start()
        await asyncio.gather(*(p.wait_ready() for p in self.processes))

    async def stop(self) -> None:
        """SIGTERM every peakdesk process (SIGKILL after 30 s), then Redis and the fakes."""
        await asyncio.gather(*(p.stop() for p in self.processes))
        if self.redis is not None:
            await self.redis.kill()
        await self._stack.aclose()  # the Redis Cluster's nodes too

    @property
    def redis_url(self) -> str:
        if self.redis is not None:
            return self.redis.url
        assert self._seed is not None, "the Redis Cluster is not started"
        return f"redis://{self._seed.address}/0"

    def _spread_prefix(self) -> str:
        """A key prefix whose lanes' slots are served by every master (by 2 with 2 lanes): the
        hash tags of a random prefix can all fall on one master (1 time in 250 with 6 lanes
        on 3), and then a failover would test nothing that one Redis server did not."""
        assert self.redis_cluster is not None
        owners = _slot_owners(self.redis_cluster)
        masters = {port for _, _, port in owners}
        want = min(len(masters), self.options.shards)
        for _ in range(1000):
            prefix = f"fault{uuid.uuid4().hex[:8]}"
            tags = (_lane_tag(prefix, self.options.shards, n) for n in range(self.options.shards))
            if len({_owner(owners, tag) for tag in tags}) >= want:
                return prefix
        raise RuntimeError("no prefix spreads the lanes over the masters")

    def _a_replica(self) -> Node:
        assert self.redis_cluster is not None
        masters = self.redis_cluster.masters()
        return next(n for n in self.redis_cluster.nodes if n.running and n not in masters)

    def environment(self) -> dict[str, str]:
        """The environment of every peakdesk process of the cluster."""
        n = self.options
        env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_SETTINGS)}
        env.update(
            PYTHONPATH=str(REPO_ROOT),
            REDIS_URL=self.redis_url,
            PEAKDESK_REDIS_CLUSTER="true" if n.redis_cluster else "false",
            PEAKDESK_SHARDS=str(n.shards),
            PEAKDESK_REDIS_PREFIX=self.prefix,
            HOLYSHEEP_API_KEY=self.llm_key,
            HOLYSHEEP_BASE_URL=f"http://127.0.0.1:{self.provider.port}/v1",
            HOLYSHEEP_BACKOFF_BASE_S="0.2",
            HOLYSHEEP_TIMEOUT_S="5",
            HOLYSHEEP_DEADLINE_S="10",
            WEBHOOK_SECRET=self.webhook_secret,
            WEBHOOK_CALLBACK_URL=self.receiver.url,
            WEBHOOK_CALLBACK_TIMEOUT_S="5",
            TELEGRAM_BOT_TOKEN=self.bot_token,
            TELEGRAM_WEBHOOK_SECRET=self.telegram_secret,
            TELEGRAM_API_BASE=self.telegram.base_url,
            PEAKDESK_HOST="127.0.0.1",
            PEAKDESK_LOG_FORMAT="json",
            PEAKDESK_LOG_LEVEL="INFO",
            PEAKDESK_CLAIM_IDLE_S=str(n.claim_idle_s),
            PEAKDESK_PROVIDER_PROBE_S=str(n.provider_probe_s),
            PEAKDESK_RETRY_AFTER_S="1",
            PEAKDESK_MAX_CONCURRENT=str(n.max_concurrent),
            PEAKDESK_FLOOD_LIMIT="0",  # the load is many customers of one gateway, no flood
            PEAKDESK_SHUTDOWN_GRACE_S="0",
        )
        env.update(n.settings)
        return env

    # -- faults ---------------------------------------------------------------------------

    async def kill_worker(self, index: int) -> None:
        await self.workers[index].kill()

    async def start_worker(self, index: int) -> None:
        """Start a killed worker again (without waiting for it to be ready)."""
        await self.workers[index].start()

    async def kill_redis(self) -> None:
        assert self.redis is not None, "on a Redis Cluster: kill_master_of"
        await self.redis.kill()

    async def start_redis(self) -> None:
        """The same port, the same AOF directory; returns once it answers."""
        assert self.redis is not None, "on a Redis Cluster: restart_redis_node"
        await self.redis.start()
        await self.redis.wait_ready()

    async def kill_master_of(self, key: str) -> Failover:
        """On the Redis Cluster: SIGKILL the master of ``key``'s slot; returns once a replica
        of it serves the slot and every node says ok (the load goes on meanwhile)."""
        assert self.redis_cluster is not None, "not on a Redis Cluster"
        failover = await asyncio.to_thread(self.redis_cluster.kill_master_of, key)
        self.failovers.append(failover)
        return failover

    async def restart_redis_node(self, node: Node) -> None:
        """Start a killed node of the Redis Cluster again (its AOF and nodes.conf); returns
        once it rejoined (a replaced master as a replica) and every replica is in sync."""
        assert self.redis_cluster is not None, "not on a Redis Cluster"
        await asyncio.to_thread(self.redis_cluster.restart, node)

    def provider_fails(self, status: int = 503) -> None:
        self.llm.down(status=status)

    async def provider_refuses(self) -> None:
        await self.provider.close()

    async def provider_back(self) -> None:
        self.llm.up()
        await self.provider.open()

    # -- inspection -----------------------------------------------------------------------

    def lane_tag(self, lane: int) -> str:
        """The hash tag of a lane (of every key with one lane)."""
        return _lane_tag(self.prefix, self.options.shards, lane)

    async def lane_census(self) -> LaneCensus:
        """On the Redis Cluster: which master serves each lane's slot, and the keys of this
        cluster's prefix that each master really holds (SCAN of each master itself)."""
        assert self.redis_cluster is not None, "not on a Redis Cluster"
        return await asyncio.to_thread(self._lane_census, self.redis_cluster)

    def _lane_census(self, redis_cluster: LocalRedisCluster) -> LaneCensus:
        owners = _slot_owners(redis_cluster)
        census = LaneCensus(
            lane_masters={
                n: f"127.0.0.1:{_owner(owners, self.lane_tag(n))}"
                for n in range(self.options.shards)
            },
            root_master=f"127.0.0.1:{_owner(owners, '{' + self.prefix + '}')}",
        )
        lane_key = re.compile(r"^\{" + re.escape(self.prefix) + r":(\d+)\}:(\w+)")
        for node in redis_cluster.masters():
            with node.client(timeout=5) as client:
                for key in client.scan_iter(match="{" + self.prefix + ":*", count=1000):
                    found = lane_key.match(str(key))
                    if found is None:
                        continue
                    lane = int(found[1])
                    census.keys_per_master[node.address] += 1
                    census.keys_per_lane[lane] += 1
                    census.conversations[lane] += found[2] == "hist"
        return census

    async def dead_letters(self) -> tuple[int, int]:
        """Entries in the dead letters (messages given up) and in the undelivered replies,
        every lane's (``PEAKDESK_SHARDS``)."""
        shards = int(self.environment().get("PEAKDESK_SHARDS", "1"))
        lanes = Keys(self.prefix, shards).lanes
        client = connect_redis(self.redis_url, cluster=self.options.redis_cluster)
        try:
            dead = [int(await client.xlen(k.dead_letters)) for k in lanes]
            undelivered = [int(await client.xlen(k.dead_deliveries)) for k in lanes]
        finally:
            await client.aclose()
        return sum(dead), sum(undelivered)

    def crashes(self) -> list[str]:
        """Processes that ended without our signal (Redis and the Redis Cluster's nodes too)."""
        servers = [] if self.redis is None else [self.redis]
        found = [c for p in (*self.processes, *servers) if (c := p.exited_by_itself())]
        for node in self.redis_cluster.nodes if self.redis_cluster is not None else ():
            # A node we killed has no process until it is started again.
            if node.process is not None and (code := node.process.poll()) is not None:
                found.append(f"redis-server {node.address} exited with {code}")
        return found

    def slow_fsyncs(self) -> int:
        """How often a Redis server postponed an AOF write past a slow fsync (see
        RedisServer.slow_fsyncs), every node's of a Redis Cluster."""
        if self.redis is not None:
            return self.redis.slow_fsyncs()
        nodes = self.redis_cluster.nodes if self.redis_cluster is not None else []
        return sum(
            log.read_text(errors="replace").count("fsync is taking too long")
            for node in nodes
            for log in node.log_files
            if log.exists()
        )

    def log_files(self) -> list[Path]:
        return [log for p in self.processes for log in p.logs]

    def log_lines(self) -> list[str]:
        """Every line the peakdesk processes wrote, all starts included: the hook for the
        log-leak scan (``tests/logscan.py``)."""
        return [
            line
            for log in self.log_files()
            for line in log.read_text(errors="replace").splitlines()
        ]

    def log_report(self) -> LogReport:
        """What the logs say about the run: non-JSON lines (tracebacks printed outside the
        logger), records at ERROR or above, and how often each kind of warning came."""
        report = LogReport()
        for process in self.processes:
            for n, log in enumerate(process.logs):
                lines = log.read_text(errors="replace").splitlines()
                # A SIGKILL can cut the last line of a killed start in two.
                cut = process.kills > 0 and (n < len(process.logs) - 1 or not process.running)
                for i, line in enumerate(lines):
                    try:
                        record = json.loads(line)
                    except ValueError:
                        record = None
                    if not isinstance(record, dict):
                        if not (cut and i == len(lines) - 1):
                            report.not_json.append(f"{log.name}: {line[:200]}")
                        continue
                    report.records += 1
                    level, text = record.get("level"), str(record.get("msg"))
                    if level in ("ERROR", "CRITICAL"):
                        report.errors.append(f"{log.name}: {text[:200]}")
                    elif level == "WARNING":
                        report.warnings[_kind(text)] += 1
        return report


def _lane_tag(prefix: str, shards: int, lane: int) -> str:
    return "{" + prefix + "}" if shards == 1 else "{" + f"{prefix}:{lane}" + "}"


def _slot_owners(redis_cluster: LocalRedisCluster) -> list[tuple[int, int, int]]:
    """``CLUSTER SLOTS`` as a running node sees it: (first slot, last slot, master's port)."""
    for node in redis_cluster.nodes:
        if node.running:
            with node.client(timeout=5) as client:
                ranges = client.execute_command("CLUSTER", "SLOTS")
            return [(int(start), int(end), int(master[1])) for start, end, master, *_ in ranges]
    raise RuntimeError("no node of the Redis Cluster is running")


def _owner(owners: list[tuple[int, int, int]], key: str) -> int:
    slot = key_slot(key.encode())
    return next(port for start, end, port in owners if start <= slot <= end)


@dataclass
class LaneCensus:
    """Where the lanes live on a Redis Cluster (node addresses ``127.0.0.1:<port>``)."""

    lane_masters: dict[int, str]  # lane -> the master serving its slot
    root_master: str  # the master of ``{<prefix>}`` (what every process shares)
    keys_per_master: Counter[str] = field(default_factory=Counter)  # lanes' keys it holds
    keys_per_lane: Counter[int] = field(default_factory=Counter)
    conversations: Counter[int] = field(default_factory=Counter)  # history keys per lane

    def busiest_lane(self) -> int:
        """The lane holding the most conversations (the most keys on a tie; lane 0 first)."""
        return max(
            self.lane_masters, key=lambda n: (self.conversations[n], self.keys_per_lane[n], -n)
        )


def _kind(text: str) -> str:
    """A log message with its particulars (tickets, numbers) taken out."""
    return re.sub(r"\d+(?:\.\d+)?", "N", re.sub(r"\bT[0-9A-F]{10,}\b", "T…", text))[:90]


@dataclass
class LogReport:
    records: int = 0
    not_json: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: Counter[str] = field(default_factory=Counter)
