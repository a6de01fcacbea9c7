from __future__ import annotations

import hashlib
import json
import os
import struct
import wave
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from voffice_media import recording
from voffice_media.recording import RecordingError, RecordingStore, UnsafeName

WHEN = datetime(2026, 12, 31, 13, 30, tzinfo=UTC)
CALL = "0123456789abcdef"


def store_at(root: Path) -> RecordingStore:
    return RecordingStore(root, clock=lambda: WHEN)


def tone_frames(count: int) -> list[np.ndarray]:
    t = np.arange(count * 160) / 8000
    samples = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
    return [samples[i * 160 : (i + 1) * 160] for i in range(count)]


def test_finish_stores_a_durable_readable_wav(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    writer = store.open("voicemail", "berry-demo", CALL, meta={"number": "+74951234567", "caller": "+79161230001"})
    assert writer.part_path.parent == tmp_path / "incoming" and writer.part_path.suffix == ".part"
    assert writer.sidecar_path.exists()
    frames = tone_frames(250)  # 5 s
    for frame in frames:
        assert writer.write_frame(frame)
    stored = writer.finish()

    assert stored is not None
    assert stored.path == tmp_path / "berry-demo" / "2026-12-31" / f"{CALL}.wav"
    assert stored.duration_seconds == 5.0 and not stored.partial
    data = stored.path.read_bytes()
    assert stored.sha256 == hashlib.sha256(data).hexdigest() and stored.bytes == len(data) == 44 + 250 * 320
    with wave.open(str(stored.path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate(), wav.getnframes()) == (1, 2, 8000, 40000)
        samples = np.frombuffer(wav.readframes(40000), dtype="<i2")
    assert np.array_equal(samples, np.concatenate(frames))
    meta = json.loads((stored.path.parent / f"{CALL}.wav.json").read_text())
    assert meta["sha256"] == stored.sha256 and meta["partial"] is False and meta["meta"]["caller"] == "+79161230001"
    assert list((tmp_path / "incoming").iterdir()) == []  # .part and sidecar are gone


def test_second_recording_of_a_call_does_not_overwrite_the_first(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    first = store.open("voicemail", "acme", CALL)
    first.write_frame(tone_frames(1)[0])
    a = first.finish()
    second = store.open("voicemail", "acme", CALL)
    second.write_frame(np.zeros(320, dtype=np.int16))
    b = second.finish()
    assert a is not None and b is not None and a.path != b.path
    assert b.path.name == f"{CALL}-2.wav" and a.path.exists()
    assert a.duration_seconds == 0.02 and b.duration_seconds == 0.04


def test_raw_g711_and_max_seconds(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    writer = store.open("voicemail", "acme", CALL, encoding="pcma", max_seconds=1.0)
    assert writer.write_g711(b"\xd5" * 4000)
    assert not writer.write_g711(b"\xd5" * 6000)  # over the limit: cut at 8000 bytes
    assert writer.full
    with pytest.raises(RecordingError):
        writer.write_frame(np.zeros(160, dtype=np.int16))
    stored = writer.finish()
    assert stored is not None and stored.path.suffix == ".al"
    assert stored.bytes == 8000 and stored.duration_seconds == 1.0


def test_nothing_recorded_keeps_nothing(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    assert store.open("voicemail", "acme", CALL).finish() is None
    assert store.open("fax", "acme", CALL).finish() is None  # spandsp never created the TIFF
    assert list((tmp_path / "incoming").iterdir()) == []
    assert not (tmp_path / "acme").exists()


@pytest.mark.parametrize(
    "account, call_id",
    [
        ("../etc", CALL),
        ("acme/../../x", CALL),
        ("acme", "../../passwd"),
        ("acme", "a/b"),
        ("..", CALL),
        (".hidden", CALL),
        ("acme", "x..y"),
        ("acme", "abc\n"),
        ("acme", ""),
        ("", CALL),
        ("a" * 65, CALL),
        ("acme", "abc\x00"),
    ],
)
def test_names_from_calls_cannot_escape(tmp_path: Path, account: str, call_id: str) -> None:
    store = store_at(tmp_path)
    with pytest.raises(UnsafeName):
        store.open("voicemail", account, call_id)
    assert list((tmp_path / "incoming").iterdir()) == []


def test_bad_kind_encoding_and_meta_rejected(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    with pytest.raises(RecordingError):
        store.open("mp3", "acme", CALL)
    with pytest.raises(RecordingError):
        store.open("fax", "acme", CALL, encoding="wav")
    with pytest.raises(RecordingError):
        store.open("voicemail", "acme", CALL, meta={"caller": "+7916\r\nX-Evil: 1"})


# --- recovery -------------------------------------------------------------------------------


def crash(writer: recording.RecordingWriter) -> None:
    """What a killed process leaves: the file as written so far, nothing finished."""
    writer.close()


def test_recover_repairs_a_truncated_wav(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    writer = store.open("voicemail", "acme", CALL, meta={"caller": "+79161230001"})
    frames = tone_frames(100)
    for frame in frames:
        writer.write_frame(frame)
    crash(writer)
    with open(writer.part_path, "ab") as handle:
        handle.write(b"\x01")  # half a sample: the process died inside a write
    header = writer.part_path.read_bytes()[:44]
    assert struct.unpack("<I", header[40:44])[0] == 0  # the header still says "no data"

    actions = store_at(tmp_path).recover()
    assert [a.action for a in actions] == ["repaired"]
    stored = actions[0].stored
    assert stored is not None and stored.partial and stored.duration_seconds == 2.0
    assert stored.path == tmp_path / "acme" / "2026-12-31" / f"{CALL}.wav"
    assert stored.meta == {"caller": "+79161230001"}
    with wave.open(str(stored.path), "rb") as wav:
        assert wav.getnframes() == 16000
        assert np.array_equal(np.frombuffer(wav.readframes(16000), dtype="<i2"), np.concatenate(frames))
    assert stored.sha256 == hashlib.sha256(stored.path.read_bytes()).hexdigest()
    assert json.loads(stored.path.with_name(stored.path.name + ".json").read_text())["partial"] is True
    assert list((tmp_path / "incoming").iterdir()) == []
    assert store_at(tmp_path).recover() == []  # nothing left to do


def test_recover_raw_g711_from_its_sidecar(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    writer = store.open("voicemail", "acme", CALL, encoding="pcmu")
    writer.write_g711(b"\xff" * 12345)
    crash(writer)
    (action,) = store_at(tmp_path).recover()
    assert action.action == "repaired" and action.stored is not None
    assert action.stored.path.suffix == ".ul" and action.stored.bytes == 12345 and action.stored.partial


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")  # from Pillow reading the garbage TIFF
def test_recover_quarantines_what_it_cannot_read(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    garbled = store.open("voicemail", "acme", CALL)
    garbled.write_frame(tone_frames(1)[0])
    crash(garbled)
    with open(garbled.part_path, "r+b") as handle:
        handle.write(b"JUNKJUNKJUNK")  # header destroyed
    orphan = tmp_path / "incoming" / f"{'f' * 32}.part"  # data without its metadata
    orphan.write_bytes(b"\xd5" * 800)
    bad_tiff = store.open("fax", "acme", "fedcba9876543210")
    bad_tiff.part_path.write_bytes(b"II*\x00garbage")
    stray = tmp_path / "incoming" / "notes.txt"
    stray.write_text("?")
    empty = store.open("voicemail", "acme", "00000000000000aa")
    crash(empty)

    actions = store_at(tmp_path).recover()
    by_part = {a.part.name.split(".")[0]: a for a in actions}
    assert by_part[garbled.id].action == "quarantined" and "WAV" in by_part[garbled.id].reason
    assert by_part["f" * 32].action == "quarantined" and "sidecar" in by_part["f" * 32].reason
    assert by_part[bad_tiff.id].action == "quarantined" and "TIFF" in by_part[bad_tiff.id].reason
    assert by_part["notes"].action == "quarantined"
    assert by_part[empty.id].action == "discarded"
    quarantine = tmp_path / "quarantine"
    names = {p.name for p in quarantine.iterdir()}
    assert {f"{garbled.id}.part", f"{garbled.id}.json", f"{'f' * 32}.part", f"{bad_tiff.id}.part", "notes.txt"} <= names
    assert f"{garbled.id}.part.reason" in names
    assert list((tmp_path / "incoming").iterdir()) == []
    assert not (tmp_path / "acme").exists()  # nothing unreadable was published


def test_recover_partial_fax_tiff(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    writer = store.open("fax", "acme", CALL)
    page = Image.new("1", (1728, 400), 1)
    page.save(writer.part_path, format="TIFF", compression="group4", dpi=(204, 196))
    (action,) = store_at(tmp_path).recover()
    assert action.action == "repaired" and action.stored is not None
    assert action.stored.pages == 1 and action.stored.partial and action.stored.path.suffix == ".tif"


def test_recover_completes_a_finish_that_died_after_linking(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    writer = store.open("voicemail", "acme", CALL)
    writer.write_frame(tone_frames(1)[0])
    stored = writer.finish()
    assert stored is not None
    # Simulate the crash window: the final link exists, the .part and sidecar are still there.
    os.link(stored.path, writer.part_path)
    writer.sidecar_path.write_text(
        json.dumps(
            {"v": 1, "id": writer.id, "kind": "voicemail", "encoding": "wav", "account": "acme",
             "call_id": CALL, "started_at": WHEN.isoformat(), "meta": {}}
        )
    )  # fmt: skip
    (action,) = store_at(tmp_path).recover()
    assert action.action == "completed"
    assert sorted(p.name for p in stored.path.parent.iterdir()) == [f"{CALL}.wav", f"{CALL}.wav.json"]
    assert list((tmp_path / "incoming").iterdir()) == []


def test_recover_leaves_open_recordings_alone(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    writer = store.open("voicemail", "acme", CALL)
    writer.write_frame(tone_frames(1)[0])
    assert store.recover() == []
    assert writer.part_path.exists()
    assert writer.finish() is not None


def test_derive_writes_next_to_the_recording(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    writer = store.open("voicemail", "acme", CALL)
    writer.write_frame(tone_frames(1)[0])
    stored = writer.finish()
    assert stored is not None
    made = store.derive(stored, ".txt", lambda tmp: tmp.write_text("transcript"))
    assert made == stored.path.with_suffix(".txt") and made.read_text() == "transcript"
    with pytest.raises(RecordingError):
        store.derive(stored, "/../x", lambda tmp: None)
