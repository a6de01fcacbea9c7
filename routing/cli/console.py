"""`voffice`: the command line NOC engineers and load testers use (DESIGN.md section 4).

Every user mistake ends as one line on stderr and exit code 1, never a traceback.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from datetime import datetime
from functools import wraps
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import redis

from routing.core.bulk import paused_gc
from routing.core.compiler import compile_account
from routing.core.engine import CompiledAccount
from routing.core.numbers import did_candidates
from routing.core.problems import ERROR, Problem
from routing.core.problems import errors as only_errors
from routing.core.scenario import Event, EventError
from routing.core.simulate import simulate
from routing.core.validation import SCHEMA_PATH, validate_paths
from routing.store import configs
from routing.store.reader import ConfigReader, StoreUnavailable

F = TypeVar("F", bound=Callable[..., Any])


class UserError(click.ClickException):
    """Printed as `voffice: error: ...`, exit code 1."""

    def show(self, file: Any = None) -> None:
        click.echo(f"voffice: error: {self.format_message()}", err=True)


def fail(message: str) -> NoReturn:
    raise UserError(message)


class UsageProblem(UserError):
    """An option given a value it cannot take: one line as every error, exit code 2."""

    exit_code = 2


def usage(message: str) -> NoReturn:
    raise UsageProblem(message)


def _bulk(fn: F) -> F:
    """For commands that may hold 100,000 documents at once (plan, load): no cyclic garbage
    collection while they run (routing.core.bulk.paused_gc), between the bulk steps too;
    otherwise each collection walks every document read so far (~15 s of a 100,000-account
    load, measured)."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with paused_gc():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def user_errors(fn: F) -> F:
    """Turn the expected failures of a command into one-line errors."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except configs.BadRedisURL as exc:
            usage(str(exc))
        except (configs.StoreError, EventError) as exc:
            fail(str(exc))
        except (redis.ConnectionError, redis.TimeoutError, StoreUnavailable) as exc:
            fail(f"cannot reach Redis at {configs.shown_url(configs.redis_url(kwargs.get('redis_url')))}: {exc}")
        except redis.RedisError as exc:
            fail(f"Redis error: {exc}")

    return wrapper  # type: ignore[return-value]


def private_webhooks() -> bool:
    """Webhooks to loopback and private addresses are refused at validation unless the
    environment says VOFFICE_ALLOW_PRIVATE_WEBHOOKS=1 (tests, a CRM on the LAN)."""
    import os

    return os.environ.get("VOFFICE_ALLOW_PRIVATE_WEBHOOKS") == "1"


def _checked_redis(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A Redis URL that cannot be used is a usage error (exit 2), its password never shown."""
    if value:
        try:
            configs.connect(value)
        except configs.BadRedisURL as exc:
            raise click.BadParameter(str(exc).removeprefix("--redis ")) from None
    return value


redis_option: Callable[[F], F] = click.option(
    "--redis", "redis_url", envvar="VOFFICE_REDIS_URL", default=None, metavar="URL", callback=_checked_redis,
    help=f"Redis URL (env VOFFICE_REDIS_URL; default {configs.DEFAULT_URL}).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="voffice", prog_name="voffice")
def main() -> None:
    """voffice: a carrier-grade router for virtual phone numbers."""


@main.command()
def schema() -> None:
    """Print the JSON Schema of account documents."""
    click.echo(SCHEMA_PATH.read_text(encoding="utf-8"), nl=False)


MAX_SHOWN = 50  # problems printed per file before "and N more"


def _natural(problem: Problem) -> tuple[Any, ...]:
    """File, then pointer with its numbers as numbers (/sounds/2 before /sounds/10)."""
    import re

    parts = tuple((0, int(x), "") if x.isdigit() else (1, 0, x) for x in re.split(r"/", problem.pointer) if x)
    return (problem.file, parts)


def _print_problems(problems: list[Problem], as_json: bool, show_all: bool = False) -> None:
    if as_json:
        click.echo(json.dumps([p.to_json() for p in problems], ensure_ascii=False, indent=2))
        return
    shown: dict[str, int] = {}
    hidden: dict[str, int] = {}
    for p in sorted(problems, key=_natural):
        if not show_all and shown.get(p.file, 0) >= MAX_SHOWN:
            hidden[p.file] = hidden.get(p.file, 0) + 1
            continue
        shown[p.file] = shown.get(p.file, 0) + 1
        click.echo(p.line(), err=p.severity == ERROR)
    for file, count in hidden.items():
        click.echo(f"{file}: ... and {count} more (--all shows every one)", err=True)


@main.command()
@click.argument("paths", nargs=-1, required=True, metavar="FILE|DIR...")
@click.option("--json", "as_json", is_flag=True, help="Print the problems as a JSON list.")
@click.option("--all", "show_all", is_flag=True, help=f"Print every problem (default: the first {MAX_SHOWN} per file).")
def validate(paths: tuple[str, ...], as_json: bool, show_all: bool) -> None:
    """Check account documents: schema, meaning, and across files (directories are read
    recursively). Exit 1 if any is invalid."""
    with paused_gc():  # see _bulk
        result = validate_paths(list(paths), allow_private_webhooks=private_webhooks())
        _print_problems(result.problems, as_json, show_all)
        if not as_json:
            errors = len(only_errors(result.problems))
            warnings = len(result.problems) - errors
            n = len(result.documents)
            click.echo(f"{n} valid account(s), {errors} error(s), {warnings} warning(s)", err=not result.ok)
    sys.exit(0 if result.ok else 1)


def _saved_documents(documents: list[tuple[str, dict[str, Any]]]) -> Any:
    """A saved plan's documents validated again (this voffice's rules may be newer)."""
    from routing.core.validation import ValidatedSet, cross_file_problems, validate_documents

    found = validate_documents(documents, allow_private_webhooks=private_webhooks())
    return ValidatedSet(documents, [p for problems in found for p in problems] + cross_file_problems(documents))


def _planned(paths: tuple[str, ...], redis_url: str | None,
             saved: list[tuple[str, dict[str, Any]]] | None = None) -> tuple[Any, list[Any], dict[str, list[Problem]]]:
    """Validate every file (or a saved plan's documents) and diff it against Redis; errors
    end the command (exit 1). Also: per changing account, the warnings it brings."""
    result = (_saved_documents(saved) if saved is not None
              else validate_paths(list(paths), allow_private_webhooks=private_webhooks(), with_compiled=True))
    errors = only_errors(result.problems)
    if errors:
        _print_problems(errors, False)
        fail(f"{len(errors)} error(s); nothing was loaded")
    r = configs.connect(redis_url, timeout=configs.bulk_timeout(len(result.documents)), connect_timeout=2.0)
    changes, problems = configs.plan_load(r, result.documents, result.compiled)
    if problems:
        _print_problems(problems, False)
        fail(f"{len(problems)} error(s); nothing was loaded")
    warnings: dict[str, list[Problem]] = {}
    for problem in result.problems:  # only warnings are left: the new versions' own, found above
        warnings.setdefault(problem.file, []).append(problem)
    return r, changes, _introduced(changes, warnings)


def _introduced(changes: list[Any], new_warnings: dict[str, list[Problem]] | None = None) -> dict[str, list[Problem]]:
    """Per changing account, the validation warnings the new version has and the current one
    has not. new_warnings: file -> the new version's warnings, where validation found them
    already (else its document is validated here). A current version is validated only when
    the new one has a warning: a change without any brings none."""
    from routing.core.problems import WARNING
    from routing.core.validation import validate_documents

    todo = [c for c in changes if not c.unchanged]
    if new_warnings is None:
        found = validate_documents([(c.file, c.doc) for c in todo], allow_private_webhooks=private_webhooks())
        new_warnings = {c.file: problems for c, problems in zip(todo, found, strict=True)}
    introduced = {c.account: [p for p in new_warnings.get(c.file, []) if p.severity == WARNING] for c in todo}
    before = [c for c in todo if c.old_doc is not None and introduced[c.account]]
    found = validate_documents([(c.file, c.old_doc) for c in before], allow_private_webhooks=private_webhooks())
    for change, problems in zip(before, found, strict=True):
        old = {(p.pointer, p.message) for p in problems if p.severity == WARNING}
        introduced[change.account] = [p for p in introduced[change.account] if (p.pointer, p.message) not in old]
    return introduced


def _print_plan(changes: list[Any], versions: dict[str, int] | None, quiet: bool = False, hint: bool = True,
                introduced_by: dict[str, list[Problem]] | None = None) -> tuple[int, int]:
    """Per account: the version it is planned against, every changed field (JSON pointer,
    old -> new), the warnings the change brings (`introduced_by` account, when the caller
    has them already); (accounts changing, warnings)."""
    from routing.core.diff import field_changes

    changed = introduced = 0
    for change in changes:
        if change.unchanged:
            if not quiet:
                click.echo(f"{change.account}: v{change.current} unchanged")
            continue
        changed += 1
        warnings = (introduced_by if introduced_by is not None else _introduced([change]))[change.account]
        introduced += len(warnings)
        if quiet:
            continue
        was = f" (was v{change.current})" if change.current else " (new)"
        if versions is None:
            apply = f" (apply with: voffice load --expect-version {change.account}={change.current} ...)" if hint else ""
            click.echo(f"{change.account}: would load{was}; planned against v{change.current}{apply}")
        else:
            click.echo(f"{change.account}: v{versions[change.account]}{was}")
        for field in field_changes(change.old_doc, change.doc) if change.old_doc else []:
            click.echo(f"  {field.line()}")
        if not change.old_doc:
            click.echo(f"  {change.summary[0]}")
        for warning in warnings:
            click.echo(f"  warning: {warning.pointer or '/'}: {warning.message}")
    return changed, introduced


def _confirm_replicated(r: Any, redis_url: str | None) -> None:
    """With Sentinel, a change only a master holds is lost if that master dies next: say so."""
    from routing.store import redis_client

    url = configs.redis_url(redis_url)
    if redis_client.replicas_confirming(r, url) == 0:
        click.echo("voffice: warning: no replica has confirmed the change yet (Redis replicates asynchronously; "
                   "a master failover now would lose it): check `voffice status`", err=True)


def _expectations(values: tuple[str, ...]) -> dict[str, int]:
    out = {}
    for value in values:
        account, sep, version = value.rpartition("=")
        if not sep or not account or not version.isdigit():
            raise click.BadParameter(f"{value!r}: ACCOUNT=VERSION, e.g. berry-demo=3 (0: a new account)", param_hint="--expect-version")
        out[account] = int(version)
    return out


@main.command()
@click.argument("paths", nargs=-1, required=True, metavar="FILE|DIR...")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 0 when nothing would change, 2 when something would, 1 on errors.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None, metavar="PLAN",
              help="Also save the plan (the documents and the versions planned against) for `voffice load --plan PLAN`.")
