"""Safe sources: deny lists, allow lists, resolution and pinning (no network needed)."""

from __future__ import annotations

import pytest

from media_server.config import DEFAULT_DENY, ConfigError
from media_server.ingest.guard import SourceDenied, SourceGuard, own_addresses


@pytest.mark.parametrize(
    "url",
    [
        "rtsp://169.254.169.254/latest",
        "rtsp://[fe80::1]/x",
        "rtsp://[::ffff:169.254.169.254]/x",
        "rtsp://100.100.100.200/x",
        "rtsp://0.0.0.0/x",
        "rtsp://metadata.google.internal/x",
        "rtsps://u:p@169.254.1.1:322/x",
    ],
)
def test_metadata_and_link_local_denied_by_default(url: str) -> None:
    with pytest.raises(SourceDenied, match="not allowed"):
        SourceGuard([], DEFAULT_DENY).check_url(url)


def test_ordinary_hosts_pass_by_default() -> None:
    guard = SourceGuard([], DEFAULT_DENY)
    for url in ("rtsp://10.0.0.5/x", "rtsp://cam.example/x", "rtsp://127.0.0.1:8554/x"):
        guard.check_url(url)


def test_allow_list() -> None:
    guard = SourceGuard(["10.1.0.0/16", "*.cams.example", "nvr.lan"], DEFAULT_DENY)
    for url in ("rtsp://10.1.2.3/x", "rtsp://a.cams.example/x", "rtsp://nvr.lan/x"):
        guard.check_url(url)
    for url in ("rtsp://10.2.0.1/x", "rtsp://cams.example.evil/x", "rtsp://other.lan/x"):
        with pytest.raises(SourceDenied, match="allowed sources"):
            guard.check_url(url)


def test_resolution_is_checked_and_pinned() -> None:
    guard = SourceGuard([], ["127.0.0.0/8"])
    with pytest.raises(SourceDenied, match=r"127\.0\.0\.0/8"):
        guard.upstream("rtsp://localhost:8554/x")  # resolves to a denied address
    open_guard = SourceGuard([], [])
    plain = open_guard.upstream("rtsp://u:p@localhost:8554/x?a=1")
    assert (plain.address, plain.port, plain.tls_name) in (
        ("127.0.0.1", 8554, None),
        ("::1", 8554, None),
    )
    tls = open_guard.upstream("rtsps://localhost/x")  # pinned too, the name kept for SNI
    assert tls.address in ("127.0.0.1", "::1") and (tls.port, tls.tls_name) == (322, "localhost")


@pytest.mark.parametrize("entry", ["not a host!", "", "10.0.0.0/33", "a..b"])
def test_bad_entries_are_config_errors(entry: str) -> None:
    with pytest.raises(ConfigError, match=r"sources\.deny"):
        SourceGuard([], [entry])


@pytest.mark.parametrize(
    "host",
    [
        "2852039166",  # decimal
        "0251.0376.0251.0376",  # octal
        "0xa9fea9fe",  # hex
        "169.254.43518",  # short form
        "169.254.169.254.",  # trailing dot
        "[::a9fe:a9fe]",  # IPv4-compatible
        "[64:ff9b::a9fe:a9fe]",  # NAT64
        "[2002:a9fe:a9fe::1]",  # 6to4
        "[::ffff:169.254.169.254]",  # IPv4-mapped
        "[::ffff:0:a9fe:a9fe]",  # IPv4-translated (SIIT)
        "[64:ff9b:1::a9fe:a9fe]",  # local-use NAT64 (RFC 8215)
        "[64:ff9b:1:ab00::a9fe:a9fe]",  # ...any /96 in it
    ],
)
def test_other_spellings_of_denied_addresses(host: str) -> None:
    with pytest.raises(SourceDenied, match="not allowed"):
        SourceGuard([], DEFAULT_DENY).check_url(f"rtsp://{host}/x")


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1:6379",
        "0x7f.1",
        "127.1",
        "localhost",
        "cam.localhost",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "[::ffff:0:7f00:1]",
    ],
)
def test_this_host_is_denied_unless_loopback_cameras_are_allowed(host: str) -> None:
    """A gateway that listens beyond loopback is no way into its own host's services."""
    with pytest.raises(SourceDenied, match="own host"):
        SourceGuard([], DEFAULT_DENY, allow_loopback=False).check_url(f"rtsp://{host}/x")
    SourceGuard([], DEFAULT_DENY, allow_loopback=True).check_url(f"rtsp://{host}/x")


def test_its_own_addresses_are_this_host_too() -> None:
    own = [n for n in own_addresses() if not n.network_address.is_loopback]
    guard = SourceGuard([], DEFAULT_DENY, allow_loopback=False)
    for net in own:
        literal = f"[{net.network_address}]" if net.version == 6 else str(net.network_address)
        with pytest.raises(SourceDenied):
            guard.check_url(f"rtsp://{literal}/x")


def test_loopback_follows_where_the_gateway_listens() -> None:
    from media_server.config import load_settings

    local = SourceGuard.from_settings(load_settings(demo=False))
    local.check_url("rtsp://127.0.0.1:8554/x")
    exposed = SourceGuard.from_settings(load_settings(demo=False, host="0.0.0.0"))
    with pytest.raises(SourceDenied, match="own host"):
        exposed.check_url("rtsp://127.0.0.1:8554/x")
    allowed = load_settings(demo=False, host="0.0.0.0", sources={"allow_loopback": True})
    SourceGuard.from_settings(allowed).check_url("rtsp://127.0.0.1:8554/x")


@pytest.mark.parametrize("address", ["0.0.0.0", "224.0.0.251", "ff02::1", "169.254.169.254"])
def test_nowhere_and_denied_addresses_are_never_contacted(address: str) -> None:
    import ipaddress

    assert SourceGuard([], DEFAULT_DENY).denies(ipaddress.ip_address(address)) is not None
    assert SourceGuard([], DEFAULT_DENY).denies(ipaddress.ip_address("192.0.2.7")) is None
