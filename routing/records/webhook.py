"""Webhook notifications: a signed JSON POST to the customer's URL.

The body is compact JSON with sorted keys, so the bytes signed are the bytes sent and a
receiver in any language can check them. The signature (header `X-Voffice-Signature`) is
`t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`: the time inside the MAC stops
an old request being replayed later (`verify` takes `tolerance` seconds of skew), and several
`v1=` may be given while a secret is rotated. The key is the secret's text as UTF-8 (what
`new_secret` returns is what the customer pastes into the receiver).

The URL is the customer's, but the request leaves from inside the carrier's network, so
`post` resolves the host itself, refuses it if any address it resolves to is loopback,
private, link-local, metadata... (`routing.core.notify_targets.address_problem`), and then
connects to exactly the addresses it checked (a second lookup by urllib could get another
answer: DNS rebinding). TLS still verifies the certificate against the URL's host name.
No proxy from the environment, no redirects (a 3xx could point anywhere): both would
connect somewhere that was not checked.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import json
import random
import re
import secrets
import socket
import ssl
import time
import urllib.error
import urllib.request
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from routing.core.notify_targets import EVENTS, address_problem, webhook_problem

from .mail import DeliveryError, Notice

__all__ = [
    "SIGNATURE_HEADER",
    "DeliveryError",
    "backoff",
    "new_secret",
    "notice_payload",
    "payload",
    "post",
    "sign",
    "verify",
]

SIGNATURE_HEADER = "X-Voffice-Signature"
USER_AGENT = "voffice-webhook/1"
VERSION = 1
MAX_RESPONSE = 64 * 1024  # read (and drop) at most this much of a receiver's answer
MAX_SIGNATURE_HEADER = 1024
BACKOFF_BASE = 5.0
BACKOFF_CAP = 3600.0
BACKOFF_JITTER = 0.1  # each delay is cut by up to a tenth, so retries of many calls spread out
_SHA256 = re.compile(r"[0-9a-f]{64}")
_V1 = re.compile(r"[0-9a-f]{64}")


# --- the body ---------------------------------------------------------------------------


def payload(
    *,
    kind: str,
    account: str,
    number: str,
    caller: str,
    call_id: str,
    at: datetime,
    duration: float | None = None,
    pages: int | None = None,
    link: str | None = None,
    sha256: str | None = None,
) -> bytes:
    """The JSON body: {"type", "account", "number", "caller", "call_id", "at" (ISO 8601
    with offset), "duration" (s), "pages", "link", "sha256", "v"}; absent values are left
    out. Receivers deduplicate retries by (type, call_id)."""
    if kind not in EVENTS:
        raise ValueError(f"webhook event type must be one of {', '.join(EVENTS)}, not {kind!r:.40}")
    if not isinstance(at, datetime) or at.utcoffset() is None:
        raise ValueError("webhook event time must be an aware datetime")
    if sha256 is not None and not _SHA256.fullmatch(sha256):
        raise ValueError("sha256 must be 64 lowercase hex digits")
    body: dict[str, Any] = {
        "v": VERSION,
        "type": kind,
        "account": account,
        "number": number,
        "caller": caller,
        "call_id": call_id,
        "at": at.isoformat(),
    }
    if duration is not None:
        body["duration"] = round(float(duration), 3)
    if pages is not None:
        body["pages"] = int(pages)
    if link is not None:
        body["link"] = link
    if sha256 is not None:
        body["sha256"] = sha256
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def notice_payload(notice: Notice, *, sha256: str | None = None) -> bytes:
    """`payload` for a Notice; the link only when the account's policy gives one."""
    return payload(
        kind=notice.kind,
        account=notice.account,
        number=notice.number,
        caller=notice.caller,
        call_id=notice.call_id,
        at=notice.at,
        duration=notice.duration_seconds if notice.kind == "voicemail" else None,
        pages=notice.pages if notice.kind == "fax" else None,
        link=notice.link if notice.attachments == "link" else None,
        sha256=sha256,
    )


# --- signatures -------------------------------------------------------------------------


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else bytes(secret)


