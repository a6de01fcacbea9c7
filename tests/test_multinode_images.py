"""docker/compose.multinode.yaml: 3 Kamailio nodes (DMQ), one rtpengine each, 2 media servers,
Redis master + 2 replicas + 3 sentinels, PostgreSQL, history writer, notifier, all healthy and
unprivileged; then failures, with sipp on the host calling the nodes and a sipp operator
gateway on the host answering (the seed's lunch rule: the secretary through the gateway):

- the Redis master killed (-9): Sentinel promotes a replica, calls keep routing, a load made
  after the failover is what every node's next calls get, no record lost;
- a media server cut off the network (iptables on the host, for its address on the bridge):
  every node's dispatcher marks it inactive, the next voicemails go to the other one;
- a node's rtpengine killed: what that node's calls get (docs/deployment.md);
- a Kamailio node killed (-9): calls to the other nodes all succeed, every answered call has
  exactly one record (in PostgreSQL); started again, it rejoins DMQ and takes calls.

What is asserted is what sipp, the gateway and the call records show; `kamcmd` and the
sentinels are read to wait and to measure (the figures docs/deployment.md quotes: -s prints
each test's MEASURED line). The compose project has a name of its own and is always taken
down with its volumes. Images: `make images` (as tests/test_images.py), cached when built.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from routing.stack.ports import free_udp_port

from . import callpath
from .callpath import Sipp, operator
from .test_images import Stack, images, run  # noqa: F401  (images: a fixture)
from .test_nodes import answered_call_ids, call_ids, completed_call_ids

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker" / "compose.multinode.yaml"
PREFIX = "172.31.248"  # the test's own network (test_images uses .249, the file's default is .241)
HOST = f"{PREFIX}.1"  # the host on the bridge: the callers and the operator gateway
GATEWAY_PORT = 5080
NODES = {1: f"{PREFIX}.41", 2: f"{PREFIX}.42", 3: f"{PREFIX}.43"}
MEDIA = {"media-1": f"{PREFIX}.31", "media-2": f"{PREFIX}.32"}
REDIS = {"redis-1": f"{PREFIX}.10", "redis-2": f"{PREFIX}.11", "redis-3": f"{PREFIX}.12"}
CTL = "unix:/run/voffice/kamailio.ctl"
NUMBER = "+74951234567"
CALLER = "+79031112233"
WEDNESDAY_LUNCH = "2026-11-25T13:30:00+03:00"  # rule r1: the secretary (smirnova) through the gateway, then the menu
SECRETARY = "+79161230004"
CALL_MAX_SECONDS = 20  # an answered call whose BYE died with its node is recorded this late (+ htable's 5 s timer)
LONG_RUNNING = {"redis-1": "redis", "redis-2": "redis", "redis-3": "redis",
                "sentinel-1": "redis", "sentinel-2": "redis", "sentinel-3": "redis",
                "postgres": "postgres", "rtpengine-1": "rtpengine", "rtpengine-2": "rtpengine", "rtpengine-3": "rtpengine",
                "media-1": "voffice", "media-2": "voffice", "kamailio-1": "kamailio", "kamailio-2": "kamailio",
                "kamailio-3": "kamailio", "history": "voffice", "notifier": "voffice"}
ONE_SHOTS = ("db-upgrade", "loader")
HEALTHY_WITHIN = 240.0
RATE = 3  # calls per second per node


wait_for = partial(callpath.wait_for, step=0.3)  # each poll runs docker exec


def figures(**measured: Any) -> None:
    print("\nMEASURED " + json.dumps(measured))


class Cluster(Stack):
    log_tail = 30

    def __init__(self, project: str) -> None:
        super().__init__(project, COMPOSE, {
            "VO_NET_PREFIX": PREFIX,
            "VOFFICE_OPERATOR_GATEWAY": f"{HOST}:{GATEWAY_PORT}",
            "VOFFICE_TRUSTED_TRUNKS": HOST,
            "VOFFICE_NOW": WEDNESDAY_LUNCH,
            "VOFFICE_NOW_AT": f"{time.time():.3f}",
            "VO_CALL_MAX_SECONDS": str(CALL_MAX_SECONDS),
        })
        self.dropped: list[list[str]] = []  # iptables rules to delete at the end

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(["docker", *args], timeout=60, check=check)

    def exec(self, service: str, *argv: str, check: bool = True, timeout: float = 30) -> str:
        return run(["docker", "exec", self.container(service), *argv], timeout=timeout, check=check).stdout

    def kamcmd(self, node: int, *command: str) -> str:
        """An RPC to node `node`; "" when it does not answer (a dead node)."""
        try:
            result = run(["docker", "exec", self.container(f"kamailio-{node}"), "kamcmd", "-s", CTL, *command],
                         timeout=10, check=False)
        except subprocess.TimeoutExpired:
            return ""
        return result.stdout if result.returncode == 0 else ""

    def dmq_active(self, node: int) -> set[str]:
        text = self.kamcmd(node, "dmq.list_nodes")
        return {host for host, status in re.findall(r"host: (\S+)\s+port: \d+\s+.*?status: (\w+)", text, re.S) if status == "active"}

    def media_flags(self, node: int) -> dict[str, str]:
        text = self.kamcmd(node, "dispatcher.list")
        return {uri.split(":")[1]: flags for uri, flags in re.findall(r"URI: (sip:\S+)\s+FLAGS: (\w+)", text)}

    def master(self, sentinel: str = "sentinel-1") -> str:
        out = self.exec(sentinel, "redis-cli", "-p", "26379", "--raw", "sentinel", "get-master-addr-by-name", "voffice", check=False)
        return out.split()[0] if out.split() else ""

    def records(self) -> Counter[str]:
        """How many rows PostgreSQL holds for each SIP Call-ID."""
        out = self.exec("postgres", "psql", "-h", "127.0.0.1", "-p", "5479", "-U", "voffice", "-d", "voffice", "-tA",
                        "-c", "SELECT sip_call_id FROM calls")
        return Counter(out.split())

    def rows(self) -> list[dict[str, str]]:
        out = self.exec("history", "voffice", "calls", "berry-demo", "--csv", "--limit", "100000", timeout=60)
        return list(csv.DictReader(io.StringIO(out)))


@pytest.fixture(scope="module")
def cluster(images: None) -> Iterator[Cluster]:  # noqa: F811
    stack = Cluster(f"voffice-mn-{os.getpid()}")
    try:
        started = time.monotonic()
        healthy = stack.up(LONG_RUNNING, ONE_SHOTS, HEALTHY_WITHIN)
        assert wait_for(lambda: all(stack.dmq_active(n) == set(NODES.values()) for n in NODES), 30), \
            {n: stack.dmq_active(n) for n in NODES}
        figures(compose_up_to_healthy_s=round(healthy, 1), to_dmq_joined_s=round(time.monotonic() - started, 1))
        yield stack
    finally:
        for rule in stack.dropped:
            run(["iptables", "-D", *rule], timeout=30, check=False)
        stack.compose("down", "-v", "--remove-orphans", "-t", "3", timeout=180, check=False)


def on_host(sipp: Sipp) -> Sipp:
    """sipp bound to the host's address on the bridge (callpath binds loopback)."""
    sipp.argv[sipp.argv.index("-i") + 1] = HOST
    return sipp


