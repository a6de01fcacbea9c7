from __future__ import annotations

import shutil
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from routing.core.media_contract import ACCOUNT_SOUNDS_MARKER
from voffice_media.prompts import PromptCache, PromptError, UnsafeSoundPath, beep, prewarm

needs_tools = pytest.mark.skipif(
    shutil.which("sox") is None or shutil.which("espeak-ng") is None, reason="sox and espeak-ng are needed"
)


def sound(file: str | None = None, text: str | None = None, language: str = "en") -> dict[str, Any]:
    return {"name": "test prompt", "file": file, "text": text, "language": language}


def write_wav(path: Path, rate: int, channels: int, seconds: float, hz: float = 440.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(rate * seconds)) / rate
    mono = np.sin(2 * np.pi * hz * t) * 12000
    samples = np.repeat(mono[:, None], channels, axis=1).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())


@pytest.fixture
def cache(tmp_path: Path) -> PromptCache:
    (tmp_path / "sounds").mkdir()
    return PromptCache(tmp_path / "sounds", tmp_path / "cache")


def dominant_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return float(np.argmax(spectrum) * 8000 / len(samples))


def test_beep() -> None:
    tone = beep()
    assert tone.dtype == np.int16 and len(tone) == 3200
    assert abs(dominant_hz(tone) - 1000) < 5
    assert abs(int(tone[0])) < 100 and abs(int(tone[-1])) < 300  # ramps: no click
    assert 8000 < np.max(np.abs(tone)) < 12000
    assert len(beep(ms=100, hz=425)) == 800
    with pytest.raises(ValueError):
        beep(ms=0)
    assert not tone.flags.writeable


