"""SIP over TCP and TLS: `voffice up --transport udp,tcp,tls` (StackConfig.transports) makes
Kamailio listen on TCP too (the SIP port) and on TLS (the TLS port, a certificate `voffice up`
makes for the host). A trunk's replies and in-dialog requests go over its connection;
operators and media servers are still reached over UDP (double Record-Route). TCP callers
are sipp; TLS callers are tests/stream_caller.py (Debian's sipp has no TLS)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from routing.stack.local import sip_options, status
from routing.stack.ports import free_udp_port

from .callpath import SIPP_DIR, STACK_TESTS, CallStack, StackFactory, caller, dtmf_caller, operator, short_ring_config
from .stream_caller import StreamCaller

pytestmark = STACK_TESTS
NUMBER = "+74951234567"
TCP = ["-t", "t1"]  # sipp: SIP over one TCP connection


@pytest.fixture
def tcp_stack(tmp_path: Path) -> Iterator[StackFactory]:
    factory = StackFactory(tmp_path, transports=("udp", "tcp", "tls"), tls_port=free_udp_port())  # all three at once
    yield factory
    factory.stop()


def test_options_over_tcp_and_status_shows_it(tcp_stack: Any, seed_doc: dict[str, Any]) -> None:
    stack = tcp_stack("2026-11-25T10:00:00+03:00", short_ring_config(seed_doc))
    assert sip_options("127.0.0.1", stack.sip_port, transport="tcp") == 200
    assert sip_options("127.0.0.1", stack.sip_port) == 200
    rows = {name: (ok, detail) for name, ok, detail in status(stack.config)}
    assert rows["kamailio/tcp"][0] and "OPTIONS -> 200" in rows["kamailio/tcp"][1]
    assert rows["node-store"][0] and "1 accounts" in rows["node-store"][1] and "(as Redis)" in rows["node-store"][1]


def test_weekday_extension_over_tcp_reaches_that_operator(tmp_path: Path, tcp_stack: Any, seed_doc: dict[str, Any]) -> None:
    """The seed's weekday case from a TCP trunk: the extension prompt as early media, 102 keyed
    (RFC 2833), petrov rings (over UDP) and answers; BYE from the caller over its connection."""
    ports = {"petrov": free_udp_port()}
    stack = tcp_stack("2026-11-25T10:00:00+03:00", short_ring_config(seed_doc, ports))
    petrov = operator(tmp_path, "petrov", "answer", ports["petrov"]).start()
    call = dtmf_caller(tmp_path, stack, NUMBER, "+79031112233", "102", extra=TCP).start()
    assert call.wait(90) == 0
    assert petrov.wait() == 0
    assert "TCP message sent" in call.messages() and "UDP message" not in call.messages()
    [record] = [e for e in stack.events() if e["type"] == "call"]
    assert (record["status"], record["answered_by"], record["rule"]) == ("answered", "petrov", "r2")
    assert json.loads(record["steps"])[0]["event"] == "digits:102"


def test_lunch_over_tcp_the_secretary_answers(tmp_path: Path, tcp_stack: Any, seed_doc: dict[str, Any]) -> None:
    """The seed's lunch case from a TCP trunk: the secretary through the (UDP) operator gateway."""
    stack = tcp_stack("2026-11-25T13:30:00+03:00", short_ring_config(seed_doc))
    gateway = operator(tmp_path, "gateway", "answer", stack.gateway_port).start()
    try:
        call = caller(tmp_path, stack, NUMBER, "+79031112233", extra=TCP).start()
        assert call.wait(60) == 0
        assert gateway.wait(30) == 0
    finally:
        gateway.stop()
    assert "TCP message sent" in call.messages()
    [record] = [e for e in stack.events() if e["type"] == "call"]
    assert (record["status"], record["answered_by"], record["rule"]) == ("answered", "smirnova", "r1")


