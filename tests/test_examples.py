"""The other example accounts, through compile -> decide -> scenario, as `voffice simulate` runs them.

Cases were given by the author of the examples; `at` without an offset is the account's
local time, with `Z` an instant (DST transitions differ between the US and Europe).
"""

from __future__ import annotations

import copy
import json
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from routing.core.compiler import compile_account
from routing.core.engine import CompiledAccount
from routing.core.scenario import Event
from routing.core.simulate import simulate
from routing.core.validation import validate_document

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NY, BERLIN, LONDON = "newyork-dst.json", "nested-menus.json", "support-247.json"

Doc = dict[str, Any]


@cache
def _load(name: str) -> str:
    return (EXAMPLES / name).read_text(encoding="utf-8")


def doc_of(name: str) -> Doc:
    loaded: Doc = json.loads(_load(name))
    return loaded


def account_of(doc: Doc) -> CompiledAccount:
    return CompiledAccount(compile_account(doc))


def run(doc: Doc, number: str, caller: str | None, at: str, *events: str) -> dict[str, Any]:
    return simulate(account_of(doc), number, caller, datetime.fromisoformat(at), [Event.parse(e) for e in events])


def rule_id(result: dict[str, Any]) -> str | None:
    return result["rule"]["id"] if result["rule"] else None


def step_ids(result: dict[str, Any]) -> list[str]:
    return [step["operation"]["id"] for step in result["steps"]]


@pytest.mark.parametrize("name", [NY, BERLIN, LONDON])
def test_example_is_valid(name: str) -> None:
    problems = validate_document(doc_of(name), name)
    assert [p.line() for p in problems if p.severity == "error"] == []


@pytest.mark.parametrize("name", [NY, BERLIN, LONDON])
def test_example_account_ids(name: str) -> None:
    expected = {NY: "hudson-legal-nyc", BERLIN: "nordlicht-berlin", LONDON: "thames-support-247"}[name]
    assert account_of(doc_of(name)).id == expected


