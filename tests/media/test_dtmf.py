"""dtmf: RFC 4733 events and de-duplication, in-band detection and its false alarms."""

from __future__ import annotations

import shutil
import subprocess
import time
import wave
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from voffice_media.dtmf import (
    DIGITS,
    INFO_TYPES,
    DtmfInfoError,
    Rfc4733Detector,
    TelephoneEvent,
    ToneDetector,
    dtmf_tone,
    info_digit,
)
from voffice_media.rtp import RtpPacket

PT = 101
RNG = np.random.default_rng(4733)


# ------------------------------------------------------------------ RFC 4733


def test_telephone_event_payload() -> None:
    event = TelephoneEvent.parse(b"\x0b\x8a\x03\x20")
    assert event == TelephoneEvent(11, end=True, volume=10, duration=800)
    assert event.digit == "#" and event.serialize() == b"\x0b\x8a\x03\x20"
    assert TelephoneEvent(16).digit is None
    with pytest.raises(ValueError):
        TelephoneEvent.parse(b"\x01\x00")
    with pytest.raises(ValueError):
        TelephoneEvent(1, volume=64).serialize()


@given(st.integers(0, 255), st.booleans(), st.integers(0, 63), st.integers(0, 0xFFFF))
def test_telephone_event_round_trip(event: int, end: bool, volume: int, duration: int) -> None:
    value = TelephoneEvent(event, end, volume, duration)
    assert TelephoneEvent.parse(value.serialize()) == value


def event_packets(digit: str, timestamp: int, sequence: int, *, frames: int = 5, ends: int = 3) -> list[RtpPacket]:
    """What a sender emits for one key press: start (marker), updates, three end packets."""
    code = DIGITS.index(digit)
    packets = []
    for i in range(frames):
        payload = TelephoneEvent(code, duration=160 * (i + 1)).serialize()
        packets.append(RtpPacket(PT, sequence + i, timestamp, 1, payload, marker=i == 0))
    for j in range(ends):
        payload = TelephoneEvent(code, end=True, duration=160 * frames).serialize()
        packets.append(RtpPacket(PT, sequence + frames + j, timestamp, 1, payload))
    return packets


def detect(packets: list[RtpPacket], detector: Rfc4733Detector | None = None) -> str:
    detector = detector or Rfc4733Detector(PT)
    return "".join(d for d in map(detector.feed, packets) if d is not None)


def sequence_of(digits: str) -> list[RtpPacket]:
    packets: list[RtpPacket] = []
    for i, digit in enumerate(digits):
        packets += event_packets(digit, 1000 + i * 2000, 10 + i * 10)
    return packets


def test_each_key_press_once() -> None:
    assert detect(sequence_of("101")) == "101"
    assert detect(sequence_of("0123456789*#ABCD")) == "0123456789*#ABCD"


def test_retransmitted_end_packets_and_duplicates() -> None:
    packets = sequence_of("55")
    doubled = [p for p in packets for _ in range(2)]
    assert detect(doubled) == "55"


def test_lost_start_packets() -> None:
    packets = [p for p in sequence_of("42") if not p.marker]
    assert detect(packets) == "42"
    only_ends = [p for p in sequence_of("7") if TelephoneEvent.parse(p.payload).end]
    assert detect(only_ends) == "7"


def test_late_packet_of_an_older_event_is_ignored() -> None:
    first, second = event_packets("1", 1000, 10), event_packets("2", 3000, 20)
    stream = first[:3] + second[:2] + [first[-1]] + second[2:]
    assert detect(stream) == "12"
    # timestamps that wrap past 2**32 are still newer
    wrapped = event_packets("3", 2**32 - 160, 30) + event_packets("3", 800, 40)
    assert detect(wrapped) == "33"


def test_old_timestamp_forgotten_and_late_is_ignored() -> None:
    # a timestamp older than the current event, not remembered, no marker: a late packet
    detector = Rfc4733Detector(PT)
    assert detect(sequence_of("12"), detector) == "12"
    late = [p for p in event_packets("1", 500, 99) if not p.marker]
    assert detect(late, detector) == ""


def replay(digits: str, codes: dict[str, tuple[int, int]]) -> list[RtpPacket]:
    """What sipp sends when it plays one capture per digit: each digit's packets with the
    capture's own timestamp and sequence numbers, whatever came before."""
    packets: list[RtpPacket] = []
    for digit in digits:
        timestamp, sequence = codes[digit]
        packets += event_packets(digit, timestamp, sequence)
    return packets


# timestamps and first sequence numbers of sipp's dtmf_2833_{0,1,2}.pcap
SIPP_CODES = {"0": (17632, 12080), "1": (13280, 7984), "2": (23200, 8042)}


