"""RTP audio payloads back to codec frames: Opus (RFC 7587) and G.711 (RFC 3551) carry one
frame per packet as it is; AAC as `mpeg4-generic` (RFC 3640, AAC-hbr and -lbr) carries
AU headers, then one or more access units, or one unit in fragments up to the marker.
"""

from __future__ import annotations

from typing import Protocol

from media_server.rtp.packet import RtpPacket
from media_server.rtp.payload import fmtp_params

#: RTP encoding names (lower case) to FFmpeg's codec names, for the codecs taken here.
AUDIO_CODECS = {
    "opus": "opus",
    "pcmu": "pcm_mulaw",
    "pcma": "pcm_alaw",
    "mpeg4-generic": "aac",
}
#: Samples per AAC access unit (AAC-LC); the unit's RTP timestamps step by this.
AAC_FRAME = 1024
#: The most one fragmented AAC unit may hold.
MAX_AAC_UNIT = 64 * 1024


class AudioDepacketizer(Protocol):
    def push(self, packet: RtpPacket) -> list[tuple[bytes, int]]:
        """The frames `packet` completes, each with its RTP timestamp."""
        ...

    def reset(self) -> None:
        """Forget a unit half assembled (a packet of it was lost)."""


class WholeFrames:
    """One frame per packet, as it is: Opus, PCMU, PCMA."""

    def push(self, packet: RtpPacket) -> list[tuple[bytes, int]]:
        return [(packet.payload, packet.timestamp)] if packet.payload else []

    def reset(self) -> None:
        pass


def _int(params: dict[str, str], name: str, default: int) -> int:
    value = params.get(name, "")
    return int(value) if value.isdigit() else default


class Mpeg4Generic:
    """RFC 3640 AU headers: `sizelength` bits of unit size and `indexlength` (first) or
    `indexdeltalength` (others) bits of index, after a 16-bit length of them in bits."""

    def __init__(self, fmtp: str) -> None:
        params = fmtp_params(fmtp)
        self.size_bits = _int(params, "sizelength", 13)
        self.index_bits = _int(params, "indexlength", 3)
        self.delta_bits = _int(params, "indexdeltalength", 3)
        self.frame = _int(params, "constantduration", AAC_FRAME) or AAC_FRAME
        config = params.get("config", "")
        try:
            self.config = bytes.fromhex(config)
        except ValueError:
            self.config = b""
        self._fragment = bytearray()
        self._fragment_size = 0
        self._fragment_ts: int | None = None

    def reset(self) -> None:
        self._fragment, self._fragment_size, self._fragment_ts = bytearray(), 0, None

    def push(self, packet: RtpPacket) -> list[tuple[bytes, int]]:
        data = packet.payload
        if len(data) < 2 or not self.size_bits:
            return []
        header_bits = int.from_bytes(data[:2], "big")
        header_bytes = (header_bits + 7) // 8
        if 2 + header_bytes > len(data):
            return []
        headers = int.from_bytes(data[2 : 2 + header_bytes], "big") if header_bytes else 0
        sizes: list[int] = []
        consumed = 0
        while consumed + self.size_bits <= header_bits:
            index_bits = self.index_bits if not sizes else self.delta_bits
            shift = header_bytes * 8 - consumed - self.size_bits
            sizes.append((headers >> shift) & ((1 << self.size_bits) - 1))
            consumed += self.size_bits + index_bits
        body = data[2 + header_bytes :]
        if len(sizes) == 1 and sizes[0] > len(body):  # a fragment of one large unit
            return self._piece(sizes[0], body, packet)
        self.reset()
        frames, offset = [], 0
        for i, size in enumerate(sizes):
            if offset + size > len(body):
                break  # cut short: what came whole is kept
            frames.append((body[offset : offset + size], packet.timestamp + i * self.frame))
            offset += size
        return frames

    def _piece(self, size: int, body: bytes, packet: RtpPacket) -> list[tuple[bytes, int]]:
        if self._fragment_ts != packet.timestamp or self._fragment_size != size:
            self._fragment, self._fragment_size = bytearray(), size  # a new unit begins
            self._fragment_ts = packet.timestamp
        self._fragment += body
        if len(self._fragment) > min(size, MAX_AAC_UNIT):
            self.reset()
            return []
        if packet.marker and len(self._fragment) == size:
            unit, ts = bytes(self._fragment), packet.timestamp
            self.reset()
            return [(unit, ts)]
        return []


def audio_depacketizer(encoding: str, fmtp: str) -> AudioDepacketizer | None:
    """The depacketizer for an RTP encoding name, None for one not taken here."""
    if encoding == "mpeg4-generic":
        params = fmtp_params(fmtp)
        if params.get("mode", "").lower() not in ("aac-hbr", "aac-lbr"):
            return None
        return Mpeg4Generic(fmtp)
    return WholeFrames() if encoding in AUDIO_CODECS else None
