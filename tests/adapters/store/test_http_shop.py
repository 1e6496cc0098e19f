"""HttpShop over real HTTP against the fake store API (serving the demo shop's data)."""

from __future__ import annotations

import itertools
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from adapters.store.demo import DemoShop
from adapters.store.http import HttpShop
from core.circuit import CircuitBreaker
from core.shop import POLICY_TOPICS, Shop, ShopUnavailable
from tests.fakes.store_api import FakeStoreAPI

IDENTITY = "telegram:1001"  # C001 in the demo data
PLAIN_RECORD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store() -> AsyncIterator[FakeStoreAPI]:
    async with FakeStoreAPI() as api:
        yield api


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def shop_of(store: FakeStoreAPI, session: aiohttp.ClientSession, **options: Any) -> HttpShop:
    options.setdefault("backoff_s", 0.0)
    return HttpShop(store.base_url, store.token, session=session, **options)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_every_lookup_answers_what_the_demo_shop_answers(
    store: FakeStoreAPI, session: aiohttp.ClientSession
) -> None:
    demo, shop = store.shop, shop_of(store, session)
    port: Shop = shop
    assert port is shop
    for identity in [*list(demo.identities)[::20], "webhook:demo:alice", "telegram:5"]:
        assert await shop.customer_for(identity) == await demo.customer_for(identity)
    for order_id in demo.orders:
        assert await shop.order(order_id) == await demo.order(order_id)
    for customer_id in ["C001", "C002", "C050", "C100"]:
        orders = await shop.orders_of(customer_id)
        assert orders and orders == await demo.orders_of(customer_id)
    for product_id in demo.products:
        assert await shop.product(product_id) == await demo.product(product_id)
    for query in ["wireless headphones", "Mouse", "toys ages 3", "zeppelin"]:
        assert await shop.search_products(query, 3) == await demo.search_products(query, 3)
    for topic in POLICY_TOPICS:
        assert await shop.policy(topic) == await demo.policy(topic)
    assert {call.status for call in store.calls} == {200, 404}


async def test_path_segments_are_percent_encoded_whole(
    store: FakeStoreAPI, session: aiohttp.ClientSession
) -> None:
    shop = shop_of(store, session)
    assert await shop.customer_for("webhook:demo:alice") == "C001"
    assert await shop.order("100001/../../customers/C002/orders") is None
    assert await shop.product("P001?x=1#y") is None
    assert [call.path for call in store.calls] == [
        "/v1/customers/by-identity/webhook%3Ademo%3Aalice",
        "/v1/orders/100001%2F..%2F..%2Fcustomers%2FC002%2Forders",
        "/v1/products/P001%3Fx%3D1%23y",
    ]


async def test_dot_and_empty_segments_are_never_sent(
    store: FakeStoreAPI, session: aiohttp.ClientSession
) -> None:
    shop = shop_of(store, session)
    assert await shop.order("..") is None
    assert await shop.product(".") is None
    assert await shop.customer_for("") is None
    assert await shop.orders_of("..") == []
    assert await shop.search_products("   ", 5) == []
    assert store.calls == []


async def test_the_search_sends_the_text_and_the_limit_and_keeps_to_the_limit(
    store: FakeStoreAPI, session: aiohttp.ClientSession
) -> None:
    shop = shop_of(store, session)
    found = await shop.search_products("wireless headphones", 2)
    assert len(found) == 2
    assert store.calls[-1].query == {"q": "wireless headphones", "limit": "2"}
    many = {"products": [p.to_dict() for p in store.shop.products.values()]}
    store.fail(200, body=json.dumps(many))
    assert len(await shop.search_products("anything", 3)) == 3


async def test_not_found_is_none_or_an_empty_list_and_not_a_failure(
    store: FakeStoreAPI, session: aiohttp.ClientSession
) -> None:
    breaker = CircuitBreaker(failure_threshold=1)
    shop = shop_of(store, session, breaker=breaker)
    assert await shop.customer_for("telegram:5") is None
    assert await shop.order("999999") is None
    assert await shop.orders_of("C999") == []
    assert await shop.product("P999") is None
    assert await shop.policy("gift_cards") is None
    assert [call.status for call in store.calls] == [404] * 5
    assert breaker.state == "closed"


