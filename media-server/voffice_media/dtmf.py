"""DTMF: RFC 4733 telephone events and in-band tone detection, one digit per key press.

Public API:

    TelephoneEvent(event, end=False, volume=10, duration=0)
        .parse(payload: bytes) -> TelephoneEvent (raises ValueError) / .serialize() / .digit
    Rfc4733Detector(payload_type=None).feed(packet: RtpPacket) -> str | None
    ToneDetector(rate=8000, *, min_level_dbm0=-33, normal_twist_db=8, reverse_twist_db=4,
                 peak_ratio_db=6, dominance=0.8, min_windows=2, gap_windows=4)
        .feed(samples: NDArray[int16]) -> list[str]
        .gap(samples=160)                       audio lost here (see "Lost audio" below)
    dtmf_tone(digit, ms, rate=8000, *, amplitude=7000, twist_db=0.0) -> NDArray[int16]
    DIGITS = "0123456789*#ABCD"

RFC 4733: every packet of one event carries the event's RTP timestamp; the detector emits
the digit on the first packet of a new timestamp it sees (so a lost start packet costs
nothing), and ignores the event's later, end and retransmitted end packets, and late packets
of older events. An event too long for the 16-bit duration field goes on in a new segment
with a new timestamp (RFC 4733): same event, previous segment not ended and near 0xFFFF
long; that is not a new key press.

Senders that reuse timestamps. Load testers replay one capture per digit (sipp's
`play_pcap_audio` with /usr/share/sip-tester/dtmf_2833_*.pcap sends the capture's RTP headers
unchanged: same timestamp, same sequence numbers on every play), so "101" brings the
timestamp of "1" twice and "201" brings a timestamp older than the one before it. The
detector remembers the last 16 events (timestamp -> event, ended, final duration, highest
sequence number) and reports a new press on a known timestamp when
- that event has ended (end bit seen), and
- the packet has no end bit and a duration below the event's final duration (it starts
  over), and
- its sequence number is later than the event's highest one, or it carries the marker bit
  (RFC 4733 2.5.1.3: set on the first packet of an event; sipp's replays reuse the
  sequence numbers, so only the marker tells them from a reordered packet).
Retransmitted end packets (end bit), reordered packets of the event (earlier sequence number,
no marker) and duplicates stay one press. A timestamp never seen that is older than the
current event's is a late packet and ignored, unless it carries the marker bit: then it is
the start of an event (a replayed capture) and reported. What no packet field can tell
apart: a start packet the network duplicated and delayed past the end of its event would be
reported again; that takes duplication plus more than an event's length of delay.

In-band: 20 ms analysis windows every 10 ms. For each window the power at the eight DTMF
frequencies is the squared magnitude of the signal's DFT at exactly those frequencies: the
Goertzel output, computed for all windows and tones at once as one matrix product with a
cosine/sine basis (about 10 microseconds per 20 ms frame here, all checks included).
A window shows a digit when
- the strongest row and column tones each reach `min_level_dbm0`;
- each is `peak_ratio_db` above the other tones of its group;
- twist: the row tone at most `normal_twist_db` above the column tone, the column tone at
  most `reverse_twist_db` above the row tone;
- the two tones carry at least `dominance` of the window's power (speech and music spread
  theirs over many frequencies, so they fail here).
A digit is emitted once it is seen in `min_windows` consecutive windows (2: 30 ms of tone,
so every press of 40 ms or more is caught whatever its alignment to the frames), and not
again until `gap_windows` windows without it have passed (a new press of the same key).

Lost audio. The server plays received audio out of its jitter buffer in RTP timestamp order;
a frame whose packet was lost (or late, or not sent: nothing to play) is reported with
`gap()`, not fed as silence: 20 ms of zeros in a long press would count as three windows of
pause, two lost frames as five (a second press). Across a gap the partial window is dropped
and the state (the candidate's count, the key held) carries over. So a press is detected
once two of its windows arrive, in one piece or not (a 100 ms press of five frames: any two
of them, whichever are lost), a press is never split by lost frames, and two presses of one
key need `gap_windows` windows of received pause between them (40 ms), or 200 ms without
any audio (a sender that sends no packets in a pause, silence suppression).
"""

