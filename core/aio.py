"""Small asyncio helpers shared by the long-running loops."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from typing import Protocol

# Set by a worker in the task of each message it processes: how to give the message's slot
# back while it only waits (see :func:`slot_released`).
_yield_slot: ContextVar[Callable[[int], None] | None] = ContextVar("yield_slot", default=None)


def set_slot_owner(give: Callable[[int], None]) -> None:
    """In a worker's message task: ``give(+1)`` lends its slot out, ``give(-1)`` takes it back."""
    _yield_slot.set(give)


@contextlib.asynccontextmanager
async def slot_released() -> AsyncIterator[None]:
    """While waiting on another call's answer (single flight), let the worker start another
    message in this one's slot: waiting followers must not starve the LLM of callers."""
    give = _yield_slot.get()
    if give is None:
        yield
        return
    give(1)
    try:
        yield
    finally:
        give(-1)


class Readable(Protocol):
    """A body stream (``aiohttp``'s ``request.content``)."""

    async def read(self, n: int = -1) -> bytes: ...

    def at_eof(self) -> bool: ...


class UnreadableBody(ValueError):
    """The body stream failed: a ``Content-Encoding`` that does not decode (a broken gzip),
    a connection lost mid-body. The request gets a 4xx, never the stream's own error."""


class BodyTimeout(TimeoutError):
    """The body did not arrive in time (the listener's body timeout, set on the stream): the
    request gets 408, not the 400 of an :class:`UnreadableBody`. A TimeoutError, as aiohttp
    expects of a stream that fails while it discards an unread body."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"request body not received within {seconds:g} s")


async def read_limited(stream: Readable, limit: int) -> bytes | None:
    """The whole body, or None past ``limit`` bytes (also without a Content-Length).

    ``read(n)`` returns what has arrived so far, up to ``n``: a body that comes in several
    chunks must be read until the end, or only its first chunk is seen. Raises
    UnreadableBody when the stream fails, BodyTimeout when it came too slowly.
    """
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        try:
            chunk = await stream.read(limit + 1 - size)
        except BodyTimeout:
            raise
        except Exception as exc:  # aiohttp's ContentEncodingError, connection errors...
            raise UnreadableBody(f"cannot read the body: {type(exc).__name__}") from exc
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if stream.at_eof():
            break
    if size > limit:
        return None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def wait_event(event: asyncio.Event, timeout: float) -> None:
    """Wait until ``event`` is set or ``timeout`` seconds have passed, whichever comes first."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)


class SerialByKey:
    """Runs jobs so that jobs with the same key run one after another, in the order started.

    Replies of one conversation must not overtake each other while different conversations
    run concurrently.
    """

    def __init__(self) -> None:
        self._tails: dict[str, asyncio.Task[None]] = {}

    def __len__(self) -> int:
        """How many keys have jobs running or waiting."""
        return len(self._tails)

    def busy(self, key: str) -> bool:
        """Whether a job with ``key`` is running or waiting (a new one would wait)."""
        return key in self._tails

    def start(self, key: str, job: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        previous = self._tails.get(key)

        async def after_previous() -> None:
            if previous is not None:
                await asyncio.wait([previous])  # its outcome is its own business
            await job()

        task = asyncio.get_running_loop().create_task(after_previous())
        self._tails[key] = task
        task.add_done_callback(lambda done: self._forget(key, done))
        return task

    def _forget(self, key: str, task: asyncio.Task[None]) -> None:
        if self._tails.get(key) is task:
            del self._tails[key]
