"""Manual overrides in a real Redis: set and cleared with no config load, seen by the
per-process reader and by the node store's mirror from the change log they already follow,
caught up when a publish was missed, re-read on a resync; `voffice override` as the NOC runs it."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from routing.core.engine import OVERRIDE_RULE_ID, decide
from routing.core.override import Override
from routing.stack.redis_server import RedisServer
from routing.store import configs
from routing.store.node_store import NodeReader
from routing.store.overrides import (
    BadOverrideTime,
    OverrideError,
    all_overrides,
    clear_override,
    get_override,
    override_status,
    set_override,
)
from routing.store.reader import ConfigReader

from .conftest import SEED
from .test_cli import no_traceback, voffice
from .test_node_store import _mirror
from .test_store import FakeClock, deaf_reader, load, write

pytestmark = pytest.mark.redis

ACCOUNT = "berry-demo"
NUMBER = "+74951234567"
OTHER = "+79031112233"
SET_AT = datetime(2026, 11, 25, 7, 0, tzinfo=UTC)  # Wednesday 10:00 in Moscow: rule r2, workday
UNTIL = SET_AT + timedelta(hours=1)
DURING = SET_AT + timedelta(minutes=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the module, emptied and loaded with the seed for each test."""
    redis_server = RedisServer(tmp_path_factory.mktemp("redis"))
    redis_server.start()
    try:
        yield redis_server
    finally:
        redis_server.stop()


@pytest.fixture
def r(server: RedisServer) -> redis.Redis:
    client = configs.connect(server.url)
    client.flushall()
    load(client, str(SEED))
    return client


def scenario_at(reader: ConfigReader | NodeReader, at: datetime) -> tuple[str, str]:
    found = reader.lookup(NUMBER)
    assert found is not None
    decision = decide(found[0], found[1], OTHER, at, reader.override_of(found[0].id))
    assert decision.rule is not None
    return decision.rule.id, decision.scenario


def commands(r: redis.Redis) -> int:
    return sum(int(v.get("calls", 0)) for k, v in r.info("commandstats").items())


def test_a_reader_follows_set_and_clear_without_a_load(r: redis.Redis, server: RedisServer) -> None:
    clock = FakeClock()
    reader = ConfigReader(server.url, clock=clock)
    assert scenario_at(reader, DURING) == ("r2", "workday")
    override = set_override(r, ACCOUNT, "weekend", UNTIL, "noc", at=SET_AT)
    assert override == Override("weekend", UNTIL, "noc", SET_AT) and get_override(r, ACCOUNT) == override
    assert configs.current_version(r, ACCOUNT) == 1  # no load
    clock.now += 0.2
    assert scenario_at(reader, DURING) == (OVERRIDE_RULE_ID, "weekend")
    assert scenario_at(reader, UNTIL + timedelta(seconds=1)) == ("r2", "workday")  # it expires by itself
    before = commands(r)
    for _ in range(50):  # within one check interval: no Redis command per call, override or not
        scenario_at(reader, DURING)
    assert commands(r) - before <= 1  # (the INFO itself)
    assert clear_override(r, ACCOUNT, "noc") is True
    assert clear_override(r, ACCOUNT, "noc") is False  # nothing to clear: nothing announced
    clock.now += 0.2
    assert scenario_at(reader, DURING) == ("r2", "workday") and reader.stats["invalidations"] == 2
    actions = [(e["action"], e["user"]) for e in configs.history(r, ACCOUNT)]
    assert actions == [("override cleared", "noc"), ("override", "noc"), ("load", actions[-1][1])]


def test_refusals(r: redis.Redis) -> None:
    with pytest.raises(OverrideError, match="account 'nobody' is not loaded"):
        set_override(r, "nobody", "weekend", None, "noc")
    with pytest.raises(OverrideError, match="account 'nobody' is not loaded"):
        clear_override(r, "nobody", "noc")
    with pytest.raises(OverrideError, match=r"no scenario 'night' \(its scenarios: workday, lunch, weekend, weekend-vip\)"):
        set_override(r, ACCOUNT, "night", None, "noc")
    with pytest.raises(OverrideError, match="not later than now"):
        set_override(r, ACCOUNT, "weekend", "2026-11-25T09:59", "noc", at=SET_AT)  # Moscow time: 06:59 UTC
    with pytest.raises(OverrideError, match="is not in the future"):
        set_override(r, ACCOUNT, "weekend", SET_AT, "noc", at=SET_AT)
    with pytest.raises(OverrideError, match="UTC offset"):
        set_override(r, ACCOUNT, "weekend", datetime(2030, 1, 1), "noc")
    with pytest.raises(BadOverrideTime):
        set_override(r, ACCOUNT, "weekend", "soon", "noc")
    assert all_overrides(r) == {} and int(r.get("vo:generation") or 0) == 1  # nothing announced
    # naive text is the account's wall time; HH:MM its next occurrence
    assert set_override(r, ACCOUNT, "weekend", "2026-11-25T11:00", "noc", at=SET_AT).until == UNTIL
    assert set_override(r, ACCOUNT, "lunch", "09:00", "noc", at=SET_AT).until == datetime(2026, 11, 26, 6, 0, tzinfo=UTC)
    assert set(all_overrides(r)) == {ACCOUNT}


