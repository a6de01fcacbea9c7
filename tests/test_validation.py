"""Validation of account documents (DESIGN.md section 3): schema and meaning, with exact pointers."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from routing.core.problems import ERROR, WARNING, Problem
from routing.core.validation import parse_document, validate_document, validate_paths

FILE = "office.json"
Doc = dict[str, Any]

SEED_PATH = Path(__file__).resolve().parent.parent / "examples" / "seed-office.json"
SEED: Doc = json.loads(SEED_PATH.read_text(encoding="utf-8"))


def seed() -> Doc:
    return copy.deepcopy(SEED)


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == ERROR]


def warnings(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == WARNING]


def show(problems: list[Problem]) -> str:
    return "\n".join(p.line() for p in problems)


# --- the seed -----------------------------------------------------------------------------


def test_seed_is_valid_with_only_warnings() -> None:
    problems = validate_document(seed(), FILE)
    assert errors(problems) == [], show(problems)
    assert all(p.severity == WARNING for p in problems)


def test_seed_warns_about_working_hours_falling_to_the_default() -> None:
    problems = validate_document(seed(), FILE)
    gaps = [p for p in warnings(problems) if p.pointer == "/default_scenario"]
    assert len(gaps) == 1, show(problems)
    message = gaps[0].message
    assert "working days" in message
    assert "00:00-09:00, 18:00-24:00" in message
    assert "'weekend'" in message


def test_seed_has_no_shadowed_or_unused_warnings() -> None:
    problems = validate_document(seed(), FILE)
    assert [p.pointer for p in problems] == ["/default_scenario"], show(problems)


# --- parse_document -----------------------------------------------------------------------


def test_malformed_json_names_line_and_column() -> None:
    doc, problems = parse_document('{\n  "account": "a",\n  "name": \n}\n', FILE)
    assert doc is None
    assert len(problems) == 1
    problem = problems[0]
    assert problem.severity == ERROR
    assert problem.pointer == ""
    assert "line 4 column 1" in problem.message


def test_malformed_json_column_is_exact() -> None:
    _, problems = parse_document('{"a": 1,\n  "b": }', FILE)
    assert "line 2 column 8" in problems[0].message


@pytest.mark.parametrize("text", ["{", '{"a": 1,}', "[1, 2", "{'a': 1}", '{"a": tru}', '{"a": 1} x'])
def test_not_json(text: str) -> None:
    doc, problems = parse_document(text, FILE)
    assert doc is None
    assert len(problems) == 1 and problems[0].severity == ERROR
    assert "line 1 column" in problems[0].message


@pytest.mark.parametrize("text", ["", "   ", "\n\n"])
def test_empty_file(text: str) -> None:
    doc, problems = parse_document(text, FILE)
    assert doc is None
    assert [(p.pointer, p.severity) for p in problems] == [("", ERROR)]
    assert "empty" in problems[0].message


@pytest.mark.parametrize(
    "text",
    [
        '{"account": "a", "account": "b"}',
        '{"operators": [{"id": "a", "name": "x", "name": "y"}]}',
        '{"a": {"b": {"c": 1, "c": 1}}}',
    ],
)
def test_duplicate_keys_are_rejected(text: str) -> None:
    doc, problems = parse_document(text, FILE)
    assert doc is None
    assert len(problems) == 1 and problems[0].severity == ERROR
    assert "appears twice" in problems[0].message


def test_duplicate_key_is_named() -> None:
    _, problems = parse_document('{"operators": [{"id": "a", "name": "x", "name": "y"}]}', FILE)
    assert "'name'" in problems[0].message


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_rejected(constant: str) -> None:
    doc, problems = parse_document(f'{{"defaults": {{"attempts": {constant}}}}}', FILE)
    assert doc is None
    assert len(problems) == 1 and problems[0].severity == ERROR
    assert constant in problems[0].message


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('{"operators": [\n  {"id": "a",\n   "name": "x",\n   "name": "y"}]}', "/operators/0/name"),
        ('{"defaults":\n  {"attempts": NaN}}', "/defaults/attempts"),
    ],
)
def test_parse_errors_locate_the_offending_value(text: str, where: str) -> None:
    _, problems = parse_document(text, FILE)
    assert problems[0].pointer == where or "line " in problems[0].message


def test_parse_document_accepts_a_valid_document() -> None:
    doc, problems = parse_document(SEED_PATH.read_text(encoding="utf-8"), FILE)
    assert problems == []
    assert doc == SEED


@pytest.mark.parametrize(("value", "kind"), [([1, 2], "an array"), ("x", "a string"), (None, "null"), (3, "a number")])
def test_document_must_be_an_object(value: Any, kind: str) -> None:
    problems = validate_document(value, FILE)
    assert len(problems) == 1
    assert problems[0].severity == ERROR
    assert problems[0].pointer == ""
    assert kind in problems[0].message


# --- errors at exact pointers -------------------------------------------------------------


def setter(*path: str | int, value: Any) -> Callable[[Doc], None]:
    def apply(doc: Doc) -> None:
        target: Any = doc
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value

    return apply


def deleter(*path: str | int) -> Callable[[Doc], None]:
    def apply(doc: Doc) -> None:
        target: Any = doc
        for part in path[:-1]:
            target = target[part]
        del target[path[-1]]

    return apply


def appender(*path: str | int, value: Any) -> Callable[[Doc], None]:
    def apply(doc: Doc) -> None:
        target: Any = doc
        for part in path:
            target = target[part]
        target.append(value)

    return apply


def both(*fns: Callable[[Doc], None]) -> Callable[[Doc], None]:
    def apply(doc: Doc) -> None:
        for fn in fns:
            fn(doc)

    return apply


def two_digit_extensions(doc: Doc) -> None:
    doc["extension_digits"] = 2
    for i, op in enumerate(doc["operators"]):
        op["extension"] = str(10 + i)


NEW_OPERATOR = {"id": "ivanov", "name": "Another Ivanov", "phone": "+79161230099"}

ERROR_CASES: list[tuple[str, Callable[[Doc], None], str, str]] = [
    # schema layer
    ("unknown field", setter("operators", 0, "phne", value="+79161230001"), "/operators/0/phne", "unknown field 'phne'"),
    ("unknown top-level field", setter("colour", value="red"), "/colour", "unknown field 'colour'"),
    ("unknown field in a node", setter("scenarios", 0, "root", "nxt", value={}), "/scenarios/0/root/nxt", "unknown field"),
    ("missing field", deleter("operators", 0, "phone"), "/operators/0", "missing required field 'phone'"),
    ("missing top-level field", deleter("timezone"), "", "missing required field 'timezone'"),
    ("wrong type", setter("extension_digits", value="3"), "/extension_digits", "must be integer"),
    ("bad enum", setter("groups", 0, "strategy", value="loudest"), "/groups/0/strategy", "loudest"),
    # references
    ("unknown operator in a group", setter("groups", 0, "members", 1, "operator", value="nobody"),
     "/groups/0/members/1/operator", "no operator with id \"nobody\""),
    ("unknown sound", setter("operations", 0, "sound", value="no-sound"), "/operations/0/sound", "no sound"),
    ("unknown group", setter("operations", 4, "group", value="no-group"), "/operations/4/group", "no group"),
    ("unknown schedule in a rule", setter("rules", 1, "schedule", value="nights"), "/rules/1/schedule", "no schedule"),
    ("unknown caller list in a rule", setter("rules", 2, "caller_list", value="vvip"), "/rules/2/caller_list",
     "no caller list"),
    ("unknown scenario in a rule", setter("rules", 2, "scenario", value="party"), "/rules/2/scenario", "no scenario"),
    ("unknown default scenario", setter("default_scenario", value="party"), "/default_scenario", "no scenario"),
    ("unknown operation at a root", setter("scenarios", 0, "root", "operation", value="dance"),
     "/scenarios/0/root/operation", "no operation with id 'dance'"),
    ("unknown operation in next", setter("scenarios", 1, "root", "next", "operation", value="dance"),
     "/scenarios/1/root/next/operation", "no operation"),
    ("unknown operation in keys", setter("scenarios", 1, "root", "next", "keys", "2", "operation", value="dance"),
     "/scenarios/1/root/next/keys/2/operation", "no operation"),
    ("unknown operation deep", setter("scenarios", 3, "root", "keys", "1", "next", value={"operation": "dance"}),
     "/scenarios/3/root/keys/1/next/operation", "no operation"),
    # duplicates
    ("duplicate operator id", appender("operators", value=NEW_OPERATOR), "/operators/7/id", "duplicate id 'ivanov'"),
    ("duplicate scenario id", appender("scenarios", value={"id": "lunch", "name": "X", "root": {"operation": "vm"}}),
     "/scenarios/4/id", "duplicate id 'lunch'"),
    ("duplicate extension", setter("operators", 1, "extension", value="101"), "/operators/1/extension",
     "already used by /operators/0"),
    ("duplicate rule priority", setter("rules", 3, "priority", value=1), "/rules/3/priority", "also used by /rules/0"),
    # extensions
    ("extension with leading 0", setter("operators", 1, "extension", value="012"), "/operators/1/extension",
     "starts with 0"),
    ("extension too long", setter("operators", 1, "extension", value="1010"), "/operators/1/extension",
     "exactly 3 digits"),
    ("extension too short", setter("operators", 1, "extension", value="10"), "/operators/1/extension",
     "exactly 3 digits"),
    ("3-digit extension when extension_digits is 2",
     both(two_digit_extensions, setter("operators", 4, "extension", value="201")),
     "/operators/4/extension", "exactly 2 digits"),
    # control characters and trailing newlines
    ("control character in a name", setter("operators", 0, "name", value="Иванов\x07"), "/operators/0/name",
     "control character"),
    ("escape sequence in a name", setter("name", value="Evil \x1b[2J Ltd"), "/name", "control character"),
    ("line separator in a sound text", setter("sounds", 0, "text", value="a\u2028b"), "/sounds/0/text",
     "control character"),
    ("trailing newline in a number", setter("numbers", 0, value="+74951234567\n"), "/numbers/0", ""),
    ("trailing newline in a rule id", setter("rules", 0, "id", value="r1\n"), "/rules/0/id", "control character"),
    ("trailing newline in the account id", setter("account", value="berry-demo\n"), "/account", "control character"),
    ("trailing newline in a phone", setter("operators", 0, "phone", value="+79161230001\n"), "/operators/0/phone", ""),
    ("trailing newline in an extension", setter("operators", 0, "extension", value="101\n"),
     "/operators/0/extension", ""),
    ("trailing newline in a time zone", setter("timezone", value="Europe/Moscow\n"), "/timezone", ""),
    # time and calendar
    ("unknown time zone", setter("timezone", value="Europe/Atlantis"), "/timezone", "unknown time zone"),
    ("unknown country", setter("calendar", "country", value="XX"), "/calendar/country", "'XX'"),
    ("interval ending before it starts", setter("schedules", 0, "intervals", value=[["18:00", "09:00"]]),
     "/schedules/0/intervals/0", "does not end after it starts"),
    ("empty interval", setter("schedules", 1, "intervals", value=[["09:00", "12:00"], ["13:00", "13:00"]]),
     "/schedules/1/intervals/1", "does not end after it starts"),
    ("date that does not exist", setter("calendar", "holidays", value=["2026-02-30"]), "/calendar/holidays/0",
     "not a real date"),
    ("holiday and workday at once", setter("calendar", value={"country": "RU", "holidays": ["2026-05-05"],
                                                                "workdays": ["2026-05-06", "2026-05-05"]}),
     "/calendar/workdays/1", "both as a holiday and as a working day"),
    # scenarios
    ("keys on a non-menu operation", setter("scenarios", 0, "root", "keys", value={"1": {"operation": "vm"}}),
     "/scenarios/0/root/keys", "keys apply to menus only"),
    ("keys on a nested non-menu operation", setter("scenarios", 0, "root", "next", "keys",
                                                    value={"1": {"operation": "vm"}}),
     "/scenarios/0/root/next/keys", "keys apply to menus only"),
    ("menu key equal to the repeat key", setter("scenarios", 3, "root", "keys", "0", value={"operation": "vm"}),
     "/scenarios/3/root/keys/0", "repeat key"),
    ("menu key equal to a custom repeat key",
     both(setter("operations", 2, "repeat_key", value="9"),
          setter("scenarios", 1, "root", "next", "keys", "9", value={"operation": "fax"})),
     "/scenarios/1/root/next/keys/9", "repeat key"),
    # caller patterns
    ("pattern with country code 0", setter("caller_lists", 0, "patterns", value=["+7495*", "+0123*"]),
     "/caller_lists/0/patterns/1", "match nothing"),
    ("pattern with 16 digits", setter("caller_lists", 0, "patterns", value=["+7495*", "+1234567890123456"]),
     "/caller_lists/0/patterns/1", "match nothing"),
    ("pattern too short", setter("caller_lists", 0, "patterns", value=["+123456"]), "/caller_lists/0/patterns/0",
     "match nothing"),
    # operator phones
    ("operator rings the account itself", setter("operators", 3, "phone", value="+74951234567"),
     "/operators/3/phone", "own numbers"),
    ("sip URI with parameters", setter("operators", 0, "phone", value="sip:a@b;transport=tcp"),
     "/operators/0/phone", ""),
    ("sip URI with header injection", setter("operators", 0, "phone", value="sip:x@evil.com\r\nX-Foo: 1"),
     "/operators/0/phone", ""),
    ("sip URI with headers", setter("operators", 0, "phone", value="sip:x@evil.com?X-Foo=1"),
     "/operators/0/phone", ""),
    ("tel URI", setter("operators", 0, "phone", value="tel:+79161230001"), "/operators/0/phone", ""),
    ("sip URI with a trailing newline", setter("operators", 0, "phone", value="sip:x@pbx.example.com\n"),
     "/operators/0/phone", ""),
    ("national phone", setter("operators", 0, "phone", value="89161230001"), "/operators/0/phone", ""),
    # notifications: email addresses
    ("email with header injection", setter("notifications", "email", value=["office@berry-demo.ru", "a@b.ru\r\nBcc: x@y"]),
     "/notifications/email/1", "is not an email address (contains a line break"),
    ("email with a trailing newline", setter("notifications", "email", value=["office@berry-demo.ru\n"]),
     "/notifications/email/0", "is not an email address"),
    ("email with a display name", setter("notifications", "email", value=["Office <office@berry-demo.ru>"]),
     "/notifications/email/0", "is not an email address"),
    ("two emails in one entry", setter("notifications", "email", value=["a@berry-demo.ru,b@berry-demo.ru"]),
     "/notifications/email/0", "one plain address per entry"),
    ("email without a dot in the domain", setter("notifications", "email", value=["office@localhost"]),
     "/notifications/email/0", "no dot"),
    ("email in Cyrillic", setter("notifications", "email", value=["офис@пример.рф"]), "/notifications/email/0",
     "non-ASCII"),
    ("email that is not a string", setter("notifications", "email", value=[5]), "/notifications/email/0",
     "must be string"),
    ("email listed twice", setter("notifications", "email", value=["a@berry-demo.ru", "a@berry-demo.ru"]),
     "/notifications/email/1", "listed twice"),
    ("too many emails", setter("notifications", "email", value=[f"a{i}@berry-demo.ru" for i in range(21)]),
     "/notifications/email", "too long"),
    # notifications: webhooks
    ("webhook not http", setter("notifications", "webhooks", value=["ftp://crm.example.ru/voffice"]),
     "/notifications/webhooks/0", "scheme 'ftp'"),
    ("webhook to a file", setter("notifications", "webhooks", value=["file:///etc/passwd"]),
     "/notifications/webhooks/0", "scheme 'file'"),
    ("webhook to loopback", setter("notifications", "webhooks", value=["https://crm.example.ru/a", "http://127.0.0.1:8080/x"]),
     "/notifications/webhooks/1", "loopback"),
    ("webhook to loopback, IPv6", setter("notifications", "webhooks", value=["http://[::1]/x"]),
     "/notifications/webhooks/0", "loopback"),
    ("webhook to IPv4-mapped loopback", setter("notifications", "webhooks", value=["http://[::ffff:127.0.0.1]/x"]),
     "/notifications/webhooks/0", "loopback"),
    ("webhook to the metadata service", setter("notifications", "webhooks", value=["http://169.254.169.254/latest/"]),
     "/notifications/webhooks/0", "metadata"),
    ("webhook to metadata.google.internal", setter("notifications", "webhooks",
                                                   value=["http://metadata.google.internal/computeMetadata/v1/"]),
     "/notifications/webhooks/0", "metadata"),
    ("webhook to a private network", setter("notifications", "webhooks", value=["http://192.168.1.10/hook"]),
     "/notifications/webhooks/0", "private"),
    ("webhook to localhost", setter("notifications", "webhooks", value=["http://localhost:9000/hook"]),
     "/notifications/webhooks/0", "local host"),
    ("webhook to a decimal IPv4", setter("notifications", "webhooks", value=["http://2130706433/hook"]),
     "/notifications/webhooks/0", "numeric"),
    ("webhook with credentials", setter("notifications", "webhooks", value=["https://user:secret@crm.example.ru/hook"]),
     "/notifications/webhooks/0", "credentials"),
    ("webhook with a fragment", setter("notifications", "webhooks", value=["https://crm.example.ru/hook#x"]),
     "/notifications/webhooks/0", "fragment"),
    ("webhook with a trailing newline", setter("notifications", "webhooks", value=["https://crm.example.ru/hook\n"]),
     "/notifications/webhooks/0", ""),
    ("webhook too long", setter("notifications", "webhooks", value=["https://crm.example.ru/" + "a" * 2000]),
     "/notifications/webhooks/0", "longer than 2000"),
    ("too many webhooks", setter("notifications", "webhooks", value=[f"https://crm.example.ru/{i}" for i in range(11)]),
     "/notifications/webhooks", "too long"),
    # notifications: the rest
    ("unknown event", setter("notifications", "events", value=["voicemail", "sms"]), "/notifications/events/1",
     "\"sms\" is not one of"),
    ("no events", setter("notifications", "events", value=[]), "/notifications/events", ""),
    ("event listed twice", setter("notifications", "events", value=["fax", "fax"]), "/notifications/events/1",
     "listed twice"),
    ("events missing", deleter("notifications", "events"), "/notifications", "missing required field 'events'"),
    ("unknown attachment policy", setter("notifications", "attachments", value="zip"), "/notifications/attachments",
     "\"zip\" is not one of"),
    ("unknown notification language", setter("notifications", "language", value="de"), "/notifications/language",
     "\"de\" is not one of"),
    ("unknown field in notifications", setter("notifications", "sms", value=["+79161230001"]), "/notifications/sms",
     "unknown field 'sms'"),
    ("notifications not an object", setter("notifications", value=["office@berry-demo.ru"]), "/notifications",
     "must be object"),
]


@pytest.mark.parametrize(("mutate", "where", "words"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
def test_error_at_exact_pointer(mutate: Callable[[Doc], None], where: str, words: str) -> None:
    doc = seed()
    mutate(doc)
    problems = validate_document(doc, FILE)
    found = errors(problems)
    assert found, show(problems)
    # every error points at the offending value, and one of them says what is wrong
    assert {p.pointer for p in found} == {where}, show(problems)
    assert any(words in p.message for p in found), show(problems)
    for p in found:
        assert p.file == FILE
        assert p.message and "\n" not in p.message


def test_two_digit_extensions_are_valid_when_extension_digits_is_2() -> None:
    doc = seed()
    two_digit_extensions(doc)
    assert doc["operators"][0]["extension"] == "10"
    problems = validate_document(doc, FILE)
    assert errors(problems) == [], show(problems)


def test_many_errors_are_reported_together() -> None:
    doc = seed()
    doc["timezone"] = "Mars/Olympus"
    doc["operators"][1]["extension"] = "012"
    doc["rules"][0]["scenario"] = "party"
    doc["colour"] = "red"
    pointers = {p.pointer for p in errors(validate_document(doc, FILE))}
    assert pointers == {"/timezone", "/operators/1/extension", "/rules/0/scenario", "/colour"}


def test_duplicate_number_within_a_file_is_rejected() -> None:
    doc = seed()
    doc["numbers"].append("+74951234567")
    found = errors(validate_document(doc, FILE))
    assert found
    assert all(p.pointer.startswith("/numbers") for p in found)


def test_duplicate_number_within_a_file_points_at_the_duplicate() -> None:
    doc = seed()
    doc["numbers"].append("+74951234567")
    assert [p.pointer for p in errors(validate_document(doc, FILE))] == ["/numbers/1"]


@pytest.mark.parametrize("char", ["\x85", "\x9b"])
def test_c1_control_characters_in_a_name_are_rejected(char: str) -> None:
    doc = seed()
    doc["operators"][0]["name"] = f"Ivan{char}ov"
    assert [p.pointer for p in errors(validate_document(doc, FILE))] == ["/operators/0/name"]


def test_plain_sip_uri_phone_is_valid() -> None:
    doc = seed()
    doc["operators"][0]["phone"] = "sip:ivanov@pbx.example.com:5060"
    problems = validate_document(doc, FILE)
    assert errors(problems) == [], show(problems)


def test_meaning_checks_survive_a_malformed_shape() -> None:
    doc = seed()
    doc["operators"] = "everyone"
    doc["scenarios"][0]["root"] = ["ext"]
    doc["rules"][0] = 7
    doc["calendar"] = {"holidays": "2026-01-01"}
    found = errors(validate_document(doc, FILE))
    pointers = {p.pointer for p in found}
    assert {"/operators", "/scenarios/0/root", "/rules/0", "/calendar/holidays"} <= pointers


# --- across files -------------------------------------------------------------------------


def write(path: Path, doc: Any) -> str:
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=2), encoding="utf-8")
    return str(path)


def test_validate_paths_seed_is_ok(tmp_path: Path) -> None:
    result = validate_paths([str(SEED_PATH)])
    assert result.ok
    assert [file for file, _ in result.documents] == [str(SEED_PATH)]


def test_duplicate_number_across_files_names_the_other_account(tmp_path: Path) -> None:
    first = write(tmp_path / "a.json", seed())
    other = seed()
    other["account"] = "other-co"
    other["numbers"] = ["+74957777777", "+74951234567"]
    second = write(tmp_path / "b.json", other)
    result = validate_paths([first, second])
    assert not result.ok
    found = errors(result.problems)
    assert len(found) == 1, show(result.problems)
    problem = found[0]
    assert problem.file == second
    assert problem.pointer == "/numbers/1"
    assert "'berry-demo'" in problem.message
    assert first in problem.message


def test_same_account_in_two_files(tmp_path: Path) -> None:
    first = write(tmp_path / "a.json", seed())
    other = seed()
    other["numbers"] = ["+74957777777"]
    second = write(tmp_path / "b.json", other)
    found = errors(validate_paths([first, second]).problems)
    assert [(p.file, p.pointer) for p in found] == [(second, "/account")]
    assert first in found[0].message


def test_distinct_accounts_in_a_directory_are_ok(tmp_path: Path) -> None:
    write(tmp_path / "a.json", seed())
    other = seed()
    other["account"] = "other-co"
    other["numbers"] = ["+74957777777"]
    write(tmp_path / "b.json", other)
    result = validate_paths([str(tmp_path)])
    assert result.ok, show(result.problems)
    assert len(result.documents) == 2


def test_validate_paths_malformed_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{\n  "account": "x",\n  "name": "y",,\n}\n', encoding="utf-8")
    result = validate_paths([str(path)])
    assert not result.ok
    assert len(result.problems) == 1
    problem = result.problems[0]
    assert problem.file == str(path)
    assert problem.pointer == ""
    assert "line 3 column" in problem.message


@pytest.mark.parametrize(("text", "words"), [("[1, 2]", "an array"), ('"office"', "a string")])
def test_validate_paths_top_level_not_an_object(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "x.json"
    path.write_text(text, encoding="utf-8")
    result = validate_paths([str(path)])
    assert [(p.pointer, p.severity) for p in result.problems] == [("", ERROR)]
    assert words in result.problems[0].message


def test_validate_paths_duplicate_key_and_nan(tmp_path: Path) -> None:
    dup = tmp_path / "dup.json"
    dup.write_text('{"account": "a", "account": "b"}', encoding="utf-8")
    nan = tmp_path / "nan.json"
    nan.write_text('{"account": NaN}', encoding="utf-8")
    result = validate_paths([str(dup), str(nan)])
    assert not result.ok
    assert [p.file for p in result.problems] == [str(dup), str(nan)]
    assert "'account' appears twice" in result.problems[0].message
    assert "NaN" in result.problems[1].message


def test_validate_paths_missing_file(tmp_path: Path) -> None:
    result = validate_paths([str(tmp_path / "nope.json")])
    assert not result.ok
    assert "no such file" in result.problems[0].message


def test_invalid_file_is_not_returned_as_a_document(tmp_path: Path) -> None:
    doc = seed()
    doc["timezone"] = "Mars/Olympus"
    result = validate_paths([write(tmp_path / "a.json", doc)])
    assert result.documents == []
    assert not result.ok


# --- warnings -----------------------------------------------------------------------------

SHADOWED_RULE = {"id": "r5", "name": "Rule 5", "priority": 5, "schedule": "weekdays", "caller_list": None,
                 "scenario": "workday"}


def test_shadowed_rule_warns_at_the_rule() -> None:
    doc = seed()
    doc["rules"].append(copy.deepcopy(SHADOWED_RULE))
    problems = validate_document(doc, FILE)
    assert errors(problems) == [], show(problems)
    shadowed = [p for p in warnings(problems) if p.pointer == "/rules/4"]
    assert len(shadowed) == 1, show(problems)
    assert "'r5'" in shadowed[0].message and "never match" in shadowed[0].message


def test_shadowed_caller_list_rule_warns() -> None:
    """A VIP rule under the all-day weekend rule for everyone can never match."""
    doc = seed()
    doc["rules"].append({"id": "r5", "name": "Rule 5", "priority": 5, "schedule": "weekend-vip",
                         "caller_list": "vip", "scenario": "weekend-vip"})
    assert [p.pointer for p in warnings(validate_document(doc, FILE)) if p.pointer.startswith("/rules")] == ["/rules/4"]


def test_rule_below_a_disabled_rule_is_not_shadowed() -> None:
    doc = seed()
    doc["rules"][1]["enabled"] = False
    doc["rules"].append(copy.deepcopy(SHADOWED_RULE))
    problems = validate_document(doc, FILE)
    assert not [p for p in problems if p.pointer.startswith("/rules")], show(problems)


def test_partly_covered_rule_is_not_shadowed() -> None:
    doc = seed()
    doc["schedules"].append({"id": "long-day", "name": "Long day", "days": ["working"], "intervals": [["08:00", "19:00"]]})
    rule = copy.deepcopy(SHADOWED_RULE)
    rule["schedule"] = "long-day"
    doc["rules"].append(rule)
    problems = validate_document(doc, FILE)
    assert not [p for p in problems if p.pointer.startswith("/rules")], show(problems)
    gap = [p for p in problems if p.pointer == "/default_scenario"]
    assert len(gap) == 1 and "00:00-08:00, 19:00-24:00" in gap[0].message


def test_unused_operation_warns() -> None:
    doc = seed()
    doc["operations"].append({"id": "vm2", "name": "Second voicemail", "type": "voicemail", "sound": "vm-prompt"})
    problems = validate_document(doc, FILE)
    assert errors(problems) == [], show(problems)
    unused = [p for p in warnings(problems) if p.pointer == "/operations/7"]
    assert len(unused) == 1, show(problems)
    assert "'vm2'" in unused[0].message


def test_unused_sound_and_scenario_warn() -> None:
    doc = seed()
    doc["sounds"].append({"id": "spare", "name": "Spare", "text": "Hello"})
    doc["scenarios"].append({"id": "spare", "name": "Spare", "root": {"operation": "vm"}})
    pointers = [p.pointer for p in warnings(validate_document(doc, FILE))]
    assert "/sounds/5" in pointers and "/scenarios/4" in pointers


def test_warnings_are_withheld_while_there_are_errors() -> None:
    doc = seed()
    doc["operations"].append({"id": "vm2", "name": "Second voicemail", "type": "voicemail", "sound": "vm-prompt"})
    doc["rules"][0]["scenario"] = "party"
    problems = validate_document(doc, FILE)
    assert [p.pointer for p in errors(problems)] == ["/rules/0/scenario"]
    assert not warnings(problems)


# --- severity and the line format ---------------------------------------------------------


def test_problem_line_format_for_errors_and_warnings() -> None:
    doc = seed()
    doc["timezone"] = "Europe/Atlantis"
    error = errors(validate_document(doc, FILE))[0]
    assert error.severity == "error"
    assert error.line() == f"{FILE}: /timezone: {error.message}"
    assert error.line().startswith("office.json: /timezone: unknown time zone 'Europe/Atlantis'")

    warning = warnings(validate_document(seed(), FILE))[0]
    assert warning.severity == "warning"
    assert warning.line() == f"warning: {FILE}: /default_scenario: {warning.message}"


def test_problem_line_for_the_whole_document() -> None:
    problem = validate_document([], "x.json")[0]
    assert problem.line() == "x.json: /: the document must be a JSON object, not an array"
    assert Problem("f", "", "m", WARNING).line() == "warning: f: /: m"
    assert Problem("f", "/a~1b", "m").line() == "f: /a~1b: m"


def test_problem_to_json() -> None:
    doc = seed()
    doc["timezone"] = "Europe/Atlantis"
    problem = errors(validate_document(doc, FILE))[0]
    assert problem.to_json() == {"file": FILE, "pointer": "/timezone", "severity": "error", "message": problem.message}


# --- notifications ------------------------------------------------------------------------


def test_seed_notifies_in_russian_by_mail() -> None:
    assert SEED["notifications"] == {
        "language": "ru",
        "email": ["office@berry-demo.ru"],
        "events": ["voicemail", "fax", "missed"],
        "attachments": "attach",
    }
    problems = validate_document(seed(), FILE)
    assert not [p for p in problems if p.pointer.startswith("/notifications")], show(problems)


def test_header_injection_is_one_line_with_its_pointer() -> None:
    doc = seed()
    doc["notifications"]["email"] = ["office@berry-demo.ru", "a@b.ru\r\nBcc: x@y"]
    lines = [p.line() for p in errors(validate_document(doc, FILE))]
    assert f'{FILE}: /notifications/email/1: "a@b.ru\\r\\nBcc: x@y" is not an email address (' in "\n".join(lines)
    assert all("\r" not in line and "\n" not in line for line in lines)


@pytest.mark.parametrize(
    ("field", "value"),
    [("email", "Office <office@berry-demo.ru>"), ("email", "office@localhost"),
     ("webhooks", "ftp://crm.example.ru/x"), ("webhooks", "https://u:p@crm.example.ru/x")],
)
def test_a_bad_target_is_one_error_not_the_schema_pattern_too(field: str, value: str) -> None:
    doc = seed()
    doc["notifications"][field] = [value]
    found = errors(validate_document(doc, FILE))
    assert len(found) == 1, show(found)
    assert found[0].message.startswith(json.dumps(value))


PRIVATE_WEBHOOKS = ["http://127.0.0.1:8080/hook", "http://[::1]/hook", "http://localhost:9000/hook",
                    "http://10.0.0.5/hook", "http://169.254.169.254/x"]


@pytest.mark.parametrize("url", PRIVATE_WEBHOOKS)
def test_private_webhooks_are_allowed_only_when_asked(url: str) -> None:
    doc = seed()
    doc["notifications"]["webhooks"] = [url]
    found = errors(validate_document(doc, FILE))
    assert [p.pointer for p in found] == ["/notifications/webhooks/0"], show(found)
    assert "VOFFICE_ALLOW_PRIVATE_WEBHOOKS=1" in found[0].message
    problems = validate_document(doc, FILE, allow_private_webhooks=True)
    assert errors(problems) == [], show(problems)


def test_allowing_private_webhooks_keeps_the_other_rules() -> None:
    doc = seed()
    doc["notifications"]["webhooks"] = ["http://user:pw@127.0.0.1/hook", "ftp://127.0.0.1/", "http://127.0.0.1/#x"]
    found = errors(validate_document(doc, FILE, allow_private_webhooks=True))
    assert [p.pointer for p in found] == [f"/notifications/webhooks/{i}" for i in range(3)], show(found)
    assert not any("VOFFICE_ALLOW_PRIVATE_WEBHOOKS" in p.message for p in found)


def test_validate_paths_threads_the_private_webhook_option(tmp_path: Path) -> None:
    doc = seed()
    doc["notifications"]["webhooks"] = ["http://127.0.0.1:8080/hook"]
    path = write(tmp_path / "a.json", doc)
    refused = validate_paths([path])
    assert not refused.ok
    assert [p.pointer for p in errors(refused.problems)] == ["/notifications/webhooks/0"]
    allowed = validate_paths([path], allow_private_webhooks=True)
    assert allowed.ok, show(allowed.problems)
    assert [file for file, _ in allowed.documents] == [path]


def test_validate_paths_threads_the_option_through_the_process_pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import routing.core.bulk as bulk
    import routing.core.validation as validation

    monkeypatch.setattr(validation, "PARALLEL_FROM", 2)
    monkeypatch.setattr(bulk.os, "cpu_count", lambda: 2)
    paths = []
    for i in range(3):
        doc = seed()
        doc["account"] = f"acc-{i}"
        doc["numbers"] = [f"+7495123450{i}"]
        doc["notifications"]["webhooks"] = ["http://127.0.0.1:8080/hook"]
        paths.append(write(tmp_path / f"{i}.json", doc))
    assert not validation.validate_paths(paths).ok
    allowed = validation.validate_paths(paths, allow_private_webhooks=True)
    assert allowed.ok, show(allowed.problems)
    assert len(allowed.documents) == 3


def test_parallel_validation_reports_exactly_what_serial_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Over a process pool (many files) and in this process (few), the same documents, the
    same compiled forms, and the same problems in the same order, with their positions."""
    import routing.core.bulk as bulk
    import routing.core.validation as validation

    (tmp_path / "sub").mkdir()
    for i in range(12):
        doc = seed()
        doc["account"] = f"acc-{i:02d}"
        doc["numbers"] = [f"+749512345{i:02d}"]
        if i % 3 == 1:  # a schema error and a meaning error
            doc["timezone"] = 7
            doc["rules"][0]["scenario"] = "nowhere"
        if i == 5:  # a number another file has: a problem across files
            doc["numbers"] = ["+74951234500"]
        write(tmp_path / ("sub" if i % 2 else "") / f"{i:02d}.json", doc)
    (tmp_path / "broken.json").write_text('{"account": "x",\n  "numbers": [1, 2,]}', encoding="utf-8")
    (tmp_path / "dup.json").write_text('{"account": "a", "account": "b"}', encoding="utf-8")
    (tmp_path / "empty.json").write_text("", encoding="utf-8")

    monkeypatch.setattr(bulk.os, "cpu_count", lambda: 2)
    spawned: list[int] = []
    real_map = bulk.parallel_map

    def counting_map(fn: Callable[[Any], Any], items: list[Any], workers: int) -> list[Any]:
        spawned.append(workers)
        return real_map(fn, items, workers)

    monkeypatch.setattr(validation, "parallel_map", counting_map)
    monkeypatch.setattr(validation, "PARALLEL_FROM", 10**6)
    serial = validation.validate_paths([str(tmp_path)], with_compiled=True)
    monkeypatch.setattr(validation, "PARALLEL_FROM", 2)
    parallel = validation.validate_paths([str(tmp_path)], with_compiled=True)
    assert spawned == [1, 2]

    assert parallel.problems == serial.problems
    assert parallel.documents == serial.documents
    assert parallel.compiled == serial.compiled
    assert len(serial.documents) == 8 and set(serial.compiled) == {file for file, _ in serial.documents}
    lines = [p.line() for p in serial.problems]
    assert any(p.at is not None and p.pointer == "/timezone" for p in serial.problems), "\n".join(lines)
    assert any("already belongs to account" in p.message and p.at is not None for p in serial.problems), "\n".join(lines)
    assert any(p.file.endswith("broken.json") and "not valid JSON at line 2" in p.message for p in serial.problems)

    # documents already parsed (a saved plan's, the versions a load replaces): the same too
    monkeypatch.setattr(validation, "PARALLEL_FROM", 10**6)
    one_by_one = validation.validate_documents(serial.documents)
    monkeypatch.setattr(validation, "PARALLEL_FROM", 2)
    assert validation.validate_documents(serial.documents) == one_by_one
    assert spawned == [1, 2, 1, 2]
    assert one_by_one == [validation.validate_document(doc, file) for file, doc in serial.documents]


