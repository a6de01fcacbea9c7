"""Fuzz targets shared by tests/test_fuzz.py (a moderate number of examples each, in the
suite) and bench/fuzz.py (many more, with counts and times).

A target is a Hypothesis strategy of inputs and a check that runs one input through the code
under test. Every check asserts what must hold for *every* input: a parser returns a value
or raises its one documented error (SipParseError, SdpError, RtpError, ValueError for a
telephone-event payload, ContractError), never anything else; what it returns is sane
(re-serialises and re-parses to the same value, matches its pattern); and an account
document is either reported with problems or, when it is clean, can be loaded and every
step of every scenario turned into the SIP it would send (R-URIs and X-VO-Op headers).

The inputs are half random, half near-valid: mutations of the examples/ documents, of the
RFC 4475 torture messages, of valid SDP offers and X-VO-Op headers, because uniformly
random bytes rarely get past a parser's first check.
"""

from __future__ import annotations

import atexit
import copy
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgpack
from click.testing import CliRunner
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from routing.cli.console import main as voffice_cli
from routing.core.compiler import compile_account
from routing.core.diff import summarize
from routing.core.engine import CompiledAccount, decide
from routing.core.media_contract import CALL_ID, ContractError, decode_op, decode_result, encode_op, encode_result
from routing.core.numbers import (
    E164,
    NATIONAL_FORMS,
    PATTERN,
    compile_patterns,
    did_candidates,
    pattern_matches,
    pattern_problem,
    to_e164,
)
from routing.core.problems import ERROR, WARNING, Problem, has_errors
from routing.core.scenario import Cursor
from routing.core.validation import validate_document, validate_paths
from routing.proxy.call_step import MediaStep, RingWaves, action_for, operator_uri
from voffice_media.dtmf import DIGITS, Rfc4733Detector, TelephoneEvent
from voffice_media.rtp import RtpError, RtpPacket
from voffice_media.sdp import SdpError, answer, negotiate, parse_offer
from voffice_media.sipmsg import CSeq, NameAddr, Request, Response, SipParseError, SipUri, Via, parse
from voffice_media.uas import UAS, IncomingCall, Send

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.json"))
RFC4475 = sorted((Path(__file__).resolve().parent / "data" / "rfc4475").glob("*.dat"))


@dataclass(frozen=True)
class Target:
    name: str
    what: str  # the code under test, for reports
    strategy: st.SearchStrategy[Any]
    check: Callable[[Any], bool]  # True: the input got through (parsed, clean); False: refused as documented
    suite_examples: int  # examples in tests/test_fuzz.py (the whole file stays well under 40 s)


def run(target: Target, examples: int, on_input: Callable[[Any], object] | None = None, *,
        shrink: bool = True, database: bool = True) -> None:
    """Run `target` for `examples` examples with Hypothesis. `on_input` (bench/fuzz.py) sees
    each input instead of `target.check`: it counts and catches failures itself."""
    check = on_input or target.check
    phases = [Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if shrink else [])
    kwargs: dict[str, Any] = {} if database else {"database": None}

    @settings(max_examples=examples, deadline=None, phases=phases, suppress_health_check=list(HealthCheck), **kwargs)
    @given(target.strategy)
    def fuzz(value: Any) -> None:
        check(value)

    fuzz()


# ============================================================================ helpers


def _mutate_bytes(data: st.DataObject, raw: bytes, alphabet: bytes) -> bytes:
    """A few byte-level edits: overwrite, insert, delete or duplicate a span, truncate."""
    out = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 6), label="edits")):
        if not out:
            out += data.draw(st.binary(min_size=1, max_size=8))
            continue
        i = data.draw(st.integers(0, len(out) - 1), label="at")
        op = data.draw(st.sampled_from(["set", "insert", "delete", "dup", "truncate", "random"]), label="op")
        if op == "set":
            out[i] = data.draw(st.sampled_from(alphabet))
        elif op == "insert":
            out[i:i] = bytes(data.draw(st.lists(st.sampled_from(alphabet), min_size=1, max_size=4)))
        elif op == "delete":
            del out[i : i + data.draw(st.integers(1, 16))]
        elif op == "dup":
            span = bytes(out[i : i + data.draw(st.integers(1, 64))])
            out[i:i] = span * data.draw(st.integers(1, 3))
        elif op == "truncate":
            del out[i:]
        else:
            out[i : i + 1] = data.draw(st.binary(min_size=1, max_size=8))
    return bytes(out)


# ============================================================================ config documents


def _strings(value: Any, keys_only: bool = False) -> Iterator[str]:
    """Every key and (unless `keys_only`) every string value of a JSON document."""
    if isinstance(value, str):
        if not keys_only:
            yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item, keys_only)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item, keys_only)


