"""Fuzzing what every route shares, the HTTP layer: any method on any path and query; framing
lies on every POST route (a Content-Length shorter or longer than the body, chunked bodies
in any pieces, malformed chunks, Content-Length and chunked together, a Content-Length that
is no number); Content-Encodings that do not decode and gzip bombs; many, long and non-UTF-8
headers; a body that never arrives; ``POST /admin/forget``.

Two answers come from aiohttp itself, before any route or middleware, as plain text: a 400
for what is not valid HTTP (:func:`is_protocol_rejection`) and a 417 for an ``Expect`` other
than ``100-continue``. Both are clear 4xx with a reason; they are not JSON (bots/http.py's
middleware never sees them).
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
from typing import Any
from urllib.parse import quote_from_bytes

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from adapters.telegram.ingress import SECRET_HEADER
from tests.fuzz.harness import (
    ADMIN_TOKEN,
    FUZZ,
    TELEGRAM_SECRET,
    Answer,
    FuzzStack,
    assert_clean,
    credentials,
    is_protocol_rejection,
    no_errors_logged,
    request_bytes,
)
from tests.fuzz.strategies import dumps, header_values, texts
from tests.fuzz.test_webhook_fuzz import CALLBACK, Signing
from tests.harness import message

pytestmark = [pytest.mark.fuzz, pytest.mark.asyncio(loop_scope="module")]

METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "PROPFIND"]
POSTS = [
    "/webhook/gw",
    "/webhook/gw/forget",
    "/telegram/webhook",
    "/slack/events",
    "/slack/commands",
    "/slack/interactivity",
    "/wechat",
    "/admin/forget",
]
_ids = itertools.count()


def assert_answer(answer: Answer | None, *, aiohttp_may_refuse: bool = False) -> None:
    """No 5xx; every 4xx a JSON reason, or (when allowed) aiohttp's plain-text refusal."""
    assert answer is not None, "the server closed the connection without answering"
    assert answer.status < 500, answer
    if aiohttp_may_refuse and (is_protocol_rejection(answer) or answer.status == 417):
        assert answer.body.strip(), answer
        return
    assert_clean(answer, set(range(200, 500)))


ROUTES = [
    "/healthz",
    "/readyz",
    "/metrics",
    "/wechat",
    *POSTS,
    "/webhook/{gateway}",  # the route's own pattern, literally
    "/",
    "/webhook",
    "/x",
]
paths = st.builds(
    lambda route, suffix: route + suffix,
    st.sampled_from(ROUTES),
    st.one_of(
        st.just(""),
        st.sampled_from(["/", "/forget", "/..", "//", "/%2e%2e", "/%00"]),
        texts.map(lambda t: "/" + quote_from_bytes(t.encode("utf-8", "surrogatepass"), safe="")),
    ),
)
queries = st.one_of(
    st.just(""),
    st.lists(st.tuples(texts, texts), max_size=4).map(
        lambda pairs: (
            "?"
            + "&".join(
                quote_from_bytes(k.encode("utf-8", "surrogatepass"), safe="")
                + "="
                + quote_from_bytes(v.encode("utf-8", "surrogatepass"), safe="")
                for k, v in pairs
            )
        )
    ),
    st.sampled_from(["?", "?&&", "?a", "?a=1&a=2", "?wait=1e999", "?%zz", "?%ff%fe=%ed%a0%80"]),
)


@FUZZ
@given(
    method=st.sampled_from(METHODS),
    path=paths,
    query=queries,
    body=st.one_of(st.just(b""), st.binary(max_size=64)),
)
async def test_any_method_path_and_query_is_answered_without_a_5xx(
    stack: FuzzStack,
    caplog: pytest.LogCaptureFixture,
    method: str,
    path: str,
    query: str,
    body: bytes,
) -> None:
    with no_errors_logged(caplog):
        answer = await stack.send(method, path + query, (), body)
    event(f"{method} HTTP {answer.status}")
    if method == "HEAD":  # no body: the status is all there is
        assert answer.status < 500
    else:
        assert_answer(answer)


framings = st.sampled_from(
    ["exact", "chunked", "short", "long", "bad-chunk", "cl-and-te", "cl-junk", "te-junk"]
)


