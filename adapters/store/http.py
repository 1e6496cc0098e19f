"""The store API client: :class:`core.shop.Shop` over a merchant's own HTTP API.

Every call is a ``GET`` with ``Authorization: Bearer <token>`` and a JSON answer::

    GET {base}/customers/by-identity/{identity}  200 {"customer_id": "C001"}  | 404
    GET {base}/orders/{order_id}                 200 {order}                  | 404
    GET {base}/customers/{customer_id}/orders    200 {"orders": [{order}...]} (newest first)
    GET {base}/products/{product_id}             200 {product}                | 404
    GET {base}/products?q=<text>&limit=<n>       200 {"products": [{product}...]}
    GET {base}/policies/{topic}                  200 {policy}                 | 404

Path segments are percent-encoded whole (identities hold ``:``, an id could hold ``/``), and
``.``/``..``/empty ones are never sent: a path must not climb out of its endpoint. A 404 means
"no such thing" (None, or an empty list). Timeouts, connection errors, 408, 429 and 5xx are
retried ``max_attempts`` times in all with a doubling backoff; any other answer, or JSON that
is not what the endpoint promises, fails at once. Every failure is :class:`ShopUnavailable`.

A :class:`core.circuit.CircuitBreaker` makes a store that keeps failing fail fast: while it
is open no request goes out. Failed calls count against it (after their retries), and so do
401/403 (a wrong token will not get better). Other 4xx refusals do not: a store may answer
400 to one odd order id a customer typed, and a few such ids must not cut everyone off.

Logs name the endpoint kind, the status and the attempt count: never the token, the URL, an
identity, an id or anything the store answered (customer data).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar
from urllib.parse import quote

import aiohttp
from yarl import URL

from adapters.store.schema import order_from_json, policy_from_json, product_from_json
from core.circuit import CircuitBreaker
from core.shop import Order, Policy, Product, ShopUnavailable

logger = logging.getLogger("peakdesk.shop")

_R = TypeVar("_R")
_RETRYABLE_STATUSES: Final = frozenset({408, 429})  # and every 5xx
_CREDENTIAL_STATUSES: Final = frozenset({401, 403})
_UNSENDABLE_SEGMENTS: Final = frozenset({"", ".", ".."})


class _Refused(ShopUnavailable):
    """The store is up but refused this one request (a 4xx other than 401, 403 and 404)."""


class HttpShop:
    """A :class:`core.shop.Shop` over the store API at ``base_url`` (see the module docstring).

    ``session`` is the caller's (one pooled session per process) and is not closed here.
    ``timeout_s`` bounds each attempt; ``breaker`` is optional (None: never fail fast).
    """

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        session: aiohttp.ClientSession,
        timeout_s: float = 3.0,
        max_attempts: int = 2,
        backoff_s: float = 0.2,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        base = URL(base_url.rstrip("/"))
        if base.scheme not in ("http", "https") or not base.host:
            raise ValueError("the store API base URL must be an http(s) URL")
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if timeout_s <= 0 or backoff_s < 0:
            raise ValueError("timeout_s must be > 0 and backoff_s >= 0")
        self._base = str(base)
        self._headers = {"Accept": "application/json"}
        if token:  # None: a store API reached without credentials (a private network)
            self._headers["Authorization"] = f"Bearer {token}"
        self._session = session
        # ceil_threshold=inf: aiohttp would otherwise round timeouts over 5 s up to a second.
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, ceil_threshold=math.inf)
        self._max_attempts = max_attempts
        self._backoff_s = backoff_s
        self.breaker = breaker

    def __repr__(self) -> str:  # never shows the token
        return f"HttpShop(base_url={self._base!r})"

    async def customer_for(self, identity: str) -> str | None:
        return await self._call("customer", ("customers", "by-identity", identity), _customer_id)

    async def order(self, order_id: str) -> Order | None:
        return await self._call("order", ("orders", order_id), order_from_json)

    async def orders_of(self, customer_id: str) -> list[Order]:
        """The customer's orders, newest first (as the store lists them)."""
        orders = await self._call("orders", ("customers", customer_id, "orders"), _order_list)
        return orders or []

    async def product(self, product_id: str) -> Product | None:
        return await self._call("product", ("products", product_id), product_from_json)

    async def search_products(self, query: str, limit: int = 5) -> list[Product]:
        if not query.strip() or limit < 1:
            return []
        found = await self._call(
            "search", ("products",), _product_list, query={"q": query, "limit": str(limit)}
        )
        return (found or [])[:limit]

    async def policy(self, topic: str) -> Policy | None:
        return await self._call("policy", ("policies", topic), policy_from_json)

    async def _call(
        self,
        endpoint: str,
        segments: tuple[str, ...],
        parse: Callable[[Any], _R],
        *,
        query: Mapping[str, str] | None = None,
    ) -> _R | None:
        """One lookup: None on a 404; the circuit breaker's verdict before, its count after."""
        if _UNSENDABLE_SEGMENTS.intersection(segments):
            return None  # no such id can exist, and the path must not climb out
        breaker = self.breaker
        if breaker is not None and not breaker.allow():
            raise ShopUnavailable(f"store circuit open: {endpoint} lookup not tried")
        url = URL(self._base + "/" + "/".join(quote(s, safe="") for s in segments), encoded=True)
        try:
            found, payload = await self._fetch(endpoint, url, query)
            result = parse(payload) if found else None
        except _Refused:
            self._record(ok=True)  # the store answered: it is up
            raise
        except ShopUnavailable:
            self._record(ok=False)
            raise
        except ValueError as exc:  # JSON that is not what the endpoint promises
            logger.warning(
                "store answer malformed: endpoint=%s error=%s",
                endpoint,
                exc,
                extra={"endpoint": endpoint},
            )
            self._record(ok=False)
            raise ShopUnavailable(f"store {endpoint} answer is malformed") from exc
        self._record(ok=True)
        return result

    async def _fetch(
        self, endpoint: str, url: URL, query: Mapping[str, str] | None
    ) -> tuple[bool, Any]:
        """``(True, decoded JSON)`` of a 2xx, ``(False, None)`` of a 404; retries the rest."""
        reason = ""
        cause: BaseException | None = None
        for attempt in range(1, self._max_attempts + 1):
            if attempt > 1:
                await asyncio.sleep(self._backoff_s * 2 ** (attempt - 2))
            try:
                # No redirects: a 3xx is a misconfigured base URL, and must not carry the token.
                async with self._session.get(
                    url,
                    params=query,
                    headers=self._headers,
                    timeout=self._timeout,
                    allow_redirects=False,
                ) as response:
                    status = response.status
                    raw = await response.read() if 200 <= status < 300 else b""
            except TimeoutError as exc:  # before ClientError: aiohttp's timeouts are both
                reason, cause = "timeout", exc
            except aiohttp.ClientError as exc:
                reason, cause = type(exc).__name__, exc
            else:
                if 200 <= status < 300:
                    return True, json.loads(raw)
                if status == 404:
                    return False, None
                if status < 500 and status not in _RETRYABLE_STATUSES:
                    _log_failure(endpoint, f"HTTP {status}", attempt)
                    error = (
                        ShopUnavailable
                        if status in _CREDENTIAL_STATUSES or status < 400
                        else _Refused
                    )
                    raise error(f"store {endpoint} lookup refused: HTTP {status}")
                reason, cause = f"HTTP {status}", None
            if attempt < self._max_attempts:
                logger.info(
                    "store attempt failed, retrying: endpoint=%s reason=%s attempt=%d",
                    endpoint,
                    reason,
                    attempt,
                    extra={"endpoint": endpoint, "reason": reason, "attempt": attempt},
                )
        _log_failure(endpoint, reason, self._max_attempts)
        raise ShopUnavailable(f"store {endpoint} lookup failed: {reason}") from cause

    def _record(self, *, ok: bool) -> None:
        """Tell the breaker; log when it opens or closes (not on every call while open)."""
        breaker = self.breaker
        if breaker is None:
            return
        before = breaker.state
        if ok:
            breaker.record_success()
        else:
            breaker.record_failure()
        after = breaker.state
        if after == before:
            return
        if after == "open":
            logger.warning(
                "store circuit opened: lookups fail at once for %gs", breaker.reset_after_s
            )
        elif after == "closed":
            logger.info("store circuit closed: the store answers again")


def _log_failure(endpoint: str, reason: str, attempts: int) -> None:
    logger.warning(
        "store lookup failed: endpoint=%s reason=%s attempts=%d",
        endpoint,
        reason,
        attempts,
        extra={"endpoint": endpoint, "reason": reason, "attempts": attempts},
    )


def _customer_id(data: Any) -> str:
    value = data.get("customer_id") if isinstance(data, dict) else None
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise ValueError("customer link: 'customer_id' is missing or not a string")
    return str(value)


def _order_list(data: Any) -> list[Order]:
    return [order_from_json(item) for item in _list(data, "orders")]


def _product_list(data: Any) -> list[Product]:
    return [product_from_json(item) for item in _list(data, "products")]


def _list(data: Any, name: str) -> list[Any]:
    value = data.get(name) if isinstance(data, dict) else None
    if not isinstance(value, list):
        raise ValueError(f"{name!r} must be a list")
    return value