BASE_DOCUMENTS = [json.loads(path.read_text(encoding="utf-8")) for path in EXAMPLES]
# Strings that mean something somewhere in a document (ids, numbers, times, zones), and
# the usual troublemakers: a trailing newline (a JSON Schema `$` lets it through), control
# and separator characters, header syntax, path traversal, huge and empty values.
TROUBLE_STRINGS = [
    "", " ", "\n", "\r\n", "\t", "\x00", "\x7f", "\x9b", "\u2028", "\ufeff", "é", "😀", "a" * 300,
    "+74951234567\n", "+74951234567 ", " +74951234567", "+7495123456789012", "+0123456", "+", "74951234567",
    "sip:a@b", "sip:op@127.0.0.1:5080", "sip:op@host;transport=tcp", "sip:op@host\r\nVia: x", "sip:@h", "tel:+7495",
    "00:00", "24:00", "23:59", "24:01", "25:00", "9:00", "12:60", "-1:00", "2026-02-29", "2024-02-29",
    "2026-13-01", "2026-12-31", "0000-01-01", "9999-12-31", "Europe/Moscow", "America/New_York", "UTC",
    "Mars/Olympus", "Etc/GMT+14", "RU", "US", "DE", "XX", "ru", "*", "+7?*", "+7495*", "+*", "+??????????????????",
    "../x.wav", "/etc/passwd", "a;b", "a,b", "a=b", "key=1", "0", "#", "*0#", "12", "1234567890123",
    "working", "weekend", "holiday", "monday", "sunday", "priority", "simultaneous", "sequential",
    "round_robin", "random", "menu", "extension", "group", "voicemail", "fax",
]
DOC_STRINGS = [*sorted({s for doc in BASE_DOCUMENTS for s in _strings(doc)}), *TROUBLE_STRINGS]

FIELD_NAMES = sorted({k for doc in BASE_DOCUMENTS for k in _strings(doc, keys_only=True)} | {"keys", "next", "enabled", "subdivision", "file", "text", "repeat_key", "max_repeats", "inter_digit_timeout", "max_seconds", "weekdays"})

_json_scalars = (
    st.none()
    | st.booleans()
    | st.sampled_from([0, 1, 2, 3, 6, 7, 16, 17, 60, 100, 1000, 1001, -1, 2**31, 2**63, 2**64, 10**30, 0.5, 1.0, -0.0, 1e308])
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(DOC_STRINGS)
    | st.text(max_size=20)
)
JSON_VALUES = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)

Path_ = tuple[str | int, ...]


def _paths(value: Any, here: Path_ = ()) -> Iterator[Path_]:
    yield here
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*here, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*here, index))


def _get(doc: Any, path: Path_) -> Any:
    for part in path:
        doc = doc[part]
    return doc


@st.composite
def mutated_documents(draw: st.DrawFn) -> Any:
    """An example document with 1-4 mutations at random JSON pointers: a random JSON value
    put in place, a key or element deleted, one added, two values swapped, a string or
    number replaced by a telling one."""
    doc = copy.deepcopy(draw(st.sampled_from(BASE_DOCUMENTS), label="base"))
    for _ in range(draw(st.integers(1, 4), label="mutations")):
        paths = list(_paths(doc))
        path = draw(st.sampled_from(paths), label="pointer")
        op = draw(st.sampled_from(["replace", "delete", "insert", "swap", "string", "number", "copy"]), label="op")
        if op == "replace" and (path or draw(st.integers(0, 20)) == 0):
            if not path:
                doc = draw(JSON_VALUES)
                continue
            _get(doc, path[:-1])[path[-1]] = draw(JSON_VALUES)
        elif op == "delete" and path:
            del _get(doc, path[:-1])[path[-1]]
        elif op == "insert":
            node = _get(doc, path)
            if isinstance(node, dict):
                node[draw(st.sampled_from(FIELD_NAMES) | st.text(max_size=8))] = draw(JSON_VALUES)
            elif isinstance(node, list):
                where = draw(st.integers(0, len(node)))
                item = copy.deepcopy(draw(st.sampled_from(node))) if node and draw(st.booleans()) else draw(JSON_VALUES)
                node.insert(where, item)
        elif op == "swap" and path:
            other = draw(st.sampled_from([p for p in paths if p and p[: len(path)] != path and path[: len(p)] != p] or [path]))
            if other != path:
                a, b = _get(doc, path), _get(doc, other)
                _get(doc, path[:-1])[path[-1]] = copy.deepcopy(b)
                _get(doc, other[:-1])[other[-1]] = copy.deepcopy(a)
        elif op == "string":
            leaves = [p for p in paths if p and isinstance(_get(doc, p), str)]
            if leaves:
                leaf = draw(st.sampled_from(leaves))
                old = _get(doc, leaf)
                new = draw(st.sampled_from(DOC_STRINGS) | st.sampled_from([old + "\n", old + " ", " " + old, old * 2, old[:-1], old.upper()]) | st.text(max_size=12))
                _get(doc, leaf[:-1])[leaf[-1]] = new
        elif op == "number":
            leaves = [p for p in paths if p and isinstance(_get(doc, p), int | float) and not isinstance(_get(doc, p), bool)]
            if leaves:
                leaf = draw(st.sampled_from(leaves))
                _get(doc, leaf[:-1])[leaf[-1]] = draw(st.sampled_from([0, -1, 1, 2, 7, 99, 10**9, 2**63, 1.5, 3.0, True, "3"]) | st.integers())
        elif op == "copy" and path:
            # the same id, number or extension twice; a value where a sibling expects another
            source = draw(st.sampled_from(paths))
            if source and source[: len(path)] != path and path[: len(source)] != source:
                _get(doc, path[:-1])[path[-1]] = copy.deepcopy(_get(doc, source))
    return doc


