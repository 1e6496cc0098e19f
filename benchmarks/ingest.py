"""Webhook ingest rate: signed requests/s accepted and durably queued (202), beside a bare server.

Servers, each a subprocess pinned to the first CPU (one core, as the issue asks):

  bare               a minimal aiohttp app: ``POST /webhook/{gateway}`` reads the body,
                     ``json.loads`` it and answers 202 ``{"status": "queued"}`` (the baseline)
  peakdesk-redis     the real app, ``peakdesk serve --workers 0`` (gateway only) on the real
                     Redis at $PEAKDESK_BENCH_REDIS_URL (default redis://127.0.0.1:6379/14),
                     with a unique PEAKDESK_REDIS_PREFIX whose keys are deleted at the end
  peakdesk-fakeredis the same without REDIS_URL: the embedded in-process store (extra line)

The load generator runs on the second CPU: ``wrk`` (Debian package ``wrk``) with a Lua script
that sends precomputed, correctly signed requests (HMAC-SHA256 over "<ts>.<body>"), each with a
message id of its own, so every accepted request is a new message (a repeated id would be
answered 200 "duplicate"); only 202 answers count as accepted. Texts are Bitext customer
messages ($PEAKDESK_BITEXT_CSV, else ../shared/data/bitext/customer_support_train.csv beside the
repository; synthetic texts if absent). Without wrk, an aiohttp load generator in a subprocess
takes its place, and its own ceiling is what the bare line then shows.

Closed loop: --connections connections send back to back for --seconds per measurement, in
--rounds rounds (the order of the servers alternates), after a short warm-up of each server.
The verdict uses the median of the per-round ratios peakdesk-redis / bare, so a noisy
neighbour moves both sides of a pair rather than the verdict. Latencies are those of a
saturated server at that many connections (mostly queueing), not of an idle one.

Next to each figure: the CPU used by the server, the load generator, the Redis server and by
everything else on the machine during the measurement (in % of one core), which shows where
the bottleneck was. After the run, the entries in the three priority streams are counted and
compared with the 202 answers and the server's own admitted counter (durability check).

Target: peakdesk-redis >= 0.25x bare. Only 127.0.0.1 is used; the run takes about 1.5 min.
Run: ``python benchmarks/ingest.py`` from the repository root (with the venv active).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import hashlib
import hmac
import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BITEXT = REPO_ROOT.parent / "shared/data/bitext/customer_support_train.csv"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
SECRET = "bench-webhook-secret"
GATEWAY = "shop"
TARGET_RATIO = 0.25
CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVER_LIFETIME = 600.0  # the bare server exits by itself even if this process dies silently

# Cycles through the precomputed requests of a file ("<ts>\t<signature>\t<body>" per line);
# in "once" mode the thread stops when they run out, so no message id is sent twice.
WRK_SCRIPT = r"""
local reqs, n, i, once = {}, 0, 0, false
c202, c2xx, cnon2xx, exhausted = 0, 0, 0, 0
tid, nthreads = 0, 1
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  local path, gateway = args[1], args[3]
  once = args[2] == "once"
  nthreads = tonumber(args[4]) or 1
  local k = -1
  for line in io.lines(path) do
    k = k + 1
    if k % nthreads == tid then
      local ts, sig, body = line:match("^(%d+)\t([^\t]+)\t(.*)$")
      n = n + 1
      reqs[n] = wrk.format("POST", "/webhook/" .. gateway, {
        ["Content-Type"] = "application/json",
        ["X-Peakdesk-Timestamp"] = ts,
        ["X-Peakdesk-Signature"] = sig,
      }, body)
    end
  end
end

function request()
  i = i + 1
  if i > n then
    if once then
      exhausted = 1
      wrk.thread:stop()
      i = n
    else
      i = 1
    end
  end
  return reqs[i]
end

function response(status, headers, body)
  if status == 202 then
    c202 = c202 + 1
  elseif status >= 200 and status < 300 then
    c2xx = c2xx + 1
  else
    cnon2xx = cnon2xx + 1
  end
end

