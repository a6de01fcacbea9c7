"""Several identical Kamailio nodes (docs/cluster.md): DMQ between them, the round-robin
position (`vorr`) and the answered calls (`vocalls`) replicated, one dispatcher set of media
servers probed by every node, one rtpengine per node. Real processes on free loopback ports:
Redis, rtpengine x N, Kamailio x N, media servers, sipp callers and a sipp operator gateway.

What is asserted is what the callers, the gateway and the call records (`voffice:events`)
show; `kamcmd` over each node's ctl socket is read only to wait for DMQ and the dispatcher
and to measure how long they take (the figures docs/cluster.md quotes are printed: -s)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from . import callpath
from .callpath import STACK_TESTS, CallStack, Sipp, dtmf_caller, free_udp_port, operator, short_ring_config
from .conftest import SEED

pytestmark = STACK_TESTS

NUMBER = "+74951234567"
CALLER = "+79031112233"
WEDNESDAY_LUNCH = "2026-11-25T13:30:00+03:00"  # rule r1: the secretary through the gateway, then the menu
WEDNESDAY_MORNING = "2026-11-25T10:00:00+03:00"  # rule r2: the clients group
OPS = ("ivanov", "petrov", "sidorov")
CALL_MAX_SECONDS = 20  # vocalls' autoexpire here: an orphaned answered call's record comes this late
HTABLE_TIMER_S = 5  # kamailio.cfg: htable timer_interval
RATE = 2  # calls per second per node
TM_FR_TIMER_S = 5  # kamailio.cfg: tm fr_timer, how long DMQ's requests are retransmitted


def seed() -> dict[str, Any]:
    return cast(dict[str, Any], json.loads(SEED.read_text(encoding="utf-8")))


wait_for = partial(callpath.wait_for, step=0.2)


def cluster(workdir: Path, now: str, doc: dict[str, Any], nodes: int = 3, with_media: bool = False,
            media_servers: int = 1, **overrides: Any) -> CallStack:
    """A stack of `nodes` Kamailio nodes, each with its SIP, DMQ and rtpengine ports."""
    workdir.mkdir(parents=True, exist_ok=True)
    ports = {"kamailio_nodes": nodes,
             "node_sip_ports": tuple(free_udp_port() for _ in range(nodes)),
             "node_dmq_ports": tuple(free_udp_port() for _ in range(nodes)),
             "node_rtpengine_ports": tuple(free_udp_port() for _ in range(nodes))}
    stack = CallStack(workdir, now, doc, with_media=with_media, media_servers=media_servers,
                      overrides={**ports, **overrides})
    return stack


def sip_ports(stack: CallStack) -> list[int]:
    assert stack.config is not None
    return stack.config.sip_ports()


def kamcmd(stack: CallStack, node: int, *command: str) -> str:
    """An RPC to node `node` (1-based) over its ctl socket; "" when it does not answer."""
    assert stack.config is not None
    try:
        result = subprocess.run(["kamcmd", "-s", f"unix:{stack.config.ctl_socket(node)}", *command],
                                capture_output=True, text=True, timeout=5)
    except subprocess.TimeoutExpired:
        return ""
    return result.stdout if result.returncode == 0 else ""


def dmq_active(stack: CallStack, node: int) -> set[int]:
    """The DMQ ports node `node` knows as active (itself included)."""
    text = kamcmd(stack, node, "dmq.list_nodes")
    return {int(port) for port, status in re.findall(r"port: (\d+)\s+proto: \S+\s+resolved_ip: \S+\s+status: (\w+)", text)
            if status == "active"}


def wait_joined(stack: CallStack, nodes: list[int], timeout: float = 40) -> float:
    """Seconds until each of `nodes` lists every one of `nodes` active in DMQ."""
    assert stack.config is not None
    dmq = stack.config.dmq_ports()
    want = {dmq[n - 1] for n in nodes}
    start = time.monotonic()
    assert wait_for(lambda: all(want <= dmq_active(stack, n) for n in nodes), timeout), \
        {n: dmq_active(stack, n) for n in nodes}
    return time.monotonic() - start


def node_pids(pid: int) -> list[int]:
    """A Kamailio node: its main process and every process under it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo += children.get(current, [])
    return out


def kill_node(stack: CallStack, name: str) -> None:
    """kill -9 a whole node: Kamailio's workers outlive a SIGKILLed main process (and keep
    its socket), so every process of it at once, as a crashed machine would."""
    proc = stack.part(name).proc
    assert proc is not None
    for pid in node_pids(proc.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=10)