def test_an_invite_too_large_for_udp_reaches_the_operator_over_tcp(tmp_path: Path, tcp_stack: Any, seed_doc: dict[str, Any]) -> None:
    """RFC 3261 18.1.1: a request larger than 1300 bytes (path MTU unknown) MUST go over a
    congestion-controlled transport. The caller's INVITE (UDP) carries 1.2 kB of headers: the
    secretary's branch leaves over TCP (the gateway listens on TCP only); the call connects."""
    stack = tcp_stack("2026-11-25T13:30:00+03:00", short_ring_config(seed_doc))
    gateway = operator(tmp_path, "gateway", "answer", stack.gateway_port, extra=tuple(TCP)).start()
    text = (SIPP_DIR / "caller.xml").read_text()
    padded = tmp_path / "caller-large.xml"
    padded.write_text(text.replace("      User-Agent: voffice-test-caller\n",
                                   "      User-Agent: voffice-test-caller\n" + "".join(f"      X-Trunk-Info-{i}: {'x' * 100}\n" for i in range(12)), 1))
    try:
        call = caller(tmp_path, stack, NUMBER, "+79031112233", scenario=str(padded)).start()
        assert call.wait(60) == 0
        assert gateway.wait(30) == 0
    finally:
        gateway.stop()
    assert "UDP message sent" in call.messages() and "TCP message" not in call.messages()
    invite = gateway.messages()
    assert "TCP message received" in invite and "X-Trunk-Info-11" in invite
    [record] = [e for e in stack.events() if e["type"] == "call"]
    assert (record["status"], record["answered_by"]) == ("answered", "smirnova")


# --- TLS --------------------------------------------------------------------------------


@pytest.fixture
def tls_stack(tmp_path: Path) -> Iterator[StackFactory]:
    factory = StackFactory(tmp_path, transports=("udp", "tls"), tls_port=free_udp_port())
    yield factory
    factory.stop()


def tls_caller(stack: CallStack) -> StreamCaller:
    assert stack.config is not None
    # the certificate `voffice up` made for the host: verified, 127.0.0.1 in its subjectAltName
    return StreamCaller("127.0.0.1", stack.config.sip_tls_port, "tls", cafile=stack.config.run_dir / "tls" / "cert.pem")


def test_options_over_tls_and_status_shows_it(tls_stack: Any, seed_doc: dict[str, Any]) -> None:
    stack = tls_stack("2026-11-25T10:00:00+03:00", short_ring_config(seed_doc))
    assert stack.config is not None
    assert sip_options("127.0.0.1", stack.config.sip_tls_port, transport="tls") == 200
    assert sip_options("127.0.0.1", stack.sip_port, transport="tcp") is None  # TLS only, no plain TCP
    rows = {name: (ok, detail) for name, ok, detail in status(stack.config)}
    assert rows["kamailio/tls"][0] and "OPTIONS -> 200" in rows["kamailio/tls"][1]


def test_lunch_over_tls_the_secretary_answers(tmp_path: Path, tls_stack: Any, seed_doc: dict[str, Any]) -> None:
    stack = tls_stack("2026-11-25T13:30:00+03:00", short_ring_config(seed_doc))
    gateway = operator(tmp_path, "gateway", "answer", stack.gateway_port).start()
    call = tls_caller(stack)
    try:
        call.invite(NUMBER)
        answer, _ = call.early_dialog_then_answer()
        assert answer.status == 200, call.seen
        assert call.talk_and_hang_up(answer) == 200, call.seen
        assert gateway.wait(30) == 0
    finally:
        call.close()
        gateway.stop()
    [record] = [e for e in stack.events() if e["type"] == "call"]
    assert (record["status"], record["answered_by"], record["rule"]) == ("answered", "smirnova", "r1")
    assert record["sip_call_id"] == call.call_id


def test_weekday_extension_over_tls_keyed_as_info_reaches_that_operator(tmp_path: Path, tls_stack: Any,
                                                                       seed_doc: dict[str, Any]) -> None:
    """The weekday case from a TLS trunk: the extension prompt's 183 over TLS, 102 keyed as SIP
    INFO in its early dialog (relayed to the media server over UDP), petrov rings and answers."""
    ports = {"petrov": free_udp_port()}
    stack = tls_stack("2026-11-25T10:00:00+03:00", short_ring_config(seed_doc, ports))
    petrov = operator(tmp_path, "petrov", "answer", ports["petrov"]).start()
    call = tls_caller(stack)
    try:
        call.invite(NUMBER)
        answer, infos = call.early_dialog_then_answer("102")
        assert infos == [200, 200, 200] and answer.status == 200, call.seen
        assert call.talk_and_hang_up(answer) == 200, call.seen
        assert petrov.wait(30) == 0
    finally:
        call.close()
        petrov.stop()
    [record] = [e for e in stack.events() if e["type"] == "call"]
    assert (record["status"], record["answered_by"], record["rule"]) == ("answered", "petrov", "r2")
    assert json.loads(record["steps"])[0]["event"] == "digits:102"
