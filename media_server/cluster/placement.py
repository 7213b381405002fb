"""Which node takes an unowned stream: a pure rule every node computes alike.

Each unowned stream goes, in id order, to the live node with the lowest share of its
capacity in use (ties by node id), counting the leases every node has just read, so the
nodes agree without talking and rarely race (when they do, the lease decides). A stream
left unowned for `patience` rounds is taken by any node with room, so a chosen node that
is slow or stuck cannot keep a camera dark.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def claims(
    me: str,
    capacities: Mapping[str, int],
    holders: Iterable[str],
    unowned: Mapping[str, int],
    patience: int,
) -> list[str]:
    """The streams `me` should try to take now.

    `capacities`: the live nodes (me among them) and how many streams each may ingest;
    `holders`: the node of every lease held; `unowned`: each unowned stream and for how
    many rounds it has been so.
    """
    loads = dict.fromkeys(capacities, 0)
    for holder in holders:
        if holder in loads:
            loads[holder] += 1
    mine: list[str] = []
    for stream_id in sorted(unowned):
        room = [node for node in capacities if loads[node] < capacities[node]]
        if not room:
            break  # every node ingests all it may
        chosen = min(room, key=lambda node: (loads[node] / capacities[node], node))
        loads[chosen] += 1
        if chosen == me or (unowned[stream_id] >= patience and me in room):
            mine.append(stream_id)
    return mine
