"""The call record: one per call on `voffice:events`, built from what the SIP workers queued.

A SIP worker does as little as it can per call (docs/performance.md): it queues the call's
state exactly as it keeps it (the JSON of its transaction AVP) with a few `|`-separated
fields in front, and the event-shipping timer process turns that into the record. The
formats of the queued texts live here, next to the one function that reads them, so both
sides are tested together (tests/test_call_record.py); the state's JSON is always last, so
a `|` inside it cannot shift the fields.

    outcome|<status>|<ended at>|<note>|<state>              missed, failed: from the failure route
    ended|<ended at>|<hung up by>|<acked>|<answered>        an answered call's BYE
    expired|<ended at>||<acked>|<answered>                  no BYE seen (htable expiry)
    <acked> = 1 when the caller's ACK of the 200 passed, else 0 (the callee's BYE after
              64*T1 of unacknowledged 200s: a call nobody talked on, not 32 s of talk)
    <answered> = <answered at>|<branch index>|<state>       kept from the 200 until the BYE,
    <to-tag>|<answered>                                     as the vocalls htable keeps it
                                                            (the answering dialog's to-tag)
    <owner>/<to-tag>|<answered>                             the same with several Kamailio
                                                            nodes: the node that answered it
                                                            (docs/cluster.md)
    =<owner>|<queued ended record>                          several nodes: an answered call
                                                            its owner has just ended, kept a
                                                            few seconds (ENDED_KEEP_S) so a
                                                            survivor can send the record if
                                                            the owner dies before shipping it
"""

from __future__ import annotations

import json
from typing import Any


def outcome(status: str, ended_at: float, note: str, state: str) -> str:
    note = note.replace("|", "/")
    return f"outcome|{status}|{ended_at:.3f}|{note}|{state}"


def answered(answered_at: float, branch_index: Any, state: str) -> str:
    return f"{answered_at:.3f}|{branch_index}|{state}"


def dialog_tag(tag: Any) -> str:
    """A dialog's to-tag as kept (a SIP token never holds '|', '/' or '='; a broken one cannot
    shift fields or pass for an ended call's entry)."""
    return str(tag or "").replace("|", "").replace("/", "").replace("=", "")


def kept(to_tag: Any, answered_text: str, owner: str = "") -> str:
    """What the vocalls htable keeps from an answered call's 200 until its BYE; `owner`: the
    node that answered it, when there are several (none: as one node always kept it)."""
    tag = f"{owner}/{dialog_tag(to_tag)}" if owner else dialog_tag(to_tag)
    return f"{tag}|{answered_text}"


def unkeep_owned(value: str) -> tuple[str, str, str]:
    """(owner, to-tag, answered text) of a kept entry; owner "" when none was kept."""
    head, _, answered_text = value.partition("|")
    owner, _, to_tag = head.rpartition("/")
    return owner, to_tag, answered_text


ENDED = "="  # marks a vocalls entry whose call has ended (a to-tag never starts with "=")
ENDED_KEEP_S = 12  # > cluster.DEAD_AFTER_S + a heartbeat: the owner is seen dead by then


def ended_kept(owner: str, queued: str) -> str:
    """The vocalls entry of a call `owner` has just ended: the record as it queued it."""
    return f"{ENDED}{owner}|{queued}"


def unkeep_ended(value: str) -> tuple[str, str] | None:
    """(owner, queued record) of an ended call's entry, or None for any other entry."""
    if not value.startswith(ENDED):
        return None
    owner, _, queued = value[len(ENDED):].partition("|")
    return owner, queued


def unkeep(value: str) -> tuple[str, str]:
    """(to-tag, answered text) of a kept entry."""
    _owner, to_tag, answered_text = unkeep_owned(value)
    return to_tag, answered_text


def ended(ended_at: float, hung_up_by: str, answered_text: str, acked: bool = True) -> str:
    return f"ended|{ended_at:.3f}|{hung_up_by}|{int(acked)}|{answered_text}"


def expired(ended_at: float, answered_text: str, acked: bool = True) -> str:
    return f"expired|{ended_at:.3f}||{int(acked)}|{answered_text}"


NO_ACK = "answered, but the caller never acknowledged the 200 (no ACK): no talk"


class RecordError(ValueError):
    pass


def record(queued: str) -> dict[str, str]:
    """The `call` event for one queued text."""
    kind, _, rest = queued.partition("|")
    try:
        if kind == "outcome":
            status, ended_at, note, state = rest.split("|", 3)
            return _record(json.loads(state), status, float(ended_at), None, note=note)
        if kind in ("ended", "expired"):
            ended_at, hung_up_by, acked, answered_at, branch, state = rest.split("|", 5)
            if acked not in ("0", "1"):
                raise ValueError(f"acked is {acked!r}")
            st = json.loads(state)
            if acked == "0":
                return _record(st, "failed", float(ended_at), float(answered_at), answered_by=answering_operator(st, branch),
                               hung_up_by=hung_up_by, note=NO_ACK, talk=False)
            return _record(
                st,
                _answered_status(st),
                float(ended_at),
                float(answered_at),
                answered_by=answering_operator(st, branch),
                hung_up_by=hung_up_by,
                note="" if kind == "ended" else "no BYE seen: the call's entry expired",
            )
    except (ValueError, TypeError) as exc:
        raise RecordError(f"unreadable queued call record ({exc}): {queued[:120]!r}") from exc
    raise RecordError(f"unknown queued call record kind {kind!r}")


def _answered_status(st: dict[str, Any]) -> str:
    if st.get("kind") != "media":
        return "answered"
    fields = dict(part.split("=", 1) for part in str(st.get("op", "")).split(";") if "=" in part)
    return fields.get("type", "media")  # voicemail, fax: answered by a media server


def answering_operator(st: dict[str, Any], branch: str) -> str:
    """The operator of the branch that answered: tm numbers branches in creation order."""
    if st.get("kind") == "media" or not branch.isdigit():
        return ""
    ops = st.get("ops") or []
    offset = int(branch) - int(st.get("b0", 0))
    return str(ops[offset]) if 0 <= offset < len(ops) else ""


def _record(
    st: dict[str, Any],
    status: str,
    ended_at: float,
    answered_at: float | None,
    answered_by: str = "",
    hung_up_by: str = "",
    note: str = "",
    talk: bool = True,
) -> dict[str, str]:
    t0 = float(st.get("t0") or ended_at)
    return {
        "type": "call",
        "status": status,
        "account": str(st.get("acct", "")),
        "number": str(st.get("did", "")),
        "caller": str(st.get("caller", "")),
        "call_id": str(st.get("callid", "")),
        "sip_call_id": str(st.get("sipid", "")),  # the caller's Call-ID: match records and SIP traces
        "rule": str(st.get("rule", "")),
        "scenario": str(st.get("scen", "")),
        "steps": json.dumps(st.get("steps", [])),
        "answered_by": answered_by,
        "setup_seconds": f"{(answered_at if answered_at is not None else ended_at) - t0:.3f}",
        "talk_seconds": "" if answered_at is None or not talk else f"{max(0.0, ended_at - answered_at):.3f}",
        "hung_up_by": hung_up_by,
        "note": note,
        "started_at": f"{t0:.3f}",  # epoch seconds: the call history's time of the call
        "ended_at": f"{ended_at:.3f}",
    }