# (file, number, caller, at, events) -> (local time, day type, rule, scenario, end, operations stepped through)
CASES: list[tuple[str, str, str | None, str, tuple[str, ...], str, str, str | None, str, str, list[str]]] = [
    # New York: EDT starts 2026-03-08, ends 2026-11-01 (Europe: 2026-03-29 / 2026-10-25)
    (NY, "+12125550140", "+13125550123", "2026-03-09T12:30:00Z", (),
     "2026-03-09T08:30:00-04:00", "working", "r-office", "business", "pending", ["ext"]),
    (NY, "+12125550140", "+13125550123", "2026-03-06T12:30:00Z", (),
     "2026-03-06T07:30:00-05:00", "working", None, "after-hours", "pending", ["closed"]),
    (NY, "+16465550140", "+13125550123", "2026-10-26T12:45:00Z", (),
     "2026-10-26T08:45:00-04:00", "working", "r-office", "business", "pending", ["ext"]),
    (NY, "+16465550140", "+13125550123", "2026-11-02T12:45:00Z", (),
     "2026-11-02T07:45:00-05:00", "working", None, "after-hours", "pending", ["closed"]),
    # extra working day 2026-10-12 beats Columbus Day; 2125550177 is +1 212 555 0177, a key client
    (NY, "+12125550140", "2125550177", "2026-10-12T09:00", (),
     "2026-10-12T09:00:00-04:00", "working", "r-key-clients", "key-client", "pending", ["to-managers"]),
    # extra holiday 2026-12-24: the closed announcement, then voicemail
    (NY, "+12125550140", "2125550177", "2026-12-24T10:00", ("timeout",),
     "2026-12-24T10:00:00-05:00", "holiday", None, "after-hours", "voicemail", ["closed", "vm"]),
    # Berlin
    (BERLIN, "+493023125000", "03023125999", "2026-06-10T10:00", (),
     "2026-06-10T10:00:00+02:00", "working", "r-office", "business", "pending", ["main-menu"]),
    (BERLIN, "+493023125000", "03023125999", "2026-06-10T10:00", ("key:2", "key:1", "key:1", "answer:eva"),
     "2026-06-10T10:00:00+02:00", "working", "r-office", "business", "answered",
     ["main-menu", "service-menu", "returns-menu", "to-service"]),
    (BERLIN, "+493023125000", "03023125999", "2026-06-10T10:00", ("key:8",),
     "2026-06-10T10:00:00+02:00", "working", "r-office", "business", "fax", ["main-menu", "fax"]),
    (BERLIN, "+493023125000", None, "2026-06-10T23:30", (),
     "2026-06-10T23:30:00+02:00", "working", "r-night", "night-fax", "fax", ["fax"]),
    (BERLIN, "+493023125001", "anonymous", "2026-06-10T23:30", (),
     "2026-06-10T23:30:00+02:00", "working", "r-night", "night-fax", "fax", ["fax"]),
    (BERLIN, "+493023125000", "03023125999", "2026-06-10T19:00", (),
     "2026-06-10T19:00:00+02:00", "working", None, "closed", "pending", ["closed-menu"]),
    # International Women's Day is a public holiday in Berlin only
    (BERLIN, "+493023125000", "03023125999", "2027-03-08T10:00", (),
     "2027-03-08T10:00:00+01:00", "holiday", None, "closed", "pending", ["closed-menu"]),
    # London
    (LONDON, "+442079460100", "+441614960123", "2026-06-09T10:00", (),
     "2026-06-09T10:00:00+01:00", "working", "r-premium", "premium", "pending", ["premium-hello"]),
    # the disabled r-premium-night is skipped
    (LONDON, "+442079460100", "+441614960123", "2026-06-09T23:30", (),
     "2026-06-09T23:30:00+01:00", "working", "r-night", "night", "pending", ["night-hello"]),
    # Summer bank holiday in England: the day shift still answers
    (LONDON, "+442079460199", "07700900912", "2026-08-31T10:00", ("digits:90",),
     "2026-08-31T10:00:00+01:00", "holiday", "r-day", "day", "pending", ["ext"]),
    # shift boundaries are half-open
    (LONDON, "+442079460100", "+35318881234", "2026-06-10T00:00", (),
     "2026-06-10T00:00:00+01:00", "working", "r-night", "night", "pending", ["night-hello"]),
    (LONDON, "+442079460100", "+35318881234", "2026-06-10T05:59", (),
     "2026-06-10T05:59:00+01:00", "working", "r-night", "night", "pending", ["night-hello"]),
    (LONDON, "+442079460100", "+35318881234", "2026-06-10T06:00", (),
     "2026-06-10T06:00:00+01:00", "working", "r-day", "day", "pending", ["ext"]),
    (LONDON, "+442079460100", "+35318881234", "2026-06-09T21:59", (),
     "2026-06-09T21:59:00+01:00", "working", "r-day", "day", "pending", ["ext"]),
    (LONDON, "+442079460100", "+35318881234", "2026-06-09T22:00", (),
     "2026-06-09T22:00:00+01:00", "working", "r-night", "night", "pending", ["night-hello"]),
]


@pytest.mark.parametrize(
    ("name", "number", "caller", "at", "events", "local", "day_type", "rule", "scenario", "end", "steps"),
    CASES,
    ids=[f"{c[0].split('.')[0]}:{c[2]}@{c[3]}{'+' + ','.join(c[4]) if c[4] else ''}" for c in CASES],
)
def test_example_case(
    name: str, number: str, caller: str | None, at: str, events: tuple[str, ...], local: str,
    day_type: str, rule: str | None, scenario: str, end: str, steps: list[str],
) -> None:
    result = run(doc_of(name), number, caller, at, *events)
    assert result["number"] == number
    assert result["local_time"] == local
    assert result["day_type"] == day_type
    assert rule_id(result) == rule
    assert result["scenario"]["id"] == scenario
    assert step_ids(result) == steps
    assert result["end"] == end


# --- New York ------------------------------------------------------------------------------


def test_ny_national_caller_is_normalised() -> None:
    result = run(doc_of(NY), "+12125550140", "2125550177", "2026-10-12T09:00")
    assert result["caller_e164"] == "+12125550177"


def test_ny_columbus_day_without_the_extra_workday_is_a_holiday() -> None:
    doc = doc_of(NY)
    doc["calendar"]["workdays"] = []
    result = run(doc, "+12125550140", "2125550177", "2026-10-12T09:00")
    assert result["day_type"] == "holiday"
    assert rule_id(result) is None
    assert result["scenario"]["id"] == "after-hours"


def test_ny_christmas_eve_without_the_extra_holiday_is_a_working_day() -> None:
    doc = doc_of(NY)
    doc["calendar"]["holidays"] = ["2026-11-27"]
    result = run(doc, "+12125550140", "2125550177", "2026-12-24T10:00")
    assert result["day_type"] == "working"
    assert rule_id(result) == "r-key-clients"