def test_a_reader_that_missed_the_publish_catches_up_from_the_log(r: redis.Redis, server: RedisServer) -> None:
    _, clock, reader = deaf_reader(server)
    set_override(r, ACCOUNT, "weekend", None, "noc", at=SET_AT)
    clock.now += 0.6
    assert scenario_at(reader, DURING) == (OVERRIDE_RULE_ID, "weekend")  # the very first lookup after it
    assert reader.stats["caught_up"] == 1


def test_resyncs_and_new_readers_read_every_override(r: redis.Redis, server: RedisServer, seed_doc: dict[str, Any],
                                                     tmp_path: Path) -> None:
    set_override(r, ACCOUNT, "weekend", None, "noc", at=SET_AT)
    assert scenario_at(ConfigReader(server.url), DURING) == (OVERRIDE_RULE_ID, "weekend")  # set before it started
    _, clock, reader = deaf_reader(server)
    clear_override(r, ACCOUNT, "noc")
    for _ in range(configs.CHANGES_KEPT + 1):  # changes the log no longer holds
        r.incr("vo:generation")
        r.xadd(configs.CHANGES, {"m": f"{int(r.get('vo:generation') or 0)} *"}, maxlen=configs.CHANGES_KEPT)
    clock.now += 0.6
    assert scenario_at(reader, DURING) == ("r2", "workday") and reader.stats["resyncs"] == 1
    # a load that removes the scenario: the override stays, ignored and shown so
    set_override(r, ACCOUNT, "lunch", None, "noc", at=SET_AT)
    doc = copy.deepcopy(seed_doc)
    doc["scenarios"] = [s for s in doc["scenarios"] if s["id"] != "lunch"]
    doc["rules"] = [rule for rule in doc["rules"] if rule["scenario"] != "lunch"]
    load(r, write(tmp_path, "nolunch.json", doc))
    assert override_status(r, ACCOUNT, DURING)["status"] == "scenario missing"
    assert scenario_at(ConfigReader(server.url), DURING) == ("r2", "workday")
    # deleting the account clears its override, for readers too
    configs.delete(r, ACCOUNT)
    assert get_override(r, ACCOUNT) is None and json.loads(r.xrevrange(configs.CHANGES, count=1)[0][1][b"m"].split(b" ", 1)[1])["overrides"] == {ACCOUNT: None}


def test_the_node_store_follows_overrides(r: redis.Redis, server: RedisServer, tmp_path: Path) -> None:
    mirror, reader = _mirror(server, tmp_path)
    mirror.sync_all()
    assert reader.override_of(ACCOUNT) is None
    set_override(r, ACCOUNT, "weekend", UNTIL, "noc", at=SET_AT)
    assert mirror.follow_once(block_ms=100) == 1 and mirror.stats["full_syncs"] == 1  # by the log
    assert scenario_at(reader, DURING) == (OVERRIDE_RULE_ID, "weekend")
    assert scenario_at(reader, UNTIL) == ("r2", "workday")
    clear_override(r, ACCOUNT, "noc")
    mirror.follow_once(block_ms=100)
    assert reader.override_of(ACCOUNT) is None
    # a full sync takes the overrides as they are, and drops those Redis no longer has
    set_override(r, ACCOUNT, "lunch", None, "noc", at=SET_AT)
    mirror.store.switch({}, {}, generation=99, epoch=None, countries=[], stream="0-0",
                        overrides={"ghost": {"scenario": "x", "until": None, "set_by": "", "set_at": "2026-01-01T00:00:00Z"}})
    mirror.follow_once(block_ms=100)  # generation 99 is not Redis's: a full sync
    assert mirror.stats["full_syncs"] == 2
    assert reader.override_of("ghost") is None
    assert reader.override_of(ACCOUNT) == Override("lunch", None, "noc", SET_AT)