@redis_option
@user_errors
@_bulk
def plan(paths: tuple[str, ...], detailed_exitcode: bool, out_path: str | None, redis_url: str | None) -> None:
    """What `load` would change, field by field, the warnings it would bring, and the version
    each account is planned against; changes nothing. Directories are read recursively."""
    _r, changes, introduced = _planned(paths, redis_url)
    changed, warnings = _print_plan(changes, None, hint=out_path is None, introduced_by=introduced)
    click.echo(f"{len(changes)} account(s): {changed} would change, {len(changes) - changed} unchanged"
               + (f"; {warnings} warning(s) introduced" if warnings else ""))
    if out_path:
        from routing.store import saved_plan

        try:
            saved_plan.write(Path(out_path), changes)
        except OSError as exc:
            fail(f"{out_path}: cannot write the plan: {exc.strerror or exc}")
        click.echo(f"saved the plan to {out_path}; apply exactly it with: voffice load --plan {out_path}")
    sys.exit(2 if detailed_exitcode and changed else 0)


@main.command()
@click.argument("paths", nargs=-1, required=False, metavar="FILE|DIR...")
@click.option("--plan", "plan_path", type=click.Path(dir_okay=False), default=None, metavar="PLAN",
              help="Apply a plan saved by `voffice plan --out` (instead of files): exactly its documents, only if no "
                   "account changed since it was made.")
@click.option("--dry-run", is_flag=True, help="Validate and show the plan (as `voffice plan`); change nothing.")
@click.option("--expect-version", "expect", multiple=True, metavar="ACCOUNT=N",
              help="Load only if ACCOUNT is still at version N (what `plan` printed; 0: not loaded yet). Repeatable.")
@click.option("--fail-on-warning", is_flag=True, help="Load nothing if the change brings a validation warning.")
@click.option("--keep", default=None, type=click.IntRange(1, 1000),
              help="Versions kept per account (default: the store's setting, `voffice settings`; 10 unless changed).")
@click.option("--quiet", "-q", is_flag=True, help="Print only the totals.")
@redis_option
@user_errors
@_bulk
def load(paths: tuple[str, ...], plan_path: str | None, dry_run: bool, expect: tuple[str, ...], fail_on_warning: bool,
         keep: int | None, quiet: bool, redis_url: str | None) -> None:
    """Validate every file, then swap all accounts to their new versions atomically.
    Directories are read recursively.

    If any file is invalid, nothing is loaded; with --expect-version or --plan, nothing is
    loaded if someone changed an account since it was planned.
    """
    expected = _expectations(expect)
    saved = None
    if plan_path:
        from routing.store import saved_plan

        if paths:
            usage("give files or --plan PLAN, not both")
        try:
            saved = saved_plan.read(Path(plan_path))
        except saved_plan.PlanFileError as exc:
            fail(str(exc))
        expected = {**saved.planned_against, **expected}
    elif not paths:
        usage("name the files to load (FILE|DIR...) or a saved plan (--plan PLAN)")
    r, changes, introduced = _planned(paths, redis_url, saved.documents if saved else None)
    by_account = {c.account: c for c in changes}
    unknown = sorted(set(expected) - set(by_account))
    if unknown:
        raise click.BadParameter(f"{', '.join(unknown)}: not among the accounts being loaded", param_hint="--expect-version")
    for account, version in expected.items():
        if by_account[account].current != version:
            fail(f"{account} is at v{by_account[account].current}, planned against v{version}: it changed since; "
                 "plan again. Nothing was loaded")
    if dry_run:
        changed, warnings = _print_plan(changes, None, quiet, introduced_by=introduced)
    else:
        if fail_on_warning:
            warned = [w for found in introduced.values() for w in found]
            if warned:
                for w in warned:
                    click.echo(f"warning: {w.file}: {w.pointer or '/'}: {w.message}", err=True)
                fail(f"{len(warned)} warning(s) introduced; nothing was loaded (--fail-on-warning)")
        outcome = configs.apply_load(r, changes, keep or configs.keep_setting(r))
        _confirm_replicated(r, redis_url)
        changed, warnings = _print_plan(changes, outcome.versions, quiet, introduced_by=introduced)
    verb = "would change" if dry_run else "loaded"
    click.echo(f"{len(changes)} account(s): {changed} {verb}, {len(changes) - changed} unchanged"
               + (f"; {warnings} warning(s) introduced" if warnings else ""))


@main.command()
@click.argument("account")
@click.option("--to", "to_version", type=int, default=None, help="Version to restore (default: the one before the current).")
@click.option("--keep", default=None, type=click.IntRange(1, 1000), help="Versions kept (default: the store's setting).")
@click.option("--dry-run", is_flag=True, help="Show what the rollback would change, field by field; change nothing.")
@redis_option
@user_errors
def rollback(account: str, to_version: int | None, keep: int | None, dry_run: bool, redis_url: str | None) -> None:
    """Make an earlier version of ACCOUNT current again (recorded as a new version)."""
    r = configs.connect(redis_url)
    result = configs.rollback(r, account, to_version, keep or configs.keep_setting(r), allow_private_webhooks=private_webhooks(),
                              dry_run=dry_run)
    if dry_run:
        click.echo(f"{account}: rollback to v{result.changes[0].file.rsplit('@v', 1)[-1]}, as a new version:")
        _print_plan(result.changes, None, hint=False)
        return
    _confirm_replicated(r, redis_url)
    change = result.changes[0]
    click.echo(f"{account}: v{result.versions[account]} (was v{change.current}): {configs.history(r, account, 1)[0]['action']}")
    for line in change.summary:
        click.echo(f"  {line}")


@main.command(name="settings")
@click.option("--keep", type=click.IntRange(1, 1000), default=None, help="Set how many versions every account keeps.")
@redis_option
@user_errors
def settings_cmd(keep: int | None, redis_url: str | None) -> None:
    """The store-wide settings (shown; changed with an option)."""
    r = configs.connect(redis_url)
    if keep is not None:
        configs.set_keep(r, keep)
    click.echo(f"keep      {configs.keep_setting(r)} versions per account (older ones are deleted at the next load)")


