"""One viewer as the engine sees it: its send state, lane, and what its RTCP tells."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from media_server import aiortc_internals as internals
from media_server.engine.sendpath import TxViewer


@dataclass(eq=False)
class EngineViewer:
    tx: TxViewer
    lane: int
    ssrc: int
    cname: str | None
    #: The ICE pair the engine sends on (it follows when ICE nominates another).
    pair: Any
    connection: Any
    #: Told once, when the viewer's first media is handed to its lane.
    on_first: Callable[[], None] | None = None
    #: Asks the viewer's session to close (its route or keys went away).
    on_lost: Callable[[str], None] | None = None
    last_replay: float = float("-inf")
    # From receiver reports: RFC 3550 figures, and round-trip time from our sender reports.
    fraction_lost: int = 0
    packets_lost: int = 0
    jitter: int = 0
    rtt: float | None = None
    last_sr: dict[int, float] = field(default_factory=dict)  # LSR middle 32 bits -> when
    nacks: int = 0
    nacked_packets: int = 0
    plis: int = 0
    replays: int = 0

    def follow_route(self) -> str | None:
        """Send where ICE sends now: a browser may nominate another pair after the first.
        Returns why the viewer cannot be sent to any more, or None."""
        pair = internals.nominated_pair(self.connection)
        if pair is self.pair:
            return None
        route = internals.pair_route(pair) if pair is not None else None
        if route is None:
            return "ICE has no selected pair"
        self.tx.retarget(*route)
        self.pair = pair
        return None
