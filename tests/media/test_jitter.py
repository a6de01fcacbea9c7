"""jitter: the receive-side jitter buffer (audio placed by RTP timestamp), what the in-band DTMF
detector does with lost frames, and a voicemail's tail at hangup. No sockets, no clock."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voffice_media.dtmf import ToneDetector, dtmf_tone
from voffice_media.g711 import PCMA, alaw_decode, alaw_encode
from voffice_media.jitter import JitterBuffer
from voffice_media.operations import Voicemail
from voffice_media.rtp import RtpPacket, RtpPeer, RtpSender
from voffice_media.server import RTP_TIMES, Call, Metrics

FRAME = 160
SSRC = 0x1234


def frames(count: int, seed: int = 1) -> list[np.ndarray]:
    """Distinct, recognisable 20 ms frames."""
    rng = np.random.default_rng(seed)
    return [rng.integers(-20000, 20000, FRAME).astype(np.int16) for _ in range(count)]


def play(buffer: JitterBuffer, ticks: int) -> list[np.ndarray | None]:
    return [buffer.pop().audio for _ in range(ticks)]


def audio_of(out: list[np.ndarray | None]) -> list[np.ndarray]:
    """What was played from the first audio on (None, nothing to play, as silence)."""
    start = next(i for i, a in enumerate(out) if a is not None)
    return [a if a is not None else np.zeros(FRAME, np.int16) for a in out[start:]]


def same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


ZERO = np.zeros(FRAME, np.int16)


# ------------------------------------------------------------------ in order, reordered, lost


def arrival_ticks(fates: list[tuple[bool, int, int | None]], copy_of_lost: bool) -> dict[int, list[int]]:
    """tick -> the packets arriving then: packet k is sent at tick k and arrives `delay` ticks
    later unless lost; its copy, if any, `copy` ticks later (also for a lost packet with
    `copy_of_lost`: the loss took only the original)."""
    arrivals: dict[int, list[int]] = {}
    for k, (lost, delay, copy) in enumerate(fates):
        if not lost:
            arrivals.setdefault(k + delay, []).append(k)
        if copy is not None and (copy_of_lost or not lost):
            arrivals.setdefault(k + copy, []).append(k)
    return arrivals


def test_in_order_after_the_playout_delay() -> None:
    buffer, sent = JitterBuffer(), frames(10)
    out: list[np.ndarray | None] = []
    for i, pcm in enumerate(sent):
        buffer.push(SSRC, 1000 + i * FRAME, pcm)
        out.append(buffer.pop().audio)
    out += buffer.drain()
    assert out[:2] == [None, None], "60 ms buffered before the first frame plays"
    assert same(audio_of(out), sent)
    assert not +buffer.counters


def test_reordered_packets_play_in_timestamp_order() -> None:
    buffer, sent = JitterBuffer(), frames(9)
    order = [1, 0, 2, 4, 3, 5, 8, 6, 7]  # one packet per tick, each at most two ticks late
    out = []
    for i in order:
        buffer.push(SSRC, i * FRAME, sent[i])
        out.append(buffer.pop().audio)
    assert same(audio_of(out + buffer.drain()), sent)
    assert not +buffer.counters


def test_a_lost_packet_is_a_frame_of_silence_in_its_place() -> None:
    buffer, sent = JitterBuffer(), frames(10)
    out = []
    heard = []
    for i, pcm in enumerate(sent):
        if i != 4:
            buffer.push(SSRC, i * FRAME, pcm)
        h = buffer.pop()
        out.append(h.audio)
        heard.append(h.lost)
    assert same(audio_of(out + buffer.drain()), [*sent[:4], ZERO, *sent[5:]]), "later audio keeps its time"
    assert heard.count(True) == 1 and buffer.counters["rx_concealed"] == 1


def test_duplicates_ignored_and_late_packets_dropped() -> None:
    buffer, sent = JitterBuffer(), frames(10)
    out = []
    for i, pcm in enumerate(sent):
        if i != 5:
            buffer.push(SSRC, i * FRAME, pcm)
            buffer.push(SSRC, i * FRAME, pcm)
        out.append(buffer.pop().audio)
        if i == 8:  # packet 5 arrives after its frame was played (concealed)
            buffer.push(SSRC, 5 * FRAME, sent[5])
    assert same(audio_of(out + buffer.drain()), [*sent[:5], ZERO, *sent[6:]])
    assert buffer.counters["rx_duplicate"] == 9 and buffer.counters["rx_late"] == 1


def test_30ms_packets_reframed_to_20ms() -> None:
    buffer = JitterBuffer()
    audio = np.concatenate(frames(12))  # 240 ms: eight 30 ms packets
    out = []
    for tick in range(12):
        if tick % 3 != 2:  # two 30 ms packets every three 20 ms ticks
            k = tick - tick // 3
            buffer.push(SSRC, 7 + k * 240, audio[k * 240 : (k + 1) * 240])
        out.append(buffer.pop().audio)
    played = np.concatenate(audio_of(out + buffer.drain()))
    assert np.array_equal(played, audio)


def test_timestamps_wrap() -> None:
    buffer, sent = JitterBuffer(), frames(8)
    for i, pcm in enumerate(sent):
        buffer.push(SSRC, (0xFFFF_FFFF - 300 + i * FRAME) & 0xFFFF_FFFF, pcm)
    assert same(audio_of(play(buffer, 8)), sent)
    assert not +buffer.counters


# ------------------------------------------------------------------ underrun, pauses, jumps


def test_a_pause_of_the_sender_keeps_the_timeline() -> None:
    """No packets for 200 ms (silence suppression): the buffer runs empty, the next packets
    (timestamps 200 ms on) play 200 ms later, as sent."""
    buffer, sent = JitterBuffer(), frames(10)
    out = []
    for i in range(20):
        if i < 5 or i >= 15:
            j = i if i < 5 else i - 10
            buffer.push(SSRC, i * FRAME, sent[j])
        out.append(buffer.pop().audio)
    out += buffer.drain()
    assert same(audio_of(out), [*sent[:5], *[ZERO] * 10, *sent[5:]])
    assert buffer.counters["rx_underruns"] == 1 and buffer.counters["rx_rewinds"] == 0


def test_a_sender_later_than_the_delay_rewinds_and_loses_nothing() -> None:
    """The sender stalls 100 ms, then sends what it owes at once: the frames it was late with
    play late (the delay grows) rather than being dropped."""
    buffer, sent = JitterBuffer(), frames(14)
    out = []
    for tick in range(20):
        due = range(tick, tick + 1) if tick < 4 or tick >= 9 else range(0)
        if tick == 9:
            due = range(4, 10)  # the backlog
        for i in due:
            if i < len(sent):
                buffer.push(SSRC, i * FRAME, sent[i])
        out.append(buffer.pop().audio)
    played = [a for a in out + buffer.drain() if a is not None]
    assert same(played, sent), "every frame, in order, none concealed"
    assert buffer.counters["rx_rewinds"] == 1 and buffer.counters["rx_late"] == 0


def test_a_new_ssrc_or_a_jump_starts_a_new_timeline_after_what_is_buffered() -> None:
    buffer, sent = JitterBuffer(), frames(9)
    for i in range(3):
        buffer.push(SSRC, i * FRAME, sent[i])
    for i in range(3, 6):  # another source, another clock
        buffer.push(SSRC + 1, 999_999 + (i - 3) * FRAME, sent[i])
    for i in range(6, 9):  # the clock jumps back by minutes (a capture replayed)
        buffer.push(SSRC + 1, 5 + (i - 6) * FRAME, sent[i])
    assert same(audio_of(play(buffer, 9)), sent)
    assert buffer.counters["rx_resyncs"] == 2


def test_a_burst_beyond_the_capacity_drops_the_oldest() -> None:
    buffer, sent = JitterBuffer(capacity=800), frames(8)  # 100 ms
    for i, pcm in enumerate(sent):
        buffer.push(SSRC, i * FRAME, pcm)
    assert buffer.counters["rx_overflow"] == 3
    assert same(audio_of(play(buffer, 5)), sent[3:])


def test_drain_returns_what_is_left_in_order() -> None:
    buffer, sent = JitterBuffer(), frames(5)
    for i in (0, 1, 3, 4):
        buffer.push(SSRC, i * FRAME, sent[i])
    assert same(buffer.drain(), [sent[0], sent[1], ZERO, sent[3], sent[4]])
    assert buffer.drain() == [] and buffer.pop().audio is None


packet_fates = st.lists(
    st.tuples(st.booleans(), st.integers(0, 2), st.one_of(st.none(), st.integers(0, 6))), min_size=1, max_size=60
)


@settings(max_examples=200, deadline=None)
@given(packet_fates, st.integers(0, 0xFFFF_FFFF))
def test_jitter_below_the_delay_changes_nothing_and_loss_only_its_frames(
    fates: list[tuple[bool, int, int | None]], first_ts: int
) -> None:
    """Packet k is sent at tick k; it is lost, or arrives up to two ticks late (jitter under
    the 60 ms delay), maybe with a copy up to six ticks late (late copies are dropped, even
    in an underrun: their place was played). Whatever the order of arrival,
    the frames play exactly in their places, silence where a packet was lost."""
    if all(lost for lost, _d, _c in fates):
        return
    sent = frames(len(fates), seed=len(fates))
    arrivals = arrival_ticks(fates, copy_of_lost=False)
    buffer = JitterBuffer()
    out = []
    for tick in range(len(fates) + 10):
        for k in reversed(arrivals.get(tick, [])):  # the later-sent first, when they arrive together
            buffer.push(SSRC, (first_ts + k * FRAME) & 0xFFFF_FFFF, sent[k])
        out.append(buffer.pop().audio)
    kept = [k for k, (lost, _d, _c) in enumerate(fates) if not lost]
    expected = [ZERO if fates[k][0] else sent[k] for k in range(kept[0], kept[-1] + 1)]
    assert same(audio_of(out + buffer.drain())[: len(expected)], expected)
    assert buffer.counters["rx_rewinds"] == 0 and buffer.counters["rx_resyncs"] == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 15), st.one_of(st.none(), st.integers(0, 30))),
                min_size=1, max_size=80))
def test_any_delays_play_each_frame_once_in_order_never_earlier(fates: list[tuple[bool, int, int | None]]) -> None:
    """Delays up to 300 ms (far beyond the playout delay): frames play in order, each at most
    once, and a frame never plays earlier relative to its send time than the one before it
    (the timeline only ever shifts later)."""
    sent = frames(len(fates), seed=3)
    arrivals = arrival_ticks(fates, copy_of_lost=True)
    identity = {sent[k].tobytes(): k for k in range(len(sent))}
    buffer = JitterBuffer()
    played: list[tuple[int, int]] = []  # (tick, k)
    for tick in range(len(fates) + 60):
        for k in arrivals.get(tick, []):
            buffer.push(SSRC, 4000 + k * FRAME, sent[k])
        audio = buffer.pop().audio
        if audio is not None and audio.any():
            played.append((tick, identity[audio.tobytes()]))
    ks = [k for _t, k in played]
    assert ks == sorted(set(ks)), "in order, each once"
    lags = [t - k for t, k in played]
    assert lags == sorted(lags), "never earlier than the frame before"
    assert len(set(lags)) - 1 <= buffer.counters["rx_rewinds"]
    assert buffer.counters["rx_resyncs"] == 0


# ------------------------------------------------------------------ in-band DTMF and lost frames


def detect(frames_in: list[np.ndarray | None]) -> str:
    """Frames as the server gives them to the detector: None is a lost frame (gap())."""
    detector, out = ToneDetector(), []
    for frame in frames_in:
        if frame is None:
            detector.gap()
        else:
            out += detector.feed(frame)
    return "".join(out)


def chop(signal: np.ndarray) -> list[np.ndarray | None]:
    return [signal[i : i + FRAME] for i in range(0, len(signal), FRAME)]


def test_a_press_with_every_other_frame_lost_is_still_one_press() -> None:
    press = chop(np.concatenate([np.zeros(800, np.int16), dtmf_tone("7", 100), np.zeros(800, np.int16)]))
    press[6] = press[8] = None  # frames 1 and 3 of the five of the tone
    assert detect(press) == "7"


def test_lost_frames_in_a_long_press_do_not_split_it() -> None:
    press = chop(np.concatenate([dtmf_tone("9", 300), np.zeros(800, np.int16)]))
    press[7] = press[8] = None  # 40 ms lost in the middle
    assert detect(press) == "9"
    as_silence = [f if f is not None else np.zeros(FRAME, np.int16) for f in press]
    assert detect(as_silence) == "99", "(why a lost frame is not fed as silence)"


def test_same_key_twice_with_a_lost_frame_in_the_pause() -> None:
    tone, pause = dtmf_tone("5", 100), np.zeros(800, np.int16)
    keys = chop(np.concatenate([pause, tone, pause, tone, pause]))
    keys[11] = None  # one of the five frames of the pause
    assert detect(keys) == "55"


def test_200ms_without_audio_releases_the_key() -> None:
    tone = chop(dtmf_tone("5", 100))
    assert detect([*tone, *[None] * 9, *tone]) == "5", "180 ms lost: one press"
    assert detect([*tone, *[None] * 10, *tone]) == "55", "200 ms without packets: the key was up"


KEYS = "550120338"


def dialled_through(loss: float, seed: int) -> tuple[str, bool]:
    """In-band keys (100 ms tone, 100 ms pause) through `loss` and 0-40 ms of jitter, the
    jitter buffer and the detector, as the server chains them (Call.tick, Call.receive): the
    digits detected, and whether the losses stayed within what the detector is specified to
    survive (every press keeps 2 of its 5 frames; a pause between two presses of one key
    keeps 4 of its 5)."""
    rng = np.random.default_rng(seed)
    parts = [np.zeros(2400, np.int16)]
    for digit in KEYS:
        parts += [dtmf_tone(digit, 100), np.zeros(800, np.int16)]
    sent = chop(np.concatenate([*parts, np.zeros(2400, np.int16)]))
    arrivals: dict[int, list[tuple[float, int]]] = {}
    lost = set()
    for k in range(len(sent)):
        if rng.random() >= loss:
            when = k + rng.uniform(0, 2)  # in ticks
            arrivals.setdefault(int(when) + 1, []).append((when, k))
        else:
            lost.add(k)
    buffer, detector, out = JitterBuffer(), ToneDetector(), []
    for tick in range(len(sent) + 10):
        for _when, k in sorted(arrivals.get(tick, [])):
            frame = sent[k]
            assert frame is not None
            buffer.push(SSRC, k * FRAME, frame)
        heard = buffer.pop()
        if heard.audio is None or heard.lost:
            detector.gap()
        else:
            out += detector.feed(heard.audio)
    first = 15  # frames of the lead-in; then 5 of tone and 5 of pause per key
    presses_ok = all(len(lost & set(range(first + 10 * i, first + 10 * i + 5))) <= 3 for i in range(len(KEYS)))
    pauses_ok = all(len(lost & set(range(first + 10 * i + 5, first + 10 * i + 10))) <= 1
                    for i in range(len(KEYS) - 1) if KEYS[i] == KEYS[i + 1])
    return "".join(out), presses_ok and pauses_ok


@pytest.mark.parametrize(("loss", "exact"), [(0.05, 199), (0.10, 196), (0.20, 164)])
def test_inband_keys_through_loss_and_jitter_what_the_detector_survives(loss: float, exact: int) -> None:
    """200 seeded sequences of nine keys: every one whose losses stay within the detector's
    specification comes through exactly; how many come through exactly at all (seeded: the
    same on every run) is 199 at 5 % loss, 196 at 10 %, 164 at 20 %."""
    results = [dialled_through(loss, seed) for seed in range(200)]
    assert all(digits == KEYS for digits, ok in results if ok)
    assert sum(digits == KEYS for digits, _ok in results) >= exact


# ------------------------------------------------------------------ a voicemail's tail at hangup


def test_hangup_records_what_was_still_in_the_jitter_buffer() -> None:
    server: Any = SimpleNamespace(metrics=Metrics())
    operation = Voicemail(np.zeros(0, np.int16))
    call = Call("c1", {}, "v1", operation, PCMA, 101, RtpPeer(None), RtpSender(8), ("127.0.0.1", 9), server)
    sender = RtpSender(8)
    sent = frames(20)
    for pcm in sent:
        call.on_rtp(sender.packet(alaw_encode(pcm)).serialize(), ("127.0.0.1", 4000))
        call.receive()
        call.tick()
    # the caller hangs up right after its last packet, and one more is still in the socket's queue
    last = frames(1, seed=99)[0]
    call.on_rtp(sender.packet(alaw_encode(last)).serialize(), ("127.0.0.1", 4000))
    call.hangup()
    assert operation.result is not None and operation.result.value == "hangup"
    recorded = np.concatenate(operation.recorded)
    expected = np.concatenate([alaw_decode(alaw_encode(pcm)) for pcm in [*sent, last]])
    assert np.array_equal(recorded[-len(expected) :], expected)
    assert not recorded[: len(recorded) - len(expected)].any()


def test_counters_are_the_servers() -> None:
    counters: Counter[str] = Counter()
    buffer = JitterBuffer(counters=counters)
    buffer.push(SSRC, 0, frames(1)[0])
    buffer.push(SSRC, 0, frames(1)[0])
    assert counters["rx_duplicate"] == 1


def test_bad_sizes() -> None:
    with pytest.raises(ValueError):
        JitterBuffer(delay=480, capacity=480)


def test_rtp_packet_fields_used_by_the_server() -> None:
    data = RtpPacket(8, 1, 0xDEADBEEF, SSRC, b"\xd5" * FRAME).serialize()
    assert RTP_TIMES.unpack_from(data, 4) == (0xDEADBEEF, SSRC)
