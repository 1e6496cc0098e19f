"""A Redis Cluster of real ``redis-server`` processes on loopback ports, for tests.

    with LocalRedisCluster() as cluster:          # 3 masters, 1 replica each, about 2 s
        client = connect_redis(cluster.url, cluster=True)
        failover = cluster.kill_master_of("{pd}")  # SIGKILL, until its replica took over
        cluster.restart(failover.killed)           # it comes back as a replica

Each node runs with AOF on (``appendfsync everysec``, as the README tells production), a node
timeout of 1 s so a failover takes seconds, and ``cluster-replica-validity-factor 0`` so a
replica always stands for election however long it was cut off. The nodes, their AOFs,
``nodes-<port>.conf`` and logs live in a temporary directory removed on exit.

The methods block (they start and kill processes and poll the nodes): from a test's event
loop use ``async with`` and call them with ``asyncio.to_thread``, so the service under test
keeps running meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from redis import Redis
from redis.crc import key_slot
from redis.exceptions import RedisError

__all__ = ["ClusterUnavailable", "Failover", "LocalRedisCluster", "Node", "cluster_tools_missing"]

BUS_PORT_OFFSET = 10_000  # Redis Cluster's node-to-node bus listens on port + 10000
# Node ports (and their bus ports) below Linux's default ephemeral range (32768-60999), where
# no outgoing connection takes one between the check and the start.
PORTS = (15_000, 32_767 - BUS_PORT_OFFSET)


class ClusterUnavailable(RuntimeError):
    """The cluster could not be started, or did not heal in time."""


# What a poll of a node that is starting, dying or changing roles may raise: it polls again
# until its deadline (seen: an AttributeError from redis-py's handshake with a node that was
# just starting).
PROBE_ERRORS = (RedisError, OSError, ClusterUnavailable, StopIteration, AttributeError)


def cluster_tools_missing() -> str | None:
    """Why a local cluster cannot be started here (a skip reason), or None."""
    missing = [tool for tool in ("redis-server", "redis-cli") if shutil.which(tool) is None]
    return f"{' and '.join(missing)} not installed" if missing else None


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port_pair(taken: set[int]) -> int:
    """A loopback port free for the node and for its cluster bus (port + 10000)."""
    for _ in range(1000):
        port = random.randint(*PORTS)
        if port in taken or port + BUS_PORT_OFFSET in taken:
            continue
        if _port_is_free(port) and _port_is_free(port + BUS_PORT_OFFSET):
            return port
    raise ClusterUnavailable("no free pair of loopback ports")


@dataclass
class Node:
    """One ``redis-server`` of the cluster; ``process`` is None while it is down."""

    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    id: str = ""  # the cluster node id, known once the cluster is formed
    log_files: list[Path] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def client(self, timeout: float = 1.0) -> Redis:
        return Redis(
            host="127.0.0.1",
            port=self.port,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            decode_responses=True,
            protocol=2,  # no HELLO handshake: the probes only read plain replies
        )

    def log_tail(self, chars: int = 2000) -> str:
        if not self.log_files or not self.log_files[-1].exists():
            return ""
        return self.log_files[-1].read_text(errors="replace")[-chars:]


@dataclass(frozen=True)
class Failover:
    """A master killed and its replica promoted."""

    killed: Node
    promoted: Node
    killed_at: float  # time.monotonic() of the SIGKILL
    seconds: float  # from the SIGKILL until the replica served the slot and all said ok


class LocalRedisCluster:
    """``masters`` masters with ``replicas`` replicas each, formed with ``redis-cli --cluster
    create`` (a sync context manager; see the module docstring)."""

    def __init__(
        self,
        *,
        masters: int = 3,
        replicas: int = 1,
        node_timeout_ms: int = 1000,
        appendfsync: str = "everysec",
        start_timeout: float = 30.0,
    ) -> None:
        reason = cluster_tools_missing()
        if reason:
            raise ClusterUnavailable(reason)
        self.master_count = masters
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.appendfsync = appendfsync
        self.start_timeout = start_timeout
        self.nodes: list[Node] = []
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    # -- life cycle -------------------------------------------------------------------------

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await asyncio.to_thread(self.__enter__)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    def start(self) -> None:
        """Start the nodes, form the cluster, wait until every node says it is ok."""
        self._tmp = tempfile.TemporaryDirectory(prefix="peakdesk-cluster-")
        root = Path(self._tmp.name)
        taken: set[int] = set()
        for _ in range(self.master_count * (1 + self.replicas)):
            port = _free_port_pair(taken)
            taken.update((port, port + BUS_PORT_OFFSET))
            workdir = root / str(port)
            workdir.mkdir()
            self.nodes.append(Node(port, workdir))
        for node in self.nodes:
            self._spawn(node)
        deadline = time.monotonic() + self.start_timeout
        for node in self.nodes:
            self._wait_for_ping(node, deadline)
        self._create()
        self._wait_until_ok(deadline)
        for node in self.nodes:
            with node.client() as client:
                node.id = str(client.execute_command("CLUSTER", "MYID"))
        self._wait_until_replicas_in_sync(deadline)

    def stop(self) -> None:
        """SIGKILL every node (nothing to keep) and remove the directory."""
        for node in self.nodes:
            self._kill(node)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def _spawn(self, node: Node) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None
        node.starts += 1
        log_file = node.workdir / f"redis.{node.starts}.log"
        node.log_files.append(log_file)
        # The arguments of a cluster node; a restart keeps nodes-<port>.conf and the AOF, so
        # the node rejoins with its identity and data.
        argv = [
            binary,
            "--port",
            str(node.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(node.workdir),
            "--logfile",
            str(log_file),
            "--daemonize",
            "no",
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            f"nodes-{node.port}.conf",
            "--cluster-node-timeout",
            str(self.node_timeout_ms),
            "--cluster-replica-validity-factor",
            "0",
            # A replica's first full sync at once, not after the default 5 s wait for more
            # replicas: until it is in sync, a failover would lose everything.
            "--repl-diskless-sync-delay",
            "0",
            "--appendonly",
            "yes",
            "--appendfsync",
            self.appendfsync,
            "--save",
            "",
        ]
        node.process = subprocess.Popen(  # noqa: S603 - our own fixed argv
            argv, cwd=node.workdir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
        )

    def _kill(self, node: Node) -> None:
        if node.process is not None and node.process.poll() is None:
            node.process.send_signal(signal.SIGKILL)
            node.process.wait(10)
        node.process = None

    def _wait_for_ping(self, node: Node, deadline: float) -> None:
        with node.client(0.5) as client:
            while True:
                if not node.running:
                    raise ClusterUnavailable(
                        f"redis-server on {node.port} exited:\n{node.log_tail()}"
                    )
                with contextlib.suppress(*PROBE_ERRORS):
                    if client.ping():
                        return
                if time.monotonic() > deadline:
                    raise ClusterUnavailable(f"redis-server on {node.port} does not answer")
                time.sleep(0.02)

    def _create(self) -> None:
        cli = shutil.which("redis-cli")
        assert cli is not None
        done = subprocess.run(  # noqa: S603 - our own fixed argv
            [
                cli,
                "--cluster",
                "create",
                *(node.address for node in self.nodes),
                "--cluster-replicas",
                str(self.replicas),
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=self.start_timeout,
            check=False,
        )
        if done.returncode != 0:
            raise ClusterUnavailable(f"redis-cli --cluster create failed:\n{done.stdout[-3000:]}")

    # -- what tests ask -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The URL of one running node (any node: the client discovers the others)."""
        for node in self.nodes:
            if node.running:
                return f"redis://{node.address}/0"
        raise ClusterUnavailable("no node is running")

    def cluster_info(self, node: Node) -> dict[str, str]:
        with node.client() as client:
            text = str(client.execute_command("CLUSTER", "INFO"))
        return dict(
            line.split(":", 1) for line in text.splitlines() if ":" in line and line.strip()
        )

    def topology(self) -> dict[str, dict[str, str]]:
        """``CLUSTER NODES`` as one running node sees it: node id -> address, flags, master."""
        for node in self.nodes:
            if not node.running:
                continue
            with contextlib.suppress(*PROBE_ERRORS), node.client() as client:
                text = str(client.execute_command("CLUSTER", "NODES"))
                view: dict[str, dict[str, str]] = {}
                for line in text.splitlines():
                    fields = line.split()
                    if len(fields) < 8:
                        continue
                    view[fields[0]] = {
                        "address": fields[1].split("@", 1)[0],
                        "flags": fields[2],
                        "master": fields[3],
                        "slots": " ".join(fields[8:]),
                    }
                return view
        raise ClusterUnavailable("no node answers CLUSTER NODES")

    def masters(self) -> list[Node]:
        """The running nodes that are masters now, as the cluster sees it."""
        view = self.topology()
        return [
            node
            for node in self.nodes
            if node.running
            and node.id in view
            and "master" in view[node.id]["flags"]
            and "fail" not in view[node.id]["flags"]
        ]

    def master_of(self, key: str) -> Node:
        """The node whose slots hold ``key`` (the master serving it now)."""
        slot = key_slot(key.encode())
        for node in self.nodes:
            if not node.running:
                continue
            with contextlib.suppress(*PROBE_ERRORS), node.client() as client:
                for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
                    if int(start) <= slot <= int(end):
                        port = int(master[1])
                        return next(n for n in self.nodes if n.port == port)
        raise ClusterUnavailable(f"no node serves slot {slot}")

    def kill_master_of(self, key: str, timeout: float = 30.0) -> Failover:
        """SIGKILL the master of ``key``'s slot and wait until one of its replicas is master
        of that slot and every running node says ``cluster_state:ok``."""
        victim = self.master_of(key)
        replicas = {
            node_id for node_id, seen in self.topology().items() if seen["master"] == victim.id
        }
        if not replicas:
            raise ClusterUnavailable(f"{victim.address} has no replica to promote")
        killed_at = time.monotonic()
        self._kill(victim)
        deadline = killed_at + timeout
        while True:
            with contextlib.suppress(*PROBE_ERRORS):
                promoted = self.master_of(key)
                if promoted.id in replicas and self._all_ok():
                    return Failover(victim, promoted, killed_at, time.monotonic() - killed_at)
            if time.monotonic() > deadline:
                raise ClusterUnavailable(
                    f"no replica of {victim.address} took over within {timeout} s"
                )
            time.sleep(0.02)

    def restart(self, node: Node, timeout: float = 30.0) -> None:
        """Start a killed node again on its port, AOF and ``nodes-<port>.conf``: it rejoins
        (a replaced master comes back as a replica of its successor); waits until every node
        says ok, the node is not failing, is a master with slots or a replica, and every
        replica is in sync."""
        if node.running:
            raise ClusterUnavailable(f"{node.address} is running")
        self._spawn(node)
        deadline = time.monotonic() + timeout
        self._wait_for_ping(node, deadline)
        while True:
            with contextlib.suppress(*PROBE_ERRORS):
                seen = self.topology().get(node.id, {"flags": "unknown", "slots": ""})
                # A replaced master starts as a master without slots, until it learns of its
                # successor and turns into its replica.
                settled = "slave" in seen["flags"] or bool(seen["slots"])
                if settled and "fail" not in seen["flags"] and self._all_ok():
                    break
            if time.monotonic() > deadline:
                raise ClusterUnavailable(f"{node.address} did not rejoin within {timeout} s")
            time.sleep(0.05)
        self._wait_until_replicas_in_sync(deadline)

    def _all_ok(self) -> bool:
        running = [node for node in self.nodes if node.running]
        try:
            return all(self.cluster_info(n).get("cluster_state") == "ok" for n in running)
        except PROBE_ERRORS:
            return False

    def _replicas_in_sync(self) -> bool:
        for node in self.nodes:
            if not node.running:
                continue
            with node.client() as client:
                info = client.info("replication")
            if info.get("role") == "slave" and (
                info.get("master_link_status") != "up" or info.get("master_sync_in_progress")
            ):
                return False
        return True

    def _wait_until_replicas_in_sync(self, deadline: float) -> None:
        """Until every running replica has finished its sync and follows its master."""
        while True:
            with contextlib.suppress(*PROBE_ERRORS):
                if self._replicas_in_sync():
                    return
            if time.monotonic() > deadline:
                raise ClusterUnavailable("the replicas did not get in sync with their masters")
            time.sleep(0.02)

    def _wait_until_ok(self, deadline: float) -> None:
        while not self._all_ok():
            if time.monotonic() > deadline:
                states = {
                    node.address: self.cluster_info(node).get("cluster_state")
                    for node in self.nodes
                }
                raise ClusterUnavailable(f"the cluster did not become ok: {states}")
            time.sleep(0.02)