function done(summary, latency, requests)
  local a, b, c, e = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("c202")
    b = b + t:get("c2xx")
    c = c + t:get("cnon2xx")
    e = e + t:get("exhausted")
  end
  local errs = summary.errors
  io.write(string.format(
    'RESULT {"duration_us": %d, "responses": %d, "c202": %d, "c2xx": %d, "cnon2xx": %d, ' ..
    '"socket_errors": %d, "timeouts": %d, "exhausted": %d, "p50_us": %d, "p99_us": %d}\n',
    summary.duration, summary.requests, a, b, c,
    errs.connect + errs.read + errs.write, errs.timeout, e,
    latency:percentile(50.0), latency:percentile(99.0)))
end
"""


# -- request generation --------------------------------------------------------------------


def load_texts(path: Path) -> tuple[list[str], str]:
    """Customer messages from the Bitext CSV (column ``instruction``), or synthetic ones."""
    if path.is_file():
        with path.open(newline="", encoding="utf-8") as file:
            texts = [row["instruction"] for row in csv.DictReader(file) if row["instruction"]]
        if texts:
            return texts, f"{len(texts)} Bitext texts from {path}"
    words = ["order", "parcel", "refund", "where", "is", "my", "cancel", "payment", "help"]
    rng = random.Random(7)
    texts = [" ".join(rng.choices(words, k=rng.randint(5, 14))) for _ in range(2000)]
    return texts, f"2000 synthetic texts ({path} not found)"


def sign(body: bytes, timestamp: str) -> str:
    mac = hmac.new(SECRET.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def write_requests(path: Path, tag: str, count: int, texts: Sequence[str]) -> None:
    """``count`` signed requests with unique message ids ``<tag>-<n>``, one per line."""
    rng = random.Random(tag)
    timestamp = str(int(time.time()))
    with path.open("w", encoding="utf-8") as out:
        for n in range(count):
            payload: dict[str, Any] = {
                "message_id": f"{tag}-{n}",
                "user_id": f"u{rng.randrange(50_000)}",
                "text": texts[rng.randrange(len(texts))],
                "metadata": {"locale": "en"},
            }
            if rng.random() < 0.2:
                payload["metadata"]["order_id"] = f"A{rng.randrange(10**6):06d}"
            body = json.dumps(payload, separators=(",", ":")).encode()
            out.write(f"{timestamp}\t{sign(body, timestamp)}\t{body.decode()}\n")


# -- processes -----------------------------------------------------------------------------


def pinned(cpu: int | None) -> Any:
    """A preexec_fn pinning the child to ``cpu`` before it runs (no threads exist here yet)."""
    if cpu is None:
        return None

    def pin() -> None:
        os.sched_setaffinity(0, {cpu})

    return pin


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
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    redis_url: str | None = None
    prefix: str | None = None
    admitted_202: int = 0  # 202s counted by the load generator, warm-up included
    runs: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 30.0) -> None:
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
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_bare(cpu: int | None, workdir: Path) -> Server:
    port = free_port()
    log = workdir / "bare.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, __file__, "--bare-server", str(port)],
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=pinned(cpu),
        )
    return Server("bare", port, process, log)


def start_peakdesk(
    name: str, cpu: int | None, workdir: Path, redis_url: str | None, prefix: str
) -> Server:
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PEAKDESK_", "HOLYSHEEP_", "WEBHOOK_", "REDIS_"))
    }
    env.update(
        WEBHOOK_SECRET=SECRET,
        WEBHOOK_CALLBACK_URL="http://127.0.0.1:9/cb",
        PEAKDESK_MAX_QUEUE="10000000",
        PEAKDESK_LOG_LEVEL="WARNING",
        PEAKDESK_REDIS_PREFIX=prefix,
        PEAKDESK_HOST="127.0.0.1",
        PEAKDESK_PORT=str(port),
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    entry = Path(sys.executable).parent / "peakdesk"
    command = [str(entry)] if entry.exists() else [sys.executable, "-m", "bots.cli"]
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, "serve", "--workers", "0"],
            cwd=workdir,  # no stray .env file is read
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=pinned(cpu),
        )
    return Server(name, port, process, log, redis_url, prefix)


# -- the bare baseline server (child process) ----------------------------------------------


async def bare_server(port: int) -> None:
    import threading

    from aiohttp import web

    async def webhook(request: web.Request) -> web.Response:
        json.loads(await request.read())
        return web.json_response({"status": "queued"}, status=202)

    async def readyz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ready"})

    app = web.Application()
    app.router.add_post("/webhook/{gateway}", webhook)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def wait_for_eof() -> None:  # the parent closed our stdin, or died
        sys.stdin.read()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=wait_for_eof, daemon=True).start()
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SERVER_LIFETIME)
    finally:
        await runner.cleanup()


# -- load generators -----------------------------------------------------------------------


@dataclass
class LoadResult:
    seconds: float
    c202: int
    c2xx: int  # other 2xx (200 duplicate)
    non2xx: int
    errors: int  # socket errors and timeouts
    p50_ms: float
    p99_ms: float
    exhausted: bool
    gen_cpu_s: float = 0.0


def run_wrk(
    url: str,
    requests_file: Path,
    once: bool,
    seconds: float,
    args: argparse.Namespace,
    script: Path,
) -> LoadResult:
    command = [
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url + f"/webhook/{GATEWAY}",
        "--",
        str(requests_file),
        "once" if once else "cycle",
        GATEWAY,
        str(args.threads),
    ]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        preexec_fn=pinned(args.gen_cpu),
        check=False,
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}\n{done.stderr}")
    r = json.loads(line[len("RESULT ") :])
    return LoadResult(
        seconds=r["duration_us"] / 1e6,
        c202=r["c202"],
        c2xx=r["c2xx"],
        non2xx=r["cnon2xx"],
        errors=r["socket_errors"] + r["timeouts"],
        p50_ms=r["p50_us"] / 1000,
        p99_ms=r["p99_us"] / 1000,
        exhausted=bool(r["exhausted"]),
    )


def run_python_loadgen(
    url: str,
    requests_file: Path,
    once: bool,
    seconds: float,
    args: argparse.Namespace,
    script: Path,
) -> LoadResult:
    command = [
        sys.executable,
        __file__,
        "--loadgen",
        url + f"/webhook/{GATEWAY}",
        str(requests_file),
        "once" if once else "cycle",
        str(args.connections),
        str(seconds),
    ]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        preexec_fn=pinned(args.gen_cpu),
        check=False,
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"load generator failed: {done.stdout}\n{done.stderr}")
    return LoadResult(**json.loads(line[len("RESULT ") :]))


def read_requests(requests_file: Path) -> list[tuple[bytes, dict[str, str]]]:
    prepared: list[tuple[bytes, dict[str, str]]] = []
    for line in requests_file.read_text(encoding="utf-8").splitlines():
        timestamp, signature, body = line.split("\t", 2)
        headers = {
            "Content-Type": "application/json",
            "X-Peakdesk-Timestamp": timestamp,
            "X-Peakdesk-Signature": signature,
        }
        prepared.append((body.encode(), headers))
    return prepared


async def python_loadgen(
    prepared: list[tuple[bytes, dict[str, str]]],
    url: str,
    once: bool,
    connections: int,
    seconds: float,
) -> LoadResult:
    """The fallback generator: ``connections`` keep-alive clients sending back to back."""
    import aiohttp

    latencies: list[float] = []
    counts = {"c202": 0, "c2xx": 0, "non2xx": 0, "errors": 0}
    state = {"next": 0, "exhausted": False}
    loop = asyncio.get_running_loop()
    until = loop.time() + seconds

    async def client(session: aiohttp.ClientSession) -> None:
        while loop.time() < until:
            index = state["next"]
            if index >= len(prepared):
                if once:
                    state["exhausted"] = True
                    return
                index = 0
            state["next"] = index + 1
            body, headers = prepared[index]
            started = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError):
                counts["errors"] += 1
                continue
            latencies.append(time.perf_counter() - started)
            key = "c202" if status == 202 else "c2xx" if 200 <= status < 300 else "non2xx"
            counts[key] += 1

    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(connections)))
        elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(q: float) -> float:
        return (
            latencies[min(len(latencies) - 1, int(len(latencies) * q))] * 1000 if latencies else 0
        )

    return LoadResult(
        seconds=elapsed,
        c202=counts["c202"],
        c2xx=counts["c2xx"],
        non2xx=counts["non2xx"],
        errors=counts["errors"],
        p50_ms=pct(0.50),
        p99_ms=pct(0.99),
        exhausted=bool(state["exhausted"]),
    )


# -- measurement ---------------------------------------------------------------------------


@dataclass
class Measurement:
    impl: str
    round: int
    load: LoadResult
    server_cpu: float  # % of one core, over the measurement
    gen_cpu: float
    redis_cpu: float
    other_cpu: float

    @property
    def rate(self) -> float:
        return self.load.c202 / self.load.seconds if self.load.seconds else 0.0


@dataclass
class Bench:
    args: argparse.Namespace
    workdir: Path
    texts: list[str]
    script: Path
    redis_pid: int | None
    generator: str
    files: Iterator[int] = field(default_factory=lambda: iter(range(1_000_000)))
    last_bare_rate: float = 0.0

    def measure(self, server: Server, round_no: int, seconds: float) -> Measurement:
        once = server.name != "bare"
        requests_file = self.workdir / f"req-{next(self.files)}.tsv"
        if once:
            # Enough distinct requests for the whole run: peakdesk is not faster than bare.
            ceiling = max(self.last_bare_rate, 2000.0) * 1.6 * seconds + 2 * self.args.connections
            count = min(self.args.max_requests, int(ceiling))
            write_requests(
                requests_file, f"{server.name}-{uuid.uuid4().hex[:6]}", count, self.texts
            )
        else:
            write_requests(requests_file, "bare", 20_000, self.texts)
        runner = run_wrk if self.generator == "wrk" else run_python_loadgen
        before = (
            proc_cpu_s(server.process.pid),
            children_cpu_s(),
            proc_cpu_s(self.redis_pid),
            machine_busy_s(),
            proc_cpu_s(os.getpid()),
        )
        started = time.perf_counter()
        load = runner(server.url, requests_file, once, seconds, self.args, self.script)
        wall = time.perf_counter() - started
        server_s = proc_cpu_s(server.process.pid) - before[0]
        gen_s = children_cpu_s() - before[1]
        redis_s = proc_cpu_s(self.redis_pid) - before[2]
        own_s = proc_cpu_s(os.getpid()) - before[4]
        other_s = machine_busy_s() - before[3] - server_s - gen_s - redis_s - own_s
        requests_file.unlink()
        load.gen_cpu_s = gen_s
        server.admitted_202 += load.c202
        server.runs += 1

        def pct(cpu_s: float) -> float:
            return 100 * cpu_s / wall

        m = Measurement(
            server.name,
            round_no,
            load,
            pct(server_s),
            pct(gen_s),
            pct(redis_s),
            max(0.0, pct(other_s)),
        )
        if server.name == "bare":
            self.last_bare_rate = load.c202 / load.seconds
        return m


def fmt_row(cells: Sequence[str], widths: Sequence[int]) -> str:
    return " ".join(
        c.ljust(w) if i == 0 else c.rjust(w)
        for i, (c, w) in enumerate(zip(cells, widths, strict=True))
    )


def report(measurements: list[Measurement], names: list[str], rounds: int) -> tuple[bool, float]:
    widths = (19, 9, 8, 8, 8, 7, 9, 7, 7, 7, 7)
    header = (
        "impl",
        "202/s",
        "p50 ms",
        "p99 ms",
        "non-2xx",
        "errors",
        "vs bare",
        "srvCPU",
        "genCPU",
        "redis",
        "other",
    )
    print("\nper round (CPU columns: % of one core during the measurement)")
    print(fmt_row((*header[:1], "round", *header[1:]), (19, 5, *widths[1:])))
    bare_by_round = {m.round: m.rate for m in measurements if m.impl == "bare"}
    for m in measurements:
        base = bare_by_round.get(m.round, 0.0)
        cells: tuple[str, ...] = (
            m.impl,
            str(m.round),
            f"{m.rate:,.0f}",
            f"{m.load.p50_ms:.1f}",
            f"{m.load.p99_ms:.1f}",
            str(m.load.non2xx),
            str(m.load.errors),
            f"{m.rate / base:.2f}x" if base else "-",
            f"{m.server_cpu:.0f}%",
            f"{m.gen_cpu:.0f}%",
            f"{m.redis_cpu:.0f}%",
            f"{m.other_cpu:.0f}%",
        )
        print(fmt_row(cells, (19, 5, *widths[1:])))

    print(f"\nsummary: medians over {rounds} rounds (vs bare: median of the per-round ratios)")
    print(fmt_row(header, widths))
    verdict_ratio = 0.0
    for name in names:
        rows = [m for m in measurements if m.impl == name]
        ratios = [m.rate / bare_by_round[m.round] for m in rows if bare_by_round.get(m.round)]
        ratio = median(ratios) if ratios else 0.0
        if name == "peakdesk-redis":
            verdict_ratio = ratio
        cells = (
            name,
            f"{median(m.rate for m in rows):,.0f}",
            f"{median(m.load.p50_ms for m in rows):.1f}",
            f"{median(m.load.p99_ms for m in rows):.1f}",
            str(sum(m.load.non2xx for m in rows)),
            str(sum(m.load.errors for m in rows)),
            f"{ratio:.2f}x",
            f"{median(m.server_cpu for m in rows):.0f}%",
            f"{median(m.gen_cpu for m in rows):.0f}%",
            f"{median(m.redis_cpu for m in rows):.0f}%",
            f"{median(m.other_cpu for m in rows):.0f}%",
        )
        print(fmt_row(cells, widths))
    bad = sum(m.load.non2xx + m.load.errors + m.load.c2xx for m in measurements)
    return verdict_ratio >= TARGET_RATIO and bad == 0, verdict_ratio


# -- durability check and clean-up ---------------------------------------------------------


def admitted_counter(server: Server) -> tuple[int, int]:
    """(peakdesk_messages_admitted total, peakdesk_queue_depth total) from /metrics."""
    admitted = depth = 0.0
    _, body = http_get(server.url + "/metrics", 10.0)
    for line in body.decode().splitlines():
        if line.startswith("peakdesk_messages_admitted_total{"):
            admitted += float(line.rsplit(" ", 1)[1])
        elif line.startswith("peakdesk_queue_depth{"):
            depth += float(line.rsplit(" ", 1)[1])
    return int(admitted), int(depth)


async def stream_lengths(url: str, prefix: str) -> int:
    from redis.asyncio import Redis

    client = Redis.from_url(url, decode_responses=True)
    try:
        tag = "{" + prefix + "}"
        return sum([int(await client.xlen(f"{tag}:q:{p}")) for p in (0, 1, 2)])
    finally:
        await client.aclose()


async def delete_keys(url: str, prefix: str) -> int:
    from redis.asyncio import Redis

    client = Redis.from_url(url, decode_responses=True)
    deleted = 0
    try:
        batch: list[str] = []
        async for key in client.scan_iter(match="{" + prefix + "}*", count=5000):
            batch.append(key)
            if len(batch) >= 5000:
                deleted += int(await client.unlink(*batch))
                batch = []
        if batch:
            deleted += int(await client.unlink(*batch))
    finally:
        await client.aclose()
    return deleted


async def redis_server_pid(url: str) -> int | None:
    from redis.asyncio import Redis

    client = Redis.from_url(url, decode_responses=True)
    try:
        info = await client.info("server")
        pid = int(info["process_id"])
    finally:
        await client.aclose()
    return pid


def durability(server: Server, connections: int) -> bool:
    admitted, depth = admitted_counter(server)
    if server.redis_url and server.prefix:
        stored = asyncio.run(stream_lengths(server.redis_url, server.prefix))
        where = "XLEN q:0+q:1+q:2 on Redis"
    else:
        stored = depth
        where = "queue depth (/metrics)"
    cut = admitted - server.admitted_202
    ok = stored == admitted and 0 <= cut <= server.runs * connections
    print(
        f"{server.name}: 202 answers received {server.admitted_202:,}; server admitted counter "
        f"{admitted:,}; {where} {stored:,} -> {'OK' if ok else 'MISMATCH'}"
        + (
            f" ({cut} admitted but unanswered: requests in flight when the load generator "
            f"stopped, at most {connections} per run)"
            if cut
            else ""
        )
    )
    return ok


# -- main ----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=7.0, help="per measurement")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up per server")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over all servers")
    parser.add_argument("--connections", type=int, default=64, help="load generator connections")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--max-requests", type=int, default=300_000, help="per peakdesk run")
    parser.add_argument("--no-fakeredis", action="store_true", help="skip peakdesk-fakeredis")
    parser.add_argument("--python-loadgen", action="store_true", help="do not use wrk")
    parser.add_argument("--bare-server", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--loadgen", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_server is not None:
        asyncio.run(bare_server(args.bare_server))
        return 0
    if args.loadgen is not None:
        url, path, mode, connections, seconds = args.loadgen
        prepared = read_requests(Path(path))
        result = asyncio.run(
            python_loadgen(prepared, url, mode == "once", int(connections), float(seconds))
        )
        print("RESULT " + json.dumps(result.__dict__), flush=True)
        return 0

    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, args.gen_cpu = (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)
    generator = "wrk" if shutil.which("wrk") and not args.python_loadgen else "python"
    redis_url = os.environ.get("PEAKDESK_BENCH_REDIS_URL", DEFAULT_REDIS_URL)
    texts, texts_note = load_texts(Path(os.environ.get("PEAKDESK_BITEXT_CSV", DEFAULT_BITEXT)))
    prefix = f"bench-ingest-{uuid.uuid4().hex[:8]}"
    redis_pid: int | None = asyncio.run(redis_server_pid(redis_url))
    if not Path(f"/proc/{redis_pid}/stat").exists():
        redis_pid = None  # not on this machine (or not visible): no CPU figure

    import aiohttp

    print(
        f"python {sys.version.split()[0]}, aiohttp {aiohttp.__version__}, "
        f"event loop policy {type(asyncio.get_event_loop_policy()).__name__} (all servers)"
    )
    if server_cpu is None:
        print("WARNING: one CPU only: servers and load generator share it")
    else:
        print(
            f"servers pinned to CPU {server_cpu}; "
            f"load generator ({generator}) to CPU {args.gen_cpu}"
        )
    print(
        f"load: {args.connections} connections, {args.seconds:g} s per measurement, "
        f"{args.rounds} rounds, {args.warmup:g} s warm-up per server; {texts_note}"
    )
    print(f"real Redis {redis_url} (server pid {redis_pid}, not pinned), key prefix {prefix}")
    if generator == "python":
        print(
            "NOTE: wrk not found: the aiohttp load generator is used; it may be the bottleneck "
            "(see its CPU column and the bare line, which is then the generator's ceiling)"
        )

    workdir = Path(tempfile.mkdtemp(prefix="peakdesk-ingest-"))
    script = workdir / "signed.lua"
    script.write_text(WRK_SCRIPT)
    servers: list[Server] = []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ok = True
    try:
        servers.append(start_bare(server_cpu, workdir))
        servers.append(start_peakdesk("peakdesk-redis", server_cpu, workdir, redis_url, prefix))
        if not args.no_fakeredis:
            servers.append(start_peakdesk("peakdesk-fakeredis", server_cpu, workdir, None, prefix))
        for server in servers:
            server.wait_ready()
        if args.gen_cpu is not None:
            os.sched_setaffinity(0, {args.gen_cpu})
        bench = Bench(args, workdir, texts, script, redis_pid, generator)
        for server in servers:  # warm-up: connections, caches, the Lua script loaded
            bench.measure(server, 0, args.warmup)
        measurements: list[Measurement] = []
        for round_no in range(1, args.rounds + 1):
            order = servers if round_no % 2 else [servers[0], *reversed(servers[1:])]
            for server in order:
                m = bench.measure(server, round_no, args.seconds)
                measurements.append(m)
                print(
                    f"  round {round_no} {server.name:<19} {m.rate:>8,.0f} 202/s "
                    f"p50 {m.load.p50_ms:.1f} ms p99 {m.load.p99_ms:.1f} ms "
                    f"(server CPU {m.server_cpu:.0f}%, generator CPU {m.gen_cpu:.0f}%)"
                    + (" [ran out of distinct requests]" if m.load.exhausted else ""),
                    flush=True,
                )
        met, ratio = report(measurements, [s.name for s in servers], args.rounds)
        print("\ndurability (every 202 must be in the streams):")
        for server in servers[1:]:
            ok &= durability(server, args.connections)
        print(
            f"\ntarget peakdesk-redis >= {TARGET_RATIO}x bare (median round ratio {ratio:.2f}x), "
            "no errors, durable"
        )
        print(f"target met: {'yes' if met and ok else 'no'}")
        return 0 if met and ok else 1
    finally:
        for server in servers:
            if server.process.stdin is not None:
                server.process.stdin.close()
            server.stop()
        with contextlib.suppress(Exception):
            deleted = asyncio.run(delete_keys(redis_url, prefix))
            print(f"cleaned up: {deleted:,} Redis keys under {{{prefix}}}, servers stopped")
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
