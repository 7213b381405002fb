#!/usr/bin/python3
"""Standalone RTSP test server built on GStreamer's gst-rtsp-server.

Must be run with Debian's ``/usr/bin/python3`` (python3-gi and the GstRtspServer
typelib are built for it), not with the project's virtualenv::

    /usr/bin/python3 tests/support/rtsp_server.py --port 8554

Mounts (each its own media factory, one pipeline per client unless said otherwise):

* ``/baseline``   640x480@30 H.264 constrained-baseline, 1 s GOP, SPS/PPS in-band and in SDP
* ``/sdp-only``   same, but SPS/PPS only in the SDP (sprop-parameter-sets), never in-band
* ``/high``       640x480@30 H.264 High profile with B-frames (bframes=2), 1 s GOP
* ``/main-bframes`` 320x240@15 H.264 Main profile with B-frames, 1 s GOP
* ``/audio-only`` Opus audio only, no video track
* ``/small``      320x240@15 H.264 constrained-baseline, 1 s GOP
* ``/h265``       320x240@15 H.265 Main, 1 s GOP, VPS/SPS/PPS in-band and in the SDP
* ``/h265-sdp-only`` /h265 with VPS/SPS/PPS only in the SDP (sprop-vps, -sps, -pps)
* ``/h265-bframes`` /h265 with B-frames (presentation order differs from decoding order)
* ``/h265-hd``    the same at 1280x720@30, 2 Mbit/s (a camera's main stream, for perf/)
* ``/mjpeg``      320x240@15 Motion JPEG (RTP/JPEG): a camera only FFmpeg's client reads
* ``/av-sync``, ``/av-sync-aac``  320x240@30 black, one white frame at each whole second,
  and a 1 kHz beep (Opus, or AAC) starting at that same instant: lip sync, measurable
* ``/av-opus``, ``/av-aac``, ``/av-pcmu``, ``/av-pcma``  /small's video with a sine tone
  (440, 660, 880 and 550 Hz) as Opus 48 kHz stereo, AAC 44.1 kHz mono and G.711 µ-law
  and A-law 8 kHz
* ``/clock``      640x480@30 H.264 constrained-baseline, 1 s GOP, each frame stamped
  with its capture time (``stamp.py``); one shared pipeline for all clients, so a
  hundred gateway streams cost the server one encoder
* ``/clock-hd``   the same at 3 Mbit/s (a camera's main stream: about 10 packets a frame)
* ``/clock-15``   ``/clock`` at 15 fps

RTP over UDP and RTP over TCP (interleaved) are both offered. Prints exactly one
line ``READY <port>`` on stdout once listening, then runs until SIGTERM/SIGINT.
Each RTSP client connection is reported on stderr as ``CLIENT open`` and ``CLIENT close``.
"""

from __future__ import annotations

import argparse
import math
import random
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import gi  # type: ignore[import-not-found,import-untyped,unused-ignore]

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # type: ignore[import-not-found,import-untyped,unused-ignore]  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script
from tests.support import stamp  # noqa: E402


def _video_src(width: int, height: int, fps: int) -> str:
    return (
        f"videotestsrc is-live=true pattern=ball "
        f"! video/x-raw,format=I420,width={width},height={height},framerate={fps}/1 "
        f'! timeoverlay font-desc="Sans 24"'
    )


def _x264(gop: int, extra: str, bitrate: int = 800) -> str:
    # repeat-headers=0: x264 would otherwise put SPS/PPS (and a version SEI) in
    # front of every IDR even in avc mode. Whether SPS/PPS appear in-band is then
    # decided solely by rtph264pay's config-interval. aud=false: no AU delimiters,
    # like most IP cameras.
    return (
        f"x264enc {extra} threads=1 bitrate={bitrate} key-int-max={gop} aud=false "
        f"option-string=repeat-headers=0"
    )


