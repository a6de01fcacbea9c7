"""The media server: asyncio sockets and one 20 ms ticker around the sans-IO parts.

SIP goes through `uas.UAS`, RTP through one UDP socket per call, the call's behaviour through
`operations`. The ticker is the only clock: every 20 ms it asks each active call for its
next frame, sends it, and feeds what arrived since the last tick; it never sleeps per
stream. Blocking work (prompt conversion, fsync of recordings, fax PDF) runs in a thread
so the ticker keeps time.

Contract with Kamailio (DESIGN.md section 5, routing/core/media_contract.py): INVITEs carry
`X-VO-Op` and `X-VO-Call`; early-media operations answer 183 with SDP and end with a
final 480 carrying `X-VO-Result`; voicemail and fax answer 200, record, store, emit an event
on `voffice:events` and hang up.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import struct
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from routing.core.clock import now as clock_now
from routing.core.media_contract import CALL_ID, ContractError, decode_op
from routing.store.node_store import reader_from_env
from routing.store.reader import StoreUnavailable
from voffice_media import events as events_mod

from .dtmf import Rfc4733Detector, ToneDetector
from .fax import FaxSession, spandsp_available, tiff_to_pdf
from .g711 import PCMA, PCMU, Codec
from .jitter import NOTHING, Heard, JitterBuffer
from .operations import FRAME, Fax, Operation, Pcm, Voicemail, build
from .prompts import PromptCache, PromptError, beep
from .recording import RecordingStore
from .rtp import RtpError, RtpPacket, RtpPeer, RtpSender
from .sdp import OFFER_DTMF_PT, Negotiated, Offer, SdpError, answer, negotiate, parse_offer
from .sdp import Codec as SdpCodec
from .sdp import offer as our_offer
from .uas import UAS, Acked, Action, CallCancelled, CallEnded, IncomingCall, InfoDigit, MediaAnswer, Send

log = logging.getLogger("voffice_media")
RX_COUNTERS = (  # the jitter buffers' counters (jitter.JitterBuffer), all calls together
    ("rx_concealed", "Frames played out with audio missing (lost packets), as silence"),
    ("rx_late", "Packets that arrived after their place was played out (dropped)"),
    ("rx_duplicate", "Packets received twice (the copy ignored)"),
    ("rx_underruns", "Times a call's jitter buffer ran empty"),
    ("rx_rewinds", "Times audio came later than the playout delay allows: the delay grew"),
    ("rx_resyncs", "Timestamp jumps or SSRC changes: a new timeline"),
    ("rx_overflow", "Bursts beyond the buffer's capacity: the oldest audio dropped"),
)
RTP_TIMES = struct.Struct("!II")  # timestamp, SSRC at offset 4 of an RTP header
TICK = 0.020
MAX_BUFFERED = FRAME * 20  # 400 ms of received audio waiting for the ticker (a burst beyond is cut)
MAX_INBOX = 50  # datagrams of one call waiting for the ticker (1 s of 20 ms packets)
# The jitter buffer (jitter.JitterBuffer) places received audio by RTP timestamp and plays it
# out (to the operation: recorded, fed to the fax modem, and to the in-band DTMF detector) once
# this much has arrived: packets up to 60 ms late, reordered or duplicated change nothing; a lost
# one is a frame of silence in its place, later audio keeps its time. Without the delay a
# caller's 30 ms packets against our 20 ms ticks leave no slack.
PLAYOUT_DELAY = FRAME * 3
# A call whose INVITE had no SDP, until the caller's answer to our offer says otherwise
# (Call.awaiting_answer: nothing is sent or heard before it).
OUR_OFFER = Negotiated(SdpCodec(0, "PCMU", 8000), OFFER_DTMF_PT, ("0.0.0.0", 0), 20, "sendrecv")


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 5070
    kamailio: frozenset[str] = frozenset({"127.0.0.1"})
    # Media relays (rtpengine) RTP may come from besides the SDP's address and Kamailio's:
    # symmetric RTP latches only onto one of these (rtp.RtpPeer).
    rtp_sources: frozenset[str] = frozenset()
    data_dir: Path = Path(".run/media")
    sounds_dir: Path = Path("sounds")
    rtp_ports: tuple[int, int] = (40000, 49999)
    redis_url: str | None = None
    metrics: tuple[str, int] | None = None
    silence_seconds: int = 10


@dataclass
class Metrics:
    counters: Counter[str] = field(default_factory=Counter)
    late_ms: list[float] = field(default_factory=list)  # tick lateness samples (bounded)

    def late(self, ms: float) -> None:
        if len(self.late_ms) >= 100_000:
            del self.late_ms[:50_000]
        self.late_ms.append(ms)
        if ms > TICK * 1000:
            self.counters["packets_late"] += 1


class RtpSocket(asyncio.DatagramProtocol):
    def __init__(self, call: Call):
        self.call = call
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.call.on_rtp(data, addr)


@dataclass
class Call:
    call_id: str
    op: dict[str, str]
    vo_call: str
    operation: Operation
    codec: Codec
    dtmf_pt: int | None
    peer: RtpPeer
    sender: RtpSender
    remote: tuple[str, int]
    server: MediaServer
    rtp: RtpSocket | None = None
    port: int = 0
    jitter: JitterBuffer = field(init=False)
    heard: Heard = NOTHING  # what this tick played out, for the in-band DTMF detector
    inband: bool = field(init=False)  # in-band DTMF is listened for (not during voicemail, fax)
    rfc4733: Rfc4733Detector = field(init=False)
    tones: ToneDetector = field(default_factory=ToneDetector)
    finished: bool = False
    started: float = field(default_factory=time.time)
    recording: Any = None  # RecordingWriter for fax
    inbox: list[tuple[bytes, tuple[str, int]]] = field(default_factory=list)  # datagrams for receive()
    # A delayed offer: our offer is out, the caller's answer (PRACK or ACK) not in yet. The
    # operation waits for it, so the caller hears its prompt from the start.
    awaiting_answer: bool = False

    def __post_init__(self) -> None:
        self.rfc4733 = Rfc4733Detector(self.dtmf_pt)
        self.jitter = JitterBuffer(PLAYOUT_DELAY, MAX_BUFFERED, FRAME, counters=self.server.metrics.counters)
        self.inband = not isinstance(self.operation, (Fax, Voicemail))

    def negotiated(self, media: Negotiated, sources: frozenset[str]) -> None:
        """The caller's answer to our offer: where and how to send, what to listen for."""
        g711 = {"PCMU": PCMU, "PCMA": PCMA}[media.codec.name.upper()]
        self.codec = Codec(g711.name, media.codec.payload_type, g711.encode, g711.decode)
        self.dtmf_pt = media.dtmf_payload_type
        self.rfc4733 = Rfc4733Detector(self.dtmf_pt)
        self.peer = RtpPeer(media.remote, sources=sources)
        self.sender = RtpSender(self.codec.payload_type)
        self.remote = media.remote
        self.awaiting_answer = False

    def on_rtp(self, data: bytes, addr: tuple[str, int]) -> None:
        """A datagram for this call: only queued. The ticker handles it after sending the
        tick's packets (`receive`), so a burst of arrivals never delays what we send."""
        if len(self.inbox) < MAX_INBOX:
            self.inbox.append((data, addr))
        else:
            self.server.metrics.counters["rtp_dropped"] += 1

    def receive(self) -> None:
        """In-band DTMF in what this tick played out; then what arrived since the last tick."""
        if self.awaiting_answer:
            self.inbox.clear()
            return
        if self.inband:
            heard, self.heard = self.heard, NOTHING
            if heard.audio is None or heard.lost:
                # nothing (yet, or lost, or late) is neither tone nor pause: a press goes on across it
                self.tones.gap()
            else:
                for digit in self.tones.feed(heard.audio):
                    self.digit(digit)
        inbox, self.inbox = self.inbox, []
        for data, addr in inbox:
            self._packet(data, addr)

    def _packet(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self.peer.accept(addr):
            self.server.metrics.counters["rtp_rejected"] += 1
            return
        if len(data) > 12 and data[0] == 0x80:  # version 2, no padding, extension or CSRC: the usual packet
            payload_type, payload = data[1] & 0x7F, data[12:]
            timestamp, ssrc = RTP_TIMES.unpack_from(data, 4)
        else:
            try:
                packet = RtpPacket.parse(data)
            except RtpError:
                self.server.metrics.counters["rtp_malformed"] += 1
                return
            payload_type, payload, timestamp, ssrc = packet.payload_type, packet.payload, packet.timestamp, packet.ssrc
        if self.dtmf_pt is not None and payload_type == self.dtmf_pt:
            try:
                digit = self.rfc4733.feed(RtpPacket.parse(data))
            except RtpError:
                return
            if digit:
                self.digit(digit)
            return
        if payload_type != self.codec.payload_type or not payload or len(payload) > 1600:
            return
        self.jitter.push(ssrc, timestamp, self.codec.decode(payload))  # any ptime: re-framed to 20 ms

    def digit(self, key: str) -> None:
        self.server.metrics.counters["dtmf_detected"] += 1
        self.operation.digit(key)

    def tick(self) -> None:
        if self.awaiting_answer:
            return
        self.heard = self.jitter.pop()
        out = self.operation.frame(self.heard.audio)
        if self.rtp is not None and self.rtp.transport is not None:
            # symmetric RTP: once the caller's first packet has been accepted, answer its source
            target = self.peer.peer or self.remote
            self.rtp.transport.sendto(self.sender.packet_bytes(self.codec.encode(out)), target)
            self.server.metrics.counters["packets_sent"] += 1

    def hangup(self) -> None:
        """The caller hung up (or the server stops): a recording gets what was still on its way
        (the datagrams not yet handled, the jitter buffer) before it ends."""
        if isinstance(self.operation, Voicemail) and self.operation.result is None:
            self.receive()
            for audio in self.jitter.drain():
                self.operation.frame(audio)
        self.operation.hangup()


class SipSocket(asyncio.DatagramProtocol):
    def __init__(self, server: MediaServer):
        self.server = server

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.server.on_sip(data, addr)


class MediaServer:
    def __init__(self, config: ServerConfig):
        self.config = config
        self.uas = UAS((config.host, config.port), set(config.kamailio))
        self.calls: dict[str, Call] = {}
        self.metrics = Metrics()
        self.reader = reader_from_env(os.environ, config.redis_url, check_interval=0.5)
        self.prompts = PromptCache(config.sounds_dir, config.data_dir / "prompt-cache")
        self.store = RecordingStore(config.data_dir / "recordings", clock=clock_now)
        self.beep = beep()
        self.sip: asyncio.DatagramTransport | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopping = False
        self._ports = list(range(config.rtp_ports[0], config.rtp_ports[1] + 1))
        self._next_port = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._redis: Any = None

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        for action in self.store.recover():
            log.warning("recording %s: %s (%s)", action.part, action.action, action.reason)
            self.metrics.counters[f"recordings_{action.action}"] += 1
            # A repaired recording is published: its event goes out like any other's.
            event = events_mod.recovery_event(action)
            if event is not None:
                try:
                    self._emit(event, deadline_s=0)
                except Exception:  # Redis down at start-up: the warning above is all there is
                    log.exception("recording %s: %s, its event not sent", action.part, action.action)
        transport, _ = await self.loop.create_datagram_endpoint(
            lambda: SipSocket(self), local_addr=(self.config.host, self.config.port)
        )
        self.sip = transport
        if self.config.metrics:
            await asyncio.start_server(self._serve_metrics, *self.config.metrics)
        self._spawn(self._ticker())
        log.info("media server on udp:%s:%d, Kamailio %s", self.config.host, self.config.port, sorted(self.config.kamailio))

    async def stop(self, grace: float = 5.0) -> None:
        """Stop taking calls, finish recordings in progress, hang up, close."""
        self.stopping = True
        for call in list(self.calls.values()):
            call.hangup()
        deadline = time.monotonic() + grace
        while self.calls and time.monotonic() < deadline:
            await asyncio.sleep(TICK)
        if self.sip is not None:
            self.sip.close()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- the ticker --------------------------------------------------------------------

    async def _ticker(self) -> None:
        assert self.loop is not None
        # The schedule and its lateness are kept on time.monotonic(): uvloop's loop.time()
        # counts whole milliseconds and stands still while one loop iteration runs its
        # callbacks, so it would hide the lateness that a burst of received packets causes.
        start = time.monotonic()
        n = 0
        while True:
            n += 1
            due = start + n * TICK
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            late = time.monotonic() - due
            self.metrics.late(late * 1000)
            if late > 0.2:  # far behind (suspended): skip ahead rather than burst
                start, n = time.monotonic(), 0
            now = self.loop.time()  # the UAS's clock, the one on_sip gives it
            calls = list(self.calls.values())
            # first every call's packet, on time; then what arrived (digits, audio), results
            for call in calls:
                try:
                    call.tick()
                except Exception:
                    log.exception("call %s failed", call.call_id)
                    self._end(call, failed=True)
            for call in calls:
                if call.call_id not in self.calls:
                    continue
                try:
                    call.receive()
                except Exception:
                    log.exception("call %s failed", call.call_id)
                    self._end(call, failed=True)
                    continue
                if call.operation.result is not None and not call.finished:
                    self._finish(call)
            self.apply(self.uas.tick(now))

    # --- SIP ---------------------------------------------------------------------------

    def on_sip(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.loop is not None
        try:
            self.apply(self.uas.receive(data, addr, self.loop.time()))
        except Exception:  # a bug must not stop the server; malformed input is the UAS's job
            log.exception("SIP message from %s:%d not handled", *addr)

    def apply(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Send):
                if self.sip is not None:
                    self.sip.sendto(action.data, action.addr)
            elif isinstance(action, IncomingCall):
                self._spawn(self._incoming(action))
            elif isinstance(action, (CallCancelled, CallEnded)):
                call = self.calls.get(action.call_id)
                if call is not None:
                    call.hangup()
                    if not call.operation.answered:
                        self._end(call)
            elif isinstance(action, MediaAnswer):
                self._media_answer(action)
            elif isinstance(action, InfoDigit):
                call = self.calls.get(action.call_id)
                if call is not None:
                    self.metrics.counters["dtmf_info"] += 1
                    call.digit(action.digit)
            elif isinstance(action, Acked):
                pass

    async def _incoming(self, event: IncomingCall) -> None:
        call_id = event.call_id
        if self.stopping:
            self.apply(self.uas.reject(call_id, 503, "Shutting Down"))
            return
        headers = event.request.headers
        try:
            op = decode_op(headers.get("X-VO-Op") or "")
        except ContractError as exc:
            self.apply(self.uas.reject(call_id, 400, "Bad X-VO-Op"))
            log.warning("call %s: %s", call_id, exc)
            return
        vo_call = headers.get("X-VO-Call") or ""
        if not CALL_ID.fullmatch(vo_call):
            vo_call = secrets.token_hex(8)
        offer: Offer | None = None
        try:
            if event.offer_sdp:
                offer = parse_offer(event.offer_sdp)
                media = negotiate(offer)
            else:  # a delayed offer: ours goes out, the caller's answer decides (_media_answer)
                media = OUR_OFFER
        except SdpError as exc:
            self.apply(self.uas.reject(call_id, 488, "Not Acceptable Here"))
            log.warning("call %s: %s", call_id, exc)
            return
        try:
            prompt = await self._prompt(op)
        except (PromptError, StoreUnavailable, OSError) as exc:
            log.error("call %s: no prompt: %s", call_id, exc)
            self.apply(self.uas.reject(call_id, 500, "Prompt Unavailable"))
            return
        if self.uas.call_state(call_id) != "proceeding":
            return  # cancelled (or ended) while the prompt was being prepared
        operation = build(op, prompt, self.beep)
        if offer is None and not operation.answered and not event.reliable:
            # Early media needs SDP in a provisional; without an offer in the INVITE ours can
            # only go in a reliable one (RFC 3261 13.2.1, RFC 3262 5), and this caller takes
            # no 100rel: the step ends as if no key came (docs/call-path.md, delayed offer).
            self.metrics.counters["early_media_impossible"] += 1
            log.info("call %s: no SDP and no 100rel: no early media for %s", call_id, op["type"])
            result = "done" if op["type"] == "announcement" else "timeout"
            self.apply(self.uas.reject(call_id, 480, "Temporarily Unavailable", [("X-VO-Result", result)]))
            return
        if isinstance(operation, Voicemail):
            operation.silence_seconds = self.config.silence_seconds
        g711 = {"PCMU": PCMU, "PCMA": PCMA}[media.codec.name.upper()]
        codec = Codec(g711.name, media.codec.payload_type, g711.encode, g711.decode)
        call = Call(call_id, op, vo_call, operation, codec, media.dtmf_payload_type,
                    RtpPeer(media.remote, sources=self.config.kamailio | self.config.rtp_sources),
                    RtpSender(codec.payload_type), media.remote, self)
        try:
            await self._open_rtp(call)
        except OSError:
            self.apply(self.uas.reject(call_id, 503, "No RTP Port"))
            return
        if self.uas.call_state(call_id) != "proceeding":
            self._close_rtp(call)  # cancelled while the port was opened: its CallCancelled found no call
            return
        if isinstance(operation, Voicemail):
            # Frames go to a .part file as they arrive: a crash keeps what was said, and
            # the next start repairs it (RecordingStore.recover).
            call.recording = self.store.open("voicemail", op["account"], vo_call, meta=self._meta(op))
            operation.sink = call.recording.write_frame
        if isinstance(operation, Fax):
            if not spandsp_available():
                self._close_rtp(call)
                self.apply(self.uas.reject(call_id, 488, "Fax Unavailable"))
                return
            call.recording = self.store.open("fax", op["account"], vo_call, meta=self._meta(op))
            operation.session = FaxSession(False, rx_file=call.recording.part_path, tx_file=None)
        if offer is None:
            call.awaiting_answer = True
            sdp = our_offer(self.config.host, call.port, int(time.time()))
        else:
            sdp = answer(offer, self.config.host, call.port, int(time.time()))
        self.calls[call_id] = call
        self.metrics.counters["calls"] += 1
        if operation.answered:
            self.apply(self.uas.answer(call_id, 200, sdp))
        else:
            self.apply(self.uas.provisional(call_id, 183, sdp))

    def _media_answer(self, event: MediaAnswer) -> None:
        call = self.calls.get(event.call_id)
        if call is None or not call.awaiting_answer:
            return
        try:
            media = negotiate(parse_offer(event.sdp))
        except SdpError as exc:
            # RFC 3261 14.2 has a UA that cannot take the answer end the session
            log.warning("call %s: the caller's answer: %s", call.call_id, exc)
            self.metrics.counters["answers_refused"] += 1
            if call.recording is not None:
                call.recording.discard()  # nothing was recorded: no media was ever agreed
            self._end(call)
            if call.operation.answered:
                self.apply(self.uas.hangup(call.call_id))
            else:
                self.apply(self.uas.reject(call.call_id, 488, "Not Acceptable Here"))
            return
        self.metrics.counters["delayed_offers"] += 1
        call.negotiated(media, self.config.kamailio | self.config.rtp_sources)

    @staticmethod
    def _meta(op: dict[str, str]) -> dict[str, str]:
        return {k: op[k] for k in ("number", "caller") if k in op}

    async def _prompt(self, op: dict[str, str]) -> Pcm:
        sound_id = op.get("sound")
        if not sound_id:
            return np.zeros(FRAME * 25, dtype=np.int16)  # half a second of silence
        account = self.reader.account_version(op["account"], int(op["version"]))
        if account is None:
            raise PromptError(f"account {op['account']} v{op['version']} is not loaded")
        sound = account.plain["sounds"].get(sound_id)
        if sound is None:
            raise PromptError(f"account {op['account']} has no sound {sound_id}")
        assert self.loop is not None
        pcm: Pcm = await self.loop.run_in_executor(None, self.prompts.pcm, op["account"], sound)
        return pcm

    async def _open_rtp(self, call: Call) -> None:
        assert self.loop is not None
        for _ in range(len(self._ports)):
            port = self._ports[self._next_port]
            self._next_port = (self._next_port + 2) % len(self._ports)
            try:
                _transport, protocol = await self.loop.create_datagram_endpoint(
                    lambda: RtpSocket(call), local_addr=(self.config.host, port)
                )
            except OSError:
                continue
            call.rtp = protocol
            call.port = port
            return
        raise OSError("no free RTP port")

    def _close_rtp(self, call: Call) -> None:
        if call.rtp is not None and call.rtp.transport is not None:
            call.rtp.transport.close()

    # --- the end of an operation -------------------------------------------------------

    def _finish(self, call: Call) -> None:
        call.finished = True
        result = call.operation.result
        assert result is not None
        if not call.operation.answered:
            self.metrics.counters[f"result_{result.kind}"] += 1
            self.apply(self.uas.reject(call.call_id, 480, "Temporarily Unavailable", [("X-VO-Result", result.header())]))
            self._end(call)
            return
        self._spawn(self._store(call))

    async def _store(self, call: Call) -> None:
        assert self.loop is not None
        self.apply(self.uas.hangup(call.call_id))
        try:
            event = await self.loop.run_in_executor(None, self._store_blocking, call)
            if event is not None:
                self.metrics.counters["recordings_stored"] += 1
                await self.loop.run_in_executor(None, self._emit, event)
        except Exception:
            log.exception("call %s: recording not stored", call.call_id)
            self.metrics.counters["recordings_failed"] += 1
        finally:
            self._end(call)

    def _store_blocking(self, call: Call) -> dict[str, Any] | None:
        op = call.op
        operation = call.operation
        result = operation.result
        if isinstance(operation, Voicemail):
            stored = call.recording.finish()
            if stored is None:
                return None
            return events_mod.recording_event(stored, event_type="voicemail", reason=result.value if result else "")
        if isinstance(operation, Fax):
            session = operation.session
            outcome = session.hangup() if not session.done else session.result
            session.close()
            partial = not (outcome is not None and outcome.ok)
            stored = call.recording.finish(partial=partial)
            if stored is None:
                return {"type": "fax", "account": op["account"], "call_id": call.vo_call, "status": "failed",
                        "error": outcome.error if outcome else "no fax", **self._meta(op)}
            extra: dict[str, str] = {}
            try:
                extra["pdf"] = str(self.store.derive(stored, ".pdf", lambda path: tiff_to_pdf(stored.path, path)))
            except Exception as exc:  # the TIFF is stored: a PDF that fails must not lose the event
                log.exception("call %s: fax stored, PDF not made", call.call_id)
                extra["pdf_error"] = str(exc)[:200]
            return events_mod.recording_event(stored, event_type="fax", status="partial" if partial else "stored",
                                              error=outcome.error if outcome else "", **extra)
        return None

    def _emit(self, event: dict[str, Any], deadline_s: float = 30.0) -> None:
        """The event into the stream, tried again (in this executor thread) while Redis is
        away, e.g. a Sentinel failover, until a replica has it too (the consumers ignore a
        second copy); after `deadline_s` the error goes to the caller (logged there)."""
        if not self.config.redis_url:
            return
        from routing.store import redis_client

        if self._redis is None:
            self._redis = redis_client.client(self.config.redis_url, timeout=1)
        fields = events_mod.format_event(event)
        give_up = time.monotonic() + deadline_s
        while True:
            try:
                if redis_client.append_replicated(self._redis, self.config.redis_url, events_mod.STREAM, [fields]):
                    return
                if time.monotonic() > give_up:
                    return  # on the master, not confirmed on a replica: as good as it gets
            except Exception:
                if time.monotonic() > give_up:
                    raise
            time.sleep(0.5)

    def _end(self, call: Call, failed: bool = False) -> None:
        self.calls.pop(call.call_id, None)
        self._close_rtp(call)
        if failed:
            self.apply(self.uas.reject(call.call_id, 500, "Server Error"))

    # --- metrics -----------------------------------------------------------------------

    def metrics_text(self) -> str:
        c = self.metrics.counters
        late = sorted(self.metrics.late_ms[-5000:]) or [0.0]
        lines = [
            "# TYPE voffice_media_active_calls gauge",
            f"voffice_media_active_calls {len(self.calls)}",
            "# TYPE voffice_media_calls_total counter",
            f"voffice_media_calls_total {c['calls']}",
            "# TYPE voffice_media_packets_sent_total counter",
            f"voffice_media_packets_sent_total {c['packets_sent']}",
            "# TYPE voffice_media_packets_late_total counter",
            f"voffice_media_packets_late_total {c['packets_late']}",
            "# TYPE voffice_media_dtmf_detected_total counter",
            f"voffice_media_dtmf_detected_total {c['dtmf_detected']}",
            "# HELP voffice_media_dtmf_info_total Keys received as SIP INFO (also counted in dtmf_detected)",
            "# TYPE voffice_media_dtmf_info_total counter",
            f"voffice_media_dtmf_info_total {c['dtmf_info']}",
            *(line for name, what in RX_COUNTERS for line in (
                f"# HELP voffice_media_{name}_total {what}",
                f"# TYPE voffice_media_{name}_total counter",
                f"voffice_media_{name}_total {c[name]}",
            )),
            "# TYPE voffice_media_recordings_stored_total counter",
            f"voffice_media_recordings_stored_total {c['recordings_stored']}",
            "# TYPE voffice_media_tick_lateness_ms summary",
            f'voffice_media_tick_lateness_ms{{quantile="0.5"}} {late[len(late) // 2]:.3f}',
            f'voffice_media_tick_lateness_ms{{quantile="0.99"}} {late[int(len(late) * 0.99)]:.3f}',
        ]
        return "\n".join(lines) + "\n"

    async def _serve_metrics(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 2)
            ok = request.startswith(b"GET /metrics ")
            body = self.metrics_text().encode() if ok else b"not found\n"
            status = b"200 OK" if ok else b"404 Not Found"
            writer.write(b"HTTP/1.0 " + status + b"\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\n\r\n" + body)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: what log shippers and `jq` read without a parser."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=level, handlers=[handler])


async def serve(config: ServerConfig) -> None:
    server = MediaServer(config)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    import signal

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping: finishing %d call(s)", len(server.calls))
    await server.stop()


def run(config: ServerConfig) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(config))
