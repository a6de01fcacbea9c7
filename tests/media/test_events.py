from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis

from voffice_media import events
from voffice_media.events import EventError, emit, format_event, recording_event
from voffice_media.recording import StoredRecording

VOICEMAIL = {
    "type": "voicemail",
    "account": "berry-demo",
    "number": "+74951234567",
    "caller": "+79161230001",
    "call_id": "0123456789abcdef",
    "path": Path("/var/lib/voffice/recordings/berry-demo/2026-12-31/0123456789abcdef.wav"),
    "duration": 12.5,
    "sha256": "ab" * 32,
    "status": "stored",
}


def test_format_event_stringifies_in_a_stable_order() -> None:
    fields = format_event({**VOICEMAIL, "partial": False, "pages": 3})
    assert list(fields) == ["v", *events.STANDARD_FIELDS, "pages", "partial"]
    assert fields["duration"] == "12.500" and fields["partial"] == "0" and fields["pages"] == "3"
    assert fields["path"].endswith("0123456789abcdef.wav") and all(isinstance(v, str) for v in fields.values())
    assert format_event({"type": "fax", "caller": None})["caller"] == ""


@pytest.mark.parametrize(
    "event",
    [
        {"type": "party"},
        {"account": "x"},
        {"type": "fax", "caller": "+7\r\nforged: 1"},
        {"type": "fax", "Bad-Name": "1"},
        {"type": "fax", "v": "2"},
        {"type": "fax", "sha256": "not-hex"},
        {"type": "fax", "blob": b"bytes"},
        {"type": "fax", "path": "x" * 2000},
    ],
)
def test_format_event_rejects(event: dict[str, Any]) -> None:
    with pytest.raises(EventError):
        format_event(event)


def test_recording_event_takes_number_and_caller_from_metadata(tmp_path: Path) -> None:
    stored = StoredRecording(
        path=tmp_path / "x.tif", duration_seconds=27.02, sha256="cd" * 32, bytes=9000, kind="fax",
        account="acme", call_id="0123456789abcdef", partial=True, pages=1,
        meta={"number": "+74951234567", "caller": "+79161230001"},
    )  # fmt: skip
    event = recording_event(stored, event_type="fax", status="partial", error="The call dropped prematurely")
    fields = format_event(event)
    assert fields["type"] == "fax" and fields["status"] == "partial" and fields["pages"] == "1"
    assert fields["number"] == "+74951234567" and fields["partial"] == "1" and fields["duration"] == "27.020"
    assert fields["error"] == "The call dropped prematurely"


@pytest.mark.redis
def test_emit_xadds_to_the_stream(redis_server: Any) -> None:
    client = redis.Redis.from_url(redis_server.url)
    first = emit(client, VOICEMAIL)
    second = emit(redis.Redis.from_url(redis_server.url, decode_responses=True), {"type": "fax", "status": "failed"})
    assert isinstance(first, str) and isinstance(second, str)
    assert tuple(map(int, first.split("-"))) < tuple(map(int, second.split("-")))
    entries = client.xrange(events.STREAM)
    assert [entry_id.decode() for entry_id, _ in entries] == [first, second]
    fields = {k.decode(): v.decode() for k, v in entries[0][1].items()}
    assert fields == format_event(VOICEMAIL)
    assert fields["caller"] == "+79161230001" and fields["duration"] == "12.500" and fields["v"] == "1"


@pytest.mark.redis
def test_emit_never_trims_by_default_and_trims_approximately_when_asked(redis_server: Any) -> None:
    """The events stream is trimmed by its consumers only (routing/records/stream.py)."""
    client = redis.Redis.from_url(redis_server.url)
    for _ in range(500):
        emit(client, {"type": "fax"})
    assert client.xlen(events.STREAM) == 500
    for _ in range(500):
        emit(client, {"type": "fax"}, stream="capped", maxlen=100)
    assert 100 <= client.xlen("capped") < 500  # `~`: trimmed in whole nodes, never below maxlen
