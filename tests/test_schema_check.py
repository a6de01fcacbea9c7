"""The fast schema yes/no (routing/core/schema_check.py: jsonschema-rs, floats aside) against
our jsonschema validator: it may call a document valid only when jsonschema finds no error
in it, and on our schema it should answer exactly as jsonschema does (otherwise valid
documents take the slow way)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routing.core import validation
from routing.core.schema_check import compile_check

from .fuzz_targets import BASE_DOCUMENTS, JSON_VALUES, mutated_documents


def jsonschema_valid(schema: Any, instance: Any) -> bool:
    return not any(validation._draft()(schema).iter_errors(instance))


def fast_valid(schema: Any, instance: Any) -> bool:
    check = compile_check(schema)
    assert check is not None
    return check(instance)


def test_our_schema_compiles() -> None:
    assert validation._valid_by_schema() is not None


@pytest.mark.parametrize("doc", BASE_DOCUMENTS, ids=[d["account"] for d in BASE_DOCUMENTS])
def test_the_examples_are_valid_both_ways(doc: dict[str, Any]) -> None:
    check = validation._valid_by_schema()
    assert check is not None and check(doc)
    assert not any(validation._validator().iter_errors(doc))


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(mutated_documents())
def test_answers_as_jsonschema_on_mutated_documents(doc: Any) -> None:
    check = validation._valid_by_schema()
    assert check is not None
    fast, slow = check(doc), not any(validation._validator().iter_errors(doc))
    assert slow or not fast  # never valid where jsonschema finds an error
    # and the same answer, but where Python's `$` accepts a trailing newline (the slow way decides those)
    assert fast == slow or any(text.endswith("\n") for _, text in validation._walk_strings(doc))


@pytest.mark.parametrize(
    ("schema", "instance"),
    [
        ({"type": "integer"}, 3),
        ({"type": "integer"}, 3.0),  # our type checker: an integer is an int
        ({"type": "integer"}, True),
        ({"type": "number"}, False),
        ({"type": ["string", "null"]}, None),
        ({"type": "string", "pattern": "b"}, "abc"),  # search, not match
        ({"minLength": 2}, "é"),
        ({"minLength": 2}, 7),  # string keywords ignore other types
        ({"enum": ["a", "b"]}, "b"),
        ({"enum": ["a", "b"]}, ["a"]),
        ({"enum": [1]}, True),
        ({"const": "group"}, "group"),
        ({"uniqueItems": True}, ["a", "b", "a"]),
        ({"uniqueItems": True}, ["a", "b"]),
        ({"uniqueItems": True}, [{"a": 1}, {"a": True}]),
        ({"prefixItems": [{"type": "string"}], "items": {"type": "integer"}}, ["a", 1, 2]),
        ({"prefixItems": [{"type": "string"}], "items": {"type": "integer"}}, [1]),
        ({"prefixItems": [{"type": "string"}], "items": {"type": "integer"}}, ["a", "b"]),
        ({"minItems": 1, "maxItems": 2}, []),
        ({"minItems": 1, "maxItems": 2}, [1, 2, 3]),
        ({"properties": {"a": {"type": "integer"}}, "additionalProperties": False}, {"a": 1}),
        ({"properties": {"a": {"type": "integer"}}, "additionalProperties": False}, {"a": 1, "b": 2}),
        ({"properties": {"a": {"type": "integer"}}, "additionalProperties": {"type": "string"}}, {"b": "x"}),
        ({"required": ["a"]}, {}),
        ({"required": ["a"]}, []),  # required ignores arrays
        ({"propertyNames": {"pattern": "^[0-9]$"}}, {"1": 1, "12": 2}),
        ({"oneOf": [{"type": "integer"}, {"minimum": 0}]}, 5),  # both match: not one
        ({"oneOf": [{"type": "integer"}, {"type": "string"}]}, "x"),
        ({"anyOf": [{"required": ["file"]}, {"required": ["text"]}]}, {"x": 1}),
        ({"allOf": [{"if": {"properties": {"type": {"const": "group"}}}, "then": {"required": ["group"]}}]}, {"type": "group"}),
        ({"allOf": [{"if": {"properties": {"type": {"const": "group"}}}, "then": {"required": ["group"]}}]}, {"type": "menu"}),
        ({"minimum": 1, "maximum": 10}, 0),
        ({"minimum": 1, "maximum": 10}, 10.5),
        ({"minimum": 1, "maximum": 10}, "20"),
        ({"not": {"type": "null"}}, None),
        # a type and keywords of that type, checked by one closure
        ({"type": "integer", "minimum": 1, "maximum": 9}, "5"),
        ({"type": "integer", "minimum": 1, "maximum": 9}, 3.0),
        ({"type": "integer", "minimum": 1, "maximum": 9}, 0),
        ({"type": "integer", "minimum": 1, "maximum": 9}, 5),
        ({"type": "number", "minimum": 1}, True),
        ({"type": "string", "minLength": 1, "pattern": "^a"}, 5),
        ({"type": "string", "minLength": 1, "pattern": "^a"}, "ab"),
        ({"type": "object", "required": ["a"]}, []),
        ({"type": "object", "required": ["a"]}, {"a": None}),
        ({"type": "array", "minItems": 1}, {"0": 1}),
        ({"type": "array", "minItems": 1}, [None]),
        ({"type": ["array", "null"], "minItems": 1}, None),
        ({"type": "string", "minItems": 1}, ["x"]),  # array keywords on a string schema: the type decides
        ({"$defs": {"node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/node"}}}}, "$ref": "#/$defs/node"},
         {"next": {"next": {"next": 1}}}),
        ({"$defs": {"node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/node"}}}}, "$ref": "#/$defs/node"},
         {"next": {"next": {}}}),
    ],
)
def test_keywords_answer_as_jsonschema(schema: dict[str, Any], instance: Any) -> None:
    assert fast_valid(schema, instance) == jsonschema_valid(schema, instance)


@pytest.mark.parametrize(
    ("schema", "instance"),
    [
        ({"type": "string", "pattern": "^a$"}, "a\n"),  # re.search: `$` before a trailing newline; not in Rust
        ({"enum": [1]}, 1.0),  # any float: the slow way (our `integer` takes no 3.0)
        ({"type": "number", "minimum": 1}, 1.5),
    ],
)
def test_where_unsure_it_says_not_valid(schema: dict[str, Any], instance: Any) -> None:
    assert jsonschema_valid(schema, instance)
    assert not fast_valid(schema, instance)


def test_a_schema_it_cannot_build_means_no_fast_answer() -> None:
    assert compile_check({"$ref": "other.json"}) is None


def test_formats_are_asserted_by_neither() -> None:
    assert fast_valid({"format": "email"}, "not an address") == jsonschema_valid({"format": "email"}, "not an address")


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(JSON_VALUES, st.sampled_from(["\x00", "\n", "\x1f", "\x7f", "\x85", "\x9b", "\u2028", "\u2029", "\u200b", "\u202e",
                                      "\ufeff", "\u00ad", '"', "\\", "ok"]), st.booleans())
def test_may_hold_misses_no_control_or_invisible_character(value: Any, char: str, as_key: bool) -> None:
    doc = {(f"k{char}" if as_key else "k"): value, "v": [f"a{char}b"]}
    holds = any(validation._CONTROL_OR_INVISIBLE.search(text) for _, text in validation._walk_strings(doc))
    assert validation._may_hold(doc, validation._CONTROL_OR_INVISIBLE) or not holds
    for text in (json.dumps(doc), json.dumps(doc, ensure_ascii=False, indent="\t"), json.dumps(doc, ensure_ascii=False, indent=2)):
        assert validation._text_may_hold(text) or not holds