def test_public_webhooks_are_valid() -> None:
    doc = seed()
    doc["notifications"]["webhooks"] = ["https://crm.example.ru/voffice", "https://hooks.example.com:8443/v1?account=berry-demo"]
    problems = validate_document(doc, FILE)
    assert errors(problems) == [], show(problems)


def test_notifications_without_recipients_warn() -> None:
    doc = seed()
    doc["notifications"]["email"] = []
    problems = validate_document(doc, FILE)
    assert errors(problems) == [], show(problems)
    found = [p for p in warnings(problems) if p.pointer == "/notifications"]
    assert len(found) == 1, show(problems)
    assert "nobody" in found[0].message
    del doc["notifications"]["email"]
    assert [p for p in warnings(validate_document(doc, FILE)) if p.pointer == "/notifications"]


def test_webhooks_alone_are_recipients() -> None:
    doc = seed()
    doc["notifications"] = {"events": ["missed"], "webhooks": ["https://crm.example.ru/voffice"]}
    problems = validate_document(doc, FILE)
    assert not [p for p in problems if p.pointer.startswith("/notifications")], show(problems)


def test_notifications_are_optional() -> None:
    doc = seed()
    del doc["notifications"]
    problems = validate_document(doc, FILE)
    assert [p.pointer for p in problems] == ["/default_scenario"], show(problems)


