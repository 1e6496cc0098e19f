"""The asyncio helpers: reading a request body within a limit."""

from __future__ import annotations

import pytest

from core.aio import UnreadableBody, read_limited


class Stream:
    """A body stream that delivers ``chunks``, then fails with ``error`` (if any)."""

    def __init__(self, *chunks: bytes, error: Exception | None = None) -> None:
        self.chunks = list(chunks)
        self.error = error

    async def read(self, n: int = -1) -> bytes:
        if self.chunks:
            return self.chunks.pop(0)[:n]
        if self.error is not None:
            raise self.error
        return b""

    def at_eof(self) -> bool:
        return not self.chunks and self.error is None


async def test_a_body_in_chunks_is_read_whole_and_one_over_the_limit_is_none() -> None:
    assert await read_limited(Stream(b"ab", b"cd"), 4) == b"abcd"
    assert await read_limited(Stream(b"ab", b"cde"), 4) is None


async def test_a_failing_stream_is_an_unreadable_body_not_its_own_error() -> None:
    # aiohttp raises its ContentEncodingError (no ValueError) for a gzip body that does not
    # decompress: it reached the handlers' callers as a 500.
    class ContentEncodingError(Exception):
        pass

    with pytest.raises(UnreadableBody, match="ContentEncodingError"):
        await read_limited(Stream(b"ab", error=ContentEncodingError()), 64)
    assert issubclass(UnreadableBody, ValueError)  # what the ingress handlers catch
