"""Durable storage of what calls leave behind: voicemail (WAV or raw G.711) and faxes (TIFF).

Theory of operation. A recording is written in two places, one after the other:

    root/incoming/<id>.part   the data, appended while the call runs
    root/incoming/<id>.json   its metadata (kind, account, call id, start time, encoding),
                              written durably when the recording is opened
    root/<account>/<yyyy-mm-dd>/<call_id><ext>    the finished recording
    root/<account>/<yyyy-mm-dd>/<call_id><ext>.json   its metadata, with sha256 and `partial`

`finish()` fixes the WAV header in place, fsyncs the `.part`, hard-links it to its final name
(a link never replaces an existing file, so two recordings of one call cannot clobber each
other), fsyncs that directory, writes the final metadata, and only then removes the `.part`
and its sidecar. Whatever the moment of a crash, the data is under one of the two names.

`recover()` runs at start-up, before any call: every `.part` left behind is either completed
(it had already been linked), repaired into a final file marked `partial=True` (a WAV whose
header still says 0 bytes, raw G.711, a TIFF whose complete pages can be read), discarded when
it holds nothing, or moved to `root/quarantine/` with a note saying why.

Names that come from calls (account ids, call ids) become path components only after a strict
whole-string match: no '/', no '..', no leading dot, nothing but [A-Za-z0-9_.-].

Every method here blocks on the disk (fsync): an asyncio server calls them in a thread.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import struct
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

SAMPLE_RATE = 8000
WAV_HEADER_BYTES = 44
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
META_KEY = re.compile(r"[a-z][a-z0-9_]{0,31}")
META_VALUE = re.compile(r"[^\x00-\x1f\x7f-\x9f]{0,256}")
PART_ID = re.compile(r"[0-9a-f]{32}")

# encoding -> (file extension, bytes per sample); None: written by someone else (spandsp).
ENCODINGS: dict[str, tuple[str, int | None]] = {
    "wav": (".wav", 2),  # 8 kHz mono 16-bit PCM
    "pcma": (".al", 1),  # raw G.711 A-law (sox reads .al as 8 kHz mono)
    "pcmu": (".ul", 1),  # raw G.711 mu-law
    "tiff": (".tif", None),  # a received fax, written by spandsp into the .part
}
KINDS: dict[str, tuple[str, ...]] = {  # kind -> allowed encodings, the first is the default
    "voicemail": ("wav", "pcma", "pcmu"),
    "recording": ("wav", "pcma", "pcmu"),
    "fax": ("tiff",),
}


class RecordingError(Exception):
    """A recording could not be opened, written or stored."""


class UnsafeName(RecordingError, ValueError):
    """A name from a call that must not become part of a path."""


def safe_name(value: str, what: str) -> str:
    if not isinstance(value, str) or not NAME.fullmatch(value) or ".." in value:
        raise UnsafeName(f"{what} {value!r} is not a safe name ([A-Za-z0-9][A-Za-z0-9_.-]{{0,63}}, no '..')")
    return value


def _check_meta(meta: Mapping[str, str]) -> dict[str, str]:
    checked = {}
    for key, value in meta.items():
        if not isinstance(key, str) or not META_KEY.fullmatch(key):
            raise RecordingError(f"bad metadata key {key!r}")
        if not isinstance(value, str) or not META_VALUE.fullmatch(value):
            raise RecordingError(f"bad metadata value for {key}: {value!r:.80}")
        checked[key] = value
    return checked


@dataclass(frozen=True)
class StoredRecording:
    path: Path
    duration_seconds: float
    sha256: str
    bytes: int
    kind: str
    account: str
    call_id: str
    partial: bool = False
    pages: int | None = None  # faxes only
    meta: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = self.path.name
        return data


@dataclass(frozen=True)
class RecoveryAction:
    action: str  # "repaired" | "completed" | "discarded" | "quarantined"
    part: Path
    reason: str
    stored: StoredRecording | None = None


# --- small durable-file helpers ----------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _makedirs(path: Path) -> None:
    """mkdir -p that also syncs each parent whose entries changed."""
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        try:
            directory.mkdir()
        except FileExistsError:
            continue
        _fsync_dir(directory.parent)


def _write_durably(path: Path, data: bytes) -> None:
    """Write a small file atomically: temp file, fsync, rename, fsync the directory."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _link_no_clobber(source: Path, directory: Path, stem: str, ext: str) -> Path:
    """Hard-link `source` as directory/stem+ext, or stem-2+ext, ... whichever is free."""
    for attempt in range(1, 1000):
        target = directory / (f"{stem}{ext}" if attempt == 1 else f"{stem}-{attempt}{ext}")
        try:
            os.link(source, target)
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV):
                raise
            # A filesystem without hard links: fall back to rename (not clobber-proof).
            if target.exists():
                continue
            os.rename(source, target)
        return target
    raise RecordingError(f"no free name for {stem}{ext} in {directory}")


