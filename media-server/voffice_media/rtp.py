"""RTP packets (RFC 3550 5.1), the sending side of one stream, and the peer check.

Public API:

    RtpPacket(payload_type, sequence, timestamp, ssrc, payload=b"", marker=False,
              csrc=(), extension=None, padding=0)
    RtpPacket.parse(data: bytes) -> RtpPacket      raises RtpError
    RtpPacket.serialize() -> bytes
    RtpExtension(profile: int, data: bytes)        (data: a multiple of 4 bytes)
    RtpSender(payload_type, *, ssrc=None, sequence=None, timestamp=None, samples=160)
        .packet(payload) -> RtpPacket              one 20 ms frame; marker on talkspurt start
        .packet_bytes(payload) -> bytes            the same, serialized
        .pause(frames=1)                           frames not sent (silence): timestamp runs on
    RtpPeer(expected: (ip, port) | None, *, learn=True, sources=())
        .accept(addr) -> bool                      symmetric RTP with latching
        .peer                                      where to send: the latched source, else `expected`
    RtpError

Sequence numbers wrap at 2**16, timestamps at 2**32; SSRC and the initial sequence number
and timestamp are random unless given (RFC 3550 5.1).
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["RtpError", "RtpExtension", "RtpPacket", "RtpPeer", "RtpSender"]

VERSION = 2
HEADER = struct.Struct("!BBHII")


class RtpError(ValueError):
    """Bytes that are not an RTP packet."""


@dataclass(frozen=True, slots=True)
class RtpExtension:
    profile: int  # 16 bits "defined by profile"
    data: bytes  # a multiple of 4 bytes


@dataclass(frozen=True, slots=True)
class RtpPacket:
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrc: tuple[int, ...] = ()
    extension: RtpExtension | None = None
    padding: int = 0  # padding octets including the count octet; 0: no padding

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        if len(data) < HEADER.size:
            raise RtpError("shorter than an RTP header")
        first, second, sequence, timestamp, ssrc = HEADER.unpack_from(data)
        if first >> 6 != VERSION:
            raise RtpError("not RTP version 2")
        offset = HEADER.size
        csrc_count = first & 0x0F
        if len(data) < offset + 4 * csrc_count:
            raise RtpError("truncated CSRC list")
        csrc = struct.unpack_from(f"!{csrc_count}I", data, offset)
        offset += 4 * csrc_count
        extension = None
        if first & 0x10:
            if len(data) < offset + 4:
                raise RtpError("truncated extension header")
            profile, words = struct.unpack_from("!HH", data, offset)
            offset += 4
            if len(data) < offset + 4 * words:
                raise RtpError("truncated extension")
            extension = RtpExtension(profile, data[offset : offset + 4 * words])
            offset += 4 * words
        end = len(data)
        padding = 0
        if first & 0x20:
            padding = data[-1]
            if padding == 0 or padding > end - offset:
                raise RtpError("bad padding")
            end -= padding
        return cls(
            payload_type=second & 0x7F,
            sequence=sequence,
            timestamp=timestamp,
            ssrc=ssrc,
            payload=data[offset:end],
            marker=bool(second & 0x80),
            csrc=tuple(csrc),
            extension=extension,
            padding=padding,
        )

    def serialize(self) -> bytes:
        if (
            not 0 <= self.payload_type < 128
            or not 0 <= self.sequence <= 0xFFFF
            or not 0 <= self.timestamp <= 0xFFFFFFFF
            or not all(0 <= v <= 0xFFFFFFFF for v in (self.ssrc, *self.csrc))
            or len(self.csrc) > 15
            or not 0 <= self.padding < 256
        ):
            raise RtpError("field out of range")
        first = VERSION << 6 | (0x20 if self.padding else 0) | (0x10 if self.extension else 0) | len(self.csrc)
        second = (0x80 if self.marker else 0) | self.payload_type
        parts = [HEADER.pack(first, second, self.sequence, self.timestamp, self.ssrc)]
        parts += [struct.pack("!I", c) for c in self.csrc]
        if self.extension is not None:
            data = self.extension.data
            if len(data) % 4 or len(data) > 4 * 0xFFFF:
                raise RtpError("extension data must be a multiple of 4 bytes")
            parts.append(struct.pack("!HH", self.extension.profile, len(data) // 4) + data)
        parts.append(self.payload)
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes([self.padding]))
        return b"".join(parts)


class RtpSender:
    """Numbers the packets of one outgoing stream of `samples`-sample frames."""

    def __init__(
        self,
        payload_type: int,
        *,
        ssrc: int | None = None,
        sequence: int | None = None,
        timestamp: int | None = None,
        samples: int = 160,
    ) -> None:
        self.payload_type = payload_type
        self.ssrc = secrets.randbits(32) if ssrc is None else ssrc
        self.sequence = secrets.randbits(16) if sequence is None else sequence
        self.timestamp = secrets.randbits(32) if timestamp is None else timestamp
        self.samples = samples
        self._talkspurt = True  # the first packet starts a talkspurt

    def packet(self, payload: bytes) -> RtpPacket:
        """The next frame's packet; marker set on the first one after silence."""
        packet = RtpPacket(self.payload_type, self.sequence, self.timestamp, self.ssrc, payload, marker=self._talkspurt)
        self._talkspurt = False
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.timestamp = (self.timestamp + self.samples) & 0xFFFFFFFF
        return packet

    def packet_bytes(self, payload: bytes) -> bytes:
        """`packet(payload).serialize()` without the object (the ticker's hot path)."""
        header = HEADER.pack(VERSION << 6, (0x80 if self._talkspurt else 0) | self.payload_type,
                             self.sequence, self.timestamp, self.ssrc)
        self._talkspurt = False
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.timestamp = (self.timestamp + self.samples) & 0xFFFFFFFF
        return header + payload

    def pause(self, frames: int = 1) -> None:
        """`frames` frames of silence not sent: the clock runs on, the next packet is marked."""
        self.timestamp = (self.timestamp + frames * self.samples) & 0xFFFFFFFF
        self._talkspurt = True


class RtpPeer:
    """Which source addresses a stream accepts packets from, and where to send ours.

    With `learn` (symmetric RTP, RFC 4961: a peer behind NAT sends from an address its SDP
    does not know) the first accepted packet's source becomes the peer ("latching"); from
    then on only it is accepted and `peer` is where our packets go. Latching is limited to
    the negotiated IP address and the IPs in `sources` (the media relays the server trusts):
    a stranger who sprays packets at our port range before the caller's first packet cannot
    take the stream over (the "RTP bleed" attack). Without `learn` only `expected` itself is
    accepted. `expected=None` with no `sources` (nothing negotiated) latches onto the first
    source, whatever it is.
    """

    def __init__(
        self, expected: tuple[str, int] | None, *, learn: bool = True, sources: Iterable[str] = ()
    ) -> None:
        self.peer = expected
        self.learn = learn
        self.sources = frozenset(sources) | ({expected[0]} if expected is not None else set())
        self._learned = False

    @property
    def latched(self) -> bool:
        return self._learned

    def accept(self, addr: tuple[str, int]) -> bool:
        if self.learn and not self._learned:
            if self.sources and addr[0] not in self.sources:
                return False
            self.peer = addr
            self._learned = True
            return True
        return addr == self.peer
