"""Prompts as 8 kHz mono 16-bit samples, ready to be G.711-encoded frame by frame.

A compiled sound entry (routing/core/compiler.py) is `{"name", "file", "text", "language"}`:
- `file` is an audio file (wav, mp3, ogg, flac) relative to the sounds directory, first
  looked up in the account's own directory `sounds_dir/<account>/`, then in the shared
  `sounds_dir/`. It is converted once with sox.
- `text` is synthesised with espeak-ng in `language` (then converted with sox) when there is no
  file, or when the file is missing or sox cannot read it.

Conversions are cached on disk, keyed by the sha256 of what was converted (the file's bytes,
or the text and language) and the conversion recipe, so a renamed file or another account
with the same text costs nothing; and in memory in a bounded LRU, so a call never waits for a
subprocess once its account has been pre-warmed. sox and espeak-ng run as argument lists,
never through a shell; text reaches espeak-ng on stdin, so it can never be taken for an option.

Conversions block (subprocess, disk): an asyncio server runs `pcm()`/`prewarm()` in a thread;
the cache is safe to share between threads.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import threading
import uuid
import wave
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from routing.core.media_contract import ACCOUNT_SOUNDS_MARKER

log = logging.getLogger(__name__)

SAMPLE_RATE = 8000
# Bump when the conversion recipe changes: every cached file is then made again.
RECIPE = "v1:sox -G rate 8000 mono s16"
SOUND_FILE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*\.(wav|mp3|ogg|flac)")
LANGUAGE = re.compile(r"[a-z]{2,3}(-[a-z0-9]{1,8}){0,2}")
ACCOUNT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MAX_TEXT = 2000

Pcm = npt.NDArray[np.int16]


class PromptError(Exception):
    """A sound could not be turned into audio."""


class UnsafeSoundPath(PromptError, ValueError):
    """A sound file name that could reach outside the sounds directory."""


@dataclass(frozen=True)
class PrewarmResult:
    sound_id: str
    seconds: float | None  # None when the sound failed
    error: str | None = None


def beep(ms: int = 400, hz: float = 1000.0, *, level: float = 0.3) -> Pcm:
    """A sine tone (the "after the beep" signal) with 5 ms ramps so it does not click."""
    return _beep(int(ms), float(hz), float(level))


@lru_cache(maxsize=16)
def _beep(ms: int, hz: float, level: float) -> Pcm:
    if not 0 < ms <= 10_000 or not 0 < hz < SAMPLE_RATE / 2 or not 0 < level <= 1:
        raise ValueError(f"bad beep {ms} ms {hz} Hz level {level}")
    count = SAMPLE_RATE * ms // 1000
    t = np.arange(count) / SAMPLE_RATE
    tone = np.sin(2 * np.pi * hz * t) * level * 32767
    ramp = min(count // 2, SAMPLE_RATE * 5 // 1000)
    if ramp:
        envelope = np.linspace(0.0, 1.0, ramp)
        tone[:ramp] *= envelope
        tone[count - ramp :] *= envelope[::-1]
    samples = np.round(tone).astype(np.int16)
    samples.setflags(write=False)
    return samples


def _read_wav(path: Path) -> Pcm:
    with wave.open(str(path), "rb") as reader:
        if (reader.getframerate(), reader.getnchannels(), reader.getsampwidth()) != (SAMPLE_RATE, 1, 2):
            raise PromptError(f"{path} is not 8 kHz mono 16-bit")
        data = reader.readframes(reader.getnframes())
    samples = np.frombuffer(data, dtype="<i2").astype(np.int16)
    samples.setflags(write=False)
    return samples


class PromptCache:
    def __init__(
        self,
        sounds_dir: Path,
        cache_dir: Path,
        *,
        max_items: int = 512,
        max_bytes: int = 64 << 20,
        sox: str = "sox",
        espeak: str = "espeak-ng",
        timeout: float = 60.0,
    ) -> None:
        self.sounds_dir = sounds_dir.resolve()
        self.cache_dir = cache_dir
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.sox = sox
        self.espeak = espeak
        self.timeout = timeout
        self.conversions = 0  # subprocess runs (sox + espeak-ng), for tests and metrics
        self._memory: OrderedDict[tuple[str, ...], Pcm] = OrderedDict()
        self._memory_bytes = 0
        self._lock = threading.Lock()
        cache_dir.mkdir(parents=True, exist_ok=True)

    # --- public -------------------------------------------------------------------------

    def pcm(self, account: str, sound: Mapping[str, Any]) -> Pcm:
        """The samples of a compiled sound entry (read-only array, shared between calls)."""
        if not ACCOUNT.fullmatch(account) or ".." in account:
            raise UnsafeSoundPath(f"bad account id {account!r}")
        name = str(sound.get("name") or "?")
        file = sound.get("file")
        text = sound.get("text")
        language = str(sound.get("language") or "en")
        if file:
            try:
                path = self.sound_path(account, str(file))
            except FileNotFoundError as exc:
                if not text:
                    raise PromptError(f"sound {name!r}: {exc}, and it has no text to synthesise") from exc
                log.warning("sound %r of %s: %s; synthesising its text instead", name, account, exc)
            else:
                try:
                    return self._from_file(path)
                except PromptError as exc:
                    if not text:
                        raise PromptError(f"sound {name!r}: {exc}") from exc
                    log.warning("sound %r of %s: %s; synthesising its text instead", name, account, exc)
        if not text:
            raise PromptError(f"sound {name!r} has neither a file nor a text")
        return self._from_text(str(text), language)

    def sound_path(self, account: str, file: str) -> Path:
        """Where a sound's file is: the account's directory first, then the shared one.
        Raises UnsafeSoundPath for names that could leave the sounds directory."""
        if not SOUND_FILE.fullmatch(file) or len(file) > 255:
            raise UnsafeSoundPath(
                f"sound file {file!r} must be a relative path without '..' ending in .wav/.mp3/.ogg/.flac"
            )
        head = file.split("/", 1)[0]
        for base in (self.sounds_dir / account, self.sounds_dir):
            if base == self.sounds_dir and "/" in file and head != account and \
                    (self.sounds_dir / head / ACCOUNT_SOUNDS_MARKER).exists():
                raise UnsafeSoundPath(f"sound file {file!r} is in another account's sounds folder")
            candidate = (base / file).resolve()
            # Symlinks are followed: what they point to must still be inside sounds_dir.
            if not candidate.is_relative_to(self.sounds_dir):
                raise UnsafeSoundPath(f"sound file {file!r} resolves outside the sounds directory")
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(f"sound file {file!r} not found in {self.sounds_dir}")

    # --- conversions ----------------------------------------------------------------------

    def _from_file(self, path: Path) -> Pcm:
        stat = path.stat()
        memory_key = ("file", str(path), str(stat.st_mtime_ns), str(stat.st_size))
        cached = self._remembered(memory_key)
        if cached is not None:
            return cached
        digest = hashlib.sha256(f"{RECIPE}\0file\0".encode())
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        target = self.cache_dir / f"{digest.hexdigest()}.wav"
        if not self._usable(target):
            self._sox(path, target)
        return self._remember(memory_key, _read_wav(target))

    def _from_text(self, text: str, language: str) -> Pcm:
        if not LANGUAGE.fullmatch(language):
            raise PromptError(f"bad language {language!r}")
        if len(text) > MAX_TEXT or any(ord(ch) < 32 or 0x7F <= ord(ch) <= 0x9F for ch in text):
            raise PromptError("prompt text too long or with control characters")
        memory_key = ("text", language, text)
        cached = self._remembered(memory_key)
        if cached is not None:
            return cached
        key = hashlib.sha256(f"{RECIPE}\0text\0{language}\0{text}".encode()).hexdigest()
        target = self.cache_dir / f"{key}.wav"
        if not self._usable(target):
            spoken = self._temp(".espeak.wav")
            try:
                self._run([self.espeak, "-v", language, "-w", str(spoken), "--stdin"], stdin=text.encode())
                self._sox(spoken, target)
            finally:
                spoken.unlink(missing_ok=True)
        return self._remember(memory_key, _read_wav(target))

    def _sox(self, source: Path, target: Path) -> None:
        tmp = self._temp(".wav")
        try:
            # -G guards against clipping introduced by resampling/mixing down.
            self._run([
                self.sox, "-G", "-V1", str(source),
                "-t", "wav", "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", "-e", "signed-integer", str(tmp),
            ])  # fmt: skip
            _read_wav(tmp)  # what we cache must be what we asked for
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)

    def _temp(self, suffix: str) -> Path:
        return self.cache_dir / f".{uuid.uuid4().hex}{suffix}"

    def _run(self, argv: list[str], stdin: bytes | None = None) -> None:
        if shutil.which(argv[0]) is None:
            raise PromptError(f"{argv[0]} is not installed")
        with self._lock:
            self.conversions += 1
        try:
            done = subprocess.run(argv, input=stdin, capture_output=True, timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise PromptError(f"{argv[0]} took longer than {self.timeout} s") from exc
        if done.returncode != 0:
            message = done.stderr.decode("utf-8", "replace").strip().splitlines()
            raise PromptError(f"{argv[0]} failed ({done.returncode}): {message[-1] if message else 'no message'}")

    @staticmethod
    def _usable(path: Path) -> bool:
        try:
            _read_wav(path)
        except (OSError, EOFError, wave.Error, PromptError):
            return False
        return True

    # --- memory LRU -----------------------------------------------------------------------

    def _remembered(self, key: tuple[str, ...]) -> Pcm | None:
        with self._lock:
            samples = self._memory.get(key)
            if samples is not None:
                self._memory.move_to_end(key)
            return samples

    def _remember(self, key: tuple[str, ...], samples: Pcm) -> Pcm:
        with self._lock:
            if key in self._memory:
                self._memory_bytes -= self._memory.pop(key).nbytes
            self._memory[key] = samples
            self._memory_bytes += samples.nbytes
            while len(self._memory) > 1 and (len(self._memory) > self.max_items or self._memory_bytes > self.max_bytes):
                _, dropped = self._memory.popitem(last=False)
                self._memory_bytes -= dropped.nbytes
        return samples

    def prewarm(self, compiled_account: Mapping[str, Any]) -> list[PrewarmResult]:
        return prewarm(self, compiled_account)


def prewarm(cache: PromptCache, compiled_account: Mapping[str, Any]) -> list[PrewarmResult]:
    """Convert every sound of a compiled account now (at load time, not during a call).
    Failures are reported, not raised: one bad prompt must not stop the others."""
    account = str(compiled_account["account"])
    results = []
    for sound_id, sound in sorted(compiled_account.get("sounds", {}).items()):
        try:
            samples = cache.pcm(account, sound)
        except PromptError as exc:
            log.warning("prompt %s of %s: %s", sound_id, account, exc)
            results.append(PrewarmResult(sound_id, None, str(exc)))
        else:
            results.append(PrewarmResult(sound_id, len(samples) / SAMPLE_RATE))
    return results
