"""The notifier: voicemail, fax and missed-call notices by email and signed webhooks.

Two steps, so that nothing is lost and nothing is sent twice to effect:
1. Queue: events are read through the `notifier` consumer group; each one the account's
   `notifications` asks for becomes one `deliveries` row per address and per URL (unique by
   call id, kind, channel and target: an event read twice, or a record Kamailio sent twice
   after a Redis timeout, queues nothing more), committed before
   the event is acknowledged. The account's settings of that moment go into the row.
2. Deliver: due rows are locked (FOR UPDATE SKIP LOCKED: several notifiers share the work),
   sent, and marked `sent`, or given their error and a next attempt with backoff; after
   MAX_ATTEMPTS they are `failed` and stay visible (`voffice deliveries --failed`) until
   retried on demand. Nothing is deleted because a notice went out (or did not).

A missed call is one `call` event (Kamailio writes one record per call, never per ringing
leg), so it is one notice. The webhook secret of an account lives in Redis
(`voffice:webhook-secret:<account>`, made on first use), never in the account's JSON.
"""

from __future__ import annotations

import json
import logging
import secrets
import socket
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import redis

from routing.records import database, webhook
from routing.records.history import entry_time
from routing.records.mail import DeliveryError, Notice, SmtpSettings, build_message, deliver_maildir, send_smtp
from routing.records.stream import Consumer, Entry, Trimmer
from routing.store import redis_client
from routing.store.reader import ConfigReader, StoreUnavailable

GROUP = "notifier"
MAX_ATTEMPTS = 8
SECRET_KEY = "voffice:webhook-secret:"
NOTIFIED_RECORDINGS = ("stored", "partial")
log = logging.getLogger("voffice.notifier")

QUEUE_SQL = (
    "INSERT INTO deliveries (event_id, call_id, account, kind, channel, target, event) "
    "VALUES (%(event_id)s, %(call_id)s, %(account)s, %(kind)s, %(channel)s, %(target)s, %(event)s) ON CONFLICT DO NOTHING"
)


def webhook_secret(client: redis.Redis, account: str, rotate: bool = False) -> str:
    """The account's signing secret, made when it has none (or replaced, with `rotate`)."""
    key = SECRET_KEY + account
    if rotate:
        client.set(key, webhook.new_secret())
    else:
        client.set(key, webhook.new_secret(), nx=True)
    value = client.get(key)
    return value.decode() if isinstance(value, bytes) else str(value)


def notice_kind(event: dict[str, str]) -> str | None:
    """What an event is a notice about, if anything."""
    if event.get("type") == "call" and event.get("status") == "missed":
        return "missed"
    if event.get("type") in ("voicemail", "fax") and event.get("status") in NOTIFIED_RECORDINGS:
        return event["type"]
    return None


