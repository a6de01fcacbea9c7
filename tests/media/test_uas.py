"""UAS: call flows, RFC 3261 timers, source filtering, RFC 4475 torture messages, fuzzing."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voffice_media.sipmsg import NameAddr, Request, Response, SipUri, Via, parse
from voffice_media.uas import (
    UAS,
    Acked,
    Action,
    CallCancelled,
    CallEnded,
    IncomingCall,
    InfoDigit,
    MediaAnswer,
    Send,
    UasError,
)

KAMAILIO = ("10.0.0.1", 5060)
LOCAL = ("10.0.0.5", 5080)
T1 = 0.5
SDP = b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0 101\r\n"
RFC4475 = Path(__file__).resolve().parents[1] / "data" / "rfc4475"  # a copy of shared/data/rfc4475


def make_uas() -> UAS:
    counter = itertools.count(1)
    return UAS(LOCAL, {KAMAILIO[0]}, new_token=lambda: f"tok{next(counter)}")


def request(
    method: str,
    *,
    branch: str = "z9hG4bK-inv1",
    call_id: str = "call-1",
    cseq: int = 1,
    cseq_method: str | None = None,
    to_tag: str | None = None,
    body: bytes = b"",
    extra: str = "",
    uri: str = "sip:menu@10.0.0.5:5080",
    record_route: bool = True,
) -> bytes:
    to = "<sip:+74951234567@example.org>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/UDP 10.0.0.1:5060;branch={branch};rport",
        "Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK-caller",
        *(
            ["Record-Route: <sip:10.0.0.1;lr;ftag=f1>", "Record-Route: <sip:192.0.2.99:5070;lr>"]
            if record_route
            else []
        ),
        "Max-Forwards: 69",
        'From: "Caller" <sip:+79031112233@example.net>;tag=f1',
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {cseq_method or method}",
        "Contact: <sip:caller@192.0.2.7:5060;transport=udp>",
    ]
    if extra:
        lines.append(extra)
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def sends(actions: list[Action]) -> list[Response | Request]:
    out = []
    for action in actions:
        if isinstance(action, Send):
            out.append(parse(action.data))
    return out


def statuses(actions: list[Action]) -> list[int]:
    return [m.status for m in sends(actions) if isinstance(m, Response)]


def events(actions: list[Action]) -> list[Action]:
    return [a for a in actions if not isinstance(a, Send)]


def to_tag_of(message: Response | Request) -> str | None:
    return NameAddr.parse(message.headers.get("To") or "").tag


def start_call(uas: UAS, now: float = 0.0) -> list[Action]:
    return uas.receive(request("INVITE", body=SDP), KAMAILIO, now)


def ack(to_tag: str, *, branch: str = "z9hG4bK-inv1") -> bytes:
    return request("ACK", branch=branch, to_tag=to_tag, record_route=False)


# ------------------------------------------------------------------ INVITE and provisional


def test_invite_gets_100_and_incoming_call() -> None:
    uas = make_uas()
    actions = start_call(uas)
    assert isinstance(actions[0], Send) and actions[0].addr == KAMAILIO
    trying = parse(actions[0].data)
    assert isinstance(trying, Response) and trying.status == 100
    assert to_tag_of(trying) is None
    assert (
        trying.headers.values("Via")[0] == "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-inv1;received=10.0.0.1;rport=5060"
    )
    assert "Record-Route" not in trying.headers
    call = actions[1]
    assert isinstance(call, IncomingCall)
    assert (call.call_id, call.offer_sdp, call.remote) == ("call-1", SDP, KAMAILIO)
    assert call.request.headers.get("X-Nothing") is None
    assert uas.call_state("call-1") == "proceeding"


def test_response_goes_to_via_port_without_rport() -> None:
    uas = make_uas()
    data = request("OPTIONS").replace(b";rport", b"")
    actions = uas.receive(data, ("10.0.0.1", 40000), 0.0)
    assert isinstance(actions[0], Send) and actions[0].addr == ("10.0.0.1", 5060)


def test_provisional_183_with_sdp() -> None:
    uas = make_uas()
    start_call(uas)
    [progress] = sends(uas.provisional("call-1", 183, b"v=0\r\n"))
    assert isinstance(progress, Response) and progress.status == 183
    assert to_tag_of(progress) == "tok1"
    assert progress.headers.get_all("Record-Route") == ["<sip:10.0.0.1;lr;ftag=f1>", "<sip:192.0.2.99:5070;lr>"]
    assert progress.headers.get("Contact") == "<sip:10.0.0.5:5080>"
    assert progress.headers.get("Content-Type") == "application/sdp" and progress.body == b"v=0\r\n"
    with pytest.raises(UasError):
        uas.provisional("call-1", 200)


def test_invite_retransmission_resends_last_response() -> None:
    uas = make_uas()
    start_call(uas)
    assert statuses(uas.receive(request("INVITE", body=SDP), KAMAILIO, 0.1)) == [100]
    uas.provisional("call-1", 183, b"v=0\r\n")
    again = uas.receive(request("INVITE", body=SDP), KAMAILIO, 0.2)
    assert statuses(again) == [183] and not events(again)
    uas.reject("call-1", 480, headers=[("X-VO-Result", "key=1")])
    assert statuses(uas.receive(request("INVITE", body=SDP), KAMAILIO, 0.3)) == [480]


# ------------------------------------------------------------------ reject and Timer G/H


def test_reject_480_retransmitted_on_timer_g_until_ack() -> None:
    uas = make_uas()
    start_call(uas)
    [final] = sends(uas.reject("call-1", 480, headers=[("X-VO-Result", "key=1")], now=1.0))
    assert isinstance(final, Response) and (final.status, final.reason) == (480, "Temporarily Unavailable")
    assert final.headers.get("X-VO-Result") == "key=1"
    assert "Record-Route" not in final.headers and "Contact" not in final.headers
    assert to_tag_of(final) == "tok1"
    # Timer G: T1, 2*T1, 4*T1, then capped at T2 = 4 s.
    times = []
    now = 1.0
    while now < 1.0 + 20:
        now = round(now + 0.05, 2)
        if statuses(uas.tick(now)) == [480]:
            times.append(round(now - 1.0, 2))
    assert times[:5] == [0.5, 1.5, 3.5, 7.5, 11.5]
    actions = uas.receive(ack("tok1"), KAMAILIO, now)
    assert actions == [Acked("call-1")]
    assert uas.call_state("call-1") == "confirmed"
    assert uas.receive(ack("tok1"), KAMAILIO, now + 0.1) == []  # absorbed
    assert statuses(uas.tick(now + 4)) == []
    uas.tick(now + 5.1)  # Timer I
    assert uas.call_state("call-1") is None


def test_no_ack_ends_with_timer_h() -> None:
    uas = make_uas()
    start_call(uas)
    uas.reject("call-1", 486, now=0.0)
    count = 0
    ended: list[Action] = []
    for step in range(1, 700):
        actions = uas.tick(step * 0.05)
        count += len(statuses(actions))
        ended += events(actions)
    assert ended == [CallEnded("call-1", "no-ack")]
    assert 7 <= count <= 11  # 0.5, 1.5, 3.5, 7.5, 11.5, ..., < 32 s
    assert uas.call_state("call-1") is None
    assert uas.next_deadline() is None or uas.tick(1000.0) == []


def test_reject_after_reject_is_an_error() -> None:
    uas = make_uas()
    start_call(uas)
    uas.reject("call-1", 480)
    with pytest.raises(UasError):
        uas.reject("call-1", 480)
    with pytest.raises(UasError):
        uas.reject("call-1", 200)
    assert uas.reject("unknown", 480) == []


# ------------------------------------------------------------------ CANCEL


def test_cancel_gets_200_and_487() -> None:
    uas = make_uas()
    start_call(uas)
    uas.provisional("call-1", 183, b"v=0\r\n")
    actions = uas.receive(request("CANCEL", record_route=False), KAMAILIO, 1.0)
    messages = sends(actions)
    assert [m.status for m in messages if isinstance(m, Response)] == [200, 487]
    ok, terminated = messages
    assert ok.headers.get("CSeq") == "1 CANCEL" and to_tag_of(ok) == "tok1"
    assert terminated.headers.get("CSeq") == "1 INVITE" and to_tag_of(terminated) == "tok1"
    assert events(actions) == [CallCancelled("call-1")]
    # the application's answer that crossed the CANCEL is a no-op
    assert uas.reject("call-1", 480) == [] and uas.answer("call-1", 200, b"v=0\r\n") == []
    assert statuses(uas.receive(request("CANCEL", record_route=False), KAMAILIO, 1.1)) == [200]
    assert statuses(uas.tick(1.5)) == [487]
    assert uas.receive(ack("tok1"), KAMAILIO, 1.6) == []  # no Acked for a cancelled call
    assert uas.call_state("call-1") == "confirmed"


def test_cancel_unknown_and_late() -> None:
    uas = make_uas()
    assert statuses(uas.receive(request("CANCEL", branch="z9hG4bK-none"), KAMAILIO, 0.0)) == [481]
    start_call(uas)
    uas.reject("call-1", 480)
    actions = uas.receive(request("CANCEL"), KAMAILIO, 0.1)
    assert statuses(actions) == [200] and not events(actions)


# ------------------------------------------------------------------ answer, ACK, BYE


def answered(uas: UAS) -> None:
    start_call(uas)
    uas.answer("call-1", 200, b"v=0\r\n", now=0.0)
    assert uas.receive(ack("tok1", branch="z9hG4bK-ack2xx"), KAMAILIO, 0.2) == [Acked("call-1")]


def test_answer_retransmitted_until_ack() -> None:
    uas = make_uas()
    start_call(uas)
    [ok] = sends(uas.answer("call-1", 200, b"v=0\r\n", now=0.0))
    assert isinstance(ok, Response) and ok.status == 200
    assert ok.headers.get("Allow") and ok.headers.get("Contact") == "<sip:10.0.0.5:5080>"
    assert len(ok.headers.get_all("Record-Route")) == 2
    assert statuses(uas.tick(0.5)) == [200]
    assert statuses(uas.receive(request("INVITE", body=SDP), KAMAILIO, 0.6)) == [200]
    assert uas.receive(ack("tok1", branch="z9hG4bK-ack2xx"), KAMAILIO, 0.7) == [Acked("call-1")]
    assert statuses(uas.tick(10.0)) == []
    assert uas.receive(request("INVITE", body=SDP), KAMAILIO, 10.1) == []  # absorbed once ACKed
    assert uas.call_state("call-1") == "established"


def test_answer_without_ack_sends_bye() -> None:
    uas = make_uas()
    start_call(uas)
    uas.answer("call-1", 200, b"v=0\r\n", now=0.0)
    collected: list[Action] = []
    for step in range(1, 66):
        collected += uas.tick(step * 0.5)
    assert CallEnded("call-1", "no-ack") in collected
    byes = [m for m in sends(collected) if isinstance(m, Request)]
    assert byes and byes[0].method == "BYE"
    assert uas.call_state("call-1") == "closing"


def test_hangup_sends_bye_via_record_route() -> None:
    uas = make_uas()
    answered(uas)
    actions = uas.hangup("call-1", now=5.0)
    [send] = actions
    assert isinstance(send, Send) and send.addr == ("10.0.0.1", 5060)
    bye = parse(send.data)
    assert isinstance(bye, Request) and bye.method == "BYE"
    assert bye.uri == "sip:caller@192.0.2.7:5060;transport=udp"
    assert bye.headers.get_all("Route") == ["<sip:10.0.0.1;lr;ftag=f1>", "<sip:192.0.2.99:5070;lr>"]
    assert NameAddr.parse(bye.headers.get("From") or "").tag == "tok1"
    assert NameAddr.parse(bye.headers.get("To") or "").tag == "f1"
    assert bye.headers.get("Call-ID") == "call-1" and bye.headers.get("CSeq") == "1 BYE"
    via = Via.parse(bye.headers.values("Via")[0])
    assert via.host == "10.0.0.5" and via.port == 5080 and (via.branch or "").startswith("z9hG4bK")
    assert uas.call_state("call-1") == "closing"
    # Timer E retransmits the BYE; its 200 ends the call.
    assert [m.method for m in sends(uas.tick(5.5)) if isinstance(m, Request)] == ["BYE"]
    response = f"SIP/2.0 200 OK\r\nVia: {bye.headers.values('Via')[0]}\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n"
    assert uas.receive(response.encode(), KAMAILIO, 5.6) == []
    assert uas.call_state("call-1") is None
    assert uas.hangup("call-1") == []


def test_hangup_strict_route_and_timer_f() -> None:
    uas = make_uas()
    data = request("INVITE", body=SDP, record_route=False).replace(
        b"Max-Forwards", b"Record-Route: <sip:10.0.0.1:5062;maddr=10.0.0.9>\r\nMax-Forwards"
    )
    uas.receive(data, KAMAILIO, 0.0)
    uas.answer("call-1", 200, b"v=0\r\n")
    uas.receive(ack("tok1", branch="z9hG4bK-a"), KAMAILIO, 0.1)
    [send] = uas.hangup("call-1", now=1.0)
    assert isinstance(send, Send)
    bye = parse(send.data)
    assert isinstance(bye, Request)
    assert bye.uri == "sip:10.0.0.1:5062"
    assert bye.headers.get_all("Route") == ["<sip:caller@192.0.2.7:5060;transport=udp>"]
    assert send.addr == ("10.0.0.1", 5062)
    for step in range(1, 80):
        uas.tick(1.0 + step * 0.5)
    assert uas.call_state("call-1") is None  # Timer F gave up


def test_hangup_before_ack_waits_for_it() -> None:
    uas = make_uas()
    start_call(uas)
    uas.answer("call-1", 200, b"v=0\r\n", now=0.0)
    assert uas.hangup("call-1") == []
    actions = uas.receive(ack("tok1", branch="z9hG4bK-a"), KAMAILIO, 0.1)
    assert actions[0] == Acked("call-1")
    assert [m.method for m in sends(actions) if isinstance(m, Request)] == ["BYE"]


def test_hangup_unanswered_rejects_480_and_is_idempotent() -> None:
    uas = make_uas()
    start_call(uas)
    assert statuses(uas.hangup("call-1")) == [480]
    assert uas.hangup("call-1") == []
    uas.receive(ack("tok1"), KAMAILIO, 0.1)
    assert uas.hangup("call-1") == []


def test_bye_from_remote() -> None:
    uas = make_uas()
    answered(uas)
    bye = request("BYE", branch="z9hG4bK-bye", cseq=2, to_tag="tok1", record_route=False)
    actions = uas.receive(bye, KAMAILIO, 3.0)
    assert statuses(actions) == [200] and events(actions) == [CallEnded("call-1", "bye")]
    assert uas.call_state("call-1") is None
    again = uas.receive(bye, KAMAILIO, 3.5)
    assert statuses(again) == [200] and not events(again)
    uas.tick(3.0 + 64 * T1 + 1)
    assert statuses(uas.receive(bye, KAMAILIO, 40.0)) == [481]


def test_bye_with_wrong_tag_is_481() -> None:
    uas = make_uas()
    answered(uas)
    bye = request("BYE", branch="z9hG4bK-bye", cseq=2, to_tag="nope")
    assert statuses(uas.receive(bye, KAMAILIO, 3.0)) == [481]
    assert uas.call_state("call-1") == "established"


def test_bye_on_early_dialog() -> None:
    uas = make_uas()
    start_call(uas)
    uas.provisional("call-1", 183, b"v=0\r\n")
    actions = uas.receive(request("BYE", branch="z9hG4bK-bye", cseq=2, to_tag="tok1"), KAMAILIO, 1.0)
    assert statuses(actions) == [200, 487]
    assert events(actions) == [CallEnded("call-1", "bye")]


def test_crossing_byes() -> None:
    uas = make_uas()
    answered(uas)
    uas.hangup("call-1", now=1.0)
    actions = uas.receive(request("BYE", branch="z9hG4bK-bye", cseq=2, to_tag="tok1"), KAMAILIO, 1.1)
    assert statuses(actions) == [200] and not events(actions)


# ------------------------------------------------------------------ other requests


def test_options() -> None:
    uas = make_uas()
    [ok] = sends(uas.receive(request("OPTIONS"), KAMAILIO, 0.0))
    assert isinstance(ok, Response) and ok.status == 200
    assert "OPTIONS" in (ok.headers.get("Allow") or "") and ok.headers.get("Accept") == "application/sdp"
    assert to_tag_of(ok)
    assert statuses(uas.receive(request("OPTIONS"), KAMAILIO, 0.1)) == [200]


def test_disallowed_sources() -> None:
    uas = make_uas()
    stranger = ("203.0.113.5", 5060)
    assert uas.receive(request("OPTIONS"), stranger, 0.0) == []
    assert uas.receive(request("BYE", to_tag="x"), stranger, 0.0) == []
    assert uas.receive(b"garbage", stranger, 0.0) == []
    actions = uas.receive(request("INVITE", body=SDP), stranger, 0.0)
    assert statuses(actions) == [403] and not events(actions)
    assert uas.call_state("call-1") is None and uas.next_deadline() is None


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (request("REGISTER"), 405),
        (request("FOO"), 501),
        (request("OPTIONS", extra="Require: timer"), 420),
        (request("INVITE", extra="Require: 100rel, timer"), 420),
        (request("OPTIONS", cseq_method="INVITE"), 400),
        (request("OPTIONS", uri="tel:+123"), 416),
        (request("OPTIONS", extra="CSeq: 2 OPTIONS"), 400),
        (request("OPTIONS").replace(b"Call-ID: call-1\r\n", b""), 400),
        (request("INVITE", body=b"hello").replace(b"application/sdp", b"text/plain"), 415),
        (request("INVITE", extra="Accept: text/html"), 406),
        (request("INVITE", uri="sip:a@b?Route=x"), 400),
        (request("INVITE", extra="Contact: <sip:second@x>"), 400),
        (request("INVITE").replace(b"Content-Length: 0", b"Content-Length: 10"), 400),
        (request("INVITE").replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1), 505),
    ],
)
def test_refusals(data: bytes, status: int) -> None:
    uas = make_uas()
    actions = uas.receive(data, KAMAILIO, 0.0)
    assert statuses(actions) == [status]
    assert not events(actions)


def test_405_lists_allow_and_refused_invite_is_retransmitted() -> None:
    uas = make_uas()
    [resp] = sends(uas.receive(request("REGISTER"), KAMAILIO, 0.0))
    assert isinstance(resp, Response) and resp.headers.get("Allow")
    assert statuses(uas.receive(request("INVITE", extra="Accept: text/html"), KAMAILIO, 0.0)) == [406]
    assert statuses(uas.tick(0.5)) == [406]  # a real INVITE transaction: Timer G
    assert uas.receive(ack("tok2"), KAMAILIO, 0.6) == []  # ACKed silently, no call events


def test_unroutable_or_ack_garbage_is_dropped() -> None:
    uas = make_uas()
    assert uas.receive(b"\r\n\r\n", KAMAILIO, 0.0) == []
    assert uas.receive(b"OPTIONS sip:a@b SIP/2.0\r\nno colon\r\n\r\n", KAMAILIO, 0.0) == []
    assert uas.receive(request("ACK", to_tag="x"), KAMAILIO, 0.0) == []
    assert uas.receive(request("ACK", cseq_method="INVITE").replace(b"CSeq: 1 INVITE", b"CSeq: x"), KAMAILIO, 0.0) == []
    no_via = b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\nl: 0\r\n\r\n"
    assert uas.receive(no_via, KAMAILIO, 0.0) == []


def test_merged_invite_is_482_and_relay_after_reject_is_new_call() -> None:
    uas = make_uas()
    start_call(uas)
    assert statuses(uas.receive(request("INVITE", branch="z9hG4bK-inv2", body=SDP), KAMAILIO, 0.1)) == [482]
    uas.reject("call-1", 480, headers=[("X-VO-Result", "digits=101")])
    uas.receive(ack("tok1"), KAMAILIO, 0.2)
    actions = uas.receive(request("INVITE", branch="z9hG4bK-inv3", body=SDP), KAMAILIO, 0.3)
    assert statuses(actions) == [100]
    assert [type(e) for e in events(actions)] == [IncomingCall]
    assert uas.call_state("call-1") == "proceeding"
    # the old transaction still absorbs its ACK without telling anyone
    assert uas.receive(ack("tok1"), KAMAILIO, 0.4) == []


def test_re_invite() -> None:
    uas = make_uas()
    answered(uas)
    reinvite = request("INVITE", branch="z9hG4bK-re", cseq=2, to_tag="tok1", body=SDP)
    assert statuses(uas.receive(reinvite, KAMAILIO, 1.0)) == [488]
    assert uas.call_state("call-1") == "established"
    stray = request("INVITE", branch="z9hG4bK-re2", call_id="other", cseq=2, to_tag="zzz", body=SDP)
    assert statuses(uas.receive(stray, KAMAILIO, 1.0)) == [481]


def test_rfc2543_invite_without_branch_or_contact() -> None:
    uas = make_uas()
    data = (
        b"INVITE sip:UserB@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1\r\n"
        b"From: <sip:+13035551111@ift.client.example.net;user=phone>\r\nTo: sip:+16505552222@ss1.example.net;user=phone\r\n"
        b"Call-ID: inv2543\r\nCSeq: 56 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
    actions = uas.receive(data, KAMAILIO, 0.0)
    assert statuses(actions) == [100]
    assert statuses(uas.receive(data, KAMAILIO, 0.1)) == [100]  # matched by the RFC 2543 rules
    uas.answer("inv2543", 200, b"v=0\r\n")
    ack_data = (
        data.replace(b"INVITE sip", b"ACK sip")
        .replace(b"56 INVITE", b"56 ACK")
        .replace(b"user=phone\r\nCall", b"user=phone;tag=tok1\r\nCall")
    )
    # (our 200 carried an offer, the INVITE had none: an ACK without the answer reports it empty)
    assert uas.receive(ack_data, KAMAILIO, 0.2) == [MediaAnswer("inv2543", b""), Acked("inv2543")]
    [send] = uas.hangup("inv2543")
    assert isinstance(send, Send)
    bye = parse(send.data)
    assert isinstance(bye, Request) and bye.uri == "sip:+13035551111@ift.client.example.net;user=phone"


def test_next_deadline_and_app_now() -> None:
    uas = make_uas()
    assert uas.next_deadline() is None
    start_call(uas, now=10.0)
    uas.reject("call-1", 480)
    assert uas.next_deadline() == pytest.approx(10.5)


# ------------------------------------------------------------------ RFC 4475

# RFC 4475 section 3.1.1 (valid) and the requests of 3.2-3.4 that a UAS must process.
VALID = {
    "wsinv", "intmeth", "esc01", "escnull", "esc02", "lwsdisp", "longreq", "dblreq", "semiuri",
    "transports", "mpart01", "badbranch", "unkscm", "novelsc", "unksm2", "bext01", "invut",
    "regaut01", "zeromf", "cparam01", "cparam02", "regescrt", "inv2543", "sdp01",
}  # fmt: skip
# Section 3.1.2 (invalid) and the application-layer errors of 3.3 (insuf, multi01, mcl01),
# plus test.dat (no SIP version): each must get a 4xx/5xx or nothing.
INVALID = {
    "badinv01", "clerr", "ncl", "scalar02", "quotbal", "ltgtruri", "lwsruri", "lwsstart", "trws",
    "escruri", "baddate", "regbadct", "badaspec", "baddn", "badvers", "mismatch01", "mismatch02",
    "insuf", "multi01", "mcl01", "test",
}  # fmt: skip
RESPONSES = {"bcast", "bigcode", "noreason", "unreason", "scalarlg"}  # not for a UAS: ignored


def wire_bytes(path: Path) -> bytes:
    """The files have LF line ends; the RFC's Content-Lengths count CRLF text, so every LF
    becomes CRLF. Two files are already CRLF with binary or control bytes (mpart01,
    intmeth): they are sent as they are."""
    raw = path.read_bytes()
    return raw if b"\r" in raw else raw.replace(b"\n", b"\r\n")


def test_every_torture_file_is_classified() -> None:
    names = {p.stem for p in RFC4475.glob("*.dat")}
    assert names == VALID | INVALID | RESPONSES


@pytest.mark.parametrize("name", sorted(VALID | INVALID | RESPONSES))
def test_rfc4475(name: str) -> None:
    uas = make_uas()
    actions = uas.receive(wire_bytes(RFC4475 / f"{name}.dat"), KAMAILIO, 0.0)
    for step in range(1, 100):
        actions += uas.tick(step * 0.5)
    responses = sends(actions)
    assert all(isinstance(m, Response) for m in responses)
    codes = [m.status for m in responses if isinstance(m, Response)]
    if name in RESPONSES:
        assert actions == []
    elif name in INVALID:
        assert all(code >= 400 for code in codes)
        assert not any(isinstance(a, IncomingCall) for a in actions)
    else:
        assert codes or any(isinstance(a, IncomingCall) for a in actions)
        assert 400 not in codes


def test_rfc4475_specific_answers() -> None:
    expected = {
        "badvers": 505,
        "bext01": 420,
        "invut": 415,
        "unkscm": 416,
        "novelsc": 416,
        "sdp01": 406,
        "intmeth": 501,
    }
    for name, status in expected.items():
        actions = make_uas().receive(wire_bytes(RFC4475 / f"{name}.dat"), KAMAILIO, 0.0)
        assert statuses(actions)[:1] == [status], name
    for name in ("esc01", "longreq", "inv2543"):
        actions = make_uas().receive(wire_bytes(RFC4475 / f"{name}.dat"), KAMAILIO, 0.0)
        assert any(isinstance(a, IncomingCall) for a in actions), name


# ------------------------------------------------------------------ fuzzing the machine

_OPS = st.sampled_from(
    [
        "invite",
        "invite2",
        "cancel",
        "ack",
        "ack2xx",
        "bye",
        "options",
        "tick",
        "provisional",
        "answer",
        "reject",
        "hangup",
        "bye200",
    ]
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_OPS, st.floats(0, 3)), max_size=25))
def test_random_operation_sequences(ops: list[tuple[str, float]]) -> None:
    uas = make_uas()
    now = 0.0
    last_bye_via = ""
    for op, delay in ops:
        now += delay
        try:
            if op == "invite":
                actions = uas.receive(request("INVITE", body=SDP), KAMAILIO, now)
            elif op == "invite2":
                actions = uas.receive(request("INVITE", branch="z9hG4bK-other", body=SDP), KAMAILIO, now)
            elif op == "cancel":
                actions = uas.receive(request("CANCEL"), KAMAILIO, now)
            elif op == "ack":
                actions = uas.receive(ack("tok1"), KAMAILIO, now)
            elif op == "ack2xx":
                actions = uas.receive(ack("tok1", branch="z9hG4bK-a2"), KAMAILIO, now)
            elif op == "bye":
                actions = uas.receive(request("BYE", branch="z9hG4bK-b", cseq=2, to_tag="tok1"), KAMAILIO, now)
            elif op == "options":
                actions = uas.receive(request("OPTIONS", branch=f"z9hG4bK-o{now}"), KAMAILIO, now)
            elif op == "tick":
                actions = uas.tick(now)
            elif op == "bye200":
                response = f"SIP/2.0 200 OK\r\nVia: {last_bye_via}\r\nCSeq: 1 BYE\r\nl: 0\r\n\r\n"
                actions = uas.receive(response.encode(), KAMAILIO, now) if last_bye_via else []
            elif op == "provisional":
                actions = uas.provisional("call-1", 183, b"v=0\r\n", now=now)
            elif op == "answer":
                actions = uas.answer("call-1", 200, b"v=0\r\n", now=now)
            elif op == "reject":
                actions = uas.reject("call-1", 480, now=now)
            else:
                actions = uas.hangup("call-1", now=now)
        except UasError:
            continue
        for message in sends(actions):
            if isinstance(message, Request):
                assert message.method == "BYE"
                last_bye_via = message.headers.values("Via")[0]
                SipUri.parse(message.uri)
    uas.tick(now + 1000)  # an unACKed 2xx turns into a BYE here...
    uas.tick(now + 2000)  # ...that Timer F ends here
    assert uas.call_state("call-1") in (None, "established", "proceeding")


# ------------------------------------------------------------------ DTMF as SIP INFO


def info(body: bytes, content_type: str = "application/dtmf-relay", *, to_tag: str = "tok1", cseq: int = 2,
         branch: str = "z9hG4bK-info1", call_id: str = "call-1") -> bytes:
    data = request("INFO", branch=branch, to_tag=to_tag, cseq=cseq, body=body, call_id=call_id, record_route=False)
    return data.replace(b"Content-Type: application/sdp", f"Content-Type: {content_type}".encode())


def test_info_digits_in_the_early_dialog() -> None:
    """A trunk that sends keys only as INFO dials an extension during the prompt (183)."""
    uas = make_uas()
    start_call(uas)
    uas.provisional("call-1", 183, SDP)
    got: list[Action] = []
    for n, body in enumerate((b"Signal=1\r\nDuration=160\r\n", b"signal = 0\r\nduration=100", b"Signal= 1")):
        actions = uas.receive(info(body, cseq=2 + n, branch=f"z9hG4bK-i{n}"), KAMAILIO, 0.1 * n)
        assert statuses(actions) == [200]
        got += events(actions)
    actions = uas.receive(info(b"#", "application/dtmf", cseq=9, branch="z9hG4bK-i9"), KAMAILIO, 1.0)
    assert statuses(actions) == [200]
    got += events(actions)
    assert got == [InfoDigit("call-1", "1"), InfoDigit("call-1", "0"), InfoDigit("call-1", "1"), InfoDigit("call-1", "#")]
    assert uas.call_state("call-1") == "proceeding"


def test_info_retransmission_gets_the_same_answer_and_no_second_key() -> None:
    uas = make_uas()
    start_call(uas)
    uas.provisional("call-1", 183, SDP)
    first = uas.receive(info(b"Signal=5"), KAMAILIO, 0.1)
    again = uas.receive(info(b"Signal=5"), KAMAILIO, 0.6)
    assert events(first) == [InfoDigit("call-1", "5")]
    assert statuses(again) == [200] and not events(again)


def test_info_in_the_confirmed_dialog_too() -> None:
    uas = make_uas()
    start_call(uas)
    uas.answer("call-1", 200, SDP)
    uas.receive(ack("tok1"), KAMAILIO, 0.1)
    assert events(uas.receive(info(b"11", "application/dtmf"), KAMAILIO, 0.2)) == [InfoDigit("call-1", "#")]


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (info(b"Signal=Z"), 400),  # a DTMF type naming no key
        (info(b"Duration=160"), 400),
        (info(b"<xml/>", "application/media_control+xml"), 415),
        (info(b"Signal=1", to_tag="other"), 481),  # not this dialog
        (info(b"Signal=1", call_id="call-2"), 481),
    ],
)
def test_info_refusals(data: bytes, status: int) -> None:
    uas = make_uas()
    start_call(uas)
    uas.provisional("call-1", 183, SDP)
    actions = uas.receive(data, KAMAILIO, 0.1)
    assert statuses(actions) == [status] and not events(actions)


def test_empty_info_is_a_keep_alive_and_415_says_what_is_accepted() -> None:
    uas = make_uas()
    start_call(uas)
    uas.provisional("call-1", 183, SDP)
    actions = uas.receive(request("INFO", to_tag="tok1", cseq=2, branch="z9hG4bK-ka", record_route=False), KAMAILIO, 0.1)
    assert statuses(actions) == [200] and not events(actions)
    [refused] = sends(uas.receive(info(b"x", "text/plain", branch="z9hG4bK-t"), KAMAILIO, 0.2))
    assert isinstance(refused, Response) and refused.headers.get("Accept") == "application/dtmf-relay, application/dtmf"


def test_info_after_the_call_ended_is_481() -> None:
    uas = make_uas()
    start_call(uas)
    uas.reject("call-1", 486)
    assert statuses(uas.receive(info(b"Signal=1"), KAMAILIO, 0.1)) == [481]


# ------------------------------------------------------------------ 100rel / PRACK (RFC 3262)


def reliable_call(uas: UAS, header: str = "Require: 100rel") -> Response:
    uas.receive(request("INVITE", body=SDP, extra=header), KAMAILIO, 0.0)
    [progress] = sends(uas.provisional("call-1", 183, SDP))
    assert isinstance(progress, Response)
    return progress


def prack(rack: str = "1 1 INVITE", *, branch: str = "z9hG4bK-prack1", cseq: int = 2) -> bytes:
    return request("PRACK", branch=branch, to_tag="tok1", cseq=cseq, extra=f"RAck: {rack}", record_route=False)


@pytest.mark.parametrize("header", ["Require: 100rel", "Supported: timer, 100rel"])
def test_a_caller_with_100rel_gets_its_early_media_reliably(header: str) -> None:
    """PSTN gateways and SBCs require 100rel: the prompt's 183 carries Require and RSeq and is
    resent from T1, doubling, until the PRACK, which gets 200 (once 420 and no prompt)."""
    uas = make_uas()
    progress = reliable_call(uas, header)
    assert (progress.headers.get("Require"), progress.headers.get("RSeq")) == ("100rel", "1")
    assert statuses(uas.tick(0.5)) == [183] and statuses(uas.tick(1.0)) == []
    assert statuses(uas.tick(1.5)) == [183]  # 0.5 + 1.0
    actions = uas.receive(prack(), KAMAILIO, 1.6)
    assert statuses(actions) == [200] and not events(actions)
    assert statuses(uas.tick(3.5)) == [] and statuses(uas.tick(40.0)) == []  # acknowledged: quiet
    assert uas.call_state("call-1") == "proceeding"
    [final] = sends(uas.reject("call-1", 480))  # the operation's result ends it as always
    assert isinstance(final, Response) and final.status == 480


def test_without_100rel_provisionals_stay_unreliable() -> None:
    uas = make_uas()
    progress = reliable_call(uas, "Supported: timer")
    assert progress.headers.get("RSeq") is None and progress.headers.get("Require") is None
    assert statuses(uas.tick(0.5)) == []


def test_a_prack_for_nothing_outstanding_is_481() -> None:
    uas = make_uas()
    reliable_call(uas)
    assert statuses(uas.receive(prack("2 1 INVITE"), KAMAILIO, 0.1)) == [481]  # no RSeq 2
    assert statuses(uas.receive(prack("1 1 INVITE", branch="z9hG4bK-p2"), KAMAILIO, 0.2)) == [200]
    assert statuses(uas.receive(prack("1 1 INVITE", branch="z9hG4bK-p3", cseq=3), KAMAILIO, 0.3)) == [481]  # already
    assert statuses(uas.receive(prack("1 1 INVITE", branch="z9hG4bK-p2"), KAMAILIO, 0.4)) == [200]  # a retransmission


def test_no_prack_in_64_t1_gives_the_call_up_with_504() -> None:
    uas = make_uas()
    reliable_call(uas)
    got: list[Action] = []
    now = 0.0
    while now < 64 * T1 + 1:
        now += 0.25
        got += uas.tick(now)
    assert statuses(got).count(183) == 6  # at 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 (no T2 cap: RFC 3262 3)
    assert 504 in statuses(got) and CallEnded("call-1", "no-prack") in events(got)


def test_a_final_response_stops_the_retransmissions_and_a_late_prack_is_still_answered() -> None:
    uas = make_uas()
    reliable_call(uas)
    uas.reject("call-1", 480)
    assert statuses(uas.tick(0.5)) == [480]  # Timer G for the final, no more 183
    assert statuses(uas.receive(prack(), KAMAILIO, 0.6)) == [200]


# ---------------------------------------------------------------- delayed offer (no SDP)


def test_a_delayed_offer_gets_our_offer_in_the_reliable_183_and_its_answer_from_the_prack() -> None:
    """RFC 3262 5: an INVITE without an offer gets ours in the first reliable provisional; the
    caller answers in the PRACK, which is the media the prompt plays on."""
    uas = make_uas()
    [incoming] = events(uas.receive(request("INVITE", extra="Supported: 100rel"), KAMAILIO, 0.0))
    assert isinstance(incoming, IncomingCall) and incoming.offer_sdp == b"" and incoming.reliable
    [progress] = sends(uas.provisional("call-1", 183, SDP))
    assert isinstance(progress, Response) and progress.headers.get("RSeq") == "1" and progress.body == SDP
    answer = SDP.replace(b"30000", b"30002")
    actions = uas.receive(request("PRACK", branch="z9hG4bK-prack1", to_tag="tok1", cseq=2, extra="RAck: 1 1 INVITE",
                                  body=answer, record_route=False), KAMAILIO, 0.1)
    assert statuses(actions) == [200] and events(actions) == [MediaAnswer("call-1", answer)]
    again = uas.receive(request("PRACK", branch="z9hG4bK-prack1", to_tag="tok1", cseq=2, extra="RAck: 1 1 INVITE",
                                body=answer, record_route=False), KAMAILIO, 0.2)
    assert statuses(again) == [200] and not events(again)  # a retransmission: answered, not re-read


def test_a_delayed_offer_answered_with_200_takes_the_answer_from_the_ack() -> None:
    """Voicemail and fax answer with 200: our offer there, the caller's answer in the ACK."""
    uas = make_uas()
    uas.receive(request("INVITE"), KAMAILIO, 0.0)
    [ok] = sends(uas.answer("call-1", 200, SDP))
    assert isinstance(ok, Response) and ok.body == SDP
    answer = SDP.replace(b"30000", b"30004")
    actions = uas.receive(request("ACK", to_tag="tok1", body=answer, record_route=False), KAMAILIO, 0.1)
    assert events(actions) == [MediaAnswer("call-1", answer), Acked("call-1")]