def gateway(workdir: Path, behaviour: str = "answer", calls: int = 100000) -> Sipp:
    gw = on_host(operator(workdir, "gateway", behaviour, GATEWAY_PORT, calls=calls))
    gw.argv[gw.argv.index("-timeout") + 1] = "300"
    return gw.start()


def calls_answered(workdir: Path, node: int, calls: int) -> Sipp:
    """`calls` lunch calls at 2/s to node `node`, the gateway answering; every one succeeds."""
    gw = gateway(workdir)
    try:
        sipp = load_caller(workdir, node, calls, rate=2)
        assert sipp.wait(60) == 0
    finally:
        gw.stop()
    return sipp


def load_caller(workdir: Path, node: int, calls: int, rate: int = RATE, talk_ms: int = 300, timeout_s: int = 60) -> Sipp:
    """`calls` lunch calls at `rate` calls/s to node `node` (the secretary answers through the
    gateway); sipp gives up after `timeout_s`."""
    sipp = on_host(Sipp(workdir, f"caller{node}", "caller.xml", free_udp_port(HOST),
                        ["-key", "caller", CALLER, "-key", "talk", str(talk_ms), "-s", NUMBER, "-r", str(rate), "-l", "60",
                         f"{NODES[node]}:5060"], calls))
    sipp.argv[sipp.argv.index("-timeout") + 1] = str(timeout_s)
    return sipp.start()