@main.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print the accounts as a JSON list.")
@redis_option
@user_errors
def list_cmd(as_json: bool, redis_url: str | None) -> None:
    """Every loaded account: its version, numbers, versions kept, last change, and its manual
    override when one is stored (`voffice override ACCOUNT` tells whether it is in force)."""
    from routing.core.clock import now as clock_now
    from routing.store.overrides import all_overrides

    r = configs.connect(redis_url)
    found = configs.accounts(r)
    stored = all_overrides(r)
    moment = clock_now()
    for a in found:
        override = stored.get(a["account"])
        a["override"] = None if override is None else {**override.to_dict(), "expired": not (
            override.until is None or moment < override.until)}
    if as_json:
        click.echo(json.dumps(found, ensure_ascii=False, indent=2))
        return
    if not found:
        click.echo("no accounts loaded")
        return
    for a in found:
        override = stored.get(a["account"])
        shown = "" if override is None else (f"  OVERRIDE {override.describe()}"
                                             f"{' (expired)' if a['override']['expired'] else ''}")
        click.echo(f"{a['account']:<24} v{a['version']:<4} {len(a['numbers'])} number(s) {', '.join(a['numbers'][:3])}"
                   f"{' ...' if len(a['numbers']) > 3 else ''}  kept v{','.join(map(str, a['versions_kept']))}"
                   f"  {a['updated_at']} {a['action']} by {a['by']}{shown}")
    click.echo(f"{len(found)} account(s), {sum(len(a['numbers']) for a in found)} number(s)")


@main.command()
@click.argument("account")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--expect-version", type=click.IntRange(1), default=None, help="Refuse unless the account is at this version.")
@redis_option
@user_errors
def delete(account: str, yes: bool, expect_version: int | None, redis_url: str | None) -> None:
    """Unload ACCOUNT: its numbers are released at once; its versions and history are kept."""
    r = configs.connect(redis_url)
    current = configs.current_version(r, account)
    if not current:
        fail(f"account {account!r} is not loaded")
    if not yes:
        numbers = configs.describe(r, account)["numbers"]
        if not sys.stdin.isatty():
            raise click.UsageError(f"deleting {account!r} releases {', '.join(numbers)}: confirm with --yes")
        click.confirm(f"delete {account} v{current} and release {', '.join(numbers)}?", abort=True)
    version, released = configs.delete(r, account, expect_version or current)
    _confirm_replicated(r, redis_url)
    click.echo(f"{account}: deleted (was v{version}); released {', '.join(released) or 'no numbers'}; history kept")


@main.command()
@click.argument("account")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000), help="Newest versions shown.")
@click.option("--json", "as_json", is_flag=True, help="Print the versions as a JSON list.")
@redis_option
@user_errors
def history(account: str, limit: int, as_json: bool, redis_url: str | None) -> None:
    """The audit trail of ACCOUNT: versions, when, who, what changed."""
    entries = configs.history(configs.connect(redis_url), account, limit)
    if as_json:
        click.echo(json.dumps(entries, ensure_ascii=False, indent=2))
        return
    r = configs.connect(redis_url)
    kept = {int(v) for v in r.lrange(configs.account_key(account) + ":versions", 0, -1)}
    current = configs.current_version(r, account)
    for e in entries:
        if e["action"] == "delete":
            click.echo(f"--   {e['at']}  {e['user']}  delete (was v{e.get('previous')}; released {', '.join(e.get('numbers', []))})")
            continue
        if e["action"].startswith("override"):  # routing/store/overrides.py: no new version
            click.echo(f"--   {e['at']}  {e['user']}  {e['summary'][0] if e.get('summary') else e['action']}")
            continue
        mark = "current" if e["version"] == current else "kept, restorable" if e["version"] in kept else "not kept"
        click.echo(f"v{e['version']}  {e['at']}  {e['user']}  {e['action']}  {e.get('file', '')}  sha256:{e['sha256'][:12]}  [{mark}]")
        for line in e["summary"]:
            click.echo(f"    {line}")


@main.command()
@click.argument("what", metavar="NUMBER|ACCOUNT")
@click.option("--json", "as_json", is_flag=True, help="Print the metadata and the whole document as JSON.")
@click.option("--version", "version", type=click.IntRange(1), default=None, help="A kept version instead of the current one.")
@redis_option
@user_errors
def show(what: str, as_json: bool, version: int | None, redis_url: str | None) -> None:
    """Show the loaded version of an account, found by its id or one of its numbers."""
    r = configs.connect(redis_url)
    account = what
    if what[:1] in "+0123456789":
        countries = frozenset(c.decode() if isinstance(c, bytes) else str(c) for c in r.smembers("vo:countries"))
        owners = [o for n in did_candidates(what, countries) if (o := configs.owner_of(r, n))]
        if not owners:
            fail(f"number {what} is not in any loaded account")
        account = owners[0]
    info = configs.describe(r, account, version)
    if as_json:
        click.echo(json.dumps(info, ensure_ascii=False, indent=2))
        return
    doc = info["document"] or {}
    click.echo(f"account   {account}  ({doc.get('name', '')})")
    current = "" if info["version"] == info["current"] else f"  (not current: v{info['current']} is)"
    click.echo(f"version   v{info['version']}{current}  updated {info['updated_at']}  sha256:{(info['sha256'] or '')[:12]}")
    click.echo(f"kept      {', '.join('v' + str(v) for v in info['versions_kept'])}")
    click.echo(f"numbers   {' '.join(info['numbers'])}")
    click.echo(f"timezone  {doc.get('timezone')}  calendar {doc.get('calendar', {}).get('country', '-')}")
    for rule in sorted(doc.get("rules", []), key=lambda r: r["priority"]):
        who = f" callers {rule['caller_list']}" if rule.get("caller_list") else ""
        off = "  [DISABLED]" if rule.get("enabled") is False else ""
        click.echo(f"rule {rule['priority']:>3}  {rule['name']}: schedule {rule['schedule']}{who} -> {rule['scenario']}{off}")
    click.echo(f"default   -> {doc.get('default_scenario')}")