@pytest.mark.parametrize("digits", ["11", "101", "111", "201", "100", "2012", "0210"])
def test_replayed_captures_reusing_timestamps_are_new_presses(digits: str) -> None:
    assert detect(replay(digits, SIPP_CODES)) == digits


def test_reused_timestamp_with_later_sequence_is_a_new_press() -> None:
    # a sender that reuses the timestamp but numbers its packets on; the start packet is lost
    first = event_packets("5", 1000, 10)
    again = [p for p in event_packets("5", 1000, 30) if not p.marker]
    assert detect(first + again) == "55"


def test_retransmitted_end_packets_after_a_pause_stay_one_press() -> None:
    packets = event_packets("7", 1000, 10)
    end = packets[-1]
    late_ends = [RtpPacket(PT, 20 + i, 1000, 1, end.payload) for i in range(3)]  # later sequence numbers
    assert detect(packets + late_ends + [end] * 3) == "7"


def test_reordered_packet_after_the_end_is_not_a_new_press() -> None:
    packets = event_packets("8", 1000, 10)  # seq 10-14 updates, 15-17 end
    reordered = packets[:2] + packets[3:] + [packets[2]]  # seq 12 (duration 480) after the end packets
    assert detect(reordered) == "8"
    # not a restart either: a duration that is not below the final one, or an end bit
    code = DIGITS.index("8")
    longer = RtpPacket(PT, 30, 1000, 1, TelephoneEvent(code, duration=800).serialize(), marker=True)
    assert detect([*packets, longer]) == "8"


def test_sipp_capture_played_twice() -> None:
    """The real captures sipp ships, replayed as sipp does (headers untouched)."""
    captures = Path("/usr/share/sip-tester")
    if not (captures / "dtmf_2833_1.pcap").exists():
        pytest.skip("sipp's captures are not installed")
    packets: list[RtpPacket] = []
    for digit in "101":
        data = (captures / f"dtmf_2833_{digit}.pcap").read_bytes()
        offset = 24
        while offset < len(data):
            length = int.from_bytes(data[offset + 8 : offset + 12], "little")
            frame = data[offset + 16 : offset + 16 + length]
            offset += 16 + length
            ip_header = (frame[14] & 0x0F) * 4
            packets.append(RtpPacket.parse(frame[14 + ip_header + 8 :]))
    assert detect(packets) == "101"


def test_other_payload_types_and_garbage_ignored() -> None:
    detector = Rfc4733Detector(PT)
    assert detector.feed(RtpPacket(0, 1, 1, 1, TelephoneEvent(1).serialize())) is None
    assert detector.feed(RtpPacket(PT, 1, 1, 1, b"\x01")) is None
    assert detector.feed(RtpPacket(PT, 2, 5, 1, TelephoneEvent(16).serialize())) is None  # flash
    assert Rfc4733Detector().feed(RtpPacket(96, 1, 9, 1, TelephoneEvent(9).serialize())) == "9"


def test_long_event_segments_are_one_press() -> None:
    code = DIGITS.index("5")
    segment1 = [RtpPacket(PT, 1, 1000, 1, TelephoneEvent(code, duration=0xFFFF).serialize(), marker=True)]
    segment2 = [RtpPacket(PT, 2, 1000 + 0xFFFF, 1, TelephoneEvent(code, duration=800).serialize())]
    end = [RtpPacket(PT, 3, 1000 + 0xFFFF, 1, TelephoneEvent(code, end=True, duration=900).serialize())]
    assert detect(segment1 + segment2 + end + event_packets("5", 200000, 10)) == "55"


# ------------------------------------------------------------------ in-band


def run(signal: np.ndarray, chunk: int = 160, detector: ToneDetector | None = None) -> str:
    detector = detector or ToneDetector()
    out: list[str] = []
    for i in range(0, len(signal), chunk):
        out += detector.feed(signal[i : i + chunk])
    return "".join(out)


def silence(ms: int) -> np.ndarray:
    return np.zeros(8 * ms, dtype=np.int16)


def keyed(
    digits: str, tone_ms: int = 60, gap_ms: int = 60, *, amplitude: int = 7000, twist_db: float = 0.0
) -> np.ndarray:
    parts = [silence(20)]
    for digit in digits:
        parts += [dtmf_tone(digit, tone_ms, amplitude=amplitude, twist_db=twist_db), silence(gap_ms)]
    return np.concatenate(parts)


def add_noise(signal: np.ndarray, snr_db: float) -> np.ndarray:
    power = np.mean(signal.astype(np.float64) ** 2)
    noise = RNG.normal(0, np.sqrt(power / 10 ** (snr_db / 10)), len(signal))
    return np.clip(signal + noise, -32768, 32767).astype(np.int16)