INSTANTS = [
    datetime(2026, 11, 25, 10, 30, tzinfo=UTC),  # a Wednesday
    datetime(2026, 11, 28, 10, 0, tzinfo=UTC),  # a Saturday
    datetime(2026, 12, 31, 21, 30, tzinfo=UTC),  # new year's eve/day, somewhere
    datetime(2026, 3, 8, 7, 30, tzinfo=UTC),  # a DST change in the US
]
CALLERS = ["+79031112233", "84957654321", "+12125550100", "anonymous", None]


def check_document(doc: Any) -> bool:
    """validate_document reports problems (never raises); a clean document loads the way
    `voffice load` and the workers load it, and every step of every scenario becomes the
    SIP it would send without an error: the validator let nothing through that breaks later."""
    problems = validate_document(doc, "fuzz.json")
    assert isinstance(problems, list)
    for p in problems:
        assert isinstance(p, Problem) and p.severity in (ERROR, WARNING) and p.message
        assert p.pointer == "" or p.pointer.startswith("/"), p
        p.line()
    if has_errors(problems):
        return False
    compiled = compile_account(doc)
    json.dumps(doc, ensure_ascii=False)  # the stored source
    summarize(None, doc)
    for base in BASE_DOCUMENTS:
        if base.get("account") == doc.get("account"):
            summarize(base, doc)
    # store.apply_load -> Redis -> reader: msgpack both ways, then the engine's object
    plain = msgpack.unpackb(msgpack.packb(compiled, use_bin_type=True), raw=False)
    account = CompiledAccount(plain)
    number = doc["numbers"][0]
    for at in INSTANTS:
        for caller in CALLERS:
            decision = decide(account, number, caller, at)
            assert decision.scenario in plain["scenarios"]
    extensions = [op_id for op_id, op in plain["operators"].items() if op["extension"]]
    for node in range(len(plain["nodes"])):
        cursors = [Cursor(node)]
        if plain["operations"][plain["nodes"][node][0]]["type"] == "extension":
            cursors += [Cursor(node, ringing=op_id) for op_id in extensions]
        for cursor in cursors:
            for caller in ("+79031112233", None):
                action = action_for(plain, 1, cursor, number, caller, seed="fuzz")
                if isinstance(action, MediaStep):
                    header = encode_op(action.op)  # ContractError here: a valid config that cannot reach the media server
                    assert decode_op(header) == {k: str(v) for k, v in action.op.items()}
                else:
                    assert isinstance(action, RingWaves)
                    for wave in action.waves:
                        for ring in wave:
                            operator_uri(ring["phone"], "127.0.0.1:5080")
    return True