def test_compiled_account_carries_notifications_with_defaults() -> None:
    from routing.core.compiler import compile_account

    assert compile_account(seed())["notifications"] == SEED["notifications"] | {"webhooks": []}
    doc = seed()
    doc["notifications"] = {"events": ["fax"], "webhooks": ["https://crm.example.ru/voffice"]}
    assert compile_account(doc)["notifications"] == {
        "language": "en", "email": [], "webhooks": ["https://crm.example.ru/voffice"], "events": ["fax"],
        "attachments": "attach",
    }
    del doc["notifications"]
    assert compile_account(doc)["notifications"] is None


def test_load_diff_shows_notification_changes() -> None:
    from routing.core.diff import summarize

    old, new = seed(), seed()
    new["notifications"]["email"] = ["office@berry-demo.ru", "boss@berry-demo.ru"]
    new["notifications"]["attachments"] = "none"
    new["notifications"]["events"] = ["voicemail", "fax"]
    assert summarize(old, new) == [
        "notifications.attachments: attach -> none",
        "notifications.email: +boss@berry-demo.ru",
        "notifications.events: -missed",
    ]
    del new["notifications"]
    assert summarize(old, new) == ["notifications: removed"]
    assert summarize(new, old) == ["notifications: added (voicemail, fax, missed; 1 email, 0 webhooks)"]


