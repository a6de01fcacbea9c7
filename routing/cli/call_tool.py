"""`voffice call`: place a real test call through the running stack and say what happened.

The call itself is made by sipp (SIP + RTP, RFC 2833 DTMF from the pcaps sipp ships) with
the scenarios of tests/sipp/, the load-tester kit; this module writes the scenario for the
options given, runs it, reads sipp's message trace for the SIP timeline and the call record
that Kamailio wrote to `voffice:events` for what the routing did (rule, scenario, steps,
who answered), and prints both.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from routing.stack.ports import free_udp_port
from routing.store import redis_client

ROOT = Path(__file__).resolve().parents[2]
SIPP_DIR = ROOT / "tests" / "sipp"
PCAPS = Path("/usr/share/sip-tester")
PCAP_NAMES = {"*": "star", "#": "pound"}
_ENTRY = re.compile(r"-{20,} \S+ (\d+):(\d+):([\d.]+)\n(UDP message (?:received|sent))[^\n]*\n\n([^\n]*)")
DTMF = re.compile(r"[0-9*#]{1,20}")


class CallToolError(Exception):
    pass


@dataclass
class CallOutcome:
    timeline: list[tuple[float, str, str]] = field(default_factory=list)  # (t, "->"/"<-", first line)
    sipp_exit: int = 0
    record: dict[str, str] | None = None
    extra_events: list[dict[str, str]] = field(default_factory=list)


DTMF_MODES = ("rfc2833", "info")
_INFO = """  <send>
    <![CDATA[
      INFO [$early_target] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "caller" <sip:[caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      [last_To:]
      Route: [$early_route]
      Call-ID: [call_id]
      CSeq: {cseq} INFO
      Contact: <sip:[caller]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/dtmf-relay
      Content-Length: [len]

      Signal={key}
      Duration=160
    ]]>
  </send>
  <recv response="200"/>
"""


_EARLY_DIALOG = """<recv response="183">
    <action>
      <ereg regexp="sips?:[^&gt;]*" search_in="hdr" header="Contact:" check_it="true" assign_to="early_target"/>
      <ereg regexp="&lt;[^&gt;]*&gt;" search_in="hdr" header="Record-Route:" check_it="true" assign_to="early_route"/>
    </action>
  </recv>"""


_PRACK = """  <send>
    <![CDATA[
      PRACK [$early_target] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "caller" <sip:[caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      [last_To:]
      Route: [$early_route]
      Call-ID: [call_id]
      CSeq: 2 PRACK
      RAck: [$rseq] 1 INVITE
      Contact: <sip:[caller]@[local_ip]:[local_port]>
      Max-Forwards: 70
PRACK_BODY
    ]]>
  </send>
  <recv response="200"/>
"""


# A delayed-offer caller's answers: to the media server's offer (in the PRACK: PCMA and
# telephone-event 101, the payload types our offer uses) and to an operator's (in the ACK).
_ANSWER_BODY = """      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=caller 53655765 2353687638 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP {formats}
      a=rtpmap:8 PCMA/8000
{events}      a=ptime:20"""
_EVENTS = "      a=rtpmap:101 telephone-event/8000\n      a=fmtp:101 0-15\n"
_INVITE_SDP = re.compile(r"      Content-Type: application/sdp\n      Content-Length: \[len\]\n\n.*?\n(    \]\]>)", re.S)
_ACK_END = """      CSeq: 1 ACK
      Contact: <sip:[caller]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0
"""


def _delayed_offer(text: str) -> str:
    """The INVITE without SDP (RFC 3261 13.2.1: the offer comes in a reliable 183 or the 200)
    and the caller's answer to the 200's offer in its ACK."""
    text = _INVITE_SDP.sub(lambda m: "      Content-Length: 0\n" + m.group(1), text, count=1)
    return text.replace(_ACK_END, _ACK_END.replace("      Content-Length: 0\n", _ANSWER_BODY.format(formats="8", events="") + "\n"))


def _rfc2833_plays(digits: str) -> str:
    # sipp plays a pcap in the background; pauses only between digits, since a reply that
    # arrives during a pause aborts the call.
    return '  <pause milliseconds="400"/>\n'.join(
        f'  <nop><action><exec play_pcap_audio="{PCAPS}/dtmf_2833_{PCAP_NAMES.get(d, d)}.pcap"/></action></nop>\n'
        for d in digits
    )


def _info_requests(digits: str) -> str:
    """One INFO per key in the early dialog of the first 183 (its To tag, Contact and route
    set), each waiting for its 200 before the next: what an INFO-only trunk sends."""
    return '  <pause milliseconds="200"/>\n'.join(_INFO.format(cseq=3 + i, key=key) for i, key in enumerate(digits))


def scenario_text(digits: str, dtmf_after_ms: int, message_after_ms: int | None, answered: bool, dtmf_mode: str = "rfc2833",
                  require_100rel: bool = False, delayed_offer: bool = False, supports_100rel: bool = False) -> str:
    """The caller scenario for these options (see tests/sipp/caller-dtmf.xml). With
    `require_100rel` the INVITE says `Require: 100rel` (as PSTN gateways do) and the caller
    PRACKs the first 183 (RFC 3262) before it keys anything; `supports_100rel` says only
    `Supported: 100rel` and PRACKs all the same (the 183 comes reliably then too). With
    `delayed_offer` the INVITE has no SDP: the caller answers the offer of a reliable 183 in
    its PRACK and the offer of the 200 in its ACK."""
    reliable = require_100rel or supports_100rel
    if not digits and message_after_ms is None and not reliable:
        text = (SIPP_DIR / ("caller.xml" if answered else "caller-unanswered.xml")).read_text()
        return _delayed_offer(text) if delayed_offer else text
    if dtmf_mode not in DTMF_MODES:
        raise CallToolError(f"--dtmf-mode {dtmf_mode!r}: one of {', '.join(DTMF_MODES)}")
    plays = _info_requests(digits) if dtmf_mode == "info" else _rfc2833_plays(digits)
    talk = ""
    if message_after_ms is not None:
        talk = (f'  <pause milliseconds="{message_after_ms}"/>\n'
                f'  <nop><action><exec play_pcap_audio="{PCAPS}/g711a.pcap"/></action></nop>\n')
    text = (SIPP_DIR / "caller-dtmf.xml").read_text()
    text = text.replace('<pause milliseconds="1500"/>', f'<pause milliseconds="{dtmf_after_ms}"/>')
    if dtmf_mode == "info" or reliable:
        # The early dialog's target and route set for the INFOs and the PRACK, read from the
        # 183 by hand: sipp keeps only the first route set it records (rrs), and the answer's must win.
        early = _EARLY_DIALOG
        if reliable:
            early = early.replace("    </action>", '      <ereg regexp="[0-9]+" search_in="hdr" header="RSeq:" check_it="true" assign_to="rseq"/>\n    </action>')
            body = _ANSWER_BODY.format(formats="8 101", events=_EVENTS) if delayed_offer else "      Content-Length: 0"
            early += "\n" + _PRACK.replace("PRACK_BODY", body)
            tags = ("      Require: 100rel\n" if require_100rel else "") + "      Supported: 100rel\n"
            text = text.replace("      User-Agent: voffice-test-caller\n", "      User-Agent: voffice-test-caller\n" + tags)
        text = text.replace('<recv response="183"/>', early, 1)
        text = text.replace("CSeq: 2 BYE", f"CSeq: {3 + len(digits)} BYE")
    if delayed_offer:
        text = _delayed_offer(text)
    return text.replace("DIGITS\n", plays).replace("TALK\n", talk)


def parse_trace(text: str) -> list[tuple[float, str, str]]:
    entries = []
    for m in _ENTRY.finditer(text):
        t = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
        entries.append((t, "<-" if "received" in m.group(4) else "->", m.group(5).strip()))
    if not entries:
        return []
    t0 = entries[0][0]
    return [(t - t0, way, line) for t, way, line in entries]


def place_call(
    number: str,
    caller: str,
    sip: tuple[str, int],
    digits: str = "",
    dtmf_after: float = 1.5,
    message_after: float | None = None,
    talk: float = 2.0,
    timeout: float = 120.0,
    redis_url: str | None = None,
    dtmf_mode: str = "rfc2833",
    require_100rel: bool = False,
    delayed_offer: bool = False,
) -> CallOutcome:
    if digits and not DTMF.fullmatch(digits):
        raise CallToolError(f"--dtmf {digits!r}: only 0-9, * and #")
    sipp = shutil.which("sipp")
    if sipp is None:
        raise CallToolError("sipp is not installed (make install)")
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="voffice-call-") as tmp:
        workdir = Path(tmp)
        answered = bool(digits) or message_after is not None
        scenario = workdir / "call.xml"
        scenario.write_text(scenario_text(digits, int(dtmf_after * 1000), None if message_after is None else int(message_after * 1000), answered,
                                          dtmf_mode, require_100rel, delayed_offer, supports_100rel=delayed_offer))
        # its own free port: sipp's default (5060, else the next free) may be one Kamailio
        # listens on with TCP or TLS, and a request from our own address and port is a spiral
        local = local_address_towards(sip[0])
        argv = [sipp, "-sf", str(scenario), "-i", local, "-p", str(free_udp_port(local)), "-m", "1", "-key", "caller", caller, "-key", "talk",
                str(int(talk * 1000)), "-s", number, "-trace_msg", "-nostdin", "-timeout", str(int(timeout)),
                "-timeout_error", f"{sip[0]}:{sip[1]}"]
        result = subprocess.run(argv, cwd=workdir, capture_output=True, timeout=timeout + 10)
        trace = "".join(p.read_text(errors="replace") for p in workdir.glob("*_messages.log"))
    outcome = CallOutcome(parse_trace(trace), result.returncode)
    if redis_url:
        outcome.record, outcome.extra_events = _events_since(redis_url, started, number)
    return outcome


def local_address_towards(host: str) -> str:
    """The address of ours that packets to `host` leave from (the kernel's route choice; a
    connected UDP socket sends nothing): loopback for a local stack, the bridge's address
    for a stack in containers."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect((host, 9))
        return str(probe.getsockname()[0])


def _events_since(url: str, started: float, number: str) -> tuple[dict[str, str] | None, list[dict[str, str]]]:
    client = redis_client.client(url, timeout=2, decode_responses=True)
    since = f"{int(started * 1000) - 1000}-0"
    deadline = time.monotonic() + 3
    record: dict[str, str] | None = None
    others: list[dict[str, str]] = []
    while time.monotonic() < deadline:
        raw: Any = client.xrange("voffice:events", since, "+")
        entries: list[dict[str, str]] = [dict(fields) for _id, fields in raw]
        tail = "".join(c for c in number if c.isdigit())[-10:]
        calls = [e for e in entries if e.get("type") == "call" and e.get("number", "").endswith(tail)]
        if calls:
            found = calls[-1]
            record = found
            others = [e for e in entries if e.get("type") in ("voicemail", "fax") and e.get("call_id") == found.get("call_id")]
            if found.get("status") not in ("voicemail", "fax") or others:
                break
        time.sleep(0.2)
    return record, others


def format_outcome(outcome: CallOutcome, account: dict[str, Any] | None) -> str:
    lines = ["SIP timeline (this caller's view):"]
    for t, way, line in outcome.timeline:
        lines.append(f"  {t:7.3f}s {way} {line}")
    record = outcome.record
    if record is None:
        lines.append("no call record found on voffice:events (is the stack's Redis given with --redis?)")
        return "\n".join(lines)
    lines.append(f"routing: rule {record.get('rule') or '(none: default scenario)'}, scenario {record.get('scenario')}")
    for i, step in enumerate(json.loads(record.get("steps") or "[]"), 1):
        op = (account or {}).get("operations", {}).get(step["operation"], {})
        what = op.get("name", step["operation"])
        detail = ""
        if op.get("sound"):
            sound = account["sounds"].get(op["sound"], {}) if account else {}
            detail = f"; prompt heard: {sound.get('name', op['sound'])}"
        if step.get("ringing"):
            detail = f"; rang {step['ringing']}"
        elif step["type"] == "group" and account:
            members = account["groups"][op["group"]]["members"]
            detail = f"; rang {', '.join(m[0] for m in members)}"
        lines.append(f"  {i}. {what} [{step['type']}]{detail} -> {step.get('event') or 'end'}")
    lines.append(f"result: {record['status']}" + (f", answered by {record['answered_by']}" if record.get("answered_by") else ""))
    for event in outcome.extra_events:
        lines.append(f"stored: {event['type']} {event.get('path', '')} ({event.get('duration', '?')} s, sha256 {event.get('sha256', '')[:12]})")
    return "\n".join(lines)
