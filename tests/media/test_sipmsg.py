"""sipmsg: framing, header values, make_response, and parse/serialize properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voffice_media.sipmsg import (
    CSeq,
    Headers,
    NameAddr,
    Request,
    Response,
    SipParseError,
    SipUri,
    Via,
    make_response,
    parse,
    response_address,
    split_values,
    with_received,
)

INVITE = (
    b"INVITE sip:menu@10.0.0.5:5080 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-1;rport\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK-a, SIP/2.0/TCP 192.0.2.8;branch=z9hG4bK-b\r\n"
    b"Record-Route: <sip:10.0.0.1;lr;ftag=abc>\r\n"
    b"Record-Route: <sip:10.0.0.2;lr>\r\n"
    b"Max-Forwards: 69\r\n"
    b'From: "Caller" <sip:+79031112233@example.net>;tag=from1\r\n'
    b"To: <sip:+74951234567@example.org>\r\n"
    b"Call-ID: call-1@example.net\r\n"
    b"CSeq: 10 INVITE\r\n"
    b"Contact: <sip:caller@192.0.2.7:5060>\r\n"
    b"X-VO-Op: v=1;type=menu\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
    b"v=0\n"
)


def test_parse_request() -> None:
    msg = parse(INVITE)
    assert isinstance(msg, Request)
    assert (msg.method, msg.uri, msg.body) == ("INVITE", "sip:menu@10.0.0.5:5080", b"v=0\n")
    assert msg.headers.get("call-id") == "call-1@example.net"
    assert msg.headers.get("x-vo-op") == "v=1;type=menu"
    assert "Content-Length" not in msg.headers  # framing only


def test_bare_lf_and_leading_crlf_are_tolerated() -> None:
    lf = INVITE.replace(b"\r\n", b"\n")
    assert parse(b"\r\n\r\n" + lf) == parse(INVITE)


def test_compact_forms_expand() -> None:
    data = b"OPTIONS sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bKx\r\nf: <sip:a@b>;tag=1\r\nt: sip:c@d\r\ni: x\r\nm: <sip:e@f>\r\nc: text/plain\r\nk: timer\r\ns: hi\r\ne: gzip\r\nl: 2\r\n\r\nhi"
    msg = parse(data)
    names = [n for n, _ in msg.headers]
    assert names == [
        "Via",
        "From",
        "To",
        "Call-ID",
        "Contact",
        "Content-Type",
        "Supported",
        "Subject",
        "Content-Encoding",
    ]
    assert msg.body == b"hi"


def test_multiple_values_keep_order() -> None:
    msg = parse(INVITE)
    assert [Via.parse(v).branch for v in msg.headers.values("Via")] == ["z9hG4bK-1", "z9hG4bK-a", "z9hG4bK-b"]
    assert len(msg.headers.get_all("Via")) == 2
    assert msg.headers.values("Record-Route") == ["<sip:10.0.0.1;lr;ftag=abc>", "<sip:10.0.0.2;lr>"]


def test_split_values_respects_quotes_and_angles() -> None:
    assert split_values('"a, b" <sip:x@y?h=1,2>;q=1, <sip:z>') == ['"a, b" <sip:x@y?h=1,2>;q=1', "<sip:z>"]
    assert split_values(" , a,, ") == ["a"]


def test_folded_header_is_unfolded() -> None:
    data = b"OPTIONS sip:a@b SIP/2.0\r\nSubject: one\r\n  two\r\n\tthree\r\nl: 0\r\n\r\n"
    assert parse(data).headers.get("Subject") == "one two three"


def test_content_length_cuts_extra_bytes() -> None:
    data = INVITE + b"garbage after the body"
    msg = parse(data)
    assert msg.body == b"v=0\n"


@pytest.mark.parametrize(
    ("length", "reason"),
    [(b"9999", "body shorter than Content-Length"), (b"-1", "bad Content-Length"), (b"x", "bad Content-Length")],
)
def test_bad_content_length(length: bytes, reason: str) -> None:
    data = INVITE.replace(b"Content-Length: 4", b"Content-Length: " + length)
    with pytest.raises(SipParseError) as err:
        parse(data)
    assert err.value.reason == reason
    assert err.value.headers is not None and err.value.headers.get("Call-ID") == "call-1@example.net"
    assert err.value.method == "INVITE"


def test_two_content_lengths() -> None:
    with pytest.raises(SipParseError, match="multiple Content-Length"):
        parse(INVITE.replace(b"Max-Forwards: 69", b"l: 4"))


def test_no_content_length_takes_the_rest() -> None:
    data = INVITE.replace(b"Content-Length: 4\r\n", b"")
    assert parse(data).body == b"v=0\n"


def test_message_without_blank_line() -> None:
    msg = parse(b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: 1\r\n")
    assert isinstance(msg, Request) and msg.body == b""


@pytest.mark.parametrize(
    "line",
    [
        b"INVITE  sip:a@b SIP/2.0",
        b"INVITE sip:a@b SIP/2.0 ",
        b"INVITE <sip:a@b> SIP/2.0",
        b"INVITE sip:a@b; lr SIP/2.0",
        b"INVITE sip:a@b",
        b"IN VITE sip:a@b SIP/2.0",
    ],
)
def test_bad_request_lines(line: bytes) -> None:
    with pytest.raises(SipParseError) as err:
        parse(line + b"\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nl: 0\r\n\r\n")
    assert err.value.status == 400 and err.value.headers is not None


def test_unknown_version_is_505() -> None:
    with pytest.raises(SipParseError) as err:
        parse(b"OPTIONS sip:a@b SIP/7.0\r\nl: 0\r\n\r\n")
    assert err.value.status == 505


def test_bad_header_line_has_no_headers() -> None:
    with pytest.raises(SipParseError) as err:
        parse(b"OPTIONS sip:a@b SIP/2.0\r\nno colon here\r\n\r\n")
    assert err.value.headers is None
    with pytest.raises(SipParseError):
        parse(b"OPTIONS sip:a@b SIP/2.0\r\n folded first\r\n\r\n")
    with pytest.raises(SipParseError):
        parse(b"OPTIONS sip:a@b SIP/2.0\r\nX: a\rb\r\n\r\n")
    with pytest.raises(SipParseError):
        parse(b"\r\n\r\n")


def test_parse_responses() -> None:
    msg = parse(b"SIP/2.0 183 Session Progress\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
    assert isinstance(msg, Response) and (msg.status, msg.reason) == (183, "Session Progress")
    empty = parse(b"SIP/2.0 100 \r\nl: 0\r\n\r\n")
    assert isinstance(empty, Response) and empty.reason == ""
    for bad in (b"SIP/2.0 4294967301 big", b"SIP/2.0 099 low", b"SIP/2.0 20 OK", b"SIP/3.0 200 OK"):
        with pytest.raises(SipParseError):
            parse(bad + b"\r\n\r\n")


def test_serialize_round_trip_and_content_length() -> None:
    msg = parse(INVITE)
    data = msg.serialize()
    assert data.endswith(b"Content-Length: 4\r\n\r\nv=0\n")
    assert parse(data) == msg
    assert parse(data).serialize() == data


def test_non_utf8_header_bytes_survive() -> None:
    data = b"OPTIONS sip:a@b SIP/2.0\r\nSubject: \xff\xfe\r\nContent-Length: 0\r\n\r\n"
    assert parse(data).serialize() == data


# ------------------------------------------------------------------ header values


def test_via_parse() -> None:
    via = Via.parse("SIP  /   2.0 /udp 192.0.2.2 : 5062 ;  branch  =   z9hG4bK9ikj8 ; rport ; received=1.2.3.4")
    assert (via.transport, via.host, via.port, via.branch) == ("UDP", "192.0.2.2", 5062, "z9hG4bK9ikj8")
    assert via.serialize() == "SIP/2.0/UDP 192.0.2.2:5062;branch=z9hG4bK9ikj8;rport;received=1.2.3.4"
    v6 = Via.parse("SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bKx")
    assert v6.host == "[2001:db8::1]" and v6.port == 5060
    for bad in (
        "SIP/2.0/UDP 192.0.2.15;;",
        "SIP/7.0/UDP h",
        "SIP/2.0/UDP",
        "SIP/2.0/UDP h:99999",
        "SIP/2.0/UDP h;branch=",
    ):
        with pytest.raises(SipParseError):
            Via.parse(bad)


def test_via_received_and_rport() -> None:
    same = Via.parse("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1")
    assert same.received_from(("10.0.0.1", 5060)) == same
    other = same.received_from(("10.0.0.9", 5070))
    assert other.serialize() == "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;received=10.0.0.9"
    rport = Via.parse("SIP/2.0/UDP 10.0.0.1;rport;branch=z9hG4bK1").received_from(("10.0.0.1", 40000))
    assert rport.serialize() == "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1;received=10.0.0.1;rport=40000"
    named = Via.parse("SIP/2.0/UDP proxy.example.com;branch=z9hG4bK1").received_from(("10.0.0.1", 5060))
    assert named.serialize().endswith(";received=10.0.0.1")


def test_response_address() -> None:
    source = ("10.0.0.1", 40000)
    assert response_address(Via.parse("SIP/2.0/UDP h;rport=40000"), source) == source
    assert response_address(Via.parse("SIP/2.0/UDP h:5070"), source) == ("10.0.0.1", 5070)
    assert response_address(Via.parse("SIP/2.0/UDP h"), source) == ("10.0.0.1", 5060)


def test_with_received_rewrites_first_value_of_first_line() -> None:
    msg = parse(INVITE.replace(b";rport", b""))
    assert isinstance(msg, Request)
    stamped = with_received(msg, ("10.0.0.9", 5060))
    assert stamped.headers.values("Via")[0].endswith("received=10.0.0.9")
    assert stamped.headers.values("Via")[1:] == msg.headers.values("Via")[1:]
    with pytest.raises(SipParseError):
        with_received(Request("OPTIONS", "sip:a", Headers()), ("1.2.3.4", 1))


@pytest.mark.parametrize(
    ("text", "uri", "display", "tag"),
    [
        (
            '"J Rosenberg \\\\\\""  <sip:j@example.com> ; tag = 98asjd8',
            "sip:j@example.com",
            '"J Rosenberg \\\\\\""',
            "98asjd8",
        ),
        ("caller<sip:caller@example.com>;tag=323", "sip:caller@example.com", "caller", "323"),
        ("token1~` token2'+_ <sip:m@example.com>", "sip:m@example.com", "token1~` token2'+_", None),
        ("sip:+1650@ss1.example.net;user=phone", "sip:+1650@ss1.example.net", None, None),
        ("sip:vivekg@chair.example.com ;   tag    = 1918181833n", "sip:vivekg@chair.example.com", None, "1918181833n"),
        ("<http://www.example.com>;tag=3234233", "http://www.example.com", None, "3234233"),
        ('<sip:x@y>;p="quoted;value";tag=t', "sip:x@y", None, "t"),
    ],
)
def test_name_addr(text: str, uri: str, display: str | None, tag: str | None) -> None:
    value = NameAddr.parse(text)
    assert (value.uri, value.display, value.tag) == (uri, display, tag)
    assert NameAddr.parse(value.serialize()) == value


@pytest.mark.parametrize(
    "text",
    [
        '"Mr. J. User <sip:j.user@example.com>',
        "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
        "< sip:t.watson@example.org >",
        "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
        "<sip:a@b>;;",
        "<sip:a@b",
        '"Joe" <sip:joe@example.org>;;;;',
        "<sip:a@b> junk",
    ],
)
def test_bad_name_addr(text: str) -> None:
    with pytest.raises(SipParseError):
        NameAddr.parse(text)


def test_sip_uri() -> None:
    uri = SipUri.parse("sip:user;par=u%40example.net@example.com:5070;transport=udp;maddr=10.0.0.3?h=1")
    assert (uri.user, uri.host, uri.port, uri.headers) == ("user;par=u%40example.net", "example.com", 5070, "h=1")
    assert uri.target() == ("10.0.0.3", 5070)
    assert SipUri.parse("sip:[2001:db8::5]").target() == ("2001:db8::5", 5060)
    for bad in ("tel:+123", "sip:", "sip:a@b:0", "sip:a@b c"):
        with pytest.raises(SipParseError):
            SipUri.parse(bad)


def test_cseq() -> None:
    assert CSeq.parse("0009 INVITE") == CSeq(9, "INVITE")
    assert CSeq(5, "BYE").serialize() == "5 BYE"
    for bad in ("36893488147419103232 REGISTER", "2147483648 INVITE", "1", "x INVITE"):
        with pytest.raises(SipParseError):
            CSeq.parse(bad)


# ------------------------------------------------------------------ make_response


def _invite() -> Request:
    msg = parse(INVITE)
    assert isinstance(msg, Request)
    return msg


def test_make_response_copies_rfc3261_8_2_6_headers() -> None:
    response = make_response(
        _invite(), 183, "Session Progress", to_tag="abc", body=b"v=0\r\n", content_type="application/sdp"
    )
    names = [n for n, _ in response.headers]
    assert names == ["Via", "Via", "Record-Route", "Record-Route", "From", "To", "Call-ID", "CSeq", "Content-Type"]
    assert response.headers.get("To") == "<sip:+74951234567@example.org>;tag=abc"
    parsed = parse(response.serialize())
    assert parsed == response


def test_make_response_record_route_only_when_dialog_creating() -> None:
    assert "Record-Route" not in make_response(_invite(), 480, "Temporarily Unavailable", to_tag="t").headers
    assert "Record-Route" not in make_response(_invite(), 100, "Trying").headers
    assert "Record-Route" in make_response(_invite(), 200, "OK", to_tag="t").headers


def test_make_response_tags() -> None:
    trying = make_response(_invite(), 100, "Trying", to_tag="t")
    assert trying.headers.get("To") == "<sip:+74951234567@example.org>"
    tagged = make_response(_invite(), 200, "OK", to_tag="t")
    again = make_response(Request("INVITE", "sip:a", tagged.headers), 200, "OK", to_tag="other")
    assert again.headers.get("To") == tagged.headers.get("To")


def test_make_response_extra_headers_and_injection() -> None:
    response = make_response(_invite(), 480, "Temporarily Unavailable", to_tag="t", headers=[("X-VO-Result", "key=1")])
    assert response.headers.get("x-vo-result") == "key=1"
    with pytest.raises(ValueError):
        make_response(_invite(), 480, "x", headers=[("X-VO-Result", "key=1\r\nVia: evil")])
    with pytest.raises(ValueError):
        make_response(_invite(), 480, "bad\r\nreason")
    with pytest.raises(ValueError):
        make_response(_invite(), 200, "OK", body=b"x")
    with pytest.raises(ValueError):
        make_response(_invite(), 700, "no")


def test_make_response_copies_timestamp_into_100() -> None:
    request = Request("INVITE", "sip:a@b", _invite().headers.with_field("Timestamp", "54"))
    assert make_response(request, 100, "Trying").headers.get("Timestamp") == "54"
    assert make_response(request, 180, "Ringing").headers.get("Timestamp") is None


def test_headers_helpers() -> None:
    headers = Headers.of([("v", "a"), ("X-A", "1")]).with_field("x-a", "2")
    assert headers.get_all("X-A") == ["1", "2"]
    assert "via" in headers and 3 not in headers
    assert headers.without("x-a").fields == (("Via", "a"),)


# ------------------------------------------------------------------ properties

_token = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.!%*_+`'~-", min_size=1, max_size=12
)
_value = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\r\n"), max_size=40
).map(lambda s: s.strip(" \t"))
_uri = st.builds(lambda user, host: f"sip:{user}@{host}", _token, _token)


@st.composite
def _messages(draw: st.DrawFn) -> Request | Response:
    names = st.sampled_from(
        ["Via", "From", "To", "Call-ID", "CSeq", "Contact", "X-VO-Op", "Subject", "Record-Route"]
    ) | _token.filter(lambda n: n.lower() not in ("content-length", "l"))
    headers = Headers.of(draw(st.lists(st.tuples(names, _value), max_size=8)))
    body = draw(st.binary(max_size=64))
    if draw(st.booleans()):
        return Request(draw(_token), draw(_uri), headers, body)
    reason = draw(_value)
    return Response(draw(st.integers(100, 699)), reason, headers, body)


@given(_messages())
def test_generated_messages_round_trip(message: Request | Response) -> None:
    data = message.serialize()
    parsed = parse(data)
    assert parsed == message
    assert parsed.serialize() == data


@given(st.binary(max_size=300))
def test_random_bytes_only_raise_sip_parse_error(data: bytes) -> None:
    try:
        message = parse(data)
    except SipParseError:
        return
    assert parse(message.serialize()).serialize() == message.serialize()


@settings(max_examples=300)
@given(st.data())
def test_mutated_messages_only_raise_sip_parse_error(data: st.DataObject) -> None:
    raw = bytearray(INVITE)
    for _ in range(data.draw(st.integers(1, 6))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.sampled_from(b'\r\n :;,<>"\\=@ \t\x00\xffaZ9'))
    try:
        message = parse(bytes(raw))
    except SipParseError:
        return
    stable = message.serialize()
    assert parse(stable).serialize() == stable


@given(st.text(max_size=80))
def test_value_parsers_only_raise_sip_parse_error(text: str) -> None:
    for parser in (Via.parse, NameAddr.parse, CSeq.parse, SipUri.parse):
        try:
            parser(text)
        except SipParseError:
            pass