def test_an_invisible_character_is_named_once(seed_doc: dict[str, Any]) -> None:
    """Pasted from a web page: "\u202a+79161230001\u202c" looks right and is not; one message names
    the character by its code point (not two that show nothing wrong)."""
    doc = copy.deepcopy(seed_doc)
    doc["operators"][0]["phone"] = "\u202a+79161230001\u202c"
    errs = [p for p in validate_document(doc, "x.json") if p.severity == "error"]
    assert [(p.pointer, p.message) for p in errs] == [
        ("/operators/0/phone", "'+79161230001' contains the invisible character U+202A (LEFT-TO-RIGHT EMBEDDING), "
                               "pasted with it: type the value again")]


def test_a_national_form_gets_its_e164_suggested(seed_doc: dict[str, Any]) -> None:
    doc = copy.deepcopy(seed_doc)
    doc["operators"][0]["phone"] = "89161230001"
    doc["numbers"] = ["8 (495) 123-45-67"]
    messages = {p.pointer: p.message for p in validate_document(doc, "x.json") if p.severity == "error"}
    assert messages["/operators/0/phone"].endswith("nor a plain sip: URI; did you mean +79161230001?")
    assert messages["/numbers/0"].endswith("is not an E.164 number; did you mean +74951234567?")


def test_a_crowd_in_one_wave_and_a_forty_minute_plan_are_flagged(seed_doc: dict[str, Any]) -> None:
    doc = copy.deepcopy(seed_doc)
    many = [{"id": f"op{i}", "name": f"Op {i}", "phone": f"+7916{i:07d}"} for i in range(60)]
    doc["operators"] += many
    doc["groups"].append({"id": "crowd", "name": "Crowd", "strategy": "priority",
                          "members": [{"operator": o["id"], "priority": 1} for o in many]})
    doc["groups"].append({"id": "hunt", "name": "Hunt", "strategy": "sequential",
                          "members": [{"operator": o["id"], "ring_seconds": 40} for o in many]})
    doc["operations"] += [{"id": "ring-crowd", "name": "c", "type": "group", "group": "crowd"},
                          {"id": "ring-hunt", "name": "h", "type": "group", "group": "hunt"}]
    found = {(p.pointer, p.message.split(":")[0]) for p in validate_document(doc, "x.json") if p.severity == "warning"}
    crowd, hunt = len(doc["groups"]) - 2, len(doc["groups"]) - 1
    assert (f"/groups/{crowd}", "one wave rings 60 phones at once (more than 50)") in found
    assert any(ptr == f"/groups/{hunt}" and msg.startswith("its ringing plan lasts 80 min") for ptr, msg in found)


