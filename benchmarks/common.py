"""What the benchmark scripts share: processes, CPU accounting, Redis and the Bitext texts.

- processes: CPU pinning, a free loopback port, the server subprocess wrapper, an aiohttp app
  served until its parent says stop, ``peakdesk serve`` with a clean environment, and child
  processes that answer with one ``RESULT {json}`` line;
- CPU: seconds used by given processes, by the waited-for children (the load generator), by
  this process and by everything else on the machine, from /proc;
- Redis: the server's pid, the length of the priority streams, deleting a run's keys;
- texts: customer messages from the Bitext CSV.

Used by ingest.py, telegram_ingest.py and worker_path.py (run as scripts: each puts the
repository root on sys.path first).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from aiohttp import web
    from redis.asyncio import Redis

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BITEXT = REPO_ROOT.parent / "shared/data/bitext/customer_support_train.csv"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVER_LIFETIME = 600.0  # servers exit by themselves even if their parent dies silently
RESULT = "RESULT "  # the line a child process answers with: RESULT {json}


# -- configuration -------------------------------------------------------------------------


def bench_redis_url() -> str:
    """The Redis the benchmarks use: $PEAKDESK_BENCH_REDIS_URL, else database 14 on loopback."""
    return os.environ.get("PEAKDESK_BENCH_REDIS_URL", DEFAULT_REDIS_URL)


def two_cpus() -> tuple[int | None, int | None]:
    """(first, second) CPU this process may run on; (None, None) with one CPU only."""
    cpus = sorted(os.sched_getaffinity(0))
    return (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)


# -- texts ---------------------------------------------------------------------------------


def bitext_path() -> Path:
    """$PEAKDESK_BITEXT_CSV, else ../shared/data/bitext/customer_support_train.csv beside us."""
    return Path(os.environ.get("PEAKDESK_BITEXT_CSV", DEFAULT_BITEXT))


def read_bitext(path: Path) -> list[str]:
    """The customer messages (column ``instruction``) of the Bitext CSV; [] without the file."""
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as file:
        return [row["instruction"] for row in csv.DictReader(file) if row["instruction"]]


def load_texts(path: Path) -> tuple[list[str], str]:
    """Customer messages from the Bitext CSV, or synthetic ones; and a note saying which."""
    texts = read_bitext(path)
    if texts:
        return texts, f"{len(texts)} Bitext texts from {path}"
    words = ["order", "parcel", "refund", "where", "is", "my", "cancel", "payment", "help"]
    rng = random.Random(7)
    texts = [" ".join(rng.choices(words, k=rng.randint(5, 14))) for _ in range(2000)]
    return texts, f"2000 synthetic texts ({path} not found)"


# -- CPU accounting ------------------------------------------------------------------------


def pinned(cpu: int | None) -> Callable[[], None] | None:
    """A preexec_fn pinning the child to ``cpu`` before it runs (no threads exist there yet)."""
    if cpu is None:
        return None

    def pin() -> None:
        os.sched_setaffinity(0, {cpu})

    return pin


def proc_cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of a running process so far (0 when unknown)."""
    if pid is None:
        return 0.0
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_s() -> float:
    """CPU seconds spent busy (not idle, not iowait) by the whole machine so far."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / CLK_TCK


def children_cpu_s() -> float:
    """CPU seconds of this process's terminated and waited-for children (a load generator)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class CpuSnapshot:
    """The clocks at one moment: wall, this process, its children, the machine, ``procs``."""

    wall: float  # perf_counter()
    own: float  # CPU seconds of this process
    children: float
    machine: float
    procs: dict[str, float]

    @classmethod
    def take(cls, pids: Mapping[str, int | None]) -> CpuSnapshot:
        return cls(
            time.perf_counter(),
            time.process_time(),
            children_cpu_s(),
            machine_busy_s(),
            {name: proc_cpu_s(pid) for name, pid in pids.items()},
        )


