"""A bounded reorder window for RTP over UDP: packets leave in sequence order.

A packet that arrives out of order waits until the gap before it fills or the window is
full; then the gap is given up as lost (the depacketizer then drops the broken access
unit and waits for a keyframe). Duplicates and packets older than what already left are
dropped. Over TCP nothing is reordered: the window is not used there.
"""

from __future__ import annotations

from media_server.rtp.packet import RtpPacket, seq_distance


class ReorderWindow:
    def __init__(self, size: int = 32) -> None:
        self._size = size
        self._waiting: dict[int, RtpPacket] = {}
        self._next: int | None = None  # the sequence number due next
        self.lost = 0
        self.duplicates = 0

    def push(self, packet: RtpPacket) -> list[RtpPacket]:
        """What can leave, in order, now that `packet` has come."""
        if self._next is None:
            self._next = packet.sequence
        ahead = seq_distance(packet.sequence, self._next)
        if ahead < 0 or packet.sequence in self._waiting:
            self.duplicates += 1  # already left, or already here
            return []
        if ahead >= 0x4000:  # far away: the source restarted its numbering
            self._waiting.clear()
            self._next = packet.sequence
        self._waiting[packet.sequence] = packet
        out = self._release()
        if len(self._waiting) >= self._size:
            out += self._skip_gap()
        return out

    def _release(self) -> list[RtpPacket]:
        out = []
        assert self._next is not None
        while self._next in self._waiting:
            out.append(self._waiting.pop(self._next))
            self._next = (self._next + 1) & 0xFFFF
        return out

    def _skip_gap(self) -> list[RtpPacket]:
        """The window is full: give up on what is missing before the oldest that waits."""
        assert self._next is not None
        oldest = min(self._waiting, key=lambda seq: seq_distance(seq, self._next or 0))
        self.lost += seq_distance(oldest, self._next)
        self._next = oldest
        return self._release()