def frame(
    target: str, headers: list[tuple[str, Any]], body: bytes, framing: str, k: int, sizes: list[int]
) -> tuple[bytes, bool]:
    """The raw request, and whether our side closes after sending (a body announced longer
    than sent: the server sees EOF in the middle of it)."""
    if framing == "chunked":
        return request_bytes("POST", target, headers, body, chunk_sizes=sizes), False
    if framing == "short":
        return request_bytes(
            "POST", target, [*headers, ("Content-Length", str(max(0, len(body) - k)))], body
        ), False
    if framing == "long":
        return request_bytes(
            "POST", target, [*headers, ("Content-Length", str(len(body) + k))], body
        ), True
    if framing == "bad-chunk":
        raw = request_bytes("POST", target, [*headers, ("Transfer-Encoding", "chunked")], b"")
        return raw + b"%x\r\n" % len(body) + body + b"\r\nzz\r\n", True
    if framing == "cl-and-te":
        with_length = [*headers, ("Content-Length", str(len(body)))]
        return request_bytes("POST", target, with_length, body, chunk_sizes=sizes), False
    if framing == "cl-junk":
        junk = ["abc", "-1", "1e3", " 5", "0x10", "99999999999999999999999", "1, 1", "+3"][k % 8]
        return request_bytes("POST", target, [*headers, ("Content-Length", junk)], body), True
    if framing == "te-junk":
        coding = ["gzip", "chunked, chunked", "identity", "x", "chunked;q=1", "gzip, chunked"][
            k % 6
        ]
        raw = request_bytes("POST", target, [*headers, ("Transfer-Encoding", coding)], b"")
        return raw + body, True
    return request_bytes("POST", target, headers, body), False


@FUZZ
@given(
    path=st.sampled_from(POSTS),
    body=st.one_of(st.binary(max_size=300), st.builds(lambda: dumps(message(next(_ids))))),
    framing=framings,
    k=st.integers(1, 64),
    sizes=st.lists(st.integers(1, 50), max_size=6),
)
async def test_framing_lies_get_a_clear_4xx_or_no_answer_never_a_5xx(
    stack: FuzzStack,
    caplog: pytest.LogCaptureFixture,
    path: str,
    body: bytes,
    framing: str,
    k: int,
    sizes: list[int],
) -> None:
    target, headers = credentials(path)
    raw, half_close = frame(target, headers, body, framing, k, sizes)
    with no_errors_logged(caplog):
        answer = await stack.exchange(raw, half_close=half_close)
    event(f"{framing} HTTP {answer.status if answer else None}")
    if answer is None:  # we closed mid-body: there is no one to answer
        assert half_close
        return
    # A short Content-Length leaves bytes after the request: aiohttp refuses those.
    assert_answer(answer, aiohttp_may_refuse=framing not in ("exact", "chunked"))
    if framing in ("exact", "chunked"):  # valid framing: the route answered
        assert not is_protocol_rejection(answer), answer


BOMB = gzip.compress(b"0" * 20_000_000)  # 20 MB of zeros in 20 KB


def encoded(kind: str, raw: bytes) -> bytes:
    """A body by name (so that a failing example does not print 20 KB of bomb)."""
    if kind == "gzip":
        return gzip.compress(raw)
    if kind == "truncated-gzip":
        return gzip.compress(raw)[:-4]
    if kind == "bomb":
        return BOMB
    return raw


@FUZZ
@given(
    path=st.sampled_from([p for p in POSTS if p != "/telegram/webhook"]),
    encoding=st.sampled_from(["gzip", "deflate", "br", "identity", "x-unknown", "gzip, deflate"]),
    kind=st.sampled_from(["raw", "gzip", "truncated-gzip", "bomb"]),
    raw=st.binary(max_size=100),
)
async def test_content_encodings_that_do_not_decode_are_a_4xx(
    stack: FuzzStack,
    caplog: pytest.LogCaptureFixture,
    path: str,
    encoding: str,
    kind: str,
    raw: bytes,
) -> None:
    body = encoded(kind, raw)
    target, sent = credentials(path)
    headers: list[tuple[str, str | bytes]] = [*sent, ("Content-Encoding", encoding)]
    if path.startswith("/webhook"):
        headers += Signing("valid").headers(body)
    with no_errors_logged(caplog):
        answer = await stack.send("POST", target, headers, body)
    event(f"{encoding} {kind} HTTP {answer.status}")
    assert_answer(answer, aiohttp_may_refuse=True)  # brotli is not installed: aiohttp's 400
    if kind == "bomb" and encoding == "gzip":  # never decompressed past the limit
        assert answer.status in (401, 413) or is_protocol_rejection(answer), answer


async def test_a_telegram_body_that_does_not_decode_is_a_400(
    stack: FuzzStack, caplog: pytest.LogCaptureFixture
) -> None:
    headers = [(SECRET_HEADER, TELEGRAM_SECRET), ("Content-Encoding", "gzip")]
    with no_errors_logged(caplog):
        answer = await stack.send("POST", "/telegram/webhook", headers, b"not gzip")
    assert_clean(answer, {400})


header_names = st.one_of(
    st.sampled_from(
        [
            "X-Peakdesk-Signature",
            "X-Slack-Signature",
            SECRET_HEADER,
            "Authorization",
            "Expect",
            "Accept",
            "Cookie",
            "X-Forwarded-For",
            "Connection",
            "Upgrade",
            "Content-Type",
        ]
    ),
    st.text(
        st.sampled_from("abcdefghijklmnopqrstuvwxyzABCXYZ0123456789-_"), min_size=1, max_size=20
    ),
)
long_values = st.builds(lambda n, b: b * n, st.integers(0, 9000), st.sampled_from([b"a", b"\xff"]))


