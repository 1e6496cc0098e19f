"""A scriptable fake of the Slack Web API, over real HTTP, for the real ``AsyncWebClient``.

It runs in the test's event loop on 127.0.0.1 with a free port and serves
``GET|POST /api/{method}`` as Slack does: parameters from the query string, a form (values
such as ``blocks`` as JSON strings) or a JSON body (what ``chat_postMessage`` sends); the
token from ``Authorization: Bearer ...`` (or a ``token`` parameter). Answers are Slack's:
HTTP 200 with ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``, HTTP 429 with
``Retry-After`` when rate limited, HTTP 5xx on a server error. Every call is recorded::

    async with FakeSlackAPI() as api:
        client = AsyncWebClient(token=BOT_TOKEN, base_url=api.base_url)
        api.fail("chat.postMessage", 429, retry_after=1)         # next post: rate limited
        api.fail("chat.postMessage", 200, error="channel_not_found")
        api.fail("chat.update", 500, times=2, delay=0.5)
        ...
        [post] = await api.wait_for("chat.postMessage", 1)
        assert api.posted(SUPPORT_CHANNEL, thread_ts="1700000000.000100") == [...]

The default ``AsyncWebClient`` does not retry a 429 (its default retry handlers only retry
connection errors): the 429 surfaces as ``SlackApiError`` with ``e.response.status_code``
and ``e.response.headers["Retry-After"]``.

The module also builds what Slack sends to the app: ``signed_headers`` (request signing),
``event_body`` + ``thread_message`` (Events API), ``command_body`` (slash command) and
``action_body`` (a ``block_actions`` button click).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from slack_sdk.signature import SignatureVerifier

from tests.fakes.loopback import LoopbackServer

SIGNING_SECRET = "test-slack-signing-secret"
BOT_TOKEN = "xoxb-test-token"
VERIFICATION_TOKEN = "test-verification-token"  # the deprecated token Slack still sends
SUPPORT_CHANNEL = "C0SUPPORT"
SUPPORT_CHANNEL_NAME = "support"
TEAM_ID = "T0001"
TEAM_DOMAIN = "peakdesk-test"
APP_ID = "A0PEAKDESK"
BOT_USER_ID = "U0BOT"
BOT_ID = "B0BOT"
BOT_NAME = "peakdesk"
STAFF_USER_ID = "U0STAFF"
RESPONSE_URL = "http://127.0.0.1:9/response"  # nothing listens on port 9 (discard)
# Parameters Slack takes as JSON values (sent as JSON strings in forms and queries).
JSON_PARAMS = frozenset({"blocks", "attachments", "metadata"})
DEFAULT_ERRORS = {429: "ratelimited", 500: "internal_error", 503: "service_unavailable"}
_FIRST_TS_US = 1_700_000_000_000_100  # "1700000000.000100", in microseconds


@dataclass(frozen=True, slots=True)
class ApiCall:
    """One request as the fake saw it: ``at`` is ``time.monotonic()`` on arrival; ``error``
    is the ``error`` of an ``ok: false`` answer (HTTP 200 or not)."""

    method: str
    params: dict[str, Any]
    status: int
    at: float
    error: str | None = None
    answer: dict[str, Any] | None = None  # the JSON answered (``ts`` of a post...)

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None


@dataclass(frozen=True, slots=True)
class Failure:
    status: int
    error: str
    retry_after: int | None = None
    delay: float = 0.0


def _ts(us: int) -> str:
    return f"{us // 1_000_000}.{us % 1_000_000:06d}"


class FakeSlackAPI(LoopbackServer):
    """A fake Slack Web API; ``base_url`` is what ``AsyncWebClient(base_url=...)`` takes."""

    def __init__(self, token: str = BOT_TOKEN) -> None:
        self.token = token
        self.calls: list[ApiCall] = []
        self._failures: dict[str, deque[Failure | None]] = defaultdict(deque)
        self._changed = asyncio.Condition()
        self._next_ts_us = _FIRST_TS_US
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle)
        super().__init__(app)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/api/``: slack_sdk appends the method name to it."""
        return self.url("/api/")

    # -- scripting ------------------------------------------------------------------------

    def fail(
        self,
        method: str,
        status: int = 429,
        *,
        error: str | None = None,
        retry_after: int = 1,
        times: int = 1,
        skip: int = 0,
        delay: float = 0.0,
    ) -> None:
        """After ``skip`` calls answered normally, ``times`` calls of ``method`` fail: HTTP
        ``status`` with ``{"ok": false, "error": error}``. ``error`` defaults to Slack's for
        the status (429 ``ratelimited`` with ``Retry-After: retry_after``, 500
        ``internal_error``); with status 200 give it, e.g. ``"channel_not_found"``."""
        text = error or DEFAULT_ERRORS.get(status, "internal_error")
        failure = Failure(status, text, retry_after if status == 429 else None, delay)
        self._failures[method].extend([None] * skip + [failure] * times)

    # -- inspection -----------------------------------------------------------------------

    def calls_to(self, method: str, *, ok_only: bool = False) -> list[ApiCall]:
        return [c for c in self.calls if c.method == method and (c.ok or not ok_only)]

    def posted(
        self, channel: str | None = None, thread_ts: str | None = None
    ) -> list[dict[str, Any]]:
        """Parameters of the messages Slack accepted, in order (of a channel, a thread)."""
        return [
            c.params
            for c in self.calls_to("chat.postMessage", ok_only=True)
            if (channel is None or c.params.get("channel") == channel)
            and (thread_ts is None or c.params.get("thread_ts") == thread_ts)
        ]

    def updates(self, channel: str | None = None) -> list[dict[str, Any]]:
        """Parameters of the accepted ``chat.update`` calls, in order."""
        return [
            c.params
            for c in self.calls_to("chat.update", ok_only=True)
            if channel is None or c.params.get("channel") == channel
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
        token = params.pop("token", None)
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            token = auth.removeprefix("Bearer ")
        status, payload, headers = await self._answer(token, method, params)
        error = None if payload.get("ok") else str(payload.get("error"))
        async with self._changed:
            self.calls.append(ApiCall(method, params, status, time.monotonic(), error, payload))
            self._changed.notify_all()
        return web.json_response(payload, status=status, headers=headers)

    async def _answer(
        self, token: str | None, method: str, params: dict[str, Any]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        if token != self.token:
            return _error(Failure(200, "invalid_auth"))
        queued = self._failures.get(method)
        failure = queued.popleft() if queued else None
        if failure is not None:
            if failure.delay:
                await asyncio.sleep(failure.delay)
            return _error(failure)
        handler = getattr(self, "_m_" + method.replace(".", "_").lower(), None)
        if handler is None:
            return _error(Failure(200, "unknown_method"))
        result: dict[str, Any] = await handler(params)
        return 200, result, {}

    def _new_ts(self) -> str:
        self._next_ts_us += 100
        return _ts(self._next_ts_us)

    async def _m_auth_test(self, _: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": f"https://{TEAM_DOMAIN}.slack.com/",
            "team": "PeakDesk Test",
            "user": BOT_NAME,
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    async def _m_chat_postmessage(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = params.get("channel")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if not (params.get("text") or params.get("blocks") or params.get("attachments")):
            return {"ok": False, "error": "no_text"}
        ts = self._new_ts()
        message: dict[str, Any] = {
            "type": "message",
            "subtype": "bot_message",
            "text": params.get("text", ""),
            "ts": ts,
            "bot_id": BOT_ID,
            "user": BOT_USER_ID,
            "app_id": APP_ID,
            "team": TEAM_ID,
        }
        if params.get("blocks"):
            message["blocks"] = params["blocks"]
        if params.get("thread_ts"):
            message["thread_ts"] = params["thread_ts"]
            message["parent_user_id"] = BOT_USER_ID
        return {"ok": True, "channel": channel, "ts": ts, "message": message}

    async def _m_chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        if not params.get("channel"):
            return {"ok": False, "error": "channel_not_found"}
        if not params.get("ts"):
            return {"ok": False, "error": "message_not_found"}
        text = params.get("text", "")
        message: dict[str, Any] = {"text": text, "bot_id": BOT_ID, "user": BOT_USER_ID}
        if params.get("blocks"):
            message["blocks"] = params["blocks"]
        return {
            "ok": True,
            "channel": params["channel"],
            "ts": params["ts"],
            "text": text,
            "message": message,
        }

    async def _m_chat_postephemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        if not params.get("channel"):
            return {"ok": False, "error": "channel_not_found"}
        if not params.get("user"):
            return {"ok": False, "error": "user_not_in_channel"}
        if not (params.get("text") or params.get("blocks") or params.get("attachments")):
            return {"ok": False, "error": "no_text"}
        return {"ok": True, "message_ts": self._new_ts()}

    async def _m_conversations_info(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = params.get("channel")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        name = SUPPORT_CHANNEL_NAME if channel == SUPPORT_CHANNEL else channel.lower()
        return {
            "ok": True,
            "channel": {
                "id": channel,
                "name": name,
                "is_channel": True,
                "is_private": False,
                "is_archived": False,
                "is_member": True,
                "context_team_id": TEAM_ID,
            },
        }


def _error(failure: Failure) -> tuple[int, dict[str, Any], dict[str, str]]:
    headers = {}
    if failure.retry_after is not None:
        headers["Retry-After"] = str(failure.retry_after)
    return failure.status, {"ok": False, "error": failure.error}, headers


async def _params(request: web.Request) -> dict[str, Any]:
    """Query, form or JSON parameters, with JSON-serialized ones decoded."""
    params: dict[str, Any] = dict(request.query)
    if request.method == "POST" and request.can_read_body:
        if request.content_type == "application/json":
            body = await request.json()
            if isinstance(body, dict):
                params.update(body)
        else:  # application/x-www-form-urlencoded or multipart/form-data
            form = await request.post()
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
    for key in JSON_PARAMS & params.keys():
        if isinstance(params[key], str):
            with contextlib.suppress(ValueError):
                params[key] = json.loads(params[key])
    return params


# -- what Slack sends to the app ----------------------------------------------------------

_incoming_ts = itertools.count(1)


def _incoming_message_ts() -> str:
    """A fresh ts for an incoming message: after now, so later than anything the fake API
    handed out, and unique within the test run."""
    return _ts(int(time.time()) * 1_000_000 + next(_incoming_ts))


def signed_headers(signing_secret: str, body: str, timestamp: int | None = None) -> dict[str, str]:
    """The ``X-Slack-Request-Timestamp`` and ``X-Slack-Signature`` Slack sends with
    ``body`` (now, unless ``timestamp`` is given: an old one is a replay)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(signing_secret).generate_signature(timestamp=ts, body=body)
    assert signature is not None
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature}


def event_body(event: dict[str, Any], event_id: str) -> str:
    """An Events API ``event_callback`` envelope around ``event`` (JSON, as Slack posts it)."""
    now = int(time.time())
    return json.dumps(
        {
            "token": VERIFICATION_TOKEN,
            "team_id": TEAM_ID,
            "context_team_id": TEAM_ID,
            "api_app_id": APP_ID,
            "event": event,
            "type": "event_callback",
            "event_id": event_id,
            "event_time": now,
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": TEAM_ID,
                    "user_id": BOT_USER_ID,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
            "event_context": f"4-{event_id}",
        }
    )


def thread_message(
    text: str,
    thread_ts: str,
    user: str = STAFF_USER_ID,
    ts: str | None = None,
    channel: str = SUPPORT_CHANNEL,
) -> dict[str, Any]:
    """A ``message`` event: ``user`` replies in the thread of ``thread_ts`` in ``channel``."""
    ts = ts or _incoming_message_ts()
    return {
        "type": "message",
        "channel": channel,
        "user": user,
        "text": text,
        "ts": ts,
        "thread_ts": thread_ts,
        "parent_user_id": BOT_USER_ID,
        "client_msg_id": str(uuid.uuid4()),
        "team": TEAM_ID,
        "event_ts": ts,
        "channel_type": "channel",
    }


def command_body(
    text: str,
    user_id: str = STAFF_USER_ID,
    command: str = "/peakdesk",
    channel_id: str = SUPPORT_CHANNEL,
) -> str:
    """A slash command invocation, form-encoded as Slack posts it."""
    return urlencode(
        {
            "token": VERIFICATION_TOKEN,
            "team_id": TEAM_ID,
            "team_domain": TEAM_DOMAIN,
            "channel_id": channel_id,
            "channel_name": SUPPORT_CHANNEL_NAME if channel_id == SUPPORT_CHANNEL else channel_id,
            "user_id": user_id,
            "user_name": user_id.lower(),
            "command": command,
            "text": text,
            "api_app_id": APP_ID,
            "is_enterprise_install": "false",
            "response_url": RESPONSE_URL,
            "trigger_id": "1000000000.1000000000.0123456789abcdef0123456789abcdef",
        }
    )


def action_body(
    action_id: str,
    value: str,
    user_id: str = STAFF_USER_ID,
    message_ts: str = "1.0",
    channel: str = SUPPORT_CHANNEL,
) -> str:
    """A ``block_actions`` interaction (a button click on a message), form-encoded as
    ``payload=<json>`` as Slack posts it."""
    channel_name = SUPPORT_CHANNEL_NAME if channel == SUPPORT_CHANNEL else channel
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {
            "id": user_id,
            "username": user_id.lower(),
            "name": user_id.lower(),
            "team_id": TEAM_ID,
        },
        "api_app_id": APP_ID,
        "token": VERIFICATION_TOKEN,
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel,
            "is_ephemeral": False,
        },
        "trigger_id": "1000000000.1000000000.fedcba9876543210fedcba9876543210",
        "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel, "name": channel_name},
        "message": {
            "type": "message",
            "subtype": "bot_message",
            "ts": message_ts,
            "text": "Handover requested",
            "bot_id": BOT_ID,
            "user": BOT_USER_ID,
        },
        "state": {"values": {}},
        "response_url": RESPONSE_URL,
        "actions": [
            {
                "action_id": action_id,
                "block_id": "handover",
                "text": {"type": "plain_text", "text": action_id, "emoji": True},
                "value": value,
                "type": "button",
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)})