@st.composite
def config_files(draw: st.DrawFn) -> bytes:
    """What someone may hand `voffice validate`: random bytes or text, or a mutated
    document's JSON with byte-level damage (truncation, duplicate keys, NaN, a BOM...)."""
    kind = draw(st.sampled_from(["bytes", "text", "json", "damaged"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "text":
        return draw(st.text(max_size=200)).encode("utf-8", "surrogatepass")
    text = json.dumps(draw(mutated_documents()), ensure_ascii=draw(st.booleans()), indent=draw(st.sampled_from([None, 2])))
    raw = text.encode("utf-8")
    if kind == "json":
        return raw
    trouble = draw(st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b'"account": "x", ', b"\xef\xbb\xbf", b"\xff", b"{", b"]", b",", b"\x00", b"1e999"]))
    at = draw(st.integers(0, len(raw)))
    damaged = raw[:at] + trouble + raw[at:]
    return damaged[: draw(st.integers(0, len(damaged)))] if draw(st.booleans()) else damaged


_FILES = Path(tempfile.mkdtemp(prefix="voffice-fuzz-"))
atexit.register(shutil.rmtree, _FILES, ignore_errors=True)


def check_config_file(raw: bytes) -> bool:
    """`voffice validate FILE` on any bytes: problems with the file's name, or a clean
    result; the CLI exits 0 or 1 (the documented user error), never with a traceback."""
    path = _FILES / "account.json"
    path.write_bytes(raw)
    result = validate_paths([str(path)])
    for p in result.problems:
        assert isinstance(p, Problem) and p.file == str(path) and p.message, p
    assert result.ok == (len(result.documents) == 1)
    for _file, doc in result.documents:
        check_document(doc)
    cli = CliRunner().invoke(voffice_cli, ["validate", str(path)])
    assert cli.exit_code == (0 if result.ok else 1), (cli.exit_code, cli.output)
    assert cli.exception is None or isinstance(cli.exception, SystemExit), repr(cli.exception)
    return result.ok


# ============================================================================ SIP


def _wire(path: Path) -> bytes:
    raw = path.read_bytes()
    return raw if b"\r" in raw else raw.replace(b"\n", b"\r\n")


TORTURE = [_wire(p) for p in RFC4475]
SIP_ALPHABET = b'\r\n :;,<>"\\=@/.%?&+-_~*!\'`()[]{}\t\x00\x7f\x80\xff\xc3aZ09'


@st.composite
def sip_datagrams(draw: st.DrawFn) -> bytes:
    """A torture message with byte edits, two messages spliced, or random bytes."""
    kind = draw(st.sampled_from(["mutated", "mutated", "mutated", "spliced", "random"]))
    if kind == "random":
        return draw(st.binary(max_size=400))
    data = draw(st.data())
    raw = draw(st.sampled_from(TORTURE))
    if kind == "spliced":
        other = draw(st.sampled_from(TORTURE))
        raw = raw[: draw(st.integers(0, len(raw)))] + other[draw(st.integers(0, len(other))) :]
    return _mutate_bytes(data, raw, SIP_ALPHABET)


def check_sip(data: bytes) -> bool:
    """sipmsg.parse raises only SipParseError; what it parses re-serialises stably, and the
    header-value parsers on its headers raise only SipParseError."""
    try:
        message = parse(data)
    except SipParseError:
        return False
    assert isinstance(message, Request | Response)
    stable = message.serialize()
    assert parse(stable).serialize() == stable
    headers = message.headers
    for name, parser in (("Via", Via.parse), ("From", NameAddr.parse), ("To", NameAddr.parse),
                         ("Contact", NameAddr.parse), ("CSeq", CSeq.parse)):
        for value in headers.values(name):
            try:
                parser(value)
            except SipParseError:
                pass
    if isinstance(message, Request):
        try:
            SipUri.parse(message.uri)
        except SipParseError:
            pass
    return True


ALLOWED = ("10.0.0.1", 5060)  # "Kamailio"


def check_uas(data: bytes) -> bool:
    """The media server's UAS (the code behind its socket) takes any datagram, from Kamailio
    or from elsewhere, and its timers, without raising; all it sends are SIP responses
    (or a BYE of its own), to a port that exists."""
    uas = UAS(("10.0.0.5", 5070), {ALLOWED[0]})
    actions = uas.receive(data, ALLOWED, 0.0) + uas.receive(data, ALLOWED, 0.1) + uas.receive(data, ("192.0.2.66", 5060), 0.2)
    for call in [a for a in actions if isinstance(a, IncomingCall)]:  # the server rejects it, as for a bad X-VO-Op
        actions += uas.reject(call.call_id, 400, "Bad X-VO-Op")
    for step in range(1, 70):
        actions += uas.tick(step * 0.5)
    for action in actions:
        if isinstance(action, Send):
            host, port = action.addr
            assert isinstance(host, str) and 0 < port < 65536, action.addr
            sent = parse(action.data)
            assert isinstance(sent, Response) or sent.method == "BYE", sent
    return any(isinstance(a, Send) for a in actions)


# ============================================================================ SDP

SDP_OFFERS = [
    b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0 8 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n",
    b"v=0\r\no=- 2 2 IN IP6 ::1\r\ns=-\r\nt=0 0\r\nm=video 4000 RTP/AVP 31\r\nc=IN IP6 ::1\r\n"
    b"m=audio 4002 RTP/AVP 18 8\r\nc=IN IP4 192.0.2.4\r\na=sendonly\r\n",
    b"v=0\no=mhandley 29739 7272939 IN IP4 192.0.2.3\ns=-\nc=IN IP4 192.0.2.4\nt=0 0\nm=audio 49217 RTP/AVP 0 12\n"
    b"m=video 3227 RTP/AVP 31\na=rtpmap:31 LPC\n",
    b"v=0\r\ns=-\r\nc=IN IP4 10.1.1.1/127\r\nm=audio 0 RTP/AVP 0\r\nm=audio 5004/2 RTP/SAVP 8\r\nm=audio 5006 RTP/AVP 96\r\n"
    b"a=rtpmap:96 PCMA/8000/1\r\na=recvonly\r\n",
]
SDP_LINES = [b"v=0", b"c=IN IP4 10.0.0.9", b"c=IN IP6 2001:db8::1", b"c=IN IP4 999.1.1.1", b"c=IN IP4 host.example",
             b"m=audio 1 RTP/AVP 0", b"m=audio 65536 RTP/AVP 0", b"m=audio 5000 RTP/AVP", b"m=audio 5000 RTP/AVP 128",
             b"m=audio 5000 udp 0", b"a=rtpmap:0 PCMU/8000", b"a=rtpmap:8 pcma/8000/2", b"a=rtpmap:101 telephone-event/8000",
             b"a=rtpmap:x y", b"a=fmtp:101 0-16", b"a=ptime:0", b"a=ptime:1001", b"a=ptime:30", b"a=inactive",
             b"a=recvonly", b"b=AS:64", b"x", b"", b"=", b"a=", b"m=", b"m=audio 5000 RTP/AVP 0 " + b"8 " * 40]


SDP_FAULTS = {  # one thing wrong with an otherwise good offer: (what, a bad value)
    "address": ["IN IP4 300.1.1.1", "IN IP4 host.example", "IN IP4", "IN IP7 1.2.3.4", "IN IP4 10.0.0.1 x"],
    "port": ["0", "65536", "99999", "-1", "5004/2"],
    "proto": ["RTP/SAVP", "rtp/avp", "udptl", "RTP/AVPF", "TCP/RTP/AVP"],
    "media": ["video", "image", "Audio", "audio\t"],
    "format": ["128", "x", "", "0 ", "1000"],
    "rtpmap": ["0 PCMU/x", "x PCMU/8000", "0 PCMU", "0 PCMA/8000/2", "0 opus/48000/2"],
    "ptime": ["0", "x", "1001", ""],
    "fmtp": ["x", "101", ""],
}


@st.composite
def _offer(draw: st.DrawFn) -> bytes:
    """An offer built line by line: good, or with one fault (a bad address, port, profile,
    payload type, rtpmap, ptime...), with its audio line anywhere among up to three."""
    fault = draw(st.sampled_from([None, None, None, *sorted(SDP_FAULTS)]))
    bad = draw(st.sampled_from(SDP_FAULTS[fault])) if fault else ""
    good_address = draw(st.sampled_from(["IN IP4 10.0.0.1", "IN IP4 192.0.2.4/127", "IN IP6 ::1", "IN IP6 2001:db8::9"]))
    session_c = draw(st.booleans())
    lines = ["v=0", f"o=- {draw(st.integers(0, 2**40))} 1 IN IP4 10.0.0.1", "s=-"]
    if session_c:
        lines.append("c=" + (bad if fault == "address" else good_address))
    lines.append("t=0 0")
    if draw(st.booleans()):
        lines.append("a=" + draw(st.sampled_from(["sendrecv", "sendonly", "recvonly", "inactive"])))
    count = draw(st.integers(1, 3))
    audio = draw(st.integers(0, count - 1))
    for i in range(count):
        is_audio = i == audio
        media = (bad if fault == "media" else "audio") if is_audio else draw(st.sampled_from(["video", "audio", "image"]))
        port = bad if fault == "port" and is_audio else str(draw(st.sampled_from([5004, 40000, 65535, 1])))
        proto = bad if fault == "proto" and is_audio else "RTP/AVP"
        formats = draw(st.lists(st.sampled_from(["0", "8", "18", "96", "101", "3", "9", "127"]), min_size=1, max_size=4, unique=True))
        if is_audio and fault != "format":
            formats.insert(draw(st.integers(0, len(formats))), draw(st.sampled_from(["0", "8"])))
        if fault == "format" and is_audio:
            formats.append(bad)
        lines.append(f"m={media} {port} {proto} {' '.join(formats)}")
        if not session_c or draw(st.integers(0, 3)) == 0:
            lines.append("c=" + (bad if fault == "address" and is_audio else good_address))
        if draw(st.booleans()):
            lines.append("a=rtpmap:101 telephone-event/8000")
        if draw(st.booleans()):
            lines.append("a=rtpmap:8 PCMA/8000")
        if fault == "rtpmap" and is_audio:
            lines.append(f"a=rtpmap:{bad}")
        if fault == "ptime" and is_audio:
            lines.append(f"a=ptime:{bad}")
        elif draw(st.booleans()):
            lines.append(f"a=ptime:{draw(st.sampled_from([10, 20, 30, 60]))}")
        if fault == "fmtp" and is_audio:
            lines.append(f"a=fmtp:{bad}")
        if draw(st.booleans()):
            lines.append("a=" + draw(st.sampled_from(["sendrecv", "sendonly", "recvonly", "inactive", "maxptime:40", "fmtp:101 0-15"])))
    return draw(st.sampled_from(["\r\n", "\n"])).join(lines).encode() + b"\r\n"


@st.composite
def sdp_bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["built", "built", "lines", "mutated", "random"]))
    if kind == "random":
        return draw(st.binary(max_size=300))
    if kind == "built":
        return draw(_offer())
    if kind == "lines":
        lines = [b"v=0", *draw(st.lists(st.sampled_from(SDP_LINES) | st.binary(max_size=20), max_size=12))]
        return draw(st.sampled_from([b"\r\n", b"\n"])).join(lines) + b"\r\n"
    return _mutate_bytes(draw(st.data()), draw(st.sampled_from(SDP_OFFERS)), b"\r\n =:/0123456789aAmcv\x00\xff")


