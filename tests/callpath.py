"""Helpers for call-path tests: a real stack on free loopback ports, sipp callers and
sipp operators, and what they saw."""

from __future__ import annotations

import copy
import json
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np
import pytest
import redis

from routing.cli.call_tool import scenario_text
from routing.stack.local import Component, Stack, StackConfig
from routing.stack.ports import free_port, free_port_block, free_port_range, free_udp_port
from routing.stack.redis_server import stop_process

SIPP_DIR = Path(__file__).resolve().parent / "sipp"

# The marks of every test that starts the stack (pytestmark = STACK_TESTS).
STACK_TESTS = [
    pytest.mark.callpath,
    pytest.mark.skipif(not (shutil.which("kamailio") and shutil.which("rtpengine") and shutil.which("sipp")),
                       reason="kamailio, rtpengine and sipp are installed by `make install`"),
]
SIPP = shutil.which("sipp") or "/usr/bin/sipp"


def wait_for(what: Callable[[], Any], timeout: float, step: float = 0.1) -> Any:
    """Poll until `what()` is truthy; its last value (falsy at the deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def short_ring_config(seed: dict[str, Any], operator_ports: dict[str, int] | None = None, ring_seconds: int = 5) -> dict[str, Any]:
    """The seed with short ring times; operators in `operator_ports` are dialled directly
    at their own sipp (sip: URIs), the others through the operator gateway (E.164)."""
    doc = copy.deepcopy(seed)
    doc["defaults"]["ring_seconds"] = ring_seconds
    for op in doc["operators"]:
        if operator_ports and op["id"] in operator_ports:
            op["phone"] = f"sip:{op['id']}@127.0.0.1:{operator_ports[op['id']]}"
    return doc


class StackFactory:
    """Stacks a test starts one after another, each in its own folder, all stopped at its end:
    `make(now, doc)` with the StackConfig `overrides` the factory was made with."""

    def __init__(self, workdir: Path, default_doc: dict[str, Any] | None = None, **overrides: Any):
        self.workdir, self.default_doc, self.overrides = workdir, default_doc, overrides
        self.stacks: list[CallStack] = []

    def __call__(self, now: str, doc: dict[str, Any] | None = None, database_url: str | None = None) -> CallStack:
        config_doc = doc or self.default_doc
        assert config_doc is not None
        stack = CallStack(self.workdir / f"stack{len(self.stacks)}", now, config_doc, with_media=True, overrides=self.overrides,
                          database_url=database_url)
        stack.workdir.mkdir(parents=True, exist_ok=True)
        self.stacks.append(stack)
        stack.start()
        return stack

    def stop(self) -> None:
        for stack in self.stacks:
            stack.stop()


@dataclass
class CallStack:
    workdir: Path
    now: str
    config_doc: dict[str, Any]
    with_media: bool = True
    media_servers: int = 1
    overrides: dict[str, Any] = field(default_factory=dict)  # more StackConfig fields
    stack: Stack | None = None
    config: StackConfig | None = None
    gateway_port: int = field(default_factory=free_udp_port)
    # The call history and notifications in this database (history writer and notifier
    # started, mail into run/mail, webhooks allowed to loopback); None: neither.
    database_url: str | None = None

    def start(self) -> None:
        path = self.workdir / "account.json"
        path.write_text(json.dumps(self.config_doc, ensure_ascii=False))
        parts = ("redis", "rtpengine", "media", "kamailio") if self.with_media else ("redis", "rtpengine", "kamailio")
        records: dict[str, Any] = {}
        if self.database_url:
            parts += ("history", "notifier")
            records = {"database_url": self.database_url, "allow_private_webhooks": True, "notify_retry_base": 0.3}
        self.config = StackConfig(
            run_dir=self.workdir / "run",
            redis_port=free_port(),
            sip_port=free_udp_port(),
            media_port=free_port_block(2 * self.media_servers),
            rtpengine_port=free_udp_port(),
            rtp_ports=free_port_range(400),
            media_rtp_ports=free_port_range(400),
            operator_gateway=f"127.0.0.1:{self.gateway_port}",
            kamailio_children=2,
            load=(str(path),),
            now=self.now,
            components=parts,
            media_servers=self.media_servers,
            **records,
            **self.overrides,
        )
        self.stack = Stack(self.config)
        self.stack.start()

    def stop(self) -> None:
        if self.stack is not None:
            self.stack.stop()

    def __enter__(self) -> Self:
        """`with CallStack(...) as stack:` starts it and always stops it, a failed start too."""
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def part(self, name: str) -> Component:
        assert self.stack is not None
        return next(p for p in self.stack.parts if p.name == name)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Kill a component (a crash: SIGKILL by default) and reap it."""
        proc = self.part(name).proc
        assert proc is not None
        proc.send_signal(sig)
        proc.wait(timeout=10)

    def restart(self, name: str, timeout: float = 20) -> None:
        """Start a stopped component again with the same command, as `voffice up` would."""
        assert self.stack is not None
        part = self.part(name)
        self.stack.parts.remove(part)
        self.stack._start(part, detach=False, timeout=timeout)

    @property
    def sip_port(self) -> int:
        assert self.config is not None
        return self.config.sip_port

    def redis(self) -> redis.Redis:
        assert self.config is not None
        return redis.Redis.from_url(self.config.redis_url, decode_responses=True)

    def events(self, settle: float = 0.4) -> list[dict[str, str]]:
        """The events so far; Kamailio ships its call records every 100 ms."""
        time.sleep(settle)
        return [fields for _id, fields in self.redis().xrange("voffice:events")]


