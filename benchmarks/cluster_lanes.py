"""Lanes on a Redis Cluster: how the queue's Redis work spreads over the masters per lane count.

Issue 8 asks for the streams to be sharded so that one node is not the bottleneck.
PEAKDESK_SHARDS=N splits the queue into N lanes with the hash tags ``{<prefix>:0}`` to
``{<prefix>:N-1}`` (core/keys.py). This script measures, on a real cluster, which share of
the queue's Redis commands each master executes with one lane (the baseline) and with N lanes.

Processes, all on 127.0.0.1:

- a Redis Cluster of 3 masters with a replica each (tests/redis_cluster.py: real
  ``redis-server`` processes with AOF on, in a temporary directory);
- a zero-latency fake chat-completions server and a callback receiver (minimal aiohttp apps,
  each a subprocess). The receiver records which message ids each callback answered;
- per lane count in --shards, one fresh process running the real ``bots.runtime.Runtime``
  (one worker loop, the outbox, the webhook app over real HTTP) with REDIS_URL=<a node>,
  PEAKDESK_REDIS_CLUSTER=true, PEAKDESK_SHARDS=<n> and a fresh PEAKDESK_REDIS_PREFIX;
- this orchestrator, which posts --messages signed webhooks (``POST /webhook/bench``,
  --connections at a time). Every message has its own user, and so its own conversation and
  lane, and its own text (a Bitext text plus a reference), so each one costs one LLM call.

The run measures the plain path: PEAKDESK_BURST_WINDOW_S=0 (no burst merge),
PEAKDESK_FLOOD_LIMIT=0 (no flood limit), PEAKDESK_FIRST_RESPONSE_S=0 (no acknowledgements)
and PEAKDESK_PEAK_MODE=off (a 3,000-message backlog would otherwise raise the degradation
ladder and share answers by intent). PEAKDESK_CLAIM_IDLE_S is --claim-idle (3 s instead of
30 s), so an entry left pending is taken over within the run; the "late" column counts them.
A run ends when every message's callback has arrived.

``INFO commandstats`` is read from every master when the Runtime is ready, after it idled
--idle s (the "idle cmd/s" column: the cost of polling the lanes) and when the last callback
has arrived. The difference is the run's commands, including the commands that Lua scripts
run. ``info`` (this script's probes) and ``replconf`` (the replicas' acks) are left out. A
second line leaves out ``command|getkeys`` too: redis-py's cluster client asks one node for
the keys of a command whose keys it cannot find itself (XREADGROUP) before sending it. For
each master the table shows its share of those commands, its CPU seconds
(``INFO cpu``), the keys of the run's prefix that it holds after the run (``SCAN MATCH``), and
the lanes whose slots it serves ("+r": also the ``{<prefix>}`` slot of what every process
shares). The checks: every message answered exactly once (callbacks per message id), and
nothing left in any lane's streams, outbox or dead letters. The Runtime process also counts
the entries its worker was handed but did not start while no entry of their ticket was in
flight: left pending, they wait to be taken over as stale.

All the processes share one machine (2 cores here), so msg/s is not a scaling figure. The
share of the work on each master is the figure.
Run: ``python benchmarks/cluster_lanes.py`` from the repository root (venv active), ~2 min.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from redis.crc import key_slot

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.webhook.signing import signed_headers
from benchmarks import common
from bots.logs import configure_logging
from bots.runtime import Runtime
from bots.settings import Settings
from core.models import QueuedMessage
from tests.redis_cluster import LocalRedisCluster, Node

SECRET = "bench-webhook-secret"
API_KEY = "sk-bench"
GATEWAY = "bench"
IGNORED = {"info", "replconf"}  # the probes' own command; the replicas' acks


# -- helper servers (child processes) ------------------------------------------------------


async def serve_helper(kind: str) -> None:
    """Serve the fake LLM ("llm") or the callback receiver ("receiver") until stdin closes."""
    answers: dict[str, list[str]] = {}  # message id -> reply ids of its callbacks
    state = {"last_new_at": 0.0}

    async def callback(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        if body.get("source") != "ack":
            for mid in body.get("message_ids") or [body["message_id"]]:
                if mid not in answers:
                    answers[mid] = []
                    state["last_new_at"] = time.monotonic()
                answers[mid].append(str(body["reply_id"]))
        return web.Response(text="ok")

    async def stats(_: web.Request) -> web.Response:
        return web.json_response({**state, "answered": len(answers)})

    async def answered(request: web.Request) -> web.Response:
        start = request.query["prefix"]
        return web.json_response({m: ids for m, ids in answers.items() if m.startswith(start)})

    app = web.Application()
    if kind == "llm":
        common.add_fake_llm(app)
    else:
        app.router.add_post("/callback", callback)
        app.router.add_get("/stats", stats)
        app.router.add_get("/answers", answered)
    await common.serve_app(app, announce=True)  # the port goes to stdout


# -- the Runtime process (one per lane count) ----------------------------------------------


async def serve_runtime(cfg: dict[str, Any]) -> None:
    """The real Runtime (worker, outbox, webhook app) on the cluster until stdin closes; then
    what is left in each lane and the answers by source, as the RESULT line."""
    configure_logging("text", cfg["log_level"])
    settings = Settings(
        _env_file=None,
        redis_url=cfg["redis_url"],
        peakdesk_redis_cluster=True,
        peakdesk_shards=cfg["shards"],
        peakdesk_redis_prefix=cfg["prefix"],
        holysheep_api_key=API_KEY,
        holysheep_base_url=cfg["llm_url"],
        webhook_secret=SECRET,
        webhook_callback_url=cfg["callback_url"],
        peakdesk_host="127.0.0.1",
        peakdesk_log_level=cfg["log_level"],
        peakdesk_max_queue=10_000_000,
        peakdesk_burst_window_s=0,
        peakdesk_flood_limit=0,
        peakdesk_first_response_s=0,
        peakdesk_peak_mode="off",
        peakdesk_claim_idle_s=cfg["claim_idle_s"],
    )
    runtime = Runtime(settings, workers=1)
    watch = Watch(runtime)
    result: dict[str, Any] = {}
    try:
        await runtime.start()
        await common.serve_app(runtime.app(), announce=True)
        result["left"] = await leftovers(runtime)
        result["sources"] = sources(runtime)
        result["late"], result["skipped"] = watch.late, watch.skipped
    finally:
        await runtime.stop()
    common.emit_result(result)


class Watch:
    """Counts the entries the worker took over as stale (idle for PEAKDESK_CLAIM_IDLE_S), and
    the entries it was handed but did not start although no entry of the same ticket was in
    flight (it keeps what is in flight by stream entry id: an id equal to another lane's)."""

    def __init__(self, runtime: Runtime) -> None:
        self.late = 0
        self.skipped = 0
        worker = runtime.workers[0]
        claim_stale = runtime.queue.claim_stale
        start = worker._start

        async def claiming(consumer: str, min_idle_ms: int, count: int = 50) -> Any:
            entries = await claim_stale(consumer, min_idle_ms, count)
            self.late += len(entries)
            return entries

        def starting(entry: QueuedMessage) -> None:
            start(entry)
            if not any(e.ticket_id == entry.ticket_id for e, _ in worker._in_flight.values()):
                self.skipped += 1

        setattr(runtime.queue, "claim_stale", claiming)  # noqa: B010 (mypy: no method assignment)
        setattr(worker, "_start", starting)  # noqa: B010


async def leftovers(runtime: Runtime) -> dict[str, list[int]]:
    """Per lane: entries in its priority streams, outbox, dead letters, dead deliveries."""
    left: dict[str, list[int]] = {}
    for lane in runtime.keys.lanes:
        async with runtime.redis.pipeline(transaction=False) as pipe:
            for key in (*lane.streams, lane.outbox, lane.dead_letters, lane.dead_deliveries):
                pipe.xlen(key)
            lengths = [int(n) for n in await pipe.execute()]
        left[str(lane.lane or 0)] = [sum(lengths[:3]), *lengths[3:]]
    return left


def sources(runtime: Runtime) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for metric in runtime.metrics.processed.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                counts[sample.labels["source"]] += int(sample.value)
    return dict(counts)


# -- the orchestrator ----------------------------------------------------------------------


SETTINGS = ("PEAKDESK_", "HOLYSHEEP_", "WEBHOOK_", "REDIS_", "TELEGRAM_", "SLACK_", "WECHAT_")


def start_child(args: list[str], log: Path | None = None) -> tuple[subprocess.Popen[str], int]:
    """This script as a child with ``args`` and none of peakdesk's settings from our
    environment; returns it and the port its first line names."""
    env = {k: v for k, v in os.environ.items() if not k.startswith((*SETTINGS, "STORE_"))}
    with contextlib.ExitStack() as stack:
        stderr = stack.enter_context(log.open("w")) if log else None
        process = subprocess.Popen(
            [sys.executable, __file__, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=env,
        )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.strip().isdigit():
        common.stop_process(process, timeout=10)
        tail = log.read_text()[-3000:] if log else ""
        raise RuntimeError(f"child {args[:2]} did not start:\n{tail}")
    return process, int(line)


def get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (loopback)
        data: dict[str, Any] = json.loads(response.read())
        return data


@dataclass
class Sample:
    """What each master has done so far: commands by name, CPU seconds."""

    calls: dict[str, Counter[str]]  # master address -> command -> calls
    cpu_s: dict[str, float]

    @classmethod
    def take(cls, masters: list[Node]) -> Sample:
        calls: dict[str, Counter[str]] = {}
        cpu_s: dict[str, float] = {}
        for node in masters:
            with node.client() as client:
                stats: dict[str, Any] = client.info("commandstats")
                cpu: dict[str, Any] = client.info("cpu")
            calls[node.address] = Counter(
                {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}
            )
            cpu_s[node.address] = float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"])
        return cls(calls, cpu_s)

    def commands_since(self, before: Sample) -> dict[str, Counter[str]]:
        delta: dict[str, Counter[str]] = {}
        for address, calls in self.calls.items():
            diff = calls - before.calls.get(address, Counter())
            delta[address] = Counter({k: v for k, v in diff.items() if k not in IGNORED})
        return delta


@dataclass
class Run:
    shards: int
    prefix: str
    messages: int
    accepted: int = 0
    refused: Counter[str] = field(default_factory=Counter)  # status or error -> count
    per_lane: Counter[int] = field(default_factory=Counter)  # messages admitted per lane
    wall_s: float = 0.0
    complete: bool = False
    commands: dict[str, Counter[str]] = field(default_factory=dict)  # master -> command -> n
    cpu_s: dict[str, float] = field(default_factory=dict)
    keys: dict[str, int] = field(default_factory=dict)  # master -> keys of the prefix
    lanes: dict[str, str] = field(default_factory=dict)  # master -> "4+r"
    answers: dict[str, list[str]] = field(default_factory=dict)
    left: dict[str, list[int]] = field(default_factory=dict)
    sources: dict[str, int] = field(default_factory=dict)
    log_lines: list[str] = field(default_factory=list)
    idle_per_s: float = 0.0  # commands per second on all masters before the first post
    late: int = 0  # entries the worker took over as stale
    skipped: int = 0  # entries the worker was handed and left pending (not started)
    first_post_duplicate: int = 0  # first posts answered 200 "duplicate"

    def share(self, master: str, without: str = "") -> float:
        counted = sum(n for c, n in self.commands[master].items() if c != without)
        total = sum(n for m in self.commands.values() for c, n in m.items() if c != without)
        return counted / max(1, total)

    def busiest(self, without: str = "") -> float:
        return max((self.share(m, without) for m in self.commands), default=0.0)

    @property
    def total_commands(self) -> int:
        return sum(sum(c.values()) for c in self.commands.values())


def texts_for(n: int) -> list[str]:
    """``n`` distinct customer texts: shuffled Bitext texts, each with its own reference (in
    letters: digits would read as an order id), so no two share an answer."""
    texts, _ = common.load_texts(common.bitext_path())
    random.Random(1).shuffle(texts)  # the file is sorted by intent

    def letters(i: int) -> str:
        out = ""
        while True:
            i, rest = divmod(i, 26)
            out = chr(ord("a") + rest) + out
            if not i:
                return out

    return [f"{texts[i % len(texts)]} (ref {letters(i)})" for i in range(n)]


async def post_all(
    run: Run, url: str, texts: list[str], connections: int, receiver: str, timeout: float
) -> None:
    """Post every message (signed, ``connections`` at a time) and wait until each one's
    callback arrived (or ``timeout`` s after the last post); sets the run's figures."""
    bodies = [
        json.dumps({"message_id": f"{run.prefix}-m{i}", "user_id": f"u{i}", "text": text}).encode()
        for i, text in enumerate(texts)
    ]
    base = get_json(receiver + "/stats")["answered"]
    pending = iter(bodies)
    started = time.monotonic()

    async def sender(session: aiohttp.ClientSession) -> None:
        for body in pending:
            headers = {"Content-Type": "application/json", **signed_headers(SECRET, body)}
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    answer = await response.json(content_type=None)
                    status = answer.get("status")
                    if response.status in (200, 202) and status in ("queued", "duplicate"):
                        # "duplicate" for a first post: stored, but the admission ran twice
                        run.accepted += 1
                        run.first_post_duplicate += status == "duplicate"
                        _, dash, lane = str(answer["ticket_id"]).rpartition("-")
                        run.per_lane[int(lane) if dash else 0] += 1
                    else:
                        run.refused[f"{response.status} {answer.get('status', '')}"] += 1
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                run.refused[type(exc).__name__] += 1

    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(sender(session) for _ in range(connections)))
    deadline = time.monotonic() + timeout
    while True:
        stats = await asyncio.to_thread(get_json, receiver + "/stats")
        if stats["answered"] - base >= run.accepted or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    run.complete = stats["answered"] - base >= run.messages
    run.wall_s = max(stats["last_new_at"], started) - started


def slot_owners(node: Node) -> list[tuple[int, int, str]]:
    """``CLUSTER SLOTS``: (first slot, last slot, master address)."""
    with node.client() as client:
        table = client.execute_command("CLUSTER", "SLOTS")
    return [(int(s), int(e), f"127.0.0.1:{int(m[1])}") for s, e, m, *_ in table]


def lanes_per_master(
    prefix: str, shards: int, owners: list[tuple[int, int, str]]
) -> tuple[Counter[str], str]:
    """How many lanes each master serves, and the master of ``{prefix}``."""

    def owner(tag: str) -> str:
        slot = key_slot(tag.encode())
        return next(m for s, e, m in owners if s <= slot <= e)

    lanes = [f"{{{prefix}:{n}}}" for n in range(shards)] if shards > 1 else [f"{{{prefix}}}"]
    return Counter(owner(tag) for tag in lanes), owner(f"{{{prefix}}}")


def keys_of(node: Node, prefix: str) -> int:
    """Keys of ``prefix`` on one master: ``{prefix}...`` and ``{prefix:<lane>}...``."""
    with node.client(5.0) as client:
        return sum(1 for _ in client.scan_iter(match=f"{{{prefix}[}}:]*", count=1000))


def run_once(
    args: argparse.Namespace,
    shards: int,
    prefix: str,
    cluster: LocalRedisCluster,
    masters: list[Node],
    urls: dict[str, str],
    workdir: Path,
) -> Run:
    run = Run(shards, prefix, args.messages)
    cfg = {
        **urls,
        "redis_url": cluster.url,
        "shards": shards,
        "prefix": prefix,
        "log_level": args.log_level,
        "claim_idle_s": args.claim_idle,
    }
    log = workdir / f"{prefix}.log"
    process, port = start_child(["--serve", json.dumps(cfg)], log)
    try:
        texts = texts_for(args.messages)
        idle = Sample.take(masters)
        time.sleep(args.idle)
        before = Sample.take(masters)
        run.idle_per_s = sum(sum(c.values()) for c in before.commands_since(idle).values()) / max(
            args.idle, 1e-9
        )
        asyncio.run(
            post_all(
                run,
                f"http://127.0.0.1:{port}/webhook/{GATEWAY}",
                texts,
                args.connections,
                urls["receiver"],
                args.timeout,
            )
        )
        after = Sample.take(masters)
        run.commands = after.commands_since(before)
        run.cpu_s = {m: after.cpu_s[m] - before.cpu_s[m] for m in after.cpu_s}
        time.sleep(args.grace)  # time for a second answer to show up
        out, _ = process.communicate(timeout=120)  # stdin closed: it stops and reports
    except BaseException:
        common.stop_process(process, timeout=10)
        raise
    line = next((x for x in out.splitlines() if x.startswith(common.RESULT)), None)
    run.log_lines = log.read_text().splitlines()
    if line is None:
        raise RuntimeError(f"the Runtime process failed:\n{log.read_text()[-3000:]}")
    result = json.loads(line[len(common.RESULT) :])
    run.left, run.sources = result["left"], result["sources"]
    run.late, run.skipped = result["late"], result["skipped"]
    run.answers = get_json(f"{urls['receiver']}/answers?prefix={prefix}-m")
    counts, root = lanes_per_master(prefix, shards, slot_owners(masters[0]))
    for node in masters:
        run.keys[node.address] = keys_of(node, prefix)
        lanes = str(counts[node.address]) if shards > 1 else ""
        run.lanes[node.address] = lanes + ("+r" if node.address == root else "") or "0"
    return run


def check_line(run: Run) -> tuple[bool, str]:
    """Every message answered exactly once, nothing left in the lanes: (ok, what was seen)."""
    expected = {f"{run.prefix}-m{i}" for i in range(run.messages)}
    answered = set(run.answers)
    missing = expected - answered
    twice = {m for m, ids in run.answers.items() if len(set(ids)) > 1}
    redelivered = sum(len(ids) - len(set(ids)) for ids in run.answers.values())
    left = [sum(v[i] for v in run.left.values()) for i in range(4)]
    stuck = sorted(int(lane) for lane, v in run.left.items() if v[0] or v[1])
    ok = (
        run.complete
        and run.accepted == run.messages
        and not missing
        and not twice
        and not (answered - expected)
        and not any(left)
        and not run.first_post_duplicate
    )
    text = (
        f"  {run.shards} lane(s): posted {run.messages:,}, accepted {run.accepted:,}"
        + (f" (refused: {dict(run.refused)})" if run.refused else "")
        + (
            f" ({run.first_post_duplicate} of them answered 'duplicate' at their first post)"
            if run.first_post_duplicate
            else ""
        )
        + f"; answered {len(answered & expected):,}, missing {len(missing):,}, answered twice "
        f"{len(twice):,}, same reply redelivered {redelivered:,}; left in the lanes: "
        f"{left[0]} queued, {left[1]} in the outbox, {left[2]} dead letters, {left[3]} "
        f"undelivered"
        + (f" (lanes {stuck})" if stuck else "")
        + f"; answers by source {dict(sorted(run.sources.items()))}"
        + f" -> exactly once: {'yes' if ok else 'NO'}"
    )
    return ok, text


GETKEYS = "command|getkeys"


def print_table(runs: list[Run], masters: list[Node]) -> None:
    names = [f"m{i + 1} :{node.port}" for i, node in enumerate(masters)]
    addresses = [node.address for node in masters]
    head = (
        f"{'lanes':>5} {'msgs':>6} {'wall s':>7} {'msg/s':>6} {'late':>5} {'cmds/msg':>8} "
        f"{'idle cmd/s':>10}  {'per master':<15}"
    )
    print(head + "".join(f"{n:>11}" for n in names) + f"{'busiest':>9}")
    pad = " " * (len(head) - 15)
    for run in runs:
        rate = run.accepted / run.wall_s if run.wall_s else 0.0
        cpu = [run.cpu_s[a] for a in addresses]
        print(
            f"{run.shards:>5} {run.messages:>6,} {run.wall_s:>7.2f} {rate:>6,.0f} {run.late:>5} "
            f"{run.total_commands / run.messages:>8.1f} {run.idle_per_s:>10,.0f}  "
            f"{'commands':<15}"
            + "".join(f"{100 * run.share(a):>10.1f}%" for a in addresses)
            + f"{100 * run.busiest():>8.1f}%"
        )
        rows = [
            (
                "w/o getkeys",
                [f"{100 * run.share(a, GETKEYS):.1f}%" for a in addresses],
                f"{100 * run.busiest(GETKEYS):.1f}%",
            ),
            (
                "CPU s",
                [f"{c:.2f}" for c in cpu],
                f"{100 * max(cpu) / (sum(cpu) or 1.0):.1f}%",
            ),
            ("keys held", [f"{run.keys[a]:,}" for a in addresses], ""),
            ("lanes served", [run.lanes[a] for a in addresses], ""),
        ]
        for label, cells, last in rows:
            print(pad + f"{label:<15}" + "".join(f"{c:>11}" for c in cells) + f"{last:>9}")


def top_commands(run: Run, masters: list[Node]) -> None:
    for i, node in enumerate(masters):
        calls = run.commands[node.address]
        ranked = ", ".join(f"{k} {v / run.messages:.2f}" for k, v in calls.most_common(6))
        print(f"  {run.shards} lane(s), m{i + 1}: {ranked or '-'}")


def log_summary(run: Run) -> None:
    records = [x for x in run.log_lines if x.split(" ", 3)[2:3] in (["WARNING"], ["ERROR"])]
    counted = Counter(
        re.sub(r"\bT[0-9A-F]{10,}(-\d+)?\b", "T...", x.split(" ", 3)[3]) for x in records
    )
    for message, count in counted.most_common(3):
        print(f"  logged {count}x with {run.shards} lane(s): {message[:200]}")
    if any(x.split(" ", 3)[2:3] == ["ERROR"] for x in records) or any(
        "Traceback" in x for x in run.log_lines
    ):
        first = next(i for i, x in enumerate(run.log_lines) if "ERROR" in x or "Traceback" in x)
        print("  first error and its traceback:")
        for line in run.log_lines[first : first + 30]:
            print(f"    {line}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shards", default="1,12", help="lane counts to run, comma-separated (1: the baseline)"
    )
    parser.add_argument("--messages", type=int, default=3_000, help="per lane count")
    parser.add_argument("--connections", type=int, default=32, help="webhooks posted at a time")
    parser.add_argument("--timeout", type=float, default=60.0, help="cap on the wait (s)")
    parser.add_argument(
        "--grace", type=float, default=1.0, help="wait after the last answer for a duplicate (s)"
    )
    parser.add_argument(
        "--claim-idle",
        type=float,
        default=3.0,
        help="PEAKDESK_CLAIM_IDLE_S: how long an entry left pending waits to be taken over",
    )
    parser.add_argument(
        "--idle", type=float, default=2.0, help="s the Runtime idles before the posts (measured)"
    )
    parser.add_argument(
        "--log-level", default="WARNING", help="of the Runtime processes (INFO shows takeovers)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the Runtime logs (work dir)")
    parser.add_argument("--helper", choices=["llm", "receiver"], help=argparse.SUPPRESS)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.helper:
        asyncio.run(serve_helper(args.helper))
        return 0
    if args.serve:
        asyncio.run(serve_runtime(json.loads(args.serve)))
        return 0

    shard_counts = [int(x) for x in args.shards.split(",") if x.strip()]
    run_id = uuid.uuid4().hex[:6]
    children: list[subprocess.Popen[str]] = []
    workdir = Path(tempfile.mkdtemp(prefix="peakdesk-lanes-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    cluster = LocalRedisCluster()
    started = time.monotonic()
    try:
        cluster.start()
        masters = sorted(cluster.masters(), key=lambda node: node.port)
        llm, llm_port = start_child(["--helper", "llm"])
        children.append(llm)
        receiver, receiver_port = start_child(["--helper", "receiver"])
        children.append(receiver)
        urls = {
            "llm_url": f"http://127.0.0.1:{llm_port}/v1",
            "callback_url": f"http://127.0.0.1:{receiver_port}/callback",
            "receiver": f"http://127.0.0.1:{receiver_port}",
        }
        print(
            f"python {sys.version.split()[0]}; Redis Cluster of {len(masters)} masters + "
            f"{len(cluster.nodes) - len(masters)} replicas on 127.0.0.1 (started in "
            f"{time.monotonic() - started:.1f} s); {args.messages:,} messages per run, each "
            f"from its own user, {args.connections} connections; lanes {shard_counts}; key "
            f"prefix bench-cl-{run_id}-<lanes>"
        )
        print(
            "NOTE: the 6 Redis nodes, the Runtime, the fakes and the poster all run on this one "
            f"{len(os.sched_getaffinity(0))}-core machine: msg/s is not a scaling figure;"
            " the share of the work per master is the figure."
        )
        runs: list[Run] = []
        for shards in shard_counts:
            prefix = f"bench-cl-{run_id}-{shards}"
            run = run_once(args, shards, prefix, cluster, masters, urls, workdir)
            runs.append(run)
            print(
                f"  {shards} lane(s): {run.accepted:,} accepted, all answered in "
                f"{run.wall_s:.2f} s; busiest master {100 * run.busiest():.1f}% of the commands",
                flush=True,
            )

        print(
            "\nlate: entries the worker took over as stale, after PEAKDESK_CLAIM_IDLE_S="
            f"{args.claim_idle:g} s; cmds/msg: the run's commands on all masters per message;"
            f"\nidle cmd/s: commands per second on all masters while the Runtime idled "
            f"{args.idle:g} s before the posts."
            "\ncommands: share of the run's Redis commands (INFO commandstats, Lua-internal "
            "included, info/replconf left out) per master; busiest: the largest share."
            f"\nw/o getkeys: the same without {GETKEYS} (redis-py's cluster client asks one "
            "node for the keys of a command with movable keys, XREADGROUP, before sending it)."
            "\nCPU s: the master's CPU over the run (busiest: its share of the masters' CPU)."
            "\nkeys held: keys of the run's prefix on the master after the run (SCAN MATCH)."
            "\nlanes served: lanes whose slot the master serves; +r: also {<prefix>} (what every"
            " process shares)."
        )
        print_table(runs, masters)
        print("\nRedis commands per message on each master (the top 6):")
        for run in runs:
            top_commands(run, masters)
        print("\nchecks:")
        ok = True
        for run in runs:
            fine, text = check_line(run)
            ok = ok and fine
            print(text)
            if run.skipped:
                print(
                    f"  {run.shards} lane(s): the worker skipped {run.skipped} entries it was "
                    "handed (left them pending: not started, no entry of their ticket in "
                    "flight); such an entry is answered only when taken over as stale "
                    f"({run.late} takeovers)"
                )
            if run.shards > 1 and run.per_lane:
                spread = sorted(run.per_lane.values())
                print(
                    f"  {run.shards} lanes: {len(run.per_lane)} lanes got messages, "
                    f"{spread[0]}-{spread[-1]} each"
                )
            log_summary(run)

        baseline = next((r for r in runs if r.shards == 1), None)
        parts = [
            f"{100 * r.busiest():.0f}% with {r.shards} lane{'s' if r.shards > 1 else ''}"
            + (" (baseline)" if r is baseline else "")
            for r in runs
        ]
        even = 100 / len(masters)
        print(
            f"\nbusiest master's share of the queue's commands: {', '.join(parts)} "
            f"({len(masters)} masters: {even:.0f}% is even)"
        )
        parts = [f"{100 * r.busiest(GETKEYS):.0f}% with {r.shards}" for r in runs]
        print(f"  without {GETKEYS}: {', '.join(parts)} lane(s)")
        print(f"every message answered exactly once in every run: {'yes' if ok else 'NO'}")
        return 0 if ok else 1
    finally:
        for child in children:
            common.stop_process(child, timeout=10)
        cluster.stop()
        if args.keep:
            print(f"kept the Runtime logs in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        print(
            f"cleaned up: cluster stopped and its directory removed, helpers stopped "
            f"({time.monotonic() - started:.0f} s in all)"
        )


if __name__ == "__main__":
    sys.exit(main())
