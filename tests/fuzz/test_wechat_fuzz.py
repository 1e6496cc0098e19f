"""Fuzzing ``GET`` and ``POST /wechat``: signature query parameters (right, wrong, missing,
not ASCII, not UTF-8), push envelopes with hostile fields, hostile XML (billion laughs, XXE,
DTDs, deep nesting, foreign and broken encodings, thousands of fields) and safe mode (good
and bad ciphertexts, wrong accounts, wrong ``msg_signature``).

Documented answers (README, "WeChat Official Account"): the URL check echoes ``echostr`` for a
valid signature, else 401; a push is answered 200 (``success`` or the passive XML reply),
401 for a wrong, stale or reused signature, 400 for anything but WeChat's XML envelope (no
DTDs, entity expansion or external entities), 413 over 64 KiB; in safe mode (an
EncodingAESKey, the stack's) a plain push is 401 whatever its body.

Each signed query is taken once: every example's nonce ends with one of its own
(:attr:`Signed.nonce`), so that a valid example still reaches the parser.
Plain pushes are fuzzed on a second stack without an EncodingAESKey.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote_from_bytes

import pytest
import pytest_asyncio
from hypothesis import event, given
from hypothesis import strategies as st

from adapters.wechat.crypto import SafeMode, signature
from adapters.wechat.messages import parse
from tests.adapters.wechat.test_wechat_crypto import AES_KEY
from tests.fakes.wechat_api import APP_ID
from tests.fuzz.harness import (
    FUZZ,
    WECHAT_TOKEN,
    Answer,
    FuzzStack,
    assert_clean,
    no_errors_logged,
    wechat_fresh,
    wechat_nonce,
    wechat_sealed,
    wechat_target,
)
from tests.fuzz.strategies import header_values, nasty_strings, strings, texts

pytestmark = [pytest.mark.fuzz, pytest.mark.asyncio(loop_scope="module")]

STATUSES = {200, 400, 401, 413}
SAFE_MODE = SafeMode(WECHAT_TOKEN, AES_KEY, APP_ID)
OTHER_ACCOUNT = SafeMode(WECHAT_TOKEN, AES_KEY, "wx0000000000000000")


def utf8(value: str) -> bytes:
    return value.encode("utf-8", "surrogatepass")


def query(params: Mapping[str, str | bytes]) -> str:
    """A query string of percent-encoded values (bytes need not be UTF-8)."""
    return "&".join(
        f"{name}={quote_from_bytes(utf8(v) if isinstance(v, str) else v, safe='')}"
        for name, v in params.items()
    )


@dataclass(frozen=True)
class Signed:
    """The signature parameters: ``valid`` (of the drawn timestamp and nonce), ``stale`` (as
    valid, of a timestamp outside the window), ``wrong``, ``missing``, or ``raw`` (the given
    bytes as the signature)."""

    kind: str
    timestamp: bytes
    drawn_nonce: bytes
    raw: bytes = b""
    # The service takes each signed query once: every example's nonce ends with its own.
    unique: bytes = field(default_factory=lambda: wechat_nonce().encode())

    @property
    def nonce(self) -> bytes:
        return self.drawn_nonce + self.unique

    @property
    def parts(self) -> tuple[str, str]:
        """The timestamp and nonce as text, as they are signed."""
        return (
            self.timestamp.decode("utf-8", "surrogateescape"),
            self.nonce.decode("utf-8", "surrogateescape"),
        )

    def params(self, *extra: str) -> dict[str, bytes]:
        if self.kind == "missing":
            return {"timestamp": self.timestamp, "nonce": self.nonce}
        if self.kind == "raw":
            given = self.raw
        else:
            given = signature(WECHAT_TOKEN, *self.parts, *extra).encode()
            if self.kind == "wrong":
                given = given[:-1] + (b"0" if given[-1:] != b"0" else b"1")
        return {"signature": given, "timestamp": self.timestamp, "nonce": self.nonce}


now = st.builds(lambda: str(int(time.time())).encode())
# Outside the 300 s window, either way, by at least a second and up to a year.
stale_times = st.builds(
    lambda skew: str(int(time.time()) + skew).encode(),
    st.one_of(st.integers(-(10**8), -302), st.integers(302, 10**8)),
)
nonces = st.one_of(st.just(b"nonce42"), st.text(min_size=1, max_size=20).map(utf8))
valid = st.builds(Signed, st.just("valid"), now, nonces)
signed = st.one_of(
    valid,
    valid,
    valid,
    st.builds(Signed, st.just("stale"), stale_times, nonces),
    st.builds(
        Signed,
        st.sampled_from(["wrong", "missing"]),
        st.one_of(now, header_values),
        st.one_of(nonces, st.just(b"")),
    ),
    st.builds(
        Signed,
        st.just("raw"),
        st.one_of(now, header_values),
        st.one_of(nonces, header_values),
        st.one_of(header_values, texts.map(utf8)),
    ),
)

FIELDS = ["ToUserName", "FromUserName", "CreateTime", "MsgType", "Content", "MsgId", "Event"]


def envelope(fields: dict[str, str], cdata: bool) -> bytes:
    def value(text: str) -> str:
        if cdata:
            return "<![CDATA[" + text + "]]>"
        return text.replace("&", "&amp;").replace("<", "&lt;")

    inner = "".join(f"<{name}>{value(text)}</{name}>" for name, text in fields.items())
    return utf8("<xml>" + inner + "</xml>")


field_values = st.one_of(strings, nasty_strings)
pushes = st.builds(
    envelope,
    st.fixed_dictionaries(
        {
            "ToUserName": st.one_of(st.just("gh_account"), st.just("gh_account"), field_values),
            "FromUserName": st.one_of(st.just("oOpenId123"), st.just("o2"), field_values),
        },
        optional={
            "CreateTime": st.one_of(st.just("1764201600"), field_values),
            "MsgType": st.sampled_from(["text", "event", "image", "voice", "", "TEXT"]),
            "Content": st.one_of(st.sampled_from(["我的订单到哪了？", "refund now"]), field_values),
            "MsgId": st.one_of(st.integers(0, 2**64).map(str), field_values),
            "Event": st.sampled_from(["subscribe", "unsubscribe", "CLICK", ""]),
        },
    ),
    st.booleans(),
)

BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
        for i in range(1, 10)
    )
    + b"]><xml><Content>&lol9;</Content></xml>"
)
HOSTILE_XML = [
    b"",
    b"success",
    b"<xml>",
    b"<xml></xml>",
    b"<notxml><ToUserName>a</ToUserName></notxml>",
    BILLION_LAUGHS,
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    b"<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName>"
    b"<MsgType>text</MsgType><Content>&xxe;</Content><MsgId>1</MsgId></xml>",
    b'<!DOCTYPE xml SYSTEM "http://127.0.0.1:9/evil.dtd"><xml/>',
    b'<!DOCTYPE x [<!ENTITY % p SYSTEM "http://127.0.0.1:9/p">%p;]><xml/>',
    b"<xml>" + b"<a>" * 20_000 + b"</a>" * 20_000 + b"</xml>",
    b"<xml>" + b"<a>" * 20_000,
    b"<xml>" + b"".join(b"<F%d>x</F%d>" % (i, i) for i in range(4000)) + b"</xml>",
    '<?xml version="1.0" encoding="UTF-16"?><xml><Content>ü</Content></xml>'.encode("utf-16"),
    b'<?xml version="1.0" encoding="GBK"?><xml><Content>\xce\xd2</Content></xml>',
    b'<?xml version="1.0" encoding="x-no-such-codec"?><xml/>',
    b'<?xml version="1.0" encoding="cp500"?><xml/>',
    b"<xml><Content>\xff\xfe\x80</Content></xml>",
    b"<xml><Content>&#0;</Content></xml>",
    b"<xml><Content>&#xD800;</Content></xml>",
    b"<xml><Content><![CDATA[ ]]> ]]></Content></xml>",
    b'<?xml-stylesheet href="http://127.0.0.1:9/x"?><xml><!-- c --><MsgType>text</MsgType></xml>',
    b'<x:xml xmlns:x="urn:x"><x:FromUserName>a</x:FromUserName></x:xml>',
    b'<xml a="' + b"a" * 60_000 + b'"/>',
    b"\xef\xbb\xbf<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName></xml>",
]
xml_bodies = st.one_of(
    pushes, pushes, st.sampled_from(HOSTILE_XML), st.binary(max_size=200), texts.map(utf8)
)


def assert_push_answer(answer: Answer, allowed: set[int] = STATUSES) -> None:
    assert_clean(answer, allowed)
    if answer.status == 200 and answer.body != b"success":  # a passive reply WeChat can read
        assert answer.headers["content-type"].startswith("application/xml"), answer
        reply = parse(answer.body)
        if "Encrypt" in reply:
            reply = parse(
                SAFE_MODE.decrypt(
                    reply["Encrypt"], reply["MsgSignature"], reply["TimeStamp"], reply["Nonce"]
                ).encode()
            )
        assert reply["MsgType"] == "text" and reply["Content"], reply
    assert b"root:" not in answer.body  # no external entity was ever read


@FUZZ
@given(
    signed_=signed,
    echostr=st.one_of(st.none(), header_values, texts.map(utf8)),
    extra=st.dictionaries(st.sampled_from(["encrypt_type", "openid", "x"]), header_values),
)
async def test_the_url_check_echoes_only_for_a_valid_signature(
    stack: FuzzStack,
    caplog: pytest.LogCaptureFixture,
    signed_: Signed,
    echostr: bytes | None,
    extra: dict[str, bytes],
) -> None:
    params: dict[str, str | bytes] = {**extra, **signed_.params()}
    if echostr is not None:
        params["echostr"] = echostr
    with no_errors_logged(caplog):
        answer = await stack.send("GET", "/wechat?" + query(params))
    event(f"HTTP {answer.status}")
    assert_clean(answer, {200, 401})
    if signed_.kind != "valid":
        assert answer.status == 401, answer


async def send_push(
    running: FuzzStack, caplog: pytest.LogCaptureFixture, signed_: Signed, body: bytes
) -> Answer:
    """POST ``body`` with the query of ``signed_``; no error may be logged."""
    with no_errors_logged(caplog):
        answer = await running.send("POST", "/wechat?" + query(signed_.params()), (), body)
    event(f"HTTP {answer.status}")
    return answer


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def plain_stack() -> AsyncIterator[FuzzStack]:
    """The same service without an EncodingAESKey: plain pushes are taken."""
    async with FuzzStack(wechat_aes_key=None) as running:
        yield running


@FUZZ
@given(signed_=signed, body=xml_bodies)
async def test_no_push_gets_a_5xx_or_crashes_the_handler(
    plain_stack: FuzzStack, caplog: pytest.LogCaptureFixture, signed_: Signed, body: bytes
) -> None:
    answer = await send_push(plain_stack, caplog, signed_, body)
    assert_push_answer(answer)
    if signed_.kind != "valid":
        assert answer.status == 401, answer


@FUZZ
@given(signed_=valid, body=xml_bodies)
async def test_signed_pushes_are_answered_or_refused_with_a_reason(
    plain_stack: FuzzStack, caplog: pytest.LogCaptureFixture, signed_: Signed, body: bytes
) -> None:
    answer = await send_push(plain_stack, caplog, signed_, body)
    assert_push_answer(answer, {200, 400, 413})


@FUZZ
@given(signed_=signed, body=xml_bodies)
async def test_in_safe_mode_a_plain_push_is_refused_whatever_its_body(
    stack: FuzzStack, caplog: pytest.LogCaptureFixture, signed_: Signed, body: bytes
) -> None:
    assert_push_answer(await send_push(stack, caplog, signed_, body), {401})


ciphertexts = st.one_of(
    pushes.map(lambda xml: SAFE_MODE.encrypt(xml.decode(errors="replace"), "1", "n")[0]),
    pushes.map(lambda xml: SAFE_MODE.encrypt(xml.decode(errors="replace"), "1", "n")[0]),
    st.sampled_from(HOSTILE_XML).map(
        lambda xml: SAFE_MODE.encrypt(xml.decode(errors="replace"), "1", "n")[0]
    ),
    pushes.map(lambda xml: OTHER_ACCOUNT.encrypt(xml.decode(errors="replace"), "1", "n")[0]),
    st.binary(max_size=96).map(lambda raw: base64.b64encode(raw).decode()),
    strings,
)


@FUZZ
@given(
    signed_=valid,
    encrypted=ciphertexts,
    msg_signature_ok=st.sampled_from([True, True, True, False]),
    wrapper=st.sampled_from(["<xml><Encrypt>{}</Encrypt></xml>", "<xml>{}</xml>", "{}"]),
)
async def test_no_safe_mode_push_gets_a_5xx_or_crashes_the_handler(
    stack: FuzzStack,
    caplog: pytest.LogCaptureFixture,
    signed_: Signed,
    encrypted: str,
    msg_signature_ok: bool,
    wrapper: str,
) -> None:
    params: dict[str, str | bytes] = {**signed_.params()}
    msg_signature = signature(WECHAT_TOKEN, *signed_.parts, encrypted)
    if not msg_signature_ok:
        msg_signature = secrets.token_hex(20)
    params.update(encrypt_type="aes", msg_signature=msg_signature)
    body = utf8(wrapper.format(encrypted.replace("&", "&amp;").replace("<", "&lt;")))
    with no_errors_logged(caplog):
        answer = await stack.send("POST", "/wechat?" + query(params), (), body)
    event(f"HTTP {answer.status}")
    assert_push_answer(answer)


async def test_wechat_still_answers_after_the_fuzzing(
    stack: FuzzStack, plain_stack: FuzzStack
) -> None:
    for running in (stack, plain_stack):
        await running.still_serves()
        answer = await running.send("GET", wechat_target(wechat_fresh(), echostr="hi"))
        assert answer.status == 200 and answer.body == b"hi"
    push = envelope({"ToUserName": "gh", "FromUserName": "o1", "MsgType": "image"}, True)
    answer = await plain_stack.send("POST", wechat_target(wechat_fresh()), (), push)
    assert answer.status == 200 and parse(answer.body)["ToUserName"] == "o1"
    target, body = wechat_sealed(push.decode())
    answer = await stack.send("POST", target, (), body)
    assert answer.status == 200, answer
    reply = parse(answer.body)
    inner = SAFE_MODE.decrypt(
        reply["Encrypt"], reply["MsgSignature"], reply["TimeStamp"], reply["Nonce"]
    )
    assert parse(inner.encode())["ToUserName"] == "o1"
