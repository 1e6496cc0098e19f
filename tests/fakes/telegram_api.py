"""A scriptable fake of the Telegram Bot API, over real HTTP, for the real aiogram ``Bot``.

It runs in the test's event loop on 127.0.0.1 with a free port and serves
``GET|POST /bot{token}/{method}`` as the Bot API does: parameters from the query string, a
form (what aiogram sends; nested objects as JSON strings) or a JSON body; answers
``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code", "description", "parameters"}``.
Every call is recorded with its parameters. ``getUpdates`` serves the pushed updates, honours
``offset`` (earlier updates are confirmed and dropped) and long-polls up to ``timeout``::

    async with FakeTelegramAPI() as api:
        bot = make_bot(api.token, api.base_url)
        api.fail("sendMessage", 429, retry_after=1)      # next sendMessage: flood control
        api.fail("sendMessage", 403)                     # then: the user blocked the bot
        api.fail("sendMessage", 500, times=2, delay=0.5)
        api.down("sendMessage", 502)                     # every sendMessage fails until up()
        await api.push_updates(api.updates.text(chat_id=42, text="hi"))
        ...
        [sent] = await api.wait_for("sendMessage", 1)
        assert sent.params["text"] == "..." and "parse_mode" not in sent.params

``api.updates`` builds real update JSON (private, group, caption, sticker, edits, commands).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.loopback import LoopbackServer

TOKEN = "123456789:AAFakeTokenForTestsOnly_abcdefghijklmn"
BOT_ID = 123456789
BOT_USERNAME = "shop_help_bot"
MAX_TEXT = 4096
# Parameters the Bot API takes as JSON-serialized values (sent as strings in forms).
JSON_PARAMS = frozenset(
    {"reply_parameters", "allowed_updates", "entities", "reply_markup", "link_preview_options"}
)
DESCRIPTIONS = {
    400: "Bad Request: message to be replied not found",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: "Conflict: can't use getUpdates method while webhook is active",
    429: "Too Many Requests: retry after {retry_after}",
    500: "Internal Server Error",
    502: "Bad Gateway",
}


@dataclass(frozen=True, slots=True)
class ApiCall:
    """One request as the fake saw it: ``at`` is ``time.monotonic()`` on arrival."""

    method: str
    params: dict[str, Any]
    status: int
    at: float

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass(frozen=True, slots=True)
class Failure:
    status: int
    description: str
    retry_after: int | None = None
    migrate_to_chat_id: int | None = None
    delay: float = 0.0


@dataclass
class UpdateFactory:
    """Real-shaped update JSON, numbered in order (``update_id`` and ``message_id``)."""

    bot_id: int = BOT_ID
    bot_username: str = BOT_USERNAME
    next_update_id: int = 900_000_001
    next_message_id: int = 1
    now: int = field(default_factory=lambda: int(time.time()))

    def user(self, user_id: int, language_code: str | None = "en") -> dict[str, Any]:
        user: dict[str, Any] = {
            "id": user_id,
            "is_bot": False,
            "first_name": "Customer",
            "username": f"customer{user_id}",
        }
        if language_code:
            user["language_code"] = language_code
        return user

    def chat(self, chat_id: int, kind: str | None = None) -> dict[str, Any]:
        kind = kind or ("private" if chat_id > 0 else "supergroup")
        if kind == "private":
            return {"id": chat_id, "first_name": "Customer", "type": "private"}
        return {"id": chat_id, "title": "Shop fans", "type": kind}

    def message(
        self,
        chat_id: int = 42,
        *,
        user_id: int | None = None,
        language_code: str | None = "en",
        chat_type: str | None = None,
        **content: Any,
    ) -> dict[str, Any]:
        message_id = self.next_message_id
        self.next_message_id += 1
        sender = user_id if user_id is not None else (chat_id if chat_id > 0 else 7001)
        return {
            "message_id": message_id,
            "from": self.user(sender, language_code),
            "chat": self.chat(chat_id, chat_type),
            "date": self.now,
            **content,
        }

    def update(self, kind: str = "message", **message: Any) -> dict[str, Any]:
        update_id = self.next_update_id
        self.next_update_id += 1
        return {"update_id": update_id, kind: message}

    def text(self, chat_id: int = 42, text: str = "Where is my order 12345?", **kw: Any) -> Any:
        entities = kw.pop("entities", None)
        content: dict[str, Any] = {"text": text}
        if entities is None and text.startswith("/"):
            command = text.split(maxsplit=1)[0]
            entities = [{"offset": 0, "length": len(command), "type": "bot_command"}]
        if entities:
            content["entities"] = entities
        return self.update(**self.message(chat_id, **content, **kw))

    def mention(self, chat_id: int = -1001234567890, text: str = "where is my parcel?") -> Any:
        handle = f"@{self.bot_username}"
        entities = [{"offset": 0, "length": len(handle), "type": "mention"}]
        return self.text(chat_id, f"{handle} {text}", entities=entities)

    def reply_to_bot(self, chat_id: int = -1001234567890, text: str = "and the refund?") -> Any:
        bot_message = {
            "message_id": 77,
            "from": {
                "id": self.bot_id,
                "is_bot": True,
                "first_name": "Shop",
                "username": self.bot_username,
            },
            "chat": self.chat(chat_id),
            "date": self.now - 60,
            "text": "Your order ships tomorrow.",
        }
        return self.text(chat_id, text, reply_to_message=bot_message)

    def caption(self, chat_id: int = 42, caption: str = "This arrived broken") -> Any:
        photo = [
            {
                "file_id": "AgACAgIAAxkBAAIBZ2X",
                "file_unique_id": "AQADq7ExG",
                "file_size": 1520,
                "width": 90,
                "height": 67,
            }
        ]
        return self.update(**self.message(chat_id, photo=photo, caption=caption))

    def sticker(self, chat_id: int = 42) -> Any:
        sticker = {
            "file_id": "CAACAgIAAxkBAAIBaGX",
            "file_unique_id": "AgADmQADr8ZRGg",
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": "👍",
            "set_name": "HotCherry",
        }
        return self.update(**self.message(chat_id, sticker=sticker))

    def voice(self, chat_id: int = 42) -> Any:
        voice = {
            "duration": 3,
            "mime_type": "audio/ogg",
            "file_id": "AwACAgIAAxkBAAIBa",
            "file_unique_id": "AgADQ1I",
            "file_size": 10240,
        }
        return self.update(**self.message(chat_id, voice=voice))

    def edited(self, original: dict[str, Any], text: str) -> Any:
        message = {**original["message"], "text": text, "edit_date": self.now + 5}
        return self.update("edited_message", **message)


class FakeTelegramAPI(LoopbackServer):
    """A fake Bot API server; ``base_url`` is what ``TELEGRAM_API_BASE`` would be."""

    def __init__(
        self,
        token: str = TOKEN,
        *,
        bot_id: int = BOT_ID,
        username: str = BOT_USERNAME,
        max_poll_s: float = 1.0,
    ) -> None:
        self.token = token
        self.bot_id = bot_id
        self.username = username
        self.max_poll_s = max_poll_s  # long polls are cut to this, to keep tests quick
        self.calls: list[ApiCall] = []
        self.updates = UpdateFactory(bot_id=bot_id, bot_username=username)
        self.webhook: dict[str, Any] = {}
        self.polls_waiting = 0  # getUpdates calls waiting for updates right now
        self._pending: list[dict[str, Any]] = []
        self._failures: dict[str, deque[Failure | None]] = defaultdict(deque)
        self._down: dict[str, Failure] = {}
        self._changed = asyncio.Condition()
        self._next_message_id = 10_000
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        super().__init__(app)

    @property
    def base_url(self) -> str:
        return self.url().rstrip("/")

    # -- scripting ------------------------------------------------------------------------

    def fail(
        self,
        method: str,
        status: int,
        *,
        description: str | None = None,
        retry_after: int | None = None,
        migrate_to_chat_id: int | None = None,
        times: int = 1,
        skip: int = 0,
        delay: float = 0.0,
    ) -> None:
        """After ``skip`` calls answered normally, ``times`` calls of ``method`` fail with
        ``status`` (429 with ``retry_after``, 400 with ``migrate_to_chat_id``...)."""
        if status == 429 and retry_after is None:
            retry_after = 1
        text = description or DESCRIPTIONS.get(status, f"Error {status}")
        failure = Failure(
            status, text.format(retry_after=retry_after), retry_after, migrate_to_chat_id, delay
        )
        self._failures[method.lower()].extend([None] * skip + [failure] * times)

    def down(self, method: str, status: int = 500, *, description: str | None = None) -> None:
        """An outage of ``method``: every call fails with ``status`` until :meth:`up`."""
        text = description or DESCRIPTIONS.get(status, f"Error {status}")
        self._down[method.lower()] = Failure(status, text)

    def up(self, method: str) -> None:
        """The outage of ``method`` is over."""
        self._down.pop(method.lower(), None)

    async def push_updates(self, *updates: dict[str, Any]) -> None:
        """Make updates available to getUpdates (in order)."""
        async with self._changed:
            self._pending.extend(updates)
            self._changed.notify_all()

    # -- inspection -----------------------------------------------------------------------

    def calls_to(self, method: str, *, ok_only: bool = False) -> list[ApiCall]:
        return [
            c for c in self.calls if c.method.lower() == method.lower() and (c.ok or not ok_only)
        ]

    def sent_texts(self, chat_id: int | None = None) -> list[str]:
        """Texts of the messages Telegram accepted, in order (of one chat, if given)."""
        return [
            c.params["text"]
            for c in self.calls_to("sendMessage", ok_only=True)
            if chat_id is None or int(c.params["chat_id"]) == chat_id
        ]

    async def wait_for(self, method: str, count: int, timeout: float = 10.0) -> list[ApiCall]:
        """Wait until ``count`` successful calls of ``method`` were answered; return them."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(self.calls_to(method, ok_only=True)) >= count)
        return self.calls_to(method, ok_only=True)

    # -- serving --------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await _params(request)
        status, payload = await self._answer(request.match_info["token"], method, params)
        async with self._changed:
            self.calls.append(ApiCall(method, params, status, time.monotonic()))
            self._changed.notify_all()
        return web.json_response(payload, status=status)

    async def _answer(
        self, token: str, method: str, params: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        if token != self.token:
            return _error(Failure(401, DESCRIPTIONS[401]))
        queued = self._failures.get(method.lower())
        failure = self._down.get(method.lower()) or (queued.popleft() if queued else None)
        if failure is not None:
            if failure.delay:
                await asyncio.sleep(failure.delay)
            return _error(failure)
        handler = getattr(self, f"_m_{method.lower()}", None)
        if handler is None:
            return _error(Failure(404, "Not Found: method not found"))
        result: tuple[int, dict[str, Any]] = await handler(params)
        return result

    async def _m_getme(self, _: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return _ok(
            {
                "id": self.bot_id,
                "is_bot": True,
                "first_name": "Shop",
                "username": self.username,
                "can_join_groups": True,
                "can_read_all_group_messages": False,
                "supports_inline_queries": False,
            }
        )

    async def _m_sendmessage(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            return _error(Failure(400, "Bad Request: message text is empty"))
        if len(text.encode("utf-16-le")) // 2 > MAX_TEXT:
            return _error(Failure(400, "Bad Request: message is too long"))
        try:
            chat_id = int(params["chat_id"])
        except (KeyError, ValueError):
            return _error(Failure(400, "Bad Request: chat not found"))
        self._next_message_id += 1
        return _ok(
            {
                "message_id": self._next_message_id,
                "from": {
                    "id": self.bot_id,
                    "is_bot": True,
                    "first_name": "Shop",
                    "username": self.username,
                },
                "chat": self.updates.chat(chat_id),
                "date": int(time.time()),
                "text": text,
            }
        )

    async def _m_sendchataction(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if params.get("action") != "typing" or "chat_id" not in params:
            return _error(Failure(400, "Bad Request: wrong parameter action in request"))
        return _ok(True)

    async def _m_setwebhook(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.webhook = dict(params)
        return _ok(True)

    async def _m_deletewebhook(self, _: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.webhook = {}
        return _ok(True)

    async def _m_getupdates(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if self.webhook.get("url"):
            return _error(Failure(409, DESCRIPTIONS[409]))
        offset = int(params.get("offset") or 0)
        limit = int(params.get("limit") or 100)
        timeout = min(float(params.get("timeout") or 0), self.max_poll_s)
        # An offset confirms every update before it: they are never served again.
        self._pending = [u for u in self._pending if u["update_id"] >= offset]
        if not self._pending and timeout > 0:
            self.polls_waiting += 1
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout), self._changed:
                        await self._changed.wait_for(lambda: bool(self._pending))
            finally:
                self.polls_waiting -= 1
        return _ok(self._pending[:limit])


def _ok(result: Any) -> tuple[int, dict[str, Any]]:
    return 200, {"ok": True, "result": result}


def _error(failure: Failure) -> tuple[int, dict[str, Any]]:
    body: dict[str, Any] = {
        "ok": False,
        "error_code": failure.status,
        "description": failure.description,
    }
    parameters = {
        key: value
        for key, value in (
            ("retry_after", failure.retry_after),
            ("migrate_to_chat_id", failure.migrate_to_chat_id),
        )
        if value is not None
    }
    if parameters:
        body["parameters"] = parameters
    return failure.status, body


async def _params(request: web.Request) -> dict[str, Any]:
    """Query, form or JSON parameters, with JSON-serialized ones decoded."""
    params: dict[str, Any] = dict(request.query)
    if request.method == "POST" and request.can_read_body:
        if request.content_type == "application/json":
            body = await request.json()
            if isinstance(body, dict):
                params.update(body)
        else:  # application/x-www-form-urlencoded or multipart/form-data (aiogram)
            form = await request.post()
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
    for key in JSON_PARAMS & params.keys():
        if isinstance(params[key], str):
            with contextlib.suppress(ValueError):
                params[key] = json.loads(params[key])
    return params
