"""Telegram as `peakdesk serve` runs it: the settings turn the channel on, the runtime wires it."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from adapters.telegram.ingress import SECRET_HEADER
from core.keys import Keys
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.harness import Service, make_settings

TG_SECRET = "tg-test-secret_1"


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegramAPI]:
    async with FakeTelegramAPI() as api:
        yield api


async def test_webhook_mode_answers_a_customer_through_the_bot(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, telegram: FakeTelegramAPI
) -> None:
    settings = make_settings(
        keys,
        holysheep_base_url=fake_llm.base_url,
        telegram_bot_token=telegram.token,
        telegram_api_base=telegram.base_url,
        telegram_webhook_secret=TG_SECRET,
    )
    async with Service(settings, redis) as svc:
        update = telegram.updates.text(chat_id=42, text="Where is my order 12345?")
        async with svc.client.post(
            svc.url("/telegram/webhook"), json=update, headers={SECRET_HEADER: TG_SECRET}
        ) as response:
            assert response.status == 200
        async with svc.client.post(svc.url("/telegram/webhook"), json=update) as unsigned:
            assert unsigned.status == 401
        [sent] = await telegram.wait_for("sendMessage", 1)
        assert telegram.calls_to("getMe")  # the @username is learnt at start
    assert sent.params["text"] == "Echo: Where is my order 12345?"
    assert int(sent.params["chat_id"]) == 42


async def test_polling_mode_takes_updates_without_a_public_url(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, telegram: FakeTelegramAPI
) -> None:
    settings = make_settings(
        keys,
        holysheep_base_url=fake_llm.base_url,
        telegram_bot_token=telegram.token,
        telegram_api_base=telegram.base_url,
        telegram_mode="polling",
    )
    async with Service(settings, redis) as svc:
        await telegram.push_updates(telegram.updates.text(chat_id=7, text="/start"))
        [sent] = await telegram.wait_for("sendMessage", 1)
        async with svc.client.post(svc.url("/telegram/webhook"), json={}) as response:
            assert response.status == 404  # no webhook route in polling mode
    assert int(sent.params["chat_id"]) == 7
    assert fake_llm.calls == 0  # /start is answered from a template


async def run_cli(*args: str, **env: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bots.cli",
        "telegram",
        *args,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("TELEGRAM_")}, **env},
        cwd=Path(__file__).parent,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.mark.slow
async def test_cli_registers_and_removes_the_webhook(telegram: FakeTelegramAPI) -> None:
    env = {
        "TELEGRAM_BOT_TOKEN": telegram.token,
        "TELEGRAM_API_BASE": telegram.base_url,
        "TELEGRAM_WEBHOOK_SECRET": TG_SECRET,
    }
    url = "https://support.example.com/telegram/webhook"
    code, out, _ = await run_cli("set-webhook", url, **env)
    assert code == 0 and "webhook set" in out
    [registered] = telegram.calls_to("setWebhook")
    assert registered.params["url"] == url and registered.params["secret_token"] == TG_SECRET
    assert "message" in registered.params["allowed_updates"]
    code, out, _ = await run_cli("delete-webhook", **env)
    assert code == 0 and telegram.calls_to("deleteWebhook")
    without_secret = {k: v for k, v in env.items() if k != "TELEGRAM_WEBHOOK_SECRET"}
    code, _, err = await run_cli("set-webhook", url, **without_secret)
    assert code != 0 and "TELEGRAM_WEBHOOK_SECRET" in err
    assert telegram.token not in err


@pytest.mark.slow
async def test_cli_reports_a_refused_webhook_in_one_line(telegram: FakeTelegramAPI) -> None:
    telegram.fail("setWebhook", 400, description="Bad Request: bad webhook: HTTPS url required")
    code, _, err = await run_cli(
        "set-webhook",
        "http://support.example.com/telegram/webhook",
        TELEGRAM_BOT_TOKEN=telegram.token,
        TELEGRAM_API_BASE=telegram.base_url,
        TELEGRAM_WEBHOOK_SECRET=TG_SECRET,
    )
    assert code != 0
    [line] = err.strip().splitlines()
    assert "HTTPS url required" in line and telegram.token not in line
