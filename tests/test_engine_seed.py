"""The seed's Situation paragraph (DESIGN.md section 2), case by case, through the engine."""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

import pytest

from routing.core.compiler import compile_account
from routing.core.engine import CompiledAccount, decide
from routing.core.scenario import Event, EventError
from routing.core.simulate import simulate

NUMBER = "+74951234567"
OTHER = "+79031112233"  # not VIP
VIP = "+74957654321"  # matches +7495*


@pytest.fixture
def seed(seed_doc: dict[str, Any]) -> CompiledAccount:
    return CompiledAccount(compile_account(seed_doc))


def run(account: CompiledAccount, at: str, caller: str = OTHER, *events: str) -> dict[str, Any]:
    return simulate(account, NUMBER, caller, datetime.fromisoformat(at), [Event.parse(e) for e in events])


def rule_of(account: CompiledAccount, at: str, caller: str = OTHER) -> str | None:
    decision = decide(account, NUMBER, caller, datetime.fromisoformat(at))
    return decision.rule.id if decision.rule else None


def waves(step: dict[str, Any]) -> list[list[str]]:
    return [[ring["operator"] for ring in wave] for wave in step["waves"]]


# --- rules by time of day (Wednesday 2026-11-25 is an ordinary working day) --------------


@pytest.mark.parametrize(
    ("at", "rule"),
    [
        ("2026-11-25T08:59:59", None),
        ("2026-11-25T09:00:00", "r2"),
        ("2026-11-25T12:59:59", "r2"),
        ("2026-11-25T13:00:00", "r1"),
        ("2026-11-25T13:59:59", "r1"),
        ("2026-11-25T14:00:00", "r2"),
        ("2026-11-25T17:59:59", "r2"),
        ("2026-11-25T18:00:00", None),
        ("2026-11-25T20:00:00", None),
    ],
)
def test_weekday_boundaries_are_half_open(seed: CompiledAccount, at: str, rule: str | None) -> None:
    assert rule_of(seed, at) == rule


def test_weekday_extension_dialled_rings_that_operator(seed: CompiledAccount) -> None:
    result = run(seed, "2026-11-25T10:00", OTHER, "digits:101", "answer:ivanov")
    assert result["rule"] == {"id": "r2", "name": "Правило №2"}
    assert result["scenario"] == {"id": "workday", "name": "Будни"}
    assert result["day_type"] == "working"
    [step] = result["steps"]
    assert step["operation"]["type"] == "extension"
    assert waves(step) == [["ivanov"], ["ivanov"]]  # default 2 attempts
    assert step["event"] == "answer:ivanov"
    assert result["end"] == "answered"


@pytest.mark.parametrize("failure", [["timeout"], ["digits:999"], ["digits:102", "busy"], ["digits:103", "no-answer"]])
def test_weekday_without_extension_goes_to_client_department(seed: CompiledAccount, failure: list[str]) -> None:
    result = run(seed, "2026-11-25T11:00", OTHER, *failure, "answer:sidorov")
    ext, group = result["steps"]
    assert ext["event"] == failure[-1]
    assert group["operation"] == {"id": "to-clients", "name": "Переадресация на Клиентский отдел", "type": "group"}
    # both managers at once, per attempt, and only then the head of department
    assert waves(group) == [["ivanov", "petrov"], ["ivanov", "petrov"], ["sidorov"], ["sidorov"]]
    assert all(r["ring_seconds"] == 20 for w in group["waves"] for r in w)
    assert [r["attempt"] for w in group["waves"] for r in w] == [1, 1, 2, 2, 1, 2]
    assert result["end"] == "answered"


def test_weekday_nobody_answers_ends_the_call(seed: CompiledAccount) -> None:
    result = run(seed, "2026-11-25T11:00", OTHER, "timeout", "no-answer")
    assert result["end"] == "hangup"


def test_lunch_secretary_then_menu_voicemail(seed: CompiledAccount) -> None:
    result = run(seed, "2026-11-25T13:30", OTHER, "no-answer", "key:0", "key:1")
    assert result["rule"]["id"] == "r1"
    assert result["scenario"]["name"] == "Обед"
    secretary, menu, voicemail = result["steps"]
    assert waves(secretary) == [["smirnova"], ["smirnova"]]
    assert menu["operation"]["name"] == "Аварийное меню"
    assert menu["inputs"] == ["key:0"]  # 0 replays the prompt
    assert menu["event"] == "key:1"
    assert voicemail["operation"]["type"] == "voicemail"
    assert result["end"] == "voicemail"


def test_lunch_busy_secretary_fax(seed: CompiledAccount) -> None:
    assert run(seed, "2026-11-25T13:00", OTHER, "busy", "key:2")["end"] == "fax"


def test_lunch_secretary_answers(seed: CompiledAccount) -> None:
    assert run(seed, "2026-11-25T13:10", OTHER, "answer:smirnova")["end"] == "answered"


def test_menu_without_input_ends(seed: CompiledAccount) -> None:
    assert run(seed, "2026-11-25T13:10", OTHER, "no-answer", "timeout")["end"] == "hangup"


def test_menu_replays_are_bounded(seed: CompiledAccount) -> None:
    # max_repeats defaults to 3; the fourth invalid key moves on (menu has no next: hangup)
    result = run(seed, "2026-11-25T13:10", OTHER, "no-answer", "key:5", "key:0", "key:7", "key:9")
    assert result["steps"][1]["inputs"] == ["key:5", "key:0", "key:7"]
    assert result["end"] == "hangup"


