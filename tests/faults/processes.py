"""The processes of a fault cluster: a redis-server to kill and restart on its AOF, peakdesk
processes to kill with SIGKILL and start again, and a TCP gate that makes a fake of the
outside world refuse connections like a host that went down.

Every process writes its output to a file of its own per start (``<name>.<n>.log``), kept for
the figures and the log scan after the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import aiohttp
from redis.asyncio import Redis
from redis.exceptions import RedisError

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ChildProcess:
    """One command that can be started, killed (SIGKILL) and started again; each start logs
    to ``<workdir>/<name>.<start>.log``."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        workdir: Path,
        *,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.workdir = workdir
        self.env = dict(env) if env is not None else None
        self.process: asyncio.subprocess.Process | None = None
        self.logs: list[Path] = []
        self.kills = 0  # SIGKILLs we sent
        self.started_at = 0.0

    @property
    def log(self) -> Path:
        return self.logs[-1]

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self) -> None:
        assert not self.running, f"{self.name} is running"
        log = self.workdir / f"{self.name}.{len(self.logs) + 1}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv,
                cwd=self.workdir,  # no stray .env file is read
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )
        self.started_at = time.monotonic()

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as when the machine or the OOM killer takes it."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            self.kills += 1
            await self.process.wait()

    async def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``."""
        if self.process is None or self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(timeout):
                await self.process.wait()
        except TimeoutError:
            await self.kill()

    def exited_by_itself(self) -> str | None:
        """A description when the process ended without our signal (a crash), else None."""
        if self.process is None or self.process.returncode is None:
            return None
        if self.process.returncode == -signal.SIGKILL and self.kills:
            return None
        return f"{self.name} exited with {self.process.returncode} (log {self.log.name})"


class RedisServer(ChildProcess):
    """``redis-server`` on a free loopback port, its AOF in ``workdir``: killed with SIGKILL
    and started again on the same port and the same AOF, it has every write it acknowledged.

    ``appendfsync everysec`` by default, as the README tells production to run: Redis writes
    the AOF buffer to the file before it answers the clients, so a killed server process loses
    nothing it acknowledged (the kernel has the data); only a crash of the host can lose the
    last second, which ``always`` would prevent by an fsync per event-loop turn. What these
    tests kill is the process, so ``everysec`` tests the documented configuration, and its
    one exception (a write postponed while an earlier fsync takes over a second, logged as
    "fsync is taking too long") is reported by :meth:`slow_fsyncs`.
    """

    def __init__(self, workdir: Path, *, appendfsync: str = "everysec") -> None:
        self.port = free_port()
        self.data_dir = workdir / "redis-data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        argv = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.data_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            appendfsync,
            "--save",
            "",
            "--daemonize",
            "no",
        ]
        super().__init__("redis", argv, workdir)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Until the server answers PING (after loading its AOF)."""
        client = Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=1)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    if not self.running:
                        raise RuntimeError(f"redis-server exited: {self.log.read_text()[-2000:]}")
                    with contextlib.suppress(RedisError, OSError):
                        if await client.ping():
                            return
                    await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    def slow_fsyncs(self) -> int:
        """How often the server postponed an AOF write past a slow fsync (acknowledged writes
        then stood in its memory only)."""
        return sum(
            log.read_text(errors="replace").count("fsync is taking too long") for log in self.logs
        )


class PeakdeskProcess(ChildProcess):
    """``python -m bots.cli <args>``: a gateway (``serve --workers 0 --port N``) or a worker
    (``worker --workers K``)."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        workdir: Path,
        env: Mapping[str, str],
        *,
        port: int | None = None,
    ) -> None:
        super().__init__(name, [sys.executable, "-m", "bots.cli", *args], workdir, env=env)
        self.port = port

    @property
    def url(self) -> str:
        assert self.port is not None
        return f"http://127.0.0.1:{self.port}"

    async def wait_ready(self, timeout: float = 90.0) -> None:
        """A gateway: until /readyz answers 200. A worker: until it logged that it started."""
        async with asyncio.timeout(timeout):
            while not await self._ready():
                if not self.running:
                    tail = self.log.read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"{self.name} exited during start-up:\n{tail}")
                await asyncio.sleep(0.1)

    def is_up(self) -> bool:
        """A worker running and past its start-up (it logged so)."""
        return self.running and any(
            str(record.get("msg", "")).startswith("worker started")
            for record in json_records(self.log)
        )

    async def _ready(self) -> bool:
        if self.port is None:
            return self.is_up()
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(self.url + "/readyz", timeout=aiohttp.ClientTimeout(total=2)) as r,
            ):
                return r.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False


def json_records(log: Path) -> list[dict[str, object]]:
    """The JSON log records of one log file (other lines skipped)."""
    records: list[dict[str, object]] = []
    for line in log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict):
                records.append(record)
    return records


class PortGate:
    """A TCP forwarder on a loopback port of its own in front of ``upstream_port``.

    :meth:`close` stops listening and cuts the open connections: clients get "connection
    refused", as from a host that is down; :meth:`open` listens on the same port again.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._streams: set[asyncio.StreamWriter] = set()

    @property
    def is_open(self) -> bool:
        return self._server is not None

    async def open(self) -> None:
        if self._server is not None:
            return
        self._server = await asyncio.start_server(
            self._forward, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._streams):
            writer.transport.abort()
        self._streams.clear()
        await self._server.wait_closed()
        self._server = None

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        self._streams.update((writer, up_writer))
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            for stream in (writer, up_writer):
                self._streams.discard(stream)
                stream.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy one direction; end of input is passed on, an error cuts the other side too."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, RuntimeError):
        writer.transport.abort()