def test_a_mistyped_reference_gets_a_did_you_mean(seed_doc: dict[str, Any]) -> None:
    doc = copy.deepcopy(seed_doc)
    rule = next(r for r in doc["rules"] if r["schedule"] == "lunch-time")
    rule["schedule"] = "lnuch-time"
    doc["groups"][0]["members"][0]["operator"] = "Ivanov"
    messages = [p.message for p in validate_document(doc, "x.json") if p.severity == "error"]
    assert 'no schedule with id "lnuch-time"; did you mean "lunch-time"?' in messages
    assert 'no operator with id "Ivanov"; did you mean "ivanov"?' in messages
    doc["default_scenario"] = "zzz-nothing-like-it"
    assert any(m == "no scenario with id 'zzz-nothing-like-it'" for m in
               (p.message for p in validate_document(doc, "x.json")))


def test_messages_keep_acronyms_and_state_limits(seed_doc: dict[str, Any]) -> None:
    doc = copy.deepcopy(seed_doc)
    doc["calendar"]["country"] = "Russia"
    doc["name"] = "x" * 500
    messages = {p.pointer: p.message for p in validate_document(doc, "x.json")}
    assert "expected ISO 3166-1" in messages["/calendar/country"]
    assert messages["/name"].endswith("too long (the limit: at most 200 characters)")


def test_a_shadowed_rule_names_the_rules_that_shadow_it() -> None:
    doc = seed()
    doc["rules"].append({"id": "r5", "name": "Rule 5", "priority": 5, "schedule": "weekend-vip",
                         "caller_list": "vip", "scenario": "weekend-vip"})
    [shadowed] = [p for p in warnings(validate_document(doc, FILE)) if p.pointer == "/rules/4"]
    assert shadowed.message.startswith("rule 'r5' can never match: 'r3', 'r4' (higher priority) cover all of its times")
