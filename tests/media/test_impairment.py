"""Packet loss and jitter on RTP: DTMF still detected, recordings still complete.

The real media server process (as in test_server.py: a redis-server with the seed account,
`python -m voffice_media`, SIP straight at it with the headers Kamailio would add) and a Python
caller whose RTP goes both ways through an `ImpairmentProxy` (tests/media/impair.py): the
caller's SDP names the proxy's server side, so the server sends there and latches onto it.
Every impairment is seeded: which packets are lost is the same on every run; how much the
jitter reorders depends a little on scheduling, so the assertions hold for any order.

- RFC 4733 keys through 10 % loss, 0-40 ms jitter and duplication: every key press once;
- in-band keys (DTMF tones) through 5 % loss and 0-40 ms jitter;
- a voicemail through 10 % loss, 0-40 ms jitter and 2 % duplication: every frame the proxy let
  through is in the recording, bit-exact, at the place its RTP timestamp gives it; every
  frame it dropped is silence there (concealed) and counted by the server; nothing after a
  loss moves earlier; the file and its event are stored.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import redis

from routing.stack.redis_server import RedisServer
from voffice_media.dtmf import DIGITS, TelephoneEvent, dtmf_tone
from voffice_media.g711 import alaw_decode, alaw_encode
from voffice_media.rtp import RtpError, RtpPacket, RtpSender
from voffice_media.sdp import negotiate, parse_offer
from voffice_media.sipmsg import Response

from .impair import TO_CALLER, TO_SERVER, Impairment, ImpairmentProxy, _Direction
from .test_server import (
    ACCOUNT,
    MediaServerProcess,
    Peer,
    best_match,
    load_seed,
    op_header,
    read_wav,
    sha256_of,
    vo_call,
    wait_event,
)

pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(shutil.which("redis-server") is None and not Path("/usr/sbin/redis-server").exists(),
                       reason="redis-server is not installed"),
]

FRAME = 160
TICK = 0.020
EVENT_PT = 101

# The impairments. Jitter up to 40 ms stays inside the server's 60 ms playout delay; above
# 20 ms (the packet interval) it reorders packets.
RFC4733_LINK = Impairment(loss=0.10, jitter=0.040, duplicate=0.05, seed=4733)
INBAND_LINK = Impairment(loss=0.05, jitter=0.040, seed=1209)
VOICEMAIL_LINK = Impairment(loss=0.10, jitter=0.040, duplicate=0.02, seed=2024)


# --------------------------------------------------------------------------- the caller


class Talker:
    """What the caller sends, built in advance: one list of datagrams per 20 ms tick. Audio
    is PCMA; RFC 4733 events share the stream's SSRC and sequence numbers (payload type 101)."""

    def __init__(self) -> None:
        self.rtp = RtpSender(8)
        self.ticks: list[list[bytes]] = []
        self.frames: list[tuple[int, int, np.ndarray]] = []  # (sequence, timestamp, decoded audio) sent

    def audio(self, pcm: np.ndarray) -> Talker:
        for i in range(0, len(pcm) - FRAME + 1, FRAME):
            payload = alaw_encode(pcm[i : i + FRAME])
            packet = self.rtp.packet(payload)
            self.ticks.append([packet.serialize()])
            self.frames.append((packet.sequence, packet.timestamp, alaw_decode(payload)))
        return self

    def silence(self, seconds: float) -> Talker:
        return self.audio(np.zeros(int(8000 * seconds), dtype=np.int16))

    def key(self, digit: str, *, frames: int = 5, ends: int = 3) -> Talker:
        """One key press as RFC 4733 sends it: a start packet (marker), updates every 20 ms,
        three end packets with the final duration; the audio clock runs on meanwhile."""
        code, start = DIGITS.index(digit), self.rtp.timestamp
        for i in range(frames + ends):
            event = TelephoneEvent(code, end=i >= frames, duration=FRAME * min(i + 1, frames))
            packet = RtpPacket(EVENT_PT, self.rtp.sequence, start, self.rtp.ssrc, event.serialize(), marker=i == 0)
            self.rtp.sequence = (self.rtp.sequence + 1) & 0xFFFF
            self.ticks.append([packet.serialize()])
        self.rtp.pause(frames + ends)
        return self


