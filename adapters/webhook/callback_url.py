"""Which callback URLs peakdesk posts replies to: the guard against server-side request
forgery through a message's ``callback_url`` (README: the webhook contract).

A URL is trusted as configured when it is ``WEBHOOK_CALLBACK_URL`` or matches an entry of
``WEBHOOK_CALLBACK_ALLOW``. Any other URL a message names is checked twice: its host at
admission (IP literals in every form the system resolver takes, internal names), and the
addresses its name resolves to at delivery, by the resolver of the callbacks' own connector
(:class:`PublicAddressResolver`). The addresses that resolver vets are the ones the connection
is made to: there is no second lookup a rebinding DNS server could answer differently.
"""

from __future__ import annotations

import enum
import ipaddress
import socket
from dataclasses import dataclass

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_PRIVATE = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT
_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # an IPv4 address in the last 32 bits
# Names that only mean something inside a network (the cloud metadata service among them).
_INTERNAL_SUFFIXES = (".internal", ".local", ".localdomain", ".lan", ".home.arpa", ".intranet")
_INTERNAL_NAMES = frozenset({"metadata.goog"})


class CallbackRefused(ValueError):
    """peakdesk will not post to this callback URL; the message says why (never the URL)."""


class Trust(enum.Enum):
    CONFIGURED = "configured"  # the operator named it: posted to as it is
    CHECKED = "checked"  # public by its name: its addresses are checked at delivery


