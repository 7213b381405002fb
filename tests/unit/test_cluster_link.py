"""The internal link's secret: a warning when it would cross the network in clear."""

from __future__ import annotations

import logging

import pytest

from media_server.cluster.node import secret_in_clear, warn_if_in_clear


@pytest.mark.parametrize(
    ("url", "clear"),
    [
        ("http://10.0.0.5:8080", True),
        ("http://node-b.internal:8080", True),
        ("https://10.0.0.5:8080", False),
        ("http://127.0.0.1:8080", False),
        ("http://[::1]:8080", False),
        ("http://localhost:8080", False),
    ],
)
def test_plain_http_beyond_loopback_is_in_clear(url: str, clear: bool) -> None:
    assert secret_in_clear(url) is clear


def test_start_up_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        warn_if_in_clear("http://10.0.0.5:8080")
        warn_if_in_clear("https://10.0.0.5:8080")
    assert [r.getMessage().count("in clear") for r in caplog.records] == [1]
