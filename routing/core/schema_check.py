"""A fast yes/no answer to "does this document have any schema error?".

jsonschema (Python) finds and describes every error, and that costs ~1.8 ms per account
document: most of a 100,000-account load. Almost every document of a load is valid, and a
valid document needs no description. jsonschema-rs (the same JSON Schema 2020-12 in Rust)
answers "valid or not" in ~70 us; validation asks it first and runs jsonschema, for the
messages, only when the answer is "not valid".

The check must never call a document valid that our jsonschema validator would fault.
The two differ where our validator is stricter than the specification: an `integer` is a
Python int there, never 3.0 (validation's type checker), so any float in a document sends
it the slow way (our schema has no `number` type: a float is an error anyway). Where the
Rust side is the stricter one (`$` before a trailing newline, which Python's `re.search`
accepts), the slow way gives jsonschema's answer. Formats are asserted by neither.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jsonschema_rs

Check = Callable[[Any], bool]


def compile_check(schema: dict[str, Any]) -> Check | None:
    """A predicate that is True only for documents jsonschema finds no error in (None: a
    schema jsonschema-rs cannot build, such as one with a remote $ref; use jsonschema alone)."""
    try:
        validator = jsonschema_rs.Draft202012Validator(schema, validate_formats=False)
    except (jsonschema_rs.ValidationError, ValueError):
        return None

    def check(instance: Any) -> bool:
        return not _holds_float(instance) and bool(validator.is_valid(instance))

    return check


def _holds_float(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False
