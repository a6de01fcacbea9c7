"""`voffice bench scale`: thousands of accounts loaded, calls spread over every number.

Not a test (a small run of it is, tests/test_scale.py): it prints figures and checks each
call went where its account's configuration says. The stack (Redis, rtpengine, Kamailio
with the KEMI routing) gets N generated accounts shaped like the seed (2 numbers each); a
sipp caller dials every number once, in random order, from an injection file; an answering
sipp operator gateway records which operator each call rang. Every account is in Moscow
time and the clock is a Wednesday lunch, so the engine's answer for every call is "ring the
secretary" (computed here with the same engine, not assumed), and a call is right when the
gateway saw that account's secretary for that number.

Per-process memory: every account is in the machine's node store (one LMDB map, kept by
`voffice node-store`, shared by every worker); each Kamailio worker keeps an LRU of at most
`VOFFICE_CACHE_ACCOUNTS` small decision forms. The bench samples every Kamailio process's
and the media server's private memory (RssAnon: the Python heap and pkg memory) at the
start, at each quarter of the run and at the end: a bounded cache shows as a plateau. At
the end it sums their PSS (shared pages divided among the processes that map them: the
node store's pages and Kamailio's shared memory counted once), the figure for "all the
workers and a media server together".
"""

from __future__ import annotations

import json
import random
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from routing.core.compiler import compile_account
from routing.core.engine import CompiledAccount, decide
from routing.core.scenario import Cursor
from routing.core.validation import validate_paths
from routing.proxy.call_step import RingWaves, action_for
from routing.stack.local import SEED, Stack, StackConfig
from routing.stack.ports import free_port, free_udp_port
from routing.store import configs
from routing.store.node_store import NodeReader
from voffice_bench.decide import generate_accounts
from voffice_bench.kit import first_invites
from voffice_bench.sip import HOST, UAC_XML, UAS_XML, descendants, read_stats, sipp_binary

WEDNESDAY_LUNCH = "2026-11-25T13:30:00+03:00"
CALLER = "+79031112233"


class ScaleError(Exception):
    pass


@dataclass
class ScaleResult:
    accounts: int
    numbers: int
    cache_limit: int
    load_seconds: float = 0.0
    calls: int = 0
    answered: int = 0
    failed: int = 0
    checked: int = 0
    wrong: list[str] = field(default_factory=list)
    rss_kib: dict[int, list[int]] = field(default_factory=dict)  # pid -> RssAnon at 0, 25, 50, 75, 100 %
    pss_kib: int = 0  # every Kamailio process and the media server together, at the end
    store_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.answered == self.calls and not self.failed and not self.wrong and self.checked == self.calls


