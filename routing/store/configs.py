"""The versioned config store in Redis: load, rollback, history, show.

Layout (every key under the `vo:` prefix):

    vo:numbers                      hash  E.164 number -> account id (who owns each number)
    vo:accounts                     set   account ids
    vo:countries                    set   calendar countries in use (for national DID forms)
    vo:generation                   int   bumped by every load; readers compare it
    vo:epoch                        str   random, set by the first load into an empty Redis:
                                          versions restart if Redis loses its data, so readers
                                          drop their caches when the epoch changes
    vo:account:{id}                 hash  current, seq, sha256, numbers (JSON), updated_at
    vo:account:{id}:v:{n}           str   msgpack of the compiled account, version n
    vo:account:{id}:src:{n}         str   the source document (JSON) of version n
    vo:account:{id}:versions        list  kept versions, newest first
    vo:account:{id}:history         list  audit entries (JSON), newest first
    vo:overrides                    hash  account id -> its manual override (JSON; overrides.py)
    vo:changes                      stream the same messages, the last 64 (field m; a message
                                          over 64 KiB is kept as "GENERATION *": re-read all)
    channel vo:invalidate                 "GENERATION {accounts, numbers[, overrides]}" after each
                                          load, delete and override change

Pub/sub delivers at most once and a subscription can go deaf without an error (a failover,
a silent partition); `vo:changes` is what a reader that finds itself behind `vo:generation`
catches up from, so it never serves an old version for want of a message.

A load writes the new versions' blobs first (invisible: nothing points at them), then one
Lua script checks that no account moved since we read it and no number belongs to another
account, and swaps every account's pointer and number mapping at once. Readers therefore
see all accounts of a load switch together, or none. A big load reads and writes in
pipelines and MSETs of BATCH commands or keys; its swap script runs ~25 us per account, so a
client loading many accounts waits `bulk_timeout` for replies, and a swap that got no reply
is checked (it may have run) before its blobs are deleted.
"""

from __future__ import annotations

import getpass
import json
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any

import msgpack
import redis

from routing.core.bulk import paused_gc
from routing.core.compiler import compile_account, document_sha256
from routing.core.diff import summarize
from routing.core.problems import Problem, errors, pointer
from routing.core.validation import validate_document
from routing.store import redis_client

DEFAULT_URL = "redis://127.0.0.1:6479/0"
DEFAULT_KEEP = 10
HISTORY_LIMIT = 1000
CHANNEL = "vo:invalidate"
OVERRIDES = "vo:overrides"


def redis_url(explicit: str | None = None) -> str:
    return explicit or os.environ.get("VOFFICE_REDIS_URL") or DEFAULT_URL


def shown_url(url: str) -> str:
    """A Redis URL fit for a message or a log: its passwords replaced (a Sentinel URL's
    sentinel_password too)."""
    import re

    url = re.sub(r"(?i)([?&]sentinel_password=)[^&]*", r"\1***", url)
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return url
    userinfo, _, host = rest.partition("@")
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user + ':' if user else ':'}***@{host}" if ":" in userinfo else f"{scheme}://***@{host}"


def utc(seconds: float) -> str:
    """Unix seconds as the ISO 8601 UTC time the audit trail and `show`/`list` print."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def connect(url: str | None = None, timeout: float = 2.0, connect_timeout: float | None = None) -> redis.Redis:
    chosen = redis_url(url)
    try:
        return redis_client.client(chosen, timeout=timeout, connect_timeout=connect_timeout)
    except redis_client.BadURL as exc:  # a scheme redis-py does not know, a bad port, ...
        raise BadRedisURL(f"--redis {shown_url(chosen)!r}: {exc}") from None


def bulk_timeout(accounts: int) -> float:
    """Seconds to wait for a reply when loading `accounts` at once: the swap script runs
    ~25 us per account (2.5 s for 100,000), longer than a command's usual 2 s."""
    return max(2.0, accounts / 1000)


def account_key(account: str) -> str:
    return f"vo:account:{account}"


def version_key(account: str, version: int) -> str:
    return f"vo:account:{account}:v:{version}"


def source_key(account: str, version: int) -> str:
    return f"vo:account:{account}:src:{version}"


class StoreError(Exception):
    """A store operation refused for a reason the user can act on (one line)."""


class BadRedisURL(StoreError):
    """A Redis URL that cannot be used at all: a usage error (exit 2), not a failure."""


