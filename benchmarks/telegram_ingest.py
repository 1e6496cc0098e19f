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
import json
import random
import shutil
import signal
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common, loadgen

SECRET = "bench-telegram-secret_0123456789"
TOKEN = "5000000001:AAbenchTokenNeverSentAnywhere_0123456"
BOT_ID = 5000000001
BOT_USERNAME = "shop_bench_bot"
PATH = "/telegram/webhook"
TARGET_RATIO = 1.0

# one update body per line of a requests file
REQUESTS = loadgen.Requests(
    PATH, 200, {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": SECRET}
)
COMPARISON = loadgen.Comparison(
    REQUESTS,
    baseline="aiogram",
    subject="peakdesk",
    target=TARGET_RATIO,
    impl_width=10,
    progress="  round {m.round} {m.impl:<9} {m.rate:>8,.0f} 200/s "
    "p50 {m.load.p50_ms:.1f} ms p99 {m.load.p99_ms:.1f} ms "
    "(server CPU {m.server_cpu:.0f}%, wrk CPU {m.gen_cpu:.0f}%)",
    sent="updates",
    in_flight="in flight when wrk stopped",
    other2xx_refused=True,
)


# -- update bodies -------------------------------------------------------------------------


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


def start_child(
    name: str, cpu: int | None, workdir: Path, redis_url: str, prefix: str, profile: bool
) -> common.Server:
    """One of the servers, as a subprocess of this script (see the module docstring)."""
    port = common.free_port()
    command = [sys.executable, __file__, "--serve", name, str(port), redis_url, prefix]
    if profile and name == "peakdesk":
        command.append(str(workdir / "peakdesk.prof"))
    return common.start_server(name, port, command, cpu, workdir, cwd=common.REPO_ROOT)


def start_serve(
    cpu: int | None,
    workdir: Path,
    redis_url: str,
    prefix: str,
    profile: bool,
    settings: dict[str, str],
) -> common.Server:
    """``peakdesk serve --workers 0`` with the Telegram channel on (webhook mode).

    TELEGRAM_API_BASE points at a closed loopback port: the start-up getMe fails at once
    (logged) and nothing leaves the machine; private-chat updates need no @username.
    """
    env = {
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_WEBHOOK_SECRET": SECRET,
        "TELEGRAM_MODE": "webhook",
        "TELEGRAM_API_BASE": "http://127.0.0.1:1",
        **settings,
    }
    prof = workdir / "peakdesk.prof" if profile else None
    return common.start_peakdesk_serve("peakdesk", cpu, workdir, redis_url, prefix, env, prof)


def mounts_telegram(server: common.Server) -> bool:
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
    via: str,
    cpu: int | None,
    workdir: Path,
    redis_url: str,
    prefix: str,
    profile: bool,
    settings: dict[str, str],
) -> tuple[common.Server, str]:
    """The real ``peakdesk serve`` when it mounts the channel (``via`` auto or serve), else a
    minimal app around the real TelegramIngress; returns the server and what it is."""
    if via in ("auto", "serve"):
        server = start_serve(cpu, workdir, redis_url, prefix, profile, settings)
        server.wait_ready()
        if mounts_telegram(server):
            return server, "`peakdesk serve --workers 0` (real runtime)"
        server.stop()
        if via == "serve":
            raise RuntimeError("peakdesk serve does not mount /telegram/webhook yet")
    server = start_child("peakdesk", cpu, workdir, redis_url, prefix, profile)
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
        common.add_readyz(app)
    try:
        await common.serve_app(app, port)
    finally:
        for close in cleanup:
            await close()

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
    from core.handover import HandoverDesk
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
        HandoverDesk(redis, keys, staffed=False),
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


# -- measurement ---------------------------------------------------------------------------


class Bench:
    def __init__(
        self, args: Any, workdir: Path, texts: list[str], redis_pid: int | None, wrk: loadgen.Wrk
    ) -> None:
        self.args = args
        self.workdir = workdir
        self.texts = texts
        self.redis_pid = redis_pid
        self.wrk = wrk
        self.next_update_id = 700_000_000
        self.best_rate = 5000.0

    def measure(self, server: common.Server, round_no: int, seconds: float) -> loadgen.Measurement:
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
        m = loadgen.measure_server(
            server,
            round_no,
            self.redis_pid,
            lambda: self.wrk.run(server.url, bodies, once, seconds),
        )
        bodies.unlink()
        if m.load.seconds:
            self.best_rate = max(self.best_rate, m.rate)
        return m


# -- durability check and clean-up ---------------------------------------------------------


def check_durability(server: common.Server, redis_url: str, prefix: str, connections: int) -> bool:
    (admitted,) = common.metric_sums(
        server.url, 'peakdesk_messages_admitted_total{channel="telegram"'
    )
    stored = common.stream_lengths(redis_url, prefix)
    where = "XLEN q:0+q:1+q:2 on Redis"
    return loadgen.durability(COMPARISON, server, admitted, where, stored, connections)


def print_profile(path: Path, limit: int = 25) -> None:
    import pstats

    print(f"\nprofile of the peakdesk server (cProfile, top {limit} by own time):")
    stats = pstats.Stats(str(path), stream=sys.stdout)
    stats.sort_stats("tottime").print_stats(limit)


# -- main ----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    loadgen.add_load_arguments(parser, generator="wrk", max_requests=400_000)
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

    server_cpu, args.gen_cpu = common.two_cpus()
    redis_url = common.bench_redis_url()
    texts, texts_note = common.load_texts(common.bitext_path())
    prefix = f"bench-tg-{uuid.uuid4().hex[:8]}"
    redis_pid = common.redis_server_pid(redis_url)

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
    loadgen.print_load(args, texts_note, redis_url, redis_pid, prefix)

    workdir = Path(tempfile.mkdtemp(prefix="peakdesk-tg-ingest-"))
    script = workdir / "updates.lua"
    wrk = loadgen.Wrk(REQUESTS, script, args.connections, args.threads, args.gen_cpu).prepare()
    names = ["aiogram", "peakdesk"] + ([] if args.no_bare else ["bare"])
    servers: list[common.Server] = []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ok = True
    try:
        for name in names:
            if name == "peakdesk":
                server, what = start_peakdesk(
                    args.via,
                    server_cpu,
                    workdir,
                    redis_url,
                    prefix,
                    args.profile,
                    loadgen.server_settings(args),
                )
                print(f"peakdesk server: {what}")
            else:
                server = start_child(name, server_cpu, workdir, redis_url, prefix, False)
            servers.append(server)
        bench = Bench(args, workdir, texts, redis_pid, wrk)
        measurements = loadgen.run_rounds(
            COMPARISON,
            servers,
            list(reversed(servers)),
            bench.measure,
            gen_cpu=args.gen_cpu,
            rounds=args.rounds,
            warmup=args.warmup,
            seconds=args.seconds,
        )
        met, ratio = loadgen.report(COMPARISON, measurements, names, args.rounds)
        print("\ndurability (every 200 must be in the streams):")
        peakdesk = next(s for s in servers if s.name == "peakdesk")
        ok = check_durability(peakdesk, redis_url, prefix, args.connections)
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
        loadgen.clean_up(redis_url, prefix)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
