"""The media server as a process: real redis-server, real UDP, sipp and a Python peer as callers.

Every call goes straight at the media server (no Kamailio): the callers add the `X-VO-Op` and
`X-VO-Call` headers Kamailio would add (routing/core/media_contract.py). The prompt sounds come from
the seed account's compiled config in Redis (examples/seed-office.json, loaded as version 1).

- sipp callers (tests/media/sipp/*.xml) for early media: RFC 2833 keys from the captures sipp
  ships (/usr/share/sip-tester/dtmf_2833_*.pcap), in-band keys from a capture written here,
  and a voicemail left with sipp's g711a.pcap;
- a Python peer (voffice_media.sipmsg + rtp) for what sipp cannot do: a fax with spandsp on the
  calling side, a BYE or a SIGTERM in the middle of a voicemail, sources Kamailio is not.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import time
import urllib.request
import uuid
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import redis
from PIL import Image

from routing.core.validation import validate_paths
from routing.stack.ports import free_udp_port
from routing.stack.redis_server import RedisServer
from routing.store import configs
from tests.conftest import ROOT, SEED
from voffice_media.dtmf import dtmf_tone
from voffice_media.fax import FaxSession, make_test_tiff, spandsp_available
from voffice_media.g711 import alaw_decode, alaw_encode
from voffice_media.recording import RecordingStore
from voffice_media.rtp import RtpError, RtpPacket, RtpSender
from voffice_media.sdp import negotiate, parse_offer
from voffice_media.sipmsg import Headers, Request, Response, SipParseError, make_response, parse

pytestmark = [
    pytest.mark.redis,
    # real time (sipp plays speech and fax into the media server): the stack stream of
    # `make test`, never the niced one
    pytest.mark.callpath,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp is not installed"),
    pytest.mark.skipif(shutil.which("redis-server") is None and not Path("/usr/sbin/redis-server").exists(),
                       reason="redis-server is not installed"),
]

PYTHON = ROOT / ".venv" / "bin" / "python"
SIPP = shutil.which("sipp") or "/usr/bin/sipp"
SIPP_DIR = Path(__file__).resolve().parent / "sipp"
CAPTURES = Path("/usr/share/sip-tester")
ACCOUNT = "berry-demo"
VERSION = 1
FRAME = 160
Addr = tuple[str, int]


# --------------------------------------------------------------------------- helpers


def free_even_udp_port(host: str = "127.0.0.1") -> int:
    """A free even port whose odd neighbour is free too (sipp's media port and RTCP)."""
    for _ in range(50):
        port = free_udp_port(host) & ~1
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
                a.bind((host, port))
                b.bind((host, port + 1))
                return port
        except OSError:
            continue
    raise RuntimeError("no free even UDP port")


def rtp_port_range(size: int = 100) -> tuple[int, int]:
    base = 20000 + 2 * secrets.randbelow(4000)
    return base, base + size - 1


def op_header(kind: str, op: str, **fields: str | int) -> str:
    parts = {"v": 1, "type": kind, "account": ACCOUNT, "version": VERSION, "op": op, **fields}
    return ";".join(f"{k}={v}" for k, v in parts.items())


def vo_call() -> str:
    return secrets.token_hex(8)


def events(r: redis.Redis) -> list[dict[str, str]]:
    return [{k.decode(): v.decode() for k, v in fields.items()} for _id, fields in r.xrange("voffice:events")]


def wait_event(r: redis.Redis, call_id: str, timeout: float = 15.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in events(r):
            if event.get("call_id") == call_id:
                return event
        time.sleep(0.1)
    raise AssertionError(f"no event for call {call_id} on voffice:events within {timeout} s: {events(r)}")


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)


def best_match(needle: np.ndarray, haystack: np.ndarray) -> tuple[float, int]:
    """The normalised cross-correlation of `needle` with the part of `haystack` it matches
    best, and where that part starts."""
    a = needle.astype(np.float64)
    b = haystack.astype(np.float64)
    assert len(b) >= len(a), f"recording ({len(b)} samples) shorter than what was sent ({len(a)})"
    n = 1 << int(np.ceil(np.log2(len(a) + len(b))))
    corr = np.fft.irfft(np.fft.rfft(b, n) * np.conj(np.fft.rfft(a, n)), n)[: len(b) - len(a) + 1]
    windows = np.sqrt(np.maximum(np.convolve(b * b, np.ones(len(a)), mode="valid"), 1e-9))
    score = corr / (np.linalg.norm(a) * windows)
    lag = int(np.argmax(score))
    return float(score[lag]), lag


# --- pcap files: read sipp's, write our own ---------------------------------------------------


def read_pcap_rtp(path: Path) -> list[tuple[float, RtpPacket]]:
    """(capture time, RTP packet) of every UDP packet of a little-endian Ethernet pcap."""
    data = path.read_bytes()
    magic, _major, _minor, _zone, _sigfigs, _snap, link = struct.unpack_from("<IHHiIII", data)
    assert magic == 0xA1B2C3D4 and link == 1, "a little-endian Ethernet pcap"
    offset, out = 24, []
    while offset < len(data):
        seconds, micros, length, _orig = struct.unpack_from("<IIII", data, offset)
        frame = data[offset + 16 : offset + 16 + length]
        offset += 16 + length
        ip_header = (frame[14] & 0x0F) * 4
        out.append((seconds + micros / 1e6, RtpPacket.parse(frame[14 + ip_header + 8 :])))
    return out


def _ip_checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def write_pcap(path: Path, payloads: list[bytes], *, interval: float = 0.020, port: int = 6000) -> None:
    """A pcap sipp's play_pcap_audio can play: global header, then per packet a record header
    and Ethernet / IPv4 / UDP (loopback, `port` to `port`) around the payload, `interval`
    apart. sipp keeps only the UDP payload and the timing (it rewrites ports and addresses)."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    start = 1_700_000_000.0
    for i, payload in enumerate(payloads):
        udp = struct.pack("!HHHH", port, port, 8 + len(payload), 0) + payload
        ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xFFFF, 0x4000, 64, 17, 0,
                                   socket.inet_aton("127.0.0.1"), socket.inet_aton("127.0.0.1")))
        ip[10:12] = struct.pack("!H", _ip_checksum(bytes(ip)))
        frame = b"\x00" * 12 + b"\x08\x00" + bytes(ip) + udp
        when = start + i * interval
        seconds = int(when)
        out.append(struct.pack("<IIII", seconds, round((when - seconds) * 1e6), len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))


def inband_dtmf_pcap(path: Path, digit: str) -> None:
    """RTP (PCMA, 20 ms packets) of 200 ms silence, 100 ms of the DTMF tone, 300 ms silence."""
    audio = np.concatenate([np.zeros(1600, np.int16), dtmf_tone(digit, 100), np.zeros(2400, np.int16)])
    sender = RtpSender(8, ssrc=0x5EED, sequence=1, timestamp=0)
    write_pcap(path, [sender.packet(alaw_encode(audio[i : i + FRAME])).serialize() for i in range(0, len(audio), FRAME)])


# --- the media server process -----------------------------------------------------------------


class MediaServerProcess:
    """`python -m voffice_media` on free loopback ports, ready once it answers OPTIONS."""

    def __init__(self, workdir: Path, redis_url: str, *, data_dir: Path | None = None,
                 kamailio: tuple[str, ...] = ("127.0.0.1",), metrics: bool = False) -> None:
        self.workdir = workdir
        self.redis_url = redis_url
        self.data_dir = data_dir or workdir / "media"
        self.kamailio = kamailio
        self.port = free_udp_port()
        self.rtp_ports = rtp_port_range()
        self.metrics_port = free_udp_port() if metrics else None  # a TCP port; free UDP/TCP alike here
        self.log = workdir / f"media-server-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def addr(self) -> Addr:
        return ("127.0.0.1", self.port)

    def start(self, ready_from: str = "127.0.0.1", timeout: float = 20.0) -> MediaServerProcess:
        argv = [str(PYTHON), "-m", "voffice_media", "--listen", f"127.0.0.1:{self.port}",
                "--data-dir", str(self.data_dir), "--rtp-ports", f"{self.rtp_ports[0]}-{self.rtp_ports[1]}",
                "--redis", self.redis_url, "--log-level", "INFO"]
        for address in self.kamailio:
            argv += ["--kamailio", address]
        if self.metrics_port:
            argv += ["--metrics", f"127.0.0.1:{self.metrics_port}"]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"media server exited with {self.proc.returncode}:\n{self.log_text()}")
            if self.options(ready_from) == 200:
                return self
        self.kill()
        raise RuntimeError(f"media server did not answer OPTIONS within {timeout} s:\n{self.log_text()}")

    def options(self, source: str = "127.0.0.1", wait: float = 0.3) -> int | None:
        """Status of the answer to an OPTIONS sent from `source`, None if there is none."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((source, 0))
            s.settimeout(wait)
            host, port = s.getsockname()
            request = Request("OPTIONS", f"sip:media@127.0.0.1:{self.port}", Headers.of([
                ("Via", f"SIP/2.0/UDP {host}:{port};branch=z9hG4bK{uuid.uuid4().hex};rport"),
                ("From", f"<sip:probe@{host}:{port}>;tag={uuid.uuid4().hex[:8]}"),
                ("To", f"<sip:media@127.0.0.1:{self.port}>"),
                ("Call-ID", uuid.uuid4().hex), ("CSeq", "1 OPTIONS"), ("Max-Forwards", "70"),
            ]))
            s.sendto(request.serialize(), self.addr)
            try:
                data, _ = s.recvfrom(65535)
            except TimeoutError:
                return None
        message = parse(data)
        return message.status if isinstance(message, Response) else None

    def metric(self, name: str) -> float:
        assert self.metrics_port
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2) as response:
            for line in response.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        raise KeyError(name)

    def terminate(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


# --- sipp as the caller -----------------------------------------------------------------------


@dataclass
class SippRun:
    returncode: int
    seconds: float
    messages: str
    errors: str

    def received(self, prefix: str) -> list[str]:
        """Every message sipp received whose first line starts with `prefix`."""
        blocks = self.messages.split("----------------------------------------------- ")
        return [b for b in blocks if "message received" in b and f"\n{prefix}" in b.replace("\r\n", "\n")]


def run_sipp(workdir: Path, scenario: Path, server: MediaServerProcess, keys: dict[str, str],
             timeout: float = 40.0) -> SippRun:
    calldir = workdir / f"sipp-{uuid.uuid4().hex[:8]}"
    calldir.mkdir()
    argv = [SIPP, "-sf", str(scenario), "-i", "127.0.0.1", "-mi", "127.0.0.1", "-p", str(free_udp_port()),
            "-mp", str(free_even_udp_port()), "-m", "1", "-trace_msg", "-trace_err", "-nostdin",
            "-deadcall_wait", "0", "-timeout", f"{int(timeout)}s", "-timeout_error"]
    for key, value in keys.items():
        argv += ["-key", key, value]
    argv.append(f"127.0.0.1:{server.port}")
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=calldir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          stdin=subprocess.DEVNULL, timeout=timeout + 15, check=False)
    seconds = time.monotonic() - started
    messages = "".join(p.read_text(errors="replace") for p in calldir.glob("*_messages.log"))
    errors = "".join(p.read_text(errors="replace") for p in calldir.glob("*_errors.log"))
    return SippRun(proc.returncode, seconds, messages, errors)


