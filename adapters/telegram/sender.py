"""Replies out through the Bot API: ``sendMessage`` once per part, within Telegram's limits.

- Plain text, never a ``parse_mode``: model output cannot break Telegram's parser.
- In reply to the customer's message (sent anyway if that message is gone).
- Over 4096 characters: split (:mod:`adapters.telegram.split`), parts in order; the parts
  already sent are recorded per ticket, so a retry sends only the rest and a repeat nothing.
- Limits shared by every process (:class:`core.ratelimit.RateLimiter`): 1 message a second
  per chat, 20 a minute per group, 30 a second for the whole bot.
- Failures become :class:`core.errors.DeliveryError` for the outbox: 429 and server or
  network errors are retried (429 no sooner than Telegram's ``retry_after``); a blocked bot
  (403) is recorded and never retried; other refusals are final.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Final

import aiohttp
from aiogram import Bot
from aiogram.exceptions import (
    AiogramError,
    ClientDecodeError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.types import ReplyParameters
from redis.asyncio import Redis
from redis.exceptions import RedisError

from adapters.telegram.bot import describe
from adapters.telegram.convert import CHANNEL
from adapters.telegram.split import split_reply
from core.errors import DeliveryError
from core.keys import Keys
from core.metrics import Metrics
from core.models import InboundMessage, Reply
from core.ratelimit import Rate, RateLimiter

log = logging.getLogger("peakdesk.telegram")

# "Avoid more than one message per second" per chat; "short bursts" are tolerated, so the
# first two parts of a split reply (or two quick answers) go out together.
CHAT_RATE: Final = Rate(1.0, burst=2)
GROUP_RATE: Final = Rate(20 / 60, burst=3)  # 20 messages a minute per group
BOT_RATE: Final = Rate(30.0, burst=30)  # about 30 messages a second across all chats
# "typing" is cosmetic: a budget of its own, a third of the messages' (whether Telegram counts
# chat actions against the 30 a second is undocumented), skipped when spent, never waited for.
TYPING_RATE: Final = Rate(10.0, burst=10)
DAY_S: Final = 24 * 3600


@dataclass(frozen=True, slots=True)
class _Target:
    chat_id: int
    reply_to_message_id: int | None
    thread_id: int | None


def _target(reply_to: dict[str, str]) -> _Target:
    try:
        chat_id = int(reply_to["chat_id"])
    except (KeyError, ValueError) as exc:
        raise DeliveryError("reply has no Telegram chat_id", retryable=False) from exc
    message_id = reply_to.get("message_id")
    thread_id = reply_to.get("message_thread_id")
    return _Target(
        chat_id,
        int(message_id) if message_id and message_id.isdigit() else None,
        int(thread_id) if thread_id and thread_id.isdigit() else None,
    )


class TelegramReplySender:
    """The Telegram :class:`core.outbox.ReplySender` and :class:`core.worker.Presence`."""

    def __init__(
        self,
        bot: Bot,
        limiter: RateLimiter,
        redis: Redis,
        keys: Keys,
        metrics: Metrics,
        *,
        bot_id: int,
        chat_rate: Rate = CHAT_RATE,
        group_rate: Rate = GROUP_RATE,
        bot_rate: Rate = BOT_RATE,
        max_wait_s: float = 30.0,
        progress_ttl_s: int = 7 * DAY_S,
        blocked_ttl_s: int = 90 * DAY_S,
    ) -> None:
        self.bot = bot
        self.limiter = limiter
        self.redis = redis
        self.keys = keys
        self.metrics = metrics
        self.bot_id = bot_id
        self.chat_rate = chat_rate
        self.group_rate = group_rate
        self.bot_rate = bot_rate
        self.max_wait_s = max_wait_s
        self.progress_ttl_s = progress_ttl_s
        self.blocked_ttl_s = blocked_ttl_s
        # Parts sent per ticket by this process, in case recording them in Redis failed.
        self._sent_here: dict[str, int] = {}

    def progress_key(self, ticket_id: str) -> str:
        return f"{self.keys.tag}:tg:sent:{ticket_id}"

    def blocked_key(self, chat_id: int) -> str:
        return f"{self.keys.tag}:tg:blocked:{self.bot_id}:{chat_id}"

    # -- ReplySender ----------------------------------------------------------------------

    async def send(self, reply: Reply) -> None:
        """Send every part of ``reply`` not sent yet, in order; DeliveryError on a failure."""
        target = _target(reply.reply_to)
        parts = split_reply(reply.text)
        if not parts:
            raise DeliveryError("reply text is blank", retryable=False)
        ticket = reply.delivery_id  # a staff reply shares its ticket with the bot's answers
        done = 0
        if len(parts) > 1:  # a single part is sent once by the outbox's per-ticket claim
            try:
                done = int(await self.redis.get(self.progress_key(ticket)) or 0)
            except RedisError as exc:
                raise DeliveryError("cannot read the parts already sent") from exc
            done = max(done, self._sent_here.get(ticket, 0))
        chat_id = target.chat_id
        try:
            for index in range(done, len(parts)):
                await self._wait_for_slot(chat_id)
                # Only the first part answers the customer's message; the rest follow it.
                reply_to = target.reply_to_message_id if index == 0 else None
                chat_id = await self._send_part(chat_id, parts[index], reply_to, target.thread_id)
                if len(parts) > 1:
                    await self._record_progress(ticket, index + 1)
        except DeliveryError as exc:
            if not exc.retryable:  # no retry will come: forget this ticket
                self._sent_here.pop(ticket, None)
            raise
        self._sent_here.pop(ticket, None)

    async def _record_progress(self, ticket: str, sent: int) -> None:
        self._sent_here[ticket] = sent
        try:
            await self.redis.set(self.progress_key(ticket), sent, ex=self.progress_ttl_s)
        except RedisError as exc:
            # This process still knows; a crash before the next part could repeat this one.
            log.warning(
                "ticket %s: part %d sent, not recorded (%s)", ticket, sent, type(exc).__name__
            )

    async def _wait_for_slot(self, chat_id: int) -> None:
        limits = [(f"tg:{self.bot_id}:chat:{chat_id}", self.chat_rate)]
        if chat_id < 0:  # groups, supergroups (and channels) have negative ids
            limits.append((f"tg:{self.bot_id}:group:{chat_id}", self.group_rate))
        limits.append((f"tg:{self.bot_id}:all", self.bot_rate))
        try:
            await self.limiter.acquire(limits, timeout=self.max_wait_s)
        except TimeoutError as exc:
            self.metrics.channel_events.labels(CHANNEL, "send_limit_wait").inc()
            raise DeliveryError("sending limit: no slot in time", retry_after=1.0) from exc
        except RedisError as exc:
            raise DeliveryError(f"rate limiter unavailable ({type(exc).__name__})") from exc

    async def _send_part(
        self, chat_id: int, text: str, reply_to: int | None, thread_id: int | None
    ) -> int:
        """Send one message; returns the chat it went to (a group may have moved)."""
        try:
            await self._send_message(chat_id, text, reply_to, thread_id)
        except TelegramBadRequest as exc:
            if reply_to is None or "replied" not in exc.message.lower():
                raise self._refused(exc) from exc
            # "message to be replied not found": the customer deleted it. Answer anyway.
            self.metrics.channel_events.labels(CHANNEL, "reply_not_found").inc()
            return await self._send_part(chat_id, text, None, thread_id)
        except TelegramMigrateToChat as exc:  # the group became a supergroup: follow it
            self.metrics.channel_events.labels(CHANNEL, "migrated").inc()
            try:
                await self._send_message(exc.migrate_to_chat_id, text, reply_to, None)
            except (AiogramError, aiohttp.ClientError, TimeoutError) as again:
                raise await self._translate(again, exc.migrate_to_chat_id) from again
            return exc.migrate_to_chat_id
        except (AiogramError, aiohttp.ClientError, TimeoutError) as exc:
            raise await self._translate(exc, chat_id) from exc
        return chat_id

    async def _send_message(
        self, chat_id: int, text: str, reply_to: int | None, thread_id: int | None
    ) -> None:
        await self.bot.send_message(
            chat_id=chat_id,
            text=text,
            parse_mode=None,
            message_thread_id=thread_id,
            reply_parameters=(
                ReplyParameters(message_id=reply_to, allow_sending_without_reply=True)
                if reply_to is not None
                else None
            ),
        )

    async def _translate(self, exc: BaseException, chat_id: int) -> DeliveryError:
        """The outbox's view of a failed Bot API call (see the module docstring)."""
        if isinstance(exc, TelegramRetryAfter):
            self.metrics.channel_events.labels(CHANNEL, "rate_limited").inc()
            return DeliveryError(
                f"telegram 429, retry after {exc.retry_after} s",
                status=429,
                retry_after=float(exc.retry_after),
            )
        if isinstance(exc, TelegramForbiddenError):
            await self._record_blocked(chat_id)
            return DeliveryError(f"telegram 403: {exc.message}", retryable=False, status=403)
        if isinstance(
            exc,
            TelegramServerError
            | TelegramNetworkError
            | ClientDecodeError
            | aiohttp.ClientError
            | TimeoutError,
        ):
            return DeliveryError(f"telegram unavailable: {describe(exc)}")
        return self._refused(exc)

    @staticmethod
    def _refused(exc: BaseException) -> DeliveryError:
        return DeliveryError(f"telegram refused the reply: {describe(exc)}", retryable=False)

    async def _record_blocked(self, chat_id: int) -> None:
        """The customer blocked the bot (or left the group): counted and kept for operators."""
        self.metrics.channel_events.labels(CHANNEL, "blocked").inc()
        try:
            await self.redis.set(
                self.blocked_key(chat_id), str(int(time.time())), ex=self.blocked_ttl_s
            )
        except RedisError as exc:
            log.warning("could not record a blocked chat (%s)", type(exc).__name__)

    # -- Presence -------------------------------------------------------------------------

    async def typing(self, message: InboundMessage) -> None:
        """Show "typing..." in the customer's chat (Telegram shows it for up to 5 s)."""
        target = _target(message.reply_to)
        if await self.limiter.try_acquire([(f"tg:{self.bot_id}:typing", TYPING_RATE)]):
            return  # many answers in the making at once: skip this one rather than wait
        try:
            await self.bot.send_chat_action(
                chat_id=target.chat_id, action="typing", message_thread_id=target.thread_id
            )
        except (AiogramError, aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryError(f"typing not shown: {describe(exc)}") from exc
