"""`voffice override ACCOUNT`: the manual override (the day/night switch) from the NOC.

Show it, set it (`--scenario ID [--until T]`) or clear it (`--clear`); the store
(routing/store/overrides.py) announces it to every worker at once, with no config load.
"""

from __future__ import annotations

import getpass
import json
import os
from datetime import datetime
from typing import Any

import click

from routing.cli.console import fail, redis_option, usage, user_errors
from routing.core.engine import CompiledAccount
from routing.core.override import BadTime, Override, OverrideError, parse_trial
from routing.store import configs, overrides


def trial_override(text: str, account: CompiledAccount, start: datetime, after: datetime | None = None,
                   after_is: str = "the start") -> Override:
    """`--override SCENARIO[@UNTIL]` of simulate and coverage (not stored)."""
    try:
        return parse_trial(text, account.roots, account.tz, start, after, after_is)
    except BadTime as exc:
        usage(str(exc).replace("--until", "--override ...@UNTIL:", 1))
    except OverrideError as exc:
        fail(str(exc))


def format_status(status: dict[str, Any]) -> str:
    override = status["override"]
    if override is None:
        return f"{status['account']}: no override, the rules decide"
    until = status["until_local"] or "cleared"
    state = status["status"]
    if state == "scenario missing":
        state = "ignored: the current version has no such scenario, the rules decide"
    elif state == "expired":
        state = "expired, the rules decide"
    return (f"{status['account']}: calls go to {override['scenario']} until {until} [{state}]\n"
            f"set by {override['set_by'] or '?'} at {status['set_at_local']}")


@click.command(name="override")
@click.argument("account")
@click.option("--scenario", default=None, help="Send the account's calls to this scenario from now on.")
@click.option("--until", "until", default=None, metavar="T",
              help="Until when: HH:MM (next), 2026-12-07T09:00 (the account's time) or with an offset. Default: until cleared.")
@click.option("--clear", is_flag=True, help="Back to the rules.")
@click.option("--json", "as_json", is_flag=True, help="Print the override as JSON.")
@redis_option
@user_errors
def override_cmd(account: str, scenario: str | None, until: str | None, clear: bool, as_json: bool,
                 redis_url: str | None) -> None:
    """Show, set or clear ACCOUNT's manual override: its calls go to one scenario now,
    before the rules, until a given time or until cleared. No config load is needed."""
    if clear and (scenario or until):
        usage("--clear takes no --scenario or --until")
    if until is not None and scenario is None:
        usage("--until needs --scenario")
    r = configs.connect(redis_url)
    who = os.environ.get("USER") or getpass.getuser()
    if clear:
        cleared = overrides.clear_override(r, account, who)
        if not as_json:
            click.echo(f"{account}: override cleared, the rules decide" if cleared else f"{account}: had no override")
    elif scenario is not None:
        try:
            overrides.set_override(r, account, scenario, until, who)
        except overrides.BadOverrideTime as exc:
            usage(str(exc))
    status = overrides.override_status(r, account)
    if as_json:
        click.echo(json.dumps(status, ensure_ascii=False, indent=2))
    elif not clear:
        click.echo(format_status(status))
