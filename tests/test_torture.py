"""Torture and abuse on the wire: the RFC 4475 messages and SIPVicious against a real stack.

Each stack runs on its own loopback address (127.x.y.1; all of 127.0.0.0/8 is loopback on
Linux), so the torture messages can be sent from the UDP ports their Via headers name
(Kamailio and the media server answer to the source address and the Via's port): answers
come back to our sockets, not to whoever listens on 127.0.0.1:5060. tests/media/test_uas.py
feeds the same messages to the media server's sans-IO UAS; here they go over the network,
to Kamailio (from an address that is not a trusted trunk) and to the media server (from
Kamailio's address, the only source it takes requests from).

A UDP socket bound on the stack's operator gateway port counts what Kamailio relays to
operators; a packet socket on `lo` (root only) counts what the scanners send and receive.
Run with `-s` to see the counts (docs/reliability.md).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import random
import re
import selectors
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from routing.stack.local import Stack, StackConfig, sip_options
from voffice_media.sipmsg import Response, SipParseError, parse

from .callpath import CallStack, free_port, free_port_range, free_udp_port, short_ring_config

pytestmark = [
    pytest.mark.callpath,
    pytest.mark.skipif(not (shutil.which("kamailio") and shutil.which("rtpengine")),
                       reason="kamailio and rtpengine are installed by `make install`"),
]

RFC4475 = Path(__file__).resolve().parent / "data" / "rfc4475"
NUMBER = "+74951234567"
WEDNESDAY_LUNCH = "2026-11-25T13:30:00+03:00"  # the secretary's group rings through the gateway
SECRETARY = "+79161230004"

# RFC 4475 3.1.1: valid messages; these requests must be processed (unreason, noreason: responses).
VALID = {"wsinv", "intmeth", "esc01", "escnull", "esc02", "lwsdisp", "longreq", "dblreq", "semiuri", "transports", "mpart01"}
# RFC 4475 3.1.2: invalid requests; a 4xx or nothing.
INVALID = {"badinv01", "clerr", "ncl", "scalar02", "quotbal", "ltgtruri", "lwsruri", "lwsstart", "trws", "escruri",
           "baddate", "regbadct", "badaspec", "baddn", "badvers", "mismatch01", "mismatch02"}
# Kamailio 5.6's own parser drops three valid messages before any routing code runs (the
# Call-ID of each is in its log with the parser's complaint), so they get no answer from it:
KAMAILIO_PARSER_DROPS = {
    "wsinv": "a CSeq folded over two lines: 'core parsing of SIP message failed'",
    "esc02": "the escaped header name C%6Fntact: sanity 'failed to send 400 reply'",
    "intmeth": "a header name with !.%*+_`'~ in it: sanity 'failed to send 400 reply'",
}
# Content-Lengths: after LF -> CRLF every declared length matches its body except in the
# messages about Content-Length itself, sent as they are (no message is adjusted).
BAD_CONTENT_LENGTH = {"clerr", "ncl", "mcl01", "dblreq", "inv2543"}


# --------------------------------------------------------------------------- messages


def wire(path: Path) -> bytes:
    """The copies have LF line ends; the RFC's Content-Lengths count CRLF text. Two files
    (intmeth, mpart01) are CRLF already, with binary bytes: sent as they are."""
    raw = path.read_bytes()
    return raw if b"\r" in raw else raw.replace(b"\n", b"\r\n")


MESSAGES = {p.stem: wire(p) for p in sorted(RFC4475.glob("*.dat"))}
_VIA = re.compile(rb"(?im)^(?:via|v)[ \t]*:\s*SIP\s*/\s*2\.0\s*/\s*(\w+)\s+[^\s;:,]+(?:\s*:\s*(\d+))?")
_CALL_ID = re.compile(rb"(?im)^(?:call-id|i)[ \t]*:[ \t]*(\S[^\r\n]*?)[ \t]*\r?$")


def via_port(data: bytes) -> int:
    """The port of the top Via, where an answer goes (5060, 5061 for TLS, if none)."""
    m = _VIA.search(data)
    if m is None:
        return 5060
    if m.group(2):
        return int(m.group(2))
    return 5061 if m.group(1).upper() == b"TLS" else 5060


def call_ids(data: bytes) -> list[str]:
    return [m.decode("utf-8", "replace") for m in _CALL_ID.findall(data)]


def declared_lengths(data: bytes) -> tuple[list[bytes], int]:
    head, _, body = data.partition(b"\r\n\r\n")
    return re.findall(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*(\S+)", head), len(body)


def loopback_host() -> str:
    """A loopback address of our own: 127.X.Y.1 with X >= 64 (nobody else's)."""
    return f"127.{random.randint(64, 254)}.{random.randint(1, 254)}.1"


def sibling(host: str, last: int) -> str:
    return host.rsplit(".", 1)[0] + f".{last}"


# --------------------------------------------------------------------------- the stack


@dataclass
class HostStack(CallStack):
    """A CallStack on its own loopback address, with its own trusted trunk."""

    host: str = field(default_factory=loopback_host)
    trusted: str = ""

    def start(self) -> None:
        path = self.workdir / "account.json"
        path.write_text(json.dumps(self.config_doc, ensure_ascii=False))
        parts = ("redis", "rtpengine", "media", "kamailio") if self.with_media else ("redis", "rtpengine", "kamailio")
        self.config = StackConfig(
            run_dir=self.workdir / "run", host=self.host, redis_port=free_port(), sip_port=free_udp_port(),
            media_port=free_udp_port(), rtpengine_port=free_udp_port(), rtp_ports=free_port_range(400),
            media_rtp_ports=free_port_range(400), operator_gateway=f"{self.host}:{self.gateway_port}",
            kamailio_children=2, load=(str(path),), now=self.now, components=parts,
            trusted_trunks=self.trusted or sibling(self.host, 254),  # nobody sends from .254
        )
        self.stack = Stack(self.config)
        self.stack.start()

    def alive(self, name: str) -> bool:
        assert self.stack is not None
        return any(p.name == name and p.proc is not None and p.proc.poll() is None for p in self.stack.parts)

    def log(self, name: str) -> str:
        assert self.config is not None
        return (self.config.run_dir / f"{name}.log").read_text(errors="replace")


@pytest.fixture
def torture_stack(tmp_path: Path, seed_doc: dict[str, Any]) -> Iterator[HostStack]:
    stack = HostStack(tmp_path, WEDNESDAY_LUNCH, short_ring_config(seed_doc), with_media=True)
    with stack:
        yield stack


class Gateway:
    """The operator gateway's port, bound by us: every datagram Kamailio relays to operators."""

    def __init__(self, host: str, port: int):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.sock.setblocking(False)
        self.received: list[bytes] = []

    def drain(self) -> list[bytes]:
        with contextlib.suppress(BlockingIOError):
            while True:
                self.received.append(self.sock.recv(65535))
        return self.received

    def invites(self) -> list[bytes]:
        return [d for d in self.drain() if d.startswith(b"INVITE ")]

    def close(self) -> None:
        self.sock.close()


# --------------------------------------------------------------------------- torture


@dataclass
class Torture:
    sent: int = 0
    answers: list[tuple[str | None, int, bytes]] = field(default_factory=list)  # (message, status, first line)
    malformed: list[bytes] = field(default_factory=list)

    def codes(self, name: str) -> list[int]:
        return [code for who, code, _ in self.answers if who == name]

    def answered(self) -> set[str]:
        return {who for who, _, _ in self.answers if who is not None}


def send_torture(source: str, target: tuple[str, int], pace: float, settle: float = 1.5) -> Torture:
    """Every message from `source`, each from the port its Via names, one every `pace`
    seconds; every datagram that comes back is parsed and put down to its message by Call-ID."""
    owner = {cid: name for name, data in MESSAGES.items() for cid in call_ids(data)}
    ports = sorted({via_port(data) for data in MESSAGES.values()})
    socks = {}
    selector = selectors.DefaultSelector()
    result = Torture()

    def collect(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            for key, _ in selector.select(left):
                data = key.fileobj.recv(65535)  # type: ignore[union-attr]
                first = data.split(b"\r\n", 1)[0][:80]
                try:
                    message = parse(data)
                except SipParseError:
                    result.malformed.append(data)
                    continue
                if not isinstance(message, Response) or not re.fullmatch(rb"SIP/2\.0 [1-6][0-9]{2} .*", first) or "Via" not in message.headers:
                    result.malformed.append(data)
                    continue
                who = owner.get(message.headers.get("Call-ID") or "")
                result.answers.append((who, message.status, first))

    try:
        for port in ports:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((source, port))
            sock.setblocking(False)
            socks[port] = sock
            selector.register(sock, selectors.EVENT_READ)
        for data in MESSAGES.values():
            socks[via_port(data)].sendto(data, target)
            result.sent += 1
            collect(pace)
        collect(settle)
    finally:
        selector.close()
        for sock in socks.values():
            sock.close()
    return result


def table(kamailio: Torture, media: Torture) -> str:
    rows = [f"{'message':<11} {'kamailio':<14} media server"]
    for name in MESSAGES:
        k = ",".join(map(str, sorted(set(kamailio.codes(name))))) or "-"
        m = ",".join(map(str, sorted(set(media.codes(name))))) or "-"
        rows.append(f"{name:<11} {k:<14} {m}")
    return "\n".join(rows)


def invite(host: str, port: int, local: tuple[str, int], user: str, call_id: str) -> bytes:
    return (f"INVITE sip:{user}@{host}:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {local[0]}:{local[1]};branch=z9hG4bK{call_id}\r\n"
            f"From: <sip:+79031112233@{local[0]}>;tag=1\r\nTo: <sip:{user}@{host}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n"
            f"Contact: <sip:caller@{local[0]}:{local[1]}>\r\nMax-Forwards: 70\r\nUser-Agent: torture-control\r\n"
            "Content-Length: 0\r\n\r\n").encode()


def test_messages_are_sent_as_the_rfc_computed_them() -> None:
    assert len(MESSAGES) == 50
    for name, data in MESSAGES.items():
        lengths, body = declared_lengths(data)
        if name not in BAD_CONTENT_LENGTH:
            assert lengths == [str(body).encode()], (name, lengths, body)


def test_rfc4475_torture_over_the_network(torture_stack: HostStack) -> None:
    stack = torture_stack
    assert stack.config is not None
    host, sip_port, media_port = stack.host, stack.sip_port, stack.config.media_port
    attacker = sibling(host, 2)
    gateway = Gateway(host, stack.gateway_port)
    try:
        # Kamailio: from an untrusted address, paced under the flood limit (60 per 2 s)
        kamailio = send_torture(attacker, (host, sip_port), pace=0.05)
        # the media server: from Kamailio's address, the one it takes requests from
        media = send_torture(host, (host, media_port), pace=0.02)
        relayed = list(gateway.drain())

        # no crash: both still up and answering
        assert stack.alive("kamailio") and stack.alive("media1")
        assert sip_options(host, sip_port) == 200
        assert sip_options(host, media_port) == 200
        assert "Traceback" not in stack.log("kamailio")
        media_log = stack.log("media1")
        assert "Traceback" not in media_log and '"level": "ERROR"' not in media_log, media_log[-3000:]

        # every answer is a well-formed SIP response
        assert kamailio.malformed == [] and media.malformed == []

        # the valid requests of 3.1.1 are answered (Kamailio's parser drops three of them)
        assert VALID <= media.answered()
        assert VALID - kamailio.answered() == set(KAMAILIO_PARSER_DROPS)
        kamailio_log = stack.log("kamailio")
        for name in KAMAILIO_PARSER_DROPS:
            assert call_ids(MESSAGES[name])[0] in kamailio_log, name
        # our own parser refuses the invalid ones (3.1.2) with a 4xx/5xx or ignores them
        assert all(code >= 400 for name in INVALID for code in media.codes(name))

        # nothing reached the operator gateway
        assert relayed == []

        # ...which does receive what is meant for it: a call to a configured number
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as caller:
            caller.bind((attacker, 0))
            caller.sendto(invite(host, sip_port, caller.getsockname(), NUMBER, "torture-control"), (host, sip_port))
            deadline = time.monotonic() + 5
            while not gateway.invites() and time.monotonic() < deadline:
                time.sleep(0.05)
        invites = gateway.invites()
        assert invites and invites[0].startswith(f"INVITE sip:{SECRETARY}@{host}:{stack.gateway_port} ".encode())
        assert all(b"torture-control" in i for i in invites)
    finally:
        gateway.close()
    for who, result in (("Kamailio", kamailio), ("media server", media)):
        unattributed = sum(1 for name, _, _ in result.answers if name is None)
        print(f"\nRFC 4475 to {who}: {result.sent} sent, {len(result.answered())} messages answered, {len(result.answers)} "
              f"answers ({unattributed} without a known Call-ID), {len(result.malformed)} malformed; valid (3.1.1) "
              f"answered {len(VALID & result.answered())}/{len(VALID)}", end="")
    print(f"\nrelayed to the operator gateway: {len(relayed)}; then a call to {NUMBER}: {len(invites)} INVITE "
          f"for {SECRETARY}\n{table(kamailio, media)}")


def test_stray_replies_are_not_relayed(tmp_path: Path, seed_doc: dict[str, Any]) -> None:
    """A reply that matches no transaction used to be relayed statelessly to its second Via,
    whoever sent it and whatever its top Via: anyone could make Kamailio send SIP anywhere
    (RFC 4475 bcast: to 255.255.255.255). Now it is dropped (tm on_sl_reply)."""
    stack = HostStack(tmp_path, WEDNESDAY_LUNCH, short_ring_config(seed_doc), with_media=False)
    with stack:
        victim = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        victim.bind((sibling(stack.host, 3), 0))
        victim.settimeout(1.0)
        victim_addr = victim.getsockname()
        with victim, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as attacker:
            attacker.bind((sibling(stack.host, 2), 0))
            for top in ("192.0.2.198", f"{stack.host}:{stack.sip_port}"):  # foreign, or Kamailio's own
                reply = (f"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP {top};branch=z9hG4bKstray\r\n"
                         f"Via: SIP/2.0/UDP {victim_addr[0]}:{victim_addr[1]};branch=z9hG4bKvictim\r\n"
                         f"Call-ID: stray-{top}\r\nCSeq: 1 INVITE\r\nFrom: <sip:a@example.com>;tag=1\r\n"
                         "To: <sip:b@example.com>;tag=2\r\nContent-Length: 0\r\n\r\n")
                attacker.sendto(reply.encode(), (stack.host, stack.sip_port))
                with pytest.raises(TimeoutError):
                    victim.recv(65535)
        assert sip_options(stack.host, stack.sip_port) == 200


def test_a_crafted_to_header_does_not_stop_the_media_server(tmp_path: Path, seed_doc: dict[str, Any]) -> None:
    """One INVITE whose To display name is 40 token characters and an '@' used to stop the
    media server for hours (the display-name regex backtracked exponentially): relayed by
    Kamailio to a media server like any call, and to the next one on its 408."""
    stack = HostStack(tmp_path, "2026-11-28T13:00:00+03:00", short_ring_config(seed_doc), with_media=True)  # Saturday: the greeting
    with stack:
        assert stack.config is not None
        media = (stack.host, stack.config.media_port)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as caller:
            caller.bind((sibling(stack.host, 2), 0))
            caller.settimeout(5)
            data = invite(stack.host, stack.sip_port, caller.getsockname(), NUMBER, "crafted-to")
            data = data.replace(f"To: <sip:{NUMBER}@".encode(), b"To: " + b"a" * 40 + f"@ <sip:{NUMBER}@".encode())
            caller.sendto(data, (stack.host, stack.sip_port))  # through Kamailio
            caller.sendto(data.replace(b"crafted-to", b"crafted-direct"), media)  # straight at it, from anyone
            finals = []
            while len(finals) < 1:
                reply = caller.recv(65535)
                if not reply.startswith(b"SIP/2.0 1"):
                    finals.append(reply.split(b"\r\n", 1)[0])
        assert sip_options(*media, timeout=1.0) == 200
        assert stack.alive("media1") and "Traceback" not in stack.log("media1")
        assert finals[0].startswith((b"SIP/2.0 4", b"SIP/2.0 5"))  # the call ends; nothing hangs


# --------------------------------------------------------------------------- SIPVicious

SIPVICIOUS = Path("/usr/share/sipvicious")
DISGUISED_SVWAR = f"""
import sys
sys.path.insert(0, {str(SIPVICIOUS)!r})
from sipvicious import svwar
from sipvicious.libs import svhelper
make = svhelper.makeRequest
def disguised(*args, **kwargs):
    kwargs["useragent"] = "Linphone/5.2.0 (belle-sip/5.2.0)"
    return make(*args, **kwargs)
svwar.makeRequest = disguised
sys.argv[0] = "svwar"
sys.exit(svwar.main())
"""


class LoopbackCounter:
    """Counts the UDP datagrams to and from one SIP port on `lo` (an AF_PACKET socket with a
    BPF filter on the port: root only; `available` is False otherwise), with the first line of
    each datagram the port sends."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.packets: Counter[tuple[str, int, str, int]] = Counter()
        self.first_lines: Counter[tuple[str, int, bytes]] = Counter()  # (to ip, to port, status line)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            self.sock: socket.socket | None = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
        except (PermissionError, AttributeError, OSError):
            self.sock = None
            return
        # udp and (src port P or dst port P); offsets from the IP header (SOCK_DGRAM)
        program = [(0x30, 0, 0, 9), (0x15, 0, 8, 17), (0x28, 0, 0, 6), (0x45, 6, 0, 0x1FFF), (0xB1, 0, 0, 0),
                   (0x48, 0, 0, 0), (0x15, 2, 0, port), (0x48, 0, 0, 2), (0x15, 0, 1, port), (0x06, 0, 0, 0xFFFF),
                   (0x06, 0, 0, 0)]
        filters = b"".join(struct.pack("HBBI", *ins) for ins in program)
        self._buffer = ctypes.create_string_buffer(filters)
        fprog = struct.pack("HL", len(program), ctypes.addressof(self._buffer))
        self.sock.setsockopt(socket.SOL_SOCKET, 26, fprog)  # SO_ATTACH_FILTER
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE: no drops while we lag
        self.sock.bind(("lo", 0))
        self.sock.settimeout(0.1)

    @property
    def available(self) -> bool:
        return self.sock is not None

    def __enter__(self) -> LoopbackCounter:
        if self.sock is not None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.3)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self.sock is not None:
            self.sock.close()

    def _run(self) -> None:
        assert self.sock is not None
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            if addr[2] != socket.PACKET_HOST or len(data) < 28 or data[9] != 17:
                continue  # the outgoing copy of a loopback packet, or not UDP
            ihl = (data[0] & 0x0F) * 4
            src, dst = socket.inet_ntoa(data[12:16]), socket.inet_ntoa(data[16:20])
            sport, dport = struct.unpack("!HH", data[ihl : ihl + 4])
            self.packets[(src, sport, dst, dport)] += 1
            if (src, sport) == (self.host, self.port):
                self.first_lines[(dst, dport, data[ihl + 8 :].split(b"\r\n", 1)[0][:40])] += 1

    def sent(self, ip: str | None = None, port: int | None = None) -> int:
        return sum(n for (s, sp, d, dp), n in self.packets.items()
                   if (d, dp) == (self.host, self.port) and ip in (None, s) and port in (None, sp))

    def answers(self, ip: str | None = None, port: int | None = None) -> int:
        return sum(n for (s, sp, d, dp), n in self.packets.items()
                   if (s, sp) == (self.host, self.port) and ip in (None, d) and port in (None, dp))

    def statuses(self, ip: str | None = None, port: int | None = None) -> Counter[bytes]:
        out: Counter[bytes] = Counter()
        for (d, dp, line), n in self.first_lines.items():
            if ip in (None, d) and port in (None, dp):
                out[line] += n
        return out


@dataclass
class Run:
    name: str
    argv: list[str]
    output: str
    seconds: float
    sent: int | None
    answers: int | None

    def line(self) -> str:
        counts = f"{self.sent} sent, {self.answers} answers" if self.sent is not None else "no packet counts (not root)"
        last = self.output.strip().splitlines()[-1] if self.output.strip() else ""
        return f"{self.name}: {counts}, {self.seconds:.1f} s; {last}"


def run_tool(name: str, argv: list[str], counter: LoopbackCounter, ip: str | None, port: int, timeout: float = 60) -> Run:
    start = time.monotonic()
    before_sent, before_answers = counter.sent(ip, port), counter.answers(ip, port)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    time.sleep(0.3)  # the last answers on the wire
    seconds = time.monotonic() - start
    sent = counter.sent(ip, port) - before_sent if counter.available else None
    answers = counter.answers(ip, port) - before_answers if counter.available else None
    return Run(name, argv, done.stdout + done.stderr, seconds, sent, answers)


def options_from(source: str, host: str, port: int, user_agent: str = "Linphone/5.2.0") -> int | None:
    """One ordinary OPTIONS from `source`: the status code of the answer, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(0.5)
        local = sock.getsockname()[1]
        tag = os.urandom(4).hex()
        sock.sendto((f"OPTIONS sip:ping@{host}:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {source}:{local};branch=z9hG4bK{tag}\r\n"
                     f"From: <sip:probe@{source}>;tag={tag}\r\nTo: <sip:ping@{host}>\r\nCall-ID: {tag}@{source}\r\n"
                     f"CSeq: 1 OPTIONS\r\nUser-Agent: {user_agent}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode(),
                    (host, port))
        try:
            data = sock.recv(65535)
        except TimeoutError:
            return None
    parts = data.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


@pytest.fixture
def scan_stack(tmp_path: Path, seed_doc: dict[str, Any]) -> Iterator[HostStack]:
    stack = HostStack(tmp_path, WEDNESDAY_LUNCH, short_ring_config(seed_doc), with_media=False)
    with stack:
        yield stack


needs_sipvicious = pytest.mark.skipif(not (shutil.which("svmap") and shutil.which("svwar") and SIPVICIOUS.is_dir()),
                                      reason="sipvicious is installed by `make install`")


@needs_sipvicious
def test_sipvicious_scanners_learn_nothing_and_floods_are_banned(scan_stack: HostStack, tmp_path: Path) -> None:
    """svmap and svwar (User-Agent friendly-scanner) from addresses that are not trusted
    trunks get no answer at all; svmap's flood (300 INVITEs) and svwar with an ordinary
    User-Agent (1000 unknown numbers) are banned by pike; nothing reaches the gateway.

    svwar 0.3.3 ignores -b and binds 0.0.0.0: its packets come from 127.0.0.1, which this
    stack does not trust (its trusted trunk is an address nobody sends from)."""
    stack = scan_stack
    host, port = stack.host, stack.sip_port
    scanner, flooder, bystander = sibling(host, 5), sibling(host, 6), sibling(host, 7)
    hosts = tmp_path / "targets.txt"
    hosts.write_text(f"{host}\n" * 300)
    wrapper = tmp_path / "svwar_disguised.py"
    wrapper.write_text(DISGUISED_SVWAR)
    p = [free_udp_port() for _ in range(6)]
    gateway = Gateway(host, stack.gateway_port)
    runs: list[Run] = []
    counter = LoopbackCounter(host, port)
    try:
        with counter:
            assert options_from(flooder, host, port) == 200  # not banned to begin with
            svmap = ["svmap", "-b", scanner, "-p", str(port)]
            runs.append(run_tool("svmap OPTIONS", [*svmap, "-P", str(p[0]), host], counter, scanner, p[0]))
            runs.append(run_tool("svmap INVITE", [*svmap, "-P", str(p[1]), "-m", "INVITE", host], counter, scanner, p[1]))
            svwar = ["svwar", "-x", "127.0.0.1", "--force", "--maximumtime", "3"]
            runs.append(run_tool("svwar INVITE 74951234500-74951234599 (holds the configured number)",
                                 [*svwar, "-P", str(p[2]), "-m", "INVITE", "-e", "74951234500-74951234599", f"udp://{host}:{port}"],
                                 counter, None, p[2]))
            runs.append(run_tool("svwar OPTIONS 100-999", [*svwar, "-P", str(p[3]), "-m", "OPTIONS", "-e", "100-999",
                                                           f"udp://{host}:{port}"], counter, None, p[3]))
            for run in runs:
                assert "found nothing" in run.output, run.output
                assert run.answers in (0, None), run.line()
                assert run.sent is None or run.sent >= 1, run.line()

            flood = run_tool("svmap flood: 300 INVITEs", ["svmap", "-b", flooder, "-p", str(port), "-P", str(p[4]),
                                                           "-m", "INVITE", "-I", str(hosts)], counter, flooder, p[4])
            runs.append(flood)
            assert flood.answers in (0, None) and flood.sent in (300, None), flood.line()
            assert options_from(flooder, host, port) is None  # banned, even with an ordinary User-Agent
            assert options_from(bystander, host, port) == 200  # nobody else is

            disguised = run_tool("svwar with an ordinary User-Agent: INVITE 74990000000-74990000999",
                                 ["/usr/bin/python3", str(wrapper), "-x", "127.0.0.1", "--maximumtime", "3", "-P", str(p[5]),
                                  "-m", "INVITE", "-e", "74990000000-74990000999", f"udp://{host}:{port}"],
                                 counter, None, p[5], timeout=90)
            runs.append(disguised)
            assert "found nothing" in disguised.output, disguised.output
            statuses = counter.statuses(None, p[5])
        log = stack.log("kamailio")
        assert f"flood from {flooder}: banned" in log
        assert "flood from 127.0.0.1: banned" in log  # the disguised svwar
        if counter.available:
            assert disguised.answers is not None and disguised.sent is not None
            assert 0 < disguised.answers < disguised.sent, disguised.line()
            assert set(statuses) == {b"SIP/2.0 404 Not Found"}, statuses  # unknown numbers: 404, never relayed
            assert disguised.answers < 500  # cut short by the ban, not 1000 answers
        assert gateway.invites() == [] and gateway.drain() == []
        assert sip_options(host, port) == 200 and stack.alive("kamailio")
    finally:
        gateway.close()
        print("\nSIPVicious against Kamailio " + ("(packets counted on lo)" if counter.available else "") + ":")
        for run in runs:
            print("  " + run.line())
        print(f"  relayed to the operator gateway: {len(gateway.received)}")
