"""`voffice bench sip` machinery, once, briefly: both configurations (the real stack and the
native baseline cfg) carry a low rate of full calls with no failure. Figures are not judged
here (no wall-clock thresholds); `voffice bench sip` is the benchmark."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from routing.bench_sip import run_sip_bench

pytestmark = [
    pytest.mark.callpath,
    pytest.mark.skipif(not (shutil.which("kamailio") and shutil.which("rtpengine") and shutil.which("sipp")
                            and shutil.which("redis-server")),
                       reason="kamailio, rtpengine, sipp and redis-server are installed by `make install`"),
]


def test_both_configurations_carry_a_low_rate_without_failures(tmp_path: Path) -> None:
    lines: list[str] = []
    result = run_sip_bench(10, 10, 2, 10, lines.append, workdir=tmp_path)

    assert result["rates"] == [10]
    for name in ("baseline", "voffice"):
        run = result[name]
        assert run["error"] == "", run["error"]
        [step] = run["steps"]
        assert step["cps"] == 10 and step["calls"] == 20
        assert (step["attempted"], step["successful"], step["failed"], step["gateway_failed"], step["lost"]) == (20, 20, 0, 0, 0)
        assert "failed" not in step["note"] and "not completed" not in step["note"]
        assert step["achieved_cps"] > 0
        assert step["p50_ms"] is not None and step["p99_ms"] is not None and step["p50_ms"] <= step["p99_ms"]
        assert step["kamailio_cpu_ms"] is not None and step["kamailio_cpu_ms"] >= 0
        assert step["rtpengine_cpu_ms"] is not None and step["rtpengine_cpu_ms"] >= 0
        assert run["max_cps"] in (0, 10)  # 10 unless the callers fell behind the rate (a busy machine)
    assert {"common_cps", "rate_ratio", "rate_ok", "cpu_ratio", "cpu_ok", "baseline_saturated"} <= result.keys()
    assert isinstance(result["cpu_ok"], bool) and isinstance(result["rate_ok"], bool)
    assert any(line.startswith("highest zero-failure rate:") for line in lines)
    assert any(line.startswith("Kamailio CPU per call at 10/s:") for line in lines)