def _proc_kib(pid: int, file: str, field: str) -> int:
    """One KiB field of /proc/PID/FILE (0 once the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pss_kib(pid: int) -> int:
    """Proportional set size of a process, KiB."""
    return _proc_kib(pid, "smaps_rollup", "Pss")


def _rss_kib(pid: int) -> int:
    """Private resident memory (RssAnon) of a process, KiB."""
    return _proc_kib(pid, "status", "RssAnon")


def expected_operator_phones(docs: list[dict[str, Any]], now_iso: str) -> dict[str, frozenset[str]]:
    """Per number: the phones the engine rings first for a call from CALLER at `now_iso`."""
    from datetime import datetime

    now = datetime.fromisoformat(now_iso)
    out: dict[str, frozenset[str]] = {}
    for doc in docs:
        account = CompiledAccount(compile_account(doc))
        for number in doc["numbers"]:
            decision = decide(account, number, CALLER, now)
            action = action_for(account.plain, 1, Cursor(decision.node), number, decision.caller, seed="scale")
            if not isinstance(action, RingWaves):
                raise ScaleError(f"{doc['account']}: the first step at {now_iso} is not ringing operators")
            out[number] = frozenset(ring["phone"] for ring in action.waves[0])
    return out


def run_scale(accounts: int, cps: int, cache_limit: int, echo: Callable[[str], None],
              workdir: Path | None = None, children: int = 4, calls: int | None = None) -> ScaleResult:
    if accounts < 1 or cps < 1 or cache_limit < 1:
        raise ScaleError("need accounts, cps and cache limit >= 1")
    sipp = sipp_binary()
    workdir = workdir or Path(tempfile.mkdtemp(prefix="voffice-bench-scale-"))
    template = json.loads(SEED.read_text(encoding="utf-8"))
    docs = generate_accounts(template, accounts, zones=1)
    numbers = [n for d in docs for n in d["numbers"]]
    result = ScaleResult(accounts, len(numbers), cache_limit)
    expected = expected_operator_phones(docs, WEDNESDAY_LUNCH)

    files = workdir / "accounts"
    files.mkdir(parents=True, exist_ok=True)
    for doc in docs:
        (files / f"{doc['account']}.json").write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    gateway_port = free_udp_port()
    config = StackConfig(
        run_dir=workdir / "run", host=HOST, redis_port=free_port(), sip_port=free_udp_port(),
        media_port=free_udp_port(), rtpengine_port=free_udp_port(), rtp_ports=(44000, 47999),
        operator_gateway=f"{HOST}:{gateway_port}", kamailio_children=children, load=(),
        now=WEDNESDAY_LUNCH, components=("redis", "rtpengine", "media", "kamailio"),
        extra_env={"VOFFICE_CACHE_ACCOUNTS": str(cache_limit)},
    )
    stack = Stack(config)
    echo(f"{accounts} accounts, {len(numbers)} numbers; Kamailio {children} children, config cache {cache_limit} accounts per worker; logs in {workdir}")
    stack.start(timeout=30)
    try:
        t0 = time.perf_counter()
        validated = validate_paths([str(files)])
        if not validated.ok:
            raise ScaleError(f"generated accounts do not validate: {validated.problems[:2]}")
        r = configs.connect(config.redis_url, timeout=60)
        changes, problems = configs.plan_load(r, validated.documents)
        if problems:
            raise ScaleError(f"load refused: {problems[:2]}")
        configs.apply_load(r, changes)
        result.load_seconds = time.perf_counter() - t0
        echo(f"loaded in {result.load_seconds:.1f} s (validate, compile, write, swap)")
        generation = int(r.get("vo:generation") or 0)
        reader = NodeReader(config.run_dir / "store")
        deadline = time.monotonic() + 600
        while (reader.generation() or 0) < generation:
            if time.monotonic() > deadline:
                raise ScaleError("the node store did not catch up with the load within 600 s")
            time.sleep(0.1)
        reader.close()
        result.store_seconds = time.perf_counter() - t0 - result.load_seconds
        echo(f"node store caught up {result.store_seconds:.1f} s after the load")

        order = list(numbers if calls is None else (numbers * (calls // len(numbers) + 1))[:calls])
        random.Random(5).shuffle(order)
        result.calls = len(order)
        inf = workdir / "calls.csv"
        inf.write_text("SEQUENTIAL\n" + "".join(f"{n};{CALLER};\n" for n in order), encoding="ascii")
        uac = workdir / "uac-inf.xml"
        uac.write_text(UAC_XML.read_text().replace("[service]", "[field0]").replace("[caller]", "[field1]"))
        (workdir / "uac").mkdir(exist_ok=True)
        (workdir / "uas").mkdir(exist_ok=True)
        limit = int(len(order) / cps + 30)
        common = ["-i", HOST, "-m", str(len(order)), "-nostdin", "-trace_stat", "-fd", "1", "-trace_shortmsg",
                  "-timeout", f"{limit}s", "-timeout_error", "-recv_timeout", "10000"]
        kamailio_pid = next(p.proc.pid for p in stack.parts if p.name == "kamailio" and p.proc)
        media_pid = next(p.proc.pid for p in stack.parts if p.name == "media1" and p.proc)
        pids = [*descendants(kamailio_pid), media_pid]
        series: dict[int, list[int]] = {pid: [_rss_kib(pid)] for pid in pids}
        done = threading.Event()
        quarter = len(order) / cps / 4

        def sample() -> None:
            for _ in range(3):  # at 25, 50 and 75 % of the calls
                if done.wait(quarter):
                    return
                for pid in pids:
                    series[pid].append(_rss_kib(pid))

        sampler = threading.Thread(target=sample, daemon=True)
        # The gateway may count an INVITE retransmitted after its call ended as one more
        # call (sipp's dead-call handling under load): room for those, or the last few
        # calls find it gone (200,000 calls at 300/s: 6 did, before this).
        uas_args = [*common[:2], "-m", str(len(order) + len(order) // 100 + 100), *common[4:]]
        uas = subprocess.Popen([sipp, "-sf", str(UAS_XML), "-p", str(gateway_port), "-stf", str(workdir / "uas" / "stats.csv"), *uas_args],
                               cwd=workdir / "uas", stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.3)
            sampler.start()
            echo(f"{len(order)} calls at {cps}/s over {len(set(order))} numbers ...")
            subprocess.run([sipp, "-sf", str(uac), "-inf", str(inf), "-p", str(free_udp_port()), "-r", str(cps), "-rp", "1000",
                            "-l", str(max(cps * 2, 50)), "-stf", str(workdir / "uac" / "stats.csv"), *common, f"{HOST}:{config.sip_port}"],
                           cwd=workdir / "uac", stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=limit + 15)
            try:
                uas.wait(timeout=2)  # it expects a few more calls than came: the caller is done
            except subprocess.TimeoutExpired:
                uas.terminate()
        finally:
            done.set()
            if uas.poll() is None:
                uas.kill()
            uas.wait()
        sampler.join()
        result.rss_kib = {pid: [*values, _rss_kib(pid)] for pid, values in series.items()}
        result.pss_kib = sum(_pss_kib(pid) for pid in pids)
        stats = read_stats(workdir / "uac" / "stats.csv")
        result.answered = int(float(stats.get("SuccessfulCall(C)", 0) or 0))
        result.failed = int(float(stats.get("FailedCall(C)", 0) or 0))
        dialled = first_invites(workdir / "uac", sent=True)
        rung = first_invites(workdir / "uas", sent=False)
        for call_id, number in dialled.items():
            phone = rung.get(call_id)
            result.checked += 1
            if phone not in expected.get(number, frozenset()):
                result.wrong.append(f"{number} rang {phone or 'nobody'}, expected {sorted(expected.get(number, ()))}")
    finally:
        stack.stop()

    echo(f"calls: {result.calls}, answered {result.answered}, failed {result.failed}; routes checked {result.checked}, wrong {len(result.wrong)}")
    for line in result.wrong[:5]:
        echo(f"  wrong: {line}")
    echo("Kamailio processes and the media server (last), private memory (RssAnon) MiB at 0 / 25 / 50 / 75 / 100 % of the calls:")
    for pid, values in result.rss_kib.items():
        echo(f"  pid {pid}: " + " ".join(f"{v / 1024:7.1f}" for v in values))
    private = sum(values[-1] for values in result.rss_kib.values()) / 1024
    echo(f"memory of every Kamailio process and the media server together: PSS {result.pss_kib / 1024:.0f} MiB "
         f"(private {private:.0f} MiB; the node store's pages and shared memory counted once) (target < 1024 MiB): "
         f"{'OK' if result.pss_kib < 1024 * 1024 else 'MISSED'}")
    echo("scale run: " + ("OK" if result.ok else "NOT OK"))
    return result