class Caller:
    """A Python caller (test_server.Peer for SIP) whose RTP goes through `proxy`."""

    def __init__(self, server: MediaServerProcess, proxy: ImpairmentProxy) -> None:
        self.peer = Peer(server.addr, sdp_port=proxy.server_side[1])
        self.proxy = proxy
        self.final: Response | None = None
        self.rtp_received = 0

    def close(self) -> None:
        self.peer.close()

    def invite(self, op: str, call: str, timeout: float = 10.0) -> None:
        """INVITE; once the server's SDP arrives (183 or 200), wire the proxy between us."""
        self.peer.invite(op, call)
        deadline = time.monotonic() + timeout
        while self.peer.remote_rtp is None and self.final is None and time.monotonic() < deadline:
            message = self.peer.receive(max(0.01, deadline - time.monotonic()))
            if isinstance(message, Response) and "INVITE" in (message.headers.get("CSeq") or ""):
                if message.body:
                    self.peer.remote_rtp = negotiate(parse_offer(message.body)).remote
                if message.status >= 200:
                    self.final = message
                    self.peer.to = message.headers.get("To")
        assert self.peer.remote_rtp is not None, f"no SDP from the server within {timeout} s (final: {self.final})"
        self.proxy.connect(caller=self.peer.rtp.getsockname(), server=self.peer.remote_rtp)

    def _poll(self) -> None:
        """What arrived: the server's RTP (counted), its final response or BYE (answered)."""
        while True:
            try:
                data, _addr = self.peer.rtp.recvfrom(2048)
            except BlockingIOError:
                break
            with contextlib.suppress(RtpError):
                RtpPacket.parse(data)
                self.rtp_received += 1
        for message in self.peer.poll_sip():
            if (isinstance(message, Response) and message.status >= 200 and self.final is None
                    and "INVITE" in (message.headers.get("CSeq") or "")):
                self.final = message
                self.peer.to = message.headers.get("To")

    def talk(self, talker: Talker, *, until_final: bool = False, stall: tuple[int, float] | None = None) -> None:
        """Send the talker's ticks through the proxy, one every 20 ms on a fixed schedule (a late
        tick is caught up at once, as a real sender's would be); stop early at the final reply
        when `until_final`; `stall`: (tick, seconds) the sender stops for before that tick."""
        start = time.monotonic()
        for n, datagrams in enumerate(talker.ticks):
            if stall is not None and n == stall[0]:
                time.sleep(stall[1])
            self._poll()
            if until_final and self.final is not None:
                return
            for data in datagrams:
                self.peer.rtp.sendto(data, self.proxy.caller_side)
            delay = start + (n + 1) * TICK - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def wait_final(self, timeout: float) -> Response:
        deadline = time.monotonic() + timeout
        while self.final is None and time.monotonic() < deadline:
            self._poll()
            time.sleep(0.01)
        assert self.final is not None, f"no final response within {timeout} s"
        return self.final


# --------------------------------------------------------------------------- fixtures


@dataclass
class Stack:
    r: redis.Redis
    server: MediaServerProcess


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    redis_server = RedisServer(tmp_path_factory.mktemp("redis"))
    redis_server.start()
    server: MediaServerProcess | None = None
    try:
        load_seed(redis_server.url)
        server = MediaServerProcess(tmp_path_factory.mktemp("media"), redis_server.url, metrics=True).start()
        yield Stack(redis.Redis.from_url(redis_server.url), server)
    finally:
        if server is not None:
            with contextlib.suppress(Exception):
                server.terminate()
            server.kill()
        redis_server.stop()


@contextlib.contextmanager
def impaired_call(stack: Stack, link: Impairment) -> Iterator[Caller]:
    proxy = ImpairmentProxy(link).start()
    caller = Caller(stack.server, proxy)
    try:
        yield caller
    finally:
        caller.close()
        proxy.stop()
        assert proxy.error is None, proxy.error


def keyed_call(stack: Stack, link: Impairment, header: str, talker: Talker) -> tuple[Caller, Response, dict[str, int]]:
    """One call through `link` that plays `talker` until the server's final reply: the caller
    (its proxy keeps the link's statistics), that reply, and how the server's counters moved."""
    before = counters(stack.server)
    with impaired_call(stack, link) as caller:
        caller.invite(header, vo_call())
        caller.talk(talker, until_final=True)
        final = caller.wait_final(10)
        caller.peer.ack(final)
        moved = delta(before, counters(stack.server))
    return caller, final, moved