# --- weekends and holidays --------------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "caller", "rule", "scenario"),
    [
        ("2026-11-28T12:00", VIP, "r3", "weekend-vip"),  # Saturday, VIP in hours
        ("2026-11-29T17:59", "+79161234567", "r3", "weekend-vip"),  # Sunday, +7916??????? VIP
        ("2026-11-28T11:59", VIP, "r4", "weekend"),  # VIP before 12:00
        ("2026-11-28T18:00", VIP, "r4", "weekend"),  # VIP at 18:00 (end is exclusive)
        ("2026-11-28T13:00", OTHER, "r4", "weekend"),  # not VIP
        ("2026-11-28T13:00", "anonymous", "r4", "weekend"),
        ("2026-11-28T13:00", "84957654321", "r3", "weekend-vip"),  # national form of a VIP
        ("2026-11-28T13:00", "+791612345678", "r4", "weekend"),  # one digit too many for ???????
    ],
)
def test_weekend(seed: CompiledAccount, at: str, caller: str, rule: str, scenario: str) -> None:
    result = run(seed, at, caller)
    assert result["day_type"] == "weekend"
    assert (result["rule"]["id"], result["scenario"]["id"]) == (rule, scenario)


def test_weekend_vip_may_leave_voicemail_or_fax(seed: CompiledAccount) -> None:
    assert run(seed, "2026-11-28T15:00", VIP, "key:1")["end"] == "voicemail"
    assert run(seed, "2026-11-28T15:00", VIP, "key:2")["end"] == "fax"


def test_others_hear_the_greeting_and_the_call_ends(seed: CompiledAccount) -> None:
    result = run(seed, "2026-11-28T15:00", OTHER, "timeout")
    [greeting] = result["steps"]
    assert greeting["operation"]["name"] == "Приветствие компании"
    assert "9 до 18" in greeting["sound"]["text"]
    assert result["end"] == "hangup"


@pytest.mark.parametrize(
    ("at", "day_type", "rule"),
    [
        ("2026-12-31T10:00", "holiday", "r4"),  # substituted day off (from Sunday 2026-01-04)
        ("2026-01-09T10:00", "holiday", "r4"),  # substituted day off (from Saturday 2026-01-03)
        ("2026-01-07T10:00", "holiday", "r4"),  # Christmas, a Wednesday
        ("2026-11-04T10:00", "holiday", "r4"),  # Unity Day, a Wednesday
        ("2026-03-09T10:00", "holiday", "r4"),  # Women's Day moved from Sunday
        ("2025-11-01T10:00", "working", "r2"),  # a Saturday worked in Russia (transfer)
        ("2026-12-30T10:00", "working", "r2"),  # an ordinary Wednesday
    ],
)
def test_national_calendar(seed: CompiledAccount, at: str, day_type: str, rule: str) -> None:
    result = run(seed, at)
    assert result["day_type"] == day_type
    assert result["rule"]["id"] == rule


def test_vip_on_a_holiday_afternoon(seed: CompiledAccount) -> None:
    assert rule_of(seed, "2026-12-31T12:30", VIP) == "r3"


def test_account_extra_holidays_and_workdays(seed_doc: dict[str, Any]) -> None:
    doc = copy.deepcopy(seed_doc)
    doc["calendar"]["holidays"] = ["2026-12-30"]
    doc["calendar"]["workdays"] = ["2026-12-27", "2026-12-31"]  # a Sunday, a national day off
    account = CompiledAccount(compile_account(doc))
    assert run(account, "2026-12-30T10:00")["day_type"] == "holiday"
    assert run(account, "2026-12-27T10:00")["rule"]["id"] == "r2"
    assert run(account, "2026-12-31T13:30")["rule"]["id"] == "r1"


@pytest.mark.parametrize(
    ("at", "caller", "rule", "local"),
    [
        ("2026-11-25T07:00:00Z", OTHER, "r2", "2026-11-25T10:00:00+03:00"),
        ("2026-11-25T10:30:00+00:00", OTHER, "r1", "2026-11-25T13:30:00+03:00"),
        ("2026-11-25T15:00:00Z", OTHER, None, "2026-11-25T18:00:00+03:00"),
        ("2026-11-25T05:59:00-04:00", OTHER, "r2", "2026-11-25T12:59:00+03:00"),
        # Friday 21:30 UTC is Saturday 00:30 in Moscow: outside the VIP window 12-18
        ("2026-11-27T21:30:00Z", VIP, "r4", "2026-11-28T00:30:00+03:00"),
        ("2026-11-28T09:00:00Z", VIP, "r3", "2026-11-28T12:00:00+03:00"),
    ],
)
def test_instants_with_an_offset_are_converted_to_moscow_time(
    seed: CompiledAccount, at: str, caller: str, rule: str | None, local: str
) -> None:
    result = run(seed, at, caller)
    assert result["local_time"] == local
    assert (result["rule"]["id"] if result["rule"] else None) == rule


def test_weekday_evening_gets_the_default_greeting(seed: CompiledAccount) -> None:
    result = run(seed, "2026-11-25T20:00", OTHER, "timeout")
    assert result["rule"] is None
    assert result["scenario"] == {"id": "weekend", "name": "Выходные"}
    assert result["end"] == "hangup"


def test_pending_when_events_run_out(seed: CompiledAccount) -> None:
    result = run(seed, "2026-11-25T10:00", OTHER)
    assert result["end"] == "pending"
    assert result["steps"][0]["event"] is None


def test_events_that_do_not_apply_are_refused(seed: CompiledAccount) -> None:
    with pytest.raises(EventError, match="does not apply"):
        run(seed, "2026-11-25T10:00", OTHER, "answer:ivanov")
    with pytest.raises(EventError, match="not rung"):
        run(seed, "2026-11-25T10:00", OTHER, "digits:101", "answer:petrov")
    with pytest.raises(EventError, match="ended"):
        run(seed, "2026-11-28T15:00", VIP, "key:1", "timeout")