from __future__ import annotations

import collections
import struct
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .rtp import RtpPacket

__all__ = ["DIGITS", "INFO_TYPES", "DtmfInfoError", "Rfc4733Detector", "TelephoneEvent", "ToneDetector", "dtmf_tone", "info_digit"]

DIGITS = "0123456789*#ABCD"
ROWS = (697.0, 770.0, 852.0, 941.0)
COLUMNS = (1209.0, 1336.0, 1477.0, 1633.0)
KEYPAD = ("123A", "456B", "789C", "*0#D")
FULL_SCALE_DBM0 = 3.17  # a full-scale sine in G.711 is +3.17 dBm0
LONG_EVENT = 0xFF00  # a segment this long was cut by the 16-bit duration field
_NOTHING: NDArray[np.float64] = np.zeros(0)


# ------------------------------------------------------------------------ RFC 4733


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    event: int  # 0-9, 10 "*", 11 "#", 12-15 A-D, 16 flash...
    end: bool = False
    volume: int = 10  # -dBm0, 0-63
    duration: int = 0  # timestamp units

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        if len(payload) < 4:
            raise ValueError("telephone-event payload shorter than 4 bytes")
        event, flags, duration = struct.unpack_from("!BBH", payload)
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)

    def serialize(self) -> bytes:
        if not 0 <= self.event < 256 or not 0 <= self.volume < 64 or not 0 <= self.duration <= 0xFFFF:
            raise ValueError("telephone-event field out of range")
        return struct.pack("!BBH", self.event, (0x80 if self.end else 0) | self.volume, self.duration)

    @property
    def digit(self) -> str | None:
        return DIGITS[self.event] if self.event < len(DIGITS) else None


@dataclass(slots=True)
class _Event:
    """What the detector remembers of one event (one timestamp)."""

    event: int
    ended: bool
    duration: int  # the longest duration seen: the final one once ended
    sequence: int  # the latest sequence number seen


def _later(a: int, b: int, bits: int) -> bool:
    """`a` comes after `b` in serial-number arithmetic modulo 2**bits (RFC 1982)."""
    modulus = 1 << bits
    return 0 < (a - b) % modulus < modulus >> 1


class Rfc4733Detector:
    """Digits from the telephone-event packets of one stream, each key press once."""

    MEMORY = 16  # events remembered for de-duplication

    def __init__(self, payload_type: int | None = None) -> None:
        self.payload_type = payload_type
        self._events: collections.OrderedDict[int, _Event] = collections.OrderedDict()
        self._timestamp: int | None = None  # the current (last started) event

    def feed(self, packet: RtpPacket) -> str | None:
        if self.payload_type is not None and packet.payload_type != self.payload_type:
            return None
        try:
            event = TelephoneEvent.parse(packet.payload)
        except ValueError:
            return None
        timestamp = packet.timestamp
        known = self._events.get(timestamp)
        if known is not None:
            restart = (
                known.ended
                and not event.end
                and event.duration < known.duration
                and (packet.marker or _later(packet.sequence, known.sequence, 16))
            )
            if not restart:  # a later, end, retransmitted or reordered packet of the event
                known.ended = known.ended or event.end
                known.duration = max(known.duration, event.duration)
                if _later(packet.sequence, known.sequence, 16):
                    known.sequence = packet.sequence
                return None
            self._start(timestamp, event, packet.sequence)  # the same timestamp, a new press
            return event.digit
        if self._timestamp is not None and not packet.marker and _later(self._timestamp, timestamp, 32):
            return None  # a late packet of an event older than the current one
        current = self._events.get(self._timestamp) if self._timestamp is not None else None
        continuation = (
            current is not None
            and event.event == current.event
            and not current.ended
            and current.duration >= LONG_EVENT
        )
        self._start(timestamp, event, packet.sequence)
        return None if continuation else event.digit

    def _start(self, timestamp: int, event: TelephoneEvent, sequence: int) -> None:
        self._events[timestamp] = _Event(event.event, event.end, event.duration, sequence)
        self._events.move_to_end(timestamp)
        while len(self._events) > self.MEMORY:
            self._events.popitem(last=False)
        self._timestamp = timestamp


