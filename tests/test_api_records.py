"""The records API: call history (filters, pages, CSV), voicemail and faxes (lists and files),
delivery status; for the NOC and a subscriber, each object kind 404 to another account.
Real Redis and PostgreSQL; the rows written by the history writer from the events the media
server and Kamailio publish, the files laid out as the media server stores them."""

from __future__ import annotations

import csv
import io
import json
import math
import struct
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from routing.records import database
from routing.records.history import HistoryWriter
from tests.api_support import OTHER, SEED, Stack, document, history_database

pytestmark = [pytest.mark.redis, pytest.mark.postgres]

BERRY, THAMES = "berry-demo", "thames-support-247"
T0 = 1_764_000_000  # 2025-11-24T16:00:00Z, 19:00 in Moscow


def tone_wav(path: Path, seconds: float = 1.0) -> bytes:
    """A WAV as the media server records voicemail: 8 kHz mono 16-bit."""
    frames = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / 8000)))
                      for i in range(int(8000 * seconds)))
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(frames)
    return path.read_bytes()


def fax_pdf(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("1", (200, 100), 1).save(path, "PDF", resolution=100.0)
    return path.read_bytes()


def call(i: int, account: str, number: str, status: str, **extra: str) -> dict[str, str]:
    return {"type": "call", "status": status, "account": account, "number": number, "caller": f"+7903{i:07d}",
            "call_id": f"c{i:015d}", "rule": "r1", "scenario": "lunch", "steps": "[]",
            "answered_by": "petrov" if status == "answered" else "", "setup_seconds": "1.5",
            "talk_seconds": "30" if status == "answered" else "", "hung_up_by": "caller", "note": "",
            "started_at": f"{T0 + i * 60}", "ended_at": f"{T0 + i * 60 + 40}", **extra}


class Records:
    def __init__(self, stack: Stack, root: Path, url: str):
        self.stack, self.root, self.url = stack, root, url
        self.media = root / "media"
        rec = self.media / "recordings"
        self.berry_wav = tone_wav(rec / BERRY / "2025-11-24" / "c000000000000006.wav")
        self.berry_pdf = fax_pdf(rec / BERRY / "2025-11-24" / "c000000000000007.pdf")
        self.thames_wav = tone_wav(rec / THAMES / "2025-11-24" / "c000000000000020.wav", 0.5)
        fax_pdf(rec / THAMES / "2025-11-24" / "c000000000000021.pdf")
        (root / "secret.txt").write_text("not for anyone")
        berry = [call(i, BERRY, "+74951234567", "answered") for i in range(5)]
        berry += [
            call(5, BERRY, "+74951234567", "missed", caller="=cmd|' /C calc'!A0", note='he said "hi", twice', rule="r2"),
            call(6, BERRY, "+74951234567", "voicemail", rule="r3"),
            call(7, BERRY, "+74951234567", "fax", rule="r3", caller="+74957770000"),
            call(8, BERRY, "+74951234567", "voicemail", note="@SUM(1)"),  # its file is not ours (below)
            call(9, BERRY, "+74951234567", "voicemail"),  # its file points at another account's
        ]
        thames = [call(20, THAMES, "+442079460100", "voicemail"), call(21, THAMES, "+442079460100", "fax")]
        recs = [
            self.recording("voicemail", BERRY, 6, rec / BERRY / "2025-11-24" / "c000000000000006.wav"),
            self.recording("fax", BERRY, 7, rec / BERRY / "2025-11-24" / "c000000000000007.tif", pages="1",
                           pdf=str(rec / BERRY / "2025-11-24" / "c000000000000007.pdf")),
            self.recording("voicemail", BERRY, 8, root / "secret.txt"),
            self.recording("voicemail", BERRY, 9, rec / THAMES / "2025-11-24" / "c000000000000020.wav"),
            self.recording("voicemail", THAMES, 20, rec / THAMES / "2025-11-24" / "c000000000000020.wav"),
            self.recording("fax", THAMES, 21, rec / THAMES / "2025-11-24" / "c000000000000021.tif", pages="1",
                           pdf=str(rec / THAMES / "2025-11-24" / "c000000000000021.pdf")),
        ]
        events = berry + thames + recs
        HistoryWriter(stack.server.url, url).write([(f"{(T0 + 100 + n) * 1000}-0", e) for n, e in enumerate(events)])
        with database.connect(url) as conn:
            for n, (account, call_id, kind, channel, target, status, error) in enumerate([
                (BERRY, "c000000000000006", "voicemail", "email", "boss@berry-demo.ru", "sent", ""),
                (BERRY, "c000000000000006", "voicemail", "webhook", "https://user:pw@hooks.example/v?token=s3cret",
                 "failed", "https://user:pw@hooks.example/v?token=s3cret: HTTP 500"),
                (BERRY, "c000000000000005", "missed", "email", "boss@berry-demo.ru", "pending", "timeout"),
                (THAMES, "c000000000000020", "voicemail", "email", "desk@thames.example", "sent", ""),
            ]):
                conn.execute("INSERT INTO deliveries (event_id, call_id, account, kind, channel, target, status, "
                             "attempts, last_error, event) VALUES (%s, %s, %s, %s, %s, %s, %s, 1, %s, '{}')",
                             (f"9-{n}", call_id, account, kind, channel, target, status, error))
            conn.commit()
        stack.configure(database_url=url, media_dirs=(self.media,))

    @staticmethod
    def recording(kind: str, account: str, i: int, path: Path, **extra: str) -> dict[str, str]:
        return {"type": kind, "account": account, "call_id": f"c{i:015d}", "path": str(path), "duration": "1.0",
                "sha256": "", "status": "stored", "bytes": "16044", "partial": "False", "number": "+74951234567",
                "caller": f"+7903{i:07d}", **extra}


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory, postgres_server: Any) -> Iterator[Records]:
    root = tmp_path_factory.mktemp("api-records")
    stack = Stack(root)
    try:
        stack.load(document(SEED))
        stack.load(document(OTHER))
        with history_database(postgres_server, "api_records") as url:
            yield Records(stack, root, url)
    finally:
        stack.server.stop()