@needs_tools
@pytest.mark.parametrize(
    "language, text",
    [
        ("ru", "Пожалуйста, оставьте Ваше голосовое сообщение после звукового сигнала"),
        ("en", "Please leave your message after the tone"),
    ],
)
def test_text_is_synthesised_once(tmp_path: Path, cache: PromptCache, language: str, text: str) -> None:
    samples = cache.pcm("berry-demo", sound(text=text, language=language))
    assert samples.dtype == np.int16 and samples.ndim == 1
    seconds = len(samples) / 8000
    assert 1.5 < seconds < 12, seconds  # a sentence, spoken
    assert np.max(np.abs(samples)) > 2000  # not silence
    assert cache.conversions == 2  # espeak-ng + sox
    cached_files = list((tmp_path / "cache").glob("*.wav"))
    assert len(cached_files) == 1
    with wave.open(str(cached_files[0]), "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (8000, 1, 2)
    mtime = cached_files[0].stat().st_mtime_ns

    assert cache.pcm("other-account", sound(text=text, language=language)) is samples  # memory
    fresh = PromptCache(tmp_path / "sounds", tmp_path / "cache")  # a restarted media server
    assert np.array_equal(fresh.pcm("berry-demo", sound(text=text, language=language)), samples)
    assert cache.conversions == 2 and fresh.conversions == 0
    assert cached_files[0].stat().st_mtime_ns == mtime


@needs_tools
def test_languages_give_different_audio(cache: PromptCache) -> None:
    ru = cache.pcm("acme", sound(text="Добрый день", language="ru"))
    en = cache.pcm("acme", sound(text="Добрый день", language="en"))
    assert not np.array_equal(ru, en)
    assert cache.conversions == 4


@needs_tools
def test_file_is_converted_from_44k_stereo(tmp_path: Path, cache: PromptCache) -> None:
    write_wav(tmp_path / "sounds" / "sounds" / "hello.wav", rate=44100, channels=2, seconds=1.5, hz=440)
    samples = cache.pcm("acme", sound(file="sounds/hello.wav", text="unused"))
    assert samples.dtype == np.int16 and abs(len(samples) - 12000) <= 80
    assert abs(dominant_hz(samples) - 440) < 5
    assert cache.conversions == 1  # sox only: the text was not needed
    assert cache.pcm("acme", sound(file="sounds/hello.wav")) is samples
    assert cache.conversions == 1


@needs_tools
def test_account_directory_wins_over_shared(tmp_path: Path, cache: PromptCache) -> None:
    write_wav(tmp_path / "sounds" / "hold.wav", rate=8000, channels=1, seconds=0.5, hz=300)
    write_wav(tmp_path / "sounds" / "acme" / "hold.wav", rate=16000, channels=1, seconds=0.5, hz=700)
    assert abs(dominant_hz(cache.pcm("acme", sound(file="hold.wav"))) - 700) < 5
    assert abs(dominant_hz(cache.pcm("other", sound(file="hold.wav"))) - 300) < 5


@needs_tools
def test_missing_or_unreadable_file_falls_back_to_text(tmp_path: Path, cache: PromptCache) -> None:
    samples = cache.pcm("acme", sound(file="missing.wav", text="Hello"))
    assert len(samples) > 2000
    (tmp_path / "sounds" / "broken.wav").write_bytes(b"not audio at all")
    assert np.array_equal(cache.pcm("acme", sound(file="broken.wav", text="Hello")), samples)
    with pytest.raises(PromptError, match="not found"):
        cache.pcm("acme", sound(file="missing.wav"))
    with pytest.raises(PromptError, match="neither"):
        cache.pcm("acme", sound())
    with pytest.raises(PromptError):
        cache.pcm("acme", sound(text="Hello", language="xx"))  # espeak-ng has no such voice


@pytest.mark.parametrize(
    "file",
    [
        "/etc/passwd.wav",
        "../secret.wav",
        "sounds/../../x.wav",
        "a/./b.wav",
        ".hidden.wav",
        "x.txt",
        "a//b.wav",
        "x.wav\n",
    ],
)
def test_bad_paths_are_rejected(cache: PromptCache, file: str) -> None:
    with pytest.raises(UnsafeSoundPath):
        cache.pcm("acme", sound(file=file, text="fallback must not hide this"))


def test_symlink_out_of_the_sounds_directory_is_rejected(tmp_path: Path, cache: PromptCache) -> None:
    outside = tmp_path / "outside.wav"
    write_wav(outside, rate=8000, channels=1, seconds=0.1)
    (tmp_path / "sounds" / "link.wav").symlink_to(outside)
    with pytest.raises(UnsafeSoundPath):
        cache.pcm("acme", sound(file="link.wav"))
    with pytest.raises(UnsafeSoundPath):
        cache.pcm("../acme", sound(text="x"))


@needs_tools
def test_prewarm_reports_each_sound(tmp_path: Path, cache: PromptCache) -> None:
    write_wav(tmp_path / "sounds" / "vm.wav", rate=22050, channels=1, seconds=1.0)
    compiled = {
        "account": "acme",
        "sounds": {
            "vm-prompt": sound(file="vm.wav", text="Leave a message"),
            "greeting": sound(text="Здравствуйте", language="ru"),
            "broken": sound(file="nowhere.wav"),
        },
    }
    results = {r.sound_id: r for r in prewarm(cache, compiled)}
    assert results["vm-prompt"].seconds == pytest.approx(1.0, abs=0.02)
    assert results["greeting"].seconds is not None and results["greeting"].seconds > 0.3
    assert results["broken"].seconds is None and "not found" in (results["broken"].error or "")
    before = cache.conversions
    cache.pcm("acme", compiled["sounds"]["greeting"])
    assert cache.conversions == before


def test_memory_cache_is_bounded(tmp_path: Path) -> None:
    cache = PromptCache(tmp_path / "sounds", tmp_path / "cache", max_items=2)
    for index in range(4):
        cache._remember(("text", "en", str(index)), np.zeros(10, dtype=np.int16))
    assert len(cache._memory) == 2 and cache._remembered(("text", "en", "0")) is None


def test_another_accounts_uploaded_sounds_are_out_of_reach(tmp_path: Path) -> None:
    """Uploads live in SOUNDS_DIR/<account>/ (marked by the cabinet): account A's config naming
    "B/x.wav" does not reach B's folder through the shared fallback; B's own name does, and a
    shared subfolder (examples' "sounds/support/...") still works."""
    sounds = tmp_path / "sounds"
    (sounds / "berry").mkdir(parents=True)
    (sounds / "berry" / "greeting.wav").write_bytes(b"RIFF")
    (sounds / "berry" / ACCOUNT_SOUNDS_MARKER).touch()
    (sounds / "shared").mkdir()
    (sounds / "shared" / "hold.wav").write_bytes(b"RIFF")
    cache = PromptCache(sounds, tmp_path / "cache")
    with pytest.raises(UnsafeSoundPath):
        cache.sound_path("thames", "berry/greeting.wav")
    assert cache.sound_path("berry", "greeting.wav") == (sounds / "berry" / "greeting.wav").resolve()
    assert cache.sound_path("berry", "berry/greeting.wav") == (sounds / "berry" / "greeting.wav").resolve()  # its own
    assert cache.sound_path("thames", "shared/hold.wav") == (sounds / "shared" / "hold.wav").resolve()
