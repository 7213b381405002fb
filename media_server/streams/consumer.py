"""What consumes a stream, and the one way each does: a `Consumer`.

A WebRTC viewer (served by aiortc's sender or by the engine), a relay to another node of
a cluster, the stream's fMP4 muxer and its MSE and HLS viewers each attach to a stream as
a consumer of a kind, then subscribe to what they need: access units, decoded frames, or
audio, each from a bounded queue that starts at the cached keyframe. A consumer of an
H.265 stream that decodes only H.264 takes the stream's shared H.264 transcode instead
(`take_transcode`), which runs while any consumer takes it. Attaching
holds the stream open (an on-demand camera opens for its first consumer and closes a
while after its last); the stream counts its consumers by kind, and the API, the metrics
and the console all read that one count.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, get_args

from media_server.streams.fanout import Hub, Picture, Subscriber, Tap, Wants

if TYPE_CHECKING:
    from media_server.streams.stream import Stream

#: viewer: a WebRTC session; relay: another node of a cluster fanning the stream out;
#: fanout: the engine's feed of the stream, which serves its viewers; snapshot: a JPEG of
#: the latest picture being made; muxer: the stream's fMP4, made once for its mse
#: viewers (a WebSocket each), hls players (each counted while it polls) and its
#: recorder (writing it to disk).
ConsumerKind = Literal["viewer", "relay", "fanout", "snapshot", "muxer", "mse", "hls", "recorder"]
#: The kinds that keep an on-demand stream open: those that watch, and the recorder. A
#: fan-out and a muxer serve viewers that hold the stream already; a snapshot shows what
#: the stream has.
HOLDING: frozenset[ConsumerKind] = frozenset({"viewer", "relay", "mse", "hls", "recorder"})
#: The kinds a person watches through: the view shows which codec each of them gets.
WATCHING: tuple[ConsumerKind, ...] = ("viewer", "mse", "hls")
CONSUMER_KINDS: tuple[ConsumerKind, ...] = get_args(ConsumerKind)


class Consumer:
    def __init__(self, stream: Stream, kind: ConsumerKind) -> None:
        self.stream = stream
        self.kind = kind
        self._subscribed: list[tuple[Hub, Subscriber]] = []
        self._taps: list[Tap] = []
        self.closed = False
        #: Whether it takes the stream's H.264 transcode rather than the stream's video.
        self.transcoded = False
        self._transcodes: set[Subscriber] = set()  # queues of the transcode beside it
        stream._attached(kind)

    @property
    def _hub(self) -> Hub:
        return self.stream.transcode_hub if self.transcoded else self.stream.hub

    @property
    def video_codec(self) -> str | None:
        """The codec of the video units it takes (FFmpeg's name), None while unknown."""
        return "h264" if self.transcoded else self.stream.video_codec

    def take_transcode(self) -> None:
        """Take the stream's H.264 transcode (an H.265 stream's, for a consumer that
        decodes only H.264) rather than its video; before the first subscription."""
        if not self.transcoded and not self.closed:
            self.transcoded = True
            self.stream._transcoding(self.kind, 1)

    def video(self, wants: Wants = "any") -> Subscriber:
        """A queue of the stream's video: encoded units, decoded frames, or whichever it
        carries. Subscribe at the first read: a consumer that never reads is never fed."""
        return self._subscribe(self._hub, wants)

    def transcode(self) -> Subscriber:
        """A queue of the stream's H.264 transcode beside its own video (a relay to another
        node carries both, for that node's viewers of each); the stream makes the
        transcode while the queue lasts (`drop` it when no longer needed)."""
        sub = self._subscribe(self.stream.transcode_hub)
        if not self.closed:
            self._transcodes.add(sub)
            self.stream._transcoding(self.kind, 1)
        return sub

    def audio(self, as_sent: bool = False) -> Subscriber:
        """A queue of the stream's audio units, as WebRTC viewers receive them, or
        (`as_sent`) as the camera sent them where they differ (AAC, which fMP4 takes)."""
        return self._subscribe(self.stream.source_audio_hub if as_sent else self.stream.audio_hub)

    def _subscribe(self, hub: Hub, wants: Wants = "units") -> Subscriber:
        if self.closed:  # a queue that has ended already, never the hub's
            ended = Subscriber(1, 1, wants)
            ended.end()
            return ended
        sub = hub.subscribe(wants)
        self._subscribed.append((hub, sub))
        return sub

    def tap(self, tap: Tap) -> None:
        """Every video unit as it is published, with no queue: for a fan-out that keeps
        per-viewer state of its own (the engine's feed)."""
        if not self.closed:
            self._hub.add_tap(tap)
            self._taps.append(tap)

    def picture(self) -> Picture:
        """What the latest picture can be made from: the units since the last keyframe,
        or the last decoded frame, or nothing yet."""
        return self._hub.picture()

    def drop(self, sub: Subscriber) -> None:
        """Stop taking one of the queues (the consumer stays attached): it ends, so a
        reader waiting on it wakes."""
        for entry in self._subscribed:
            if entry[1] is sub:
                self._subscribed.remove(entry)
                entry[0].unsubscribe(sub)
                sub.end()
                if sub in self._transcodes:
                    self._transcodes.discard(sub)
                    self.stream._transcoding(self.kind, -1)
                return

    def close(self) -> None:
        """Let go of the stream: its queues end, and it is counted no more. Idempotent."""
        if self.closed:
            return
        self.closed = True
        for _, sub in list(self._subscribed):
            self.drop(sub)
        for tap in self._taps:
            self._hub.remove_tap(tap)
        self._taps.clear()
        if self.transcoded:
            self.stream._transcoding(self.kind, -1)
        self.stream._detached(self.kind)
