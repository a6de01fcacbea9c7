"""The NOC's account commands beyond load (issue: the NOC workflow): list, delete (numbers
released at once, history kept, confirmation), Redis URLs that never show their password,
--version. Real redis-server, the installed `voffice`."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis

from routing.store import configs
from routing.store.reader import ConfigReader

from .conftest import SEED
from .test_cli import voffice

pytestmark = pytest.mark.redis


def test_list_shows_every_account_its_numbers_and_last_change(redis_server: Any) -> None:
    assert "no accounts loaded" in voffice("list", redis_url=redis_server.url).stdout
    assert voffice("load", str(SEED), redis_url=redis_server.url).returncode == 0
    listed = voffice("list", redis_url=redis_server.url)
    assert listed.returncode == 0 and "berry-demo" in listed.stdout and "+74951234567" in listed.stdout
    assert "1 account(s), 1 number(s)" in listed.stdout
    [row] = json.loads(voffice("list", "--json", redis_url=redis_server.url).stdout)
    assert (row["version"], row["numbers"], row["action"]) == (1, ["+74951234567"], "load")
    assert row["override"] is None and "OVERRIDE" not in listed.stdout
    # a manual override shows in the list (set through the CLI, no load)
    assert voffice("override", "berry-demo", "--scenario", "weekend", redis_url=redis_server.url).returncode == 0
    listed = voffice("list", redis_url=redis_server.url)
    assert "OVERRIDE weekend until cleared" in listed.stdout, listed.stdout
    [row] = json.loads(voffice("list", "--json", redis_url=redis_server.url).stdout)
    assert row["override"]["scenario"] == "weekend" and row["override"]["expired"] is False


def test_delete_releases_the_numbers_at_once_and_keeps_the_history(redis_server: Any, tmp_path: Any, seed_doc: dict[str, Any]) -> None:
    """An account loaded under a mistyped id: deleted, its number is free for the right one."""
    typo = {**seed_doc, "account": "berry-typo"}
    path = tmp_path / "typo.json"
    path.write_text(json.dumps(typo, ensure_ascii=False))
    assert voffice("load", str(path), redis_url=redis_server.url).returncode == 0
    refused = voffice("load", str(SEED), redis_url=redis_server.url)
    assert refused.returncode == 1 and "already belongs to loaded account 'berry-typo'" in refused.stdout + refused.stderr
    reader = ConfigReader(redis_server.url, check_interval=0.0)
    reader.warm()
    assert reader.lookup("+74951234567") is not None
    unconfirmed = voffice("delete", "berry-typo", redis_url=redis_server.url)  # no terminal to ask on
    assert unconfirmed.returncode == 2 and "--yes" in unconfirmed.stderr
    wrong = voffice("delete", "berry-typo", "--yes", "--expect-version", "7", redis_url=redis_server.url)
    assert wrong.returncode == 1 and "at version 1, not 7; nothing was deleted" in wrong.stderr
    done = voffice("delete", "berry-typo", "--yes", redis_url=redis_server.url)
    assert done.returncode == 0 and "released +74951234567" in done.stdout
    assert reader.lookup("+74951234567") is None  # a running worker sees it at once (pub/sub)
    history = voffice("history", "berry-typo", "--json", redis_url=redis_server.url)
    entries = json.loads(history.stdout)
    assert entries[0]["action"] == "delete" and entries[0]["numbers"] == ["+74951234567"] and entries[1]["action"] == "load"
    assert voffice("load", str(SEED), redis_url=redis_server.url).returncode == 0  # the number is free now
    assert "not loaded" in voffice("delete", "berry-typo", "--yes", redis_url=redis_server.url).stderr
    assert [a["account"] for a in configs.accounts(redis.Redis.from_url(redis_server.url))] == ["berry-demo"]


def test_redis_urls_never_show_their_password() -> None:
    down = voffice("list", "--redis", "redis://:hunter2-secret@127.0.0.1:1/0")
    assert down.returncode == 1 and "hunter2-secret" not in down.stderr and ":***@127.0.0.1:1" in down.stderr


@pytest.mark.parametrize("command", [
    ["list"], ["load", str(SEED)], ["plan", str(SEED)], ["simulate", "--number", "+74951234567", "--caller", "+79161112233"],
    ["coverage", "berry-demo"], ["history-writer"], ["up"], ["status"], ["bench", "numbers", "/dev/null"], ["bench", "decide"],
])
def test_a_redis_url_that_cannot_be_used_is_a_one_line_usage_error(command: list[str]) -> None:
    wrong = voffice(*command, "--redis", "http://user:hunter2-secret@example.org/")
    assert wrong.returncode == 2, wrong.stderr
    assert wrong.stderr.startswith("voffice: error: ") and "not a Redis URL" in wrong.stderr
    assert "hunter2-secret" not in wrong.stderr and len(wrong.stderr.strip().splitlines()) == 1


def _commands(group: Any, path: tuple[str, ...] = ()) -> Any:
    import click

    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name), command


def test_every_command_and_option_says_what_it_is_for() -> None:
    import click

    from routing.cli.console import main

    missing = [f"{' '.join(path)} {param.opts[0]}" for path, command in _commands(main) for param in command.params
               if isinstance(param, click.Option) and not param.help and not param.hidden]
    missing += [" ".join(path) for path, command in _commands(main) if not command.help]
    assert missing == []


@pytest.mark.parametrize("command", [["list"], ["load"], ["simulate", "--number", "+7"], ["up", "--sip-port", "0"], ["bench", "sip", "--cps", "x"],
                                     ["nosuch"], ["calls", "acme", "--from", "yesterday"]])
def test_usage_errors_are_one_line_with_exit_code_2_everywhere(command: list[str]) -> None:
    result = voffice(*command, "--no-such-option") if command == ["list"] else voffice(*command)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("voffice: error: ") and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_coverage_takes_an_account_a_number_or_config_file_as_simulate_does(redis_server: Any) -> None:
    assert voffice("load", str(SEED), redis_url=redis_server.url).returncode == 0
    by_id = voffice("coverage", "berry-demo", "--week", "2026-W48", redis_url=redis_server.url)
    by_number = voffice("coverage", "+74951234567", "--week", "2026-W48", redis_url=redis_server.url)
    by_file = voffice("coverage", "--config", str(SEED), "--week", "2026-W48")
    assert by_id.returncode == by_number.returncode == by_file.returncode == 0
    assert by_id.stdout == by_number.stdout == by_file.stdout
    positional_file = voffice("coverage", str(SEED))
    assert positional_file.returncode == 2 and f"give it as --config {SEED}" in positional_file.stderr
    other = voffice("coverage", "someone-else", "--config", str(SEED))
    assert other.returncode == 1 and "holds account 'berry-demo', not 'someone-else'" in other.stderr


def test_status_checks_an_existing_redis_given_by_url(redis_server: Any, tmp_path: Any) -> None:
    """`--redis URL` is the same option on the stack commands as everywhere: an existing Redis."""
    assert voffice("load", str(SEED), redis_url=redis_server.url).returncode == 0
    result = voffice("status", "--run-dir", str(tmp_path), "--redis", redis_server.url)
    assert result.returncode == 1  # nothing else runs
    [row] = [line for line in result.stdout.splitlines() if line.startswith("redis")]
    assert row.split()[1] == "up" and redis_server.url in row and "1 accounts, 1 numbers" in row


def test_version() -> None:
    result = voffice("--version")
    assert result.returncode == 0 and result.stdout.startswith("voffice, version ")


def test_plan_is_field_level_with_new_warnings_and_exit_codes(redis_server: Any, tmp_path: Any, seed_doc: dict[str, Any]) -> None:
    """terraform's plan: 0 nothing to do, 2 changes, 1 errors (--detailed-exitcode); each
    changed field by its JSON pointer; the warnings the change brings; the version planned against."""
    url = redis_server.url
    first = voffice("plan", "--detailed-exitcode", str(SEED), redis_url=url)
    assert first.returncode == 2 and "berry-demo: would load (new); planned against v0" in first.stdout
    assert voffice("load", str(SEED), redis_url=url).returncode == 0
    assert voffice("plan", "--detailed-exitcode", str(SEED), redis_url=url).returncode == 0
    doc = json.loads(json.dumps(seed_doc))
    doc["operators"][1]["phone"] = "+79161239999"
    rule = next(r for r in doc["rules"] if r["id"] == "r2")
    rule["enabled"] = False  # the weekday rule: working days now fall to the default scenario
    path = tmp_path / "seed.json"
    path.write_text(json.dumps(doc, ensure_ascii=False))
    planned = voffice("plan", "--detailed-exitcode", str(path), redis_url=url)
    assert planned.returncode == 2, planned.stderr
    assert '~ /operators/1/phone (petrov): "+79161230002" -> "+79161239999"' in planned.stdout
    assert "/rules/1/enabled (r2): false" in planned.stdout
    assert "warning:" in planned.stdout and "warning(s) introduced" in planned.stdout
    assert "planned against v1" in planned.stdout and "--expect-version berry-demo=1" in planned.stdout
    bad = voffice("plan", "--detailed-exitcode", str(tmp_path / "missing.json"), redis_url=url)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr and "nothing was loaded" in bad.stderr


def test_a_guarded_load_loses_the_race_to_a_second_loader(redis_server: Any, tmp_path: Any, seed_doc: dict[str, Any]) -> None:
    """I plan against v1; a colleague loads v2; my load --expect-version berry-demo=1 refuses
    and loads nothing; --fail-on-warning refuses a change that brings a warning."""
    url = redis_server.url
    assert voffice("load", str(SEED), redis_url=url).returncode == 0
    mine = json.loads(json.dumps(seed_doc))
    mine["operators"][1]["phone"] = "+79161239999"
    (tmp_path / "mine.json").write_text(json.dumps(mine, ensure_ascii=False))
    theirs = json.loads(json.dumps(seed_doc))
    theirs["operators"][0]["phone"] = "+79161238888"
    (tmp_path / "theirs.json").write_text(json.dumps(theirs, ensure_ascii=False))
    assert voffice("load", str(tmp_path / "theirs.json"), redis_url=url).returncode == 0  # v2, in between
    lost = voffice("load", "--expect-version", "berry-demo=1", str(tmp_path / "mine.json"), redis_url=url)
    assert lost.returncode == 1 and "berry-demo is at v2, planned against v1" in lost.stderr and "Nothing was loaded" in lost.stderr
    assert json.loads(voffice("show", "berry-demo", "--json", redis_url=url).stdout)["version"] == 2
    assert voffice("load", "--expect-version", "nobody=1", str(tmp_path / "mine.json"), redis_url=url).returncode == 2
    risky = json.loads(json.dumps(theirs))
    next(r for r in risky["rules"] if r["id"] == "r2")["enabled"] = False
    (tmp_path / "risky.json").write_text(json.dumps(risky, ensure_ascii=False))
    refused = voffice("load", "--fail-on-warning", str(tmp_path / "risky.json"), redis_url=url)
    assert refused.returncode == 1 and "warning(s) introduced; nothing was loaded" in refused.stderr
    ok = voffice("load", "--expect-version", "berry-demo=2", str(tmp_path / "mine.json"), redis_url=url)
    assert ok.returncode == 0 and "berry-demo: v3 (was v2)" in ok.stdout


def test_a_saved_plan_applies_exactly_what_was_reviewed_and_loses_races(redis_server: Any, tmp_path: Any,
                                                                         seed_doc: dict[str, Any]) -> None:
    """terraform's `plan -out` / `apply PLAN`: the file edited after planning does not sneak in;
    a colleague's load in between, or a plan edited by hand, is refused and nothing is loaded."""
    url = redis_server.url
    assert voffice("load", str(SEED), redis_url=url).returncode == 0
    mine = json.loads(json.dumps(seed_doc))
    mine["operators"][1]["phone"] = "+79161239999"
    path, plan_file = tmp_path / "mine.json", tmp_path / "change.plan"
    path.write_text(json.dumps(mine, ensure_ascii=False))
    planned = voffice("plan", str(path), "--out", str(plan_file), redis_url=url)
    assert planned.returncode == 0 and f"voffice load --plan {plan_file}" in planned.stdout
    mine["operators"][1]["phone"] = "+79161230000"  # edited after the review
    path.write_text(json.dumps(mine, ensure_ascii=False))
    applied = voffice("load", "--plan", str(plan_file), redis_url=url)
    assert applied.returncode == 0 and "berry-demo: v2 (was v1)" in applied.stdout
    shown = json.loads(voffice("show", "berry-demo", "--json", redis_url=url).stdout)
    assert shown["document"]["operators"][1]["phone"] == "+79161239999"  # the reviewed value
    again = voffice("load", "--plan", str(plan_file), redis_url=url)  # planned against v1; now v2
    assert again.returncode == 1 and "berry-demo is at v2, planned against v1" in again.stderr
    assert json.loads(voffice("show", "berry-demo", "--json", redis_url=url).stdout)["version"] == 2

    assert voffice("plan", str(path), "--out", str(plan_file), redis_url=url).returncode == 0
    body = json.loads(plan_file.read_text())
    body["accounts"][0]["document"]["operators"][1]["phone"] = "+79990000000"
    plan_file.write_text(json.dumps(body))
    tampered = voffice("load", "--plan", str(plan_file), redis_url=url)
    assert tampered.returncode == 1 and "was changed after it was planned" in tampered.stderr
    both = voffice("load", "--plan", str(plan_file), str(path), redis_url=url)
    assert both.returncode == 2 and "not both" in both.stderr
    assert voffice("load", redis_url=url).returncode == 2
    not_a_plan = voffice("load", "--plan", str(SEED), redis_url=url)
    assert not_a_plan.returncode == 1 and "not a saved plan" in not_a_plan.stderr
    assert json.loads(voffice("show", "berry-demo", "--json", redis_url=url).stdout)["version"] == 2