# --- the CLI ---------------------------------------------------------------------------------


def test_voffice_override(r: redis.Redis, server: RedisServer) -> None:
    shown = voffice("override", ACCOUNT, redis_url=server.url)
    assert shown.returncode == 0 and "no override, the rules decide" in shown.stdout
    done = voffice("override", ACCOUNT, "--scenario", "weekend", "--until", "2099-01-01T09:00", redis_url=server.url)
    assert done.returncode == 0, done.stderr
    assert "calls go to weekend until 2099-01-01 09:00 (+03:00) [active]" in done.stdout and "set by " in done.stdout
    as_json = json.loads(voffice("override", ACCOUNT, "--json", redis_url=server.url).stdout)
    assert as_json["status"] == "active" and as_json["override"]["until"] == "2099-01-01T06:00:00Z"
    simulated = voffice("simulate", "--number", NUMBER, "--caller", OTHER, "--at", "2098-11-25T10:30", redis_url=server.url)
    assert simulated.returncode == 0 and "rule      manual override, until 2099-01-01 09:00 (+03:00)\n" in simulated.stdout
    covered = voffice("coverage", ACCOUNT, "--week", "2098-W48", "--json", redis_url=server.url)
    runs = json.loads(covered.stdout)["classes"][-1]["days"][0]["runs"]
    assert [(run["rule"]["id"], run["scenario"]["id"]) for run in runs] == [(OVERRIDE_RULE_ID, "weekend")]
    history = voffice("history", ACCOUNT, redis_url=server.url)
    assert "override: calls go to weekend until 2099-01-01 09:00 (+03:00)" in history.stdout
    cleared = voffice("override", ACCOUNT, "--clear", redis_url=server.url)
    assert cleared.returncode == 0 and "override cleared" in cleared.stdout and get_override(r, ACCOUNT) is None
    for args, code, message in [
        (("nobody", "--scenario", "weekend"), 1, "account 'nobody' is not loaded"),
        ((ACCOUNT, "--scenario", "night"), 1, "no scenario 'night'"),
        ((ACCOUNT, "--scenario", "weekend", "--until", "2020-01-01T00:00"), 1, "not later than now"),
        ((ACCOUNT, "--scenario", "weekend", "--until", "later"), 2, "is not a time"),
        ((ACCOUNT, "--clear", "--scenario", "weekend"), 2, "--clear takes no --scenario"),
        ((ACCOUNT, "--until", "09:00"), 2, "--until needs --scenario"),
    ]:
        result = voffice("override", *args, redis_url=server.url)
        no_traceback(result)
        assert result.returncode == code and message in result.stderr and result.stderr.count("\n") == 1, (args, result.stderr)


def test_trying_an_override_on_a_file() -> None:
    simulated = voffice("simulate", "--config", str(SEED), "--number", NUMBER, "--caller", OTHER,
                        "--at", "2026-11-25T10:30", "--override", "weekend@11:00", "--json")
    result = json.loads(simulated.stdout)
    assert result["scenario"]["id"] == "weekend" and result["override"]["until"] == "2026-11-25T08:00:00Z"
    tomorrow = voffice("simulate", "--config", str(SEED), "--number", NUMBER, "--caller", OTHER,
                       "--at", "2026-11-25T10:30", "--override", "lunch@10:00", "--json")  # the next 10:00
    assert json.loads(tomorrow.stdout)["override"]["until"] == "2026-11-26T07:00:00Z"
    for args, code, message in [
        (("--override", "night"), 1, "no scenario 'night'"),
        (("--override", "weekend@noon"), 2, "is not a time"),
    ]:
        result = voffice("simulate", "--config", str(SEED), "--number", NUMBER, "--caller", OTHER, *args)
        no_traceback(result)
        assert result.returncode == code and message in result.stderr, (args, result.stderr)
    covered = voffice("coverage", "--config", str(SEED), "--override", "weekend@2026-11-25T11:00", "--week", "2026-W48", "--json")
    assert covered.returncode == 0, covered.stderr
    cov = json.loads(covered.stdout)
    assert cov["override"].startswith("calls go to weekend until 2026-11-25 11:00 (+03:00) (set by trial at 2026-11-23 00:00")
    wednesday = [(run["start"], run["end"], (run["rule"] or {}).get("id")) for run in cov["classes"][-1]["days"][2]["runs"]]
    assert wednesday[:2] == [("00:00", "11:00", OVERRIDE_RULE_ID), ("11:00", "13:00", "r2")]
