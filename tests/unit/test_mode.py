"""Which media path a stream takes: passthrough when browsers decode the source as it is."""

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
    assert choose_mode("auto", info("hevc", safe=False)) == "transcode"


def test_explicit() -> None:
    assert choose_mode("transcode", info()) == "transcode"
    assert choose_mode("passthrough", info(safe=False)) == "passthrough"
    with pytest.raises(PermanentSourceError, match=r"H\.264"):
        choose_mode("passthrough", info("hevc"))
