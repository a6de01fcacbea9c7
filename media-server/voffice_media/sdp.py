"""SDP offer/answer for one audio stream (RFC 4566, RFC 3264), G.711 plus RFC 4733 events.

Public API:

    parse_offer(data: bytes) -> Offer                       raises SdpError
    negotiate(offer: Offer) -> Negotiated                   raises SdpError
    answer(offer, local_ip, local_port, session_id) -> bytes   raises SdpError
    offer(local_ip, local_port, session_id) -> bytes         our offer, for a delayed offer
    Offer, MediaLine, Codec, Negotiated, SdpError

The first audio `m=` line with a non-zero port and profile RTP/AVP is the stream; the
codec is the first PCMU (0) or PCMA (8) in the offer's payload order (by static number or
by rtpmap name), plus telephone-event/8000 when offered, on its own payload type. The
answer keeps every offered m= line in order (RFC 3264 6): the others are refused with port
0. Its direction mirrors the offer (sendonly <-> recvonly); ptime is always 20. Any
error raises SdpError, which the server turns into 488 Not Acceptable Here.

An INVITE without SDP (delayed offer, RFC 3261 13.2.1) gets our `offer`: PCMU, PCMA and
telephone-event, in a reliable 183 or the 200; the caller's answer (in the PRACK or the ACK)
is read with `parse_offer` and `negotiate` like an offer, since an answer has the same form
and lists what the caller accepted.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

__all__ = ["Codec", "MediaLine", "Negotiated", "Offer", "SdpError", "answer", "negotiate", "offer", "parse_offer"]

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
MIRROR = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}
STATIC = {
    0: ("PCMU", 8000),
    3: ("GSM", 8000),
    4: ("G723", 8000),
    8: ("PCMA", 8000),
    9: ("G722", 8000),
    18: ("G729", 8000),
}
SUPPORTED = ("PCMU", "PCMA")
DTMF_EVENTS = "0-15"
OFFER_DTMF_PT = 101  # telephone-event's payload type in our offers
PTIME_MS = 20

_LINE = re.compile(r"([a-z])=(.*)")
_MEDIA = re.compile(r"([A-Za-z0-9_-]+) ([0-9]{1,5})(?:/[0-9]+)? ([A-Za-z0-9/_.-]+)((?: [^ ]+)*)")
_RTPMAP = re.compile(r"([0-9]{1,3}) ([A-Za-z0-9_.-]+)/([0-9]{1,6})(?:/([0-9]{1,2}))?")
_FMTP = re.compile(r"([0-9]{1,3}) (.*)")
_CONNECTION = re.compile(r"IN (IP4|IP6) ([^ /]+)(?:/.*)?")


class SdpError(ValueError):
    """An offer this server cannot parse or answer."""


@dataclass(frozen=True, slots=True)
class Codec:
    payload_type: int
    name: str
    rate: int
    channels: int = 1
    fmtp: str | None = None


@dataclass(frozen=True, slots=True)
class MediaLine:
    media: str  # "audio", "video"...
    port: int
    proto: str  # "RTP/AVP"...
    formats: tuple[str, ...]
    codecs: tuple[Codec, ...]  # the RTP formats, in offer order, static ones filled in
    connection: str | None  # c= address (this m= line's, else the session's)
    ptime: int | None
    direction: str


@dataclass(frozen=True, slots=True)
class Offer:
    media: tuple[MediaLine, ...]

    @property
    def audio_index(self) -> int | None:
        """Index of the audio line this server uses, or None."""
        for i, line in enumerate(self.media):
            if line.media == "audio" and line.port != 0 and line.proto.upper() == "RTP/AVP":
                return i
        return None


@dataclass(frozen=True, slots=True)
class Negotiated:
    codec: Codec  # PCMU or PCMA
    dtmf_payload_type: int | None  # telephone-event/8000, when offered
    remote: tuple[str, int]  # where to send RTP
    ptime: int  # what we send
    direction: str  # our direction, as in the answer


def parse_offer(data: bytes) -> Offer:
    """Parse an SDP body (CRLF or LF lines)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SdpError("SDP is not UTF-8") from exc
    lines = [line for line in re.split(r"\r?\n", text) if line]
    if not lines or lines[0] != "v=0":
        raise SdpError("SDP must start with v=0")
    session_c: str | None = None
    session_dir = "sendrecv"
    blocks: list[list[tuple[str, str]]] = []
    for line in lines:
        m = _LINE.fullmatch(line)
        if m is None:
            raise SdpError(f"bad SDP line {line[:40]!r}")
        kind, value = m.group(1), m.group(2)
        if kind == "m":
            blocks.append([])
        if blocks:
            blocks[-1].append((kind, value))
        elif kind == "c":
            session_c = _connection(value)
        elif kind == "a" and value in DIRECTIONS:
            session_dir = value
    if not blocks:
        raise SdpError("no m= line")
    return Offer(tuple(_media_line(block, session_c, session_dir) for block in blocks))


def _connection(value: str) -> str:
    m = _CONNECTION.fullmatch(value)
    if m is None:
        raise SdpError("bad c= line")
    try:
        ipaddress.ip_address(m.group(2))
    except ValueError as exc:
        raise SdpError("c= address is not an IP address") from exc
    return m.group(2)