# ------------------------------------------------------------------------- in-band


class ToneDetector:
    """DTMF digits in 8 kHz int16 audio, fed in frames of any length."""

    quiet_gate = True  # skip the analysis of audio too quiet to hold a digit (exact; tests turn it off)

    def __init__(
        self,
        rate: int = 8000,
        *,
        min_level_dbm0: float = -33.0,
        normal_twist_db: float = 8.0,
        reverse_twist_db: float = 4.0,
        peak_ratio_db: float = 6.0,
        dominance: float = 0.8,
        min_windows: int = 2,
        gap_windows: int = 4,
    ) -> None:
        self.window = rate // 50
        self.hop = rate // 100
        n = np.arange(self.window)
        angles = 2 * np.pi * np.outer(n, np.array(ROWS + COLUMNS)) / rate
        basis = np.hstack([np.cos(angles), np.sin(angles)])  # (window, 16): cos then sin
        self._basis = np.hstack([basis[: self.hop], basis[self.hop :]])  # (hop, 32): head, tail
        self._scale = 2.0 / self.window**2  # |X|^2 -> mean power of a sine, A^2 / 2
        amplitude = 32767 * 10 ** ((min_level_dbm0 - FULL_SCALE_DBM0) / 20)
        self._min_power = amplitude**2 / 2
        self._normal_twist = 10 ** (normal_twist_db / 10)
        self._reverse_twist = 10 ** (reverse_twist_db / 10)
        self._peak_ratio = 10 ** (peak_ratio_db / 10)
        self._dominance = dominance
        self.min_windows = min_windows
        self.gap_windows = gap_windows
        self._pending: NDArray[np.float64] = np.zeros(0)
        self._candidate: str | None = None
        self._count = 0
        self._held: str | None = None  # the digit emitted last, while its key is down
        self._absent = 0
        self._missing = 0  # samples reported by gap() since audio last came
        self._release = rate // 5

    def feed(self, samples: NDArray[np.int16]) -> list[str]:
        """Analyse `samples`; return the digits whose key press was recognised in them."""
        self._missing = 0
        buffer = np.concatenate((self._pending, np.asarray(samples, dtype=np.float64)))
        blocks = len(buffer) // self.hop
        if blocks < 2:
            self._pending = buffer
            return []
        # A window is two consecutive hop-long blocks: one matrix product projects every
        # block on both halves of the basis, neighbours add up to the windows' projections.
        used = buffer[: blocks * self.hop].reshape(blocks, self.hop)
        self._pending = buffer[(blocks - 1) * self.hop :]
        # Quiet gate, exact: a tone's power as computed below is at most twice its window's
        # mean power (Cauchy-Schwarz: |X|^2 <= N * sum x^2), and a window's energy is at most
        # the whole buffer's. When even the buffer's energy, taken as one window's, stays below
        # half the minimum tone power, no window can show a digit: skip the projections (a
        # caller who listens in silence or background noise costs a fraction of the analysis).
        flat = buffer[: blocks * self.hop]
        if self.quiet_gate and float(flat @ flat) * (2.0 / self.window) < self._min_power * 0.99:
            for _ in range(blocks - 1):
                self._step(None)
            return []
        halves = used @ self._basis
        projections = halves[:-1, :16] + halves[1:, 16:]
        squares = projections * projections
        powers = (squares[:, :8] + squares[:, 8:]) * self._scale
        digits: list[str] = []
        for i, tone_powers in enumerate(powers.tolist()):
            emitted = self._step(self._classify(tone_powers, buffer[i * self.hop : i * self.hop + self.window]))
            if emitted is not None:
                digits.append(emitted)
        return digits

    def gap(self, samples: int = 160) -> None:
        """`samples` of audio that did not arrive (a lost packet): no window spans them, and
        they count neither as tone nor as pause, so a press goes on across them and a press
        seen before and after adds up its windows; after 200 ms without audio the key is up."""
        self._pending = _NOTHING
        self._missing += samples
        if self._missing >= self._release:
            self._candidate, self._count, self._held = None, 0, None

    def _classify(self, powers: list[float], window: NDArray[np.float64]) -> str | None:
        """The digit one window shows, if any (see the module docstring)."""
        rows, columns = powers[:4], powers[4:]
        row_power, column_power = max(rows), max(columns)
        if (
            row_power < self._min_power
            or column_power < self._min_power
            or row_power > self._normal_twist * column_power
            or column_power > self._reverse_twist * row_power
            or row_power < self._peak_ratio * sorted(rows)[2]
            or column_power < self._peak_ratio * sorted(columns)[2]
            or row_power + column_power < self._dominance * float(window @ window) / self.window
        ):
            return None
        return KEYPAD[rows.index(row_power)][columns.index(column_power)]

    def _step(self, digit: str | None) -> str | None:
        if digit is not None and digit == self._candidate:
            self._count += 1
        else:
            self._candidate, self._count = digit, (0 if digit is None else 1)
        if digit != self._held:
            self._absent += 1
            if self._absent >= self.gap_windows:
                self._held = None
        else:
            self._absent = 0
        if digit is not None and self._count >= self.min_windows and digit != self._held:
            self._held, self._absent = digit, 0
            return digit
        return None


