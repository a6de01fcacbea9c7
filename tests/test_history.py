"""The call history: `voffice:events` read through a consumer group into PostgreSQL, with a
real Redis and a real PostgreSQL (Debian's) started by the tests."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from routing.records import database
from routing.records.history import HistoryWriter, call_row
from routing.records.stream import STREAM, Consumer, Trimmer, lag, needed_from
from routing.stack.postgres_server import PostgresServer, cluster_dir

pytestmark = [pytest.mark.redis, pytest.mark.postgres]


def call_event(i: int, status: str = "answered", started: float = 1_764_000_000.0) -> dict[str, str]:
    return {
        "type": "call", "status": status, "account": "berry-demo", "number": "+74951234567", "caller": f"+7903{i:07d}",
        "call_id": f"c{i:015d}", "sip_call_id": f"sip-{i}", "rule": "r1", "scenario": "lunch",
        "steps": json.dumps([{"operation": "secretary", "type": "group", "ringing": None, "event": None}]),
        "answered_by": "smirnova" if status == "answered" else "", "setup_seconds": "1.500",
        "talk_seconds": "30.000" if status == "answered" else "", "hung_up_by": "caller", "note": "",
        "started_at": f"{started + i:.3f}", "ended_at": f"{started + i + 31.5:.3f}",
    }


@pytest.fixture
def client(redis_server: Any) -> redis.Redis:
    return redis.Redis.from_url(redis_server.url)


def add(client: redis.Redis, events: list[dict[str, str]]) -> list[str]:
    pipe = client.pipeline(transaction=False)
    for event in events:
        pipe.xadd(STREAM, event)  # type: ignore[arg-type]
    return [x.decode() for x in pipe.execute()]


def rows(url: str, table: str = "calls") -> list[dict[str, Any]]:
    with database.connect(url) as conn:
        return list(conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall())  # type: ignore[call-overload]


class Running:
    """A history writer in a thread, stopped (as SIGTERM does) at the end."""

    def __init__(self, writer: HistoryWriter):
        self.writer = writer
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            self.writer.run()
        except BaseException as exc:
            self.error = exc

    def __enter__(self) -> HistoryWriter:
        self.thread.start()
        return self.writer

    def __exit__(self, *_exc: object) -> None:
        self.writer.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


def wait_for_rows(url: str, count: int, table: str = "calls", seconds: float = 30) -> list[dict[str, Any]]:
    deadline = time.monotonic() + seconds
    while True:
        found = rows(url, table)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_upgrade_is_idempotent_and_a_newer_database_is_refused(database_url: str) -> None:
    with database.connect(database_url) as conn:
        assert database.upgrade(conn) == []  # the fixture applied 0001 already
        database.require_schema(conn)
        conn.execute("INSERT INTO schema_migrations (version) VALUES (999)")
        conn.commit()
        with pytest.raises(database.DatabaseError, match="newer than this voffice"):
            database.upgrade(conn)


def test_a_password_never_reaches_an_error() -> None:
    with pytest.raises(database.DatabaseError) as err:
        database.connect("postgresql://voffice:s3cret-pw@127.0.0.1:1/voffice", timeout=1)
    assert "s3cret-pw" not in str(err.value) and "***" in str(err.value)
    with pytest.raises(database.DatabaseError, match="expected postgresql://"):
        database.connect("mysql://u:s3cret-pw@h/db")


def test_every_call_and_recording_becomes_one_row(client: redis.Redis, database_url: str) -> None:
    ids = add(client, [call_event(i) for i in range(50)] + [call_event(50, "missed")])
    add(client, [{"type": "voicemail", "account": "berry-demo", "number": "+74951234567", "caller": "+79031112233",
                  "call_id": "c000000000000001", "path": "/data/v.wav", "duration": "8.600", "sha256": "ab" * 32,
                  "status": "stored", "bytes": "137644"},
                 {"type": "menu", "account": "berry-demo"}])  # not history: read, acknowledged, no row
    with Running(HistoryWriter(_url(client), database_url)):
        found = wait_for_rows(database_url, 51)
        recordings = wait_for_rows(database_url, 1, "recordings")
    assert len(found) == 51 and len({r["call_id"] for r in found}) == 51
    first = next(r for r in found if r["call_id"] == "c000000000000001")
    assert (first["status"], first["answered_by"], first["talk_seconds"], first["event_id"]) == ("answered", "smirnova", 30.0, ids[1])
    assert first["steps"][0]["operation"] == "secretary"
    assert first["started_at"] == datetime.fromtimestamp(1_764_000_001, UTC)
    assert [(r["kind"], r["call_id"], r["duration"]) for r in recordings] == [("voicemail", "c000000000000001", 8.6)]
    with database.connect(database_url) as conn:
        assert database.partitions(conn, "calls") == ["calls_2025_11"]
        [row] = database.calls(conn, account="berry-demo", status="answered", limit=1000)[-1:]
        listed = database.calls(conn, number="+74951234567", status="answered")
    assert len(listed) == 50 and [c["call_id"] for c in listed][-2:] == ["c000000000000001", "c000000000000000"]  # newest first
    assert [c["left_kind"] for c in listed if c["left_kind"]] == ["voicemail"] and listed[-2]["left_path"] == "/data/v.wav"
    assert row["call_id"] == "c000000000000000"
    assert lag(client) == {"history": 0}


def _url(client: redis.Redis) -> str:
    kw = client.connection_pool.connection_kwargs
    return f"redis://{kw['host']}:{kw['port']}/0"


def test_a_consumer_killed_mid_batch_leaves_it_to_the_next_one_once(client: redis.Redis, database_url: str) -> None:
    """A writer that read a batch and died (no XACK), and one that committed but died before
    its XACK: the next writer takes both over (XAUTOCLAIM); every call has exactly one row."""
    add(client, [call_event(i) for i in range(100)])
    dead = Consumer(client, "history", "history-dead")
    dead.ensure_group()
    taken = client.xreadgroup("history", "history-dead", {STREAM: ">"}, count=60)
    assert len(taken[0][1]) == 60  # read, never acknowledged: the process was killed
    half = HistoryWriter(_url(client), database_url, name="history-half")
    half.write([(i.decode(), {k.decode(): v.decode() for k, v in f.items()}) for i, f in taken[0][1][:30]])  # committed, no XACK
    with Running(HistoryWriter(_url(client), database_url, name="history-2", claim_idle_ms=200)):
        found = wait_for_rows(database_url, 100)
        deadline = time.monotonic() + 10
        while lag(client)["history"] and time.monotonic() < deadline:
            time.sleep(0.1)
    assert len(found) == 100 and len({r["call_id"] for r in found}) == 100
    assert lag(client) == {"history": 0}


def test_postgresql_stopped_under_load_then_started_loses_nothing(client: redis.Redis, tmp_path: Path) -> None:
    import tempfile

    run = Path(tempfile.mkdtemp(prefix="voffice-pg-outage-"))
    server = PostgresServer(cluster_dir(run / "run"), fsync=False, password_file=run / "postgres.password")
    server.start()
    try:
        with database.connect(server.url) as conn:
            database.upgrade(conn)
        with Running(HistoryWriter(_url(client), server.url)) as writer:
            add(client, [call_event(i) for i in range(200)])
            wait_for_rows(server.url, 200)
            server.stop()  # PostgreSQL gone while calls keep ending
            add(client, [call_event(i) for i in range(200, 700)])
            time.sleep(2)
            assert lag(client)["history"] == 500  # read or not, nothing acknowledged while it is down
            server.start()
            found = wait_for_rows(server.url, 700)
            assert writer.written >= 700
        assert len(found) == 700 and len({r["call_id"] for r in found}) == 700
    finally:
        server.remove()


def test_the_stream_keeps_what_a_group_has_not_acknowledged(client: redis.Redis, database_url: str) -> None:
    """The producers no longer cap the stream; the trimmer drops only what every group has
    acknowledged, and with the history writer down past the alarm length keeps all of it."""
    ids = add(client, [call_event(i) for i in range(3000)])
    Consumer(client, "history", "h").ensure_group()  # the writer's group, its process down
    notifier = Consumer(client, "notifier", "n")
    notifier.ensure_group()
    trimmer = Trimmer(client, alarm_length=1000)
    got = notifier.read(block_ms=10)[:200]
    notifier.ack([i for i, _ in got])  # the notifier handled 200 of the 500 it read
    assert trimmer.trim() == 0 and client.xlen(STREAM) == 3000  # history has read nothing: all kept
    with Running(HistoryWriter(_url(client), database_url)):
        assert len(wait_for_rows(database_url, 3000)) == 3000  # none lost although 3x the alarm length
        deadline = time.monotonic() + 10
        while lag(client)["history"] and time.monotonic() < deadline:
            time.sleep(0.1)
    assert needed_from(client) == ids[200]  # now the notifier's oldest pending entry
    trimmer.trim()  # (or the writer's own trimmer did already)
    assert client.xlen(STREAM) == 2800


def test_retention_drops_whole_months(database_url: str) -> None:
    with database.connect(database_url) as conn:
        for month in (date(2026, 8, 1), date(2026, 9, 1), date(2026, 10, 1), date(2026, 11, 1), date(2026, 12, 1)):
            database.ensure_partitions(conn, "calls", [month])
            database.ensure_partitions(conn, "recordings", [month])
        row = call_row("1764000000000-0", call_event(1, started=datetime(2026, 9, 15, tzinfo=UTC).timestamp()))
        assert row is not None
        conn.execute("INSERT INTO calls (started_at, call_id, ended_at, event_id, account, number, caller, status) "
                     "VALUES (%(started_at)s, %(call_id)s, %(ended_at)s, %(event_id)s, %(account)s, %(number)s, %(caller)s, %(status)s)", row)
        conn.commit()
        dropped = database.prune(conn, 3, today=date(2026, 12, 5))
        assert dropped == ["calls_2026_08", "calls_2026_09", "recordings_2026_08", "recordings_2026_09"]
        assert database.partitions(conn, "calls") == ["calls_2026_10", "calls_2026_11", "calls_2026_12"]
        assert conn.execute("SELECT count(*) AS n FROM calls").fetchone()["n"] == 0  # type: ignore[index]
        with pytest.raises(database.DatabaseError):
            database.prune(conn, 0)


@pytest.fixture(autouse=True)
def _no_leftover_threads() -> Iterator[None]:
    before = threading.active_count()
    yield
    assert threading.active_count() <= before + 1


def test_sigterm_mid_stream_loses_nothing_and_writes_nothing_twice(client: redis.Redis, database_url: str) -> None:
    """`voffice history-writer` as `voffice up` runs it: SIGTERM while calls keep ending, a
    new process under the same name: every call one row (its own pending batch first)."""
    import signal
    import subprocess
    import sys

    from routing.stack.local import consumer_ready

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, "-m", "routing.cli.console", "history-writer", "--redis", _url(client),
                                 "--database", database_url, "--name", "history-1"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while not consumer_ready(_url(client), "history", "history-1"):  # (a SIGTERM while importing kills it: nothing read yet)
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        return proc

    writer = start()
    try:
        for i in range(0, 3000, 100):
            add(client, [call_event(j) for j in range(i, i + 100)])
            time.sleep(0.01)
            if i == 1500:
                writer.send_signal(signal.SIGTERM)
                assert writer.wait(30) == 0  # a clean exit, not a kill
        assert len(rows(database_url)) < 3000  # it really stopped mid-stream
        writer = start()
        found = wait_for_rows(database_url, 3000)
    finally:
        writer.send_signal(signal.SIGTERM)
        writer.wait(30)
    assert len(found) == 3000 and len({r["call_id"] for r in found}) == 3000
    assert b"Traceback" not in (writer.stderr.read() if writer.stderr else b"")


def test_the_local_cluster_wants_its_password(postgres_server: Any) -> None:
    """`voffice up`'s cluster: loopback TCP needs the password its initdb made (the role is a
    superuser: trust would let any local user run commands as the cluster's owner)."""
    assert postgres_server.password and postgres_server.password in postgres_server.url
    without = postgres_server.url.replace(f":{postgres_server.password}@", "@")
    with pytest.raises(database.DatabaseError, match="password"):
        database.connect(without, timeout=2)
    assert postgres_server.password_file.stat().st_mode & 0o077 == 0
