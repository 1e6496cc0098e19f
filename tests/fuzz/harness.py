"""What the fuzz tests share: one peakdesk with every channel, a raw HTTP client, and the
property every answer must have.

How examples run. Each test module starts one :class:`FuzzStack` (a module-scoped fixture on
the module's event loop) and its tests are ``async`` functions decorated with ``@given``:
pytest-asyncio runs every Hypothesis example as one coroutine on that same loop, so the
examples talk to a server that keeps running between them, over real HTTP on 127.0.0.1,
without a service (and its fakes) started per example. Function-scoped fixtures are not reset
between examples; the one used, ``caplog``, is meant to collect across them, and each example
checks only the records it caused (:func:`no_errors_logged`).

Reproducibility: :data:`FUZZ` derandomizes Hypothesis and uses no example database, so every
run (CI, a laptop, a rerun) tries the same inputs: a failure reproduces by running the test
again, and no pull request fails on an input found by chance in someone else's change.
Exploration is opt-in: ``PEAKDESK_FUZZ_EXAMPLES=5000 PEAKDESK_FUZZ_RANDOM=1 pytest tests/fuzz``
draws new inputs each run (Hypothesis prints how to reproduce a failure).

The requests are written byte by byte (:func:`request_bytes`): the fuzz tests lie in
``Content-Length``, chunk bodies, and send header bytes that are not UTF-8, which an HTTP
client library refuses or corrects.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlencode

import fakeredis
import pytest
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.test_utils import TestServer
from aiohttp.web_protocol import RequestPayloadError
from hypothesis import HealthCheck, settings
from redis.asyncio import Redis

from adapters.telegram.ingress import SECRET_HEADER
from adapters.wechat.crypto import SafeMode
from adapters.wechat.crypto import signature as wechat_signature
from bots.runtime import Runtime
from core.keys import Keys
from tests.adapters.telegram.tg_stack import SECRET as TELEGRAM_SECRET
from tests.adapters.wechat.test_wechat_crypto import AES_KEY
from tests.adapters.wechat.test_wechat_crypto import TOKEN as WECHAT_TOKEN
from tests.fakes.slack_api import BOT_TOKEN, SIGNING_SECRET, SUPPORT_CHANNEL, FakeSlackAPI
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.fakes.wechat_api import APP_ID, APP_SECRET
from tests.harness import make_settings

__all__ = [
    "ADMIN_TOKEN",
    "FUZZ",
    "TELEGRAM_SECRET",
    "WECHAT_TOKEN",
    "Answer",
    "FuzzStack",
    "assert_clean",
    "credentials",
    "is_protocol_rejection",
    "no_errors_logged",
    "request_bytes",
    "wechat_fresh",
    "wechat_nonce",
    "wechat_sealed",
    "wechat_target",
]

ADMIN_TOKEN = "admin-fuzz-token-5f0c"
# Every endpoint answers within a few hundred milliseconds; a WeChat text push waits 50 ms.
ANSWER_TIMEOUT_S = 5.0

FUZZ = settings(
    max_examples=int(os.environ.get("PEAKDESK_FUZZ_EXAMPLES", "120")),
    derandomize=os.environ.get("PEAKDESK_FUZZ_RANDOM") != "1",
    database=None,
    deadline=None,  # a loaded 2-core CI machine: timing is not the property
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # caplog collects across examples on purpose
        HealthCheck.too_slow,  # each example is a real HTTP exchange
        HealthCheck.data_too_large,  # oversized inputs are the point
        HealthCheck.large_base_example,
    ],
)


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP answer as it came over the wire (header names in lower case)."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class FuzzStack:
    """``async with FuzzStack() as stack``: peakdesk serving the webhook, Telegram (webhook
    mode), Slack and WeChat (in safe mode) on 127.0.0.1, on the embedded fakeredis.

    Gateway-only (no workers): what is fuzzed is the way in. The fakes of the Slack and
    Telegram APIs answer the calls made at start-up and on the first Slack request. Served
    as ``peakdesk serve`` serves, without an access log: request lines hold whatever the
    fuzzer put in them, and every log line of a test is scanned for customer data.
    """

    def __init__(self, **overrides: Any) -> None:
        self.overrides = {"wechat_aes_key": AES_KEY, **overrides}  # safe mode, unless None
        self._exit = contextlib.AsyncExitStack()
        self.redis: Redis = fakeredis.FakeAsyncRedis(
            server=fakeredis.FakeServer(), decode_responses=True, max_connections=100_000
        )
        self.runtime: Runtime
        self.server: TestServer

    async def __aenter__(self) -> Self:
        slack = await self._exit.enter_async_context(FakeSlackAPI())
        telegram = await self._exit.enter_async_context(FakeTelegramAPI())
        settings = make_settings(
            Keys("fuzz"),
            telegram_bot_token=telegram.token,
            telegram_api_base=telegram.base_url,
            telegram_webhook_secret=TELEGRAM_SECRET,
            slack_bot_token=BOT_TOKEN,
            slack_signing_secret=SIGNING_SECRET,
            slack_support_channel=SUPPORT_CHANNEL,
            slack_api_base=slack.base_url,
            wechat_token=WECHAT_TOKEN,
            wechat_app_id=APP_ID,
            wechat_app_secret=APP_SECRET,
            wechat_api_base="http://127.0.0.1:9",  # never called: no workers, no outbox
            wechat_passive_reply_s=0.05,  # a text push waits this long for its answer
            peakdesk_admin_token=ADMIN_TOKEN,
            **self.overrides,
        )
        self.runtime = Runtime(settings, workers=0, redis=self.redis)
        await self.runtime.start()
        self._exit.push_async_callback(self.runtime.stop)
        self.server = TestServer(self.runtime.app(), host="127.0.0.1", port=0)
        await self.server.start_server(access_log=None)
        self._exit.push_async_callback(self.server.close)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._exit.aclose()
        await self.redis.aclose()

    @property
    def port(self) -> int:
        port = self.server.port
        assert port is not None
        return port

    async def send(
        self,
        method: str,
        target: str,
        headers: Sequence[tuple[str | bytes, str | bytes]] = (),
        body: bytes = b"",
        *,
        chunk_sizes: Sequence[int] | None = None,
    ) -> Answer:
        """One well-framed request (``Content-Length`` added unless given, or chunked)."""
        raw = request_bytes(method, target, headers, body, chunk_sizes=chunk_sizes)
        answer = await self.exchange(raw)
        assert answer is not None, f"no answer to {method} {target}"
        return answer

    async def exchange(
        self, raw: bytes, *, half_close: bool = False, timeout: float = ANSWER_TIMEOUT_S
    ) -> Answer | None:
        """Send ``raw`` and read one answer; None if the server closed without answering.

        ``half_close`` ends our side after sending (EOF on a body that was announced longer).
        No answer within ``timeout`` fails the example: the request hangs.
        """
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(raw)
            await writer.drain()
            if half_close:
                writer.write_eof()
            async with asyncio.timeout(timeout):
                data = await _read_answer(reader)
        except ConnectionResetError:
            data = b""
        except TimeoutError:
            raise AssertionError(f"no answer within {timeout} s: the request hangs") from None
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        return parse_answer(data) if data else None

    @property
    def routes(self) -> list[tuple[str, str]]:
        """``(method, path pattern)`` of every route the app serves."""
        return sorted(
            {
                (route.method, (route.resource.canonical if route.resource else "/"))
                for route in self.server.app.router.routes()
                if route.method != "HEAD"
            }
        )

    async def still_serves(self) -> None:
        """The server is alive and answers the liveness probe."""
        answer = await self.send("GET", "/healthz")
        assert answer.status == 200 and answer.json() == {"status": "ok"}


def credentials(path: str) -> tuple[str, list[tuple[str, str]]]:
    """The target and headers that get a POST to ``path`` as far as reading its body:
    Telegram's secret, WeChat's signature, the admin token (the webhook and Slack read the
    body before they check its signature)."""
    if path == "/telegram/webhook":
        return path, [(SECRET_HEADER, TELEGRAM_SECRET)]
    if path == "/wechat":
        # Safe mode (the stack has an EncodingAESKey): msg_signature is checked once the body
        # is read, as it covers the body's Encrypt field.
        return wechat_target(wechat_fresh(), encrypt_type="aes", msg_signature="0" * 40), []
    if path == "/admin/forget":
        return path, [("Authorization", f"Bearer {ADMIN_TOKEN}")]
    return path, []


_wechat_nonces = itertools.count()


def wechat_nonce() -> str:
    """A nonce no other request of this run has: the stack takes each signed query once."""
    return f"n{next(_wechat_nonces)}"


def wechat_fresh() -> tuple[str, str]:
    """A timestamp of now and an unused nonce."""
    return str(int(time.time())), wechat_nonce()


def wechat_target(signed: tuple[str, str], **extra: str) -> str:
    """``/wechat`` with the signature of ``signed`` (timestamp, nonce) and ``extra``."""
    ts, nonce = signed
    params = {"signature": wechat_signature(WECHAT_TOKEN, ts, nonce), "timestamp": ts}
    return "/wechat?" + urlencode({**params, "nonce": nonce, **extra})


def wechat_sealed(xml: str) -> tuple[str, bytes]:
    """A safe-mode push of ``xml`` as WeChat sends it to the stack: its target and body."""
    signed = wechat_fresh()
    encrypted, msg_signature = SafeMode(WECHAT_TOKEN, AES_KEY, APP_ID).encrypt(xml, *signed)
    target = wechat_target(signed, encrypt_type="aes", msg_signature=msg_signature)
    return target, f"<xml><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>".encode()


def request_bytes(
    method: str,
    target: str,
    headers: Sequence[tuple[str | bytes, str | bytes]] = (),
    body: bytes = b"",
    *,
    chunk_sizes: Sequence[int] | None = None,
) -> bytes:
    """An HTTP/1.1 request with ``Connection: close``, ``headers`` sent as given (lies
    included). Framing: the exact ``Content-Length`` unless ``headers`` has one; with
    ``chunk_sizes``, chunked in pieces of those sizes (the rest in one last chunk)."""
    lines = [f"{method} {target} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close"]
    names = set()
    for name, value in headers:
        name_b = name.encode() if isinstance(name, str) else name
        value_b = value.encode() if isinstance(value, str) else value
        names.add(name_b.lower())
        lines.append(name_b + b": " + value_b)
    if chunk_sizes is not None:
        if b"transfer-encoding" not in names:
            lines.append(b"Transfer-Encoding: chunked")
        payload = _chunked(body, chunk_sizes)
    else:
        if b"content-length" not in names:
            lines.append(b"Content-Length: %d" % len(body))
        payload = body
    return b"\r\n".join(lines) + b"\r\n\r\n" + payload


def _chunked(body: bytes, sizes: Sequence[int]) -> bytes:
    pieces, at = [], 0
    for size in [*sizes, len(body)]:
        piece = body[at : at + max(1, size)]
        if not piece:
            break
        pieces.append(b"%x\r\n%s\r\n" % (len(piece), piece))
        at += len(piece)
    return b"".join(pieces) + b"0\r\n\r\n"


async def _read_answer(reader: asyncio.StreamReader) -> bytes:
    """Until one whole answer is in (or the server closes): after answering, aiohttp may
    linger for seconds reading the rest of a body it refused before it closes."""
    data = b""
    while chunk := await reader.read(65536):
        data += chunk
        if _complete(data):
            break
    return data


def _complete(data: bytes) -> bool:
    while data.startswith(b"HTTP/1.1 1") and b"\r\n\r\n" in data:  # 100 Continue
        data = data.partition(b"\r\n\r\n")[2]
    head, found, body = data.partition(b"\r\n\r\n")
    if not found:
        return False
    headers = head.lower()
    if b"transfer-encoding: chunked" in headers:
        return body.endswith(b"0\r\n\r\n")
    for line in headers.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return len(body) >= int(line.partition(b":")[2])
    return False  # no length: the answer ends when the server closes


def parse_answer(data: bytes) -> Answer:
    while data.startswith(b"HTTP/1.1 1"):  # an interim answer (100 Continue): the next one
        data = data.partition(b"\r\n\r\n")[2]
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _unchunk(body)
    elif "content-length" in headers:
        body = body[: int(headers["content-length"])]
    return Answer(status, headers, body)


def _unchunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2 :]
    return bytes(out)


def is_protocol_rejection(answer: Answer) -> bool:
    """aiohttp's own 400 for a request it refuses as HTTP (bad framing, a header over 8190
    bytes, over 128 headers, a second Content-Type): a plain-text reason, answered before any
    route or middleware."""
    return (
        answer.status == 400
        and answer.headers.get("content-type", "").startswith("text/plain")
        and bool(answer.body.strip())
    )


def assert_clean(answer: Answer | None, allowed: set[int]) -> None:
    """The property of every answer: no 5xx, one of the documented statuses, and any 4xx a
    JSON object with a non-empty ``error`` reason."""
    assert answer is not None, "the server closed the connection without answering"
    assert answer.status < 500, (answer.status, answer.body[:300])
    assert answer.status in allowed, (answer.status, answer.body[:300])
    if answer.status >= 400:
        assert answer.headers.get("content-type", "").startswith("application/json"), answer
        error = answer.json()
        assert isinstance(error, dict), error
        assert isinstance(error.get("error"), str) and error["error"].strip(), error


@contextlib.contextmanager
def no_errors_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail when the block makes the server log an error: ``unhandled error`` (a handler
    raised), a listener of the Slack app failing, anything at ERROR. aiohttp's own log lines
    about requests that are not valid HTTP (see :func:`_protocol_rejection_log`) are not
    errors of ours."""
    start = len(caplog.records)
    yield
    errors = [
        f"{record.name}: {record.getMessage()}"
        for record in caplog.records[start:]
        if record.levelno >= logging.ERROR and not _protocol_rejection_log(record)
    ]
    assert not errors, errors


def _protocol_rejection_log(record: logging.LogRecord) -> bool:
    """aiohttp's own line for a request that is not valid HTTP, also the one it writes when,
    after our 4xx, it drains a body whose Content-Encoding does not decode."""
    if record.name != "aiohttp.server" or record.exc_info is None:
        return False
    error = record.exc_info[1]
    return isinstance(error, HttpProcessingError) or (
        isinstance(error, RequestPayloadError) and isinstance(error.__cause__, HttpProcessingError)
    )