def _h264_video(
    width: int, height: int, fps: int, *, profile: str, encoder_opts: str, inband: bool
) -> str:
    # stream-format=avc: SPS/PPS go to codec_data -> sprop-parameter-sets in the SDP.
    caps = f"video/x-h264,stream-format=avc,alignment=au,profile={profile}"
    # config-interval=-1: SPS/PPS re-sent in-band before every IDR; 0: never.
    pay = f"rtph264pay name=pay0 pt=96 config-interval={-1 if inband else 0}"
    enc = _x264(fps, encoder_opts)
    return f"( {_video_src(width, height, fps)} ! {enc} ! {caps} ! {pay} )"


_ZEROLATENCY = "tune=zerolatency speed-preset=ultrafast"


def _baseline(width: int, height: int, fps: int, *, inband: bool) -> str:
    return _h264_video(
        width,
        height,
        fps,
        profile="constrained-baseline",
        encoder_opts=_ZEROLATENCY,
        inband=inband,
    )


def _high() -> str:
    # No tune=zerolatency: it forces bframes=0. ultrafast plus explicit bframes=2
    # (fixed placement, no lookahead) stays cheap; dct8x8 is what makes x264
    # signal High (profile_idc 100) rather than Main.
    opts = "speed-preset=ultrafast bframes=2 b-adapt=false rc-lookahead=0 dct8x8=true cabac=true"
    return _h264_video(640, 480, 30, profile="high", encoder_opts=opts, inband=True)


def _main_bframes() -> str:
    # Main profile (CABAC, no 8x8 transform) with B-frames: the SPS alone looks
    # browser-safe, only the reordered timestamps give the B-frames away.
    opts = "speed-preset=ultrafast bframes=2 b-adapt=false rc-lookahead=0 cabac=true"
    return _h264_video(320, 240, 15, profile="main", encoder_opts=opts, inband=True)


def _audio_only() -> str:
    return (
        "( audiotestsrc is-live=true wave=sine freq=440 volume=0.2 "
        "! audio/x-raw,rate=48000,channels=2 ! audioconvert ! audioresample "
        "! opusenc bitrate=32000 ! rtpopuspay name=pay0 pt=97 )"
    )


CLOCK_WIDTH, CLOCK_HEIGHT, CLOCK_FPS = stamp.WIDTH, 480, 30


def _clock(bitrate: int, fps: int = CLOCK_FPS) -> str:
    size = f"width={CLOCK_WIDTH},height={CLOCK_HEIGHT}"
    raw = f"video/x-raw,format=I420,{size},framerate={fps}/1"
    # A live appsrc that never queues more than one frame: a frame is encoded right after
    # its stamp is drawn, so the stamp is the capture time.
    src = (
        f'appsrc name=clock is-live=true do-timestamp=true format=time caps="{raw}" '
        "max-buffers=1 leaky-type=downstream"
    )
    caps = "video/x-h264,stream-format=avc,alignment=au,profile=constrained-baseline"
    enc = _x264(fps, _ZEROLATENCY, bitrate)
    return f"( {src} ! {enc} ! {caps} ! rtph264pay name=pay0 pt=96 config-interval=-1 )"