def check_sdp(body: bytes) -> bool:
    """parse_offer and negotiate raise only SdpError; an offer we can negotiate gets an
    answer that is itself SDP we parse, with our address, port and chosen codec."""
    try:
        offer = parse_offer(body)
        chosen = negotiate(offer)
    except SdpError:
        return False
    assert chosen.codec.name in ("PCMU", "PCMA") and 0 <= chosen.remote[1] <= 65535
    reply = answer(offer, "127.0.0.1", 40000, 12345)
    parsed = parse_offer(reply)
    assert len(parsed.media) == len(offer.media)
    ours = negotiate(parsed)
    assert ours.remote == ("127.0.0.1", 40000) and ours.codec.payload_type == chosen.codec.payload_type
    return True


# ============================================================================ RTP and DTMF


@st.composite
def rtp_datagrams(draw: st.DrawFn) -> bytes:
    """Random bytes, or a header built field by field (CSRC list, extension, padding) whose
    lengths are right or slightly off."""
    if draw(st.integers(0, 3)) == 0:
        return draw(st.binary(max_size=200))
    padding, extension, count = draw(st.booleans()), draw(st.booleans()), draw(st.sampled_from([0, 0, 1, 2, 15]))
    version = draw(st.sampled_from([2, 2, 2, 2, 0, 1, 3]))
    first = version << 6 | padding << 5 | extension << 4 | count
    out = bytes([first, draw(st.integers(0, 255))]) + draw(st.binary(min_size=10, max_size=10))
    out += draw(st.binary(min_size=4 * count, max_size=4 * count + 2))
    if extension:
        words = draw(st.integers(0, 4))
        out += draw(st.integers(0, 0xFFFF)).to_bytes(2, "big") + words.to_bytes(2, "big")
        out += draw(st.binary(min_size=max(0, 4 * words - draw(st.sampled_from([0, 0, 0, 1, 4]))), max_size=4 * words))
    out += draw(st.binary(max_size=172))
    if padding:
        size = draw(st.integers(0, 8))
        out += bytes(max(0, size - 1)) + bytes([draw(st.sampled_from([size, size, 0, 255]) if size else st.integers(0, 255))])
    return out


