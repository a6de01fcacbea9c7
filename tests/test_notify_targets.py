"""Notification targets: plain email addresses, webhook URLs that cannot reach the carrier's network."""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routing.core.notify_targets import (
    ATTACHMENTS,
    EVENTS,
    LANGUAGES,
    address_problem,
    email_problem,
    webhook_problem,
)

SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "schemas" / "account.schema.json").read_text(encoding="utf-8"))
EMAIL_PATTERN = re.compile(SCHEMA["$defs"]["email"]["pattern"])
WEBHOOK_PATTERN = re.compile(SCHEMA["$defs"]["webhook_url"]["pattern"])


def test_constants_match_the_schema() -> None:
    notifications = SCHEMA["properties"]["notifications"]["properties"]
    assert tuple(notifications["events"]["items"]["enum"]) == EVENTS == ("voicemail", "fax", "missed")
    assert tuple(notifications["attachments"]["enum"]) == ATTACHMENTS == ("attach", "link", "none")
    assert tuple(notifications["language"]["enum"]) == LANGUAGES == ("ru", "en")


# --- email ----------------------------------------------------------------------------------

GOOD_EMAILS = [
    "office@berry-demo.ru",
    "a@b.co",
    "first.last+voffice@mail.example.com",
    "x_y-z%1@xn--80ak6aa92e.xn--p1ai",
    "UPPER@EXAMPLE.RU",
    "1@2.ru",
    "a" * 64 + "@example.ru",
    "a@" + ".".join(["b" * 63] * 3) + ".ru",
]


@pytest.mark.parametrize("address", GOOD_EMAILS)
def test_good_email(address: str) -> None:
    assert email_problem(address) is None
    assert EMAIL_PATTERN.search(address)


BAD_EMAILS = [
    ("a@b.ru\r\nBcc: x@y", "line break"),
    ("a@b.ru\nBcc: x@y.ru", "line break"),
    ("a@b.ru\r", "line break"),
    ("a@b.ru\n", "line break"),
    ("a@b.ru\x00", "control character"),
    ("a@b.ru\u2028", "control character"),
    ("a @b.ru", "whitespace"),
    ("a@b.ru\t", "control character"),
    ("a@b.ru\u00a0", "whitespace"),
    ("Office <office@b.ru>", "display name"),
    ("<office@b.ru>", "'<'"),
    ('"office"@b.ru', "'\"'"),
    ("o'brien@b.ru", "\"'\""),
    ("a@b.ru,c@d.ru", "','"),
    ("a@b.ru;c@d.ru", "';'"),
    ("a(comment)@b.ru", "'('"),
    ("a@[127.0.0.1]", "'['"),
    ("почта@пример.рф", "non-ASCII"),
    ("a@пример.рф", "non-ASCII"),
    ("", "no '@'"),
    ("office", "no '@'"),
    ("a@@b.ru", "more than one '@'"),
    ("a@b@c.ru", "more than one '@'"),
    ("@b.ru", "nothing before"),
    ("a@", "nothing after"),
    ("a" * 65 + "@b.ru", "longer than 64"),
    (".a@b.ru", "single dots"),
    ("a.@b.ru", "single dots"),
    ("a..b@b.ru", "single dots"),
    ("a@localhost", "no dot"),
    ("a@b..ru", "empty part"),
    ("a@.b.ru", "empty part"),
    ("a@b.ru.", "empty part"),
    ("a@-b.ru", "'-b'"),
    ("a@b-.ru", "'b-'"),
    ("a@b_c.ru", "'b_c'"),
    ("a@" + "b" * 64 + ".ru", "longer than 63"),
    ("a@1.2.3.4", "number"),
    ("a@" + "b." * 126 + "ru", "longer than 254"),
]


@pytest.mark.parametrize(("address", "words"), BAD_EMAILS, ids=[repr(a)[:40] for a, _ in BAD_EMAILS])
def test_bad_email(address: str, words: str) -> None:
    why = email_problem(address)
    assert why is not None and words in why, why
    assert "\n" not in why and "\r" not in why


def test_email_that_is_not_a_string() -> None:
    assert email_problem(5) is not None  # type: ignore[arg-type]