def test_ny_same_instant_in_winter_and_summer_differs_by_an_hour() -> None:
    doc = doc_of(NY)
    summer = run(doc, "+12125550140", "+13125550123", "2026-03-09T12:00:00Z")
    winter = run(doc, "+12125550140", "+13125550123", "2026-03-06T13:00:00Z")
    assert summer["local_time"].endswith("T08:00:00-04:00")
    assert winter["local_time"].endswith("T08:00:00-05:00")
    assert rule_id(summer) == rule_id(winter) == "r-office"


def test_ny_key_client_round_robin_waves() -> None:
    result = run(doc_of(NY), "+12125550140", "2125550177", "2026-10-12T09:00")
    waves = result["steps"][0]["waves"]
    assert [[(r["operator"], r["attempt"]) for r in w] for w in waves] == [
        [("dave", 1)], [("erin", 1)], [("frank", 1)], [("dave", 2)], [("frank", 2)],
    ]
    assert [w[0]["ring_seconds"] for w in waves] == [20, 30, 15, 20, 15]


# --- Berlin --------------------------------------------------------------------------------


def test_berlin_key_8_is_fax_in_the_file() -> None:
    root = next(s for s in doc_of(BERLIN)["scenarios"] if s["id"] == "business")["root"]
    assert root["operation"] == "main-menu"
    assert root["keys"]["8"] == {"operation": "fax"}
    fax = next(op for op in doc_of(BERLIN)["operations"] if op["id"] == "fax")
    assert fax["type"] == "fax"


def test_berlin_keys_2_1_1_rings_customer_service_together() -> None:
    result = run(doc_of(BERLIN), "+493023125000", "03023125999", "2026-06-10T10:00",
                 "key:2", "key:1", "key:1", "answer:eva")
    steps = result["steps"]
    assert [s["event"] for s in steps] == ["key:2", "key:1", "key:1", "answer:eva"]
    waves = steps[-1]["waves"]
    assert [[r["operator"] for r in w] for w in waves] == [["david", "eva", "felix"], ["david", "eva"]]
    assert [r["ring_seconds"] for r in waves[0]] == [20, 20, 30]


def test_berlin_women_day_is_working_without_the_berlin_subdivision() -> None:
    doc = doc_of(BERLIN)
    del doc["calendar"]["subdivision"]
    result = run(doc, "+493023125000", "03023125999", "2027-03-08T10:00")
    assert result["day_type"] == "working"
    assert rule_id(result) == "r-office"


def test_berlin_main_menu_repeat_key_is_star() -> None:
    result = run(doc_of(BERLIN), "+493023125000", "03023125999", "2026-06-10T10:00", "key:*", "key:8")
    assert step_ids(result) == ["main-menu", "fax"]
    assert result["steps"][0]["inputs"] == ["key:*"]
    assert result["end"] == "fax"


# --- London --------------------------------------------------------------------------------


def test_london_extension_90_rings_the_sip_night_desk() -> None:
    result = run(doc_of(LONDON), "+442079460199", "07700900912", "2026-08-31T10:00", "digits:90")
    assert result["caller_e164"] == "+447700900912"
    step = result["steps"][0]
    assert step["extension"] == "90"
    assert step["waves"] == [
        [{"operator": "nightdesk", "phone": "sip:nightdesk@pbx.example.net", "ring_seconds": 25, "attempt": 1}],
    ]


def test_london_bank_holiday_is_english() -> None:
    doc = doc_of(LONDON)
    doc["calendar"]["subdivision"] = "SCT"
    assert run(doc, "+442079460199", "07700900912", "2026-08-31T10:00")["day_type"] == "working"


def test_london_premium_night_rule_would_match_if_enabled() -> None:
    doc = copy.deepcopy(doc_of(LONDON))
    for rule in doc["rules"]:
        if rule["id"] == "r-premium-night":
            rule["enabled"] = True
    result = run(doc, "+442079460100", "+441614960123", "2026-06-09T23:30")
    assert rule_id(result) == "r-premium-night"
    assert result["scenario"]["id"] == "premium"


def test_london_premium_caller_out_of_office_hours_gets_the_day_shift() -> None:
    result = run(doc_of(LONDON), "+442079460100", "+441614960123", "2026-06-09T18:00")
    assert rule_id(result) == "r-day"


def test_london_non_premium_caller_in_office_hours_gets_the_day_shift() -> None:
    result = run(doc_of(LONDON), "+442079460100", "+442071234567", "2026-06-09T10:00")
    assert rule_id(result) == "r-day"
