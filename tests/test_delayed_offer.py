"""Delayed offer (an INVITE without SDP, RFC 3261 13.2.1) through the whole stack: the media
server offers in a reliable 183 and takes the caller's answer from its PRACK (RFC 3262 5),
an operator offers in its 200 and the caller answers in the ACK; rtpengine anchors both
(the offer in the reply route, the answer in the PRACK or ACK). Before: the media server
answered 488, the prompt was skipped and the answered call's RTP went round rtpengine."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from routing.stack.ports import free_udp_port

from .callpath import (
    SIPP_DIR,
    STACK_TESTS,
    CallStack,
    Sipp,
    StackFactory,
    caller,
    dtmf_caller,
    operator,
    rtpengine_command,
    short_ring_config,
)

pytestmark = STACK_TESTS
NUMBER = "+74951234567"
WEEKDAY = "2026-11-25T10:00:00+03:00"


@pytest.fixture
def stacks(tmp_path: Path, seed_doc: dict[str, Any]) -> Iterator[StackFactory]:
    factory = StackFactory(tmp_path, short_ring_config(seed_doc))
    yield factory
    factory.stop()


def wait_for(condition: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def first_message(log: str, start: str) -> str:
    """The first message of a sipp trace that starts with `start` (entries end at a dash line)."""
    text = log[log.index(start):]
    return text.split("\n----", 1)[0]


def audio_ports(log: str, start: str, containing: str) -> list[str]:
    """The m=audio ports of the first message in a sipp trace that starts with `start` and
    contains `containing`."""
    for entry in log.split("\n----"):
        body = entry[entry.find(start):] if start in entry else ""
        if body and containing in body:
            return re.findall(r"m=audio (\d+)", body)
    raise AssertionError(f"no {start!r} with {containing!r}")


def rtpengine_packets(stack: CallStack) -> dict[str, int]:
    """rtpengine's own view of its one call: packets received per party (tag)."""
    assert stack.config is not None
    port = stack.config.rtpengine_port
    calls = rtpengine_command(port, {"command": "list"})["calls"]
    assert len(calls) == 1, calls
    query = rtpengine_command(port, {"command": "query", "call-id": calls[0]})
    return {
        tag: sum(stream["stats"]["packets"] for media in info["medias"] for stream in media["streams"])
        for tag, info in query["tags"].items()
    }


@pytest.mark.parametrize("require", [False, True], ids=["supported", "required"])
def test_a_delayed_offer_caller_hears_the_prompt_keys_and_talks_through_rtpengine(
        tmp_path: Path, stacks: Any, seed_doc: dict[str, Any], require: bool) -> None:
    """The seed's weekday extension case from a trunk that sends no SDP: our offer in the
    reliable 183, the answer in the PRACK, 102 keyed (RFC 2833) on that media, petrov offers in
    his 200, the caller answers in the ACK and speaks; rtpengine sees both parties' packets."""
    ports = {"petrov": free_udp_port()}
    stack = stacks(WEEKDAY, short_ring_config(seed_doc, ports))
    petrov = operator(tmp_path, "petrov", "answer", ports["petrov"]).start()  # echoes RTP
    call = dtmf_caller(tmp_path, stack, NUMBER, "+79031112233", "102", message_after_ms=0, talk_ms=5000,
                       delayed_offer=True, supports_100rel=True, require_100rel=require).start()
    wait_for(lambda: any(line.startswith("PRACK ") for line in call.sent()))
    time.sleep(1.0)  # the prompt plays; the caller keys after 1.5 s
    # The media server sends its prompt to the address in the PRACK's answer: rtpengine's,
    # had Kamailio not passed the answer to rtpengine it would be the caller's own.
    prompt = rtpengine_packets(stack)
    assert len(prompt) == 2 and max(prompt.values()) > 20, prompt
    wait_for(lambda: any(line.startswith("ACK ") for line in petrov.received()))
    time.sleep(2.5)  # the caller's speech, echoed by petrov
    packets = rtpengine_packets(stack)
    assert call.wait(60) == 0
    assert petrov.wait() == 0
    log = call.messages()
    invite = log[log.index("INVITE sip:"):]
    assert "Content-Length: 0" in invite.split("\n\n", 1)[0]  # no SDP: a delayed offer
    assert re.search(r"SIP/2.0 183 Session Progress\r?\n(?:.*\n)*?RSeq: 1", log)
    assert [line for line in call.sent() if line.startswith("PRACK ")]
    [record] = [e for e in stack.events() if e["type"] == "call"]
    assert (record["status"], record["answered_by"], record["rule"]) == ("answered", "petrov", "r2")
    assert json.loads(record["steps"])[0]["event"] == "digits:102"
    # caller -> rtpengine -> petrov and back: media anchored, offer in the 200, answer in the ACK
    assert len(packets) == 2 and all(n > 50 for n in packets.values()), packets
    petrov_invite = petrov.messages()
    assert "Content-Length: 0" in petrov_invite[petrov_invite.index("INVITE sip:"):].split("\n\n", 1)[0]
    # the caller's answer in its ACK reaches petrov rewritten by rtpengine: another port
    sent_port = re.findall(r"m=audio (\d+)", first_message(log, "ACK sip:"))
    got_port = re.findall(r"m=audio (\d+)", first_message(petrov_invite, "ACK sip:"))
    assert len(sent_port) == len(got_port) == 1 and sent_port != got_port


