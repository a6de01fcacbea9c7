"""The media server's operations, frame by frame (50 frames = 1 s), no sockets."""

from __future__ import annotations

import numpy as np
import pytest

from voffice_media.operations import FRAME, Extension, Fax, Menu, Result, Voicemail, build

PROMPT = np.full(FRAME * 50, 1000, dtype=np.int16)  # a 1 s prompt


def run(op: Menu | Extension | Voicemail, frames: int, rx: np.ndarray | None = None) -> int:
    """Feed frames until a result or `frames` ran out; how many were fed."""
    for n in range(1, frames + 1):
        op.frame(rx)
        if op.result is not None:
            return n
    return frames


def test_menu_key_with_a_child_ends_at_once_and_stops_the_prompt() -> None:
    menu = Menu(PROMPT, keys="12", timeout=5)
    run(menu, 10)
    menu.digit("2")
    assert menu.result == Result("key", "2")
    assert menu.result.header() == "key=2"
    assert menu.player.done


def test_menu_times_out_after_the_prompt_plus_timeout() -> None:
    menu = Menu(PROMPT, keys="12", timeout=5)
    assert run(menu, 1000) == 50 + 5 * 50
    assert menu.result == Result("timeout")


def test_repeat_and_invalid_keys_replay_up_to_max_repeats() -> None:
    menu = Menu(PROMPT, keys="12", repeat_key="0", max_repeats=2, timeout=5)
    run(menu, 60)
    menu.digit("0")
    assert menu.result is None and menu.player.position == 0  # replaying from the start
    menu.digit("7")
    assert menu.result is None and menu.repeats == 2
    menu.digit("0")
    assert menu.result == Result("invalid")


def test_announcement_ends_with_done_and_ignores_other_keys() -> None:
    greeting = Menu(PROMPT, keys="", timeout=2)
    run(greeting, 10)
    greeting.digit("5")
    assert greeting.result is None
    assert run(greeting, 1000) == 40 + 2 * 50
    assert greeting.result == Result("done")


def test_extension_collects_digits_with_barge_in() -> None:
    ext = Extension(PROMPT, digits=3, timeout=5, inter_digit=3)
    run(ext, 5)
    for d in "10":
        ext.digit(d)
    assert ext.player.done and ext.result is None
    ext.digit("2")
    assert ext.result == Result("digits", "102")


def test_extension_inter_digit_timeout_returns_what_was_dialled() -> None:
    ext = Extension(PROMPT, digits=3, timeout=5, inter_digit=3)
    ext.digit("9")
    assert run(ext, 1000) == 3 * 50
    assert ext.result == Result("digits", "9")


def test_extension_no_input_is_a_timeout() -> None:
    ext = Extension(PROMPT, digits=3, timeout=5)
    run(ext, 1000)
    assert ext.result == Result("timeout")


def test_voicemail_records_after_the_prompt_until_silence_or_hangup() -> None:
    speech = np.full(FRAME, 3000, dtype=np.int16)
    vm = Voicemail(PROMPT, max_seconds=60, silence_seconds=2)
    run(vm, 50, speech)  # the prompt: not recorded
    assert vm.recorded == []
    run(vm, 100, speech)
    assert vm.result is None and len(vm.recorded) == 100
    assert run(vm, 1000, None) == 2 * 50  # two seconds of nothing
    assert vm.result == Result("recorded", "silence")
    assert len(vm.audio()) == (100 + 100) * FRAME


def test_voicemail_max_length_and_hangup() -> None:
    speech = np.full(FRAME, 3000, dtype=np.int16)
    vm = Voicemail(PROMPT, max_seconds=5, silence_seconds=10)
    run(vm, 2000, speech)
    assert vm.result == Result("recorded", "max-length") and len(vm.recorded) == 5 * 50
    vm2 = Voicemail(PROMPT)
    run(vm2, 70, speech)
    vm2.hangup()
    assert vm2.result == Result("recorded", "hangup") and len(vm2.recorded) == 20


@pytest.mark.parametrize(
    ("fields", "kind"),
    [
        ({"type": "menu", "keys": "12", "timeout": "5"}, Menu),
        ({"type": "announcement", "timeout": "5"}, Menu),
        ({"type": "extension", "digits": "3", "timeout": "5", "inter_digit": "3"}, Extension),
        ({"type": "voicemail", "max_seconds": "60"}, Voicemail),
        ({"type": "fax"}, Fax),
    ],
)
def test_build_from_a_descriptor(fields: dict[str, str], kind: type) -> None:
    op = build(fields, PROMPT, np.zeros(FRAME, dtype=np.int16))
    assert isinstance(op, kind)
    if fields["type"] == "announcement":
        assert op.keys == ""  # type: ignore[attr-defined]
