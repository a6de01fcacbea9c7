"""`voffice bench sip`: full calls per second through the real call path, next to a native baseline.

Not a test: it prints figures. Two configurations run one after the other in the same run, on
free loopback ports, with the same rtpengine, the same Kamailio children count and the same calls:

- voffice:  the real stack (Redis, rtpengine, Kamailio with kamailio/kamailio.cfg and the Python
            KEMI routing), the seed example loaded, its clock at Wednesday lunch, so every call to
            the seed's number rings the secretary through the operator gateway at once;
- baseline: rtpengine and Kamailio with bench/kamailio-baseline.cfg: no Python, no decision,
            record_route + rtpengine offer/answer/delete + t_relay to the operator gateway.

A call: a sipp caller (bench/sipp/uac.xml) sends INVITE with SDP, gets 100/180/200, ACKs through
the Record-Route set, talks 200 ms, hangs up; an answering sipp operator gateway
(bench/sipp/uas-answer.xml) answers 180 + 200 with SDP at once. Per rate, each configuration
gets `cps * seconds` calls at `cps` calls/s; the rate steps up until a step is not held (a call
failed or did not complete, or the callers could not reach 95% of the rate) or `max_cps`.

Mixes (the load-tester kit, docs/load-testing.md): other callers (DTMF into a prompt, hanging up
while it rings or during a prompt), other operator gateways (answering late, busy, declining,
503, never answering), many numbers and callers from a sipp -inf file, another talk time, the
voffice configuration alone. A mix's calls need not be answered: a step holds when every call
ended with a final status the mix expects (bench/voffice_bench/kit.py), as well as the rest.

Figures per step: attempted/successful/failed calls (sipp's statistics, caller and gateway),
achieved calls/s (200 OKs over the time between the first and the last), INVITE->200 p50/p99
(per call, from the caller's -trace_shortmsg timestamps, microseconds: sipp's own response-time
figures tick in whole milliseconds and read 0 or 4 ms here), and CPU per successful call of all
Kamailio processes and of rtpengine (utime + stime from /proc, before and after the step, so
their idle work during the step is included; each configuration's idle CPU is printed too).
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from routing.stack.local import KAMAILIO_CFG, KEMI_SCRIPT, SEED, Component, Stack, StackConfig, StackError, components
from routing.stack.ports import free_port, free_udp_port
from routing.stack.postgres_server import cluster_dir
from voffice_bench.kit import (
    Mix,
    MixError,
    finals_count,
    format_finals,
    inf_scenario,
    per_second,
    percentile,
    plot_run,
    rate,
    read_calls,
    read_numbers_csv,
)

ROOT = Path(__file__).resolve().parents[2]
BENCH_DIR = ROOT / "bench"
BASELINE_CFG = BENCH_DIR / "kamailio-baseline.cfg"
UAC_XML = BENCH_DIR / "sipp" / "uac.xml"
UAS_XML = BENCH_DIR / "sipp" / "uas-answer.xml"
NUMBER = "+74951234567"  # the seed's virtual number
CALLER = "+79031112233"
WEDNESDAY_LUNCH = "2026-11-25T13:30:00+03:00"  # rule 1 -> scenario "lunch" -> ring the secretary
HOST = "127.0.0.1"
TALK_MS = 200  # fixed in bench/sipp/uac.xml
HELD_RATE_FRACTION = 0.95  # a step holds its rate when the answers reach 95% of it
RATE_TARGET = 0.9  # voffice's highest held rate / the baseline's
CPU_TARGET = 1.3  # voffice's Kamailio CPU per call / the baseline's, at a rate both held
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    pass


# --- processes and their CPU -----------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state is [0], ppid [1])."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def descendants(pid: int) -> list[int]:
    """PID and every process under it (Kamailio's workers, timers, ...)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields:
                children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, []))
    return out


def cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime of these processes (all their threads), in seconds."""
    ticks = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / CLOCK_TICK


# --- ports -----------------------------------------------------------------------------------




def rtp_port_range(index: int, size: int = 4000) -> tuple[int, int]:
    """rtpengine's media ports: below Linux's ephemeral range, one range per configuration."""
    low = 20000 + index * size
    return low, low + size - 1


# --- the two configurations ------------------------------------------------------------------


def baseline_kamailio(part: Component, gateway: str) -> Component:
    """The stack's own Kamailio command line (same memory, children, listen, rtpengine), on the
    baseline cfg: no KEMI script, no dispatcher list, a fixed destination."""
    argv: list[str] = []
    args = iter(part.argv)
    for arg in args:
        if arg == str(KAMAILIO_CFG):
            argv.append(str(BASELINE_CFG))
        elif arg == "-A":
            define = next(args)
            if not define.startswith(("VO_KEMI_SCRIPT=", "VO_DISPATCHER_LIST=")):
                argv += ["-A", define]
        else:
            argv.append(arg)
    argv += ["-A", f'VO_TARGET="{gateway}"']
    return replace(part, argv=argv, env={})


class BaselineStack(Stack):
    """rtpengine exactly as `voffice up` starts it; Kamailio on bench/kamailio-baseline.cfg."""

    def start(self, detach: bool = False, timeout: float = 20.0) -> None:
        self.config.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            for part in components(self.config):
                if part.name == "kamailio":
                    part = baseline_kamailio(part, self.config.operator_gateway)
                self._start(part, detach, timeout)
        except BaseException:
            self.stop()
            raise


@dataclass
class Target:
    name: str
    stack: Stack
    gateway_port: int

    @property
    def sip_port(self) -> int:
        return self.stack.config.sip_port

    def pid(self, component: str) -> int:
        for part in self.stack.parts:
            if part.name == component and part.proc is not None:
                return part.proc.pid
        raise BenchError(f"{self.name}: {component} is not running")

    def check_alive(self) -> None:
        for part in self.stack.parts:
            if part.proc is not None and part.proc.poll() is not None:
                raise BenchError(f"{self.name}: {part.name} exited with code {part.proc.returncode}; see {self.stack.config.run_dir}")


def make_target(name: str, index: int, workdir: Path, children: int, allocator: str = "tlsf", media: bool = False,
                load: Sequence[str] = (), now: str | None = None, history: bool = False) -> Target:
    """One configuration on free ports; with `media`, voffice gets a media server (prompts, menus,
    voicemail), `load` replaces the seed and `now` Wednesday lunch."""
    gateway_port = free_udp_port()
    config = StackConfig(
        run_dir=workdir / name / "run",
        host=HOST,
        redis_port=free_udp_port(),
        sip_port=free_udp_port(),
        media_port=free_udp_port(),  # nothing listens there: the bench has no media steps
        rtpengine_port=free_udp_port(),
        rtp_ports=rtp_port_range(index),
        operator_gateway=f"{HOST}:{gateway_port}",
        kamailio_children=children,
        kamailio_allocator=allocator,
        load=tuple(load) or (str(SEED),),
        now=now or WEDNESDAY_LUNCH,
    )
    if name == "voffice":
        parts = ("redis", "rtpengine", "media", "kamailio") if media else ("redis", "rtpengine", "kamailio")
        if history:  # the call history written while the calls run (PostgreSQL of its own, fsync on)
            parts = ("redis", "postgres", *parts[1:], "history")
        stack: Stack = Stack(replace(config, components=parts, media_rtp_ports=rtp_port_range(index + 2), postgres_port=free_port()))
    else:
        stack = BaselineStack(replace(config, components=("rtpengine", "kamailio"), load=(), now=None))
    return Target(name, stack, gateway_port)


# --- sipp ------------------------------------------------------------------------------------


def sipp_binary() -> str:
    binary = shutil.which("sipp")
    if binary is None:
        raise BenchError("sipp is not installed (Debian package sip-tester)")
    return binary


def read_stats(path: Path) -> dict[str, str]:
    """The last row of a sipp -trace_stat file, by column name."""
    try:
        rows = list(csv.reader(path.read_text(errors="replace").splitlines(), delimiter=";"))
    except OSError:
        return {}
    if len(rows) < 2:
        return {}
    return dict(zip(rows[0], rows[-1], strict=False))


def _count(stats: dict[str, str], column: str) -> int:
    try:
        return int(float(stats.get(column, "0") or 0))
    except ValueError:
        return 0


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Step:
    cps: int
    calls: int
    attempted: int = 0
    successful: int = 0
    failed: int = 0
    gateway_failed: int = 0
    achieved_cps: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    kamailio_cpu_ms: float | None = None  # per successful call
    rtpengine_cpu_ms: float | None = None
    wall_seconds: float = 0.0
    note: str = ""
    offered_cps: float = 0.0  # INVITEs sent per second (first to last)
    finals: dict[str, int] = field(default_factory=dict)  # the INVITEs' final statuses: {"200": n, "none": n}
    expected: list[int] = field(default_factory=list)  # a mix's expected finals (empty: the default bench)
    unexpected: int = 0  # calls whose final was not expected (a mix only)
    series: list[list[float | None]] = field(default_factory=list)  # per second: t, offered, answered, p50, p99

    @property
    def held(self) -> bool:
        return not self.note

    @property
    def lost(self) -> int:
        """Calls that failed at either end or never completed."""
        return self.failed + self.gateway_failed + max(0, self.calls - self.successful - self.failed)

    def judge(self, mix: bool = False, all_answered: bool = True) -> None:
        """The default bench: no failure, every call completed, answers at 95% of the rate. A mix
        also: every final expected, INVITEs offered at 95% of the rate; the answer rate only
        when every call of the mix is answered."""
        problems = []
        if self.failed or self.gateway_failed:
            problems.append(f"{self.failed} failed calls" + (f", {self.gateway_failed} at the gateway" if self.gateway_failed else ""))
        if self.successful < self.calls:
            problems.append(f"{self.calls - self.successful} of {self.calls} calls not completed")
        if mix and self.unexpected:
            others = {code: n for code, n in self.finals.items() if code == "none" or int(code) not in self.expected}
            problems.append(f"{self.unexpected} calls ended {format_finals(others)}, expected {'/'.join(map(str, self.expected))}")
        if mix and self.calls > 1 and self.offered_cps < HELD_RATE_FRACTION * self.cps:
            problems.append(f"offered {self.offered_cps:.0f}/s of {self.cps}/s")
        if all_answered and self.achieved_cps < HELD_RATE_FRACTION * self.cps:
            problems.append(f"answered {self.achieved_cps:.0f}/s of {self.cps}/s")
        self.note = "; ".join(problems)


def mix_argv(mix: Mix, target: Target, cps: int, calls: int, limit: int, folder: Path) -> tuple[list[str], list[str]]:
    """The gateway's and the callers' sipp command lines for a mix. The gateway takes calls
    until it is stopped (voffice may ring it twice per call) and forgets a call at once (the
    next wave's INVITE has the same Call-ID); waits are bounded by the step's limit."""
    sipp = sipp_binary()
    common = ["-i", HOST, "-nostdin", "-trace_stat", "-fd", "1", "-trace_err", "-timeout", f"{limit}s", "-timeout_error",
              "-recv_timeout", str(limit * 1000)]
    uas_argv = [sipp, "-sf", str(mix.gateway.scenario), "-p", str(target.gateway_port), "-stf", str(folder / "uas" / "stats.csv"),
                "-deadcall_wait", "0", *mix.gateway.set_args(), *common]
    scenario, who = mix.caller_scenario, ["-s", NUMBER, "-key", "caller", CALLER]
    if mix.inf is not None:
        scenario, who = inf_scenario(scenario, folder / "uac"), ["-inf", str(mix.inf)]
    uac_argv = [sipp, "-sf", str(scenario), "-p", str(free_udp_port()), "-stf", str(folder / "uac" / "stats.csv"),
                "-m", str(calls), "-r", str(cps), "-rp", "1000", "-l", str(calls), *who, *mix.caller_set_args(),
                "-trace_shortmsg", *common, f"{HOST}:{target.sip_port}"]
    return uas_argv, uac_argv


def run_step(target: Target, cps: int, seconds: float, workdir: Path, mix: Mix | None = None) -> Step:
    """`cps * seconds` calls at `cps` calls/s through `target`; every process bounded in time.
    Without a mix: bench/sipp/uac.xml against bench/sipp/uas-answer.xml."""
    target.check_alive()
    calls = max(1, round(cps * seconds))
    step = Step(cps, calls)
    folder = workdir / target.name / f"cps{cps}"
    (folder / "uac").mkdir(parents=True, exist_ok=True)
    (folder / "uas").mkdir(parents=True, exist_ok=True)
    sipp = sipp_binary()
    if mix is None:
        # A healthy run lasts seconds + talk; whatever is still running well after that has failed.
        limit = int(seconds + TALK_MS / 1000 + 20)
        common = ["-i", HOST, "-m", str(calls), "-nostdin", "-trace_stat", "-fd", "1", "-trace_err",
                  "-timeout", f"{limit}s", "-timeout_error"]
        uas_argv = [sipp, "-sf", str(UAS_XML), "-p", str(target.gateway_port), "-stf", str(folder / "uas" / "stats.csv"),
                    "-recv_timeout", "10000", *common]
        uac_argv = [sipp, "-sf", str(UAC_XML), "-p", str(free_udp_port()), "-stf", str(folder / "uac" / "stats.csv"),
                    "-r", str(cps), "-rp", "1000", "-l", str(calls), "-s", NUMBER,
                    "-key", "caller", CALLER, "-trace_shortmsg", "-recv_timeout", "10000",
                    *common, f"{HOST}:{target.sip_port}"]
    else:
        limit = int(seconds + mix.call_seconds(target.name) + 20)
        uas_argv, uac_argv = mix_argv(mix, target, cps, calls, limit, folder)
    kamailio_pids = descendants(target.pid("kamailio"))
    rtpengine_pid = target.pid("rtpengine")
    uas = subprocess.Popen(uas_argv, cwd=folder / "uas", stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    uac: subprocess.Popen[bytes] | None = None
    try:
        time.sleep(0.3)  # the gateway is listening
        kamailio0, rtpengine0, t0 = cpu_seconds(kamailio_pids), cpu_seconds([rtpengine_pid]), time.monotonic()
        uac = subprocess.Popen(uac_argv, cwd=folder / "uac", stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            uac.wait(timeout=limit + 10)
        except subprocess.TimeoutExpired:
            _stop(uac)
        caller_stats = read_stats(folder / "uac" / "stats.csv")
        if mix is not None:
            time.sleep(0.5)  # the last ACKs; the gateway takes calls until stopped and writes its statistics then
        elif _count(caller_stats, "SuccessfulCall(C)") == calls:
            try:
                uas.wait(timeout=5)  # it has seen every call by now
            except subprocess.TimeoutExpired:
                pass
        _stop(uas)
        kamailio1, rtpengine1 = cpu_seconds(kamailio_pids), cpu_seconds([rtpengine_pid])
        step.wall_seconds = time.monotonic() - t0
    finally:
        if uac is not None:
            _stop(uac)
        _stop(uas)
    gateway_stats = read_stats(folder / "uas" / "stats.csv")
    step.attempted = _count(caller_stats, "OutgoingCall(C)")
    step.successful = _count(caller_stats, "SuccessfulCall(C)")
    step.failed = _count(caller_stats, "FailedCall(C)")
    step.gateway_failed = _count(gateway_stats, "FailedCall(C)")
    traces = read_calls(folder / "uac")
    step.series = per_second(traces)
    step.finals = finals_count(traces)
    step.offered_cps = rate([c.invite_at for c in traces])
    answers = sorted((c.final_at, c.setup_ms) for c in traces if c.final_at is not None and c.setup_ms is not None)
    if mix is not None:
        step.expected = sorted(mix.expected(target.name))
        step.unexpected = sum(n for code, n in step.finals.items() if code == "none" or int(code) not in step.expected)
    if len(answers) >= 2 and answers[-1][0] > answers[0][0]:
        step.achieved_cps = (len(answers) - 1) / (answers[-1][0] - answers[0][0])
    elif answers:
        step.achieved_cps = float(cps) if calls == 1 else 0.0
    step.p50_ms = percentile([rtt for _, rtt in answers], 0.50)
    step.p99_ms = percentile([rtt for _, rtt in answers], 0.99)
    if step.successful:
        step.kamailio_cpu_ms = (kamailio1 - kamailio0) * 1000 / step.successful
        step.rtpengine_cpu_ms = (rtpengine1 - rtpengine0) * 1000 / step.successful
    if mix is None:
        step.judge()
    else:
        step.judge(mix=True, all_answered=mix.all_answered(target.name))
    if step.held:  # ~1 KB per call; the logs of a step that was not held stay for a look
        for pattern in ("*_shortmessages.log", "*_errors.log"):  # errors: one talk-timer notice per call
            for path in (folder / "uac").glob(pattern):
                path.unlink()
    target.check_alive()
    return step


# --- the bench -------------------------------------------------------------------------------


@dataclass
class Run:
    name: str
    steps: list[Step] = field(default_factory=list)
    error: str = ""
    idle_kamailio_ms_s: float | None = None
    idle_rtpengine_ms_s: float | None = None

    @property
    def max_cps(self) -> int:
        """The highest rate held, stepping up from the first (0 if the first was not)."""
        best = 0
        for step in self.steps:
            if not step.held:
                break
            best = step.cps
        return best

    def at(self, cps: int) -> Step | None:
        return next((s for s in self.steps if s.cps == cps), None)


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def step_line(name: str, step: Step, mix: bool = False) -> str:
    if mix:
        return (
            f"{name:<8} {step.cps:>4}/s  offered {step.offered_cps:>6.1f}/s  answered {step.achieved_cps:>6.1f}/s"
            f"  calls {step.successful}/{step.attempted}  failed {step.failed}+{step.gateway_failed}  finals {format_finals(step.finals)}"
            f"  INVITE->200 p50 {_fmt(step.p50_ms, '.1f')} ms p99 {_fmt(step.p99_ms, '.1f')} ms"
            f"  CPU/call kamailio {_fmt(step.kamailio_cpu_ms)} ms rtpengine {_fmt(step.rtpengine_cpu_ms)} ms"
            + (f"  NOT HELD: {step.note}" if step.note else "")
        )
    return (
        f"{name:<8} {step.cps:>4}/s  answered {step.achieved_cps:>6.1f}/s  calls {step.successful}/{step.attempted}"
        f"  failed {step.failed}+{step.gateway_failed}  INVITE->200 p50 {_fmt(step.p50_ms, '.1f')} ms p99 {_fmt(step.p99_ms, '.1f')} ms"
        f"  CPU/call kamailio {_fmt(step.kamailio_cpu_ms)} ms rtpengine {_fmt(step.rtpengine_cpu_ms)} ms"
        + (f"  NOT HELD: {step.note}" if step.note else "")
    )


def idle_cpu(target: Target, seconds: float = 2.0) -> tuple[float, float]:
    """CPU ms per second of Kamailio (all processes) and rtpengine with no calls."""
    kamailio, rtpengine = descendants(target.pid("kamailio")), [target.pid("rtpengine")]
    k0, r0 = cpu_seconds(kamailio), cpu_seconds(rtpengine)
    time.sleep(seconds)
    return (cpu_seconds(kamailio) - k0) * 1000 / seconds, (cpu_seconds(rtpengine) - r0) * 1000 / seconds


def run_config(name: str, index: int, rates: Sequence[int], seconds: float, children: int,
               workdir: Path, echo: Callable[[str], None], allocator: str = "tlsf", mix: Mix | None = None,
               load: Sequence[str] = (), now: str | None = None, history: bool = False) -> Run:
    run = Run(name)
    media = mix is not None and mix.reaches_menu()
    history = history and name == "voffice"
    target = make_target(name, index, workdir, children, allocator, media=media, load=load, now=now, history=history)
    try:
        target.stack.start(timeout=30)
        echo(f"{name:<8} up: Kamailio {HOST}:{target.sip_port} ({children} children), operator gateway {HOST}:{target.gateway_port}"
             + (f", media server {HOST}:{target.stack.config.media_port}" if media and name == "voffice" else ""))
        warm = run_step(target, 10, 1, workdir / "warmup", mix)  # every worker has seen a call
        if warm.lost or warm.unexpected:
            raise BenchError(f"{name}: warm-up calls did not complete as expected: {warm.note}; logs in {workdir / 'warmup' / name}")
        time.sleep(1.0)
        run.idle_kamailio_ms_s, run.idle_rtpengine_ms_s = idle_cpu(target)
        echo(f"{name:<8} idle CPU: Kamailio {run.idle_kamailio_ms_s:.1f} ms/s, rtpengine {run.idle_rtpengine_ms_s:.1f} ms/s")
        for cps in rates:
            step = run_step(target, cps, seconds, workdir, mix)
            run.steps.append(step)
            echo(step_line(name, step, mix is not None))
            if not step.held:
                break
            time.sleep(1.0)  # let transactions and rtpengine sessions drain
        if history:
            echo(history_line(target, 10 + sum(step.attempted for step in run.steps)))
    except (BenchError, StackError) as exc:
        run.error = str(exc)
        echo(f"{name}: {exc}")
    finally:
        target.stack.stop()
        if history:
            shutil.rmtree(cluster_dir(target.stack.config.run_dir), ignore_errors=True)
    return run


def history_line(target: Target, calls: int) -> str:
    """After the run: the history writer's backlog, how long it took to clear, and its rows
    against the calls placed (each call has exactly one record)."""
    import redis as redis_lib

    from routing.records import database
    from routing.records.stream import lag

    config = target.stack.config
    client = redis_lib.Redis.from_url(config.redis_url, socket_timeout=2)
    behind = lag(client).get("history", 0)
    started = time.monotonic()
    while lag(client).get("history", 0) and time.monotonic() - started < 120:
        time.sleep(0.05)
    with database.connect(config.history_url) as conn:
        row = conn.execute("SELECT count(*) AS n FROM calls").fetchone()
    rows = int(row["n"]) if row else 0
    return (f"history: {rows} rows for {calls} calls placed; {behind} records not yet written when the last step ended, "
            f"written {time.monotonic() - started:.1f} s later")


def comparison(baseline: Run, voffice: Run, max_cps: int) -> dict[str, Any]:
    common = min(baseline.max_cps, voffice.max_cps)
    rate_ratio = voffice.max_cps / baseline.max_cps if baseline.max_cps else None
    b_step, v_step = baseline.at(common), voffice.at(common)
    cpu_ratio = None
    if b_step and v_step and b_step.kamailio_cpu_ms and v_step.kamailio_cpu_ms is not None:
        cpu_ratio = v_step.kamailio_cpu_ms / b_step.kamailio_cpu_ms
    return {
        "common_cps": common,
        "rate_ratio": rate_ratio,
        "rate_ok": rate_ratio is not None and rate_ratio >= RATE_TARGET,
        "cpu_ratio": cpu_ratio,
        "cpu_ok": cpu_ratio is not None and cpu_ratio <= CPU_TARGET,
        "baseline_saturated": baseline.max_cps < max_cps,
    }


def table(baseline: Run, voffice: Run) -> list[str]:
    rates = sorted({s.cps for s in baseline.steps} | {s.cps for s in voffice.steps})
    head = "answered/s  failed    p50/p99 ms  kam ms/call  rtp ms/call"
    lines = [f"{'rate':>6} | {'baseline (native cfg)':^{len(head)}} | {'voffice (KEMI routing)':^{len(head)}}",
             f"{'':>6} | {head} | {head}"]

    def cell(step: Step | None) -> str:
        if step is None:
            return f"{'':{len(head)}}"
        mark = "" if step.held else "!"
        latency = f"{_fmt(step.p50_ms, '.1f')}/{_fmt(step.p99_ms, '.1f')}"
        return (f"{step.achieved_cps:>9.1f}{mark:<1} {step.lost:>7}"
                f"  {latency:>12}  {_fmt(step.kamailio_cpu_ms):>11}  {_fmt(step.rtpengine_cpu_ms):>11}")

    for cps in rates:
        lines.append(f"{cps:>4}/s | {cell(baseline.at(cps))} | {cell(voffice.at(cps))}")
    return lines


def mix_table(runs: Sequence[Run]) -> list[str]:
    """One row per configuration and step (a mix, or one configuration alone)."""
    lines = [f"{'config':<8} {'rate':>6}  {'offered/s':>9}  {'answered/s':>10}  {'calls':>11}  {'failed':>6}  {'p50/p99 ms':>12}"
             f"  {'kam ms/call':>11}  {'rtp ms/call':>11}  {'held':<4}  finals"]
    for run in runs:
        for step in run.steps:
            latency = f"{_fmt(step.p50_ms, '.1f')}/{_fmt(step.p99_ms, '.1f')}"
            lines.append(f"{run.name:<8} {step.cps:>4}/s  {step.offered_cps:>9.1f}  {step.achieved_cps:>10.1f}"
                         f"  {f'{step.successful}/{step.calls}':>11}  {step.lost:>6}  {latency:>12}"
                         f"  {_fmt(step.kamailio_cpu_ms):>11}  {_fmt(step.rtpengine_cpu_ms):>11}  {'yes' if step.held else 'NO':<4}"
                         f"  {format_finals(step.finals)}")
    return lines


def write_csvs(workdir: Path, runs: Sequence[Run]) -> tuple[Path, Path]:
    """steps.csv (one row per configuration and step) and seconds.csv (per second: INVITEs sent,
    200s received, INVITE->200 p50/p99) in the workdir."""
    steps_path, seconds_path = workdir / "steps.csv", workdir / "seconds.csv"
    columns = ["cps", "calls", "attempted", "successful", "failed", "gateway_failed", "offered_cps", "achieved_cps",
               "p50_ms", "p99_ms", "kamailio_cpu_ms", "rtpengine_cpu_ms", "wall_seconds"]
    with steps_path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["config", *columns, "finals", "expected", "held", "note"])
        for run in runs:
            for step in run.steps:
                row = asdict(step)
                out.writerow([run.name, *(row[c] for c in columns), format_finals(step.finals),
                              "/".join(map(str, step.expected)), step.held, step.note])
    with seconds_path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["config", "cps", "second", "offered", "answered", "p50_ms", "p99_ms"])
        for run in runs:
            for step in run.steps:
                for second, offered, answered, p50, p99 in step.series:
                    out.writerow([run.name, step.cps, f"{second:.0f}", f"{offered:.0f}", f"{answered:.0f}",
                                  "" if p50 is None else f"{p50:.3f}", "" if p99 is None else f"{p99:.3f}"])
    return steps_path, seconds_path


def _run_dict(run: Run) -> dict[str, Any]:
    return {"max_cps": run.max_cps, "error": run.error, "idle_kamailio_ms_s": run.idle_kamailio_ms_s,
            "idle_rtpengine_ms_s": run.idle_rtpengine_ms_s, "steps": [asdict(s) | {"held": s.held, "lost": s.lost} for s in run.steps]}


def held_meaning(mix: Mix, configs: Sequence[str]) -> str:
    expected = ", ".join(f"{name} {'/'.join(map(str, sorted(mix.expected(name))))}" for name in configs)
    answered = [name for name in configs if mix.all_answered(name)]
    return ("held = every call completed its caller scenario with nothing failed at either end, the callers offered"
            f" >= {HELD_RATE_FRACTION:.0%} of the rate, and every call's INVITE ended with an expected final status: {expected}"
            + (f"; answers at >= {HELD_RATE_FRACTION:.0%} of the rate too ({', '.join(answered)})" if answered else ""))


def run_sip_bench(cps_start: int, cps_step: int, seconds: float, max_cps: int, echo: Callable[[str], None],
                  kamailio_children: int = 4, workdir: Path | None = None, allocator: str = "tlsf",
                  mix: Mix | None = None, voffice_only: bool = False, plot: Path | None = None,
                  load: Sequence[str] = (), now: str | None = None, history: bool = False) -> dict[str, Any]:
    """Step both configurations up from `cps_start` by `cps_step` to `max_cps`; print and return
    each step, each highest held rate and the two target ratios. With a mix, the kit's callers
    and gateway (bench/voffice_bench/kit.py); `voffice_only` skips the baseline; `plot` draws the run;
    `load` and `now` change what voffice's configuration routes (default: the seed, Wednesday lunch)."""
    if cps_start < 1 or cps_step < 1 or max_cps < cps_start or seconds <= 0:
        raise BenchError("need 1 <= cps_start <= max_cps, cps_step >= 1 and seconds > 0")
    scenarios = [UAC_XML, UAS_XML] if mix is None else [mix.caller_scenario, mix.gateway.scenario]
    for path in (BASELINE_CFG, *scenarios, KAMAILIO_CFG, KEMI_SCRIPT):
        if not path.exists():
            raise BenchError(f"{path} is missing")
    if mix is not None and mix.inf is not None:
        try:
            read_numbers_csv(mix.inf)
        except MixError as exc:
            raise BenchError(str(exc)) from None
    sipp_binary()
    if workdir is None:
        workdir = Path(tempfile.mkdtemp(prefix="voffice-bench-sip-"))
    workdir.mkdir(parents=True, exist_ok=True)
    rates = list(range(cps_start, max_cps + 1, cps_step))
    talk_ms = TALK_MS if mix is None else mix.talk_ms
    configs = ["voffice"] if voffice_only else ["baseline", "voffice"]
    echo(f"{len(rates)} rates {rates[0]}..{rates[-1]}/s, {seconds:g} s each, talk {talk_ms} ms, {os.cpu_count()} cores; logs in {workdir}")
    echo(f"Kamailio memory manager ({'voffice' if voffice_only else 'both configurations'}): {allocator}")
    if mix is not None:
        echo(f"mix: {mix.describe()}")
        echo(held_meaning(mix, configs))
        if not mix.routing_known and mix.expect is None:
            echo("(expected finals assume the seed at Wednesday lunch; with other accounts or another time pass --expect)")
    baseline = Run("baseline") if voffice_only else run_config("baseline", 0, rates, seconds, kamailio_children, workdir, echo, allocator, mix)
    voffice = run_config("voffice", 1, rates, seconds, kamailio_children, workdir, echo, allocator, mix, load, now, history)
    runs = [voffice] if voffice_only else [baseline, voffice]
    steps_csv, seconds_csv = write_csvs(workdir, runs)
    out: dict[str, Any] = {
        "rates": rates,
        "seconds": seconds,
        "talk_ms": talk_ms,
        "kamailio_children": kamailio_children,
        "allocator": allocator,
        "workdir": str(workdir),
        "mix": None if mix is None else {"caller": mix.caller, "gateway": str(mix.gateway), "talk_ms": mix.talk_ms,
                                         "inf": None if mix.inf is None else str(mix.inf),
                                         "expected": {name: sorted(mix.expected(name)) for name in configs}},
        "baseline": None if voffice_only else _run_dict(baseline),
        "voffice": _run_dict(voffice),
        "title": f"voffice bench sip: {'the default calls' if mix is None else mix.describe()}",
    }
    echo("")
    if mix is None and not voffice_only:
        result = comparison(baseline, voffice, max_cps)
        for line in table(baseline, voffice):
            echo(line)
        echo("(! = not held; failed counts failed and uncompleted calls; INVITE->200 from sipp message timestamps)")
        echo("")
        saturated = "" if result["baseline_saturated"] else f" (baseline not saturated at max {max_cps}/s)"
        echo(f"highest zero-failure rate: baseline {baseline.max_cps}/s{saturated}, voffice {voffice.max_cps}/s"
             f" -> {_fmt(result['rate_ratio'])} (target >= {RATE_TARGET}): {'OK' if result['rate_ok'] else 'MISSED'}")
        b_step, v_step = baseline.at(result["common_cps"]), voffice.at(result["common_cps"])
        echo(f"Kamailio CPU per call at {result['common_cps']}/s: baseline {_fmt(b_step.kamailio_cpu_ms if b_step else None, '.3f')} ms,"
             f" voffice {_fmt(v_step.kamailio_cpu_ms if v_step else None, '.3f')} ms"
             f" -> {_fmt(result['cpu_ratio'])} (target <= {CPU_TARGET}): {'OK' if result['cpu_ok'] else 'MISSED'}")
        out.update(result)
    else:
        for line in mix_table(runs):
            echo(line)
        echo("(failed counts failed and uncompleted calls; finals: the INVITEs' final statuses, code:calls; INVITE->200 from sipp message timestamps)")
        echo("")
        echo("highest held rate: " + ", ".join(f"{run.name} {run.max_cps}/s" for run in runs) + (" (baseline not run)" if voffice_only else ""))
        if not voffice_only and mix is not None and mix.all_answered("baseline") and mix.all_answered("voffice"):
            result = comparison(baseline, voffice, max_cps)
            echo(f"voffice/baseline: highest held rate {_fmt(result['rate_ratio'])}, Kamailio CPU per call at {result['common_cps']}/s"
                 f" {_fmt(result['cpu_ratio'])} (the default bench's targets: >= {RATE_TARGET}, <= {CPU_TARGET})")
            out.update(result)
        elif not voffice_only:
            echo("(no voffice/baseline ratios: the two configurations do different things with these calls)")
        echo(f"sipp statistics (-trace_stat, one row per second): {workdir}/<config>/cps<rate>/uac/stats.csv (callers),"
             f" .../uas/stats.csv (gateway); per step: {steps_csv}; per second: {seconds_csv}")
    if plot is not None:
        plot_run(out, plot)
        echo(f"plot: {plot}")
    return out
