"""Ringing plans: who rings when, as waves (DESIGN.md section 2, strategies)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routing.core.compiler import compile_account
from routing.core.ringing_plan import STRATEGIES, group_plan, operator_plan

Plain = dict[str, Any]


def account_doc(groups: list[Plain], operators: list[str], defaults: Plain | None = None) -> Plain:
    """A minimal valid account document with these groups and operators."""
    return {
        "account": "plan-test",
        "name": "Plan test",
        "timezone": "Europe/Moscow",
        "numbers": ["+74950000000"],
        "defaults": defaults or {"attempts": 2, "ring_seconds": 20},
        "operators": [
            {"id": op, "name": op.title(), "phone": f"+7916000{i:04d}"} for i, op in enumerate(operators)
        ],
        "groups": groups,
        "operations": [{"id": f"to-{g['id']}", "name": g["id"], "type": "group", "group": g["id"]} for g in groups],
        "scenarios": [{"id": "s", "name": "S", "root": {"operation": f"to-{groups[0]['id']}"}}],
        "default_scenario": "s",
    }


def compiled(groups: list[Plain], operators: list[str], defaults: Plain | None = None) -> Plain:
    return compile_account(account_doc(groups, operators, defaults))


def names(plan: list[list[Plain]]) -> list[list[tuple[str, int]]]:
    return [[(ring["operator"], ring["attempt"]) for ring in wave] for wave in plan]


def test_account_doc_is_valid() -> None:
    from routing.core.validation import validate_document

    doc = account_doc([{"id": "g", "name": "G", "members": [{"operator": "a"}]}], ["a"])
    assert [p for p in validate_document(doc, "t") if p.severity == "error"] == []


# --- priority -----------------------------------------------------------------------------


def test_priority_seed_semantics(seed_doc: Plain) -> None:
    """Seed 3.3: both managers (priority 1) ring together, twice, then the head (priority 2)."""
    account = compile_account(seed_doc)
    assert names(group_plan(account, "clients")) == [
        [("ivanov", 1), ("petrov", 1)],
        [("ivanov", 2), ("petrov", 2)],
        [("sidorov", 1)],
        [("sidorov", 2)],
    ]


def test_priority_order_is_by_priority_not_list_order() -> None:
    account = compiled(
        [{"id": "g", "name": "G", "strategy": "priority", "members": [
            {"operator": "c", "priority": 3, "attempts": 1},
            {"operator": "a", "priority": 1, "attempts": 1},
            {"operator": "b", "priority": 2, "attempts": 2},
            {"operator": "d", "priority": 1, "attempts": 2},
        ]}],
        ["a", "b", "c", "d"],
    )
    assert names(group_plan(account, "g")) == [
        [("a", 1), ("d", 1)],
        [("d", 2)],
        [("b", 1)],
        [("b", 2)],
        [("c", 1)],
    ]


def test_priority_is_the_default_strategy() -> None:
    account = compiled(
        [{"id": "g", "name": "G", "members": [
            {"operator": "a", "priority": 2}, {"operator": "b", "priority": 1}]}],
        ["a", "b"],
        {"attempts": 1, "ring_seconds": 20},
    )
    assert account["groups"]["g"]["strategy"] == "priority"
    assert names(group_plan(account, "g")) == [[("b", 1)], [("a", 1)]]


def test_entries_carry_phone_and_own_ring_time_with_defaults() -> None:
    account = compiled(
        [{"id": "g", "name": "G", "members": [
            {"operator": "a", "ring_seconds": 15, "attempts": 1},
            {"operator": "b"},
        ]}],
        ["a", "b"],
        {"attempts": 1, "ring_seconds": 42},
    )
    assert group_plan(account, "g") == [[
        {"operator": "a", "phone": "+79160000000", "ring_seconds": 15, "attempt": 1},
        {"operator": "b", "phone": "+79160000001", "ring_seconds": 42, "attempt": 1},
    ]]


# --- sequential, round robin --------------------------------------------------------------

SERIAL = [
    {"operator": "alice", "attempts": 1, "ring_seconds": 15},
    {"operator": "bob", "attempts": 2, "ring_seconds": 25},
    {"operator": "carol", "attempts": 3, "ring_seconds": 10},
]


def serial_account(strategy: str) -> Plain:
    return compiled([{"id": "g", "name": "G", "strategy": strategy, "members": SERIAL}], ["alice", "bob", "carol"])


def test_sequential_rounds_in_list_order() -> None:
    plan = group_plan(serial_account("sequential"), "g")
    assert names(plan) == [
        [("alice", 1)], [("bob", 1)], [("carol", 1)],
        [("bob", 2)], [("carol", 2)],
        [("carol", 3)],
    ]
    assert [wave[0]["ring_seconds"] for wave in plan] == [15, 25, 10, 25, 10, 10]


def test_sequential_ignores_last_answered() -> None:
    account = serial_account("sequential")
    assert group_plan(account, "g", last_answered="bob") == group_plan(account, "g")


@pytest.mark.parametrize(
    ("last", "first_round"),
    [
        (None, ["alice", "bob", "carol"]),
        ("alice", ["bob", "carol", "alice"]),
        ("bob", ["carol", "alice", "bob"]),
        ("carol", ["alice", "bob", "carol"]),
        ("nobody", ["alice", "bob", "carol"]),  # left the group since: start at the first
    ],
)
def test_round_robin_starts_after_last_answered(last: str | None, first_round: list[str]) -> None:
    plan = group_plan(serial_account("round_robin"), "g", last_answered=last)
    assert [wave[0]["operator"] for wave in plan[:3]] == first_round
    assert all(wave[0]["attempt"] == 1 for wave in plan[:3])


def test_round_robin_later_rounds_keep_the_rotation() -> None:
    plan = group_plan(serial_account("round_robin"), "g", last_answered="alice")
    assert names(plan) == [
        [("bob", 1)], [("carol", 1)], [("alice", 1)],
        [("bob", 2)], [("carol", 2)],
        [("carol", 3)],
    ]


def test_newyork_client_managers_round_robin() -> None:
    path = Path(__file__).resolve().parent.parent / "examples" / "newyork-dst.json"
    account = compile_account(json.loads(path.read_text(encoding="utf-8")))
    assert names(group_plan(account, "client-managers", last_answered="dave")) == [
        [("erin", 1)], [("frank", 1)], [("dave", 1)], [("frank", 2)], [("dave", 2)],
    ]


# --- random -------------------------------------------------------------------------------

FIVE = ["a", "b", "c", "d", "e"]


def random_account() -> Plain:
    return compiled(
        [{"id": "g", "name": "G", "strategy": "random", "members": [{"operator": op, "attempts": 1} for op in FIVE]}],
        FIVE,
    )


def test_random_is_deterministic_per_seed() -> None:
    account = random_account()
    assert group_plan(account, "g", seed="call-1") == group_plan(account, "g", seed="call-1")


def test_random_is_a_permutation() -> None:
    account = random_account()
    for seed in ("", "x", "call-42"):
        plan = group_plan(account, "g", seed=seed)
        assert all(len(wave) == 1 for wave in plan)
        assert sorted(wave[0]["operator"] for wave in plan) == FIVE


def test_random_orders_differ_between_seeds() -> None:
    account = random_account()
    orders = {tuple(wave[0]["operator"] for wave in group_plan(account, "g", seed=str(s))) for s in range(40)}
    assert len(orders) > 5


def test_random_depends_on_the_group() -> None:
    """Two groups with the same members and the same call id need not ring in the same order."""
    groups = [
        {"id": f"g{i}", "name": "G", "strategy": "random", "members": [{"operator": op, "attempts": 1} for op in FIVE]}
        for i in range(10)
    ]
    account = compiled(groups, FIVE)
    orders = {tuple(w[0]["operator"] for w in group_plan(account, f"g{i}", seed="call")) for i in range(10)}
    assert len(orders) > 1


def test_random_is_the_same_in_another_process() -> None:
    """Kamailio workers are separate processes: the order must not depend on hash randomisation."""
    account = random_account()
    here = [w[0]["operator"] for w in group_plan(account, "g", seed="call-7")]
    code = (
        "import json, sys\n"
        "from routing.core.ringing_plan import group_plan\n"
        "account = json.loads(sys.stdin.read())\n"
        "print(json.dumps([w[0]['operator'] for w in group_plan(account, 'g', seed='call-7')]))\n"
    )
    for hashseed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code], input=json.dumps(account), capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONHASHSEED": hashseed},
        )
        assert json.loads(out.stdout) == here


def test_random_rounds_keep_the_drawn_order() -> None:
    account = compiled(
        [{"id": "g", "name": "G", "strategy": "random", "members": [{"operator": op, "attempts": 2} for op in FIVE]}],
        FIVE,
    )
    plan = group_plan(account, "g", seed="s")
    first = [w[0]["operator"] for w in plan[:5]]
    second = [w[0]["operator"] for w in plan[5:]]
    assert first == second
    assert [w[0]["attempt"] for w in plan] == [1] * 5 + [2] * 5


# --- simultaneous, operator plan, errors --------------------------------------------------


def test_simultaneous_everyone_per_attempt() -> None:
    plan = group_plan(serial_account("simultaneous"), "g")
    assert names(plan) == [
        [("alice", 1), ("bob", 1), ("carol", 1)],
        [("bob", 2), ("carol", 2)],
        [("carol", 3)],
    ]


def test_simultaneous_ignores_priorities() -> None:
    account = compiled(
        [{"id": "g", "name": "G", "strategy": "simultaneous", "members": [
            {"operator": "a", "priority": 2, "attempts": 1}, {"operator": "b", "priority": 1, "attempts": 1}]}],
        ["a", "b"],
    )
    assert names(group_plan(account, "g")) == [[("a", 1), ("b", 1)]]


def test_operator_plan_uses_account_defaults() -> None:
    account = compiled(
        [{"id": "g", "name": "G", "members": [{"operator": "a"}]}], ["a", "b"], {"attempts": 3, "ring_seconds": 35}
    )
    assert operator_plan(account, "b") == [
        [{"operator": "b", "phone": "+79160000001", "ring_seconds": 35, "attempt": n}] for n in (1, 2, 3)
    ]


def test_operator_plan_seed(seed_doc: Plain) -> None:
    account = compile_account(seed_doc)
    assert names(operator_plan(account, "popova")) == [[("popova", 1)], [("popova", 2)]]
    assert operator_plan(account, "popova")[0][0]["ring_seconds"] == 20


def test_unknown_strategy_is_refused() -> None:
    account = serial_account("sequential")
    account["groups"]["g"]["strategy"] = "loudest"
    with pytest.raises(ValueError, match="loudest"):
        group_plan(account, "g")


# --- properties over random groups ---------------------------------------------------------

member_params = st.tuples(
    st.integers(min_value=1, max_value=3),  # priority
    st.integers(min_value=1, max_value=3),  # attempts
    st.integers(min_value=5, max_value=60),  # ring seconds
)


@st.composite
def random_group(draw: st.DrawFn) -> tuple[Plain, list[list[Any]], str, str | None, str]:
    params = draw(st.lists(member_params, min_size=1, max_size=6))
    strategy = draw(st.sampled_from(STRATEGIES))
    members = [[f"op{i}", p, a, r] for i, (p, a, r) in enumerate(params)]
    account = {
        "operators": {m[0]: {"name": m[0], "phone": f"+7916111{i:04d}", "extension": None} for i, m in enumerate(members)},
        "groups": {"g": {"name": "G", "strategy": strategy, "members": members}},
        "defaults": {"attempts": 2, "ring_seconds": 20, "input_timeout": 5},
    }
    last = draw(st.one_of(st.none(), st.sampled_from([m[0] for m in members] + ["gone"])))
    seed = draw(st.text(max_size=8))
    return account, members, strategy, last, seed


@settings(deadline=None)
@given(data=random_group())
def test_plan_properties(data: tuple[Plain, list[list[Any]], str, str | None, str]) -> None:
    account, members, strategy, last, seed = data
    plan = group_plan(account, "g", last_answered=last, seed=seed)
    by_id = {m[0]: m for m in members}
    entries = [ring for wave in plan for ring in wave]

    assert all(wave for wave in plan), "no empty waves"
    # every member rings exactly `attempts` times, and nobody else rings
    assert Counter(r["operator"] for r in entries) == {m[0]: m[2] for m in members}
    # each entry carries the member's own ring time and the operator's phone
    for ring in entries:
        assert ring["ring_seconds"] == by_id[ring["operator"]][3]
        assert ring["phone"] == account["operators"][ring["operator"]]["phone"]
    # nobody twice in one wave
    for wave in plan:
        assert len({r["operator"] for r in wave}) == len(wave)
    # attempts of one operator are 1..attempts, in order
    for op_id, member in by_id.items():
        assert [r["attempt"] for r in entries if r["operator"] == op_id] == list(range(1, member[2] + 1))

    if strategy in ("sequential", "round_robin", "random"):
        assert all(len(wave) == 1 for wave in plan)
    if strategy == "priority":
        levels = [{by_id[r["operator"]][1] for r in wave} for wave in plan]
        assert all(len(level) == 1 for level in levels), "a wave mixes priorities"
        order = [level.pop() for level in levels]
        assert order == sorted(order)
        for level in set(order):
            same = [m for m in members if m[1] == level]
            assert order.count(level) == max(m[2] for m in same)
    if strategy == "simultaneous":
        assert len(plan) == max(m[2] for m in members)
        assert {r["operator"] for r in plan[0]} == set(by_id)
    if strategy in ("priority", "simultaneous"):
        # a wave is one attempt of everyone (of its priority level) who still has that attempt
        for wave in plan:
            attempt = wave[0]["attempt"]
            assert all(r["attempt"] == attempt for r in wave)
            level = by_id[wave[0]["operator"]][1]
            expected = {
                m[0] for m in members if m[2] >= attempt and (strategy == "simultaneous" or m[1] == level)
            }
            assert {r["operator"] for r in wave} == expected
    if strategy == "sequential":
        assert plan[0][0]["operator"] == members[0][0]
        first_round = [w[0]["operator"] for w in plan if w[0]["attempt"] == 1]
        assert first_round == [m[0] for m in members]
    if strategy == "round_robin":
        ids = [m[0] for m in members]
        start = ids.index(last) + 1 if last in ids else 0
        first_round = [w[0]["operator"] for w in plan if w[0]["attempt"] == 1]
        assert first_round == ids[start:] + ids[:start]
    if strategy == "random":
        first_round = [w[0]["operator"] for w in plan if w[0]["attempt"] == 1]
        assert sorted(first_round) == sorted(by_id)
        assert group_plan(account, "g", last_answered=last, seed=seed) == plan
