"""H.264 Annex-B inspection: NAL types, parameter sets and the SPS fields the gateway needs.

Passthrough never decodes, yet it must know whether a packet is a keyframe, whether the
keyframe carries SPS/PPS (many cameras send them only in the SDP), and which profile the
source uses (browsers decode constrained baseline and main without B-frames as they are).
"""

from __future__ import annotations

from dataclasses import dataclass

NAL_SLICE = 1
NAL_IDR = 5
NAL_SEI = 6
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9

START_CODE = b"\x00\x00\x00\x01"

PROFILE_BASELINE = 66
PROFILE_MAIN = 77
PROFILE_EXTENDED = 88
PROFILE_HIGH = 100


def iter_nals(data: bytes) -> list[bytes]:
    """Split an Annex-B buffer into NAL units (without start codes)."""
    nals: list[bytes] = []
    n = len(data)
    pos = data.find(b"\x00\x00\x01")
    while 0 <= pos < n:
        start = pos + 3
        nxt = data.find(b"\x00\x00\x01", start)
        end = n if nxt < 0 else nxt
        # A 4-byte start code leaves a trailing zero on the previous NAL.
        if nxt >= 0 and end > start and data[end - 1] == 0:
            end -= 1
        if end > start:
            nals.append(data[start:end])
        pos = nxt
    return nals


def nal_heads(data: bytes) -> set[int]:
    """The first byte of each NAL unit of an Annex-B buffer (where its type is, in either
    codec); cheap (finds start codes in C)."""
    heads: set[int] = set()
    pos = data.find(b"\x00\x00\x01")
    n = len(data)
    while pos >= 0 and pos + 3 < n:
        heads.add(data[pos + 3])
        pos = data.find(b"\x00\x00\x01", pos + 3)
    return heads


def nal_types(data: bytes) -> set[int]:
    """NAL unit types present in an Annex-B buffer."""
    return {head & 0x1F for head in nal_heads(data)}


def avcc_extradata_to_annexb(extradata: bytes) -> bytes:
    """Convert an avcC record (ISO 14496-15) to Annex-B SPS/PPS; Annex-B input is returned as is."""
    if not extradata or extradata[0] != 1:
        return extradata
    out = bytearray()
    pos = 5
    try:
        for mask in (0x1F, 0xFF):  # SPS list (count in 5 bits), then PPS list
            count = extradata[pos] & mask
            pos += 1
            for _ in range(count):
                size = int.from_bytes(extradata[pos : pos + 2], "big")
                pos += 2
                out += START_CODE + extradata[pos : pos + size]
                pos += size
    except IndexError:
        return bytes(out)
    return bytes(out)


def parameter_sets(data: bytes) -> bytes:
    """The SPS and PPS NAL units of a buffer, re-emitted as Annex-B (empty when absent)."""
    return b"".join(START_CODE + nal for nal in iter_nals(data) if nal and nal[0] & 0x1F in (7, 8))


class _BitReader:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def bit(self) -> int:
        byte = self._data[self._pos >> 3]
        value = (byte >> (7 - (self._pos & 7))) & 1
        self._pos += 1
        return value

    def bits(self, n: int) -> int:
        value = 0
        for _ in range(n):
            value = (value << 1) | self.bit()
        return value

    def ue(self) -> int:
        zeros = 0
        while self.bit() == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("bad exp-golomb code")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def _unescape(nal: bytes) -> bytes:
    """Remove emulation prevention bytes (00 00 03 -> 00 00)."""
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


@dataclass(frozen=True, slots=True)
class SpsInfo:
    profile_idc: int
    constraint_flags: int
    level_idc: int
    width: int
    height: int
    #: From the VUI's timing info, where the encoder wrote it (most do).
    fps: float | None = None

    @property
    def constrained_baseline(self) -> bool:
        return self.profile_idc == PROFILE_BASELINE and bool(self.constraint_flags & 0x40)

    @property
    def profile_name(self) -> str:
        names = {
            PROFILE_BASELINE: "constrained-baseline" if self.constrained_baseline else "baseline",
            PROFILE_MAIN: "main",
            PROFILE_EXTENDED: "extended",
            PROFILE_HIGH: "high",
        }
        return names.get(self.profile_idc, f"profile-{self.profile_idc}")


def _skip_scaling_list(r: _BitReader, size: int) -> None:
    last, nxt = 8, 8
    for _ in range(size):
        if nxt != 0:
            nxt = (last + r.se() + 256) % 256
        last = nxt if nxt != 0 else last


