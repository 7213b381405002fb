"""H.265 SPS: profile, tier, level and the picture size after its conformance window."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
from av.video.codeccontext import VideoCodecContext

from media_server.codecs import h265


def encoded(width: int, height: int) -> bytes:
    codec = av.CodecContext.create("libx265", "w")
    assert isinstance(codec, VideoCodecContext)
    codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
    codec.time_base = Fraction(1, 30)
    codec.options = {"x265-params": "log-level=none"}
    frame = av.VideoFrame.from_ndarray(np.zeros((height, width, 3), np.uint8), format="rgb24")
    frame = frame.reformat(format="yuv420p")
    frame.pts = 0
    out = b"".join(bytes(p) for p in codec.encode(frame))
    out += b"".join(bytes(p) for p in codec.encode(None))
    return bytes(codec.extradata or b"") + out


@pytest.mark.parametrize(("width", "height"), [(352, 288), (350, 286), (1920, 1080)])
def test_the_sps_gives_the_picture_size_and_profile(width: int, height: int) -> None:
    sps = h265.find_sps(encoded(width, height))
    assert sps is not None
    assert (sps.width, sps.height, sps.profile_name, sps.tier) == (width, height, "main", 0)
    assert sps.level_idc > 0


def test_no_sps_or_a_broken_one_is_none() -> None:
    assert h265.find_sps(b"\x00\x00\x00\x01\x26\x01\xaf") is None  # an IRAP slice only
    assert h265.find_sps(b"\x00\x00\x00\x01\x42\x01\x01") is None  # an SPS cut short


@pytest.mark.parametrize(
    ("profile", "compatibility", "tier", "level", "codecs"),
    [
        (1, 0x60000000, 0, 93, "hvc1.1.6.L93.B0"),  # Main, level 3.1 (RFC 6381 / Apple)
        (2, 0x20000000, 0, 123, "hvc1.2.4.L123.B0"),  # Main 10, level 4.1
        (1, 0x60000000, 1, 150, "hvc1.1.6.H150.B0"),  # high tier
    ],
)
def test_the_codecs_string_restates_profile_tier_level_and_constraints(
    profile: int, compatibility: int, tier: int, level: int, codecs: str
) -> None:
    info = h265.SpsInfo(profile, tier, level, 1920, 1080, 0, compatibility, 0xB0 << 40)
    assert info.codecs == codecs


def test_sdp_terms_and_which_receivers_decode_it() -> None:
    """What an answer states (RFC 7798 7.1), and whether an offer's H.265 decodes the
    stream: the same profile at a tier and level no lower; RFC 7798's defaults (Main,
    main tier, level 3.1) where an offer leaves them out."""
    info = h265.SpsInfo(1, 0, 120, 1920, 1080)  # Main, level 4
    assert info.sdp_parameters == {
        "level-id": "120",
        "profile-id": "1",
        "tier-flag": "0",
        "tx-mode": "SRST",
    }
    assert info.decodable_by({"profile-id": "1", "tier-flag": "0", "level-id": "180"})
    assert info.decodable_by({"profile-id": 1, "level-id": 120})  # as aiortc parses them
    assert not info.decodable_by({"profile-id": "1", "level-id": "93"})  # level too low
    assert not info.decodable_by({})  # the defaults: level 3.1
    assert not info.decodable_by({"profile-id": "2", "level-id": "180"})  # Main 10 only
    assert not info.decodable_by({"profile-id": "x"})
    assert h265.SpsInfo(1, 0, 93, 640, 480).decodable_by({})
    assert not h265.SpsInfo(1, 1, 93, 640, 480).decodable_by({})  # high tier


def test_nal_types_and_parameter_sets_of_an_access_unit() -> None:
    data = encoded(352, 288)
    types = h265.nal_types(data)
    assert {h265.NAL_VPS, h265.NAL_SPS, h265.NAL_PPS} <= types
    assert types & set(h265.NAL_IRAP)
    sets = h265.parameter_sets(data)
    assert h265.nal_types(sets) == {h265.NAL_VPS, h265.NAL_SPS, h265.NAL_PPS}
    assert h265.browser_safe(h265.find_sps(sets))
    assert not h265.browser_safe(None)
