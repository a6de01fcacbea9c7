"""Manual overrides in Redis: one per account, seen by every worker without a config load.

    vo:overrides    hash  account id -> JSON of `core.override.Override.to_dict()`

Setting or clearing one is announced exactly as a load is (configs.py): one Lua script
writes it, bumps `vo:generation`, appends the message to `vo:changes` and publishes it on
`vo:invalidate`, with the payload `{"accounts": {}, "numbers": {}, "overrides": {id: dict
or null}}`. Every reader (reader.ConfigReader, the node store's mirror) therefore keeps an
account -> override map current from the messages it already follows, catches up from the
log when it missed one and re-reads the hash when it resyncs: a call pays no Redis round
trip for it. An expired override needs nothing: `engine.decide` ignores it (it stays in the
hash, shown as expired, until cleared or replaced); deleting an account clears its override.

The functions the CLI (`voffice override`) and the cabinet's API call:

    set_override(r, account, scenario, until, set_by) -> Override
        `until`: None (until cleared), an aware datetime, or text as `--until` takes it
        (HH:MM, an ISO 8601 time with or without an offset; without: the account's zone).
        Refused (OverrideError, a StoreError: one line for the user) when the account is
        not loaded, the scenario is not in its current version, or `until` is not later.
    clear_override(r, account, by) -> bool      False: there was none (nothing announced)
    (both write an entry to the account's history: `voffice history` shows who and when)
    get_override(r, account) -> Override | None
    all_overrides(r) -> dict[str, Override]
    override_status(r, account, at=None) -> dict   what `voffice override ACCOUNT --json` prints
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import msgpack
import redis

from routing.core.clock import now
from routing.core.engine import CompiledAccount
from routing.core.override import BadTime, Override, local_text, parse_until
from routing.core.override import OverrideError as _ParseError
from routing.store.configs import _LOG_CHANGE, OVERRIDES, StoreError, current_version, utc, version_key
from routing.store.reader import parse_override, read_overrides


class OverrideError(StoreError):
    """An override refused for a reason the user can act on (one line)."""


class BadOverrideTime(OverrideError):
    """`until` text that is not a time (the CLI's usage error, exit 2)."""


# ARGV[1] account, ARGV[2] the version the scenario was checked against (0: any, a clear),
# ARGV[3] the override's JSON ('' : clear), ARGV[4] the message payload (JSON), ARGV[5] the
# audit entry for the account's history (JSON)
_SET = """
local current = tonumber(redis.call('HGET', 'vo:account:' .. ARGV[1], 'current') or '0')
if current == 0 then return {'missing'} end
if tonumber(ARGV[2]) ~= 0 and current ~= tonumber(ARGV[2]) then return {'conflict', tostring(current)} end
if ARGV[3] == '' then
  if redis.call('HDEL', 'vo:overrides', ARGV[1]) == 0 then return {'none'} end
else
  redis.call('HSET', 'vo:overrides', ARGV[1], ARGV[3])
end
redis.call('LPUSH', 'vo:account:' .. ARGV[1] .. ':history', ARGV[5])
redis.call('LTRIM', 'vo:account:' .. ARGV[1] .. ':history', 0, 999)
local generation = redis.call('INCR', 'vo:generation')
local message = generation .. ' ' .. ARGV[4]
{LOG}
redis.call('PUBLISH', 'vo:invalidate', message)
return {'ok', tostring(generation)}
""".replace("{LOG}", _LOG_CHANGE)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _current(r: redis.Redis, account: str) -> tuple[int, CompiledAccount]:
    version = current_version(r, account)
    raw = r.get(version_key(account, version)) if version else None
    if raw is None:
        raise OverrideError(f"account {account!r} is not loaded")
    return version, CompiledAccount(msgpack.unpackb(raw, raw=False))


def _announce(r: redis.Redis, account: str, version: int, value: dict[str, Any] | None, by: str, what: str) -> str:
    payload = json.dumps({"accounts": {}, "numbers": {}, "overrides": {account: value}}, ensure_ascii=False)
    stored = json.dumps(value, ensure_ascii=False) if value is not None else ""
    entry = json.dumps({"version": version or None, "at": utc(time.time()), "user": by,
                        "action": "override" if value is not None else "override cleared", "summary": [what]},
                       ensure_ascii=False)
    return _text(r.eval(_SET, 0, account, version, stored, payload, entry)[0])


def set_override(r: redis.Redis, account: str, scenario: str, until: datetime | str | None, set_by: str,
                 at: datetime | None = None) -> Override:
    """Send ACCOUNT's calls to SCENARIO from now (`at`) until `until` (see the module docstring)."""
    for _ in range(3):  # a load between our read and the script: check the scenario again
        version, compiled = _current(r, account)
        if scenario not in compiled.roots:
            raise OverrideError(f"account {account!r} has no scenario {scenario!r} "
                                f"(its scenarios: {', '.join(compiled.roots)})")
        set_at = (at or now()).replace(microsecond=0)
        if isinstance(until, str):
            try:
                moment: datetime | None = parse_until(until, compiled.tz, set_at)
            except BadTime as exc:
                raise BadOverrideTime(str(exc)) from None
            except _ParseError as exc:
                raise OverrideError(str(exc)) from None
        else:
            moment = until
            if moment is not None and moment.tzinfo is None:
                raise OverrideError("until: an instant with its UTC offset is needed")
            if moment is not None and moment <= set_at:
                raise OverrideError(f"until {local_text(moment, compiled.tz)} is not in the future")
        override = Override(scenario, moment, set_by, set_at)
        what = f"override: calls go to {override.describe(compiled.tz)}"
        status = _announce(r, account, version, override.to_dict(), set_by, what)
        if status == "ok":
            return override
        if status == "missing":
            break
    else:
        raise OverrideError(f"account {account!r} kept changing while the override was set; try again")
    raise OverrideError(f"account {account!r} is not loaded")


def clear_override(r: redis.Redis, account: str, by: str) -> bool:
    """Back to the rules. False when ACCOUNT had no override (nothing is announced or
    written to its history then)."""
    status = _announce(r, account, 0, None, by, "override cleared: the rules decide again")
    if status == "missing":
        raise OverrideError(f"account {account!r} is not loaded")
    return status == "ok"


def get_override(r: redis.Redis, account: str) -> Override | None:
    """ACCOUNT's override as stored (maybe expired), or None."""
    return parse_override(r.hget(OVERRIDES, account))


def all_overrides(r: redis.Redis) -> dict[str, Override]:
    """Every stored override (maybe expired), by account."""
    return read_overrides(r.hgetall(OVERRIDES))


def override_status(r: redis.Redis, account: str, at: datetime | None = None) -> dict[str, Any]:
    """ACCOUNT's override as `voffice override ACCOUNT` shows it: None, or its fields and
    its status now (active, expired, scenario missing) against the current version."""
    _, compiled = _current(r, account)
    override = get_override(r, account)
    if override is None:
        return {"account": account, "override": None}
    moment = at or now()
    return {
        "account": account,
        "override": override.to_dict(),
        "status": override.status_at(moment, compiled.roots),
        "until_local": local_text(override.until, compiled.tz) if override.until else None,
        "set_at_local": local_text(override.set_at, compiled.tz),
        "timezone": str(compiled.tz),
    }
