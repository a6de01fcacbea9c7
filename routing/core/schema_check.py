"""A fast yes/no answer to "does this document have any schema error?".

jsonschema finds and describes every error, and that costs ~2 ms per account document:
most of a 100,000-account load. Almost every document of a load is valid, and a valid
document needs no description. `compile_check` turns a schema into one Python closure
per schema node that answers only "valid or not"; validation asks it first and runs
jsonschema (for the messages) only when the answer is "not valid".

The closure must never call a document valid that jsonschema would fault: it knows only
the keywords listed in `_KNOWN` (those of schemas/account.schema.json), and a schema with
any other keyword gets no closure at all (`compile_check` returns None: jsonschema alone).
Where exactness would cost code (an `enum` holding 1 against an instance 1.0, `uniqueItems`
over objects), the closure says "not valid", which only sends the document the slow way.
It runs on parsed JSON (dict, list, str, int, float, bool, None) with the schema's own
rules: an `integer` is an int (not 3.0, not a bool), as in validation's type checker;
`pattern` is `re.search`, as jsonschema does it; `format` is not asserted.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Check = Callable[[Any], bool]

# Keywords that do not constrain an instance.
_ANNOTATIONS = frozenset({"$schema", "$id", "$defs", "$comment", "title", "description", "default", "examples",
                          "deprecated", "readOnly", "writeOnly"})
_KNOWN = _ANNOTATIONS | frozenset({
    "$ref", "type", "enum", "const", "allOf", "anyOf", "oneOf", "not", "if", "then", "else",
    "properties", "required", "additionalProperties", "propertyNames", "minProperties", "maxProperties",
    "items", "prefixItems", "minItems", "maxItems", "uniqueItems",
    "pattern", "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
})

_TYPES: dict[str, Check] = {
    "object": lambda x: isinstance(x, dict),
    "array": lambda x: isinstance(x, list),
    "string": lambda x: isinstance(x, str),
    "integer": lambda x: isinstance(x, int) and not isinstance(x, bool),
    "number": lambda x: isinstance(x, (int, float)) and not isinstance(x, bool),
    "boolean": lambda x: isinstance(x, bool),
    "null": lambda x: x is None,
}
_SCALARS = (str, int, float, bool, type(None))


class Unsupported(Exception):
    """The schema says something this module does not check exactly."""


def compile_check(schema: dict[str, Any]) -> Check | None:
    """A predicate that is True only for documents jsonschema finds no error in (None: the
    schema uses a keyword this module does not know; use jsonschema alone)."""
    try:
        return _Compiler(schema).node(schema, root=True)
    except Unsupported:
        return None


def _always(_: Any) -> bool:
    return True


def _never(_: Any) -> bool:
    return False


def _all(checks: list[Check]) -> Check:
    if not checks:
        return _always
    if len(checks) == 1:
        return checks[0]

    def every(x: Any) -> bool:
        for check in checks:
            if not check(x):
                return False
        return True

    return every


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


class _Compiler:
    def __init__(self, root: dict[str, Any]):
        self.root = root
        self.defs: dict[str, Check] = {}

    def node(self, schema: Any, root: bool = False) -> Check:
        if schema is True:
            return _always
        if schema is False:
            return _never
        if not isinstance(schema, dict):
            raise Unsupported(f"schema {schema!r}")
        unknown = set(schema) - _KNOWN
        if unknown:
            raise Unsupported(f"keywords {sorted(unknown)}")
        if not root and "$id" in schema:
            raise Unsupported("$id below the root changes how references resolve")
        checks: list[Check] = []
        if "$ref" in schema:
            checks.append(self.ref(schema["$ref"]))
        # One type and keywords of that type: one closure checks both (half the calls).
        kind = schema.get("type")
        by_kind = {"object": self.objects, "array": self.arrays, "string": self.strings, "integer": self.numbers,
                   "number": self.numbers}
        own = by_kind.get(kind) if isinstance(kind, str) else None
        fused = own(schema, kind) if own is not None and isinstance(kind, str) else []
        if "type" in schema and not fused:
            checks.append(self.type(schema["type"]))
        if "enum" in schema:
            checks.append(self.enum(schema["enum"]))
        if "const" in schema:
            checks.append(self.enum([schema["const"]]))
        checks += fused
        for keywords in (self.objects, self.arrays, self.strings, self.numbers):
            if not (fused and keywords == own):
                checks += keywords(schema, None)
        for sub in schema.get("allOf", []):
            checks.append(self.node(sub))
        if "anyOf" in schema:
            alternatives = [self.node(sub) for sub in schema["anyOf"]]
            checks.append(lambda x: any(alt(x) for alt in alternatives))
        if "oneOf" in schema:
            choices = [self.node(sub) for sub in schema["oneOf"]]
            checks.append(lambda x: sum(1 for alt in choices if alt(x)) == 1)
        if "not" in schema:
            negated = self.node(schema["not"])
            checks.append(lambda x: not negated(x))
        if "if" in schema:
            condition = self.node(schema["if"])
            then = self.node(schema.get("then", True))
            otherwise = self.node(schema.get("else", True))
            checks.append(lambda x: then(x) if condition(x) else otherwise(x))
        return _all(checks)

    def ref(self, ref: Any) -> Check:
        if not isinstance(ref, str) or not ref.startswith("#/$defs/"):
            raise Unsupported(f"$ref {ref!r}")
        name = ref[len("#/$defs/"):]
        if "/" in name or "~" in name or "%" in name or name not in self.root.get("$defs", {}):
            raise Unsupported(f"$ref {ref!r}")
        if name not in self.defs:
            compiled: list[Check] = []
            self.defs[name] = lambda x: compiled[0](x)  # a recursive reference finds it filled in
            compiled.append(self.node(self.root["$defs"][name]))
            self.defs[name] = compiled[0]
        return self.defs[name]

    def type(self, kind: Any) -> Check:
        kinds = kind if isinstance(kind, list) else [kind]
        if not kinds or any(k not in _TYPES for k in kinds):
            raise Unsupported(f"type {kind!r}")
        checks = [_TYPES[k] for k in kinds]
        return checks[0] if len(checks) == 1 else lambda x: any(c(x) for c in checks)

    def enum(self, values: Any) -> Check:
        """Equal in value and in type (True is not 1, 1 is not 1.0 here: "not valid" for
        those sends the document to jsonschema, which knows the finer rules)."""
        if not isinstance(values, list) or not all(isinstance(v, _SCALARS) for v in values):
            raise Unsupported("enum or const of arrays or objects")
        allowed = frozenset((type(v), v) for v in values)
        return lambda x: isinstance(x, _SCALARS) and (type(x), x) in allowed

    def objects(self, schema: dict[str, Any], kind: str | None) -> list[Check]:
        """The object keywords; with `kind` ("object"), a non-object fails too."""
        if not {"properties", "required", "additionalProperties", "propertyNames", "minProperties",
                "maxProperties"} & set(schema):
            return []
        properties = {name: self.node(sub) for name, sub in schema.get("properties", {}).items()}
        required = list(schema.get("required", []))
        extra = self.node(schema["additionalProperties"]) if "additionalProperties" in schema else None
        names = self.node(schema["propertyNames"]) if "propertyNames" in schema else None
        least = schema.get("minProperties", 0)
        most = schema.get("maxProperties")
        other = kind is None

        def check(x: Any) -> bool:
            if not isinstance(x, dict):
                return other
            if len(x) < least or (most is not None and len(x) > most):
                return False
            for name in required:
                if name not in x:
                    return False
            for key, value in x.items():
                sub = properties.get(key)
                if sub is not None:
                    if not sub(value):
                        return False
                elif extra is not None and not extra(value):
                    return False
                if names is not None and not names(key):
                    return False
            return True

        return [check]

    def arrays(self, schema: dict[str, Any], kind: str | None) -> list[Check]:
        """The array keywords; with `kind` ("array"), a non-array fails too."""
        if not {"items", "prefixItems", "minItems", "maxItems", "uniqueItems"} & set(schema):
            return []
        prefix = [self.node(sub) for sub in schema.get("prefixItems", [])]
        rest = self.node(schema["items"]) if "items" in schema else None
        least = schema.get("minItems", 0)
        most = schema.get("maxItems")
        unique = schema.get("uniqueItems") is True
        other = kind is None

        def check(x: Any) -> bool:
            if not isinstance(x, list):
                return other
            if len(x) < least or (most is not None and len(x) > most):
                return False
            for sub, item in zip(prefix, x, strict=False):
                if not sub(item):
                    return False
            if rest is not None:
                for item in x[len(prefix):]:
                    if not rest(item):
                        return False
            # Unique strings are easy to prove; anything else goes to jsonschema.
            return not unique or (all(isinstance(i, str) for i in x) and len(set(x)) == len(x))

        return [check]

    def strings(self, schema: dict[str, Any], kind: str | None) -> list[Check]:
        """The string keywords; with `kind` ("string"), a non-string fails too."""
        if not {"pattern", "minLength", "maxLength"} & set(schema):
            return []
        search = re.compile(schema["pattern"]).search if "pattern" in schema else None
        least = schema.get("minLength", 0)
        most = schema.get("maxLength")
        other = kind is None

        def check(x: Any) -> bool:
            if not isinstance(x, str):
                return other
            if len(x) < least or (most is not None and len(x) > most):
                return False
            return search is None or search(x) is not None

        return [check]

    def numbers(self, schema: dict[str, Any], kind: str | None) -> list[Check]:
        """The number keywords; with `kind` ("integer" or "number"), anything else fails too."""
        limits = [(k, schema[k]) for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum") if k in schema]
        if not limits:
            return []
        if not all(_is_number(v) for _, v in limits):
            raise Unsupported("a limit that is not a number")
        low = schema.get("minimum")
        high = schema.get("maximum")
        low_ex = schema.get("exclusiveMinimum")
        high_ex = schema.get("exclusiveMaximum")
        of_kind = _TYPES[kind] if kind is not None else _is_number

        def check(x: Any) -> bool:
            if not of_kind(x):
                return kind is None and not _is_number(x)
            return ((low is None or x >= low) and (high is None or x <= high)
                    and (low_ex is None or x > low_ex) and (high_ex is None or x < high_ex))

        return [check]