class Sipp:
    """One sipp process with its own folder for logs."""

    def __init__(self, workdir: Path, name: str, scenario: str, port: int, args: list[str], calls: int = 1):
        self.dir = workdir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.argv = [SIPP, "-sf", str(SIPP_DIR / scenario), "-i", "127.0.0.1", "-p", str(port), "-m", str(calls),
                     "-trace_msg", "-trace_err", "-nostdin", "-deadcall_wait", "0", "-timeout", "60", "-timeout_error", *args]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Sipp:
        self.proc = subprocess.Popen(self.argv, cwd=self.dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        time.sleep(0.2)
        return self

    def wait(self, timeout: float = 60) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return -9

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=5)

    def messages(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.dir.glob("*_messages.log"))

    def received_at(self, prefix: str) -> list[float]:
        """Times (seconds of the day) at which messages starting with `prefix` arrived."""
        out = []
        for match in re.finditer(r"-{20,} \S+ (\d+):(\d+):([\d.]+)\n.*message received.*\n\n(.*)", self.messages()):
            if match.group(4).startswith(prefix):
                out.append(int(match.group(1)) * 3600 + int(match.group(2)) * 60 + float(match.group(3)))
        return out

    def received(self) -> list[str]:
        """First lines of the messages this sipp received, in order."""
        return self._first_lines("message received")

    def sent(self) -> list[str]:
        """First lines of the messages this sipp sent, in order."""
        return self._first_lines("message sent")

    def _first_lines(self, direction: str) -> list[str]:
        out = []
        for block in re.split(r"-{20,}.*\n", self.messages()):
            if direction in block:
                lines = [ln for ln in block.splitlines() if ln.strip()]
                first = next((ln for ln in lines[1:] if ln.startswith(("SIP/2.0", "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO", "PRACK"))), "")
                out.append(first.strip())
        return out


def operator(workdir: Path, name: str, behaviour: str, port: int, calls: int = 1, ring_ms: int = 300,
             extra: tuple[str, ...] = ()) -> Sipp:
    """An operator (or the operator gateway): answer | answer-giveup (BYE when no ACK comes) | busy |
    decline | unavailable | timeout | no-answer. `extra`: more sipp options (e.g. -t t1, TCP)."""
    if behaviour in ("answer", "answer-giveup"):
        return Sipp(workdir, name, f"operator-{behaviour}.xml", port, ["-key", "ring", str(ring_ms), "-rtp_echo", *extra], calls)
    if behaviour == "no-answer":
        return Sipp(workdir, name, "operator-no-answer.xml", port, [], calls)
    status, reason = REJECTIONS[behaviour]
    template = (SIPP_DIR / "operator-reject.xml").read_text()
    scenario = workdir / f"operator-{behaviour}.xml"
    scenario.write_text(template.replace("STATUS REASON", f"{status} {reason}"))
    return Sipp(workdir, name, str(scenario), port, ["-key", "ring", str(ring_ms)], calls)


REJECTIONS = {"busy": (486, "Busy Here"), "decline": (603, "Decline"), "unavailable": (503, "Service Unavailable"),
              "timeout": (408, "Request Timeout")}


