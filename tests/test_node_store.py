"""The node store (one LMDB per machine, shared by every worker) and its mirror of Redis.

The decision form must decide exactly as the whole compiled account (property test over
generated accounts, time zones, holidays and DST days); the mirror must follow loads,
deletes, rollbacks, a trimmed log and a Redis that lost its data; a load must reach every
worker process, and a worker started after it."""

from __future__ import annotations

import copy
import json
import multiprocessing
import os
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routing.core.compiler import compile_account
from routing.core.engine import CompiledAccount, decide, decision_part
from routing.stack.local import venv_python
from routing.stack.redis_server import RedisServer
from routing.store import configs
from routing.store.node_mirror import NodeMirror
from routing.store.node_store import NodeReader
from routing.store.reader import StoreUnavailable
from voffice_bench.decide import ZONES, generate_accounts

from .conftest import SEED
from .test_store import load, other_account, write

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.json"))
TEMPLATE = json.loads(SEED.read_text(encoding="utf-8"))
CALLERS = [None, "+74951234567", "+79161234567", "84951112233", "+12125550100", "+493012345678", "anonymous"]


def _same(a: Any, b: Any) -> None:
    assert (a.rule.id if a.rule else None, a.scenario, a.node, a.day_type, a.local_time, a.caller) == \
           (b.rule.id if b.rule else None, b.scenario, b.node, b.day_type, b.local_time, b.caller)


def _decision_form(plain: dict[str, Any]) -> CompiledAccount:
    part = msgpack.unpackb(msgpack.packb(decision_part(plain)))  # as the store gives it back
    return CompiledAccount.from_decision(part, lambda: plain)


@st.composite
def accounts(draw: st.DrawFn) -> dict[str, Any]:
    source = draw(st.sampled_from(["generated", *[p.name for p in EXAMPLES]]))
    if source == "generated":
        doc = generate_accounts(TEMPLATE, 1, seed=draw(st.integers(0, 10_000)))[0]
        doc["timezone"], doc["calendar"]["country"] = draw(st.sampled_from([(z[0], z[1]) for z in ZONES]))
        day = draw(st.dates(datetime(2026, 1, 1).date(), datetime(2027, 12, 31).date()))
        doc["calendar"]["holidays"] = [day.isoformat()]  # a holiday of the account's own
    else:
        doc = json.loads((Path(__file__).parent.parent / "examples" / source).read_text(encoding="utf-8"))
    return compile_account(doc)


# Around the 2026 DST switches of the zones in use (Europe: 29 Mar / 25 Oct; US: 8 Mar / 1 Nov).
DST_DAYS = [datetime(2026, 3, 8, tzinfo=UTC), datetime(2026, 3, 29, tzinfo=UTC), datetime(2026, 10, 25, tzinfo=UTC),
            datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 5, 9, tzinfo=UTC)]


@given(plain=accounts(), day=st.sampled_from(DST_DAYS), minutes=st.integers(-24 * 60, 48 * 60),
       caller=st.sampled_from(CALLERS), spread=st.integers(0, 730))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_the_decision_form_decides_exactly_as_the_whole_account(plain: dict[str, Any], day: datetime, minutes: int,
                                                                caller: str | None, spread: int) -> None:
    whole, compact = CompiledAccount(plain), _decision_form(plain)
    number = plain["numbers"][0]
    for at in (day + timedelta(minutes=minutes), day + timedelta(days=spread, minutes=minutes)):
        _same(decide(whole, number, caller, at), decide(compact, number, caller, at))
    assert compact.plain == plain  # read on demand


def test_the_decision_part_is_small() -> None:
    plain = compile_account(TEMPLATE)
    assert len(msgpack.packb(decision_part(plain))) * 5 < len(msgpack.packb(plain))


# --- the mirror, in this process (LMDB: one environment per file and process) -----------


def _mirror(redis_server: RedisServer, tmp_path: Path) -> tuple[NodeMirror, NodeReader]:
    mirror = NodeMirror(redis_server.url, tmp_path / "store")
    return mirror, NodeReader(tmp_path / "store", opened=mirror.store)


def _phone(reader: NodeReader, number: str, operator: str = "petrov") -> str | None:
    found = reader.account_for_number(number)
    return found.plain["operators"][operator]["phone"] if found else None  # type: ignore[no-any-return]


def test_the_mirror_follows_loads_deletes_and_keeps_in_flight_versions(redis_server: RedisServer,
                                                                        seed_doc: dict[str, Any], tmp_path: Path) -> None:
    r = configs.connect(redis_server.url)
    load(r, str(SEED))
    mirror, reader = _mirror(redis_server, tmp_path)
    assert mirror.sync_all() == 1
    number = seed_doc["numbers"][0]
    whole = CompiledAccount(msgpack.unpackb(r.get(configs.version_key("berry-demo", 1)), raw=False))
    found = reader.lookup(number)
    assert found is not None and found[1] == number
    at = datetime(2026, 11, 25, 10, 30, tzinfo=UTC)
    _same(decide(found[0], number, "+79031112233", at), decide(whole, number, "+79031112233", at))
    assert reader.account_for_number("8" + number[2:]) is found[0]  # the national form, through the countries
    assert reader.account_for_number("+74959999999") is None
    assert reader.version_of("berry-demo") == 1

    doc = copy.deepcopy(seed_doc)
    doc["operators"][1]["phone"] = "+79161239999"
    load(r, write(tmp_path, "v2.json", doc), write(tmp_path, "two.json", other_account(seed_doc, "second", "+74950000002")))
    assert mirror.follow_once(block_ms=100) == 1 and mirror.stats["full_syncs"] == 1  # by the log, no full sync
    assert _phone(reader, number) == "+79161239999" and reader.version_of("berry-demo") == 2
    assert _phone(reader, "+74950000002") is not None
    in_flight = reader.account_version("berry-demo", 1)  # a call that started on version 1
    assert in_flight is not None and in_flight.plain["operators"]["petrov"]["phone"] != "+79161239999"

    configs.delete(r, "second", expected=1)
    mirror.follow_once(block_ms=100)
    assert reader.account_for_number("+74950000002") is None
    assert mirror.store.purge_retired(time.time() + 1) == 2  # berry-demo v1 and second v1: no call can be on them
    assert reader.account_version("berry-demo", 1) is None  # though this worker's LRU still holds it
    assert _phone(reader, number) == "+79161239999"


