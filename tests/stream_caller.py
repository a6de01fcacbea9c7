"""A SIP caller over TCP or TLS for the transport tests: what sipp cannot send here (Debian's
sipp 3.6.1 has no TLS). Written with the media server's own sans-IO parser; it places one call,
ACKs the answer, keys DTMF as SIP INFO in the early dialog and hangs up. No RTP: its SDP
points at a UDP socket it holds but never reads."""

from __future__ import annotations

import os
import re
import socket
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path

from voffice_media.sipmsg import NameAddr, Request, Response, parse

_LENGTH = re.compile(rb"\r\n(?:Content-Length|l)[ \t]*:[ \t]*(\d+)", re.I)


@dataclass
class Dialog:
    """What in-dialog requests need from a response that made a dialog (RFC 3261 12.1.2)."""

    to: str
    target: str
    route: list[str]


@dataclass
class StreamCaller:
    host: str
    port: int
    transport: str  # "tcp" or "tls"
    cafile: Path | None = None  # TLS: the certificate to trust (verified, host name included)
    caller: str = "+79031112233"
    seen: list[str] = field(default_factory=list)  # first lines, "-> " sent and "<- " received

    def __post_init__(self) -> None:
        raw = socket.create_connection((self.host, self.port), timeout=10)
        if self.transport == "tls":
            context = ssl.create_default_context(cafile=str(self.cafile) if self.cafile else None)
            self.sock: socket.socket = context.wrap_socket(raw, server_hostname=self.host)
        else:
            self.sock = raw
        self.local = self.sock.getsockname()
        self.buffer = b""
        self.call_id = f"{os.urandom(6).hex()}@{self.host}"
        self.tag = os.urandom(4).hex()
        self.cseq = 1
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind((self.host, 0))

    def close(self) -> None:
        self.sock.close()
        self.rtp.close()

    # --- the wire ----------------------------------------------------------------------

    def send(self, method: str, uri: str, to: str, extra: list[str], body: bytes = b"", content_type: str = "") -> None:
        via = f"SIP/2.0/{self.transport.upper()} {self.local[0]}:{self.local[1]};branch=z9hG4bK{os.urandom(6).hex()};rport"
        lines = [f"{method} {uri} SIP/2.0", f"Via: {via}", "Max-Forwards: 70",
                 f'From: "caller" <sip:{self.caller}@{self.host}>;tag={self.tag}', f"To: {to}",
                 f"Call-ID: {self.call_id}", f"CSeq: {1 if method == 'ACK' else self.cseq} {method}",
                 f"Contact: <sip:{self.caller}@{self.local[0]}:{self.local[1]};transport={self.transport}>", *extra]
        if content_type:
            lines.append(f"Content-Type: {content_type}")
        lines.append(f"Content-Length: {len(body)}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        self.seen.append(f"-> {method} {uri}")

    def receive(self, timeout: float = 30.0) -> Request | Response:
        deadline = time.monotonic() + timeout
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end >= 0:
                match = _LENGTH.search(self.buffer[: end + 2])
                total = end + 4 + (int(match[1]) if match else 0)
                if len(self.buffer) >= total:
                    data, self.buffer = self.buffer[:total], self.buffer[total:]
                    message = parse(data)
                    first = f"SIP/2.0 {message.status}" if isinstance(message, Response) else f"{message.method} {message.uri}"
                    self.seen.append(f"<- {first}")
                    return message
            self.sock.settimeout(max(0.1, deadline - time.monotonic()))
            chunk = self.sock.recv(65535)
            if not chunk:
                raise ConnectionError("the proxy closed the connection")
            self.buffer += chunk

    def response(self, method: str, timeout: float = 30.0) -> Response:
        """The next response to our `method` (others, and requests, are noted and skipped)."""
        while True:
            message = self.receive(timeout)
            if isinstance(message, Response) and (message.headers.get("CSeq") or "").endswith(f" {method}"):
                return message

    # --- a call ------------------------------------------------------------------------

    def invite(self, number: str) -> str:
        uri = f"sip:{number}@{self.host}:{self.port};transport={self.transport}"
        sdp = (f"v=0\r\no=caller 1 1 IN IP4 {self.host}\r\ns=-\r\nc=IN IP4 {self.host}\r\nt=0 0\r\n"
               f"m=audio {self.rtp.getsockname()[1]} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n"
               "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\n").encode()
        self.send("INVITE", uri, f"<sip:{number}@{self.host}>", [], sdp, "application/sdp")
        return uri

    @staticmethod
    def dialog(response: Response) -> Dialog:
        contact = NameAddr.parse(response.headers.values("Contact")[0]).uri
        return Dialog(response.headers.get("To") or "", contact, list(reversed(response.headers.values("Record-Route"))))

    def in_dialog(self, method: str, dialog: Dialog, extra: list[str] | None = None, body: bytes = b"",
                  content_type: str = "") -> None:
        if method != "ACK":
            self.cseq += 1
        routes = [f"Route: {r}" for r in dialog.route]
        self.send(method, dialog.target, dialog.to, routes + (extra or []), body, content_type)

    def early_dialog_then_answer(self, keys: str = "") -> tuple[Response, list[int]]:
        """Wait for the call's final response; at the first 183 (a prompt) key `keys` as INFO
        in its early dialog. The final response and the INFOs' statuses."""
        info_status: list[int] = []
        while True:
            message = self.response("INVITE", timeout=60)
            if message.status == 183 and keys and not info_status:
                early = self.dialog(message)
                for key in keys:
                    self.in_dialog("INFO", early, body=f"Signal={key}\r\nDuration=160\r\n".encode(),
                                   content_type="application/dtmf-relay")
                    info_status.append(self.response("INFO").status)
            if message.status >= 200:
                return message, info_status

    def talk_and_hang_up(self, answer: Response, seconds: float = 0.5) -> int:
        dialog = self.dialog(answer)
        self.in_dialog("ACK", dialog)
        time.sleep(seconds)
        self.in_dialog("BYE", dialog)
        return self.response("BYE").status
