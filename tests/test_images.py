"""docker/: the images build (`make images`), docker/compose.yaml starts them on its own bridge
network with every healthcheck green, every long-running container runs as an unprivileged user,
and a real call from the host into that network is answered, lands in the call history and its
voicemail is mailed by the notifier.

Real containers: the test starts dockerd when no Docker engine answers (docker/ensure-dockerd.sh;
Debian's docker.io is installed by `make install`). The compose project has a name of its own
and is always taken down with its volumes; the images stay, for the layer cache.

The call is sipp's, as `voffice call` places it (routing/cli/call_tool.scenario_text), bound to
the host's address on the bridge: `voffice call` itself binds sipp to Kamailio's address, which
is only right when Kamailio listens on one of the host's own addresses (loopback, `voffice up`).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import httpx
import pytest

from routing.cli.call_tool import parse_trace, scenario_text
from routing.stack.ports import free_udp_port

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker" / "compose.yaml"
# A network of the test's own (VO_NET_PREFIX), so a stack started by hand on the file's default
# 172.31.240.0/24 does not clash with it.
PREFIX = "172.31.249"
HOST = f"{PREFIX}.1"  # the host's address on the bridge: the carrier's SBC in this test
KAMAILIO = f"{PREFIX}.40"
NUMBER = "+74951234567"
VIP = "+74957654321"  # the seed's VIP list: +7495*
SATURDAY = "2026-11-28T13:00:00+03:00"  # rule 3: VIP callers on weekends 12-18 get the menu
LONG_RUNNING = ("redis", "postgres", "rtpengine", "media-server", "kamailio", "history", "notifier", "web")
WEB = f"http://{PREFIX}.70:8080"
ONE_SHOTS = ("db-upgrade", "loader")
HEALTHY_WITHIN = 240.0  # seconds from `up` until every service is healthy


def run(argv: list[str], timeout: float, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    if check:
        assert result.returncode == 0, f"{' '.join(argv)}: exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def images() -> None:
    if shutil.which("docker") is None or shutil.which("dockerd") is None or shutil.which("docker-compose") is None:
        pytest.skip("no docker.io / docker-compose (Debian packages; `make install` installs them)")
    if os.geteuid() != 0:
        pytest.skip("starting dockerd and making the base image (debootstrap) need root")
    run([str(ROOT / "docker" / "ensure-dockerd.sh")], timeout=90)
    started = time.monotonic()
    run(["make", "images"], timeout=1800)
    print(f"make images: {time.monotonic() - started:.1f} s")


class Stack:
    """A compose project of the test's own (tests/test_multinode_images.py's Cluster too)."""

    log_tail = 40

    def __init__(self, project: str, compose_file: Path = COMPOSE, settings: dict[str, str] | None = None) -> None:
        self.project, self.compose_file = project, compose_file
        # Only the test's settings: none of the caller's VO_*/VOFFICE_* reach the file.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("VO_", "VOFFICE_"))}
        self.env.update(settings if settings is not None else {
            "VO_NET_PREFIX": PREFIX,
            "VOFFICE_OPERATOR_GATEWAY": f"{HOST}:5080",
            "VOFFICE_TRUSTED_TRUNKS": HOST,
            "VOFFICE_NOW": SATURDAY,
            "VOFFICE_NOW_AT": f"{time.time():.3f}",
        })

    def compose(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(["docker-compose", "-p", self.project, "-f", str(self.compose_file), *args], timeout=timeout, env=self.env,
                   check=check)

    def up(self, long_running: Iterable[str], one_shots: Iterable[str], within: float) -> float:
        """`up -d`, then until every long-running service is healthy and every one-shot has
        exited 0 (bounded by `within`); the seconds it took."""
        started = time.monotonic()
        self.compose("up", "-d", timeout=300)
        deadline = started + within
        while True:
            pending: dict[str, tuple[str, str, int]] = {}
            for service in long_running:
                state = self.state(service)
                if state[:2] != ("running", "healthy"):
                    pending[service] = state
            for service in one_shots:
                state = self.state(service)
                assert state[0] != "exited" or state[2] == 0, f"{service} exited {state[2]}\n{self.logs()}"
                if state[0] != "exited":
                    pending[service] = state
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert not pending, f"not healthy within {within:.0f} s: {pending}\n{self.logs()}"
        return time.monotonic() - started

    def container(self, service: str) -> str:
        cid = self.compose("ps", "-q", service).stdout.strip()
        assert cid, f"no container for {service}"
        return cid

    def state(self, service: str) -> tuple[str, str, int]:
        """(status, health, exit code) of the service's container."""
        fmt = "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}-{{end}} {{.State.ExitCode}}"
        status, health, code = run(["docker", "inspect", "-f", fmt, self.container(service)], timeout=30).stdout.split()
        return status, health, int(code)

    def logs(self) -> str:
        return self.compose("logs", "--no-color", "--tail", str(self.log_tail), timeout=60, check=False).stdout[-12000:]