async def test_a_server_error_is_retried_and_the_answer_served(
    store: FakeStoreAPI, session: aiohttp.ClientSession
) -> None:
    shop = shop_of(store, session)
    store.fail(500)
    order = await shop.order("100001")
    assert order is not None and order.id == "100001"
    assert [call.status for call in store.calls] == [500, 200]
    store.fail(429)
    assert await shop.customer_for(IDENTITY) == "C001"
    assert [call.status for call in store.calls_to("customer")] == [429, 200]


async def test_a_slow_answer_times_out_and_is_retried(
    store: FakeStoreAPI, session: aiohttp.ClientSession
) -> None:
    shop = shop_of(store, session, timeout_s=0.1)
    store.fail(500, delay=0.4)
    policy = await shop.policy("returns")
    assert policy is not None and policy.topic == "returns"


async def test_retries_stop_after_max_attempts_with_shop_unavailable(
    store: FakeStoreAPI, session: aiohttp.ClientSession
) -> None:
    store.fail(503, times=10)
    with pytest.raises(ShopUnavailable):
        await shop_of(store, session).order("100001")
    assert len(store.calls) == 2
    with pytest.raises(ShopUnavailable):
        await shop_of(store, session, max_attempts=3).product("P001")
    assert len(store.calls) == 5


async def test_the_retries_back_off(store: FakeStoreAPI, session: aiohttp.ClientSession) -> None:
    store.fail(503, times=3)
    with pytest.raises(ShopUnavailable):
        await shop_of(store, session, max_attempts=3, backoff_s=0.1).order("100001")
    gaps = [b.at - a.at for a, b in itertools.pairwise(store.calls)]
    assert gaps[0] >= 0.1 and gaps[1] >= 0.2


async def test_a_store_that_is_down_is_unavailable(session: aiohttp.ClientSession) -> None:
    shop = HttpShop(f"http://127.0.0.1:{closed_port()}/v1", "t", session=session, backoff_s=0.0)
    started = time.monotonic()
    with pytest.raises(ShopUnavailable):
        await shop.customer_for(IDENTITY)
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("status", [400, 401, 403, 302])
async def test_a_refusal_fails_at_once_without_a_retry(
    store: FakeStoreAPI, session: aiohttp.ClientSession, status: int
) -> None:
    store.fail(status)
    with pytest.raises(ShopUnavailable):
        await shop_of(store, session, max_attempts=3).order("100001")
    assert [call.status for call in store.calls] == [status]


async def test_a_wrong_or_missing_token_is_unavailable(
    store: FakeStoreAPI, session: aiohttp.ClientSession
) -> None:
    for token in ("wrong-token", None):
        shop = HttpShop(store.base_url, token, session=session, max_attempts=3)
        with pytest.raises(ShopUnavailable):
            await shop.policy("returns")
    assert [call.status for call in store.calls] == [401, 401]


@pytest.mark.parametrize(
    ("body", "lookup"),
    [
        ("{not json", "order"),
        ('{"id": "100001", "status": "shipped"}', "order"),
        ('{"customer_id": null}', "customer"),
        ('{"products": {"P001": {}}}', "search"),
        ('{"topic": "returns", "text": "Returns within 30 days"}', "policy"),
        ('{"orders": [{"id": 1}]}', "orders"),
        ('{"id": "P001", "name": "x", "price": "9.99", "currency": "USD", "stock": 1, '
         '"description": ""}', "product"),
    ],
)  # fmt: skip
async def test_an_answer_that_is_not_what_the_endpoint_promises_is_unavailable(
    store: FakeStoreAPI, session: aiohttp.ClientSession, body: str, lookup: str
) -> None:
    shop = shop_of(store, session)
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "order": lambda: shop.order("100001"),
        "customer": lambda: shop.customer_for(IDENTITY),
        "search": lambda: shop.search_products("mouse"),
        "policy": lambda: shop.policy("returns"),
        "orders": lambda: shop.orders_of("C001"),
        "product": lambda: shop.product("P001"),
    }
    store.fail(200, body=body)
    with pytest.raises(ShopUnavailable):
        await calls[lookup]()
    assert len(store.calls) == 1  # not retried


async def test_the_breaker_opens_after_failures_and_then_no_request_goes_out(
    store: FakeStoreAPI, session: aiohttp.ClientSession
) -> None:
    breaker = CircuitBreaker(failure_threshold=2, reset_after_s=30, clock=Clock())
    shop = shop_of(store, session, breaker=breaker)
    store.fail(503, times=4)
    for _ in range(2):
        with pytest.raises(ShopUnavailable):
            await shop.order("100001")
    assert breaker.state == "open"
    assert len(store.calls) == 4  # two lookups of two attempts
    for _ in range(5):
        with pytest.raises(ShopUnavailable):
            await shop.order("100001")
    assert len(store.calls) == 4


