"""One running peakdesk per fuzz module (see tests/fuzz/harness.py for why and how)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from tests.fuzz.harness import FuzzStack


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack() -> AsyncIterator[FuzzStack]:
    async with FuzzStack() as running:
        yield running
