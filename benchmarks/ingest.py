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
message id of its own, so every accepted request is a new message (a request sent again
would be answered 401, its signature used up); only 202 answers count as accepted. Texts are
Bitext customer messages ($PEAKDESK_BITEXT_CSV, else
../shared/data/bitext/customer_support_train.csv beside the repository; synthetic texts if
absent). Without wrk, an aiohttp load generator in a subprocess
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

The servers run the admission path itself, without acknowledgements and at ladder level 0
(PEAKDESK_FIRST_RESPONSE_S=0, PEAKDESK_PEAK_MODE=off; --setting NAME=VALUE overrides). A
gateway alone, whose queue only grows, soon expects long waits: it would acknowledge every
message and answer templated questions at admission, another path, from a moment that varied
from run to run (the durability check then counted those answers as missing entries).

Target: peakdesk-redis >= 0.25x bare. Only 127.0.0.1 is used; the run takes about 1.5 min.
Run: ``python benchmarks/ingest.py`` from the repository root (with the venv active).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.webhook.signing import signature
from benchmarks import common, loadgen

SECRET = "bench-webhook-secret"
GATEWAY = "shop"
TARGET_RATIO = 0.25

# "<ts>\t<signature>\t<body>" per line of a requests file
REQUESTS = loadgen.Requests(
    f"/webhook/{GATEWAY}",
    202,
    {"Content-Type": "application/json"},
    ("X-Peakdesk-Timestamp", "X-Peakdesk-Signature"),
)
COMPARISON = loadgen.Comparison(
    REQUESTS,
    baseline="bare",
    subject="peakdesk-redis",
    target=TARGET_RATIO,
    impl_width=19,
    progress="  round {m.round} {m.impl:<19} {m.rate:>8,.0f} 202/s "
    "p50 {m.load.p50_ms:.1f} ms p99 {m.load.p99_ms:.1f} ms "
    "(server CPU {m.server_cpu:.0f}%, generator CPU {m.gen_cpu:.0f}%)",
    sent="requests",
    in_flight="requests in flight when the load generator stopped",
)


# -- request generation --------------------------------------------------------------------


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
            out.write(f"{timestamp}\t{signature(SECRET, timestamp, body)}\t{body.decode()}\n")


# -- processes -----------------------------------------------------------------------------


def start_bare(cpu: int | None, workdir: Path) -> common.Server:
    port = common.free_port()
    return common.start_server(
        "bare", port, [sys.executable, __file__, "--bare-server", str(port)], cpu, workdir
    )


def start_peakdesk(
    name: str,
    cpu: int | None,
    workdir: Path,
    redis_url: str | None,
    prefix: str,
    settings: dict[str, str],
) -> common.Server:
    env = {"WEBHOOK_SECRET": SECRET, "WEBHOOK_CALLBACK_URL": "http://127.0.0.1:9/cb", **settings}
    return common.start_peakdesk_serve(name, cpu, workdir, redis_url, prefix, env)


# -- the bare baseline server (child process) ----------------------------------------------


async def bare_server(port: int) -> None:
    from aiohttp import web

    async def webhook(request: web.Request) -> web.Response:
        json.loads(await request.read())
        return web.json_response({"status": "queued"}, status=202)

    app = web.Application()
    app.router.add_post("/webhook/{gateway}", webhook)
    common.add_readyz(app)
    await common.serve_app(app, port)


# -- the fallback load generator (without wrk) ---------------------------------------------


def run_python_loadgen(
    url: str, requests_file: Path, once: bool, seconds: float, connections: int, cpu: int | None
) -> loadgen.LoadResult:
    command = [
        sys.executable,
        __file__,
        "--loadgen",
        url + REQUESTS.path,
        str(requests_file),
        "once" if once else "cycle",
        str(connections),
        str(seconds),
    ]
    result = common.run_for_result(command, "load generator", cpu=cpu, timeout=seconds + 60)
    return loadgen.LoadResult(**result)


def read_requests(requests_file: Path) -> list[tuple[bytes, dict[str, str]]]:
    return [REQUESTS.parse(line) for line in requests_file.read_text(encoding="utf-8").splitlines()]


async def python_loadgen(
    prepared: list[tuple[bytes, dict[str, str]]],
    url: str,
    once: bool,
    connections: int,
    seconds: float,
) -> loadgen.LoadResult:
    """The fallback generator: ``connections`` keep-alive clients sending back to back."""
    import aiohttp

    latencies: list[float] = []
    counts = {"accepted": 0, "other2xx": 0, "non2xx": 0, "errors": 0}
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
            ok = status == REQUESTS.accepted
            key = "accepted" if ok else "other2xx" if 200 <= status < 300 else "non2xx"
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

    return loadgen.LoadResult(
        seconds=elapsed,
        accepted=counts["accepted"],
        other2xx=counts["other2xx"],
        non2xx=counts["non2xx"],
        errors=counts["errors"],
        p50_ms=pct(0.50),
        p99_ms=pct(0.99),
        exhausted=bool(state["exhausted"]),
    )


