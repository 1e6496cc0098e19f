"""Setting up the bot: the client, its identity, and registering or removing the webhook."""

from __future__ import annotations

import pytest

from adapters.telegram.bot import (
    ALLOWED_UPDATES,
    TelegramSetupError,
    bot_identity,
    delete_webhook,
    make_bot,
    set_webhook,
)
from tests.adapters.telegram.tg_stack import close_bot
from tests.fakes.telegram_api import FakeTelegramAPI

URL = "https://shop.example.com/telegram/webhook"


async def test_set_webhook_sends_the_url_the_secret_and_the_update_types(
    tg_api: FakeTelegramAPI,
) -> None:
    bot = make_bot(tg_api.token, tg_api.base_url)
    try:
        await set_webhook(bot, URL, "s3cret_Token-1")
        await delete_webhook(bot)
    finally:
        await close_bot(bot)
    set_call, delete_call = tg_api.calls
    assert set_call.method == "setWebhook" and set_call.params == {
        "url": URL,
        "secret_token": "s3cret_Token-1",
        "allowed_updates": ["message"],
        "drop_pending_updates": "false",
    }
    assert delete_call.method == "deleteWebhook" and delete_call.ok
    assert delete_call.params == {"drop_pending_updates": "false"}
    assert ALLOWED_UPDATES == ["message"]


@pytest.mark.parametrize("secret", ["", "has space", "x" * 257, "ünïcode"])
async def test_a_secret_telegram_would_refuse_is_refused_before_calling_it(
    tg_api: FakeTelegramAPI, secret: str
) -> None:
    bot = make_bot(tg_api.token, tg_api.base_url)
    with pytest.raises(ValueError, match="1-256 characters"):
        await set_webhook(bot, URL, secret)
    assert tg_api.calls == []


async def test_the_identity_is_read_with_get_me(tg_api: FakeTelegramAPI) -> None:
    bot = make_bot(tg_api.token, tg_api.base_url)
    try:
        assert await bot_identity(bot) == (tg_api.bot_id, tg_api.username)
    finally:
        await close_bot(bot)


async def test_failures_say_what_failed_without_the_token(tg_api: FakeTelegramAPI) -> None:
    bot = make_bot(tg_api.token.replace("AA", "BB"), tg_api.base_url)  # a revoked token
    unreachable = make_bot(tg_api.token, "http://127.0.0.1:1")
    try:
        with pytest.raises(TelegramSetupError) as refused:
            await set_webhook(bot, URL, None)
        with pytest.raises(TelegramSetupError) as failed:
            await bot_identity(unreachable)
        with pytest.raises(TelegramSetupError):
            await delete_webhook(unreachable)
    finally:
        for client in (bot, unreachable):
            await close_bot(client)
    assert str(refused.value) == "setWebhook failed: TelegramUnauthorizedError: Unauthorized"
    assert str(failed.value).startswith("getMe failed: network error")
    for error in (refused.value, failed.value):
        assert "AAFake" not in str(error) and "BBFake" not in str(error)


def test_the_bot_talks_to_telegram_unless_told_otherwise() -> None:
    assert make_bot("1:x").session.api.base.startswith("https://api.telegram.org/bot")
    custom = make_bot("1:x", "http://127.0.0.1:8081/")
    assert custom.session.api.api_url("1:x", "getMe") == "http://127.0.0.1:8081/bot1:x/getMe"
