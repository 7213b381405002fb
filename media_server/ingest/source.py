"""The contract every source meets, so one worker loop serves cameras and the demo alike."""

from __future__ import annotations

from typing import Protocol

from media_server.model.media import SourceInfo, SourcePacket


class SourceError(Exception):
    """The source failed. `permanent` errors are not retried (an audio-only camera, say)."""

    permanent = False


class PermanentSourceError(SourceError):
    permanent = True


class UnsupportedSource(PermanentSourceError):
    """This reader cannot take the source (its codec, say), though another may: the
    `auto` client then hands the camera to FFmpeg's."""


class Source(Protocol):
    """A blocking reader, used from one ingest thread only."""

    def open(self) -> SourceInfo:
        """Connect and describe the video track; raise SourceError on failure."""
        ...

    def read(self) -> SourcePacket | None:
        """The next encoded packet (video Annex-B) and its track, or None when the
        source ended."""
        ...

    def close(self) -> None: ...
