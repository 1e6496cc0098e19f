"""Size limits wherever input enters: each route's body limit (with an honest, a lying and no
Content-Length), the limits of the texts inside a body that fits, header and request-line
sizes, and thousands of items inside a body that fits.

The limits (README and the ingress modules): the webhook and its ``/forget``, Slack and WeChat
64 KiB; Telegram 1 MiB (an update can carry a whole replied-to message), with a text or
caption of at most 4096 characters, as Telegram itself allows; ``/admin/forget`` 4 KiB. A
webhook text has 1-4000 characters; a WeChat ``Content`` is cut to 4000; WeChat ids have at
most 128 characters. aiohttp refuses header lines over 8190 bytes, more than 128 headers and
request lines over 8190 bytes with its own plain-text 400.
"""

from __future__ import annotations

import json

import pytest

from adapters.telegram.ingress import SECRET_HEADER
from tests.fakes.telegram_api import UpdateFactory
from tests.fuzz.harness import (
    TELEGRAM_SECRET,
    Answer,
    FuzzStack,
    assert_clean,
    credentials,
    is_protocol_rejection,
    no_errors_logged,
    request_bytes,
    wechat_sealed,
)
from tests.fuzz.strategies import dumps
from tests.fuzz.test_webhook_fuzz import CALLBACK, Signing
from tests.harness import message

pytestmark = [pytest.mark.fuzz, pytest.mark.asyncio(loop_scope="module")]

KIB = 1024
LIMITS = {
    "/webhook/gw": 64 * KIB,
    "/webhook/gw/forget": 64 * KIB,
    "/telegram/webhook": 1024 * KIB,
    "/slack/events": 64 * KIB,
    "/slack/commands": 64 * KIB,
    "/slack/interactivity": 64 * KIB,
    "/wechat": 64 * KIB,
    "/admin/forget": 4 * KIB,
}


def assert_too_large(answer: Answer | None, limit: int) -> None:
    assert_clean(answer, {413})
    assert answer is not None and str(limit) in answer.json()["error"]


@pytest.mark.parametrize("path", list(LIMITS))
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_a_body_one_byte_over_the_limit_is_413_with_the_limit(
    stack: FuzzStack, caplog: pytest.LogCaptureFixture, path: str, framing: str
) -> None:
    target, headers = credentials(path)
    body = b"x" * (LIMITS[path] + 1)
    chunks = [8 * KIB] * 200 if framing == "chunked" else None  # no Content-Length at all
    with no_errors_logged(caplog):
        answer = await stack.send("POST", target, headers, body, chunk_sizes=chunks)
    assert_too_large(answer, LIMITS[path])


