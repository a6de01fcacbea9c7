"""Where an account's notifications may go: email addresses and webhook URLs.

Pure checks (no I/O, no DNS), shared by validation (at load) and the sender (at send time).
Each returns a one-line reason, or None when the target is acceptable.

Email addresses end up in an SMTP envelope and a `To:` header, so only a plain addr-spec is
taken: `local@domain`, ASCII, a dot-atom local part, a host-name domain with a dot. No display
names, quotes, brackets, commas, whitespace or line breaks (a CR/LF is header injection).

Webhook URLs are fetched by our servers, inside the carrier's network, so a customer must
not be able to point them at that network (SSRF): only http/https, no credentials, no
fragment, and a host that is neither an internal name nor a loopback, link-local (cloud
metadata), private, multicast or otherwise non-public IP literal, unless `allow_private`
(tests). A host name is not resolved here: it may resolve to anything, now or later (DNS
rebinding), so the sender resolves it, checks every address with `address_problem` and
connects to the address it checked.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

EVENTS = ("voicemail", "fax", "missed")
ATTACHMENTS = ("attach", "link", "none")
LANGUAGES = ("ru", "en")

MAX_EMAIL = 254  # RFC 5321 path limit less the angle brackets
MAX_LOCAL = 64
MAX_URL = 2000

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# --- email ------------------------------------------------------------------------------

_ATEXT = "A-Za-z0-9!#$%&*+/=?^_`{|}~-"  # RFC 5322 atext, without the apostrophe
_LOCAL = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SEPARATORS = ',;:<>()[]"\'\\'


def email_problem(address: str) -> str | None:
    """Why `address` is not a plain `local@domain` address, or None."""
    if not isinstance(address, str):
        return "not a string"
    if "\r" in address or "\n" in address:
        return "contains a line break, which would inject mail headers"
    found = _CONTROL.search(address)
    if found:
        return f"contains a control character (U+{ord(found.group()):04X})"
    for c in address:
        if c in _SEPARATORS:
            return f"contains {c!r}: one plain address per entry, without a display name, quotes or brackets"
    if any(c.isspace() for c in address):
        return "contains whitespace"
    if not address.isascii():
        return "contains non-ASCII characters (write an internationalised domain in punycode, xn--...)"
    if len(address) > MAX_EMAIL:
        return f"longer than {MAX_EMAIL} characters"
    if address.count("@") != 1:
        return "has no '@'" if "@" not in address else "has more than one '@'"
    local, domain = address.split("@")
    if not local:
        return "nothing before the '@'"
    if len(local) > MAX_LOCAL:
        return f"the part before the '@' is longer than {MAX_LOCAL} characters"
    if not _LOCAL.fullmatch(local):
        return "the part before the '@' is not letters, digits and !#$%&*+/=?^_`{|}~- with single dots between them"
    if not domain:
        return "nothing after the '@'"
    labels = domain.split(".")
    if len(labels) < 2:
        return "the domain has no dot"
    for label in labels:
        if not label:
            return "the domain has an empty part (two dots in a row, or a dot at an end)"
        if len(label) > 63:
            return f"the domain part {label[:20]}... is longer than 63 characters"
        if not _LABEL.fullmatch(label):
            return f"the domain part {label!r} is not letters, digits and inner hyphens"
    if labels[-1].isdigit():
        return "the domain ends in a number (IP addresses are not accepted)"
    return None


# --- addresses --------------------------------------------------------------------------

# Cloud instance metadata services (credentials live there); the link-local and private
# ones are refused anyway, these messages just say why it matters.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean...
        "169.254.170.2",  # AWS ECS task metadata
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure WireServer: a public address, refused explicitly
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_V4_COMPATIBLE = ipaddress.IPv6Network("::/96")


def _kind(ip: IPAddress) -> str | None:
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata service address"
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_reserved:
        return "a reserved address"
    if ip.is_private:
        return "a private or special-purpose address"
    if not ip.is_global:
        return "a non-public address"
    return None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, 6to4, NAT64), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or (ip in _V4_COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_problem(ip: IPAddress, allow_private: bool = False) -> str | None:
    """Why a webhook must not connect to `ip`, or None. The sender calls this for every
    address a host name resolves to, at send time, and connects to the address it checked."""
    if allow_private:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        v4 = _embedded_ipv4(ip)
        if v4 is not None:
            kind = _kind(v4)
            if kind:
                return f"points at {kind} ({v4}, inside {ip})"
            if ip.ipv4_mapped is not None:
                return None  # ::ffff:a.b.c.d is that IPv4 address
    kind = _kind(ip)
    return f"points at {kind} ({ip})" if kind else None


# --- webhook URLs -----------------------------------------------------------------------

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_AUTHORITY = re.compile(r"[^/?#]*")
_NETLOC = re.compile(r"(?:\[(?P<v6>[^\]]*)\]|(?P<name>[^:\[\]]*))(?::(?P<port>[^:]*))?")
_NUMERIC_LABEL = re.compile(r"0[xX][0-9A-Fa-f]*|[0-9]+")
_DOTTED_QUAD = re.compile(r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])")
_INTERNAL_NAMES = {
    "localhost": "the local host",
    "metadata": "a cloud metadata service",
    "metadata.google.internal": "a cloud metadata service",
    "instance-data": "a cloud metadata service",
    "instance-data.ec2.internal": "a cloud metadata service",
}
_INTERNAL_SUFFIXES = {
    ".localhost": "the local host",
    ".internal": "a private-use domain",
    ".local": "a link-local (mDNS) name",
    ".localdomain": "the local host",
    ".home.arpa": "a home-network name",
}


def webhook_problem(url: str, allow_private: bool = False) -> str | None:
    """Why `url` is not an acceptable webhook target, or None. `allow_private` (tests only)
    lets it point at internal names and loopback/private/link-local addresses; the other
    rules stay."""
    if not isinstance(url, str):
        return "not a string"
    if len(url) > MAX_URL:
        return f"longer than {MAX_URL} characters"
    found = re.search(r"[\x00-\x20\x7f-\x9f\u2028\u2029]", url)
    if found:
        return f"contains whitespace or a control character (U+{ord(found.group()):04X})"
    if not url.isascii():
        return "contains non-ASCII characters (write the host in punycode and percent-encode the rest)"
    if "\\" in url:
        return "contains a backslash"
    scheme = _SCHEME.match(url)
    if not scheme:
        return "has no scheme; only http:// and https:// URLs are accepted"
    if scheme.group(1) not in ("http", "https"):
        return f"the scheme {scheme.group(1)!r} is neither http nor https (in lower case)"
    if not url[scheme.end():].startswith("//"):
        return "has no host (expected http:// or https:// then a host)"
    if "#" in url:
        return "has a fragment (#...), which is never sent to the server"
    authority = _AUTHORITY.match(url, scheme.end() + 2)
    netloc = authority.group() if authority else ""
    if "@" in netloc:
        return "carries credentials (user:password@): put none in the URL, requests are signed with the account's webhook secret"
    parts = _NETLOC.fullmatch(netloc)
    if not parts:
        return f"has a malformed host {netloc!r}"
    port = parts.group("port")
    if port is not None and not (port.isdigit() and len(port) <= 5 and 1 <= int(port) <= 65535):
        return f"has an invalid port {port!r}"
    v6: ipaddress.IPv6Address | None = None
    if parts.group("v6") is not None:
        if "%" in parts.group("v6"):
            return "has an IPv6 zone id (%...), which names an interface of the sending host"
        try:
            v6 = ipaddress.IPv6Address(parts.group("v6"))
        except ValueError:
            return f"has a malformed IPv6 address [{parts.group('v6')}]"
    try:  # the host the standard parser sees must be the one checked here
        agrees = urlsplit(url).netloc == netloc
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    if not agrees:
        return "is not a valid URL (its host is ambiguous)"
    if v6 is not None:
        return address_problem(v6, allow_private)
    return _host_problem(parts.group("name"), allow_private)


def _host_problem(host: str, allow_private: bool) -> str | None:
    name = host[:-1] if host.endswith(".") else host
    if not name:
        return "has no host"
    labels = name.split(".")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        # HTTP clients read 127.1, 0x7f.0.0.1, 017700000001 and 2130706433 as IPv4 addresses
        if not _DOTTED_QUAD.fullmatch(name):
            return f"the host {host!r} is numeric but not a dotted-quad IPv4 address"
        return address_problem(ipaddress.IPv4Address(name), allow_private)
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return f"the host {host!r} is not a valid host name (letters, digits, inner hyphens, dots)"
    if allow_private:
        return None
    lowered = name.lower()
    if lowered in _INTERNAL_NAMES:
        return f"the host {host!r} is {_INTERNAL_NAMES[lowered]}"
    for suffix, what in _INTERNAL_SUFFIXES.items():
        if lowered.endswith(suffix):
            return f"the host {host!r} is {what}"
    if len(labels) == 1:
        return f"the host {host!r} has no dot: a single-label name resolves to an internal host"
    return None