def invite_targets(sipp: Sipp) -> list[str]:
    """The request-URI users of the INVITEs the gateway received."""
    return re.findall(r"^\s*INVITE sip:([^@;>\s]+)", sipp.messages(), re.M)


def bye_answered_at(sipp: Sipp, call_id: str) -> float | None:
    """When (seconds of the local day, sipp's clock) the caller got the 200 to its BYE."""
    for match in re.finditer(r"-{20,} \S+ (\d+):(\d+):([\d.]+)\n.*message received.*\n\n(.*?)(?=\n-{20,}|\Z)", sipp.messages(), re.S):
        block = match.group(4)
        if block.lstrip().startswith("SIP/2.0 200") and re.search(r"^\s*CSeq: 2 BYE", block, re.M) \
                and re.search(rf"^\s*Call-ID: {re.escape(call_id)}\s*$", block, re.M):
            return int(match.group(1)) * 3600 + int(match.group(2)) * 60 + float(match.group(3))
    return None


def seconds_of_day(wall: float) -> float:
    t = time.localtime(wall)
    return t.tm_hour * 3600 + t.tm_min * 60 + t.tm_sec + wall % 1


def wait_records(cluster: Cluster, wanted: set[str], timeout: float) -> Counter[str]:
    wait_for(lambda: wanted <= set(cluster.records()), timeout, step=1)
    return cluster.records()


def one_record_each(cluster: Cluster, answered: set[str], timeout: float = 30) -> None:
    counts = wait_records(cluster, answered, timeout)
    assert not answered - set(counts), f"{len(answered - set(counts))} answered calls have no record: {sorted(answered - set(counts))[:3]}"
    assert {counts[c] for c in answered} == {1}, [c for c in answered if counts[c] != 1][:3]


# --- the layout ---------------------------------------------------------------------------


def test_every_long_running_container_is_unprivileged_and_status_shows_every_node(cluster: Cluster) -> None:
    for service, user in LONG_RUNNING.items():
        pid = cluster.docker("inspect", "-f", "{{.State.Pid}}", cluster.container(service)).stdout.strip()
        uids = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Uid:"))
        assert all(uid != "0" for uid in uids.split()[1:]), (service, uids)
        assert cluster.exec(service, "id", "-un").strip() == user, service
    # the status of every node (docs/deployment.md): exit 0, every node sees the other two
    status = run([str(ROOT / "docker" / "cluster-status.sh"), cluster.project], timeout=120, env=cluster.env, check=False)
    print(status.stdout)
    assert status.returncode == 0, status.stdout + status.stderr
    for n in NODES:
        peers = next(line for line in status.stdout.splitlines() if line.startswith(f"kamailio-{n}: DMQ peers"))
        assert all(f"{ip} active" in peers for ip in NODES.values()), peers
        media = next(line for line in status.stdout.splitlines() if line.startswith(f"kamailio-{n}: media servers"))
        assert all(f"sip:{ip}:5070 AP" in media for ip in MEDIA.values()), media


# --- Redis master killed -------------------------------------------------------------------


