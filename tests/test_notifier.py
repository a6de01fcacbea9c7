"""The notifier without the call path: which events become deliveries (pure), that an event
read twice queues nothing more, and that a notifier killed mid-batch leaves it to the next
one (real Redis and PostgreSQL)."""

from __future__ import annotations

import copy
import json
import mailbox
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from routing.core.validation import validate_paths
from routing.records import database
from routing.records.notifier import Channels, Notifier, notice_kind, notice_of, planned, webhook_secret
from routing.records.stream import STREAM, Consumer, lag
from routing.store import configs

from .conftest import SEED

MISSED = {"type": "call", "status": "missed", "account": "berry-demo", "number": "+74951234567", "caller": "+79031112233",
          "call_id": "0c3cec86254c6f5a", "started_at": "1764576000.000", "ended_at": "1764576018.000"}


def test_which_events_are_notices() -> None:
    assert notice_kind(MISSED) == "missed"
    assert notice_kind({**MISSED, "status": "answered"}) is None
    assert notice_kind({**MISSED, "status": "voicemail"}) is None  # notified as the voicemail itself
    assert notice_kind({"type": "voicemail", "status": "stored"}) == "voicemail"
    assert notice_kind({"type": "fax", "status": "failed"}) is None  # no page came: nothing to send
    assert notice_kind({"type": "menu"}) is None


def test_one_delivery_per_address_and_url_with_the_settings_of_the_moment(seed_doc: dict[str, Any]) -> None:
    plain = {"timezone": "Europe/Moscow", "notifications": {
        "language": "ru", "email": ["a@x.ru", "b@x.ru"], "webhooks": ["https://crm.x.ru/h"], "events": ["missed"],
        "attachments": "none"}}
    rows = planned("1764576018000-0", MISSED, plain)
    assert [(r["channel"], r["target"]) for r in rows] == [("email", "a@x.ru"), ("email", "b@x.ru"), ("webhook", "https://crm.x.ru/h")]
    context = json.loads(rows[0]["event"])
    notice = notice_of(context, None)
    assert (notice.kind, notice.language, notice.attachments, notice.at.utcoffset().total_seconds()) == ("missed", "ru", "none", 3 * 3600)  # type: ignore[union-attr]
    assert planned("1-0", MISSED, {"notifications": {**plain["notifications"], "events": ["voicemail"]}}) == []
    assert planned("1-0", MISSED, {"notifications": None}) == [] and planned("1-0", MISSED, None) == []


def test_link_policy_without_a_link_base_keeps_the_file_on_the_server() -> None:
    context = {"event": {**MISSED, "type": "voicemail", "status": "stored", "path": "/x.wav", "duration": "8.0"},
               "entry_id": "1-0", "kind": "voicemail", "language": "en", "attachments": "link", "timezone": "UTC"}
    assert notice_of(context, None).attachments == "none"
    linked = notice_of(context, "https://cabinet.example/rec")
    assert linked.link == "https://cabinet.example/rec/berry-demo/voicemail/0c3cec86254c6f5a"


@pytest.fixture
def loaded(redis_server: Any) -> redis.Redis:
    client = redis.Redis.from_url(redis_server.url)
    changes, problems = configs.plan_load(client, validate_paths([str(SEED)]).documents)
    assert not problems
    configs.apply_load(client, changes)
    return client


@pytest.mark.redis
@pytest.mark.postgres
def test_an_event_read_twice_queues_one_notice_and_one_mail(loaded: redis.Redis, redis_server: Any, database_url: str,
                                                           tmp_path: Path) -> None:
    """A notifier that queued the deliveries but died before its XACK: the next one (another
    name, XAUTOCLAIM) reads the event again; the office still gets one mail."""
    loaded.xadd(STREAM, MISSED)  # type: ignore[arg-type]
    channels = Channels(maildir=tmp_path / "mail", retry_base=0.1)
    dead = Notifier(redis_server.url, database_url, channels, name="dead")
    consumer = Consumer(loaded, "notifier", "dead")
    consumer.ensure_group()
    entries = consumer.read(block_ms=10)
    assert dead.queue(entries) == 1  # committed; no XACK: killed here
    assert dead.queue(entries) == 1  # (the same rows again: ON CONFLICT, nothing new)
    survivor = Notifier(redis_server.url, database_url, channels, name="next", claim_idle_ms=100)
    thread = threading.Thread(target=survivor.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while (lag(loaded).get("notifier") or not (tmp_path / "mail").exists()) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
    finally:
        survivor.stop.set()
        thread.join(10)
    with database.connect(database_url) as conn:
        rows = database.deliveries(conn)
    assert [(r["channel"], r["target"], r["status"]) for r in rows] == [("email", "office@berry-demo.ru", "sent")]
    assert len(mailbox.Maildir(tmp_path / "mail", create=False).keys()) == 1
    assert lag(loaded)["notifier"] == 0


@pytest.mark.redis
def test_the_webhook_secret_is_made_once_and_rotated_on_demand(redis_server: Any) -> None:
    client = redis.Redis.from_url(redis_server.url)
    first = webhook_secret(client, "berry-demo")
    assert len(first) == 64 and webhook_secret(client, "berry-demo") == first
    rotated = webhook_secret(client, "berry-demo", rotate=True)
    assert rotated != first and webhook_secret(client, "berry-demo") == rotated


def test_settings_the_seed_declares(seed_doc: dict[str, Any]) -> None:
    from routing.core.compiler import compile_account

    doc = copy.deepcopy(seed_doc)
    plain = compile_account(doc)
    assert plain["notifications"]["email"] == ["office@berry-demo.ru"] and plain["notifications"]["language"] == "ru"
