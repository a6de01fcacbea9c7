"""The history writer: `voffice:events` -> PostgreSQL, one row per call and per recording.

Entries are read through the `history` consumer group (stream.Consumer), written in one
transaction per batch with ON CONFLICT DO NOTHING (a call's row is keyed by its start and
our call id, a recording's by its entry id: a batch written twice, after a crash between
COMMIT and XACK, has one effect) and acknowledged after the COMMIT. While PostgreSQL or Redis
is away the writer keeps its batch and tries again; nothing is acknowledged that is not
written. SIGTERM: the batch in hand is finished, then the process exits.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

import psycopg
import redis

from routing.records import database
from routing.records.stream import Consumer, Entry, Trimmer
from routing.store import redis_client

GROUP = "history"
log = logging.getLogger("voffice.history")

CALL_SQL = (
    "INSERT INTO calls (started_at, call_id, ended_at, event_id, account, number, caller, status, rule, scenario, steps, "
    "answered_by, setup_seconds, talk_seconds, hung_up_by, note, sip_call_id) VALUES "
    "(%(started_at)s, %(call_id)s, %(ended_at)s, %(event_id)s, %(account)s, %(number)s, %(caller)s, %(status)s, %(rule)s, "
    "%(scenario)s, %(steps)s, %(answered_by)s, %(setup_seconds)s, %(talk_seconds)s, %(hung_up_by)s, %(note)s, %(sip_call_id)s) "
    "ON CONFLICT DO NOTHING"
)
RECORDING_SQL = (
    "INSERT INTO recordings (created_at, event_id, call_id, kind, account, number, caller, status, path, pdf, duration, pages, "
    "sha256, bytes) VALUES (%(created_at)s, %(event_id)s, %(call_id)s, %(kind)s, %(account)s, %(number)s, %(caller)s, "
    "%(status)s, %(path)s, %(pdf)s, %(duration)s, %(pages)s, %(sha256)s, %(bytes)s) ON CONFLICT DO NOTHING"
)


def entry_time(entry_id: str) -> datetime:
    return datetime.fromtimestamp(int(entry_id.partition("-")[0]) / 1000, UTC)


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def call_row(entry_id: str, event: dict[str, str]) -> dict[str, Any] | None:
    """The `calls` row of a `call` event (None: not a call record, or one without a call id)."""
    if event.get("type") != "call" or not event.get("call_id"):
        return None
    setup, talk = _number(event.get("setup_seconds")), _number(event.get("talk_seconds"))
    ended = _number(event.get("ended_at"))
    ended_at = datetime.fromtimestamp(ended, UTC) if ended is not None else entry_time(entry_id)
    started = _number(event.get("started_at"))
    if started is None:  # records written before started_at was in them
        started = ended_at.timestamp() - (setup or 0.0) - (talk or 0.0)
    try:
        steps = json.loads(event.get("steps") or "[]")
    except ValueError:
        steps = []
    return {
        "started_at": datetime.fromtimestamp(started, UTC), "call_id": event["call_id"], "ended_at": ended_at,
        "event_id": entry_id, "account": event.get("account", ""), "number": event.get("number", ""),
        "caller": event.get("caller", ""), "status": event.get("status", ""), "rule": event.get("rule", ""),
        "scenario": event.get("scenario", ""), "steps": json.dumps(steps), "answered_by": event.get("answered_by", ""),
        "setup_seconds": setup, "talk_seconds": talk, "hung_up_by": event.get("hung_up_by", ""),
        "note": event.get("note", ""), "sip_call_id": event.get("sip_call_id", ""),
    }


def recording_row(entry_id: str, event: dict[str, str]) -> dict[str, Any] | None:
    """The `recordings` row of a voicemail or fax event."""
    if event.get("type") not in ("voicemail", "fax") or not event.get("call_id"):
        return None
    pages = _number(event.get("pages"))
    size = _number(event.get("bytes"))
    return {
        "created_at": entry_time(entry_id), "event_id": entry_id, "call_id": event["call_id"], "kind": event["type"],
        "account": event.get("account", ""), "number": event.get("number", ""), "caller": event.get("caller", ""),
        "status": event.get("status", ""), "path": event.get("path", ""), "pdf": event.get("pdf", ""),
        "duration": _number(event.get("duration")), "pages": int(pages) if pages is not None else None,
        "sha256": event.get("sha256", ""), "bytes": int(size) if size is not None else None,
    }


class HistoryWriter:
    def __init__(self, redis_url: str, database_url: str, name: str = "history-1", keep_months: int | None = None,
                 claim_idle_ms: int = 30_000, batch: int = 500):
        self.redis_url, self.database_url = redis_url, database_url
        self.name, self.keep_months = name, keep_months
        self.claim_idle_ms, self.batch = claim_idle_ms, batch
        self.stop = threading.Event()
        self.written = 0
        self._partitions: set[str] = set()  # made by this process (cleared on a new connection)
        self._db = database.Session(database_url, self._partitions.clear)
        self._pruned_on: str = ""

    # --- connections ----------------------------------------------------------------------

    def connection(self) -> psycopg.Connection[Any]:
        return self._db.get()

    def drop_connection(self) -> None:
        self._db.drop()

    # --- the loop -------------------------------------------------------------------------

    def run(self) -> None:
        client = redis_client.client(self.redis_url, timeout=5, connect_timeout=2)
        consumer = Consumer(client, GROUP, self.name, claim_idle_ms=self.claim_idle_ms, batch=self.batch)
        trimmer = Trimmer(client)
        first = True
        while not self.stop.is_set():
            try:
                if first:
                    consumer.ensure_group()
                    entries = consumer.own_pending()  # this name's batch from before a restart
                    first = bool(entries)
                else:
                    entries = consumer.read(block_ms=500)
                if entries:
                    self.write_until_done(entries)
                    consumer.ack([entry_id for entry_id, _ in entries])
                trimmer.maybe_trim()
                self.maybe_prune()
            except redis.RedisError as exc:
                log.warning("Redis: %s; retrying in 1 s", database.one_line(exc))
                self.stop.wait(1.0)
        self.drop_connection()

    def write_until_done(self, entries: list[Entry]) -> None:
        """Write the batch, retrying while the database is away (even past a stop request:
        what was read is written before the process goes, or stays pending for the next)."""
        delay = 0.5
        while True:
            try:
                self.write(entries)
                return
            except (psycopg.OperationalError, psycopg.InterfaceError, database.DatabaseError) as exc:
                self.drop_connection()
                if self.stop.is_set():
                    log.warning("stopping with %d events unwritten (left pending): %s", len(entries), database.one_line(exc))
                    raise SystemExit(0) from exc
                log.warning("database: %s; retrying in %.1f s", database.one_line(exc), delay)
                self.stop.wait(delay)
                delay = min(delay * 2, 10.0)

    def write(self, entries: list[Entry]) -> int:
        calls = [row for entry_id, event in entries if (row := call_row(entry_id, event)) is not None]
        recordings = [row for entry_id, event in entries if (row := recording_row(entry_id, event)) is not None]
        conn = self.connection()
        months = {"calls": {database.month_start(r["started_at"]) for r in calls},
                  "recordings": {database.month_start(r["created_at"]) for r in recordings}}
        if any(database.partition_name(t, m) not in self._partitions for t, ms in months.items() for m in ms):
            # Partitions in a short transaction of their own, one writer at a time: CREATE
            # TABLE ... PARTITION OF locks the parent until COMMIT, and two writers making
            # the same month's table at once would collide (or deadlock on two parents).
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (database.PARTITION_LOCK,))
                for table, wanted in months.items():
                    database.ensure_partitions(conn, table, wanted, self._partitions)
        with conn.transaction():
            with conn.cursor() as cur:
                if calls:
                    cur.executemany(CALL_SQL, calls)
                if recordings:
                    cur.executemany(RECORDING_SQL, recordings)
        self.written += len(calls) + len(recordings)
        return len(calls) + len(recordings)

    def maybe_prune(self) -> None:
        """Retention: whole months past `keep_months`, checked once a day."""
        today = time.strftime("%Y-%m-%d")
        if self.keep_months is None or today == self._pruned_on:
            return
        self._pruned_on = today
        try:
            dropped = database.prune(self.connection(), self.keep_months)
        except (psycopg.Error, database.DatabaseError) as exc:
            log.warning("retention: %s", database.one_line(exc))
            self.drop_connection()  # not left in an aborted transaction for the next batch
            self._pruned_on = ""
            return
        self._partitions.difference_update(dropped)
        if dropped:
            log.info("retention (%d months): dropped %s", self.keep_months, ", ".join(dropped))
