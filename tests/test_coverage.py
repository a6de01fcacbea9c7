"""`voffice coverage`, pure part: ISO weeks, the week grid, runs, text and PNG output."""

from __future__ import annotations

import copy
import json
from datetime import date, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from routing.core.compiler import compile_account
from routing.core.coverage import (
    Coverage,
    caller_classes,
    format_text,
    parse_iso_week,
    render_png,
    representative_caller,
    week_coverage,
)
from routing.core.engine import CompiledAccount, decide
from routing.core.numbers import compile_patterns, pattern_matches

SEED = Path(__file__).resolve().parent.parent / "examples" / "seed-office.json"
VIP, OTHER = 0, 1  # caller class indexes in the seed example
MON, WED, THU, SAT, SUN = 0, 2, 3, 5, 6


def load_seed() -> dict[str, Any]:
    with SEED.open(encoding="utf-8") as f:
        doc: dict[str, Any] = json.load(f)
    return doc


def account_of(doc: dict[str, Any]) -> CompiledAccount:
    return CompiledAccount(compile_account(doc))


@pytest.fixture(scope="module")
def account() -> CompiledAccount:
    return account_of(load_seed())


@pytest.fixture(scope="module")
def w48(account: CompiledAccount) -> Coverage:
    return week_coverage(account, parse_iso_week("2026-W48"))


@pytest.fixture(scope="module")
def w53(account: CompiledAccount) -> Coverage:
    return week_coverage(account, parse_iso_week("2026-W53"))


# --- ISO weeks ---------------------------------------------------------------------------


def test_parse_iso_week_returns_the_monday() -> None:
    assert parse_iso_week("2026-W48") == date(2026, 11, 23)
    assert parse_iso_week("2026-W53") == date(2026, 12, 28)
    assert parse_iso_week("2026-W01") == date(2025, 12, 29)  # ISO year starts in December
    assert parse_iso_week(" 2027-W01 ") == date(2027, 1, 4)


@pytest.mark.parametrize(
    "text",
    ["2026-W60", "2026W48", "2026-W00", "2027-W53", "2026-48", "2026-W4", "W48", "", "2026-W48-1"],
)
def test_parse_iso_week_rejects_bad_input(text: str) -> None:
    with pytest.raises(ValueError, match="invalid ISO week") as err:
        parse_iso_week(text)
    message = str(err.value)
    assert "\n" not in message
    assert repr(text) in message


def test_parse_iso_week_says_which_weeks_exist() -> None:
    with pytest.raises(ValueError, match="W01 to W53"):
        parse_iso_week("2026-W60")
    with pytest.raises(ValueError, match="W01 to W52"):
        parse_iso_week("2027-W53")
    with pytest.raises(ValueError, match="YYYY-Www"):
        parse_iso_week("2026W48")


# --- caller classes ----------------------------------------------------------------------


def test_seed_caller_classes(account: CompiledAccount) -> None:
    classes = caller_classes(account)
    assert [c.caller_list for c in classes] == ["vip", None]
    vip, other = classes
    assert vip.caller is not None
    assert other.caller is not None
    assert pattern_matches("+7495*", vip.caller)
    assert vip.label.startswith("VIP-клиенты")
    assert other.label == "any other caller"
    regex = compile_patterns(tuple(account.plain["caller_lists"]["vip"]["patterns"]))
    assert regex.fullmatch(other.caller) is None


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("+7495*", "+74950000000"),
        ("+7916???????", "+79160000000"),
        ("+7*1", "+70000000001"),
        ("+44*20*", "+44000000020"),
        ("*", "+10000000000"),
        ("+?916*", "+19160000000"),
        ("+7495123", "+7495123"),
        ("+0*", None),  # no E.164 number starts with 0
        ("+1234567890123456", None),  # too long
    ],
)
def test_representative_caller(pattern: str, expected: str | None) -> None:
    got = representative_caller(pattern, "RU")
    assert got == expected
    if got is not None:
        assert pattern_matches(pattern, got)
        assert 7 <= len(got) - 1 <= 15


def test_catch_all_list_leaves_only_anonymous_callers() -> None:
    doc = load_seed()
    doc["caller_lists"][0]["patterns"] = ["*"]
    classes = caller_classes(account_of(doc))
    assert classes[-1].caller is None
    assert "anonymous" in classes[-1].label


def test_no_caller_lists_means_one_class() -> None:
    doc = load_seed()
    for rule in doc["rules"]:
        rule["caller_list"] = None
    classes = caller_classes(account_of(doc))
    assert len(classes) == 1
    assert classes[0].label == "any caller"
    assert classes[0].caller_list is None


def test_representative_avoids_other_lists_when_it_can() -> None:
    doc = load_seed()
    doc["caller_lists"].append({"id": "moscow", "name": "Москва", "patterns": ["+7495*"]})
    doc["rules"].append(
        {
            "id": "r5",
            "name": "Правило №5",
            "priority": 5,
            "schedule": "weekend",
            "caller_list": "moscow",
            "scenario": "weekend",
        }
    )
    classes = caller_classes(account_of(doc))
    vip = classes[0]
    assert vip.caller_list == "vip"
    assert vip.caller == "+79160000000"  # the second pattern: not also a Moscow number
    assert vip.also_matches == ()
    moscow = classes[1]
    assert moscow.caller_list == "moscow"
    assert moscow.also_matches == ("vip",)