def test_an_offer_in_an_unreliable_provisional_is_refused() -> None:
    """RFC 3261 13.2.1: without 100rel an offer can only go in the 2xx; the application must
    not put one in a 183 (the server ends such a step at once instead, as no key came)."""
    uas = make_uas()
    uas.receive(request("INVITE"), KAMAILIO, 0.0)
    with pytest.raises(UasError, match="100rel"):
        uas.provisional("call-1", 183, SDP)
    assert statuses(uas.provisional("call-1", 180)) == [180]  # no SDP: fine


def test_an_early_offer_caller_sends_no_answer_event() -> None:
    uas = make_uas()
    reliable_call(uas)
    actions = uas.receive(request("PRACK", branch="z9hG4bK-prack1", to_tag="tok1", cseq=2, extra="RAck: 1 1 INVITE",
                                  body=SDP, record_route=False), KAMAILIO, 0.1)
    assert statuses(actions) == [200] and not events(actions)


def test_a_prack_without_the_answer_is_an_empty_answer_the_call_does_not_wait_for() -> None:
    """RFC 3262 5: the PRACK must carry the answer to the offer in the reliable 183; one
    without SDP comes as MediaAnswer(b"") (the server refuses it) instead of a call that
    waits for media forever."""
    uas = make_uas()
    uas.receive(request("INVITE", extra="Require: 100rel"), KAMAILIO, 0.0)
    uas.provisional("call-1", 183, SDP)
    actions = uas.receive(request("PRACK", branch="z9hG4bK-p", to_tag="tok1", cseq=2, extra="RAck: 1 1 INVITE",
                                  record_route=False), KAMAILIO, 0.1)
    assert statuses(actions) == [200] and events(actions) == [MediaAnswer("call-1", b"")]
