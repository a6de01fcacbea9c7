"""routing/core/bulk.py: the collector paused (and what a long pause made frozen), and the
process pool's map in order."""

from __future__ import annotations

import gc

import pytest

from routing.core import bulk


def square(x: int) -> int:
    return x * x


def test_paused_gc_restores_the_collector_and_nests() -> None:
    assert gc.isenabled()
    with bulk.paused_gc():
        assert not gc.isenabled()
        with bulk.paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner pause restores the outer one's state
    assert gc.isenabled()
    gc.disable()
    try:
        with bulk.paused_gc():
            pass
        assert not gc.isenabled()  # disabled before: stays so
    finally:
        gc.enable()


def test_a_long_pause_freezes_what_it_made(monkeypatch: pytest.MonkeyPatch) -> None:
    frozen = gc.get_freeze_count()
    with bulk.paused_gc():
        kept = [[i] for i in range(10_000)]
    assert gc.get_freeze_count() == frozen  # fewer than FREEZE_FROM: nothing frozen
    monkeypatch.setattr(bulk, "FREEZE_FROM", 5_000)
    try:
        with bulk.paused_gc():
            kept += [[i] for i in range(10_000)]
        assert gc.get_freeze_count() >= frozen + 10_000
    finally:
        gc.unfreeze()
    assert len(kept) == 20_000


def test_parallel_map_keeps_the_order(monkeypatch: pytest.MonkeyPatch) -> None:
    items = list(range(1000))
    assert bulk.parallel_map(square, items, 2) == bulk.parallel_map(square, items, 1) == [i * i for i in items]
    monkeypatch.setattr(bulk.os, "cpu_count", lambda: 2)
    assert bulk.workers_for(199, 200) == 1 and bulk.workers_for(200, 200) == 2


def collector_state(_: int) -> tuple[bool, int]:
    return gc.isenabled(), gc.get_freeze_count()


def test_workers_collect_what_they_make_and_freeze_what_they_inherit() -> None:
    with bulk.paused_gc():
        states = bulk.parallel_map(collector_state, list(range(4)), 2)
    assert all(enabled and frozen > 0 for enabled, frozen in states)