def counters(server: MediaServerProcess) -> dict[str, float]:
    names = ("dtmf_detected_total", "rx_concealed_total", "rx_late_total", "rx_duplicate_total",
             "rx_rewinds_total", "rx_underruns_total")
    return {name: server.metric(f"voffice_media_{name}") for name in names}


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, int]:
    return {name: int(after[name] - before[name]) for name in before}


def report(caller: Caller, moved: dict[str, int]) -> str:
    up, down = caller.proxy.stats[TO_SERVER], caller.proxy.stats[TO_CALLER]
    return (f"to server: {up.received} in, {up.dropped} dropped, {up.duplicated} duplicated, {up.reordered} reordered, "
            f"max {up.max_delay * 1000:.0f} ms in the proxy; to caller: {down.received} in, {down.dropped} dropped; "
            f"server: {moved}")


# --------------------------------------------------------------------------- the proxy itself


def test_proxy_loss_is_seeded_and_everything_else_arrives() -> None:
    """The proxy alone: which packets are lost follows from the seed; the others arrive, the
    duplicated ones twice; jitter above the packet interval reorders."""
    link = Impairment(loss=0.1, jitter=0.030, duplicate=0.1, seed=99)
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    a.bind(("127.0.0.1", 0))
    b.bind(("127.0.0.1", 0))
    b.settimeout(1.0)
    with ImpairmentProxy(link) as proxy:
        proxy.connect(caller=a.getsockname(), server=b.getsockname())
        sender = RtpSender(8, sequence=0, timestamp=0)
        for i in range(150):
            a.sendto(sender.packet(bytes([i % 256]) * FRAME).serialize(), proxy.caller_side)
            time.sleep(0.005)
        arrived: list[int] = []
        with contextlib.suppress(TimeoutError):
            while True:
                arrived.append(RtpPacket.parse(b.recvfrom(2048)[0]).sequence)
        stats = proxy.stats[TO_SERVER]
    a.close()
    b.close()
    assert proxy.error is None
    expected = _Direction(Impairment(loss=0.1, jitter=0.030, duplicate=0.1, seed=99))
    decisions = [expected.decide() for _ in range(150)]
    lost = {i for i, (gone, _d, _c) in enumerate(decisions) if gone}
    doubled = {i for i, (_g, _d, copy) in enumerate(decisions) if copy is not None}
    assert {seq for seq, _ts in stats.dropped_rtp} == lost and stats.dropped == len(lost) > 0
    want = sorted([i for i in range(150) if i not in lost] + sorted(doubled))
    assert sorted(arrived) == want, "every packet not dropped arrives, a duplicated one twice"
    assert arrived != sorted(arrived) and stats.reordered > 0


# --------------------------------------------------------------------------- RFC 4733


def test_rfc4733_extension_digits_through_loss_jitter_and_duplicates(stack: Stack) -> None:
    digits = "550120338"  # repeated keys: each press once, duplicates and reordering or not
    talker = Talker().silence(0.3)
    for digit in digits:
        talker.key(digit).silence(0.1)
    header = op_header("extension", "ext", timeout=5, digits=len(digits), inter_digit=3)
    caller, final, moved = keyed_call(stack, RFC4733_LINK, header, talker)
    summary = report(caller, moved)
    assert final.status == 480 and final.headers.get("X-VO-Result") == f"digits={digits}", summary
    assert moved["dtmf_detected_total"] == len(digits), summary
    up = caller.proxy.stats[TO_SERVER]
    assert up.dropped > 0 and up.duplicated > 0, summary
    assert caller.rtp_received > 0, "the server's RTP reaches the caller through the proxy"
    print(summary)