CHANGES = "vo:changes"
CHANGES_KEPT = 64
CHANGE_LOGGED_MAX = 65536  # bytes; a bigger message is logged as "GENERATION *"
# Appended to both scripts after the INCR: the message into the change log, then published.
_LOG_CHANGE = f"""
if #message > {CHANGE_LOGGED_MAX} then
  redis.call('XADD', '{CHANGES}', 'MAXLEN', {CHANGES_KEPT}, '*', 'm', generation .. ' *')
else
  redis.call('XADD', '{CHANGES}', 'MAXLEN', {CHANGES_KEPT}, '*', 'm', message)
end"""

# KEYS: none (keys are derived from arguments, so this is for a single Redis, not Cluster).
# ARGV[1]: JSON list of {account, version, expected, numbers, sha256, country, entry}
# ARGV[2]: versions to keep; ARGV[3]: now (unix seconds); ARGV[4]: invalidation payload;
# ARGV[5]: a fresh epoch, used only if Redis has none
_SWAP = """
local batch = cjson.decode(ARGV[1])
local keep = tonumber(ARGV[2])
local moving = {}
for _, a in ipairs(batch) do
  local new = {}
  for _, n in ipairs(a.numbers) do new[n] = true end
  moving[a.account] = new
end
for _, a in ipairs(batch) do
  local key = 'vo:account:' .. a.account
  local current = tonumber(redis.call('HGET', key, 'current') or '0')
  if current ~= a.expected then
    return {'conflict', a.account, tostring(current)}
  end
  for _, n in ipairs(a.numbers) do
    local owner = redis.call('HGET', 'vo:numbers', n)
    if owner and owner ~= a.account and (moving[owner] == nil or moving[owner][n]) then
      return {'number', n, owner}
    end
  end
end
for _, a in ipairs(batch) do
  local key = 'vo:account:' .. a.account
  local old = redis.call('HGET', key, 'numbers')
  if old then
    for _, n in ipairs(cjson.decode(old)) do
      if not moving[a.account][n] and redis.call('HGET', 'vo:numbers', n) == a.account then
        redis.call('HDEL', 'vo:numbers', n)
      end
    end
  end
end
for _, a in ipairs(batch) do
  local key = 'vo:account:' .. a.account
  for _, n in ipairs(a.numbers) do redis.call('HSET', 'vo:numbers', n, a.account) end
  redis.call('HSET', key, 'current', a.version, 'sha256', a.sha256,
             'numbers', a.numbers_json, 'updated_at', ARGV[3])
  redis.call('SADD', 'vo:accounts', a.account)
  if a.country ~= '' then redis.call('SADD', 'vo:countries', a.country) end
  redis.call('LPUSH', key .. ':history', a.entry)
  redis.call('LTRIM', key .. ':history', 0, 999)
  redis.call('LPUSH', key .. ':versions', a.version)
  while redis.call('LLEN', key .. ':versions') > keep do
    local gone = redis.call('RPOP', key .. ':versions')
    redis.call('DEL', key .. ':v:' .. gone, key .. ':src:' .. gone)
  end
end
redis.call('SET', 'vo:epoch', ARGV[5], 'NX')
local generation = redis.call('INCR', 'vo:generation')
local message = generation .. ' ' .. ARGV[4]
{LOG}
redis.call('PUBLISH', 'vo:invalidate', message)
return {'ok', tostring(generation)}
""".replace("{LOG}", _LOG_CHANGE)


@dataclass
class PlannedChange:
    file: str
    account: str
    doc: dict[str, Any]
    compiled: dict[str, Any]
    current: int  # version now in Redis, 0 for a new account
    old_doc: dict[str, Any] | None
    summary: list[str]
    unchanged: bool


@dataclass
class LoadResult:
    changes: list[PlannedChange]
    versions: dict[str, int]  # account -> new version (absent for unchanged accounts)
    generation: int | None