def caller(workdir: Path, stack: CallStack, number: str, caller_number: str, scenario: str = "caller.xml",
           extra: list[str] | None = None, name: str = "caller", speak: bool = False, talk_ms: int = 300,
           calls: int = 1) -> Sipp:
    """A caller (`calls` of them, one after another unless `extra` sets a rate); with
    `speak`, it plays sipp's g711a.pcap (7 s of speech) once answered."""
    if speak:
        text = (SIPP_DIR / scenario).read_text()
        ack_end = text.index("</send>", text.index("ACK [next_url]")) + len("</send>")
        play = '\n  <nop><action><exec play_pcap_audio="/usr/share/sip-tester/g711a.pcap"/></action></nop>'
        path = workdir / f"{name}-speaking.xml"
        path.write_text(text[:ack_end] + play + text[ack_end:])
        scenario = str(path)
    return Sipp(workdir, name, scenario, free_udp_port(),
                ["-key", "caller", caller_number, "-key", "talk", str(talk_ms), "-s", number, *(extra or []), f"127.0.0.1:{stack.sip_port}"],
                calls)




def dtmf_caller(workdir: Path, stack: CallStack, number: str, caller_number: str, digits: str, name: str = "caller",
                message_after_ms: int | None = None, talk_ms: int = 300, mode: str = "rfc2833",
                extra: list[str] | None = None, require_100rel: bool = False, delayed_offer: bool = False,
                supports_100rel: bool = False) -> Sipp:
    """A caller that keys `digits` into the early media as RFC 2833 events (sipp's own pcaps)
    or, with mode "info", as SIP INFO requests in the early dialog; with `message_after_ms`,
    once answered it waits that long (the prompt and the beep) and plays sipp's g711a.pcap
    (7 s of speech) as a voicemail message. `delayed_offer`: no SDP in the INVITE (see
    routing/cli/call_tool.scenario_text)."""
    scenario = workdir / f"caller-dtmf-{len(list(workdir.glob('caller-dtmf-*.xml')))}.xml"
    scenario.write_text(scenario_text(digits, 1500, message_after_ms, answered=True, dtmf_mode=mode, require_100rel=require_100rel,
                                      delayed_offer=delayed_offer, supports_100rel=supports_100rel))
    return Sipp(workdir, name, str(scenario), free_udp_port(),
                ["-key", "caller", caller_number, "-key", "talk", str(talk_ms), "-s", number, *(extra or []),
                 f"127.0.0.1:{stack.sip_port}"])


def pcap_alaw_audio(path: Path) -> np.ndarray:
    """The A-law payload of every RTP packet in a classic pcap, decoded."""
    from voffice_media.g711 import alaw_decode

    data = path.read_bytes()
    offset, chunks = 24, []
    while offset + 16 <= len(data):
        length = int.from_bytes(data[offset + 8 : offset + 12], "little")
        frame = data[offset + 16 : offset + 16 + length]
        offset += 16 + length
        payload = frame[14 + 20 + 8 + 12 :]  # Ethernet, IPv4, UDP, RTP headers
        chunks.append(alaw_decode(payload))
    return np.concatenate(chunks)


# --- rtpengine's ng control protocol (bencode over UDP), to read its call statistics -----


def bencode(value: Any) -> bytes:
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    if isinstance(value, list):
        return b"l" + b"".join(bencode(v) for v in value) + b"e"
    if isinstance(value, dict):
        return b"d" + b"".join(bencode(k) + bencode(v) for k, v in sorted(value.items())) + b"e"
    raise TypeError(type(value))


def bdecode(data: bytes, i: int = 0) -> tuple[Any, int]:
    c = data[i : i + 1]
    if c == b"i":
        end = data.index(b"e", i)
        return int(data[i + 1 : end]), end + 1
    if c in (b"l", b"d"):
        i += 1
        items = []
        while data[i : i + 1] != b"e":
            item, i = bdecode(data, i)
            items.append(item)
        if c == b"l":
            return items, i + 1
        return {items[k].decode(): items[k + 1] for k in range(0, len(items), 2)}, i + 1
    colon = data.index(b":", i)
    length = int(data[i:colon])
    return data[colon + 1 : colon + 1 + length], colon + 1 + length


def rtpengine_command(port: int, command: dict[str, Any]) -> dict[str, Any]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        cookie = b"t%d" % time.monotonic_ns()
        sock.sendto(cookie + b" " + bencode(command), ("127.0.0.1", port))
        reply = sock.recv(65535)
    value, _ = bdecode(reply[len(cookie) + 1 :])
    return value  # type: ignore[no-any-return]
