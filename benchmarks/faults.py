"""Faults under steady load, the heavier variants of ``tests/faults``: what a customer sees
while workers die, Redis restarts, the provider or Telegram is down.

Each scenario runs on a fresh cluster of real processes (``tests/faults/cluster.py``): a
``redis-server`` of its own (AOF on, ``appendfsync everysec``), 2 gateways
(``peakdesk serve --workers 0``) and 3 workers (``peakdesk worker --workers 2``), with an
OpenAI-compatible fake provider behind a gate that can refuse connections, a callback
receiver and a fake Telegram Bot API in this process. Signed webhooks (--rate a second) and
Telegram updates (--telegram-rate) go round-robin to the gateways; refused ones are sent again
with the same id after ``Retry-After``. The scenarios:

  baseline   nothing breaks (the same load and times: the figures to compare with)
  kill       SIGKILL a random worker that is up every --kill-every s, --kills times, each
             started again at once (a start costs about 5 s of CPU: aiogram's types)
  redis      SIGKILL redis-server, --redis-down s later start it again on its AOF
  provider   every provider call answered 503 for half of --provider-down, connections
             refused for the other half, then back
  telegram   Telegram's sendMessage answers 502 for --telegram-down s
  cluster    on a Redis Cluster instead (3 masters with a replica each, tests/redis_cluster.py;
             PEAKDESK_REDIS_CLUSTER=true, the queue in --shards lanes spread over the
             masters): SIGKILL a random worker (started again at once), a second later
             SIGKILL the master of the lane holding the most conversations; its replica
             takes over; --master-down s later the killed node is started again on its AOF
             and rejoins as a replica

Per scenario: --warmup s of load, the fault, --after s more load, then the drain: until every
acknowledged message is answered (at most --drain s). The figures (defined in
``tests/faults/figures.py``): sent, acknowledged, answered, lost (acknowledged, never
answered), dup (messages with two different replies), redeliv (the same reply delivered
again), acks (acknowledgements, not answers), fallback (apologies), dead / undeliv (dead
letters and undelivered replies in Redis), retried (messages sent more than once), recover
(fault end until the backlog of messages sent before it is answered), llm back (fault end
until the provider answers again), p50 / p99 (first send to answer), busy (the machine's CPU,
% of all cores: above ~90% the figures measure the machine). Targets: 0 lost, 0 dup.

Settings are production's except: PEAKDESK_CLAIM_IDLE_S --claim-idle (5 s, not 30 s, so a
killed worker's messages are taken over within the run), PEAKDESK_RETRY_AFTER_S 1, the LLM
client's HOLYSHEEP_BACKOFF_BASE_S 0.2, HOLYSHEEP_TIMEOUT_S 5 and HOLYSHEEP_DEADLINE_S 10,
no flood limit (the load is many customers of one gateway); the provider circuit's probe
every --probe-s (15 s, the default). About 11 minutes with the
defaults; only 127.0.0.1 is used; every process is stopped and the work directory deleted at
the end (--keep keeps the logs). Run: ``python benchmarks/faults.py`` from the repository root.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine_busy_s
from tests.faults.cluster import ClusterOptions, FaultCluster, LogReport
from tests.faults.figures import Figures
from tests.faults.load import TEXTS
from tests.faults.scenarios import (
    Fault,
    Load,
    MasterFailover,
    Timing,
    kill_workers,
    no_fault,
    provider_down,
    restart_redis,
    run_scenario,
    telegram_down,
)
from tests.logscan import leaks

SCENARIOS = ("baseline", "kill", "redis", "provider", "telegram", "cluster")
COLUMNS = (
    ("scenario", 9),
    ("sent", 6),
    ("acked", 6),
    ("answered", 8),
    ("lost", 5),
    ("dup", 4),
    ("redeliv", 7),
    ("acks", 5),
    ("fallback", 8),
    ("dead", 4),
    ("undeliv", 7),
    ("retried", 7),
    ("recover", 8),
    ("llm back", 8),
    ("p50", 6),
    ("p99", 6),
    ("busy", 5),
)


def faults(args: argparse.Namespace) -> dict[str, Fault]:
    return {
        "baseline": no_fault(args.baseline_s),
        "kill": kill_workers(args.kills, args.kill_every, seed=args.seed),
        "redis": restart_redis(args.redis_down),
        "provider": provider_down(args.provider_down),
        "telegram": telegram_down(args.telegram_down),
        "cluster": MasterFailover(down_s=args.master_down, seed=args.seed),
    }


def row(figures: Figures, busy: float) -> str:
    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}s"

    values = (
        figures.scenario,
        figures.sent,
        figures.acknowledged,
        figures.answered,
        figures.lost,
        figures.duplicates,
        figures.redelivered,
        figures.acks,
        figures.fallbacks,
        figures.dead,
        figures.undelivered,
        figures.retried,
        seconds(figures.recover_s),
        seconds(figures.llm_back_s),
        seconds(figures.p50_s),
        seconds(figures.p99_s),
        f"{busy:.0f}%",
    )
    return " ".join(
        f"{value:<{width}}" if n == 0 else f"{value:>{width}}"
        for n, (value, (_, width)) in enumerate(zip(values, COLUMNS, strict=True))
    )


def header() -> str:
    return " ".join(
        f"{name:<{width}}" if n == 0 else f"{name:>{width}}"
        for n, (name, width) in enumerate(COLUMNS)
    )


def write_outcomes(path: Path, figures: Figures) -> None:
    """One row per message (seconds since the load started), for a closer look."""
    with path.open("w", newline="") as file:
        out = csv.writer(file)
        out.writerow(["key", "channel", "sent_at", "acked_at", "answered_at", "source", "replies"])
        for o in figures.outcomes:
            times = [f"{o.sent_at:.3f}", _s(o.acked_at), _s(o.answered_at)]
            out.writerow([o.key, o.channel, *times, o.source or "", o.replies])


def _s(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


async def run_one(
    name: str, fault: Fault, args: argparse.Namespace, workdir: Path
) -> tuple[Figures, float, LogReport, list[str], list[str], int]:
    on_redis_cluster = name == "cluster"
    options = ClusterOptions(
        claim_idle_s=args.claim_idle,
        provider_probe_s=args.probe_s,
        llm_latency_s=args.llm_latency,
        redis_cluster=on_redis_cluster,
        shards=args.shards if on_redis_cluster else 1,
    )
    timing = Timing(
        warmup_s=args.warmup, after_s=args.after, drain_s=args.drain, quiet_s=args.quiet
    )
    load = Load(webhook_rate=args.rate, telegram_rate=args.telegram_rate)
    async with FaultCluster(workdir / name, options) as cluster:
        wall, busy = time.monotonic(), machine_busy_s()
        figures = await run_scenario(cluster, name, fault, load=load, timing=timing)
        cores = len(os.sched_getaffinity(0))
        share = 100 * (machine_busy_s() - busy) / ((time.monotonic() - wall) * cores)
        private = (*cluster.secrets, *TEXTS)
        leaked = [f for line in cluster.log_lines() for f in leaks(line, private)]
        report = cluster.log_report()
        crashes = cluster.crashes()
        slow_fsyncs = cluster.slow_fsyncs()
    return figures, share, report, leaked, crashes, slow_fsyncs


async def run(args: argparse.Namespace, workdir: Path) -> bool:
    chosen = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(SCENARIOS))
    if unknown:
        raise SystemExit(f"unknown scenarios: {', '.join(unknown)} (of {', '.join(SCENARIOS)})")
    results: list[tuple[Figures, float]] = []
    ok = True
    for name in chosen:
        print(f"\n== {name} ==", flush=True)
        fault = faults(args)[name]
        figures, busy, report, leaked, crashes, slow_fsyncs = await run_one(
            name, fault, args, workdir
        )
        results.append((figures, busy))
        print(header())
        print(row(figures, busy))
        print(
            f"sources {dict(figures.sources)}; channels (sent, acked, answered) "
            f"{figures.by_channel}; p99 per channel {figures.channel_p99_s}"
        )
        if isinstance(fault, MasterFailover):
            print(fault.summary())
            ok &= fault.rejoin_s is not None
        if args.keep:
            write_outcomes(workdir / name / "messages.csv", figures)
        if figures.lost_keys:
            print(f"lost: {', '.join(figures.lost_keys[:10])}")
        if figures.duplicate_keys:
            print(f"duplicates: {', '.join(figures.duplicate_keys[:10])}")
        print(
            f"log: {report.records} records, {len(report.errors)} errors, "
            f"{len(report.not_json)} non-JSON lines, {len(leaked)} leaks; "
            f"redis slow fsyncs {slow_fsyncs}; crashed: {', '.join(crashes) or 'none'}"
        )
        for kind, count in report.warnings.most_common(8):
            print(f"  {count:>5} x {kind}")
        for line in (report.errors + report.not_json + leaked)[:10]:
            print(f"  ! {line}")
        ok &= figures.lost == 0 and figures.duplicates == 0 and not crashes and not leaked
    print("\n== summary ==")
    print(header())
    for figures, busy in results:
        print(row(figures, busy))
    print(f"targets 0 lost, 0 dup, no crash, no secret in the logs: {'met' if ok else 'NOT met'}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated")
    parser.add_argument("--rate", type=float, default=10.0, help="webhook messages a second")
    parser.add_argument("--telegram-rate", type=float, default=10.0, help="updates a second")
    parser.add_argument("--warmup", type=float, default=10.0, help="load before the fault (s)")
    parser.add_argument("--after", type=float, default=15.0, help="load after the fault (s)")
    parser.add_argument("--drain", type=float, default=120.0, help="most wait for answers (s)")
    parser.add_argument("--quiet", type=float, default=3.0, help="wait for late duplicates (s)")
    parser.add_argument("--baseline-s", type=float, default=30.0, help="the baseline's 'fault'")
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--kill-every", type=float, default=8.0, help="seconds between kills")
    parser.add_argument("--redis-down", type=float, default=10.0, help="seconds Redis is down")
    parser.add_argument("--provider-down", type=float, default=60.0)
    parser.add_argument("--telegram-down", type=float, default=60.0)
    parser.add_argument(
        "--master-down",
        type=float,
        default=10.0,
        help="cluster: seconds between the promotion and the killed master's restart",
    )
    parser.add_argument("--shards", type=int, default=6, help="cluster: PEAKDESK_SHARDS")
    parser.add_argument("--claim-idle", type=float, default=5.0, help="PEAKDESK_CLAIM_IDLE_S")
    parser.add_argument("--probe-s", type=float, default=15.0, help="PEAKDESK_PROVIDER_PROBE_S")
    parser.add_argument("--llm-latency", type=float, default=0.3, help="fake provider (s)")
    parser.add_argument("--seed", type=int, default=None, help="which workers are killed")
    parser.add_argument("--keep", action="store_true", help="keep the logs (path printed)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="peakdesk-faults-"))
    try:
        return 0 if asyncio.run(run(args, workdir)) else 1
    finally:
        if args.keep:
            print(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