def _decode(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else value


def current_version(r: redis.Redis, account: str) -> int:
    return int(_decode(r.hget(account_key(account), "current")) or 0)


def read_source(r: redis.Redis, account: str, version: int) -> dict[str, Any] | None:
    raw = _decode(r.get(source_key(account, version)))
    return json.loads(raw) if raw else None


BATCH = 2000  # commands per pipeline round trip: bounded buffers, few round trips


def _pipelined(r: redis.Redis, calls: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
    """Run (method, args) Redis calls in pipelines of BATCH (no transaction), replies in order."""
    replies: list[Any] = []
    for start in range(0, len(calls), BATCH):
        pipe = r.pipeline(transaction=False)
        for method, args in calls[start:start + BATCH]:
            getattr(pipe, method)(*args)
        replies += pipe.execute()
    return replies


def plan_load(r: redis.Redis, documents: list[tuple[str, dict[str, Any]]],
              compiled: dict[str, dict[str, Any]] | None = None) -> tuple[list[PlannedChange], list[Problem]]:
    """Compile every document and diff it against what Redis holds; nothing is written.
    `compiled`: file -> compiled form, where validation made it already (validate_paths
    with_compiled=True); the other documents are compiled here.

    Also refuses numbers owned by an account that is not part of this load. Redis is read
    in a few pipelined round trips, not one per account.
    """
    with paused_gc():  # see routing.core.bulk: a load holds every document at once
        return _plan_load(r, documents, compiled or {})


def _plan_load(r: redis.Redis, documents: list[tuple[str, dict[str, Any]]],
               made: dict[str, dict[str, Any]]) -> tuple[list[PlannedChange], list[Problem]]:
    changes: list[PlannedChange] = []
    problems: list[Problem] = []
    loading = {doc["account"] for _, doc in documents}
    new_numbers = {n: doc["account"] for _, doc in documents for n in doc["numbers"]}
    owners = dict(zip(new_numbers, r.hmget("vo:numbers", list(new_numbers)), strict=False)) if new_numbers else {}
    currents = [int(_decode(v) or 0) for v in _pipelined(r, [("hget", (account_key(doc["account"]), "current")) for _, doc in documents])]
    sources = iter(_pipelined(r, [("get", (source_key(doc["account"], current),))
                                   for (_, doc), current in zip(documents, currents, strict=True) if current]))
    for (file, doc), current in zip(documents, currents, strict=True):
        account = doc["account"]
        for i, number in enumerate(doc["numbers"]):
            owner = _decode(owners.get(number))
            if owner and owner != account and owner not in loading:
                problems.append(Problem(file, pointer("numbers", i), f"number {number} already belongs to loaded account {owner!r}"))
        raw = _decode(next(sources)) if current else None
        old_doc = json.loads(raw) if raw else None
        plain = made.get(file) or compile_account(doc)
        unchanged = old_doc is not None and document_sha256(old_doc) == plain["sha256"]
        changes.append(PlannedChange(file, account, doc, plain, current, old_doc, summarize(old_doc, doc), unchanged))
    return changes, problems


def apply_load(
    r: redis.Redis,
    changes: list[PlannedChange],
    keep: int = DEFAULT_KEEP,
    action: str = "load",
    user: str | None = None,
) -> LoadResult:
    """Write new versions and swap them in atomically (see the module docstring)."""
    with paused_gc():
        return _apply_load(r, changes, keep, action, user)


def _apply_load(r: redis.Redis, changes: list[PlannedChange], keep: int, action: str, user: str | None) -> LoadResult:
    todo = [c for c in changes if not c.unchanged]
    if not todo:
        return LoadResult(changes, {}, None)
    user = user or os.environ.get("USER") or getpass.getuser()
    now = time.time()
    versions: dict[str, int] = {}
    batch = []
    written: list[str] = []
    seqs = _pipelined(r, [("hincrby", (account_key(change.account), "seq", 1)) for change in todo])
    for change, seq in zip(todo, seqs, strict=True):
        versions[change.account] = int(seq)
    blobs: dict[str, bytes | str] = {}
    for change in todo:
        version = versions[change.account]
        keys = (version_key(change.account, version), source_key(change.account, version))
        blobs[keys[0]] = msgpack.packb(change.compiled, use_bin_type=True)
        blobs[keys[1]] = json.dumps(change.doc, ensure_ascii=False)
        if len(blobs) >= BATCH:
            r.mset(blobs)  # one command per BATCH keys: a few MiB per round trip, one reply
            blobs = {}
        written += keys
        entry = {
            "version": version,
            "previous": change.current or None,
            "at": utc(now),
            "user": user,
            "action": action,
            "file": change.file,
            "sha256": change.compiled["sha256"],
            "summary": change.summary,
        }
        batch.append(
            {
                "account": change.account,
                "version": version,
                "expected": change.current,
                "numbers": change.doc["numbers"],
                "numbers_json": json.dumps(change.doc["numbers"]),
                "sha256": change.compiled["sha256"],
                "country": change.compiled["calendar"]["country"] or "",
                "entry": json.dumps(entry, ensure_ascii=False),
            }
        )
    if blobs:
        r.mset(blobs)
    released = {
        n: None
        for c in todo
        if c.old_doc
        for n in set(c.old_doc["numbers"]) - set(c.doc["numbers"])
    }
    payload = {
        "accounts": versions,
        "numbers": {**released, **{n: c.account for c in todo for n in c.doc["numbers"]}},
        "countries": sorted({b["country"] for b in batch if b["country"]}),
    }
    try:
        outcome = r.eval(_SWAP, 0, json.dumps(batch), keep, int(now), json.dumps(payload), uuid.uuid4().hex)
    except redis.RedisError as exc:
        # No reply is not "not run": a script that outlived the client's timeout, or whose
        # reply a dropped connection lost, still swaps everything. The blobs may go only if
        # the first account is provably not at its new version (the swap is all or nothing).
        first = todo[0]
        try:
            now_at = current_version(r, first.account)
        except redis.RedisError:
            raise StoreError(f"the swap got no reply ({exc}) and Redis cannot say whether it ran: check with "
                             f"`voffice show {first.account}` (loaded if at v{versions[first.account]})") from None
        if now_at == versions[first.account]:
            return LoadResult(changes, versions, None)  # it ran: loaded
        _delete(r, written)
        raise
    status = [_decode(x) for x in outcome]
    if status[0] != "ok":
        _delete(r, written)
        if status[0] == "conflict":
            raise StoreError(f"account {status[1]!r} changed to version {status[2]} while loading; nothing was loaded, run the load again")
        raise StoreError(f"number {status[1]} belongs to account {status[2]!r}; nothing was loaded")
    return LoadResult(changes, versions, int(status[1] or 0))


def _delete(r: redis.Redis, keys: list[str]) -> None:
    """Delete the blobs a refused load wrote (nothing points at them), BATCH keys a command."""
    for start in range(0, len(keys), BATCH):
        r.delete(*keys[start:start + BATCH])


def rollback(r: redis.Redis, account: str, to: int | None = None, keep: int = DEFAULT_KEEP, *,
             allow_private_webhooks: bool = False, dry_run: bool = False) -> LoadResult:
    """Make an earlier version current again, as a new version (history stays linear).
    `dry_run`: the planned change only (`LoadResult.versions` empty), nothing written."""
    current = current_version(r, account)
    if not current:
        raise StoreError(f"account {account!r} is not loaded")
    kept = [int(v) for v in r.lrange(account_key(account) + ":versions", 0, -1)]
    if to is None:
        older = [v for v in kept if v < current]
        if not older:
            raise StoreError(f"account {account!r} has no earlier version kept to roll back to")
        to = max(older)
    if to == current:
        raise StoreError(f"version {to} of {account!r} is already current")
    doc = read_source(r, account, to)
    if doc is None:
        raise StoreError(f"version {to} of {account!r} is not kept (kept: {', '.join(map(str, kept)) or 'none'})")
    problems = errors(validate_document(doc, f"{account}@v{to}", allow_private_webhooks=allow_private_webhooks))
    if problems:
        raise StoreError(f"version {to} no longer validates: {problems[0].line()}")
    changes, number_problems = plan_load(r, [(f"{account}@v{to}", doc)])
    if number_problems:
        raise StoreError(number_problems[0].message)
    changes[0].unchanged = False
    if dry_run:
        return LoadResult(changes, {}, None)
    return apply_load(r, changes, keep, action=f"rollback to v{to}")


def history(r: redis.Redis, account: str, limit: int = 50) -> list[dict[str, Any]]:
    if not r.exists(account_key(account)):
        raise StoreError(f"account {account!r} is not loaded")
    return [json.loads(e) for e in r.lrange(account_key(account) + ":history", 0, limit - 1)]


def owner_of(r: redis.Redis, number: str) -> str | None:
    return _decode(r.hget("vo:numbers", number))


def describe(r: redis.Redis, account: str, version: int | None = None) -> dict[str, Any]:
    """What `voffice show ACCOUNT` prints: the current version (or a kept one) and its document."""
    current = current_version(r, account)
    if not current:
        raise StoreError(f"account {account!r} is not loaded")
    meta = {_decode(k): _decode(v) for k, v in r.hgetall(account_key(account)).items()}
    kept = [int(v) for v in r.lrange(account_key(account) + ":versions", 0, -1)]
    if version is not None and version not in kept:
        raise StoreError(f"version {version} of {account!r} is not kept (kept: {', '.join(map(str, kept))})")
    shown = version or current
    return {
        "account": account,
        "version": shown,
        "current": current,
        "sha256": meta.get("sha256"),
        "updated_at": utc(float(meta.get("updated_at") or 0)),
        "versions_kept": kept,
        "numbers": json.loads(meta.get("numbers") or "[]"),
        "document": read_source(r, account, shown),
    }


# ARGV[1] account, ARGV[2] the version the user saw (0: any), ARGV[3] now, ARGV[4] audit entry
# (JSON without numbers; they are added here)
_DELETE = """
local key = 'vo:account:' .. ARGV[1]
local current = tonumber(redis.call('HGET', key, 'current') or '0')
if current == 0 then return {'missing'} end
if tonumber(ARGV[2]) ~= 0 and current ~= tonumber(ARGV[2]) then return {'conflict', tostring(current)} end
local numbers = cjson.decode(redis.call('HGET', key, 'numbers') or '[]')
local released = {}
for _, n in ipairs(numbers) do
  if redis.call('HGET', 'vo:numbers', n) == ARGV[1] then
    redis.call('HDEL', 'vo:numbers', n)
    released[n] = cjson.null
  end
end
redis.call('SREM', 'vo:accounts', ARGV[1])
local overrides = {}
if redis.call('HDEL', 'vo:overrides', ARGV[1]) == 1 then overrides[ARGV[1]] = cjson.null end
redis.call('HSET', key, 'current', 0, 'numbers', '[]', 'updated_at', ARGV[3])
local entry = cjson.decode(ARGV[4])
entry.previous = current
entry.numbers = numbers
redis.call('LPUSH', key .. ':history', cjson.encode(entry))
redis.call('LTRIM', key .. ':history', 0, 999)
local generation = redis.call('INCR', 'vo:generation')
local gone = {}
gone[ARGV[1]] = 0  -- version 0: no longer loaded
local message = generation .. ' ' .. cjson.encode({accounts = gone, numbers = released, overrides = overrides})
{LOG}
redis.call('PUBLISH', 'vo:invalidate', message)
return {'ok', tostring(current), cjson.encode(numbers)}
""".replace("{LOG}", _LOG_CHANGE)


def delete(r: redis.Redis, account: str, expected: int = 0, user: str | None = None) -> tuple[int, list[str]]:
    """Unload ACCOUNT: its numbers released, its manual override cleared, and it leaves the
    account list at once (one Lua script: a call to one of its numbers is refused from then on), its versions and history
    kept (a later load continues its numbering; `history` shows the deletion). `expected`:
    refuse if the account is no longer at that version. Returns (the version deleted, numbers)."""
    entry = {"version": 0, "at": utc(time.time()),
             "user": user or os.environ.get("USER") or getpass.getuser(), "action": "delete",
             "summary": ["deleted: its numbers released"]}
    outcome = [_decode(x) for x in r.eval(_DELETE, 0, account, expected, int(time.time()), json.dumps(entry))]
    if outcome[0] == "missing":
        raise StoreError(f"account {account!r} is not loaded")
    if outcome[0] == "conflict":
        raise StoreError(f"account {account!r} is at version {outcome[1]}, not {expected}; nothing was deleted")
    return int(outcome[1] or 0), json.loads(outcome[2] or "[]")


def accounts(r: redis.Redis) -> list[dict[str, Any]]:
    """Every loaded account: version, numbers, versions kept, last change (who, when, what)."""
    ids = sorted(_decode(a) or "" for a in r.smembers("vo:accounts"))
    pipe = r.pipeline(transaction=False)
    for account in ids:
        pipe.hgetall(account_key(account))
        pipe.lrange(account_key(account) + ":versions", 0, -1)
        pipe.lindex(account_key(account) + ":history", 0)
    raw = pipe.execute()
    out = []
    for i, account in enumerate(ids):
        meta = {_decode(k): _decode(v) for k, v in raw[3 * i].items()}
        last = json.loads(_decode(raw[3 * i + 2]) or "{}")
        out.append({
            "account": account,
            "version": int(meta.get("current") or 0),
            "numbers": json.loads(meta.get("numbers") or "[]"),
            "versions_kept": [int(v) for v in raw[3 * i + 1]],
            "updated_at": utc(float(meta.get("updated_at") or 0)),
            "by": last.get("user", ""),
            "action": last.get("action", ""),
        })
    return out


SETTINGS = "vo:settings"  # hash: store-wide settings (keep: versions kept per account)


def keep_setting(r: redis.Redis) -> int:
    """How many versions each account keeps, for every load and rollback that does not say."""
    raw = _decode(r.hget(SETTINGS, "keep"))
    return int(raw) if raw and raw.isdigit() and int(raw) > 0 else DEFAULT_KEEP


def set_keep(r: redis.Redis, keep: int) -> None:
    if not 1 <= keep <= 1000:
        raise StoreError("keep: from 1 to 1000 versions")
    r.hset(SETTINGS, "keep", keep)