def clients(records: Records) -> dict[str, TestClient]:
    """The NOC and a subscriber of berry-demo: both see berry-demo's records."""
    subscriber, _ = records.stack.subscriber(BERRY)
    return {"noc": records.stack.noc(), "subscriber": subscriber}


def api(path: str, account: str = BERRY) -> str:
    return f"/api/accounts/{account}/{path}"


# --- calls -------------------------------------------------------------------------------------


def test_calls_for_both_roles_newest_first_in_the_accounts_time(records: Records) -> None:
    for role, client in clients(records).items():
        reply = client.get(api("calls"))
        assert reply.status_code == 200, (role, reply.text)
        calls = reply.json()["calls"]
        assert [c["call_id"] for c in calls] == [f"c{i:015d}" for i in range(9, -1, -1)], role
        assert calls[-1]["started_at"] == "2025-11-24T19:00:00+03:00"  # Moscow
        assert reply.json()["next_cursor"] is None
        voicemail = next(c for c in calls if c["call_id"] == "c000000000000006")
        assert voicemail["left"] == {"kind": "voicemail", "id": "c000000000000006", "duration": 1.0,
                                     "url": "/api/accounts/berry-demo/voicemail/c000000000000006"}
        assert str(records.media) not in reply.text


def test_calls_filters(records: Records) -> None:
    client = records.stack.noc()

    def ids(**params: Any) -> list[str]:
        reply = client.get(api("calls"), params=params)
        assert reply.status_code == 200, reply.text
        return [c["call_id"][-2:] for c in reply.json()["calls"]]

    assert ids(status="missed") == ["05"]
    assert ids(status="voicemail") == ["09", "08", "06"]
    assert ids(rule="r3") == ["07", "06"]
    assert ids(caller="+7495*") == ["07"]
    assert ids(caller="+790300000?3") == ["03"]
    assert ids(caller="=cmd|' /C calc'!A0") == ["05"]
    assert ids(number="+74951234567", status="fax") == ["07"]
    assert ids(number="+442079460100") == []  # another account's number: nothing of it shows
    # From/to without an offset: the account's time (Moscow); half-open.
    assert ids(**{"from": "2025-11-24T19:02", "to": "2025-11-24T19:04"}) == ["03", "02"]
    assert ids(**{"from": "2025-11-24T16:08:00+00:00"}) == ["09", "08"]


def test_calls_pages_by_cursor(records: Records) -> None:
    client, seen, cursor = records.stack.noc(), [], None
    for _ in range(10):
        reply = client.get(api("calls"), params={"limit": 3, **({"cursor": cursor} if cursor else {})})
        assert reply.status_code == 200
        seen += [c["call_id"] for c in reply.json()["calls"]]
        cursor = reply.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"c{i:015d}" for i in range(9, -1, -1)]


