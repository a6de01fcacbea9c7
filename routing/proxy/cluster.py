"""Several identical Kamailio nodes (docs/cluster.md): which node emits the record of an
answered call whose replicated `vocalls` entry expires without a BYE.

Every node holds every answered call (htable dmqreplicate) and every node's copy expires on
its own timer, so the expiry alone would make one record per node. The entry names its owner
(the node that answered the call: the one its Record-Route names, where its BYE goes); the
owner emits. When the owner is dead (no heartbeat in the replicated `vonodes` table for
DEAD_AFTER_S), the live node with the lowest id adopts the call and emits instead. The
choice is made from each node's own copy of `vonodes`, so two survivors agree as long as
their copies do (a heartbeat replicated within the second it is set).
"""

from __future__ import annotations

from collections.abc import Mapping

DEAD_AFTER_S = 5.0  # heartbeats every second (kamailio.cfg: rtimer voheart)


def node_order(node: str) -> tuple[int, str]:
    """Node ids are numbers ("1", "2", ...): ordered as numbers, anything else after them."""
    return (int(node), "") if node.isdigit() else (1 << 30, node)


def alive(heartbeats: Mapping[str, object], now: float, dead_after: float = DEAD_AFTER_S) -> list[str]:
    """The nodes whose last heartbeat (epoch seconds) is recent, in node order."""
    out = []
    for node, beat in heartbeats.items():
        try:
            if now - float(str(beat)) <= dead_after:
                out.append(node)
        except ValueError:
            continue
    return sorted(out, key=node_order)


def emits_expired(owner: str, me: str, heartbeats: Mapping[str, object], now: float,
                  dead_after: float = DEAD_AFTER_S) -> bool:
    """Whether this node (`me`) emits the record of an expired entry owned by `owner`."""
    if not me or not owner or owner == me:
        return True  # one node, an entry kept before there were owners, or ours
    live = alive(heartbeats, now, dead_after)
    if owner in live:
        return False  # its owner's own copy expires too: the owner emits
    survivors = live if me in live else sorted([*live, me], key=node_order)
    return survivors[0] == me
