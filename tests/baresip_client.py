"""A real SIP client for the stack tests: Debian 12's baresip 1.0.0, headless, driven over its
ctrl_tcp module (netstring-framed JSON commands; its events come back on the same connection).

Each client has a private config dir (`baresip -f DIR`, HOME pointed there too), so nothing of
~/.baresip is read or written. No sound card: the audio source is the `aufile` module playing a
WAV of a 400 Hz tone (far from every DTMF frequency; aufile closes the call with "end of file"
when the WAV runs out, so it outlasts any test), no player module (baresip then decodes and
drops what it hears), and the `sndfile` filter dumps what it heard and sent to WAVs in the dir,
so a test can tell a prompt or an echo from silence. `-s` puts the SIP trace in baresip.log.

What baresip 1.0.0 can and cannot do here (its source at tag v1.0.0, libre 1.1.0):
- DTMF: RFC 4733 telephone-events in the RTP only (`sndcode`), in early media too once a 183
  with SDP has started the stream. Sending SIP INFO came in baresip 1.1.0 (commit b2c523a4,
  account `dtmfmode=info`); 1.0.0 only receives INFO.
- TLS: on the SIP port + 1; `sip_cafile` loads a CA, but libre 1.1.0's SIP/TLS client never asks
  for the server certificate to be verified (no tls_set_verify_server), so any one is accepted.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import socket
import subprocess
import threading
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

from routing.stack.ports import free_port, free_port_block, free_port_range
from routing.stack.redis_server import stop_process

BARESIP = shutil.which("baresip")
MODULES = Path("/usr/lib/baresip/modules")
_TRACE = re.compile(r"^(UDP|TCP|TLS) (\S+) -> (\S+)\n(.*)$", re.M)


class BaresipError(AssertionError):
    """A command baresip refused, or an event that did not come in time (with its log's tail)."""


def tone(hz: float, seconds: float, amplitude: int = 3000, rate: int = 8000) -> bytes:
    """Mono s16le samples of a sine."""
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()


def level(path: Path) -> tuple[float, float]:
    """RMS level and strongest frequency (Hz) of a mono 8 kHz s16 WAV, from its data chunk to
    the end of the file: sndfile writes the header's sizes only when it closes the file."""
    data = path.read_bytes()
    start = data.find(b"data") + 8
    if start < 8 or len(data) - start < 2:
        return 0.0, 0.0
    samples = np.frombuffer(data[start : start + (len(data) - start) // 2 * 2], dtype="<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.sqrt(np.mean(samples**2))), float(np.fft.rfftfreq(len(samples), 1 / 8000)[spectrum.argmax()])


class Baresip:
    """One baresip process with one account (no registration) whose requests all go to
    Kamailio over `transport`: `start()`, `dial(uri)`, `send_dtmf(digits)`, `wait_for(event
    types)`, `hang_up()`, and always `stop()` (or use it as a context manager)."""

    def __init__(self, workdir: Path, caller: str, proxy_port: int, transport: str = "udp",
                 proxy_host: str = "127.0.0.1", cafile: Path | None = None, name: str = "baresip",
                 tone_hz: float = 400.0, audio_seconds: int = 90, lifetime: int = 120):
        assert transport in ("udp", "tcp", "tls"), transport
        self.dir = workdir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.caller, self.transport = caller, transport
        self.proxy = f"{proxy_host}:{proxy_port}"
        self.cafile, self.tone_hz = cafile, tone_hz
        self.audio_seconds, self.lifetime = audio_seconds, lifetime
        self.sip_port = free_port_block(2)  # UDP and TCP on it, TLS on the next one (baresip's rule)
        self.ctrl_port = free_port()
        self.rtp_ports = free_port_range(40)
        self.proc: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None
        self.events: list[dict[str, Any]] = []  # every event so far, in order
        self._consumed = 0  # wait_for looks only after the last event it returned
        self._responses: queue.Queue[dict[str, Any]] = queue.Queue()
        self._cond = threading.Condition()
        self._reader: threading.Thread | None = None
        self._token = 0

    # --- the process -----------------------------------------------------------------------

    def write_config(self) -> None:
        """Config, account and the WAV the calls send, all in self.dir."""
        wav = self.dir / "voice.wav"
        with wave.open(str(wav), "wb") as out:  # aufile needs the codec's rate: 8 kHz mono s16
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(8000)
            out.writeframes(tone(self.tone_hz, self.audio_seconds))
        lines = [
            "poll_method epoll",
            f"sip_listen 127.0.0.1:{self.sip_port}",
            *([f"sip_cafile {self.cafile}"] if self.cafile else []),
            "call_local_timeout 60",
            "call_max_calls 2",
            "audio_buffer 20-160",
            f"audio_source aufile,{wav}",
            "audio_level no",
            "ausrc_format s16", "auplay_format s16", "auenc_format s16", "audec_format s16",
            f"rtp_ports {self.rtp_ports[0]}-{self.rtp_ports[1]}",
            "rtcp_mux no",
            "jitter_buffer_delay 5-10",
            "net_interface 127.0.0.1",  # loopback only, in the SDP too ("lo" by name fails in 1.0.0)
            f"module_path {MODULES}",
            "module g711.so",
            "module aufile.so",
            "module sndfile.so",
            f"snd_path {self.dir}",
            "module_tmp account.so",
            "module_app menu.so",  # the dial, hangup and sndcode commands
            "module_app ctrl_tcp.so",
            f"ctrl_tcp_listen 127.0.0.1:{self.ctrl_port}",
        ]
        (self.dir / "config").write_text("\n".join(lines) + "\n")
        outbound = f"sip:{self.proxy};transport={self.transport}"
        (self.dir / "accounts").write_text(
            f'<sip:{self.caller}@127.0.0.1;transport={self.transport}>;regint=0;outbound="{outbound}";'
            "audio_codecs=pcma,pcmu;answermode=manual;mwi=no;call_transfer=no\n")

    def start(self, timeout: float = 10) -> Baresip:
        assert BARESIP, "baresip is not installed"
        self.write_config()
        env = {**os.environ, "HOME": str(self.dir)}
        # -s: the SIP trace in the log; -t: it quits by itself should this process die first
        argv = [BARESIP, "-f", str(self.dir), "-s", "-t", str(self.lifetime)]
        if shutil.which("stdbuf"):
            argv = ["stdbuf", "-oL", "-eL", *argv]  # the log readable while it runs
        with (self.dir / "baresip.log").open("wb") as log:
            self.proc = subprocess.Popen(argv, cwd=self.dir, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while self.sock is None:
            if self.proc.poll() is not None:
                raise BaresipError(f"baresip exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self.sock = socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=1)
            except OSError:
                if time.monotonic() > deadline:
                    raise BaresipError(f"ctrl_tcp did not listen within {timeout} s:\n{self.log_tail()}") from None
                time.sleep(0.1)
        self._reader = threading.Thread(target=self._read, args=(self.sock,), name=f"baresip-{self.dir.name}", daemon=True)
        self._reader.start()
        return self

    def stop(self) -> None:
        """`quit`, then SIGTERM and SIGKILL if need be: no baresip outlives its test."""
        if self.sock is not None and self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(OSError, BaresipError):
                self.command("quit", timeout=1)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                stop_process(self.proc, timeout=3)
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
        if self._reader is not None:
            self._reader.join(timeout=2)

    def __enter__(self) -> Baresip:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # --- ctrl_tcp: netstrings of JSON --------------------------------------------------------

    def _read(self, sock: socket.socket) -> None:
        buffer = b""
        sock.settimeout(None)
        while True:
            try:
                chunk = sock.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            buffer += chunk
            while b":" in buffer:
                head, _, rest = buffer.partition(b":")
                size = int(head)
                if len(rest) < size + 1:
                    break
                message = json.loads(rest[:size])
                buffer = rest[size + 1 :]  # the payload, then its ","
                if message.get("response"):
                    self._responses.put(message)
                    continue
                with self._cond:
                    self.events.append({**message, "at": time.monotonic()})
                    self._cond.notify_all()
        with self._cond:
            self.events.append({"type": "CTRL_CLOSED", "at": time.monotonic()})
            self._cond.notify_all()

    def command(self, command: str, params: str = "", timeout: float = 5) -> str:
        """Run one of baresip's long commands; its response's data. Raises if it was not ok."""
        assert self.sock is not None
        self._token += 1
        token = str(self._token)
        payload = json.dumps({"command": command, "params": params, "token": token}).encode()
        self.sock.sendall(b"%d:%s," % (len(payload), payload))
        deadline = time.monotonic() + timeout
        while True:
            try:
                response = self._responses.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise BaresipError(f"no response to {command} {params} in {timeout} s:\n{self.log_tail()}") from None
            if response.get("token") == token:
                break
        if not response.get("ok"):
            raise BaresipError(f"{command} {params}: {response.get('data')}\n{self.log_tail()}")
        return str(response.get("data", ""))

    # --- a call --------------------------------------------------------------------------------

    def dial(self, uri: str) -> None:
        self.command("dial", uri)

    def send_dtmf(self, digits: str, gap: float = 0.4) -> None:
        """Each key as RFC 4733 events in the RTP (9 packets of 20 ms, then 3 end packets);
        one `sndcode` per key, `gap` apart, so each key ends before the next starts."""
        for digit in digits:
            self.command("sndcode", digit)
            time.sleep(gap)

    def hang_up(self) -> None:
        """BYE once established, CANCEL before."""
        self.command("hangup")

    def wait_for(self, *types: str, timeout: float = 20) -> dict[str, Any]:
        """The next event of one of `types` after the last one this returned: CALL_RINGING
        (an 18x without SDP), CALL_PROGRESS (one with SDP: early media), CALL_ESTABLISHED,
        CALL_CLOSED (its `param` says why), ..."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i in range(self._consumed, len(self.events)):
                    if self.events[i].get("type") in types:
                        self._consumed = i + 1
                        return self.events[i]
                left = deadline - time.monotonic()
                if left <= 0 or (self.events and self.events[-1].get("type") == "CTRL_CLOSED"):
                    seen = [(e.get("type"), e.get("param")) for e in self.events]
                    raise BaresipError(f"no {'/'.join(types)} within {timeout} s; events {seen}\n{self.log_tail()}")
                self._cond.wait(left)

    def seen(self) -> list[str]:
        """The types of the events so far."""
        return [str(e.get("type")) for e in self.events]

    # --- what it left ----------------------------------------------------------------------------

    def log(self) -> str:
        path = self.dir / "baresip.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def sip_trace(self) -> list[tuple[str, str, str]]:
        """(transport, "->" sent or "<-" received, first line) of every SIP message, in order."""
        text = re.sub(r"\x1b\[[0-9;]*m", "", self.log())
        return [(m[1], "<-" if m[2] == self.proxy else "->", m[4].strip()) for m in _TRACE.finditer(text)]

    def from_tag(self) -> str:
        match = re.search(r"^From: .*;tag=([^;\s]+)", self.log(), re.M)
        assert match, self.dir
        return match[1]

    def keep_audio(self, label: str) -> None:
        """Rename the dumps of the stream running now to LABEL-dec.wav / LABEL-enc.wav (older
        ones, from streams stopped since the last call, to LABEL-N-...). sndfile names its dumps
        by the second, so a stream restarted within the same second (the 200 after a 183, a
        re-INVITE) would overwrite them; it goes on writing to the renamed files until it stops."""
        for kind in ("dec", "enc"):
            dumps = sorted(self.dir.glob(f"dump-*-{kind}.wav"))
            for i, path in enumerate(dumps):
                path.rename(self.dir / (f"{label}-{kind}.wav" if i == len(dumps) - 1 else f"{label}-{i}-{kind}.wav"))

    def heard(self, label: str) -> tuple[float, float]:
        """RMS level and strongest frequency of what was heard in the stream kept as `label`."""
        return level(self.dir / f"{label}-dec.wav")
