"""The one clock every component reads, so tests and load testers can place calls "on a
Saturday": when VOFFICE_NOW (an ISO 8601 instant) is set, time starts at that instant at
the moment VOFFICE_NOW_AT (unix seconds, set by `voffice up`) and runs on from there."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta, tzinfo


class ClockError(ValueError):
    pass


def offset_from_env(env: dict[str, str] | None = None) -> float:
    """Seconds to add to the real time; 0 when VOFFICE_NOW is not set."""
    env = dict(os.environ) if env is None else env
    text = env.get("VOFFICE_NOW")
    if not text:
        return 0.0
    try:
        start = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ClockError(f"VOFFICE_NOW={text!r} is not an ISO 8601 instant") from exc
    if start.tzinfo is None:
        raise ClockError(f"VOFFICE_NOW={text!r} needs an offset, e.g. 2026-11-28T13:00:00+03:00")
    set_at = float(env.get("VOFFICE_NOW_AT") or time.time())
    return start.timestamp() - set_at


_OFFSET: float | None = None


def now() -> datetime:
    global _OFFSET
    if _OFFSET is None:
        _OFFSET = offset_from_env()
    return datetime.fromtimestamp(time.time() + _OFFSET, UTC)


def wall_time_problem(naive: datetime, zone: tzinfo) -> tuple[str, str] | None:
    """("gap" | "fold", message) when a local wall time does not exist in `zone` (clocks jump
    over it, e.g. 02:30 on a spring-forward day) or happens twice (the autumn fold)."""
    first, second = naive.replace(tzinfo=zone, fold=0), naive.replace(tzinfo=zone, fold=1)
    if first.utcoffset() == second.utcoffset():
        return None
    round_trip = first.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
    when = naive.strftime("%Y-%m-%d %H:%M")
    if round_trip != naive:
        return "gap", (f"{when} does not exist in {zone}: the clocks jump from UTC{_offset(first)} to UTC{_offset(second)} "
                       "over it; give a time outside the gap, or an offset")
    return "fold", (f"{when} happens twice in {zone} (UTC{_offset(first)}, then UTC{_offset(second)}); "
                    f"the first is used: give an offset for the other")


def _offset(moment: datetime) -> str:
    total = int((moment.utcoffset() or timedelta()).total_seconds() // 60)
    sign = "+" if total >= 0 else "-"
    return f"{sign}{abs(total) // 60:02d}:{abs(total) % 60:02d}"