def test_calls_bad_filters_are_422_with_pointers(records: Records) -> None:
    client = records.stack.noc()
    for params, pointer, words in [
        ({"status": "lost"}, "/query/status", "not one of"),
        ({"from": "yesterday"}, "/query/from", "ISO 8601"),
        ({"from": "2025-11-25", "to": "2025-11-24"}, "/query/to", "later"),
        ({"cursor": "bm90LWEtY3Vyc29y"}, "/query/cursor", "cursor"),
        ({"limit": "0"}, "/query/limit", ""),
        ({"limit": "lots"}, "/query/limit", ""),
    ]:
        reply = client.get(api("calls"), params=params)
        assert reply.status_code == 422, (params, reply.text)
        assert reply.json()["problems"][0]["pointer"] == pointer, reply.json()
        assert words in reply.json()["detail"], reply.json()
        assert "Traceback" not in reply.text


def test_calls_csv_is_quoted_with_a_header_and_formula_safe(records: Records) -> None:
    for role, client in clients(records).items():
        reply = client.get(api("calls.csv"), params={"status": "missed"})
        assert reply.status_code == 200, (role, reply.text)
        assert reply.headers["content-type"].startswith("text/csv")
        assert "attachment" in reply.headers["content-disposition"]
        rows = list(csv.reader(io.StringIO(reply.text)))
        assert rows[0][:5] == ["started_at", "ended_at", "number", "caller", "status"]
        row = dict(zip(rows[0], rows[1], strict=True))
        assert len(rows) == 2
        assert row["caller"] == "'=cmd|' /C calc'!A0"
        assert row["number"] == "'+74951234567"
        assert row["note"] == 'he said "hi", twice'
        assert '"he said ""hi"", twice"' in reply.text  # RFC 4180 quoting
    everything = list(csv.DictReader(io.StringIO(records.stack.noc().get(api("calls.csv")).text)))
    assert len(everything) == 10 and {r["left"] for r in everything} == {"", "voicemail", "fax"}
    assert next(r for r in everything if r["call_id"] == "c000000000000008")["note"] == "'@SUM(1)"
    assert str(records.media) not in records.stack.noc().get(api("calls.csv")).text


# --- voicemail and faxes -----------------------------------------------------------------------


def test_voicemail_and_fax_lists(records: Records) -> None:
    for role, client in clients(records).items():
        voicemail = client.get(api("voicemail")).json()["voicemail"]
        assert [v["id"] for v in voicemail] == ["c000000000000009", "c000000000000008", "c000000000000006"], role
        first = voicemail[-1]
        assert first["caller"] == "+79030000006" and first["duration"] == 1.0
        assert first["delivery"] == "failed"
        assert sorted((d["channel"], d["status"]) for d in first["deliveries"]) == [("email", "sent"), ("webhook", "failed")]
        assert voicemail[0]["delivery"] == "none"
        faxes = client.get(api("faxes")).json()["faxes"]
        assert [(f["id"], f["pages"], f["pdf"]) for f in faxes] == [("c000000000000007", 1, True)]
        assert faxes[0]["url"] == "/api/accounts/berry-demo/faxes/c000000000000007.pdf"
        assert str(records.media) not in json.dumps(voicemail + faxes)
    page = records.stack.noc().get(api("voicemail"), params={"limit": 2}).json()
    rest = records.stack.noc().get(api("voicemail"), params={"cursor": page["next_cursor"]}).json()
    assert [v["id"] for v in page["voicemail"] + rest["voicemail"]][-1] == "c000000000000006"


def test_voicemail_audio_and_fax_pdf(records: Records) -> None:
    for role, client in clients(records).items():
        audio = client.get(api("voicemail/c000000000000006"))
        assert audio.status_code == 200, (role, audio.text)
        assert audio.headers["content-type"] == "audio/wav" and audio.content == records.berry_wav
        assert audio.headers["accept-ranges"] == "bytes"
        part = client.get(api("voicemail/c000000000000006"), headers={"Range": "bytes=0-43"})
        assert part.status_code == 206 and part.content == records.berry_wav[:44]
        pdf = client.get(api("faxes/c000000000000007.pdf"))
        assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
        assert pdf.content == records.berry_pdf and pdf.content.startswith(b"%PDF")
        assert client.get(api("fax/c000000000000007")).content == records.berry_pdf  # the notifier's link
    assert records.stack.noc().get(api("voicemail/c000000000000020", THAMES)).content == records.thames_wav


