"""The seed's cases placed by a real SIP client, baresip 1.0.0 (Debian 12), instead of sipp or
our own callers: its own transaction layer, SDP, RFC 4733 DTMF and forking behaviour meet
Kamailio, rtpengine and the media server over UDP, TCP and TLS. What baresip 1.0 cannot do
(send SIP INFO, verify a TLS certificate) is said in tests/baresip_client.py."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from routing.stack.ports import free_udp_port

from .baresip_client import BARESIP, Baresip
from .callpath import (
    SIPP_DIR,
    STACK_TESTS,
    CallStack,
    Sipp,
    StackFactory,
    operator,
    rtpengine_command,
    short_ring_config,
)

pytestmark = [*STACK_TESTS, pytest.mark.skipif(BARESIP is None, reason="baresip is installed by `make install`")]
NUMBER = "+74951234567"
CALLER = "+79031112233"
LUNCH = "2026-11-25T13:30:00+03:00"
WEEKDAY_MORNING = "2026-11-25T10:00:00+03:00"
TRANSPORTS = ["udp", "tcp", "tls"]


@pytest.fixture
def stacks(tmp_path: Path) -> Iterator[StackFactory]:
    factory = StackFactory(tmp_path, transports=("udp", "tcp", "tls"), tls_port=free_udp_port())
    yield factory
    factory.stop()


def phone(tmp_path: Path, stack: CallStack, transport: str) -> tuple[Baresip, str]:
    """A baresip whose requests go to Kamailio over `transport`, and the URI it dials."""
    assert stack.config is not None
    port = stack.config.sip_tls_port if transport == "tls" else stack.sip_port
    client = Baresip(tmp_path, CALLER, port, transport, cafile=stack.config.run_dir / "tls" / "cert.pem")
    return client, f"sip:{NUMBER}@127.0.0.1:{port}"


def media_legs(stack: CallStack, call_id: str) -> dict[str, int]:
    """rtpengine's legs of a call (tag -> RTP packets it received from that side); a deleted
    branch's leg stays listed untagged and is left out."""
    assert stack.config is not None
    tags = rtpengine_command(stack.config.rtpengine_port, {"command": "query", "call-id": call_id})["tags"]
    return {tag: sum(s["stats"]["packets"] for m in info["medias"] for s in m["streams"])
            for tag, info in tags.items() if not tag.startswith("<untagged")}


def rtpengine_calls(stack: CallStack) -> list[bytes]:
    assert stack.config is not None
    return list(rtpengine_command(stack.config.rtpengine_port, {"command": "list"})["calls"])


def sipp_to_tag(sipp: Sipp) -> str:
    match = re.search(r"tag=(\d+SIPpTag01\d+)", sipp.messages())
    assert match, sipp.dir
    return match.group(1)


