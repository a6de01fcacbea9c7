"""The per-process config reader used by Kamailio workers and media servers.

A worker answers every INVITE from memory: number -> account -> compiled account are all
cached here, so a cache hit costs no Redis round trip. Freshness comes from the
`vo:invalidate` channel, read without blocking at most every `check_interval` seconds
(a load is seen within that interval plus delivery). Pub/sub is at most once and a
subscription can go deaf without an error, so every `verify_interval` (on a lookup) the
reader also compares `vo:generation` with its own: behind, it applies the missed messages
from the `vo:changes` log right then (or re-reads everything the log no longer covers), and
listens anew if the channel has not delivered them by the next check. A load is therefore
never missed for longer than one check, whatever became of the subscription. Manual
overrides (overrides.py) travel the same way: the reader keeps every account's override,
read whole at each subscription and kept current by the messages, so `override_of` is a
dict lookup. When Redis is down the reader keeps
serving what it has; only a cold miss fails (StoreUnavailable), and the caller decides
what the call gets then (Kamailio answers 503).

Nothing here connects at import or construction: Kamailio forks its workers after
loading Python, so connections are opened lazily in the process that uses them.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import msgpack
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from routing.core.engine import CompiledAccount
from routing.core.numbers import did_candidates
from routing.core.override import Override
from routing.store import redis_client
from routing.store.configs import (
    CHANGES,
    CHANGES_KEPT,
    CHANNEL,
    OVERRIDES,
    account_key,
    redis_url,
    shown_url,
    version_key,
)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def preload_from_env(env: Mapping[str, str]) -> int:
    """VOFFICE_PRELOAD_ACCOUNTS: a worker reads every account at its start when no more than
    this many are loaded (default 1,000, ~25 MiB per worker; 0: never)."""
    text = env.get("VOFFICE_PRELOAD_ACCOUNTS", "")
    return int(text) if text.isdigit() else 1000


def cache_limit_from_env(env: Mapping[str, str]) -> int:
    """VOFFICE_CACHE_ACCOUNTS: how many compiled accounts one process keeps (default 10,000;
    ~25 KiB each, docs/performance.md)."""
    text = env.get("VOFFICE_CACHE_ACCOUNTS", "")
    return int(text) if text.isdigit() and int(text) > 0 else 10_000


def cached(cache: OrderedDict[Any, Any], key: Any) -> Any:
    """An LRU hit (moved to the young end), or None."""
    value = cache.get(key)
    if value is not None:
        cache.move_to_end(key)
    return value


def remember(cache: OrderedDict[Any, Any], key: Any, value: Any, limit: int) -> None:
    """Into an LRU bounded by `limit`, the oldest going first."""
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > limit:
        cache.popitem(last=False)


class StoreUnavailable(Exception):
    """Redis cannot be reached and the answer is not cached."""


class ConfigReader:
    def __init__(
        self,
        url: str | None = None,
        max_accounts: int = 10_000,
        max_unknown: int = 10_000,
        check_interval: float = 0.1,
        retry_interval: float = 1.0,
        timeout: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
        verify_interval: float = 0.5,
    ):
        self.url = redis_url(url)
        self.max_accounts = max_accounts
        self.max_unknown = max_unknown
        self.check_interval = check_interval
        self.retry_interval = retry_interval
        self.timeout = timeout
        self.clock = clock
        self.verify_interval = verify_interval
        self._verify_at = 0.0
        self._awaiting: int | None = None  # caught up from the log to here; the channel owes us this message
        self._redis: redis.Redis | None = None
        self._pubsub: redis.client.PubSub | None = None
        self._next_check = 0.0
        self._retry_at = 0.0  # no Redis reads before this (the last one failed)
        self._subscribe_at = 0.0  # no new subscription before this (the last attempt failed)
        self._generation: int | None = None
        self._epoch: bytes | None = None
        self._numbers: dict[str, str] = {}  # number -> account, as last known
        self._unknown: OrderedDict[str, None] = OrderedDict()  # numbers known not to exist
        self._versions: dict[str, int] = {}  # account -> current version, as last known
        self._compiled: OrderedDict[tuple[str, int], CompiledAccount] = OrderedDict()
        self._countries: frozenset[str] = frozenset()
        self._overrides: dict[str, Override] = {}  # account -> its manual override, as last known
        self.stats = {"hits": 0, "misses": 0, "redis_errors": 0, "invalidations": 0, "resyncs": 0, "resubscribes": 0,
                      "caught_up": 0}

    # --- public API --------------------------------------------------------------------

    def account_for_number(self, raw_number: str) -> CompiledAccount | None:
        """The compiled account that owns a dialled number (any of its E.164 forms), or None."""
        found = self.lookup(raw_number)
        return found[0] if found else None

    def lookup(self, raw_number: str) -> tuple[CompiledAccount, str] | None:
        """(the owning account, the E.164 number as the account lists it), or None."""
        self._refresh()
        known = self._numbers.get(raw_number)
        if known is not None:  # the usual case: the trunk sends the E.164 form we store
            account = self._account(known)
            return (account, raw_number) if account else None
        for number in did_candidates(raw_number, self._countries):
            owner = self._numbers.get(number)
            if owner is None and number not in self._unknown:
                owner = self._fetch_owner(number)
            if owner is not None:
                account = self._account(owner)
                return (account, number) if account else None
        return None

    def warm(self, preload: int = 0) -> None:
        """Subscribe to config loads now (a worker's start), not on its first call; with
        Redis down this is retried on the next lookup as usual.

        With `preload`, and no more accounts loaded than that, every number and account is
        read now too: a worker that has taken no call yet then answers from its cache while
        Redis is away (a Sentinel failover), instead of 503 for want of a first read."""
        self._refresh()
        if preload <= 0:
            return
        try:
            if int(self._call(lambda r: r.scard("vo:accounts"))) > min(preload, self.max_accounts):
                return
            numbers = self._call(lambda r: r.hgetall("vo:numbers"))
            self._numbers.update({_text(k): _text(v) for k, v in numbers.items()})
            for account in sorted(set(self._numbers.values())):
                self._account(account)
        except StoreUnavailable:
            return  # best effort: the first calls read what they need, as without it

    def account(self, account_id: str) -> CompiledAccount | None:
        """The current compiled version of an account, or None if it is not loaded."""
        self._refresh()
        return self._account(account_id)

    def version_of(self, account_id: str) -> int:
        """The version `account()` last returned for this account."""
        return self._versions[account_id]

    def override_of(self, account_id: str) -> Override | None:
        """The account's manual override as last known (for `engine.decide`, which ignores
        one not in force); as fresh as the lookup that found the account."""
        return self._overrides.get(account_id)

    def account_version(self, account_id: str, version: int) -> CompiledAccount | None:
        """A specific version: a call keeps the version it started with, even after a load."""
        return self._compiled_version(account_id, version, exact=True)

    def _account(self, account_id: str) -> CompiledAccount | None:
        version = self._versions.get(account_id)
        if version is None:
            version = self._fetch_version(account_id)
            if version is None:
                return None
        return self._compiled_version(account_id, version)

    def _compiled_version(self, account_id: str, version: int, exact: bool = False) -> CompiledAccount | None:
        key = (account_id, version)
        compiled: CompiledAccount | None = cached(self._compiled, key)
        if compiled is not None:
            self.stats["hits"] += 1
            return compiled
        self.stats["misses"] += 1
        raw = self._call(lambda r: r.get(version_key(account_id, version)))
        if raw is None and exact:
            return None
        if raw is None:
            # The version was trimmed after we learnt of it: re-read the pointer once.
            self._versions.pop(account_id, None)
            fresh = self._fetch_version(account_id)
            if fresh is None:
                return None
            version = fresh
            raw = self._call(lambda r: r.get(version_key(account_id, fresh)))
            if raw is None:
                return None
        compiled = CompiledAccount(msgpack.unpackb(raw, raw=False))
        remember(self._compiled, (account_id, version), compiled, self.max_accounts)
        return compiled

    def cached_accounts(self) -> int:
        return len(self._compiled)

    # --- Redis access --------------------------------------------------------------------

    def _client(self) -> redis.Redis:
        if self._redis is None:
            # One immediate reconnect for a pooled connection that went stale; no more, and
            # no backoff sleeps (redis-py's default): a Kamailio worker must not block on a
            # dead master, the reader has its own retry interval.
            self._redis = redis_client.client(self.url, timeout=self.timeout, retry=Retry(NoBackoff(), 1))
        return self._redis

    def _call(self, fn: Callable[[redis.Redis], Any]) -> Any:
        if self.clock() < self._retry_at:
            raise StoreUnavailable(f"Redis at {shown_url(self.url)} is down (retrying)")
        try:
            return fn(self._client())
        except redis.RedisError as exc:
            self.stats["redis_errors"] += 1
            self._retry_at = self.clock() + self.retry_interval
            self._drop_subscription()
            raise StoreUnavailable(f"Redis at {shown_url(self.url)}: {exc}") from exc

    def _fetch_owner(self, number: str) -> str | None:
        raw = self._call(lambda r: r.hget("vo:numbers", number))
        if raw is None:
            self._unknown[number] = None
            while len(self._unknown) > self.max_unknown:
                self._unknown.popitem(last=False)
            return None
        account = _text(raw)
        self._numbers[number] = account
        return account

    def _fetch_version(self, account_id: str) -> int | None:
        raw = self._call(lambda r: r.hget(account_key(account_id), "current"))
        if raw is None:
            return None
        self._versions[account_id] = int(raw)
        return int(raw)

    # --- invalidation --------------------------------------------------------------------

    def _refresh(self) -> None:
        now = self.clock()
        if now < self._next_check:
            return
        self._next_check = now + self.check_interval
        try:
            pubsub = self._pubsub
            if pubsub is None:
                if now < max(self._retry_at, self._subscribe_at):
                    return
                pubsub = self._subscribe()
            while True:  # (ignore_subscribe_messages would return None for a confirmation, ending this early)
                message = pubsub.get_message(timeout=0)
                if message is None:
                    break
                if message["type"] == "message":
                    self._apply(message["data"])
            if now >= self._verify_at:
                self._verify_at = now + self.verify_interval
                self._verify_subscription()
        except (redis.RedisError, OSError):
            # Only the subscription waits: the lookup that brought us here still tries its
            # own read (a cold miss answered rather than refused if Redis is back).
            self.stats["redis_errors"] += 1
            self._subscribe_at = now + self.retry_interval
            self._drop_subscription()

    def _verify_subscription(self) -> None:
        """Redis's generation ahead of ours means loads we were not told of (a deaf
        subscription, or a message still in flight): apply them from the change log now.
        If the channel has still not delivered them by the next check, it is deaf (a
        partitioned master sends no RST; after a Sentinel failover the old master's channel
        never speaks again): listen anew."""
        client = self._client()
        if self._awaiting is not None:
            self._awaiting = None
            self.stats["resubscribes"] += 1
            self._drop_subscription()
            self._subscribe()
            return
        remote = int(client.get("vo:generation") or 0)
        if self._generation is not None and remote > self._generation:
            self._catch_up(client, self._generation, remote)

    def _catch_up(self, client: redis.Redis, ours: int, remote: int) -> None:
        missed = remote - ours
        messages: list[tuple[int, bytes]] = []
        if missed <= CHANGES_KEPT:
            entries: list[tuple[bytes, dict[bytes, bytes]]] = client.xrevrange(CHANGES, count=missed + 4)  # type: ignore[assignment]
            for _, fields in entries:
                data = fields[b"m"]
                generation = int(data.partition(b" ")[0])
                if generation > ours:
                    messages.append((generation, data))
            messages.sort()
        covered = [g for g, _ in messages][:missed] == list(range(ours + 1, remote + 1))
        if not covered or any(data.endswith(b" *") for _, data in messages):
            self.stats["resubscribes"] += 1  # the log no longer holds them all: re-read everything
            self._drop_subscription()
            self._subscribe()
            return
        for _, data in messages:
            self._apply(data)
        self.stats["caught_up"] += 1
        self._awaiting = messages[-1][0]

    def _subscribe(self) -> redis.client.PubSub:
        client = self._client()
        pubsub = client.pubsub()
        pubsub.subscribe(CHANNEL)
        # Subscribed first, then read the state: a load between the two is seen twice,
        # which is harmless, rather than not at all. The overrides are few and read whole,
        # in the same MULTI as the generation they belong to.
        pipe = client.pipeline(transaction=True)
        pipe.mget("vo:epoch", "vo:generation")
        pipe.hgetall(OVERRIDES)
        (epoch, generation_raw), overrides_raw = pipe.execute()
        generation = int(generation_raw or 0)
        countries = frozenset(_text(c) for c in client.smembers("vo:countries"))
        if self._epoch is not None and epoch != self._epoch:
            # Redis lost its data and was loaded anew: version numbers restarted, so
            # nothing cached under (account, version) can be trusted.
            self._forget_everything()
        elif self._generation is not None and generation != self._generation:
            self._resync(client)
        self._epoch = epoch if isinstance(epoch, bytes) else None
        self._generation = generation
        self._countries = countries
        self._overrides = read_overrides(overrides_raw)
        self._pubsub = pubsub
        self._awaiting = None
        return pubsub

    def _forget_everything(self) -> None:
        self._numbers.clear()
        self._unknown.clear()
        self._versions.clear()
        self._compiled.clear()
        self._overrides.clear()
        self.stats["resyncs"] += 1

    def _resync(self, client: redis.Redis) -> None:
        """Loads happened while we were not listening: re-read what we had cached.
        The old maps are replaced only once the new ones are complete."""
        numbers = {_text(k): _text(v) for k, v in client.hgetall("vo:numbers").items()}
        accounts = list(self._versions)
        pipe = client.pipeline(transaction=False)
        for account in accounts:
            pipe.hget(account_key(account), "current")
        versions = {a: int(v) for a, v in zip(accounts, pipe.execute(), strict=False) if v is not None}
        self._numbers = numbers
        self._versions = versions
        self._unknown.clear()
        self.stats["resyncs"] += 1

    def _drop_subscription(self) -> None:
        if self._pubsub is not None:
            try:
                self._pubsub.close()
            except Exception:  # already broken: nothing more to release
                pass
        self._pubsub = None

    def _apply(self, data: bytes) -> None:
        generation_text, _, payload_text = data.decode().partition(" ")
        generation = int(generation_text)
        if self._awaiting is not None and generation >= self._awaiting:
            self._awaiting = None  # the channel delivers: it was only late
        if self._generation is not None and generation <= self._generation:
            return  # already applied from the change log
        payload = json.loads(payload_text)
        self.stats["invalidations"] += 1
        self._generation = generation
        for account, version in payload["accounts"].items():
            self._versions[account] = int(version)
        for number, owner in payload["numbers"].items():
            if owner is None:
                self._numbers.pop(number, None)
            else:
                self._numbers[number] = owner
            self._unknown.pop(number, None)
        if payload.get("countries"):
            self._countries = self._countries | frozenset(payload["countries"])
        for account, value in (payload.get("overrides") or {}).items():
            override = parse_override(value)
            if override is None:
                self._overrides.pop(account, None)
            else:
                self._overrides[account] = override


def parse_override(value: Any) -> Override | None:
    """An override as the change log or Redis holds it (a dict, or its JSON); None for a
    clear, and for anything unreadable: a worker goes on deciding by the rules."""
    try:
        data = json.loads(value) if isinstance(value, (bytes, str)) else value
        return Override.from_dict(data) if data is not None else None
    except (ValueError, TypeError):
        return None


def read_overrides(raw: Mapping[Any, Any]) -> dict[str, Override]:
    """`HGETALL vo:overrides` as account -> Override, the unreadable left out."""
    out = {}
    for key, value in raw.items():
        override = parse_override(value)
        if override is not None:
            out[_text(key)] = override
    return out
