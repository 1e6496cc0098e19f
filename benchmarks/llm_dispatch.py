"""How many chat-completion calls per second one process can dispatch, per HTTP client.

Starts a zero-latency fake completions server in a separate process (pinned to its own CPU
when there are two), pins this process to another CPU, and measures calls/s at concurrency
50 and 200 for:

  holysheep      core.llm.HolySheepClient.complete (one pooled aiohttp session, JSON parsed)
  aiohttp        bare aiohttp.ClientSession() post + json(): the baseline
  httpx-default  httpx.AsyncClient() with its default pool
  httpx-tuned    httpx.AsyncClient with pool limits raised to the concurrency

The target: holysheep >= 0.8x the aiohttp baseline measured in the same run. Both stay
open and warm while they run back to back in --rounds short paired rounds (alternating which
goes first); the verdict uses the median of the per-round ratios, so a noisy neighbour on a
shared machine (this one varies +-20% minute to minute) moves both sides of a pair rather
than the verdict. Each round stops after --calls calls or --seconds seconds; each httpx
measurement after --calls x --rounds calls or --seconds. The whole run takes < 1 min.
Only 127.0.0.1 is used. Run: ``python benchmarks/llm_dispatch.py`` from the repository root.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from statistics import median

import aiohttp
import httpx
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.llm import HolySheepClient

CONCURRENCIES = (50, 200)
TARGET_RATIO = 0.8
SERVER_LIFETIME = 300.0  # the server exits by itself even if this process dies without a word
MESSAGES = [
    {"role": "system", "content": "You are a shop assistant."},
    {"role": "user", "content": "Where is my parcel? Order A1234 was paid on Monday."},
]
ANSWER = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 0,
        "model": "deepseek-v3.2",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Your parcel left the warehouse."},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 30,
            "completion_tokens": 7,
            "total_tokens": 37,
            "prompt_cache_hit_tokens": 16,
            "prompt_cache_miss_tokens": 14,
        },
    }
).encode()
REQUEST = json.dumps(
    {"model": "deepseek-v3.2", "messages": MESSAGES, "max_tokens": 500, "temperature": 0.7}
).encode()
HEADERS = {"Authorization": "Bearer sk-bench", "Content-Type": "application/json"}

Call = Callable[[], Awaitable[object]]


# -- the fake server (child process) -------------------------------------------------------


async def _answer(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=ANSWER, content_type="application/json")


async def serve(cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    app = web.Application()
    app.router.add_post("/v1/chat/completions", _answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    port = runner.addresses[0][1]
    print(port, flush=True)
    loop = asyncio.get_running_loop()
    # Stop when the parent closes our stdin (or dies), or after SERVER_LIFETIME at the latest.
    # A daemon thread, so a reader still blocked at the lifetime limit cannot hold up the exit.
    stdin_closed = asyncio.Event()

    def wait_for_eof() -> None:
        sys.stdin.read()
        loop.call_soon_threadsafe(stdin_closed.set)

    threading.Thread(target=wait_for_eof, daemon=True).start()
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stdin_closed.wait(), SERVER_LIFETIME)
    finally:
        await runner.cleanup()


# -- the clients ---------------------------------------------------------------------------


async def measure(call: Call, concurrency: int, calls: int, seconds: float) -> tuple[float, int]:
    """(calls/s, errors) of ``concurrency`` workers calling until ``calls`` or ``seconds``."""
    loop = asyncio.get_running_loop()
    issued = done = errors = 0
    until = loop.time() + seconds

    async def worker() -> None:
        nonlocal issued, done, errors
        while issued < calls and loop.time() < until:
            issued += 1
            try:
                await call()
            except Exception:
                errors += 1
            else:
                done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - started), errors


async def warm_up(call: Call, concurrency: int) -> None:
    """Open the connections and settle the pool (bounded: a slow pool stays slow)."""
    await measure(call, concurrency, concurrency * 4, 2.0)


@asynccontextmanager
async def holysheep_calls(url: str, concurrency: int) -> AsyncIterator[Call]:
    client = HolySheepClient(api_key="sk-bench", base_url=url)
    try:
        yield lambda: client.complete(MESSAGES)
    finally:
        await client.aclose()


@asynccontextmanager
async def aiohttp_calls(url: str, concurrency: int) -> AsyncIterator[Call]:
    endpoint = url + "/chat/completions"
    async with aiohttp.ClientSession() as session:

        async def call() -> object:
            async with session.post(endpoint, data=REQUEST, headers=HEADERS) as response:
                response.raise_for_status()
                return await response.json()

        yield call


@asynccontextmanager
async def _httpx_calls(client: httpx.AsyncClient, url: str) -> AsyncIterator[Call]:
    endpoint = url + "/chat/completions"
    async with client:

        async def call() -> object:
            response = await client.post(endpoint, content=REQUEST, headers=HEADERS)
            response.raise_for_status()
            return response.json()

        yield call


def httpx_default_calls(url: str, concurrency: int) -> AbstractAsyncContextManager[Call]:
    return _httpx_calls(httpx.AsyncClient(), url)


def httpx_tuned_calls(url: str, concurrency: int) -> AbstractAsyncContextManager[Call]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return _httpx_calls(httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(30.0)), url)


@dataclass(frozen=True, slots=True)
class Row:
    impl: str
    concurrency: int
    rate: float  # calls/s (median over rounds for the paired impls)
    ratio: float  # to the aiohttp baseline (median of per-round ratios for holysheep)
    ratio_range: tuple[float, float] | None
    errors: int


async def run(url: str, calls: int, seconds: float, rounds: int) -> list[Row]:
    rows: list[Row] = []
    for concurrency in CONCURRENCIES:
        rates: dict[str, list[float]] = {"aiohttp": [], "holysheep": []}
        errors = dict.fromkeys(rates, 0)
        async with (
            aiohttp_calls(url, concurrency) as baseline_call,
            holysheep_calls(url, concurrency) as holysheep_call,
        ):
            pair = [("aiohttp", baseline_call), ("holysheep", holysheep_call)]
            for _, call in pair:
                await warm_up(call, concurrency)
            for _ in range(rounds):
                pair.reverse()  # neither always runs first
                for name, call in pair:
                    rate, failed = await measure(call, concurrency, calls, seconds)
                    rates[name].append(rate)
                    errors[name] += failed
        baseline = median(rates["aiohttp"])
        ratios = [h / a for h, a in zip(rates["holysheep"], rates["aiohttp"], strict=True)]
        rows.append(Row("aiohttp", concurrency, baseline, 1.0, None, errors["aiohttp"]))
        rows.append(
            Row(
                "holysheep",
                concurrency,
                median(rates["holysheep"]),
                median(ratios),
                (min(ratios), max(ratios)),
                errors["holysheep"],
            )
        )
        for name, calls_of in (
            ("httpx-default", httpx_default_calls),
            ("httpx-tuned", httpx_tuned_calls),
        ):
            async with calls_of(url, concurrency) as call:
                await warm_up(call, concurrency)
                rate, failed = await measure(call, concurrency, calls * rounds, seconds)
            rows.append(Row(name, concurrency, rate, rate / baseline, None, failed))
    return rows


def report(rows: list[Row]) -> bool:
    header = ("impl", "conc", "calls/s", "vs aiohttp", "round ratios", "errors")
    print("{:<14} {:>5} {:>9} {:>11} {:>13} {:>7}".format(*header))
    for row in rows:
        spread = f"{row.ratio_range[0]:.2f}-{row.ratio_range[1]:.2f}" if row.ratio_range else ""
        print(
            f"{row.impl:<14} {row.concurrency:>5} {row.rate:>9,.0f} {row.ratio:>10.2f}x "
            f"{spread:>13} {row.errors:>7}"
        )
    met = True
    for row in rows:
        if row.impl == "holysheep":
            ok = row.ratio >= TARGET_RATIO and row.errors == 0
            met &= ok
            print(
                f"target holysheep >= {TARGET_RATIO}x aiohttp at concurrency {row.concurrency}: "
                f"{'met' if ok else 'NOT met'} (median round ratio {row.ratio:.2f}x)"
            )
    return met


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2_000, help="calls per round")
    parser.add_argument("--seconds", type=float, default=4.0, help="time cap per measurement")
    parser.add_argument("--rounds", type=int, default=15, help="paired aiohttp/holysheep rounds")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cpu", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.cpu))
        return 0

    cpus = sorted(os.sched_getaffinity(0))
    client_cpu, server_cpu = (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)
    command = [sys.executable, __file__, "--serve"]
    if server_cpu is not None:
        command += ["--cpu", str(server_cpu)]
    server = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        if client_cpu is not None:
            os.sched_setaffinity(0, {client_cpu})
            print(f"client pinned to CPU {client_cpu}, fake server to CPU {server_cpu}")
        else:
            print("one CPU only: client and fake server share it")
        print(
            f"python {sys.version.split()[0]}, aiohttp {aiohttp.__version__}, "
            f"httpx {httpx.__version__}; {args.calls} calls or {args.seconds:g} s per measurement, "
            f"{args.rounds} paired rounds"
        )
        rows = asyncio.run(
            run(f"http://127.0.0.1:{port}/v1", args.calls, args.seconds, args.rounds)
        )
    finally:
        assert server.stdin is not None
        server.stdin.close()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    return 0 if report(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
