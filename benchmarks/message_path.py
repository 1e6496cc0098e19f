"""The path of one webhook message through peakdesk's modules, hop by hop.

Runs one signed webhook message through the real app in this process (the embedded store, a
fake LLM and a callback receiver on loopback) in three steps: the request (ingress to
``202``), the worker answering it, the outbox calling back. While each step runs, a profile
hook notes every function of ``core``, ``adapters`` and ``bots`` that is called or resumed
(in the step's own tasks only: the background loops of a process are left out), and prints:

- the modules in the order the message passes through them (a module repeated at once is
  one visit);
- how many visits return to a module already left earlier in the step: the fewer, the
  more the code reads top to bottom along the path.

Run: ``python benchmarks/message_path.py`` from the repository root (a few seconds).
"""

from __future__ import annotations

import asyncio
import dis
import functools
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

PACKAGES = ("core", "adapters", "bots")


def module_of(frame: FrameType) -> str | None:
    """The dotted module of a frame of ours, or None."""
    name = frame.f_globals.get("__name__", "")
    return name if name.split(".")[0] in PACKAGES else None


@functools.cache
def start_of(code: CodeType) -> int:
    """Where a frame of ``code`` stands when it is first entered."""
    for instruction in dis.get_instructions(code):
        if instruction.opname == "RESUME":
            return instruction.offset
    return 0


async def traced(step: Callable[[], Awaitable[Any]]) -> list[str]:
    """The modules of ours that ``step`` (and the tasks it starts) call, in order."""
    seen: list[str] = []
    tasks: set[asyncio.Task[Any]] = set()

    def hook(frame: FrameType, event: str, _: Any) -> None:
        # A call, not a coroutine resumed: its frame is at its first instruction (a
        # coroutine's at the RESUME after its prologue).
        if event != "call" or frame.f_lasti > start_of(frame.f_code):
            return
        try:
            task = asyncio.current_task()
        except RuntimeError:
            return
        if task not in tasks:
            return
        module = module_of(frame)
        if module is not None and (not seen or seen[-1] != module):
            seen.append(module)

    loop = asyncio.get_running_loop()
    factory = loop.get_task_factory()

    def tracking(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        # Every task begun during the step is the step's (the server's connection task, the
        # group commit's, a delivery's): the process runs no background loop here.
        task = asyncio.Task(coro, loop=loop, **kwargs)
        tasks.add(task)
        return task

    loop.set_task_factory(tracking)
    main = asyncio.ensure_future(step())
    tasks.add(main)
    sys.setprofile(hook)
    try:
        await main
    finally:
        sys.setprofile(None)
        loop.set_task_factory(factory)
    return seen


# Modules of data and helpers that every hop uses (the message model, the key layout, log
# context, asyncio helpers): the path is also shown without them.
LEAVES = frozenset(("core.models", "core.keys", "core.logcontext", "core.aio", "core.errors"))


def returns(path: list[str]) -> int:
    """Visits to a module that was left earlier in the path."""
    return sum(module in path[:i] for i, module in enumerate(path))


def without_leaves(path: list[str]) -> list[str]:
    kept: list[str] = []
    for module in path:
        if module not in LEAVES and (not kept or kept[-1] != module):
            kept.append(module)
    return kept


async def main() -> int:
    from aiohttp import ClientSession, web
    from aiohttp.test_utils import TestServer

    from adapters.webhook.signing import signed_headers
    from bots.runtime import Runtime
    from bots.settings import Settings

    received: list[dict[str, Any]] = []

    async def completion(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response(
            {
                "id": "c1",
                "object": "chat.completion",
                "model": "deepseek-v3.2",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "It ships in 2 days."},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 20, "completion_tokens": 8, "total_tokens": 28},
            }
        )

    async def callback(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.json_response({"ok": True})

    fakes = web.Application()
    fakes.router.add_post("/v1/chat/completions", completion)
    fakes.router.add_post("/callback", callback)
    outside = TestServer(fakes, host="127.0.0.1", port=0)
    await outside.start_server()
    secret = "message-path-secret-0123"
    settings = Settings(
        _env_file=None,
        holysheep_api_key="sk-path",
        holysheep_base_url=str(outside.make_url("/v1")),
        webhook_secret=secret,
        webhook_callback_url=str(outside.make_url("/callback")),
        peakdesk_burst_window_s=0,
        peakdesk_first_response_s=0,
    )
    runtime = Runtime(settings, workers=1)
    server = TestServer(runtime.app(), host="127.0.0.1", port=0)
    await server.start_server()
    await runtime.queue.ensure_groups()
    body = json.dumps(
        {"message_id": "m-1", "user_id": "alice", "text": "How long does delivery to Canada take?"}
    ).encode()
    status: list[int] = []

    async def request() -> None:
        headers = {"Content-Type": "application/json", **signed_headers(secret, body)}
        async with (
            ClientSession() as client,
            client.post(server.make_url("/webhook/demo"), data=body, headers=headers) as answer,
        ):
            status.append(answer.status)
            await answer.read()

    async def answer() -> None:
        worker = runtime.workers[0]
        [entry] = await runtime.queue.read(worker.consumer, 1, 1000)
        await worker.process(entry)

    async def call_back() -> None:
        stop = asyncio.Event()
        delivering = asyncio.ensure_future(runtime.outbox.run(stop))
        while not received:  # noqa: ASYNC110 - the callback receiver fills it
            await asyncio.sleep(0.01)
        stop.set()
        await delivering

    steps = {
        "request (ingress to 202)": request,
        "worker (read, answer, store)": answer,
        "outbox (callback)": call_back,
    }
    totals = [0, 0, 0, 0]
    try:
        for name, step in steps.items():
            path = await traced(step)
            hops = without_leaves(path)
            figures = (len(path), returns(path), len(hops), returns(hops))
            totals = [a + b for a, b in zip(totals, figures, strict=True)]
            print(
                f"{name}: {len(path)} visits to {len(set(path))} modules, {figures[1]} returns; "
                f"without data and helper modules {len(hops)} visits to {len(set(hops))} "
                f"modules, {figures[3]} returns"
            )
            print("  " + " > ".join(hops))
    finally:
        await server.close()
        await runtime.stop()
        await outside.close()
    print(
        f"in all: {totals[0]} visits, {totals[1]} returns to a module already left; without "
        f"data and helper modules ({', '.join(sorted(LEAVES))}) {totals[2]} visits, "
        f"{totals[3]} returns; status {status}, callbacks {len(received)}"
    )
    return 0 if status == [202] and len(received) == 1 else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