def wav_header(data_bytes: int) -> bytes:
    """RIFF/WAVE header for 8 kHz mono 16-bit PCM with `data_bytes` of samples."""
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", 36 + data_bytes, b"WAVE",
        b"fmt ", 16, 1, 1, SAMPLE_RATE, SAMPLE_RATE * 2, 2, 16,
        b"data", data_bytes,
    )  # fmt: skip


_WAV_PREFIX = wav_header(0)


def _wav_data_bytes(part: Path) -> int:
    """Whole samples after our header; raises RecordingError if the header is not ours."""
    size = part.stat().st_size
    with open(part, "rb") as handle:
        header = handle.read(WAV_HEADER_BYTES)
    if len(header) < WAV_HEADER_BYTES:
        raise RecordingError("shorter than a WAV header")
    # Everything but the two length fields must be exactly what open() wrote.
    if header[0:4] != b"RIFF" or header[8:40] != _WAV_PREFIX[8:40]:
        raise RecordingError("not a WAV header written by voffice")
    return (size - WAV_HEADER_BYTES) & ~1


# --- the writer -------------------------------------------------------------------------------


class RecordingWriter:
    """One recording in progress. Audio recordings are appended frame by frame; a fax TIFF is
    written by spandsp straight into `part_path`."""

    def __init__(
        self,
        store: RecordingStore,
        part_id: str,
        kind: str,
        encoding: str,
        account: str,
        call_id: str,
        started_at: datetime,
        meta: dict[str, str],
        max_seconds: float | None,
    ) -> None:
        self.store = store
        self.id = part_id
        self.kind = kind
        self.encoding = encoding
        self.account = account
        self.call_id = call_id
        self.started_at = started_at
        self.meta = meta
        self.ext, self._sample_bytes = ENCODINGS[encoding]
        self.part_path = store.incoming / f"{part_id}.part"
        self.sidecar_path = store.incoming / f"{part_id}.json"
        self.data_bytes = 0
        self.full = False
        self._max_bytes = (
            None
            if max_seconds is None or self._sample_bytes is None
            else int(max_seconds * SAMPLE_RATE * self._sample_bytes)
        )
        self._file: BinaryIO | None = None
        self._finished = False
        if self._sample_bytes is not None:
            # Unbuffered: every frame reaches the kernel at once and survives a crash of this
            # process (not of the machine: that is what finish()'s fsync is for).
            self._file = open(self.part_path, "xb", buffering=0)
            if encoding == "wav":
                self._file.write(_WAV_PREFIX)

    @property
    def duration_seconds(self) -> float:
        if self._sample_bytes is None:
            return 0.0
        return self.data_bytes / (self._sample_bytes * SAMPLE_RATE)

    def _append(self, data: bytes) -> bool:
        if self._file is None:
            raise RecordingError(f"recording {self.id} is not open for writing")
        if self._max_bytes is not None and self.data_bytes + len(data) > self._max_bytes:
            data = data[: max(0, self._max_bytes - self.data_bytes)]
            self.full = True
        if data:
            self._file.write(data)
            self.data_bytes += len(data)
        return not self.full

    def write_frame(self, samples: npt.NDArray[np.int16]) -> bool:
        """Append 16-bit samples (a WAV recording). False once max_seconds is reached."""
        if self.encoding != "wav":
            raise RecordingError(f"write_frame on a {self.encoding} recording")
        if samples.dtype != np.int16 or samples.ndim != 1:
            raise ValueError(f"audio must be a 1-D int16 array, got {samples.dtype} {samples.shape}")
        return self._append(samples.astype("<i2", copy=False).tobytes())

    def write_g711(self, payload: bytes) -> bool:
        """Append raw G.711 bytes (a pcma/pcmu recording). False once max_seconds is reached."""
        if self.encoding not in ("pcma", "pcmu"):
            raise RecordingError(f"write_g711 on a {self.encoding} recording")
        return self._append(bytes(payload))

    def finish(self, *, partial: bool = False, duration_seconds: float | None = None) -> StoredRecording | None:
        """Store the recording durably under its final name. None if nothing was recorded
        (the caller hung up at once, or no fax page arrived): then nothing is kept."""
        if self._finished:
            raise RecordingError(f"recording {self.id} already finished")
        self._finished = True
        self._close_file()
        try:
            return self.store._finalize(self, partial=partial, duration_seconds=duration_seconds)
        finally:
            self.store._open.discard(self.id)

    def discard(self) -> None:
        """Drop the recording and its metadata."""
        self._finished = True
        self._close_file()
        self.part_path.unlink(missing_ok=True)
        self.sidecar_path.unlink(missing_ok=True)
        self.store._open.discard(self.id)

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def close(self) -> None:
        """Stop writing without finishing: the .part stays for recover() (crash-like)."""
        self._close_file()
        self.store._open.discard(self.id)

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *_exc: object) -> None:
        if not self._finished:
            self.close()