def planned(entry_id: str, event: dict[str, str], plain: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The deliveries one event asks for under the account's config `plain` (pure)."""
    kind = notice_kind(event)
    settings = (plain or {}).get("notifications")
    if kind is None or not settings or kind not in settings.get("events", ()):
        return []
    context = {
        "event": event, "entry_id": entry_id, "kind": kind,
        "language": settings.get("language", "en"), "attachments": settings.get("attachments", "attach"),
        "timezone": str((plain or {}).get("timezone") or "UTC"),
    }
    base = {"event_id": entry_id, "call_id": event.get("call_id", ""), "account": event.get("account", ""), "kind": kind,
            "event": json.dumps(context, ensure_ascii=False)}
    rows = [{**base, "channel": "email", "target": address} for address in settings.get("email", ())]
    rows += [{**base, "channel": "webhook", "target": url} for url in settings.get("webhooks", ())]
    return rows


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


def notice_of(context: dict[str, Any], link_base: str | None) -> Notice:
    """The Notice for a queued delivery's context (what the event said, the settings then)."""
    event: dict[str, str] = context["event"]
    kind: str = context["kind"]
    try:
        zone = ZoneInfo(context.get("timezone") or "UTC")
    except (ValueError, KeyError):
        zone = ZoneInfo("UTC")
    started = _float(event.get("started_at"))
    at = datetime.fromtimestamp(started, UTC) if started is not None else entry_time(context["entry_id"])
    policy = context.get("attachments", "attach")
    link = None
    if policy == "link" and kind != "missed":
        if link_base:
            link = f"{link_base.rstrip('/')}/{event.get('account', '')}/{kind}/{event.get('call_id', '')}"
        else:
            policy = "none"  # no place to fetch it from: say it is kept, attach nothing
    pages = _float(event.get("pages"))
    return Notice(
        kind=kind, account=event.get("account", ""), number=event.get("number", ""), caller=event.get("caller", ""),
        call_id=event.get("call_id", ""), at=at.astimezone(zone), language=context.get("language", "en"),
        attachments=policy, duration_seconds=_float(event.get("duration")) if kind == "voicemail" else None,
        pages=int(pages) if pages is not None and kind == "fax" else None,
        audio=Path(event["path"]) if kind == "voicemail" and event.get("path") else None,
        pdf=Path(event["pdf"]) if kind == "fax" and event.get("pdf") else None, link=link,
    )


def default_sender() -> str:
    """voffice@ this host's name when it has a domain, else a name mail servers take from a
    local relay (give --mail-from for a real one)."""
    name = socket.getfqdn()
    return f"voffice@{name}" if "." in name and not name.endswith(".") else "voffice@localhost.localdomain"


@dataclass
class Channels:
    """Where notices go: an SMTP relay, else a Maildir (a newcomer's local stack); webhooks."""

    smtp: SmtpSettings | None = None
    maildir: Path | None = None
    sender: str = field(default_factory=lambda: default_sender())
    allow_private_webhooks: bool = False
    link_base: str | None = None
    retry_base: float = webhook.BACKOFF_BASE
    webhook_timeout: float = 5.0


class Notifier:
    def __init__(self, redis_url: str, database_url: str, channels: Channels, name: str = "notifier-1",
                 claim_idle_ms: int = 30_000):
        self.redis_url, self.database_url = redis_url, database_url
        self.channels, self.name, self.claim_idle_ms = channels, name, claim_idle_ms
        self.stop = threading.Event()
        self.sent = 0
        self._db = database.Session(database_url)
        self._client = redis_client.client(redis_url, timeout=5, connect_timeout=2)
        self._reader = ConfigReader(redis_url, timeout=2.0)

    def connection(self) -> psycopg.Connection[Any]:
        return self._db.get()

    def drop_connection(self) -> None:
        self._db.drop()

    # --- the loop -------------------------------------------------------------------------

    def run(self) -> None:
        consumer = Consumer(self._client, GROUP, self.name, claim_idle_ms=self.claim_idle_ms, batch=200)
        trimmer = Trimmer(self._client)
        first = True
        while not self.stop.is_set():
            try:
                if first:
                    consumer.ensure_group()
                    entries = consumer.own_pending()
                    first = bool(entries)
                else:
                    entries = consumer.read(block_ms=200)
                if entries:
                    self.queue(entries)
                    consumer.ack([entry_id for entry_id, _ in entries])
                self.deliver_due()
                trimmer.maybe_trim()
            except redis.RedisError as exc:
                log.warning("Redis: %s; retrying in 1 s", database.one_line(exc))
                self.stop.wait(1.0)
            except (psycopg.OperationalError, psycopg.InterfaceError, database.DatabaseError) as exc:
                log.warning("database: %s; retrying in 1 s", database.one_line(exc))
                self.drop_connection()
                self.stop.wait(1.0)
        self.drop_connection()

    def account_config(self, account: str) -> dict[str, Any] | None:
        try:
            found = self._reader.account(account)
        except StoreUnavailable:
            raise redis.ConnectionError("the account store is unavailable") from None
        return found.plain if found is not None else None

    def queue(self, entries: list[Entry]) -> int:
        rows = []
        for entry_id, event in entries:
            if notice_kind(event) is None:
                continue
            rows += planned(entry_id, event, self.account_config(event.get("account", "")))
        if rows:
            conn = self.connection()
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(QUEUE_SQL, rows)
        return len(rows)

    def deliver_due(self, limit: int = 20) -> int:
        """Attempt what is due; how many were attempted."""
        conn = self.connection()
        attempted = 0
        while attempted < limit and not self.stop.is_set():
            with conn.transaction():
                row = conn.execute(
                    "SELECT id, channel, target, account, attempts, event FROM deliveries "
                    "WHERE status = 'pending' AND next_attempt_at <= now() ORDER BY next_attempt_at, id "
                    "LIMIT 1 FOR UPDATE SKIP LOCKED").fetchone()
                if row is None:
                    return attempted
                attempted += 1
                error = self.attempt(row)
                attempts = int(row["attempts"]) + 1
                if error is None:
                    conn.execute("UPDATE deliveries SET status = 'sent', attempts = %s, sent_at = now(), last_error = '' "
                                 "WHERE id = %s", (attempts, row["id"]))
                    self.sent += 1
                    continue
                give_up = attempts >= MAX_ATTEMPTS or error.startswith("permanent:")
                delay = webhook.backoff(attempts, seed=row["id"], base=self.channels.retry_base)
                conn.execute(
                    "UPDATE deliveries SET status = %s, attempts = %s, last_error = %s, next_attempt_at = %s WHERE id = %s",
                    ("failed" if give_up else "pending", attempts, error[:500], datetime.now(UTC) + timedelta(seconds=delay), row["id"]))
                log.warning("delivery %s (%s to account %s) attempt %d: %s%s", row["id"], row["channel"], row["account"],
                            attempts, error, "; given up" if give_up else f"; again in {delay:.1f} s")
        return attempted

    def attempt(self, row: dict[str, Any]) -> str | None:
        """Send one delivery; None when done, else the error (one line, no secret)."""
        context = row["event"] if isinstance(row["event"], dict) else json.loads(row["event"])
        try:
            notice = notice_of(context, self.channels.link_base)
        except ValueError as exc:
            return f"permanent: {exc}"
        try:
            if row["channel"] == "email":
                message = build_message(notice, self.channels.sender, [row["target"]])
                if self.channels.smtp is not None:
                    send_smtp(self.channels.smtp, message)
                elif self.channels.maildir is not None:
                    deliver_maildir(self.channels.maildir, message)
                else:
                    return "no SMTP relay and no Maildir configured"
            elif row["channel"] == "webhook":
                sha = context["event"].get("sha256") or None
                body = webhook.notice_payload(notice, sha256=sha)
                secret = webhook_secret(self._client, notice.account)
                webhook.post(row["target"], body, secret, timeout=self.channels.webhook_timeout,
                             allow_private=self.channels.allow_private_webhooks)
            else:
                return f"permanent: unknown channel {row['channel']!r}"
        except DeliveryError as exc:
            return str(exc)
        except ValueError as exc:  # an address or value the message cannot carry
            return f"permanent: {exc}"
        except redis.RedisError as exc:
            return f"the webhook secret is unavailable: {database.one_line(exc)}"
        return None


def new_consumer_name(prefix: str = "notifier") -> str:
    return f"{prefix}-{socket.gethostname()}-{secrets.token_hex(3)}"
