"""How a viewer is served: names by mode and setting, and the canary's exact share."""

from __future__ import annotations

from media_server.config import load_settings
from media_server.streams.delivery import canary_turn, delivery


def test_names_by_mode_and_setting() -> None:
    settings = load_settings(demo=False)
    assert delivery(settings, "passthrough") == "engine"
    assert delivery(settings, "transcode") == "transcode-shared"
    assert delivery(settings, "auto") == "pending"
    other = load_settings(
        demo=False, webrtc={"media_path": "aiortc"}, transcode={"encode": "per_viewer"}
    )
    assert delivery(other, "passthrough") == "passthrough"
    assert delivery(other, "transcode") == "transcode-per-viewer"


def test_the_canary_applies_to_its_own_mode_only() -> None:
    settings = load_settings(demo=False, canary={"choice": "per_viewer", "percent": 50})
    assert delivery(settings, "transcode", canary=True) == "transcode-per-viewer"
    assert delivery(settings, "passthrough", canary=True) == "engine"


def test_the_canary_gets_exactly_its_share_spread_evenly() -> None:
    settings = load_settings(demo=False, canary={"choice": "aiortc", "percent": 25})
    turns = [canary_turn(settings, n) for n in range(40)]
    assert sum(turns) == 10 and turns[:4].count(True) == 1
    none = load_settings(demo=False, canary={"choice": None, "percent": 50})
    assert not any(canary_turn(none, n) for n in range(10))