def address_kind(address: Address) -> str | None:
    """What makes ``address`` internal ("loopback", "private", ...); None for a public one.
    An IPv4 address inside IPv6 (mapped, NAT64, 6to4) is judged as that IPv4 address."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = address.ipv4_mapped or address.sixtofour
        if inner is None and address in _NAT64:
            inner = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if inner is not None:
            return address_kind(inner)
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:  # 169.254.169.254, the cloud metadata service, among them
        return "link-local"
    if address in _UNIQUE_LOCAL:
        return "unique local"
    if address.is_multicast:
        return "multicast"
    if any(address in network for network in _PRIVATE):
        return "private"
    if address in _SHARED:
        return "shared"
    site_local = isinstance(address, ipaddress.IPv6Address) and address.is_site_local
    if address.is_reserved or site_local or not address.is_global:
        return "reserved"
    return None


def literal_address(host: str) -> Address | None:
    """The address ``host`` is written as, in any form the system resolver reads as one
    (``0x7f.1``, ``2130706433``, ``0177.0.0.1``...); None for a host name. CallbackRefused for
    an IPv4 address that is not a canonical dotted quad: only that form is taken."""
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            raise CallbackRefused(f"{host} is not an IPv6 address") from None
    try:
        packed = socket.inet_aton(host)
    except OSError:
        return None
    address = ipaddress.IPv4Address(packed)
    if str(address) != host:
        raise CallbackRefused(f"{host} is an IPv4 address not written as a dotted quad")
    return address


def _host_name(host: str) -> str:
    return host.lower().rstrip(".")


@dataclass(frozen=True, slots=True)
class AllowEntry:
    """One entry of WEBHOOK_CALLBACK_ALLOW: a host (``*.example.com``: its subdomains; any
    scheme, port and path), or a URL prefix (that scheme, host and port; the path or below)."""

    host: str
    subdomains: bool = False
    scheme: str | None = None
    port: int | None = None
    path: str = "/"

    @classmethod
    def parse(cls, entry: str) -> AllowEntry:
        entry = entry.strip()
        if "://" in entry:
            try:
                url = URL(entry)
            except ValueError:
                raise ValueError(f"{entry!r}: not a URL") from None
            if url.scheme not in ("http", "https") or not url.host:
                raise ValueError(f"{entry!r}: a URL prefix must be an http(s) URL")
            if url.raw_user is not None or url.raw_password is not None:
                raise ValueError(f"{entry!r}: no user name or password")
            if url.raw_query_string or url.raw_fragment:
                raise ValueError(f"{entry!r}: no query or fragment in a URL prefix")
            return cls(_host_name(url.host), scheme=url.scheme, port=url.port, path=url.raw_path)
        subdomains = entry.startswith("*.")
        host = entry[2:] if subdomains else entry
        try:
            authority = URL.build(scheme="http", host=host).raw_authority if host else ""
        except ValueError:
            authority = ""
        if not authority or authority != host.lower():
            raise ValueError(f"{entry!r}: a host name, *.domain or an http(s) URL prefix")
        return cls(_host_name(host), subdomains=subdomains)

    def matches(self, url: URL) -> bool:
        host = _host_name(url.host or "")
        if not (host.endswith("." + self.host) if self.subdomains else host == self.host):
            return False
        if self.scheme is None:
            return True
        if (url.scheme, url.port) != (self.scheme, self.port):
            return False
        # The path as sent (yarl resolved its dot segments, encoded ones too; an encoded "/"
        # stays encoded, so "/cb%2F..%2Fadmin" is not under "/cb/"); whole segments only.
        below = self.path if self.path.endswith("/") else self.path + "/"
        return url.raw_path == self.path or url.raw_path.startswith(below)


def parse_allow_list(value: str) -> tuple[AllowEntry, ...]:
    """WEBHOOK_CALLBACK_ALLOW: comma-separated entries; ValueError naming a bad one."""
    return tuple(AllowEntry.parse(entry) for entry in value.split(",") if entry.strip())


@dataclass(frozen=True)
class CallbackPolicy:
    """Which callback URLs are posted to: ``configured`` (WEBHOOK_CALLBACK_URL) and the
    ``allow`` entries as they are; without ``allow``, any other public one. Loopback addresses
    count as public only when the server itself listens on loopback (development)."""

    configured: str | None = None
    allow: tuple[AllowEntry, ...] = ()
    loopback: bool = False

    def vet(self, url: str) -> Trust:
        """How far ``url`` is trusted; CallbackRefused when no reply may be posted to it."""
        if url == self.configured:
            return Trust.CONFIGURED
        try:
            parsed = URL(url)
        except ValueError:
            raise CallbackRefused("not a valid URL") from None
        if parsed.raw_user is not None or parsed.raw_password is not None:
            raise CallbackRefused("must not carry a user name or password")
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise CallbackRefused("must be an http(s) URL with a host")
        if self.allow:
            if any(entry.matches(parsed) for entry in self.allow):
                return Trust.CONFIGURED
            raise CallbackRefused("matches no entry of WEBHOOK_CALLBACK_ALLOW")
        refusal = self._host_refusal(_host_name(parsed.host))
        if refusal is not None:
            raise CallbackRefused(refusal)
        return Trust.CHECKED

    def address_refusal(self, address: Address) -> str | None:
        """Why no callback may connect to ``address``; None when it may."""
        kind = address_kind(address)
        if kind is None or (kind == "loopback" and self.loopback):
            return None
        article = "an" if kind == "unspecified" else "a"
        return f"{address} is {article} {kind} address"

    def _host_refusal(self, host: str) -> str | None:
        address = literal_address(host)
        if address is not None:
            return self.address_refusal(address)
        if host == "localhost" or host.endswith(".localhost"):
            return None if self.loopback else f"{host} is a loopback name"
        if "." not in host:  # resolved with the search domains of peakdesk's own network
            return f"{host} is an internal name (no domain)"
        if host in _INTERNAL_NAMES or host.endswith(_INTERNAL_SUFFIXES):
            return f"{host} is an internal name"
        return None


class AddressRefused(OSError):
    """Every address a callback's host resolved to is one no callback may connect to."""


class PublicAddressResolver(AbstractResolver):
    """The resolver of the connector for checked callback URLs: it leaves out the addresses
    the policy refuses, and fails with AddressRefused when none is left."""

    def __init__(self, policy: CallbackPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self.inner = inner or ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self.inner.resolve(host, port, family)
        allowed: list[ResolveResult] = []
        refusals: list[str] = []
        for result in results:
            refusal = self.policy.address_refusal(ipaddress.ip_address(result["host"]))
            if refusal is None:
                allowed.append(result)
            else:
                refusals.append(refusal)
        if refusals and not allowed:
            raise AddressRefused(f"{host}: {refusals[0]}")
        return allowed

    async def close(self) -> None:
        await self.inner.close()
