"""Telegram webhook ingest rate: updates/s accepted and durably queued (200) by our
``POST /telegram/webhook``, beside aiogram's own ``SimpleRequestHandler`` in the same run.

Servers, each a subprocess pinned to the first CPU (one core):

  aiogram    aiogram's ``SimpleRequestHandler(dispatcher, bot, secret_token=...)`` on
             ``/telegram/webhook`` with one empty message handler: it checks the secret,
             answers 200 at once and validates and dispatches the update (pydantic ``Update``)
             in a background task of the same process. It stores nothing. The reference.
  peakdesk   the real ``TelegramIngress`` + ``PriorityQueue`` on the real Redis at
             $PEAKDESK_BENCH_REDIS_URL (default redis://127.0.0.1:6379/14), mounted on the real
             app (``bots.http.build_app``: health, metrics, JSON errors), with a unique key
             prefix whose keys are deleted at the end. 200 only once the update is in a
             priority stream. (``peakdesk serve`` does not mount the Telegram channel yet.)
  bare       (extra line) a minimal aiohttp endpoint: reads the body, ``json.loads`` it,
             answers 200: the ceiling of any aiohttp server on this core.

The load generator runs on the second CPU: ``wrk`` (Debian package ``wrk``) with a Lua
script that cycles through precomputed, distinct update bodies (private text messages with
Bitext customer texts, each with its own ``update_id`` and ``message_id``) and the secret
header. For peakdesk each body is sent once ("once" mode), so every 200 is a newly queued
message; aiogram and bare cycle through theirs. Only 200 answers count as accepted.

Closed loop: --connections connections send back to back for --seconds per measurement, in
--rounds rounds (server order alternates), after a warm-up of each server. The verdict is the
median of the per-round ratios peakdesk / aiogram. Next to each figure: CPU used by the
server, the load generator, Redis and everything else (% of one core).

Durability: after the run, the entries in the three priority streams (XLEN) must equal the
server's admitted counter, and the 200s received may fall short of it by at most one request
in flight per connection per run.

Target: peakdesk >= 1.0x aiogram. Only 127.0.0.1 is used; the run takes about 1.5 min.
Run: ``python benchmarks/telegram_ingest.py`` from the repository root (venv active).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
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
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BITEXT = REPO_ROOT.parent / "shared/data/bitext/customer_support_train.csv"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
SECRET = "bench-telegram-secret_0123456789"
TOKEN = "5000000001:AAbenchTokenNeverSentAnywhere_0123456"
BOT_ID = 5000000001
BOT_USERNAME = "shop_bench_bot"
PATH = "/telegram/webhook"
TARGET_RATIO = 1.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVER_LIFETIME = 600.0  # servers exit by themselves even if this process dies silently

WRK_SCRIPT = r"""
local reqs, n, i, once = {}, 0, 0, false
c200, cother2xx, cnon2xx, exhausted = 0, 0, 0, 0
tid, nthreads = 0, 1
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  local path, secret = args[1], args[3]
  once = args[2] == "once"
  nthreads = tonumber(args[4]) or 1
  local k = -1
  for body in io.lines(path) do
    k = k + 1
    if k % nthreads == tid then
      n = n + 1
      reqs[n] = wrk.format("POST", "/telegram/webhook", {
        ["Content-Type"] = "application/json",
        ["X-Telegram-Bot-Api-Secret-Token"] = secret,
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
  if status == 200 then
    c200 = c200 + 1
  elseif status >= 200 and status < 300 then
    cother2xx = cother2xx + 1
  else
    cnon2xx = cnon2xx + 1
  end
end

function done(summary, latency, requests)
  local a, b, c, e = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("c200")
    b = b + t:get("cother2xx")
    c = c + t:get("cnon2xx")
    e = e + t:get("exhausted")
  end
  local errs = summary.errors
  io.write(string.format(
    'RESULT {"duration_us": %d, "c200": %d, "other2xx": %d, "non2xx": %d, ' ..
    '"errors": %d, "exhausted": %d, "p50_us": %d, "p99_us": %d}\n',
    summary.duration, a, b, c,
    errs.connect + errs.read + errs.write + errs.timeout, e,
    latency:percentile(50.0), latency:percentile(99.0)))
end
"""


# -- update bodies -------------------------------------------------------------------------


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


def write_updates(path: Path, first_id: int, count: int, texts: Sequence[str]) -> None:
    """``count`` private text-message updates as Telegram sends them, one JSON per line."""
    rng = random.Random(first_id)
    now = int(time.time())
    with path.open("w", encoding="utf-8") as out:
        for n in range(count):
            user = 100_000_000 + rng.randrange(50_000)
            update = {
                "update_id": first_id + n,
                "message": {
                    "message_id": first_id + n,
                    "from": {
                        "id": user,
                        "is_bot": False,
                        "first_name": "Customer",
                        "username": f"customer{user}",
                        "language_code": "en",
                    },
                    "chat": {
                        "id": user,
                        "first_name": "Customer",
                        "username": f"customer{user}",
                        "type": "private",
                    },
                    "date": now,
                    "text": texts[rng.randrange(len(texts))],
                },
            }
            out.write(json.dumps(update, separators=(",", ":"), ensure_ascii=False) + "\n")


# -- processes -----------------------------------------------------------------------------


def pinned(cpu: int | None) -> Any:
    """A preexec_fn pinning the child to ``cpu`` before it runs."""
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
    accepted_200: int = 0  # 200s counted by the load generator, warm-up included
    runs: int = 0

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
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(
    name: str, cpu: int | None, workdir: Path, redis_url: str, prefix: str, profile: bool
) -> Server:
    """One of the servers, as a subprocess of this script (see the module docstring)."""
    port = free_port()
    log = workdir / f"{name}.log"
    command = [sys.executable, __file__, "--serve", name, str(port), redis_url, prefix]
    if profile and name == "peakdesk":
        command.append(str(workdir / "peakdesk.prof"))
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=pinned(cpu),
        )
    return Server(name, port, process, log)


def start_peakdesk_serve(
    cpu: int | None, workdir: Path, redis_url: str, prefix: str, profile: bool
) -> Server:
    """``peakdesk serve --workers 0`` with the Telegram channel on (webhook mode).

    TELEGRAM_API_BASE points at a closed loopback port: the start-up getMe fails at once
    (logged) and nothing leaves the machine; private-chat updates need no @username.
    """
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PEAKDESK_", "HOLYSHEEP_", "WEBHOOK_", "REDIS_", "TELEGRAM_"))
    }
    env.update(
        REDIS_URL=redis_url,
        PEAKDESK_REDIS_PREFIX=prefix,
        PEAKDESK_MAX_QUEUE="10000000",
        PEAKDESK_LOG_LEVEL="WARNING",
        PEAKDESK_HOST="127.0.0.1",
        PEAKDESK_PORT=str(port),
        TELEGRAM_BOT_TOKEN=TOKEN,
        TELEGRAM_WEBHOOK_SECRET=SECRET,
        TELEGRAM_MODE="webhook",
        TELEGRAM_API_BASE="http://127.0.0.1:1",
    )
    entry = [sys.executable, "-m", "bots.cli"]
    if profile:
        entry = [sys.executable, "-m", "cProfile", "-o", str(workdir / "peakdesk.prof")]
        entry += ["-m", "bots.cli"]
    log = workdir / "peakdesk.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*entry, "serve", "--workers", "0"],
            cwd=workdir,  # no stray .env file is read
            env={**env, "PYTHONPATH": str(REPO_ROOT)},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=pinned(cpu),
        )
    return Server("peakdesk", port, process, log)


def mounts_telegram(server: Server) -> bool:
    """Whether the server has ``POST /telegram/webhook`` (401 without the secret, not 404)."""
    request = urllib.request.Request(  # noqa: S310 (loopback)
        server.url + PATH, data=b"{}", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return int(response.status) != 404
    except urllib.error.HTTPError as exc:
        return exc.code != 404


def start_peakdesk(
    via: str, cpu: int | None, workdir: Path, redis_url: str, prefix: str, profile: bool
) -> tuple[Server, str]:
    """The real ``peakdesk serve`` when it mounts the channel (``via`` auto or serve), else a
    minimal app around the real TelegramIngress; returns the server and what it is."""
    if via in ("auto", "serve"):
        server = start_peakdesk_serve(cpu, workdir, redis_url, prefix, profile)
        server.wait_ready()
        if mounts_telegram(server):
            return server, "`peakdesk serve --workers 0` (real runtime)"
        server.stop()
        if via == "serve":
            raise RuntimeError("peakdesk serve does not mount /telegram/webhook yet")
    server = start_server("peakdesk", cpu, workdir, redis_url, prefix, profile)
    return server, "minimal app: TelegramIngress + PriorityQueue on bots.http.build_app"


# -- the servers (child processes) ---------------------------------------------------------


async def serve(name: str, port: int, redis_url: str, prefix: str) -> None:
    from aiohttp import web

    cleanup: list[Any] = []
    if name == "bare":
        app = web.Application()

        async def bare(request: web.Request) -> web.Response:
            json.loads(await request.read())
            return web.json_response({})

        app.router.add_post(PATH, bare)
    elif name == "aiogram":
        app = await aiogram_app()
    else:
        app, redis = await peakdesk_app(redis_url, prefix)
        cleanup.append(redis.aclose)

    if name != "peakdesk":

        async def readyz(_: web.Request) -> web.Response:
            return web.json_response({"status": "ready"})

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
        for close in cleanup:
            await close()


async def aiogram_app() -> Any:
    from aiogram import Bot, Dispatcher, Router
    from aiogram.types import Message
    from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
    from aiohttp import web

    router = Router()

    @router.message()
    async def on_message(message: Message) -> None:  # the empty handler
        return None

    dispatcher = Dispatcher()
    dispatcher.include_router(router)
    bot = Bot(TOKEN)  # never calls the Bot API: the handler sends nothing
    app = web.Application()
    SimpleRequestHandler(dispatcher, bot, secret_token=SECRET).register(app, path=PATH)
    setup_application(app, dispatcher, bot=bot)
    return app


async def peakdesk_app(redis_url: str, prefix: str) -> Any:
    from adapters.telegram.ingress import TelegramIngress
    from bots.http import build_app
    from bots.logs import configure_logging
    from core.handover import HandoverRegistry
    from core.keys import Keys
    from core.metrics import Metrics
    from core.priority import PriorityDetector
    from core.queue import PriorityQueue
    from core.state import ConversationState
    from core.store import connect_redis

    configure_logging("text", "WARNING")
    redis = connect_redis(redis_url)
    keys = Keys(prefix)
    queue = PriorityQueue(redis, keys, max_queue=10_000_000)
    await queue.ensure_groups()
    metrics = Metrics()
    ingress = TelegramIngress(
        queue,
        PriorityDetector(),
        ConversationState(redis, keys),
        HandoverRegistry(redis, keys),
        metrics,
        bot_id=BOT_ID,
        bot_username=BOT_USERNAME,
        secret=SECRET,
    )
    return build_app(ingress.routes(), redis, queue, metrics), redis


def serve_main(name: str, port: int, redis_url: str, prefix: str, profile: str | None) -> None:
    if profile is None:
        asyncio.run(serve(name, port, redis_url, prefix))
        return
    import cProfile

    with cProfile.Profile() as profiler:
        asyncio.run(serve(name, port, redis_url, prefix))
    profiler.dump_stats(profile)


# -- load generation and measurement -------------------------------------------------------


@dataclass
class LoadResult:
    seconds: float
    c200: int
    other2xx: int
    non2xx: int
    errors: int
    p50_ms: float
    p99_ms: float
    exhausted: bool


def run_wrk(url: str, bodies: Path, once: bool, seconds: float, args: Any) -> LoadResult:
    command = [
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "10s",
        "-s",
        str(args.script),
        url + PATH,
        "--",
        str(bodies),
        "once" if once else "cycle",
        SECRET,
        str(args.threads),
    ]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        preexec_fn=pinned(args.gen_cpu),
        check=False,
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}\n{done.stderr}")
    r = json.loads(line[len("RESULT ") :])
    return LoadResult(
        seconds=r["duration_us"] / 1e6,
        c200=r["c200"],
        other2xx=r["other2xx"],
        non2xx=r["non2xx"],
        errors=r["errors"],
        p50_ms=r["p50_us"] / 1000,
        p99_ms=r["p99_us"] / 1000,
        exhausted=bool(r["exhausted"]),
    )


@dataclass
class Measurement:
    impl: str
    round: int
    load: LoadResult
    server_cpu: float  # % of one core over the measurement
    gen_cpu: float
    redis_cpu: float
    other_cpu: float

    @property
    def rate(self) -> float:
        return self.load.c200 / self.load.seconds if self.load.seconds else 0.0


class Bench:
    def __init__(self, args: Any, workdir: Path, texts: list[str], redis_pid: int | None) -> None:
        self.args = args
        self.workdir = workdir
        self.texts = texts
        self.redis_pid = redis_pid
        self.next_update_id = 700_000_000
        self.best_rate = 5000.0

    def measure(self, server: Server, round_no: int, seconds: float) -> Measurement:
        once = server.name == "peakdesk"
        bodies = self.workdir / "updates.jsonl"
        if once:  # enough distinct updates for the whole run, each sent once
            count = min(
                self.args.max_requests,
                int(self.best_rate * 1.6 * seconds + 2 * self.args.connections),
            )
        else:
            count = 20_000
        write_updates(bodies, self.next_update_id, count, self.texts)
        self.next_update_id += count
        before = (
            proc_cpu_s(server.process.pid),
            children_cpu_s(),
            proc_cpu_s(self.redis_pid),
            machine_busy_s(),
            proc_cpu_s(os.getpid()),
        )
        started = time.perf_counter()
        load = run_wrk(server.url, bodies, once, seconds, self.args)
        wall = time.perf_counter() - started
        server_s = proc_cpu_s(server.process.pid) - before[0]
        gen_s = children_cpu_s() - before[1]
        redis_s = proc_cpu_s(self.redis_pid) - before[2]
        own_s = proc_cpu_s(os.getpid()) - before[4]
        other_s = machine_busy_s() - before[3] - server_s - gen_s - redis_s - own_s
        bodies.unlink()
        server.accepted_200 += load.c200
        server.runs += 1
        if load.seconds:
            self.best_rate = max(self.best_rate, load.c200 / load.seconds)

        def pct(cpu_s: float) -> float:
            return 100 * cpu_s / wall

        return Measurement(
            server.name,
            round_no,
            load,
            pct(server_s),
            pct(gen_s),
            pct(redis_s),
            max(0.0, pct(other_s)),
        )


def fmt_row(cells: Sequence[str], widths: Sequence[int]) -> str:
    return " ".join(
        c.ljust(w) if i == 0 else c.rjust(w)
        for i, (c, w) in enumerate(zip(cells, widths, strict=True))
    )


def report(measurements: list[Measurement], names: list[str], rounds: int) -> tuple[bool, float]:
    header = (
        "impl",
        "200/s",
        "p50 ms",
        "p99 ms",
        "non-200",
        "errors",
        "vs aiogram",
        "srvCPU",
        "genCPU",
        "redis",
        "other",
    )
    widths = (10, 9, 8, 8, 8, 7, 10, 7, 7, 7, 7)
    base_by_round = {m.round: m.rate for m in measurements if m.impl == "aiogram"}
    print("\nper round (CPU columns: % of one core during the measurement)")
    print(fmt_row((header[0], "round", *header[1:]), (widths[0], 5, *widths[1:])))
    for m in measurements:
        base = base_by_round.get(m.round, 0.0)
        cells: tuple[str, ...] = (
            m.impl,
            str(m.round),
            f"{m.rate:,.0f}",
            f"{m.load.p50_ms:.1f}",
            f"{m.load.p99_ms:.1f}",
            str(m.load.non2xx + m.load.other2xx),
            str(m.load.errors),
            f"{m.rate / base:.2f}x" if base else "-",
            f"{m.server_cpu:.0f}%",
            f"{m.gen_cpu:.0f}%",
            f"{m.redis_cpu:.0f}%",
            f"{m.other_cpu:.0f}%",
        )
        print(fmt_row(cells, (widths[0], 5, *widths[1:])))

    print(f"\nsummary: medians over {rounds} rounds (vs aiogram: median of the per-round ratios)")
    print(fmt_row(header, widths))
    verdict = 0.0
    for name in names:
        rows = [m for m in measurements if m.impl == name]
        ratios = [m.rate / base_by_round[m.round] for m in rows if base_by_round.get(m.round)]
        ratio = median(ratios) if ratios else 0.0
        if name == "peakdesk":
            verdict = ratio
        cells = (
            name,
            f"{median(m.rate for m in rows):,.0f}",
            f"{median(m.load.p50_ms for m in rows):.1f}",
            f"{median(m.load.p99_ms for m in rows):.1f}",
            str(sum(m.load.non2xx + m.load.other2xx for m in rows)),
            str(sum(m.load.errors for m in rows)),
            f"{ratio:.2f}x",
            f"{median(m.server_cpu for m in rows):.0f}%",
            f"{median(m.gen_cpu for m in rows):.0f}%",
            f"{median(m.redis_cpu for m in rows):.0f}%",
            f"{median(m.other_cpu for m in rows):.0f}%",
        )
        print(fmt_row(cells, widths))
    bad = sum(m.load.non2xx + m.load.other2xx + m.load.errors for m in measurements)
    return verdict >= TARGET_RATIO and bad == 0, verdict


# -- durability check and clean-up ---------------------------------------------------------


def admitted_counter(server: Server) -> int:
    admitted = 0.0
    _, body = http_get(server.url + "/metrics", 10.0)
    for line in body.decode().splitlines():
        if line.startswith('peakdesk_messages_admitted_total{channel="telegram"'):
            admitted += float(line.rsplit(" ", 1)[1])
    return int(admitted)


async def stream_lengths(url: str, prefix: str) -> int:
    from redis.asyncio import Redis

    client = Redis.from_url(url, decode_responses=True)
    try:
        return sum([int(await client.xlen(f"{{{prefix}}}:q:{p}")) for p in (0, 1, 2)])
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
        return int((await client.info("server"))["process_id"])
    finally:
        await client.aclose()


def durability(server: Server, redis_url: str, prefix: str, connections: int) -> bool:
    admitted = admitted_counter(server)
    stored = asyncio.run(stream_lengths(redis_url, prefix))
    cut = admitted - server.accepted_200
    ok = stored == admitted and 0 <= cut <= server.runs * connections
    print(
        f"{server.name}: 200 answers received {server.accepted_200:,}; server admitted counter "
        f"{admitted:,}; XLEN q:0+q:1+q:2 on Redis {stored:,} -> {'OK' if ok else 'MISMATCH'}"
        + (
            f" ({cut} admitted but unanswered: in flight when wrk stopped, "
            f"at most {connections} per run)"
            if cut
            else ""
        )
    )
    return ok


def print_profile(path: Path, limit: int = 25) -> None:
    import pstats

    print(f"\nprofile of the peakdesk server (cProfile, top {limit} by own time):")
    stats = pstats.Stats(str(path), stream=sys.stdout)
    stats.sort_stats("tottime").print_stats(limit)


# -- main ----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=7.0, help="per measurement")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up per server")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over all servers")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--max-requests", type=int, default=400_000, help="per peakdesk run")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare aiohttp line")
    parser.add_argument(
        "--via",
        choices=("auto", "serve", "app"),
        default="auto",
        help="peakdesk server: the real `peakdesk serve` (when it mounts the Telegram "
        "channel), a minimal app around TelegramIngress, or auto (serve if possible)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="run the peakdesk server under cProfile (slower)"
    )
    parser.add_argument("--serve", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        name, port, redis_url, prefix, *profile = args.serve
        serve_main(name, int(port), redis_url, prefix, profile[0] if profile else None)
        return 0
    if not shutil.which("wrk"):
        print("telegram_ingest: needs wrk (apt-get install wrk)", file=sys.stderr)
        return 2

    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, args.gen_cpu = (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)
    redis_url = os.environ.get("PEAKDESK_BENCH_REDIS_URL", DEFAULT_REDIS_URL)
    texts, texts_note = load_texts(Path(os.environ.get("PEAKDESK_BITEXT_CSV", DEFAULT_BITEXT)))
    prefix = f"bench-tg-{uuid.uuid4().hex[:8]}"
    redis_pid = asyncio.run(redis_server_pid(redis_url))
    if not Path(f"/proc/{redis_pid}/stat").exists():
        redis_pid = None

    import aiogram
    import aiohttp

    print(
        f"python {sys.version.split()[0]}, aiohttp {aiohttp.__version__}, "
        f"aiogram {aiogram.__version__}, asyncio default event loop (all servers)"
    )
    if server_cpu is None:
        print("WARNING: one CPU only: servers and load generator share it")
    else:
        print(f"servers pinned to CPU {server_cpu}; load generator (wrk) to CPU {args.gen_cpu}")
    print(
        f"load: {args.connections} connections, {args.seconds:g} s per measurement, "
        f"{args.rounds} rounds, {args.warmup:g} s warm-up per server; {texts_note}"
    )
    print(f"real Redis {redis_url} (server pid {redis_pid}, not pinned), key prefix {prefix}")

    workdir = Path(tempfile.mkdtemp(prefix="peakdesk-tg-ingest-"))
    args.script = workdir / "updates.lua"
    args.script.write_text(WRK_SCRIPT)
    names = ["aiogram", "peakdesk"] + ([] if args.no_bare else ["bare"])
    servers: list[Server] = []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ok = True
    try:
        for name in names:
            if name == "peakdesk":
                server, what = start_peakdesk(
                    args.via, server_cpu, workdir, redis_url, prefix, args.profile
                )
                print(f"peakdesk server: {what}")
            else:
                server = start_server(name, server_cpu, workdir, redis_url, prefix, False)
            servers.append(server)
        for server in servers:
            server.wait_ready()
        if args.gen_cpu is not None:
            os.sched_setaffinity(0, {args.gen_cpu})
        bench = Bench(args, workdir, texts, redis_pid)
        for server in servers:
            bench.measure(server, 0, args.warmup)
        measurements: list[Measurement] = []
        for round_no in range(1, args.rounds + 1):
            order = servers if round_no % 2 else list(reversed(servers))
            for server in order:
                m = bench.measure(server, round_no, args.seconds)
                measurements.append(m)
                print(
                    f"  round {round_no} {server.name:<9} {m.rate:>8,.0f} 200/s "
                    f"p50 {m.load.p50_ms:.1f} ms p99 {m.load.p99_ms:.1f} ms "
                    f"(server CPU {m.server_cpu:.0f}%, wrk CPU {m.gen_cpu:.0f}%)"
                    + (" [ran out of distinct updates]" if m.load.exhausted else ""),
                    flush=True,
                )
        met, ratio = report(measurements, names, args.rounds)
        print("\ndurability (every 200 must be in the streams):")
        peakdesk = next(s for s in servers if s.name == "peakdesk")
        ok = durability(peakdesk, redis_url, prefix, args.connections)
        print(
            f"\ntarget peakdesk >= {TARGET_RATIO}x aiogram SimpleRequestHandler "
            f"(median round ratio {ratio:.2f}x), no errors, durable"
        )
        print(f"target met: {'yes' if met and ok else 'no'}")
        return 0 if met and ok else 1
    finally:
        for server in servers:
            server.stop()
        if args.profile and (workdir / "peakdesk.prof").exists():
            print_profile(workdir / "peakdesk.prof")
        with contextlib.suppress(Exception):
            deleted = asyncio.run(delete_keys(redis_url, prefix))
            print(f"cleaned up: {deleted:,} Redis keys under {{{prefix}}}, servers stopped")
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