# -- measurement ---------------------------------------------------------------------------


@dataclass
class Bench:
    args: argparse.Namespace
    workdir: Path
    texts: list[str]
    redis_pid: int | None
    wrk: loadgen.Wrk | None  # None: the fallback load generator
    files: Iterator[int] = field(default_factory=lambda: iter(range(1_000_000)))
    last_bare_rate: float = 0.0

    def generate(
        self, url: str, requests_file: Path, once: bool, seconds: float
    ) -> loadgen.LoadResult:
        if self.wrk is not None:
            return self.wrk.run(url, requests_file, once, seconds)
        return run_python_loadgen(
            url, requests_file, once, seconds, self.args.connections, self.args.gen_cpu
        )

    def measure(self, server: common.Server, round_no: int, seconds: float) -> loadgen.Measurement:
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
        m = loadgen.measure_server(
            server,
            round_no,
            self.redis_pid,
            lambda: self.generate(server.url, requests_file, once, seconds),
        )
        requests_file.unlink()
        if server.name == "bare":
            self.last_bare_rate = m.rate
        return m


# -- durability check ----------------------------------------------------------------------


def check_durability(
    server: common.Server, redis_url: str | None, prefix: str, connections: int
) -> bool:
    admitted, depth = common.metric_sums(
        server.url, "peakdesk_messages_admitted_total{", "peakdesk_queue_depth{"
    )
    if redis_url:
        stored = common.stream_lengths(redis_url, prefix)
        where = "XLEN q:0+q:1+q:2 on Redis"
    else:
        stored = depth
        where = "queue depth (/metrics)"
    return loadgen.durability(COMPARISON, server, admitted, where, stored, connections)


# -- main ----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    loadgen.add_load_arguments(parser, generator="load generator", max_requests=300_000)
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
        common.emit_result(result.__dict__)
        return 0

    server_cpu, args.gen_cpu = common.two_cpus()
    generator = "wrk" if shutil.which("wrk") and not args.python_loadgen else "python"
    redis_url = common.bench_redis_url()
    texts, texts_note = common.load_texts(common.bitext_path())
    prefix = f"bench-ingest-{uuid.uuid4().hex[:8]}"
    redis_pid = common.redis_server_pid(redis_url)  # None: not on this machine, no CPU figure

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
    loadgen.print_load(args, texts_note, redis_url, redis_pid, prefix)
    if generator == "python":
        print(
            "NOTE: wrk not found: the aiohttp load generator is used; it may be the bottleneck "
            "(see its CPU column and the bare line, which is then the generator's ceiling)"
        )

    workdir = Path(tempfile.mkdtemp(prefix="peakdesk-ingest-"))
    wrk = None
    if generator == "wrk":
        script = workdir / "signed.lua"
        wrk = loadgen.Wrk(REQUESTS, script, args.connections, args.threads, args.gen_cpu).prepare()
    servers: list[common.Server] = []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ok = True
    try:
        servers.append(start_bare(server_cpu, workdir))
        settings = loadgen.server_settings(args)
        servers.append(
            start_peakdesk("peakdesk-redis", server_cpu, workdir, redis_url, prefix, settings)
        )
        if not args.no_fakeredis:
            servers.append(
                start_peakdesk("peakdesk-fakeredis", server_cpu, workdir, None, prefix, settings)
            )
        bench = Bench(args, workdir, texts, redis_pid, wrk)
        measurements = loadgen.run_rounds(
            COMPARISON,
            servers,
            [servers[0], *reversed(servers[1:])],
            bench.measure,
            gen_cpu=args.gen_cpu,
            rounds=args.rounds,
            warmup=args.warmup,
            seconds=args.seconds,
        )
        met, ratio = loadgen.report(
            COMPARISON, measurements, [s.name for s in servers], args.rounds
        )
        print("\ndurability (every 202 must be in the streams):")
        for server in servers[1:]:
            store = redis_url if server.name == "peakdesk-redis" else None
            ok &= check_durability(server, store, prefix, args.connections)
        print(
            f"\ntarget peakdesk-redis >= {TARGET_RATIO}x bare (median round ratio {ratio:.2f}x), "
            "no errors, durable"
        )
        print(f"target met: {'yes' if met and ok else 'no'}")
        return 0 if met and ok else 1
    finally:
        for server in servers:
            server.stop()
        loadgen.clean_up(redis_url, prefix)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