def _parse_at(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        usage(f"--at: {text!r} is not an ISO 8601 time such as 2026-11-28T13:00 or 2026-11-28T10:00:00Z")


def _account_from_file(path: str, number: str | None) -> CompiledAccount:
    """The one account of a --config file (checked to have `number`, if given)."""
    result = validate_paths([path], allow_private_webhooks=private_webhooks())
    errors = only_errors(result.problems)
    if errors:
        _print_problems(errors, False)
        fail(f"{path} is not valid ({len(errors)} error(s))")
    if len(result.documents) != 1:
        fail(f"--config must name one account document, {path} has {len(result.documents)}")
    doc = result.documents[0][1]
    account = CompiledAccount(compile_account(doc))
    countries = frozenset({account.country} if account.country else ())
    if number is not None and not set(did_candidates(number, countries)) & set(doc["numbers"]):
        fail(f"number {number} is not a number of account {doc['account']!r} ({', '.join(doc['numbers'])})")
    return account


@main.command(name="simulate")
@click.option("--number", required=True, help="The dialled virtual number (DID).")
@click.option("--caller", required=True, help="The caller's number as the trunk sends it ('anonymous' allowed).")
@click.option("--at", "at_text", default=None,
              help="ISO 8601 time; without an offset it is the account's local time. Default: now (VOFFICE_NOW if set).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="An account file instead of what is loaded in Redis.")
@click.option("--event", "events", multiple=True, help="digits:101 key:1 timeout invalid done no-answer busy answer:ID, in order.")
@click.option("--seed", default="", help="Seed for the random strategy (Kamailio uses the call id).")
@click.option("--override", "override_text", default=None, metavar="SCENARIO[@UNTIL]",
              help="Try a manual override (in force from --at) instead of the stored one.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole decision as JSON.")
@redis_option
@user_errors
def simulate_cmd(number: str, caller: str, at_text: str | None, config_path: str | None, events: tuple[str, ...], seed: str,
                 override_text: str | None, as_json: bool, redis_url: str | None) -> None:
    """What happens to a call, without placing it (the account's manual override included)."""
    from routing.cli.override_cmd import trial_override
    from routing.core.clock import now as clock_now
    from routing.core.override import Override

    at = _parse_at(at_text) if at_text else clock_now()
    parsed = [Event.parse(e) for e in events]
    override: Override | None = None
    if config_path:
        account = _account_from_file(config_path, number)
    else:
        reader = ConfigReader(redis_url, timeout=2.0)
        found = reader.account_for_number(number)
        if found is None:
            fail(f"number {number} is not in any loaded account")
        account = found
        override = reader.override_of(account.id)
    if override_text is not None:
        moment = account.local_time(at)
        override = trial_override(override_text, account, min(moment, clock_now()), after=moment, after_is="--at")
    if at.tzinfo is None:
        from routing.core.clock import wall_time_problem

        problem = wall_time_problem(at, account.tz)
        if problem is not None and problem[0] == "gap":
            usage(f"--at: {problem[1]}")
        if problem is not None:
            click.echo(f"note: --at {problem[1]}", err=True)
    result = simulate(account, number, caller, at, parsed, seed=seed, override=override)
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        click.echo(format_simulation(result))


def _rule_text(rule: dict[str, str] | None) -> str:
    from routing.core.engine import OVERRIDE_RULE_ID

    if rule is None:
        return "none matched: default scenario"
    return rule["name"] if rule["id"] == OVERRIDE_RULE_ID else f"{rule['name']} ({rule['id']})"


def format_simulation(result: dict[str, Any]) -> str:
    rule = result["rule"]
    lines = [
        f"{result['account']}  {result['number']} from {result['caller']}  at {result['local_time']} ({result['weekday']}, {result['day_type']} day)",
        f"rule      {_rule_text(rule)}",
        f"scenario  {result['scenario']['name']} ({result['scenario']['id']})",
    ]
    override = result.get("override")
    if override is not None and not override["applied"]:
        lines.insert(1, f"override  to {override['scenario']} ignored: {override['status']}")
    for skipped in result.get("skipped", []):
        lines.insert(-1, f"  not {skipped['name']} ({skipped['id']}): {skipped['why']}")
    for i, step in enumerate(result["steps"], 1):
        op = step["operation"]
        lines.append(f"{i}. {op['name']} [{op['type']}]")
        if "sound" in step:
            lines.append(f"     plays {step['sound']['name']}")
        for wave_no, wave in enumerate(step.get("waves", []), 1):
            who = ", ".join(f"{r['operator']} {r['phone']} {r['ring_seconds']}s" for r in wave)
            lines.append(f"     wave {wave_no}: {who}")
        for note in step.get("notes", []):
            lines.append(f"     ({note})")
        if step["event"]:
            lines.append(f"     -> {step['event']}")
    if result.get("ring_seconds"):
        total = result["ring_seconds"]
        lines.append(f"ringing at most {total // 60} min {total % 60} s in all")
    lines.append(f"end: {result['end']}")
    return "\n".join(lines)


@main.command()
@click.argument("what", metavar="[ACCOUNT|NUMBER]", required=False)
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="An account file instead of what is loaded in Redis (as `simulate --config`).")
@click.option("--week", default=None, help="ISO week, e.g. 2026-W48 (default: this week).")
@click.option("--slot", "slot_minutes", default=15, show_default=True, type=click.IntRange(5, 240), help="Slot length in minutes.")
@click.option("--png", "png_path", type=click.Path(dir_okay=False), help="Also draw the week as a heat map.")
@click.option("--override", "override_text", default=None, metavar="SCENARIO[@UNTIL]",
              help="Try a manual override in force from the start of the week (UNTIL HH:MM: its first in the week).")
@click.option("--json", "as_json", is_flag=True, help="Print the slots as JSON.")
@redis_option
@user_errors
def coverage(what: str | None, config_path: str | None, week: str | None, slot_minutes: int, png_path: str | None,
             override_text: str | None, as_json: bool, redis_url: str | None) -> None:
    """Which rule and scenario apply in each slot of a week, per caller list: of a loaded
    account (by id or one of its numbers) or of --config FILE. The account's manual
    override shows in the slots it covers."""
    from routing.cli.override_cmd import trial_override
    from routing.core.clock import now as clock_now
    from routing.core.coverage import format_text, parse_iso_week, render_png, week_coverage
    from routing.core.override import Override

    override: Override | None = None
    try:
        if week is None:
            year, number, _ = clock_now().isocalendar()
            week = f"{year}-W{number:02d}"
        monday = parse_iso_week(week)
    except ValueError as exc:
        usage(f"--week: {exc}")
    if config_path:
        account = _account_from_file(config_path, what if what and what.startswith("+") else None)
        if what and not what.startswith("+") and what != account.id:
            fail(f"{config_path} holds account {account.id!r}, not {what!r}")
    elif what is None:
        usage("name a loaded account (or one of its numbers), or give --config FILE")
    elif Path(what).is_file():
        usage(f"{what} is a file: give it as --config {what}")
    else:
        reader = ConfigReader(redis_url, timeout=2.0)
        found = reader.account_for_number(what) if what.startswith("+") else reader.account(what)
        if found is None:
            fail(f"{what!r} is not a loaded account or number (a file: --config FILE)")
        account = found
        override = reader.override_of(account.id)
    if override_text is not None:
        start = datetime.combine(monday, datetime.min.time()).replace(tzinfo=account.tz)
        override = trial_override(override_text, account, start, after_is="the start of the week")
    try:
        cov = week_coverage(account, monday, slot_minutes, override)
    except ValueError as exc:
        usage(f"--slot: {exc}")
    if as_json:
        click.echo(json.dumps(cov.to_json(), ensure_ascii=False, indent=2))
    else:
        click.echo(format_text(cov, account))
    if png_path:
        render_png(cov, account, png_path)
        click.echo(f"wrote {png_path}", err=as_json)


@main.group()
def bench() -> None:
    """Benchmarks (figures, not tests)."""


@bench.command(name="history")
@click.option("--events", default=50_000, show_default=True, type=click.IntRange(1000, 1_000_000), help="Backlog drained for capacity.")
@click.option("--rate", default=800, show_default=True, type=click.IntRange(1, 100_000),
              help="Call records per second for the pace run (the stack's highest zero-failure rate, `voffice bench sip`).")
@click.option("--seconds", default=10.0, show_default=True, type=click.FloatRange(1, 600), help="Length of the pace run.")
@click.option("--notices", default=20, show_default=True, type=click.IntRange(1, 1000), help="Missed calls timed to their mail.")
def bench_history(events: int, rate: int, seconds: float, notices: int) -> None:
    """Rows/s the history writer writes, its lag at RATE calls/s, and notification latency."""
    from voffice_bench.history import run_history_bench

    run_history_bench(events, rate, seconds, notices, echo=click.echo)


@bench.command(name="decide")
@click.option("--accounts", default=10_000, show_default=True, type=click.IntRange(1, 200_000), help="Generated accounts loaded.")
@click.option("--decisions", default=200_000, show_default=True, type=click.IntRange(1000, 10_000_000), help="Decisions timed.")
@click.option("--template", type=click.Path(exists=True, dir_okay=False), default=None, help="Account document to clone (default: the seed example).")
@click.option("--redis", "redis_url", default=None, metavar="URL", callback=_checked_redis, help="Use this Redis (default: start a throwaway redis-server).")
@user_errors
def bench_decide(accounts: int, decisions: int, template: str | None, redis_url: str | None) -> None:
    """Decisions per second and p50/p99 latency with ACCOUNTS compiled and cached."""
    from voffice_bench.decide import run_decide_bench

    path = Path(template) if template else Path(__file__).resolve().parents[2] / "examples" / "seed-office.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    run_decide_bench(doc, accounts, decisions, redis_url, click.echo)


@main.command(name="media-server", context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def media_server(args: tuple[str, ...]) -> None:
    """Run one media server (see `voffice media-server --help`)."""
    from voffice_media.__main__ import main as media_main

    media_main(list(args))


@main.command(name="call")
@click.option("--number", required=True, help="The virtual number to call.")
@click.option("--caller", default="+79031112233", show_default=True, help="The calling number (From user).")
@click.option("--dtmf", default="", help="Keys to press once the first prompt plays, e.g. 101.")
@click.option("--dtmf-mode", type=click.Choice(["rfc2833", "info"]), default="rfc2833", show_default=True,
              help="How the keys are sent: RFC 2833 events in the RTP, or SIP INFO (application/dtmf-relay).")
@click.option("--require-100rel", is_flag=True, help="Require reliable provisionals (RFC 3262) as PSTN gateways do, and PRACK them.")
@click.option("--delayed-offer", is_flag=True,
              help="An INVITE without SDP (Supported: 100rel): answer the prompt's offer in the PRACK, an operator's in the ACK.")
@click.option("--dtmf-after", default=1.5, show_default=True, type=float, help="Seconds into the prompt before pressing.")
@click.option("--message", "message_after", type=float, default=None, help="Once answered, wait this many seconds (prompt + beep) and speak a 7 s message.")
@click.option("--talk", default=2.0, show_default=True, type=float, help="Seconds to stay on an answered call.")
@click.option("--sip", "sip_addr", default="127.0.0.1:5060", show_default=True, help="Kamailio's HOST:PORT.")
@click.option("--timeout", default=120.0, show_default=True, type=float, help="Give up (exit 1) after this many seconds.")
@redis_option
@user_errors
def call_cmd(number: str, caller: str, dtmf: str, dtmf_mode: str, require_100rel: bool, delayed_offer: bool, dtmf_after: float,
             message_after: float | None, talk: float, sip_addr: str, timeout: float, redis_url: str | None) -> None:
    """Place a real test call (SIP + RTP) through the running stack and print what happened."""
    from routing.cli.call_tool import CallToolError, format_outcome, place_call

    host, _, port = sip_addr.rpartition(":")
    if not host or not port.isdigit():
        usage(f"--sip: {sip_addr!r} is not HOST:PORT")
    url = configs.redis_url(redis_url)
    try:
        outcome = place_call(number, caller, (host, int(port)), dtmf, dtmf_after, message_after, talk, timeout, url, dtmf_mode,
                             require_100rel, delayed_offer)
    except CallToolError as exc:
        fail(str(exc))
    account = None
    if outcome.record and outcome.record.get("account"):
        try:
            found = ConfigReader(url, timeout=2.0).account(outcome.record["account"])
            account = found.plain if found else None
        except StoreUnavailable:
            account = None
    click.echo(format_outcome(outcome, account))
    if not outcome.timeline:
        fail(f"no answer from {sip_addr}")


@bench.command(name="sip")
@click.option("--cps", default=50, show_default=True, type=click.IntRange(1, 5000), help="First rate, calls per second.")
@click.option("--seconds", default=10.0, show_default=True, type=click.FloatRange(1, 600), help="Seconds of calls at each rate.")
@click.option("--step", "cps_step", default=50, show_default=True, type=click.IntRange(1, 5000), help="Rate increment.")
@click.option("--max-cps", default=500, show_default=True, type=click.IntRange(1, 5000), help="Highest rate tried.")
@click.option("--children", default=4, show_default=True, type=click.IntRange(1, 64), help="Kamailio children, the same for both configurations.")
@click.option("--allocator", default="tlsf", show_default=True, type=click.Choice(["tlsf", "qm", "fm"]),
              help="Kamailio's memory manager (-x/-X), the same for both configurations; qm is Kamailio's own default.")
@click.option("--workdir", type=click.Path(file_okay=False), default=None, help="Logs and sipp statistics (default: a new temporary folder).")
@click.option("--caller", "caller_kind", type=click.Choice(["plain", "dtmf", "cancel-ringing", "cancel-prompt"]), default=None,
              help="What the callers do (a mix; default: plain, bench/sipp/uac.xml).")
@click.option("--gateway", "gateway_spec", default=None, metavar="answer|answer-after:N|busy[:N]|decline[:N]|503[:N]|no-answer",
              help="What the operator gateway does (a mix; default: answer at once); N in seconds (busy:N etc. ring N s first).")
@click.option("--inf", "inf_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Numbers and callers for sipp -inf (a mix; see `voffice bench numbers`).")
@click.option("--talk", "talk_ms", type=click.IntRange(0, 3_600_000), default=None, help="Talk time of answered calls, ms (a mix; default 200).")
@click.option("--expect", "expect_codes", default=None, metavar="CODES",
              help="Final statuses a mix's calls may end with, e.g. 200,480 (default: what the mix gives with the seed).")
@click.option("--load", "load_paths", multiple=True, metavar="FILE|DIR", help="Accounts for voffice's configuration (default: the seed).")
@click.option("--now", default=None, help="voffice's clock at the start (default: Wednesday lunch, 2026-11-25T13:30:00+03:00).")
@click.option("--voffice-only", is_flag=True, help="Run the voffice configuration alone (no native baseline).")
@click.option("--history", is_flag=True, help="voffice also writes the call history (PostgreSQL + history writer) while it runs.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None, metavar="FILE.png",
              help="Draw calls/s offered and answered and INVITE->200 p50/p99 per second over the run.")
@user_errors
def bench_sip(cps: int, seconds: float, cps_step: int, max_cps: int, children: int, allocator: str, workdir: str | None,
              caller_kind: str | None, gateway_spec: str | None, inf_path: str | None, talk_ms: int | None, expect_codes: str | None,
              load_paths: tuple[str, ...], now: str | None, voffice_only: bool, plot_path: str | None, history: bool) -> None:
    """Full calls per second through the stack (sipp callers -> Kamailio with the KEMI routing ->
    an answering operator gateway), side by side with a native Kamailio cfg relaying the same calls.
    --caller, --gateway, --inf, --talk, --expect make a mix of the load-tester kit (bench/sipp/,
    docs/load-testing.md)."""
    from voffice_bench.kit import TALK_MS, Gateway, Mix, MixError, parse_codes, parse_gateway
    from voffice_bench.sip import BenchError, run_sip_bench

    if max_cps < cps:
        usage(f"--max-cps ({max_cps}) is below --cps ({cps})")
    mix = None
    if any(v is not None for v in (caller_kind, gateway_spec, inf_path, talk_ms, expect_codes)) or load_paths or now:
        try:
            mix = Mix(caller=caller_kind or "plain", gateway=parse_gateway(gateway_spec) if gateway_spec else Gateway(),
                      talk_ms=TALK_MS if talk_ms is None else talk_ms, inf=Path(inf_path).resolve() if inf_path else None,
                      expect=parse_codes(expect_codes) if expect_codes else None, routing_known=not load_paths and not now)
        except MixError as exc:
            fail(str(exc))
    try:
        result = run_sip_bench(cps, cps_step, seconds, max_cps, click.echo, kamailio_children=children,
                               workdir=Path(workdir) if workdir else None, allocator=allocator, mix=mix,
                               voffice_only=voffice_only, plot=Path(plot_path) if plot_path else None,
                               load=load_paths, now=now, history=history)
    except BenchError as exc:
        fail(str(exc))
    errors = [run["error"] for run in (result["baseline"], result["voffice"]) if run and run["error"]]
    if errors:
        fail("; ".join(errors))


@bench.command(name="nodes")
@click.option("--nodes", "node_counts", default="1,3", show_default=True, metavar="N,N,...",
              help="Kamailio node counts compared in this run (DMQ between the nodes of each).")
@click.option("--cps", "rates", default="50,100,150,200", show_default=True, metavar="R,R,...",
              help="Rates tried in turn (calls/s, split over the nodes) until one is not held.")
@click.option("--seconds", default=10.0, show_default=True, type=click.FloatRange(1, 600), help="Seconds of calls at each rate.")
@click.option("--children", default=2, show_default=True, type=click.IntRange(1, 64), help="Kamailio children per node.")
@click.option("--workdir", type=click.Path(file_okay=False), default=None, help="Logs and sipp statistics (default: a new temporary folder).")
@user_errors
def bench_nodes(node_counts: str, rates: str, seconds: float, children: int, workdir: str | None) -> None:
    """What several Kamailio nodes cost per call against one, in the same run: the highest
    zero-failure rate and Kamailio's CPU per call (all nodes, and per node)."""
    import tempfile

    from routing.stack.local import StackError
    from voffice_bench.nodes import run_nodes_bench
    from voffice_bench.sip import BenchError

    def numbers(text: str, option: str) -> list[int]:
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if not parts or not all(p.isdigit() and int(p) > 0 for p in parts):
            usage(f"{option}: {text!r} is not a list of positive numbers, e.g. 1,3")
        return [int(p) for p in parts]

    counts, steps = numbers(node_counts, "--nodes"), numbers(rates, "--cps")
    folder = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="voffice-bench-nodes-"))
    click.echo(f"logs and sipp statistics in {folder}")
    try:
        run_nodes_bench(counts, steps, seconds, folder, click.echo, children=children)
    except (BenchError, StackError) as exc:
        fail(str(exc))


