"""What an account's calls left: the call history (JSON and CSV), voicemail and faxes (lists
and the files), and the delivery status of their notices, from the call-history database
(routing.records.database, the queries `voffice calls` and `voffice deliveries` use).

Every query is bound to the path's account: another account's call, voicemail, fax or
delivery is not found (404), exactly like one that does not exist. Ids are strict (a call id
is [A-Za-z0-9_-]{1,64}) and are looked up in the database, never joined into a path; the file
a row names is served only from the media servers' folders for that account
(routing.records.files). Paths on the server are never shown.

Lists are newest first, `limit` long, with `next_cursor` (opaque) for the page after.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, tzinfo
from typing import Annotated, Any, Protocol

import psycopg
import redis
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, Response

from routing.core.problems import Problem
from routing.records import database, files
from routing.web import planning
from routing.web.auth import DIGITS, LoadedAccount, settings_of

router = APIRouter(prefix="/accounts", tags=["records"])
log = logging.getLogger("voffice.web")

RECORD_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
CSV_COLUMNS = ("started_at", "ended_at", "number", "caller", "status", "rule", "scenario", "answered_by",
               "setup_seconds", "talk_seconds", "hung_up_by", "note", "call_id", "left", "left_duration", "left_pages")
CSV_RISKY = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet may take for a formula
DELIVERY_STATES = ("pending", "sent", "failed")
NOTICE_KINDS = ("voicemail", "fax", "missed")


# --- shared ----------------------------------------------------------------------------------


class Scope(Protocol):
    """An account the caller may see: the API's AccountScope or the console's AccountPage
    (the console's pages call the functions below as the API's routes do)."""

    @property
    def account(self) -> str: ...

    @property
    def redis(self) -> redis.Redis: ...


def bad_query(scope: Scope, name: str, message: str) -> planning.Invalid:
    return planning.Invalid([Problem(scope.account, f"/query/{name}", message)], detail=f"{name}: {message}")


@contextmanager
def history(request: Request) -> Iterator[psycopg.Connection[Any]]:
    """A connection to the call history: 503 when none is configured or it is unreachable
    (said without the URL's password)."""
    url = settings_of(request).database_url
    if not url:
        raise HTTPException(503, "no call history: voffice web was started without --database")
    try:
        with database.connect(url) as conn:
            yield conn
    except database.DatabaseError as exc:
        log.warning("call history: %s", exc)
        raise HTTPException(503, "the call history database is unreachable") from None
    except psycopg.Error as exc:
        log.warning("call history: %s", type(exc).__name__)
        raise HTTPException(503, "the call history database failed") from None


def account_zone(scope: Scope) -> tzinfo:
    compiled = planning.compiled(scope.redis, scope.account)
    return compiled.tz if compiled is not None else UTC


def moment(scope: Scope, name: str, text: str | None, zone: tzinfo) -> datetime | None:
    """An ISO 8601 date or time; without an offset, the account's local time."""
    if text is None or text == "":
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise bad_query(scope, name, f"{text[:40]!r} is not an ISO 8601 date or time such as "
                                     "2026-11-25 or 2026-11-25T13:00+03:00") from None
    return value.replace(tzinfo=zone) if value.tzinfo is None else value


def iso(value: datetime | None, zone: tzinfo) -> str | None:
    return value.astimezone(zone).isoformat() if value is not None else None


def record_id(scope: Scope, value: str, what: str) -> str:
    """A call id from the path: strict, and an unknown one is simply not found."""
    if not RECORD_ID.fullmatch(value):
        raise HTTPException(404, f"{what} {value[:64]!r} not found")
    return value


def cursor_out(when: datetime, key: str) -> str:
    return base64.urlsafe_b64encode(f"{when.isoformat()}|{key}".encode()).decode().rstrip("=")


def cursor_in(scope: Scope, text: str | None) -> tuple[datetime, str] | None:
    """The position a `next_cursor` names: (time, call id), checked strictly."""
    if not text:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
        when, _, key = raw.partition("|")
        at = datetime.fromisoformat(when)
        if at.tzinfo is None or not RECORD_ID.fullmatch(key):
            raise ValueError
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise bad_query(scope, "cursor", "not a cursor this API gave (use next_cursor as it is)") from None
    return at, key


Limit = Annotated[int, Query(ge=1, le=1000, description="How many (newest first)")]
Cursor = Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page")]
Since = Annotated[str | None, Query(alias="from", max_length=40,
                                    description="ISO 8601 date or time (inclusive); no offset: the account's time")]
Until = Annotated[str | None, Query(alias="to", max_length=40, description="ISO 8601 date or time (exclusive)")]


# --- calls -----------------------------------------------------------------------------------


def _left(row: dict[str, Any], account: str) -> dict[str, Any] | None:
    kind = row.get("left_kind")
    if not kind:
        return None
    out: dict[str, Any] = {"kind": kind, "id": row["call_id"]}
    if kind == "voicemail":
        out |= {"duration": row["left_duration"], "url": f"/api/accounts/{account}/voicemail/{row['call_id']}"}
    elif kind == "fax":
        out |= {"pages": row["left_pages"], "url": f"/api/accounts/{account}/faxes/{row['call_id']}.pdf"}
    return out


def call_json(row: dict[str, Any], account: str, zone: tzinfo) -> dict[str, Any]:
    return {
        "call_id": row["call_id"], "started_at": iso(row["started_at"], zone), "ended_at": iso(row["ended_at"], zone),
        "number": row["number"], "caller": row["caller"], "status": row["status"], "rule": row["rule"],
        "scenario": row["scenario"], "answered_by": row["answered_by"], "setup_seconds": row["setup_seconds"],
        "talk_seconds": row["talk_seconds"], "hung_up_by": row["hung_up_by"], "note": row["note"],
        "left": _left(row, account),
    }


def query_calls(scope: Scope, request: Request, since: str | None, until: str | None, status: str | None,
                number: str | None, caller: str | None, rule: str | None, limit: int,
                cursor: str | None) -> tuple[list[dict[str, Any]], tzinfo, str | None]:
    """The filtered page of calls, the account's zone, and the cursor of the next page."""
    if status is not None and status not in database.STATUSES:
        raise bad_query(scope, "status", f"{status[:20]!r} is not one of {', '.join(database.STATUSES)}")
    zone = account_zone(scope)
    start, end = moment(scope, "from", since, zone), moment(scope, "to", until, zone)
    if start is not None and end is not None and end <= start:
        raise bad_query(scope, "to", "must be later than from")
    before = cursor_in(scope, cursor)
    with history(request) as conn:
        rows = database.calls(conn, account=scope.account, number=number or None, since=start, until=end,
                              status=status, caller=caller or None, rule=rule or None, before=before, limit=limit)
    following = cursor_out(rows[-1]["started_at"], rows[-1]["call_id"]) if len(rows) == limit else None
    return rows, zone, following


Status = Annotated[str | None, Query(max_length=20, description="answered, voicemail, fax, missed or failed")]
Number = Annotated[str | None, Query(max_length=40, description="The dialled number (one of the account's)")]
Caller = Annotated[str | None, Query(max_length=80, description="The caller; * any digits, ? one digit")]
Rule = Annotated[str | None, Query(max_length=100, description="The id of the rule that matched")]


@router.get("/{account}/calls")
def list_calls(scope: LoadedAccount, request: Request, since: Since = None, until: Until = None,
               status: Status = None, number: Number = None, caller: Caller = None, rule: Rule = None,
               limit: Limit = 100, cursor: Cursor = None) -> dict[str, Any]:
    """The call history (`voffice calls --json`), filtered, newest first; `next_cursor` pages on."""
    rows, zone, following = query_calls(scope, request, since, until, status, number, caller, rule, limit, cursor)
    return {"account": scope.account, "calls": [call_json(r, scope.account, zone) for r in rows],
            "next_cursor": following}


def csv_cell(value: Any, zone: tzinfo) -> str:
    """A value as a CSV cell a spreadsheet shows as text: one that could start a formula
    (= + - @, tab, CR) gets a leading apostrophe (OWASP's CSV injection advice)."""
    if value is None:
        return ""
    text = value.astimezone(zone).isoformat() if isinstance(value, datetime) else str(value)
    return "'" + text if text.startswith(CSV_RISKY) else text


def calls_csv(rows: list[dict[str, Any]], zone: tzinfo) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        values = {**row, "left": row.get("left_kind")}
        writer.writerow([csv_cell(values.get(c), zone) for c in CSV_COLUMNS])
    return out.getvalue()


@router.get("/{account}/calls.csv", response_class=Response,
            responses={200: {"content": {"text/csv": {}}, "description": "A header row, then one call a row"}})
def export_calls(scope: LoadedAccount, request: Request, since: Since = None, until: Until = None,
                 status: Status = None, number: Number = None, caller: Caller = None, rule: Rule = None,
                 limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000, cursor: Cursor = None) -> Response:
    """The same calls as CSV (UTF-8, a header row, RFC 4180 quoting, formula-safe cells);
    `X-Next-Cursor` when there are more."""
    rows, zone, following = query_calls(scope, request, since, until, status, number, caller, rule, limit, cursor)
    headers = {"Content-Disposition": f'attachment; filename="calls-{scope.account}.csv"'}
    if following:
        headers["X-Next-Cursor"] = following
    return Response(calls_csv(rows, zone), media_type="text/csv; charset=utf-8", headers=headers)


# --- voicemail and faxes ---------------------------------------------------------------------


def delivery_state(deliveries: list[dict[str, Any]]) -> str:
    """One word for a recording's notices: none, pending, sent (all), failed (any)."""
    states = {d.get("status") for d in deliveries}
    if not states:
        return "none"
    return "failed" if "failed" in states else "pending" if "pending" in states else "sent"


def recording_json(row: dict[str, Any], account: str, zone: tzinfo) -> dict[str, Any]:
    kind, call_id = row["kind"], row["call_id"]
    deliveries = row["deliveries"] if isinstance(row["deliveries"], list) else []
    out: dict[str, Any] = {"id": call_id, "call_id": call_id, "time": iso(row["created_at"], zone),
                           "number": row["number"], "caller": row["caller"], "status": row["status"],
                           "duration": row["duration"], "bytes": row["bytes"],
                           "delivery": delivery_state(deliveries), "deliveries": deliveries}
    if kind == "voicemail":
        out["url"] = f"/api/accounts/{account}/voicemail/{call_id}"
    else:
        out |= {"pages": row["pages"], "url": f"/api/accounts/{account}/faxes/{call_id}.pdf",
                "pdf": bool(row["pdf"])}
    return out


def recordings(scope: Scope, request: Request, kind: str, limit: int, cursor: str | None) -> dict[str, Any]:
    """A page of voicemail or faxes as JSON, with `next_cursor`."""
    before = cursor_in(scope, cursor)
    zone = account_zone(scope)
    with history(request) as conn:
        rows = database.recordings(conn, account=scope.account, kind=kind, before=before, limit=limit)
    following = cursor_out(rows[-1]["created_at"], rows[-1]["call_id"]) if len(rows) == limit else None
    key = "voicemail" if kind == "voicemail" else "faxes"
    return {"account": scope.account, key: [recording_json(r, scope.account, zone) for r in rows],
            "next_cursor": following}


@router.get("/{account}/voicemail")
def list_voicemail(scope: LoadedAccount, request: Request, limit: Limit = 100, cursor: Cursor = None) -> dict[str, Any]:
    """Voicemails left, newest first: id (the call's), time, caller, duration, delivery state."""
    return recordings(scope, request, "voicemail", limit, cursor)


@router.get("/{account}/faxes")
def list_faxes(scope: LoadedAccount, request: Request, limit: Limit = 100, cursor: Cursor = None) -> dict[str, Any]:
    """Faxes received, newest first: id (the call's), time, caller, pages, delivery state."""
    return recordings(scope, request, "fax", limit, cursor)


def _stored(scope: Scope, request: Request, kind: str, call_id: str) -> dict[str, Any]:
    what = "voicemail" if kind == "voicemail" else "fax"
    record_id(scope, call_id, what)
    with history(request) as conn:
        found = database.recordings(conn, account=scope.account, kind=kind, call_id=call_id, limit=1)
    if not found:
        raise HTTPException(404, f"{what} {call_id!r} not found")
    return found[0]


def _file(scope: Scope, request: Request, path: str, what: str) -> str:
    dirs = settings_of(request).media_dirs
    if not dirs:
        raise HTTPException(503, "recordings are not served: voffice web was started without --media-dir")
    found = files.stored_file(path, dirs, scope.account)
    if found is None:
        if path:
            log.warning("%s of %s: its file is not in the media folders", what, scope.account)
        raise HTTPException(404, f"{what}: the file is no longer kept")
    return str(found)


@router.get("/{account}/voicemail/{call_id}", response_class=FileResponse,
            responses={200: {"content": {"audio/wav": {}}, "description": "The recording as stored (8 kHz WAV)"}})
def get_voicemail(scope: LoadedAccount, request: Request, call_id: str) -> FileResponse:
    """The voicemail's audio (WAV as stored; raw G.711 as audio/basic or audio/PCMA);
    Range requests for players."""
    row = _stored(scope, request, "voicemail", call_id)
    path = _file(scope, request, row["path"], f"voicemail {call_id}")
    suffix = path.rsplit(".", 1)[-1].lower()
    media = {"wav": "audio/wav", "ul": "audio/basic", "al": "audio/PCMA"}.get(suffix, "application/octet-stream")
    return FileResponse(path, media_type=media, filename=f"voicemail-{call_id}.{suffix}",
                        content_disposition_type="inline")


@router.get("/{account}/faxes/{call_id}.pdf", response_class=FileResponse,
            responses={200: {"content": {"application/pdf": {}}, "description": "The fax as PDF"}})
@router.get("/{account}/fax/{call_id}", response_class=FileResponse, include_in_schema=False)  # notifier links
def get_fax(scope: LoadedAccount, request: Request, call_id: str) -> FileResponse:
    """The received fax as PDF (made by the media server from the TIFF it received)."""
    row = _stored(scope, request, "fax", call_id)
    if not row["pdf"]:
        raise HTTPException(404, f"fax {call_id!r} has no PDF (the media server could not make one)")
    path = _file(scope, request, row["pdf"], f"fax {call_id}")
    return FileResponse(path, media_type="application/pdf", filename=f"fax-{call_id}.pdf",
                        content_disposition_type="inline")


# --- deliveries ------------------------------------------------------------------------------


def delivery_json(row: dict[str, Any], zone: tzinfo) -> dict[str, Any]:
    return {
        "id": row["id"], "created_at": iso(row["created_at"], zone), "kind": row["kind"], "channel": row["channel"],
        "target": database.shown_target(row["channel"], row["target"]), "status": row["status"],
        "attempts": row["attempts"], "last_error": database.shown_error(row["last_error"]) if row["last_error"] else "",
        "sent_at": iso(row["sent_at"], zone),
        "next_attempt_at": iso(row["next_attempt_at"], zone) if row["status"] == "pending" else None,
        "call_id": row["call_id"],
    }


def query_deliveries(scope: Scope, request: Request, status: str | None, kind: str | None, call_id: str | None,
                     limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """A page of the account's notices (as JSON) and the cursor of the next."""
    if status is not None and status not in DELIVERY_STATES:
        raise bad_query(scope, "status", f"{status[:20]!r} is not one of {', '.join(DELIVERY_STATES)}")
    if kind is not None and kind not in NOTICE_KINDS:
        raise bad_query(scope, "kind", f"{kind[:20]!r} is not one of {', '.join(NOTICE_KINDS)}")
    if call_id is not None and not RECORD_ID.fullmatch(call_id):
        raise bad_query(scope, "call_id", "expected a call id ([A-Za-z0-9_-], up to 64)")
    if cursor is not None and not DIGITS.fullmatch(cursor):
        raise bad_query(scope, "cursor", "not a cursor this API gave (use next_cursor as it is)")
    zone = account_zone(scope)
    with history(request) as conn:
        rows = database.deliveries(conn, account=scope.account, status=status, kind=kind, call_id=call_id,
                                   before=int(cursor) if cursor else None, limit=limit)
    following = str(rows[-1]["id"]) if len(rows) == limit else None
    return [delivery_json(r, zone) for r in rows], following


@router.get("/{account}/deliveries")
def list_deliveries(scope: LoadedAccount, request: Request,
                    status: Annotated[str | None, Query(max_length=10, description="pending, sent or failed")] = None,
                    kind: Annotated[str | None, Query(max_length=10, description="voicemail, fax or missed")] = None,
                    call_id: Annotated[str | None, Query(max_length=64)] = None,
                    limit: Limit = 100, cursor: Annotated[str | None, Query(max_length=20)] = None) -> dict[str, Any]:
    """Notices of voicemail, faxes and missed calls (`voffice deliveries`): channel (email,
    webhook), target (a webhook URL without its query), status, attempts, last error."""
    found, following = query_deliveries(scope, request, status, kind, call_id, limit, cursor)
    return {"account": scope.account, "deliveries": found, "next_cursor": following}