def test_rfc4733_menu_repeat_then_key_through_heavy_duplication(stack: Stack) -> None:
    # max_repeats=1: a "0" detected twice would end the menu with `invalid`
    link = Impairment(loss=0.10, jitter=0.040, duplicate=0.5, seed=2833)
    talker = Talker().silence(0.3).key("0").silence(0.4).key("2").silence(0.2)
    header = op_header("menu", "menu", timeout=5, repeat=0, max_repeats=1, keys="12")
    caller, final, moved = keyed_call(stack, link, header, talker)
    summary = report(caller, moved)
    assert final.status == 480 and final.headers.get("X-VO-Result") == "key=2", summary
    assert moved["dtmf_detected_total"] == 2, summary
    print(summary)


# --------------------------------------------------------------------------- in-band


def test_inband_digits_through_loss_and_jitter(stack: Stack) -> None:
    digits = "550120338"
    audio = [np.zeros(2400, dtype=np.int16)]
    for digit in digits:  # 100 ms tone, 100 ms pause: an auto-dialler's pace
        audio += [dtmf_tone(digit, 100), np.zeros(800, dtype=np.int16)]
    talker = Talker().audio(np.concatenate(audio)).silence(0.3)
    header = op_header("extension", "ext", timeout=5, digits=len(digits), inter_digit=3)
    caller, final, moved = keyed_call(stack, INBAND_LINK, header, talker)
    tones = {seq for seq, _ts, pcm in talker.frames if np.abs(pcm).max() > 1000}
    lost = tones & {seq for seq, _ts in caller.proxy.stats[TO_SERVER].dropped_rtp}
    summary = f"{report(caller, moved)}; {len(lost)} of {len(tones)} tone frames lost"
    assert final.status == 480 and final.headers.get("X-VO-Result") == f"digits={digits}", summary
    assert moved["dtmf_detected_total"] == len(digits), summary
    assert lost, f"the seed loses tone frames: the test means something ({summary})"
    print(summary)


# --------------------------------------------------------------------------- voicemail


def speech_like(seconds: float, seed: int) -> np.ndarray:
    """Band-limited noise (about 300-3000 Hz) with a syllable-rate envelope: never silent (the
    voicemail's silence detector stays out of it) and never periodic, so a frame that lands
    in the wrong place cannot match by accident."""
    rng = np.random.default_rng(seed)
    n = int(8000 * seconds)
    noise = rng.normal(0, 1, n + 64)
    taps = np.sinc(np.arange(-32, 33) * 3000 / 8000 * 2) * np.hamming(65)  # low-pass 3 kHz
    band = np.convolve(noise, taps, mode="same")[:n]
    band -= np.convolve(band, np.ones(27) / 27, mode="same")  # take off the lows
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 4 * np.arange(n) / 8000)
    signal = band / np.std(band) * 3000 * envelope
    return np.clip(signal, -32000, 32000).astype(np.int16)