@FUZZ
@given(
    path=st.sampled_from(POSTS),
    headers=st.lists(
        st.tuples(header_names, st.one_of(header_values, header_values, long_values)), max_size=8
    ),
    many=st.sampled_from([0, 0, 0, 120, 140]),
)
async def test_many_long_and_odd_headers_get_a_clear_4xx_never_a_5xx(
    stack: FuzzStack,
    caplog: pytest.LogCaptureFixture,
    path: str,
    headers: list[tuple[str, bytes]],
    many: int,
) -> None:
    target, sent = credentials(path)
    padding = [(f"X-Pad-{i}", "1") for i in range(many)]
    with no_errors_logged(caplog):
        answer = await stack.send("POST", target, [*sent, *headers, *padding], b"{}")
    event(f"HTTP {answer.status}")
    assert_answer(answer, aiohttp_may_refuse=True)
    if many > 128 or any(len(value) > 8190 for _, value in headers):
        assert is_protocol_rejection(answer), answer  # aiohttp's header limits hold


@FUZZ
@given(sizes=st.lists(st.integers(1, 700), min_size=1, max_size=12))
async def test_a_message_in_any_chunks_is_read_whole(
    stack: FuzzStack, caplog: pytest.LogCaptureFixture, sizes: list[int]
) -> None:
    body = dumps(
        message(f"chunked-{next(_ids)}", "where is my parcel? " * 100, callback_url=CALLBACK)
    )
    with no_errors_logged(caplog):
        answer = await stack.send(
            "POST", "/webhook/gw", Signing("valid").headers(body), body, chunk_sizes=sizes
        )
    assert answer.status == 202, answer


async def test_a_body_that_never_arrives_holds_up_no_other_request(stack: FuzzStack) -> None:
    # Announced 1000 bytes, sent 3, connection left open: a slow or stalled client.
    stalled = [await asyncio.open_connection("127.0.0.1", stack.port) for _ in range(20)]
    try:
        for _, writer in stalled:
            writer.write(request_bytes("POST", "/webhook/gw", [("Content-Length", "1000")], b"{"))
            await writer.drain()
        await stack.still_serves()
        body = dumps(message(f"meanwhile-{next(_ids)}", callback_url=CALLBACK))
        answer = await stack.send("POST", "/webhook/gw", Signing("valid").headers(body), body)
        assert answer.status == 202, answer
    finally:
        for _, writer in stalled:
            writer.close()
            await writer.wait_closed()


@FUZZ
@given(
    authorization=st.one_of(
        st.just(f"Bearer {ADMIN_TOKEN}".encode()),
        st.just(f"Bearer {ADMIN_TOKEN}".encode()),
        header_values,
        header_values.map(lambda v: b"Bearer " + v),
    ),
    body=st.one_of(
        st.fixed_dictionaries(
            {},
            optional={
                "channel": st.one_of(st.sampled_from(["telegram", "webhook", "wechat"]), texts),
                "conversation_id": texts,
                "account": texts,
            },
        ).map(dumps),
        st.binary(max_size=100),
        st.just(b"x" * 5000),  # over the 4 KiB limit
    ),
)
async def test_admin_forget_refuses_without_the_token_and_never_gets_a_5xx(
    stack: FuzzStack, caplog: pytest.LogCaptureFixture, authorization: bytes, body: bytes
) -> None:
    headers = [("Authorization", authorization)]
    with no_errors_logged(caplog):
        answer = await stack.send("POST", "/admin/forget", headers, body)
    event(f"HTTP {answer.status}")
    assert_clean(answer, {200, 400, 401, 413})
    if authorization != f"Bearer {ADMIN_TOKEN}".encode():
        assert answer.status == 401, answer


async def test_the_routes_fuzzed_are_the_routes_served(stack: FuzzStack) -> None:
    served = {path.replace("{gateway}", "gw") for _, path in stack.routes}
    assert served <= set(ROUTES), served - set(ROUTES)  # a new route: fuzz it here too


async def test_an_expect_header_that_is_not_utf8_gets_a_json_417_not_a_500(
    stack: FuzzStack, caplog: pytest.LogCaptureFixture
) -> None:
    # aiohttp's own Expect handler quoted the value in its error text: 500 for b"\x80".
    with no_errors_logged(caplog):
        odd = await stack.send("POST", "/webhook/gw", [("Expect", b"\x80")], b"{}")
        unknown = await stack.send("POST", "/webhook/gw", [("Expect", b"fly-away")], b"{}")
    for answer in (odd, unknown):
        assert answer.status == 417, answer
        assert json.loads(answer.body)["error"]
