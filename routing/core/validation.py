"""Validation of account documents: the schema first, then what the schema cannot say.

Both layers run on every document and report together, so a NOC engineer fixes a file in
one pass. The meaning checks walk the document defensively (it may be schema-invalid) and
never raise on a malformed shape: a user's mistake is a Problem, never a traceback.

Anything that later reaches a SIP header or Request-URI (numbers, operator phones) is
re-checked here with `fullmatch`: JSON Schema patterns are run with `re.search`, where `$`
also matches before a trailing newline. Notification targets (email addresses, webhook
URLs) are re-checked by `notify_targets`, whose reason replaces the schema's pattern message.

Webhooks may point at loopback, private or link-local hosts only when the caller passes
`allow_private_webhooks=True` (tests; the CLI reads VOFFICE_ALLOW_PRIVATE_WEBHOOKS=1).

Speed (a load may hold 100,000 documents): the schema layer asks `schema_check` first and
runs jsonschema, for its messages, only on a document that check faults; many files are
validated over every core (routing.core.bulk, from PARALLEL_FROM files), each valid one
compiled where it is validated when a load asks (`with_compiled`), with the same problems
in the same order as in one process.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import date
from functools import lru_cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from routing.core.bulk import parallel_map, paused_gc, workers_for
from routing.core.compiler import minutes
from routing.core.day_type import DEFAULT_WEEKEND, WEEKDAY_NAMES, known_country, national_year
from routing.core.notify_targets import email_problem, webhook_problem
from routing.core.numbers import E164, SIP_URI, pattern_problem, to_e164
from routing.core.problems import ERROR, WARNING, Problem, has_errors, located, pointer
from routing.core.schema_check import Check, compile_check

if TYPE_CHECKING:
    import jsonschema
    from jsonschema.exceptions import ValidationError

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "account.schema.json"
MAX_FILE_BYTES = 5 * 1024 * 1024
MAX_SCENARIO_DEPTH = 16
PARALLEL_FROM = 200  # files; below this a process pool costs more than it saves
PRIVATE_WEBHOOKS_HINT = "allowed only for tests, with VOFFICE_ALLOW_PRIVATE_WEBHOOKS=1"
CONTROL_MESSAGE = "contains a control character"
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")  # C0, DEL, C1 (U+009B is CSI)
# Invisible characters pasted from web pages and spreadsheets (bidi marks, zero widths, a BOM):
# a value that fails its pattern because of one is reported by naming it.
MAX_WAVE = 50  # phones one wave may ring before validation warns
MAX_RING_SECONDS = 600  # a group's whole ringing plan, before validation warns
INVISIBLE = re.compile(r"[\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
_CONTROL_OR_INVISIBLE = re.compile(f"{CONTROL.pattern}|{INVISIBLE.pattern}")
# The same in JSON text, but for the whitespace JSON allows between values (\t \n \r).
_CONTROL_OR_INVISIBLE_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]|" + INVISIBLE.pattern)
COLLECTIONS = (
    "operators", "groups", "sounds", "operations", "schedules", "caller_lists", "scenarios", "rules",
)


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    with SCHEMA_PATH.open(encoding="utf-8") as f:
        loaded: dict[str, Any] = json.load(f)
    return loaded


def _inline_refs(node: Any, defs: dict[str, Any], stack: tuple[str, ...] = ()) -> Any:
    """Replace `#/$defs/...` references by their targets (recursive ones stay references).

    Resolving references is most of jsonschema's work on our documents; inlining them
    once makes validation about twice as fast, with the same results and messages.
    """
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            name = ref.rsplit("/", 1)[1]
            if name not in stack:
                rest = {k: _inline_refs(v, defs, stack) for k, v in node.items() if k != "$ref"}
                return {**_inline_refs(defs[name], defs, (*stack, name)), **rest}
        return {k: _inline_refs(v, defs, stack) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline_refs(v, defs, stack) for v in node]
    return node


def _is_integer(checker: Any, value: Any) -> bool:
    """JSON Schema counts 3.0 as an integer; everything after validation (range(),
    X-VO-Op's digit patterns) needs a Python int, so an integer field takes only those."""
    return isinstance(value, int) and not isinstance(value, bool)


@lru_cache(maxsize=1)
def _draft() -> Any:
    """Draft 2020-12 with our integer. jsonschema is imported here, not with this module:
    valid documents never need it (see _valid_by_schema), and a one-account `voffice load`
    starts ~0.1 s sooner without it."""
    import jsonschema

    return jsonschema.validators.extend(  # type: ignore[no-untyped-call]
        jsonschema.Draft202012Validator,
        type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer),
    )


@lru_cache(maxsize=1)
def _inlined_schema() -> dict[str, Any]:
    full = schema()
    inlined: dict[str, Any] = _inline_refs(full, full["$defs"])
    return inlined


@lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft202012Validator:
    validator: jsonschema.Draft202012Validator = _draft()(_inlined_schema())
    return validator


@lru_cache(maxsize=1)
def _valid_by_schema() -> Check | None:
    """The fast yes/no of `schema_check`, from the very schema the validator runs."""
    return compile_check(_inlined_schema())