def test_other_accounts_records_are_404(records: Records) -> None:
    stack = records.stack
    thames, _ = stack.subscriber(THAMES)
    berry, _ = stack.subscriber(BERRY)
    for path in ("calls", "calls.csv", "voicemail", "faxes", "deliveries", "voicemail/c000000000000006",
                 "faxes/c000000000000007.pdf"):
        reply = thames.get(api(path))
        assert reply.status_code == 404 and reply.json()["detail"] == "account 'berry-demo' not found", path
    # thames' objects asked for under berry-demo's path, by berry's subscriber and the NOC.
    for client in (berry, stack.noc()):
        assert client.get(api("voicemail/c000000000000020")).status_code == 404
        assert client.get(api("faxes/c000000000000021.pdf")).status_code == 404
        assert client.get(api("deliveries"), params={"call_id": "c000000000000020"}).json()["deliveries"] == []
        assert "c000000000000020" not in client.get(api("calls")).text
    # A row of berry's naming a file outside the media folders, or in thames' folder: not served.
    for call_id in ("c000000000000008", "c000000000000009"):
        reply = berry.get(api(f"voicemail/{call_id}"))
        assert reply.status_code == 404 and "no longer kept" in reply.json()["detail"]
        assert "secret" not in reply.text and str(records.root) not in reply.text


def test_traversal_and_bad_ids(records: Records) -> None:
    client = records.stack.noc()
    for path in ("voicemail/..%2F..%2Fsecret.txt", "voicemail/c000000000000006.wav",
                 "voicemail/%2e%2e", "faxes/..%2Fx.pdf", "faxes/c000000000000007.tif", "voicemail/" + "a" * 65,
                 "voicemail/c000000000000006%00"):
        reply = client.get(api(path))
        assert reply.status_code in (404, 422), (path, reply.status_code)
        assert "not found" in reply.text.lower() or reply.status_code == 422
        assert b"not for anyone" not in reply.content


# --- deliveries -------------------------------------------------------------------------------


def test_deliveries_with_secrets_kept_out(records: Records) -> None:
    for role, client in clients(records).items():
        reply = client.get(api("deliveries"))
        assert reply.status_code == 200, (role, reply.text)
        found = reply.json()["deliveries"]
        assert [(d["kind"], d["channel"], d["status"]) for d in found] == [
            ("missed", "email", "pending"), ("voicemail", "webhook", "failed"), ("voicemail", "email", "sent")]
        assert found[1]["target"] == "https://hooks.example/v"
        assert "HTTP 500" in found[1]["last_error"]
        assert "s3cret" not in reply.text and "user:pw" not in reply.text
        assert found[0]["next_attempt_at"] is not None and found[2]["next_attempt_at"] is None
    client = records.stack.noc()
    assert [d["status"] for d in client.get(api("deliveries"), params={"status": "failed"}).json()["deliveries"]] == ["failed"]
    assert [d["kind"] for d in client.get(api("deliveries"), params={"kind": "missed"}).json()["deliveries"]] == ["missed"]
    page = client.get(api("deliveries"), params={"limit": 2}).json()
    assert len(page["deliveries"]) == 2 and page["next_cursor"]
    rest = client.get(api("deliveries"), params={"cursor": page["next_cursor"]}).json()["deliveries"]
    assert [d["channel"] for d in rest] == ["email"]
    for params, pointer in [({"status": "lost"}, "/query/status"), ({"kind": "x"}, "/query/kind"),
                            ({"call_id": "../x"}, "/query/call_id"), ({"cursor": "abc"}, "/query/cursor")]:
        bad = client.get(api("deliveries"), params=params)
        assert bad.status_code == 422 and bad.json()["problems"][0]["pointer"] == pointer
    thames = client.get(api("deliveries", THAMES)).json()["deliveries"]
    assert [d["target"] for d in thames] == ["desk@thames.example"]


def test_unauthenticated_and_unconfigured(records: Records, tmp_path: Path) -> None:
    assert records.stack.anonymous().get(api("calls")).status_code == 401
    assert records.stack.anonymous().get(api("voicemail/c000000000000006")).status_code == 401
    bare = Stack.__new__(Stack)
    bare.__dict__.update(records.stack.__dict__)
    bare.configure(database_url=None, media_dirs=())
    reply = bare.noc().get(api("calls"))
    assert reply.status_code == 503 and "--database" in reply.json()["detail"]
    bare.configure(database_url="postgresql://voffice:hunter2@127.0.0.1:1/x")
    reply = bare.noc().get(api("calls"))
    assert reply.status_code == 503 and "hunter2" not in reply.text
    bare.configure(database_url=records.url, media_dirs=())
    reply = bare.noc().get(api("voicemail/c000000000000006"))
    assert reply.status_code == 503 and "--media-dir" in reply.json()["detail"]
