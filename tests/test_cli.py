"""The `voffice` console script as NOC engineers run it: exit codes, one-line errors, JSON."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from routing.stack.redis_server import RedisServer

from .conftest import ROOT, SEED

VOFFICE = ROOT / ".venv" / "bin" / "voffice"


def voffice(*args: str, redis_url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("VOFFICE_REDIS_URL", None)
    if redis_url:
        env["VOFFICE_REDIS_URL"] = redis_url
    return subprocess.run([str(VOFFICE), *args], capture_output=True, text=True, env=env, timeout=120)


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr + result.stdout


def write(tmp_path: Path, name: str, doc: Any) -> str:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return str(path)


def test_schema_is_printed() -> None:
    result = voffice("schema")
    assert result.returncode == 0
    assert json.loads(result.stdout)["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_validate_examples() -> None:
    result = voffice("validate", str(ROOT / "examples"))
    assert result.returncode == 0, result.stderr
    assert "warning: " in result.stdout  # the seed's evenings fall to the default scenario
    assert "0 error(s)" in result.stderr + result.stdout


def test_validate_reports_every_problem_with_file_and_pointer(tmp_path: Path, seed_doc: dict[str, Any]) -> None:
    seed_doc["operators"][0]["extension"] = "0101"
    seed_doc["rules"][1]["scenario"] = "nope"
    bad = write(tmp_path, "bad.json", json.dumps(seed_doc, ensure_ascii=False, indent=2))
    text = Path(bad).read_text().splitlines()
    ext_line = next(i for i, line in enumerate(text, 1) if '"0101"' in line)
    rule_line = next(i for i, line in enumerate(text, 1) if '"nope"' in line)
    result = voffice("validate", bad)
    assert result.returncode == 1
    no_traceback(result)
    lines = result.stderr.splitlines()
    # FILE:LINE:COLUMN as compilers print it (the column of the value); one message per problem:
    # the schema's pattern error for "0101" gives way to the specific one.
    assert f"{bad}:{ext_line}:20: /operators/0/extension: extension '0101' starts with 0" in lines
    assert f"{bad}:{rule_line}:19: /rules/1/scenario: no scenario with id \"nope\"" in lines
    assert sum("/operators/0/extension" in line for line in lines) == 1
    as_json = voffice("validate", "--json", bad)
    assert as_json.returncode == 1
    problems = json.loads(as_json.stdout)
    assert {"file": bad, "pointer": "/rules/1/scenario", "severity": "error", "message": 'no scenario with id "nope"',
            "line": rule_line, "column": 19} in problems


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"account": ', "not valid JSON at line 1 column 13"),
        ("[1, 2]", "the document must be a JSON object, not an array"),
        ("", "the file is empty"),
    ],
)
def test_validate_malformed_input_is_one_clean_line(tmp_path: Path, content: str, expected: str) -> None:
    path = write(tmp_path, "x.json", content)
    result = voffice("validate", path)
    assert result.returncode == 1
    no_traceback(result)
    assert result.stderr.splitlines()[0].startswith(f"{path}: /: {expected}")


def test_duplicate_key_is_located(tmp_path: Path) -> None:
    path = write(tmp_path, "x.json", '{"a": {"b": 1, "b": 2}}')
    result = voffice("validate", path)
    assert result.returncode == 1
    # the value of the second "b", the one a strict reader refuses
    assert result.stderr.splitlines()[0] == f"{path}:1:21: /a/b: the key 'b' appears twice in one object"


def test_validate_missing_file() -> None:
    result = voffice("validate", "/nonexistent/file.json")
    assert result.returncode == 1
    assert "/nonexistent/file.json: /: no such file or directory" in result.stderr


def test_simulate_json_contract() -> None:
    result = voffice(
        "simulate", "--config", str(SEED), "--number", "+74951234567", "--caller", "+79031112233",
        "--at", "2026-11-25T11:00", "--event", "timeout", "--event", "answer:petrov", "--json",
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    for key in ("account", "number", "local_time", "day_type", "rule", "scenario", "steps", "end"):
        assert key in out
    assert out["rule"] == {"id": "r2", "name": "Правило №2"}
    assert out["scenario"] == {"id": "workday", "name": "Будни"}
    assert out["local_time"] == "2026-11-25T11:00:00+03:00"
    ext, group = out["steps"]
    assert ext["operation"] == {"id": "ext", "name": "Переадресация на внутренний номер сотрудника", "type": "extension"}
    assert ext["event"] == "timeout"
    assert group["waves"][0] == [
        {"operator": "ivanov", "phone": "+79161230001", "ring_seconds": 20, "attempt": 1},
        {"operator": "petrov", "phone": "+79161230002", "ring_seconds": 20, "attempt": 1},
    ]
    assert out["end"] == "answered"


@pytest.mark.parametrize(
    ("args", "expected", "code"),
    [
        (["--at", "yesterday"], "--at: 'yesterday' is not an ISO 8601 time", 2),  # an option's value: a usage error
        (["--at", "2026-11-25T11:00", "--event", "jump"], "unknown event 'jump'", 1),
        (["--at", "2026-11-25T11:00", "--event", "key:12"], "a key is one of 0-9, * or #", 1),
        (["--at", "2026-11-25T11:00", "--number", "+74990000000"], "is not a number of account 'berry-demo' (+74951234567)", 1),
    ],
)
def test_simulate_user_errors(args: list[str], expected: str, code: int) -> None:
    base = {"--number": "+74951234567", "--caller": "+79031112233"}
    for i in range(0, len(args), 2):
        base[args[i]] = args[i + 1]
    flat = [x for kv in base.items() for x in kv if kv[0] != "--event"]
    events = [x for i in range(0, len(args), 2) if args[i] == "--event" for x in ("--event", args[i + 1])]
    result = voffice("simulate", "--config", str(SEED), *flat, *events)
    assert result.returncode == code
    no_traceback(result)
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unreachable_redis_is_one_line() -> None:
    result = voffice("simulate", "--number", "+74951234567", "--caller", "1", "--at", "2026-11-25T11:00",
                     redis_url="redis://127.0.0.1:1/0")
    assert result.returncode == 1
    no_traceback(result)
    assert result.stderr.startswith("voffice: error: cannot reach Redis at redis://127.0.0.1:1/0")


@pytest.mark.redis
def test_load_dry_run_rollback_history_show(redis_server: RedisServer, tmp_path: Path, seed_doc: dict[str, Any]) -> None:
    url = redis_server.url
    dry = voffice("load", "--dry-run", str(SEED), redis_url=url)
    assert dry.returncode == 0, dry.stderr
    assert "berry-demo: would load (new)" in dry.stdout
    assert voffice("show", "berry-demo", redis_url=url).returncode == 1  # dry run loaded nothing

    first = voffice("load", str(SEED), redis_url=url)
    assert first.returncode == 0 and "berry-demo: v1 (new)" in first.stdout
    seed_doc["operators"][1]["phone"] = "+79161239999"
    changed = write(tmp_path, "seed.json", seed_doc)
    second = voffice("load", changed, redis_url=url)
    assert "berry-demo: v2 (was v1)" in second.stdout and '~ /operators/1/phone (petrov): "+79161230002" -> "+79161239999"' in second.stdout

    # one invalid file among valid ones: nothing is loaded
    broken = dict(seed_doc, account="other", numbers=["+74950000001"], default_scenario="missing")
    refused = voffice("load", changed, write(tmp_path, "broken.json", broken), redis_url=url)
    assert refused.returncode == 1 and "nothing was loaded" in refused.stderr
    no_traceback(refused)

    show = voffice("show", "84951234567", "--json", redis_url=url)
    assert json.loads(show.stdout)["version"] == 2
    back = voffice("rollback", "berry-demo", redis_url=url)
    assert back.returncode == 0 and "v3 (was v2): rollback to v1" in back.stdout
    sim = voffice("simulate", "--number", "+74951234567", "--caller", "+79031112233", "--at", "2026-11-25T11:00",
                  "--event", "timeout", "--json", redis_url=url)
    assert json.loads(sim.stdout)["steps"][1]["waves"][0][1]["phone"] == "+79161230002"  # v1's phone again
    hist = voffice("history", "berry-demo", "--json", redis_url=url)
    assert [e["version"] for e in json.loads(hist.stdout)] == [3, 2, 1]
    unknown = voffice("rollback", "nobody", redis_url=url)
    assert unknown.returncode == 1 and "voffice: error: account 'nobody' is not loaded" in unknown.stderr


def test_coverage_text_and_png(tmp_path: Path) -> None:
    png = tmp_path / "week.png"
    result = voffice("coverage", "--config", str(SEED), "--week", "2026-W48", "--png", str(png))
    assert result.returncode == 0, result.stderr
    assert "Правило №1" in result.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = voffice("coverage", "--config", str(SEED), "--week", "2026-W99")
    assert bad.returncode == 2 and bad.stderr.startswith("voffice: error: --week:")


def test_load_counts_only_the_warnings_a_change_brings_validating_each_version_once(
        monkeypatch: pytest.MonkeyPatch, seed_doc: dict[str, Any]) -> None:
    """load/plan reuse the warnings validation found in the new versions, and validate a
    current version only when the new one has a warning; what they report is what validating
    both versions of every change says."""
    import copy

    from routing.cli import console
    from routing.core import validation
    from routing.core.problems import WARNING
    from routing.store.configs import PlannedChange

    def doc(account: str, change: Any = None) -> dict[str, Any]:
        out = copy.deepcopy(seed_doc)
        out["account"] = account
        if change:
            change(out)
        return out

    def no_evening_gap(d: dict[str, Any]) -> None:  # the seed's one warning gone
        d["rules"].append({"id": "r9", "name": "Always", "priority": 99, "schedule": "always", "caller_list": None,
                           "scenario": d["default_scenario"]})
        d["schedules"].append({"id": "always", "name": "Always", "days": ["working", "weekend", "holiday"]})

    def disable_r2(d: dict[str, Any]) -> None:
        next(r for r in d["rules"] if r["id"] == "r2")["enabled"] = False

    def rename(d: dict[str, Any]) -> None:
        d["name"] = "Renamed"

    pairs = {  # account: (current version, new version)
        "new": (None, doc("new")),
        "same-warning": (doc("same-warning"), doc("same-warning", rename)),
        "more-warnings": (doc("more-warnings"), doc("more-warnings", disable_r2)),
        "clean": (doc("clean"), doc("clean", no_evening_gap)),
    }
    changes = [PlannedChange(f"{a}.json", a, new, {}, 0 if old is None else 1, old, [], False) for a, (old, new) in pairs.items()]
    changes.append(PlannedChange("unchanged.json", "unchanged", doc("unchanged"), {}, 1, doc("unchanged"), [], True))
    found = {c.file: validation.validate_document(c.doc, c.file) for c in changes}
    assert not any(p.severity == WARNING for p in found["clean.json"])

    validated: list[str] = []
    real = validation.validate_documents

    def counting(documents: list[tuple[str, Any]], **kwargs: Any) -> Any:
        validated.extend(file for file, _ in documents)
        return real(documents, **kwargs)

    monkeypatch.setattr(validation, "validate_documents", counting)
    introduced = console._introduced(changes, found)
    assert sorted(validated) == ["more-warnings.json", "same-warning.json"]  # the current versions with a warning to compare

    def expected(change: PlannedChange) -> list[tuple[str, str]]:
        def warnings(d: dict[str, Any]) -> list[tuple[str, str]]:
            return [(p.pointer, p.message) for p in validation.validate_document(d, change.file) if p.severity == WARNING]
        new = warnings(change.doc)
        return new if change.old_doc is None else [w for w in new if w not in warnings(change.old_doc)]

    assert set(introduced) == set(pairs)
    for change in changes[:4]:
        assert [(p.pointer, p.message) for p in introduced[change.account]] == expected(change), change.account
    assert introduced["new"] and not introduced["same-warning"] and introduced["more-warnings"] and not introduced["clean"]
    validated.clear()
    assert console._introduced(changes) == introduced  # without the warnings at hand: validated here, same answer
    assert validated == ["new.json", "same-warning.json", "more-warnings.json", "clean.json",  # the new versions
                         "same-warning.json", "more-warnings.json"]  # the current ones, as above
