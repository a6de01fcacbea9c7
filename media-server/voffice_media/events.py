"""Events of finished calls (a voicemail stored, a fax received), on the Redis stream
`voffice:events` for whatever consumes them (mail-to-customer, billing, the NOC).

One XADD per event, uncapped: the stream is trimmed by its consumers, only below what every
consumer group has acknowledged (routing/records/stream.py), so no event is dropped unread.
(`maxlen` remains for callers that want a capped stream of their own.) Every field is a string: Redis stream values are bytes anyway, and consumers in any
language read them without guessing. `format_event()` is the sans-redis half: it checks and
stringifies, so the same rules are testable without a server.

Fields (all optional except `type`): account, number, caller, call_id, type, path, duration
(seconds, 3 decimals), sha256, status, plus anything matching [a-z][a-z0-9_]{0,31}
(pages, remote_ident, error, partial, ...). Values are single-line text: a caller's number
comes from SIP and must not be able to forge a second field or line in a consumer's log.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import PurePath
from typing import Any, Protocol

from .recording import RecoveryAction, StoredRecording

STREAM = "voffice:events"
VERSION = "1"
TYPES = frozenset({"voicemail", "fax", "recording", "menu", "extension", "announcement", "recovered", "error"})
STANDARD_FIELDS = ("type", "account", "number", "caller", "call_id", "path", "duration", "sha256", "status")
FIELD = re.compile(r"[a-z][a-z0-9_]{0,31}")
VALUE = re.compile(r"[^\x00-\x1f\x7f-\x9f]{0,1024}")
SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_FIELDS = 32


class EventError(ValueError):
    """An event that does not follow the rules above."""


class StreamClient(Protocol):
    """The part of redis.Redis this module uses."""

    def xadd(self, name: Any, fields: Any, id: Any = ..., maxlen: Any = ..., approximate: bool = ...) -> Any: ...


def _text(key: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (str, PurePath)):
        return str(value)
    raise EventError(f"event field {key}: {type(value).__name__} is not a plain value")


def format_event(event: Mapping[str, Any]) -> dict[str, str]:
    """The stream entry for an event: `v` first, then the standard fields, then the rest,
    all as strings. Raises EventError for an unknown type, a bad field name or a value
    with control characters."""
    if event.get("type") not in TYPES:
        raise EventError(f"event type must be one of {sorted(TYPES)}, not {event.get('type')!r}")
    if len(event) > MAX_FIELDS:
        raise EventError(f"an event has at most {MAX_FIELDS} fields")
    fields = {"v": VERSION}
    ordered = [k for k in STANDARD_FIELDS if k in event] + sorted(k for k in event if k not in STANDARD_FIELDS)
    for key in ordered:
        if not isinstance(key, str) or not FIELD.fullmatch(key) or key == "v":
            raise EventError(f"bad event field name {key!r}")
        text = _text(key, event[key])
        if not VALUE.fullmatch(text):
            raise EventError(f"event field {key} holds control characters or is too long")
        fields[key] = text
    if fields.get("sha256") and not SHA256.fullmatch(fields["sha256"]):
        raise EventError("event field sha256 must be 64 lowercase hex digits")
    return fields


def emit(redis_client: StreamClient, event: Mapping[str, Any], *, stream: str = STREAM, maxlen: int | None = None) -> str:
    """XADD the event; returns the entry id ("1700000000000-0")."""
    entry_id = redis_client.xadd(stream, format_event(event), maxlen=maxlen, approximate=True)
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


def recording_event(
    stored: StoredRecording, *, event_type: str, status: str = "stored", **extra: Any
) -> dict[str, Any]:
    """The event for a stored recording: its path, duration, sha256,
    bytes, pages and partial flag, the number/caller kept in its metadata, and `extra`."""
    event: dict[str, Any] = {
        "type": event_type,
        "account": stored.account,
        "call_id": stored.call_id,
        "path": stored.path,
        "duration": float(stored.duration_seconds),
        "sha256": stored.sha256,
        "status": status,
        "bytes": stored.bytes,
        "partial": stored.partial,
    }
    if stored.pages is not None:
        event["pages"] = stored.pages
    for key in ("number", "caller"):
        if key in stored.meta:
            event[key] = stored.meta[key]
    event.update(extra)
    return event


def recovery_event(action: RecoveryAction) -> dict[str, Any] | None:
    """What consumers hear of a start-up recovery (RecordingStore.recover): a recording
    repaired from what a crashed server left behind is published like any other, with
    status `partial`; one that could not be repaired was moved to quarantine/: an `error`.
    Nothing for the completed (already stored) and the discarded (empty) ones."""
    reason = " ".join(action.reason.split())[:200]
    if action.action == "repaired" and action.stored is not None:
        return recording_event(action.stored, event_type=action.stored.kind, status="partial", recovered=reason)
    if action.action == "quarantined":
        return {"type": "error", "status": "quarantined", "path": action.part, "error": reason}
    return None