@st.composite
def with_line_break(draw: st.DrawFn) -> str:
    base = draw(st.one_of(st.sampled_from(GOOD_EMAILS), st.text(max_size=40), st.emails()))
    at = draw(st.integers(0, len(base)))
    brk = draw(st.sampled_from(["\r", "\n", "\r\n"]))
    tail = draw(st.one_of(st.just(""), st.sampled_from(["Bcc: x@y.ru", "Subject: hi", "\r\n"]), st.text(max_size=20)))
    return base[:at] + brk + tail + base[at:]


@settings(deadline=None, max_examples=500)
@given(with_line_break())
def test_no_address_with_cr_or_lf_is_ever_accepted(address: str) -> None:
    assert email_problem(address) is not None


@settings(deadline=None, max_examples=300)
@given(st.text(max_size=80))
def test_any_text_gets_an_answer_never_an_exception(text: str) -> None:
    why = email_problem(text)
    if "\r" in text or "\n" in text:
        assert why is not None
    if why is None:
        assert EMAIL_PATTERN.search(text), "the schema's pattern must accept whatever the check accepts"
        assert text.count("@") == 1 and text.isascii() and not any(c.isspace() for c in text)


@settings(deadline=None, max_examples=300)
@given(st.one_of(st.emails(), st.from_regex(EMAIL_PATTERN, fullmatch=True)))
def test_accepted_addresses_match_the_schema_pattern(address: str) -> None:
    if email_problem(address) is None:
        assert EMAIL_PATTERN.fullmatch(address)
        assert len(address) <= 254


# --- webhook URLs: syntax ----------------------------------------------------------------

GOOD_URLS = [
    "https://crm.example.ru/voffice",
    "http://crm.example.ru/voffice",
    "https://crm.example.ru",
    "https://crm.example.ru:8443/hooks/voffice?account=berry-demo&x=1",
    "https://hooks.example.com./x",
    "https://xn--80ak6aa92e.xn--p1ai/hook",
    "https://8.8.8.8/hook",
    "https://[2606:4700:4700::1111]:443/hook",
    "https://[::ffff:8.8.8.8]/hook",
    "https://example.com/path@with-at?q=a@b",
    "https://example.com/%41%42",
]


@pytest.mark.parametrize("url", GOOD_URLS)
def test_good_webhook(url: str) -> None:
    assert webhook_problem(url) is None
    assert WEBHOOK_PATTERN.search(url)


SYNTAX_ERRORS = [
    ("ftp://example.com/x", "scheme 'ftp'"),
    ("file:///etc/passwd", "scheme 'file'"),
    ("gopher://example.com/", "scheme 'gopher'"),
    ("javascript:alert(1)", "scheme 'javascript'"),
    ("HTTPS://example.com/", "scheme 'HTTPS'"),
    ("example.com/hook", "no scheme"),
    ("//example.com/hook", "no scheme"),
    ("http:example.com", "no host"),
    ("https:///hook", "no host"),
    ("https://", "no host"),
    ("https://:443/", "no host"),
    ("https://user:secret@example.com/", "credentials"),
    ("https://user@example.com/", "credentials"),
    ("https://:secret@example.com/", "credentials"),
    ("https://@example.com/", "credentials"),
    ("https://example.com@evil.com/", "credentials"),
    ("https://a%40b@example.com/", "credentials"),
    ("https://example.com/#frag", "fragment"),
    ("https://example.com/#", "fragment"),
    ("https://example.com/hook\r\nX-Injected: 1", "control character"),
    ("https://exa mple.com/", "whitespace"),
    (" https://example.com/", "whitespace"),
    ("https://example.com/\t", "control character"),
    ("https://пример.рф/", "non-ASCII"),
    ("https://example.com\\@127.0.0.1/", "backslash"),
    ("https://example.com:0/", "port '0'"),
    ("https://example.com:65536/", "port '65536'"),
    ("https://example.com:/", "port ''"),
    ("https://example.com:http/", "port 'http'"),
    ("https://[::1/", "malformed host"),
    ("https://[example.com]/", "malformed IPv6"),
    ("https://exa_mple.com/", "not a valid host name"),
    ("https://-example.com/", "not a valid host name"),
    ("https://example..com/", "not a valid host name"),
    ("https://" + "a" * 64 + ".com/", "not a valid host name"),
    ("https://example.com/" + "a" * 2000, "longer than 2000"),
    # numeric hosts that HTTP clients read as IPv4 addresses
    ("http://2130706433/", "numeric"),
    ("http://0x7f000001/", "numeric"),
    ("http://0x7f.0.0.1/", "numeric"),
    ("http://127.1/", "numeric"),
    ("http://0177.0.0.1/", "numeric"),
    ("http://127.000.000.001/", "numeric"),
    ("http://1.2.3.4.5/", "numeric"),
    ("http://256.1.1.1/", "numeric"),
    ("http://[fe80::1%25eth0]/", "zone"),
]


