"""The manual override, pure: when it is in force, `decide` applying it before the rules,
`--until` parsing; simulate and coverage showing it."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing.core.compiler import compile_account
from routing.core.coverage import format_text, week_coverage
from routing.core.engine import OVERRIDE_RULE_ID, CompiledAccount, decide
from routing.core.override import (
    ACTIVE,
    EXPIRED,
    NOT_YET,
    SCENARIO_MISSING,
    BadTime,
    Override,
    OverrideError,
    parse_trial,
    parse_until,
)
from routing.core.simulate import simulate

from .conftest import SEED

NUMBER = "+74951234567"
OTHER = "+79031112233"
MSK = ZoneInfo("Europe/Moscow")
WEDNESDAY_1030 = datetime(2026, 11, 25, 10, 30, tzinfo=MSK)  # r2: workday
SET_AT = datetime(2026, 11, 25, 7, 0, tzinfo=UTC)  # 10:00 MSK
UNTIL = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)  # 11:00 MSK


@pytest.fixture(scope="module")
def seed() -> CompiledAccount:
    import json

    return CompiledAccount(compile_account(json.loads(SEED.read_text(encoding="utf-8"))))


def night(until: datetime | None = UNTIL, set_at: datetime = SET_AT, scenario: str = "weekend") -> Override:
    return Override(scenario, until, "noc", set_at)


def test_in_force_from_set_at_inclusive_to_until_exclusive() -> None:
    override = night()
    assert not override.active_at(SET_AT - timedelta(microseconds=1))
    assert override.active_at(SET_AT)
    assert override.active_at(UNTIL - timedelta(microseconds=1))
    assert not override.active_at(UNTIL)
    assert night(until=None).active_at(SET_AT + timedelta(days=3650))
    assert override.active_at(UNTIL.astimezone(MSK) - timedelta(seconds=1))  # zones do not matter, instants do
    scenarios = {"weekend", "workday"}
    assert override.status_at(SET_AT, scenarios) == ACTIVE
    assert override.status_at(UNTIL, scenarios) == EXPIRED
    assert override.status_at(SET_AT - timedelta(seconds=1), scenarios) == NOT_YET
    assert override.status_at(SET_AT, {"workday"}) == SCENARIO_MISSING


def test_round_trips_through_plain_data() -> None:
    for override in (night(), night(until=None)):
        assert Override.from_dict(override.to_dict()) == override
    assert night().to_dict() == {"scenario": "weekend", "until": "2026-11-25T08:00:00Z", "set_by": "noc",
                                 "set_at": "2026-11-25T07:00:00Z"}
    for bad in (None, [], {"scenario": 1, "set_at": "x"}, {"scenario": "a", "set_at": "2026-11-25T07:00:00"},
                {"scenario": "a", "set_at": "2026-11-25T07:00:00Z", "until": 5}):
        with pytest.raises(ValueError):
            Override.from_dict(bad)


def test_decide_applies_the_override_before_the_rules(seed: CompiledAccount) -> None:
    by_rules = decide(seed, NUMBER, OTHER, WEDNESDAY_1030)
    assert by_rules.rule is not None and by_rules.rule.id == "r2" and by_rules.override is None
    decision = decide(seed, NUMBER, OTHER, WEDNESDAY_1030, night())
    assert decision.rule is not None and decision.rule.id == OVERRIDE_RULE_ID
    assert decision.scenario == "weekend" and decision.node == seed.roots["weekend"]
    assert decision.override == night()
    assert (decision.local_time, decision.day_type, decision.caller) == (by_rules.local_time, by_rules.day_type, by_rules.caller)
    assert "11:00" in decision.rule.name  # until, in the account's time
    # expired: the rules decide again
    after = decide(seed, NUMBER, OTHER, UNTIL + timedelta(seconds=1), night())
    assert after == decide(seed, NUMBER, OTHER, UNTIL + timedelta(seconds=1))
    # a naive instant is the account's wall time, as for the rules
    assert decide(seed, NUMBER, OTHER, datetime(2026, 11, 25, 10, 30), night()).scenario == "weekend"


def test_an_override_whose_scenario_is_gone_leaves_the_rules_to_decide(seed: CompiledAccount) -> None:
    gone = night(scenario="holiday-mode")
    assert decide(seed, NUMBER, OTHER, WEDNESDAY_1030, gone) == decide(seed, NUMBER, OTHER, WEDNESDAY_1030)


@st.composite
def inactive_overrides(draw: st.DrawFn) -> tuple[datetime, Override]:
    at = draw(st.datetimes(datetime(2026, 1, 1), datetime(2027, 12, 31), timezones=st.just(UTC)))
    kind = draw(st.sampled_from(["expired", "not yet", "missing"]))
    before = at - timedelta(seconds=draw(st.integers(0, 10**7)))
    after = at + timedelta(seconds=draw(st.integers(1, 10**7)))
    if kind == "expired":
        return at, Override("weekend", before, "noc", before - timedelta(seconds=draw(st.integers(1, 10**6))))
    if kind == "not yet":
        return at, Override("weekend", draw(st.none() | st.just(after + timedelta(hours=1))), "noc", after)
    return at, Override("no-such-scenario", draw(st.none() | st.just(after)), "noc", before)


@given(case=inactive_overrides(), caller=st.sampled_from([None, OTHER, "+74957654321", "anonymous"]))
def test_an_inactive_override_decides_exactly_as_none(seed: CompiledAccount, case: tuple[datetime, Override],
                                                      caller: str | None) -> None:
    at, override = case
    assert decide(seed, NUMBER, caller, at, override) == decide(seed, NUMBER, caller, at)


@given(at=st.datetimes(datetime(2026, 1, 1), datetime(2027, 12, 31), timezones=st.just(UTC)),
       scenario=st.sampled_from(["workday", "lunch", "weekend", "weekend-vip"]),
       caller=st.sampled_from([None, OTHER, "+74957654321"]))
def test_an_active_override_wins_at_any_instant_for_any_caller(seed: CompiledAccount, at: datetime, scenario: str,
                                                               caller: str | None) -> None:
    decision = decide(seed, NUMBER, caller, at, Override(scenario, None, "noc", at))
    assert decision.scenario == scenario and decision.rule is not None and decision.rule.id == OVERRIDE_RULE_ID


# --- --until ----------------------------------------------------------------------------------


NOW = datetime(2026, 11, 25, 20, 0, tzinfo=MSK)  # a Wednesday evening


def test_until_forms() -> None:
    assert parse_until("09:00", MSK, NOW) == datetime(2026, 11, 26, 9, 0, tzinfo=MSK)  # next morning
    assert parse_until("21:30", MSK, NOW) == datetime(2026, 11, 25, 21, 30, tzinfo=MSK)  # tonight
    assert parse_until("2026-11-27T09:00", MSK, NOW) == datetime(2026, 11, 27, 9, 0, tzinfo=MSK)  # account's time
    assert parse_until("2026-11-27T09:00+00:00", MSK, NOW) == datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    assert parse_until(" 2026-11-27T06:00Z ", MSK, NOW) == datetime(2026, 11, 27, 9, 0, tzinfo=MSK)
    assert parse_until("2026-11-27", MSK, NOW) == datetime(2026, 11, 27, tzinfo=MSK)


def test_until_refusals() -> None:
    with pytest.raises(OverrideError, match="not later than now"):
        parse_until("2026-11-25T19:59", MSK, NOW)
    with pytest.raises(OverrideError, match="not later than now"):
        parse_until("2026-11-25T20:00+03:00", MSK, NOW)  # the boundary: must be strictly later
    for text in ("tomorrow", "25:00", "9", "", "2026-13-01T00:00"):
        with pytest.raises(BadTime, match="is not a time"):
            parse_until(text, MSK, NOW)
    new_york = ZoneInfo("America/New_York")
    with pytest.raises(BadTime, match="does not exist"):  # spring forward: 02:30 never happens
        parse_until("2027-03-14T02:30", new_york, datetime(2027, 3, 1, tzinfo=UTC))


def test_a_trial_override() -> None:
    trial = parse_trial("weekend@09:00", {"weekend": 1}, MSK, NOW)
    assert trial == Override("weekend", datetime(2026, 11, 26, 9, 0, tzinfo=MSK), "trial", NOW)
    assert parse_trial("weekend", {"weekend": 1}, MSK, NOW).until is None
    with pytest.raises(OverrideError, match="no scenario 'night'"):
        parse_trial("night@09:00", {"weekend": 1}, MSK, NOW)


# --- simulate and coverage -------------------------------------------------------------------


def test_simulate_shows_the_override(seed: CompiledAccount) -> None:
    result = simulate(seed, NUMBER, OTHER, WEDNESDAY_1030, [], override=night())
    assert result["rule"]["id"] == OVERRIDE_RULE_ID and result["scenario"]["id"] == "weekend"
    assert result["override"]["applied"] and result["override"]["status"] == ACTIVE and result["skipped"] == []
    late = simulate(seed, NUMBER, OTHER, UNTIL, [], override=night())
    assert late["rule"]["id"] == "r2" and late["override"]["status"] == EXPIRED and not late["override"]["applied"]


def test_coverage_shows_the_override_inside_its_window_only(seed: CompiledAccount) -> None:
    monday = date(2026, 11, 23)
    cov = week_coverage(seed, monday, 15, night())
    any_caller = len(cov.classes) - 1
    assert cov.cell(any_caller, 2, "09:45") == ("r2", "workday")
    assert cov.cell(any_caller, 2, "10:00") == (OVERRIDE_RULE_ID, "weekend")
    assert cov.cell(any_caller, 2, "10:45") == (OVERRIDE_RULE_ID, "weekend")
    assert cov.cell(any_caller, 2, "11:00") == ("r2", "workday")
    assert cov.cell(any_caller, 3, "10:00") == ("r2", "workday")  # the next day: expired
    text = format_text(cov, seed)
    assert "manual override: calls go to weekend until 2026-11-25 11:00 (+03:00) (set by noc" in text
    assert "10:00-11:00  manual override" in text
    assert cov.to_json()["override"].startswith("calls go to weekend")
    # a scenario a later load removed: said so, and the rules decide everywhere
    gone = week_coverage(seed, monday, 15, night(scenario="night"))
    assert gone.grid == week_coverage(seed, monday, 15).grid and "its scenario is gone" in (gone.override or "")

