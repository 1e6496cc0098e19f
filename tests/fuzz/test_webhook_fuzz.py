"""Fuzzing ``POST /webhook/{gateway}`` (and ``/forget``): hostile bodies signed with the right
secret, wrong, stale and malformed signature headers, odd gateway names, ``wait`` values and
content types.

Documented answers (README, "The webhook contract"): 202 queued, 200 duplicate or answered,
400 invalid (gateway, body, fields, ``wait``), 401 signature, 413 over 64 KiB; 404 for a
path that is no gateway route. Every 4xx is JSON with an ``error``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from adapters.webhook.convert import GATEWAY_NAME
from adapters.webhook.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, Purpose, signature
from tests.conftest import WEBHOOK_SECRET
from tests.fuzz.harness import FUZZ, FuzzStack, assert_clean, no_errors_logged
from tests.fuzz.strategies import (
    bodies,
    dumps,
    either,
    header_values,
    json_values,
    strings,
    texts,
    unicode_texts,
)
from tests.harness import message, sign_afresh

pytestmark = [pytest.mark.fuzz, pytest.mark.asyncio(loop_scope="module")]

STATUSES = {200, 202, 400, 401, 404, 413}
# Headers sent again (a second signature...) or that proxies add. Not the ones HTTP allows
# once (Content-Type...): aiohttp refuses a second one itself (tests/fuzz/test_http_fuzz.py).
HEADERS = [
    TIMESTAMP_HEADER,
    SIGNATURE_HEADER,
    "Content-Encoding",
    "X-Forwarded-For",
    "Authorization",
]
CALLBACK = "http://127.0.0.1:9/cb"


@dataclass(frozen=True)
class Signing:
    """How a request is signed: ``valid`` (now, afresh: each signature is accepted once),
    ``stale`` (an hour ago), ``wrong`` (another secret), ``none``, or ``raw`` (the two headers
    as the given bytes; no timestamp: now)."""

    kind: str
    timestamp: bytes | None = None
    signature: bytes = b""

    def headers(self, body: bytes, purpose: Purpose = "message") -> list[tuple[str, str | bytes]]:
        now = int(time.time())
        if self.kind == "none":
            return []
        if self.kind == "valid":
            return list(sign_afresh(WEBHOOK_SECRET, body, purpose=purpose).items())
        if self.kind == "raw":
            sent = str(now).encode() if self.timestamp is None else self.timestamp
            return [(TIMESTAMP_HEADER, sent), (SIGNATURE_HEADER, self.signature)]
        sent_at = str(now - 3600 if self.kind == "stale" else now)
        secret = "another-secret" if self.kind == "wrong" else WEBHOOK_SECRET
        signed = signature(secret, sent_at, body, purpose)
        return [(TIMESTAMP_HEADER, sent_at), (SIGNATURE_HEADER, signed)]


raw_signings = st.builds(
    Signing,
    st.just("raw"),
    st.one_of(st.none(), header_values, st.integers().map(lambda n: str(n).encode())),
    st.one_of(header_values, header_values.map(lambda v: b"sha256=" + v)),
)
signings = st.one_of(
    st.just(Signing("valid")),
    st.just(Signing("valid")),
    st.sampled_from([Signing("stale"), Signing("wrong"), Signing("none")]),
    raw_signings,
)

# Not the 5000-character strings: a request line over 8190 bytes is refused by aiohttp
# before any route (tests/fuzz/test_http_fuzz.py covers that).
gateways = st.one_of(st.from_regex(GATEWAY_NAME, fullmatch=True), texts)

metadata = st.fixed_dictionaries(
    {},
    optional={
        "vip": either(st.booleans()),
        "order_issue": either(st.booleans()),
        "payment_issue": either(st.booleans()),
        "order_id": either(st.sampled_from(["100158", "A-1"])),
        "product_id": either(strings),
        "locale": either(st.sampled_from(["en", "zh-CN", "x" * 36])),
    },
)

message_texts = st.one_of(
    st.sampled_from(
        [
            "Where is my order 100158?",
            "I was charged twice, cancel my order now!",
            "我要退款",
            "   ",
            "x" * 4001,
        ]
    ),
    strings,
)
callback_urls = st.sampled_from([CALLBACK, "https://gw.example/cb?x=1", "ftp://x", "http://"])
optional_fields = {
    "conversation_id": either(strings),
    "metadata": either(metadata),
}
payloads = st.builds(
    lambda fields, extra: {**extra, **fields},
    st.fixed_dictionaries(
        {},
        optional={
            "message_id": either(st.uuids().map(str)),
            "user_id": either(st.sampled_from(["alice", "bob"])),
            "text": either(message_texts),
            "callback_url": either(callback_urls),
            **optional_fields,
        },
    ),
    st.dictionaries(strings, json_values, max_size=3),
)
# With every required field, of the right type: what reaches the queue.
complete_payloads = st.fixed_dictionaries(
    {
        "message_id": st.uuids().map(str),
        "user_id": st.one_of(st.sampled_from(["alice", "bob"]), unicode_texts.filter(bool)),
        "text": st.one_of(message_texts, unicode_texts, unicode_texts),
        "callback_url": st.sampled_from([CALLBACK, "https://gw.example/cb?x=1"]),
    },
    optional=optional_fields,
)

# No ``wait`` that would hold an accepted message for long: the rest are refused (400).
waits = st.one_of(
    st.none(),
    st.sampled_from(["", "0", "0.01", "-1", "25.1", "nan", "inf", "-inf", "1e309", "0x10", "abc"]),
    texts.filter(lambda value: not _long_wait(value)),
)

content_types = st.one_of(
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-16",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=zzz",
            "application/xml",
        ]
    ),
    header_values,
)


def _long_wait(value: str) -> bool:
    try:
        return 0.05 < float(value) <= 25
    except ValueError:
        return False


def target(gateway: str, wait: str | None, route: str = "") -> str:
    path = "/webhook/" + quote(gateway.encode("utf-8", "surrogatepass"), safe="") + route
    if wait is None:
        return path
    return path + "?wait=" + quote(wait.encode("utf-8", "surrogatepass"), safe="")


@FUZZ
@given(
    gateway=gateways,
    body=bodies(payloads),
    signing=signings,
    wait=waits,
    content_type=st.one_of(st.none(), content_types),
    route=st.sampled_from(["", "", "/forget"]),
)
async def test_no_webhook_request_gets_a_5xx_or_crashes_the_handler(
    stack: FuzzStack,
    caplog: pytest.LogCaptureFixture,
    gateway: str,
    body: bytes,
    signing: Signing,
    wait: str | None,
    content_type: bytes | str | None,
    route: str,
) -> None:
    headers: list[tuple[str, Any]] = signing.headers(body, "forget" if route else "message")
    if content_type is not None:
        headers.append(("Content-Type", content_type))
    with no_errors_logged(caplog):
        answer = await stack.send("POST", target(gateway, wait, route), headers, body)
    event(f"HTTP {answer.status}")
    assert_clean(answer, STATUSES)
    if answer.status in (200, 202):  # accepted only when signed with the secret, now
        assert signing.kind == "valid" and GATEWAY_NAME.fullmatch(gateway), answer
    if signing.kind in ("stale", "wrong", "none") and GATEWAY_NAME.fullmatch(gateway):
        assert answer.status == 401, answer


@FUZZ
@given(payload=st.one_of(payloads, complete_payloads))
async def test_a_signed_payload_is_accepted_or_refused_with_the_field_at_fault(
    stack: FuzzStack, caplog: pytest.LogCaptureFixture, payload: dict[str, Any]
) -> None:
    body = dumps(payload)
    with no_errors_logged(caplog):
        answer = await stack.send("POST", "/webhook/gw", Signing("valid").headers(body), body)
    event(f"HTTP {answer.status}")
    assert_clean(answer, {200, 202, 400, 413})
    if answer.status == 400:
        assert isinstance(answer.json().get("field"), str), answer


@FUZZ
@given(signing=raw_signings, extra=st.lists(st.tuples(st.sampled_from(HEADERS), header_values)))
async def test_no_signature_header_gets_past_or_breaks_the_check(
    stack: FuzzStack,
    caplog: pytest.LogCaptureFixture,
    signing: Signing,
    extra: list[tuple[str, bytes]],
) -> None:
    body = dumps(message("signed?", callback_url=CALLBACK))
    with no_errors_logged(caplog):
        answer = await stack.send("POST", "/webhook/gw", [*signing.headers(body), *extra], body)
    assert_clean(answer, {401})


async def test_the_service_still_takes_messages_after_the_fuzzing(stack: FuzzStack) -> None:
    await stack.still_serves()
    body = dumps(message("after-fuzz", callback_url=CALLBACK))
    answer = await stack.send("POST", "/webhook/gw", Signing("valid").headers(body), body)
    assert answer.status == 202 and answer.json()["status"] == "queued"