# --- the store --------------------------------------------------------------------------------


class RecordingStore:
    def __init__(self, root: Path, *, clock: Callable[[], datetime] | None = None) -> None:
        self.root = root
        self.incoming = root / "incoming"
        self.quarantine = root / "quarantine"
        self._clock = clock or (lambda: datetime.now(UTC))
        self._open: set[str] = set()
        _makedirs(self.incoming)

    def open(
        self,
        kind: str,
        account: str,
        call_id: str,
        *,
        encoding: str | None = None,
        started_at: datetime | None = None,
        meta: Mapping[str, str] | None = None,
        max_seconds: float | None = None,
    ) -> RecordingWriter:
        """Start a recording. `started_at` (the account's local time, if the caller has it)
        picks the date directory; `meta` (number, caller, ...) is kept with the recording so a
        recovered one can still be reported in full."""
        if kind not in KINDS:
            raise RecordingError(f"unknown recording kind {kind!r}")
        encoding = encoding or KINDS[kind][0]
        if encoding not in KINDS[kind]:
            raise RecordingError(f"{kind} cannot be stored as {encoding}")
        safe_name(account, "account")
        safe_name(call_id, "call id")
        checked_meta = _check_meta(meta or {})
        started = started_at or self._clock()
        part_id = uuid.uuid4().hex
        sidecar = {
            "v": 1,
            "id": part_id,
            "kind": kind,
            "encoding": encoding,
            "account": account,
            "call_id": call_id,
            "started_at": started.isoformat(),
            "meta": checked_meta,
        }
        _makedirs(self.incoming)
        _write_durably(self.incoming / f"{part_id}.json", json.dumps(sidecar).encode())
        writer = RecordingWriter(self, part_id, kind, encoding, account, call_id, started, checked_meta, max_seconds)
        self._open.add(part_id)
        return writer

    def final_dir(self, account: str, started_at: datetime) -> Path:
        return self.root / safe_name(account, "account") / started_at.date().isoformat()

    def _finalize(
        self, writer: RecordingWriter, *, partial: bool, duration_seconds: float | None
    ) -> StoredRecording | None:
        part = writer.part_path
        pages: int | None = None
        if writer.encoding == "tiff":
            if not part.exists():
                writer.sidecar_path.unlink(missing_ok=True)
                return None
            try:
                pages = _tiff_pages(part)
            except Exception as exc:
                self._quarantine(writer.id, f"unreadable fax TIFF: {exc}")
                raise RecordingError(f"received fax is unreadable ({exc}); moved to quarantine") from exc
            duration = duration_seconds or 0.0
        else:
            data_bytes = part.stat().st_size - (WAV_HEADER_BYTES if writer.encoding == "wav" else 0)
            if data_bytes <= 0:
                writer.discard()
                return None
            if writer.encoding == "wav":
                data_bytes &= ~1
                with open(part, "r+b") as handle:
                    handle.truncate(WAV_HEADER_BYTES + data_bytes)
                    handle.seek(0)
                    handle.write(wav_header(data_bytes))
            assert writer._sample_bytes is not None
            duration = data_bytes / (writer._sample_bytes * SAMPLE_RATE)
        return self._store(
            part,
            writer.sidecar_path,
            kind=writer.kind,
            encoding=writer.encoding,
            account=writer.account,
            call_id=writer.call_id,
            started_at=writer.started_at,
            meta=writer.meta,
            duration=duration,
            pages=pages,
            partial=partial,
        )

    def _store(
        self,
        part: Path,
        sidecar: Path,
        *,
        kind: str,
        encoding: str,
        account: str,
        call_id: str,
        started_at: datetime,
        meta: dict[str, str],
        duration: float,
        pages: int | None,
        partial: bool,
    ) -> StoredRecording:
        with open(part, "rb+") as handle:
            os.fsync(handle.fileno())
        digest = _sha256(part)
        size = part.stat().st_size
        directory = self.final_dir(account, started_at)
        _makedirs(directory)
        final = _link_no_clobber(part, directory, safe_name(call_id, "call id"), ENCODINGS[encoding][0])
        _fsync_dir(directory)
        stored = StoredRecording(
            path=final,
            duration_seconds=round(duration, 3),
            sha256=digest,
            bytes=size,
            kind=kind,
            account=account,
            call_id=call_id,
            partial=partial,
            pages=pages,
            meta=meta,
        )
        self._write_final_meta(stored, started_at)
        part.unlink(missing_ok=True)
        sidecar.unlink(missing_ok=True)
        _fsync_dir(part.parent)
        return stored

    def _write_final_meta(self, stored: StoredRecording, started_at: datetime) -> None:
        document = {**stored.to_json(), "started_at": started_at.isoformat(), "stored_at": self._clock().isoformat()}
        _write_durably(
            stored.path.with_name(stored.path.name + ".json"), json.dumps(document, ensure_ascii=False).encode()
        )

    def derive(self, stored: StoredRecording, ext: str, write: Callable[[Path], object]) -> Path:
        """Store a file made from a stored recording next to it (the PDF of a fax):
        `write(tmp)` produces it, then it is synced and renamed to <recording stem><ext>."""
        if not re.fullmatch(r"\.[a-z0-9]{1,8}", ext):
            raise RecordingError(f"bad extension {ext!r}")
        target = stored.path.with_suffix(ext)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            write(tmp)
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(target.parent)
        return target

    # --- start-up recovery -----------------------------------------------------------------

    def recover(self) -> list[RecoveryAction]:
        """Deal with everything a previous run left in incoming/ (see the module docstring)."""
        actions: list[RecoveryAction] = []
        if not self.incoming.is_dir():
            return actions
        ids: set[str] = set()
        for entry in sorted(self.incoming.iterdir()):
            if entry.name.startswith("."):  # our own temp files: half-written sidecars
                entry.unlink(missing_ok=True)
                continue
            stem, _dot, suffix = entry.name.partition(".")
            if PART_ID.fullmatch(stem) and suffix in ("part", "json"):
                if stem not in self._open:
                    ids.add(stem)
                continue
            actions.append(self._quarantine_file(entry, "unexpected file in incoming/"))
        for part_id in sorted(ids):
            try:
                action = self._recover_one(part_id)
            except Exception as exc:  # one bad file must not stop the start-up
                log.exception("recovering %s failed", part_id)
                action = self._quarantine(part_id, f"recovery failed: {exc}")
            log.info("recording %s: %s (%s)", part_id, action.action, action.reason)
            actions.append(action)
        return actions

    def _recover_one(self, part_id: str) -> RecoveryAction:
        part = self.incoming / f"{part_id}.part"
        sidecar_path = self.incoming / f"{part_id}.json"
        try:
            sidecar = json.loads(sidecar_path.read_bytes())
            kind, encoding = sidecar["kind"], sidecar["encoding"]
            account = safe_name(sidecar["account"], "account")
            call_id = safe_name(sidecar["call_id"], "call id")
            started_at = datetime.fromisoformat(sidecar["started_at"])
            meta = _check_meta(sidecar.get("meta", {}))
            if kind not in KINDS or encoding not in KINDS[kind]:
                raise RecordingError(f"unknown kind/encoding {kind}/{encoding}")
        except FileNotFoundError:
            return self._quarantine(part_id, "no metadata sidecar")
        except (ValueError, KeyError, TypeError, RecordingError) as exc:
            return self._quarantine(part_id, f"unreadable metadata: {exc}")

        if not part.exists():
            sidecar_path.unlink()
            return RecoveryAction("discarded", part, "nothing was recorded")
        if part.stat().st_nlink > 1:
            # finish() had linked it to its final name and died before cleaning up.
            part.unlink()
            sidecar_path.unlink()
            _fsync_dir(self.incoming)
            return RecoveryAction("completed", part, "was already stored; removed the leftover")

        pages: int | None = None
        if encoding == "tiff":
            try:
                pages = _tiff_pages(part)
            except Exception as exc:
                return self._quarantine(part_id, f"unreadable fax TIFF: {exc}")
            duration = 0.0
            reason = f"fax TIFF with {pages} readable page(s)"
        elif encoding == "wav":
            try:
                data_bytes = _wav_data_bytes(part)
            except RecordingError as exc:
                return self._quarantine(part_id, str(exc))
            if data_bytes == 0:
                part.unlink()
                sidecar_path.unlink()
                return RecoveryAction("discarded", part, "WAV without samples")
            with open(part, "r+b") as handle:
                handle.truncate(WAV_HEADER_BYTES + data_bytes)
                handle.seek(0)
                handle.write(wav_header(data_bytes))
            duration = data_bytes / (2 * SAMPLE_RATE)
            reason = f"WAV header fixed for {data_bytes} bytes of samples"
        else:
            data_bytes = part.stat().st_size
            if data_bytes == 0:
                part.unlink()
                sidecar_path.unlink()
                return RecoveryAction("discarded", part, "raw G.711 without samples")
            duration = data_bytes / SAMPLE_RATE
            reason = f"raw {encoding} with {data_bytes} bytes"
        stored = self._store(
            part,
            sidecar_path,
            kind=kind,
            encoding=encoding,
            account=account,
            call_id=call_id,
            started_at=started_at,
            meta=meta,
            duration=duration,
            pages=pages,
            partial=True,
        )
        return RecoveryAction("repaired", part, reason, stored)

    def _quarantine(self, part_id: str, reason: str) -> RecoveryAction:
        part = self.incoming / f"{part_id}.part"
        moved = None
        for path in (part, self.incoming / f"{part_id}.json"):
            if path.exists():
                action = self._quarantine_file(path, reason)
                moved = moved or action
        return moved or RecoveryAction("quarantined", part, reason)

    def _quarantine_file(self, path: Path, reason: str) -> RecoveryAction:
        _makedirs(self.quarantine)
        target = self.quarantine / path.name
        if target.exists():
            target = self.quarantine / f"{path.name}.{uuid.uuid4().hex[:8]}"
        os.rename(path, target)
        _write_durably(target.with_name(target.name + ".reason"), (reason + "\n").encode())
        _fsync_dir(path.parent)
        log.warning("quarantined %s: %s", path.name, reason)
        return RecoveryAction("quarantined", target, reason)


def _tiff_pages(path: Path) -> int:
    """Pages Pillow can read from a TIFF (decoding each, so a torn last page is caught)."""
    from PIL import Image

    with Image.open(path) as image:
        count = int(getattr(image, "n_frames", 1))
        for index in range(count):
            image.seek(index)
            image.load()
    if count < 1:
        raise RecordingError("TIFF without pages")
    return count
