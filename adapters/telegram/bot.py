"""The aiogram ``Bot`` and the webhook registration (``peakdesk telegram set-webhook``).

The token is part of every Bot API URL: nothing here logs a URL or an aiogram error text
that could carry one, and :class:`TelegramSetupError` messages name only the method and the
Telegram description.
"""

from __future__ import annotations

import re
from typing import Final

import aiohttp
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    AiogramError,
    TelegramAPIError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramRetryAfter,
)

from core.errors import PeakdeskError

# The update types the bot handles. Edits are not subscribed to (they are never answered
# again), which also spares a webhook call per edit; any that arrive are acknowledged.
ALLOWED_UPDATES: Final[list[str]] = ["message"]
# What Telegram accepts as secret_token (and sends back in X-Telegram-Bot-Api-Secret-Token).
SECRET_TOKEN_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{1,256}")


class TelegramSetupError(PeakdeskError):
    """A Bot API call made at set-up (getMe, setWebhook, deleteWebhook) failed."""


def make_bot(token: str, api_base: str | None = None) -> Bot:
    """The real aiogram client; ``api_base`` points it at another Bot API server (tests, a
    local ``telegram-bot-api``). No default parse mode: model output is sent as plain text."""
    session = (
        AiohttpSession(api=TelegramAPIServer.from_base(api_base)) if api_base else AiohttpSession()
    )
    return Bot(token, session=session)


async def bot_identity(bot: Bot) -> tuple[int, str | None]:
    """The bot's id and @username (getMe): the account of its messages, its group mentions."""
    try:
        me = await bot.get_me()
    except (AiogramError, aiohttp.ClientError, TimeoutError) as exc:
        raise TelegramSetupError(f"getMe failed: {describe(exc)}") from exc
    return me.id, me.username


async def set_webhook(
    bot: Bot, url: str, secret: str | None, *, max_connections: int | None = None
) -> None:
    """Register ``url`` (HTTPS, ending in /telegram/webhook) for the updates the bot handles,
    with the secret Telegram will send in ``X-Telegram-Bot-Api-Secret-Token``."""
    if secret is not None and not SECRET_TOKEN_PATTERN.fullmatch(secret):
        raise ValueError("the webhook secret must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
    try:
        await bot.set_webhook(
            url=url,
            secret_token=secret,
            allowed_updates=list(ALLOWED_UPDATES),
            max_connections=max_connections,
            drop_pending_updates=False,
        )
    except (AiogramError, aiohttp.ClientError, TimeoutError) as exc:
        raise TelegramSetupError(f"setWebhook failed: {describe(exc)}") from exc


async def delete_webhook(bot: Bot) -> None:
    """Remove the webhook (updates that are pending stay and can be polled)."""
    try:
        await bot.delete_webhook(drop_pending_updates=False)
    except (AiogramError, aiohttp.ClientError, TimeoutError) as exc:
        raise TelegramSetupError(f"deleteWebhook failed: {describe(exc)}") from exc


def describe(exc: BaseException) -> str:
    """A log-safe description of a Bot API failure: Telegram's own text, never a URL or chat.

    aiogram's network errors embed the aiohttp error text, which may contain the request URL
    and with it the token; for those only the type names are kept.
    """
    if isinstance(exc, TelegramNetworkError):
        cause = exc.__cause__
        return f"network error ({type(cause).__name__ if cause else 'timeout'})"
    if isinstance(exc, TelegramRetryAfter):  # its message names the chat
        return f"TelegramRetryAfter: retry after {exc.retry_after} s"
    if isinstance(exc, TelegramMigrateToChat):
        return "TelegramMigrateToChat: the group became a supergroup"
    if isinstance(exc, TelegramAPIError):
        return f"{type(exc).__name__}: {exc.message}"
    return type(exc).__name__
