"""SIP messages (RFC 3261 section 7): parse one UDP datagram, build responses, serialize.

Sans-IO: bytes in, immutable values out. Public API:

    parse(data: bytes) -> Request | Response            raises SipParseError
    Request(method, uri, headers, body).serialize() -> bytes
    Response(status, reason, headers, body).serialize() -> bytes
    Headers.of(pairs) / .get(name) / .get_all(name) / .values(name) / .with_field / .without
    Via.parse(value) / .serialize() / .branch / .received_from(source)
    NameAddr.parse(value) / .serialize() / .tag
    SipUri.parse(text) / .target() -> (host, port)
    CSeq.parse(value) / .serialize()
    make_response(request, status, reason, *, to_tag, headers, body, content_type) -> Response
    with_received(request, source) -> Request            (RFC 3261 18.2.1 / RFC 3581)
    response_address(via, source) -> (host, port)        (RFC 3261 18.2.2 / RFC 3581)

What `parse` decides (framing) and what it leaves to the UAS (meaning):
- framing: start line (single spaces, `SIP/2.0`, a `scheme:` Request-URI, status 100-699),
  header lines (`token : value`, folded lines unfolded, CRLF or bare LF, leading CRLFs
  ignored), Content-Length (one, a non-negative integer; the body is cut to it, a shorter body
  is an error; absent: the rest of the datagram). Content-Length is framing, not content:
  `Headers` never holds it and `serialize()` always writes it from the body.
- meaning (left to `uas`): which headers are required or single, whether a Via, a From or
  a CSeq value parses, method/CSeq agreement. The value helpers here raise SipParseError.

When the start line, Content-Length or body is wrong but the header lines were readable,
`SipParseError.headers` carries them, so a UAS can still answer 400 (or `status`, 505 for an
unknown SIP version). Compact header names (v f t i m l c k s e ...) become full names.
Header text is UTF-8; other bytes survive a parse/serialize round trip (surrogateescape).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = [
    "CSeq",
    "Headers",
    "NameAddr",
    "Request",
    "Response",
    "SipParseError",
    "SipUri",
    "Via",
    "make_response",
    "parse",
    "response_address",
    "with_received",
]

# RFC 3261 25.1 token characters.
TOKEN = r"[A-Za-z0-9.!%*_+`'~-]+"
_TOKEN_RE = re.compile(TOKEN)
_CHARSET = "utf-8"
_ERRORS = "surrogateescape"

COMPACT_FORMS = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}
_KNOWN_NAMES = [
    *COMPACT_FORMS.values(),
    "Accept",
    "Allow",
    "Authorization",
    "CSeq",
    "Date",
    "Expires",
    "Max-Forwards",
    "Proxy-Require",
    "Record-Route",
    "Require",
    "Route",
    "Server",
    "Timestamp",
    "Unsupported",
    "User-Agent",
    "Warning",
]
_CANONICAL = {name.lower(): name for name in _KNOWN_NAMES} | COMPACT_FORMS


class SipParseError(ValueError):
    """A malformed message or header value; `reason` is a short phrase for a 400's reason.

    `status` is the response a UAS should give (400, or 505 for an unknown SIP version);
    `headers` are the message's header fields when they could be read, else None.
    """

    def __init__(self, reason: str, *, status: int = 400, headers: Headers | None = None, method: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.headers = headers
        self.method = method


def canonical_name(name: str) -> str:
    """Full, conventionally spelled header name for `name` (compact forms expanded)."""
    return _CANONICAL.get(name.lower(), name)


def split_values(value: str) -> list[str]:
    """Split a header value at commas outside quoted strings and <...>; drop empty elements."""
    parts: list[str] = []
    start = 0
    in_quotes = False
    in_angle = False
    i = 0
    while i < len(value):
        ch = value[i]
        if in_quotes:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_quotes = False
        elif ch == '"':
            in_quotes = True
        elif ch == "<":
            in_angle = True
        elif ch == ">":
            in_angle = False
        elif ch == "," and not in_angle:
            parts.append(value[start:i].strip())
            start = i + 1
        i += 1
    parts.append(value[start:].strip())
    return [p for p in parts if p]


@dataclass(frozen=True, slots=True)
class Headers:
    """Ordered header fields `(name, value)`; names compared case-insensitively."""

    fields: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, pairs: Iterable[tuple[str, str]]) -> Headers:
        return cls(tuple((canonical_name(n), v) for n, v in pairs))

    def get(self, name: str) -> str | None:
        """Value of the first field called `name`."""
        key = canonical_name(name).lower()
        for n, v in self.fields:
            if n.lower() == key:
                return v
        return None

    def get_all(self, name: str) -> list[str]:
        """Values of every field line called `name`, in order."""
        key = canonical_name(name).lower()
        return [v for n, v in self.fields if n.lower() == key]

    def values(self, name: str) -> list[str]:
        """Comma-separated elements of every `name` line, in order (Via, Route, Contact...)."""
        return [part for line in self.get_all(name) for part in split_values(line)]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.fields)

    def with_field(self, name: str, value: str) -> Headers:
        return Headers((*self.fields, (canonical_name(name), value)))

    def without(self, name: str) -> Headers:
        key = canonical_name(name).lower()
        return Headers(tuple((n, v) for n, v in self.fields if n.lower() != key))

    def serialize(self) -> str:
        return "".join(f"{n}: {v}\r\n" for n, v in self.fields)


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    uri: str
    headers: Headers
    body: bytes = b""

    def serialize(self) -> bytes:
        head = f"{self.method} {self.uri} SIP/2.0\r\n{self.headers.serialize()}"
        return _finish(head, self.body)


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    reason: str
    headers: Headers
    body: bytes = b""

    def serialize(self) -> bytes:
        head = f"SIP/2.0 {self.status} {self.reason}\r\n{self.headers.serialize()}"
        return _finish(head, self.body)


def _finish(head: str, body: bytes) -> bytes:
    return (head + f"Content-Length: {len(body)}\r\n\r\n").encode(_CHARSET, _ERRORS) + body


# --------------------------------------------------------------------------- parsing

_REQUEST_LINE = re.compile(rf"({TOKEN}) (\S+) SIP/(\d+\.\d+)")
_STATUS_LINE = re.compile(r"SIP/(\d+\.\d+) (\d{3}) (.*)")
_URI_START = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S+")
_HEADER_LINE = re.compile(rf"({TOKEN})[ \t]*:[ \t]*(.*)")
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_LINE_END = re.compile(r"\r?\n")
_CONTENT_LENGTH = re.compile(r"[0-9]{1,9}")


def parse(data: bytes) -> Request | Response:
    """Parse one datagram into a Request or a Response, or raise SipParseError."""
    data = data.lstrip(b"\r\n")
    if not data:
        raise SipParseError("empty message")
    end = _HEAD_END.search(data)
    if end is None:
        head_bytes, body = data.rstrip(b"\r\n"), b""
    else:
        head_bytes, body = data[: end.start()], data[end.end() :]
    head = head_bytes.decode(_CHARSET, _ERRORS)
    lines = _LINE_END.split(head)
    start_line = lines[0]
    first_token = start_line.split(" ", 1)[0]
    method = None if first_token.startswith("SIP/") else first_token
    headers = _parse_header_lines(lines[1:], method)
    body = _frame_body(headers, body, method)
    headers = headers.without("Content-Length")

    if method is None:
        m = _STATUS_LINE.fullmatch(start_line)
        if m is None:
            raise SipParseError("bad status line", headers=headers)
        if m.group(1) != "2.0":
            raise SipParseError("unsupported SIP version", headers=headers)
        status = int(m.group(2))
        if not 100 <= status <= 699:
            raise SipParseError("bad status code", headers=headers)
        return Response(status, m.group(3), headers, body)

    m = _REQUEST_LINE.fullmatch(start_line)
    if m is None:
        raise SipParseError("bad request line", headers=headers, method=method)
    if m.group(3) != "2.0":
        raise SipParseError("Version Not Supported", status=505, headers=headers, method=method)
    if _URI_START.fullmatch(m.group(2)) is None:
        raise SipParseError("bad Request-URI", headers=headers, method=method)
    return Request(m.group(1), m.group(2), headers, body)


def _parse_header_lines(lines: list[str], method: str | None) -> Headers:
    unfolded: list[str] = []
    for line in lines:
        if line[:1] in (" ", "\t"):
            if not unfolded:
                raise SipParseError("folded line before any header", method=method)
            unfolded[-1] = unfolded[-1].rstrip(" \t") + " " + line.strip(" \t")
        else:
            unfolded.append(line)
    fields: list[tuple[str, str]] = []
    for line in unfolded:
        if "\r" in line:
            raise SipParseError("bare CR in header", method=method)
        m = _HEADER_LINE.fullmatch(line)
        if m is None:
            raise SipParseError("bad header line", method=method)
        fields.append((canonical_name(m.group(1)), m.group(2).strip(" \t")))
    return Headers(tuple(fields))


def _frame_body(headers: Headers, body: bytes, method: str | None) -> bytes:
    lengths = headers.get_all("Content-Length")
    if not lengths:
        return body
    if len(lengths) > 1:
        raise SipParseError("multiple Content-Length", headers=headers, method=method)
    if _CONTENT_LENGTH.fullmatch(lengths[0]) is None:
        raise SipParseError("bad Content-Length", headers=headers, method=method)
    length = int(lengths[0])
    if len(body) < length:
        raise SipParseError("body shorter than Content-Length", headers=headers, method=method)
    return body[:length]


# ----------------------------------------------------------------- header value helpers

Params = tuple[tuple[str, str | None], ...]

_LWS = " \t"
_PARAM_VALUE = re.compile(r'(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.!%*_+`\'~:/-]+|"(?:[^"\\]|\\.)*")', re.S)


def _skip_lws(text: str, i: int) -> int:
    while i < len(text) and text[i] in _LWS:
        i += 1
    return i


def parse_params(text: str) -> Params:
    """`;name[=value]` pairs with optional LWS (values: token, host or quoted string)."""
    params: list[tuple[str, str | None]] = []
    i = _skip_lws(text, 0)
    while i < len(text):
        if text[i] != ";":
            raise SipParseError("bad parameter list")
        i = _skip_lws(text, i + 1)
        name = _TOKEN_RE.match(text, i)
        if name is None:
            raise SipParseError("empty parameter")
        i = _skip_lws(text, name.end())
        value: str | None = None
        if i < len(text) and text[i] == "=":
            i = _skip_lws(text, i + 1)
            v = _PARAM_VALUE.match(text, i)
            if v is None:
                raise SipParseError("bad parameter value")
            value = v.group(0)
            i = _skip_lws(text, v.end())
        params.append((name.group(0), value))
    return tuple(params)


def param(params: Params, name: str) -> str | None:
    """Value of parameter `name` ("" for a parameter without value, None when absent)."""
    key = name.lower()
    for n, v in params:
        if n.lower() == key:
            return "" if v is None else v
    return None


def serialize_params(params: Params) -> str:
    return "".join(f";{n}" if v is None else f";{n}={v}" for n, v in params)


_VIA = re.compile(
    rf"[ \t]*SIP[ \t]*/[ \t]*2\.0[ \t]*/[ \t]*({TOKEN})[ \t]+"
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?:[ \t]*:[ \t]*([0-9]{1,5}))?(.*)",
    re.I | re.S,
)


@dataclass(frozen=True, slots=True)
class Via:
    """One Via value: `SIP/2.0/<transport> <host>[:<port>];params`."""

    transport: str
    host: str
    port: int | None = None
    params: Params = ()

    @classmethod
    def parse(cls, value: str) -> Via:
        m = _VIA.fullmatch(value)
        if m is None:
            raise SipParseError("bad Via")
        port = None if m.group(3) is None else int(m.group(3))
        if port is not None and not 0 < port < 65536:
            raise SipParseError("bad Via port")
        return cls(m.group(1).upper(), m.group(2), port, parse_params(m.group(4)))

    def serialize(self) -> str:
        port = "" if self.port is None else f":{self.port}"
        return f"SIP/2.0/{self.transport} {self.host}{port}{serialize_params(self.params)}"

    @property
    def branch(self) -> str | None:
        return param(self.params, "branch")

    @property
    def sent_by(self) -> str:
        return self.host.lower() if self.port is None else f"{self.host.lower()}:{self.port}"

    def received_from(self, source: tuple[str, int]) -> Via:
        """This Via as the receiving server transport stamps it (RFC 3261 18.2.1, RFC 3581):
        `received=` when the sent-by host is not the source IP (always with `rport`), and an
        empty `rport` filled with the source port."""
        ip, port = source
        host = self.host[1:-1] if self.host.startswith("[") else self.host
        wants_rport = param(self.params, "rport") == ""
        params = [
            (n, v) for n, v in self.params if n.lower() != "received" and not (wants_rport and n.lower() == "rport")
        ]
        if host != ip or wants_rport:
            params.append(("received", ip))
        if wants_rport:
            params.append(("rport", str(port)))
        return Via(self.transport, self.host, self.port, tuple(params))


def response_address(via: Via, source: tuple[str, int]) -> tuple[str, int]:
    """Where a UDP response goes (RFC 3261 18.2.2 with RFC 3581): the request's source IP,
    and its source port when the top Via asked for rport, else the sent-by port or 5060."""
    if param(via.params, "rport") is not None:
        return source
    return (source[0], via.port or 5060)


_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
# Display-name tokens and the LWS between them: the language of (?:TOKEN[ \t]*)*, as one
# character class. That nested form backtracks exponentially on a run of token characters
# that ends in anything else: 40 of them in a To header stopped the server for hours.
_DISPLAY_TOKENS = re.compile(r"[A-Za-z0-9.!%*_+`'~ \t-]*")


@dataclass(frozen=True, slots=True)
class NameAddr:
    """From/To/Contact/Route value: `[display] <uri>;params` or a bare `uri;params`."""

    uri: str
    display: str | None = None  # as written: a quoted string or LWS-separated tokens
    params: Params = ()
    angle: bool = True

    @classmethod
    def parse(cls, value: str) -> NameAddr:
        text = value.strip(_LWS)
        display: str | None = None
        rest: str
        if text.startswith('"'):
            q = _QUOTED.match(text)
            if q is None:
                raise SipParseError("unterminated quoted string")
            display = q.group(0)
            rest = text[q.end() :].lstrip(_LWS)
            if not rest.startswith("<"):
                raise SipParseError("display name without <uri>")
        elif "<" in text:
            lt = text.index("<")
            tokens = text[:lt].strip(_LWS)
            if _DISPLAY_TOKENS.fullmatch(tokens) is None:
                raise SipParseError("bad display name")
            display = tokens or None
            rest = text[lt:]
        else:
            semi = text.find(";")
            uri = (text if semi < 0 else text[:semi]).rstrip(_LWS)
            if not _is_uri(uri) or "?" in uri or "," in uri:
                raise SipParseError("bad addr-spec")
            return cls(uri, None, parse_params("" if semi < 0 else text[semi:]), angle=False)
        gt = rest.find(">")
        if gt < 0:
            raise SipParseError("missing >")
        uri = rest[1:gt]
        if not _is_uri(uri):
            raise SipParseError("bad URI in <>")
        return cls(uri, display, parse_params(rest[gt + 1 :]), angle=True)

    def serialize(self) -> str:
        if self.angle or self.display is not None:
            prefix = f"{self.display} " if self.display else ""
            core = f"{prefix}<{self.uri}>"
        else:
            core = self.uri
        return core + serialize_params(self.params)

    @property
    def tag(self) -> str | None:
        return param(self.params, "tag")


def _is_uri(text: str) -> bool:
    return _URI_START.fullmatch(text) is not None


_HOSTPORT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::([0-9]{1,5}))?")


@dataclass(frozen=True, slots=True)
class SipUri:
    """A sip:/sips: URI split far enough to route to it (RFC 3261 19.1)."""

    scheme: str
    user: str | None
    host: str
    port: int | None = None
    params: Params = ()
    headers: str = ""  # the text after "?", empty when none

    @classmethod
    def parse(cls, text: str) -> SipUri:
        scheme, colon, rest = text.partition(":")
        if not colon or scheme.lower() not in ("sip", "sips"):
            raise SipParseError("not a sip URI")
        rest, _, headers = rest.partition("?")
        userinfo, at, hostpart = rest.rpartition("@")
        user = userinfo if at else None
        semi = hostpart.find(";")
        hostport = hostpart if semi < 0 else hostpart[:semi]
        m = _HOSTPORT.fullmatch(hostport)
        if m is None:
            raise SipParseError("bad URI host")
        port = None if m.group(2) is None else int(m.group(2))
        if port is not None and not 0 < port < 65536:
            raise SipParseError("bad URI port")
        params = parse_params(hostpart[len(hostport) :])
        return cls(scheme.lower(), user, m.group(1), port, params, headers)

    def target(self) -> tuple[str, int]:
        """(host, port) to send a request for this URI to: maddr wins, default port 5060."""
        host = param(self.params, "maddr") or self.host
        if host.startswith("["):
            host = host[1:-1]
        return (host, self.port or 5060)


_CSEQ = re.compile(rf"[ \t]*([0-9]{{1,10}})[ \t]+({TOKEN})[ \t]*")


@dataclass(frozen=True, slots=True)
class CSeq:
    number: int
    method: str

    @classmethod
    def parse(cls, value: str) -> CSeq:
        m = _CSEQ.fullmatch(value)
        if m is None:
            raise SipParseError("bad CSeq")
        number = int(m.group(1))
        if number >= 2**31:
            raise SipParseError("CSeq too large")
        return cls(number, m.group(2))

    def serialize(self) -> str:
        return f"{self.number} {self.method}"


# ------------------------------------------------------------------- building responses

_SAFE_VALUE = re.compile(r"[^\r\n\x00]*")


def check_header(name: str, value: str) -> None:
    """Refuse a header that would break the message (CR, LF or NUL: header injection)."""
    if _TOKEN_RE.fullmatch(name) is None or _SAFE_VALUE.fullmatch(value) is None:
        raise ValueError(f"unsafe header {name!r}")


def with_received(request: Request, source: tuple[str, int]) -> Request:
    """The request with its top Via stamped by `Via.received_from(source)`.

    Raises SipParseError when there is no Via or the top one does not parse."""
    fields = list(request.headers.fields)
    for i, (name, value) in enumerate(fields):
        if name == "Via":
            parts = split_values(value)
            if not parts:
                raise SipParseError("empty Via")
            parts[0] = Via.parse(parts[0]).received_from(source).serialize()
            fields[i] = (name, ", ".join(parts))
            return Request(request.method, request.uri, Headers(tuple(fields)), request.body)
    raise SipParseError("no Via")


def make_response(
    request: Request,
    status: int,
    reason: str,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> Response:
    """A response to `request` per RFC 3261 8.2.6: Via(s), From, To, Call-ID and CSeq copied
    (whatever of them the request has), `to_tag` added to a To without a tag, Record-Route
    copied for dialog-creating responses (101-299 to INVITE), then `headers`, Content-Type."""
    if not 100 <= status <= 699:
        raise ValueError("status out of range")
    check_header("Reason", reason)
    out: list[tuple[str, str]] = [("Via", v) for v in request.headers.get_all("Via")]
    if request.method == "INVITE" and 100 < status < 300:
        out += [("Record-Route", v) for v in request.headers.get_all("Record-Route")]
    from_ = request.headers.get("From")
    if from_ is not None:
        out.append(("From", from_))
    to = request.headers.get("To")
    if to is not None:
        if to_tag is not None and status != 100 and _needs_tag(to):
            check_header("To", to_tag)
            to = f"{to};tag={to_tag}"
        out.append(("To", to))
    for name in ("Call-ID", "CSeq"):
        value = request.headers.get(name)
        if value is not None:
            out.append((name, value))
    if status == 100:
        timestamp = request.headers.get("Timestamp")
        if timestamp is not None:
            out.append(("Timestamp", timestamp))
    for name, value in headers:
        check_header(name, value)
        out.append((canonical_name(name), value))
    if body or content_type is not None:
        if content_type is None:
            raise ValueError("a body needs a content_type")
        check_header("Content-Type", content_type)
        out.append(("Content-Type", content_type))
    return Response(status, reason, Headers(tuple(out)), body)


def _needs_tag(to: str) -> bool:
    try:
        return NameAddr.parse(to).tag is None
    except SipParseError:
        return False
