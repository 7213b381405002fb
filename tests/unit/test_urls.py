"""Camera URL rules and credential redaction."""

from __future__ import annotations

import pytest

from media_server.model.registration import validate_source_url
from media_server.urls import redact_text, redact_url


@pytest.mark.parametrize(
    "url", ["rtsp://cam.local/stream", "rtsps://10.0.0.5:322/a?b=c", "rtsp://u:p@h:554/x"]
)
def test_accepts_rtsp(url: str) -> None:
    assert validate_source_url(url) == url


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://cam/x", "rtsp://"),
        ("file:///etc/passwd", "rtsp://"),
        ("concat:rtsp://a|rtsp://b", "rtsp://"),
        ("rtsp:///nohost", "host"),
        ("rtsp://h:99999/x", "malformed"),
        ("rtsp://h/a b", "spaces"),
        ("rtsp://h/" + "a" * 3000, "longer"),
    ],
)
def test_rejects(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        validate_source_url(url)


def test_redaction() -> None:
    url = "rtsp://admin:s3cret@10.1.2.3:554/live"
    assert redact_url(url) == "rtsp://***@10.1.2.3:554/live"
    assert redact_url("rtsp://10.1.2.3/live") == "rtsp://10.1.2.3/live"
    text = f"Connection to {url} failed; password s3cret rejected"
    cleaned = redact_text(text, url)
    assert "s3cret" not in cleaned and "admin" not in cleaned


def test_query_string_credentials_are_redacted() -> None:
    url = "rtsp://cam/live?channel=1&user=admin&password=Sup3rS3cret&token=abcdef"
    shown = redact_url(url)
    assert shown == "rtsp://cam/live?channel=1&user=***&password=***&token=***"
    text = redact_text(f"failed {url}: 401 for Sup3rS3cret", url)
    assert "Sup3rS3cret" not in text and "abcdef" not in text and "channel=1" in text