def check_rtp(data: bytes) -> bool:
    """RtpPacket.parse raises only RtpError; a parsed packet serialises and parses back to itself."""
    try:
        packet = RtpPacket.parse(data)
    except RtpError:
        return False
    assert RtpPacket.parse(packet.serialize()) == packet
    return True


_event_packets = st.builds(
    lambda pt, seq, ts, marker, payload: RtpPacket(pt, seq, ts, 0x1234, payload, marker),
    st.sampled_from([101, 101, 101, 0, 96]),
    st.integers(0, 0xFFFF),
    st.sampled_from([0, 160, 320, 0xFFFFFF60, 0xFFFFFFFF]) | st.integers(0, 0xFFFFFFFF),
    st.booleans(),
    st.binary(max_size=8) | st.builds(lambda e, f, d: bytes([e, f]) + d.to_bytes(2, "big"),
                                      st.integers(0, 20) | st.integers(0, 255), st.integers(0, 255), st.integers(0, 0xFFFF)),
)


def _press_sequence(draw: st.DrawFn) -> list[RtpPacket]:
    """A key press the way phones send it (start, updates, three ends), then shuffled a bit."""
    seq, ts, event = draw(st.integers(0, 0xFFFF)), draw(st.integers(0, 0xFFFFFFFF)), draw(st.integers(0, 15))
    out = []
    for i, (end, duration) in enumerate([(False, 160), (False, 320), (False, 480), (True, 640), (True, 640), (True, 640)]):
        payload = TelephoneEvent(event, end, 10, duration).serialize()
        out.append(RtpPacket(101, (seq + i) & 0xFFFF, ts, 0x1234, payload, i == 0))
    return out