# --- the grid ----------------------------------------------------------------------------


def test_week_shape(w48: Coverage) -> None:
    assert w48.account == "berry-demo"
    assert w48.monday == date(2026, 11, 23)
    assert w48.week == "2026-W48"
    assert [d.date for d in w48.days] == [date(2026, 11, 23 + i) for i in range(7)]
    assert [d.day_type for d in w48.days] == ["working"] * 5 + ["weekend"] * 2
    assert len(w48.grid) == len(w48.classes) == 2
    for rows in w48.grid:
        assert len(rows) == 7
        assert all(len(row) == 96 for row in rows)


def test_wednesday(w48: Coverage) -> None:
    for klass in (VIP, OTHER):
        assert w48.cell(klass, WED, "10:00") == ("r2", "workday")
        assert w48.cell(klass, WED, "12:45") == ("r2", "workday")
        for hhmm in ("13:00", "13:15", "13:30", "13:45"):
            assert w48.cell(klass, date(2026, 11, 25), hhmm) == ("r1", "lunch")
        assert w48.cell(klass, WED, "14:00") == ("r2", "workday")
        assert w48.cell(klass, WED, "17:45") == ("r2", "workday")
        assert w48.cell(klass, WED, "18:00") == (None, "weekend")  # [start, end)
        assert w48.cell(klass, WED, "20:00") == (None, "weekend")
        assert w48.cell(klass, WED, "08:45") == (None, "weekend")


def test_saturday_vip_and_others(w48: Coverage) -> None:
    for hhmm in ("12:00", "15:00", "17:45"):
        assert w48.cell(VIP, SAT, hhmm) == ("r3", "weekend-vip")
        assert w48.cell(OTHER, SAT, hhmm) == ("r4", "weekend")
    for hhmm in ("11:45", "18:00", "00:00"):
        assert w48.cell(VIP, SAT, hhmm) == ("r4", "weekend")
    assert w48.cell(VIP, SUN, "12:00") == ("r3", "weekend-vip")