def test_redis_master_killed_sentinel_promotes_calls_keep_routing(cluster: Cluster, tmp_path: Path) -> None:
    """kill -9 the Redis master 5 s into a load on all three nodes: a replica is promoted, every
    call succeeds, every answered call has one record; a `voffice load` after the failover (a
    new phone for the secretary) is what the next call on every node rings."""
    assert cluster.master() == REDIS["redis-1"]
    gw = gateway(tmp_path)
    callers = [load_caller(tmp_path, n, RATE * 20) for n in NODES]
    try:
        time.sleep(5)
        cluster.docker("kill", "-s", "KILL", cluster.container("redis-1"))
        killed = time.monotonic()
        assert wait_for(lambda: cluster.master() not in ("", REDIS["redis-1"]), 40, step=0.2), cluster.master()
        promoted_s = time.monotonic() - killed
        codes = [c.wait(120) for c in callers]
    finally:
        gw.stop()
    new_master = cluster.master()
    assert promoted_s < 15, promoted_s  # down-after 3 s + the election; docs quote the figure
    assert all(cluster.master(s) == new_master for s in ("sentinel-2", "sentinel-3"))
    sent = set().union(*(call_ids(c) for c in callers))
    answered = set().union(*(answered_call_ids(c) for c in callers))
    completed = set().union(*(completed_call_ids(c) for c in callers))
    figures(redis_master_promoted_after_kill_s=round(promoted_s, 1), calls_sent=len(sent), calls_answered=len(answered),
            calls_failed=len(sent - completed), caller_exit_codes=codes)
    assert codes == [0, 0, 0] and answered == sent == completed
    one_record_each(cluster, answered)

    # a load through the sentinels after the failover: the secretary's new phone
    doc = json.loads((ROOT / "examples" / "seed-office.json").read_text(encoding="utf-8"))
    new_phone = "+79161230044"
    for op in doc["operators"]:
        if op["id"] == "smirnova":
            op["phone"] = new_phone
    (tmp_path / "seed.json").write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    cluster.docker("cp", str(tmp_path / "seed.json"), f"{cluster.container('history')}:/tmp/seed.json")
    loaded = time.monotonic()
    cluster.exec("history", "voffice", "load", "/tmp/seed.json", timeout=60)
    gw = gateway(tmp_path / "after")
    try:
        after = [load_caller(tmp_path / "after", n, 1) for n in NODES]
        codes = [c.wait(60) for c in after]
    finally:
        gw.stop()
    figures(load_after_failover_to_three_calls_done_s=round(time.monotonic() - loaded, 1))
    assert codes == [0, 0, 0]
    assert invite_targets(gw) == [new_phone] * 3, invite_targets(gw)


# --- a media server partitioned ----------------------------------------------------------


def test_media_server_partitioned_every_node_uses_the_other(cluster: Cluster, tmp_path: Path) -> None:
    """media-2 cut off the bridge (iptables DROP from and to its address, on the host): every
    node's dispatcher marks it inactive; the next voicemail through each node is taken by
    media-1. Then the rules go and media-2 comes back."""
    from routing.cli.call_tool import scenario_text

    ip = MEDIA["media-2"]
    assert wait_for(lambda: all(set(cluster.media_flags(n).values()) == {"AP"} for n in NODES), 20)
    rules = [["DOCKER-USER", "-s", ip, "-j", "DROP"], ["DOCKER-USER", "-d", ip, "-j", "DROP"]]
    for rule in rules:
        run(["iptables", "-I", *rule], timeout=30)
        cluster.dropped.append(rule)
    cut = time.monotonic()
    assert wait_for(lambda: all(cluster.media_flags(n).get(ip, "").startswith("I") for n in NODES), 30), \
        {n: cluster.media_flags(n) for n in NODES}
    inactive_s = time.monotonic() - cut

    # voicemails: the gateway is busy, the menu (key 1), after the prompt and the beep a
    # message of sipp's g711a speech (as tests/test_images.py)
    scenario = tmp_path / "voicemail.xml"
    scenario.write_text(scenario_text("1", 1500, 6000, answered=True))
    before = {r["sip_call_id"] for r in cluster.rows()}
    gw = gateway(tmp_path, "busy", calls=3)
    try:
        calls = [on_host(Sipp(tmp_path, f"vm{n}", str(scenario), free_udp_port(HOST),
                              ["-key", "caller", CALLER, "-key", "talk", "8000", "-s", NUMBER, f"{NODES[n]}:5060"])).start()
                 for n in NODES]
        codes = [c.wait(90) for c in calls]
    finally:
        gw.stop()
    assert codes == [0, 0, 0], codes
    wanted = set().union(*(answered_call_ids(c) for c in calls))
    rows: list[dict[str, str]] = wait_for(
        lambda: [r for r in cluster.rows() if r["sip_call_id"] in wanted and r["left_path"]]
        if len([r for r in cluster.rows() if r["sip_call_id"] in wanted and r["left_path"]]) == 3 else None, 40, step=1)
    assert rows, [(r["sip_call_id"], r["status"], r["left_path"]) for r in cluster.rows() if r["sip_call_id"] not in before]
    assert {r["status"] for r in rows} == {"voicemail"}
    assert all(r["left_path"].startswith("/var/lib/voffice/media/media-1/") for r in rows), [r["left_path"] for r in rows]

    for rule in rules:
        run(["iptables", "-D", *rule], timeout=30)
        cluster.dropped.remove(rule)
    healed = time.monotonic()
    assert wait_for(lambda: all(cluster.media_flags(n).get(ip) == "AP" for n in NODES), 30), \
        {n: cluster.media_flags(n) for n in NODES}
    figures(media_server_marked_inactive_by_every_node_s=round(inactive_s, 1), voicemails_on_media_1=len(rows),
            media_server_active_again_after_heal_s=round(time.monotonic() - healed, 1))