@bench.command(name="scale")
@click.option("--accounts", default=10_000, show_default=True, type=click.IntRange(1, 100_000), help="Generated accounts (2 numbers each).")
@click.option("--cps", default=200, show_default=True, type=click.IntRange(1, 2000), help="Calls per second.")
@click.option("--cache", "cache_limit", default=10_000, show_default=True, type=click.IntRange(1, 100_000),
              help="Decision forms each Kamailio worker keeps in its LRU (VOFFICE_CACHE_ACCOUNTS; every account is in the node store).")
@click.option("--calls", default=None, type=click.IntRange(1, 1_000_000), help="Calls to place (default: every number once).")
@click.option("--children", default=4, show_default=True, type=click.IntRange(1, 64), help="Kamailio children.")
@click.option("--workdir", type=click.Path(file_okay=False), default=None, help="Logs and sipp statistics (default: a new temporary folder).")
@user_errors
def bench_scale(accounts: int, cps: int, cache_limit: int, calls: int | None, children: int, workdir: str | None) -> None:
    """Thousands of accounts loaded, calls spread over every number through the stack: each
    call's route checked against the engine, each Kamailio process's memory sampled."""
    from voffice_bench.scale import ScaleError, run_scale

    try:
        result = run_scale(accounts, cps, cache_limit, click.echo, workdir=Path(workdir) if workdir else None,
                           children=children, calls=calls)
    except ScaleError as exc:
        fail(str(exc))
    if not result.ok:
        fail("scale run not OK (see above)")


