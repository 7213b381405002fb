"""The lease-claim rule: every node computes the same placement from the same reading."""

from __future__ import annotations

from media_server.cluster.placement import claims

NODES = {"a": 10, "b": 10, "c": 10}


def placement(unowned: dict[str, int], holders: list[str], patience: int = 3) -> dict[str, str]:
    """Which node claims each stream, as each node computes it."""
    taken: dict[str, str] = {}
    for node in NODES:
        for stream_id in claims(node, NODES, holders, unowned, patience):
            assert stream_id not in taken, f"{stream_id} claimed twice"
            taken[stream_id] = node
    return taken


def test_new_streams_spread_one_per_node() -> None:
    assert placement({"s1": 1, "s2": 1, "s3": 1}, []) == {"s1": "a", "s2": "b", "s3": "c"}


def test_the_least_loaded_node_takes_the_next() -> None:
    assert placement({"s9": 1}, ["a", "a", "b"]) == {"s9": "c"}


def test_load_is_a_share_of_capacity() -> None:
    capacities = {"big": 100, "small": 2}
    # 1 of 2 is half full; 10 of 100 a tenth: the big node takes it.
    assert claims("big", capacities, ["small"] + ["big"] * 10, {"s": 1}, 3) == ["s"]
    assert claims("small", capacities, ["small"] + ["big"] * 10, {"s": 1}, 3) == []


def test_full_nodes_take_nothing() -> None:
    assert claims("a", {"a": 1, "b": 1}, ["a", "b"], {"s": 5}, 3) == []


def test_a_stream_unowned_too_long_is_taken_by_anyone_with_room() -> None:
    # b was chosen but has not taken it: after `patience` rounds every node with room tries.
    assert claims("a", {"a": 10, "b": 10}, ["a"], {"s": 2}, 3) == []
    assert claims("a", {"a": 10, "b": 10}, ["a"], {"s": 3}, 3) == ["s"]
    assert claims("a", {"a": 1, "b": 10}, ["a"], {"s": 9}, 3) == []  # a has no room


def test_leases_of_nodes_that_left_do_not_count() -> None:
    assert claims("a", {"a": 10}, ["gone", "gone"], {"s": 1}, 3) == ["s"]
