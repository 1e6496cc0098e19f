"""The gateway's sending side: customers' messages posted to ``POST /webhook/{gateway}``.

It behaves as a gateway should under the webhook contract: a 503 (or a failed connection) is
sent again after its ``Retry-After`` with the same ``message_id``, so a message is lost only
when the gateway gives up (after ``give_up_s``), and a repeat answered ``duplicate`` counts as
accepted. Follow-ups are sent a customer's think time after the answer to everything they had
written, while the scenario still runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

from bots.simulate.customers import MessageKind, Plan
from bots.simulate.sink import ReceivedReply

log = logging.getLogger("peakdesk.simulate")

GATEWAY = "sim"
Status = Literal["sending", "accepted", "gave_up", "rejected", "throttled"]


@dataclass(slots=True)
class SentMessage:
    """One customer message as the gateway knows it."""

    message_id: str
    conversation: str
    kind: MessageKind
    planned_at: float
    first_sent: float = 0.0  # the first attempt: the customer's clock starts here
    attempts: int = 0
    refusals: int = 0  # 503 answers
    errors: int = 0  # connection errors, timeouts, unexpected statuses retried
    status: Status = "sending"
    priority: int | None = None
    ticket_id: str | None = None
    rejection: str | None = None  # status and error of a 4xx that was not retried


@dataclass(slots=True)
class LoadSecond:
    sent: int = 0  # first attempts
    retries: int = 0
    accepted: int = 0
    refused: int = 0  # 503


class LoadGenerator:
    """Sends a :class:`Plan` on time, retries as a gateway does, and sends the follow-ups."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        callback_url: str,
        plan: Plan,
        clock: Callable[[], float],
        *,
        end_at: float,
        give_up_s: float = 300.0,
        post_timeout_s: float = 15.0,
        seed: int = 0,
    ) -> None:
        self.session = session
        self.url = f"{base_url}/webhook/{GATEWAY}"
        self.callback_url = callback_url
        self.plan = plan
        self.clock = clock
        self.end_at = end_at
        self.give_up_s = give_up_s
        self.timeout = aiohttp.ClientTimeout(total=post_timeout_s)
        self.messages: dict[str, SentMessage] = {}
        self.seconds: list[LoadSecond] = []
        self.answered: set[str] = set()
        self.accepted = 0
        self.max_lag_s = 0.0  # how late the generator sent a planned message
        self._rng = random.Random(seed)
        self._counters: dict[str, int] = {}
        self._open: dict[str, set[str]] = {}  # conversation -> its unanswered message ids
        self._followed_up: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- bookkeeping ----------------------------------------------------------------------

    def second(self, at: float) -> LoadSecond:
        index = max(0, int(at))
        while len(self.seconds) <= index:
            self.seconds.append(LoadSecond())
        return self.seconds[index]

    @property
    def sending(self) -> int:
        """Messages not yet accepted, refused for good or given up (incl. those retrying)."""
        return sum(1 for task in self._tasks if not task.done())

    @property
    def unanswered(self) -> int:
        """Accepted messages without a full answer so far."""
        return self.accepted - sum(
            1 for mid in self.answered if self.messages[mid].status == "accepted"
        )

    def on_reply(self, reply: ReceivedReply) -> None:
        """The sink saw a reply: a full answer completes its messages (and may prompt a
        follow-up once the customer has nothing left unanswered)."""
        if reply.is_ack:
            return
        for message_id in reply.message_ids:
            if message_id in self.messages:
                self.answered.add(message_id)
                self._open.get(reply.conversation, set()).discard(message_id)
        customer = self.plan.customers.get(reply.conversation)
        if (
            customer is not None
            and customer.follow_up is not None
            and reply.conversation not in self._followed_up
            and not self._open.get(reply.conversation)
            and self.clock() + customer.think_s < self.end_at
        ):
            self._followed_up.add(reply.conversation)
            text = customer.follow_up.text
            asyncio.get_running_loop().call_later(
                customer.think_s, self._launch, reply.conversation, text, "follow_up", None
            )

    # -- sending --------------------------------------------------------------------------

    async def run(self) -> None:
        """Send the plan's messages at their times (follow-ups are sent as answers come)."""
        for planned in self.plan.messages:
            delay = planned.at - self.clock()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                self.max_lag_s = max(self.max_lag_s, -delay)
            self._launch(planned.conversation, planned.text, planned.kind, planned.at)
        delay = self.end_at - self.clock()
        if delay > 0:
            await asyncio.sleep(delay)

    async def finish(self, timeout: float) -> None:
        """Wait for sends still retrying, up to ``timeout``; cancel what is left."""
        pending = [task for task in self._tasks if not task.done()]
        if pending:
            _, late = await asyncio.wait(pending, timeout=max(0.0, timeout))
            for task in late:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*late, return_exceptions=True)

    def _launch(self, conversation: str, text: str, kind: MessageKind, at: float | None) -> None:
        n = self._counters.get(conversation, 0) + 1
        self._counters[conversation] = n
        message = SentMessage(
            f"{conversation}.{n}", conversation, kind, self.clock() if at is None else at
        )
        self.messages[message.message_id] = message
        self._open.setdefault(conversation, set()).add(message.message_id)
        task = asyncio.get_running_loop().create_task(self._deliver(message, text))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, message: SentMessage, text: str) -> None:
        body = {
            "message_id": message.message_id,
            "conversation_id": message.conversation,
            "user_id": message.conversation,
            "text": text,
            "callback_url": self.callback_url,
        }
        message.first_sent = self.clock()
        self.second(message.first_sent).sent += 1
        while True:
            message.attempts += 1
            if message.attempts > 1:
                self.second(self.clock()).retries += 1
            wait = await self._attempt(message, body)
            if wait is None:
                return
            if self.clock() + wait - message.first_sent > self.give_up_s:
                message.status = "gave_up"
                return
            await asyncio.sleep(wait)

    async def _attempt(self, message: SentMessage, body: dict[str, Any]) -> float | None:
        """One POST; None when the message is settled, else the seconds to wait first."""
        try:
            async with self.session.post(self.url, json=body, timeout=self.timeout) as response:
                status = response.status
                retry_after = response.headers.get("Retry-After")
                raw = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            message.errors += 1
            log.debug("post %s failed: %s", message.message_id, type(exc).__name__)
            return min(10.0, 0.5 * 2.0**message.errors) * self._rng.uniform(0.8, 1.2)
        try:
            answer: Any = json.loads(raw)
        except ValueError:
            answer = raw[:100]
        if status in (200, 202) and isinstance(answer, dict) and answer.get("ticket_id"):
            # Over its customer's flood limit: acknowledged, answered by one notice at most.
            message.status = "throttled" if answer.get("status") == "throttled" else "accepted"
            message.ticket_id = str(answer["ticket_id"])
            priority = answer.get("priority")
            message.priority = priority if isinstance(priority, int) else None
            self.accepted += 1
            self.second(self.clock()).accepted += 1
            return None
        if status == 503:
            message.refusals += 1
            self.second(self.clock()).refused += 1
            try:
                seconds = float(retry_after or 5)
            except ValueError:
                seconds = 5.0
            return seconds * self._rng.uniform(1.0, 1.3)  # spread: no synchronised wave
        if status >= 500 or status == 429:
            message.errors += 1
            return min(10.0, 0.5 * 2.0**message.errors)
        message.status = "rejected"
        message.rejection = f"{status}: {answer}"[:200]
        return None
