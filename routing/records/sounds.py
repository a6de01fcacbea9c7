"""An account's own sound files: uploaded audio checked, converted to the media server's
prompt format and kept where the media server looks for the account's `sounds[].file`.

The media server (media-server/voffice_media/prompts.py) looks a sound's `file` up in
SOUNDS_DIR/<account>/ first, then in SOUNDS_DIR/, and plays prompts as 8 kHz mono 16-bit
PCM. An upload is stored as SOUNDS_DIR/<account>/<name>.wav in exactly that format, so the
account's config names it `"file": "<name>.wav"` and the media server converts nothing.

An upload must be what it says twice over: its first bytes must be those of a WAV (RIFF/WAVE),
an MP3 (an ID3 tag or an MPEG audio frame) or an Ogg file, and the decoders must read it whole
(sox for WAV and Ogg Vorbis; lame for MP3, which Debian's sox cannot read). Tools run as
argument lists on files in a private temporary folder, never through a shell, with a timeout.
Names are a strict whole-string pattern, never a path.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import uuid
import wave
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from routing.core.media_contract import ACCOUNT_SOUNDS_MARKER

SAMPLE_RATE = 8000  # the media server's prompt format (prompts.py RECIPE): 8 kHz mono s16 WAV
MAX_BYTES = 10 << 20  # an upload's limit
MAX_SECONDS = 600.0  # a prompt longer than 10 minutes is a mistake
TOOL_TIMEOUT = 30.0
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # as the config's ids; never '..' (checked apart)
FILE = re.compile(r"([A-Za-z0-9][A-Za-z0-9_.-]{0,63})\.wav")
ACCOUNT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
FORMATS = {"wav": "WAV", "mp3": "MP3", "ogg": "Ogg Vorbis"}


class SoundError(Exception):
    """An upload refused, with the HTTP status that says why (413 too big, 415 not audio of a
    kind we take, 422 audio that cannot be read or used) and one plain sentence."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Sound:
    name: str  # the file name the config uses: NAME.wav
    bytes: int
    seconds: float
    modified: datetime

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "file": self.name, "bytes": self.bytes, "seconds": round(self.seconds, 3),
                "modified": self.modified.isoformat()}


def sniff(data: bytes) -> str | None:
    """wav, mp3 or ogg by the first bytes; None for anything else."""
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "wav"
    if data[:4] == b"OggS":
        return "ogg"
    if data[:3] == b"ID3":
        return "mp3"
    # An MPEG audio frame header: 11 sync bits, a version that exists, layer I-III.
    if len(data) >= 2 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0 and data[1] & 0x18 != 0x08 and data[1] & 0x06:
        return "mp3"
    return None


def file_name(text: str) -> str:
    """The stored name for an upload's `name` (NAME or NAME.wav); ValueError if not strict."""
    stem = text[:-4] if text.lower().endswith(".wav") else text
    if not NAME.fullmatch(stem) or ".." in stem:
        raise ValueError(f"{text[:80]!r} is not a sound name: letters, digits, '_', '.' and '-', up to 64, "
                         "starting with a letter or digit, no '..'")
    return f"{stem}.wav"


def account_dir(sounds_dir: Path, account: str) -> Path:
    if not ACCOUNT.fullmatch(account) or ".." in account:
        raise ValueError(f"account {account!r} cannot name a folder")
    return sounds_dir / account


def _run(argv: list[str], what: str) -> str:
    if shutil.which(argv[0]) is None:
        raise SoundError(503, f"{argv[0]} is not installed on the server")
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=TOOL_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise SoundError(422, f"{what}: reading it took longer than {TOOL_TIMEOUT:.0f} s") from None
    if done.returncode != 0:
        raise SoundError(422, f"{what}: {argv[0]} cannot read it as audio")
    return done.stdout.decode("utf-8", "replace")


