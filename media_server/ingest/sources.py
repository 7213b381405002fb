"""Sources by URL scheme: the one place a registration's URL is turned into a reader.

An ingest protocol is a module with a `source_for(registration, context)` and one line in
`SCHEMES`; nothing else in the gateway knows which protocols exist.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from media_server.config import Settings
from media_server.ingest import demo, rtsp
from media_server.ingest.guard import SourceGuard
from media_server.ingest.reactor import Reactor
from media_server.ingest.rtp_transport import PortPairs
from media_server.ingest.source import Source
from media_server.model.registration import Registration

#: Makes a fresh source for each connection attempt; the event asks a blocking read to end.
SourceFactory = Callable[[threading.Event], Source]


@dataclass(frozen=True, slots=True)
class SourceContext:
    """What sources take from the gateway: its settings, its guard on hosts, the UDP
    ports RTP may come to, and the thread that reads native sessions (None: a thread
    each)."""

    settings: Settings
    guard: SourceGuard
    ports: PortPairs
    reactor: Reactor | None


Opener = Callable[[Registration, SourceContext], SourceFactory]

SCHEMES: dict[str, Opener] = {
    "rtsp": rtsp.source_for,
    "rtsps": rtsp.source_for,
    "demo": demo.source_for,
}


def source_for(registration: Registration, context: SourceContext) -> SourceFactory:
    """The factory of the source a registration's URL names."""
    scheme = urlsplit(registration.url).scheme.lower()
    opener = SCHEMES.get(scheme)
    if opener is None:
        raise ValueError(f"no source reads {scheme}:// URLs")
    return opener(registration, context)
