"""Safe sources: deny lists, allow lists, resolution and pinning (no network needed)."""

from __future__ import annotations

import pytest

from media_server.config import DEFAULT_DENY, ConfigError
from media_server.ingest.guard import SourceDenied, SourceGuard


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
        guard.pinned_url("rtsp://localhost:8554/x")  # resolves to a denied address
    open_guard = SourceGuard([], [])
    assert open_guard.pinned_url("rtsp://u:p@localhost:8554/x?a=1") in (
        "rtsp://u:p@127.0.0.1:8554/x?a=1",
        "rtsp://u:p@[::1]:8554/x?a=1",
    )
    assert open_guard.pinned_url("rtsps://localhost/x") == "rtsps://localhost/x"  # keeps SNI


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
    ],
)
def test_other_spellings_of_denied_addresses(host: str) -> None:
    with pytest.raises(SourceDenied, match="not allowed"):
        SourceGuard([], DEFAULT_DENY).check_url(f"rtsp://{host}/x")