@pytest.mark.parametrize(("url", "words"), SYNTAX_ERRORS, ids=[u[:50] for u, _ in SYNTAX_ERRORS])
@pytest.mark.parametrize("allow_private", [False, True])
def test_webhook_syntax_errors_are_refused_even_when_private_targets_are_allowed(url: str, words: str, allow_private: bool) -> None:
    why = webhook_problem(url, allow_private=allow_private)
    assert why is not None and words in why, why
    assert "\n" not in why and "\r" not in why


# --- webhook URLs: where they point ------------------------------------------------------

INTERNAL_TARGETS = [
    ("http://127.0.0.1/hook", "loopback"),
    ("http://127.8.9.10:8080/hook", "loopback"),
    ("http://[::1]/hook", "loopback"),
    ("http://[::ffff:127.0.0.1]/hook", "loopback"),
    ("http://[::ffff:7f00:1]/hook", "loopback"),
    ("http://[::127.0.0.1]/hook", "loopback"),
    ("http://[64:ff9b::127.0.0.1]/hook", "loopback"),
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://[::ffff:169.254.169.254]/latest/meta-data/", "metadata"),
    ("http://[fd00:ec2::254]/latest/meta-data/", "metadata"),
    ("http://100.100.100.200/latest/meta-data/", "metadata"),
    ("http://168.63.129.16/machine", "metadata"),
    ("http://169.254.1.1/", "link-local"),
    ("http://[fe80::1]/", "link-local"),
    ("http://10.1.2.3/hook", "private"),
    ("http://172.16.0.1/hook", "private"),
    ("http://172.31.255.255/hook", "private"),
    ("http://192.168.1.1/hook", "private"),
    ("http://[fc00::1]/hook", "private"),
    ("http://[fd12:3456::1]/hook", "private"),
    ("http://[::ffff:10.0.0.1]/hook", "private"),
    ("http://[2002:a00:1::]/hook", "private"),  # 6to4 of 10.0.0.1
    ("http://100.64.0.1/hook", "non-public"),
    ("http://0.0.0.0/hook", "unspecified"),
    ("http://[::]/hook", "unspecified"),
    ("http://224.0.0.1/hook", "multicast"),
    ("http://[ff02::1]/hook", "multicast"),
    ("http://240.0.0.1/hook", "reserved"),
    ("http://255.255.255.255/hook", "reserved"),
    ("http://localhost/hook", "local host"),
    ("http://LOCALHOST:8080/hook", "local host"),
    ("http://localhost./hook", "local host"),
    ("http://api.localhost/hook", "local host"),
    ("http://metadata/computeMetadata/v1/", "metadata"),
    ("http://metadata.google.internal/computeMetadata/v1/", "metadata"),
    ("http://instance-data/latest/", "metadata"),
    ("http://redis.internal/", "private-use"),
    ("http://printer.local/", "mDNS"),
    ("http://router.home.arpa/", "home-network"),
    ("http://intranet/hook", "no dot"),
]


@pytest.mark.parametrize(("url", "words"), INTERNAL_TARGETS, ids=[u for u, _ in INTERNAL_TARGETS])
def test_internal_targets_are_refused_unless_allowed(url: str, words: str) -> None:
    why = webhook_problem(url)
    assert why is not None and words in why, why
    assert webhook_problem(url, allow_private=True) is None


def test_default_is_not_to_allow_private_targets() -> None:
    assert webhook_problem("http://127.0.0.1/") == webhook_problem("http://127.0.0.1/", allow_private=False)
    assert webhook_problem("http://127.0.0.1/") is not None


