"""CachedShop over the demo shop, on fakeredis and the real Redis server."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from adapters.store.demo import DemoShop
from core.keys import Keys
from core.shop import CachedShop, Order, Policy, Product, ShopUnavailable, identity_digest

DAY = 24 * 3600
DEMO = DemoShop()


class CountingShop:
    """The demo shop, counting the lookups that reach it; ``down`` makes them all fail."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.down = False

    def _count(self, name: str) -> None:
        if self.down:
            raise ShopUnavailable("the store is down")
        self.calls[name] += 1

    async def customer_for(self, identity: str) -> str | None:
        self._count("customer_for")
        return await DEMO.customer_for(identity)

    async def order(self, order_id: str) -> Order | None:
        self._count("order")
        return await DEMO.order(order_id)

    async def orders_of(self, customer_id: str) -> list[Order]:
        self._count("orders_of")
        return await DEMO.orders_of(customer_id)

    async def product(self, product_id: str) -> Product | None:
        self._count("product")
        return await DEMO.product(product_id)

    async def search_products(self, query: str, limit: int = 5) -> list[Product]:
        self._count("search_products")
        return await DEMO.search_products(query, limit)

    async def policy(self, topic: str) -> Policy | None:
        self._count("policy")
        return await DEMO.policy(topic)


@pytest.fixture
def inner() -> CountingShop:
    return CountingShop()


@pytest.fixture
def cached(inner: CountingShop, redis: Redis, keys: Keys) -> CachedShop:
    return CachedShop(inner, redis, keys)


@pytest.fixture
async def dead_redis() -> AsyncIterator[Redis]:
    """A client of a port nothing listens on: every command fails at once."""
    client = Redis(
        port=1, socket_connect_timeout=0.2, socket_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )
    yield client
    await client.aclose()


async def test_a_second_lookup_is_served_from_redis(
    cached: CachedShop, inner: CountingShop
) -> None:
    for _ in range(2):
        assert await cached.customer_for("telegram:1001") == "C001"
        assert await cached.order("100001") == await DEMO.order("100001")
        assert await cached.orders_of("C001") == await DEMO.orders_of("C001")
        assert await cached.product("P001") == await DEMO.product("P001")
        assert await cached.search_products("wireless mouse", 3) == await DEMO.search_products(
            "wireless mouse", 3
        )
        assert await cached.policy("returns") == await DEMO.policy("returns")
    assert inner.calls == Counter(
        customer_for=1, order=1, orders_of=1, product=1, search_products=1, policy=1
    )


async def test_the_same_search_in_other_words_spacing_or_case_is_one_entry(
    cached: CachedShop, inner: CountingShop
) -> None:
    await cached.search_products("Wireless  Mouse", 3)
    await cached.search_products(" wireless mouse ", 3)
    assert inner.calls["search_products"] == 1
    await cached.search_products("wireless mouse", 5)  # another limit, another answer
    assert inner.calls["search_products"] == 2


async def test_orders_live_a_minute_and_the_catalogue_a_day(
    cached: CachedShop, redis: Redis, keys: Keys
) -> None:
    await cached.customer_for("telegram:1001")
    await cached.order("100001")
    await cached.orders_of("C001")
    await cached.product("P001")
    await cached.search_products("mouse", 3)
    await cached.policy("returns")
    for kind, name in [
        ("identity", identity_digest("telegram:1001")),
        ("order", "100001"),
        ("orders", "C001"),
    ]:
        assert 0 < await redis.ttl(keys.shop(kind, name)) <= 60
    for kind, name in [("product", "P001"), ("search", "3:mouse"), ("policy", "returns")]:
        assert 3600 < await redis.ttl(keys.shop(kind, name)) <= DAY


async def test_negative_answers_are_cached_briefly(
    cached: CachedShop, inner: CountingShop, redis: Redis, keys: Keys
) -> None:
    for _ in range(2):
        assert await cached.customer_for("telegram:5") is None
        assert await cached.order("999999") is None
        assert await cached.product("P999") is None
        assert await cached.policy("gift_cards") is None
    assert inner.calls == Counter(customer_for=1, order=1, product=1, policy=1)
    for kind, name in [
        ("identity", identity_digest("telegram:5")),
        ("order", "999999"),
        ("product", "P999"),
        ("policy", "gift_cards"),
    ]:
        assert 0 < await redis.ttl(keys.shop(kind, name)) <= 60


async def test_a_store_failure_is_not_cached(
    cached: CachedShop, inner: CountingShop, redis: Redis, keys: Keys
) -> None:
    inner.down = True
    with pytest.raises(ShopUnavailable):
        await cached.order("100001")
    assert await redis.exists(keys.shop("order", "100001")) == 0
    inner.down = False
    assert await cached.order("100001") is not None


async def test_a_redis_failure_falls_through_to_the_store(
    inner: CountingShop, dead_redis: Redis, keys: Keys
) -> None:
    cached = CachedShop(inner, dead_redis, keys)
    for _ in range(2):
        assert await cached.customer_for("telegram:1001") == "C001"
        assert await cached.order("100001") == await DEMO.order("100001")
        assert await cached.orders_of("C001") == await DEMO.orders_of("C001")
        assert await cached.product("P001") == await DEMO.product("P001")
        assert len(await cached.search_products("mouse", 3)) >= 1
        assert await cached.policy("returns") == await DEMO.policy("returns")
    assert set(inner.calls.values()) == {2}


async def test_two_instances_on_one_redis_share_the_cache(redis: Redis, keys: Keys) -> None:
    first, second = CountingShop(), CountingShop()
    await CachedShop(first, redis, keys).order("100001")
    await CachedShop(first, redis, keys).policy("shipping")
    assert await CachedShop(second, redis, keys).order("100001") == await DEMO.order("100001")
    assert await CachedShop(second, redis, keys).policy("shipping") == await DEMO.policy("shipping")
    assert second.calls == Counter()


async def test_an_entry_another_version_wrote_is_a_miss(
    redis: Redis, keys: Keys, inner: CountingShop
) -> None:
    shop = CachedShop(inner, redis, keys)
    await redis.set(keys.shop("product", "P001"), '{"id": "P001", "colour": "red"}')
    await redis.set(keys.shop("order", "100001"), "{not json")
    product = await shop.product("P001")
    order = await shop.order("100001")
    assert product == DEMO.products["P001"] and order == DEMO.orders["100001"]
    assert inner.calls["product"] == 1 and inner.calls["order"] == 1
    assert await shop.product("P001") == product and inner.calls["product"] == 1  # re-cached
