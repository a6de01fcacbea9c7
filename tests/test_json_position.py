"""json_position: every value of a document is found where its pointer says, however the
text is laid out."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from routing.core.json_position import line_column, offset_of, position
from routing.core.problems import pointer

scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=8)
keys = st.text(alphabet=st.sampled_from("ab~/ \"é\\"), max_size=4)
documents = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
                         max_leaves=25)


def walk(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    out = [(path, value)]
    if isinstance(value, dict):
        for k, v in value.items():
            out += walk(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += walk(v, (*path, i))
    return out


@given(documents, st.sampled_from([None, 0, 2]), st.booleans())
def test_every_pointer_finds_its_value(doc: Any, indent: int | None, ascii_only: bool) -> None:
    text = json.dumps(doc, indent=indent, ensure_ascii=ascii_only)
    decoder = json.JSONDecoder()
    for path, value in walk(doc):
        offset = offset_of(text, pointer(*path))
        assert offset is not None
        assert decoder.raw_decode(text, offset)[0] == value


def test_a_missing_member_points_at_its_parent_and_lines_count_from_one() -> None:
    text = '{\n  "operators": [\n    {"id": "a"},\n    {"id": "b"}\n  ]\n}'
    assert position(text, "/operators/1/id") == (4, 12)
    assert position(text, "/operators/1/phone") == (4, 5)
    assert position(text, "/operators/7") == (2, 16)
    assert position(text, "") == (1, 1)
    assert line_column("ab\ncd", 4) == (2, 2)


@given(documents, st.data())
def test_broken_text_never_raises(doc: Any, data: st.DataObject) -> None:
    """A truncated or garbled file gets a position or none, never an exception."""
    text = json.dumps(doc, indent=2)
    cut = data.draw(st.integers(0, len(text)))
    paths = [pointer(*path) for path, _ in walk(doc)]
    for where in paths:
        found = offset_of(text[:cut], where)
        assert found is None or 0 <= found < cut
    assert position("", "/a") is None