# --- reading files ----------------------------------------------------------------------


class _Pairs(dict[str, Any]):
    """An object as parsed, remembering keys that appeared more than once."""

    duplicates: list[str]


def _keep_pairs(pairs: list[tuple[str, Any]]) -> _Pairs:
    out = _Pairs(pairs)
    out.duplicates = []
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                out.duplicates.append(key)
            seen.add(key)
    return out


class _Constant:
    """Where NaN, Infinity or -Infinity stood in the document."""

    def __init__(self, name: str):
        self.name = name


def _find_strict_json_problems(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str, str]]:
    if isinstance(value, _Constant):
        yield pointer(*path), f"{value.name} is not valid JSON"
    elif isinstance(value, dict):
        for key in getattr(value, "duplicates", ()):
            yield pointer(*path, key), f"the key {key!r} appears twice in one object"
        for key, item in value.items():
            yield from _find_strict_json_problems(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _find_strict_json_problems(item, (*path, index))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def parse_document(text: str, file: str) -> tuple[Any, list[Problem]]:
    """Parse JSON strictly: duplicate keys, NaN and Infinity are errors (with the pointer of
    where they stand), not silently kept."""
    if not text.strip():
        return None, [Problem(file, "", "the file is empty")]
    strange: list[bool] = []  # set when a duplicate key or a constant was met: look closer

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(items)
        if len(out) == len(items):
            return out
        strange.append(True)
        return _keep_pairs(items)

    def constant(name: str) -> _Constant:
        strange.append(True)
        return _Constant(name)

    try:
        doc = json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except json.JSONDecodeError as exc:
        return None, [Problem(file, "", f"not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}")]
    except (ValueError, RecursionError) as exc:
        return None, [Problem(file, "", f"not valid JSON: {exc}")]
    if not strange:
        return doc, []  # plain dicts only, nothing to report: no walk over the document
    problems = [Problem(file, where, message) for where, message in _find_strict_json_problems(doc)]
    return (None, problems) if problems else (_plain(doc), [])


def read_text(path: Path) -> tuple[str, list[Problem]]:
    """The file's text (a BOM read, not refused), or why it cannot be had."""
    file = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            return "", [Problem(file, "", f"file is {size} bytes; the limit is {MAX_FILE_BYTES}")]
        return path.read_text(encoding="utf-8-sig"), []  # Windows editors write a BOM
    except UnicodeDecodeError as exc:
        return "", [Problem(file, "", f"not UTF-8 text (byte {exc.start})")]
    except OSError as exc:
        return "", [Problem(file, "", f"cannot read: {exc.strerror or exc}")]


def expand_paths(paths: list[str]) -> tuple[list[Path], list[Problem]]:
    """FILE|DIR arguments -> the JSON files they name (a directory: its *.json, sorted)."""
    files: list[Path] = []
    problems: list[Problem] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*.json") if p.is_file())
            if not found:
                problems.append(Problem(raw, "", "directory has no .json files (searched recursively)"))
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            problems.append(Problem(raw, "", "no such file or directory"))
    return files, problems


# --- the schema layer -------------------------------------------------------------------


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _schema_message(err: ValidationError) -> str:
    kind = err.validator
    schema_node: dict[str, Any] = err.schema if isinstance(err.schema, dict) else {}
    what = schema_node.get("description", "")
    if kind == "required":
        return f"missing required field {str(err.message).split(chr(39))[1]!r}"
    if kind == "additionalProperties":
        extra = sorted(set(err.instance if isinstance(err.instance, dict) else ()) - set(schema_node.get("properties", {})))
        return f"unknown field {', '.join(repr(e) for e in extra)}" + _suggest(extra, schema_node)
    if kind == "pattern":
        return f"{_short(err.instance)} is not valid; expected {_lower(what) or 'a match of ' + str(err.validator_value)}"
    if kind == "type":
        if err.validator_value == "integer" and isinstance(err.instance, float):
            return f"must be integer, not {err.instance!r}"
        return f"must be {err.validator_value}, not {_json_type(err.instance)}"
    if kind == "enum":
        allowed = ", ".join(json.dumps(v, ensure_ascii=False) for v in _listed(err.validator_value))
        return f"{_short(err.instance)} is not one of {allowed}"
    if kind in ("oneOf", "anyOf"):
        if kind == "anyOf" and "required" in json.dumps(err.validator_value):
            fields = " or ".join(repr(alt["required"][0]) for alt in _listed(err.validator_value))
            return f"needs {fields}"
        return f"{_short(err.instance)} is not valid; expected {_lower(what) or 'one of the allowed forms'}"
    if kind == "uniqueItems":
        return "has duplicate items"
    limits = {"minimum": "at least {}", "maximum": "at most {}", "minItems": "at least {} items",
              "maxItems": "at most {} items", "minLength": "at least {} characters", "maxLength": "at most {} characters"}
    if kind in limits:
        what = err.message.split(" is ", 1)[-1] if " is " in err.message else err.message
        return f"{_short(err.instance)}: {what} (the limit: {limits[kind].format(err.validator_value)})"
    return str(err.message)


def _listed(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def _lower(text: str) -> str:
    """A description continued mid-sentence: "The id" -> "the id", but "ISO 3166-1" stays."""
    keep = len(text) > 1 and (text[1].isupper() or text[1].isdigit())
    return (text if keep else text[:1].lower() + text[1:]).rstrip(".")


def _suggest(extra: list[str], schema_node: dict[str, Any]) -> str:
    import difflib

    known = list(schema_node.get("properties", {}))
    for name in extra:
        close = difflib.get_close_matches(name, known, n=1)
        if close:
            return f" (did you mean {close[0]!r}?)"
    return ""


def schema_problems(doc: Any, file: str) -> list[Problem]:
    fast = _valid_by_schema()
    if fast is not None and fast(doc):
        return []  # valid: no need to ask jsonschema, which is ten times slower
    problems = []
    for err in sorted(_validator().iter_errors(doc), key=lambda e: [(0, k, "") if isinstance(k, int) else (1, 0, str(k))
                                                                     for k in e.absolute_path]):  # /sounds/2 before /sounds/10
        where = pointer(*err.absolute_path)
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
            if len(extra) == 1:
                where = pointer(*err.absolute_path, extra[0])
        if err.validator == "if":
            continue  # its "then" error is reported on its own
        if err.validator == "uniqueItems" and isinstance(err.instance, list):
            seen: list[Any] = []
            for index, item in enumerate(err.instance):
                if item in seen:
                    where = pointer(*err.absolute_path, index)
                    problems.append(Problem(file, where, f"{_short(item)} is listed twice"))
                    break
                seen.append(item)
            continue
        problems.append(Problem(file, where, _schema_message(err)))
    return problems


# --- the meaning layer ------------------------------------------------------------------


def _may_hold(doc: Any, pattern: re.Pattern[str]) -> bool:
    """False when no string of the document (key or value) can match `pattern`, a class of
    single characters that holds every C0 control: one C-speed serialisation instead of a
    walk that builds a pointer for every string. Serialised, a string keeps its characters
    except `"`, `\\` and the C0 controls, which become escapes (so: a backslash)."""
    try:
        text = json.dumps(doc, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        return True
    return "\\" in text or pattern.search(text) is not None


def _text_may_hold(text: str) -> bool:
    """_may_hold(doc, _CONTROL_OR_INVISIBLE) for the document parsed from `text`, cheaper: in
    strict JSON text a string holds C0 controls only as escapes (a backslash), and a tab or
    a line break outside strings is whitespace between values."""
    return "\\" in text or _CONTROL_OR_INVISIBLE_IN_TEXT.search(text) is not None


def _walk_strings(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield (*path, key), key
            yield from _walk_strings(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk_strings(item, (*path, index))


def _items(doc: dict[str, Any], key: str) -> list[tuple[int, dict[str, Any]]]:
    value = doc.get(key)
    if not isinstance(value, list):
        return []
    return [(i, item) for i, item in enumerate(value) if isinstance(item, dict)]


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@dataclass
class _Index:
    """Ids per collection, for reference checks: id -> position in its list."""

    ids: dict[str, dict[str, int]]

    def has(self, collection: str, ref: Any) -> bool:
        return isinstance(ref, str) and ref in self.ids[collection]

    def hint(self, collection: str, ref: Any) -> str:
        return did_you_mean(ref, self.ids[collection])


def did_you_mean(ref: Any, known: Any) -> str:
    """`; did you mean 'lunch'?` for a mistyped reference (`lnuch`, `MSK`), else ""."""
    import difflib

    if not isinstance(ref, str) or not ref:
        return ""
    names = [str(k) for k in known]
    folded = {n.lower(): n for n in names}
    match = folded.get(ref.lower()) or next(iter(difflib.get_close_matches(ref, names, n=1, cutoff=0.6)), None)
    return f"; did you mean {_short(match)}?" if match else ""


class _Checker:
    def __init__(self, doc: dict[str, Any], file: str, allow_private_webhooks: bool = False, text: str | None = None):
        self.doc = doc
        self.file = file
        self.allow_private_webhooks = allow_private_webhooks
        self.problems: list[Problem] = []
        self.used: dict[str, set[Any]] = {c: set() for c in COLLECTIONS}
        self.specific: set[str] = set()  # pointers whose error here replaces the schema's message
        # False: no string holds a control or invisible character (`text`: the JSON doc was parsed from)
        self.odd_strings = _text_may_hold(text) if text is not None else _may_hold(doc, _CONTROL_OR_INVISIBLE)
        self.compiled: dict[str, Any] | None = None  # the compiled form, once the warning checks made it

    def error(self, where: str, message: str) -> None:
        self.problems.append(Problem(self.file, where, message, ERROR))

    def warn(self, where: str, message: str) -> None:
        self.problems.append(Problem(self.file, where, message, WARNING))

    def run(self, schema_valid: bool = True) -> list[Problem]:
        """The meaning problems; the warnings only for a document without errors (the
        warning checks read it as the schema says it is)."""
        doc = self.doc
        for path, text in _walk_strings(doc) if self.odd_strings else ():
            found = CONTROL.search(text)
            if found:
                self.error(pointer(*path), f"{CONTROL_MESSAGE} (U+{ord(found.group()):04X})")
        index = self.check_ids()
        self.check_account()
        self.check_operators()
        self.check_groups(index)
        self.check_operations(index)
        self.check_schedules()
        self.check_caller_lists()
        self.check_scenarios(index)
        self.check_rules(index)
        self.check_notifications()
        if schema_valid and not has_errors(self.problems):
            self.check_unused(index)
            self.check_coverage()
            self.check_notification_targets()
            self.check_ring_plans()
        return self.problems

    def check_ring_plans(self) -> None:
        """Risks a NOC should see before a load: a wave that rings a crowd at once, a plan
        that keeps the caller ringing for a long time."""
        from routing.core.compiler import compile_account
        from routing.core.ringing_plan import group_plan

        try:
            plain = compile_account(self.doc)
        except (KeyError, ValueError, TypeError):
            return
        self.compiled = plain
        for i, group in _items(self.doc, "groups"):
            ident = _str(group.get("id"))
            if ident is None or ident not in plain["groups"]:
                continue
            waves = group_plan(plain, ident)
            widest = max((len(w) for w in waves), default=0)
            total = sum(max((r["ring_seconds"] for r in w), default=0) for w in waves)
            if widest > MAX_WAVE:
                self.warn(pointer("groups", i), f"one wave rings {widest} phones at once (more than {MAX_WAVE}): "
                          "a gateway may refuse the burst, and every phone rings for one call")
            if total > MAX_RING_SECONDS:
                self.warn(pointer("groups", i), f"its ringing plan lasts {total // 60} min {total % 60} s "
                          f"({len(waves)} waves; more than {MAX_RING_SECONDS // 60} min): callers rarely wait that long")

    def check_ids(self) -> _Index:
        ids: dict[str, dict[str, int]] = {}
        for collection in COLLECTIONS:
            seen: dict[str, int] = {}
            for i, item in _items(self.doc, collection):
                ident = _str(item.get("id"))
                if ident is None:
                    continue
                if ident in seen:
                    self.error(pointer(collection, i, "id"), f"duplicate id {ident!r} (first at {pointer(collection, seen[ident])})")
                else:
                    seen[ident] = i
            ids[collection] = seen
        return _Index(ids)

    def e164_hint(self, written: str) -> str:
        """`; did you mean +79161230001?` for a national form of the account's country."""
        calendar = self.doc.get("calendar")
        country = _str(calendar.get("country")) if isinstance(calendar, dict) else None
        suggestion = to_e164(written, country) if country else None
        return f"; did you mean {suggestion}?" if suggestion and suggestion != written else ""

    def check_account(self) -> None:
        doc = self.doc
        tz = _str(doc.get("timezone"))
        if tz is not None:
            try:
                ZoneInfo(tz)
            except (ValueError, OSError, KeyError):
                self.error("/timezone", f"unknown time zone {tz!r} (an IANA name such as Europe/Moscow)")
        for i, number in enumerate(_listed(doc.get("numbers"))):
            if isinstance(number, str) and not E164.fullmatch(number):
                self.error(pointer("numbers", i), f"{_short(number)} is not an E.164 number{self.e164_hint(number)}")
        calendar = doc.get("calendar")
        if not isinstance(calendar, dict):
            return
        country = _str(calendar.get("country"))
        if country is not None:
            why = known_country(country, _str(calendar.get("subdivision")))
            if why:
                self.error("/calendar/country", why)
        dates: dict[str, dict[str, int]] = {}
        for key in ("holidays", "workdays"):
            dates[key] = {}
            values = calendar.get(key)
            for i, value in enumerate(values if isinstance(values, list) else []):
                if not isinstance(value, str):
                    continue
                try:
                    date.fromisoformat(value)
                except ValueError:
                    self.error(pointer("calendar", key, i), f"{value!r} is not a real date")
                    continue
                dates[key][value] = i
        for value, i in dates["workdays"].items():
            if value in dates["holidays"]:
                self.error(pointer("calendar", "workdays", i), f"{value} is listed both as a holiday and as a working day")

    def check_operators(self) -> None:
        digits = self.doc.get("extension_digits", 3)
        digits = digits if isinstance(digits, int) else 3
        own_numbers = {n for n in _listed(self.doc.get("numbers")) if isinstance(n, str)}
        extensions: dict[str, int] = {}
        for i, op in _items(self.doc, "operators"):
            phone = _str(op.get("phone"))
            if phone is not None:
                if not (E164.fullmatch(phone) or SIP_URI.fullmatch(phone)):
                    self.error(pointer("operators", i, "phone"),
                               f"{_short(phone)} is neither an E.164 number nor a plain sip: URI{self.e164_hint(phone)}")
                elif phone in own_numbers:
                    self.error(pointer("operators", i, "phone"), f"{phone} is one of this account's own numbers: ringing it would loop")
            ext = _str(op.get("extension"))
            if ext is None:
                continue
            where = pointer("operators", i, "extension")
            if ext.startswith("0"):
                self.error(where, f"extension {ext!r} starts with 0")
            elif len(ext) != digits or not ext.isdigit():
                self.error(where, f"extension {ext!r} must have exactly {digits} digits (extension_digits)")
            if ext in extensions:
                self.error(where, f"extension {ext} is already used by {pointer('operators', extensions[ext])}")
            else:
                extensions[ext] = i

    def check_groups(self, index: _Index) -> None:
        for i, group in _items(self.doc, "groups"):
            seen: set[Any] = set()
            for j, member in _items(group, "members"):
                ref = member.get("operator")
                where = pointer("groups", i, "members", j, "operator")
                if not index.has("operators", ref):
                    self.error(where, f"no operator with id {_short(ref)}{index.hint('operators', ref)}")
                elif ref in seen:
                    self.error(where, f"operator {ref!r} is in this group twice")
                else:
                    seen.add(ref)
                    self.used["operators"].add(ref)

    def check_operations(self, index: _Index) -> None:
        for i, op in _items(self.doc, "operations"):
            sound = op.get("sound")
            if sound is not None:
                if index.has("sounds", sound):
                    self.used["sounds"].add(sound)
                else:
                    self.error(pointer("operations", i, "sound"), f"no sound with id {_short(sound)}{index.hint('sounds', sound)}")
            group = op.get("group")
            if group is not None:
                if op.get("type") != "group":
                    self.error(pointer("operations", i, "group"), "only operations of type 'group' ring a group")
                elif index.has("groups", group):
                    self.used["groups"].add(group)
                else:
                    self.error(pointer("operations", i, "group"), f"no group with id {_short(group)}{index.hint('groups', group)}")
            if op.get("type") != "menu":
                for key in ("repeat_key", "max_repeats"):
                    if key in op:
                        self.error(pointer("operations", i, key), f"{key} applies to menus only")
            if op.get("type") == "extension" and not any(
                isinstance(o.get("extension"), str) for _, o in _items(self.doc, "operators")
            ):
                self.warn(pointer("operations", i), "no operator has an extension, so this step can never ring anyone")

    def check_schedules(self) -> None:
        for i, schedule in _items(self.doc, "schedules"):
            spans: list[tuple[int, int, int]] = []
            for j, interval in enumerate(_listed(schedule.get("intervals"))):
                if not (isinstance(interval, list) and len(interval) == 2 and all(isinstance(t, str) for t in interval)):
                    continue
                try:
                    start, end = minutes(interval[0]), minutes(interval[1])
                except ValueError:
                    continue
                if start >= end:
                    self.error(
                        pointer("schedules", i, "intervals", j),
                        f"interval {interval[0]}-{interval[1]} does not end after it starts; "
                        "write a span over midnight as two intervals",
                    )
                    continue
                spans.append((start, end, j))
            spans.sort()
            for (_s1, e1, j1), (s2, _e2, j2) in itertools.pairwise(spans):
                if s2 < e1:
                    self.warn(pointer("schedules", i, "intervals", j2), f"overlaps interval {j1} of this schedule")

    def check_caller_lists(self) -> None:
        for i, caller_list in _items(self.doc, "caller_lists"):
            for j, pattern in enumerate(_listed(caller_list.get("patterns"))):
                if isinstance(pattern, str):
                    why = pattern_problem(pattern)
                    if why:
                        self.error(pointer("caller_lists", i, "patterns", j), f"{why}: it can match nothing")

    def check_scenarios(self, index: _Index) -> None:
        ops = {
            op.get("id"): op for _, op in _items(self.doc, "operations") if isinstance(op.get("id"), str)
        }
        for i, scenario in _items(self.doc, "scenarios"):
            root = scenario.get("root")
            if isinstance(root, dict):
                self._check_node(root, ("scenarios", i, "root"), ops, 1)

    def _check_node(self, node: dict[str, Any], path: tuple[str | int, ...], ops: dict[Any, dict[str, Any]], depth: int) -> None:
        if depth > MAX_SCENARIO_DEPTH:
            self.error(pointer(*path), f"scenario nested deeper than {MAX_SCENARIO_DEPTH} levels")
            return
        ref = node.get("operation")
        op = ops.get(ref) if isinstance(ref, str) else None
        if isinstance(ref, str) and op is None:
            self.error(pointer(*path, "operation"), f"no operation with id {ref!r}{did_you_mean(ref, ops)}")
        elif op is not None:
            self.used["operations"].add(ref)
        kind = op.get("type") if op else None
        keys = node.get("keys")
        if isinstance(keys, dict) and keys and op is not None and kind != "menu":
            self.error(pointer(*path, "keys"), f"keys apply to menus only; {ref!r} is of type {kind!r}")
        if kind == "menu" and isinstance(keys, dict):
            repeat = op.get("repeat_key", "0") if op else "0"
            if isinstance(repeat, str) and repeat in keys:
                self.error(pointer(*path, "keys", repeat), f"key {repeat} is the repeat key of menu {ref!r}; choose another key or another repeat_key")
        if kind in ("voicemail", "fax") and isinstance(node.get("next"), dict):
            self.warn(pointer(*path, "next"), f"never taken: {kind} ends the call")
        nxt = node.get("next")
        if isinstance(nxt, dict):
            self._check_node(nxt, (*path, "next"), ops, depth + 1)
        if isinstance(keys, dict):
            for key, child in keys.items():
                if isinstance(child, dict):
                    self._check_node(child, (*path, "keys", key), ops, depth + 1)

    def check_rules(self, index: _Index) -> None:
        priorities: dict[int, int] = {}
        for i, rule in _items(self.doc, "rules"):
            for field, collection in (("schedule", "schedules"), ("caller_list", "caller_lists"), ("scenario", "scenarios")):
                ref = rule.get(field)
                if ref is None and field == "caller_list":
                    continue
                if index.has(collection, ref):
                    self.used[collection].add(ref)
                elif ref is not None:
                    self.error(pointer("rules", i, field), f"no {field.replace('_', ' ')} with id {_short(ref)}{index.hint(collection, ref)}")
            priority = rule.get("priority")
            if isinstance(priority, int) and not isinstance(priority, bool):
                if priority in priorities:
                    self.error(pointer("rules", i, "priority"), f"priority {priority} is also used by {pointer('rules', priorities[priority])}; rule order must be unambiguous")
                else:
                    priorities[priority] = i
        default = self.doc.get("default_scenario")
        if isinstance(default, str):
            if index.has("scenarios", default):
                self.used["scenarios"].add(default)
            else:
                self.error("/default_scenario", f"no scenario with id {default!r}{index.hint('scenarios', default)}")

    def check_notifications(self) -> None:
        notifications = self.doc.get("notifications")
        if not isinstance(notifications, dict):
            return
        for i, address in enumerate(_listed(notifications.get("email"))):
            why = email_problem(address) if isinstance(address, str) else None
            if why:
                where = pointer("notifications", "email", i)
                self.specific.add(where)
                self.error(where, f"{_short(address)} is not an email address ({why})")
        for i, url in enumerate(_listed(notifications.get("webhooks"))):
            why = webhook_problem(url, self.allow_private_webhooks) if isinstance(url, str) else None
            if why:
                where = pointer("notifications", "webhooks", i)
                if webhook_problem(url, allow_private=True) is None:
                    why += f"; {PRIVATE_WEBHOOKS_HINT}"
                self.specific.add(where)
                self.error(where, f"{_short(url)} is not accepted as a webhook: {why}")

    # --- warnings, only for documents without errors --------------------------------

    def check_notification_targets(self) -> None:
        notifications = self.doc.get("notifications")
        if notifications and not notifications.get("email") and not notifications.get("webhooks"):
            self.warn("/notifications", "events are listed but there is no email address or webhook: nobody is notified")

    def check_unused(self, index: _Index) -> None:
        for collection in ("groups", "sounds", "operations", "schedules", "caller_lists", "scenarios"):
            for ident, i in index.ids[collection].items():
                if ident not in self.used[collection]:
                    what = collection[:-1].replace("_", " ")
                    self.warn(pointer(collection, i), f"{what} {ident!r} is not used by any {_USERS[collection]}")
        for i, op in _items(self.doc, "operators"):
            if op["id"] not in self.used["operators"] and "extension" not in op:
                self.warn(pointer("operators", i), f"operator {op['id']!r} has no extension and is in no group: nobody can reach them")
        rules = [r for _, r in _items(self.doc, "rules")]
        if not rules:
            self.warn("/rules", "no rules: every call gets the default scenario")

    def check_coverage(self) -> None:
        """Shadowed rules, and hours of the week that fall to the default scenario."""
        doc = self.doc
        schedules = {s["id"]: s for _, s in _items(doc, "schedules")}
        weekend = DEFAULT_WEEKEND
        country = (doc.get("calendar") or {}).get("country")
        if country:
            weekend = national_year(country, (doc.get("calendar") or {}).get("subdivision"), 2026).weekend
        combos = [
            (kind, wd)
            for kind in ("working", "weekend", "holiday")
            for wd in range(7)
            if kind != "weekend" or wd in weekend
        ]
        enabled = sorted(
            ((i, r) for i, r in _items(doc, "rules") if r.get("enabled", True)),
            key=lambda ir: ir[1]["priority"],
        )
        covered_any: dict[tuple[str, int], list[tuple[int, int]]] = {c: [] for c in combos}
        covered_by_list: dict[tuple[str | None, str, int], list[tuple[int, int]]] = {}
        earlier: list[tuple[str, Any, dict[tuple[str, int], list[tuple[int, int]]]]] = []
        for i, rule in enabled:
            spans_by_combo = _schedule_spans(schedules[rule["schedule"]], combos)
            caller_list = rule.get("caller_list")
            earlier.append((rule["id"], caller_list, spans_by_combo))
            live = False
            for combo, spans in spans_by_combo.items():
                before = covered_any[combo] + covered_by_list.get((caller_list, *combo), [])
                if _subtract(spans, before):
                    live = True
                if caller_list is None:
                    covered_any[combo] = _union(covered_any[combo], spans)
                else:
                    key = (caller_list, *combo)
                    covered_by_list[key] = _union(covered_by_list.get(key, []), spans)
            if not live:
                shadows = [ident for ident, their_list, theirs in earlier[:-1]
                           if (their_list is None or their_list == caller_list)
                           and any(_subtract(spans, _subtract(spans, theirs.get(combo, []))) for combo, spans in spans_by_combo.items())]
                names = ", ".join(repr(x) for x in shadows) or "higher-priority rules"
                self.warn(pointer("rules", i), f"rule {rule['id']!r} can never match: {names} (higher priority) "
                          "cover all of its times and callers first")
        default = doc["default_scenario"]
        for kind in ("working", "weekend", "holiday"):
            by_gap: dict[tuple[tuple[int, int], ...], list[int]] = {}
            for wd in range(7):
                if (kind, wd) in covered_any:
                    gap = tuple(_subtract([(0, 1440)], covered_any[(kind, wd)]))
                    if gap:
                        by_gap.setdefault(gap, []).append(wd)
            possible = [wd for wd in range(7) if (kind, wd) in covered_any]
            for gap, wds in by_gap.items():
                days = "" if wds == possible else " (" + ", ".join(WEEKDAY_NAMES[w] for w in wds) + ")"
                hours = ", ".join(f"{_hhmm(s)}-{_hhmm(e)}" for s, e in gap)
                self.warn(
                    "/default_scenario",
                    f"on {kind} days{days} {hours} no rule applies to every caller; "
                    f"those calls get the default scenario {default!r}",
                )


_USERS = {
    "groups": "operation", "sounds": "operation", "operations": "scenario",
    "schedules": "rule", "caller_lists": "rule", "scenarios": "rule or default_scenario",
}


def _hhmm(m: int) -> str:
    return f"{m // 60:02d}:{m % 60:02d}"


def _schedule_spans(schedule: dict[str, Any], combos: list[tuple[str, int]]) -> dict[tuple[str, int], list[tuple[int, int]]]:
    weekdays = {WEEKDAY_NAMES.index(w) for w in schedule.get("weekdays", WEEKDAY_NAMES)}
    intervals = _union([], [(minutes(a), minutes(b)) for a, b in schedule.get("intervals", [["00:00", "24:00"]])])
    return {
        (kind, wd): intervals
        for kind, wd in combos
        if kind in schedule["days"] and wd in weekdays
    }


def _union(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in sorted(a + b):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _subtract(spans: list[tuple[int, int]], holes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out = []
    for start, end in spans:
        cursor = start
        for h_start, h_end in _union([], holes):
            if h_end <= cursor or h_start >= end:
                continue
            if h_start > cursor:
                out.append((cursor, h_start))
            cursor = max(cursor, h_end)
        if cursor < end:
            out.append((cursor, end))
    return out


def validate_document(doc: Any, file: str, *, allow_private_webhooks: bool = False) -> list[Problem]:
    """Schema and meaning problems of one parsed document, errors and warnings.

    allow_private_webhooks: let webhooks point at loopback, private, link-local addresses
    and internal host names (tests only)."""
    return _validate_document(doc, file, allow_private_webhooks)[0]


def _validate_document(doc: Any, file: str, allow_private_webhooks: bool,
                       text: str | None = None) -> tuple[list[Problem], dict[str, Any] | None]:
    """validate_document, and the compiled form the warning checks made of a valid document
    (None if they made none), so a load need not compile it a second time. `text`: the
    JSON text `doc` was parsed from, when there is one."""
    if not isinstance(doc, dict):
        return [Problem(file, "", f"the document must be a JSON object, not {_json_type(doc)}")], None
    schema_found = schema_problems(doc, file)
    checker = _Checker(doc, file, allow_private_webhooks, text)
    try:
        meaning = checker.run(schema_valid=not schema_found)
    except RecursionError:
        meaning = [Problem(file, "", "document nested too deeply")]
    # One message per problem: where the meaning layer has an error for a value (a control
    # character, a bad notification target, an extension starting with 0), its specific
    # message replaces the schema's generic one for that value.
    specific = {p.pointer for p in meaning if p.severity == ERROR} | checker.specific
    problems = _one_per_value([p for p in schema_found if p.pointer not in specific])
    found = _dedupe(_name_invisible(problems + meaning, doc) if checker.odd_strings else problems + meaning)
    return found, None if has_errors(found) else checker.compiled


def _one_per_value(problems: list[Problem]) -> list[Problem]:
    """One schema message per value: an empty string breaks both `minLength` and `pattern`,
    one problem, not two; the message that says what is expected is kept."""
    best: dict[str, Problem] = {}
    for problem in problems:
        kept = best.get(problem.pointer)
        if kept is None or ("expected" in problem.message and "expected" not in kept.message):
            best[problem.pointer] = problem
    return [p for p in problems if best.get(p.pointer) is p]


def _name_invisible(problems: list[Problem], doc: Any) -> list[Problem]:
    """`"\u202a+7916..." is not valid` shows nothing wrong: an error at a value holding an
    invisible character becomes one message naming the character."""
    import unicodedata

    hidden = {pointer(*path): text for path, text in _walk_strings(doc) if INVISIBLE.search(text)}
    if not hidden:
        return problems
    out, named = [], set()
    for problem in problems:
        text = hidden.get(problem.pointer)
        if text is None or problem.severity != ERROR:
            out.append(problem)
            continue
        if problem.pointer in named:
            continue
        named.add(problem.pointer)
        char = INVISIBLE.search(text).group()  # type: ignore[union-attr]
        out.append(Problem(problem.file, problem.pointer,
                           f"{INVISIBLE.sub('', text)!r} contains the invisible character U+{ord(char):04X} "
                           f"({unicodedata.name(char, 'FORMAT CHARACTER')}), pasted with it: type the value again"))
    return out


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen: set[tuple[str, str, str]] = set()
    out = []
    for p in problems:
        key = (p.pointer, p.message, p.severity)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


@dataclass
class ValidatedSet:
    documents: list[tuple[str, dict[str, Any]]]  # (file, document) for every valid file
    problems: list[Problem]
    compiled: dict[str, dict[str, Any]] = dataclass_field(default_factory=dict)  # file -> compiled form (with_compiled=True)

    @property
    def ok(self) -> bool:
        return not has_errors(self.problems)


def validate_paths(paths: list[str], *, allow_private_webhooks: bool = False, with_compiled: bool = False) -> ValidatedSet:
    """Validate files and directories as one set: across files, account ids and numbers
    must be unique too (a number belongs to one account only). Many files are validated
    over every core (PARALLEL_FROM). with_compiled: also return each valid document's compiled
    form (ValidatedSet.compiled), made where it was validated, for a load."""
    with paused_gc():  # the whole time: collecting would walk every document made so far
        return _validate_paths(paths, allow_private_webhooks, with_compiled)


def _validate_paths(paths: list[str], allow_private_webhooks: bool, with_compiled: bool) -> ValidatedSet:
    files, problems = expand_paths(paths)
    documents: list[tuple[str, dict[str, Any]]] = []
    compiled: dict[str, dict[str, Any]] = {}
    one = partial(_check_file, allow_private_webhooks=allow_private_webhooks, with_compiled=with_compiled)
    results = parallel_map(one, files, workers_for(len(files), PARALLEL_FROM))
    for path, (doc, found, plain) in zip(files, results, strict=True):
        problems += found
        if doc is not None:
            documents.append((str(path), doc))
            if plain is not None:
                compiled[str(path)] = plain
    for across in cross_file_problems(documents):  # rare: read that file again for the position
        text, _ = read_text(Path(across.file))
        problems += located([across], text) if text else [across]
    return ValidatedSet(documents, problems, compiled)


def validate_documents(documents: list[tuple[str, Any]], *, allow_private_webhooks: bool = False) -> list[list[Problem]]:
    """validate_document for each (file, document), over every core when there are many."""
    one = partial(_validate_pair, allow_private_webhooks=allow_private_webhooks)
    with paused_gc():
        return parallel_map(one, documents, workers_for(len(documents), PARALLEL_FROM))


def _validate_pair(item: tuple[str, Any], allow_private_webhooks: bool) -> list[Problem]:
    return validate_document(item[1], item[0], allow_private_webhooks=allow_private_webhooks)


def validate_file(path: Path, *, allow_private_webhooks: bool = False) -> tuple[dict[str, Any] | None, list[Problem]]:
    """(the document if it is valid, its problems, each with its line and column)."""
    doc, problems, _ = _check_file(path, allow_private_webhooks=allow_private_webhooks, with_compiled=False)
    return doc, problems


def _check_file(path: Path, *, allow_private_webhooks: bool, with_compiled: bool) -> tuple[dict[str, Any] | None, list[Problem], dict[str, Any] | None]:
    """validate_file, and (with_compiled) the valid document's compiled form: made by the
    warning checks already, else here (None if the document cannot be compiled)."""
    text, problems = read_text(path)
    if problems:
        return None, problems, None
    doc, problems = parse_document(text, str(path))
    plain = None
    if not problems:
        problems, plain = _validate_document(doc, str(path), allow_private_webhooks, text)
    if has_errors(problems):
        return None, located(problems, text), None
    if with_compiled and plain is None:
        from routing.core.compiler import compile_account

        try:
            plain = compile_account(doc)
        except (KeyError, ValueError, TypeError):
            plain = None
    return doc, located(problems, text), plain if with_compiled else None


def cross_file_problems(documents: list[tuple[str, dict[str, Any]]]) -> list[Problem]:
    problems = []
    accounts: dict[str, str] = {}
    numbers: dict[str, tuple[str, str]] = {}
    for file, doc in documents:
        account = doc["account"]
        if account in accounts:
            problems.append(Problem(file, "/account", f"account {account!r} is also defined in {accounts[account]}"))
            continue
        accounts[account] = file
        for i, number in enumerate(doc["numbers"]):
            if number in numbers:
                other_account, other_file = numbers[number]
                problems.append(Problem(file, pointer("numbers", i), f"number {number} already belongs to account {other_account!r} ({other_file})"))
            else:
                numbers[number] = (account, file)
    return problems
