"""What the media server does during a call, one operation per class, sans-IO.

Rule 1: the behaviour of menu, announcement, extension, voicemail and fax lives here. Each
operation is driven by the server's 20 ms ticker: `frame(rx)` gets the caller's decoded audio
of one frame (or None when nothing arrived) and returns the frame to send; `digit(d)` gets a
DTMF key (RFC 4733 or in-band, already de-duplicated). Time is counted in frames, so the
logic is exact and testable without a clock. When `result` is set the operation is over:
early-media operations end with an `X-VO-Result` for the final reply; recording operations
end with what to store.

Behaviour (DESIGN.md section 2 and the media server issue):
- menu: play the prompt; a key stops it (barge-in). A key with a child -> `key=N`. The
  repeat key replays; an invalid key replays too; more than `max_repeats` replays ->
  `invalid`. No key within `timeout` seconds after the prompt -> `timeout`.
- announcement (a menu without keys): play, wait `timeout`, -> `done`; the repeat key
  replays (bounded by max_repeats), other keys are ignored.
- extension: play the prompt (barge-in); collect `digits` digits; a pause longer than
  `inter_digit` seconds ends the input early (the digits so far are returned: an unknown
  extension is the scenario's business). Nothing within `timeout` after the prompt ->
  `timeout`.
- voicemail: prompt + beep, then record until the caller hangs up, `max_seconds`, or
  `silence_seconds` of silence.
- fax: optional prompt, then T.30 over the audio until the fax session ends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

FRAME = 160  # samples per 20 ms at 8 kHz
FRAMES_PER_SECOND = 50
SILENCE = np.zeros(FRAME, dtype=np.int16)

Pcm = NDArray[np.int16]


def seconds(frames: int) -> float:
    return frames / FRAMES_PER_SECOND


@dataclass
class Result:
    kind: str  # key / digits / timeout / invalid / done / recorded / fax
    value: str | None = None

    def header(self) -> str:
        """The X-VO-Result value for early-media results."""
        return f"{self.kind}={self.value}" if self.value is not None else self.kind


class Player:
    """Plays one prompt frame by frame; the tail of the last frame is padded with silence."""

    def __init__(self, pcm: Pcm):
        self.pcm = pcm
        self.position = 0

    @property
    def done(self) -> bool:
        return self.position >= len(self.pcm)

    def restart(self) -> None:
        self.position = 0

    def stop(self) -> None:
        self.position = len(self.pcm)

    def next_frame(self) -> Pcm:
        if self.done:
            return SILENCE
        chunk = self.pcm[self.position : self.position + FRAME]
        self.position += FRAME
        if len(chunk) < FRAME:
            chunk = np.concatenate([chunk, SILENCE[: FRAME - len(chunk)]])
        return chunk


@dataclass
class Operation:
    """Base: counts frames, plays a prompt, holds the result."""

    prompt: Pcm
    result: Result | None = None
    frames: int = 0
    answered: bool = False  # True: the server answers 200 and records; False: early media
    player: Player = field(init=False)
    prompting: bool = field(init=False, default=True)

    def __post_init__(self) -> None:
        self.player = Player(self.prompt)

    def frame(self, rx: Pcm | None) -> Pcm:
        self.frames += 1
        self.prompting = not self.player.done  # this frame still carries the prompt
        out = self.player.next_frame()
        if self.result is None:
            self.step(rx)
        return out

    def step(self, rx: Pcm | None) -> None:
        """Called once per frame after the prompt frame was taken."""

    def digit(self, key: str) -> None:
        """A DTMF key from the caller."""

    def hangup(self) -> None:
        """The caller hung up (BYE or CANCEL)."""


@dataclass
class Menu(Operation):
    keys: str = ""
    repeat_key: str = "0"
    max_repeats: int = 3
    timeout: int = 5
    repeats: int = 0
    waited: int = 0

    def step(self, rx: Pcm | None) -> None:
        if self.prompting:
            return
        self.waited += 1
        if self.waited >= self.timeout * FRAMES_PER_SECOND:
            self.result = Result("done") if not self.keys else Result("timeout")

    def digit(self, key: str) -> None:
        if self.result is not None:
            return
        if key in self.keys:
            self.player.stop()
            self.result = Result("key", key)
            return
        if not self.keys and key != self.repeat_key:
            return  # an announcement ignores other keys
        if self.repeats >= self.max_repeats:
            self.player.stop()
            self.result = Result("invalid") if self.keys else Result("done")
            return
        self.repeats += 1
        self.waited = 0
        self.player.restart()


@dataclass
class Extension(Operation):
    digits: int = 3
    timeout: int = 5
    inter_digit: int = 3
    collected: str = ""
    waited: int = 0
    since_digit: int = 0

    def step(self, rx: Pcm | None) -> None:
        if self.collected:
            self.since_digit += 1
            if self.since_digit >= self.inter_digit * FRAMES_PER_SECOND:
                self.result = Result("digits", self.collected)
            return
        if self.prompting:
            return
        self.waited += 1
        if self.waited >= self.timeout * FRAMES_PER_SECOND:
            self.result = Result("timeout")

    def digit(self, key: str) -> None:
        if self.result is not None or not key.isdigit():
            return
        self.player.stop()  # barge-in
        self.collected += key
        self.since_digit = 0
        if len(self.collected) >= self.digits:
            self.result = Result("digits", self.collected)


@dataclass
class Voicemail(Operation):
    max_seconds: int = 180
    silence_seconds: int = 10
    silence_level: int = 300  # mean absolute amplitude below which a frame is silent
    recorded: list[Pcm] = field(default_factory=list)  # kept only when there is no sink
    sink: Callable[[Pcm], object] | None = None  # streams frames to durable storage as they come
    recorded_frames: int = 0
    silent_frames: int = 0
    answered: bool = True

    def step(self, rx: Pcm | None) -> None:
        if self.prompting:
            return  # the prompt and the beep are not recorded
        frame = rx if rx is not None else SILENCE
        if self.sink is not None:
            self.sink(frame)
        else:
            self.recorded.append(frame)
        self.recorded_frames += 1
        quiet = rx is None or float(np.abs(frame.astype(np.int32)).mean()) < self.silence_level
        self.silent_frames = self.silent_frames + 1 if quiet else 0
        if self.recorded_frames >= self.max_seconds * FRAMES_PER_SECOND:
            self.result = Result("recorded", "max-length")
        elif self.silent_frames >= self.silence_seconds * FRAMES_PER_SECOND:
            self.result = Result("recorded", "silence")

    def hangup(self) -> None:
        if self.result is None:
            self.result = Result("recorded", "hangup")

    def audio(self) -> Pcm:
        if not self.recorded:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(self.recorded)


@dataclass
class Fax(Operation):
    """Receives a fax: the session object turns the caller's audio into our answer."""

    session: Any = None  # voffice_media.fax.FaxSession(calling=False, rx_file=...)
    max_seconds: int = 600
    answered: bool = True

    def frame(self, rx: Pcm | None) -> Pcm:
        self.frames += 1
        if not self.player.done:
            return self.player.next_frame()
        if self.result is not None or self.session is None:
            return SILENCE
        out: Pcm = self.session.process(rx if rx is not None else SILENCE)
        if self.session.done:
            self.result = Result("fax", "done")
        elif self.frames >= self.max_seconds * FRAMES_PER_SECOND:
            self.result = Result("fax", "max-length")
        return out

    def hangup(self) -> None:
        if self.result is None:
            self.result = Result("fax", "hangup")


def build(op: dict[str, str], prompt: Pcm, beep: Pcm | None = None) -> Operation:
    """An operation from a decoded X-VO-Op descriptor and its prompt audio."""
    kind = op["type"]
    timeout = int(op.get("timeout", 5))
    if kind in ("menu", "announcement"):
        return Menu(prompt, keys=op.get("keys", "") if kind == "menu" else "",
                    repeat_key=op.get("repeat", "0"), max_repeats=int(op.get("max_repeats", 3)), timeout=timeout)
    if kind == "extension":
        return Extension(prompt, digits=int(op.get("digits", 3)), timeout=timeout, inter_digit=int(op.get("inter_digit", 3)))
    if kind == "voicemail":
        audio = np.concatenate([prompt, beep]) if beep is not None else prompt
        return Voicemail(audio, max_seconds=int(op.get("max_seconds", 180)))
    if kind == "fax":
        return Fax(prompt, max_seconds=int(op.get("max_seconds", 600)))
    raise ValueError(f"unknown operation type {kind!r}")