def _media_line(block: list[tuple[str, str]], session_c: str | None, session_dir: str) -> MediaLine:
    m = _MEDIA.fullmatch(block[0][1])
    if m is None:
        raise SdpError("bad m= line")
    port = int(m.group(2))
    if port > 65535:
        raise SdpError("bad m= port")
    formats = tuple(m.group(4).split())
    if not formats:
        raise SdpError("m= line without formats")
    rtp = "RTP/" in m.group(3).upper()
    connection, ptime, direction = session_c, None, session_dir
    rtpmap: dict[int, tuple[str, int, int]] = {}
    fmtp: dict[int, str] = {}
    for kind, value in block[1:]:
        if kind == "c":
            connection = _connection(value)
        elif kind == "a":
            name, _, rest = value.partition(":")
            if name in DIRECTIONS:
                direction = name
            elif name == "rtpmap":
                r = _RTPMAP.fullmatch(rest)
                if r is None:
                    raise SdpError("bad a=rtpmap")
                rtpmap[int(r.group(1))] = (r.group(2), int(r.group(3)), int(r.group(4) or 1))
            elif name == "fmtp":
                f = _FMTP.fullmatch(rest)
                if f is None:
                    raise SdpError("bad a=fmtp")
                fmtp[int(f.group(1))] = f.group(2)
            elif name == "ptime":
                if not rest.isdigit() or not 0 < int(rest) <= 1000:
                    raise SdpError("bad a=ptime")
                ptime = int(rest)
    codecs: list[Codec] = []
    if rtp:
        for fmt in formats:
            if not fmt.isdigit() or int(fmt) > 127:
                raise SdpError("bad RTP payload type")
            pt = int(fmt)
            name, rate, channels = rtpmap.get(pt) or (*STATIC.get(pt, ("", 0)), 1)
            codecs.append(Codec(pt, name, rate, channels, fmtp.get(pt)))
    return MediaLine(m.group(1), port, m.group(3), formats, tuple(codecs), connection, ptime, direction)


def negotiate(offer: Offer) -> Negotiated:
    """Choose codec, DTMF payload type, remote address and direction for the audio line."""
    index = offer.audio_index
    if index is None:
        raise SdpError("no RTP/AVP audio stream")
    line = offer.media[index]
    if line.connection is None:
        raise SdpError("no c= line for the audio stream")
    codec = next(
        (c for c in line.codecs if c.name.upper() in SUPPORTED and c.rate == 8000 and c.channels == 1),
        None,
    )
    if codec is None:
        raise SdpError("no common codec (PCMU, PCMA)")
    dtmf = next((c.payload_type for c in line.codecs if c.name.lower() == "telephone-event" and c.rate == 8000), None)
    chosen = Codec(codec.payload_type, codec.name.upper(), 8000)
    return Negotiated(chosen, dtmf, (line.connection, line.port), PTIME_MS, MIRROR[line.direction])


def answer(offer: Offer, local_ip: str, local_port: int, session_id: int) -> bytes:
    """The SDP answer to `offer` for our RTP socket at local_ip:local_port."""
    chosen = negotiate(offer)
    index = offer.audio_index
    lines = _session(local_ip, local_port, session_id)
    for i, line in enumerate(offer.media):
        if i != index:
            lines.append(f"m={line.media} 0 {line.proto} {line.formats[0]}")
            continue
        pts = [chosen.codec.payload_type]
        if chosen.dtmf_payload_type is not None:
            pts.append(chosen.dtmf_payload_type)
        lines.append(f"m=audio {local_port} RTP/AVP {' '.join(map(str, pts))}")
        lines.append(f"a=rtpmap:{chosen.codec.payload_type} {chosen.codec.name}/8000")
        if chosen.dtmf_payload_type is not None:
            lines.append(f"a=rtpmap:{chosen.dtmf_payload_type} telephone-event/8000")
            lines.append(f"a=fmtp:{chosen.dtmf_payload_type} {DTMF_EVENTS}")
        lines.append(f"a=ptime:{PTIME_MS}")
        lines.append(f"a={chosen.direction}")
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def offer(local_ip: str, local_port: int, session_id: int) -> bytes:
    """Our SDP offer for an INVITE that came without one: PCMU, PCMA, RFC 4733 events."""
    lines = [
        *_session(local_ip, local_port, session_id),
        f"m=audio {local_port} RTP/AVP 0 8 {OFFER_DTMF_PT}",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        f"a=rtpmap:{OFFER_DTMF_PT} telephone-event/8000",
        f"a=fmtp:{OFFER_DTMF_PT} {DTMF_EVENTS}",
        f"a=ptime:{PTIME_MS}",
        "a=sendrecv",
    ]
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def _session(local_ip: str, local_port: int, session_id: int) -> list[str]:
    """The session-level lines every SDP of ours starts with (answers and offers alike)."""
    family = "IP6" if ipaddress.ip_address(local_ip).version == 6 else "IP4"
    if not 0 < local_port < 65536:
        raise ValueError("local_port out of range")
    return ["v=0", f"o=voffice {session_id} {session_id} IN {family} {local_ip}", "s=voffice",
            f"c=IN {family} {local_ip}", "t=0 0"]