# --- a node's rtpengine killed -------------------------------------------------------------


def sdp_hosts(sipp: Sipp) -> set[str]:
    """The connection addresses in the SDP of the replies a caller received."""
    return {m for block in re.split(r"-{20,}.*\n", sipp.messages()) if "message received" in block
            for m in re.findall(r"^\s*c=IN IP4 (\S+)", block, re.M)}


def test_rtpengine_killed_on_one_node(cluster: Cluster, tmp_path: Path) -> None:
    """kill -9 rtpengine-3 (node 3's own rtpengine; the other nodes' are its fallback,
    docs/cluster.md): node 1's calls go on untouched; node 3's new calls are anchored by a
    living rtpengine (the module disables the dead one after one timeout). rtpengine-3
    started again and re-enabled on node 3 (`kamcmd rtpengine.enable all 1`; by itself the
    module retries a disabled rtpengine after 60 s): node 3's calls are anchored on it again."""
    cluster.docker("kill", "-s", "KILL", cluster.container("rtpengine-3"))
    gw = gateway(tmp_path)
    try:
        started = time.monotonic()
        node1 = load_caller(tmp_path, 1, 6, rate=2)
        node3 = load_caller(tmp_path, 3, 3, rate=1, timeout_s=25)
        codes = [node1.wait(60), node3.wait(60)]
        took = time.monotonic() - started
    finally:
        gw.stop()
    figures(rtpengine_dead_node1_sent=len(call_ids(node1)), rtpengine_dead_node1_completed=len(completed_call_ids(node1)),
            rtpengine_dead_node3_sent=len(call_ids(node3)), rtpengine_dead_node3_answered=len(answered_call_ids(node3)),
            rtpengine_dead_node3_completed=len(completed_call_ids(node3)), rtpengine_dead_calls_took_s=round(took, 1),
            rtpengine_dead_node3_answer_sdp_hosts=sorted(sdp_hosts(node3)), exit_codes=codes)
    assert codes[0] == 0 and len(completed_call_ids(node1)) == 6
    assert f"{PREFIX}.21" in sdp_hosts(node1)  # node 1's media on its own rtpengine (weighted 100:1:1)
    assert codes[1] == 0 and len(completed_call_ids(node3)) == 3  # node 3's new calls: a living rtpengine
    assert sdp_hosts(node3) and f"{PREFIX}.23" not in sdp_hosts(node3)  # nothing anchored on the dead one

    cluster.docker("start", cluster.container("rtpengine-3"))
    assert wait_for(lambda: cluster.state("rtpengine-3")[:2] == ("running", "healthy"), 30)
    assert "enable" in cluster.kamcmd(3, "rtpengine.enable", "all", "1")
    again = calls_answered(tmp_path / "after", 3, 3)
    assert len(completed_call_ids(again)) == 3 and f"{PREFIX}.23" in sdp_hosts(again)


# --- a Kamailio node killed, then back -----------------------------------------------------