def test_address_problem_for_resolved_addresses() -> None:
    """What the sender calls at send time for each address a host name resolved to."""
    assert address_problem(ipaddress.ip_address("93.184.216.34")) is None
    assert address_problem(ipaddress.ip_address("2606:2800:220:1:248:1893:25c8:1946")) is None
    why = address_problem(ipaddress.ip_address("127.0.0.1"))
    assert why is not None and "loopback" in why
    why = address_problem(ipaddress.ip_address("::ffff:192.168.0.10"))
    assert why is not None and "192.168.0.10" in why
    assert address_problem(ipaddress.ip_address("127.0.0.1"), allow_private=True) is None


def test_a_host_name_is_not_resolved() -> None:
    """127.0.0.1.nip.io resolves to loopback; only the sender, at send time, can tell."""
    assert webhook_problem("http://127.0.0.1.nip.io/hook") is None


# --- properties ---------------------------------------------------------------------------

HOSTS = st.sampled_from(["example.com", "crm.example.ru", "8.8.8.8", "[2606:4700::1111]", "127.0.0.1", "localhost",
                         "[::1]", "169.254.169.254", "10.0.0.1", "hooks.example.com:8443"])
USERINFO = st.text(
    alphabet=st.characters(codec="ascii", exclude_characters="/?#\\@", exclude_categories=("Cc", "Zs")), max_size=30
)


@settings(deadline=None, max_examples=400)
@given(st.sampled_from(["http", "https"]), USERINFO, st.one_of(st.none(), USERINFO), HOSTS,
       st.sampled_from(["", "/", "/hook", "/a/b?x=1"]), st.booleans())
def test_any_url_with_userinfo_is_refused(scheme: str, user: str, password: str | None, host: str, path: str,
                                          allow_private: bool) -> None:
    userinfo = user if password is None else f"{user}:{password}"
    url = f"{scheme}://{userinfo}@{host}{path}"
    why = webhook_problem(url, allow_private=allow_private)
    assert why is not None
    assert "credentials" in why, why


@settings(deadline=None, max_examples=300)
@given(st.text(max_size=60), st.booleans())
def test_any_text_gets_an_answer_never_an_exception_for_webhooks(text: str, allow_private: bool) -> None:
    url = "https://" + text
    why = webhook_problem(url, allow_private=allow_private)
    if why is None:
        assert WEBHOOK_PATTERN.search(url), "the schema's pattern must accept whatever the check accepts"
        assert "@" not in urlsplit(url).netloc


INTERNAL_NETWORKS = [
    "127.0.0.0/8", "169.254.0.0/16", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "0.0.0.0/8",
    "::1/128", "fe80::/10", "fc00::/7", "::/128",
]


@st.composite
def internal_addresses(draw: st.DrawFn) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    network = ipaddress.ip_network(draw(st.sampled_from(INTERNAL_NETWORKS)))
    address = network[draw(st.integers(0, network.num_addresses - 1))]
    if isinstance(address, ipaddress.IPv4Address) and draw(st.booleans()):
        return ipaddress.IPv6Address("::ffff:" + str(address))  # IPv4-mapped
    return address


def url_for(address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int | None, path: str) -> str:
    host = f"[{address}]" if address.version == 6 else str(address)
    return f"http://{host}{'' if port is None else f':{port}'}{path}"


@settings(deadline=None, max_examples=500)
@given(internal_addresses(), st.one_of(st.none(), st.integers(1, 65535)), st.sampled_from(["", "/", "/hook?x=1"]))
def test_every_loopback_link_local_private_literal_is_refused_unless_allowed(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int | None, path: str,
) -> None:
    url = url_for(address, port, path)
    assert webhook_problem(url) is not None, url
    assert address_problem(address) is not None
    assert webhook_problem(url, allow_private=True) is None, url
    assert address_problem(address, allow_private=True) is None


@settings(deadline=None, max_examples=300)
@given(st.ip_addresses())
def test_a_literal_is_accepted_only_when_it_is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    url = url_for(address, None, "/hook")
    why = webhook_problem(url)
    if why is None:
        assert (address.is_global and not address.is_multicast) or (
            isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None
            and address.ipv4_mapped.is_global and not address.ipv4_mapped.is_multicast
        ), url
