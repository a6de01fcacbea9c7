"""Webhooks (routing/records/webhook.py): the body, its signature, and POSTs to a real HTTP
server on loopback that checks the signature the way a customer's receiver would; refused
targets, errors, timeouts and redirects.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routing.records import webhook
from routing.records.mail import Notice
from routing.records.webhook import (
    SIGNATURE_HEADER,
    DeliveryError,
    backoff,
    new_secret,
    notice_payload,
    payload,
    post,
    sign,
    verify,
)
from routing.stack.ports import free_port

SECRET = "0f" * 32
AT = datetime(2026, 11, 25, 13, 30, 5, tzinfo=timezone(timedelta(hours=3)))
SHA = "ab" * 32


# --- body and signature -----------------------------------------------------------------


def test_payload_is_compact_sorted_json() -> None:
    body = payload(
        kind="voicemail",
        account="berry-demo",
        number="+74951234567",
        caller="+79031112233",
        call_id="ab2434d4d12d4ac4",
        at=AT,
        duration=8.6004,
        sha256=SHA,
        link="https://files.voffice.example/r/1",
    )
    assert body == (
        b'{"account":"berry-demo","at":"2026-11-25T13:30:05+03:00","call_id":"ab2434d4d12d4ac4",'
        b'"caller":"+79031112233","duration":8.6,"link":"https://files.voffice.example/r/1",'
        b'"number":"+74951234567","sha256":"' + SHA.encode() + b'","type":"voicemail","v":1}'
    )
    missed = json.loads(payload(kind="missed", account="a", number="n", caller="Пётр\n", call_id="c", at=AT))
    assert missed == {
        "account": "a",
        "at": "2026-11-25T13:30:05+03:00",
        "call_id": "c",
        "caller": "Пётр\n",
        "number": "n",
        "type": "missed",
        "v": 1,
    }
    with pytest.raises(ValueError):
        payload(kind="sms", account="a", number="n", caller="c", call_id="c", at=AT)
    with pytest.raises(ValueError):
        payload(kind="fax", account="a", number="n", caller="c", call_id="c", at=AT.replace(tzinfo=None))
    with pytest.raises(ValueError):
        payload(kind="fax", account="a", number="n", caller="c", call_id="c", at=AT, sha256="xyz")


def test_notice_payload() -> None:
    fax = Notice(
        kind="fax",
        account="berry-demo",
        number="+74951234567",
        caller="+79031112233",
        call_id="f1",
        at=AT,
        attachments="link",
        pages=3,
        duration_seconds=40.0,
        link="https://files.voffice.example/f1",
    )
    assert json.loads(notice_payload(fax, sha256=SHA)) == {
        "account": "berry-demo", "at": "2026-11-25T13:30:05+03:00", "call_id": "f1", "caller": "+79031112233",
        "link": "https://files.voffice.example/f1", "number": "+74951234567", "pages": 3, "sha256": SHA,
        "type": "fax", "v": 1,
    }  # fmt: skip
    kept = Notice(
        kind="voicemail",
        account="a",
        number="n",
        caller="c",
        call_id="v1",
        at=AT,
        attachments="none",
        duration_seconds=3.25,
        link="https://files.voffice.example/v1",
    )
    assert "link" not in json.loads(notice_payload(kept))  # the policy gives no link


def test_sign_matches_the_documented_construction() -> None:
    body = b'{"type":"missed"}'
    mac = hmac.new(b"k3y", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign(b"k3y", 1700000000, body) == f"t=1700000000,v1={mac}"
    assert verify(b"k3y", f"t=1700000000,v1={mac}", body, now=1700000000)
    assert verify(b"k3y", f"t=1700000000,v1={'0' * 64},v1={mac}", body, now=1700000000)  # rotation: any v1
    assert verify(b"k3y", f"t=1700000000, v1={mac}", body, now=1700000000 + 300)
    assert not verify(b"k3y", f"t=1700000000,v1={mac}", body, now=1700000000 + 301)  # too old: a replay
    assert not verify(b"k3y", f"t=1700000000,v1={mac}", body, now=1700000000 - 301)
    for bad in (
        "",
        "t=1700000000",
        f"v1={mac}",
        f"t=x,v1={mac}",
        f"t=1700000000,v1={mac.upper()}",
        f"t=1700000000,t=1700000000,v1={mac}",
        f"t=1700000000;v1={mac}",
        "garbage",
        f"t=1700000000,v1={mac}" * 20,
    ):
        assert not verify(b"k3y", bad, body, now=1700000000), bad


@settings(max_examples=300, deadline=None)
@given(
    secret=st.binary(min_size=1, max_size=64),
    body=st.binary(max_size=2048),
    timestamp=st.integers(min_value=0, max_value=4_000_000_000),
    data=st.data(),
)
def test_signatures_round_trip_and_any_byte_change_fails(
    secret: bytes, body: bytes, timestamp: int, data: st.DataObject
) -> None:
    header = sign(secret, timestamp, body)
    assert verify(secret, header, body, now=timestamp)
    if body:
        index = data.draw(st.integers(min_value=0, max_value=len(body) - 1))
        byte = data.draw(st.integers(min_value=0, max_value=255).filter(lambda b: b != body[index]))
        assert not verify(secret, header, body[:index] + bytes([byte]) + body[index + 1 :], now=timestamp)
    assert not verify(secret, header, body + b" ", now=timestamp)
    flip = data.draw(st.integers(min_value=0, max_value=len(secret) - 1))
    other = secret[:flip] + bytes([secret[flip] ^ 0x01]) + secret[flip + 1 :]
    assert not verify(other, header, body, now=timestamp)
    position = data.draw(st.integers(min_value=len(header) - 64, max_value=len(header) - 1))
    digit = data.draw(st.sampled_from("0123456789abcdef").filter(lambda c: c != header[position]))
    assert not verify(secret, header[:position] + digit + header[position + 1 :], body, now=timestamp)


def test_new_secret() -> None:
    secrets = {new_secret() for _ in range(20)}
    assert len(secrets) == 20
    assert all(len(s) == 64 and int(s, 16) >= 0 for s in secrets)


def test_backoff() -> None:
    delays = [backoff(n, seed="call-1") for n in range(1, 16)]
    assert delays == [backoff(n, seed="call-1") for n in range(1, 16)]  # deterministic with a seed
    assert delays != [backoff(n, seed="call-2") for n in range(1, 16)]
    for attempt, delay in enumerate(delays, start=1):
        nominal = min(3600.0, 5.0 * 2 ** (attempt - 1))
        assert 0.9 * nominal <= delay <= nominal
    assert 4.5 <= delays[0] <= 5 and 9 <= delays[1] <= 10 and 18 <= delays[2] <= 20
    assert delays[-1] <= 3600 and backoff(10_000, seed=1) <= 3600
    assert all(a < b for a, b in itertools.pairwise(delays[:10]))  # grows until the cap (1 h)
    with pytest.raises(ValueError):
        backoff(0)


# --- a real receiver --------------------------------------------------------------------


@dataclass
class Receiver:
    """What a customer's endpoint saw: per request the path, headers, body and whether the
    signature verified."""

    port: int
    scheme: str = "http"
    requests: list[dict[str, object]] = field(default_factory=list)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            receiver.requests.append({
                "path": self.path,
                "headers": dict(self.headers),
                "body": body,
                "verified": verify(SECRET.encode(), self.headers.get(SIGNATURE_HEADER, ""), body, now=time.time()),
            })  # fmt: skip
            if self.path.startswith("/slow"):
                time.sleep(1.5)
            if self.path.startswith("/redirect"):
                self.send_response(302)
                self.send_header("Location", receiver.url("/ok"))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 500 if self.path.startswith("/fail") else 204 if self.path.startswith("/ok") else 404
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


def _serve(server: ThreadingHTTPServer) -> Iterator[None]:
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def http_receiver() -> Iterator[Receiver]:
    found = Receiver(free_port())
    server = ThreadingHTTPServer(("127.0.0.1", found.port), _handler(found))
    for _ in _serve(server):
        yield found


@dataclass(frozen=True)
class Tls:
    cert: Path
    key: Path

    def client(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return Tls(cert, key)


@pytest.fixture
def https_receiver(tls: Tls) -> Iterator[Receiver]:
    found = Receiver(free_port(), scheme="https")
    server = ThreadingHTTPServer(("127.0.0.1", found.port), _handler(found))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls.cert, tls.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    for _ in _serve(server):
        yield found


BODY = payload(
    kind="voicemail",
    account="berry-demo",
    number="+74951234567",
    caller="+79031112233",
    call_id="ab2434d4d12d4ac4",
    at=AT,
    duration=8.6,
    sha256=SHA,
)


def assert_clean(error: DeliveryError) -> str:
    text = str(error)
    assert "\n" not in text and SECRET not in text
    return text


def test_post_delivers_a_signed_body(http_receiver: Receiver) -> None:
    status = post(http_receiver.url("/ok"), BODY, SECRET, allow_private=True)
    assert status == 204
    [request] = http_receiver.requests
    assert request["verified"] is True
    assert request["body"] == BODY
    headers = request["headers"]
    assert isinstance(headers, dict)
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"].startswith("voffice")
    assert headers[SIGNATURE_HEADER].startswith("t=")


def test_post_signs_with_the_given_time(http_receiver: Receiver) -> None:
    then = time.time() - 3600
    post(http_receiver.url("/ok"), BODY, SECRET, allow_private=True, now=then)
    [request] = http_receiver.requests
    assert request["verified"] is False  # an hour old: the receiver refuses a replay
    headers = request["headers"]
    assert isinstance(headers, dict)
    assert verify(SECRET.encode(), headers[SIGNATURE_HEADER], BODY, now=then)


def test_post_over_https_checks_the_certificate(https_receiver: Receiver, tls: Tls) -> None:
    # "localhost": the connection goes to the checked address, the certificate is checked
    # against the name.
    assert (
        post(https_receiver.url("/ok", host="localhost"), BODY, SECRET, allow_private=True, ssl_context=tls.client())
        == 204
    )
    assert [r["verified"] for r in https_receiver.requests] == [True]
    with pytest.raises(DeliveryError) as raised:  # the system's CAs do not know this certificate
        post(https_receiver.url("/ok", host="localhost"), BODY, SECRET, allow_private=True)
    assert "certificate" in assert_clean(raised.value)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "127.1", "[::ffff:127.0.0.1]"])
def test_loopback_is_refused_unless_allowed(http_receiver: Receiver, host: str) -> None:
    with pytest.raises(DeliveryError) as raised:
        post(http_receiver.url("/ok", host=host), BODY, SECRET)
    text = assert_clean(raised.value)
    assert "loopback" in text or "local host" in text or "numeric" in text, text
    assert http_receiver.requests == []


def test_every_resolved_address_is_checked() -> None:
    """The names a URL check lets through are resolved at send time and each address
    checked: here names that resolve to loopback (a customer's DNS can answer that too)."""
    for host in ("localhost", "127.0.0.1", "::1"):
        with pytest.raises(DeliveryError, match="refused, the host points at a loopback address"):
            webhook._resolve(host, 80, False, "webhook")
        assert webhook._resolve(host, 80, True, "webhook")  # allowed in tests


def test_non_2xx_is_a_delivery_error(http_receiver: Receiver) -> None:
    for path, expected in (("/fail?token=hunter2", "HTTP 500"), ("/missing/hunter2", "HTTP 404")):
        with pytest.raises(DeliveryError) as raised:
            post(http_receiver.url(path), BODY, SECRET, allow_private=True)
        text = assert_clean(raised.value)
        assert expected in text and "hunter2" not in text  # neither query nor path: they may be secret
    assert len(http_receiver.requests) == 2


def test_redirects_are_not_followed(http_receiver: Receiver) -> None:
    with pytest.raises(DeliveryError) as raised:
        post(http_receiver.url("/redirect"), BODY, SECRET, allow_private=True)
    assert "HTTP 302 redirect, not followed" in assert_clean(raised.value)
    assert [r["path"] for r in http_receiver.requests] == ["/redirect"]


def test_timeout_is_a_delivery_error(http_receiver: Receiver) -> None:
    started = time.monotonic()
    with pytest.raises(DeliveryError) as raised:
        post(http_receiver.url("/slow"), BODY, SECRET, allow_private=True, timeout=0.3)
    assert "timed out after 0.3 s" in assert_clean(raised.value)
    assert time.monotonic() - started < 1.4


def test_connection_refused_is_a_delivery_error() -> None:
    with pytest.raises(DeliveryError) as raised:
        post(f"http://127.0.0.1:{free_port()}/ok", BODY, SECRET, allow_private=True, timeout=2)
    assert "connection failed" in assert_clean(raised.value)


def test_a_server_that_hangs_up_is_a_delivery_error() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", free_port()))
        listener.listen(1)
        port = listener.getsockname()[1]

        def hang_up() -> None:
            conn, _ = listener.accept()
            conn.recv(65536)
            conn.close()

        thread = threading.Thread(target=hang_up, daemon=True)
        thread.start()
        with pytest.raises(DeliveryError) as raised:
            post(f"http://127.0.0.1:{port}/ok", BODY, SECRET, allow_private=True, timeout=2)
        thread.join(2)
    assert "closed the connection" in assert_clean(raised.value)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "http://user:hunter2@example.com/hook",
        "http://example.com:99999/hook",
        "https://example.com/hook#frag",
        "http:///hook",
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[fe80::1]/hook",
        "http://metadata.google.internal/hook",
        "http://example.com/a b",
        "http://example.com/\r\nX: y",
    ],
)
def test_bad_urls_are_delivery_errors(url: str) -> None:
    with pytest.raises(DeliveryError) as raised:
        post(url, BODY, SECRET, timeout=1)
    text = assert_clean(raised.value)
    assert text.startswith("webhook url ") and "hunter2" not in text


def test_unresolvable_host_is_a_delivery_error() -> None:
    with pytest.raises(DeliveryError, match="cannot resolve"):
        post("http://no-such-host.invalid/hook", BODY, SECRET, timeout=1)
