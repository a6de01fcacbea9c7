"""The NOC's commands for the call history and notifications, as a user runs them
(`.venv/bin/voffice`, real Redis and PostgreSQL): db upgrade, calls, deliveries (and retry
on demand), webhook-secret; bad input is one line, exit 1, no password shown."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
import redis

from routing.records import database
from routing.records.history import HistoryWriter

from .test_cli import voffice
from .test_history import add, call_event

pytestmark = [pytest.mark.redis, pytest.mark.postgres]


def one_line_error(result: Any) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    return str(result.stderr)


def test_db_upgrade_says_what_it_did(database_url: str) -> None:
    result = voffice("db", "upgrade", "--database", database_url)
    assert result.returncode == 0 and "up to date: schema version 1" in result.stdout
    error = one_line_error(voffice("db", "upgrade", "--database", "postgresql://voffice:hunter2-secret@127.0.0.1:1/x"))
    assert "hunter2-secret" not in error and "cannot connect" in error
    one_line_error(voffice("db", "upgrade", "--database", "redis://127.0.0.1/0"))


def test_calls_of_an_account_or_a_number_filtered_and_as_csv(redis_server: Any, database_url: str) -> None:
    client = redis.Redis.from_url(redis_server.url)
    add(client, [call_event(i) for i in range(5)] + [call_event(5, "missed")])
    writer = HistoryWriter(redis_server.url, database_url)
    from routing.records.stream import Consumer

    consumer = Consumer(client, "history", "cli")
    consumer.ensure_group()
    writer.write(consumer.read(block_ms=10))
    listed = voffice("calls", "berry-demo", "--database", database_url)
    assert listed.returncode == 0 and len(listed.stdout.splitlines()) == 6
    assert "missed" in listed.stdout.splitlines()[0]  # newest first
    only = voffice("calls", "+74951234567", "--status", "missed", "--csv", "--database", database_url)
    rows = list(csv.DictReader(io.StringIO(only.stdout)))
    assert [(r["status"], r["call_id"]) for r in rows] == [("missed", "c000000000000005")]
    window = voffice("calls", "berry-demo", "--from", "2025-11-24T16:00:02+00:00", "--to", "2025-11-24T16:00:04+00:00",
                     "--database", database_url)
    assert len(window.stdout.splitlines()) == 2
    assert "no calls for nobody" in voffice("calls", "nobody", "--database", database_url).stdout
    bad = voffice("calls", "berry-demo", "--from", "yesterday", "--database", database_url)
    assert bad.returncode == 2 and "--from" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1  # a usage error


def test_deliveries_listed_and_failed_ones_retried(database_url: str) -> None:
    with database.connect(database_url) as conn:
        for i, (status, error) in enumerate([("sent", ""), ("failed", "smtp 10.0.0.1:25: refused"), ("pending", "timeout")]):
            conn.execute("INSERT INTO deliveries (event_id, call_id, account, kind, channel, target, status, attempts, last_error, event) "
                         "VALUES (%s, %s, 'berry-demo', 'missed', 'email', %s, %s, 2, %s, %s)",
                         (f"1-{i}", f"c{i}", f"o{i}@berry-demo.ru", status, error, json.dumps({})))
        conn.commit()
    listed = voffice("deliveries", "berry-demo", "--database", database_url)
    assert listed.returncode == 0 and len(listed.stdout.splitlines()) == 3
    failed = voffice("deliveries", "--failed", "--database", database_url)
    assert len(failed.stdout.splitlines()) == 1 and "refused" in failed.stdout
    assert "1 delivery queued again" in voffice("deliveries", "--retry-failed", "--database", database_url).stdout
    assert "no deliveries failed" in voffice("deliveries", "--failed", "--database", database_url).stdout


def test_webhook_secret_shown_and_rotated(redis_server: Any, tmp_path: Any) -> None:
    from .conftest import SEED

    assert voffice("load", str(SEED), redis_url=redis_server.url).returncode == 0
    first = voffice("webhook-secret", "berry-demo", redis_url=redis_server.url).stdout.strip()
    assert len(first) == 64 and voffice("webhook-secret", "berry-demo", redis_url=redis_server.url).stdout.strip() == first
    rotated = voffice("webhook-secret", "berry-demo", "--rotate", redis_url=redis_server.url).stdout.strip()
    assert rotated != first and len(rotated) == 64
    assert "no loaded account" in one_line_error(voffice("webhook-secret", "nobody", redis_url=redis_server.url))
