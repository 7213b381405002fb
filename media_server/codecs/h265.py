"""What an H.265 stream's SPS says (ITU-T H.265 7.3.2.2): profile, tier, level and the
picture size, so the stream's view shows them as it does for H.264, and what an MP4
`hvcC` box and an RFC 6381 codecs string restate of it."""

from __future__ import annotations

from dataclasses import dataclass

from media_server.codecs.h264 import START_CODE, _BitReader, _unescape, iter_nals, nal_heads

NAL_VPS = 32
NAL_SPS = 33
NAL_PPS = 34
NAL_AUD = 35
#: Intra random access points (BLA, IDR, CRA): where decoding can start.
NAL_IRAP = range(16, 24)
PROFILES = {1: "main", 2: "main-10", 3: "main-still-picture", 4: "range-extensions"}


@dataclass(frozen=True, slots=True)
class SpsInfo:
    profile_idc: int
    tier: int  # 0 main, 1 high
    level_idc: int  # 30 x the level: 93 is level 3.1
    width: int
    height: int
    profile_space: int = 0
    compatibility: int = 0  # general_profile_compatibility_flags, 32 bits
    constraints: int = 0  # general constraint indicator flags, 48 bits
    chroma_format_idc: int = 1
    bit_depth_luma: int = 8
    bit_depth_chroma: int = 8

    @property
    def codecs(self) -> str:
        """The RFC 6381 codecs value of an `hvc1` track (ISO/IEC 14496-15 E.3)."""
        space = ("", "A", "B", "C")[self.profile_space]
        reversed_flags = int(f"{self.compatibility:032b}"[::-1], 2)
        constraint_bytes = self.constraints.to_bytes(6, "big").rstrip(b"\0")
        parts = [
            "hvc1",
            f"{space}{self.profile_idc}",
            f"{reversed_flags:X}",
            f"{'H' if self.tier else 'L'}{self.level_idc}",
            *(f"{byte:X}" for byte in constraint_bytes),
        ]
        return ".".join(parts)

    @property
    def sdp_parameters(self) -> dict[str, str]:
        """The `fmtp` of an RTP stream of it (RFC 7798 7.1): what a WebRTC answer states."""
        return {
            "level-id": str(self.level_idc),
            "profile-id": str(self.profile_idc),
            "tier-flag": str(self.tier),
            "tx-mode": "SRST",
        }

    def decodable_by(self, parameters: dict[str, object]) -> bool:
        """Whether a receiver that offers `parameters` (an H.265 `fmtp`; RFC 7798's
        defaults where one is left out: Main, main tier, level 3.1) decodes this stream:
        the same profile, at a tier and level no lower."""
        try:
            profile = int(str(parameters.get("profile-id", 1)))
            tier = int(str(parameters.get("tier-flag", 0)))
            level = int(str(parameters.get("level-id", 93)))
        except ValueError:
            return False
        return profile == self.profile_idc and tier >= self.tier and level >= self.level_idc

    @property
    def fps(self) -> float | None:
        """Not read (its VUI timing is not parsed): the stream's rate comes from elsewhere."""
        return None

    @property
    def profile_name(self) -> str:
        return PROFILES.get(self.profile_idc, f"profile-{self.profile_idc}")


def parse_sps(nal: bytes) -> SpsInfo:
    """The fields of an SPS NAL unit (its 2-byte header included) size and profile need."""
    r = _BitReader(_unescape(nal[2:]))
    r.bits(4)  # sps_video_parameter_set_id
    sub_layers = r.bits(3)  # sps_max_sub_layers_minus1
    r.bit()  # sps_temporal_id_nesting_flag
    # profile_tier_level(1, sub_layers): the general profile, 88 bits, then the level.
    space = r.bits(2)  # general_profile_space
    tier = r.bit()
    profile_idc = r.bits(5)
    compatibility = r.bits(32)  # general_profile_compatibility_flags
    # progressive, interlaced, non-packed, frame-only, then 44 bits of constraints
    constraints = r.bits(32) << 16 | r.bits(16)
    level_idc = r.bits(8)
    present = [(r.bit(), r.bit()) for _ in range(sub_layers)]
    if sub_layers:
        r.bits(2 * (8 - sub_layers))  # reserved_zero_2bits
    for profile_present, level_present in present:
        if profile_present:
            r.bits(32)
            r.bits(32)
            r.bits(24)  # 88 bits of the sub-layer's profile
        if level_present:
            r.bits(8)
    r.ue()  # sps_seq_parameter_set_id
    chroma_format_idc = r.ue()
    if chroma_format_idc == 3:
        r.bit()  # separate_colour_plane_flag
    width, height = r.ue(), r.ue()
    if r.bit():  # conformance_window_flag
        left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
        sub_width = 2 if chroma_format_idc in (1, 2) else 1
        sub_height = 2 if chroma_format_idc == 1 else 1
        width -= (left + right) * sub_width
        height -= (top + bottom) * sub_height
    luma, chroma = r.ue() + 8, r.ue() + 8  # bit_depth_luma_minus8, bit_depth_chroma_minus8
    return SpsInfo(
        profile_idc,
        tier,
        level_idc,
        width,
        height,
        space,
        compatibility,
        constraints,
        chroma_format_idc,
        luma,
        chroma,
    )


def find_sps(data: bytes) -> SpsInfo | None:
    """The first SPS of an Annex-B buffer, parsed; None when there is none that parses."""
    for nal in iter_nals(data):
        if len(nal) > 2 and (nal[0] >> 1) & 0x3F == NAL_SPS:
            try:
                return parse_sps(nal)
            except (IndexError, ValueError):
                return None
    return None


def nal_types(data: bytes) -> set[int]:
    """NAL unit types present in an Annex-B buffer."""
    return {(head >> 1) & 0x3F for head in nal_heads(data)}


def parameter_sets(data: bytes) -> bytes:
    """The VPS, SPS and PPS NAL units of a buffer, as Annex-B (empty when absent)."""
    kinds = (NAL_VPS, NAL_SPS, NAL_PPS)
    return b"".join(START_CODE + nal for nal in iter_nals(data) if (nal[0] >> 1) & 0x3F in kinds)


def browser_safe(sps: SpsInfo | None) -> bool:
    """Whether browsers that decode H.265 decode the stream untouched: Main or Main 10
    (what WebRTC's H.265 negotiates; B-frames are checked separately)."""
    return sps is not None and sps.profile_idc in (1, 2)