def _mac(secret: bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The X-Voffice-Signature value: `t=<timestamp>,v1=<hex HMAC-SHA256>`."""
    return f"t={int(timestamp)},v1={_mac(_key(secret), int(timestamp), body)}"


def verify(secret: bytes, header: str, body: bytes, now: float, tolerance: float = 300) -> bool:
    """True if `header` signs `body` with `secret` at a time within `tolerance` seconds of
    `now`. Any malformed header is simply False."""
    if not isinstance(header, str) or len(header) > MAX_SIGNATURE_HEADER:
        return False
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        name, eq, value = item.strip().partition("=")
        if not eq:
            return False
        if name == "t":
            if timestamp is not None or not re.fullmatch(r"[0-9]{1,12}", value):
                return False
            timestamp = int(value)
        elif name == "v1":
            if not _V1.fullmatch(value):
                return False
            signatures.append(value)
    if timestamp is None or not signatures or abs(now - timestamp) > tolerance:
        return False
    expected = _mac(_key(secret), timestamp, body)
    matched = False
    for candidate in signatures:  # no early exit: the time taken does not say which one matched
        matched |= hmac.compare_digest(expected, candidate)
    return matched


def new_secret() -> str:
    """A new webhook secret: 256 random bits as 64 hex digits."""
    return secrets.token_hex(32)


def backoff(attempt: int, *, seed: object = None, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP) -> float:
    """Seconds to wait before retry number `attempt` (1, 2, ...): base, 2*base, 4*base ...
    up to `cap`, each cut by a random 0-10%. The same `seed` (e.g. the call id) gives the
    same delays; without one they are random."""
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    delay = min(cap, base * 2.0 ** min(attempt - 1, 64))
    rng = random.Random(f"{seed!r}/{attempt}") if seed is not None else random.SystemRandom()
    return delay * (1.0 - BACKOFF_JITTER * rng.random())


# --- sending ----------------------------------------------------------------------------

Address = tuple[int, tuple[Any, ...]]  # (family, sockaddr) as getaddrinfo gives them


def _connect(addresses: list[Address], timeout: float | None) -> socket.socket:
    """A TCP connection to the first of the checked addresses that answers."""
    last: OSError | None = None
    for family, sockaddr in addresses:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(sockaddr)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    raise last or OSError("no address to connect to")


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, *, addresses: list[Address] | None = None, **kwargs: Any) -> None:
        super().__init__(host, **kwargs)
        self.addresses = addresses or []

    def connect(self) -> None:
        self.sock = _connect(self.addresses, self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(
        self, host: str, *, addresses: list[Address] | None = None, context: ssl.SSLContext | None = None, **kwargs: Any
    ) -> None:
        super().__init__(host, context=context, **kwargs)
        self.addresses = addresses or []
        self.tls = context or ssl.create_default_context()

    def connect(self) -> None:
        # server_hostname: SNI and certificate checks use the URL's host, not the address.
        self.sock = self.tls.wrap_socket(_connect(self.addresses, self.timeout), server_hostname=self.host)


class _PinnedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, addresses: list[Address]) -> None:
        super().__init__()
        self.addresses = addresses

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_PinnedHTTPConnection, req, addresses=self.addresses)


class _PinnedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, addresses: list[Address], context: ssl.SSLContext) -> None:
        super().__init__(context=context)
        self.addresses = addresses
        self.tls = context

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_PinnedHTTPSConnection, req, context=self.tls, addresses=self.addresses)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A 3xx is answered as the error it is here, not followed."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _resolve(host: str, port: int, allow_private: bool, where: str) -> list[Address]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as exc:
        raise DeliveryError(f"{where}: cannot resolve the host ({getattr(exc, 'strerror', None) or exc})") from None
    addresses: list[Address] = []
    for family, _type, _proto, _name, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        problem = address_problem(ip, allow_private)
        if problem:
            raise DeliveryError(f"{where}: refused, the host {problem}")
        address = (int(family), tuple(sockaddr))
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise DeliveryError(f"{where}: the host resolves to no address")
    return addresses


def post(
    url: str,
    body: bytes,
    secret: str | bytes,
    *,
    timeout: float = 5.0,
    allow_private: bool = False,
    now: float | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> int:
    """POST the signed `body` to `url`; returns the HTTP status (2xx). Raises DeliveryError
    (one line; neither the secret nor the URL's path or query, which may be secret too) for
    a refused or malformed URL, a refused target address, connection errors, timeouts, TLS
    failures, 3xx (not followed) and any other non-2xx status."""
    problem = webhook_problem(url, allow_private)
    parts = urlsplit(url) if isinstance(url, str) and problem is None else None
    if parts is None or parts.hostname is None:
        raise DeliveryError(f"webhook url {problem or 'has no host'}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host_text = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    where = f"webhook {parts.scheme}://{host_text}:{port}"
    addresses = _resolve(parts.hostname, port, allow_private, where)
    timestamp = int(time.time() if now is None else now)
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            SIGNATURE_HEADER: sign(_key(secret), timestamp, body),
        },
    )
    context = ssl_context or ssl.create_default_context()
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}),
        _NoRedirects(),
        _PinnedHTTPHandler(addresses),
        _PinnedHTTPSHandler(addresses, context),
    )
    try:
        with opener.open(request, timeout=timeout) as response:
            response.read(MAX_RESPONSE)
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        if 300 <= exc.code < 400:
            raise DeliveryError(f"{where}: HTTP {exc.code} redirect, not followed") from None
        raise DeliveryError(f"{where}: HTTP {exc.code}") from None
    except urllib.error.URLError as exc:
        raise DeliveryError(f"{where}: {_reason(exc.reason, timeout)}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise DeliveryError(f"{where}: {_reason(exc, timeout)}") from None
    if not 200 <= status < 300:
        raise DeliveryError(f"{where}: HTTP {status}")
    return status


def _reason(reason: object, timeout: float) -> str:
    if isinstance(reason, TimeoutError):
        return f"timed out after {timeout:g} s"
    if isinstance(reason, ssl.SSLCertVerificationError):
        return f"TLS certificate not accepted ({reason.verify_message})"
    if isinstance(reason, ssl.SSLError):
        return f"TLS failed ({reason.reason or reason})"
    if isinstance(reason, http.client.RemoteDisconnected):
        return "the server closed the connection without an answer"
    if isinstance(reason, OSError) and reason.strerror:
        return f"connection failed ({reason.strerror})"
    text = " ".join(str(reason).split())[:200]
    return f"{type(reason).__name__}: {text}" if text else type(reason).__name__