def test_a_node_killed_then_back(cluster: Cluster, tmp_path: Path) -> None:
    """kill -9 kamailio-3 5 s into a load on all three nodes (node 3's callers talk 3 s, so
    some are mid-call): every call sent to nodes 1 and 2 succeeds; every answered call has
    exactly one record (node 3's cut calls on expiry, from a survivor). `docker start`: node 3
    rejoins DMQ and the dispatcher, and takes calls again."""
    gw = gateway(tmp_path)
    callers = [load_caller(tmp_path, n, RATE * 15, talk_ms=3000 if n == 3 else 300) for n in NODES]
    try:
        time.sleep(5)
        cluster.docker("kill", "-s", "KILL", cluster.container("kamailio-3"))
        killed, killed_wall = time.monotonic(), time.time()
        # what the survivors hold of the answered calls (vocalls keys are the callers' Call-IDs)
        held = set(re.findall(r"name: ([^\s|]+)", cluster.kamcmd(1, "htable.dump", "vocalls")))
        codes = [c.wait(120) for c in callers[:2]]
        callers[2].stop()
    finally:
        gw.stop()
    assert cluster.state("kamailio-3")[0] == "exited"  # the restart policy does not bring a killed container back
    survivors_sent = call_ids(callers[0]) | call_ids(callers[1])
    survivors_done = completed_call_ids(callers[0]) | completed_call_ids(callers[1])
    assert codes == [0, 0] and survivors_sent == survivors_done and len(survivors_sent) == 2 * RATE * 15
    answered = set().union(*(answered_call_ids(c) for c in callers))
    node3_sent, node3_answered, node3_done = call_ids(callers[2]), answered_call_ids(callers[2]), completed_call_ids(callers[2])
    cut = node3_answered - node3_done
    survivors_answered = answered_call_ids(callers[0]) | answered_call_ids(callers[1])
    # node 3's calls cut mid-talk are recorded on expiry by a survivor (one record each), if
    # their answer had been replicated before the kill (htable over DMQ, asynchronous: an
    # answer relayed in the very last moment may not have left node 3)
    expected = survivors_answered | node3_done | (cut & held)
    counts = wait_records(cluster, expected, CALL_MAX_SECONDS + 20)
    recorded_s = time.monotonic() - killed
    unrecorded = cut - set(counts)
    # a call node 3 ended just before the kill: its record was still in node 3's queue
    # (kamailio.cfg: records leave a node's shared memory for Redis every 100 ms)
    lost_done = node3_done - set(counts)
    lost_done_bye_before_kill_s = []
    for call in sorted(lost_done):
        at = bye_answered_at(callers[2], call)
        lost_done_bye_before_kill_s.append(None if at is None else round(seconds_of_day(killed_wall) - at, 3))
    figures(survivor_calls=len(survivors_sent), survivor_calls_failed=len(survivors_sent - survivors_done),
            node3_sent=len(node3_sent), node3_completed=len(node3_done), node3_cut_mid_talk=len(cut),
            node3_never_answered=len(node3_sent - node3_answered), node3_cut_held_by_node1_at_kill=len(cut & held),
            node3_cut_recorded=len(cut - unrecorded), node3_cut_unrecorded=len(unrecorded),
            node3_completed_unrecorded=len(lost_done), their_bye_answered_before_kill_s=lost_done_bye_before_kill_s,
            cut_calls_recorded_by_s_after_kill=round(recorded_s, 1))
    assert not survivors_answered - set(counts), f"no record for {sorted(survivors_answered - set(counts))[:3]}"
    assert not (cut & held) - set(counts), f"no record for {sorted((cut & held) - set(counts))[:3]}"
    # only a call that ended within the kill's last second may have lost its record with node 3
    assert all(d is not None and d < 1.0 for d in lost_done_bye_before_kill_s), lost_done_bye_before_kill_s
    assert {counts[c] for c in answered if c in counts} == {1}

    started = time.monotonic()
    cluster.docker("start", cluster.container("kamailio-3"))
    assert wait_for(lambda: all(cluster.dmq_active(n) == set(NODES.values()) for n in NODES), 40), \
        {n: cluster.dmq_active(n) for n in NODES}
    joined = time.monotonic() - started
    assert wait_for(lambda: set(cluster.media_flags(3).values()) == {"AP"}, 20), cluster.media_flags(3)
    again = calls_answered(tmp_path / "after", 3, 5)
    figures(node3_start_to_dmq_joined_s=round(joined, 1), node3_calls_after_restart=len(completed_call_ids(again)))
    assert len(completed_call_ids(again)) == 5
    one_record_each(cluster, answered_call_ids(again))
