"""`voffice bench sip` and its load-tester kit (bench/sipp/, bench/voffice_bench/kit.py).

The pure parts (mixes, expected finals, numbers files, the callers' logs, the plot, the
scenario files themselves) are unit tests. Two short real runs: the default bench (both
configurations carry a low rate of full calls with no failure) and one mixed bench (the
voffice configuration alone, a busy operator gateway, callers who hang up during the prompt).
Figures are not judged (no wall-clock thresholds); `voffice bench sip` is the benchmark."""

from __future__ import annotations

import csv
import itertools
import re
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from PIL import Image

from routing.cli.console import main
from routing.stack.ports import free_udp_port
from voffice_bench.kit import (
    CALLERS,
    GATEWAYS,
    SIPP_DIR,
    Gateway,
    Mix,
    MixError,
    expected_finals,
    finals_count,
    format_finals,
    inf_scenario,
    number_pairs,
    parse_codes,
    parse_gateway,
    per_second,
    plot_run,
    rate,
    read_calls,
    read_numbers_csv,
    write_numbers_csv,
)
from voffice_bench.sip import Run, Step, mix_table, run_sip_bench, write_csvs

SIPP = shutil.which("sipp")
STACK = bool(shutil.which("kamailio") and shutil.which("rtpengine") and SIPP and shutil.which("redis-server"))
KIT = sorted(set(CALLERS.values()) | set(GATEWAYS.values()) - {"uas-answer.xml"})


# --- the scenario files ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(p.name for p in SIPP_DIR.glob("*.xml")))
def test_every_scenario_says_what_it_does_and_its_jumps_land(name: str) -> None:
    path = SIPP_DIR / name
    text = path.read_text()
    assert text.index("<!--") < text.index("<scenario"), "a scenario starts with a comment saying what it does"
    root = ET.parse(path).getroot()
    labels = {e.get("id") for e in root.iter("label")}
    for element in root.iter():
        for attribute in ("next", "ontimeout"):
            target = element.get(attribute)
            assert target is None or target in labels, f"{name}: {attribute}={target!r} has no label"
    # sipp refuses an optional recv followed by anything but a recv (or a label)
    elements = [e for e in root if e.tag not in ("label", "Global", "init", "Reference", "ResponseTimeRepartition")]
    for before, after in itertools.pairwise(elements):
        if before.tag == "recv" and before.get("optional"):
            assert after.tag == "recv", f"{name}: optional recv {before.attrib} before <{after.tag}>"


@pytest.mark.parametrize("name", KIT)
def test_kit_scenarios_take_their_values_from_set_and_never_pause(name: str) -> None:
    path = SIPP_DIR / name
    text = path.read_text()
    comment = text[text.index("<!--") : text.index("-->")]
    assert "Takes:" in comment
    globals_ = {v for e in ET.parse(path).getroot().iter("Global") for v in (e.get("variables") or "").split(",") if v}
    assert set(re.findall(r"-set (\w+)\s+MS", comment)) == globals_
    assert "<pause" not in text.split("-->", 1)[1], "a message that arrives during a pause aborts the call"
    if name.startswith("uac-"):
        assert "[service]" in text and "[caller]" in text and "-key caller" in comment


