"""`voffice bench media`: how many concurrent calls one media server process carries in time.

One `MediaServer` runs in this process, as in production (its asyncio loop, uvloop when
installed, one 20 ms ticker, real UDP sockets on loopback), with a synthetic 10 s prompt
instead of a config from Redis: the benchmark needs neither Redis nor a loaded account.
A second process plays the N callers: it sends N INVITEs (an announcement in early media, the
X-VO-Op header Kamailio would add), waits for every 183, then for `seconds` sends each call one
PCMA packet every 20 ms, call i in phase i % 10 of the 20 ms (independent callers are not in
step), and receives the server's packets on N sockets. What the callers send: background noise
(about -44 dBm0: a caller listening to the prompt; the in-band DTMF detector takes its quiet
path) or, with `speech=True`, speech-like audio at full level (every frame fully analysed).

Figures, over the measured window only (after every call is up):
- CPU per call: this process's CPU time (all threads) / calls / seconds, as a share of one core;
- ticker lateness p50/p99/max: how late each 20 ms tick ran (the server's own metric);
- receive jitter p50/p99/max: at the callers, |inter-arrival - 20 ms| of consecutive packets,
  with kernel receive timestamps (SO_TIMESTAMPNS, moved onto the monotonic clock), so the
  callers' own scheduling is out of it;
- lost: sequence numbers never received; late: packets more than 20 ms behind their call's
  best schedule (they would miss a one-frame jitter buffer); the server's late ticks;
- the callers' CPU and how late they sent (p99): a loaded machine shows there first.
A run "holds" when ticker and receive p99 are below 5 ms and nothing is lost or late.
On a machine that does nothing else, `pin=True` keeps the server on the first CPU and the
callers on the others; on a shared one it makes things worse (the scheduler cannot move the
server away from a busy CPU).

    python -m voffice_bench.media --calls 100 250 500 750 --seconds 20 [--speech] [--pin]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import secrets
import selectors
import shutil
import socket
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from voffice_media.g711 import alaw_encode
from voffice_media.operations import FRAME, Pcm
from voffice_media.rtp import RtpSender
from voffice_media.sdp import negotiate, parse_offer
from voffice_media.server import MediaServer, ServerConfig
from voffice_media.sipmsg import Headers, Request, Response, SipParseError, parse

__all__ = ["holds", "run_media_bench", "sweep"]

HOST = "127.0.0.1"
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; the control message has the same number
TICK = 0.020
JITTER_LIMIT_MS = 5.0
SLOTS = 10  # the callers' send phases within 20 ms


def synthetic_prompt(seconds: float = 10.0, seed: int = 7) -> Pcm:
    """Speech-like audio: a voice with a wandering pitch and syllable-rate envelope."""
    rng = np.random.default_rng(seed)
    n = int(8000 * seconds)
    t = np.arange(n) / 8000
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t) + 10 * rng.standard_normal(n).cumsum() / np.sqrt(n)
    phase = 2 * np.pi * np.cumsum(f0) / 8000
    voice = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * 3.0 * t) + 0.3, 0, None)
    audio = 6000 * voice * envelope / 2.5
    return np.clip(audio, -32768, 32767).astype(np.int16)


class _BenchServer(MediaServer):
    """The media server with one prompt for every call instead of configs from Redis."""

    prompt_audio: Pcm = synthetic_prompt()

    async def _prompt(self, op: dict[str, str]) -> Pcm:
        return self.prompt_audio


def _raise_fd_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))


def _pin(*, caller: bool) -> set[int] | None:
    """Keep the media server on the first CPU and the callers on the others (so the load
    generator does not take the measured process's CPU); returns the previous affinity.
    Nothing on a single CPU or where affinity cannot be set."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    previous = set(cpus)
    os.sched_setaffinity(0, set(cpus[1:]) if caller else {cpus[0]})
    return previous


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _percentiles(values: Sequence[float] | np.ndarray) -> dict[str, float]:
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return {"p50": 0.0, "p99": 0.0, "max": 0.0}
    return {"p50": round(float(np.percentile(data, 50)), 3), "p99": round(float(np.percentile(data, 99)), 3),
            "max": round(float(data.max()), 3)}


# --------------------------------------------------------------------------- the callers


def _invite(index: int, tag: str, local: tuple[str, int], rtp_port: int, server: tuple[str, int]) -> tuple[str, bytes]:
    call_id = f"bench-{tag}-{index}"
    host, port = local
    sdp = (f"v=0\r\no=bench {index} 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
           f"m=audio {rtp_port} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n"
           "a=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n").encode()
    op = "v=1;type=announcement;account=bench;version=1;op=bench;sound=prompt;timeout=999"
    headers = Headers.of([
        ("Via", f"SIP/2.0/UDP {host}:{port};branch=z9hG4bK{tag}{index}x;rport"),
        ("Max-Forwards", "70"),
        ("From", f"<sip:caller{index}@{host}:{port}>;tag={tag}{index}"),
        ("To", f"<sip:bench@{server[0]}:{server[1]}>"),
        ("Call-ID", call_id),
        ("CSeq", "1 INVITE"),
        ("Contact", f"<sip:caller{index}@{host}:{port}>"),
        ("X-VO-Op", op),
        ("X-VO-Call", f"{index:016x}"),
        ("Content-Type", "application/sdp"),
    ])
    return call_id, Request("INVITE", f"sip:bench@{server[0]}:{server[1]}", headers, sdp).serialize()


def _set_up_calls(sip: socket.socket, rtps: list[socket.socket], server: tuple[str, int],
                  timeout: float = 30.0) -> list[tuple[str, int]]:
    """INVITE every call (50 at a time, retransmitted every second) until each has its 183."""
    tag = secrets.token_hex(3)
    local = sip.getsockname()
    invites = [_invite(i, tag, local, s.getsockname()[1], server) for i, s in enumerate(rtps)]
    index = {call_id: i for i, (call_id, _) in enumerate(invites)}
    remote: dict[int, tuple[str, int]] = {}
    sent_at: dict[int, float] = {}
    deadline = time.monotonic() + timeout
    sip.settimeout(0.01)
    while len(remote) < len(rtps):
        now = time.monotonic()
        if now > deadline:
            raise RuntimeError(f"only {len(remote)} of {len(rtps)} calls set up within {timeout} s")
        budget = 50
        for i, (_call_id, data) in enumerate(invites):
            if i in remote or now - sent_at.get(i, -10.0) < 1.0:
                continue
            sip.sendto(data, server)
            sent_at[i] = now
            budget -= 1
            if budget == 0:
                break
        receive_until = time.monotonic() + 0.05
        while time.monotonic() < receive_until:
            try:
                data, _addr = sip.recvfrom(65535)
            except TimeoutError:
                continue
            try:
                message = parse(data)
            except SipParseError:
                continue
            if not isinstance(message, Response):
                continue
            i_call = index.get(message.headers.get("Call-ID") or "")
            if i_call is None:
                continue
            if message.status >= 300:
                raise RuntimeError(f"call {i_call} refused: {message.status} {message.reason}")
            if message.body and i_call not in remote:
                remote[i_call] = negotiate(parse_offer(message.body)).remote
    return [remote[i] for i in range(len(rtps))]


def _callers(server: tuple[str, int], calls: int, seconds: float, pin: bool = False, speech: bool = False) -> None:
    """The caller process (`--callers-for`): set up the calls, say "ready" on stdout, wait for
    "go" on stdin, exchange RTP, print what arrived as one JSON line."""
    try:
        if pin:
            _pin(caller=True)
        _raise_fd_limit(calls + 100)
        sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sip.bind((HOST, 0))
        sip.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        rtps = []
        for _ in range(calls):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((HOST, 0))
            s.setblocking(False)
            s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            rtps.append(s)
        remotes = _set_up_calls(sip, rtps, server)
        _say({"kind": "ready", "calls": calls})
        if sys.stdin.readline().strip() != "go":
            return
        _say(_exchange(rtps, remotes, seconds, speech))
    except Exception as exc:
        _say({"kind": "error", "error": f"{type(exc).__name__}: {exc}"})


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _exchange(rtps: list[socket.socket], remotes: list[tuple[str, int]], seconds: float,
              speech: bool = False) -> dict[str, Any]:
    if speech:
        voice = synthetic_prompt(1.0, seed=11)
        noise = [alaw_encode(voice[i : i + FRAME]) for i in range(0, len(voice), FRAME)]
    else:
        rng = np.random.default_rng(1)
        noise = [alaw_encode(rng.normal(0, 150, FRAME).astype(np.int16)) for _ in range(50)]
    senders = [RtpSender(8) for _ in rtps]
    selector = selectors.DefaultSelector()
    for i, s in enumerate(rtps):
        selector.register(s, selectors.EVENT_READ, i)
    arrivals: list[list[tuple[int, float]]] = [[] for _ in rtps]
    for s in rtps:  # what arrived while waiting for "go" is not part of the measurement
        with contextlib.suppress(BlockingIOError):
            while True:
                s.recv(2048)
    cpu0 = time.process_time()
    start = time.monotonic()
    end = start + seconds
    # Independent callers do not send in step: call i sends in slot i % SLOTS of each 20 ms.
    slot = TICK / SLOTS
    groups = [list(range(k, len(rtps), SLOTS)) for k in range(SLOTS)]
    n = 0  # slots so far
    sent = 0
    send_late: list[float] = []
    while True:
        now = time.monotonic()
        if now >= end + 0.1:
            break
        due = start + n * slot
        if now >= due and due < end:
            send_late.append((now - due) * 1000)
            payload = noise[(n // SLOTS) % len(noise)]
            for i in groups[n % SLOTS]:
                rtps[i].sendto(senders[i].packet_bytes(payload), remotes[i])
                sent += 1
            n += 1
            continue
        wait = max(0.0, min(due, end + 0.1) - time.monotonic())
        ready = selector.select(wait)
        # Kernel timestamps are wall-clock time, which the system may step or slew while we
        # run: put them on the monotonic clock with the offset between the two right now.
        wall_offset = time.time() - time.monotonic()
        for key, _mask in ready:
            sock = rtps[key.data]
            record = arrivals[key.data]
            while True:
                try:
                    data, ancillary, _flags, _addr = sock.recvmsg(2048, 64)
                except BlockingIOError:
                    break
                stamp = time.monotonic()
                for level, kind, value in ancillary:
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
                        sec, nsec = struct.unpack("qq", value[:16])
                        stamp = sec + nsec / 1e9 - wall_offset
                if len(data) >= 12:
                    record.append((struct.unpack_from("!H", data, 2)[0], stamp))
    cpu = time.process_time() - cpu0
    selector.close()
    _say({"kind": "stopped"})
    return {"kind": "result", "arrivals": _arrival_stats(arrivals), "sent": sent, "caller_cpu": cpu,
            "caller_send_late_ms": _percentiles(send_late)}


def _arrival_stats(arrivals: list[list[tuple[int, float]]]) -> dict[str, Any]:
    received = lost = late = reordered = duplicates = 0
    deviations: list[np.ndarray] = []
    for record in arrivals:
        if len(record) < 2:
            continue
        seq = np.array([r[0] for r in record], dtype=np.int64)
        t = np.array([r[1] for r in record], dtype=np.float64)
        unwrapped = seq[0] + np.cumsum(np.concatenate([[0], (np.diff(seq) + 0x8000) % 0x10000 - 0x8000]))
        received += len(record)
        unique = np.unique(unwrapped)
        duplicates += len(record) - len(unique)
        lost += int(unique[-1] - unique[0] + 1 - len(unique))
        reordered += int(np.sum(np.diff(unwrapped) < 0))
        consecutive = np.diff(unwrapped) == 1
        deviations.append(np.abs(np.diff(t)[consecutive] - TICK) * 1000)
        schedule = (t - t[0]) - (unwrapped - unwrapped[0]) * TICK
        late += int(np.sum(schedule - schedule.min() > TICK))
    jitter = np.concatenate(deviations) if deviations else np.zeros(0)
    return {"received": received, "lost": lost, "late": late, "reordered": reordered, "duplicates": duplicates,
            "jitter_ms": _percentiles(jitter)}


# --------------------------------------------------------------------------- the server side


async def _run(calls: int, seconds: float, echo: Callable[[str], None], pin: bool = False,
               speech: bool = False) -> dict[str, Any]:
    _raise_fd_limit(calls + 200)
    data_dir = Path(tempfile.mkdtemp(prefix="voffice-media-bench-"))
    base = 30000 + 2 * (os.getpid() % 5000)
    config = ServerConfig(host=HOST, port=_free_udp_port(), kamailio=frozenset({HOST}), data_dir=data_dir,
                          rtp_ports=(base, base + 2 * calls + 199), redis_url=None)
    server = _BenchServer(config)
    await server.start()
    previous_affinity = _pin(caller=False) if pin else None
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voffice_bench.media", "--callers-for", f"{HOST}:{config.port}",
        "--calls", str(calls), "--seconds", str(seconds),
        *(["--callers-pin"] if pin else []), *(["--speech"] if speech else []),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        message = await _hear(process.stdout, 120.0)
        if message["kind"] != "ready":
            raise RuntimeError(f"callers failed: {message.get('error')}")
        if len(server.calls) != calls:
            raise RuntimeError(f"{len(server.calls)} calls on the server, {calls} expected")
        echo(f"{calls} calls up; measuring {seconds:g} s")
        await asyncio.sleep(0.5)  # every call's RTP flowing both ways
        server.metrics.late_ms.clear()
        counters0 = dict(server.metrics.counters)
        cpu0, wall0 = time.process_time(), time.monotonic()
        process.stdin.write(b"go\n")
        await process.stdin.drain()
        stopped = await _hear(process.stdout, seconds + 60)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        if stopped["kind"] != "stopped":
            raise RuntimeError(f"callers failed: {stopped.get('error')}")
        counters = {k: v - counters0.get(k, 0) for k, v in server.metrics.counters.items()}
        late_ms = list(server.metrics.late_ms)
        active = len(server.calls)
        result = await _hear(process.stdout, 60)
        if result["kind"] != "result":
            raise RuntimeError(f"callers failed: {result.get('error')}")
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
        for call in list(server.calls.values()):
            server._end(call)
        await server.stop(grace=0)
        shutil.rmtree(data_dir, ignore_errors=True)
        if previous_affinity:
            os.sched_setaffinity(0, previous_affinity)
    arrivals = result["arrivals"]
    ticker = _percentiles(late_ms)
    report = {
        "calls": calls,
        "seconds": round(wall, 2),
        "callers_send": "speech" if speech else "noise",
        "active_calls_at_end": active,
        "cpu_per_call_percent": round(100 * cpu / calls / wall, 4),
        "cpu_process_percent": round(100 * cpu / wall, 1),
        "ticker_late_ms": ticker,
        "receive_jitter_ms": arrivals["jitter_ms"],
        "packets_sent_by_server": counters.get("packets_sent", 0),
        "packets_received_by_callers": arrivals["received"],
        "lost": arrivals["lost"],
        "late": arrivals["late"],
        "reordered": arrivals["reordered"],
        "late_ticks": counters.get("packets_late", 0),
        "rtp_rejected": counters.get("rtp_rejected", 0),
        "packets_sent_by_callers": result["sent"],
        "caller_cpu_percent": round(100 * result["caller_cpu"] / wall, 1),
        "caller_send_late_ms": result["caller_send_late_ms"],
    }
    report["holds"] = holds(report)
    return report


async def _hear(stream: asyncio.StreamReader, timeout: float) -> dict[str, Any]:
    line = await asyncio.wait_for(stream.readline(), timeout)
    if not line:
        raise RuntimeError("the caller process ended without a word")
    message: dict[str, Any] = json.loads(line)
    return message


def holds(report: dict[str, Any]) -> bool:
    """The target: p99 jitter below 5 ms (ticker and receivers), nothing lost or late."""
    return bool(
        report["ticker_late_ms"]["p99"] < JITTER_LIMIT_MS
        and report["receive_jitter_ms"]["p99"] < JITTER_LIMIT_MS
        and report["lost"] == 0
        and report["late"] == 0
        and report["late_ticks"] == 0
    )


def format_report(report: dict[str, Any]) -> str:
    t, j, c = report["ticker_late_ms"], report["receive_jitter_ms"], report["caller_send_late_ms"]
    return (
        f"calls={report['calls']} seconds={report['seconds']} "
        f"cpu/call={report['cpu_per_call_percent']:.3f}% of a core (process {report['cpu_process_percent']}%) "
        f"ticker late p50/p99/max={t['p50']}/{t['p99']}/{t['max']} ms "
        f"rx jitter p50/p99/max={j['p50']}/{j['p99']}/{j['max']} ms "
        f"sent={report['packets_sent_by_server']} received={report['packets_received_by_callers']} "
        f"lost={report['lost']} late={report['late']} late_ticks={report['late_ticks']} "
        f"[callers: cpu {report['caller_cpu_percent']}%, send late p99 {c['p99']} ms] "
        f"-> {'holds' if report['holds'] else 'FAILS'}"
    )


def run_media_bench(calls: int, seconds: float, echo: Callable[[str], None] = print, *,
                    pin: bool = False, speech: bool = False) -> dict[str, Any]:
    """Run `calls` concurrent announcement calls for `seconds` in one media server; print and
    return the figures (see the module docstring). `pin`: server on the first CPU, callers
    on the others; `speech`: the callers talk instead of listening."""
    if calls < 1 or seconds <= 0:
        raise ValueError("calls >= 1 and seconds > 0")
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    report: dict[str, Any] = runner(_run(calls, seconds, echo, pin, speech))
    echo(format_report(report))
    return report


def sweep(counts: Sequence[int], seconds: float, echo: Callable[[str], None] = print, *,
          pin: bool = False, speech: bool = False) -> dict[str, Any]:
    """Run each count in turn, smallest first; the answer is the largest N that held with
    every smaller N tested holding too."""
    reports = [run_media_bench(n, seconds, echo, pin=pin, speech=speech) for n in sorted(counts)]
    best = 0
    for report in reports:
        if not report["holds"]:
            break
        best = report["calls"]
    echo(f"largest N that holds: {best}" if best else "no N held")
    return {"runs": reports, "largest_holding": best}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m voffice_bench.media", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, nargs="+", default=[100, 250, 500, 750])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--pin", action="store_true",
                        help="keep the server on the first CPU and the callers on the others (on an otherwise idle machine)")
    parser.add_argument("--speech", action="store_true", help="the callers talk (full level) instead of listening")
    parser.add_argument("--callers-for", metavar="HOST:PORT", help=argparse.SUPPRESS)
    parser.add_argument("--callers-pin", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.callers_for:
        host, _, port = args.callers_for.rpartition(":")
        _callers((host, int(port)), args.calls[0], args.seconds, args.callers_pin, args.speech)
        return
    result = sweep(args.calls, args.seconds, pin=args.pin, speech=args.speech)
    sys.exit(0 if result["largest_holding"] else 1)


if __name__ == "__main__":
    main()
