"""The call-history database: migrations, monthly partitions, retention, and the queries
`voffice calls` and `voffice deliveries` answer from.

Migrations are the numbered SQL files in routing/records/migrations/, applied in order by
`voffice db upgrade`, each in its own transaction and recorded in `schema_migrations`; a
database newer than this code is refused rather than written to.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg.rows import dict_row

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_MIGRATION = re.compile(r"([0-9]{4})_[a-z0-9_]+\.sql")
PARTITIONED = ("calls", "recordings")
PARTITION_LOCK = 7_316_001  # pg_advisory_xact_lock key: one writer makes partitions at a time
STATUSES = ("answered", "voicemail", "fax", "missed", "failed")


class DatabaseError(Exception):
    """A database problem said in one line, without the URL's password."""


def redact(url: str) -> str:
    """A database URL fit for a message: the password (user info or `password=`) replaced."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is not None:
        parts = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1))
    if "password=" in parts.query.lower():
        parts = parts._replace(query=re.sub(r"(?i)(password=)[^&]*", r"\1***", parts.query))
    return parts.geturl()


def check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres") or (not parts.hostname and "host=" not in parts.query):
        raise DatabaseError(f"--database {redact(url)!r}: expected postgresql://[user[:password]@]host[:port]/dbname")


def connect(url: str, *, autocommit: bool = False, timeout: float = 5.0) -> psycopg.Connection[Any]:
    check_url(url)
    try:
        return psycopg.connect(url, autocommit=autocommit, connect_timeout=max(1, int(timeout)), row_factory=dict_row)
    except psycopg.Error as exc:
        raise DatabaseError(f"cannot connect to {redact(url)}: {one_line(exc)}") from exc


class Session:
    """A consumer's connection: opened (and its schema checked) when first needed, dropped
    after an error so that the next use reconnects; `on_connect` runs on every new one."""

    def __init__(self, url: str, on_connect: Callable[[], None] = lambda: None):
        self.url, self.on_connect = url, on_connect
        self._conn: psycopg.Connection[Any] | None = None

    def get(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.url)
            require_schema(self._conn)
            self.on_connect()
        return self._conn

    def drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
        self._conn = None


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def migrations() -> list[tuple[int, Path]]:
    found = []
    for path in sorted(MIGRATIONS.glob("*.sql")):
        match = _MIGRATION.fullmatch(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return found


def current_version(conn: psycopg.Connection[Any]) -> int:
    conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
    row = conn.execute("SELECT coalesce(max(version), 0) AS v FROM schema_migrations").fetchone()
    conn.commit()
    return int(row["v"]) if row else 0


def upgrade(conn: psycopg.Connection[Any]) -> list[int]:
    """Apply what is missing; the versions applied."""
    have = current_version(conn)
    known = migrations()
    newest = known[-1][0] if known else 0
    if have > newest:
        raise DatabaseError(f"the database is at schema version {have}, newer than this voffice ({newest}): upgrade voffice")
    applied = []
    for version, path in known:
        if version <= have:
            continue
        with conn.transaction():
            conn.execute(path.read_text(encoding="utf-8"))
            conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
        applied.append(version)
    conn.commit()
    return applied


def require_schema(conn: psycopg.Connection[Any]) -> None:
    have = current_version(conn)
    newest = migrations()[-1][0]
    if have != newest:
        raise DatabaseError(f"the database is at schema version {have}, this voffice needs {newest}: run `voffice db upgrade`")


def month_start(moment: datetime) -> date:
    return date(moment.year, moment.month, 1)


def next_month(first: date) -> date:
    return date(first.year + first.month // 12, first.month % 12 + 1, 1)


def partition_name(table: str, first: date) -> str:
    return f"{table}_{first.year:04d}_{first.month:02d}"


def ensure_partitions(conn: psycopg.Connection[Any], table: str, months: Iterable[date], known: set[str] | None = None) -> None:
    """The monthly partitions of `table` the given months fall in (idempotent; `known` caches
    the ones this process has made)."""
    assert table in PARTITIONED
    for first in sorted(set(months)):
        name = partition_name(table, first)
        if known is not None and name in known:
            continue
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {table} "  # names built from digits only
            f"FOR VALUES FROM ('{first.isoformat()} 00:00+00') TO ('{next_month(first).isoformat()} 00:00+00')"
        )
        if known is not None:
            known.add(name)


def partitions(conn: psycopg.Connection[Any], table: str) -> list[str]:
    rows = conn.execute(
        "SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s ORDER BY 1", (table,)
    ).fetchall()
    return [str(r["name"]) for r in rows]


def prune(conn: psycopg.Connection[Any], keep_months: int, today: date | None = None) -> list[str]:
    """Drop the partitions (whole months) older than the last `keep_months` months, this one
    included; the names dropped. Deliveries are kept: they are small and say what was sent."""
    if keep_months < 1:
        raise DatabaseError("retention must keep at least 1 month")
    first = month_start(datetime.now(UTC)) if today is None else date(today.year, today.month, 1)
    for _ in range(keep_months - 1):
        first = date(first.year - (first.month == 1), (first.month - 2) % 12 + 1, 1)
    oldest_kept = partition_name("", first)
    dropped = []
    for table in PARTITIONED:
        for name in partitions(conn, table):
            if name[len(table):] < oldest_kept:
                conn.execute(f"DROP TABLE {name}")
                dropped.append(name)
    conn.commit()
    return dropped


# --- queries -------------------------------------------------------------------------------

CALL_COLUMNS = ("started_at", "ended_at", "account", "number", "caller", "status", "rule", "scenario", "answered_by",
                "setup_seconds", "talk_seconds", "hung_up_by", "note", "call_id", "sip_call_id")


def _like(pattern: str) -> str:
    """A caller pattern as in caller lists (`*` any digits, `?` one) as a LIKE pattern."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def calls(conn: psycopg.Connection[Any], *, account: str | None = None, number: str | None = None,
          since: datetime | None = None, until: datetime | None = None, status: str | None = None,
          caller: str | None = None, rule: str | None = None, before: tuple[datetime, str] | None = None,
          limit: int = 1000) -> list[dict[str, Any]]:
    """Calls of an account or a number, newest first, with what they left (voicemail, fax).

    `caller` may hold `*` (any digits) and `?` (one), as caller lists do; `before` is a page's
    cursor: only calls older than that (started_at, call_id), in the same order."""
    where: list[str] = ["TRUE"]
    args: list[Any] = []
    for column, value in (("account", account), ("number", number), ("status", status), ("rule", rule)):
        if value is not None:
            where.append(f"c.{column} = %s")
            args.append(value)
    if caller is not None:
        where.append("c.caller LIKE %s")
        args.append(_like(caller))
    if since is not None:
        where.append("c.started_at >= %s")
        args.append(since)
    if until is not None:
        where.append("c.started_at < %s")
        args.append(until)
    if before is not None:
        where.append("(c.started_at, c.call_id) < (%s, %s)")
        args.extend(before)
    args.append(limit)
    sql = (f"SELECT {', '.join('c.' + c for c in CALL_COLUMNS)}, r.kind AS left_kind, r.path AS left_path, "
           "r.pdf AS left_pdf, r.duration AS left_duration, r.pages AS left_pages "
           "FROM calls c LEFT JOIN LATERAL (SELECT * FROM recordings r WHERE r.call_id = c.call_id "
           "ORDER BY r.created_at LIMIT 1) r ON TRUE "
           f"WHERE {' AND '.join(where)} ORDER BY c.started_at DESC, c.call_id DESC LIMIT %s")
    return list(conn.execute(sql, args).fetchall())