def convert(data: bytes, kind: str, label: str) -> bytes:
    """The upload as the media server's prompt WAV, or SoundError. `label` names the upload
    in messages (its file name, never a path of ours)."""
    if len(data) > MAX_BYTES:
        raise SoundError(413, f"{label}: {len(data)} bytes; the limit is {MAX_BYTES >> 20} MiB")
    with tempfile.TemporaryDirectory(prefix="voffice-sound-") as tmp:
        source = Path(tmp) / f"upload.{kind}"
        source.write_bytes(data)
        if kind == "mp3":  # Debian's sox has no MP3 reader: lame decodes it
            decoded = Path(tmp) / "decoded.wav"
            _run(["lame", "--quiet", "--decode", str(source), str(decoded)], label)
            source, kind = decoded, "wav"
        # soxi takes the type from the name (upload.KIND); its -t would print the type instead.
        seconds_text = _run(["soxi", "-D", str(source)], label).strip()
        try:
            seconds = float(seconds_text)
        except ValueError:
            raise SoundError(422, f"{label}: sox cannot tell its length") from None
        if seconds <= 0:
            raise SoundError(422, f"{label}: it holds no audio")
        if seconds > MAX_SECONDS:
            raise SoundError(422, f"{label}: {seconds:.0f} s long; a prompt may last {MAX_SECONDS:.0f} s at most")
        target = Path(tmp) / "prompt.wav"
        _run(["sox", "-G", "-V1", "-t", kind, str(source), "-t", "wav", "-r", str(SAMPLE_RATE), "-c", "1",
              "-b", "16", "-e", "signed-integer", str(target)], label)
        try:
            with wave.open(str(target), "rb") as check:
                if (check.getframerate(), check.getnchannels(), check.getsampwidth()) != (SAMPLE_RATE, 1, 2) \
                        or check.getnframes() == 0:
                    raise SoundError(422, f"{label}: the conversion gave no usable audio")
        except (wave.Error, EOFError):
            raise SoundError(422, f"{label}: the conversion gave no usable audio") from None
        return target.read_bytes()


def _info(path: Path) -> Sound | None:
    try:
        stat = path.stat()
        with wave.open(str(path), "rb") as reader:
            seconds = reader.getnframes() / (reader.getframerate() or SAMPLE_RATE)
    except (OSError, EOFError, wave.Error):
        return None
    return Sound(path.name, stat.st_size, seconds, datetime.fromtimestamp(stat.st_mtime, UTC))


def store(sounds_dir: Path, account: str, name: str, wav: bytes) -> tuple[Sound, bool]:
    """Keep a converted prompt as NAME.wav (atomically: a call never plays half a file);
    the sound, and whether it replaced one."""
    folder = account_dir(sounds_dir, account)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ACCOUNT_SOUNDS_MARKER).touch()  # another account's config never reaches in here
    target = folder / file_name(name)
    existed = target.exists()
    tmp = folder / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(tmp, "xb") as out:
            out.write(wav)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    found = _info(target)
    assert found is not None
    return found, existed


def path_of(sounds_dir: Path, account: str, name: str) -> Path | None:
    """An uploaded sound's file by its name (NAME.wav), or None: names are matched whole and
    must be plain files in the account's folder (no link out of it)."""
    if not FILE.fullmatch(name) or ".." in name:
        return None
    folder = account_dir(sounds_dir, account)
    path = folder / name
    try:
        if path.is_symlink() or not path.is_file():
            return None
    except OSError:
        return None
    return path


def listing(sounds_dir: Path, account: str) -> list[Sound]:
    folder = account_dir(sounds_dir, account)
    if not folder.is_dir():
        return []
    found = (_info(p) for p in sorted(folder.iterdir())
             if FILE.fullmatch(p.name) and ".." not in p.name and not p.is_symlink())
    return [s for s in found if s is not None]


def users(document: dict[str, Any], name: str) -> list[str]:
    """The ids of the account's sounds whose `file` is this upload (the name, or ./name)."""
    return [str(s.get("id")) for s in document.get("sounds", ()) if isinstance(s, dict)
            and str(s.get("file") or "").removeprefix("./") == name]