def load_caller(workdir: Path, name: str, port: int, calls: int, rate: int = RATE, talk_ms: int = 300) -> Sipp:
    """`calls` callers at `rate` calls/s to the node on `port` (the lunch secretary answers)."""
    return Sipp(workdir, name, "caller.xml", free_udp_port(),
                ["-key", "caller", CALLER, "-key", "talk", str(talk_ms), "-s", NUMBER, "-r", str(rate), "-l", "40",
                 f"127.0.0.1:{port}"], calls)


def blocks(sipp: Sipp, direction: str) -> Iterator[str]:
    for block in re.split(r"-{20,}.*\n", sipp.messages()):
        if direction in block:
            yield block


def call_ids(sipp: Sipp) -> set[str]:
    """The Call-IDs of the INVITEs a caller sent."""
    out = set()
    for block in blocks(sipp, "message sent"):
        if re.search(r"^\s*INVITE sip:", block, re.M):
            found = re.search(r"^\s*Call-ID: (.*)$", block, re.M)
            if found:
                out.add(found.group(1).strip())
    return out


def ok_call_ids(sipp: Sipp, cseq: str) -> set[str]:
    """The Call-IDs of a caller's calls whose request `cseq` ("1 INVITE", "2 BYE") got a 200."""
    out = set()
    for block in blocks(sipp, "message received"):
        if re.search(r"^\s*SIP/2.0 200", block, re.M) and re.search(rf"^\s*CSeq: {cseq}", block, re.M):
            found = re.search(r"^\s*Call-ID: (.*)$", block, re.M)
            if found:
                out.add(found.group(1).strip())
    return out


def answered_call_ids(sipp: Sipp) -> set[str]:
    """The Call-IDs of a caller's calls that got a 200 to their INVITE."""
    return ok_call_ids(sipp, "1 INVITE")


def completed_call_ids(sipp: Sipp) -> set[str]:
    """The Call-IDs of a caller's calls whose BYE got its 200."""
    return ok_call_ids(sipp, "2 BYE")


def records(stack: CallStack) -> list[dict[str, str]]:
    return [e for _id, e in stack.redis().xrange("voffice:events") if e["type"] == "call"]


def wait_records(stack: CallStack, wanted: set[str], timeout: float) -> list[dict[str, str]]:
    """The call records once every Call-ID in `wanted` has one, plus 2 s for any second one."""
    wait_for(lambda: wanted <= {r["sip_call_id"] for r in records(stack)}, timeout, step=0.5)
    time.sleep(2)
    return records(stack)


def figures(**measured: Any) -> None:
    print("\nMEASURED " + json.dumps(measured))


# --- 3 nodes under load; one node killed, then back -------------------------------------


@pytest.fixture(scope="module")
def lunch_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CallStack]:
    stack = cluster(tmp_path_factory.mktemp("lunch-cluster"), WEDNESDAY_LUNCH, short_ring_config(seed()),
                    call_max_seconds=CALL_MAX_SECONDS)
    with stack:
        figures(dmq_joined_after_start_s=round(wait_joined(stack, [1, 2, 3]), 1))
        yield stack


def test_calls_spread_over_three_nodes_each_answered_call_one_record(tmp_path: Path, lunch_cluster: CallStack) -> None:
    """Three sipp callers, one per node, 2 calls/s each for 25 s: every call is answered by
    the secretary through the one operator gateway, and has exactly one call record."""
    stack = lunch_cluster
    gateway = operator(tmp_path, "gateway", "answer", stack.gateway_port, calls=100000)
    gateway.argv[gateway.argv.index("-timeout") + 1] = "120"
    gateway.start()
    callers = [load_caller(tmp_path, f"caller{n + 1}", port, 50).start() for n, port in enumerate(sip_ports(stack))]
    try:
        codes = [c.wait(120) for c in callers]
    finally:
        gateway.stop()
    assert codes == [0, 0, 0]
    sent = [call_ids(c) for c in callers]
    answered = set().union(*(answered_call_ids(c) for c in callers))
    assert [len(s) for s in sent] == [50, 50, 50]
    assert answered == set().union(*sent)
    found = wait_records(stack, answered, 30)
    counts = Counter(r["sip_call_id"] for r in found)
    assert set(counts) == answered and set(counts.values()) == {1}
    assert {(r["status"], r["answered_by"], r["hung_up_by"]) for r in found} == {("answered", "smirnova", "caller")}