def test_grid_agrees_with_decide(account: CompiledAccount, w48: Coverage) -> None:
    number = account.plain["numbers"][0]
    for ci, klass in enumerate(w48.classes):
        for di, day in enumerate(w48.days):
            for slot in (0, 37, 52, 53, 80, 95):
                minute = slot * 15
                at = datetime(day.date.year, day.date.month, day.date.day, minute // 60, minute % 60)
                d = decide(account, number, klass.caller, at)
                assert w48.grid[ci][di][slot] == (d.rule.id if d.rule else None, d.scenario)


def test_substituted_day_off_is_a_holiday(w53: Coverage) -> None:
    days = {d.date: d.day_type for d in w53.days}
    assert days[date(2026, 12, 30)] == "working"
    assert days[date(2026, 12, 31)] == "holiday"  # Russia's substituted day off (a Thursday)
    assert days[date(2027, 1, 1)] == "holiday"
    thu = (date(2026, 12, 31) - w53.monday).days
    assert thu == THU
    for klass in (VIP, OTHER):
        row = w53.grid[klass][thu]
        assert not any(rule in ("r1", "r2") for rule, _ in row)  # no weekday rules
        assert w53.cell(klass, THU, "10:00") == ("r4", "weekend")
        assert w53.cell(klass, THU, "13:30") != ("r1", "lunch")
        assert w53.cell(klass, date(2026, 12, 30), "10:00") == ("r2", "workday")
    assert w53.cell(VIP, THU, "12:00") == ("r3", "weekend-vip")


def test_account_extra_workday_wins(account: CompiledAccount) -> None:
    doc = load_seed()
    doc["calendar"]["workdays"] = ["2026-12-31"]
    cov = week_coverage(account_of(doc), date(2026, 12, 28))
    assert cov.days[THU].day_type == "working"
    assert cov.cell(OTHER, THU, "10:00") == ("r2", "workday")


def test_other_slot_lengths(account: CompiledAccount) -> None:
    hourly = week_coverage(account, date(2026, 11, 23), slot_minutes=60)
    assert all(len(row) == 24 for rows in hourly.grid for row in rows)
    assert hourly.cell(VIP, WED, "13:30") == ("r1", "lunch")
    for bad in (0, 7, 25, 2000):
        with pytest.raises(ValueError, match="does not divide a day"):
            week_coverage(account, date(2026, 11, 23), slot_minutes=bad)
    with pytest.raises(ValueError, match="not a Monday"):
        week_coverage(account, date(2026, 11, 24))


def test_disabled_rule_is_ignored() -> None:
    doc = load_seed()
    doc["rules"][0]["enabled"] = False  # no lunch rule
    cov = week_coverage(account_of(doc), date(2026, 11, 23))
    assert cov.cell(OTHER, WED, "13:30") == ("r2", "workday")


# --- runs, text, JSON --------------------------------------------------------------------


def test_runs_compress_rows(w48: Coverage) -> None:
    runs = w48.runs()
    wed = [(s.start, s.end, s.rule, s.scenario) for s in runs[VIP][WED]]
    assert wed == [
        ("00:00", "09:00", None, "weekend"),
        ("09:00", "13:00", "r2", "workday"),
        ("13:00", "14:00", "r1", "lunch"),
        ("14:00", "18:00", "r2", "workday"),
        ("18:00", "24:00", None, "weekend"),
    ]
    span = runs[VIP][WED][2]
    assert (span.rule_name, span.scenario_name) == ("Правило №1", "Обед")
    assert (span.first_slot, span.end_slot) == (52, 56)
    assert runs[VIP][WED][0].rule_name is None
    sat_vip = [(s.start, s.end, s.rule) for s in runs[VIP][SAT]]
    assert sat_vip == [("00:00", "12:00", "r4"), ("12:00", "18:00", "r3"), ("18:00", "24:00", "r4")]
    sat_other = [(s.start, s.end, s.rule, s.scenario_name) for s in runs[OTHER][SAT]]
    assert sat_other == [("00:00", "24:00", "r4", "Выходные")]


def test_runs_cover_every_slot_exactly_once(w48: Coverage, w53: Coverage) -> None:
    for cov in (w48, w53):
        for class_rows, class_runs in zip(cov.grid, cov.runs(), strict=True):
            for row, spans in zip(class_rows, class_runs, strict=True):
                assert spans[0].first_slot == 0
                assert spans[-1].end_slot == len(row)
                expanded: list[tuple[str | None, str]] = []
                for a, b in pairwise(spans):
                    assert a.end_slot == b.first_slot
                    assert a.end == b.start
                    assert (a.rule, a.scenario) != (b.rule, b.scenario)  # maximal runs
                for s in spans:
                    expanded += [(s.rule, s.scenario)] * (s.end_slot - s.first_slot)
                assert expanded == list(row)


def test_format_text(account: CompiledAccount, w48: Coverage) -> None:
    text = format_text(w48, account)
    assert "2026-W48" in text
    assert "Mon 2026-11-23 working" in text
    assert "Sat 2026-11-28 weekend" in text
    lines = text.splitlines()
    wed = lines.index("  Wed 2026-11-25 working")
    spans = [" ".join(line.split()) for line in lines[wed + 1 : wed + 6]]
    assert spans == [
        "00:00-09:00 (default) -> Выходные",
        "09:00-13:00 Правило №2 -> Будни",
        "13:00-14:00 Правило №1 -> Обед",
        "14:00-18:00 Правило №2 -> Будни",
        "18:00-24:00 (default) -> Выходные",
    ]
    assert "12:00-18:00 Правило №3 -> Выходные VIP" in " ".join(text.split())
    assert text.index("VIP-клиенты") < text.index("any other caller")


def test_format_text_holiday(account: CompiledAccount, w53: Coverage) -> None:
    text = format_text(w53, account)
    assert "Thu 2026-12-31 holiday" in text


def test_to_json_is_plain_data(w48: Coverage) -> None:
    data = w48.to_json()
    assert json.loads(json.dumps(data, ensure_ascii=False)) == data
    assert data["account"] == "berry-demo"
    assert data["week"] == "2026-W48"
    assert data["monday"] == "2026-11-23"
    assert data["slot_minutes"] == 15
    assert [c["caller_list"] for c in data["classes"]] == ["vip", None]
    wed = data["classes"][0]["days"][WED]
    assert wed["date"] == "2026-11-25"
    assert wed["day_type"] == "working"
    assert wed["runs"][2] == {
        "start": "13:00",
        "end": "14:00",
        "rule": {"id": "r1", "name": "Правило №1"},
        "scenario": {"id": "lunch", "name": "Обед"},
        "default": False,
    }
    assert wed["runs"][-1]["rule"] is None
    assert wed["runs"][-1]["default"] is True


def test_coverage_is_frozen_and_hashable(w48: Coverage) -> None:
    with pytest.raises(AttributeError):
        w48.slot_minutes = 30  # type: ignore[misc]
    assert hash(w48) == hash(copy.deepcopy(w48))


# --- picture -----------------------------------------------------------------------------


def test_render_png(account: CompiledAccount, w48: Coverage, tmp_path: Path) -> None:
    out = tmp_path / "w48.png"
    render_png(w48, account, out)
    assert out.stat().st_size > 0
    with Image.open(out) as image:
        image.verify()
    with Image.open(out) as image:
        assert image.format == "PNG"
        width, height = image.size
        assert width > 96 * 2
        assert height > 2 * 7 * 10
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is not None
        assert len(colours) > 4


def test_render_png_other_slot_length(account: CompiledAccount, tmp_path: Path) -> None:
    out = tmp_path / "hourly.png"
    render_png(week_coverage(account, date(2026, 12, 28), slot_minutes=60), None, str(out))
    with Image.open(out) as image:
        assert image.format == "PNG"
        assert image.size[0] > 0
