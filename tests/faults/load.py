"""Steady load on a fault cluster, sent as a messaging gateway and Telegram send it.

Signed webhooks go round-robin to the gateways, Telegram updates to their
``/telegram/webhook``, each at a steady rate. A message refused (503, any non-2xx) or not
answered (a connection error, a timeout) is sent again with the same ``message_id`` (the same
update), to the next gateway, after the ``Retry-After`` it was given or half a second, until
it is acknowledged or ``give_up_s`` passed: what a gateway behind a load balancer and Telegram
do. Every attempt is recorded for the figures (:mod:`tests.faults.figures`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp

from adapters.telegram.ingress import SECRET_HEADER, WEBHOOK_PATH
from tests.faults.cluster import FaultCluster
from tests.harness import message, sign_afresh

# What customers write at a peak: urgent ones (priority 0-1) among the questions.
TEXTS = (
    "Where is my parcel? It should have arrived by now.",
    "I was charged twice for the same order, please help.",
    "Can I change the shipping address of my order?",
    "What is your return policy for shoes?",
    "Do you ship to Canada?",
    "I want to cancel my order, I ordered the wrong size.",
    "How long does a refund take?",
    "Is the blue jacket available in size M?",
    "My payment failed but the money left my account.",
    "What payment methods do you accept?",
    "The item I received is damaged.",
    "When will my order ship?",
)
GATEWAY = "faults"
Channel = Literal["webhook", "telegram"]


@dataclass
class Sent:
    """One message as its sender saw it (times are ``time.monotonic()``)."""

    key: str  # webhook: the message_id; telegram: "<chat id>:<message id>"
    channel: Channel
    text: str
    first_at: float
    attempts: int = 0
    acked_at: float | None = None
    answers: Counter[int] = field(default_factory=Counter)  # HTTP status (0 = no answer)


class SteadyLoad:
    """Webhook messages at ``webhook_rate`` a second and Telegram updates at ``telegram_rate``
    until :meth:`stop`; :meth:`settle` waits for the ones still being sent again."""

    def __init__(
        self,
        cluster: FaultCluster,
        run: str,
        *,
        webhook_rate: float,
        telegram_rate: float,
        users: int = 40,
        give_up_s: float = 300.0,
        chat_base: int = 0,
    ) -> None:
        self.cluster = cluster
        self.run = run
        self.webhook_rate = webhook_rate
        self.telegram_rate = telegram_rate
        self.users = users
        self.give_up_s = give_up_s
        self.chat_base = chat_base
        self.sent: dict[str, Sent] = {}
        self.started_at = 0.0
        self._stop = asyncio.Event()
        self._deliveries: set[asyncio.Task[None]] = set()
        self._targets = itertools.count()
        self._session: aiohttp.ClientSession | None = None

    @property
    def webhook(self) -> list[Sent]:
        return [s for s in self.sent.values() if s.channel == "webhook"]

    @property
    def telegram(self) -> list[Sent]:
        return [s for s in self.sent.values() if s.channel == "telegram"]

    async def run_until_stopped(self) -> None:
        self.started_at = time.monotonic()
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=200),
            timeout=aiohttp.ClientTimeout(total=10),
        )
        pacers = [self._pace(self.webhook_rate, self._webhook_message)]
        if self.telegram_rate > 0:
            pacers.append(self._pace(self.telegram_rate, self._telegram_update))
        await asyncio.gather(*pacers)

    def stop(self) -> None:
        self._stop.set()

    async def settle(self, timeout: float) -> None:
        """Wait until every message was acknowledged (or given up); then close the client."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self._deliveries:
                    await asyncio.wait(set(self._deliveries))
        for task in self._deliveries:
            task.cancel()
        if self._session is not None:
            await self._session.close()

    async def _pace(self, rate: float, make: Any) -> None:
        if rate <= 0:
            return
        interval = 1.0 / rate
        due = time.monotonic()
        for n in itertools.count():
            wait = due - time.monotonic()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._stop.wait()
            if self._stop.is_set():
                return
            task = asyncio.get_running_loop().create_task(make(n))
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)
            due += interval

    async def _webhook_message(self, n: int) -> None:
        text = TEXTS[n % len(TEXTS)]
        payload = message(f"{self.run}-{n}", text, user_id=f"{self.run}-u{n % self.users}")
        body = json.dumps(payload).encode()
        sent = Sent(payload["message_id"], "webhook", text, time.monotonic())
        self.sent[sent.key] = sent

        def request(base: str) -> tuple[str, bytes, dict[str, str]]:
            # Signed for each attempt: a signature is accepted once.
            headers = {"Content-Type": "application/json"}
            headers.update(sign_afresh(self.cluster.webhook_secret, body))
            return f"{base}/webhook/{GATEWAY}", body, headers

        await self._deliver(sent, request)

    async def _telegram_update(self, n: int) -> None:
        text = TEXTS[(n * 7) % len(TEXTS)]
        # A chat of its own per message: Telegram answers a burst with one reply to its
        # latest message, which would hide the earlier ones from the figures.
        chat_id = self.chat_base + n + 1
        update = self.cluster.telegram.updates.text(chat_id=chat_id, text=text)
        key = f"{chat_id}:{update['message']['message_id']}"
        sent = Sent(key, "telegram", text, time.monotonic())
        self.sent[key] = sent
        body = json.dumps(update).encode()
        headers = {"Content-Type": "application/json", SECRET_HEADER: self.cluster.telegram_secret}
        await self._deliver(sent, lambda base: (f"{base}{WEBHOOK_PATH}", body, headers))

    async def _deliver(self, sent: Sent, request: Any) -> None:
        """Send until acknowledged (2xx), to the next gateway each time."""
        assert self._session is not None
        gateways = self.cluster.gateways
        while time.monotonic() - sent.first_at < self.give_up_s:
            url, body, headers = request(gateways[next(self._targets) % len(gateways)].url)
            sent.attempts += 1
            retry_after = 0.5
            try:
                async with self._session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    sent.answers[response.status] += 1
                    if 200 <= response.status < 300:
                        sent.acked_at = time.monotonic()
                        return
                    with contextlib.suppress(ValueError):
                        retry_after = float(response.headers.get("Retry-After", retry_after))
            except (aiohttp.ClientError, TimeoutError):
                sent.answers[0] += 1
            await asyncio.sleep(retry_after)