def test_rollback_dry_run_shows_the_fields_and_changes_nothing(redis_server: Any, tmp_path: Any, seed_doc: dict[str, Any]) -> None:
    url = redis_server.url
    assert voffice("load", str(SEED), redis_url=url).returncode == 0
    doc = json.loads(json.dumps(seed_doc))
    doc["operators"][1]["phone"] = "+79161239999"
    (tmp_path / "v2.json").write_text(json.dumps(doc, ensure_ascii=False))
    assert voffice("load", str(tmp_path / "v2.json"), redis_url=url).returncode == 0
    dry = voffice("rollback", "berry-demo", "--dry-run", redis_url=url)
    assert dry.returncode == 0 and "rollback to v1" in dry.stdout
    assert '~ /operators/1/phone (petrov): "+79161239999" -> "+79161230002"' in dry.stdout
    assert json.loads(voffice("show", "berry-demo", "--json", redis_url=url).stdout)["version"] == 2


def test_show_marks_disabled_rules_and_any_kept_version_and_history_what_is_restorable(
        redis_server: Any, tmp_path: Any, seed_doc: dict[str, Any]) -> None:
    url = redis_server.url
    assert voffice("load", str(SEED), redis_url=url).returncode == 0
    doc = json.loads(json.dumps(seed_doc))
    next(r for r in doc["rules"] if r["id"] == "r2")["enabled"] = False
    (tmp_path / "v2.json").write_text(json.dumps(doc, ensure_ascii=False))
    assert voffice("load", "--keep", "1", str(tmp_path / "v2.json"), redis_url=url).returncode == 0
    shown = voffice("show", "berry-demo", redis_url=url).stdout
    assert next(line for line in shown.splitlines() if "[DISABLED]" in line).startswith("rule   2")
    gone = voffice("show", "berry-demo", "--version", "1", redis_url=url)
    assert gone.returncode == 1 and "version 1 of 'berry-demo' is not kept (kept: 2)" in gone.stderr
    history = voffice("history", "berry-demo", redis_url=url).stdout
    assert "[current]" in history.splitlines()[0] and "[not kept]" in history  # --keep 1 dropped v1
    assert voffice("load", str(SEED), redis_url=url).returncode == 0  # v3, keeps 10 again
    old = voffice("show", "berry-demo", "--version", "2", redis_url=url).stdout
    assert "v2  (not current: v3 is)" in old and "[DISABLED]" in old
    assert "[kept, restorable]" in voffice("history", "berry-demo", redis_url=url).stdout


