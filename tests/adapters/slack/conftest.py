"""Fixtures of the Slack tests: the fake Slack Web API (see tests/fakes/slack_api.py), and
peakdesk with Slack for staff (and Telegram for customers)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from core.keys import Keys
from tests.adapters.slack.slack_stack import ADMIN, TelegramDesk, slack_settings, with_telegram
from tests.fakes.callback_receiver import CallbackReceiver
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_api import FakeSlackAPI
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.harness import Service


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlackAPI]:
    async with FakeSlackAPI() as api:
        yield api


@pytest.fixture
async def svc(
    redis: Redis,
    keys: Keys,
    fake_llm: FakeOpenAI,
    receiver: CallbackReceiver,
    slack: FakeSlackAPI,
) -> AsyncIterator[Service]:
    """peakdesk with Slack for staff (and the admin API on, token ``ADMIN``)."""
    settings = slack_settings(keys, fake_llm, receiver, slack, peakdesk_admin_token=ADMIN)
    async with Service(settings, redis) as service:
        yield service


@pytest.fixture
async def telegram_desk(
    redis: Redis,
    keys: Keys,
    fake_llm: FakeOpenAI,
    receiver: CallbackReceiver,
    slack: FakeSlackAPI,
) -> AsyncIterator[TelegramDesk]:
    async with FakeTelegramAPI() as telegram:
        settings = with_telegram(keys, fake_llm, receiver, slack, telegram)
        async with Service(settings, redis) as svc:
            yield TelegramDesk(svc, telegram)
