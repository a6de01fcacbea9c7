"""Scenario stepping: (where the call is, what just happened) -> where it goes next.

Rule 1: every transition of a call through its scenario lives in TRANSITIONS below. The
call's position is a `Cursor` (a node index into the compiled node table, plus the small
counters a step needs); events are what the media server, the ringing branches or the
caller report. Kamailio keeps the cursor in the transaction and calls `feed` from its
failure route; `voffice simulate` calls it with the events given on the command line.

Theory of operation, per operation type (DESIGN.md section 2):
- voicemail, fax: the call ends there (the media server answers and records).
- menu: a key with a child goes to the child; the repeat key and invalid keys replay the
  prompt up to `max_repeats` times, then the node's `next`; no input -> `next`. A menu with
  no keys is an announcement: it plays, waits, and the call goes to `next` or ends.
- extension: the digits of a known extension ring that operator (its plan comes from
  `ringing_plan.operator_plan`); unknown digits, no input, busy or no answer -> `next`.
- group: the group's plan rings; an answer ends the call as answered, busy or no answer
  (the whole plan used up) -> `next`.
A `next` that is absent ends the call with `hangup`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

ANSWERED, VOICEMAIL, FAX, HANGUP, PENDING = "answered", "voicemail", "fax", "hangup", "pending"
EVENT_KINDS = ("digits", "key", "timeout", "invalid", "done", "no-answer", "busy", "answer")
_WITH_VALUE = ("digits", "key", "answer")


class EventError(ValueError):
    """An event that is malformed or does not apply to the step the call is in."""


@dataclass(frozen=True, slots=True)
class Event:
    kind: str
    value: str | None = None

    @classmethod
    def parse(cls, text: str) -> Event:
        """`digits:101`, `key:1`, `timeout`, `invalid`, `done`, `no-answer`, `busy`, `answer:ID`."""
        kind, _, value = text.partition(":")
        if kind not in EVENT_KINDS:
            raise EventError(f"unknown event {text!r}; expected one of {', '.join(EVENT_KINDS)}")
        if kind in _WITH_VALUE:
            if not value:
                raise EventError(f"event {kind!r} needs a value, e.g. {kind}:1")
            if kind == "digits" and not (value.isascii() and value.isdigit() and len(value) <= 12):
                raise EventError(f"digits must be 1-12 digits 0-9, got {value!r}")
            if kind == "key" and not (len(value) == 1 and value in "0123456789*#"):
                raise EventError(f"a key is one of 0-9, * or #, got {value!r}")
            return cls(kind, value)
        if value:
            raise EventError(f"event {kind!r} takes no value")
        return cls(kind)

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}" if self.value is not None else self.kind


@dataclass(frozen=True, slots=True)
class Cursor:
    node: int
    repeats: int = 0  # menu replays used so far
    ringing: str | None = None  # extension: the operator whose extension was dialled


@dataclass(frozen=True, slots=True)
class Outcome:
    cursor: Cursor | None  # None once the call has ended
    end: str | None  # answered / voicemail / fax / hangup when the call ended
    step_ended: bool  # False: the same step goes on (a replay, digits now ringing)
    note: str | None = None


def operation_of(account: dict[str, Any], cursor: Cursor) -> tuple[str, dict[str, Any]]:
    op_id = account["nodes"][cursor.node][0]
    return op_id, account["operations"][op_id]


def phase(account: dict[str, Any], cursor: Cursor) -> str:
    """What the step is doing: `record` (voicemail/fax), `collect` (menu, extension prompt)
    or `ring` (a group, or an extension's operator)."""
    kind = operation_of(account, cursor)[1]["type"]
    if kind in ("voicemail", "fax"):
        return "record"
    if kind == "group" or cursor.ringing is not None:
        return "ring"
    return str(kind)


def terminal_end(account: dict[str, Any], cursor: Cursor) -> str | None:
    """voicemail/fax steps end the call on entry; other steps wait for events."""
    kind = operation_of(account, cursor)[1]["type"]
    return kind if kind in (VOICEMAIL, FAX) else None


def _go_next(account: dict[str, Any], cursor: Cursor, note: str | None = None) -> Outcome:
    nxt = account["nodes"][cursor.node][1]
    if nxt < 0:
        return Outcome(None, HANGUP, True, note)
    return Outcome(Cursor(nxt), None, True, note)


def _on_fail(account: dict[str, Any], cursor: Cursor, event: Event) -> Outcome:
    return _go_next(account, cursor)


def _menu_key(account: dict[str, Any], cursor: Cursor, event: Event) -> Outcome:
    node = account["nodes"][cursor.node]
    op = account["operations"][node[0]]
    key = event.value
    keys: dict[str, int] = node[2]
    if key in keys:
        return Outcome(Cursor(keys[key]), None, True)
    if not keys and key != op["repeat_key"]:
        return Outcome(cursor, None, False, f"key {key} ignored during an announcement")
    why = "repeat key" if key == op["repeat_key"] else f"invalid key {key}"
    if cursor.repeats < op["max_repeats"]:
        return Outcome(replace(cursor, repeats=cursor.repeats + 1), None, False, f"{why}: replay")
    return _go_next(account, cursor, f"{why}: replays used up")


def _extension_digits(account: dict[str, Any], cursor: Cursor, event: Event) -> Outcome:
    digits = event.value or ""
    operator = account["extensions"].get(digits)
    if operator is None:
        return _go_next(account, cursor, f"unknown extension {digits}")
    return Outcome(replace(cursor, ringing=operator), None, False, f"ringing {operator}")


def _answered(account: dict[str, Any], cursor: Cursor, event: Event) -> Outcome:
    who = event.value
    if cursor.ringing is not None:
        allowed = {cursor.ringing}
    else:
        group = account["groups"][operation_of(account, cursor)[1]["group"]]
        allowed = {m[0] for m in group["members"]}
    if who not in allowed:
        raise EventError(f"operator {who!r} is not rung in this step (rung: {', '.join(sorted(allowed))})")
    return Outcome(None, ANSWERED, True)


Handler = Callable[[dict[str, Any], Cursor, Event], Outcome]

TRANSITIONS: dict[tuple[str, str], Handler] = {
    ("menu", "key"): _menu_key,
    ("menu", "timeout"): _on_fail,
    ("menu", "invalid"): _on_fail,
    ("menu", "done"): _on_fail,
    ("extension", "digits"): _extension_digits,
    ("extension", "key"): _extension_digits,
    ("extension", "timeout"): _on_fail,
    ("extension", "invalid"): _on_fail,
    ("ring", "answer"): _answered,
    ("ring", "no-answer"): _on_fail,
    ("ring", "busy"): _on_fail,
}


def feed(account: dict[str, Any], cursor: Cursor, event: Event) -> Outcome:
    """Apply one event to the step the call is in."""
    where = phase(account, cursor)
    handler = TRANSITIONS.get((where, event.kind))
    if handler is None:
        op_id, op = operation_of(account, cursor)
        doing = "ringing" if where == "ring" else op["type"]
        raise EventError(f"event {str(event)!r} does not apply to step {op_id!r} ({doing})")
    return handler(account, cursor, event)
