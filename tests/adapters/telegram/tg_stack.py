"""The real core with the Telegram channel, wired as bots/runtime.py wires the webhook channel.

PriorityQueue + Worker + ReplyHandler (HolySheepClient → the fake LLM) + Outbox with
``{"telegram": TelegramReplySender}`` (the real aiogram Bot → the fake Bot API), and the
ingress mounted on the real app (``bots.http.build_app``) on a loopback port.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from types import TracebackType
from typing import Any

import aiohttp
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis

from adapters.telegram.bot import bot_identity, make_bot
from adapters.telegram.ingress import SECRET_HEADER, WEBHOOK_PATH, TelegramIngress
from adapters.telegram.polling import TelegramPoller
from adapters.telegram.sender import TelegramReplySender
from bots.http import build_app
from core.handler import ReplyHandler
from core.handover import HandoverDesk
from core.keys import Keys
from core.llm import HolySheepClient
from core.metrics import Metrics
from core.outbox import Outbox
from core.priority import PriorityDetector
from core.queue import PriorityQueue
from core.ratelimit import RateLimiter
from core.state import ConversationState
from core.worker import Worker, consumer_name
from tests.fakes.telegram_api import FakeTelegramAPI

SECRET = "tg-webhook-secret_0123456789"


async def close_bot(bot: Bot) -> None:
    """Close the bot's HTTP session, without AiohttpSession.close()'s 0.25 s TLS grace."""
    assert isinstance(bot.session, AiohttpSession)
    await (await bot.session.create_session()).close()


class TelegramStack:
    """``async with TelegramStack(redis, keys, llm_url, api) as tg``: webhook + workers.

    ``workers=False`` runs the ingress alone (nothing is answered); ``polling=True`` also
    runs the long-polling loop against the fake Bot API.
    """

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        llm_base_url: str,
        api: FakeTelegramAPI,
        *,
        workers: bool = True,
        polling: bool = False,
        secret: str | None = SECRET,
        typing_interval_s: float = 0.2,
    ) -> None:
        self.redis, self.keys, self.api = redis, keys, api
        self.metrics = Metrics()
        self.queue = PriorityQueue(redis, keys)
        self.state = ConversationState(redis, keys)
        self.handover = HandoverDesk(redis, keys, staffed=False)
        self.http = aiohttp.ClientSession()
        self.llm = HolySheepClient(
            api_key="sk-test-key", base_url=llm_base_url, backoff_base=0.01, session=self.http
        )
        self.handler = ReplyHandler(self.llm, self.state, self.metrics, model="deepseek-v3.2")
        self.bot = make_bot(api.token, api.base_url)
        self.sender = TelegramReplySender(
            self.bot, RateLimiter(redis, keys), redis, keys, self.metrics, bot_id=api.bot_id
        )
        self.outbox = Outbox(
            redis,
            keys,
            {"telegram": self.sender},
            consumer=consumer_name("outbox"),
            metrics=self.metrics,
            backoff_base_s=0.05,
        )
        self.worker = Worker(
            self.queue,
            self.handler,
            self.metrics,
            notifier=self.outbox,
            presence={"telegram": self.sender},
            typing_interval_s=typing_interval_s,
            block_ms=50,
        )
        self.secret = secret
        self.workers = workers
        self.polling = polling
        self.ingress: TelegramIngress
        self.poller: TelegramPoller
        self.server: TestServer
        self.client = aiohttp.ClientSession()
        self.stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> TelegramStack:
        bot_id, username = await bot_identity(self.bot)
        self.ingress = TelegramIngress(
            self.queue,
            PriorityDetector(),
            self.state,
            self.handover,
            self.metrics,
            bot_id=bot_id,
            bot_username=username,
            secret=self.secret,
        )
        self.poller = TelegramPoller(self.bot, self.ingress, poll_timeout_s=1, backoff_first_s=0.1)
        app = build_app(self.ingress.routes(), self.redis, self.queue, self.metrics)
        self.server = TestServer(app, host="127.0.0.1", port=0)
        await self.server.start_server()
        with contextlib.suppress(Exception):  # a dead Redis in a test: ingest answers 503
            await self.queue.ensure_groups()
        loop = asyncio.get_running_loop()
        if self.workers:
            self._tasks += [
                loop.create_task(self.worker.run(self.stop)),
                loop.create_task(self.outbox.run(self.stop)),
            ]
        if self.polling:
            self._tasks.append(loop.create_task(self.poller.run(self.stop)))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop.set()
        if self.workers:
            # Wake the outbox from its 0.5 s blocking read: it skips an entry without a reply.
            with contextlib.suppress(Exception):
                await self.redis.xadd(self.keys.outbox, {"wake": "1"})
        # Gracefully, so that no task still calls the Bot API once its session is closed.
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(
            self.client.close(), self.server.close(), self.http.close(), self._close_bot()
        )

    async def _close_bot(self) -> None:
        await close_bot(self.bot)

    async def post(
        self,
        update: dict[str, Any] | bytes,
        *,
        secret: str | None = SECRET,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """POST one update to /telegram/webhook as Telegram does; status and JSON body."""
        body = update if isinstance(update, bytes) else json.dumps(update).encode()
        sent = {"Content-Type": "application/json"}
        if secret is not None:
            sent[SECRET_HEADER] = secret
        sent.update(headers or {})
        async with self.client.post(
            self.server.make_url(WEBHOOK_PATH), data=io.BytesIO(body), headers=sent
        ) as response:
            return response.status, await response.json()

    async def queued(self) -> int:
        """Entries in the three priority streams (queued or in progress)."""
        return sum((await self.queue.depths()).values())

    def events(self, event: str) -> float:
        """How often the channel recorded ``event`` (blocked, not_addressed...)."""
        value = self.metrics.registry.get_sample_value(
            "peakdesk_channel_events_total", {"channel": "telegram", "event": event}
        )
        return value or 0.0
