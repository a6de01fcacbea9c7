"""The queued texts of the SIP workers and the call records the timer process makes of them."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing.proxy import call_record

STATE = {
    "acct": "acme", "ver": 3, "did": "+74951234567", "caller": "+79031112233", "callid": "c0ffee",
    "t0": 1000.0, "rule": "r1", "scen": "lunch", "kind": "ring", "b0": 2, "nb": 4,
    "ops": ["ivanov", "petrov"], "steps": [{"operation": "ring1", "type": "group", "ringing": None, "event": "no_answer|x"}],
}


def test_answered_call_ended_by_the_caller() -> None:
    answered = call_record.answered(1003.5, 3, json.dumps(STATE))
    record = call_record.record(call_record.ended(1010.0, "caller", answered))
    assert record["type"] == "call" and record["status"] == "answered"
    assert record["answered_by"] == "petrov"  # branch 3 = the second of the wave that began at 2
    assert (record["setup_seconds"], record["talk_seconds"], record["hung_up_by"]) == ("3.500", "6.500", "caller")
    assert json.loads(record["steps"])[0]["event"] == "no_answer|x"  # a | inside the state is safe
    assert (record["account"], record["number"], record["rule"], record["scenario"]) == ("acme", "+74951234567", "r1", "lunch")


def test_branch_outside_the_wave_names_nobody() -> None:
    answered = call_record.answered(1001.0, 0, json.dumps(STATE))
    assert call_record.record(call_record.ended(1002.0, "callee", answered))["answered_by"] == ""


def test_media_answer_is_recorded_by_its_operation_type() -> None:
    state = dict(STATE, kind="media", op="type=voicemail;op=vm1;max=120")
    record = call_record.record(call_record.expired(1100.0, call_record.answered(1002.0, 0, json.dumps(state))))
    assert record["status"] == "voicemail" and record["answered_by"] == ""
    assert "expired" in record["note"] and record["hung_up_by"] == ""


def test_an_answer_never_acked_is_a_failed_call_without_talk_time() -> None:
    """The caller never ACKed the 200: the callee gives up after 64*T1 and sends BYE. That is
    no conversation, whatever the time between the 200 and that BYE."""
    state = dict(STATE, sipid="a84b4c76e66710@pc33.example.com")
    answered = call_record.answered(1003.5, 3, json.dumps(state))
    record = call_record.record(call_record.ended(1035.5, "callee", answered, acked=False))
    assert (record["status"], record["talk_seconds"], record["answered_by"]) == ("failed", "", "petrov")
    assert record["note"] == call_record.NO_ACK and record["setup_seconds"] == "3.500"
    assert record["sip_call_id"] == "a84b4c76e66710@pc33.example.com"
    expired = call_record.record(call_record.expired(1035.5, answered, acked=False))
    assert (expired["status"], expired["talk_seconds"]) == ("failed", "")


def test_missed_call_has_no_talk_time() -> None:
    record = call_record.record(call_record.outcome("missed", 1030.0, "caller hung up", json.dumps(STATE)))
    assert (record["status"], record["note"], record["talk_seconds"], record["setup_seconds"]) == ("missed", "caller hung up", "", "30.000")


def test_a_pipe_in_the_note_cannot_shift_fields() -> None:
    record = call_record.record(call_record.outcome("failed", 1001.0, "503 | from media", json.dumps(STATE)))
    assert record["status"] == "failed" and record["call_id"] == "c0ffee"


@pytest.mark.parametrize("queued", ["", "nonsense", "ended|x|caller|1|1|2|{}", "outcome|missed|1.0|n|{not json", "ended|1.0",
                                    "ended|1.0|caller|yes|1.0|2|{}"])
def test_garbage_is_a_clear_error(queued: str) -> None:
    with pytest.raises(call_record.RecordError):
        call_record.record(queued)


@given(st.text(), st.floats(0, 2e9), st.floats(0, 2e9), st.integers(0, 20), st.sampled_from(["caller", "callee"]), st.booleans())
def test_any_state_round_trips(note: str, t_answer: float, t_end: float, branch: int, by: str, acked: bool) -> None:
    state = dict(STATE, caller=note, b0=0, ops=[f"op{i}" for i in range(branch + 1)])
    text = json.dumps(state)
    answered = call_record.record(call_record.ended(t_end, by, call_record.answered(t_answer, branch, text), acked))
    assert answered["status"] == ("answered" if acked else "failed") and (answered["talk_seconds"] != "") == acked
    assert answered["caller"] == note and answered["answered_by"] == f"op{branch}" and answered["hung_up_by"] == by
    missed = call_record.record(call_record.outcome("missed", t_end, note, text))
    assert missed["caller"] == note and missed["note"] == note.replace("|", "/")


def test_an_ended_calls_kept_record_reads_back_and_is_told_from_a_live_entry() -> None:
    queued = call_record.ended(1700000100.0, "caller", call_record.answered(1700000000.0, 0, '{"x":"a|b"}'), True)
    kept = call_record.ended_kept("3", queued)
    assert call_record.unkeep_ended(kept) == ("3", queued)
    live = call_record.kept("tag1", call_record.answered(1700000000.0, 0, "{}"), "3")
    assert call_record.unkeep_ended(live) is None
    assert call_record.unkeep_ended(call_record.kept("=x", "1|0|{}")) is None  # a to-tag never makes one