def parse_sps(nal: bytes) -> SpsInfo:
    """Parse the fields of an SPS NAL (header byte included) that size and profile need."""
    rbsp = _unescape(nal[1:])
    r = _BitReader(rbsp)
    profile_idc = r.bits(8)
    constraint_flags = r.bits(8)
    level_idc = r.bits(8)
    r.ue()  # seq_parameter_set_id
    chroma_format_idc = 1
    if profile_idc in (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135):
        chroma_format_idc = r.ue()
        if chroma_format_idc == 3:
            r.bit()  # separate_colour_plane_flag
        r.ue()  # bit_depth_luma_minus8
        r.ue()  # bit_depth_chroma_minus8
        r.bit()  # qpprime_y_zero_transform_bypass_flag
        if r.bit():  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format_idc != 3 else 12):
                if r.bit():
                    _skip_scaling_list(r, 16 if i < 6 else 64)
    r.ue()  # log2_max_frame_num_minus4
    pic_order_cnt_type = r.ue()
    if pic_order_cnt_type == 0:
        r.ue()
    elif pic_order_cnt_type == 1:
        r.bit()
        r.se()
        r.se()
        for _ in range(r.ue()):
            r.se()
    r.ue()  # max_num_ref_frames
    r.bit()  # gaps_in_frame_num_value_allowed_flag
    width_mbs = r.ue() + 1
    height_map_units = r.ue() + 1
    frame_mbs_only = r.bit()
    if not frame_mbs_only:
        r.bit()  # mb_adaptive_frame_field_flag
    r.bit()  # direct_8x8_inference_flag
    width = width_mbs * 16
    height = height_map_units * 16 * (2 - frame_mbs_only)
    if r.bit():  # frame_cropping_flag
        left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
        crop_x = 1 if chroma_format_idc == 0 else 2
        crop_y = (1 if chroma_format_idc in (0, 3) else 2) * (2 - frame_mbs_only)
        if chroma_format_idc == 3:
            crop_x = 1
        width -= (left + right) * crop_x
        height -= (top + bottom) * crop_y
    fps = None
    if r.bit():  # vui_parameters_present_flag
        try:
            fps = _vui_fps(r)
        except IndexError:  # a VUI cut short: the size and profile still stand
            fps = None
    return SpsInfo(profile_idc, constraint_flags, level_idc, width, height, fps)


def _vui_fps(r: _BitReader) -> float | None:
    """The frame rate a VUI's timing info gives (H.264 E.1.1), or None without one."""
    if r.bit() and r.bits(8) == 255:  # aspect_ratio_info_present_flag, aspect_ratio_idc
        r.bits(32)  # sar_width, sar_height
    if r.bit():  # overscan_info_present_flag
        r.bit()
    if r.bit():  # video_signal_type_present_flag
        r.bits(4)  # video_format, video_full_range_flag
        if r.bit():  # colour_description_present_flag
            r.bits(24)
    if r.bit():  # chroma_loc_info_present_flag
        r.ue()
        r.ue()
    if not r.bit():  # timing_info_present_flag
        return None
    units, scale = r.bits(32), r.bits(32)
    if not units or not scale:
        return None
    return round(scale / (2 * units), 3)  # two fields a frame


def find_sps(data: bytes) -> SpsInfo | None:
    """Parse the first SPS found in an Annex-B buffer, or None."""
    for nal in iter_nals(data):
        if nal and nal[0] & 0x1F == NAL_SPS:
            try:
                return parse_sps(nal)
            except (IndexError, ValueError):
                return None
    return None


#: The levels an encode of ours states (ITU-T H.264 Table A-1), from 3.1 up, which every
#: browser takes: (level_idc, MaxMBPS, MaxFS in macroblocks, MaxBR in kbit/s).
LEVELS = (
    (31, 108_000, 3_600, 14_000),
    (32, 216_000, 5_120, 20_000),
    (40, 245_760, 8_192, 20_000),
    (42, 522_240, 8_704, 50_000),
    (50, 589_824, 22_080, 135_000),
    (51, 983_040, 36_864, 240_000),
    (52, 2_073_600, 36_864, 240_000),
)


def level_for(width: int, height: int, fps: float, bitrate: int) -> int:
    """The lowest of `LEVELS` whose limits a stream of this size, rate and bitrate fits."""
    macroblocks = -(-width // 16) * -(-height // 16)
    for level, per_second, frame, kbits in LEVELS:
        if macroblocks <= frame and macroblocks * fps <= per_second and bitrate <= kbits * 1000:
            return level
    return LEVELS[-1][0]


def browser_safe(sps: SpsInfo | None) -> bool:
    """Whether browsers can decode the stream untouched (B-frames are checked separately)."""
    return sps is not None and sps.profile_idc in (PROFILE_BASELINE, PROFILE_MAIN)
