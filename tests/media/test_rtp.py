"""rtp: packet format, the sender's numbering, the peer check."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voffice_media.rtp import RtpError, RtpExtension, RtpPacket, RtpPeer, RtpSender


def test_parse_plain_packet() -> None:
    data = bytes([0x80, 0x80 | 0, 0x12, 0x34, 0, 0, 0x01, 0x40, 0xDE, 0xAD, 0xBE, 0xEF]) + b"\xff" * 160
    packet = RtpPacket.parse(data)
    assert packet == RtpPacket(0, 0x1234, 320, 0xDEADBEEF, b"\xff" * 160, marker=True)
    assert packet.serialize() == data


def test_csrc_extension_padding() -> None:
    packet = RtpPacket(
        101,
        65535,
        2**32 - 1,
        7,
        b"\x01\x80\x00\xa0",
        csrc=(1, 2, 3),
        extension=RtpExtension(0xBEDE, b"\x10\xff\x00\x00"),
        padding=4,
    )
    data = packet.serialize()
    assert data[0] == 0x80 | 0x20 | 0x10 | 3
    assert data[-4:] == b"\x00\x00\x00\x04"
    assert RtpPacket.parse(data) == packet


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80\x00" + b"\x00" * 9,  # 11 bytes
        b"\x40" + b"\x00" * 11,  # version 1
        b"\x82" + b"\x00" * 11 + b"\x00" * 4,  # 2 CSRC announced, 1 present
        b"\x90" + b"\x00" * 11 + b"\x00\x00",  # extension header cut
        b"\x90" + b"\x00" * 11 + b"\x00\x00\x00\x02" + b"\x00" * 4,  # extension body cut
        b"\xa0" + b"\x00" * 11 + b"\x00",  # padding count 0
        b"\xa0" + b"\x00" * 11 + b"\x05",  # padding longer than the payload
    ],
)
def test_parse_errors(data: bytes) -> None:
    with pytest.raises(RtpError):
        RtpPacket.parse(data)


def test_serialize_errors() -> None:
    for packet in (
        RtpPacket(128, 0, 0, 0),
        RtpPacket(0, 65536, 0, 0),
        RtpPacket(0, 0, 2**32, 0),
        RtpPacket(0, 0, 0, -1),
        RtpPacket(0, 0, 0, 0, csrc=tuple(range(16))),
        RtpPacket(0, 0, 0, 0, extension=RtpExtension(0, b"abc")),
        RtpPacket(0, 0, 0, 0, padding=256),
    ):
        with pytest.raises(RtpError):
            packet.serialize()


_packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=200),
    marker=st.booleans(),
    csrc=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15).map(tuple),
    extension=st.none()
    | st.builds(RtpExtension, st.integers(0, 0xFFFF), st.binary(max_size=12).map(lambda b: b[: len(b) // 4 * 4])),
    padding=st.integers(0, 255),
)


@given(_packets)
def test_round_trip(packet: RtpPacket) -> None:
    data = packet.serialize()
    assert RtpPacket.parse(data) == packet
    assert RtpPacket.parse(data).serialize() == data


@given(st.binary(max_size=100))
def test_random_bytes_only_raise_rtp_error(data: bytes) -> None:
    try:
        packet = RtpPacket.parse(data)
    except RtpError:
        return
    # padding bytes other than the count are not kept: compare what survives
    assert RtpPacket.parse(packet.serialize()) == packet


def test_sender_numbering_and_wrap() -> None:
    sender = RtpSender(0, ssrc=5, sequence=65534, timestamp=2**32 - 160)
    first, second, third = (sender.packet(b"\xff" * 160) for _ in range(3))
    assert [p.sequence for p in (first, second, third)] == [65534, 65535, 0]
    assert [p.timestamp for p in (first, second, third)] == [2**32 - 160, 0, 160]
    assert [p.marker for p in (first, second, third)] == [True, False, False]
    assert {p.ssrc for p in (first, second, third)} == {5}
    sender.pause(3)
    resumed = sender.packet(b"")
    assert resumed.marker and resumed.sequence == 1 and resumed.timestamp == 160 + 160 + 3 * 160
    assert not sender.packet(b"").marker


def test_sender_random_start() -> None:
    a, b = RtpSender(8), RtpSender(8)
    assert (a.ssrc, a.sequence, a.timestamp) != (b.ssrc, b.sequence, b.timestamp)
    assert 0 <= a.sequence <= 0xFFFF and 0 <= a.ssrc <= 0xFFFFFFFF


def test_peer_without_learning() -> None:
    peer = RtpPeer(("10.0.0.1", 30000), learn=False)
    assert peer.accept(("10.0.0.1", 30000))
    assert not peer.accept(("10.0.0.1", 30002))
    assert not peer.accept(("203.0.113.9", 30000))


def test_peer_learns_the_first_source() -> None:
    peer = RtpPeer(("10.0.0.1", 30000))
    assert peer.accept(("10.0.0.1", 40000))  # NAT moved the port
    assert peer.peer == ("10.0.0.1", 40000)
    assert not peer.accept(("10.0.0.1", 30000))
    assert peer.accept(("10.0.0.1", 40000))
    unknown = RtpPeer(None)
    assert unknown.accept(("192.0.2.1", 1)) and not unknown.accept(("192.0.2.2", 1))


def test_peer_latches_only_onto_the_negotiated_ip_or_trusted_sources() -> None:
    peer = RtpPeer(("10.0.0.1", 30000), sources={"10.0.0.9"})
    assert not peer.accept(("203.0.113.9", 30000))  # a stranger first: not latched
    assert not peer.latched and peer.peer == ("10.0.0.1", 30000)
    assert peer.accept(("10.0.0.1", 30000))
    assert peer.latched and not peer.accept(("10.0.0.9", 5000))
    relay = RtpPeer(("10.0.0.1", 30000), sources={"10.0.0.9"})
    assert relay.accept(("10.0.0.9", 5000))  # the media relay, another port: latched, we send there
    assert relay.peer == ("10.0.0.9", 5000)
    assert not relay.accept(("10.0.0.1", 30000))
