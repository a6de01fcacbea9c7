"""The manual override (the day/night switch): an account's calls go to one chosen scenario
from when it is set until a given instant, or until it is cleared, whatever the rules say.

Pure: what an override is, when it applies, how it is written down and how `--until` is
read. `engine.decide` applies it before the rules; the store (routing/store/overrides.py)
keeps one per account in Redis and every reader follows it without a config load.

An override outlives config loads: if a later load removes its scenario, it is ignored
(the rules decide) and `status_at` says "scenario missing", rather than refusing calls.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import Any

from routing.core.clock import wall_time_problem

ACTIVE = "active"
EXPIRED = "expired"
NOT_YET = "not yet"  # only a trial override (simulate --at before it was set) can be here
SCENARIO_MISSING = "scenario missing"


class OverrideError(ValueError):
    """An override that cannot be set as given (one line, for the user)."""


class BadTime(OverrideError):
    """`--until` is not a time at all (a usage error, where the others are refusals)."""


@dataclass(frozen=True, slots=True)
class Override:
    """Calls go to `scenario` from `set_at` (inclusive) to `until` (exclusive; None: until cleared).
    Both instants are aware."""

    scenario: str
    until: datetime | None
    set_by: str
    set_at: datetime

    def active_at(self, at: datetime) -> bool:
        """Whether the override is in force at the aware instant `at` (its scenario aside)."""
        return self.set_at <= at and (self.until is None or at < self.until)

    def status_at(self, at: datetime, scenarios: Any) -> str:
        """ACTIVE, EXPIRED, NOT_YET or SCENARIO_MISSING at `at`; `scenarios`: the account's
        scenario ids (any container)."""
        if self.until is not None and at >= self.until:
            return EXPIRED
        if at < self.set_at:
            return NOT_YET
        if self.scenario not in scenarios:
            return SCENARIO_MISSING
        return ACTIVE

    def to_dict(self) -> dict[str, str | None]:
        """Plain data (what Redis and the change log hold): instants in UTC, ISO 8601."""
        return {
            "scenario": self.scenario,
            "until": _iso(self.until) if self.until is not None else None,
            "set_by": self.set_by,
            "set_at": _iso(self.set_at),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Override:
        """The inverse of `to_dict`; ValueError for anything else."""
        if not isinstance(data, dict) or not isinstance(data.get("scenario"), str) or not isinstance(data.get("set_at"), str):
            raise ValueError(f"not an override: {data!r:.80}")
        until = data.get("until")
        if until is not None and not isinstance(until, str):
            raise ValueError(f"not an override: {data!r:.80}")
        return cls(data["scenario"], _aware(until) if until else None, str(data.get("set_by") or ""), _aware(data["set_at"]))

    def describe(self, zone: tzinfo | None = None) -> str:
        """"weekend until 2026-12-07 09:00 (+03:00)" or "weekend until cleared"."""
        if self.until is None:
            return f"{self.scenario} until cleared"
        return f"{self.scenario} until {local_text(self.until, zone)}"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _aware(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset")
    return moment


def local_text(moment: datetime, zone: tzinfo | None) -> str:
    """An instant as the account's wall time with its offset: 2026-12-07 09:00 (+03:00)."""
    shown = moment.astimezone(zone) if zone is not None else moment
    offset = shown.strftime("%z")
    return f"{shown.strftime('%Y-%m-%d %H:%M')} ({offset[:3]}:{offset[3:]})"


_CLOCK_TIME = re.compile(r"([01]?[0-9]|2[0-3]):([0-5][0-9])")


def parse_until(text: str, zone: tzinfo, after: datetime, after_is: str = "now") -> datetime:
    """`--until`: an ISO 8601 instant with an offset (or Z), a date and time without one
    (the account's wall time in `zone`), or HH:MM (its next occurrence after `after`, in
    `zone`: "--until 09:00" at night means tomorrow morning). Must be later than `after`."""
    cleaned = text.strip()
    clock = _CLOCK_TIME.fullmatch(cleaned)
    if clock:
        local_after = after.astimezone(zone)
        wall = datetime.combine(local_after.date(), time(int(clock.group(1)), int(clock.group(2))))
        if wall.replace(tzinfo=zone) <= local_after:
            wall += timedelta(days=1)
        moment = _wall(wall, zone, cleaned)
    else:
        try:
            parsed = datetime.fromisoformat(cleaned)
        except ValueError:
            raise BadTime(f"--until {text!r} is not a time: give HH:MM, 2026-12-07T09:00 (the account's time) "
                                "or 2026-12-07T09:00+03:00") from None
        moment = parsed if parsed.tzinfo is not None else _wall(parsed, zone, cleaned)
    if moment <= after:
        raise OverrideError(f"--until {cleaned} is not later than {after_is} ({local_text(after, zone)})")
    return moment


def _wall(naive: datetime, zone: tzinfo, text: str) -> datetime:
    problem = wall_time_problem(naive, zone)
    if problem is not None and problem[0] == "gap":
        raise BadTime(f"--until {text}: {problem[1]}")
    return naive.replace(tzinfo=zone)


def parse_trial(text: str, scenarios: Any, zone: tzinfo, start: datetime, after: datetime | None = None,
                after_is: str = "the start") -> Override:
    """`--override SCENARIO[@UNTIL]` of simulate and coverage: an override tried without
    storing it, in force from `start`; UNTIL as `parse_until` reads it, after `after`
    (default `start`; `after_is` names it in a refusal)."""
    scenario, _, until_text = text.strip().partition("@")
    if scenario not in scenarios:
        raise OverrideError(f"--override: no scenario {scenario!r} in this account (its scenarios: {', '.join(scenarios)})")
    until = parse_until(until_text, zone, after or start, after_is) if until_text else None
    return Override(scenario, until, "trial", start)
