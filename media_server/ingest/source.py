"""The contract every source meets, so one worker loop serves cameras and the demo alike."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Protocol

from media_server.model.media import SourceInfo, SourcePacket

if TYPE_CHECKING:
    from media_server.ingest.reactor import Reactor


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

    def polled(self) -> Polled | None:
        """Once open: the session to hand to the shared thread that reads it without
        blocking (ingest/reactor.py), or None to `read` it on this thread."""
        ...

    def close(self) -> None: ...


class Polled(Protocol):
    """An open session read without blocking (the native client's), with many others,
    by one thread: its reactor."""

    @property
    def reactor(self) -> Reactor: ...

    def sockets(self) -> list[socket.socket]:
        """What to wait on, made non-blocking."""
        ...

    def poll(self, ready: socket.socket | None, now: float) -> list[SourcePacket]:
        """Take what `ready` holds (None: nothing, a deadline came) and do what is due;
        the packets now complete. Raises SourceError when the session is over."""
        ...

    def deadline(self) -> float:
        """When `poll` must run next even if nothing arrives (monotonic)."""
        ...
