"""The fake WeChat API for the tests that run the whole service."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakes.wechat_api import FakeWeChatAPI


@pytest.fixture
async def wechat_api() -> AsyncIterator[FakeWeChatAPI]:
    async with FakeWeChatAPI() as fake:
        yield fake