class ClockPusher(threading.Thread):
    """Feeds the ``/clock`` appsrc: a scrolling texture, the stamp band on top.

    The texture (random 8x8 blocks, moving 4 pixels a frame) gives the encoder a camera's
    amount of work: at 800 kbit/s a frame is several RTP packets, like ``/baseline``.
    """

    SCROLL = 4
    #: Rows that change unpredictably each frame when busy (a camera's moving scene).
    BUSY_ROWS = (160, 320)

    def __init__(self, appsrc: Any, busy: bool = False, fps: int = CLOCK_FPS) -> None:
        super().__init__(name="clock-pusher", daemon=True)
        self.appsrc = appsrc
        self.fps = fps
        self.stopped = threading.Event()
        noise = random.Random(5)
        first, last = self.BUSY_ROWS
        size = (last - first) * CLOCK_WIDTH
        self.noise = [noise.randbytes(size) for _ in range(16)] if busy else []
        luma = CLOCK_WIDTH * CLOCK_HEIGHT
        self.frame = bytearray(b"\x80" * (luma + luma // 2))
        pick = random.Random(8554)
        rows = []
        for _ in range(CLOCK_HEIGHT // 8):
            row = b"".join(bytes([pick.randrange(60, 200)]) * 8 for _ in range(CLOCK_WIDTH // 8))
            rows += [row] * 8
        self.texture = rows

    def _draw(self, n: int) -> bytes:
        frame, width = self.frame, CLOCK_WIDTH
        shift = (n * self.SCROLL) % width
        for y, row in enumerate(self.texture):
            frame[y * width : (y + 1) * width] = row[shift:] + row[:shift]
        if self.noise:
            first, last = self.BUSY_ROWS
            frame[first * width : last * width] = self.noise[n % len(self.noise)]
        frame[: len(stamp.band(0))] = stamp.band(stamp.now_us())
        return bytes(frame)

    def run(self) -> None:
        period = 1 / self.fps
        due = time.monotonic()
        n = 0
        while not self.stopped.is_set():
            result = self.appsrc.emit("push-buffer", Gst.Buffer.new_wrapped(self._draw(n)))
            if result not in (Gst.FlowReturn.OK,):
                return  # flushing or EOS: the media was torn down
            n += 1
            due += period
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                due = time.monotonic()  # fell behind: never burst to catch up


def _clock_factory(bitrate: int = 800, fps: int = CLOCK_FPS) -> Any:
    factory = _make_factory(_clock(bitrate, fps))
    factory.set_shared(True)

    def _configure(_factory: Any, media: Any) -> None:
        element = media.get_element().get_by_name("clock")
        pusher = ClockPusher(element, busy=bitrate > 800, fps=fps)
        media.connect("unprepared", lambda _media: pusher.stopped.set())
        pusher.start()

    factory.connect("media-configure", _configure)
    return factory


SYNC_W, SYNC_H, SYNC_FPS, SYNC_RATE = 320, 240, 30, 48_000
SYNC_CHUNK = SYNC_RATE // 50  # 20 ms of audio per buffer
SYNC_BEEP = 0.1  # seconds of 1 kHz tone from each whole second on


def _sync(audio_encoder: str) -> str:
    """Video that flashes white for one frame at each whole second, and audio that beeps
    from that same instant: a test of lip sync measures the distance between the two."""
    video_caps = f"video/x-raw,format=I420,width={SYNC_W},height={SYNC_H},framerate={SYNC_FPS}/1"
    audio_caps = f"audio/x-raw,format=S16LE,layout=interleaved,rate={SYNC_RATE},channels=1"
    live = "is-live=true format=time max-buffers=4 leaky-type=downstream"
    h264 = "video/x-h264,stream-format=avc,alignment=au,profile=constrained-baseline"
    return (
        f'( appsrc name=syncvideo {live} caps="{video_caps}" '
        f"! {_x264(SYNC_FPS, _ZEROLATENCY)} ! {h264} "
        "! rtph264pay name=pay0 pt=96 config-interval=-1 "
        f'appsrc name=syncaudio {live} caps="{audio_caps}" ! audioconvert ! audioresample '
        f"! {audio_encoder} )"
    )


class SyncPusher(threading.Thread):
    """Feeds both appsrcs of a sync mount from one clock.

    Buffers carry explicit timestamps: the running time of the instant they depict, not
    of the moment they were pushed, so push jitter never moves a flash against its beep.
    Frame n depicts `start + n/30`, audio chunk m `start + m/50`, with `start` on a whole
    second: every 30th frame and every 50th chunk begin together.
    """

    def __init__(self, video: Any, audio: Any) -> None:
        super().__init__(name="sync-pusher", daemon=True)
        self.video, self.audio = video, audio
        self.stopped = threading.Event()
        luma = SYNC_W * SYNC_H
        chroma = b"\x80" * (luma // 2)
        self.dark = b"\x10" * luma + chroma
        self.light = b"\xeb" * luma + chroma
        beep = int(SYNC_RATE * SYNC_BEEP)
        self.tone = b"".join(
            int(12000 * math.sin(2 * math.pi * 1000 * i / SYNC_RATE)).to_bytes(
                2, "little", signed=True
            )
            for i in range(beep)
        )

    def _running_time(self, element: Any, at: float) -> int:
        """The pipeline running time (ns) of monotonic instant `at`."""
        clock = element.get_clock()
        if clock is None:
            return -1
        now = clock.get_time() - element.get_base_time()
        return int(now - (time.monotonic() - at) * Gst.SECOND)

    def _push(self, element: Any, data: bytes, at: float, duration: float) -> bool:
        pts = self._running_time(element, at)
        if pts < 0:
            return True  # not playing yet
        buffer = Gst.Buffer.new_wrapped(data)
        buffer.pts = pts
        buffer.duration = int(duration * Gst.SECOND)
        return bool(element.emit("push-buffer", buffer) == Gst.FlowReturn.OK)

    def _chunk(self, m: int) -> bytes:
        offset = (m * SYNC_CHUNK) % SYNC_RATE  # samples since the last whole second
        beep = len(self.tone) // 2
        if offset >= beep:
            return bytes(SYNC_CHUNK * 2)
        take = min(SYNC_CHUNK, beep - offset)
        return self.tone[offset * 2 : (offset + take) * 2] + bytes((SYNC_CHUNK - take) * 2)

    def run(self) -> None:
        start = math.ceil(time.monotonic()) + 1.0
        n = m = 0
        while not self.stopped.is_set():
            frame_at, chunk_at = start + n / SYNC_FPS, start + m / 50
            at = min(frame_at, chunk_at)
            delay = at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if frame_at <= chunk_at:
                data = self.light if n % SYNC_FPS == 0 else self.dark
                if not self._push(self.video, data, frame_at, 1 / SYNC_FPS):
                    return
                n += 1
            else:
                if not self._push(self.audio, self._chunk(m), chunk_at, 1 / 50):
                    return
                m += 1


def _sync_factory(audio_encoder: str) -> Any:
    factory = _make_factory(_sync(audio_encoder))
    factory.set_shared(True)

    def _configure(_factory: Any, media: Any) -> None:
        bin_ = media.get_element()
        pusher = SyncPusher(bin_.get_by_name("syncvideo"), bin_.get_by_name("syncaudio"))
        media.connect("unprepared", lambda _media: pusher.stopped.set())
        pusher.start()

    factory.connect("media-configure", _configure)
    return factory


#: The tones of the audio mounts, so a test can tell which one it hears.
TONES = {"/av-opus": 440, "/av-aac": 660, "/av-pcmu": 880, "/av-pcma": 550}


def _with_audio(audio: str) -> str:
    """/small's video and an audio track: a camera with a microphone."""
    video = _baseline(320, 240, 15, inband=True)[2:-2]  # without the outer "( " and " )"
    return f"( {video} {audio} )"


def _tone(freq: int, rate: int, channels: int) -> str:
    return (
        f"audiotestsrc is-live=true wave=sine freq={freq} volume=0.3 "
        f"! audioconvert ! audioresample ! audio/x-raw,rate={rate},channels={channels}"
    )


MOUNTS: dict[str, str] = {
    "/baseline": _baseline(640, 480, 30, inband=True),
    "/sdp-only": _baseline(640, 480, 30, inband=False),
    "/high": _high(),
    "/main-bframes": _main_bframes(),
    "/audio-only": _audio_only(),
    "/small": _baseline(320, 240, 15, inband=True),
    "/h265": (
        f"( {_video_src(320, 240, 15)} ! x265enc tune=zerolatency speed-preset=ultrafast "
        "key-int-max=15 bitrate=400 ! video/x-h265,profile=main "
        "! rtph265pay name=pay0 pt=96 config-interval=-1 )"
    ),
    # hvc1: the parameter sets go in the caps (and so the SDP), never in the stream.
    "/h265-sdp-only": (
        f"( {_video_src(320, 240, 15)} ! x265enc tune=zerolatency speed-preset=ultrafast "
        "key-int-max=15 bitrate=400 ! h265parse ! video/x-h265,stream-format=hvc1 "
        "! rtph265pay name=pay0 pt=96 config-interval=0 )"
    ),
    "/h265-bframes": (
        f"( {_video_src(320, 240, 15)} ! x265enc speed-preset=ultrafast key-int-max=15 "
        'bitrate=400 option-string="bframes=2:b-adapt=0" ! video/x-h265,profile=main '
        "! rtph265pay name=pay0 pt=96 config-interval=-1 )"
    ),
    "/h265-hd": (
        f"( {_video_src(1280, 720, 30)} ! x265enc tune=zerolatency speed-preset=ultrafast "
        "key-int-max=30 bitrate=2000 ! video/x-h265,profile=main "
        "! rtph265pay name=pay0 pt=96 config-interval=-1 )"
    ),
    "/mjpeg": (
        "( videotestsrc is-live=true pattern=ball ! video/x-raw,format=I420,width=320,height=240,"
        "framerate=15/1 ! jpegenc quality=60 ! rtpjpegpay name=pay0 pt=26 )"
    ),
    "/av-opus": _with_audio(
        f"{_tone(TONES['/av-opus'], 48000, 2)} ! opusenc bitrate=64000 ! rtpopuspay name=pay1 pt=97"
    ),
    "/av-aac": _with_audio(
        f"{_tone(TONES['/av-aac'], 44100, 1)} ! avenc_aac bitrate=64000 "
        "! rtpmp4gpay name=pay1 pt=97"
    ),
    "/av-pcmu": _with_audio(
        f"{_tone(TONES['/av-pcmu'], 8000, 1)} ! mulawenc ! rtppcmupay name=pay1 pt=0"
    ),
    "/av-pcma": _with_audio(
        f"{_tone(TONES['/av-pcma'], 8000, 1)} ! alawenc ! rtppcmapay name=pay1 pt=8"
    ),
}


def _make_factory(launch: str) -> Any:
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch)
    # Not shared: every client gets its own pipeline, so a client asking for a
    # subset of streams, or a new PLAY, can never disturb another client.
    factory.set_shared(False)
    factory.set_protocols(GstRtsp.RTSPLowerTrans.UDP | GstRtsp.RTSPLowerTrans.TCP)
    factory.set_stop_on_disconnect(True)
    return factory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True, help="TCP port (not 0)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address")
    parser.add_argument("--print-pipelines", action="store_true", help="print launch lines")
    args = parser.parse_args(argv)
    if args.port <= 0:
        parser.error("--port must be a positive port number (0 is not supported)")

    Gst.init(None)
    if args.print_pipelines:
        for mount, launch in MOUNTS.items():
            print(f"{mount}: {launch}", file=sys.stderr)

    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    for mount, launch in MOUNTS.items():
        mounts.add_factory(mount, _make_factory(launch))
    mounts.add_factory("/clock", _clock_factory())
    # A camera's main stream: the same stamped picture at 3 Mbit/s, about 10 packets a frame.
    mounts.add_factory("/clock-hd", _clock_factory(3000))
    # At 15 fps, where a parser that holds a frame costs 66 ms.
    mounts.add_factory("/clock-15", _clock_factory(fps=15))
    mounts.add_factory(
        "/av-sync", _sync_factory("opusenc bitrate=64000 ! rtpopuspay name=pay1 pt=97")
    )
    mounts.add_factory(
        "/av-sync-aac", _sync_factory("avenc_aac bitrate=64000 ! rtpmp4gpay name=pay1 pt=97")
    )

    loop = GLib.MainLoop()
    try:
        source_id = server.attach(None)
    except GLib.Error as exc:
        print(f"failed to attach RTSP server on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    if not source_id:
        print(f"failed to attach RTSP server on {args.host}:{args.port}", file=sys.stderr)
        return 1

    bound = server.get_bound_port()
    # Periodically drop sessions whose clients vanished without TEARDOWN.
    pool = server.get_session_pool()

    def _cleanup() -> bool:
        pool.cleanup()
        return True

    GLib.timeout_add_seconds(2, _cleanup)

    # Client connections are reported on stderr, so tests can see from the camera's side
    # when a gateway opens and closes its sessions.
    def _client_connected(_server: Any, client: Any) -> None:
        print("CLIENT open", file=sys.stderr, flush=True)
        client.connect("closed", lambda _client: print("CLIENT close", file=sys.stderr, flush=True))

    server.connect("client-connected", _client_connected)

    def _quit() -> bool:
        loop.quit()
        return False

    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, _quit)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, _quit)

    print(f"READY {bound}", flush=True)
    loop.run()
    GLib.source_remove(source_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
