"""Safe sources: which hosts a camera URL may point at.

A gateway makes outbound connections to URLs users supply, so it must not become a way
into the network: link-local and cloud metadata addresses are denied by default, and an
operator may add deny entries or restrict sources to an allow list (addresses, networks,
host names, `*.suffix` patterns). A name's addresses are checked against the deny list
every time a camera is opened, and the connection (plain RTSP and rtsps alike) is then
made to the address checked (ingest/rtsp_gate.py), so a DNS answer that changes in
between cannot redirect it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
from urllib.parse import urljoin, urlsplit, urlunsplit

import ifaddr

from media_server.config import ConfigError, Settings
from media_server.ingest.rtsp_gate import Upstream
from media_server.ingest.source import PermanentSourceError, SourceError
from media_server.model.registration import validate_source_url
from media_server.urls import redact_url

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


HOST_PATTERN = re.compile(
    r"^(\*\.)?[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$"
)


class SourceDenied(PermanentSourceError):
    """The source's host is not allowed by the source policy."""


def _parse(entries: list[str], setting: str) -> tuple[list[Network], list[str]]:
    networks: list[Network] = []
    names: list[str] = []
    for entry in entries:
        text = entry.strip().lower()
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
            continue
        except ValueError:
            pass
        if not HOST_PATTERN.match(text):
            raise ConfigError(
                f"invalid setting '{setting}': {entry!r} is no address, network or host name"
            )
        names.append(text)
    return networks, names


def _name_matches(host: str, patterns: list[str]) -> bool:
    return any(host == p or (p.startswith("*.") and host.endswith(p[1:])) for p in patterns)


NAT64 = ipaddress.ip_network("64:ff9b::/96")
#: RFC 8215's local-use NAT64 prefix; any /96 in it carries IPv4 in its last 32 bits.
NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
#: IPv4-translated addresses (RFC 2765, SIIT): ::ffff:0:a.b.c.d.
TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")
SIX_TO_FOUR = ipaddress.ip_network("2002::/16")
#: Never a camera, never a viewer's candidate: nowhere to connect to, or everyone at once.
NOWHERE = [
    ipaddress.ip_network("0.0.0.0/8"),
    ipaddress.ip_network("::/128"),
    ipaddress.ip_network("224.0.0.0/4"),
    ipaddress.ip_network("255.255.255.255/32"),
    ipaddress.ip_network("ff00::/8"),
]
LOOPBACK = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]
LOOPBACK_NAMES = ["localhost", "*.localhost"]
NUMERIC_V4 = re.compile(r"^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}$")


