"""A small `voffice bench scale`: many accounts, every number called once through the real
stack, with a per-worker config cache much smaller than the number of accounts (so the
workers evict and fetch again), each call's route checked against the engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from voffice_bench.scale import run_scale

pytestmark = pytest.mark.callpath


def test_every_number_routes_to_its_own_account_with_a_small_cache(tmp_path: Path) -> None:
    lines: list[str] = []
    result = run_scale(150, 40, 20, lines.append, workdir=tmp_path, children=2)
    assert result.numbers == 300 and result.calls == 300
    assert result.answered == 300 and result.failed == 0, lines
    assert result.checked == 300 and result.wrong == [], result.wrong[:5]
    assert result.rss_kib and all(len(values) == 5 and values[-1] > 0 for values in result.rss_kib.values())
    assert lines[-1] == "scale run: OK"
