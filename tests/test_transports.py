"""SIP over TCP: `voffice up --transport udp,tcp` (StackConfig.transports) makes Kamailio listen
on TCP too, on the SIP port. A trunk that sends SIP over TCP gets its replies on its
connection; operators and media servers are still reached over UDP (double Record-Route)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from routing.stack.local import sip_options, status
from routing.stack.ports import free_udp_port

from .callpath import STACK_TESTS, CallStack, caller, dtmf_caller, operator, short_ring_config

pytestmark = STACK_TESTS
NUMBER = "+74951234567"
TCP = ["-t", "t1"]  # sipp: SIP over one TCP connection


@pytest.fixture
def tcp_stack(tmp_path: Path, seed_doc: dict[str, Any]) -> Iterator[Any]:
    stacks: list[CallStack] = []

    def make(now: str, doc: dict[str, Any]) -> CallStack:
        stack = CallStack(tmp_path / f"stack{len(stacks)}", now, doc, overrides={"transports": ("udp", "tcp")})
        stack.workdir.mkdir(parents=True, exist_ok=True)
        stacks.append(stack)
        stack.start()
        return stack

    yield make
    for stack in stacks:
        stack.stop()


def test_options_over_tcp_and_status_shows_it(tcp_stack: Any, seed_doc: dict[str, Any]) -> None:
    stack = tcp_stack("2026-11-25T10:00:00+03:00", short_ring_config(seed_doc))
    assert sip_options("127.0.0.1", stack.sip_port, transport="tcp") == 200
    assert sip_options("127.0.0.1", stack.sip_port) == 200
    rows = {name: (ok, detail) for name, ok, detail in status(stack.config)}
    assert rows["kamailio/tcp"][0] and "OPTIONS -> 200" in rows["kamailio/tcp"][1]


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
