"""POST /wechat over real HTTP: signatures, passive replies, retries, safe mode, other types."""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto

from adapters.wechat.crypto import SafeMode, signature
from adapters.wechat.freshness import PushFreshness
from adapters.wechat.ingress import GREETING, TEXT_ONLY, WeChatIngress
from adapters.wechat.messages import parse
from core.keys import Keys
from core.metrics import Metrics
from core.models import Reply, ReplySource
from core.priority import PriorityDetector
from core.queue import FloodLimit, PriorityQueue
from tests.adapters.wechat.test_wechat_crypto import AES_KEY, APP_ID, TOKEN
from tests.harness import outbox


class Answers:
    """The reply waiter: answers the tickets it was told to, at once; records every wait."""

    def __init__(self) -> None:
        self.ready: dict[str, str] = {}
        self.waited: list[str] = []

    async def wait_for_reply(self, ticket_id: str, timeout: float) -> Reply | None:
        self.waited.append(ticket_id)
        text = self.ready.get(ticket_id)
        if text is None:
            return None
        return Reply(
            ticket_id=ticket_id,
            priority=2,
            text=text,
            source=ReplySource.LLM,
            channel="wechat",
            account="gh_account",
            message_id="",
            conversation_id="",
            user_id="",
        )


def push(
    content: str = "我的订单到哪了？", msg_id: str = "24680", kind: str = "text", **extra: str
) -> str:
    fields = {
        "ToUserName": "gh_account",
        "FromUserName": "oOpenId123",
        "CreateTime": "1764201600",
        "MsgType": kind,
        "Content": content,
        "MsgId": msg_id,
        **extra,
    }
    return "<xml>" + "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in fields.items()) + "</xml>"


def signed(at: int | None = None, **extra: str) -> dict[str, str]:
    """A query signature made at ``at`` (now by default), with a nonce of its own: each
    signed query is taken once."""
    ts, nonce = str(int(time.time()) if at is None else at), secrets.token_hex(6)
    return {"signature": signature(TOKEN, ts, nonce), "timestamp": ts, "nonce": nonce, **extra}


def sealed(xml: str, query: dict[str, str] | None = None) -> tuple[str, dict[str, str]]:
    """A safe-mode push sealed by wechatpy, and its query (``query``'s, or a fresh one)."""
    query = query or signed()
    envelope = WeChatCrypto(TOKEN, AES_KEY, APP_ID).encrypt_message(
        xml, query["nonce"], query["timestamp"]
    )
    msg_signature = parse(envelope.encode())["MsgSignature"]
    return envelope, {**query, "encrypt_type": "aes", "msg_signature": msg_signature}


@contextlib.asynccontextmanager
async def serving(
    redis: Redis, keys: Keys, queue: PriorityQueue, waiter: Answers, **options: Any
) -> AsyncIterator[str]:
    """The push endpoint on a loopback port: its URL."""
    ingress = WeChatIngress(
        queue,
        PriorityDetector(),
        waiter,
        Metrics(),
        token=TOKEN,
        freshness=PushFreshness(redis, keys),
        **options,
    )
    app = web.Application()
    app.add_routes(ingress.routes())
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        yield str(server.make_url("/wechat"))
    finally:
        await server.close()


@pytest.fixture
async def service(redis: Redis, keys: Keys) -> AsyncIterator[tuple[str, PriorityQueue, Answers]]:
    """Plain mode (no EncodingAESKey)."""
    queue = PriorityQueue(redis, keys, flood=FloodLimit(3, 60))
    await queue.ensure_groups()
    answers = Answers()
    async with serving(redis, keys, queue, answers, passive_reply_s=1.0) as url:
        yield url, queue, answers


@pytest.fixture
async def safe_service(
    redis: Redis, keys: Keys
) -> AsyncIterator[tuple[str, PriorityQueue, Answers]]:
    """Safe mode (an EncodingAESKey): only encrypted pushes are taken."""
    queue = PriorityQueue(redis, keys)
    await queue.ensure_groups()
    answers = Answers()
    safe_mode = SafeMode(TOKEN, AES_KEY, APP_ID)
    async with serving(
        redis, keys, queue, answers, safe_mode=safe_mode, passive_reply_s=1.0
    ) as url:
        yield url, queue, answers


async def post(url: str, body: str, query: dict[str, str]) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, params=query, data=body.encode()) as r,
    ):
        return r.status, await r.text()


async def test_the_url_check_echoes_only_for_a_valid_signature(service: Any) -> None:
    url, _, _ = service
    async with aiohttp.ClientSession() as http:
        async with http.get(url, params=signed(echostr="hello-wechat")) as response:
            assert response.status == 200 and await response.text() == "hello-wechat"
        bad = {**signed(echostr="x"), "signature": "0" * 40}
        async with http.get(url, params=bad) as response:
            assert response.status == 401


async def test_a_text_push_is_queued_and_answered_passively_when_ready(service: Any) -> None:
    url, queue, answers = service
    status, body = await post(url, push(), signed())
    assert (status, body) == (200, "success")  # not ready within the passive window
    [entry] = await queue.read("c", 10)
    assert entry.message.user_id == "oOpenId123" and entry.message.channel == "wechat"
    assert entry.priority == 1  # tracking an order
    assert entry.wait_until > 0  # the outbox leaves the passive reply its head start
    # WeChat's retry of the same MsgId: the same ticket, and now the answer is ready.
    answers.ready[entry.ticket_id] = "已发货，预计明天送达"
    status, body = await post(url, push(), signed())
    reply = parse(body.encode())
    assert status == 200 and reply["Content"] == "已发货，预计明天送达"
    assert reply["ToUserName"] == "oOpenId123" and reply["FromUserName"] == "gh_account"
    assert answers.waited == [entry.ticket_id, entry.ticket_id]
    assert await queue.read("c", 10) == []  # queued once


