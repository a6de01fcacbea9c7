"""The decision engine: (compiled account, number, caller, instant) -> which rule, which scenario.

Rule 1: every routing decision of voffice is made here (and in `scenario` and
`ringing_plan`), in plain Python with no I/O. Kamailio's KEMI adapter, `voffice simulate`,
`voffice coverage` and the tests call these same functions; nothing else decides.

A `CompiledAccount` is the compiled plain form (see `compiler`) plus what is costly to
rebuild per call: the time zone, date sets and one regex per caller list. It is built once
per (account, version) and cached by the reader.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from routing.core.day_type import DAY_TYPE_BIT, day_type
from routing.core.numbers import compile_patterns, to_e164
from routing.core.override import Override, local_text


class CompiledRule(NamedTuple):
    """A rule with its schedule and caller list inlined. A NamedTuple (immutable, built in C):
    a worker deciding on any of 100,000 accounts builds several per decision."""

    id: str
    name: str
    days: int  # bit mask of day types
    weekdays: int  # bit mask, Monday = bit 0
    intervals: tuple[tuple[int, int], ...]  # half-open minute ranges
    callers: re.Pattern[str] | None  # None: any caller
    scenario: str

    def matches(self, day_bit: int, weekday: int, minute: int, caller: str | None) -> bool:
        if not (self.days & day_bit and self.weekdays >> weekday & 1):
            return False
        for start, end in self.intervals:
            if start <= minute < end:
                break
        else:
            return False
        if self.callers is None:
            return True
        return caller is not None and self.callers.fullmatch(caller) is not None


class CompiledAccount:
    """A compiled account ready to answer decisions; `plain` is what Redis stores.

    Built either from the whole plain form, or from its small decision part
    (`decision_part`, about a fifth of it) with `plain` read only when asked for: a node
    store shared by every worker keeps the blobs, and a worker decides on any of 100,000
    accounts without holding their 25 KiB of Python objects each (docs/performance.md)."""

    __slots__ = ("_load", "_plain", "country", "default_scenario", "holidays", "id", "roots", "rules", "subdivision",
                 "tz", "workdays")

    def __init__(self, plain: dict[str, Any]):
        self._plain: dict[str, Any] | None = plain
        self._load: Callable[[], dict[str, Any]] | None = None
        self._set(decision_part(plain))

    @classmethod
    def from_decision(cls, part: list[Any], load_plain: Callable[[], dict[str, Any]]) -> CompiledAccount:
        """From `decision_part(plain)` (as msgpack gives it back); `load_plain()` is called
        on each access to `plain` (not kept: that is the memory this form saves)."""
        account = cls.__new__(cls)
        account._plain = None
        account._load = load_plain
        account._set(part)
        return account

    def _set(self, part: list[Any]) -> None:
        _, self.id, timezone, self.country, self.subdivision, holidays, workdays, rules, self.default_scenario, roots = part
        self.tz = ZoneInfo(timezone)
        self.holidays = frozenset(holidays)
        self.workdays = frozenset(workdays)
        self.rules = tuple([
            CompiledRule(rid, name, days, weekdays, tuple(map(tuple, intervals)),
                         compile_patterns(tuple(patterns)) if patterns is not None else None, scenario)
            for rid, name, days, weekdays, intervals, patterns, scenario in rules
        ])
        self.roots: dict[str, int] = roots

    @property
    def plain(self) -> dict[str, Any]:
        if self._plain is not None:
            return self._plain
        assert self._load is not None
        return self._load()

    def local_time(self, at: datetime) -> datetime:
        """An instant in the account's zone; a naive time is taken as local wall time."""
        if at.tzinfo is None:
            return at.replace(tzinfo=self.tz)
        return at.astimezone(self.tz)

    def day_type(self, local: datetime) -> str:
        return day_type(local.date(), self.country, self.subdivision, self.holidays, self.workdays)


DECISION_FORMAT = 1


def decision_part(plain: dict[str, Any]) -> list[Any]:
    """What `decide` needs of a compiled account, flat and msgpack-ready: the zone, the
    calendar, each rule with its schedule and caller patterns inlined, the default
    scenario and every scenario's root node."""
    calendar = plain["calendar"]
    rules = []
    for rule in plain["rules"]:
        schedule = plain["schedules"][rule["schedule"]]
        caller_list = rule["caller_list"]
        patterns = list(plain["caller_lists"][caller_list]["patterns"]) if caller_list else None
        rules.append([rule["id"], rule["name"], schedule["days"], schedule["weekdays"],
                      [[s, e] for s, e in schedule["intervals"]], patterns, rule["scenario"]])
    return [DECISION_FORMAT, plain["account"], plain["timezone"], calendar["country"], calendar["subdivision"],
            list(calendar["holidays"]), list(calendar["workdays"]), rules, plain["default_scenario"],
            {sid: scenario["root"] for sid, scenario in plain["scenarios"].items()}]


@dataclass(frozen=True, slots=True)
class Decision:
    account: str
    number: str
    caller: str | None  # E.164 form, None when the caller has no usable number
    local_time: datetime
    day_type: str
    rule: CompiledRule | None  # None: no rule matched, the default scenario applies
    scenario: str
    node: int  # root node of the scenario in the account's node table
    override: Override | None = None  # the manual override that decided (rule: OVERRIDE_RULE_ID)


# The `rule` of a decision made by a manual override: not a valid rule id (ids start with a
# letter or digit), so a call record's rule "(override)" cannot be mistaken for a rule's.
OVERRIDE_RULE_ID = "(override)"


def override_rule(override: Override, zone: tzinfo | None = None) -> CompiledRule:
    """A stand-in rule that matches nothing by itself: what `decision.rule` holds when the
    override decided, so every reader of `rule.id`/`rule.name` shows it without a special case."""
    until = "until cleared" if override.until is None else f"until {local_text(override.until, zone)}"
    return CompiledRule(OVERRIDE_RULE_ID, f"manual override, {until}", 0, 0, (), None, override.scenario)


def decide(account: CompiledAccount, number: str, caller: str | None, at: datetime,
           override: Override | None = None) -> Decision:
    """Which rule and scenario apply to a call to `number` from `caller` at instant `at`.

    An `override` in force at `at` whose scenario the account still has decides before the
    rules; any other override changes nothing (an expired one, or one whose scenario a later
    load removed)."""
    local = account.local_time(at)
    kind = account.day_type(local)
    caller_e164 = to_e164(caller, account.country)
    if override is not None and override.scenario in account.roots and override.active_at(local):
        return Decision(account.id, number, caller_e164, local, kind, override_rule(override, account.tz), override.scenario,
                        account.roots[override.scenario], override)
    day_bit = DAY_TYPE_BIT[kind]
    weekday = local.weekday()
    minute = local.hour * 60 + local.minute
    for rule in account.rules:
        if rule.matches(day_bit, weekday, minute, caller_e164):
            scenario = rule.scenario
            break
    else:
        rule = None
        scenario = account.default_scenario
    return Decision(
        account.id,
        number,
        caller_e164,
        local,
        kind,
        rule,
        scenario,
        account.roots[scenario],
    )
