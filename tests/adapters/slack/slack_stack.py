"""What the Slack tests share: peakdesk wired to the fake Slack Web API (and, for Telegram
customers, the fake Bot API), and requests signed as Slack and Telegram sign them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adapters.telegram.ingress import SECRET_HEADER
from bots.settings import Settings
from core.keys import Keys
from tests.fakes.callback_receiver import CallbackReceiver
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_api import BOT_TOKEN, SIGNING_SECRET, SUPPORT_CHANNEL, FakeSlackAPI
from tests.fakes.slack_api import signed_headers as slack_headers
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.harness import Service, wired_settings

TG_SECRET = "tg-test-secret_1"
ADMIN = "admin-test-token-9c1e"  # PEAKDESK_ADMIN_TOKEN of the ``svc`` fixture


@dataclass(frozen=True)
class TelegramDesk:
    """peakdesk with Slack for staff and a Telegram bot for customers (the fixture
    ``telegram_desk``)."""

    svc: Service
    telegram: FakeTelegramAPI

    async def customer_sends(self, text: str, chat_id: int = 42) -> None:
        update = self.telegram.updates.text(chat_id=chat_id, text=text)
        assert await to_telegram_webhook(self.svc, update) == 200


def slack_settings(
    keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver, slack: FakeSlackAPI, **extra: Any
) -> Settings:
    return wired_settings(
        keys,
        fake_llm.base_url,
        receiver.url,
        slack_bot_token=BOT_TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_support_channel=SUPPORT_CHANNEL,
        slack_api_base=slack.base_url,
        **extra,
    )


def with_telegram(
    keys: Keys,
    fake_llm: FakeOpenAI,
    receiver: CallbackReceiver,
    slack: FakeSlackAPI,
    telegram: FakeTelegramAPI,
) -> Settings:
    """Slack for staff and a Telegram bot (on the fake Bot API) for customers."""
    return slack_settings(
        keys,
        fake_llm,
        receiver,
        slack,
        telegram_bot_token=telegram.token,
        telegram_api_base=telegram.base_url,
        telegram_webhook_secret=TG_SECRET,
    )


async def to_telegram_webhook(svc: Service, update: Any) -> int:
    """POST a Telegram update as Telegram does; the status."""
    headers = {SECRET_HEADER: TG_SECRET}
    async with svc.client.post(svc.url("/telegram/webhook"), json=update, headers=headers) as r:
        return r.status


async def to_slack_app(
    svc: Service,
    path: str,
    body: str,
    *,
    secret: str = SIGNING_SECRET,
    timestamp: int | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, str]:
    """POST ``body`` to one of the Slack routes, signed as Slack signs it."""
    content_type = (
        "application/json" if body.startswith("{") else "application/x-www-form-urlencoded"
    )
    sent = {"Content-Type": content_type, **slack_headers(secret, body, timestamp)}
    sent.update(headers or {})
    async with svc.client.post(svc.url(path), data=body.encode(), headers=sent) as response:
        return response.status, await response.text()
