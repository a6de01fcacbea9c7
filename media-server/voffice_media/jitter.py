"""The receive side of one RTP audio stream: a jitter buffer that places audio by RTP timestamp.

Sans-IO: the server pushes each received packet's decoded audio with its SSRC and timestamp,
and pops one frame per 20 ms tick.

Theory of operation. Audio is kept sample by sample at the place its RTP timestamp gives it,
relative to the playout point P (the timestamp of the next sample to play). So
- a reordered packet lands where it belongs, a duplicate lands on itself (counted, ignored);
- a lost packet leaves a hole that is played as silence when P reaches it ("concealed",
  counted per frame) and later audio keeps its place: the recording of a voicemail has the
  caller's timeline, with silence where packets were lost;
- a packet that arrives after P has passed its place is too late: dropped and counted (its
  frame was already concealed).
Playout starts once `delay` samples (the playout delay, 60 ms in the server) are buffered
beyond P (or once that much time has passed with less: a stream that stops short), so packets
up to `delay` later than the first one still arrive in time.

Underrun: P reaches the end of what has arrived. P moves on (one frame per tick, `None`
played): the missing audio may be lost, or the caller may be silent (no packets in a pause);
either way later packets keep their place. If a packet for the stretch skipped that way then
arrives, it was late, not lost: the sender (or the network) runs later than the playout delay
allows. P goes back to it (a "rewind": the audio plays, later by the time skipped) and
playout waits for `delay` samples again: the delay grows by what it lacked. This is the only
place where the timeline shifts, and it shifts later, never earlier.

Jumps. A packet that lies `capacity` or more beyond what is buffered, or more than
`late_limit` before P, or with another SSRC, starts a new timeline ("resync", counted): it is placed right after
what is buffered, as if the stream went on there (sipp replaying a capture, a new source
behind a relay). More than `capacity` buffered (a burst after a stall) drops the oldest
samples ("overflow", counted).

Public API:

    JitterBuffer(delay=480, capacity=3200, frame=160, late_limit=8000, counters=None)
        .push(ssrc, timestamp, pcm)            decoded audio of one packet, any length
        .pop() -> Heard                        the next frame: Heard(audio, lost)
        .drain() -> list[Pcm]                  what is left, in order (the caller hung up)
        .counters                              Counter: rx_concealed (frames), rx_late,
                                               rx_duplicate, rx_underruns, rx_rewinds,
                                               rx_resyncs, rx_overflow (packets/episodes)

`Heard(audio, lost)`: audio of the frame (holes are zeros) and lost=False; or zeros and
lost=True for a frame of which nothing arrived while later audio did (a lost packet); or
None and lost=False when there is nothing to play (before the stream, during an underrun,
while the buffer fills).
"""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

__all__ = ["Heard", "JitterBuffer"]

Pcm = NDArray[np.int16]


class Heard(NamedTuple):
    audio: Pcm | None
    lost: bool


NOTHING = Heard(None, False)


def _signed32(value: int) -> int:
    """A difference of two RTP timestamps (modulo 2**32) as a signed number."""
    return (value + 0x8000_0000) % 0x1_0000_0000 - 0x8000_0000