@pytest.mark.skipif(SIPP is None, reason="sipp is installed by `make install`")
def test_sipp_loads_every_kit_scenario(tmp_path: Path) -> None:
    """sipp itself parses each file (labels, variables, keywords): a scenario it refuses makes
    sipp exit at once; one it takes keeps sipp running until stopped."""
    numbers = tmp_path / "numbers.csv"
    write_numbers_csv(numbers, [("+74951234567", "+79031112233")])
    runs = []
    for name in KIT:
        scenario = SIPP_DIR / name
        argv = [str(SIPP), "-sf", str(scenario), "-i", "127.0.0.1", "-p", str(free_udp_port()), "-m", "1", "-nostdin"]
        if name.startswith("uac-"):
            argv += ["-s", "+74951234567", "-key", "caller", "+79031112233", f"127.0.0.1:{free_udp_port()}"]
            inf = inf_scenario(scenario, tmp_path)
            runs.append((f"{name} -inf", [str(SIPP), "-sf", str(inf), "-i", "127.0.0.1", "-p", str(free_udp_port()), "-m", "1",
                                          "-nostdin", "-inf", str(numbers), f"127.0.0.1:{free_udp_port()}"]))
        runs.append((name, argv))
    procs = [(name, subprocess.Popen(argv, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
             for name, argv in runs]
    try:
        time.sleep(1.0)
        refused = {name: (proc.stderr.read().decode(errors="replace")[-300:] if proc.stderr else "")
                   for name, proc in procs if proc.poll() is not None}
    finally:
        for _, proc in procs:
            if proc.poll() is None:
                proc.terminate()
            proc.wait(timeout=10)
    assert refused == {}


# --- mixes ---------------------------------------------------------------------------------------


def test_gateway_options() -> None:
    assert parse_gateway("answer") == Gateway("answer")
    assert parse_gateway("answer-after:3") == Gateway("answer-after", 3.0)
    assert parse_gateway("busy") == Gateway("busy") and parse_gateway("busy:1.5") == Gateway("busy", 1.5)
    assert parse_gateway("503").code == 503 and parse_gateway("decline").code == 603
    assert parse_gateway("no-answer").scenario.name == "uas-no-answer.xml"
    assert Gateway("answer-after", 3).set_args() == ["-set", "answer_after", "3000"]
    assert Gateway("busy", 0.5).set_args() == ["-set", "ring", "500"] and Gateway("busy").set_args() == []
    assert str(Gateway("busy", 2)) == "busy:2" and str(Gateway()) == "answer"
    for bad in ("ring", "answer-after", "answer:2", "busy:x", "no-answer:3", "busy:-1"):
        with pytest.raises(MixError):
            parse_gateway(bad)
    assert parse_codes("200, 480") == frozenset({200, 480})
    for bad in ("", "abc", "99", "200,700"):
        with pytest.raises(MixError):
            parse_codes(bad)


@pytest.mark.parametrize(("caller", "gateway", "baseline", "voffice"), [
    ("plain", "answer", {200}, {200}),
    ("plain", "answer-after:3", {200}, {200}),
    ("plain", "answer-after:25", {200}, {480}),  # longer than the seed's 20 s ring: both waves time out, then the menu
    ("plain", "busy", {486}, {480}),  # voffice: the secretary twice, then the menu nobody keys
    ("plain", "503", {500}, {480}),  # a proxy relays a 503 as 500
    ("plain", "no-answer", {408}, {480}),
    ("dtmf", "busy", {486}, {200}),  # key 1 in the menu: voicemail answers
    ("dtmf", "answer", {200}, {200}),
    ("cancel-ringing", "answer", {200, 487}, {200, 487}),  # the CANCEL races the 200
    ("cancel-ringing", "answer-after:3", {487}, {487}),
    ("cancel-ringing", "no-answer", {487}, {487}),
    ("cancel-ringing", "busy", {486}, {480}),  # no 180 at all: nothing to hang up on
    ("cancel-ringing", "busy:2", {487}, {487}),
    ("cancel-ringing", "decline:0.2", {487, 603}, {487}),
    ("cancel-prompt", "busy", {486}, {487}),  # only voffice plays a prompt
    ("cancel-prompt", "no-answer", {408}, {487}),
    ("cancel-prompt", "answer", {200}, {200}),
])
def test_expected_finals(caller: str, gateway: str, baseline: set[int], voffice: set[int]) -> None:
    g = parse_gateway(gateway)
    assert expected_finals("baseline", caller, g) == baseline
    assert expected_finals("voffice", caller, g) == voffice


def test_mix_properties() -> None:
    mix = Mix("cancel-ringing", Gateway("busy"))
    assert mix.caller_scenario.name == "uac-cancel-ringing.xml" and mix.caller_set_args() == ["-set", "talk", "200"]
    assert mix.reaches_menu() and not Mix().reaches_menu() and not Mix(gateway=Gateway("answer-after", 5)).reaches_menu()
    assert Mix(gateway=Gateway("answer-after", 25)).reaches_menu() and Mix(routing_known=False).reaches_menu()
    assert Mix().all_answered("voffice") and not mix.all_answered("baseline")
    assert Mix(expect=frozenset({200, 480})).expected("baseline") == {200, 480}
    assert Mix(gateway=Gateway("no-answer")).call_seconds("baseline") > 120  # the native proxy's own timeout
    assert "uas-busy.xml" in mix.describe() and "uac-cancel-ringing.xml" in mix.describe()
    with pytest.raises(MixError):
        Mix("shouting")


# --- numbers files ---------------------------------------------------------------------------------


def test_numbers_file_round_trip_and_the_callers_copy(tmp_path: Path) -> None:
    path = tmp_path / "numbers.csv"
    pairs = number_pairs(["+74951234567", "+74957654321", "84951112233"], ["+79031112233", "+79161110000"])
    assert pairs == [("+74951234567", "+79031112233"), ("+74957654321", "+79161110000"), ("84951112233", "+79031112233")]
    assert write_numbers_csv(path, pairs) == 3
    lines = path.read_text().splitlines()
    assert lines[0] == "SEQUENTIAL" and lines[1].startswith("#") and lines[2] == "+74951234567;+79031112233"
    assert read_numbers_csv(path) == ("SEQUENTIAL", pairs)
    write_numbers_csv(path, pairs[:1], order="RANDOM")
    assert read_numbers_csv(path) == ("RANDOM", pairs[:1])
    for bad_text in ("+74951234567;+79031112233\n", "SEQUENTIAL\n", "SEQUENTIAL\n+7495;x y\n", "SEQUENTIAL\n+74951234567\n"):
        path.write_text(bad_text)
        with pytest.raises(MixError):
            read_numbers_csv(path)
    with pytest.raises(MixError):
        write_numbers_csv(path, [("+7495\n", "+7903")])
    with pytest.raises(MixError):
        write_numbers_csv(path, [])
    copy = inf_scenario(SIPP_DIR / "uac-plain.xml", tmp_path)
    text = copy.read_text()
    assert "[service]" not in text and "[caller]" not in text
    assert "INVITE sip:[field0]@" in text and "<sip:[field1]@" in text


def test_bench_numbers_command(tmp_path: Path) -> None:
    out = tmp_path / "n.csv"
    result = CliRunner().invoke(main, ["bench", "numbers", str(out), "--number", "+74951234567", "--number", "+74957654321",
                                       "--caller", "+79031112233", "--random"])
    assert result.exit_code == 0, result.output
    assert read_numbers_csv(out) == ("RANDOM", [("+74951234567", "+79031112233"), ("+74957654321", "+79031112233")])
    seed = Path(__file__).resolve().parent.parent / "examples" / "seed-office.json"
    result = CliRunner().invoke(main, ["bench", "numbers", str(out), "--config", str(seed)])
    assert result.exit_code == 0, result.output
    assert read_numbers_csv(out)[1] == [("+74951234567", "+79031112233")]


def test_bench_sip_refuses_a_bad_mix_before_starting_anything() -> None:
    result = CliRunner().invoke(main, ["bench", "sip", "--gateway", "ring-forever"])
    assert result.exit_code != 0 and "gateway 'ring-forever'" in result.output


# --- what the callers saw, the step, the tables, the plot --------------------------------------------


def _shortmsg(folder: Path, lines: list[tuple[float, str, str, str, str]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "uac_1_shortmessages.log").open("w") as f:
        for at, way, call_id, cseq, first in lines:
            f.write(f"2026-11-25\t13:30:00.000000\t{at:.6f}\t{way}\t{call_id}\t{cseq}\t{first}\n")


def test_read_calls_finals_and_seconds(tmp_path: Path) -> None:
    _shortmsg(tmp_path, [
        (100.0, "S", "a", "CSeq:1 INVITE", "INVITE sip:+74951234567@127.0.0.1:5060 SIP/2.0"),
        (100.5, "S", "a", "CSeq:1 INVITE", "INVITE sip:+74951234567@127.0.0.1:5060 SIP/2.0"),  # a retransmission
        (100.6, "R", "a", "CSeq:1 INVITE", "SIP/2.0 180 Ringing"),
        (100.7, "S", "b", "CSeq:1 INVITE", "INVITE sip:+74951234567@127.0.0.1:5060 SIP/2.0"),
        (100.8, "R", "a", "CSeq:1 INVITE", "SIP/2.0 200 OK"),
        (100.9, "R", "a", "CSeq:1 INVITE", "SIP/2.0 200 OK"),  # resent: the first final counts
        (101.0, "S", "a", "CSeq:1 ACK", "ACK sip:x SIP/2.0"),
        (101.2, "S", "b", "CSeq:1 CANCEL", "CANCEL sip:x SIP/2.0"),
        (101.3, "R", "b", "CSeq:1 CANCEL", "SIP/2.0 200 OK"),
        (101.4, "R", "b", "CSeq:1 INVITE", "SIP/2.0 487 Request Terminated"),
        (101.5, "S", "c", "CSeq:1 INVITE", "INVITE sip:+74951234567@127.0.0.1:5060 SIP/2.0"),  # never answered
    ])
    calls = read_calls(tmp_path)
    assert [(c.invite_at, c.final) for c in calls] == [(100.0, 200), (100.7, 487), (101.5, None)]
    assert calls[0].setup_ms == pytest.approx(800) and calls[1].setup_ms is None
    assert finals_count(calls) == {"200": 1, "487": 1, "none": 1}
    assert format_finals({"none": 1, "487": 2, "200": 1}) == "200:1 487:2 none:1" and format_finals({}) == "-"
    assert rate([c.invite_at for c in calls]) == pytest.approx(2 / 1.5) and rate([1.0]) == 0.0
    seconds = per_second(calls)
    assert [row[:3] for row in seconds] == [[100.0, 2.0, 1.0], [101.0, 1.0, 0.0]]
    assert seconds[0][3] == pytest.approx(800) and seconds[1][3] is None


def _step(cps: int, finals: dict[str, int], expected: list[int], t0: float, answered: bool = False) -> Step:
    calls = sum(finals.values())
    step = Step(cps, calls, attempted=calls, successful=calls, offered_cps=float(cps), finals=finals, expected=expected)
    step.unexpected = sum(n for code, n in finals.items() if int(code) not in expected)
    step.series = [[t0 + i, float(cps), float(cps if answered else 0), 2.0 if answered else None, 5.0 if answered else None]
                   for i in range(3)]
    if answered:
        step.achieved_cps, step.p50_ms, step.p99_ms = float(cps), 2.0, 5.0
    return step


def test_a_mix_step_holds_on_its_expected_finals() -> None:
    step = _step(10, {"487": 20}, [487], 0.0)
    step.judge(mix=True, all_answered=False)
    assert step.held  # no answer expected: the answer rate is no criterion
    step = _step(10, {"487": 18, "480": 2}, [487], 0.0)
    step.judge(mix=True, all_answered=False)
    assert not step.held and "2 calls ended 480:2, expected 487" in step.note
    step = _step(10, {"487": 20}, [487], 0.0)
    step.offered_cps = 8.0
    step.judge(mix=True, all_answered=False)
    assert step.note == "offered 8/s of 10/s"
    step = _step(10, {"200": 20}, [200], 0.0)
    step.judge(mix=True, all_answered=True)
    assert step.note == "answered 0/s of 10/s"
    step = _step(10, {"200": 20}, [200], 0.0)
    step.failed, step.successful = 1, 19
    step.judge()  # the default bench's judgement
    assert step.note == "1 failed calls; 1 of 20 calls not completed; answered 0/s of 10/s"


def _result() -> dict[str, Any]:
    baseline = [_step(5, {"200": 10}, [200], 1000.0, answered=True), _step(10, {"200": 20}, [200], 1005.0, answered=True)]
    voffice = [_step(5, {"487": 10}, [487], 2000.0), _step(10, {"487": 19, "480": 1}, [487], 2005.0)]
    return {"title": "synthetic", "baseline": {"steps": [asdict(s) for s in baseline]},
            "voffice": {"steps": [asdict(s) for s in voffice]}}


@pytest.mark.parametrize("size", [(1200, 800), (900, 500)])
def test_plot_draws_a_png_of_the_size_asked(tmp_path: Path, size: tuple[int, int]) -> None:
    path = plot_run(_result(), tmp_path / "run.png", size=size)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == size
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 10  # something was drawn


def test_plot_of_a_run_nobody_answered_and_of_one_configuration(tmp_path: Path) -> None:
    result = _result()
    result["baseline"] = None
    with Image.open(plot_run(result, tmp_path / "v.png")) as image:
        assert image.size == (1200, 800)


def test_mix_table_and_csvs(tmp_path: Path) -> None:
    run = Run("voffice", [_step(5, {"487": 10}, [487], 2000.0), _step(10, {"487": 19, "480": 1}, [487], 2005.0)])
    for step in run.steps:
        step.judge(mix=True, all_answered=False)
    lines = mix_table([run])
    assert lines[0].split()[:3] == ["config", "rate", "offered/s"]
    assert lines[1].split()[-2:] == ["yes", "487:10"] and lines[2].split()[-3:] == ["NO", "480:1", "487:19"]
    steps_csv, seconds_csv = write_csvs(tmp_path, [run])
    rows = list(csv.DictReader(steps_csv.open()))
    assert [(r["config"], r["cps"], r["finals"], r["expected"], r["held"]) for r in rows] == [
        ("voffice", "5", "487:10", "487", "True"), ("voffice", "10", "480:1 487:19", "487", "False")]
    assert len(list(csv.DictReader(seconds_csv.open()))) == 6


# --- real runs -------------------------------------------------------------------------------------


@pytest.mark.callpath
@pytest.mark.skipif(not STACK, reason="kamailio, rtpengine, sipp and redis-server are installed by `make install`")
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


@pytest.mark.callpath
@pytest.mark.skipif(not STACK, reason="kamailio, rtpengine, sipp and redis-server are installed by `make install`")
def test_a_mixed_bench_busy_gateway_callers_hang_up_during_the_prompt(tmp_path: Path) -> None:
    """The secretary's line is busy (twice: two attempts), the menu plays, every caller hangs up
    during the prompt: every call ends 487, none fails, the gateway saw two INVITEs per call."""
    lines: list[str] = []
    mix = Mix("cancel-prompt", Gateway("busy"))
    result = run_sip_bench(5, 5, 2, 5, lines.append, workdir=tmp_path / "w", mix=mix, voffice_only=True, plot=tmp_path / "run.png")

    assert result["baseline"] is None
    run = result["voffice"]
    assert run["error"] == "", run["error"]
    [step] = run["steps"]
    assert (step["calls"], step["attempted"], step["successful"], step["failed"], step["gateway_failed"]) == (10, 10, 10, 0, 0)
    assert step["finals"] == {"487": 10} and step["expected"] == [487] and step["unexpected"] == 0
    assert "failed" not in step["note"] and "ended" not in step["note"] and "not completed" not in step["note"]
    assert step["achieved_cps"] == 0 and step["p50_ms"] is None
    gateway = list(csv.reader((tmp_path / "w" / "voffice" / "cps5" / "uas" / "stats.csv").read_text().splitlines(), delimiter=";"))
    assert dict(zip(gateway[0], gateway[-1], strict=False))["IncomingCall(C)"] == "20"
    assert any(line.startswith("held = ") and "voffice 487" in line for line in lines)
    assert any(line.startswith("highest held rate: voffice") for line in lines)
    assert any(line.startswith("sipp statistics") for line in lines)
    assert (tmp_path / "w" / "steps.csv").exists() and (tmp_path / "w" / "seconds.csv").exists()
    with Image.open(tmp_path / "run.png") as image:
        assert image.size == (1200, 800)