@pytest.mark.parametrize("stall", [None, 0.15], ids=["steady", "caller-stalls-150ms"])
def test_voicemail_through_loss_and_jitter_is_complete_and_in_place(stack: Stack, stall: float | None) -> None:
    """With `stall`, the caller also stops for 150 ms in the middle of the message and then
    sends what it owes at once: later than the playout delay, so the server lets its delay
    grow (a rewind) rather than lose that audio."""
    call = vo_call()
    message = speech_like(4.0, seed=7)
    talker = Talker().silence(1.0)  # the server's prompt (0.5 s silence) and beep (0.4 s)
    first = len(talker.frames)
    talker.audio(message)
    sent = talker.frames[first:]
    before = counters(stack.server)
    with impaired_call(stack, VOICEMAIL_LINK) as caller:
        caller.invite(op_header("voicemail", "vm", max_seconds=60, number="+74951234567", caller="+79031112233"), call)
        assert caller.final is not None and caller.final.status == 200
        caller.peer.ack(caller.final)
        caller.talk(talker, stall=None if stall is None else (first + 100, stall))
        time.sleep(0.1)  # what the proxy still holds (40 ms at most) reaches the server
        assert caller.peer.bye().status == 200
        up = caller.proxy.stats[TO_SERVER]
    event = wait_event(stack.r, call)
    moved = delta(before, counters(stack.server))
    summary = report(caller, moved)
    # durably stored, with its event
    assert (event["type"], event["status"], event["reason"], event["partial"]) == ("voicemail", "stored", "hangup", "0")
    path = Path(event["path"])
    assert path.is_file() and path.is_relative_to(stack.server.data_dir / "recordings" / ACCOUNT)
    assert sha256_of(path) == event["sha256"] and path.with_name(path.name + ".json").is_file()
    assert not list((stack.server.data_dir / "recordings" / "incoming").glob("*.part"))
    recorded = read_wav(path)
    assert abs(float(event["duration"]) - len(recorded) / 8000) < 0.01

    # Where the message starts: where its first frame that got through is, exactly. Then
    # frame by frame, at the place its RTP timestamp gives it: the frame exactly (G.711
    # decoding is exact), or silence where it was lost. A later place is allowed only where
    # the server says it let its delay grow (a packet later than the playout delay: the test
    # machine's scheduling); an earlier one, never.
    lost_seqs = {seq for seq, _ts in up.dropped_rtp}
    first = next(i for i, (seq, _ts, _pcm) in enumerate(sent) if seq not in lost_seqs)
    windows = np.lib.stride_tricks.sliding_window_view(recorded, FRAME)
    found = np.flatnonzero((windows == sent[first][2]).all(axis=1))
    assert len(found) == 1, f"the first frame of the message is in the recording once ({found})"
    lag = int(found[0]) - (sent[first][1] - sent[0][1]) % (1 << 32)
    in_place, concealed, misplaced = 0, [], []
    shifts, segments = 0, [0]  # where the frames of each stretch at one lag start
    for index, (seq, ts, pcm) in enumerate(sent):
        offset = lag + (ts - sent[0][1]) % (1 << 32)
        got = recorded[offset : offset + FRAME]
        if np.array_equal(got, pcm):
            in_place += 1
            continue
        later = [k for k in range(1, 26) if np.array_equal(recorded[offset + k * FRAME : offset + (k + 1) * FRAME], pcm)]
        if later:  # (the frames are noise: one found exactly cannot be another)
            lag += later[0] * FRAME
            shifts += 1
            segments.append(index)
            in_place += 1
            continue
        if len(got) == FRAME and not got.any():
            concealed.append(seq)
            continue
        misplaced.append(seq)
    # Correlation, of each stretch at one lag (all the message when the delay never grew).
    # Silence in place of the lost frames leaves sqrt(energy received / energy sent) of the
    # normalised correlation (0.95 for 10 % of frames of equal energy); G.711 costs < 0.001.
    # Required: that, computed from the frames actually lost, less 0.01, and at least 0.85
    # (a quarter of the energy lost: far beyond these impairments).
    scores = []
    for begin, end in zip(segments, [*segments[1:], len(sent)], strict=True):
        if end - begin >= 25:
            score, _lag = best_match(message[begin * FRAME : end * FRAME], recorded)
            energy = [(float(np.sum(pcm.astype(np.float64) ** 2)), seq in concealed) for seq, _ts, pcm in sent[begin:end]]
            kept = sum(e for e, gone in energy if not gone) / sum(e for e, _gone in energy)
            scores.append((score, max(0.85, np.sqrt(kept) - 0.01)))
    figures = (f"{summary}; correlation {', '.join(f'{c:.3f} (>= {b:.3f})' for c, b in scores)}, "
               f"message at {lag / 8000:.3f} s, {in_place} frames in place, "
               f"{len(concealed)} concealed, {len(misplaced)} misplaced, {shifts} shifts, "
               f"recording {len(recorded) / 8000:.2f} s for {len(message) / 8000:.2f} s sent")
    assert not misplaced, figures
    assert shifts <= moved["rx_rewinds_total"], figures
    if stall is not None:
        assert moved["rx_rewinds_total"] >= 1 and shifts >= 1, figures
    lost_in_message = lost_seqs & {seq for seq, _ts, _pcm in sent}
    assert lost_in_message <= set(concealed), "a frame the proxy dropped cannot be in the recording"
    assert len(concealed) - len(lost_in_message) <= moved["rx_late_total"], "the others came too late, counted"
    assert moved["rx_concealed_total"] >= len(lost_in_message), figures
    # complete: from the start of the message to its end, and not much more
    assert lag + len(message) <= len(recorded) <= lag + len(message) + 8000, figures
    assert lag < 8000, figures
    assert scores and all(score >= bound for score, bound in scores), figures
    print(figures)
