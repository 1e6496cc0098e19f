"""Long polling (``TELEGRAM_MODE=polling``): getUpdates in a loop, each update through
:meth:`TelegramIngress.accept`, as the webhook does.

The offset is what confirms updates to Telegram, so it only moves past an update once
``accept`` returned: an update the store could not take is fetched again after a back-off.
Errors back off exponentially (1 s doubling to 30 s, with jitter); a set stop event ends the
loop at once, even in the middle of a long poll (unconfirmed updates simply come again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any

import aiohttp
from aiogram import Bot
from aiogram.exceptions import AiogramError, TelegramConflictError
from aiogram.types import Update

from adapters.telegram.bot import ALLOWED_UPDATES, describe
from adapters.telegram.convert import InvalidUpdate
from adapters.telegram.ingress import TelegramIngress
from core.aio import wait_event
from core.errors import AdmissionRefused, StoreUnavailable

log = logging.getLogger("peakdesk.telegram")


def update_json(update: Update) -> dict[str, Any]:
    """aiogram's Update back in the Bot API's JSON form (``from``, unix dates), for accept()."""
    return update.model_dump(mode="json", by_alias=True, exclude_none=True)


class TelegramPoller:
    """Fetches updates with getUpdates and hands each to the ingress, in order."""

    def __init__(
        self,
        bot: Bot,
        ingress: TelegramIngress,
        *,
        poll_timeout_s: int = 25,
        backoff_first_s: float = 1.0,
        backoff_cap_s: float = 30.0,
    ) -> None:
        self.bot = bot
        self.ingress = ingress
        self.poll_timeout_s = poll_timeout_s
        self.backoff_first_s = backoff_first_s
        self.backoff_cap_s = backoff_cap_s
        self.offset: int | None = None  # the first update not yet durably accepted
        self._failures = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set."""
        while not stop.is_set():
            updates = await self._fetch(stop)
            if updates is None:
                continue
            for update in updates:
                if stop.is_set() or not await self._accept(update, stop):
                    break  # the offset stays at this update: it is fetched again

    async def _fetch(self, stop: asyncio.Event) -> list[Update] | None:
        """One getUpdates call, abandoned when ``stop`` is set; None on failure or stop."""
        fetch = asyncio.ensure_future(
            self.bot.get_updates(
                offset=self.offset,
                timeout=self.poll_timeout_s,
                allowed_updates=list(ALLOWED_UPDATES),
                # Longer than the long poll itself, or every quiet poll would time out.
                request_timeout=self.poll_timeout_s + 15,
            )
        )
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({fetch, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if not fetch.done():
            fetch.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await fetch
            return None
        try:
            updates = fetch.result()
        except (AiogramError, aiohttp.ClientError, TimeoutError) as exc:
            hint = (
                " (a webhook is set or another poller runs: `peakdesk telegram delete-webhook`)"
                if isinstance(exc, TelegramConflictError)
                else ""
            )
            await self._back_off(stop, f"getUpdates failed: {describe(exc)}{hint}")
            return None
        if not updates:
            self._failures = 0
        return updates

    async def _accept(self, update: Update, stop: asyncio.Event) -> bool:
        """Hand one update over; True when the offset may move past it."""
        try:
            await self.ingress.accept(update_json(update))
        except InvalidUpdate:
            log.warning("update %d is not a valid update: skipped", update.update_id)
        except (StoreUnavailable, AdmissionRefused) as exc:
            await self._back_off(stop, f"update not accepted ({type(exc).__name__})")
            return False
        self.offset = update.update_id + 1
        self._failures = 0
        return True

    async def _back_off(self, stop: asyncio.Event, why: str) -> None:
        self._failures += 1
        delay = min(self.backoff_cap_s, self.backoff_first_s * 2 ** (self._failures - 1))
        delay = delay / 2 + random.uniform(0, delay / 2)
        log.warning("%s; retrying in %.1f s", why, delay)
        await wait_event(stop, delay)