def _address(text: str) -> Address | None:
    """The address a host string denotes, in every spelling resolvers accept
    (2852039166, 0251.0376.0251.0376, 0xa9fea9fe, [::ffff:a.b.c.d] ...)."""
    text = text.strip("[]").split("%", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        if not NUMERIC_V4.match(text):
            return None
        try:  # the forms inet_aton takes, as getaddrinfo (and so FFmpeg) would
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _embedded(address: Address) -> list[Address]:
    """The address plus any IPv4 address an IPv6 one carries to the same host."""
    found: list[Address] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        value = int(address)
        if value >> 32 == 0 and value > 1:  # IPv4-compatible ::a.b.c.d
            found.append(ipaddress.IPv4Address(value & 0xFFFFFFFF))
        if address in NAT64 or address in NAT64_LOCAL or address in TRANSLATED:
            found.append(ipaddress.IPv4Address(value & 0xFFFFFFFF))
        if address in SIX_TO_FOUR:
            found.append(ipaddress.IPv4Address((value >> 80) & 0xFFFFFFFF))
    return found


def own_addresses() -> list[Network]:
    """This host's own addresses, on every interface (as ICE gathers them)."""
    found: list[Network] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            text = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            with contextlib.suppress(ValueError):
                found.append(ipaddress.ip_network(text.split("%", 1)[0]))
    return found


class SourceGuard:
    def __init__(self, allow: list[str], deny: list[str], allow_loopback: bool = True) -> None:
        self._allow_nets, self._allow_names = _parse(allow, "sources.allow")
        self._deny_nets, self._deny_names = _parse(deny, "sources.deny")
        #: This host (loopback, localhost, its own addresses) unless loopback is allowed:
        #: a gateway others reach must not be their way into its own host's services.
        self._own_nets = [] if allow_loopback else [*LOOPBACK, *own_addresses()]
        self._own_names = [] if allow_loopback else LOOPBACK_NAMES

    @classmethod
    def from_settings(cls, settings: Settings) -> SourceGuard:
        sources = settings.sources
        loopback = sources.allow_loopback
        if loopback is None:
            loopback = settings.loopback_only
        return cls(sources.allow, sources.deny, loopback)

    @property
    def _has_allow(self) -> bool:
        return bool(self._allow_nets or self._allow_names)

    def denies(self, address: Address) -> str | None:
        """Why nobody may be contacted at `address` (denied, or nowhere), or None. This
        is the check for a viewer's ICE candidates too."""
        for candidate in _embedded(address):
            for net in self._deny_nets:
                if candidate.version == net.version and candidate in net:
                    return f"{net} is denied"
            for net in NOWHERE:
                if candidate.version == net.version and candidate in net:
                    return f"{net} is no host to contact"
        return None

    def _check_denied(self, address: Address, host: str) -> None:
        reason = self.denies(address)
        if reason is not None:
            raise SourceDenied(f"source host {host} is not allowed ({reason})")
        for candidate in _embedded(address):
            if any(candidate.version == n.version and candidate in n for n in self._own_nets):
                raise SourceDenied(
                    f"source host {host} is this gateway's own host "
                    "(sources.allow_loopback allows cameras there)"
                )

    def check_url(self, url: str) -> None:
        """At registration, without DNS. With an allow list, an address must be in one of
        its networks and a name must match one of its names."""
        host = (urlsplit(url).hostname or "").lower().rstrip(".")  # "name." is "name"
        address = _address(host)
        if address is not None:
            self._check_denied(address, host)
            allowed = any(address.version == n.version and address in n for n in self._allow_nets)
        else:
            if _name_matches(host, self._deny_names):
                raise SourceDenied(f"source host {host} is not allowed")
            if _name_matches(host, self._own_names):
                raise SourceDenied(
                    f"source host {host} is this gateway's own host "
                    "(sources.allow_loopback allows cameras there)"
                )
            allowed = _name_matches(host, self._allow_names)
        if self._has_allow and not allowed:
            raise SourceDenied(f"source host {host} is not in the allowed sources")

    def upstream(self, url: str) -> Upstream:
        """Resolve, check every address, and say where to connect: the checked address
        (so a DNS answer that changes in between cannot redirect the connection) and, for
        rtsps, the name to give TLS. Called in the ingest thread before each attempt."""
        self.check_url(url)
        parts = urlsplit(url)
        host = (parts.hostname or "").lower().rstrip(".")
        tls = parts.scheme.lower() == "rtsps"
        port = parts.port or (322 if tls else 554)
        literal = _address(host)
        if literal is not None:
            return Upstream(str(literal), port, host if tls else None)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise SourceError(f"cannot resolve {host}: {exc.strerror or exc}") from None
        addresses = []
        for info in infos:
            address = _address(str(info[4][0]))
            if address is not None:
                self._check_denied(address, host)  # every one: no mixing in a bad answer
                addresses.append(address)
        if not addresses:
            raise SourceError(f"{host} resolves to no address")
        return Upstream(str(addresses[0]), port, host if tls else None)

    def redirect(self, url: str, location: str) -> str:
        """Where a camera's redirect leads, if allowed (its credentials carried over when
        the Location has none, as FFmpeg does); else the stream fails, saying where it
        was sent. A camera URL as a registration's, and checked like one."""
        target = urljoin(url, location)
        parts, original = urlsplit(target), urlsplit(url)
        if "@" not in parts.netloc and "@" in original.netloc:
            userinfo = original.netloc.rsplit("@", 1)[0]
            target = urlunsplit(parts._replace(netloc=f"{userinfo}@{parts.netloc}"))
        shown = redact_url(target)
        try:
            target = validate_source_url(target)
            self.check_url(target)
        except SourceDenied as exc:
            raise SourceDenied(f"the camera redirected to {shown}: {exc}") from None
        except ValueError as exc:
            raise PermanentSourceError(f"the camera redirected to {shown}: {exc}") from None
        return target