@st.composite
def event_streams(draw: st.DrawFn) -> list[RtpPacket]:
    packets: list[RtpPacket] = []
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):
            packets += _press_sequence(draw)
        else:
            packets += draw(st.lists(_event_packets, max_size=12))
    if packets and draw(st.booleans()):
        packets = draw(st.permutations(packets))
    return packets


def check_dtmf(packets: list[RtpPacket]) -> bool:
    """TelephoneEvent.parse raises only ValueError and round-trips; the RFC 4733 detector takes
    any packet sequence and reports only DTMF keys, each packet at most one."""
    detector = Rfc4733Detector(101)
    digits = 0
    for packet in packets:
        try:
            event = TelephoneEvent.parse(packet.payload)
        except ValueError:
            pass
        else:
            assert TelephoneEvent.parse(event.serialize()) == event
        digit = detector.feed(packet)
        assert digit is None or (len(digit) == 1 and digit in DIGITS), digit
        if packet.payload_type != 101:
            assert digit is None
        digits += digit is not None
    return digits > 0


# ============================================================================ X-VO-Op, X-VO-Result

VALID_OPS = [
    "v=1;type=menu;account=berry-demo;version=3;op=menu;sound=menu-prompt;timeout=5;repeat=0;max_repeats=3;keys=12;number=+74951234567;caller=+79031112233",
    "v=1;type=extension;account=a;version=1;op=ext;timeout=5;digits=3;inter_digit=3;number=+74951234567;caller=anonymous",
    "v=1;type=voicemail;account=acme.corp_1;version=9999999999;op=vm;max_seconds=180",
    "v=1;type=announcement;account=A;version=1;op=x;keys=",
    "v=1;type=fax;account=a;version=2;op=fax;max_seconds=99999",
]
OP_ALPHABET = b"=;,:+-_.*#0123456789abcvtypnmkrs \t\r\n\x00\xc3\xa9"


OP_VALUES: dict[str, list[str]] = {
    "v": ["1"], "type": ["menu", "announcement", "extension", "voicemail", "fax"], "account": ["berry-demo", "A", "a.b_c-1"],
    "version": ["1", "3", "9999999999"], "op": ["menu", "vm", "ext"], "sound": ["menu-prompt", "x"],
    "timeout": ["1", "5", "999"], "inter_digit": ["3", "10"], "digits": ["1", "3", "9"], "repeat": ["0", "*", "#"],
    "max_repeats": ["0", "3", "99"], "keys": ["", "12", "0123456789*#"], "max_seconds": ["1", "180", "99999"],
    "number": ["+74951234567", "+1212555010"], "caller": ["+79031112233", "anonymous"],
}
BAD_VALUES = ["", "0", "01", "1.0", " 1", "1 ", "+7", "anonymous\r\nVia: x", "a;b", "a,b", "a=b", "\u0663", "1" * 11,
              "menu ", "-1", "x" * 65, "+7495123456789012", "٣"]


@st.composite
def op_headers(draw: st.DrawFn) -> str:
    """X-VO-Op values: built from valid fields (in any order, some left out, one value
    made bad, one field twice), valid headers with byte edits, or random text."""
    kind = draw(st.sampled_from(["built", "built", "mutated", "fields", "random"]))
    if kind == "random":
        return draw(st.text(max_size=120))
    if kind == "built":
        names = ["v", "type", "account", "version", "op", *draw(st.lists(st.sampled_from(sorted(OP_VALUES)), max_size=6, unique=True))]
        names = list(dict.fromkeys(draw(st.permutations(names))))
        if draw(st.integers(0, 3)) == 0:
            names.remove(draw(st.sampled_from(names)))
        fields = [(n, draw(st.sampled_from(OP_VALUES[n]))) for n in names]
        if fields and draw(st.integers(0, 2)) == 0:
            i = draw(st.integers(0, len(fields) - 1))
            fields[i] = (fields[i][0], draw(st.sampled_from(BAD_VALUES) | st.text(max_size=6)))
        if fields and draw(st.integers(0, 5)) == 0:
            fields.append(draw(st.sampled_from(fields)))
        text = ";".join(f"{k}={v}" for k, v in fields)
        return draw(st.sampled_from(["", " ", "\t"])) + text + draw(st.sampled_from(["", " ", ";", "\r\n"]))
    if kind == "fields":
        keys = st.sampled_from(["v", "type", "account", "version", "op", "sound", "timeout", "digits", "keys", "repeat",
                                "max_repeats", "max_seconds", "number", "caller", "inter_digit", "x", ""])
        values = st.sampled_from(["1", "0", "menu", "fax", "a", "+74951234567", "anonymous", "12", "*#", "99999", ""]) | st.text(max_size=8)
        return ";".join(f"{k}={v}" for k, v in draw(st.lists(st.tuples(keys, values), max_size=16)))
    raw = draw(st.sampled_from(VALID_OPS)).encode()
    return _mutate_bytes(draw(st.data()), raw, OP_ALPHABET).decode("utf-8", "replace")