@pytest.fixture(scope="module")
def stack(images: None) -> Iterator[Stack]:
    stack = Stack(f"voffice-test-{os.getpid()}")
    try:
        print(f"compose up until every service is healthy: {stack.up(LONG_RUNNING, ONE_SHOTS, HEALTHY_WITHIN):.1f} s")
        yield stack
    finally:
        stack.compose("down", "-v", "--remove-orphans", "-t", "5", timeout=180, check=False)


def test_every_long_running_container_is_unprivileged(stack: Stack) -> None:
    expected = {"redis": "redis", "postgres": "postgres", "rtpengine": "rtpengine", "media-server": "voffice",
                "kamailio": "kamailio", "history": "voffice", "notifier": "voffice", "web": "voffice"}
    for service in LONG_RUNNING:
        cid = stack.container(service)
        pid = run(["docker", "inspect", "-f", "{{.State.Pid}}", cid], timeout=30).stdout.strip()
        # the main process itself, as the host's kernel sees it
        uids = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Uid:"))
        assert all(uid != "0" for uid in uids.split()[1:]), (service, uids)
        assert run(["docker", "exec", cid, "id", "-un"], timeout=30).stdout.strip() == expected[service]


def test_the_cabinet_answers_the_host_with_a_token_made_in_its_container(stack: Stack) -> None:
    """The web image: `voffice token create --noc` in its container, then the REST API from the
    host over the bridge sees the loaded seed account; without the token, 401."""
    made = stack.compose("exec", "-T", "web", "voffice", "token", "create", "--noc", "--name", "test", timeout=60).stdout
    token = next(word for word in made.split() if word.startswith("vot_"))
    listed = httpx.get(f"{WEB}/api/accounts", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert listed.status_code == 200 and [a["account"] for a in listed.json()] == ["berry-demo"], listed.text
    assert httpx.get(f"{WEB}/api/accounts", timeout=10).status_code == 401


def test_a_call_from_the_host_is_answered_and_recorded(stack: Stack, tmp_path: Path) -> None:
    """A VIP caller on Saturday afternoon gets the menu, keys 1 and leaves a voicemail: SIP to
    Kamailio's fixed address, RTP through rtpengine to the media server, the record through
    Redis into PostgreSQL."""
    scenario = tmp_path / "call.xml"
    scenario.write_text(scenario_text("1", 1500, 6000, answered=True))
    sipp = shutil.which("sipp")
    assert sipp, "sipp (Debian package sip-tester; `make install`)"
    started = time.monotonic()
    call = subprocess.run(
        [sipp, "-sf", str(scenario), "-i", HOST, "-p", str(free_udp_port(HOST)), "-m", "1",
         "-key", "caller", VIP, "-key", "talk", "8000", "-s", NUMBER, "-trace_msg", "-nostdin",
         "-timeout", "60", "-timeout_error", f"{KAMAILIO}:5060"],
        cwd=tmp_path, capture_output=True, text=True, timeout=90)
    timeline = parse_trace("".join(p.read_text(errors="replace") for p in tmp_path.glob("*_messages.log")))
    shown = "\n".join(f"{t:7.3f} {way} {line}" for t, way, line in timeline)
    assert call.returncode == 0, f"sipp exit {call.returncode}\n{shown}\n{call.stderr[-2000:]}\n{stack.logs()}"
    assert ("<-", "SIP/2.0 200 OK") in [(way, line) for _t, way, line in timeline], shown
    print(f"call: {time.monotonic() - started:.1f} s")

    # the history writer has put the call into PostgreSQL: read it back through its container
    deadline = time.monotonic() + 30
    rows: list[dict[str, str]] = []
    while time.monotonic() < deadline:
        out = stack.compose("exec", "-T", "history", "voffice", "calls", "berry-demo", "--csv", timeout=60).stdout
        rows = list(csv.DictReader(io.StringIO(out)))
        if rows and rows[0]["left_path"]:
            break
        time.sleep(1)
    assert len(rows) == 1, rows
    row = rows[0]
    assert (row["number"], row["caller"], row["status"], row["rule"], row["scenario"]) == (
        NUMBER, VIP, "voicemail", "r3", "weekend-vip"), row
    assert row["left_kind"] == "voicemail" and row["left_path"], row
    # ... the same row seen by psql in the postgres container
    query = "SELECT status FROM calls WHERE account = 'berry-demo'"
    psql = stack.compose("exec", "-T", "postgres", "psql", "-h", "127.0.0.1", "-p", "5479", "-U", "voffice",
                         "-d", "voffice", "-tA", "-c", query, timeout=60)
    assert psql.stdout.split() == ["voicemail"]
    # the message is on the media server's volume
    stack.compose("exec", "-T", "media-server", "test", "-s", row["left_path"], timeout=60)

    # the notifier mails it (the seed's voicemail notice) into its Maildir, MP3 attached
    deadline = time.monotonic() + 60
    deliveries = ""
    while time.monotonic() < deadline:
        # check=False: a notifier that crashes and restarts refuses exec; the assertion below shows its log
        deliveries = stack.compose("exec", "-T", "notifier", "voffice", "deliveries", "berry-demo", timeout=60, check=False).stdout
        if any(" voicemail " in line and " sent " in line for line in deliveries.splitlines()):
            break
        time.sleep(1)
    assert any(" voicemail " in line and " sent " in line for line in deliveries.splitlines()), f"{deliveries}\n{stack.logs()}"
    mail = stack.compose("exec", "-T", "notifier", "find", "/var/lib/voffice/mail/new", "-type", "f", timeout=60).stdout.split()
    assert len(mail) == 1, mail
    stack.compose("exec", "-T", "notifier", "grep", "-q", "audio/mpeg", mail[0], timeout=60)

    # the subscriber's inbox in the web container serves the same message (the media volume)
    made = stack.compose("exec", "-T", "web", "voffice", "token", "create", "--noc", "--name", "inbox", timeout=60).stdout
    auth = {"Authorization": f"Bearer {next(w for w in made.split() if w.startswith('vot_'))}"}
    inbox = httpx.get(f"{WEB}/api/accounts/berry-demo/voicemail", headers=auth, timeout=10)
    assert inbox.status_code == 200, inbox.text
    [message] = inbox.json()["voicemail"]
    audio = httpx.get(f"{WEB}/api/accounts/berry-demo/voicemail/{message['id']}", headers=auth, timeout=10)
    assert audio.status_code == 200 and audio.content[:4] == b"RIFF", (audio.status_code, audio.text[:200])

    # ... and nothing crashed on the way: no container was restarted
    for service in LONG_RUNNING:
        restarts = run(["docker", "inspect", "-f", "{{.RestartCount}}", stack.container(service)], timeout=30).stdout.strip()
        assert restarts == "0", f"{service} restarted {restarts} times\n{stack.logs()}"