def test_a_delayed_offer_without_100rel_skips_to_the_group_as_if_no_key_came(tmp_path: Path, stacks: Any) -> None:
    """No SDP and no 100rel: our offer could only go in a 200 (RFC 3261 13.2.1), so there is no
    early-media prompt; the extension step ends as a timeout (the seed's weekday plan then rings
    the managers through the gateway), and the answer is anchored by rtpengine all the same."""
    stack = stacks(WEEKDAY)
    gateway = operator(tmp_path, "gateway", "answer", stack.gateway_port).start()
    try:
        call = caller(tmp_path, stack, NUMBER, "+79031112233", scenario=str(delayed_caller(tmp_path)), talk_ms=500).start()
        assert call.wait(60) == 0
        assert gateway.wait(30) == 0
    finally:
        gateway.stop()
    assert not any(line.startswith("SIP/2.0 183") for line in call.received())
    [record] = [e for e in stack.events() if e["type"] == "call"]
    assert record["status"] == "answered"
    assert json.loads(record["steps"])[0]["event"] == "timeout"
    assert stack.config is not None
    assert "no early media for extension" in (stack.config.run_dir / "media1.log").read_text()


def delayed_caller(workdir: Path) -> Path:
    from routing.cli.call_tool import scenario_text

    path = workdir / "caller-delayed.xml"
    path.write_text(scenario_text("", 0, None, True, delayed_offer=True))
    return path


def test_a_delayed_offer_caller_leaves_a_voicemail(tmp_path: Path, stacks: Any) -> None:
    """The seed's lunch case, secretary busy, menu key 1, voicemail: the menu's offer in a
    reliable 183 (answered in the PRACK), the voicemail's in the media server's 200 (answered
    in the ACK), and the caller's speech is recorded."""
    stack = stacks("2026-11-25T13:30:00+03:00")
    gateway = operator(tmp_path, "gateway", "busy", stack.gateway_port, calls=2).start()
    call = dtmf_caller(tmp_path, stack, NUMBER, "+79031112233", "1", message_after_ms=6000, talk_ms=8000,
                       delayed_offer=True, supports_100rel=True).start()
    assert call.wait(120) == 0
    gateway.stop()
    wait_for(lambda: any(e["type"] == "voicemail" for e in stack.events()), 10)
    by_type = {e["type"]: e for e in stack.events()}
    record, voicemail = by_type["call"], by_type["voicemail"]
    assert (record["status"], record["scenario"]) == ("voicemail", "lunch")
    assert [s["event"] for s in json.loads(record["steps"])] == ["busy", "key:1", None]
    assert voicemail["status"] == "stored" and float(voicemail["duration"]) > 5  # 7 s of speech from 6 s in
    assert "m=audio" in first_message(call.messages(), "ACK sip:")  # the answer to the voicemail's offer


_REINVITE = """  <pause milliseconds="300"/>
  <send retrans="500">
    <![CDATA[
      INVITE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "caller" <sip:[caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      [last_To:]
      [routes]
      Call-ID: [call_id]
      CSeq: 2 INVITE
      Contact: <sip:[caller]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="200"/>
  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "caller" <sip:[caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      [last_To:]
      [routes]
      Call-ID: [call_id]
      CSeq: 2 ACK
      Contact: <sip:[caller]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=caller 53655765 2353687639 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8
      a=rtpmap:8 PCMA/8000
    ]]>
  </send>
"""
_ANSWER_REINVITE = """  <recv request="INVITE" crlf="true"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=operator 53655765 2353687638 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8
      a=rtpmap:8 PCMA/8000
    ]]>
  </send>
  <recv request="ACK" crlf="true"/>
  <recv request="BYE"/>"""


def test_a_reinvite_without_sdp_is_anchored_offer_in_200_answer_in_ack(tmp_path: Path, stacks: Any) -> None:
    """In the answered lunch call the caller re-INVITEs without SDP (a trunk refreshing the
    session): the secretary's offer in the 200 and the caller's answer in the ACK both pass
    rtpengine (each side sees rtpengine's port, not the other side's own)."""
    stack = stacks("2026-11-25T13:30:00+03:00")
    template = (SIPP_DIR / "operator-answer.xml").read_text()
    answering = tmp_path / "operator-reinvite.xml"
    answering.write_text(template.replace('  <recv request="BYE"/>', _ANSWER_REINVITE, 1))
    gateway = Sipp(tmp_path, "gateway", str(answering), stack.gateway_port, ["-key", "ring", "300"]).start()
    text = (SIPP_DIR / "caller.xml").read_text()
    end_of_ack = text.index("</send>", text.index("ACK [next_url]")) + len("</send>\n")
    scenario = tmp_path / "caller-reinvite.xml"
    scenario.write_text((text[:end_of_ack] + _REINVITE + text[end_of_ack:]).replace("CSeq: 2 BYE", "CSeq: 3 BYE"))
    try:
        call = caller(tmp_path, stack, NUMBER, "+79031112233", scenario=str(scenario)).start()
        assert call.wait(60) == 0
        assert gateway.wait(30) == 0
    finally:
        gateway.stop()
    caller_log, gateway_log = call.messages(), gateway.messages()
    offered = audio_ports(gateway_log, "SIP/2.0 200 OK", "CSeq: 2 INVITE")  # the secretary's offer
    relayed = audio_ports(caller_log, "SIP/2.0 200 OK", "CSeq: 2 INVITE")  # as the caller got it
    answered = audio_ports(caller_log, "ACK sip:", "CSeq: 2 ACK")  # the caller's answer
    received = audio_ports(gateway_log, "ACK sip:", "CSeq: 2 ACK")  # as the secretary got it
    assert len(offered) == len(relayed) == len(answered) == len(received) == 1
    assert offered != relayed and answered != received
