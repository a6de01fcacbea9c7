"""Redis HA through Sentinel: every client takes a redis+sentinel:// URL and follows the
master through a failover. Real redis-servers and sentinels on loopback (3 + 3)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from routing.records.stream import Consumer
from routing.stack.redis_sentinel import SentinelCluster
from routing.store import redis_client
from routing.store.reader import ConfigReader, StoreUnavailable

from .conftest import SEED
from .test_cli import voffice

pytestmark = pytest.mark.redis
NUMBER = "+74951234567"


def test_sentinel_urls_are_parsed_strictly() -> None:
    target = redis_client.parse_sentinel("redis+sentinel://:s3cret@h1:26379,h2,[::1]:26380/mymaster/2?sentinel_password=x")
    assert target.sentinels == (("h1", 26379), ("h2", 26379), ("::1", 26380))
    assert (target.service, target.db, target.password, target.sentinel_password) == ("mymaster", 2, "s3cret", "x")
    assert redis_client.parse_sentinel("redis+sentinel://h1/mymaster").db == 0
    for bad in ("redis+sentinel://h1:26379", "redis+sentinel://h1:x/mymaster", "redis+sentinel://h1/mymaster/zero"):
        with pytest.raises(redis_client.BadURL):
            redis_client.client(bad)
    wrong = voffice("list", "--redis", "redis+sentinel://:hunter2@h1:99999/mymaster/0")
    assert wrong.returncode == 2 and "hunter2" not in wrong.stderr and len(wrong.stderr.splitlines()) == 1


def _answers(readers: list[ConfigReader]) -> tuple[int, int]:
    """(lookups that found the seed's number, lookups that did not)."""
    ok = failed = 0
    for reader in readers:
        try:
            found = reader.lookup(NUMBER) is not None
        except StoreUnavailable:
            found = False
        ok, failed = ok + found, failed + (not found)
    return ok, failed


def _failover(cluster: SentinelCluster, readers: list[ConfigReader], stop: Any) -> tuple[float, int, int]:
    """Stop the master with `stop(process)`, keep looking up until a majority of sentinels
    names another: (seconds, lookups answered, lookups failed)."""
    old = cluster.master()
    assert old is not None
    stop(cluster.process(old))
    started = time.monotonic()
    answered = failed = 0
    while time.monotonic() - started < 30:
        ok, bad = _answers(readers)
        answered, failed = answered + ok, failed + bad
        if cluster.master() not in (old, None):
            break
        time.sleep(0.05)
    assert cluster.master() not in (old, None), "no replica was promoted within 30 s"
    return time.monotonic() - started, answered, failed


def _load_changed(url: str, tmp_path: Path, phone: str) -> None:
    doc = json.loads(SEED.read_text(encoding="utf-8"))
    doc["operators"][1]["phone"] = phone
    path = tmp_path / f"changed-{phone[1:]}.json"
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    result = voffice("load", str(path), redis_url=url)
    assert result.returncode == 0, result.stderr


def _phone_seen(reader: ConfigReader) -> str:
    try:
        found = reader.account_for_number(NUMBER)
    except StoreUnavailable:
        return ""
    return found.plain["operators"]["petrov"]["phone"] if found else ""  # type: ignore[no-any-return]


def _wait_all_see(readers: list[ConfigReader], phone: str, limit: float = 10.0) -> float:
    """Seconds until every reader decides with the new document (bounded)."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if all(_phone_seen(r) == phone for r in readers):
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"not every reader saw the load within {limit} s: {[_phone_seen(r) for r in readers]}")


@pytest.mark.parametrize("how", ["kill -9", "SIGSTOP (a silent partition)"])
def test_readers_keep_answering_through_a_master_failover_and_see_the_next_load(
        sentinels: SentinelCluster, tmp_path: Path, how: str) -> None:
    url = sentinels.url
    assert voffice("load", str(SEED), redis_url=url).returncode == 0
    assert voffice("list", redis_url=url).stdout.count("berry-demo") == 1
    readers = [ConfigReader(url, check_interval=0.05, timeout=0.25) for _ in range(3)]
    for reader in readers:
        reader.warm()
    assert _answers(readers) == (3, 0)

    stop = (lambda p: p.kill()) if how == "kill -9" else (lambda p: os.kill(p.pid, signal.SIGSTOP))
    seconds, answered, failed = _failover(sentinels, readers, stop)
    print(f"{how}: promoted after {seconds:.1f} s; {answered} lookups answered from the caches meanwhile, {failed} failed")
    assert failed == 0 and answered > 0

    _load_changed(url, tmp_path, "+79161239999")  # through the new master
    seen = _wait_all_see(readers, "+79161239999")
    print(f"{how}: a load after the failover seen by every reader after {seen:.2f} s")
    assert _answers(readers) == (3, 0)
    if how != "kill -9":
        resubscribed = sum(r.stats["resubscribes"] + r.stats["redis_errors"] for r in readers)
        assert resubscribed > 0  # found its dead subscription by itself


def test_records_written_during_a_failover_are_not_lost(sentinels: SentinelCluster) -> None:
    """What the media server and Kamailio do with call records: XADD + WAIT for a replica,
    sent again until one confirms; the history writer's consumer group reads each once."""
    url = sentinels.url
    client = redis_client.client(url, timeout=0.5)
    sent: list[str] = []
    old = sentinels.master()
    assert old is not None
    killed_at = None
    for i in range(400):
        fields = {"type": "call", "call_id": f"c{i}", "number": NUMBER}
        deadline = time.monotonic() + 30
        while True:
            try:
                if redis_client.append_replicated(client, url, "voffice:events", [fields]):
                    break
            except redis.RedisError:
                pass
            assert time.monotonic() < deadline, f"record c{i} could not be written for 30 s"
            time.sleep(0.1)
        sent.append(f"c{i}")
        if i == 100:
            sentinels.process(old).kill()
            killed_at = time.monotonic()
    assert killed_at is not None and sentinels.master() != old
    consumer = Consumer(redis_client.client(url, timeout=5), "history", "h1")
    consumer.ensure_group()
    got: set[str] = set()
    for _ in range(50):
        batch = consumer.read(block_ms=100)
        if not batch:
            break
        got |= {fields["call_id"] for _, fields in batch}
        consumer.ack([entry_id for entry_id, _ in batch])
    assert set(sent) <= got  # every record written around the kill is on the new master


def test_a_restarted_old_master_and_sentinel_keep_what_the_failover_decided(sentinels: SentinelCluster) -> None:
    """Every server runs from a writable config file: Sentinel's CONFIG REWRITE sticks, so
    the old master comes back as a replica of the new one, and a restarted sentinel still
    names the new master."""
    old = sentinels.master()
    assert old is not None
    old_index = sentinels.redis_ports.index(old)
    sentinels.process(old).kill()
    sentinels.process(old).wait()
    deadline = time.monotonic() + 30
    while sentinels.master() in (None, old):
        assert time.monotonic() < deadline, "no promotion"
        time.sleep(0.1)
    new = sentinels.master()
    sentinels.start_redis(old_index)  # its own file again
    back = redis.Redis(host="127.0.0.1", port=old, socket_timeout=1)
    deadline = time.monotonic() + 30
    while not (back.info("replication")["role"] == "slave" and back.info("replication").get("master_port") == new):
        assert time.monotonic() < deadline, f"the old master did not follow {new}: {back.info('replication')}"
        time.sleep(0.2)
    first = sentinels.sentinel_ports[0]
    sentinels.process(first).kill()
    sentinels.process(first).wait()
    sentinels.start_sentinel(0)
    named = redis.Redis(host="127.0.0.1", port=first, socket_timeout=1).sentinel_get_master_addr_by_name("mymaster")
    assert isinstance(named, (tuple, list)) and int(named[1]) == new
    assert "replicaof" in (sentinels.workdir / f"redis{old_index + 1}" / "redis.conf").read_text().lower()


def test_status_shows_the_master_its_replicas_and_the_sentinels(sentinels: SentinelCluster, tmp_path: Path) -> None:
    assert voffice("load", str(SEED), redis_url=sentinels.url).returncode == 0
    result = voffice("status", "--run-dir", str(tmp_path / "run"), "--redis", sentinels.url)
    [row] = [line for line in result.stdout.splitlines() if line.startswith("redis")]
    assert row.split()[1] == "up" and "1 accounts, 1 numbers" in row
    assert f"master 127.0.0.1:{sentinels.master()}, 2 replica(s) up; 3/3 sentinels answer" in row


def test_a_load_no_replica_confirms_is_loaded_with_a_warning(sentinels: SentinelCluster, tmp_path: Path) -> None:
    for port in sentinels.redis_ports[1:]:
        sentinels.process(port).kill()
    result = voffice("load", str(SEED), redis_url=sentinels.url)
    assert result.returncode == 0 and "berry-demo: v1" in result.stdout
    assert "warning: no replica has confirmed the change yet" in result.stderr
