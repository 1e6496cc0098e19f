"""A scriptable fake of a merchant's store API, over real HTTP, serving a :class:`DemoShop`.

It runs in the test's event loop on 127.0.0.1 with a free port and serves the endpoints of
``adapters/store/http.py`` under ``/v1`` (so clients must keep a base path), answering from the
demo shop it is given (the shipped data by default), with the JSON of ``Order.to_dict()`` and
friends. A request without ``Authorization: Bearer <token>`` gets 401. Every request is
recorded, and failures are scripted in order::

    async with FakeStoreAPI() as store:
        shop = HttpShop(store.base_url, store.token, session=session)
        store.fail(500)                       # the next request: HTTP 500
        store.fail(503, times=3, delay=0.5)   # then three slow 503s
        store.fail(200, body="{not json")     # then a 200 with a broken body
        ...
        assert [c.endpoint for c in store.calls] == ["order", "order", ...]
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from adapters.store.demo import DemoShop
from tests.fakes.loopback import LoopbackServer

TOKEN = "store-test-token-5f1c9a"
PREFIX = "/v1"


@dataclass(frozen=True, slots=True)
class StoreCall:
    """One request as the fake saw it: ``path`` is the raw (still percent-encoded) path."""

    endpoint: str
    path: str
    query: dict[str, str]
    status: int
    at: float


@dataclass(frozen=True, slots=True)
class Failure:
    status: int
    delay: float
    body: str | None


class FakeStoreAPI(LoopbackServer):
    """A fake store API; ``base_url`` is what the store API base URL setting would be."""

    def __init__(self, shop: DemoShop | None = None, *, token: str = TOKEN) -> None:
        self.shop = shop or DemoShop()
        self.token = token
        self.calls: list[StoreCall] = []
        self._failures: deque[Failure] = deque()
        app = web.Application()
        for path, endpoint in (
            ("/customers/by-identity/{identity}", "customer"),
            ("/orders/{order_id}", "order"),
            ("/customers/{customer_id}/orders", "orders"),
            ("/products/{product_id}", "product"),
            ("/products", "search"),
            ("/policies/{topic}", "policy"),
        ):
            app.router.add_get(PREFIX + path, self._handler(endpoint))
        super().__init__(app)

    @property
    def base_url(self) -> str:
        return self.url(PREFIX)

    def fail(
        self, status: int = 500, *, times: int = 1, delay: float = 0.0, body: str | None = None
    ) -> None:
        """The next ``times`` requests (any endpoint) answer ``status`` after ``delay`` seconds,
        with ``body`` if given (``fail(200, body="{")``: a broken answer)."""
        self._failures.extend([Failure(status, delay, body)] * times)

    def calls_to(self, endpoint: str) -> list[StoreCall]:
        return [call for call in self.calls if call.endpoint == endpoint]

    def _handler(self, endpoint: str) -> Any:
        async def handle(request: web.Request) -> web.Response:
            response = await self._answer(endpoint, request)
            self.calls.append(
                StoreCall(
                    endpoint,
                    request.raw_path,
                    dict(request.query),
                    response.status,
                    time.monotonic(),
                )
            )
            return response

        return handle

    async def _answer(self, endpoint: str, request: web.Request) -> web.Response:
        expected = f"Bearer {self.token}".encode()
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return web.json_response({"error": "unauthorized"}, status=401)
        if self._failures:
            failure = self._failures.popleft()
            if failure.delay:
                await asyncio.sleep(failure.delay)
            # A redirect leads back to the same request: a client that follows it gets an answer.
            headers = {"Location": request.path_qs} if 300 <= failure.status < 400 else None
            if failure.body is not None:
                return web.Response(
                    text=failure.body,
                    status=failure.status,
                    content_type="application/json",
                    headers=headers,
                )
            return web.json_response(
                {"error": f"scripted {failure.status}"}, status=failure.status, headers=headers
            )
        found = await self._lookup(endpoint, request)
        if found is None:
            return web.json_response({"error": "not_found"}, status=404)
        return web.json_response(found)

    async def _lookup(self, endpoint: str, request: web.Request) -> dict[str, Any] | None:
        shop, match = self.shop, request.match_info
        if endpoint == "customer":
            customer = await shop.customer_for(match["identity"])
            return {"customer_id": customer} if customer else None
        if endpoint == "order":
            order = await shop.order(match["order_id"])
            return order.to_dict() if order else None
        if endpoint == "orders":
            if match["customer_id"] not in shop.customers:
                return None
            return {"orders": [o.to_dict() for o in await shop.orders_of(match["customer_id"])]}
        if endpoint == "product":
            product = await shop.product(match["product_id"])
            return product.to_dict() if product else None
        if endpoint == "search":
            limit = request.query.get("limit", "5")
            if not limit.isdigit():
                raise web.HTTPBadRequest(text="limit must be a number")
            found = await shop.search_products(request.query.get("q", ""), int(limit))
            return {"products": [p.to_dict() for p in found]}
        policy = await shop.policy(match["topic"])
        return policy.to_dict() if policy else None
