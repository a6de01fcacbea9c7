"""What an operator branch's Require becomes, and when a branch must leave over TCP."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing.proxy.operator_leg import (
    BRANCH_GROWTH,
    UDP_LIMIT,
    operator_require,
    option_tags,
    over_tcp,
    too_large_for_udp,
)


@pytest.mark.parametrize(("require", "expected"), [
    ("100rel", (None, True)),
    ("timer, 100rel", ("timer", True)),
    ("100REL,precondition", ("precondition", True)),
    ("timer", ("timer", False)),
    ("", (None, False)),
])
def test_100rel_is_not_required_of_an_operator(require: str, expected: tuple[str | None, bool]) -> None:
    assert operator_require(require) == expected


def test_what_is_not_a_token_never_comes_back() -> None:
    assert option_tags("timer, evil\r\nX-VO-Op: x, 100rel") == ["timer", "100rel"]


@given(st.lists(st.from_regex(r"[A-Za-z0-9.!%*_+`'~-]{1,20}", fullmatch=True), max_size=6))
def test_every_other_tag_is_kept_in_order(tags: list[str]) -> None:
    require, dropped = operator_require(", ".join([*tags, "100rel"]))
    kept = [t for t in tags if t.lower() != "100rel"]
    assert dropped and require == (", ".join(kept) or None)


def test_large_requests_go_over_tcp() -> None:
    assert not too_large_for_udp(UDP_LIMIT - BRANCH_GROWTH)
    assert too_large_for_udp(UDP_LIMIT - BRANCH_GROWTH + 1)
    assert not too_large_for_udp(60_000, limit=0)  # no TCP listener: never
    assert over_tcp("sip:+79161230001@10.0.0.7:5060") == "sip:+79161230001@10.0.0.7:5060;transport=tcp"
