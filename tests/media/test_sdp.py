"""sdp: offer parsing, codec choice, the answer."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voffice_media.sdp import Codec, Negotiated, SdpError, answer, negotiate, offer, parse_offer

RTPENGINE_OFFER = (
    b"v=0\r\n"
    b"o=- 1545997027 1 IN IP4 10.0.0.1\r\n"
    b"s=tester\r\n"
    b"c=IN IP4 10.0.0.1\r\n"
    b"t=0 0\r\n"
    b"m=audio 30000 RTP/AVP 8 0 18 101\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:18 G729/8000\r\n"
    b"a=fmtp:18 annexb=no\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\n"
    b"a=ptime:20\r\n"
    b"a=sendrecv\r\n"
    b"a=rtcp:30001\r\n"
)


def test_parse_offer() -> None:
    offer = parse_offer(RTPENGINE_OFFER)
    [audio] = offer.media
    assert (audio.media, audio.port, audio.proto, audio.connection, audio.ptime) == (
        "audio",
        30000,
        "RTP/AVP",
        "10.0.0.1",
        20,
    )
    assert audio.formats == ("8", "0", "18", "101")
    assert audio.codecs[3] == Codec(101, "telephone-event", 8000, 1, "0-16")
    assert audio.codecs[2].fmtp == "annexb=no"
    assert audio.direction == "sendrecv"


def test_first_acceptable_codec_in_offer_order() -> None:
    chosen = negotiate(parse_offer(RTPENGINE_OFFER))
    assert chosen == Negotiated(Codec(8, "PCMA", 8000), 101, ("10.0.0.1", 30000), 20, "sendrecv")
    pcmu_first = RTPENGINE_OFFER.replace(b"RTP/AVP 8 0 18 101", b"RTP/AVP 18 0 8 101")
    assert negotiate(parse_offer(pcmu_first)).codec.name == "PCMU"


def test_static_payload_types_without_rtpmap_and_no_dtmf() -> None:
    offer = b"v=0\nc=IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 0\n"
    chosen = negotiate(parse_offer(offer))
    assert chosen.codec == Codec(0, "PCMU", 8000) and chosen.dtmf_payload_type is None
    assert b"telephone-event" not in answer(parse_offer(offer), "10.0.0.5", 40000, 7)


def test_media_level_connection_wins() -> None:
    offer = b"v=0\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\nc=IN IP4 192.0.2.2\r\n"
    assert negotiate(parse_offer(offer)).remote == ("192.0.2.2", 4000)


@pytest.mark.parametrize(
    ("offered", "ours"),
    [(b"sendrecv", "sendrecv"), (b"sendonly", "recvonly"), (b"recvonly", "sendonly"), (b"inactive", "inactive")],
)
def test_direction_mirrors(offered: bytes, ours: str) -> None:
    offer = parse_offer(RTPENGINE_OFFER.replace(b"a=sendrecv", b"a=" + offered))
    assert negotiate(offer).direction == ours
    assert f"a={ours}\r\n".encode() in answer(offer, "10.0.0.5", 40000, 1)


def test_session_level_direction() -> None:
    offer = b"v=0\r\nc=IN IP4 192.0.2.1\r\na=sendonly\r\nm=audio 4000 RTP/AVP 0\r\n"
    assert negotiate(parse_offer(offer)).direction == "recvonly"


def test_answer_exact() -> None:
    data = answer(parse_offer(RTPENGINE_OFFER), "10.0.0.5", 40000, 1234)
    assert data == (
        b"v=0\r\n"
        b"o=voffice 1234 1234 IN IP4 10.0.0.5\r\n"
        b"s=voffice\r\n"
        b"c=IN IP4 10.0.0.5\r\n"
        b"t=0 0\r\n"
        b"m=audio 40000 RTP/AVP 8 101\r\n"
        b"a=rtpmap:8 PCMA/8000\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\n"
        b"a=fmtp:101 0-15\r\n"
        b"a=ptime:20\r\n"
        b"a=sendrecv\r\n"
    )
    # the answer is itself an offer we can parse
    assert negotiate(parse_offer(data)).codec.name == "PCMA"


def test_other_streams_refused_with_port_zero() -> None:
    offer = (
        b"v=0\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
        b"m=video 5000 RTP/AVP 31\r\n"
        b"m=audio 0 RTP/AVP 0\r\n"
        b"m=audio 4000 RTP/AVP 0 96\r\na=rtpmap:96 telephone-event/8000\r\n"
        b"m=image 6000 udptl t38\r\n"
    )
    parsed = parse_offer(offer)
    assert parsed.audio_index == 2
    lines = answer(parsed, "10.0.0.5", 40000, 1).split(b"\r\n")
    media = [line for line in lines if line.startswith(b"m=")]
    assert media == [
        b"m=video 0 RTP/AVP 31",
        b"m=audio 0 RTP/AVP 0",
        b"m=audio 40000 RTP/AVP 0 96",
        b"m=image 0 udptl t38",
    ]


def test_ipv6_answer() -> None:
    offer = b"v=0\r\nc=IN IP6 2001:db8::1\r\nm=audio 4000 RTP/AVP 0\r\n"
    data = answer(parse_offer(offer), "2001:db8::5", 40000, 1)
    assert b"c=IN IP6 2001:db8::5\r\n" in data
    assert negotiate(parse_offer(offer)).remote == ("2001:db8::1", 4000)


@pytest.mark.parametrize(
    "offer",
    [
        b"",
        b"v=1\r\n",
        b"v=0\r\nc=IN IP4 192.0.2.1\r\n",
        b"v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 9 18\r\n",
        b"v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/SAVP 0\r\n",
        b"v=0\r\nm=audio 4000 RTP/AVP 0\r\n",
        b"v=0\r\nc=IN IP4 example.com\r\nm=audio 4000 RTP/AVP 0\r\n",
        b"v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 99999 RTP/AVP 0\r\n",
        b"v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 200\r\n",
        b"v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:x\r\n",
        b"v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\na=ptime:0\r\n",
        b"v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 96\r\na=rtpmap:96 PCMU/16000\r\n",
        b"v=0\r\nbad line\r\n",
        b"v=0\r\n\xff\r\n",
    ],
)
def test_errors(offer: bytes) -> None:
    with pytest.raises(SdpError):
        answer(parse_offer(offer), "10.0.0.5", 40000, 1)


@given(st.binary(max_size=200))
def test_random_bytes_only_raise_sdp_error(data: bytes) -> None:
    try:
        negotiate(parse_offer(data))
    except SdpError:
        pass


@given(
    st.lists(st.sampled_from([0, 3, 8, 9, 18, 96, 101, 120]), min_size=1, max_size=6, unique=True),
    st.integers(1, 65535),
)
def test_generated_offers(pts: list[int], port: int) -> None:
    rtpmaps = "".join(f"a=rtpmap:{pt} telephone-event/8000\r\n" for pt in pts if pt >= 96)
    offer = f"v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio {port} RTP/AVP {' '.join(map(str, pts))}\r\n{rtpmaps}".encode()
    parsed = parse_offer(offer)
    g711 = [pt for pt in pts if pt in (0, 8)]
    if not g711:
        with pytest.raises(SdpError):
            negotiate(parsed)
        return
    chosen = negotiate(parsed)
    assert chosen.codec.payload_type == g711[0]
    dynamic = [pt for pt in pts if pt >= 96]
    assert chosen.dtmf_payload_type == (dynamic[0] if dynamic else None)
    assert negotiate(parse_offer(answer(parsed, "10.0.0.5", 40000, 1))).codec == chosen.codec


def test_our_offer_for_a_delayed_offer_is_one_we_can_answer_ourselves() -> None:
    """The offer in a reliable 183 or a 200 (an INVITE without SDP): G.711 both laws and
    RFC 4733 events, which parse and negotiate as any caller's offer would."""
    data = offer("127.0.0.1", 40000, 7)
    media = negotiate(parse_offer(data))
    assert (media.codec.name, media.dtmf_payload_type, media.remote) == ("PCMU", 101, ("127.0.0.1", 40000))
    assert b"a=rtpmap:8 PCMA/8000" in data and data.endswith(b"a=sendrecv\r\n")