def dtmf_tone(
    digit: str, ms: int, rate: int = 8000, *, amplitude: int = 7000, twist_db: float = 0.0
) -> NDArray[np.int16]:
    """`ms` milliseconds of the DTMF `digit`: row tone at `amplitude`, column tone
    `twist_db` louder (negative: quieter)."""
    if len(digit) != 1 or digit not in DIGITS:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    r = next(i for i, keys in enumerate(KEYPAD) if digit in keys)
    c = KEYPAD[r].index(digit)
    t = np.arange(rate * ms // 1000) / rate
    high = amplitude * 10 ** (twist_db / 20)
    signal = amplitude * np.sin(2 * np.pi * ROWS[r] * t) + high * np.sin(2 * np.pi * COLUMNS[c] * t)
    return np.clip(np.round(signal), -32768, 32767).astype(np.int16)


# ------------------------------------------------------------------------ SIP INFO

# The two bodies trunks send keys in (no RFC defines them; these are what is deployed):
#   application/dtmf-relay   "Signal=5\r\nDuration=160\r\n" (Cisco's; key=value lines)
#   application/dtmf         "5"
# Some senders write the RFC 4733 event codes 10 and 11 for * and #.
INFO_TYPES = ("application/dtmf-relay", "application/dtmf")
_EVENT_CODES = {"10": "*", "11": "#", "12": "A", "13": "B", "14": "C", "15": "D"}


class DtmfInfoError(ValueError):
    """An INFO body of a DTMF type that names no key."""


def _key(text: str) -> str:
    text = text.strip().upper()
    if len(text) == 1 and text in DIGITS:
        return text
    if text in _EVENT_CODES:
        return _EVENT_CODES[text]
    raise DtmfInfoError(f"not a DTMF key: {text[:20]!r}")


def info_digit(content_type: str, body: bytes) -> str:
    """The key an INFO body of one of `INFO_TYPES` carries (`content_type` without parameters,
    lower case). Raises DtmfInfoError for a body that carries none."""
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise DtmfInfoError("a DTMF body is ASCII text") from None
    if content_type == "application/dtmf":
        return _key(text)
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip().lower() == "signal":
            return _key(value)
    raise DtmfInfoError("no Signal= line")
