"""What the proxy does for the step a call is in, and what a reply means for the scenario.

Pure glue between the scenario stepper and a SIP proxy: Kamailio's KEMI adapter asks
`action_for` what to do with the current node (ring waves of operators, or relay to a
media server with an operation descriptor) and turns each final reply into a scenario
event with `event_from_reply`. Nothing here touches SIP; it decides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from routing.core.media_contract import decode_result
from routing.core.numbers import E164, SIP_URI
from routing.core.ringing_plan import Wave, group_plan, operator_plan
from routing.core.scenario import Cursor, Event, operation_of

GATEWAY = re.compile(r"[A-Za-z0-9.-]{1,253}(?::[0-9]{1,5})?|\[[0-9A-Fa-f:]{2,39}\](?::[0-9]{1,5})?")
BUSY_CODES = frozenset({486, 600, 603})


@dataclass(frozen=True, slots=True)
class RingWaves:
    waves: list[Wave]


@dataclass(frozen=True, slots=True)
class MediaStep:
    op: dict[str, str | int]  # the X-VO-Op fields
    max_seconds: int  # how long the media server may keep the transaction


def operator_uri(phone: str, gateway: str) -> str:
    """The Request-URI that rings an operator: E.164 through the operator gateway, a sip:
    URI directly. Both re-checked whole-string here, right before they reach SIP."""
    if E164.fullmatch(phone):
        if not GATEWAY.fullmatch(gateway):
            raise ValueError(f"bad operator gateway {gateway!r}")
        return f"sip:{phone}@{gateway}"
    if SIP_URI.fullmatch(phone):
        return phone
    raise ValueError(f"operator phone {phone!r} is neither E.164 nor a plain sip: URI")


def action_for(
    account: dict[str, Any],
    version: int,
    cursor: Cursor,
    number: str,
    caller: str | None,
    seed: str = "",
    last_answered: str | None = None,
) -> RingWaves | MediaStep:
    op_id, op = operation_of(account, cursor)
    kind = op["type"]
    if kind == "group":
        return RingWaves(group_plan(account, op["group"], last_answered, seed))
    if kind == "extension" and cursor.ringing is not None:
        return RingWaves(operator_plan(account, cursor.ringing))
    fields: dict[str, str | int] = {
        "v": 1,
        "type": kind,
        "account": account["account"],
        "version": version,
        "op": op_id,
    }
    if op.get("sound"):
        fields["sound"] = op["sound"]
    if kind == "menu":
        keys = "".join(sorted(account["nodes"][cursor.node][2]))
        if not keys:
            fields["type"] = "announcement"
        fields.update(timeout=op["input_timeout"], repeat=op["repeat_key"], max_repeats=op["max_repeats"], keys=keys)
        budget = 60 + (op["max_repeats"] + 1) * (op["input_timeout"] + 60)
    elif kind == "extension":
        fields.update(
            timeout=op["input_timeout"],
            digits=account["extension_digits"],
            inter_digit=op["inter_digit_timeout"],
        )
        budget = 60 + op["input_timeout"] + account["extension_digits"] * op["inter_digit_timeout"]
    else:
        fields["max_seconds"] = op["max_seconds"]
        budget = 60  # until the 200 OK; the recording itself runs in the dialog
    fields["number"] = number
    fields["caller"] = caller or "anonymous"
    return MediaStep(fields, budget)


def event_from_reply(code: int, result_header: str | None, media: bool) -> Event:
    """The scenario event a failed branch set means.

    A media server's final reply carries X-VO-Result; without one (the media server
    failed, and so did its fallbacks) the menu or prompt counts as not answered: the
    scenario moves on rather than leaving the caller in silence.
    """
    if media:
        result = decode_result(result_header)
        if result is None:
            return Event("invalid")
        kind, value = result
        return Event(kind, value)
    if code in BUSY_CODES:
        return Event("busy")
    return Event("no-answer")
