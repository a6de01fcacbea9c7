"""The versioned store and the per-process reader against a real redis-server."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import msgpack
import pytest
import redis

from routing.core.validation import validate_paths
from routing.stack.redis_server import RedisServer
from routing.store import configs
from routing.store.reader import ConfigReader, StoreUnavailable

from .conftest import SEED

pytestmark = pytest.mark.redis


def write(tmp_path: Path, name: str, doc: dict[str, Any]) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return str(path)


def load(r: redis.Redis, *paths: str) -> configs.LoadResult:
    result = validate_paths(list(paths))
    assert result.ok, [p.line() for p in result.problems]
    changes, problems = configs.plan_load(r, result.documents)
    assert not problems, problems
    return configs.apply_load(r, changes)


def other_account(seed_doc: dict[str, Any], account: str, number: str) -> dict[str, Any]:
    doc = copy.deepcopy(seed_doc)
    doc["account"] = account
    doc["numbers"] = [number]
    return doc


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_load_show_history(redis_server: RedisServer, seed_doc: dict[str, Any], tmp_path: Path) -> None:
    r = configs.connect(redis_server.url)
    result = load(r, str(SEED))
    assert result.versions == {"berry-demo": 1}
    assert r.hget("vo:numbers", "+74951234567") == b"berry-demo"
    compiled = msgpack.unpackb(r.get(configs.version_key("berry-demo", 1)), raw=False)
    assert compiled["account"] == "berry-demo"
    info = configs.describe(r, "berry-demo")
    assert info["version"] == 1 and info["document"] == seed_doc
    [entry] = configs.history(r, "berry-demo")
    assert entry["version"] == 1 and entry["action"] == "load" and entry["user"]
    assert entry["sha256"] == compiled["sha256"]
    # loading the same document again changes nothing
    again = load(r, str(SEED))
    assert again.versions == {} and again.generation is None
    assert configs.current_version(r, "berry-demo") == 1


def test_failed_load_changes_nothing(redis_server: RedisServer, seed_doc: dict[str, Any], tmp_path: Path) -> None:
    r = configs.connect(redis_server.url)
    load(r, str(SEED))
    before = {k: r.dump(k) for k in r.keys("*")}
    good = write(tmp_path, "good.json", other_account(seed_doc, "acme", "+74950000001"))
    bad_doc = other_account(seed_doc, "broken", "+74950000002")
    bad_doc["rules"][0]["scenario"] = "missing"
    bad = write(tmp_path, "bad.json", bad_doc)
    result = validate_paths([good, bad])
    assert not result.ok  # the CLI stops here; the store is never touched
    # a number owned by a loaded account that is not part of this load is refused too
    thief = write(tmp_path, "thief.json", other_account(seed_doc, "thief", "+74951234567"))
    _changes, problems = configs.plan_load(r, validate_paths([good, thief]).documents)
    assert [p.message for p in problems] == ["number +74951234567 already belongs to loaded account 'berry-demo'"]
    assert {k: r.dump(k) for k in r.keys("*")} == before


def test_swap_is_atomic_and_refuses_a_concurrent_change(redis_server: RedisServer, seed_doc: dict[str, Any], tmp_path: Path) -> None:
    r = configs.connect(redis_server.url)
    load(r, str(SEED))
    changed = copy.deepcopy(seed_doc)
    changed["name"] = "Renamed"
    path = write(tmp_path, "seed.json", changed)
    changes, _ = configs.plan_load(r, validate_paths([path]).documents)
    load(r, write(tmp_path, "other.json", {**seed_doc, "name": "Someone else"}))  # v2 lands meanwhile
    keys_before = set(r.keys("*"))
    with pytest.raises(configs.StoreError, match="changed to version 2"):
        configs.apply_load(r, changes)
    assert configs.current_version(r, "berry-demo") == 2
    assert set(r.keys("*")) == keys_before  # the blobs written for the refused load are gone


@pytest.mark.parametrize("ran", [True, False])
def test_a_swap_without_a_reply_keeps_its_blobs_if_it_ran(redis_server: RedisServer, seed_doc: dict[str, Any], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch, ran: bool) -> None:
    """A swap script that outlives the client's timeout (a load of 100,000 accounts) still
    swaps: its blobs are current versions then, and deleting them would leave accounts
    pointing at nothing. They go only when the swap provably did not happen."""
    r = configs.connect(redis_server.url)
    load(r, str(SEED))
    path = write(tmp_path, "seed.json", {**seed_doc, "name": "Renamed"})
    validated = validate_paths([path], with_compiled=True)
    changes, _ = configs.plan_load(r, validated.documents, validated.compiled)
    keys_before = set(r.keys("*"))
    real_eval = r.eval

    def eval_without_reply(*args: Any) -> Any:
        if ran:
            real_eval(*args)
        raise redis.TimeoutError("Timeout reading from socket")

    monkeypatch.setattr(r, "eval", eval_without_reply)
    if ran:
        assert configs.apply_load(r, changes).versions == {"berry-demo": 2}
        assert configs.describe(r, "berry-demo")["document"]["name"] == "Renamed"
        assert r.get(configs.version_key("berry-demo", 2)) is not None
    else:
        with pytest.raises(redis.TimeoutError):
            configs.apply_load(r, changes)
        assert configs.current_version(r, "berry-demo") == 1
        assert set(r.keys("*")) == keys_before


def test_two_accounts_two_numbers_and_moving_a_number(redis_server: RedisServer, seed_doc: dict[str, Any], tmp_path: Path) -> None:
    r = configs.connect(redis_server.url)
    a = other_account(seed_doc, "alpha", "+74950000001")
    b = other_account(seed_doc, "beta", "+74950000002")
    load(r, write(tmp_path, "a.json", a), write(tmp_path, "b.json", b))
    assert r.hgetall("vo:numbers") == {b"+74950000001": b"alpha", b"+74950000002": b"beta"}
    # the same number in both files of one load is refused before Redis is touched
    b_dup = {**b, "numbers": ["+74950000001"]}
    assert not validate_paths([write(tmp_path, "a.json", a), write(tmp_path, "b2.json", b_dup)]).ok
    # a number moves from alpha to beta in one load: allowed, swapped together
    a2 = {**a, "numbers": ["+74950000003"]}
    b2 = {**b, "numbers": ["+74950000002", "+74950000001"]}
    load(r, write(tmp_path, "a.json", a2), write(tmp_path, "b.json", b2))
    assert r.hgetall("vo:numbers") == {
        b"+74950000001": b"beta", b"+74950000002": b"beta", b"+74950000003": b"alpha",
    }


def test_rollback_and_version_trimming(redis_server: RedisServer, seed_doc: dict[str, Any], tmp_path: Path) -> None:
    r = configs.connect(redis_server.url)
    for i in range(12):
        doc = {**seed_doc, "name": f"Name {i}"}
        result = validate_paths([write(tmp_path, "seed.json", doc)])
        changes, _ = configs.plan_load(r, result.documents)
        configs.apply_load(r, changes, keep=3)
    assert configs.current_version(r, "berry-demo") == 12
    assert [int(v) for v in r.lrange("vo:account:berry-demo:versions", 0, -1)] == [12, 11, 10]
    assert r.get(configs.version_key("berry-demo", 9)) is None
    with pytest.raises(configs.StoreError, match="not kept"):
        configs.rollback(r, "berry-demo", 5)
    result = configs.rollback(r, "berry-demo", keep=3)  # default: the version before
    assert result.versions == {"berry-demo": 13}
    assert configs.describe(r, "berry-demo")["document"]["name"] == "Name 10"
    assert configs.history(r, "berry-demo", 1)[0]["action"] == "rollback to v11"
    with pytest.raises(configs.StoreError, match="not loaded"):
        configs.rollback(r, "nobody")


def test_reader_caches_and_sees_loads(redis_server: RedisServer, seed_doc: dict[str, Any], tmp_path: Path) -> None:
    r = configs.connect(redis_server.url)
    load(r, str(SEED))
    clock = FakeClock()
    reader = ConfigReader(redis_server.url, check_interval=0.1, clock=clock)
    account = reader.account_for_number("+74951234567")
    assert account is not None and account.plain["name"] == seed_doc["name"]
    assert reader.account_for_number("84951234567") is account  # national form of the DID
    assert reader.lookup("74951234567") == (account, "+74951234567")
    assert reader.account_for_number("+74959999999") is None
    # cache hits make no Redis round trip: count commands on the server
    calls_before = int(r.info("commandstats").get("cmdstat_hget", {}).get("calls", 0))
    gets_before = int(r.info("commandstats").get("cmdstat_get", {}).get("calls", 0))
    for _ in range(100):
        assert reader.account_for_number("+74951234567") is account
        assert reader.account_for_number("+74959999999") is None
    assert int(r.info("commandstats").get("cmdstat_hget", {}).get("calls", 0)) == calls_before
    assert int(r.info("commandstats").get("cmdstat_get", {}).get("calls", 0)) == gets_before
    # a load is published; the reader applies it at its next check
    load(r, write(tmp_path, "seed.json", {**seed_doc, "name": "v2", "numbers": ["+74951234567", "+74959999999"]}))
    clock.now += 0.2
    fresh = reader.account_for_number("+74951234567")
    assert fresh is not None and fresh.plain["name"] == "v2"
    assert reader.account_for_number("+74959999999") is fresh  # no longer negatively cached
    assert reader.stats["invalidations"] == 1


def deaf_reader(redis_server: RedisServer) -> tuple[redis.Redis, FakeClock, ConfigReader]:
    """The seed loaded, a reader that has answered once, then its subscription connected but deaf."""
    r = configs.connect(redis_server.url)
    load(r, str(SEED))
    clock = FakeClock()
    reader = ConfigReader(redis_server.url, check_interval=0.1, verify_interval=0.5, clock=clock)
    assert reader.account_for_number("+74951234567") is not None
    assert reader._pubsub is not None
    reader._pubsub.unsubscribe(configs.CHANNEL)
    return r, clock, reader


def test_a_deaf_subscription_never_costs_a_call_its_freshness(redis_server: RedisServer, seed_doc: dict[str, Any],
                                                             tmp_path: Path) -> None:
    """A subscription that stays connected but hears nothing (a failover's old master, a
    silent partition): the first lookup after a load, once the check interval has passed,
    already decides with the new version (caught up from vo:changes); the next check finds
    the channel still silent and listens anew, after which loads arrive by message again."""
    r, clock, reader = deaf_reader(redis_server)
    for name in ("v2", "v3"):
        load(r, write(tmp_path, f"{name}.json", {**seed_doc, "name": name}))
    clock.now += 0.6
    fresh = reader.account_for_number("+74951234567")
    assert fresh is not None and fresh.plain["name"] == "v3"  # the very first lookup
    assert reader.stats["caught_up"] == 1 and reader.stats["invalidations"] == 2 and reader.stats["resubscribes"] == 0
    clock.now += 0.6
    reader.account_for_number("+74951234567")
    assert reader.stats["resubscribes"] == 1  # the channel never delivered v2/v3: listen anew
    load(r, write(tmp_path, "v4.json", {**seed_doc, "name": "v4"}))
    clock.now += 0.2
    fresh = reader.account_for_number("+74951234567")
    assert fresh is not None and fresh.plain["name"] == "v4" and reader.stats["caught_up"] == 1  # by message


def test_a_reader_behind_more_than_the_change_log_reads_everything_anew(
        redis_server: RedisServer, seed_doc: dict[str, Any], tmp_path: Path) -> None:
    r, clock, reader = deaf_reader(redis_server)
    for _ in range(configs.CHANGES_KEPT + 1):
        r.incr("vo:generation")  # loads the log no longer holds
        r.xadd(configs.CHANGES, {"m": f"{int(r.get('vo:generation') or 0)} *"}, maxlen=configs.CHANGES_KEPT)
    load(r, write(tmp_path, "v2.json", {**seed_doc, "name": "v2"}))
    clock.now += 0.6
    fresh = reader.account_for_number("+74951234567")
    assert fresh is not None and fresh.plain["name"] == "v2"
    assert reader.stats["caught_up"] == 0 and reader.stats["resyncs"] == 1
    assert r.xlen(configs.CHANGES) == configs.CHANGES_KEPT


def test_a_large_load_is_logged_as_read_everything(redis_server: RedisServer, seed_doc: dict[str, Any],
                                                   tmp_path: Path) -> None:
    r = configs.connect(redis_server.url)
    load(r, str(SEED))
    paths = [write(tmp_path, f"big{i}.json", {**other_account(seed_doc, f"big-{i}", "+74950000000"),  # a message over 64 KiB
                                              "numbers": [f"+7496{i}{n:06d}" for n in range(1000)]}) for i in range(3)]
    load(r, *paths)
    newest = r.xrevrange(configs.CHANGES, count=1)[0][1][b"m"]
    assert newest == f"{int(r.get('vo:generation') or 0)} *".encode()


def test_reader_serves_cached_configs_while_redis_is_down(redis_server: RedisServer, seed_doc: dict[str, Any], tmp_path: Path) -> None:
    r = configs.connect(redis_server.url)
    load(r, str(SEED))
    clock = FakeClock()
    reader = ConfigReader(redis_server.url, check_interval=0.1, retry_interval=1.0, clock=clock)
    assert reader.account_for_number("+74951234567") is not None
    redis_server.stop()
    clock.now += 0.5
    account = reader.account_for_number("+74951234567")
    assert account is not None and account.id == "berry-demo"
    with pytest.raises(StoreUnavailable):
        reader.account_for_number("+74950000042")  # a cold miss cannot be answered
    # Redis comes back (empty: a new instance on the same port) and a load happens
    redis_server.start()
    r = configs.connect(redis_server.url)
    load(r, write(tmp_path, "seed.json", {**seed_doc, "name": "after restart"}))
    clock.now += 2.0  # past retry_interval: the reader reconnects and resynchronises
    account = reader.account_for_number("+74951234567")
    assert account is not None and account.plain["name"] == "after restart"
    assert reader.stats["redis_errors"] >= 1


def test_a_failed_subscription_does_not_refuse_a_cold_lookup(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Subscribing to config loads fails (the pubsub connection, say, right after a Redis
    restart) while Redis itself answers: the lookup that found it still reads its number
    and account, and the subscription is tried again after retry_interval."""
    r = configs.connect(redis_server.url)
    load(r, str(SEED))
    clock = FakeClock()
    reader = ConfigReader(redis_server.url, check_interval=0.1, retry_interval=1.0, clock=clock)
    subscribe = reader._subscribe

    def broken() -> None:
        raise redis.ConnectionError("pubsub connection refused")

    monkeypatch.setattr(reader, "_subscribe", broken)
    account = reader.account_for_number("+74951234567")  # cold: no cache yet
    assert account is not None and account.id == "berry-demo"
    assert reader.stats["redis_errors"] == 1
    monkeypatch.setattr(reader, "_subscribe", subscribe)
    clock.now += 0.5
    reader.account_for_number("+74951234567")
    assert reader._pubsub is None  # not tried again yet
    clock.now += 1.0
    reader.account_for_number("+74951234567")
    assert reader._pubsub is not None  # subscribed again


