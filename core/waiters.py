"""Waiting for replies synchronously (the webhook's ``?wait=N``, WeChat's passive reply, the
chat): one watch of the reply records per process, however many wait.

While anyone waits, the :class:`ReplyWatcher` reads the reply records of every waited ticket
every ``interval_s``, with one ``MGET`` per lane (a lane's keys share one hash slot, as Redis
Cluster needs of one command); a reply made in this process wakes it at once
(:meth:`ReplyWatcher.notify`). A poll per waiter cost 200 waiters about 465 Redis commands
per request. The waiters are capped (``max_waiters``): each holds a connection and a request
open for up to its whole wait.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from redis.asyncio import Redis

from core.aio import wait_event
from core.keys import Keys
from core.queue import text_of


class ReplyWatcher:
    """Finds the stored replies of the tickets this process's waiters wait for."""

    def __init__(
        self, redis: Redis, keys: Keys, *, interval_s: float = 0.05, max_waiters: int = 500
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.interval_s = interval_s
        self.max_waiters = max_waiters
        self._waiting: dict[str, list[asyncio.Future[str]]] = {}
        self._count = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def waiters(self) -> int:
        return self._count

    def can_wait(self) -> bool:
        """Whether another waiter is taken now (under ``max_waiters``)."""
        return self._count < self.max_waiters

    def notify(self, ticket_id: str) -> None:
        """The reply of ``ticket_id`` was just stored in this process: look at once."""
        if ticket_id in self._waiting:
            self._wake.set()

    async def wait(self, ticket_id: str, timeout: float) -> str | None:
        """The stored reply (its JSON) of ``ticket_id`` once it exists; None when ``timeout``
        passes first, or at once when ``max_waiters`` already wait. Raises the store's error
        when the watch failed to read it."""
        if not self.can_wait():
            return None
        found: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(ticket_id, []).append(found)
        self._count += 1
        self._wake.set()  # a reply stored already is found at once
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._watch())
        try:
            async with asyncio.timeout(timeout):
                return await found
        except TimeoutError:
            return None
        finally:
            self._count -= 1
            futures = self._waiting.get(ticket_id, [])
            with contextlib.suppress(ValueError):
                futures.remove(found)
            if not futures:
                self._waiting.pop(ticket_id, None)

    async def _watch(self) -> None:
        while self._waiting:
            self._wake.clear()
            lanes: dict[Keys, list[str]] = {}
            for ticket_id in self._waiting:
                lanes.setdefault(self.keys.for_ticket(ticket_id), []).append(ticket_id)
            await asyncio.gather(*(self._read(tickets) for tickets in lanes.values()))
            await wait_event(self._wake, self.interval_s)

    async def _read(self, tickets: Sequence[str]) -> None:
        """One MGET of the reply records of one lane's tickets; hands each found one over."""
        try:
            found = await self.redis.mget([self.keys.reply(t) for t in tickets])
        except Exception as exc:  # the store's error is the waiters' to report
            for ticket_id in tickets:
                for future in self._waiting.pop(ticket_id, []):
                    if not future.done():
                        future.set_exception(exc)
            return
        for ticket_id, raw in zip(tickets, found, strict=True):
            if raw is not None:
                for future in self._waiting.pop(ticket_id, []):
                    if not future.done():
                        future.set_result(text_of(raw))
