"""Ringing plans: who rings when, as waves.

A plan is a list of waves; everyone in a wave rings at once (parallel branches), waves ring
one after another (serial). Each entry carries its own ring time so a branch can have its
own timer. Attempts are rounds: a member with 2 attempts is in round 1 and round 2, so
`priority` rings both managers together twice (seed 3.3: "attempts continue until someone
answers or they are used up"), then the head of department.
"""

from __future__ import annotations

import random
from typing import Any

Ring = dict[str, Any]  # {"operator", "phone", "ring_seconds", "attempt"}
Wave = list[Ring]
Member = list[Any]  # [operator id, priority, attempts, ring_seconds]

STRATEGIES = ("priority", "sequential", "round_robin", "random", "simultaneous")


def _ring(account: dict[str, Any], member: Member, attempt: int) -> Ring:
    operator_id, _priority, _attempts, ring_seconds = member
    return {
        "operator": operator_id,
        "phone": account["operators"][operator_id]["phone"],
        "ring_seconds": ring_seconds,
        "attempt": attempt,
    }


def _parallel_rounds(account: dict[str, Any], members: list[Member]) -> list[Wave]:
    rounds = max(m[2] for m in members)
    return [
        [_ring(account, m, attempt) for m in members if m[2] >= attempt]
        for attempt in range(1, rounds + 1)
    ]


def _serial_rounds(account: dict[str, Any], members: list[Member]) -> list[Wave]:
    rounds = max(m[2] for m in members)
    return [
        [_ring(account, m, attempt)]
        for attempt in range(1, rounds + 1)
        for m in members
        if m[2] >= attempt
    ]


def group_plan(
    account: dict[str, Any],
    group_id: str,
    last_answered: str | None = None,
    seed: str = "",
) -> list[Wave]:
    """The waves for ringing a group of a compiled account.

    `last_answered` is the member who answered this group last (round_robin starts after
    them); `seed` makes `random` reproducible per call (use the call id).
    """
    group = account["groups"][group_id]
    members: list[Member] = group["members"]
    strategy = group["strategy"]
    if strategy == "priority":
        levels = sorted({m[1] for m in members})
        return [
            wave
            for level in levels
            for wave in _parallel_rounds(account, [m for m in members if m[1] == level])
        ]
    if strategy == "simultaneous":
        return _parallel_rounds(account, members)
    if strategy == "round_robin":
        ids = [m[0] for m in members]
        start = ids.index(last_answered) + 1 if last_answered in ids else 0
        return _serial_rounds(account, members[start:] + members[:start])
    if strategy == "random":
        shuffled = list(members)
        random.Random(f"{group_id}:{seed}").shuffle(shuffled)
        return _serial_rounds(account, shuffled)
    if strategy == "sequential":
        return _serial_rounds(account, members)
    raise ValueError(f"unknown strategy {strategy!r}")


def operator_plan(account: dict[str, Any], operator_id: str) -> list[Wave]:
    """The waves for ringing one operator reached by extension, with the account defaults."""
    defaults = account["defaults"]
    member = [operator_id, 1, defaults["attempts"], defaults["ring_seconds"]]
    return _serial_rounds(account, [member])