@bench.command(name="numbers")
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--number", "numbers", multiple=True, metavar="E164", help="Numbers to call (default: every number loaded in Redis).")
@click.option("--config", "config_files", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Take the numbers of these account files instead of Redis.")
@click.option("--caller", "callers", multiple=True, metavar="E164", help="Calling numbers, taken in turn (default +79031112233).")
@click.option("--random", "random_order", is_flag=True, help="RANDOM instead of SEQUENTIAL: sipp picks a line at random for each call.")
@redis_option
@user_errors
def bench_numbers(out: str, numbers: tuple[str, ...], config_files: tuple[str, ...], callers: tuple[str, ...], random_order: bool,
                  redis_url: str | None) -> None:
    """Write OUT, a sipp injection file of numbers and callers (`number;caller` per line) for
    `voffice bench sip --inf OUT` or sipp -inf: the numbers loaded in Redis (vo:numbers), or
    --config files' numbers, or --number."""
    from voffice_bench.kit import MixError, number_pairs, write_numbers_csv

    chosen = list(numbers)
    if not chosen and config_files:
        for path in config_files:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
            chosen += [n for n in doc.get("numbers", []) if isinstance(n, str)]
    if not chosen and not config_files:
        chosen = sorted(k.decode() if isinstance(k, bytes) else str(k) for k in configs.connect(redis_url).hkeys("vo:numbers"))
        if not chosen:
            fail(f"no numbers loaded in Redis at {configs.redis_url(redis_url)} (voffice load ..., or --number/--config)")
    try:
        count = write_numbers_csv(Path(out), number_pairs(chosen, list(callers) or ["+79031112233"]),
                                  "RANDOM" if random_order else "SEQUENTIAL")
    except MixError as exc:
        fail(str(exc))
    click.echo(f"{out}: {count} numbers")


@bench.command(name="media")
@click.option("--calls", default=500, show_default=True, type=click.IntRange(1, 5000), help="Concurrent calls in one media server process.")
@click.option("--seconds", default=20.0, show_default=True, type=click.FloatRange(1, 3600), help="Measured seconds, once every call is up.")
@click.option("--sweep", "sweep_counts", default=None, metavar="N,N,...", help="Run these call counts in turn (instead of --calls); report the largest that holds.")
@click.option("--speech", is_flag=True, help="The callers talk (full level) instead of listening: in-band DTMF analysis on every frame.")
@click.option("--pin", is_flag=True, help="Server on the first CPU, callers on the others (on an otherwise idle machine).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@user_errors
def bench_media(calls: int, seconds: float, sweep_counts: str | None, speech: bool, pin: bool, as_json: bool) -> None:
    """CPU per call, send jitter p50/p99 and lost/late packets with CALLS concurrent calls
    (announcements in early media) in one media server process; target: p99 < 5 ms, nothing lost."""
    from voffice_bench.media import run_media_bench, sweep

    echo = (lambda _line: None) if as_json else click.echo
    result: dict[str, object]
    if sweep_counts:
        try:
            counts = [int(n) for n in sweep_counts.split(",") if n.strip()]
        except ValueError:
            usage(f"--sweep takes call counts separated by commas, not {sweep_counts!r}")
        if not counts or min(counts) < 1:
            usage("--sweep needs call counts of at least 1")
        result = sweep(counts, seconds, echo, pin=pin, speech=speech)
    else:
        result = run_media_bench(calls, seconds, echo, pin=pin, speech=speech)
    if as_json:
        click.echo(json.dumps(result, indent=2))


def _stack_config(run_dir: str | None, ports: dict[str, Any], **extra: Any) -> Any:
    from routing.stack.local import DEFAULT_RUN_DIR, StackConfig, remembered_redis

    redis_external = ports.pop("redis_external", None)
    config = StackConfig(run_dir=Path(run_dir) if run_dir else DEFAULT_RUN_DIR, **extra)
    for key, value in ports.items():
        if value is not None:
            setattr(config, key, value)
    config.redis_external = redis_external or (None if "load" in extra else remembered_redis(config.run_dir))
    if config.redis_external:
        config.components = tuple(c for c in config.components if c != "redis")
    return config


# Naming: an existing server to use is given by address (--redis URL, --database URL,
# --operator-gateway HOST:PORT, `call --sip HOST:PORT`); a port the stack listens on is --NAME-port.
def stack_options(fn: F) -> F:
    options = [
        click.option("--run-dir", envvar="VOFFICE_RUN_DIR", default=None, help="Pid files, logs and data (default: .run in the project)."),
        click.option("--redis", "redis_external", default=None, metavar="URL", callback=_checked_redis,
                     help="Use this existing Redis instead of starting one (`up` remembers it for `status`)."),
        click.option("--redis-port", type=click.IntRange(1, 65535), default=None,
                     help="The port of the Redis the stack starts (default 6479; not used with --redis)."),
        click.option("--sip-port", type=click.IntRange(1, 65535), default=None, help="Kamailio's SIP port (default 5060)."),
        click.option("--media-port", type=click.IntRange(1, 65535), default=None, help="First media server's SIP port (default 5070)."),
        click.option("--rtpengine-port", type=click.IntRange(1, 65535), default=None, help="rtpengine's ng port (default 2223)."),
        click.option("--postgres-port", type=click.IntRange(1, 65535), default=None,
                     help="The local PostgreSQL's port (default 5479; not used with --database)."),
        click.option("--web-port", type=click.IntRange(1, 65535), default=None, help="The cabinet's HTTP port (default 8080)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _ports(kw: dict[str, Any]) -> dict[str, Any]:
    return {k: kw.pop(k) for k in ("redis_external", "redis_port", "sip_port", "media_port", "rtpengine_port", "postgres_port",
                                "web_port")}


@main.command()
@click.option("--foreground", is_flag=True, help="Stay attached with logs; Ctrl-C stops everything.")
@click.option("--load", "load_paths", multiple=True, metavar="FILE|DIR", help="Configs to load (default: the seed example).")
@click.option("--operator-gateway", default="127.0.0.1:5080", show_default=True, metavar="HOST:PORT", help="Where E.164 operators are rung.")
@click.option("--media-servers", default=1, show_default=True, type=click.IntRange(1, 8), help="Media server processes (SIP ports from --media-port).")
@click.option("--now", envvar="VOFFICE_NOW", default=None, help="Start every clock at this ISO 8601 instant (env VOFFICE_NOW).")
@click.option("--transport", "transport_list", default="udp", show_default=True, metavar="udp[,tcp][,tls]",
              help="Kamailio's SIP transports: udp (always) and tcp on the SIP port, tls on --tls-port.")
@click.option("--tls-port", type=click.IntRange(1, 65535), default=None, help="Kamailio's TLS port (default: the SIP port + 1).")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), default=None,
              help="PEM certificate for TLS (default: a self-signed one for the host, made in the run dir).")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), default=None, help="Its PEM private key.")
@click.option("--database", "database_url", default=None, metavar="URL",
              help="The call history in this PostgreSQL (schema: `voffice db upgrade`); default: a cluster of its own in the run dir.")
@click.option("--keep-months", type=click.IntRange(1, 1200), default=None, help="Call history retention in whole months (default: all).")
@click.option("--nodes", type=click.IntRange(1, 5), default=1, show_default=True,
              help="Identical Kamailio nodes, each with its own rtpengine, joined by DMQ (docs/cluster.md): "
                   "SIP ports from --sip-port in steps of 2, rtpengine from --rtpengine-port, DMQ from --dmq-port.")
