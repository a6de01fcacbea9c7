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
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from routing.core.day_type import DAY_TYPE_BIT, day_type
from routing.core.numbers import compile_patterns, to_e164


@dataclass(frozen=True, slots=True)
class CompiledRule:
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
    """A compiled account ready to answer decisions; `plain` is what Redis stores."""

    __slots__ = ("country", "holidays", "id", "plain", "rules", "subdivision", "tz", "workdays")

    def __init__(self, plain: dict[str, Any]):
        self.plain = plain
        self.id: str = plain["account"]
        self.tz = ZoneInfo(plain["timezone"])
        calendar = plain["calendar"]
        self.country: str | None = calendar["country"]
        self.subdivision: str | None = calendar["subdivision"]
        self.holidays = frozenset(calendar["holidays"])
        self.workdays = frozenset(calendar["workdays"])
        self.rules = tuple(self._compile_rule(r) for r in plain["rules"])

    def _compile_rule(self, rule: dict[str, Any]) -> CompiledRule:
        schedule = self.plain["schedules"][rule["schedule"]]
        caller_list = rule["caller_list"]
        callers = (
            compile_patterns(tuple(self.plain["caller_lists"][caller_list]["patterns"]))
            if caller_list
            else None
        )
        return CompiledRule(
            rule["id"],
            rule["name"],
            schedule["days"],
            schedule["weekdays"],
            tuple((s, e) for s, e in schedule["intervals"]),
            callers,
            rule["scenario"],
        )

    def local_time(self, at: datetime) -> datetime:
        """An instant in the account's zone; a naive time is taken as local wall time."""
        if at.tzinfo is None:
            return at.replace(tzinfo=self.tz)
        return at.astimezone(self.tz)

    def day_type(self, local: datetime) -> str:
        return day_type(local.date(), self.country, self.subdivision, self.holidays, self.workdays)


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


def decide(account: CompiledAccount, number: str, caller: str | None, at: datetime) -> Decision:
    """Which rule and scenario apply to a call to `number` from `caller` at instant `at`."""
    local = account.local_time(at)
    kind = account.day_type(local)
    caller_e164 = to_e164(caller, account.country)
    day_bit = DAY_TYPE_BIT[kind]
    weekday = local.weekday()
    minute = local.hour * 60 + local.minute
    plain = account.plain
    for rule in account.rules:
        if rule.matches(day_bit, weekday, minute, caller_e164):
            scenario = rule.scenario
            break
    else:
        rule = None
        scenario = plain["default_scenario"]
    return Decision(
        account.id,
        number,
        caller_e164,
        local,
        kind,
        rule,
        scenario,
        plain["scenarios"][scenario]["root"],
    )
