"""Worker overhead per message: messages/s through one worker process with a zero-latency LLM.

Processes: a zero-latency fake chat-completions server and a callback receiver (minimal aiohttp
apps that answer at once; the test fakes record every request, which would make them the
bottleneck), each a subprocess pinned to the second CPU; the measured process, a subprocess
pinned to the first CPU, runs the real ``bots.runtime.Runtime`` with one worker loop
(--concurrency slots, PEAKDESK_MAX_CONCURRENT's default 50) on the real Redis at
$PEAKDESK_BENCH_REDIS_URL (default redis://127.0.0.1:6379/14) under unique key prefixes whose
keys are deleted at the end.

Each round is one fresh measured process that first queues --messages messages with
``PriorityQueue.admit`` (Bitext texts, shuffled, priorities from the real detector, each message
its own conversation so each costs one LLM call), then measures in turn:

  LLM only   the baseline: as many ``HolySheepClient.complete`` calls (system prompt + the
             customer's text) to the same fake at the same concurrency, from the same process
  worker     one worker loop, no outbox, until every message has its reply stored
             (``PriorityQueue.finish`` done and the turn added to the history)
  outbox     the outbox alone sending those replies as signed callbacks until all were answered

The first two alternate in order between rounds. Each phase ends when its last message is done
(not when the loop has wound down). Overhead per message = (worker wall time - LLM-only wall
time) / messages, median over the rounds; target <= 2 ms. Beside it the same difference in CPU
time of the measured process. Then one more process runs the whole Runtime as ``peakdesk
worker`` does (worker and outbox together): the time until all replies were stored and until
all callbacks were received. With the embedded fakeredis (no REDIS_URL) one round and one
whole-Runtime run follow as extra lines, on --fakeredis-messages messages.

PEAKDESK_CLAIM_IDLE_S is set to --claim-idle (3 s instead of 30 s), so that an entry the worker
or the outbox leaves pending is taken over within the run; the "late" column counts messages
answered only that way, and the warnings the measured processes logged are summarised.
CPU columns: % of one core used by the fake LLM, the callback receiver, the Redis server and
everything else on the machine during a phase: a fake near 100% would mean the fake, not the
worker, set the pace. The Redis commands per message are counted server-wide (INFO
commandstats), so other clients of that server show up in them too.

Only 127.0.0.1 is used; the run takes about 1.5 minutes.
Run: ``python benchmarks/worker_path.py`` from the repository root (with the venv active).
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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common
from bots.logs import configure_logging
from bots.runtime import Runtime
from bots.settings import Settings
from core.handler import DEFAULT_SYSTEM_PROMPT
from core.llm import HolySheepClient
from core.models import InboundMessage, Reply
from core.outbox import ReplySender
from core.priority import PriorityDetector
from core.worker import ReplyNotifier

SECRET = "bench-webhook-secret"
API_KEY = "sk-bench"
TARGET_MS = 2.0


# -- helper servers (child processes on the second CPU) ------------------------------------


async def serve_helper(kind: str) -> None:
    """Serve the fake LLM ("llm") or the callback receiver ("receiver") until stdin closes."""
    received = 0
    last_at = 0.0

    async def callback(request: web.Request) -> web.Response:
        nonlocal received, last_at
        await request.read()
        received += 1
        last_at = time.monotonic()
        return web.Response(text="ok")

    async def stats(_: web.Request) -> web.Response:
        return web.json_response({"received": received, "last_at": last_at})

    app = web.Application()
    if kind == "llm":
        common.add_fake_llm(app)
    else:
        app.router.add_post("/callback", callback)
        app.router.add_get("/stats", stats)
    await common.serve_app(app, announce=True)  # the port goes to stdout


# -- the measured process (child on the first CPU) -----------------------------------------


def load_texts() -> list[str]:
    texts = common.read_bitext(common.bitext_path())
    if texts:
        random.Random(1).shuffle(texts)  # the file is sorted by intent
        return texts
    return [f"hello, where is my order A{n:05d}? it was due yesterday" for n in range(1000)]


@dataclass
class Outcome:
    done: int
    recovered: int = 0  # messages only processed after being taken over
    regular_done_at: float | None = None  # perf_counter() when all the others were done


class Recoveries:
    """Counts entries the worker took over with claim_stale (idle for PEAKDESK_CLAIM_IDLE_S)."""

    def __init__(self, runtime: Runtime) -> None:
        self.count = 0
        claim_stale = runtime.queue.claim_stale

        async def counting(consumer: str, min_idle_ms: int, count: int = 50) -> Any:
            entries = await claim_stale(consumer, min_idle_ms, count)
            self.count += len(entries)
            return entries

        setattr(runtime.queue, "claim_stale", counting)  # noqa: B010 (mypy: no method assignment)


class Counting:
    """Counts finished messages (as the worker's notifier) or sent callbacks (as a sender)."""

    def __init__(
        self,
        target: int,
        notifier: ReplyNotifier | None,
        sender: ReplySender | None,
        on_done: Callable[[], None] | None = None,
    ) -> None:
        self.target = target
        self.on_done = on_done
        self.count = 0
        self.times: list[float] = []  # perf_counter() of each one
        self.done = asyncio.Event()
        self._notifier = notifier
        self._sender = sender

    def _one(self) -> None:
        self.count += 1
        self.times.append(time.perf_counter())
        if self.count == self.target and self.on_done is not None:
            self.on_done()
        if self.count >= self.target:
            self.done.set()

    def outcome(self, recovered: int = 0) -> Outcome:
        """Done so far; with ``recovered`` messages taken over late, when the others were."""
        regular = self.count - recovered
        return Outcome(self.count, recovered, self.times[regular - 1] if regular > 0 else None)

    def notify(self, ticket_id: str) -> None:
        if self._notifier is not None:
            self._notifier.notify(ticket_id)
        self._one()

    async def send(self, reply: Reply) -> None:
        assert self._sender is not None
        await self._sender.send(reply)
        self._one()


@dataclass
class Phase:
    wall_s: float
    cpu_s: float  # of the measured process
    llm_cpu: float  # % of one core: fake LLM, receiver, Redis server, everything else
    receiver_cpu: float
    redis_cpu: float
    other_cpu: float
    done: int
    recovered: int
    regular_wall_s: float | None  # until every message not taken over late was done
    commands: dict[str, float] | None = None  # Redis commands per message


class Probe:
    """Wall time, CPU of the measured process and of the watched processes over one phase.

    The phase ends at :meth:`mark` (the moment its last message was done), not when the code
    measured has wound down (a worker stops after its current blocking read, up to 1 s).
    """

    def __init__(self, pids: dict[str, int | None]) -> None:
        self.pids = pids
        self.started = 0.0  # perf_counter() at the start of the last measurement
        self._end: common.CpuSnapshot | None = None

    def mark(self) -> None:
        if self._end is None:
            self._end = common.CpuSnapshot.take(self.pids)

    async def measure(self, body: Callable[[], Awaitable[Outcome]]) -> Phase:
        before = common.CpuSnapshot.take(self.pids)
        self.started, self._end = before.wall, None
        outcome = await body()
        use = common.CpuUse.between(before, self._end or common.CpuSnapshot.take(self.pids))
        done_at = outcome.regular_done_at
        return Phase(
            use.wall_s,
            use.own_s,
            use.pct(use.procs_s["llm"]),
            use.pct(use.procs_s["receiver"]),
            use.pct(use.procs_s["redis"]),
            use.pct(use.other_s),
            outcome.done,
            outcome.recovered,
            done_at - before.wall if done_at is not None else None,
        )


async def redis_command_calls(runtime: Runtime) -> dict[str, int] | None:
    if not runtime.settings.redis_url:
        return None
    stats: dict[str, Any] = await runtime.redis.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


def _letters(i: int) -> str:
    """A distinct suffix without digits (digits would read as an order id): every text is
    unique, so no two messages share an answer and each costs exactly one LLM call."""
    out = ""
    while True:
        i, rest = divmod(i, 26)
        out = chr(ord("a") + rest) + out
        if not i:
            return out


async def prefill(runtime: Runtime, n: int, callback_url: str) -> tuple[float, list[str]]:
    """Queue ``n`` messages with PriorityQueue.admit; returns (seconds, texts used)."""
    texts = load_texts()
    detector = PriorityDetector()
    tag = uuid.uuid4().hex[:6]
    messages = [
        InboundMessage(
            channel="webhook",
            account="bench",
            message_id=f"{tag}-{i}",
            user_id=f"u-{tag}-{i}",
            conversation_id=f"c-{tag}-{i}",
            text=f"{texts[i % len(texts)]} (ref {_letters(i)})",
            reply_to={"callback_url": callback_url},
        )
        for i in range(n)
    ]
    started = time.perf_counter()
    for first in range(0, n, 1000):
        chunk = messages[first : first + 1000]
        admissions = await asyncio.gather(
            *(runtime.queue.admit(m, int(detector.detect(m.text).priority)) for m in chunk)
        )
        assert all(a.status == "queued" for a in admissions), "prefill: not all queued"
    return time.perf_counter() - started, [m.text for m in messages]


async def llm_only(cfg: dict[str, Any], texts: Sequence[str], probe: Probe) -> Outcome:
    """``len(texts)`` completions at ``concurrency``; returns the number that succeeded."""
    client = HolySheepClient(api_key=API_KEY, base_url=cfg["llm_url"])
    next_index = 0
    ok = 0

    async def caller() -> None:
        nonlocal next_index, ok
        while next_index < len(texts):
            text = texts[next_index]
            next_index += 1
            messages = [
                {"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
                {"role": "user", "content": text},
            ]
            completion = await client.complete(messages)
            ok += bool(completion.text)

    try:
        await asyncio.gather(*(caller() for _ in range(cfg["concurrency"])))
        probe.mark()
    finally:
        await client.aclose()
    return Outcome(ok)


async def worker_only(runtime: Runtime, n: int, timeout: float, probe: Probe) -> Outcome:
    worker = runtime.workers[0]
    counting = Counting(n, worker.notifier, None, probe.mark)
    worker.notifier = counting
    recoveries = Recoveries(runtime)
    stop = asyncio.Event()
    task = asyncio.get_running_loop().create_task(worker.run(stop))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(counting.done.wait(), timeout)
    outcome = counting.outcome(recoveries.count)
    stop.set()
    await task
    return outcome


async def outbox_only(runtime: Runtime, n: int, timeout: float, probe: Probe) -> Outcome:
    counting = Counting(n, None, runtime.outbox.senders["webhook"], probe.mark)
    runtime.outbox.senders["webhook"] = counting
    stop = asyncio.Event()
    task = asyncio.get_running_loop().create_task(runtime.outbox.run(stop))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(counting.done.wait(), timeout)
    outcome = counting.outcome()
    stop.set()
    await task
    return outcome


def sources(runtime: Runtime) -> dict[str, int]:
    counts: dict[str, int] = {}
    for metric in runtime.metrics.processed.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                source = sample.labels["source"]
                counts[source] = counts.get(source, 0) + int(sample.value)
    return counts


async def measured_process(cfg: dict[str, Any]) -> dict[str, Any]:
    settings = Settings(
        _env_file=None,
        redis_url=cfg["redis_url"],
        peakdesk_redis_prefix=cfg["prefix"],
        holysheep_api_key=API_KEY,
        holysheep_base_url=cfg["llm_url"],
        webhook_secret=SECRET,
        peakdesk_max_concurrent=cfg["concurrency"],
        peakdesk_max_queue=10_000_000,
        peakdesk_log_level="WARNING",
        peakdesk_claim_idle_s=cfg["claim_idle_s"],
        # The prefilled backlog would be acknowledged (and partly answered from templates) at
        # admission: ingest-side work, not the worker path measured here.
        peakdesk_first_response_s=0,
        # The prefilled backlog would raise the degradation ladder (answers shared by
        # intent): the benchmark measures the path of a message answered by the LLM.
        peakdesk_peak_mode="off",
    )
    configure_logging("text", "WARNING")
    n, timeout = cfg["messages"], cfg["timeout"]
    runtime = Runtime(settings, workers=1)
    probe = Probe(cfg["pids"])
    result: dict[str, Any] = {}
    try:
        await runtime.queue.ensure_groups()
        result["prefill_s"], texts = await prefill(runtime, n, cfg["callback_url"])
        if cfg["mode"] == "pair":
            phases: dict[str, Phase] = {}
            order = ["llm", "worker"] if cfg["llm_first"] else ["worker", "llm"]
            for name in order:
                if name == "llm":
                    phases["llm"] = await probe.measure(lambda: llm_only(cfg, texts, probe))
                else:
                    before = await redis_command_calls(runtime)
                    phases["worker"] = await probe.measure(
                        lambda: worker_only(runtime, n, timeout, probe)
                    )
                    after = await redis_command_calls(runtime)
                    if before is not None and after is not None:
                        phases["worker"].commands = {
                            k: (v - before.get(k, 0)) / n
                            for k, v in after.items()
                            if (v - before.get(k, 0)) / n >= 0.05
                        }
            result["sources"] = sources(runtime)
            phases["outbox"] = await probe.measure(lambda: outbox_only(runtime, n, timeout, probe))
        else:  # the whole Runtime, as `peakdesk worker` runs it
            worker = runtime.workers[0]
            replies = Counting(n, worker.notifier, None)
            worker.notifier = replies
            sent = Counting(n, None, runtime.outbox.senders["webhook"], probe.mark)
            runtime.outbox.senders["webhook"] = sent
            recoveries = Recoveries(runtime)

            async def run_all() -> Outcome:
                await runtime.start()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(replies.done.wait(), timeout)
                    await asyncio.wait_for(sent.done.wait(), timeout)
                return sent.outcome()

            # One measurement until every callback was received; the replies row shares its
            # CPU figures and ends when the last reply was stored.
            callbacks = await probe.measure(run_all)
            stored = replies.outcome(recoveries.count)
            last = replies.times[-1] if replies.times else probe.started + callbacks.wall_s
            regular = stored.regular_done_at
            phases = {
                "replies": Phase(
                    **{
                        **callbacks.__dict__,
                        "wall_s": last - probe.started,
                        "done": stored.done,
                        "recovered": stored.recovered,
                        "regular_wall_s": regular - probe.started if regular else None,
                    }
                ),
                "callbacks": callbacks,
            }
            result["sources"] = sources(runtime)
        result["phases"] = {name: phase.__dict__ for name, phase in phases.items()}
    finally:
        await runtime.stop()
    return result


# -- the orchestrator ----------------------------------------------------------------------


def start_helper(kind: str, cpu: int | None) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--helper", kind],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=common.pinned(cpu),
    )
    assert process.stdout is not None
    return process, int(process.stdout.readline())


def callbacks_received(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as response:
        return int(json.loads(response.read())["received"])


def run_measured(cfg: dict[str, Any], cpu: int | None, workdir: Path) -> dict[str, Any]:
    log = workdir / f"{cfg['prefix']}.log"
    command = [sys.executable, __file__, "--measure", json.dumps(cfg)]
    timeout = cfg["timeout"] * 4 + 60
    result = common.run_for_result(command, "measured process", cpu=cpu, timeout=timeout, log=log)
    # "<date> <time> WARNING <logger>: <message>": counted by message, ticket ids left out
    result["warnings"] = Counter(
        re.sub(r"\bT[0-9A-F]{10,}\b", "T...", x.split(" ", 3)[3])
        for x in log.read_text().splitlines()
        if x.split(" ", 3)[2:3] == ["WARNING"]
    )
    return result


@dataclass
class Row:
    label: str
    store: str
    phase: dict[str, Any]
    messages: int

    @property
    def rate(self) -> float:
        return float(self.phase["done"]) / float(self.phase["wall_s"])


def print_rows(rows: Sequence[Row]) -> None:
    print(
        f"{'what':<34} {'store':<9} {'msgs':>6} {'wall s':>7} {'msg/s':>7} {'CPU ms/msg':>10} "
        f"{'fakeLLM':>7} {'recv':>5} {'redis':>5} {'other':>5} {'late':>5}"
    )
    for row in rows:
        p = row.phase
        done = f"{p['done']}" if p["done"] == row.messages else f"{p['done']}/{row.messages}!"
        print(
            f"{row.label:<34} {row.store:<9} {done:>6} {p['wall_s']:>7.2f} {row.rate:>7,.0f} "
            f"{1000 * p['cpu_s'] / max(1, p['done']):>10.3f} {p['llm_cpu']:>6.0f}% "
            f"{p['receiver_cpu']:>4.0f}% {p['redis_cpu']:>4.0f}% {p['other_cpu']:>4.0f}% "
            f"{p['recovered']:>5}"
        )


def phase_rows(result: dict[str, Any], store: str) -> list[Row]:
    p, n = result["phases"], result["messages"]
    if "llm" in p:
        return [
            Row("LLM only (baseline)", store, p["llm"], n),
            Row("worker: replies stored", store, p["worker"], n),
            Row("outbox: callbacks delivered", store, p["outbox"], n),
        ]
    return [
        Row("Runtime: replies stored", store, p["replies"], n),
        Row("Runtime: all callbacks received", store, p["callbacks"], n),
    ]


def overhead_ms(result: dict[str, Any], key: str = "wall_s") -> float:
    """(worker - LLM only) / messages in ms, of wall_s, cpu_s or regular_wall_s."""
    worker, llm = result["phases"]["worker"], result["phases"]["llm"]
    if key == "regular_wall_s":
        spent = float(worker["regular_wall_s"] or worker["wall_s"]) - float(llm["wall_s"])
    else:
        spent = float(worker[key]) - float(llm[key])
    return 1000 * spent / int(result["messages"])


def listed(values: Sequence[float]) -> str:
    return ", ".join(f"{v:.3f}" for v in values)


def report(
    args: argparse.Namespace,
    rounds: list[dict[str, Any]],
    whole: dict[str, Any],
    fake_pair: dict[str, Any] | None,
    fake_whole: dict[str, Any] | None,
) -> bool:
    """Print the tables and checks; True when the target is met."""
    mid = sorted(rounds, key=overhead_ms)[len(rounds) // 2]
    rows = [*phase_rows(mid, "redis"), *phase_rows(whole, "redis")]
    fakes = [r for r in (fake_pair, fake_whole) if r is not None]
    for result in fakes:
        rows += phase_rows(result, "fakeredis")
    print(
        "\nreal Redis: the median round (by overhead) and the whole-Runtime run; then fakeredis."
        "\nCPU ms/msg: the measured process (Runtime rows: the whole run, worker + outbox);"
        "\nfakeLLM/recv/redis/other: % of one core; late: messages answered only after being"
        " taken over as stale"
    )
    print_rows(rows)

    overheads = [overhead_ms(r) for r in rounds]
    cpu_overheads = [overhead_ms(r, "cpu_s") for r in rounds]
    overhead = median(overheads)
    print(
        f"\noverhead per message = (worker - LLM only) / messages, real Redis, median of "
        f"{len(rounds)} rounds: wall {overhead:.3f} ms ({listed(overheads)}); "
        f"CPU {median(cpu_overheads):.3f} ms ({listed(cpu_overheads)})"
    )
    late = [int(r["phases"]["worker"]["recovered"]) for r in rounds]
    if any(late):
        regular = [overhead_ms(r, "regular_wall_s") for r in rounds]
        print(
            f"  {sum(late)} message(s) were skipped by the worker and answered only when taken "
            f"over as stale after PEAKDESK_CLAIM_IDLE_S={args.claim_idle:g} s; without that "
            f"wait: wall {median(regular):.3f} ms ({listed(regular)})"
        )
    if fake_pair is not None:
        print(
            f"overhead per message with fakeredis: wall {overhead_ms(fake_pair):.3f} ms, "
            f"CPU {overhead_ms(fake_pair, 'cpu_s'):.3f} ms"
        )
    commands = mid["phases"]["worker"].get("commands") or {}
    if commands:
        ranked = sorted(commands.items(), key=lambda x: -x[1])
        print(
            "Redis commands executed per message in the worker phase (Lua included): "
            + ", ".join(f"{k} {v:.2f}" for k, v in ranked)
        )

    ok = True
    for store, runs in (("real Redis", [*rounds, whole]), ("fakeredis", fakes)):
        if not runs:
            continue
        complete = all(p["done"] >= r["messages"] for r in runs for p in r["phases"].values())
        messages = sum(r["messages"] for r in runs)
        from_llm = sum(r["sources"].get("llm", 0) for r in runs)
        received = sum(r["received"] for r in runs)
        print(
            f"checks, {store}: every phase complete: {'yes' if complete else 'NO'}; replies from "
            f"the LLM (not fallbacks): {from_llm:,} of {messages:,}; callbacks received "
            f"{received:,} for {messages:,} messages"
            + (f" ({received - messages:,} DUPLICATES)" if received > messages else "")
            + (f" ({messages - received:,} MISSING)" if received < messages else "")
        )
        if store == "real Redis":
            ok = complete and from_llm == messages == received
    labelled = [
        *((f"round {i + 1}", r) for i, r in enumerate(rounds)),
        ("the Runtime run", whole),
        *((f"fakeredis {'round' if 'llm' in r['phases'] else 'Runtime run'}", r) for r in fakes),
    ]
    for label, result in labelled:
        for message, count in Counter(result["warnings"]).most_common(3):
            print(f"  warning logged {count}x in {label}: {message}")
    met = overhead <= TARGET_MS and ok
    print(
        f"\ntarget: overhead <= {TARGET_MS:g} ms per message (median wall, real Redis), "
        "every real-Redis message answered by the LLM and called back once"
    )
    print(f"target met: {'yes' if met else 'no'}")
    return met


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=8_000, help="per round (real Redis)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of LLM-only vs worker")
    parser.add_argument("--concurrency", type=int, default=50, help="PEAKDESK_MAX_CONCURRENT")
    parser.add_argument(
        "--fakeredis-messages", type=int, default=1_000, help="0 skips the fakeredis lines"
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="cap per phase (s)")
    parser.add_argument(
        "--claim-idle",
        type=float,
        default=3.0,
        help="PEAKDESK_CLAIM_IDLE_S: how long an entry left pending waits to be taken over",
    )
    parser.add_argument("--helper", choices=["llm", "receiver"], help=argparse.SUPPRESS)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.helper:
        asyncio.run(serve_helper(args.helper))
        return 0
    if args.measure:
        result = asyncio.run(measured_process(json.loads(args.measure)))
        common.emit_result(result)
        return 0

    worker_cpu, helper_cpu = common.two_cpus()
    redis_url = common.bench_redis_url()
    redis_pid = common.redis_server_pid(redis_url)
    run_id = uuid.uuid4().hex[:6]
    prefixes: list[str] = []
    helpers: list[subprocess.Popen[str]] = []
    workdir = Path(tempfile.mkdtemp(prefix="peakdesk-worker-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        llm, llm_port = start_helper("llm", helper_cpu)
        helpers.append(llm)
        receiver, receiver_port = start_helper("receiver", helper_cpu)
        helpers.append(receiver)
        if helper_cpu is not None:
            os.sched_setaffinity(0, {helper_cpu})
            print(
                f"measured process pinned to CPU {worker_cpu}; fake LLM, callback receiver "
                f"and this orchestrator to CPU {helper_cpu}; Redis (pid {redis_pid}) not pinned"
            )
        else:
            print("WARNING: one CPU only: everything shares it")
        print(
            f"python {sys.version.split()[0]}; {args.messages} messages x {args.rounds} rounds "
            f"at concurrency {args.concurrency}; real Redis {redis_url}; key prefix bench-wp-"
            f"{run_id}-*"
        )
        base: dict[str, Any] = {
            "concurrency": args.concurrency,
            "llm_url": f"http://127.0.0.1:{llm_port}/v1",
            "callback_url": f"http://127.0.0.1:{receiver_port}/callback",
            "timeout": args.timeout,
            "claim_idle_s": args.claim_idle,
            "pids": {"llm": llm.pid, "receiver": receiver.pid, "redis": redis_pid},
        }

        def run(mode: str, store_url: str | None, n: int, llm_first: bool) -> dict[str, Any]:
            prefix = f"bench-wp-{run_id}-{len(prefixes)}"
            prefixes.append(prefix)
            cfg = {
                **base,
                "mode": mode,
                "redis_url": store_url,
                "prefix": prefix,
                "messages": n,
                "llm_first": llm_first,
            }
            received = callbacks_received(receiver_port)
            result = run_measured(cfg, worker_cpu, workdir)
            result["messages"] = n
            result["received"] = callbacks_received(receiver_port) - received
            if store_url is None:  # fakeredis has no server process of its own
                for phase in result["phases"].values():
                    phase["redis_cpu"] = 0.0
            return result

        rounds: list[dict[str, Any]] = []
        for r in range(args.rounds):
            result = run("pair", redis_url, args.messages, llm_first=r % 2 == 0)
            rounds.append(result)
            p = result["phases"]
            print(
                f"  round {r + 1}: LLM only {p['llm']['done'] / p['llm']['wall_s']:,.0f}/s, "
                f"worker {p['worker']['done'] / p['worker']['wall_s']:,.0f} msg/s, "
                f"outbox {p['outbox']['done'] / p['outbox']['wall_s']:,.0f} callbacks/s "
                f"(prefill {args.messages / result['prefill_s']:,.0f} admits/s)",
                flush=True,
            )
        whole = run("full", redis_url, args.messages, llm_first=False)
        fake_pair = fake_whole = None
        if args.fakeredis_messages:
            fake_pair = run("pair", None, args.fakeredis_messages, llm_first=True)
            fake_whole = run("full", None, args.fakeredis_messages, llm_first=False)

        met = report(args, rounds, whole, fake_pair, fake_whole)
        return 0 if met else 1
    finally:
        for helper in helpers:
            common.stop_process(helper, timeout=10)
        with contextlib.suppress(Exception):
            deleted = common.delete_keys(redis_url, prefixes)
            print(
                f"cleaned up: {deleted:,} Redis keys under {len(prefixes)} prefixes; "
                "helpers stopped"
            )
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