def test_reader_cache_is_bounded(redis_server: RedisServer, seed_doc: dict[str, Any], tmp_path: Path) -> None:
    r = configs.connect(redis_server.url)
    paths = [
        write(tmp_path, f"a{i}.json", other_account(seed_doc, f"acct-{i}", f"+7495000{i:04d}"))
        for i in range(20)
    ]
    load(r, *paths)
    reader = ConfigReader(redis_server.url, max_accounts=5)
    for i in range(20):
        account = reader.account_for_number(f"+7495000{i:04d}")
        assert account is not None and account.id == f"acct-{i}"
    assert reader.cached_accounts() == 5



def test_a_preloaded_reader_answers_every_number_with_redis_gone(tmp_path: Path) -> None:
    """warm(preload=N): a worker that took no call yet still routes while Redis is away."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        doc = json.loads(SEED.read_text(encoding="utf-8"))
        r = configs.connect(server.url)
        changes, problems = configs.plan_load(r, [("seed.json", doc)])
        assert not problems
        configs.apply_load(r, changes)
        cold, warm, too_many = (ConfigReader(server.url, check_interval=0.0) for _ in range(3))
        cold.warm()
        warm.warm(preload=10)
        too_many.warm(preload=0)
    finally:
        server.stop()
    assert warm.lookup("+74951234567") is not None
    for reader in (cold, too_many):
        with pytest.raises(StoreUnavailable):
            reader.lookup("+74951234567")