def check_op(header: str) -> bool:
    """decode_op raises only ContractError; a decoded header re-encodes to the same fields and
    carries no character that could break a SIP header. decode_result never raises."""
    try:
        fields = decode_op(header)
    except ContractError:
        fields = {}
    else:
        encoded = encode_op(dict(fields))
        assert decode_op(encoded) == fields
        assert not any(c in encoded for c in "\r\n\x00,") and encoded.isascii(), encoded
    result = decode_result(header)
    if result is not None:
        assert encode_result(*result) == header.strip()
    CALL_ID.fullmatch(header)
    return bool(fields)


# ============================================================================ numbers

COUNTRIES = [None, *sorted(NATIONAL_FORMS), "XX", "ru", ""]
NUMBER_TEXT = st.text(alphabet="+0123456789 -().\t*?#x", max_size=24) | st.text(max_size=24) | st.sampled_from(
    ["+74951234567", "84951234567", "74951234567", "4951234567", "8104951234567", "0074951234567", "+1 (212) 555-0100",
     "0049301234567", "030 1234567", "+", "", "00", "810", "+0000000", "+999999999999999", "+9999999999999999",
     "\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669\u0660\u0661"])  # Arabic-Indic digits: str.isdigit() says yes


@st.composite
def number_inputs(draw: st.DrawFn) -> tuple[str, str | None, str]:
    return draw(NUMBER_TEXT), draw(st.sampled_from(COUNTRIES)), draw(st.text(alphabet="+0123456789?*", max_size=18))


def check_numbers(value: tuple[str, str | None, str]) -> bool:
    """to_e164 gives None or an E.164 number, and is idempotent; did_candidates gives distinct
    E.164 numbers; a caller-list pattern that its syntax accepts compiles and matches."""
    raw, country, pattern = value
    e164 = to_e164(raw, country)
    if e164 is not None:
        assert E164.fullmatch(e164) and e164.isascii(), e164
        assert to_e164(e164, country) == e164
    countries = tuple(c for c in COUNTRIES if c in NATIONAL_FORMS)
    candidates = did_candidates(raw, countries)
    assert len(set(candidates)) == len(candidates)
    assert all(E164.fullmatch(c) for c in candidates), candidates
    if PATTERN.fullmatch(pattern):
        problem = pattern_problem(pattern)
        assert problem is None or isinstance(problem, str)
        compile_patterns((pattern,))
        if e164 is not None:
            assert isinstance(pattern_matches(pattern, e164), bool)
        if problem is None and "*" not in pattern and "?" not in pattern:
            assert pattern_matches(pattern, pattern)
    return e164 is not None


# ============================================================================ the list

TARGETS = [
    Target("config-document", "routing.core.validation.validate_document (+ compile, msgpack, decide, action_for, encode_op)",
           mutated_documents(), check_document, 500),
    Target("config-file", "routing.core.validation.validate_paths and `voffice validate FILE`", config_files(), check_config_file, 250),
    Target("sip-parse", "voffice_media.sipmsg.parse and its header-value parsers", sip_datagrams(), check_sip, 800),
    Target("sip-uas", "voffice_media.uas.UAS.receive/tick (the media server's SIP side)", sip_datagrams(), check_uas, 300),
    Target("sdp", "voffice_media.sdp.parse_offer/negotiate/answer", sdp_bodies(), check_sdp, 800),
    Target("rtp", "voffice_media.rtp.RtpPacket.parse/serialize", rtp_datagrams(), check_rtp, 1000),
    Target("dtmf", "voffice_media.dtmf.TelephoneEvent.parse and Rfc4733Detector.feed", event_streams(), check_dtmf, 500),
    Target("x-vo-op", "routing.core.media_contract.decode_op/encode_op/decode_result", op_headers(), check_op, 1000),
    Target("numbers", "routing.core.numbers.to_e164/did_candidates and caller patterns", number_inputs(), check_numbers, 1000),
]
