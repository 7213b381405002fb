"""Which media path a stream takes: passthrough when browsers decode the source as it is
(H.265 too, where its H.264 viewers can share a transcode)."""

from __future__ import annotations

import pytest

from media_server.ingest.source import PermanentSourceError
from media_server.ingest.worker import choose_mode
from media_server.model.media import SourceInfo


def info(codec: str = "h264", safe: bool = True) -> SourceInfo:
    return SourceInfo(codec, 640, 480, 30.0, "main", b"", safe)


def test_auto() -> None:
    assert choose_mode("auto", info()) == "passthrough"
    assert choose_mode("auto", info(safe=False)) == "transcode"
    assert choose_mode("auto", info("hevc")) == "passthrough"
    assert choose_mode("auto", info("hevc", safe=False)) == "transcode"  # B-frames, say
    assert choose_mode("auto", info("mpeg4")) == "transcode"


def test_explicit() -> None:
    assert choose_mode("transcode", info()) == "transcode"
    assert choose_mode("passthrough", info(safe=False)) == "passthrough"
    assert choose_mode("passthrough", info("hevc")) == "passthrough"
    with pytest.raises(PermanentSourceError, match=r"H\.264 or H\.265"):
        choose_mode("passthrough", info("mpeg4"))
