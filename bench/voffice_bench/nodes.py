"""`voffice bench nodes`: what several Kamailio nodes (DMQ between them) cost per call,
against one node, in the same run on the same machine.

For each node count (default 1, then 3) one stack is started: N identical Kamailio nodes, one
rtpengine each, one Redis, the seed loaded, the clock at Wednesday lunch (the secretary is rung
through the operator gateway). At each rate, N sipp callers (one per node, the rate split
between them) call the seed's number and one sipp gateway answers. Printed per step: calls
answered of attempted, failed, and Kamailio's CPU per call, all nodes together and per node,
so the DMQ replication's price (vorr, vocalls and its owner heartbeats) shows as the
difference between the 1-node and the 3-node lines. On one 2-core machine the nodes share
the cores: the highest zero-failure rate says what one machine holds, not what 3 machines
would.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from routing.stack.local import SEED, Stack, StackConfig, node_name
from routing.stack.ports import free_port, free_udp_port
from voffice_bench.sip import (
    CALLER,
    HOST,
    NUMBER,
    TALK_MS,
    UAC_XML,
    UAS_XML,
    WEDNESDAY_LUNCH,
    BenchError,
    _count,
    _stop,
    cpu_seconds,
    descendants,
    read_stats,
    rtp_port_range,
    sipp_binary,
)


@dataclass
class NodesStep:
    nodes: int
    cps: int
    calls: int
    attempted: int = 0
    answered: int = 0
    failed: int = 0
    cpu_ms_per_call: float | None = None  # every node's Kamailio together
    node_cpu_ms: list[float] = field(default_factory=list)  # per node, per call it carried

    @property
    def held(self) -> bool:
        return self.attempted == self.calls and self.answered == self.calls and self.failed == 0

    def line(self) -> str:
        cpu = f"{self.cpu_ms_per_call:.2f}" if self.cpu_ms_per_call is not None else "-"
        per_node = " / ".join(f"{v:.2f}" for v in self.node_cpu_ms) or "-"
        return (f"{self.nodes} node(s) {self.cps:>5}/s  answered {self.answered:>6}/{self.calls:<6} failed {self.failed:>4}  "
                f"Kamailio CPU {cpu:>6} ms/call (per node, of its calls: {per_node})  {'held' if self.held else 'NOT held'}")


def start_nodes(nodes: int, workdir: Path, children: int, index: int) -> Stack:
    gateway_port = free_udp_port()
    config = StackConfig(
        run_dir=workdir / f"nodes{nodes}" / "run",
        host=HOST,
        redis_port=free_port(),
        sip_port=free_udp_port(),
        rtpengine_port=free_udp_port(),
        rtp_ports=rtp_port_range(index),
        operator_gateway=f"{HOST}:{gateway_port}",
        kamailio_children=children,
        load=(str(SEED),),
        now=WEDNESDAY_LUNCH,
        components=("redis", "rtpengine", "kamailio"),
        kamailio_nodes=nodes,
        node_sip_ports=tuple(free_udp_port() for _ in range(nodes)),
        node_rtpengine_ports=tuple(free_udp_port() for _ in range(nodes)),
        node_dmq_ports=tuple(free_udp_port() for _ in range(nodes)),
    )
    stack = Stack(config)
    stack.start()
    return stack


def _kamailio_pids(stack: Stack, node: int) -> list[int]:
    for part in stack.parts:
        if part.name == node_name("kamailio", node) and part.proc is not None:
            return descendants(part.proc.pid)
    raise BenchError(f"kamailio node {node} is not running")


def run_nodes_step(stack: Stack, cps: int, seconds: float, workdir: Path) -> NodesStep:
    """`cps * seconds` calls, split evenly over the nodes; every process bounded in time."""
    config = stack.config
    nodes = config.kamailio_nodes
    per_node = max(1, round(cps * seconds / nodes))
    step = NodesStep(nodes, cps, per_node * nodes)
    folder = workdir / f"nodes{nodes}" / f"cps{cps}"
    sipp = sipp_binary()
    limit = int(seconds + TALK_MS / 1000 + 20)
    common = ["-i", HOST, "-nostdin", "-trace_stat", "-fd", "1", "-timeout", f"{limit}s", "-timeout_error", "-recv_timeout", "10000"]
    gateway_port = int(config.operator_gateway.rsplit(":", 1)[1])
    (folder / "uas").mkdir(parents=True, exist_ok=True)
    uas = subprocess.Popen([sipp, "-sf", str(UAS_XML), "-p", str(gateway_port), "-m", str(step.calls), "-stf",
                            str(folder / "uas" / "stats.csv"), *common],
                           cwd=folder / "uas", stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    callers: list[subprocess.Popen[bytes]] = []
    pids = [_kamailio_pids(stack, n + 1) for n in range(nodes)]
    try:
        time.sleep(0.3)
        before = [cpu_seconds(p) for p in pids]
        for n, sip_port in enumerate(config.sip_ports()):
            (folder / f"uac{n + 1}").mkdir(parents=True, exist_ok=True)
            rate = max(1, round(cps / nodes))
            callers.append(subprocess.Popen(
                [sipp, "-sf", str(UAC_XML), "-p", str(free_udp_port()), "-m", str(per_node), "-r", str(rate), "-rp", "1000",
                 "-l", str(per_node), "-s", NUMBER, "-key", "caller", CALLER, "-stf", str(folder / f"uac{n + 1}" / "stats.csv"),
                 *common, f"{HOST}:{sip_port}"],
                cwd=folder / f"uac{n + 1}", stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for proc in callers:
            try:
                proc.wait(timeout=limit + 10)
            except subprocess.TimeoutExpired:
                _stop(proc)
        try:
            uas.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        after = [cpu_seconds(p) for p in pids]
    finally:
        for proc in [*callers, uas]:
            _stop(proc)
    for n in range(nodes):
        stats = read_stats(folder / f"uac{n + 1}" / "stats.csv")
        attempted, answered = _count(stats, "OutgoingCall(C)"), _count(stats, "SuccessfulCall(C)")
        step.attempted += attempted
        step.answered += answered
        step.failed += _count(stats, "FailedCall(C)")
        if answered:
            step.node_cpu_ms.append((after[n] - before[n]) * 1000 / answered)
    if step.answered:
        step.cpu_ms_per_call = (sum(after) - sum(before)) * 1000 / step.answered
    for part in stack.parts:
        if part.proc is not None and part.proc.poll() is not None:
            raise BenchError(f"{part.name} exited with code {part.proc.returncode}; see {config.run_dir}")
    return step


def run_nodes_bench(node_counts: Sequence[int], rates: Sequence[int], seconds: float, workdir: Path,
                    echo: Callable[[str], None], children: int = 2) -> dict[int, list[NodesStep]]:
    results: dict[int, list[NodesStep]] = {}
    for index, nodes in enumerate(node_counts):
        stack = start_nodes(nodes, workdir, children, index)
        try:
            echo(f"--- {nodes} Kamailio node(s), {children} children each, one rtpengine each, DMQ {'on' if nodes > 1 else 'off'}")
            steps = results.setdefault(nodes, [])
            for cps in rates:
                step = run_nodes_step(stack, cps, seconds, workdir)
                steps.append(step)
                echo(step.line())
                if not step.held:
                    break
        finally:
            stack.stop()
    echo("--- summary (same run, same machine)")
    for nodes, steps in results.items():
        held = [s for s in steps if s.held]
        best = max(held, key=lambda s: s.cps, default=None)
        cpu = f"{best.cpu_ms_per_call:.2f} ms/call" if best and best.cpu_ms_per_call is not None else "-"
        echo(f"{nodes} node(s): highest zero-failure rate {best.cps if best else 0}/s; Kamailio CPU at it {cpu} (all nodes)")
    if len(results) > 1:
        first, last = min(results), max(results)
        common = {s.cps for s in results[first] if s.held} & {s.cps for s in results[last] if s.held}
        if common:
            cps = max(common)
            one = next(s for s in results[first] if s.cps == cps).cpu_ms_per_call
            many = next(s for s in results[last] if s.cps == cps).cpu_ms_per_call
            if one and many:
                echo(f"at {cps}/s, {last} nodes cost {many / one:.2f}x the CPU per call of {first} (DMQ replication and "
                     f"{last} sets of timers, on the same cores)")
    return results
