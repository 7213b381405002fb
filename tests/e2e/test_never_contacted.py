"""No address the source guard denies is ever contacted, however a caller names it: each
scenario runs in a network namespace of its own, with 169.254.169.254 (cloud metadata)
on loopback and a trap on it that must see nothing (tests/support/scenarios.py)."""

from __future__ import annotations

import json

import pytest

from tests.support.netns import namespace, run_in

pytestmark = pytest.mark.e2e


def test_a_viewers_candidates_never_reach_a_denied_address() -> None:
    """In a namespace of its own, with 169.254.169.254 on loopback and a trap on it: an
    offer naming it, a trickle naming it, too many candidates, a flood of PATCHes."""
    with namespace("169.254.169.254/32") as ns:
        result = json.loads(run_in(ns, "tests.support.scenarios", "candidates"))
    assert result["offer_status"] == 201, result["log"]
    assert result["datagrams"] == 0 and result["connections"] == 0, result["log"]
    assert result["trickle_metadata"] == [400, "candidate-refused"]
    assert [s for s, _ in result["trickle_many"]] == [204] * 20 + [400, 400]
    assert result["trickle_many"][-1][1] == "too-many-candidates"
    assert 429 in result["flood"] and result["flood"][0] == 204


def test_a_camera_redirect_or_source_never_reaches_a_denied_address() -> None:
    """FFmpeg followed RTSP redirects to any host; now the gate refuses them to FFmpeg and
    the guard decides: denied in any spelling fails the stream with the reason, allowed
    plays; a camera naming the metadata address as its UDP source gets nothing sent."""
    with namespace("169.254.169.254/32") as ns:
        result = json.loads(run_in(ns, "tests.support.scenarios", "redirects"))
    assert result["connections"] == 0 and result["datagrams"] == 0, result["log"]
    for name in ("denied", "spelled"):
        assert result[name]["state"] == "failed", result
        assert "redirected" in result[name]["error"] and "not allowed" in result[name]["error"]
    assert result["allowed"]["state"] == "live", result
    assert any(r.startswith("PLAY") for r in result["source_requests"]), result