def talk_then_hang_up(client: Baresip, stack: CallStack, call_id: str, seconds: float = 2.0) -> dict[str, int]:
    """Talk for a while (our tone out, the operator's sipp echoing it back), note rtpengine's
    legs, hang up; the legs."""
    time.sleep(seconds)
    legs = media_legs(stack, call_id)
    client.keep_audio("talk")
    client.hang_up()
    client.wait_for("CALL_CLOSED", timeout=10)
    return legs


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_lunch_a_real_client_reaches_the_secretary(tmp_path: Path, stacks: Any, seed_doc: dict[str, Any],
                                                   transport: str) -> None:
    """Lunch: the secretary through the operator gateway answers; baresip's RTP goes through
    rtpengine to the gateway and back (its tone echoed), its BYE ends the record."""
    stack = stacks(LUNCH, short_ring_config(seed_doc))
    gateway = operator(tmp_path, "gateway", "answer", stack.gateway_port).start()
    client, uri = phone(tmp_path, stack, transport)
    try:
        with client:
            client.dial(uri)
            answer = client.wait_for("CALL_ESTABLISHED", "CALL_CLOSED", timeout=20)
            assert answer["type"] == "CALL_ESTABLISHED", client.seen()
            legs = talk_then_hang_up(client, stack, answer["id"])
        assert gateway.wait(30) == 0
    finally:
        gateway.stop()
    assert {t for t, _, _ in client.sip_trace()} == {transport.upper()}
    assert legs.keys() == {client.from_tag(), sipp_to_tag(gateway)}  # baresip <-> rtpengine <-> gateway
    assert all(packets > 50 for packets in legs.values()), legs
    loudness, pitch = client.heard("talk")
    assert loudness > 1000 and abs(pitch - client.tone_hz) < 10  # its own tone, echoed by the gateway
    [record] = [e for e in stack.events() if e["type"] == "call"]
    assert (record["status"], record["answered_by"], record["rule"]) == ("answered", "smirnova", "r1")
    assert (record["sip_call_id"], record["caller"], record["hung_up_by"]) == (answer["id"], CALLER, "caller")
    assert rtpengine_calls(stack) == []  # the BYE released the media


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_weekday_extension_keyed_by_a_real_client_in_early_media(tmp_path: Path, stacks: Any, seed_doc: dict[str, Any],
                                                                 transport: str) -> None:
    """Weekday morning: baresip hears the extension prompt as early media (183), keys 102 as
    RFC 4733 events into it, petrov rings and answers; baresip takes the 200's SDP (another
    branch, another rtpengine leg) and talks to petrov."""
    ports = {"petrov": free_udp_port()}
    stack = stacks(WEEKDAY_MORNING, short_ring_config(seed_doc, ports))
    petrov = operator(tmp_path, "petrov", "answer", ports["petrov"]).start()
    client, uri = phone(tmp_path, stack, transport)
    try:
        with client:
            client.dial(uri)
            early = client.wait_for("CALL_PROGRESS", "CALL_ESTABLISHED", "CALL_CLOSED", timeout=20)
            assert early["type"] == "CALL_PROGRESS", client.seen()
            time.sleep(1.0)  # the prompt plays
            client.keep_audio("prompt")
            client.send_dtmf("102")
            answer = client.wait_for("CALL_ESTABLISHED", "CALL_CLOSED", timeout=30)
            assert answer["type"] == "CALL_ESTABLISHED", client.seen()
            legs = talk_then_hang_up(client, stack, answer["id"])
        assert petrov.wait(30) == 0
    finally:
        petrov.stop()
    received = [line.split()[1] for _, way, line in client.sip_trace() if way == "<-" and line.startswith("SIP/2.0")]
    assert received[:2] == ["100", "183"] and "200" in received, client.sip_trace()
    assert "audio: send DTMF digit end: '2'" in client.log()
    loudness, pitch = client.heard("prompt")
    assert loudness > 300 and abs(pitch - client.tone_hz) > 10  # the media server's prompt, through rtpengine
    assert legs.keys() == {client.from_tag(), sipp_to_tag(petrov)}  # the prompt's leg is gone
    assert all(packets > 50 for packets in legs.values()), legs
    loudness, pitch = client.heard("talk")
    assert loudness > 1000 and abs(pitch - client.tone_hz) < 10  # its tone, echoed by petrov: the 200's SDP taken
    [record] = [e for e in stack.events() if e["type"] == "call"]
    assert (record["status"], record["answered_by"], record["rule"]) == ("answered", "petrov", "r2")
    assert json.loads(record["steps"])[0]["event"] == "digits:102"
    assert record["sip_call_id"] == answer["id"]
    assert rtpengine_calls(stack) == []


def operator_taking_reinvites(tmp_path: Path, port: int, directions: tuple[str, ...]) -> Sipp:
    """The gateway of operator-answer.xml that, once answered, takes one re-INVITE per entry of
    `directions` (answering with that SDP direction) before the BYE."""
    template = (SIPP_DIR / "operator-answer.xml").read_text()
    start, end = template.index('<send retrans="500">'), template.index('<recv request="ACK"')
    answer = template[start:end].replace("[last_To:];tag=[pid]SIPpTag01[call_number]", "[last_To:]")
    reinvites = "".join(
        '<recv request="INVITE" crlf="true"/>\n  '
        + answer.replace("2353687637", str(2353687638 + i)).replace("a=ptime:20", f"a=ptime:20\n      a={direction}")
        + '<recv request="ACK" crlf="true"/>\n  '
        for i, direction in enumerate(directions))
    bye = template.index('<recv request="BYE"/>')
    scenario = tmp_path / "operator-reinvites.xml"
    scenario.write_text(template[:bye] + reinvites + template[bye:])
    return Sipp(tmp_path, "gateway", str(scenario), port, ["-key", "ring", "300", "-rtp_echo"])