def test_a_utf8_bom_is_read(tmp_path: Any) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + SEED.read_bytes())
    result = voffice("validate", str(path))
    assert result.returncode == 0 and "1 valid account(s), 0 error(s)" in result.stdout + result.stderr


def test_simulate_refuses_a_local_time_that_does_not_exist_and_flags_one_that_happens_twice() -> None:
    from .conftest import EXAMPLES

    args = ["simulate", "--number", "+12125550140", "--caller", "+15551234567", "--config", str(EXAMPLES / "newyork-dst.json")]
    gap = voffice(*args, "--at", "2026-03-08T02:30")
    assert gap.returncode == 2 and "2026-03-08 02:30 does not exist in America/New_York" in gap.stderr
    fold = voffice(*args, "--at", "2026-11-01T01:30")
    assert fold.returncode == 0 and "happens twice in America/New_York (UTC-04:00, then UTC-05:00)" in fold.stderr
    assert "2026-11-01T01:30:00-04:00" in fold.stdout
    assert voffice(*args, "--at", "2026-03-08T02:30-05:00").returncode == 0  # an offset says which instant


def test_thousands_of_errors_are_capped_and_sorted_by_number(tmp_path: Any, seed_doc: dict[str, Any]) -> None:
    doc = json.loads(json.dumps(seed_doc))
    doc["sounds"] += [{"id": f"s{i}", "name": f"s{i}", "text": ""} for i in range(1200)]  # empty text: an error each
    path = tmp_path / "many.json"
    path.write_text(json.dumps(doc, ensure_ascii=False))
    result = voffice("validate", str(path))
    lines = [ln for ln in result.stderr.splitlines() if "/sounds/" in ln]
    assert result.returncode == 1 and len(lines) == 50
    numbers = [int(ln.split("/sounds/")[1].split("/")[0].split(":")[0]) for ln in lines]
    assert numbers == sorted(numbers) and numbers[:3] == [5, 6, 7]  # 5, 6, 7, ... not 10, 100, 1000
    assert "... and" in result.stderr and "more (--all shows every one)" in result.stderr
    assert len([ln for ln in voffice("validate", "--all", str(path)).stderr.splitlines() if "/sounds/" in ln]) > 1000


