"""A running peakdesk for end-to-end tests: the real Runtime and app on a loopback port; and
workers on a queue without the HTTP side."""

from __future__ import annotations

import asyncio
import json
import time
from types import TracebackType
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis

from adapters.webhook.signing import SIGNATURE_HEADER, Purpose, signed_headers
from bots.runtime import Runtime
from bots.settings import Settings
from core.handler import ReplyHandler
from core.keys import Keys
from core.llm import HolySheepClient
from core.metrics import Metrics
from core.models import InboundMessage, Reply
from core.queue import PriorityQueue
from core.state import ConversationState
from core.worker import Worker
from tests.conftest import WEBHOOK_SECRET
from tests.fakes.openai_server import FakeOpenAI

__all__ = [
    "WEBHOOK_SECRET",
    "Service",
    "answer_all",
    "inbound",
    "make_settings",
    "make_worker",
    "message",
    "outbox",
    "run_workers",
    "sign_afresh",
    "wired_settings",
]


_signatures_made: set[str] = set()


def sign_afresh(
    secret: str, body: bytes, now: float | None = None, *, purpose: Purpose = "message"
) -> dict[str, str]:
    """The headers a gateway signs ``body`` with, as it signs each request afresh: peakdesk
    accepts each signature once, so the same bytes sent again within one second (a test's
    retry, a duplicate) are signed with an earlier second. ``now`` given: exactly that one."""
    if now is not None:
        return signed_headers(secret, body, now, purpose=purpose)
    at = int(time.time())
    headers = signed_headers(secret, body, at, purpose=purpose)
    while headers[SIGNATURE_HEADER] in _signatures_made:
        at -= 1
        headers = signed_headers(secret, body, at, purpose=purpose)
    _signatures_made.add(headers[SIGNATURE_HEADER])
    return headers


def make_settings(keys: Keys, **overrides: Any) -> Settings:
    """Settings for a test: no .env file, tiny backoffs, the test's own key prefix."""
    values: dict[str, Any] = {
        "holysheep_api_key": "sk-test-key",
        "holysheep_backoff_base_s": 0.01,
        "webhook_secret": WEBHOOK_SECRET,
        "peakdesk_redis_prefix": keys.prefix,
        "peakdesk_shards": keys.shards,
        "peakdesk_claim_idle_s": 2.0,
        # One answer per message unless a test merges bursts: most tests count replies.
        "peakdesk_burst_window_s": 0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


def wired_settings(keys: Keys, llm_base_url: str, callback_url: str, **overrides: Any) -> Settings:
    """Test settings wired to a fake LLM and a callback receiver."""
    return make_settings(
        keys, holysheep_base_url=llm_base_url, webhook_callback_url=callback_url, **overrides
    )


def inbound(n: int, text: str | None = None) -> InboundMessage:
    """A core message as the webhook adapter would make it (for queue and worker tests)."""
    return InboundMessage(
        channel="webhook",
        account="gw",
        message_id=f"m{n}",
        user_id=f"u{n}",
        conversation_id=f"u{n}",
        text=f"question {n}" if text is None else text,
        reply_to={"callback_url": "http://127.0.0.1:9/cb"},
    )


class Service:
    """``async with Service(settings, redis) as svc``: peakdesk serving on 127.0.0.1."""

    def __init__(self, settings: Settings, redis: Redis | None, *, workers: int = 1) -> None:
        self.runtime = Runtime(settings, workers=workers, redis=redis)
        self.server = TestServer(self.runtime.app(), host="127.0.0.1", port=0)
        self.client = aiohttp.ClientSession()

    async def __aenter__(self) -> Service:
        await self.runtime.start()
        await self.server.start_server()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.client.close()
        await self.server.close()
        await self.runtime.stop()

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    async def post(
        self,
        gateway: str,
        payload: Any,
        *,
        secret: str | None = WEBHOOK_SECRET,
        now: float | None = None,
        query: str = "",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """Post a (signed) webhook; returns status, JSON body and headers."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        sent = {"Content-Type": "application/json"}
        if secret:
            sent.update(sign_afresh(secret, body, now))
        sent.update(headers or {})
        return await self.send(f"/webhook/{gateway}{query}", body, sent)

    async def forget(
        self, gateway: str, payload: Any, *, secret: str | None = WEBHOOK_SECRET
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """``POST /webhook/{gateway}/forget``, signed for that route."""
        body = json.dumps(payload).encode()
        sent = {"Content-Type": "application/json"}
        if secret:
            sent.update(sign_afresh(secret, body, purpose="forget"))
        return await self.send(f"/webhook/{gateway}/forget", body, sent)

    async def send(
        self, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """POST ``body`` with exactly these headers (a replayed request, say)."""
        async with self.client.post(self.url(path), data=body, headers=headers) as response:
            return response.status, await response.json(), dict(response.headers)


def message(
    n: int | str = 1, text: str = "hello, what are your opening hours?", **extra: Any
) -> dict[str, Any]:
    return {"message_id": f"m-{n}", "user_id": f"u-{n}", "text": text, **extra}


# -- workers on a queue, without the HTTP side ---------------------------------------


async def outbox(redis: Redis, keys: Keys) -> list[Reply]:
    """The replies in the outbox (of every lane)."""
    replies: list[Reply] = []
    for lane in keys.lanes:
        entries: Any = await redis.xrange(lane.outbox)
        replies += [Reply.from_json(f["r"]) for _, f in entries if "r" in f]
    return replies


async def run_workers(workers: list[Worker], done: Any, timeout: float = 15.0) -> None:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(w.run(stop)) for w in workers]
    try:
        async with asyncio.timeout(timeout):
            while not await done():  # noqa: ASYNC110 - the condition is a Redis read
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def answer_all(
    queue: PriorityQueue,
    redis: Redis,
    keys: Keys,
    fake_llm: FakeOpenAI,
    replies: int | None = None,
    **options: Any,
) -> list[Reply]:
    """Run one worker until the queue is empty (and ``replies`` replies are out)."""
    llm = HolySheepClient(api_key="sk-test", base_url=fake_llm.base_url)
    worker = make_worker(queue, redis, keys, llm, **options)

    async def done() -> bool:
        sent = replies is None or len(await outbox(redis, keys)) == replies
        return sent and sum((await queue.depths()).values()) == 0

    try:
        await run_workers([worker], done)
    finally:
        await llm.aclose()
    return await outbox(redis, keys)


def make_worker(
    queue: PriorityQueue, redis: Redis, keys: Keys, llm: HolySheepClient, **options: Any
) -> Worker:
    handler = ReplyHandler(llm, ConversationState(redis, keys), Metrics())
    return Worker(queue, handler, Metrics(), block_ms=50, **options)
