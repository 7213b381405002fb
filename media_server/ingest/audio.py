"""A camera's audio on its way to viewers: as it is, or as Opus made once per stream.

Opus, G.711 µ-law and A-law go out untouched (browsers play them). Anything else PyAV
decodes (AAC above all) is decoded, resampled to 48 kHz stereo and encoded to Opus in the
ingest thread, once, however many viewers listen. Timestamps come from the video's
timeline (`Timeline.follow`), so audio and video keep the relation the camera gave them.
"""

from __future__ import annotations

from fractions import Fraction

import av
from av.audio.codeccontext import AudioCodecContext

from media_server.model.media import (
    BROWSER_AUDIO,
    CLOCK_RATE,
    AccessUnit,
    AudioInfo,
    AudioMode,
)

OPUS_RATE = 48_000
OPUS_FRAME = 960  # 20 ms, what browsers expect
OPUS_BITRATE = 64_000


def audio_mode(codec: str, wanted: bool) -> AudioMode:
    """As it is for what browsers play, Opus for what PyAV decodes, else off."""
    if not wanted:
        return "off"
    if codec in BROWSER_AUDIO:
        return "passthrough"
    try:
        av.CodecContext.create(codec, "r")
    except (av.FFmpegError, ValueError):
        return "off"  # nothing here decodes it: video only
    return "transcode"


def _decoder(info: AudioInfo) -> AudioCodecContext:
    """A decoder for the camera's audio from what its SDP (or FFmpeg) said of it."""
    decoder = av.CodecContext.create(info.codec, "r")
    assert isinstance(decoder, AudioCodecContext)
    if info.extradata:
        decoder.extradata = info.extradata
    if info.sample_rate:
        decoder.sample_rate = info.sample_rate
    if info.channels in (1, 2):
        decoder.layout = "mono" if info.channels == 1 else "stereo"
    return decoder


class AudioPath:
    def __init__(self, info: AudioInfo) -> None:
        self.info = info
        rate = info.webrtc_codec[1] if info.webrtc_codec else OPUS_RATE
        self._rate = rate
        self._time_base = Fraction(1, rate)
        self._resampler: av.AudioResampler | None = None
        self._encoder: AudioCodecContext | None = None
        self._decoder: AudioCodecContext | None = None
        self._next_pts: int | None = None  # transcode: the next encoder input pts
        self._expected: int | None = None  # transcode: the next source frame's, if whole
        self.frames_encoded = 0
        if info.mode == "transcode":
            self._decoder = _decoder(info)
            self._resampler = av.AudioResampler(
                format="s16", layout="stereo", rate=OPUS_RATE, frame_size=OPUS_FRAME
            )
            encoder = av.CodecContext.create("libopus", "w")
            assert isinstance(encoder, AudioCodecContext)
            encoder.sample_rate = OPUS_RATE
            encoder.layout = "stereo"
            encoder.format = "s16"
            encoder.bit_rate = OPUS_BITRATE
            encoder.time_base = self._time_base
            encoder.options = {"application": "lowdelay", "frame_duration": "20"}
            self._encoder = encoder

    def _out_pts(self, pts90: int) -> int:
        return pts90 * self._rate // CLOCK_RATE

    def passed_through(self, data: bytes, pts90: int) -> AccessUnit:
        """The unit of a packet browsers play as it is, on its codec's clock."""
        return AccessUnit(data, self._out_pts(pts90), self._time_base, True)

    def as_sent(self, data: bytes, pts90: int) -> AccessUnit:
        """A packet as the camera sent it, on its own clock (its sample rate)."""
        rate = self.info.sample_rate or CLOCK_RATE
        return AccessUnit(data, pts90 * rate // CLOCK_RATE, Fraction(1, rate), True)

    def push(self, data: bytes, pts90: int) -> list[AccessUnit]:
        """Units for viewers from one audio packet whose source time maps to `pts90`."""
        if self.info.mode == "passthrough":
            return [self.passed_through(data, pts90)]
        if self._encoder is None or self._resampler is None or self._decoder is None:
            return []
        units: list[AccessUnit] = []
        try:
            frames = self._decoder.decode(av.Packet(data))
        except av.FFmpegError:
            return []  # a damaged packet: the next one decodes again
        for frame in frames:
            if not isinstance(frame, av.AudioFrame):
                continue
            start = self._out_pts(pts90)
            # Keep the encoder's input contiguous: start again on a jump (> 100 ms); move
            # by what was off for a smaller one (lost frames, or the source's clock placed
            # anew by the camera's first sender report), so audio never drifts from video.
            off = start - self._expected if self._expected is not None else None
            if self._next_pts is None or off is None or abs(off) > OPUS_RATE // 10:
                self._next_pts = start
            elif abs(off) > OPUS_RATE // 500:
                self._next_pts += off
            self._expected = start + frame.samples * OPUS_RATE // (frame.sample_rate or OPUS_RATE)
            frame.pts = None
            for chunk in self._resampler.resample(frame):
                chunk.pts = self._next_pts
                chunk.time_base = self._time_base
                self._next_pts += chunk.samples
                units += self._encode(chunk)
        return units

    def _encode(self, frame: av.AudioFrame | None) -> list[AccessUnit]:
        assert self._encoder is not None
        units = []
        for packet in self._encoder.encode(frame):
            self.frames_encoded += 1
            units.append(AccessUnit(bytes(packet), int(packet.pts or 0), self._time_base, True))
        return units