def test_status_shows_every_node_and_its_dmq_peers(lunch_cluster: CallStack) -> None:
    from routing.stack.local import status

    assert lunch_cluster.config is not None
    rows = {name: (ok, detail) for name, ok, detail in status(lunch_cluster.config)}
    dmq = lunch_cluster.config.dmq_ports()
    for name in ("kamailio", "kamailio2", "kamailio3", "rtpengine", "rtpengine2", "rtpengine3"):
        assert rows[name][0], (name, rows[name])
    for name in ("kamailio/dmq", "kamailio2/dmq", "kamailio3/dmq"):
        ok, detail = rows[name]
        assert ok and all(f"127.0.0.1:{port} active" in detail for port in dmq), detail


def kdmq_htable_set(port: int, key: str, value: str) -> str | None:
    """A KDMQ request as htable's replication sends it (set one cell of `vorr`), to `port`;
    the first line of the reply, or None."""
    body = json.dumps({"action": 1, "htname": "vorr", "cname": key, "type": 2, "strval": value, "mode": 0})
    tag = os.urandom(4).hex()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(2)
        local = sock.getsockname()[1]
        sock.sendto((f"KDMQ sip:htable@127.0.0.1:{port} SIP/2.0\r\n"
                     f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{tag}\r\n"
                     f"From: <sip:127.0.0.1:{local}>;tag={tag}\r\nTo: <sip:htable@127.0.0.1:{port}>\r\n"
                     f"Call-ID: kdmq-{tag}\r\nCSeq: 1 KDMQ\r\nMax-Forwards: 1\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode(),
                    ("127.0.0.1", port))
        try:
            return sock.recv(65535).decode(errors="replace").split("\r\n", 1)[0]
        except OSError:
            return None


def test_kdmq_is_taken_on_the_dmq_socket_only(lunch_cluster: CallStack) -> None:
    """A KDMQ request to a node's SIP port gets no answer and changes nothing; on the DMQ
    port the dmq module answers it (and, from a node it does not know, drops it here)."""
    stack = lunch_cluster
    assert stack.config is not None
    key = f"test-{os.urandom(3).hex()}"
    assert kdmq_htable_set(sip_ports(stack)[0], key, "from-the-sip-port") is None
    assert "from-the-sip-port" not in kamcmd(stack, 1, "htable.get", "vorr", key)
    reply = kdmq_htable_set(stack.config.dmq_ports()[0], key, "from-the-dmq-port")
    figures(kdmq_from_an_unknown_address_on_the_dmq_port=reply,
            cell_set=("from-the-dmq-port" in kamcmd(stack, 1, "htable.get", "vorr", key)))
    assert reply is not None and reply.startswith("SIP/2.0 ")


def test_a_bye_sent_to_another_node_still_makes_one_record(tmp_path: Path, lunch_cluster: CallStack) -> None:
    """A caller whose BYE reaches node 2 though node 1 record-routed the call: node 2 relays it
    to node 1 along the Route set, the call ends, and its record comes out once."""
    from .stack_peer import StackCaller

    stack = lunch_cluster
    first, second = sip_ports(stack)[:2]
    before = {r["sip_call_id"] for r in records(stack)}
    gateway = operator(tmp_path, "gateway", "answer", stack.gateway_port).start()
    peer = StackCaller(("127.0.0.1", first), CALLER)
    try:
        peer.dial(NUMBER)
        answer = peer.final(15)
        assert answer.status == 200
        peer.ack(answer)
        time.sleep(0.5)
        peer.server = ("127.0.0.1", second)
        assert peer.bye().status == 200
        assert gateway.wait(20) == 0  # the gateway got the BYE
    finally:
        peer.close()
        gateway.stop()
    found = [r for r in wait_records(stack, {peer.call_id}, 15) if r["sip_call_id"] not in before]
    assert [(r["sip_call_id"], r["status"], r["hung_up_by"]) for r in found] == [(peer.call_id, "answered", "caller")]


def test_a_node_killed_mid_load_then_back(tmp_path: Path, lunch_cluster: CallStack) -> None:
    """kill -9 node 3 (every process of it) 10 s into a load on all three (node 3's callers
    talk 4 s, so some are mid-call): every call sent to nodes 1 and 2 succeeds; every answered call, node 3's included, has exactly one record
    (node 3's answered calls in progress, whose BYE is lost with it, when their replicated
    entries expire on the survivors: one survivor emits). Node 3 started again rejoins DMQ
    and takes calls."""
    stack = lunch_cluster
    before = {r["sip_call_id"] for r in records(stack)}
    gateway = operator(tmp_path, "gateway", "answer", stack.gateway_port, calls=100000)
    gateway.argv[gateway.argv.index("-timeout") + 1] = "120"
    gateway.start()
    callers = [load_caller(tmp_path, f"caller{n + 1}", port, 50, talk_ms=4000 if n == 2 else 300).start()
               for n, port in enumerate(sip_ports(stack))]
    try:
        time.sleep(10)
        kill_node(stack, "kamailio3")
        killed_wall = time.time()
        codes = [c.wait(120) for c in callers[:2]]
        callers[2].stop()
    finally:
        gateway.stop()
    assert codes == [0, 0], "a call sent to a surviving node failed"
    survivors_calls = call_ids(callers[0]) | call_ids(callers[1])
    assert len(survivors_calls) == 100
    answered = set().union(*(answered_call_ids(c) for c in callers))
    assert survivors_calls <= answered
    node3_sent, node3_answered = call_ids(callers[2]), answered_call_ids(callers[2])
    found = [r for r in wait_records(stack, answered, CALL_MAX_SECONDS + 2 * HTABLE_TIMER_S + 20) if r["sip_call_id"] not in before]
    counts = Counter(r["sip_call_id"] for r in found)
    assert answered <= set(counts), f"no record for {sorted(answered - set(counts))[:5]}"
    assert set(counts.values()) == {1}, [c for c, n in counts.items() if n > 1][:5]
    orphans = {r["sip_call_id"]: r for r in found if r["note"].startswith("no BYE seen")}
    node3_completed = completed_call_ids(callers[2])
    assert node3_answered - node3_completed, "no call of node 3 was in progress when it died"
    assert node3_answered - node3_completed <= set(orphans)  # their BYE died with node 3: recorded on expiry
    assert {r["status"] for r in orphans.values()} == {"answered"}
    figures(node3_calls_sent=len(node3_sent), node3_calls_completed=len(node3_completed),
            node3_calls_cut_mid_talk=len(node3_answered - node3_completed),
            node3_calls_never_answered=len(node3_sent - node3_answered),
            orphaned_answered_calls_recorded_on_expiry=len(orphans),
            orphan_records_emitted_after_kill_s=sorted(round(float(r["ended_at"]) - killed_wall, 1) for r in orphans.values()),
            survivor_calls=len(survivors_calls), survivor_calls_failed=0)

    started = time.monotonic()
    stack.restart("kamailio3", timeout=30)
    joined = wait_joined(stack, [1, 2, 3])
    figures(node3_restart_to_dmq_joined_s=round(time.monotonic() - started, 1), of_which_waiting_for_dmq_s=round(joined, 1))
    gateway = operator(tmp_path / "after", "gateway", "answer", stack.gateway_port, calls=5).start()
    try:
        again = load_caller(tmp_path / "after", "caller3", sip_ports(stack)[2], 5).start()
        assert again.wait(60) == 0
    finally:
        gateway.stop()


def test_a_node_back_before_its_cut_calls_expire_records_them_once(tmp_path: Path, lunch_cluster: CallStack) -> None:
    """Node 3 killed with calls mid-talk and started again at once: it pulls the answered
    calls back from its peers (dmq_init_sync keeps their expiry), owns them again, and each
    gets exactly one record when it expires; the survivors, seeing their owner alive, emit
    none."""
    stack = lunch_cluster
    wait_joined(stack, [1, 2, 3])
    before = {r["sip_call_id"] for r in records(stack)}
    gateway = operator(tmp_path, "gateway", "answer", stack.gateway_port, calls=100000)
    gateway.start()
    callers = load_caller(tmp_path, "caller3", sip_ports(stack)[2], 8, talk_ms=30000).start()
    try:
        wait_for(lambda: len(answered_call_ids(callers)) >= 6, 20)
        kill_node(stack, "kamailio3")
        killed_wall = time.time()
        callers.stop()
        stack.restart("kamailio3", timeout=30)
        wait_joined(stack, [1, 2, 3])
    finally:
        gateway.stop()
    cut = answered_call_ids(callers) - completed_call_ids(callers)
    assert len(cut) >= 6
    found = [r for r in wait_records(stack, cut, CALL_MAX_SECONDS + 2 * HTABLE_TIMER_S + 20) if r["sip_call_id"] not in before]
    counts = Counter(r["sip_call_id"] for r in found)
    assert cut <= set(counts) and set(counts.values()) == {1}, counts
    assert {r["note"][:11] for r in found if r["sip_call_id"] in cut} == {"no BYE seen"}
    figures(cut_calls=len(cut), their_records_after_kill_s=sorted(round(float(r["ended_at"]) - killed_wall, 1)
                                                                  for r in found if r["sip_call_id"] in cut))


def shipper_pids(stack: CallStack, node: int) -> list[int]:
    """The processes of node `node` that ship its call records (rtimer voevents; all of the
    node's rtimer processes if their names do not say which)."""
    text = kamcmd(stack, node, "core.psx")
    procs = [(int(pid), desc) for pid, desc in re.findall(r"PID: (\d+)\s+DSC: ([^\n]*)", text)]
    named = [pid for pid, desc in procs if "voevents" in desc]
    return named or [pid for pid, desc in procs if "RTIMER" in desc.upper()]


def test_a_node_killed_before_it_shipped_its_ended_calls_records_loses_none(tmp_path: Path, lunch_cluster: CallStack) -> None:
    """The window the multi-node failover test found: node 3 ends calls (their records wait
    in its queue up to 100 ms) and is killed before shipping them. Made wide on purpose:
    node 3's shipper is frozen (SIGSTOP), 3 calls end on node 3, then node 3 is killed. Each
    call still gets exactly one record: every node kept the ended call's record, and a
    survivor sends it when its copy expires with the owner dead."""
    stack = lunch_cluster
    wait_joined(stack, [1, 2, 3])
    before = {r["sip_call_id"] for r in records(stack)}
    pids = shipper_pids(stack, 3)
    assert pids, kamcmd(stack, 3, "core.psx")
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    gateway = operator(tmp_path, "gateway", "answer", stack.gateway_port, calls=3).start()
    try:
        callers = load_caller(tmp_path, "caller3", sip_ports(stack)[2], 3).start()
        assert callers.wait(60) == 0
    finally:
        gateway.stop()
    ended = completed_call_ids(callers)
    assert len(ended) == 3
    time.sleep(0.5)  # the removals of their answered entries replicated; nothing shipped
    assert not ended & {r["sip_call_id"] for r in records(stack)}, "node 3's shipper was not frozen"
    kill_node(stack, "kamailio3")
    killed = time.monotonic()
    found = [r for r in wait_records(stack, ended, 60) if r["sip_call_id"] not in before]
    counts = Counter(r["sip_call_id"] for r in found)
    assert ended <= set(counts) and {counts[c] for c in ended} == {1}, counts
    assert {r["status"] for r in found if r["sip_call_id"] in ended} == {"answered"}
    figures(ended_calls_unshipped_at_kill=len(ended), recorded_by_a_survivor_after_s=round(time.monotonic() - killed, 1))
    stack.restart("kamailio3", timeout=30)
    wait_joined(stack, [1, 2, 3])


# --- the round-robin position, replicated and synced to a restarted node -----------------


def invites(sipp: Sipp) -> bool:
    return any(line.startswith("INVITE ") for line in sipp.received())


def test_round_robin_position_is_shared_and_synced_to_a_restarted_node(tmp_path: Path) -> None:
    """The clients group as round_robin, each operator on a sipp of its own. Node 3 is down
    (kill -9) while node 1 takes a call (ivanov answers) and node 2 the next (petrov: node 2
    saw node 1's position). Node 3 started again pulls the table from a peer
    (dmq_init_sync): its first call rings sidorov, not ivanov as a fresh table would."""
    ports = {name: free_udp_port() for name in OPS}
    doc = short_ring_config(seed(), ports)
    next(s for s in doc["scenarios"] if s["id"] == "workday")["root"] = {"operation": "to-clients"}
    doc["groups"][0]["strategy"] = "round_robin"
    stack = cluster(tmp_path / "stack", WEDNESDAY_MORNING, doc)
    with stack:
        wait_joined(stack, [1, 2, 3])
        kill_node(stack, "kamailio3")
        node_ports = sip_ports(stack)
        rung: list[str] = []

        def call(n: int, node: int) -> None:
            workdir = tmp_path / f"call{n}"
            sipps = {name: operator(workdir, name, "answer", ports[name]).start() for name in OPS}
            try:
                assert load_caller(workdir, "caller", node_ports[node - 1], 1).start().wait(30) == 0
            finally:
                for sipp in sipps.values():
                    sipp.stop()
            rung.append(",".join(name for name, sipp in sipps.items() if invites(sipp)))

        call(0, 1)
        call(1, 2)
        # DMQ replicates through tm: an update sent to the dead node 3 is retransmitted to its
        # address until tm's fr_timer (5 s) gives up, and a node 3 started within that time
        # takes the stale retransmission after its sync (seen here: a restart 3 s after the
        # first call left node 3 at ivanov). docs/cluster.md, "Not covered".
        time.sleep(TM_FR_TIMER_S + 1)
        started = time.monotonic()
        stack.restart("kamailio3", timeout=30)
        wait_joined(stack, [1, 2, 3])
        synced = wait_for(lambda: "petrov" in kamcmd(stack, 3, "htable.get", "vorr", "berry-demo:clients"), 20)
        figures(vorr_synced_after_restart_s=round(time.monotonic() - started, 1))
        assert synced, kamcmd(stack, 3, "htable.dump", "vorr")
        positions = {n: kamcmd(stack, n, "htable.get", "vorr", "berry-demo:clients").split() for n in (1, 2, 3)}
        call(2, 3)
        call(3, 1)
    assert rung == ["ivanov", "petrov", "sidorov", "ivanov"], positions


# --- one dispatcher set of media servers for every node ---------------------------------


def ds_flags(stack: CallStack, node: int, port: int) -> str:
    """The dispatcher's flags for the media server on `port` as node `node` sees it (AP
    active, IP inactive and probing, ...)."""
    text = kamcmd(stack, node, "dispatcher.list")
    found = re.search(rf"URI: sip:127\.0\.0\.1:{port}\s+FLAGS: (\w+)", text)
    return found.group(1) if found else ""


def test_a_media_server_gone_silent_is_skipped_by_every_node(tmp_path: Path) -> None:
    """Two nodes, two media servers, one dispatcher list. media1 is stopped (SIGSTOP: its
    address still there, answering nothing); each node's OPTIONS probe marks it inactive,
    and the next voicemail call, through either node, succeeds and is served by media2 (its
    recording, named by the call record's call_id, is in media2's data dir, none in media1's)."""
    doc = short_ring_config(seed())
    for sound in doc["sounds"]:
        if sound["id"] == "vm-prompt":
            sound["text"] = "Оставьте сообщение."
    stack = cluster(tmp_path / "stack", WEDNESDAY_LUNCH, doc, nodes=2, with_media=True, media_servers=2)
    with stack:
        assert stack.config is not None
        wait_joined(stack, [1, 2])
        media1, media2 = stack.config.media_ports()
        assert wait_for(lambda: all(ds_flags(stack, n, p).startswith("A") for n in (1, 2) for p in (media1, media2)), 20)
        victim = stack.part("media1").proc
        assert victim is not None
        victim.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            assert wait_for(lambda: all(ds_flags(stack, n, media1).startswith("I") for n in (1, 2)), 30), \
                [ds_flags(stack, n, media1) for n in (1, 2)]
            figures(media_server_marked_inactive_by_both_nodes_s=round(time.monotonic() - stopped, 1))
            gateway = operator(tmp_path, "gateway", "busy", stack.gateway_port, calls=2).start()
            try:
                for node, port in enumerate(sip_ports(stack), start=1):
                    via = cast(CallStack, SimpleNamespace(sip_port=port))  # dtmf_caller reads only its sip_port
                    call = dtmf_caller(tmp_path, via, NUMBER, CALLER, "1", name=f"caller{node}", message_after_ms=500,
                                       talk_ms=2500).start()
                    assert call.wait(60) == 0
            finally:
                gateway.stop()
            calls = wait_for(lambda: [r for r in records(stack) if r["status"] == "voicemail"][:2]
                             if len([r for r in records(stack) if r["status"] == "voicemail"]) >= 2 else None, 20)
            assert calls, [(r["status"], r["note"]) for r in records(stack)]
            served_by = {name: {json.loads(p.read_text())["call_id"] for p in (stack.config.run_dir / folder).rglob("*.wav.json")}
                         for name, folder in (("media1", "media"), ("media2", "media2"))}
            assert {r["call_id"] for r in calls} <= served_by["media2"], served_by
            assert not served_by["media1"]
        finally:
            victim.send_signal(signal.SIGCONT)

