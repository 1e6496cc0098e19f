"""Server-side request forgery through ``callback_url`` (issue 14, finding 4), from outside:
signed bodies over real HTTP naming internal addresses, host names that resolve to them at
delivery time, and callbacks that answer with a redirect."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from pydantic import ValidationError
from redis.asyncio import Redis
from yarl import URL

from adapters.webhook.callback_url import (
    AddressRefused,
    CallbackPolicy,
    PublicAddressResolver,
    address_kind,
)
from bots.settings import describe_error
from core.keys import Keys
from tests.fakes.callback_receiver import CallbackReceiver
from tests.fakes.openai_server import FakeOpenAI
from tests.harness import Service, make_settings, message

# The server is reachable from outside: loopback callbacks are as internal as any other.
PUBLIC_HOST = "10.1.2.3"


def settings(keys: Keys, fake_llm: FakeOpenAI, **overrides: Any) -> Any:
    return make_settings(keys, holysheep_base_url=fake_llm.base_url, **overrides)


async def until(condition: Callable[[], Awaitable[bool]], timeout: float = 8.0) -> None:
    async with asyncio.timeout(timeout):
        while not await condition():  # noqa: ASYNC110 - the condition reads Redis
            await asyncio.sleep(0.05)


async def undelivered(redis: Redis, keys: Keys) -> list[dict[str, str]]:
    """The entries of ``{pd}:out:dead`` (every lane)."""
    entries: list[dict[str, str]] = []
    for lane in keys.lanes:
        found: Any = await redis.xrange(lane.dead_deliveries)
        entries += [fields for _, fields in found]
    return entries


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Host names the system resolver answers with the address the test maps them to (the
    gateway's DNS, or an attacker's, pointing a public-looking name at an internal address)."""
    names: dict[str, str] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        return real(names.get(name, host), port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return names


def named(receiver: CallbackReceiver, host: str) -> str:
    """The receiver's URL with a host name in place of its address."""
    return str(URL(receiver.url).with_host(host))


INTERNAL_CALLBACKS = [
    ("http://127.0.0.1:6379/", "loopback"),
    ("http://0x7f.1:6379/", "dotted quad"),
    ("http://2130706433/", "dotted quad"),
    ("http://0177.0.0.1/", "dotted quad"),
    ("http://127.1/", "dotted quad"),
    ("http://localhost:6379/", "loopback"),
    ("http://api.localhost/", "loopback"),
    ("http://[::1]:6379/", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),
    ("http://169.254.169.254/latest/meta-data/iam/", "link-local"),
    ("http://[fe80::1]/", "link-local"),
    ("http://[fd00::5]/", "unique local"),
    ("http://0.0.0.0:6379/", "unspecified"),
    ("http://[::]/", "unspecified"),
    ("http://10.0.0.5/cb", "private"),
    ("http://172.16.3.4/cb", "private"),
    ("http://192.168.1.1/cb", "private"),
    ("http://100.64.0.1/cb", "shared"),
    ("http://224.0.0.1/cb", "multicast"),
    ("http://metadata.google.internal/computeMetadata/v1/", "internal"),
    ("http://redis:6379/", "internal"),
    ("https://gw.example.com@127.0.0.1/cb", "user name"),
    ("http://user:pw@gw.example.com/cb", "user name"),
]


@pytest.mark.parametrize(("url", "reason"), INTERNAL_CALLBACKS)
async def test_a_callback_url_naming_an_internal_address_is_refused_with_400(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, url: str, reason: str
) -> None:
    async with Service(settings(keys, fake_llm, peakdesk_host=PUBLIC_HOST), redis) as svc:
        status, body, _ = await svc.post("gw", message(1, callback_url=url))
        depths = await svc.runtime.queue.depths()
    assert (status, body.get("field")) == (400, "callback_url"), body
    assert reason in body["error"]
    assert sum(depths.values()) == 0


async def test_on_loopback_a_loopback_callback_is_accepted_but_not_with_a_password(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    # Development: the server listens on loopback, and so does the gateway.
    with_password = receiver.url.replace("http://", "http://user:pw@")
    async with Service(settings(keys, fake_llm), redis) as svc:
        refused = await svc.post("gw", message(1, callback_url=with_password))
        metadata = await svc.post("gw", message(2, callback_url="http://169.254.169.254/"))
        accepted = await svc.post("gw", message(3, callback_url=receiver.url))
        await receiver.wait_for(1)
        await svc.post("gw", message(4, callback_url=receiver.url))
        await receiver.wait_for(2)  # after any callback of the earlier messages
    assert (refused[0], refused[1].get("field")) == (400, "callback_url"), refused
    assert (metadata[0], metadata[1].get("field")) == (400, "callback_url"), metadata
    assert accepted[0] == 202
    assert [c.body["message_id"] for c in receiver.received] == ["m-3", "m-4"]
    assert all("Authorization" not in c.headers for c in receiver.received)


async def test_a_callback_host_resolving_to_an_internal_address_is_not_contacted(
    redis: Redis,
    keys: Keys,
    fake_llm: FakeOpenAI,
    receiver: CallbackReceiver,
    fake_dns: dict[str, str],
) -> None:
    # Public-looking names, internal addresses: the check of the name at admission cannot
    # see it, the resolver of the callbacks' connector does (the address it vets is the one
    # it connects to: no second lookup an attacker's DNS could answer differently).
    fake_dns.update({"gw.example.com": "127.0.0.1", "meta.example.com": "169.254.169.254"})
    async with Service(settings(keys, fake_llm, peakdesk_host=PUBLIC_HOST), redis) as svc:
        first = await svc.post("gw", message(1, callback_url=named(receiver, "gw.example.com")))
        second = await svc.post("gw", message(2, callback_url="http://meta.example.com/"))
        await until(lambda: _set_aside_or_sent(redis, keys, receiver, 2))
    assert first[0] == second[0] == 202  # the names are fine, the addresses are not
    assert receiver.received == []
    reasons = sorted(entry["why"] for entry in await undelivered(redis, keys))
    assert reasons == [
        "callback_url refused: gw.example.com: 127.0.0.1 is a loopback address",
        "callback_url refused: meta.example.com: 169.254.169.254 is a link-local address",
    ]


async def test_a_callback_answering_a_redirect_is_posted_once_and_set_aside_with_the_reason(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    receiver.fail(302, times=100)
    async with Service(settings(keys, fake_llm, webhook_callback_url=receiver.url), redis) as svc:
        status, _, _ = await svc.post("gw", message(1))
        await until(lambda: _set_aside_or_sent(redis, keys, receiver, 1, posts=2))
        await asyncio.sleep(1.0)  # a retry would come within a second (backoff from 0.5 s)
    assert status == 202
    assert len(receiver.received) == 1, [c.at for c in receiver.received]
    [entry] = await undelivered(redis, keys)
    assert entry["why"] == "callback answered 302 (a redirect: not followed)"
    assert "r" in entry


async def test_with_webhook_callback_allow_only_matching_callback_urls_are_taken(
    redis: Redis,
    keys: Keys,
    fake_llm: FakeOpenAI,
    receiver: CallbackReceiver,
    fake_dns: dict[str, str],
) -> None:
    # The operator names the gateways: those are trusted as configured (internal ones too),
    # anything else is refused.
    fake_dns["gw.internal.example"] = "127.0.0.1"
    port = URL(receiver.url).port
    allow = f"gw.internal.example,*.hooks.example.com,{receiver.url}"
    overrides = {"peakdesk_host": PUBLIC_HOST, "webhook_callback_allow": allow}
    refused_urls = [
        "https://other.example.com/cb",
        "https://hooks.example.com/cb",  # *.hooks.example.com: its subdomains only
        "https://a.hooks.example.com.evil.test/cb",
        f"http://127.0.0.1:{port}/callbackx",
        f"http://127.0.0.1:{port}/other",
        f"{receiver.url}/../other",
        f"{receiver.url}%2F..%2Fother",
        "http://127.0.0.1:6379/callback",
        "https://user:pw@gw.internal.example/cb",
    ]
    async with Service(settings(keys, fake_llm, **overrides), redis) as svc:
        by_name = await svc.post(
            "gw", message(1, callback_url=named(receiver, "gw.internal.example"))
        )
        by_prefix = await svc.post("gw", message(2, callback_url=f"{receiver.url}?shop=a"))
        wildcard = await svc.post("gw", message(3, callback_url="https://a.b.hooks.example.com/"))
        refused = [await svc.post("gw", message(4, callback_url=url)) for url in refused_urls]
        await receiver.wait_for(2)
    assert (by_name[0], by_prefix[0], wildcard[0]) == (202, 202, 202)
    assert {c["message_id"] for c in receiver.accepted} == {"m-1", "m-2"}
    for url, (status, body, _) in zip(refused_urls, refused, strict=True):
        assert (status, body.get("field")) == (400, "callback_url"), url


async def test_the_configured_callback_url_is_trusted_as_configured(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    # WEBHOOK_CALLBACK_URL is the operator's own choice: a gateway beside peakdesk on loopback
    # or a private network is fine, wherever peakdesk listens.
    overrides = {"peakdesk_host": PUBLIC_HOST, "webhook_callback_url": receiver.url}
    async with Service(settings(keys, fake_llm, **overrides), redis) as svc:
        implicit = await svc.post("gw", message(1))
        explicit = await svc.post("gw", message(2, callback_url=receiver.url))
        await receiver.wait_for(2)
    assert implicit[0] == explicit[0] == 202


async def _set_aside_or_sent(
    redis: Redis, keys: Keys, receiver: CallbackReceiver, set_aside: int, posts: int = 1
) -> bool:
    """Whether ``set_aside`` replies are in the undelivered ones, or the receiver got
    ``posts`` requests (what the test says must not happen)."""
    return len(await undelivered(redis, keys)) >= set_aside or len(receiver.received) >= posts


# -- the policy's parts, without HTTP ------------------------------------------------------


class StaticResolver(AbstractResolver):
    """Answers every name with the given addresses."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(hostname=host, host=a, port=port, family=family, proto=0, flags=0)
            for a in self.addresses
        ]

    async def close(self) -> None:
        pass


async def test_the_callback_resolver_keeps_only_public_addresses() -> None:
    mixed = PublicAddressResolver(CallbackPolicy(), StaticResolver("10.0.0.5", "93.184.215.14"))
    internal = PublicAddressResolver(CallbackPolicy(), StaticResolver("fd00::5", "10.0.0.5"))
    assert [r["host"] for r in await mixed.resolve("gw.example.com", 443)] == ["93.184.215.14"]
    with pytest.raises(AddressRefused, match="fd00::5 is a unique local address"):
        await internal.resolve("gw.example.com", 443)


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("93.184.215.14", None),
        ("2606:4700::1111", None),
        ("127.0.0.2", "loopback"),
        ("::ffff:169.254.169.254", "link-local"),  # IPv4-mapped
        ("64:ff9b::a00:5", "private"),  # NAT64
        ("2002:a00:5::1", "private"),  # 6to4
        ("fe80::1%eth0", "link-local"),
        ("fec0::1", "reserved"),  # site-local, deprecated
        ("::7f00:1", "reserved"),  # IPv4-compatible, deprecated
        ("240.0.0.1", "reserved"),
        ("192.0.2.1", "reserved"),  # documentation
        ("ff02::1", "multicast"),
    ],
)
def test_addresses_are_judged_as_the_address_they_reach(address: str, kind: str | None) -> None:
    assert address_kind(ipaddress.ip_address(address)) == kind


@pytest.mark.parametrize(
    "entry",
    [
        "ftp://gw.example.com/",
        "https://u:p@gw.example.com/",
        "https://gw.example.com/?a=1",
        "gw.example.com:8443",
        "*.",
        "gw example",
        "bücher.example",
    ],
)
def test_a_bad_allow_entry_stops_start_up_naming_the_setting(entry: str) -> None:
    with pytest.raises(ValidationError) as error:
        make_settings(Keys("p"), webhook_callback_allow=f"gw.example.com, {entry}")
    assert "WEBHOOK_CALLBACK_ALLOW" in describe_error(error.value)