def test_the_mirror_resyncs_after_a_gap_a_large_load_and_a_new_epoch(redis_server: RedisServer,
                                                                      seed_doc: dict[str, Any], tmp_path: Path) -> None:
    r = configs.connect(redis_server.url)
    load(r, str(SEED))
    mirror, reader = _mirror(redis_server, tmp_path)
    mirror.sync_all()
    # a message over 64 KiB is logged as "read everything"
    paths = [write(tmp_path, f"big{i}.json", {**other_account(seed_doc, f"big-{i}", "+74950000000"),
                                             "numbers": [f"+7496{i}{n:06d}" for n in range(1000)]}) for i in range(3)]
    load(r, *paths)
    mirror.follow_once(block_ms=100)
    assert mirror.stats["full_syncs"] == 2 and reader.account_for_number("+74962000999") is not None
    # the log trimmed past our position
    for i in range(configs.CHANGES_KEPT + 2):
        doc = copy.deepcopy(seed_doc)
        doc["name"] = f"v{i}"
        load(r, write(tmp_path, f"n{i}.json", doc))
    r.xtrim(configs.CHANGES, maxlen=1)
    mirror.follow_once(block_ms=100)
    found = reader.account_for_number(seed_doc["numbers"][0])
    assert found is not None and found.plain["name"] == f"v{configs.CHANGES_KEPT + 1}" and mirror.stats["full_syncs"] == 3
    # Redis lost everything and was loaded anew: version numbers restart, nothing old may stay
    r.flushall()
    load(r, write(tmp_path, "fresh.json", other_account(seed_doc, "fresh", "+74950000077")))
    mirror.follow_once(block_ms=100)
    mirror.follow_once(block_ms=100)
    assert reader.account_for_number(seed_doc["numbers"][0]) is None
    assert reader.account_for_number("+74950000077") is not None and set(mirror.store.current()) == {"fresh"}


# --- several worker processes and the real `voffice node-store` ----------------------------


def _worker(path: str, number: str, phone: str, seconds: float, out: Any) -> None:
    reader = NodeReader(path)
    deadline = time.monotonic() + seconds
    while _phone(reader, number) != phone:
        if time.monotonic() >= deadline:
            out.put((os.getpid(), False))
            return
        time.sleep(0.01)
    out.put((os.getpid(), True))


def test_a_load_reaches_every_worker_and_a_worker_started_after_it(redis_server: RedisServer, seed_doc: dict[str, Any],
                                                                  tmp_path: Path) -> None:
    r = configs.connect(redis_server.url)
    load(r, str(SEED))
    store = tmp_path / "store"
    env = {**os.environ, "VOFFICE_REDIS_URL": redis_server.url}
    mirror = subprocess.Popen([venv_python(), "-m", "routing.cli.console", "node-store", "--dir", str(store)], env=env,
                              stderr=subprocess.PIPE, text=True)
    try:
        from routing.stack.local import node_store_ready

        deadline = time.monotonic() + 20
        while not node_store_ready(store):
            assert time.monotonic() < deadline and mirror.poll() is None, "the node store never synced"
            time.sleep(0.05)
        number = seed_doc["numbers"][0]
        ctx = multiprocessing.get_context("fork")  # as Kamailio makes its workers
        out = ctx.Queue()
        workers = [ctx.Process(target=_worker, args=(str(store), number, "+79161239999", 1.0, out)) for _ in range(3)]
        for w in workers:
            w.start()
        doc = copy.deepcopy(seed_doc)
        doc["operators"][1]["phone"] = "+79161239999"
        load(r, write(tmp_path, "v2.json", doc))
        results = [out.get(timeout=10) for _ in workers]
        for w in workers:
            w.join(5)
        assert all(seen for _, seen in results), results  # every worker within 1 s of the load
        late = ctx.Process(target=_worker, args=(str(store), number, "+79161239999", 0.0, out))
        late.start()
        assert out.get(timeout=10)[1]  # its first lookup
        late.join(5)
    finally:
        mirror.terminate()
        _, err = mirror.communicate(timeout=10)
    assert mirror.returncode == 0, err
    assert "1 accounts at generation 1" in err


def test_node_store_command_needs_its_directory() -> None:
    result = subprocess.run([venv_python(), "-m", "routing.cli.console", "node-store"], capture_output=True, text=True,
                            env={k: v for k, v in os.environ.items() if k != "VOFFICE_NODE_STORE"})
    assert result.returncode == 2 and "--dir" in result.stderr and "Traceback" not in result.stderr
    with pytest.raises(StoreUnavailable):
        NodeReader("/nonexistent/store").lookup("+74951234567")