RECORDING_COLUMNS = ("created_at", "call_id", "kind", "account", "number", "caller", "status", "path", "pdf",
                     "duration", "pages", "bytes", "sha256")


def recordings(conn: psycopg.Connection[Any], *, account: str, kind: str, call_id: str | None = None,
               before: tuple[datetime, str] | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """The voicemails (or faxes) an account's calls left, newest first, one per call (the first
    stored: an event read twice is one recording), each with its notices' states
    (`deliveries`: [{channel, status}]); `call_id` picks one."""
    if kind not in ("voicemail", "fax"):
        raise ValueError(f"unknown recording kind {kind!r}")
    where, args = ["r.account = %s", "r.kind = %s"], [account, kind]
    if call_id is not None:
        where.append("r.call_id = %s")
        args.append(call_id)
    outer, outer_args = "TRUE", []
    if before is not None:
        outer = "(x.created_at, x.call_id) < (%s, %s)"
        outer_args = list(before)
    sql = (f"SELECT x.*, coalesce((SELECT json_agg(json_build_object('channel', d.channel, 'status', d.status) "
           "ORDER BY d.id) FROM deliveries d WHERE d.account = x.account AND d.call_id = x.call_id "
           "AND d.kind = x.kind), '[]') AS deliveries FROM ("
           f"SELECT DISTINCT ON (r.call_id) {', '.join('r.' + c for c in RECORDING_COLUMNS)} FROM recordings r "
           f"WHERE {' AND '.join(where)} ORDER BY r.call_id, r.created_at) x "
           f"WHERE {outer} ORDER BY x.created_at DESC, x.call_id DESC LIMIT %s")
    return list(conn.execute(sql, [*args, *outer_args, limit]).fetchall())


def deliveries(conn: psycopg.Connection[Any], *, account: str | None = None, failed: bool = False,
               status: str | None = None, kind: str | None = None, call_id: str | None = None,
               before: int | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """Notices queued, sent and failed, newest first (`before`: ids below a page's last)."""
    where: list[str] = ["TRUE"]
    args: list[Any] = []
    for column, value in (("account", account), ("status", "failed" if failed else status), ("kind", kind),
                          ("call_id", call_id)):
        if value is not None:
            where.append(f"{column} = %s")
            args.append(value)
    if before is not None:
        where.append("id < %s")
        args.append(before)
    args.append(limit)
    sql = ("SELECT id, created_at, account, kind, channel, target, status, attempts, last_error, sent_at, call_id, "
           f"next_attempt_at FROM deliveries WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT %s")
    return list(conn.execute(sql, args).fetchall())


def retry(conn: psycopg.Connection[Any], ids: Sequence[int] = (), *, all_failed: bool = False, account: str | None = None) -> int:
    """Put deliveries back in the queue (due now); how many."""
    if all_failed:
        args: list[Any] = []
        sql = "UPDATE deliveries SET status = 'pending', next_attempt_at = now() WHERE status = 'failed'"
        if account is not None:
            sql += " AND account = %s"
            args.append(account)
    else:
        sql, args = "UPDATE deliveries SET status = 'pending', next_attempt_at = now() WHERE id = ANY(%s)", [list(ids)]
    count = conn.execute(sql, args).rowcount
    conn.commit()
    return count


_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]*@")
_QUERY = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s?#]*)[?#]\S*")


def shown_target(channel: str, target: str) -> str:
    """A delivery's target fit for a listing: a webhook URL without user info, query or
    fragment (where a receiver's token may sit); an email address as it is."""
    if channel != "webhook":
        return target
    try:
        parts = urlsplit(target)
    except ValueError:
        return "<unparsable URL>"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def shown_error(text: str) -> str:
    """A delivery's last error with any URL's user info and query taken out (the notifier
    writes none, but an error quoting a URL must not carry a secret further)."""
    return _QUERY.sub(r"\1?***", _USERINFO.sub(r"\1***@", text))