class JitterBuffer:
    def __init__(
        self,
        delay: int = 480,
        capacity: int = 3200,
        frame: int = 160,
        late_limit: int = 8000,
        counters: Counter[str] | None = None,
    ) -> None:
        if not frame <= delay < capacity:
            raise ValueError("need frame <= delay < capacity")
        self.delay = delay
        self.capacity = capacity
        self.frame = frame
        self.late_limit = late_limit
        self.counters: Counter[str] = counters if counters is not None else Counter()
        # Samples at positions [P, P + capacity) live in _pcm/_have[_head : _head + capacity].
        # _have is a bytearray (1: the sample arrived): its find() answers "all there?" and
        # "any there?" without numpy's per-call cost (a few microseconds per frame and call
        # add up over hundreds of calls); _mask is the same memory as a numpy array.
        self._pcm = np.zeros(2 * capacity, dtype=np.int16)
        self._have = bytearray(2 * capacity)
        self._mask = np.frombuffer(self._have, dtype=np.bool_)
        self._ones = memoryview(b"\x01" * capacity)
        self._zeros = memoryview(bytes(2 * capacity))
        self._head = 0
        # Positions are samples on one unbounded line; RTP timestamps map onto it through the
        # last packet placed (wrap-safe as long as packets are less than 2**31 apart).
        self._ssrc: int | None = None
        self._ref_ts = 0
        self._ref_pos = 0
        self._p = 0  # the playout point
        self._floor: int | None = None  # below this everything was played (None: nothing yet)
        self._end = 0  # one past the newest sample buffered (a position); <= P: nothing buffered
        self._playing = False
        self._waited = 0  # ticks spent filling up with less than `delay` buffered
        self._underrun = False

    # --- in -------------------------------------------------------------------------------

    def push(self, ssrc: int, timestamp: int, pcm: Pcm) -> None:
        n = len(pcm)
        if n == 0:
            return
        if ssrc == self._ssrc:  # the usual packet: in place, within the capacity
            pos = self._ref_pos + ((timestamp - self._ref_ts + 0x8000_0000) & 0xFFFF_FFFF) - 0x8000_0000
            if self._p <= pos and pos + n <= self._p + self.capacity:
                self._ref_ts, self._ref_pos = timestamp, pos
                self._place(pos, pcm, n)
                return
        if n > self.capacity:
            pcm, timestamp, n = pcm[-self.capacity :], (timestamp + n - self.capacity) & 0xFFFF_FFFF, self.capacity
        if self._ssrc is None:
            self._ssrc, self._ref_ts, self._ref_pos = ssrc, timestamp, self._p
        elif ssrc != self._ssrc:
            self._resync(ssrc, timestamp)
        pos = self._ref_pos + _signed32(timestamp - self._ref_ts)
        newest = max(self._end, self._p)
        if pos - newest >= self.capacity or pos + n <= self._p - self.late_limit:
            self._resync(ssrc, timestamp)
            pos = self._ref_pos
        self._ref_ts, self._ref_pos = timestamp, pos
        if pos < self._p:
            if self._floor is None:  # nothing played yet: the buffer grows backwards
                start = pos
            elif not self._playing or self._end <= self._p:
                # waiting after a rewind, or in an underrun: the stretch skipped is still open
                start = max(pos, self._floor)
            else:  # its place was played (concealed) already
                start = self._p
            if pos + n <= start:
                self.counters["rx_late"] += 1
                return
            if start > pos:
                self.counters["rx_late"] += 1  # partly: the rest is placed
            if start < self._p:
                if self._playing:  # late, not lost: the delay grows by what it lacked
                    self.counters["rx_rewinds"] += 1
                    self._playing = False
                    self._waited = 0
                self._move_back(start)
            pcm, n, pos = pcm[start - pos :], n - (start - pos), start
        if pos + n > self._p + self.capacity:  # a burst: drop the oldest to make room
            self.counters["rx_overflow"] += 1
            self._advance(pos + n - self._p - self.capacity)
            if self._floor is not None:
                self._floor = self._p
        self._place(pos, pcm, n)

    def _place(self, pos: int, pcm: Pcm, n: int) -> None:
        """Samples at `pos` (within the buffer), unless every one of them is there already."""
        i = self._head + pos - self._p
        if self._have.find(0, i, i + n) < 0:
            self.counters["rx_duplicate"] += 1
            return
        self._pcm[i : i + n] = pcm
        self._have[i : i + n] = self._ones[:n]
        if pos + n > self._end:
            self._end = pos + n
        self._underrun = False

    def _resync(self, ssrc: int, timestamp: int) -> None:
        """A new timeline: `timestamp` goes right after what is buffered."""
        self.counters["rx_resyncs"] += 1
        self._ssrc = ssrc
        self._ref_ts = timestamp
        self._ref_pos = max(self._end, self._p)

    def _move_back(self, pos: int) -> None:
        """Move P back to `pos` (< P), keeping what is buffered (up to the capacity)."""
        shift = self._p - pos
        keep = max(0, self.capacity - shift)
        live = slice(self._head, self._head + keep)
        pcm, have = self._pcm[live].copy(), bytes(self._have[live])
        self._pcm[:] = 0
        self._have[:] = self._zeros
        self._pcm[shift : shift + keep] = pcm
        self._have[shift : shift + keep] = have
        self._head = 0
        self._p = pos
        self._end = min(self._end, pos + self.capacity)

    def _advance(self, samples: int) -> None:
        """Move P forward over `samples` (played or discarded)."""
        self._have[self._head : self._head + samples] = self._zeros[:samples]
        self._head += samples
        self._p += samples
        if self._head >= self.capacity:  # keep [head, head + capacity) inside the arrays
            rest = len(self._pcm) - self._head  # nothing was ever written beyond the arrays
            self._pcm[:rest] = self._pcm[self._head :]
            self._have[:rest] = self._have[self._head :]
            self._have[rest:] = self._zeros[: len(self._have) - rest]
            self._head = 0

    # --- out ------------------------------------------------------------------------------

    def pop(self) -> Heard:
        """The frame to play at this tick."""
        if self._playing and self._end > self._p:  # the usual tick
            heard = self._take()
            self._floor = self._p
            return heard
        if self._ssrc is None:
            return NOTHING
        if not self._playing:
            # wait for `delay` samples, or for the time they take when less comes
            if self._end - self._p < self.delay and (self._end <= self._p or self._waited * self.frame < self.delay):
                if self._end > self._p:
                    self._waited += 1
                return NOTHING
            self._playing = True
        if self._end <= self._p:  # underrun: move on, a later packet may still fill what we skip
            if not self._underrun:
                self._underrun = True
                self.counters["rx_underruns"] += 1
            self._advance(self.frame)  # the floor stays: the stretch skipped may still come
            return NOTHING
        heard = self._take()
        self._floor = self._p
        return heard

    def _take(self) -> Heard:
        i, n = self._head, self.frame
        if self._have.find(0, i, i + n) < 0:
            audio, lost = self._pcm[i : i + n].copy(), False
        else:
            audio = np.where(self._mask[i : i + n], self._pcm[i : i + n], 0).astype(np.int16)
            lost = self._have.find(1, i, i + n) < 0
            self.counters["rx_concealed"] += 1
        self._advance(n)
        return Heard(audio, lost)

    def drain(self) -> list[Pcm]:
        """Every frame still buffered, in order, holes as silence (the caller hung up)."""
        frames: list[Pcm] = []
        while self._ssrc is not None and self._end > self._p:
            audio = self._take().audio
            assert audio is not None
            frames.append(audio)
        self._floor = self._p
        return frames