@click.option("--dmq-port", type=click.IntRange(1, 65535), default=5090, show_default=True, help="Node 1's DMQ port (with --nodes 2 or more).")
@stack_options
def up(foreground: bool, load_paths: tuple[str, ...], operator_gateway: str, media_servers: int, now: str | None,
       transport_list: str, tls_port: int | None, tls_cert: str | None, tls_key: str | None, database_url: str | None,
       keep_months: int | None, nodes: int, dmq_port: int, run_dir: str | None, **kw: Any) -> None:
    """Start Redis, PostgreSQL, rtpengine, the media server(s), Kamailio and the history writer
    on loopback, the seed loaded."""
    from routing.core.clock import ClockError
    from routing.proxy.call_step import GATEWAY
    from routing.stack.local import SEED, TRANSPORTS, Stack, StackError

    if not GATEWAY.fullmatch(operator_gateway):
        usage(f"--operator-gateway: {operator_gateway!r} is not HOST:PORT")
    transports = tuple(dict.fromkeys(t.strip().lower() for t in transport_list.split(",") if t.strip()))
    unknown = [t for t in transports if t not in TRANSPORTS]
    if unknown or "udp" not in transports:
        raise click.BadParameter(f"{transport_list!r}: udp, optionally with tcp and tls (e.g. udp,tcp,tls)",
                                 param_hint="--transport")
    if bool(tls_cert) != bool(tls_key):
        raise click.BadParameter("give both --tls-cert and --tls-key, or neither", param_hint="--tls-cert/--tls-key")
    config = _stack_config(run_dir, _ports(kw), operator_gateway=operator_gateway, media_servers=media_servers,
                           now=now, load=load_paths or (str(SEED),), transports=transports, tls_port=tls_port or 0,
                           tls_cert=tls_cert, tls_key=tls_key, history_keep_months=keep_months,
                           kamailio_nodes=nodes, dmq_port=dmq_port)
    if database_url:
        from routing.records.database import DatabaseError, check_url

        try:
            check_url(database_url)
        except DatabaseError as exc:
            fail(str(exc))
        config.database_url = database_url
        config.components = tuple(c for c in config.components if c != "postgres")
    stack = Stack(config, click.echo)
    try:
        stack.start(detach=not foreground)
    except (StackError, ClockError) as exc:
        fail(str(exc))
    if "web" in config.components:
        _first_credentials(config)
    sip = " ".join(f"{t}:{config.host}:{config.sip_tls_port if t == 'tls' else config.sip_port}" for t in config.transports)
    if config.clustered:
        sip = " ".join(f"{config.host}:{port}" for port in config.sip_ports()) + f" ({nodes} nodes, DMQ {config.dmq_ports()})"
    click.echo(f"SIP       {sip}   Redis {config.redis_url}   operator gateway {operator_gateway}")
    if now:
        click.echo(f"clock     starts at {now}")
    if not foreground:
        click.echo("stop with: voffice down")
        return
    click.echo("running in the foreground; Ctrl-C stops everything")
    stack.wait()
    stack.stop()
    click.echo("stopped")


FIRST_PASSWORDS = 5


def _first_credentials(config: Any) -> None:
    """The cabinet's address, and the credentials it has none of yet, printed this once: a NOC
    token when there is none, a password for each account loaded now that has none. Later
    `up`s print none (`voffice token create --noc`, `voffice password ACCOUNT` make more)."""
    import secrets

    from routing.store import credentials

    r = configs.connect(config.redis_url)
    click.echo(f"cabinet   http://{config.host}:{config.web_port}/console   API http://{config.host}:{config.web_port}/api/docs")
    if not credentials.tokens(r):
        token, _info = credentials.create_token(r, "first token, made by voffice up")
        click.echo(f"          NOC token (shown once): {token}")
    accounts = _loaded_accounts(config.load)
    if len(accounts) > FIRST_PASSWORDS:
        click.echo("          subscriber passwords: `voffice password ACCOUNT` (too many accounts to print)")
        return
    for account in accounts:
        if credentials.password_hash(r, account) is None:
            password = secrets.token_urlsafe(12)
            credentials.set_password(r, account, password)
            click.echo(f"          subscriber login (shown once): account {account}, password {password}")


def _loaded_accounts(paths: tuple[str, ...]) -> list[str]:
    result = validate_paths(list(paths))
    return [str(doc["account"]) for _path, doc in result.documents] if result.ok else []


@main.command()
@stack_options
def down(run_dir: str | None, **kw: Any) -> None:
    """Stop the stack started by `voffice up`."""
    from routing.stack.local import down as stack_down

    stack_down(_stack_config(run_dir, _ports(kw)), click.echo)


@main.command()
@stack_options
def status(run_dir: str | None, **kw: Any) -> None:
    """Health of each component (sipsak OPTIONS for the SIP parts); exit 1 if any is down."""
    from routing.stack.local import status as stack_status

    rows = stack_status(_stack_config(run_dir, _ports(kw)))
    width = max([13, *(len(name) + 1 for name, _ok, _detail in rows)])  # 13: as always, unless a node's name is longer
    for name, ok, detail in rows:
        click.echo(f"{name:<{width}}{'up' if ok else 'DOWN':<6}{detail}")
    sys.exit(0 if all(ok for _, ok, _ in rows) else 1)


# --- call history and notifications (routing/records) ---------------------------------------

database_option = click.option(
    "--database", "database_url", envvar="VOFFICE_DATABASE_URL", default=None, metavar="URL",
    help="PostgreSQL URL of the call history (env VOFFICE_DATABASE_URL; default: the stack's own, see `voffice up`).",
)


def _database_url(url: str | None) -> str:
    """The given URL, else the local stack's cluster (`voffice up` wrote its URL in the run dir)."""
    from routing.stack.local import DEFAULT_RUN_DIR

    if url:
        return url
    written = DEFAULT_RUN_DIR / "database.url"
    if written.exists():
        return written.read_text().strip()
    fail("no --database given and no local stack's database (.run/database.url): start one with `voffice up`")