def test_simulate_and_coverage_default_to_now_and_this_week() -> None:
    from .conftest import EXAMPLES

    env_now = "2026-11-25T13:30:00+03:00"  # VOFFICE_NOW: what "now" is for every component
    import os
    import subprocess
    import time

    from .test_cli import VOFFICE

    env = {**os.environ, "VOFFICE_NOW": env_now, "VOFFICE_NOW_AT": f"{time.time():.3f}"}
    env.pop("VOFFICE_REDIS_URL", None)
    sim = subprocess.run([str(VOFFICE), "simulate", "--number", "+74951234567", "--caller", "+79031112233",
                          "--config", str(EXAMPLES / "seed-office.json")], capture_output=True, text=True, env=env, timeout=60)
    assert sim.returncode == 0 and "at 2026-11-25T13:30" in sim.stdout and "(r1)" in sim.stdout
    cov = subprocess.run([str(VOFFICE), "coverage", "--config", str(EXAMPLES / "seed-office.json")], capture_output=True, text=True,
                         env=env, timeout=60)
    assert cov.returncode == 0 and "week 2026-W48" in cov.stdout


def test_simulate_says_why_higher_rules_did_not_match_and_the_total_ring_time() -> None:
    from .conftest import EXAMPLES

    args = ["simulate", "--number", "+74951234567", "--caller", "+79031112233", "--config", str(EXAMPLES / "seed-office.json")]
    saturday = voffice(*args, "--at", "2026-11-28T10:00").stdout
    assert "not Правило №1 (r1): not on a weekend day" in saturday
    assert "not Правило №3 (r3): not at 10:00 (its hours: 12:00-18:00)" in saturday
    weekday = voffice(*args, "--at", "2026-11-25T10:00", "--event", "timeout").stdout
    assert "ringing at most 1 min 20 s in all" in weekday  # four waves of 20 s


def test_a_store_wide_setting_says_how_many_versions_are_kept(redis_server: Any, tmp_path: Any, seed_doc: dict[str, Any]) -> None:
    url = redis_server.url
    assert "keep      10 versions" in voffice("settings", redis_url=url).stdout
    assert "keep      2 versions" in voffice("settings", "--keep", "2", redis_url=url).stdout
    for i in range(4):
        doc = json.loads(json.dumps(seed_doc))
        doc["operators"][0]["phone"] = f"+7916123000{i}"
        (tmp_path / f"v{i}.json").write_text(json.dumps(doc, ensure_ascii=False))
        assert voffice("load", str(tmp_path / f"v{i}.json"), redis_url=url).returncode == 0
    [row] = json.loads(voffice("list", "--json", redis_url=url).stdout)
    assert row["versions_kept"] == [4, 3]