async def test_safe_mode_push_and_reply_round_trip_with_wechatpy(safe_service: Any) -> None:
    url, queue, answers = safe_service
    peer = WeChatCrypto(TOKEN, AES_KEY, APP_ID)
    envelope, query = sealed(push("怎么退款", msg_id="777"))
    status, body = await post(url, envelope, query)
    assert (status, body) == (200, "success")
    [entry] = await queue.read("c", 10)
    assert entry.message.text == "怎么退款"
    answers.ready[entry.ticket_id] = "退款会在3-5个工作日内原路退回"
    envelope, query = sealed(push("怎么退款", msg_id="777"))  # WeChat's retry
    status, body = await post(url, envelope, query)
    reply = parse(body.encode())
    plain = peer.decrypt_message(body, reply["MsgSignature"], reply["TimeStamp"], reply["Nonce"])
    assert parse_message(plain).content == "退款会在3-5个工作日内原路退回"
    envelope, query = sealed(push("怎么退款", msg_id="778"))
    tampered = {**query, "msg_signature": "0" * 40}
    assert (await post(url, envelope, tampered))[0] == 401
    assert (await post(url, push(msg_id="779"), signed()))[0] == 401  # plain: refused


async def test_other_types_and_events_get_a_short_reply_and_are_not_queued(service: Any) -> None:
    url, queue, _ = service
    _, body = await post(url, push(kind="image", PicUrl="http://x/y.jpg"), signed())
    assert parse(body.encode())["Content"] == TEXT_ONLY
    _, body = await post(url, push(kind="event", Event="subscribe"), signed())
    assert parse(body.encode())["Content"] == GREETING
    assert (await post(url, push(kind="event", Event="unsubscribe"), signed()))[1] == "success"
    assert await queue.read("c", 10) == []


@pytest.mark.parametrize(
    ("body", "query", "status"),
    [
        ("<xml></xml>", {"signature": "0" * 40, "timestamp": "1", "nonce": "n"}, 401),
        ("not xml", None, 400),
        ("<xml><MsgType>text</MsgType></xml>", None, 400),
        (push(content=""), None, 400),
        ("<xml>" + "<a>x</a>" * 10000 + "</xml>", None, 413),
        (push(), {"encrypt_type": "aes", "msg_signature": "0" * 40}, 400),  # no AES key
        (push(), {"signature": "\u00e9" * 40}, 401),  # not ASCII: once a 500
        (push(msg_id="9" * 129), None, 400),  # ids become store keys: 128 characters at most
        (push(FromUserName="o" * 129), None, 400),
    ],
)
async def test_bad_pushes_get_a_clear_4xx(
    service: Any, body: str, query: dict[str, str] | None, status: int
) -> None:
    url, queue, _ = service
    got, text = await post(url, body, {**signed(), **(query or {})})
    assert got == status and "error" in text
    assert await queue.read("c", 10) == []


async def test_a_body_whose_content_encoding_does_not_decode_is_400(service: Any) -> None:
    url, queue, _ = service
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            url, params=signed(), data=push().encode(), headers={"Content-Encoding": "gzip"}
        ) as response,
    ):  # not gzip: aiohttp's ContentEncodingError was a 500
        assert response.status == 400 and "cannot read body" in (await response.json())["error"]
    assert await queue.read("c", 10) == []


class Busy:
    """Peak mode with a long queue: every answer is far off."""

    def acknowledgement(self, priority: int, locale: str | None) -> str | None:
        return "收到，工单号 {ticket}，预计 10 分钟内回复"


async def test_under_a_backlog_the_passive_reply_is_the_acknowledgement(
    redis: Redis, keys: Keys
) -> None:
    queue = PriorityQueue(redis, keys)
    await queue.ensure_groups()
    async with serving(redis, keys, queue, Answers(), passive_reply_s=0.2, acks=Busy()) as url:
        _, body = await post(url, push("我要退款", msg_id="901"), signed())
        [entry] = await queue.read("c", 10)
        assert (
            parse(body.encode())["Content"] == f"收到，工单号 {entry.ticket_id}，预计 10 分钟内回复"
        )
        retry = await post(url, push("我要退款", msg_id="901"), signed())
        assert retry == (200, "success")  # the acknowledgement went with the first push


async def test_over_the_flood_limit_only_the_first_push_waits_for_its_notice(
    service: Any, redis: Redis, keys: Keys
) -> None:
    url, queue, answers = service
    for n in range(5):
        status, _ = await post(url, push(f"第{n}个问题", msg_id=str(n)), signed())
        assert status == 200
    entries = await queue.read("c", 10)
    assert len(entries) == 3  # the limit: the rest are not queued
    # The first throttled push waited for its reply (the notice, in the outbox); the last
    # one has no reply coming and answered at once.
    assert len(answers.waited) == 4
    notices = [r for r in await outbox(redis, keys) if r.source == ReplySource.NOTICE]
    assert [n.message_id for n in notices] == ["3"]
    assert "过快" in notices[0].text