def received_directions(sipp: Sipp) -> list[str]:
    """The SDP direction attribute of each INVITE a sipp received (sendrecv when none)."""
    out = []
    for block in re.split(r"-{20,}.*\n", sipp.messages()):
        if "message received" in block and re.search(r"^INVITE ", block, re.M):
            match = re.search(r"^a=(sendrecv|sendonly|recvonly|inactive)", block, re.M)
            out.append(match[1] if match else "sendrecv")
    return out


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_a_real_client_puts_the_secretary_on_hold_and_back(tmp_path: Path, stacks: Any, seed_doc: dict[str, Any],
                                                           transport: str) -> None:
    """Lunch, answered; baresip's `hold` and `resume` are re-INVITEs in the dialog: through
    Kamailio (the operator branch's own Call-ID towards the gateway, the caller's back) and
    rtpengine (sendonly offered, then sendrecv), and the talk goes on after them."""
    stack = stacks(LUNCH, short_ring_config(seed_doc))
    gateway = operator_taking_reinvites(tmp_path, stack.gateway_port, ("recvonly", "sendrecv")).start()
    client, uri = phone(tmp_path, stack, transport)
    try:
        with client:
            client.dial(uri)
            answer = client.wait_for("CALL_ESTABLISHED", "CALL_CLOSED", timeout=20)
            assert answer["type"] == "CALL_ESTABLISHED", client.seen()
            time.sleep(1.0)
            client.command("hold")
            time.sleep(1.0)
            client.command("resume")
            time.sleep(1.5)
            client.keep_audio("resumed")
            client.hang_up()
            client.wait_for("CALL_CLOSED", timeout=10)
        assert gateway.wait(30) == 0
    finally:
        gateway.stop()
    assert [line.split()[0] for line in gateway.received()] == ["INVITE", "ACK", "INVITE", "ACK", "INVITE", "ACK", "BYE"]
    assert received_directions(gateway) == ["sendrecv", "sendonly", "sendrecv"]
    call_ids = set(re.findall(r"^Call-ID: *(\S+)", gateway.messages(), re.M))
    assert len(call_ids) == 1 and call_ids.pop().startswith(answer["id"] + ".vo"), gateway.messages()[:2000]
    sent = [line.split()[0] for _, way, line in client.sip_trace() if way == "->"]
    statuses = [line.split()[1] for _, way, line in client.sip_trace() if way == "<-" and line.startswith("SIP/2.0")]
    assert sent == ["INVITE", "ACK", "INVITE", "ACK", "INVITE", "ACK", "BYE"] and statuses.count("200") == 4
    loudness, pitch = client.heard("resumed")
    assert loudness > 1000 and abs(pitch - client.tone_hz) < 10  # the gateway's echo again after the resume
    [record] = [e for e in stack.events() if e["type"] == "call"]
    assert (record["status"], record["answered_by"], record["sip_call_id"]) == ("answered", "smirnova", answer["id"])
    assert float(record["talk_seconds"]) >= 3
    assert rtpengine_calls(stack) == []


def test_a_real_client_hanging_up_during_the_prompt_is_missed(tmp_path: Path, stacks: Any,
                                                              seed_doc: dict[str, Any]) -> None:
    """Weekday morning, baresip hangs up while the extension prompt plays: its CANCEL ends the
    media server's branch, one `missed` record, and rtpengine holds nothing of the call."""
    stack = stacks(WEEKDAY_MORNING, short_ring_config(seed_doc))
    client, uri = phone(tmp_path, stack, "udp")
    with client:
        client.dial(uri)
        early = client.wait_for("CALL_PROGRESS", "CALL_ESTABLISHED", "CALL_CLOSED", timeout=20)
        assert early["type"] == "CALL_PROGRESS", client.seen()
        time.sleep(0.5)
        client.hang_up()
        client.wait_for("CALL_CLOSED", timeout=10)
        time.sleep(0.5)
    sent = [line.split()[0] for _, way, line in client.sip_trace() if way == "->"]
    assert sent == ["INVITE", "CANCEL", "ACK"], client.sip_trace()
    assert rtpengine_calls(stack) == []
    [record] = [e for e in stack.events() if e["type"] == "call"]
    assert (record["status"], record["rule"], record["sip_call_id"]) == ("missed", "r2", early["id"])