def test_all_sixteen_digits() -> None:
    assert run(keyed(DIGITS)) == DIGITS


@pytest.mark.parametrize("chunk", [1, 80, 97, 160, 333, 8000])
def test_any_chunk_size(chunk: int) -> None:
    assert run(keyed("159#"), chunk=chunk) == "159#"


@pytest.mark.parametrize("snr_db", [20, 15, 10])
def test_with_noise(snr_db: float) -> None:
    assert run(add_noise(keyed(DIGITS, 80, 80), snr_db)) == DIGITS


def test_noise_alone_is_silent() -> None:
    assert run(RNG.normal(0, 3000, 8000 * 5).astype(np.int16)) == ""


@pytest.mark.parametrize("offset", range(0, 160, 20))
def test_40ms_press_detected_at_any_alignment(offset: int) -> None:
    assert run(np.concatenate([silence(offset // 8 + 1)[:offset], dtmf_tone("8", 40), silence(100)])) == "8"


@pytest.mark.parametrize("offset", range(0, 160, 20))
def test_20ms_blip_rejected(offset: int) -> None:
    assert run(np.concatenate([silence(offset // 8 + 1)[:offset], dtmf_tone("8", 20), silence(100)])) == ""


def test_long_press_is_one_digit_and_short_dropout_is_bridged() -> None:
    assert run(keyed("3", tone_ms=2000)) == "3"
    held = np.concatenate([dtmf_tone("3", 200), silence(10), dtmf_tone("3", 200), silence(60)])
    assert run(held) == "3"


def test_same_key_twice_needs_a_gap() -> None:
    assert run(keyed("11", tone_ms=60, gap_ms=40)) == "11"
    assert run(np.concatenate([dtmf_tone("1", 60), dtmf_tone("2", 60), silence(60)])) == "12"


@pytest.mark.parametrize(("twist_db", "detected"), [(-10, ""), (-7, "8"), (0, "8"), (3, "8"), (6, "")])
def test_twist(twist_db: float, detected: str) -> None:
    # twist_db: column tone relative to row tone; normal twist up to 8 dB, reverse up to 4 dB
    assert run(keyed("8", 80, twist_db=twist_db)) == detected


@pytest.mark.parametrize(("amplitude", "detected"), [(300, ""), (800, "5"), (16000, "5")])
def test_level_threshold(amplitude: int, detected: str) -> None:
    assert run(keyed("5", 80, amplitude=amplitude)) == detected


def ungated() -> ToneDetector:
    detector = ToneDetector()
    detector.quiet_gate = False
    return detector


@pytest.mark.parametrize("amplitude", [200, 300, 420, 480, 520, 600, 800])
@pytest.mark.parametrize("noise", [0.0, 100.0, 250.0])
def test_quiet_gate_changes_nothing(amplitude: int, noise: float) -> None:
    """Skipping audio too quiet to hold a digit gives what the full analysis gives, at levels
    around the -33 dBm0 threshold (tone amplitude ~510) and in noise."""
    rng = np.random.default_rng(amplitude + int(noise))
    signal = keyed("159#", 60, 60, amplitude=amplitude).astype(np.float64)
    signal = np.clip(signal + rng.normal(0, noise, len(signal)), -32768, 32767).astype(np.int16)
    for chunk in (160, 240, 97):
        assert run(signal, chunk=chunk) == run(signal, chunk=chunk, detector=ungated()), (amplitude, noise, chunk)


def test_quiet_gate_skips_background_noise(monkeypatch: pytest.MonkeyPatch) -> None:
    classified: list[int] = []
    original = ToneDetector._classify
    monkeypatch.setattr(ToneDetector, "_classify", lambda self, *a: classified.append(1) or original(self, *a))
    noise = RNG.normal(0, 150, 160 * 50).astype(np.int16)  # about -44 dBm0
    assert run(noise) == "" and classified == []
    assert run(noise, detector=ungated()) == "" and len(classified) > 90


def harmonic_voice(f0: float, seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(8000 * seconds)) / 8000
    vibrato = 1 + 0.02 * np.sin(2 * np.pi * 5 * t)
    phase = 2 * np.pi * f0 * np.cumsum(vibrato) / 8000
    signal = sum(rng.uniform(0.1, 1) / k**0.5 * np.sin(k * phase + rng.uniform(0, 6)) for k in range(1, int(3400 / f0)))
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 3 * t) ** 2
    out: np.ndarray = np.asarray(signal, dtype=np.float64) * envelope
    return np.asarray(out / np.abs(out).max() * 20000, dtype=np.int16)


@pytest.mark.parametrize("f0", [85.0, 110.0, 140.0, 190.0, 240.0, 305.0])
def test_speech_like_harmonics_do_not_trigger(f0: float) -> None:
    assert run(harmonic_voice(f0, 3.0, int(f0))) == ""


def test_two_dtmf_frequencies_among_other_tones_do_not_trigger() -> None:
    t = np.arange(8000) / 8000
    chord = 6000 * (np.sin(2 * np.pi * 697 * t) + np.sin(2 * np.pi * 1209 * t) + np.sin(2 * np.pi * 1000 * t))
    assert run(chord.astype(np.int16)) == ""
    music = sum(3000 * np.sin(2 * np.pi * f * t) for f in (440, 554.37, 659.25, 880))
    assert run(np.asarray(music).astype(np.int16)) == ""


def test_digits_over_speech_like_background() -> None:
    voice = (harmonic_voice(120.0, 2.0, 7) // 8).astype(np.int16)  # speech ~18 dB under the tones
    tones = keyed("2580", 80, 120)
    mixed = np.clip(tones[: len(voice)].astype(np.int32) + voice[: len(tones)], -32768, 32767).astype(np.int16)
    assert run(mixed) == "2580"


def espeak(text: str, voice: str, tmp_path: Path) -> np.ndarray:
    path = tmp_path / f"{voice}.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True, capture_output=True, timeout=60)
    with wave.open(str(path)) as wav:
        rate = wav.getframerate()
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16).astype(np.float64)
    t = np.arange(0, len(samples) / rate, 1 / 8000)
    return np.interp(t, np.arange(len(samples)) / rate, samples)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
@pytest.mark.parametrize(
    ("voice", "text"),
    [
        ("en", "Hello, you have reached the virtual office. Press one for sales, two for support, zero to repeat."),
        ("ru", "Пожалуйста, оставьте Ваше голосовое сообщение после звукового сигнала. Спасибо за звонок."),
    ],
)
def test_synthesised_speech_does_not_trigger(voice: str, text: str, tmp_path: Path) -> None:
    speech = espeak(text, voice, tmp_path)
    for gain in (0.5, 1.0, 3.0):
        assert run(np.clip(speech * gain, -32768, 32767).astype(np.int16)) == "", gain
    with_key = np.clip(speech * 0.5, -32768, 32767).astype(np.int16)
    with_key[8000 : 8000 + 800] = np.clip(with_key[8000:8800].astype(np.int32) + dtmf_tone("7", 100), -32768, 32767)
    assert run(with_key) == "7"


def test_dtmf_tone() -> None:
    tone = dtmf_tone("#", 100)
    assert tone.dtype == np.int16 and len(tone) == 800
    spectrum = np.abs(np.fft.rfft(tone.astype(np.float64)))
    peaks = sorted(np.argsort(spectrum)[-2:] * 8000 / 800)
    assert peaks == [940.0, 1480.0]
    assert len(dtmf_tone("1", 100, rate=16000)) == 1600
    for bad in ("E", "12", ""):
        with pytest.raises(ValueError):
            dtmf_tone(bad, 10)


def test_detector_cost_per_frame() -> None:
    detector = ToneDetector()
    signal = add_noise(keyed(DIGITS), 20)
    frames = [signal[i : i + 160] for i in range(0, len(signal) - 159, 160)]
    start = time.perf_counter()
    for _ in range(5):
        for frame in frames:
            detector.feed(frame)
    per_frame = (time.perf_counter() - start) / (5 * len(frames))
    assert per_frame < 500e-6, per_frame  # measured ~10 us; loose for CI


# ------------------------------------------------------------------ SIP INFO bodies


@given(st.sampled_from(DIGITS), st.sampled_from(["\r\n", "\n"]), st.integers(0, 5000))
def test_info_bodies_carry_their_key(key: str, eol: str, duration: int) -> None:
    assert info_digit("application/dtmf-relay", f"Signal={key}{eol}Duration={duration}{eol}".encode()) == key
    assert info_digit("application/dtmf-relay", f"Duration={duration}{eol}signal= {key.lower()} {eol}".encode()) == key
    assert info_digit("application/dtmf", f"{key}{eol}".encode()) == key


def test_info_event_codes_for_star_and_pound() -> None:
    assert info_digit("application/dtmf-relay", b"Signal=10") == "*"
    assert info_digit("application/dtmf", b"11") == "#"


@given(st.sampled_from(INFO_TYPES), st.binary(max_size=64))
def test_any_info_body_is_a_key_or_a_clean_error(content_type: str, body: bytes) -> None:
    try:
        key = info_digit(content_type, body)
    except DtmfInfoError:
        return
    assert len(key) == 1 and key in DIGITS
