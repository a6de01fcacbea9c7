"""A gateway that enforces RFC 3261 8.2.2.2 (merged requests: a second INVITE with the From tag,
Call-ID and CSeq of one in progress gets 482) takes every branch of a ringing plan: each
operator branch leaves with a Call-ID of its own (routing/proxy/branch_call_id.py)."""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from pathlib import Path
from typing import Any

from voffice_media.sipmsg import Response, SipUri, parse
from voffice_media.uas import UAS, IncomingCall, Send

from .callpath import STACK_TESTS, CallStack, caller, short_ring_config

pytestmark = STACK_TESTS
NUMBER = "+74951234567"
SDP = b"v=0\r\no=gw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n"


class StrictGateway:
    """The operator gateway as a real UAS (the media server's uas.py, which answers 482 to a
    merged INVITE), each operator answering as `behaviour` says: busy, answer or ring."""

    def __init__(self, port: int, behaviour: dict[str, str]):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.uas = UAS(("127.0.0.1", port), {"127.0.0.1"})
        self.behaviour = behaviour
        self.invites: list[tuple[str, str]] = []  # (operator, Call-ID) of every INVITE the application got
        self.statuses: list[int] = []  # every response sent
        self.due: list[tuple[float, str, str]] = []  # (when, Call-ID, what)
        self.stopping = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stopping:
            ready, _, _ = select.select([self.sock], [], [], 0.02)
            now = time.monotonic()
            if ready:
                data, addr = self.sock.recvfrom(65535)
                self.apply(self.uas.receive(data, addr, now))
            for item in [d for d in self.due if d[0] <= now]:
                self.due.remove(item)
                _, call_id, what = item
                self.apply(self.uas.reject(call_id, 486, now=now) if what == "busy" else self.uas.answer(call_id, 200, SDP, now=now))
            self.apply(self.uas.tick(now))

    def apply(self, actions: list[Any]) -> None:
        for action in actions:
            if isinstance(action, Send):
                self.sock.sendto(action.data, action.addr)
                message = parse(action.data)
                if isinstance(message, Response):
                    self.statuses.append(message.status)
            elif isinstance(action, IncomingCall):
                who = SipUri.parse(action.request.uri).user or ""
                self.invites.append((who, action.call_id))
                what = self.behaviour.get(who, "ring")
                if what in ("busy", "answer"):
                    self.due.append((time.monotonic() + 0.3, action.call_id, what))

    def close(self) -> None:
        self.stopping = True
        self.thread.join(5)
        self.sock.close()


def test_a_strict_gateway_takes_every_branch_of_the_weekday_group(tmp_path: Path, seed_doc: dict[str, Any]) -> None:
    """The weekday group through one gateway: ivanov and petrov ring at once (one wave), ivanov
    is busy and petrov answers. With the caller's Call-ID on both branches the gateway answered
    petrov's INVITE 482 and the call never reached him."""
    stack = CallStack(tmp_path, "2026-11-25T10:00:00+03:00", short_ring_config(seed_doc), with_media=True)
    with stack:
        gateway = StrictGateway(stack.gateway_port, {"+79161230001": "busy", "+79161230002": "answer"})
        try:
            call = caller(tmp_path, stack, NUMBER, "+79031112233").start()  # no key: the group after the prompt
            assert call.wait(90) == 0
        finally:
            gateway.close()
        assert 482 not in gateway.statuses
        [(first, ivanov_call_id), (second, petrov_call_id)] = gateway.invites[:2]
        assert {first, second} == {"+79161230001", "+79161230002"}
        assert ivanov_call_id != petrov_call_id
        [caller_call_id] = {line.split(":", 1)[1].strip() for line in call.messages().splitlines() if line.startswith("Call-ID:")}
        assert {ivanov_call_id.rsplit(".vo", 1)[0], petrov_call_id.rsplit(".vo", 1)[0]} == {caller_call_id}
        [record] = [e for e in stack.events() if e["type"] == "call"]
        assert (record["status"], record["answered_by"], record["sip_call_id"]) == ("answered", "petrov", caller_call_id)
        assert [s["event"] for s in json.loads(record["steps"])] == ["timeout", None]


def test_serial_waves_are_new_calls_to_the_gateway(tmp_path: Path, seed_doc: dict[str, Any]) -> None:
    """Re-attempts and later waves follow milliseconds after the last final reply, while the
    gateway still remembers that INVITE: each has its own Call-ID, none is refused."""
    doc = short_ring_config(seed_doc)
    stack = CallStack(tmp_path, "2026-11-25T10:00:00+03:00", doc, with_media=True)
    with stack:
        gateway = StrictGateway(stack.gateway_port, {"+79161230001": "busy", "+79161230002": "busy", "+79161230003": "answer"})
        try:
            call = caller(tmp_path, stack, NUMBER, "+79031112233").start()
            assert call.wait(90) == 0
        finally:
            gateway.close()
        assert 482 not in gateway.statuses
        call_ids = [call_id for _, call_id in gateway.invites]
        assert len(call_ids) == len(set(call_ids)) >= 5  # two waves of two, then the head
        [record] = [e for e in stack.events() if e["type"] == "call"]
        assert (record["status"], record["answered_by"]) == ("answered", "sidorov")