def play(capture: Path) -> str:
    return f'  <nop><action><exec play_pcap_audio="{capture}"/></action></nop>\n'


def pause(ms: int) -> str:
    return f'  <pause milliseconds="{ms}"/>\n'


def rfc2833(digit: str) -> Path:
    return CAPTURES / f"dtmf_2833_{ {'*': 'star', '#': 'pound'}.get(digit, digit) }.pcap"


def early_media_call(workdir: Path, server: MediaServerProcess, op: str, plays: str, result: str,
                     timeout: float = 40.0) -> SippRun:
    """One sipp call through early media that must end in a 480 with X-VO-Result `result`."""
    template = (SIPP_DIR / "early-media.xml").read_text()
    scenario = workdir / f"early-media-{uuid.uuid4().hex[:8]}.xml"
    scenario.write_text(template.replace("PLAYS\n", plays).replace("RESULT", result))
    run = run_sipp(workdir, scenario, server, {"op": op, "vocall": vo_call()}, timeout)
    assert run.returncode == 0, f"sipp exit {run.returncode}\n{run.errors}\n{run.messages[-3000:]}\n{server.log_text()[-3000:]}"
    finals = run.received("SIP/2.0 480")
    assert len(finals) == 1, "the 480 is sent once (our ACK matched the INVITE transaction)"
    assert f"X-VO-Result: {result}" in finals[0]
    return run


