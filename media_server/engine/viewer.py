"""One viewer as the engine sees it: its send state, lane, and what its RTCP tells."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from media_server import aiortc_internals as internals
from media_server.engine.sendpath import TxViewer
from media_server.tokenbucket import TokenBucket

#: Retransmissions a viewer may have a second, and at once: a 4 Mbit/s stream is about
#: 400 packets a second, so this repairs heavy loss and no NACK can make it a flood.
RTX_RATE = 400.0
RTX_BURST = 200
RTX_REMEMBERED = 512


@dataclass(eq=False)
class EngineViewer:
    tx: TxViewer
    lane: int
    ssrc: int
    cname: str | None
    #: The ICE pair the engine sends on (it follows when ICE nominates another).
    pair: Any
    connection: Any
    #: Added to the stream's timestamps for this viewer (its RTP timestamps start anywhere).
    ts_offset: int = 0
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
    nacks_refused: int = 0  # NACKs cut short by the retransmission budget
    #: Retransmissions this viewer may ask for: RTX_RATE a second, RTX_BURST at once.
    rtx_budget: TokenBucket = field(default_factory=lambda: TokenBucket(RTX_RATE, RTX_BURST))
    #: When recent packets were sent again (at most RTX_REMEMBERED of them).
    retransmitted: OrderedDict[int, float] = field(default_factory=OrderedDict)
    plis: int = 0
    replays: int = 0

    def remember_retransmission(self, seq: int, when: float) -> None:
        self.retransmitted[seq] = when
        self.retransmitted.move_to_end(seq)
        while len(self.retransmitted) > RTX_REMEMBERED:
            self.retransmitted.popitem(last=False)

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
