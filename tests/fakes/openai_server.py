"""A scriptable fake of an OpenAI-compatible chat-completions API, over real HTTP.

It runs in the test's event loop on 127.0.0.1 with a free port, records every request and
answers ``POST /v1/chat/completions``: first from the script (a queue of canned responses,
consumed in order), then with the default behaviour: 200 and ``"Echo: <last user message>"``
(or whatever ``responder`` computes; :func:`echo_prompt` repeats the whole prompt) with
deterministic usage counts::

    async with FakeOpenAI() as fake:
        fake.script(status=429, headers={"retry-after-ms": "10"})
        fake.script(status=500, times=2)
        fake.script(delay=2.0)                       # slow: sleeps before answering
        fake.script(body=b"not json")                # malformed 200
        fake.script(status=429, error_code="insufficient_quota")
        fake.script(disconnect=True)                 # drops the connection, no response
        fake.down(status=503)                        # every request fails until fake.up()
        client = HolySheepClient(api_key="sk-test", base_url=fake.base_url)
        ...
        assert fake.calls == 6 and fake.requests[0].json["model"] == "deepseek-v3.2"
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

# What a responder may return: the answer text, or a whole completion body to send as is.
Responder = Callable[[dict[str, Any]], "str | dict[str, Any] | Awaitable[str | dict[str, Any]]"]


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the fake saw it. ``at`` is ``time.monotonic()`` on arrival."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any
    at: float


@dataclass(slots=True)
class ScriptedResponse:
    """One canned answer; see :meth:`FakeOpenAI.script`."""

    status: int = 200
    json: Any = None
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    disconnect: bool = False
    error_code: str | None = None
    error_type: str | None = None
    error_message: str | None = None


def completion_body(
    content: str | None = "ok",
    *,
    model: str = "deepseek-v3.2",
    tool_calls: list[dict[str, Any]] | None = None,
    finish_reason: str | None = None,
    prompt_tokens: int = 10,
    completion_tokens: int = 5,
    cached_tokens: int = 0,
    usage_style: str = "deepseek",
) -> dict[str, Any]:
    """A chat-completion JSON body as a provider sends it.

    ``usage_style`` is "deepseek" (``prompt_cache_hit/miss_tokens``), "openai"
    (``prompt_tokens_details.cached_tokens``) or "none" (no usage object).
    """
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls is not None:
        message["tool_calls"] = tool_calls
    if finish_reason is None:
        finish_reason = "tool_calls" if tool_calls else "stop"
    body: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
    }
    usage: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if usage_style == "deepseek":
        usage["prompt_cache_hit_tokens"] = cached_tokens
        usage["prompt_cache_miss_tokens"] = prompt_tokens - cached_tokens
    elif usage_style == "openai":
        usage["prompt_tokens_details"] = {"cached_tokens": cached_tokens}
    if usage_style != "none":
        body["usage"] = usage
    return body


def echo_prompt(payload: dict[str, Any]) -> str:
    """A responder that answers with everything it was sent: each message's role and content,
    tool results included (``FakeOpenAI(responder=echo_prompt)``). A model that repeats its
    whole prompt shows in the answer whatever reached the prompt."""
    return "\n".join(
        f"{m.get('role')}: {m.get('content')}"
        for m in payload.get("messages") or []
        if isinstance(m, dict)
    )


def _words(text: Any) -> int:
    return len(text.split()) if isinstance(text, str) else 0


class FakeOpenAI:
    """A fake OpenAI-compatible server; ``base_url`` ends in ``/v1``.

    ``latency`` delays every default answer; ``cached_tokens`` and ``usage_style`` shape the
    default usage; ``api_key``, when set, makes requests without ``Bearer <api_key>`` get 401.
    """

    def __init__(
        self,
        *,
        latency: float = 0.0,
        responder: Responder | None = None,
        cached_tokens: int = 0,
        usage_style: str = "deepseek",
        api_key: str | None = None,
    ) -> None:
        self.latency = latency
        self.responder = responder
        self.cached_tokens = cached_tokens
        self.usage_style = usage_style
        self.api_key = api_key
        self.requests: list[RecordedRequest] = []
        self._script: deque[ScriptedResponse] = deque()
        self._down: ScriptedResponse | None = None
        self._closing = asyncio.Event()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        self._server = TestServer(app, host="127.0.0.1", port=0)
        self._started = False

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self._closing.clear()
        await self._server.start_server()
        self._started = True

    async def close(self) -> None:
        """Stop at once: slow (delayed) answers in flight are abandoned."""
        self._closing.set()
        if self._started:
            await self._server.close()
            self._started = False

    async def __aenter__(self) -> FakeOpenAI:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        return str(self._server.make_url("/v1"))

    @property
    def calls(self) -> int:
        return len(self.requests)

    # -- scripting ------------------------------------------------------------------------

    def script(
        self,
        *,
        status: int = 200,
        json: Any = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
        disconnect: bool = False,
        error_code: str | None = None,
        error_type: str | None = None,
        error_message: str | None = None,
        times: int = 1,
    ) -> None:
        """Queue ``times`` copies of one answer.

        ``body`` (raw bytes) wins over ``json``; with neither, a 2xx gets the default answer and
        any other status an ``{"error": {"message", "type", "param", "code"}}`` body built from
        the ``error_*`` arguments. ``delay`` sleeps before answering; ``disconnect`` closes
        the connection without answering.
        """
        response = ScriptedResponse(
            status=status,
            json=json,
            body=body,
            headers=dict(headers or {}),
            delay=delay,
            disconnect=disconnect,
            error_code=error_code,
            error_type=error_type,
            error_message=error_message,
        )
        self._script.extend(response for _ in range(times))

    def down(
        self, *, status: int = 503, disconnect: bool = False, error_code: str | None = None
    ) -> None:
        """An outage: every request is answered with ``status`` (or its connection dropped)
        until :meth:`up`, before the script and the default answer."""
        self._down = ScriptedResponse(status=status, disconnect=disconnect, error_code=error_code)

    def up(self) -> None:
        """The outage is over: the script and the default answer again."""
        self._down = None

    @property
    def scripted_left(self) -> int:
        return len(self._script)

    # -- serving --------------------------------------------------------------------------

    async def _pause(self, seconds: float) -> None:
        if seconds > 0:
            # Wakes early when the fake closes, so a test never waits on an abandoned answer.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), seconds)

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            payload: Any = json.loads(raw)
        except ValueError:
            payload = None
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                headers=dict(request.headers),
                body=raw,
                json=payload,
                at=time.monotonic(),
            )
        )
        scripted = self._down or (self._script.popleft() if self._script else None)
        if scripted is None:
            return await self._default_answer(request, payload)
        await self._pause(scripted.delay)
        if scripted.disconnect:
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=500)  # never reaches the client
        if scripted.body is not None:
            return web.Response(
                status=scripted.status, body=scripted.body, headers=scripted.headers
            )
        data = scripted.json
        if data is None:
            if 200 <= scripted.status < 300:
                return await self._default_answer(request, payload, scripted.headers)
            data = {
                "error": {
                    "message": scripted.error_message or f"fake error {scripted.status}",
                    "type": scripted.error_type,
                    "param": None,
                    "code": scripted.error_code,
                }
            }
        return web.json_response(data, status=scripted.status, headers=scripted.headers)

    async def _default_answer(
        self,
        request: web.Request,
        payload: Any,
        headers: Mapping[str, str] | None = None,
    ) -> web.StreamResponse:
        if self.api_key is not None and request.headers.get("Authorization") != (
            f"Bearer {self.api_key}"
        ):
            error = {"message": "Incorrect API key provided", "type": "invalid_request_error"}
            error["code"] = "invalid_api_key"
            return web.json_response({"error": error}, status=401)
        if not isinstance(payload, dict) or not isinstance(payload.get("messages"), list):
            error = {"message": "body must be JSON with messages", "type": "invalid_request_error"}
            return web.json_response({"error": error}, status=400)
        await self._pause(self.latency)
        messages = [m for m in payload["messages"] if isinstance(m, dict)]
        if self.responder is not None:
            answer = self.responder(payload)
            if inspect.isawaitable(answer):
                answer = await answer
            if isinstance(answer, dict):
                return web.json_response(answer, headers=headers)
            content = answer
        else:
            last_user = next((m for m in reversed(messages) if m.get("role") == "user"), {})
            content = f"Echo: {last_user.get('content', '')}"
        prompt_tokens = sum(_words(m.get("content")) for m in messages) + 3 * len(messages)
        body = completion_body(
            content,
            model=str(payload.get("model", "")),
            prompt_tokens=prompt_tokens,
            completion_tokens=_words(content),
            cached_tokens=min(self.cached_tokens, prompt_tokens),
            usage_style=self.usage_style,
        )
        return web.json_response(body, headers=headers)
