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


def test_credentials_in_the_path_are_redacted() -> None:
    """XMEye-style cameras put them in the path, joined by `_`."""
    url = "rtsp://cam:554/user=admin_password=S3cret_channel=1_stream=0.sdp"
    assert redact_url(url) == "rtsp://cam:554/user=***_password=***_channel=1_stream=0.sdp"
    said = redact_text(f"could not open {url} (S3cret refused)", url)
    assert "S3cret" not in said and "admin" not in said


def test_a_fragment_is_refused() -> None:
    with pytest.raises(ValueError, match="fragment"):
        validate_source_url("rtsp://cam/live#password=x")
