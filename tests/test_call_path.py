"""The call path end to end: real redis-server, rtpengine, Kamailio (KEMI routing), media
server and sipp on free loopback ports, with VOFFICE_NOW placing the calls in time."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import socket
import subprocess
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from routing.stack.local import sip_options

from .callpath import (
    SIPP_DIR,
    STACK_TESTS,
    CallStack,
    Sipp,
    StackFactory,
    caller,
    dtmf_caller,
    free_udp_port,
    operator,
    pcap_alaw_audio,
    rtpengine_command,
    short_ring_config,
)

pytestmark = STACK_TESTS

NUMBER = "+74951234567"


def first_media_port(log: str, start: str) -> int:
    """The m=audio port of the first message in a sipp log whose first line starts so."""
    block = log[log.index("\n" + start) :]
    return int(re.search(r"m=audio (\d+)", block).group(1))  # type: ignore[union-attr]
WEDNESDAY_LUNCH = "2026-11-25T13:30:00+03:00"


@pytest.fixture
def lunch_stack(tmp_path: Path, seed_doc: dict[str, Any]) -> Iterator[CallStack]:
    stack = CallStack(tmp_path, WEDNESDAY_LUNCH, short_ring_config(seed_doc), with_media=False)
    with stack:
        yield stack


def test_options_answered_by_kamailio(lunch_stack: CallStack) -> None:
    assert sip_options("127.0.0.1", lunch_stack.sip_port) == 200
    sipsak = shutil.which("sipsak")
    if sipsak:
        result = subprocess.run([sipsak, "-s", f"sip:ping@127.0.0.1:{lunch_stack.sip_port}"], capture_output=True, timeout=10)
        assert result.returncode == 0


def test_lunch_secretary_answers_through_the_gateway(tmp_path: Path, lunch_stack: CallStack) -> None:
    gateway = operator(tmp_path, "gateway", "answer", lunch_stack.gateway_port).start()
    call = caller(tmp_path, lunch_stack, NUMBER, "+79031112233").start()
    assert call.wait() == 0
    assert gateway.wait() == 0
    invite = gateway.messages()
    assert "INVITE sip:+79161230004@127.0.0.1" in invite  # the secretary, E.164 via the gateway
    assert "X-VO-" not in invite.split("INVITE", 1)[1].split("\n\n", 1)[0]  # stripped from outside
    bye = invite[invite.index("\nBYE sip:"):]
    assert "CSeq: 2 BYE" in bye and "X-VO-" not in bye.split("\n\n", 1)[0]  # in a dialog too
    assert lunch_stack.config is not None
    low, high = lunch_stack.config.rtp_ports
    assert low <= first_media_port(invite, "INVITE") <= high  # the operator sees rtpengine's port
    assert low <= first_media_port(call.messages(), "SIP/2.0 200") <= high  # so does the caller
    [record] = [e for e in lunch_stack.events() if e["type"] == "call"]
    assert record["status"] == "answered" and record["answered_by"] == "smirnova"
    assert (record["rule"], record["scenario"], record["caller"]) == ("r1", "lunch", "+79031112233")
    assert record["hung_up_by"] == "caller" and 0.2 < float(record["talk_seconds"]) < 5


def test_unknown_number_gets_404_and_nothing_is_relayed(tmp_path: Path, lunch_stack: CallStack) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as gateway:
        gateway.bind(("127.0.0.1", lunch_stack.gateway_port))
        gateway.settimeout(1.0)
        call = caller(tmp_path, lunch_stack, "+74990000000", "+79031112233").start()
        assert call.wait() != 0
        assert any(line.startswith("SIP/2.0 404") for line in call.received())
        with pytest.raises(socket.timeout):
            gateway.recv(65535)
    assert lunch_stack.events() == []


def test_a_load_changes_new_calls_only(tmp_path: Path, lunch_stack: CallStack, seed_doc: dict[str, Any]) -> None:
    slow = operator(tmp_path, "gateway1", "answer", lunch_stack.gateway_port, ring_ms=2500).start()
    first = caller(tmp_path, lunch_stack, NUMBER, "+79031112233", name="first").start()
    time.sleep(1.0)  # the first call is ringing the secretary
    changed = short_ring_config(seed_doc)
    changed["operators"][3]["phone"] = "+79161239999"  # a new phone for the secretary
    path = tmp_path / "changed.json"
    path.write_text(json.dumps(changed, ensure_ascii=False))
    assert lunch_stack.stack is not None
    lunch_stack.stack.load((str(path),))
    assert first.wait() == 0 and slow.wait() == 0
    assert "INVITE sip:+79161230004@" in slow.messages()  # the call in progress kept its version
    time.sleep(0.3)  # > the workers' check interval
    gateway = operator(tmp_path, "gateway2", "answer", lunch_stack.gateway_port).start()
    second = caller(tmp_path, lunch_stack, NUMBER, "+79031112233", name="second").start()
    assert second.wait() == 0 and gateway.wait() == 0
    assert "INVITE sip:+79161239999@" in gateway.messages()


def test_weekday_no_extension_rings_both_managers_at_once_then_the_head(tmp_path: Path, seed_doc: dict[str, Any]) -> None:
    """Weekday, the caller dials nothing: after the prompt's input timeout the client
    department rings, both managers at once per attempt, then the head of department."""
    ports = {name: free_udp_port() for name in ("ivanov", "petrov", "sidorov")}
    doc = short_ring_config(seed_doc, ports)
    # petrov rings once: sipp cannot hold two INVITEs of one Call-ID at once, and the next
    # wave's INVITE may overtake the CANCEL of the branch whose ring timer just fired.
    doc["groups"][0]["members"][1]["attempts"] = 1
    # ivanov rings for 7 s, petrov for the default 5 s: petrov's branch gets its own timer
    # through the spiral (routing/proxy/branch_timer.py), set up from the failure route that
    # follows the prompt.
    doc["groups"][0]["members"][0]["ring_seconds"] = 7
    stack = CallStack(tmp_path, "2026-11-25T10:00:00+03:00", doc, with_media=True)
    with stack:
        ivanov = operator(tmp_path, "ivanov", "busy", ports["ivanov"], calls=2).start()
        petrov = operator(tmp_path, "petrov", "no-answer", ports["petrov"], calls=1).start()
        sidorov = operator(tmp_path, "sidorov", "answer", ports["sidorov"]).start()
        call = caller(tmp_path, stack, NUMBER, "+79031112233").start()
        assert call.wait(120) == 0
        assert sidorov.wait() == 0 and ivanov.wait() == 0 and petrov.wait() == 0
        assert ivanov.received().count(f"INVITE sip:ivanov@127.0.0.1:{ports['ivanov']} SIP/2.0") == 2
        assert petrov.received().count(f"CANCEL sip:petrov@127.0.0.1:{ports['petrov']} SIP/2.0") == 1
        first_ivanov, second_ivanov = ivanov.received_at("INVITE")
        [first_petrov] = petrov.received_at("INVITE")
        [head] = sidorov.received_at("INVITE")
        assert abs(first_ivanov - first_petrov) < 0.2  # one wave: at once
        assert first_petrov + 4.5 < second_ivanov < first_petrov + 6.5  # petrov's own 5 s, not the wave's 7 s
        assert second_ivanov < head
        [record] = [e for e in stack.events() if e["type"] == "call"]
        assert record["status"] == "answered" and record["answered_by"] == "sidorov"
        assert [s["event"] for s in json.loads(record["steps"])] == ["timeout", None]


@pytest.fixture
def media_stack_factory(tmp_path: Path, seed_doc: dict[str, Any]) -> Iterator[StackFactory]:
    factory = StackFactory(tmp_path, short_ring_config(seed_doc))
    yield factory
    factory.stop()


def test_weekend_other_caller_hears_the_greeting_and_the_call_ends(tmp_path: Path, media_stack_factory: Any) -> None:
    stack = media_stack_factory("2026-11-28T13:00:00+03:00")  # Saturday
    call = caller(tmp_path, stack, NUMBER, "+79031112233", scenario="caller-unanswered.xml").start()
    assert call.wait(90) == 0
    received = call.received()
    assert any(line.startswith("SIP/2.0 183") for line in received)  # the greeting as early media
    assert received[-1].startswith("SIP/2.0 480")
    [record] = [e for e in stack.events() if e["type"] == "call"]
    assert (record["status"], record["rule"], record["scenario"]) == ("missed", "r4", "weekend")
    assert json.loads(record["steps"]) == [{"operation": "greeting", "type": "menu", "ringing": None, "event": "done"}]


def test_weekday_extension_dialled_by_rfc2833_reaches_that_operator(tmp_path: Path, media_stack_factory: Any, seed_doc: dict[str, Any]) -> None:
    ports = {"petrov": free_udp_port()}
    stack = media_stack_factory("2026-11-25T10:00:00+03:00", short_ring_config(seed_doc, ports))
    petrov = operator(tmp_path, "petrov", "answer", ports["petrov"]).start()
    call = dtmf_caller(tmp_path, stack, NUMBER, "+79031112233", "102").start()
    assert call.wait(90) == 0
    assert petrov.wait() == 0
    [record] = [e for e in stack.events() if e["type"] == "call"]
    assert (record["status"], record["answered_by"], record["rule"]) == ("answered", "petrov", "r2")
    steps = json.loads(record["steps"])
    assert steps[0] == {"operation": "ext", "type": "extension", "ringing": None, "event": "digits:102"}
    assert steps[1] == {"operation": "ext", "type": "extension", "ringing": "petrov", "event": None}


def test_weekday_extension_dialled_by_sip_info_reaches_that_operator(tmp_path: Path, media_stack_factory: Any, seed_doc: dict[str, Any]) -> None:
    """A trunk that sends keys only as SIP INFO (application/dtmf-relay) in the early dialog:
    Kamailio relays the INFOs to the media server, which collects them like RFC 2833 keys."""
    ports = {"petrov": free_udp_port()}
    stack = media_stack_factory("2026-11-25T10:00:00+03:00", short_ring_config(seed_doc, ports))
    petrov = operator(tmp_path, "petrov", "answer", ports["petrov"]).start()
    call = dtmf_caller(tmp_path, stack, NUMBER, "+79031112233", "102", mode="info").start()
    assert call.wait(90) == 0
    assert petrov.wait() == 0
    infos = [line for line in call.sent() if line.startswith("INFO ")]
    assert len(infos) == 3 and all(line.startswith("INFO sip:127.0.0.1:") for line in infos)  # to the media server
    [record] = [e for e in stack.events() if e["type"] == "call"]
    assert (record["status"], record["answered_by"], record["rule"]) == ("answered", "petrov", "r2")
    steps = json.loads(record["steps"])
    assert steps[0] == {"operation": "ext", "type": "extension", "ringing": None, "event": "digits:102"}


@pytest.mark.parametrize("mode", ["rfc2833", "info"])
def test_a_caller_requiring_100rel_hears_the_prompt_and_reaches_the_operator(tmp_path: Path, media_stack_factory: Any,
                                                                              seed_doc: dict[str, Any], mode: str) -> None:
    """`Require: 100rel` (PSTN gateways, many SBCs): the prompt's 183 comes reliably (RSeq),
    the caller's PRACK is answered through Kamailio, the keys reach the media server and the
    operator answers. Before, the media server answered 420 and the caller got 480 in 8 ms."""
    ports = {"petrov": free_udp_port()}
    stack = media_stack_factory("2026-11-25T10:00:00+03:00", short_ring_config(seed_doc, ports))
    petrov = operator(tmp_path, "petrov", "answer", ports["petrov"]).start()
    call = dtmf_caller(tmp_path, stack, NUMBER, "+79031112233", "102", mode=mode, require_100rel=True).start()
    assert call.wait(90) == 0
    assert petrov.wait() == 0
    log = call.messages()
    assert re.search(r"SIP/2.0 183 Session Progress\r?\n(?:.*\n)*?RSeq: 1", log)
    assert [line for line in call.sent() if line.startswith("PRACK ")]
    [record] = [e for e in stack.events() if e["type"] == "call"]
    assert (record["status"], record["answered_by"], record["rule"]) == ("answered", "petrov", "r2")
    assert json.loads(record["steps"])[0]["event"] == "digits:102"
    # the operator is another device: 100rel offered to him (Supported), not required of him
    to_petrov = petrov.messages()
    invite = to_petrov[to_petrov.index("INVITE sip:"):].split("\n\n", 1)[0]
    assert "Require:" not in invite and "Supported: 100rel" in invite


def test_lunch_busy_secretary_then_menu_key_1_stores_a_voicemail(tmp_path: Path, media_stack_factory: Any) -> None:
    stack = media_stack_factory(WEDNESDAY_LUNCH)
    gateway = operator(tmp_path, "gateway", "busy", stack.gateway_port, calls=2).start()
    call = dtmf_caller(tmp_path, stack, NUMBER, "+79031112233", "1", message_after_ms=6000, talk_ms=8000).start()
    assert call.wait(120) == 0
    gateway.stop()
    assert gateway.received().count(f"INVITE sip:+79161230004@127.0.0.1:{stack.gateway_port} SIP/2.0") == 2
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(e["type"] == "voicemail" for e in stack.events()):
        time.sleep(0.2)
    by_type = {e["type"]: e for e in stack.events()}
    record, voicemail = by_type["call"], by_type["voicemail"]
    assert (record["status"], record["rule"], record["scenario"]) == ("voicemail", "r1", "lunch")
    assert [s["event"] for s in json.loads(record["steps"])] == ["busy", "key:1", None]
    assert (voicemail["account"], voicemail["caller"], voicemail["number"]) == ("berry-demo", "+79031112233", NUMBER)
    path = Path(voicemail["path"])
    assert hashlib.sha256(path.read_bytes()).hexdigest() == voicemail["sha256"]
    with wave.open(str(path)) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (8000, 1, 2)
        recorded = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16).astype(np.float64)
    sent = pcap_alaw_audio(Path("/usr/share/sip-tester/g711a.pcap")).astype(np.float64)
    # the message is in the recording: normalised cross-correlation of the sent speech
    window = sent[8000:24000]  # 2 s from the middle of the message
    corr = np.correlate(recorded, window, mode="valid")
    energy = np.sqrt(np.convolve(recorded**2, np.ones(len(window)), mode="valid") * np.sum(window**2))
    assert float(np.max(corr / np.maximum(energy, 1e-9))) > 0.9


def test_weekend_vip_gets_the_menu(tmp_path: Path, media_stack_factory: Any) -> None:
    stack = media_stack_factory("2026-11-28T13:00:00+03:00")  # Saturday, in the VIP window
    call = dtmf_caller(tmp_path, stack, NUMBER, "+74957654321", "2", talk_ms=1500).start()
    assert call.wait(90) == 0  # key 2: the fax operation answers; our caller is no fax machine
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(e["type"] == "fax" for e in stack.events()):
        time.sleep(0.2)
    by_type = {e["type"]: e for e in stack.events()}
    record = by_type["call"]
    assert (record["status"], record["rule"], record["scenario"]) == ("fax", "r3", "weekend-vip")
    assert [s["operation"] for s in json.loads(record["steps"])] == ["menu", "fax"]
    assert by_type["fax"]["status"] == "failed"  # no page arrived: reported, nothing stored


def test_caller_hangs_up_while_ringing_one_missed_event(tmp_path: Path, lunch_stack: CallStack) -> None:
    gateway = operator(tmp_path, "gateway", "no-answer", lunch_stack.gateway_port).start()
    call = Sipp(tmp_path, "caller", "caller-cancel.xml", free_udp_port(),
                ["-key", "caller", "+79031112233", "-s", NUMBER, f"127.0.0.1:{lunch_stack.sip_port}"]).start()
    assert call.wait(60) == 0
    assert gateway.wait(30) == 0  # the secretary's branch was cancelled
    time.sleep(0.5)
    records = [e for e in lunch_stack.events() if e["type"] == "call"]
    assert [(r["status"], r["note"]) for r in records] == [("missed", "caller hung up")]


def test_calls_keep_routing_while_redis_is_down(tmp_path: Path, lunch_stack: CallStack) -> None:
    gateway = operator(tmp_path, "gateway1", "answer", lunch_stack.gateway_port).start()
    assert caller(tmp_path, lunch_stack, NUMBER, "+79031112233", name="warm").start().wait() == 0  # fills the cache
    assert gateway.wait() == 0
    assert lunch_stack.stack is not None
    redis_part = next(p for p in lunch_stack.stack.parts if p.name == "redis")
    assert redis_part.proc is not None
    redis_part.proc.terminate()
    redis_part.proc.wait()
    try:
        # Kamailio has 2 workers; each must route from its own cache (or learn nothing new)
        connected = 0
        for i in range(4):
            gateway = operator(tmp_path, f"gw-down{i}", "answer", lunch_stack.gateway_port).start()
            call = caller(tmp_path, lunch_stack, NUMBER, "+79031112233", name=f"down{i}").start()
            code = call.wait()
            gateway.stop()
            received = call.received()
            # a worker that had the account cached connects the call; one that never saw it
            # answers 503 rather than guessing
            assert code == 0 or any(line.startswith("SIP/2.0 503") for line in received)
            if code == 0:
                connected += 1
                assert "INVITE sip:+79161230004@" in gateway.messages()
        assert connected >= 1  # at least the worker that served the first call routes on
    finally:
        lunch_stack.stack._start(redis_part, detach=False, timeout=20)  # the same port and data dir
    # Redis is back: the reader reconnects on its own; loads work and are seen
    time.sleep(1.5)
    gateway = operator(tmp_path, "gw-back", "answer", lunch_stack.gateway_port).start()
    assert caller(tmp_path, lunch_stack, NUMBER, "+79031112233", name="back").start().wait() == 0
    assert gateway.wait() == 0


def test_rtp_flows_through_rtpengine_both_ways(tmp_path: Path, lunch_stack: CallStack) -> None:
    gateway = operator(tmp_path, "gateway", "answer", lunch_stack.gateway_port).start()  # echoes RTP
    call = caller(tmp_path, lunch_stack, NUMBER, "+79031112233", speak=True, talk_ms=6000).start()
    time.sleep(4.0)  # answered after ~0.3 s; speech flows
    assert lunch_stack.config is not None
    port = lunch_stack.config.rtpengine_port
    calls = rtpengine_command(port, {"command": "list"})["calls"]
    assert len(calls) == 1
    query = rtpengine_command(port, {"command": "query", "call-id": calls[0]})
    received = {
        tag: sum(stream["stats"]["packets"] for media in info["medias"] for stream in media["streams"])
        for tag, info in query["tags"].items()
    }
    assert call.wait(30) == 0 and gateway.wait() == 0
    assert len(received) >= 2
    assert all(packets > 50 for packets in received.values()), received  # caller -> operator and back


def options_from(source: str, port: int, user_agent: str = "probe", count: int = 1) -> list[bytes]:
    """OPTIONS from `source` (another loopback address); the replies that came back."""
    replies = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(0.3)
        local = sock.getsockname()[1]
        for i in range(count):
            msg = (f"OPTIONS sip:ping@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {source}:{local};branch=z9hG4bK{i}x{local}\r\n"
                   f"From: <sip:a@{source}>;tag={i}\r\nTo: <sip:ping@127.0.0.1>\r\nCall-ID: {i}-{local}@{source}\r\n"
                   f"CSeq: 1 OPTIONS\r\nUser-Agent: {user_agent}\r\nMax-Forwards: 5\r\nContent-Length: 0\r\n\r\n")
            sock.sendto(msg.encode(), ("127.0.0.1", port))
        try:
            while True:
                replies.append(sock.recv(65535))
        except TimeoutError:
            pass
    return replies


def test_scanners_get_no_answer_and_floods_are_banned(lunch_stack: CallStack) -> None:
    port = lunch_stack.sip_port
    assert options_from("127.0.0.2", port, "friendly-scanner") == []
    assert len(options_from("127.0.0.2", port)) == 1
    options_from("127.0.0.3", port, count=300)  # far above 60 requests per 2 s
    assert options_from("127.0.0.3", port) == []  # banned
    assert len(options_from("127.0.0.4", port)) == 1  # others are not
    assert sip_options("127.0.0.1", port) == 200  # trusted trunks are never banned


def test_a_dead_media_server_fails_over_to_the_next(tmp_path: Path, seed_doc: dict[str, Any]) -> None:
    stack = CallStack(tmp_path, "2026-11-28T13:00:00+03:00", short_ring_config(seed_doc), with_media=True)
    stack.media_servers = 2
    with stack:
        assert stack.stack is not None
        media1 = next(p for p in stack.stack.parts if p.name == "media1")
        assert media1.proc is not None
        media1.proc.kill()
        media1.proc.wait()
        for i in range(2):  # round robin would pick the dead one for one of them
            call = caller(tmp_path, stack, NUMBER, "+79031112233", scenario="caller-unanswered.xml", name=f"c{i}").start()
            assert call.wait(60) == 0
        records = [e for e in stack.events() if e["type"] == "call"]
        assert [(r["status"], json.loads(r["steps"])[0]["event"]) for r in records] == [("missed", "done")] * 2


def test_trusted_trunk_caller_from_p_asserted_identity(tmp_path: Path, media_stack_factory: Any) -> None:
    """An anonymous From with a VIP's P-Asserted-Identity from a trusted trunk (loopback is
    the stack's trusted trunk): the VIP rule applies."""
    stack = media_stack_factory("2026-11-28T13:00:00+03:00")  # Saturday, VIP window
    text = (SIPP_DIR / "caller-unanswered.xml").read_text()
    scenario = tmp_path / "caller-pai.xml"
    scenario.write_text(text.replace("      User-Agent: voffice-test-caller\n",
                                     "      User-Agent: voffice-test-caller\n      P-Asserted-Identity: <sip:+74957654321@trunk.example>\n", 1))
    call = Sipp(tmp_path, "caller", str(scenario), free_udp_port(),
                ["-key", "caller", "anonymous", "-s", NUMBER, f"127.0.0.1:{stack.sip_port}"]).start()
    assert call.wait(90) == 0  # the VIP menu times out, the call ends
    [record] = [e for e in stack.events() if e["type"] == "call"]
    assert (record["caller"], record["rule"], record["scenario"]) == ("+74957654321", "r3", "weekend-vip")
