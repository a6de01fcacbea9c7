"""`voffice simulate`: what happens to a call, step by step, without placing it.

Drives `engine.decide` and `scenario.feed` with the events given, exactly as Kamailio does
with the events of a real call, and reports the steps as plain data (DESIGN.md section 4).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from routing.core.day_type import DAY_TYPE_BIT
from routing.core.engine import CompiledAccount, decide
from routing.core.override import Override
from routing.core.ringing_plan import group_plan, operator_plan
from routing.core.scenario import PENDING, Cursor, Event, EventError, feed, operation_of, terminal_end


def simulate(
    account: CompiledAccount,
    number: str,
    caller: str | None,
    at: datetime,
    events: list[Event],
    seed: str = "",
    last_answered: dict[str, str] | None = None,
    override: Override | None = None,
) -> dict[str, Any]:
    plain = account.plain
    decision = decide(account, number, caller, at, override)
    steps: list[dict[str, Any]] = []
    pending = list(events)
    cursor = Cursor(decision.node)
    end: str | None = None
    while end is None:
        op_id, op = operation_of(plain, cursor)
        step: dict[str, Any] = {
            "operation": {"id": op_id, "name": op["name"], "type": op["type"]},
            "event": None,
        }
        if op.get("sound"):
            sound = plain["sounds"][op["sound"]]
            step["sound"] = {"id": op["sound"], "name": sound["name"], "text": sound["text"]}
        if op["type"] == "group":
            step["group"] = op["group"]
            step["waves"] = group_plan(
                plain, op["group"], (last_answered or {}).get(op["group"]), seed
            )
        steps.append(step)
        end = terminal_end(plain, cursor)
        while end is None:
            if not pending:
                end = PENDING
                break
            event = pending.pop(0)
            outcome = feed(plain, cursor, event)
            if outcome.note:
                step.setdefault("notes", []).append(outcome.note)
            if not outcome.step_ended:
                step.setdefault("inputs", []).append(str(event))
                assert outcome.cursor is not None
                cursor = outcome.cursor
                if cursor.ringing is not None and "waves" not in step:
                    step["extension"] = event.value
                    step["waves"] = operator_plan(plain, cursor.ringing)
                continue
            step["event"] = str(event)
            if outcome.end is not None:
                end = outcome.end
            else:
                assert outcome.cursor is not None
                cursor = outcome.cursor
            break
    if pending and end != PENDING:
        left = " ".join(str(e) for e in pending)
        raise EventError(f"the call ended ({end}) before these events: {left}")
    rule = decision.rule
    ring_seconds = sum(max((r["ring_seconds"] for r in wave), default=0) for step in steps for wave in step.get("waves", []))
    return {
        "account": decision.account,
        "number": decision.number,
        "caller": caller,
        "caller_e164": decision.caller,
        "local_time": decision.local_time.isoformat(),
        "weekday": decision.local_time.strftime("%A"),
        "day_type": decision.day_type,
        "rule": {"id": rule.id, "name": rule.name} if rule else None,
        "scenario": {"id": decision.scenario, "name": plain["scenarios"][decision.scenario]["name"]},
        "override": None if override is None else {
            **override.to_dict(),
            "status": override.status_at(decision.local_time, account.roots),
            "applied": decision.override is not None,
        },
        "skipped": [] if decision.override is not None else skipped_rules(account, decision),
        "steps": steps,
        "ring_seconds": ring_seconds,  # the longest the caller could hear ringing, every wave to its end
        "end": end,
    }


def skipped_rules(account: CompiledAccount, decision: Any) -> list[dict[str, str]]:
    """Why each rule before the one that matched (all of them, if none did) did not."""
    local = decision.local_time
    kind, weekday, minute = decision.day_type, local.weekday(), local.hour * 60 + local.minute
    out = []
    for rule in account.rules:
        if decision.rule is not None and rule.id == decision.rule.id:
            break
        if not rule.days & DAY_TYPE_BIT[kind]:
            why = f"not on a {kind} day"
        elif not rule.weekdays >> weekday & 1:
            why = f"not on {local.strftime('%A')}"
        elif not any(start <= minute < end for start, end in rule.intervals):
            hours = ", ".join(f"{s // 60:02d}:{s % 60:02d}-{e // 60:02d}:{e % 60:02d}" for s, e in rule.intervals)
            why = f"not at {local.strftime('%H:%M')} (its hours: {hours})"
        else:
            why = "the caller is not in its list"
        out.append({"id": rule.id, "name": rule.name, "why": why})
    return out