def database_errors(fn: F) -> F:
    """Database failures as one line (the URL's password never shown)."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import psycopg

        from routing.records.database import DatabaseError, one_line, redact

        try:
            return fn(*args, **kwargs)
        except DatabaseError as exc:
            fail(str(exc))
        except psycopg.Error as exc:
            fail(f"database error ({redact(kwargs.get('database_url') or '')}): {one_line(exc)}")

    return wrapper  # type: ignore[return-value]


@main.group()
def db() -> None:
    """The call-history database (PostgreSQL)."""


@db.command(name="upgrade")
@database_option
@database_errors
def db_upgrade(database_url: str | None) -> None:
    """Apply the schema migrations this voffice has and the database lacks."""
    from routing.records import database

    url = _database_url(database_url)
    with database.connect(url) as conn:
        applied = database.upgrade(conn)
        version = database.current_version(conn)
    click.echo(f"applied {', '.join(f'{v:04d}' for v in applied)}; schema version {version}" if applied
               else f"up to date: schema version {version}")


def _when(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        usage(f"{option} {text!r}: expected an ISO 8601 date or time, e.g. 2026-11-25 or 2026-11-25T13:00+03:00")
    if value.tzinfo is None:
        from routing.core.clock import now as clock_now

        value = value.replace(tzinfo=clock_now().astimezone().tzinfo)
    return value


@main.command(name="calls")
@click.argument("what", metavar="ACCOUNT|NUMBER")
@click.option("--from", "since", default=None, metavar="WHEN", help="Calls that started at or after (ISO 8601).")
@click.option("--to", "until", default=None, metavar="WHEN", help="Calls that started before (ISO 8601).")
@click.option("--status", type=click.Choice(["answered", "missed", "voicemail", "fax", "failed"]), default=None, help="Only calls that ended so.")
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(1, 1_000_000), help="Newest calls shown.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header row, for spreadsheets and billing.")
@database_option
@database_errors
def calls_cmd(what: str, since: str | None, until: str | None, status: str | None, limit: int, as_csv: bool,
              database_url: str | None) -> None:
    """The call history of an account or a virtual number, newest first."""
    import csv

    from routing.records import database

    start, end = _when(since, "--from"), _when(until, "--to")
    is_number = what.startswith("+") or what.isdigit()
    with database.connect(_database_url(database_url)) as conn:
        found = database.calls(conn, account=None if is_number else what, number=what if is_number else None,
                               since=start, until=end, status=status, limit=limit)
    if as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        columns = [*database.CALL_COLUMNS, "left_kind", "left_path", "left_pdf", "left_duration", "left_pages"]
        writer.writerow(columns)
        for row in found:
            writer.writerow(["" if row[c] is None else row[c].isoformat() if isinstance(row[c], datetime) else row[c]
                             for c in columns])
        return
    if not found:
        click.echo(f"no calls for {what}" + (f" with status {status}" if status else ""))
        return
    for row in found:
        talk = f" talk {row['talk_seconds']:.0f}s" if row["talk_seconds"] else ""
        by = f" by {row['answered_by']}" if row["answered_by"] else ""
        left = f" -> {row['left_kind']} {row['left_duration'] or ''}".rstrip() if row["left_kind"] else ""
        click.echo(f"{row['started_at'].astimezone():%Y-%m-%d %H:%M:%S}  {row['number']:<14} {row['caller']:<14} "
                   f"{row['status']:<9}{by}{talk}{left}  rule {row['rule'] or '-'} / {row['scenario']}  {row['call_id']}")


@main.command(name="history-writer")
@redis_option
@database_option
@click.option("--name", default="history-1", show_default=True, help="This consumer's name in the `history` group.")
@click.option("--keep-months", type=click.IntRange(1, 1200), default=None, help="Drop whole months older than this (default: keep all).")
@user_errors
@database_errors
def history_writer(redis_url: str | None, database_url: str | None, name: str, keep_months: int | None) -> None:
    """Write voffice:events into the call history until SIGTERM (started by `voffice up`)."""
    import logging
    import signal

    from routing.records.history import HistoryWriter

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    writer = HistoryWriter(configs.redis_url(redis_url), _database_url(database_url), name=name, keep_months=keep_months)
    signal.signal(signal.SIGTERM, lambda *_: writer.stop.set())
    signal.signal(signal.SIGINT, lambda *_: writer.stop.set())
    writer.run()


@main.command(name="node-store")
@redis_option
@click.option("--dir", "store_dir", required=True, type=click.Path(file_okay=False), envvar="VOFFICE_NODE_STORE",
              help="The node store's directory (env VOFFICE_NODE_STORE): one per machine, read by every worker on it.")
@click.option("--keep-retired", type=click.IntRange(1), default=43200, show_default=True, metavar="SECONDS",
              help="Keep a replaced version this long for the calls still on it (the longest call).")
@user_errors
def node_store_cmd(redis_url: str | None, store_dir: str, keep_retired: int) -> None:
    """Keep this machine's node store in step with Redis until SIGTERM (started by `voffice up`).

    Every Kamailio worker and media server given VOFFICE_NODE_STORE decides from it: all
    accounts in one memory map per machine, instead of a cache per process."""
    import signal
    import threading

    from routing.store.node_mirror import NodeMirror

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    mirror = NodeMirror(configs.redis_url(redis_url), Path(store_dir), keep_retired=keep_retired,
                        echo=lambda line: click.echo(line, err=True))
    started = time.monotonic()
    while not stop.is_set():
        try:
            fetched = mirror.sync_all()
            break
        except (redis.RedisError, OSError) as exc:
            click.echo(f"Redis at {configs.shown_url(mirror.url)}: {exc}; retrying", err=True)
            stop.wait(1.0)
    else:
        return
    meta = mirror.store.meta()
    click.echo(f"node store {store_dir}: {len(mirror.store.current())} accounts at generation {meta['generation']}, "
               f"{fetched} versions fetched in {time.monotonic() - started:.1f} s; following vo:changes", err=True)
    mirror.run(stop.is_set)


@main.command(name="notifier")
@redis_option
@database_option
@click.option("--smtp", "smtp_url", envvar="VOFFICE_SMTP_URL", default=None, metavar="URL",
              help="SMTP relay: smtp://[user[:password]@]host[:port][?starttls=1] or smtps://... (env VOFFICE_SMTP_URL).")
@click.option("--maildir", type=click.Path(file_okay=False), default=None, help="Without a relay: deliver mail into this Maildir.")
@click.option("--mail-from", default=None, metavar="ADDRESS", help="The sender of notification mail (default voffice@<host>).")
@click.option("--link-base", default=None, metavar="URL", help="Where recordings are fetched from, for accounts whose policy is 'link'.")
@click.option("--allow-private-webhooks", is_flag=True, envvar="VOFFICE_ALLOW_PRIVATE_WEBHOOKS",
              help="Let webhooks reach loopback and private addresses (tests, a CRM on the LAN).")
@click.option("--retry-base", default=5.0, show_default=True, type=click.FloatRange(0.01, 3600), help="First retry delay (s), doubling.")
@click.option("--name", default="notifier-1", show_default=True, help="This consumer's name in the `notifier` group.")
@user_errors
@database_errors
def notifier_cmd(redis_url: str | None, database_url: str | None, smtp_url: str | None, maildir: str | None,
                 mail_from: str | None, link_base: str | None, allow_private_webhooks: bool, retry_base: float, name: str) -> None:
    """Send voicemail, fax and missed-call notices (email, webhooks) until SIGTERM (started by `voffice up`)."""
    import logging
    import signal

    from routing.records.mail import DeliveryError, parse_smtp_url
    from routing.records.notifier import Channels, Notifier

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        smtp = parse_smtp_url(smtp_url) if smtp_url else None
    except (DeliveryError, ValueError) as exc:
        usage(f"--smtp: {exc}")
    if smtp is None and maildir is None:
        usage("give --smtp URL (a relay) or --maildir DIR (local delivery)")
    channels = Channels(smtp=smtp, maildir=Path(maildir) if maildir else None, allow_private_webhooks=allow_private_webhooks,
                        link_base=link_base, retry_base=retry_base)
    if mail_from:
        channels.sender = mail_from
    notifier = Notifier(configs.redis_url(redis_url), _database_url(database_url), channels, name=name)
    signal.signal(signal.SIGTERM, lambda *_: notifier.stop.set())
    signal.signal(signal.SIGINT, lambda *_: notifier.stop.set())
    notifier.run()


@main.command(name="deliveries")
@click.argument("account", required=False)
@click.option("--failed", is_flag=True, help="Only those given up on.")
@click.option("--retry", "retry_ids", multiple=True, type=int, metavar="ID", help="Send this delivery again (repeatable).")
@click.option("--retry-failed", is_flag=True, help="Send every failed delivery (of ACCOUNT, if given) again.")
@click.option("--limit", default=200, show_default=True, type=click.IntRange(1, 100_000), help="Newest deliveries shown.")
@database_option
@database_errors
def deliveries_cmd(account: str | None, failed: bool, retry_ids: tuple[int, ...], retry_failed: bool, limit: int,
                   database_url: str | None) -> None:
    """Notifications sent, pending and failed (email and webhooks), newest first; retry on demand."""
    from routing.records import database

    with database.connect(_database_url(database_url)) as conn:
        if retry_ids or retry_failed:
            count = database.retry(conn, retry_ids, all_failed=retry_failed, account=account)
            click.echo(f"{count} deliver{'y' if count == 1 else 'ies'} queued again")
            return
        found = database.deliveries(conn, account=account, failed=failed, limit=limit)
    if not found:
        click.echo("no deliveries" + (" failed" if failed else "") + (f" for {account}" if account else ""))
        return
    for row in found:
        target = row["target"] if row["channel"] == "email" else row["target"].split("?")[0]
        when = row["sent_at"] or row["created_at"]
        error = f"  last error: {row['last_error']}" if row["last_error"] and row["status"] != "sent" else ""
        click.echo(f"{row['id']:>7}  {when.astimezone():%Y-%m-%d %H:%M:%S}  {row['account']:<16} {row['kind']:<9} "
                   f"{row['channel']:<7} {row['status']:<7} x{row['attempts']}  {target}{error}")


@main.command(name="webhook-secret")
@click.argument("account")
@click.option("--rotate", is_flag=True, help="Replace it (receivers must take the new one).")
@redis_option
@user_errors
def webhook_secret_cmd(account: str, rotate: bool, redis_url: str | None) -> None:
    """Show (made on first use) or rotate the account's webhook signing secret (kept in Redis)."""
    from routing.records.notifier import webhook_secret

    client = configs.connect(redis_url)
    if not client.sismember("vo:accounts", account):
        fail(f"no loaded account {account!r}")
    click.echo(webhook_secret(client, account, rotate=rotate))


import routing.cli.web_cmd  # noqa: E402,F401  (`voffice web`, `token`, `password`: they register themselves)


def run() -> None:
    """The `voffice` command. Click's usage errors (an unknown option, a bad value) are
    printed as one line like every other error, naming where help is, with exit code 2."""
    try:
        main.main(prog_name="voffice", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:  # bare `voffice`: its help, as click prints it
        click.echo(exc.format_message(), err=True)
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else "voffice"
        click.echo(f"voffice: error: {exc.format_message()} (see: {where} --help)", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("voffice: aborted", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:  # `voffice calls ... | head`
        sys.exit(0)
    sys.exit(0)


if __name__ == "__main__":  # `python -m routing.cli.console` (how `voffice up` starts its processes)
    # The module proper, not this __main__ copy: commands in other modules (routing.cli.web_cmd,
    # override_cmd) register themselves on its `main`.
    from routing.cli import console

    console.run()
else:
    from routing.cli.override_cmd import override_cmd

    main.add_command(override_cmd)
