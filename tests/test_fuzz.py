"""Fuzzing with Hypothesis: the config loader and validator, the media server's SIP, SDP, RTP
and RFC 4733 parsers and its UAS, the X-VO-Op contract and number normalisation.

The targets (inputs and properties) live in tests/fuzz_targets.py, shared with
`bench/fuzz.py`, which runs them with many more examples and reports counts. Here each
target runs a moderate number of examples (Target.suite_examples) so the file stays well
under 40 s; a failure is shrunk to a small input by Hypothesis.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from routing.core.validation import validate_document
from voffice_media.sipmsg import NameAddr, SipParseError

from .fuzz_targets import TARGETS, Target, check_document, run


@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
def test_fuzz(target: Target) -> None:
    run(target, target.suite_examples)


# --- what the fuzzing found, kept as plain regression tests ------------------------------


def _set(doc: dict[str, Any], where: tuple[str | int, ...], value: object) -> None:
    node: Any = doc
    for part in where[:-1]:
        node = node[part]
    node[where[-1]] = value


@pytest.mark.parametrize(
    ("where", "value"),
    [
        (("schedules", 0, "intervals"), None),  # the shadowed-rule and coverage warnings read schedules as the schema says
        (("schedules", 0, "intervals"), [[], ["09:00", "18:00"]]),
        (("schedules", 0, "days"), None),
        (("schedules", 0, "intervals"), 7),  # `x or []` is not a list
        (("numbers",), 7),
        (("caller_lists", 0, "patterns"), 7),
        (("operations", 2, "repeat_key"), {"a": 1}),  # `repeat in keys` with an unhashable repeat key
    ],
)
def test_malformed_shapes_are_problems_not_tracebacks(seed_doc: dict[str, Any], where: tuple[str | int, ...], value: object) -> None:
    _set(seed_doc, where, value)
    problems = validate_document(seed_doc, "x.json")
    assert any(p.severity == "error" for p in problems)
    assert check_document(seed_doc) is False


@pytest.mark.parametrize(
    ("where", "value"),
    [
        (("defaults", "input_timeout"), 3.0),  # X-VO-Op timeout=3.0: ContractError on every call
        (("groups", 0, "members", 0, "attempts"), 2.0),  # range(2.0) in the ringing plan
        (("defaults", "ring_seconds"), 20.0),
    ],
)
def test_integer_fields_take_no_floats(seed_doc: dict[str, Any], where: tuple[str | int, ...], value: float) -> None:
    """JSON Schema's "integer" accepts 3.0; such a document used to validate, load, and then
    fail every call that reached the step (in Kamailio's Python)."""
    _set(seed_doc, where, value)
    problems = validate_document(seed_doc, "x.json")
    assert [p.message for p in problems if p.severity == "error"] == [f"must be integer, not {value!r}"]


@pytest.mark.parametrize("to", ["a" * 28 + "@ <sip:x@y>", "a b" * 14 + '" <sip:x@y>', "a " * 28 + "\x00<sip:x@y>"])
def test_a_display_name_is_parsed_in_linear_time(to: str) -> None:
    """The display-name pattern (?:TOKEN[ \t]*)* backtracked exponentially: 28 token
    characters and an '@' took about 9 s, 40 would take hours, and the media server parses
    the To header of every INVITE, from anyone (fuzz: sip-uas)."""
    start = time.perf_counter()
    with pytest.raises(SipParseError):
        NameAddr.parse(to)
    NameAddr.parse("a" * 100_000 + " b <sip:x@y>")
    assert time.perf_counter() - start < 1.0
