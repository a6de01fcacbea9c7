"""`voffice bench history`: does the call history keep up with the stack, and how soon does a
notification go out?

Not a test: it prints figures. It starts its own Redis and PostgreSQL (Debian's), loads the
seed (its notifications: a missed call mails the office), and runs the real history writer
and notifier (in threads of this process, mail into a Maildir):

1. Capacity: EVENTS call records put on the stream at once, drained by one writer: rows/s.
2. Pace: call records at RATE/s (the stack's highest zero-failure rate measured by `voffice
   bench sip`: 800/s on this machine) for SECONDS: how far behind the writer falls (entries
   not yet acknowledged, sampled every 100 ms) and whether it catches up; the baseline in the
   same run is the rate itself (the writer must write at least as many rows/s as calls end).
3. Delivery latency: missed calls at a few per second: the time from a call's record on the
   stream to its mail in the Maildir (the notifier polls the stream every 200 ms).
"""

from __future__ import annotations

import json
import mailbox
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from routing.core.validation import validate_paths
from routing.records import database
from routing.records.history import HistoryWriter
from routing.records.notifier import Channels, Notifier
from routing.records.stream import STREAM, lag
from routing.stack.local import SEED
from routing.stack.postgres_server import PostgresServer, cluster_dir
from routing.stack.redis_server import RedisServer
from routing.store import configs


def call_record(i: int, status: str = "answered") -> dict[str, str]:
    now = time.time()
    return {
        "type": "call", "status": status, "account": "berry-demo", "number": "+74951234567", "caller": f"+7903{i % 10_000_000:07d}",
        "call_id": f"b{i:015x}", "sip_call_id": f"{i}@bench", "rule": "r1", "scenario": "lunch",
        "steps": json.dumps([{"operation": "secretary", "type": "group", "ringing": None, "event": None}]),
        "answered_by": "smirnova" if status == "answered" else "", "setup_seconds": "1.200",
        "talk_seconds": "30.000" if status == "answered" else "", "hung_up_by": "caller", "note": "",
        "started_at": f"{now - 31.2:.3f}", "ended_at": f"{now:.3f}",
    }


class Background:
    def __init__(self, target: Callable[[], None], stop: threading.Event):
        self.stop = stop
        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)


def count_rows(url: str) -> int:
    with database.connect(url) as conn:
        row = conn.execute("SELECT count(*) AS n FROM calls").fetchone()
    return int(row["n"]) if row else 0


def run_history_bench(events: int = 50_000, rate: int = 800, seconds: float = 10.0, notices: int = 20,
                      echo: Callable[[str], None] = print) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="voffice-bench-history-"))
    redis_server = RedisServer(work / "redis")
    postgres = PostgresServer(cluster_dir(work / "run"))  # fsync on, as `voffice up` runs it
    redis_server.start()
    postgres.start()
    results: dict[str, Any] = {}
    try:
        with database.connect(postgres.url) as conn:
            database.upgrade(conn)
        client = redis.Redis.from_url(redis_server.url)
        changes, _problems = configs.plan_load(client, validate_paths([str(SEED)]).documents)
        configs.apply_load(client, changes)
        echo(f"PostgreSQL {postgres.url} (fsync on), Redis {redis_server.url}; 2 cores")

        # 1. capacity
        writer = HistoryWriter(redis_server.url, postgres.url, name="bench-1")
        pipe = client.pipeline(transaction=False)
        for i in range(events):
            pipe.xadd(STREAM, call_record(i))  # type: ignore[arg-type]
            if i % 5000 == 4999:
                pipe.execute()
        pipe.execute()
        started = time.monotonic()
        running = Background(writer.run, writer.stop)
        while count_rows(postgres.url) < events and time.monotonic() - started < 600:
            time.sleep(0.2)
        elapsed = time.monotonic() - started
        capacity = events / elapsed
        results["capacity_rows_per_s"] = capacity
        echo(f"capacity: {events} call records drained in {elapsed:.1f} s: {capacity:,.0f} rows/s (one writer, batches of 500)")

        # 2. pace: the writer still running
        behind: list[int] = []
        base = events
        sent = 0
        t0 = time.monotonic()
        next_sample = t0
        while (now := time.monotonic()) - t0 < seconds:
            due = int((now - t0) * rate)
            if due > sent:
                pipe = client.pipeline(transaction=False)
                for i in range(sent, due):
                    pipe.xadd(STREAM, call_record(base + i))  # type: ignore[arg-type]
                pipe.execute()
                sent = due
            if now >= next_sample:
                behind.append(lag(client).get("history", 0))
                next_sample += 0.1
            time.sleep(0.005)
        caught_up = time.monotonic()
        while lag(client).get("history", 0) and time.monotonic() - caught_up < 60:
            time.sleep(0.05)
        catch_up = time.monotonic() - caught_up
        rows = count_rows(postgres.url) - events
        behind.sort()
        p99 = behind[int(len(behind) * 0.99) - 1] if behind else 0
        results.update(rate=rate, pace_rows=rows, pace_sent=sent, lag_p99=p99, lag_max=max(behind or [0]), catch_up_s=catch_up)
        echo(f"pace: {sent} records at {rate}/s for {seconds:.0f} s: {rows} rows; entries not yet written "
             f"p99 {p99}, max {max(behind or [0])} (= {max(behind or [0]) / rate * 1000:.0f} ms of calls); "
             f"caught up {catch_up * 1000:.0f} ms after the last")
        running.close()

        # 3. delivery latency: missed calls -> mail in the Maildir
        maildir = work / "mail"
        notifier = Notifier(redis_server.url, postgres.url, Channels(maildir=maildir), name="bench-n")
        # the backlog of answered calls is no notice; start the notifier at the stream's end
        client.xgroup_create(STREAM, "notifier", id="$", mkstream=True)
        running = Background(notifier.run, notifier.stop)
        latencies = []
        box = mailbox.Maildir(maildir, create=True)
        for n in range(notices):
            before = len(box.keys())
            put = time.monotonic()
            client.xadd(STREAM, call_record(10_000_000 + n, "missed"))  # type: ignore[arg-type]
            while len(box.keys()) == before and time.monotonic() - put < 30:
                time.sleep(0.005)
            latencies.append(time.monotonic() - put)
            time.sleep(0.2)
        running.close()
        latencies.sort()
        results.update(delivery_p50=statistics.median(latencies), delivery_max=latencies[-1])
        echo(f"delivery: {notices} missed calls, record on the stream -> mail in the Maildir: "
             f"p50 {statistics.median(latencies) * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms")
        verdict = "OK" if capacity >= rate and rows == sent and catch_up < 5 else "MISSED"
        echo(f"history writer {capacity:,.0f} rows/s vs the stack's {rate} calls/s -> {capacity / rate:.1f}x; "
             f"all {sent} paced records written: {verdict}")
        results["verdict"] = verdict
    finally:
        postgres.remove()
        redis_server.stop()
    return results
