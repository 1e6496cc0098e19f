"""Closed-loop HTTP load with ``wrk`` against server subprocesses, and its per-round report.

What ingest.py and telegram_ingest.py share: the requests (precomputed POSTs, one a line of a
file) and the wrk Lua script that sends them, a measurement of one server with the CPU used
meanwhile, alternating rounds, the per-round and median tables with the verdict, the
durability check of what the server admitted, their common flags, opening lines and clean-up.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from string import Template
from typing import Any

from benchmarks.common import CpuSnapshot, CpuUse, Server, delete_keys, run_for_result

# Cycles through the precomputed requests of a file; in "once" mode a thread stops when its
# share runs out, so no request (message id) is sent twice. Arguments: the file, "once" or
# "cycle", the number of threads.
WRK_SCRIPT = Template(r"""
local reqs, n, i, once = {}, 0, 0, false
accepted, other2xx, non2xx, exhausted = 0, 0, 0, 0
tid, nthreads = 0, 1
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  once = args[2] == "once"
  nthreads = tonumber(args[3]) or 1
  local k = -1
  for line in io.lines(args[1]) do
    k = k + 1
    if k % nthreads == tid then
      local f = {line:match($pattern)}
      n = n + 1
      reqs[n] = wrk.format("POST", $path, {$headers}, f[#f])
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
  if status == $status then
    accepted = accepted + 1
  elseif status >= 200 and status < 300 then
    other2xx = other2xx + 1
  else
    non2xx = non2xx + 1
  end
end

function done(summary, latency, requests)
  local a, b, c, e = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("accepted")
    b = b + t:get("other2xx")
    c = c + t:get("non2xx")
    e = e + t:get("exhausted")
  end
  local errs = summary.errors
  io.write(string.format(
    'RESULT {"duration_us": %d, "accepted": %d, "other2xx": %d, "non2xx": %d, ' ..
    '"errors": %d, "exhausted": %d, "p50_us": %d, "p99_us": %d}\n',
    summary.duration, a, b, c,
    errs.connect + errs.read + errs.write + errs.timeout, e,
    latency:percentile(50.0), latency:percentile(99.0)))
end
""")


def lua_string(text: str) -> str:
    if not text.isascii():
        raise ValueError(f"not ASCII: {text!r}")
    return json.dumps(text)  # ASCII JSON string escapes are Lua's too


@dataclass(frozen=True)
class Requests:
    """POSTs to ``path``, the status that counts as accepted, and their headers: ``headers``
    the same for all, ``line_headers`` from each line of a requests file, which holds their
    values and then the body, separated by tabs."""

    path: str
    accepted: int
    headers: Mapping[str, str]
    line_headers: tuple[str, ...] = ()

    def lua(self) -> str:
        """The wrk script sending a requests file (see :class:`Wrk`)."""
        pattern = "^" + "([^\t]*)\t" * len(self.line_headers) + "(.*)$"
        headers = [f"[{lua_string(k)}] = {lua_string(v)}" for k, v in self.headers.items()]
        headers += [f"[{lua_string(k)}] = f[{n}]" for n, k in enumerate(self.line_headers, 1)]
        return WRK_SCRIPT.substitute(
            pattern=lua_string(pattern),
            path=lua_string(self.path),
            headers=", ".join(headers),
            status=self.accepted,
        )

    def parse(self, line: str) -> tuple[bytes, dict[str, str]]:
        """One line of a requests file: (body, headers)."""
        *values, body = line.split("\t", len(self.line_headers))
        return body.encode(), {**self.headers, **dict(zip(self.line_headers, values, strict=True))}


@dataclass
class LoadResult:
    seconds: float
    accepted: int  # answers with the accepted status
    other2xx: int  # other 2xx answers (a duplicate, say)
    non2xx: int
    errors: int  # socket errors and timeouts
    p50_ms: float
    p99_ms: float
    exhausted: bool  # "once" mode: the requests ran out before the time did


@dataclass(frozen=True)
class Wrk:
    """wrk pinned to ``cpu`` sending files of ``requests``: closed loop, ``connections``
    connections back to back (the Lua script is written to ``script`` by :meth:`prepare`)."""

    requests: Requests
    script: Path
    connections: int
    threads: int
    cpu: int | None

    def prepare(self) -> Wrk:
        self.script.write_text(self.requests.lua())
        return self

    def run(self, url: str, requests_file: Path, once: bool, seconds: float) -> LoadResult:
        """Send ``requests_file`` to the server at ``url`` for ``seconds``; with ``once`` each
        request once at most."""
        command = [
            "wrk",
            f"-t{self.threads}",
            f"-c{self.connections}",
            f"-d{seconds:g}s",
            "--timeout",
            "10s",
            "-s",
            str(self.script),
            url + self.requests.path,
            "--",
            str(requests_file),
            "once" if once else "cycle",
            str(self.threads),
        ]
        r = run_for_result(command, "wrk", cpu=self.cpu, timeout=seconds + 120)
        return LoadResult(
            seconds=r["duration_us"] / 1e6,
            accepted=r["accepted"],
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
        return self.load.accepted / self.load.seconds if self.load.seconds else 0.0


def measure_server(
    server: Server, round_no: int, redis_pid: int | None, load: Callable[[], LoadResult]
) -> Measurement:
    """Run ``load`` against ``server``, with the CPU the server, the load generator (a child
    process), Redis and everything else used meanwhile."""
    pids = {"server": server.process.pid, "redis": redis_pid}
    before = CpuSnapshot.take(pids)
    result = load()
    use = CpuUse.between(before, CpuSnapshot.take(pids))
    server.accepted += result.accepted
    server.runs += 1
    return Measurement(
        server.name,
        round_no,
        result,
        use.pct(use.procs_s["server"]),
        use.pct(use.children_s),
        use.pct(use.procs_s["redis"]),
        use.pct(use.other_s),
    )


@dataclass(frozen=True)
class Comparison:
    """How the servers are compared, labelled and judged."""

    requests: Requests
    baseline: str  # the server the per-round ratios are taken against
    subject: str  # the server whose median ratio is the verdict
    target: float  # the verdict needs that median >= target, and no refusals or errors
    impl_width: int  # of the server name column in the tables
    progress: str  # str.format of the line printed after each measurement, with m=Measurement
    sent: str  # what the requests are ("[ran out of distinct <sent>]")
    in_flight: str  # what the admitted but unanswered requests were, for durability
    other2xx_refused: bool = False  # the refused column counts other 2xx

    def refused(self, load: LoadResult) -> int:
        return load.non2xx + (load.other2xx if self.other2xx_refused else 0)


def run_rounds(
    comparison: Comparison,
    servers: Sequence[Server],
    even_order: Sequence[Server],
    measure_one: Callable[[Server, int, float], Measurement],
    *,
    gen_cpu: int | None,
    rounds: int,
    warmup: float,
    seconds: float,
) -> list[Measurement]:
    """Once all servers are ready, pins this process to ``gen_cpu`` (beside the load
    generator), warms each server up, then runs ``rounds`` rounds over all, in the order of
    ``servers`` in odd rounds and of ``even_order`` in even ones; prints a line for each."""
    for server in servers:
        server.wait_ready()
    if gen_cpu is not None:
        os.sched_setaffinity(0, {gen_cpu})
    for server in servers:  # warm-up: connections, caches, Lua scripts loaded
        measure_one(server, 0, warmup)
    measurements: list[Measurement] = []
    for round_no in range(1, rounds + 1):
        for server in servers if round_no % 2 else even_order:
            m = measure_one(server, round_no, seconds)
            measurements.append(m)
            ran_out = f" [ran out of distinct {comparison.sent}]" if m.load.exhausted else ""
            print(comparison.progress.format(m=m) + ran_out, flush=True)
    return measurements


def fmt_row(cells: Sequence[str], widths: Sequence[int]) -> str:
    return " ".join(
        c.ljust(w) if i == 0 else c.rjust(w)
        for i, (c, w) in enumerate(zip(cells, widths, strict=True))
    )


def report(
    comparison: Comparison, measurements: list[Measurement], names: list[str], rounds: int
) -> tuple[bool, float]:
    """Print the per-round and the summary table; returns (target met, the verdict ratio)."""
    c = comparison
    versus = f"vs {c.baseline}"
    header = (
        "impl",
        f"{c.requests.accepted}/s",
        "p50 ms",
        "p99 ms",
        f"non-{c.requests.accepted}" if c.other2xx_refused else "non-2xx",
        "errors",
        versus,
        "srvCPU",
        "genCPU",
        "redis",
        "other",
    )
    widths = (c.impl_width, 9, 8, 8, 8, 7, max(9, len(versus)), 7, 7, 7, 7)
    base_by_round = {m.round: m.rate for m in measurements if m.impl == c.baseline}
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
            str(c.refused(m.load)),
            str(m.load.errors),
            f"{m.rate / base:.2f}x" if base else "-",
            f"{m.server_cpu:.0f}%",
            f"{m.gen_cpu:.0f}%",
            f"{m.redis_cpu:.0f}%",
            f"{m.other_cpu:.0f}%",
        )
        print(fmt_row(cells, (widths[0], 5, *widths[1:])))

    print(f"\nsummary: medians over {rounds} rounds ({versus}: median of the per-round ratios)")
    print(fmt_row(header, widths))
    verdict = 0.0
    for name in names:
        rows = [m for m in measurements if m.impl == name]
        ratios = [m.rate / base_by_round[m.round] for m in rows if base_by_round.get(m.round)]
        ratio = median(ratios) if ratios else 0.0
        if name == c.subject:
            verdict = ratio
        cells = (
            name,
            f"{median(m.rate for m in rows):,.0f}",
            f"{median(m.load.p50_ms for m in rows):.1f}",
            f"{median(m.load.p99_ms for m in rows):.1f}",
            str(sum(c.refused(m.load) for m in rows)),
            str(sum(m.load.errors for m in rows)),
            f"{ratio:.2f}x",
            f"{median(m.server_cpu for m in rows):.0f}%",
            f"{median(m.gen_cpu for m in rows):.0f}%",
            f"{median(m.redis_cpu for m in rows):.0f}%",
            f"{median(m.other_cpu for m in rows):.0f}%",
        )
        print(fmt_row(cells, widths))
    bad = sum(m.load.non2xx + m.load.other2xx + m.load.errors for m in measurements)
    return verdict >= c.target and bad == 0, verdict


def durability(
    comparison: Comparison,
    server: Server,
    admitted: int,
    where: str,
    stored: int,
    connections: int,
) -> bool:
    """Print and check: the ``stored`` entries (``where``) equal the server's ``admitted``
    counter, which exceeds the accepted answers by at most one request in flight per
    connection per run."""
    cut = admitted - server.accepted
    ok = stored == admitted and 0 <= cut <= server.runs * connections
    print(
        f"{server.name}: {comparison.requests.accepted} answers received {server.accepted:,}; "
        f"server admitted counter {admitted:,}; {where} {stored:,} -> "
        f"{'OK' if ok else 'MISMATCH'}"
        + (
            f" ({cut} admitted but unanswered: {comparison.in_flight}, "
            f"at most {connections} per run)"
            if cut
            else ""
        )
    )
    return ok


# The admission path itself: no acknowledgements (so no templated answers at admission) and
# ladder level 0. A gateway alone, whose queue only grows, soon expects long waits: it would
# acknowledge every message and answer templated questions at admission, another path, from a
# moment that varied from run to run (the durability check then counted those answers as
# missing entries).
PLAIN_ADMISSION = {"PEAKDESK_FIRST_RESPONSE_S": "0", "PEAKDESK_PEAK_MODE": "off"}


def server_settings(args: Any) -> dict[str, str]:
    """The peakdesk servers' settings: PLAIN_ADMISSION with the --setting overrides."""
    return {**PLAIN_ADMISSION, **dict(s.split("=", 1) for s in args.setting)}


def add_load_arguments(
    parser: argparse.ArgumentParser, *, generator: str, max_requests: int
) -> None:
    """--seconds, --warmup, --rounds, --connections, --threads, --max-requests, --setting."""
    parser.add_argument("--seconds", type=float, default=7.0, help="per measurement")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up per server")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over all servers")
    parser.add_argument("--connections", type=int, default=64, help=f"{generator} connections")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--max-requests", type=int, default=max_requests, help="per peakdesk run")
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting of the peakdesk server, over "
        + ", ".join(f"{k}={v}" for k, v in PLAIN_ADMISSION.items())
        + " (repeatable)",
    )


def print_load(
    args: Any, texts_note: str, redis_url: str, redis_pid: int | None, prefix: str
) -> None:
    """The lines on the load and on Redis that open a run."""
    print(
        f"load: {args.connections} connections, {args.seconds:g} s per measurement, "
        f"{args.rounds} rounds, {args.warmup:g} s warm-up per server; {texts_note}"
    )
    print(f"real Redis {redis_url} (server pid {redis_pid}, not pinned), key prefix {prefix}")


def clean_up(redis_url: str, prefix: str) -> None:
    """Delete the run's Redis keys (the servers are stopped by then)."""
    with contextlib.suppress(Exception):
        deleted = delete_keys(redis_url, [prefix])
        print(f"cleaned up: {deleted:,} Redis keys under {{{prefix}}}, servers stopped")
