"""A bounded reorder window for RTP over UDP: packets leave in sequence order.

The first packet waits for the second (which may have been sent before it) or for
`max_wait`. A packet that arrives out of order waits until the gap before it fills, the window is
full, or the gap has been open `max_wait` seconds; then the gap is given up as lost (the
assembler then drops the broken access unit and waits for a keyframe). A loss therefore
holds what follows it for at most `max_wait`, never longer. Duplicates and packets older
than what already left are dropped. Over TCP nothing is reordered: the window is not used.
"""

from __future__ import annotations

from media_server.rtp.packet import RtpPacket, seq_distance


class ReorderWindow:
    def __init__(self, size: int = 32, max_wait: float = 0.02) -> None:
        self._size = size
        self._max_wait = max_wait
        self._waiting: dict[int, RtpPacket] = {}
        self._next: int | None = None  # the sequence number due next
        self._gap_since: float | None = None  # when packets began to wait on a gap
        self._first = False  # the very first packet, held for one that may precede it
        self.lost = 0
        self.duplicates = 0
        self.reordered = 0

    def push(self, packet: RtpPacket, now: float = 0.0) -> list[RtpPacket]:
        """What can leave, in order, now that `packet` has come."""
        if self._next is None:  # the first: it waits for the second, which may be before it
            self._next, self._first = packet.sequence, True
        elif self._first:
            self._first = False
            if seq_distance(packet.sequence, self._next) < 0:
                self._next = packet.sequence
                self.reordered += 1
        ahead = seq_distance(packet.sequence, self._next)
        if ahead < 0 or packet.sequence in self._waiting:
            self.duplicates += 1  # already left, or already here
            return []
        if ahead >= 0x4000:  # far away: the source restarted its numbering
            self._waiting.clear()
            self._next = packet.sequence
        elif ahead == 0 and self._waiting:
            self.reordered += 1  # it fills the gap others waited on
        self._waiting[packet.sequence] = packet
        out = [] if self._first else self._release()
        if self._waiting and self._gap_since is None:
            self._gap_since = now
        if len(self._waiting) >= self._size:
            out += self._skip_gap()
        return out + self.expire(now)

    def expire(self, now: float) -> list[RtpPacket]:
        """Give up on a gap open for `max_wait` (also called when nothing arrives)."""
        if self._gap_since is not None and now - self._gap_since >= self._max_wait:
            if self._first:
                self._first = False
                return self._release()
            return self._skip_gap()
        return []

    @property
    def waiting(self) -> bool:
        return bool(self._waiting)

    def _release(self) -> list[RtpPacket]:
        out = []
        assert self._next is not None
        while self._next in self._waiting:
            out.append(self._waiting.pop(self._next))
            self._next = (self._next + 1) & 0xFFFF
        if not self._waiting:
            self._gap_since = None
        return out

    def _skip_gap(self) -> list[RtpPacket]:
        """Give up on what is missing before the oldest that waits."""
        if not self._waiting:
            return []
        assert self._next is not None
        oldest = min(self._waiting, key=lambda seq: seq_distance(seq, self._next or 0))
        self.lost += seq_distance(oldest, self._next)
        self._next = oldest
        self._gap_since = None  # another gap behind this one waits from its next packet
        return self._release()