# --- a Python SIP/RTP peer --------------------------------------------------------------------


class Peer:
    """A caller straight at the media server: INVITE with X-VO-Op, ACK, BYE; RTP in PCMA.

    `sdp_port` is the RTP port its offer names (default: the one it sends from); a different
    one checks that the server answers the source (symmetric RTP)."""

    def __init__(self, server: Addr, *, local_ip: str = "127.0.0.1", sdp_port: int | None = None) -> None:
        self.server = server
        self.sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sip.bind((local_ip, 0))
        self.local = self.sip.getsockname()
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind((local_ip, 0))
        self.rtp.setblocking(False)
        self.sdp_port = sdp_port or self.rtp.getsockname()[1]
        self.call_id = uuid.uuid4().hex
        self.tag = uuid.uuid4().hex[:10]
        self.invite_branch = "z9hG4bK" + uuid.uuid4().hex
        self.to: str | None = None
        self.remote_rtp: Addr | None = None
        self.sender = RtpSender(8)
        self.bye_received = False
        self.rtp_received = 0
        self._rx = np.zeros(0, dtype=np.int16)
        self._playing = False

    def close(self) -> None:
        self.sip.close()
        self.rtp.close()

    # SIP
    def _headers(self, method: str, cseq: int, branch: str, to: str | None = None) -> list[tuple[str, str]]:
        host, port = self.local
        return [
            ("Via", f"SIP/2.0/UDP {host}:{port};branch={branch};rport"),
            ("Max-Forwards", "70"),
            ("From", f"<sip:+79031112233@{host}:{port}>;tag={self.tag}"),
            ("To", to or f"<sip:media@{self.server[0]}:{self.server[1]}>"),
            ("Call-ID", self.call_id),
            ("CSeq", f"{cseq} {method}"),
            ("Contact", f"<sip:caller@{host}:{port}>"),
        ]

    def invite(self, op: str, call: str) -> None:
        host = self.local[0]
        sdp = (f"v=0\r\no=peer 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
               f"m=audio {self.sdp_port} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n"
               "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\n").encode()
        fields = [*self._headers("INVITE", 1, self.invite_branch), ("X-VO-Op", op), ("X-VO-Call", call),
                  ("Content-Type", "application/sdp")]
        self.send(Request("INVITE", f"sip:media@{self.server[0]}:{self.server[1]}", Headers.of(fields), sdp))

    def send(self, message: Request | Response, addr: Addr | None = None) -> None:
        self.sip.sendto(message.serialize(), addr or self.server)

    def receive(self, timeout: float) -> Request | Response | None:
        self.sip.settimeout(timeout)
        try:
            data, addr = self.sip.recvfrom(65535)
        except TimeoutError:
            return None
        message = parse(data)
        if isinstance(message, Request) and message.method == "BYE":
            self.bye_received = True
            self.send(make_response(message, 200, "OK"), addr)
        return message

    def final(self, timeout: float = 15.0) -> Response:
        """The first final response to the INVITE (the SDP of any response is remembered)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.receive(max(0.01, deadline - time.monotonic()))
            if not isinstance(message, Response) or "INVITE" not in (message.headers.get("CSeq") or ""):
                continue
            if message.body:
                self.remote_rtp = negotiate(parse_offer(message.body)).remote
            if message.status >= 200:
                self.to = message.headers.get("To")
                return message
        raise AssertionError(f"no final response to the INVITE within {timeout} s")

    def ack(self, response: Response) -> None:
        branch = self.invite_branch if response.status >= 300 else "z9hG4bK" + uuid.uuid4().hex
        fields = self._headers("ACK", 1, branch, response.headers.get("To"))
        self.send(Request("ACK", f"sip:media@{self.server[0]}:{self.server[1]}", Headers.of(fields)))

    def bye(self, timeout: float = 5.0) -> Response:
        assert self.to is not None
        fields = self._headers("BYE", 2, "z9hG4bK" + uuid.uuid4().hex, self.to)
        self.send(Request("BYE", f"sip:media@{self.server[0]}:{self.server[1]}", Headers.of(fields)))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.receive(max(0.01, deadline - time.monotonic()))
            if isinstance(message, Response) and "BYE" in (message.headers.get("CSeq") or ""):
                return message
        raise AssertionError("BYE not answered")

    def poll_sip(self) -> list[Request | Response]:
        """Answer whatever the server sent (its BYE) without waiting; the other messages."""
        others: list[Request | Response] = []
        self.sip.setblocking(False)
        try:
            while True:
                try:
                    data, addr = self.sip.recvfrom(65535)
                except BlockingIOError:
                    return others
                try:
                    message = parse(data)
                except SipParseError:
                    continue
                if isinstance(message, Request) and message.method == "BYE":
                    self.bye_received = True
                    self.send(make_response(message, 200, "OK"), addr)
                else:
                    others.append(message)
        finally:
            self.sip.setblocking(True)

    # RTP
    def send_audio(self, pcm: np.ndarray) -> None:
        assert self.remote_rtp is not None
        self.rtp.sendto(self.sender.packet(alaw_encode(pcm)).serialize(), self.remote_rtp)

    def drain_audio(self) -> None:
        while True:
            try:
                data, _addr = self.rtp.recvfrom(2048)
            except BlockingIOError:
                return
            try:
                packet = RtpPacket.parse(data)
            except RtpError:
                continue
            self.rtp_received += 1
            if packet.payload_type == 8:
                self._rx = np.concatenate([self._rx, alaw_decode(packet.payload)])[-FRAME * 10 :]

    def audio_frame(self, prebuffer: int = 3 * FRAME) -> np.ndarray:
        """The next 20 ms of what the server sent: a jitter buffer that plays out once
        `prebuffer` samples have arrived (and again after an underrun), silence meanwhile."""
        if not self._playing and len(self._rx) >= prebuffer:
            self._playing = True
        if not self._playing or len(self._rx) < FRAME:
            self._playing = False
            return np.zeros(FRAME, dtype=np.int16)
        frame, self._rx = self._rx[:FRAME], self._rx[FRAME:]
        return frame

    def media(self, seconds: float, produce: Callable[[np.ndarray], np.ndarray],
              stop: Callable[[], bool] = lambda: False) -> None:
        """Exchange 20 ms RTP packets on a fixed schedule for up to `seconds` (or until `stop()`)."""
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < seconds and not stop():
            self.drain_audio()
            self.poll_sip()
            self.send_audio(produce(self.audio_frame()))
            n += 1
            delay = start + n * 0.020 - time.monotonic()
            if delay > 0:
                time.sleep(delay)


def tone(seconds: float, hz: float = 440.0, amplitude: int = 8000) -> np.ndarray:
    t = np.arange(int(8000 * seconds)) / 8000
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def speak(peer: Peer, audio: np.ndarray) -> None:
    """Send `audio` in 20 ms packets in real time."""
    frames = iter(audio[i : i + FRAME] for i in range(0, len(audio) - FRAME + 1, FRAME))
    done = False

    def produce(_rx: np.ndarray) -> np.ndarray:
        nonlocal done
        frame = next(frames, None)
        if frame is None:
            done = True
            return np.zeros(FRAME, dtype=np.int16)
        return frame

    peer.media(len(audio) / 8000 + 1, produce, stop=lambda: done)


# --------------------------------------------------------------------------- fixtures


@dataclass
class Stack:
    redis: RedisServer
    r: redis.Redis
    server: MediaServerProcess
    workdir: Path


def load_seed(redis_url: str) -> None:
    """The seed account, loaded as `voffice load` would, as version VERSION."""
    r = configs.connect(redis_url)
    result = validate_paths([str(SEED)])
    assert result.ok, [p.line() for p in result.problems]
    changes, problems = configs.plan_load(r, result.documents)
    assert not problems, problems
    assert configs.apply_load(r, changes).versions == {ACCOUNT: VERSION}


@pytest.fixture(scope="module")
def redis_instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        load_seed(server.url)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def stack(redis_instance: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("media")
    server = MediaServerProcess(workdir, redis_instance.url, metrics=True).start()
    try:
        yield Stack(redis_instance, redis.Redis.from_url(redis_instance.url), server, workdir)
    finally:
        with contextlib.suppress(Exception):
            server.terminate()
        server.kill()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


# --------------------------------------------------------------------------- early media


def test_menu_key_from_rfc2833_capture(stack: Stack, workdir: Path) -> None:
    before = stack.server.metric("voffice_media_dtmf_detected_total")
    op = op_header("menu", "menu", sound="menu-prompt", timeout=5, repeat=0, max_repeats=3, keys="12")
    run = early_media_call(workdir, stack.server, op, pause(500) + play(rfc2833("1")), "key=1")
    assert run.seconds < 5, "barge-in: the key ends the menu long before its 9 s prompt"
    assert stack.server.metric("voffice_media_dtmf_detected_total") - before == 1


def test_extension_digits_101_from_replayed_captures(stack: Stack, workdir: Path) -> None:
    # sipp replays dtmf_2833_1.pcap twice with the same RTP timestamp and sequence numbers
    before = stack.server.metric("voffice_media_dtmf_detected_total")
    op = op_header("extension", "ext", sound="transfer-prompt", timeout=5, digits=3, inter_digit=3)
    plays = pause(300) + play(rfc2833("1")) + pause(400) + play(rfc2833("0")) + pause(400) + play(rfc2833("1"))
    early_media_call(workdir, stack.server, op, plays, "digits=101")
    assert stack.server.metric("voffice_media_dtmf_detected_total") - before == 3


def test_menu_timeout_without_input(stack: Stack, workdir: Path) -> None:
    op = op_header("menu", "menu", sound="menu-prompt", timeout=1, repeat=0, keys="12")
    run = early_media_call(workdir, stack.server, op, "", "timeout")
    assert 9.5 < run.seconds < 15, "timeout counts from the end of the 9 s prompt"


def test_menu_repeat_key_then_key(stack: Stack, workdir: Path) -> None:
    before = stack.server.metric("voffice_media_dtmf_detected_total")
    op = op_header("menu", "menu", sound="menu-prompt", timeout=5, repeat=0, max_repeats=3, keys="12")
    plays = pause(300) + play(rfc2833("0")) + pause(1000) + play(rfc2833("2"))
    early_media_call(workdir, stack.server, op, plays, "key=2")
    assert stack.server.metric("voffice_media_dtmf_detected_total") - before == 2


def test_inband_dtmf_key(stack: Stack, workdir: Path) -> None:
    capture = workdir / "inband-2.pcap"
    inband_dtmf_pcap(capture, "2")
    before = stack.server.metric("voffice_media_dtmf_detected_total")
    op = op_header("menu", "menu", sound="menu-prompt", timeout=5, repeat=0, keys="12")
    early_media_call(workdir, stack.server, op, pause(300) + play(capture), "key=2")
    assert stack.server.metric("voffice_media_dtmf_detected_total") - before == 1


# --------------------------------------------------------------------------- voicemail


def test_voicemail_from_sipp_is_stored_with_its_event(stack: Stack, workdir: Path) -> None:
    call = vo_call()
    op = op_header("voicemail", "vm", sound="vm-prompt", number="+74951234567", caller="+79031112233")
    # the prompt is 4.04 s and the beep 0.4 s: the message starts after 5 s and lasts 7.08 s
    run = run_sipp(workdir, SIPP_DIR / "voicemail.xml", stack.server,
                   {"op": op, "vocall": call, "wait": "5000", "talk": "7600"})
    assert run.returncode == 0, f"{run.errors}\n{run.messages[-3000:]}"
    event = wait_event(stack.r, call)
    assert event["type"] == "voicemail" and event["status"] == "stored" and event["account"] == ACCOUNT
    assert event["number"] == "+74951234567" and event["caller"] == "+79031112233"
    assert event["reason"] == "hangup" and event["partial"] == "0"
    path = Path(event["path"])
    assert path.is_file() and path.is_relative_to(stack.server.data_dir / "recordings" / ACCOUNT)
    assert sha256_of(path) == event["sha256"]
    recorded = read_wav(path)
    sent = np.concatenate([alaw_decode(p.payload) for _t, p in read_pcap_rtp(CAPTURES / "g711a.pcap")])
    assert len(sent) == 7.08 * 8000  # 236 packets of 30 ms
    score, lag = best_match(sent, recorded)
    assert score > 0.9, f"the recording holds the message (correlation {score:.3f} at {lag / 8000:.2f} s)"
    assert 0.2 < lag / 8000 < 1.5, "the message starts about 0.56 s after the beep"


def test_bye_during_voicemail_stores_the_message(stack: Stack, workdir: Path) -> None:
    call = vo_call()
    unused = free_udp_port()
    peer = Peer(stack.server.addr, sdp_port=unused)  # the offer names a port nobody sends from
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind(("127.0.0.3", 0))
    stranger.settimeout(0.3)
    try:
        peer.invite(op_header("voicemail", "vm", max_seconds=60), call)  # no sound: 0.5 s silence + beep
        answer = peer.final()
        assert answer.status == 200
        peer.ack(answer)
        assert peer.remote_rtp is not None
        # RTP from an address that is neither the negotiated one nor Kamailio's: not latched
        stranger.sendto(RtpSender(8).packet(alaw_encode(tone(0.02, 1000))).serialize(), peer.remote_rtp)
        peer.media(1.0, lambda _rx: np.zeros(FRAME, dtype=np.int16))  # the prompt and the beep
        message = tone(1.5)
        speak(peer, message)
        assert peer.rtp_received > 40, "the server sends to where our RTP comes from, not to the SDP's port"
        assert peer.bye().status == 200
    finally:
        peer.close()
    with pytest.raises(TimeoutError):
        stranger.recvfrom(2048)  # nothing was ever sent to the stranger
    stranger.close()
    event = wait_event(stack.r, call)
    assert (event["type"], event["status"], event["reason"]) == ("voicemail", "stored", "hangup")
    path = Path(event["path"])
    assert sha256_of(path) == event["sha256"]
    recorded = read_wav(path)
    score, _lag = best_match(message[: 8000], recorded)
    assert score > 0.9 and 1.2 < len(recorded) / 8000 < 3.0


# --------------------------------------------------------------------------- fax


@pytest.mark.skipif(not spandsp_available(), reason="libspandsp is not installed")
def test_fax_two_pages(stack: Stack, workdir: Path) -> None:
    call = vo_call()
    tiff = workdir / "sent.tif"
    pages = make_test_tiff(tiff, pages=2)
    peer = Peer(stack.server.addr)
    session = FaxSession(calling=True, rx_file=None, tx_file=tiff)
    try:
        peer.invite(op_header("fax", "fax", sound="fax-prompt", number="+74951234567", caller="+79031112233"), call)
        answer = peer.final()
        assert answer.status == 200
        peer.ack(answer)
        finished: list[float] = []

        def produce(rx: np.ndarray) -> np.ndarray:
            out: np.ndarray = session.process(rx)
            if session.done and not finished:
                finished.append(time.monotonic())
            return out

        # until our side is done and the server hung up (or 3 s more), 90 s at most
        peer.media(90, produce, stop=lambda: bool(finished) and (peer.bye_received or time.monotonic() - finished[0] > 3))
        assert session.result is not None and session.result.ok, session.result
        if not peer.bye_received:
            assert peer.bye().status == 200
    finally:
        session.close()
        peer.close()
    event = wait_event(stack.r, call, timeout=20)
    assert (event["type"], event["status"], event["pages"]) == ("fax", "stored", "2"), event
    received = Path(event["path"])
    assert received.suffix == ".tif" and sha256_of(received) == event["sha256"]
    assert Path(event["pdf"]).is_file() and Path(event["pdf"]).read_bytes().startswith(b"%PDF")
    with Image.open(received) as image:
        assert getattr(image, "n_frames", 1) == 2
        for index, sent in enumerate(pages):
            image.seek(index)
            got = np.asarray(image.convert("1"), dtype=bool)
            want = np.asarray(sent, dtype=bool)
            assert got.shape == want.shape
            assert (got == want).mean() > 0.999, f"page {index + 1} differs"


# --------------------------------------------------------------------------- access, lifecycle


def test_invite_from_a_source_that_is_not_kamailio_gets_403(redis_instance: RedisServer, workdir: Path) -> None:
    server = MediaServerProcess(workdir, redis_instance.url, kamailio=("127.0.0.2",))
    server.start(ready_from="127.0.0.2")
    try:
        assert server.options("127.0.0.1") is None  # anything but an INVITE: no answer at all
        outsider = Peer(server.addr, local_ip="127.0.0.1")
        try:
            outsider.invite(op_header("menu", "menu", timeout=1, keys="1"), vo_call())
            assert outsider.final(5).status == 403
        finally:
            outsider.close()
        kamailio = Peer(server.addr, local_ip="127.0.0.2")
        try:
            kamailio.invite(op_header("menu", "menu", timeout=1, keys="1"), vo_call())
            final = kamailio.final(10)
            assert final.status == 480 and final.headers.get("X-VO-Result") == "timeout"
            kamailio.ack(final)
        finally:
            kamailio.close()
    finally:
        server.terminate()


def test_sigterm_during_voicemail_stores_the_recording(redis_instance: RedisServer, workdir: Path) -> None:
    r = redis.Redis.from_url(redis_instance.url)
    server = MediaServerProcess(workdir, redis_instance.url).start()
    call = vo_call()
    peer = Peer(server.addr)
    try:
        peer.invite(op_header("voicemail", "vm", max_seconds=60), call)
        answer = peer.final()
        peer.ack(answer)
        peer.media(1.0, lambda _rx: np.zeros(FRAME, dtype=np.int16))
        message = tone(1.5, hz=700)
        speak(peer, message)
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        while server.proc.poll() is None and time.monotonic() < deadline:
            peer.poll_sip()  # the server hangs up: answer its BYE
            time.sleep(0.02)
        assert server.proc.poll() == 0, server.log_text()
        assert peer.bye_received
    finally:
        peer.close()
        server.kill()
    event = wait_event(r, call)
    assert (event["type"], event["status"], event["reason"]) == ("voicemail", "stored", "hangup")
    path = Path(event["path"])
    assert sha256_of(path) == event["sha256"]
    score, _lag = best_match(message[:8000], read_wav(path))
    assert score > 0.9
    assert not list((server.data_dir / "recordings" / "incoming").iterdir())


def test_restart_repairs_or_quarantines_partial_recordings(redis_instance: RedisServer, workdir: Path) -> None:
    data_dir = workdir / "media"
    recordings = RecordingStore(data_dir / "recordings", clock=lambda: datetime(2024, 6, 1, 12, tzinfo=UTC))
    # what a crash in the middle of a recording leaves: a .part without its final header
    writer = recordings.open("voicemail", ACCOUNT, "00112233445566778899aabbccddeeff", meta={"caller": "+79031112233"})
    audio = tone(1.0, hz=500)
    for i in range(0, len(audio), FRAME):
        writer.write_frame(audio[i : i + FRAME])
    writer.close()
    incoming = data_dir / "recordings" / "incoming"
    orphan = incoming / f"{uuid.uuid4().hex}.part"  # no sidecar: nobody knows whose it is
    orphan.write_bytes(b"\x00" * 100)
    server = MediaServerProcess(workdir, redis_instance.url, data_dir=data_dir).start()
    try:
        assert server.options() == 200
    finally:
        assert server.terminate() == 0
    assert sorted(p.name for p in incoming.iterdir()) == []
    repaired = data_dir / "recordings" / ACCOUNT / "2024-06-01" / "00112233445566778899aabbccddeeff.wav"
    assert repaired.is_file()
    assert np.array_equal(read_wav(repaired), audio)
    meta = (repaired.parent / (repaired.name + ".json")).read_text()
    assert '"partial": true' in meta and "+79031112233" in meta
    quarantined = data_dir / "recordings" / "quarantine" / orphan.name
    assert quarantined.is_file()
    assert "no metadata sidecar" in (quarantined.parent / (orphan.name + ".reason")).read_text()
    assert "repaired" in server.log_text() and "quarantined" in server.log_text()


def test_server_survived_every_call(stack: Stack) -> None:
    """The module's server is still up after everything above, and logged no error."""
    assert stack.server.proc is not None and stack.server.proc.poll() is None
    assert stack.server.options() == 200
    log = stack.server.log_text()
    assert '"level": "ERROR"' not in log and "Traceback" not in log, log[-3000:]