@pytest.mark.parametrize("path", [p for p in LIMITS if p != "/admin/forget"])
async def test_a_content_length_over_the_limit_is_413_before_any_body_is_read(
    stack: FuzzStack, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    target, headers = credentials(path)
    announced = [*headers, ("Content-Length", str(10**12))]  # and only 2 bytes sent
    with no_errors_logged(caplog):
        answer = await stack.exchange(request_bytes("POST", target, announced, b"{}"))
    assert_too_large(answer, LIMITS[path])


async def test_a_webhook_body_of_exactly_the_limit_is_accepted(stack: FuzzStack) -> None:
    text = json.dumps(message("at-the-limit", callback_url=CALLBACK)).encode()
    body = text[:-1] + b" " * (LIMITS["/webhook/gw"] - len(text)) + b"}"
    assert len(body) == LIMITS["/webhook/gw"]
    answer = await stack.send("POST", "/webhook/gw", Signing("valid").headers(body), body)
    assert answer.status == 202, answer


@pytest.mark.parametrize(
    ("text", "status"),
    [("x" * 4000, 202), ("x" * 4001, 400), ("x" * 60_000, 400), ("x" * 1_000_000, 413)],
)
async def test_a_webhook_text_has_at_most_4000_characters(
    stack: FuzzStack, text: str, status: int
) -> None:
    body = dumps(message(f"text-{len(text)}", text, callback_url=CALLBACK))
    answer = await stack.send("POST", "/webhook/gw", Signing("valid").headers(body), body)
    assert_clean(answer, {status})
    if status == 400:
        assert answer.json()["field"] == "text"


@pytest.mark.parametrize(
    ("length", "status"), [(4096, 200), (4097, 400), (1_000_000, 400), (1_048_577, 413)]
)
async def test_a_telegram_text_has_at_most_4096_characters_inside_a_body_that_fits(
    stack: FuzzStack, caplog: pytest.LogCaptureFixture, length: int, status: int
) -> None:
    update = UpdateFactory(next_update_id=length, next_message_id=length).text(7, "x" * length)
    headers = [(SECRET_HEADER, TELEGRAM_SECRET)]
    with no_errors_logged(caplog):
        answer = await stack.send("POST", "/telegram/webhook", headers, dumps(update))
    assert_clean(answer, {status})


async def test_a_wechat_text_is_cut_to_4000_characters_and_long_ids_are_refused(
    stack: FuzzStack,
) -> None:
    def push(content: str, msg_id: str = "7", openid: str = "oSize") -> str:
        return (
            f"<xml><ToUserName>gh</ToUserName><FromUserName>{openid}</FromUserName>"
            f"<MsgType>text</MsgType><Content>{content}</Content><MsgId>{msg_id}</MsgId></xml>"
        )

    # Sealed (safe mode), 40 000 characters still fit in 64 KiB of base64.
    target, body = wechat_sealed(push("x" * 40_000))
    answer = await stack.send("POST", target, (), body)
    assert answer.status == 200, answer
    queued = await stack.runtime.queue.read("size-test", 100)
    assert [len(e.message.text) for e in queued if e.message.channel == "wechat"] == [4000]
    for too_long in (push("hi", msg_id="9" * 129), push("hi", openid="o" * 129)):
        target, body = wechat_sealed(too_long)
        assert_clean(await stack.send("POST", target, (), body), {400})


async def test_an_admin_forget_body_over_4_kib_is_413(stack: FuzzStack) -> None:
    body = dumps({"channel": "webhook", "conversation_id": "c" * 5000, "account": "gw"})
    answer = await stack.send("POST", *credentials("/admin/forget"), body)
    assert_too_large(answer, LIMITS["/admin/forget"])


@pytest.mark.parametrize(
    "request_line_or_headers",
    [
        "header over 8190 bytes",
        "129 headers",
        "request line over 8190 bytes",
    ],
)
async def test_headers_and_request_lines_over_aiohttps_limits_are_a_plain_400(
    stack: FuzzStack, caplog: pytest.LogCaptureFixture, request_line_or_headers: str
) -> None:
    target, headers = "/webhook/gw", [("X-Long", "a" * 8191)]
    if request_line_or_headers == "129 headers":
        headers = [(f"X-Pad-{i}", "1") for i in range(129)]
    elif request_line_or_headers == "request line over 8190 bytes":
        target, headers = "/webhook/gw?pad=" + "a" * 8200, []
    with no_errors_logged(caplog):
        answer = await stack.send("POST", target, headers, b"{}")
    assert is_protocol_rejection(answer), answer


async def test_thousands_of_items_inside_a_body_that_fits_are_handled(
    stack: FuzzStack, caplog: pytest.LogCaptureFixture
) -> None:
    # The byte limits bound the number of items too: none of these takes long to refuse
    # or accept (each request must answer within the harness's 5 s).
    many_keys = dumps(
        {**message("many", callback_url=CALLBACK), **{str(i): i for i in range(4000)}}
    )
    entity = {"type": "text_mention", "offset": 0, "length": 1, "user": {"id": 1}}
    many_entities = UpdateFactory(next_update_id=5).text(9, "hi", entities=[entity] * 10_000)
    form = "&".join(f"f{i}=v" for i in range(6000)).encode()
    with no_errors_logged(caplog):
        answers = [
            await stack.send("POST", "/webhook/gw", Signing("valid").headers(many_keys), many_keys),
            await stack.send("POST", *credentials("/telegram/webhook"), dumps(many_entities)),
            await stack.send(
                "POST",
                "/slack/commands",
                [("Content-Type", "application/x-www-form-urlencoded")],
                form,
            ),
        ]
    assert [a.status for a in answers] == [202, 200, 401]