@dataclass(frozen=True)
class CpuUse:
    """CPU seconds used between two snapshots; ``other`` is the rest of the machine's."""

    wall_s: float
    own_s: float
    children_s: float
    procs_s: dict[str, float]
    other_s: float

    @classmethod
    def between(cls, before: CpuSnapshot, after: CpuSnapshot) -> CpuUse:
        procs = {name: after.procs[name] - before.procs[name] for name in before.procs}
        own = after.own - before.own
        children = after.children - before.children
        other = after.machine - before.machine - own - children - sum(procs.values())
        return cls(after.wall - before.wall, own, children, procs, other)

    def pct(self, cpu_s: float) -> float:
        """``cpu_s`` in % of one core over the wall time (never below 0)."""
        return max(0.0, 100 * cpu_s / self.wall_s)


# -- child processes -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback)
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def metric_sums(url: str, *starts: str) -> list[int]:
    """Per line start in ``starts``, the sum of the samples of ``url``/metrics beginning so."""
    sums = [0.0] * len(starts)
    _, body = http_get(url + "/metrics", 10.0)
    for line in body.decode().splitlines():
        for n, start in enumerate(starts):
            if line.startswith(start):
                sums[n] += float(line.rsplit(" ", 1)[1])
    return [int(s) for s in sums]