async def test_a_half_open_probe_closes_the_breaker_again(
    store: FakeStoreAPI, session: aiohttp.ClientSession
) -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, reset_after_s=30, clock=clock)
    shop = shop_of(store, session, breaker=breaker, max_attempts=1)
    store.fail(500)
    with pytest.raises(ShopUnavailable):
        await shop.product("P001")
    clock.now += 30
    store.fail(500)  # the first probe fails: open for another 30 s
    with pytest.raises(ShopUnavailable):
        await shop.product("P001")
    assert breaker.state == "open"
    clock.now += 29
    with pytest.raises(ShopUnavailable):
        await shop.product("P001")
    assert len(store.calls) == 2
    clock.now += 1
    assert await shop.product("P001") is not None  # the second probe succeeds
    assert breaker.state == "closed"
    assert await shop.product("P002") is not None
    assert len(store.calls) == 4


async def test_credentials_refused_count_against_the_breaker_but_a_bad_request_does_not(
    store: FakeStoreAPI, session: aiohttp.ClientSession
) -> None:
    breaker = CircuitBreaker(failure_threshold=2, clock=Clock())
    shop = shop_of(store, session, breaker=breaker)
    store.fail(400, times=5)
    for _ in range(5):
        with pytest.raises(ShopUnavailable):
            await shop.order("ORD-1")
    assert breaker.state == "closed"
    store.fail(401, times=2)
    for _ in range(2):
        with pytest.raises(ShopUnavailable):
            await shop.order("100001")
    assert breaker.state == "open"


async def test_logs_never_carry_the_token_identities_ids_or_urls(
    store: FakeStoreAPI, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    breaker = CircuitBreaker(failure_threshold=3, clock=Clock())
    shop = shop_of(store, session, breaker=breaker)
    store.fail(500)
    await shop.customer_for(IDENTITY)
    store.fail(200, body='{"customer_id": {"name": "Alice Martin"}}')
    with pytest.raises(ShopUnavailable):
        await shop.customer_for(IDENTITY)
    store.fail(503, times=10)
    for _ in range(3):
        with pytest.raises(ShopUnavailable):
            await shop.order("100158")
    with pytest.raises(ShopUnavailable):
        await HttpShop(store.base_url, "wrong-token", session=session).orders_of("C001")
    logged = [as_text(record) for record in caplog.records]
    ours = [as_text(r) for r in caplog.records if r.name == "peakdesk.shop"]
    assert any("endpoint=order" in line and "HTTP 503" in line for line in ours)
    assert any("endpoint=orders" in line and "HTTP 401" in line for line in ours)
    assert any("circuit opened" in line for line in ours)
    everything = "\n".join(logged)
    for secret in (store.token, "wrong-token", IDENTITY, "telegram%3A", "100158", "C001", "Alice"):
        assert secret not in everything, secret
    assert "/v1/" not in everything  # no URL, no path


def as_text(record: logging.LogRecord) -> str:
    """The message, the extra fields and any traceback of a log record."""
    extra = {k: v for k, v in record.__dict__.items() if k not in PLAIN_RECORD}
    return f"{record.getMessage()} {extra} {record.exc_text or ''}"


async def test_its_repr_shows_no_token(store: FakeStoreAPI, session: aiohttp.ClientSession) -> None:
    assert store.token not in repr(shop_of(store, session))


@pytest.mark.parametrize("base_url", ["ftp://store.example", "store.example/api", "http://"])
async def test_a_base_url_that_is_not_http_is_refused(
    session: aiohttp.ClientSession, base_url: str
) -> None:
    with pytest.raises(ValueError):
        HttpShop(base_url, "t", session=session)


async def test_answers_match_a_small_dataset_of_ones_own(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    identities = tmp_path / "identities.json"
    identities.write_text('{"wechat:o6_bmTEST": "C003"}', encoding="utf-8")
    async with FakeStoreAPI(DemoShop(identities_path=identities)) as store:
        shop = shop_of(store, session)
        assert await shop.customer_for("wechat:o6_bmTEST") == "C003"
        assert await shop.customer_for(IDENTITY) is None
