"""A caller through Kamailio for tests that need real media in Python (a fax machine): the
media-server tests' Peer, dialling a number and following the dialog's route set."""

from __future__ import annotations

import uuid

from voffice_media.sdp import negotiate, parse_offer
from voffice_media.sipmsg import Headers, NameAddr, Request, Response

from .media.test_server import Peer

Addr = tuple[str, int]


class StackCaller(Peer):
    def __init__(self, kamailio: Addr, caller: str):
        super().__init__(kamailio)
        self.caller = caller
        self.number = ""
        self.route: list[str] = []
        self.target = ""
        self.held: list[Request | Response] = []

    def _headers(self, method: str, cseq: int, branch: str, to: str | None = None) -> list[tuple[str, str]]:
        host, port = self.local
        return [
            ("Via", f"SIP/2.0/UDP {host}:{port};branch={branch};rport"),
            ("Max-Forwards", "70"),
            ("From", f"<sip:{self.caller}@{host}:{port}>;tag={self.tag}"),
            ("To", to or f"<sip:{self.number}@{self.server[0]}:{self.server[1]}>"),
            ("Call-ID", self.call_id),
            ("CSeq", f"{cseq} {method}"),
            ("Contact", f"<sip:caller@{host}:{port}>"),
        ]

    def dial(self, number: str) -> None:
        self.number = number
        host = self.local[0]
        sdp = (f"v=0\r\no=peer 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
               f"m=audio {self.sdp_port} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n"
               "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\n").encode()
        fields = [*self._headers("INVITE", 1, self.invite_branch), ("Content-Type", "application/sdp")]
        self.send(Request("INVITE", f"sip:{number}@{self.server[0]}:{self.server[1]}", Headers.of(fields), sdp))

    def early_media(self, timeout: float) -> Response:
        """The first 183 with SDP: where the prompt comes from and the keys go."""
        while True:
            message = self.receive(timeout)
            assert message is not None, "no 183 with SDP"
            if isinstance(message, Response) and message.status == 183 and message.body:
                self.remote_rtp = negotiate(parse_offer(message.body)).remote
                return message
            assert not (isinstance(message, Response) and message.status >= 200), message.status

    def poll_sip(self) -> list[Request | Response]:
        """As the Peer's, but final responses are kept for `final` (a 200 may come mid-media)."""
        others = super().poll_sip()
        self.held += [m for m in others if isinstance(m, Response) and m.status >= 200]
        return others

    def finals(self) -> list[Response]:
        return [m for m in self.held if isinstance(m, Response)]

    def final(self, timeout: float = 15.0) -> Response:
        for message in self.held:
            if isinstance(message, Response) and "INVITE" in (message.headers.get("CSeq") or ""):
                self.held.remove(message)
                if message.body:
                    self.remote_rtp = negotiate(parse_offer(message.body)).remote
                self.to = message.headers.get("To")
                return self._dialog(message)
        return self._dialog(super().final(timeout))

    def _dialog(self, response: Response) -> Response:
        """The route set (Record-Route, reversed for the caller: RFC 3261 12.1.2) and the target."""
        if response.status < 300:
            self.route = list(reversed(response.headers.values("Record-Route")))
            contacts = response.headers.values("Contact")
            self.target = NameAddr.parse(contacts[0]).uri if contacts else ""
        return response

    def _in_dialog(self, method: str, cseq: int, branch: str) -> Request:
        fields = [*self._headers(method, cseq, branch, self.to), *(("Route", r) for r in self.route)]
        return Request(method, self.target, Headers.of(fields))

    def ack(self, response: Response) -> None:
        if response.status >= 300:
            super().ack(response)
            return
        self.send(self._in_dialog("ACK", 1, "z9hG4bK" + uuid.uuid4().hex))

    def bye(self, timeout: float = 5.0) -> Response:
        self.send(self._in_dialog("BYE", 2, "z9hG4bK" + uuid.uuid4().hex))
        while True:
            message = self.receive(timeout)
            assert message is not None, "BYE not answered"
            if isinstance(message, Response) and "BYE" in (message.headers.get("CSeq") or ""):
                return message
