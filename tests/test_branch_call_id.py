"""The per-branch Call-ID: strict, reversible, never a way into a header."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from routing.proxy import branch_call_id

WORD = st.text(alphabet=st.sampled_from("abcXYZ019-.!%*_+`'~()<>:\\\"/[]?{}"), min_size=1, max_size=40)


@given(WORD, st.one_of(st.none(), WORD), st.integers(0, 9999))
def test_a_branch_call_id_maps_back_to_the_callers(word: str, host: str | None, branch: int) -> None:
    call_id = word if host is None else f"{word}@{host}"
    out = branch_call_id.for_branch(call_id, branch)
    assert out is not None and out != call_id
    assert branch_call_id.of_caller(out) == call_id


def test_branches_differ_and_the_callers_stays() -> None:
    assert branch_call_id.for_branch("a84b4c76e66710@pc33.example.com", 0) == "a84b4c76e66710@pc33.example.com.vo0"
    assert branch_call_id.for_branch("x", 1) != branch_call_id.for_branch("x", 2)
    assert branch_call_id.of_caller("plain-call-id@host") == "plain-call-id@host"


@given(st.text(max_size=60))
def test_nothing_unsafe_is_rewritten(call_id: str) -> None:
    out = branch_call_id.for_branch(call_id, 3)
    if out is not None:
        assert "\r" not in out and "\n" not in out and " " not in out and ";" not in out and "," not in out


def test_odd_branches_or_call_ids_are_left_alone() -> None:
    assert branch_call_id.for_branch("abc\r\nX-Evil: 1", 1) is None
    assert branch_call_id.for_branch("two words", 1) is None
    assert branch_call_id.for_branch("a" * 300, 1) is None
    assert branch_call_id.for_branch("abc", "1;x") is None
    assert branch_call_id.for_branch("abc", None) is None