def stop_process(process: subprocess.Popen[Any], timeout: float = 15.0) -> None:
    """Close its stdin, SIGTERM it, and kill it if it has not exited within ``timeout``."""
    if process.stdin is not None:
        with contextlib.suppress(OSError):
            process.stdin.close()
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class Server:
    """A server subprocess on 127.0.0.1 and what the load generator counted against it."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    accepted: int = 0  # answers with the accepted status, warm-up included
    runs: int = 0  # load generator runs against it

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                if http_get(self.url + "/readyz", 1.0)[0] == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {timeout:g} s")

    def stop(self) -> None:
        stop_process(self.process)


def start_server(
    name: str,
    port: int,
    command: Sequence[str],
    cpu: int | None,
    workdir: Path,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: int = subprocess.PIPE,
) -> Server:
    """``command`` pinned to ``cpu``, its output in ``workdir``/<name>.log; with the default
    stdin a pipe, which it watches (see :func:`serve_app`)."""
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=stdin,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=pinned(cpu),
        )
    return Server(name, port, process, log)


def start_peakdesk_serve(
    name: str,
    cpu: int | None,
    workdir: Path,
    redis_url: str | None,
    prefix: str,
    env: Mapping[str, str],
    profile: Path | None = None,
) -> Server:
    """``peakdesk serve --workers 0`` (gateway only) on a free port, on ``redis_url`` (None:
    the embedded store) under key prefix ``prefix``, with ``env`` and no other PEAKDESK_,
    HOLYSHEEP_, WEBHOOK_, REDIS_ or TELEGRAM_ settings; under cProfile with ``profile``."""
    port = free_port()
    settings = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PEAKDESK_", "HOLYSHEEP_", "WEBHOOK_", "REDIS_", "TELEGRAM_"))
    }
    settings.update(
        PEAKDESK_REDIS_PREFIX=prefix,
        PEAKDESK_MAX_QUEUE="10000000",
        PEAKDESK_LOG_LEVEL="WARNING",
        PEAKDESK_HOST="127.0.0.1",
        PEAKDESK_PORT=str(port),
        PYTHONPATH=str(REPO_ROOT),
        **env,
    )
    if redis_url:
        settings["REDIS_URL"] = redis_url
    entry = [sys.executable, "-m", "bots.cli"]
    if profile is not None:
        entry = [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "bots.cli"]
    return start_server(
        name,
        port,
        [*entry, "serve", "--workers", "0"],
        cpu,
        workdir,
        cwd=workdir,  # no stray .env file is read
        env=settings,
        stdin=subprocess.DEVNULL,
    )


async def serve_app(
    app: web.Application,
    port: int = 0,
    *,
    announce: bool = False,
    lifetime: float = SERVER_LIFETIME,
) -> None:
    """Serve ``app`` on 127.0.0.1:``port`` until SIGTERM or SIGINT, the end of stdin (the
    parent closed it, or died) or ``lifetime`` seconds; ``announce`` prints the port bound."""
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    if announce:
        print(runner.addresses[0][1], flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def wait_for_eof() -> None:
        sys.stdin.read()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=wait_for_eof, daemon=True).start()
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), lifetime)
    finally:
        await runner.cleanup()


def add_fake_llm(app: web.Application) -> None:
    """``POST /v1/chat/completions`` answering one fixed completion at once: a provider of
    zero latency, so a benchmark measures what peakdesk does around the call."""
    from aiohttp import web

    from tests.fakes.openai_server import completion_body

    answer = json.dumps(
        completion_body(
            "Thanks for reaching out! Your order is on its way and should arrive within two days.",
            prompt_tokens=120,
            completion_tokens=18,
            cached_tokens=96,
        )
    ).encode()

    async def chat(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=answer, content_type="application/json")

    app.router.add_post("/v1/chat/completions", chat)


def add_readyz(app: web.Application) -> None:
    """``GET /readyz`` answering 200 at once (what :meth:`Server.wait_ready` waits for)."""
    from aiohttp import web

    async def readyz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ready"})

    app.router.add_get("/readyz", readyz)


def emit_result(result: Mapping[str, Any]) -> None:
    """In a child process: the answer its parent reads with :func:`run_for_result`."""
    print(RESULT + json.dumps(result), flush=True)


def run_for_result(
    command: Sequence[str], what: str, *, cpu: int | None, timeout: float, log: Path | None = None
) -> dict[str, Any]:
    """Run ``command`` pinned to ``cpu`` and return the JSON of its ``RESULT`` line; its
    stderr goes to ``log`` when given (else it is captured for the error message)."""
    with contextlib.ExitStack() as stack:
        stderr: IO[str] | int = stack.enter_context(log.open("w")) if log else subprocess.PIPE
        done = subprocess.run(
            command,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            timeout=timeout,
            preexec_fn=pinned(cpu),
            check=False,
        )
    line = next((x for x in done.stdout.splitlines() if x.startswith(RESULT)), None)
    if line is None:
        output = f"\n{log.read_text()[-3000:]}" if log else f" {done.stdout}\n{done.stderr}"
        raise RuntimeError(f"{what} failed ({done.returncode}):{output}")
    result: dict[str, Any] = json.loads(line[len(RESULT) :])
    return result


# -- Redis ---------------------------------------------------------------------------------


def with_redis(url: str, use: Callable[[Redis], Awaitable[T]]) -> T:
    """``use`` a fresh client of ``url`` (decoded responses) in an event loop of its own."""

    async def run() -> T:
        from redis.asyncio import Redis

        client = Redis.from_url(url, decode_responses=True)
        try:
            return await use(client)
        finally:
            await client.aclose()

    return asyncio.run(run())


def redis_server_pid(url: str) -> int | None:
    """The Redis server's pid when it runs on this machine (for its CPU figures)."""

    async def pid(client: Redis) -> int:
        return int((await client.info("server"))["process_id"])

    found = with_redis(url, pid)
    return found if Path(f"/proc/{found}/stat").exists() else None


def stream_lengths(url: str, prefix: str) -> int:
    """Entries in the three priority streams (XLEN {prefix}:q:0, :q:1 and :q:2)."""

    async def lengths(client: Redis) -> int:
        return sum([int(await client.xlen(f"{{{prefix}}}:q:{p}")) for p in (0, 1, 2)])

    return with_redis(url, lengths)


def delete_keys(url: str, prefixes: Sequence[str]) -> int:
    """Unlink every key under each ``{prefix}``; returns how many were deleted."""

    async def delete(client: Redis) -> int:
        from core.store import delete_prefix

        return sum([await delete_prefix(client, prefix) for prefix in prefixes])

    return with_redis(url, delete)
