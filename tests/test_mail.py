"""Notification e-mail (routing/records/mail.py): the MIME message for each kind, policy and
language, parsed back; the MP3 decoded and compared with the WAV; delivery to a real SMTP
server (aiosmtpd on loopback: plain, STARTTLS with AUTH, implicit TLS) and to a Maildir.

aiosmtpd is a test-only dependency; `lame` and `openssl` are Debian packages.
"""

from __future__ import annotations

import email.parser
import email.policy
import mailbox
import os
import re
import shutil
import ssl
import subprocess
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from routing.records.mail import (
    DeliveryError,
    Notice,
    PartiallyDelivered,
    SmtpSettings,
    build_message,
    compressed_audio,
    deliver_maildir,
    parse_smtp_url,
    send_smtp,
    subject,
)
from routing.stack.ports import free_port

aiosmtpd_controller = pytest.importorskip("aiosmtpd.controller", reason="aiosmtpd (test dependency) is not installed")
from aiosmtpd.smtp import AuthResult, LoginPassword  # noqa: E402

needs_lame = pytest.mark.skipif(shutil.which("lame") is None, reason="lame (Debian package) is not installed")
MSK = timezone(timedelta(hours=3))
AT = datetime(2026, 11, 25, 13, 30, 5, tzinfo=MSK)
SENDER = "noreply@voffice.example"
TO = ["office@berry.example", "boss@berry.example"]
PASSWORD = "S3cr3t:p@ss/w%rd"  # characters that need percent-encoding in a URL
NOW = datetime(2026, 11, 25, 10, 31, 0, tzinfo=UTC)


def write_wav(path: Path, seconds: float = 5.0) -> np.ndarray:
    """Speech-like test audio: a gliding tone with a syllable rhythm, 8 kHz mono 16-bit."""
    t = np.arange(int(8000 * seconds)) / 8000
    samples = (7000 * np.sin(2 * np.pi * (250 + 120 * t) * t) * (0.55 + 0.45 * np.sin(2 * np.pi * 3 * t))).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(samples.tobytes())
    return samples


def read_wav(path: Path) -> tuple[int, int, np.ndarray]:
    with wave.open(str(path), "rb") as source:
        data = np.frombuffer(source.readframes(source.getnframes()), dtype="<i2")
        return source.getframerate(), source.getnchannels(), data


def write_pdf(path: Path, pages: int = 2) -> bytes:
    images = [Image.new("1", (200, 280), 1) for _ in range(pages)]
    images[0].save(path, "PDF", save_all=True, append_images=images[1:], resolution=100)
    return path.read_bytes()


@pytest.fixture
def wav(tmp_path: Path) -> Path:
    path = tmp_path / "ab2434d4d12d4ac4.wav"
    write_wav(path)
    return path


@pytest.fixture
def pdf(tmp_path: Path) -> Path:
    path = tmp_path / "fx0001.pdf"
    write_pdf(path)
    return path


def notice(**changes: Any) -> Notice:
    base = Notice(
        kind="voicemail",
        account="berry-demo",
        number="+74951234567",
        caller="+79031112233",
        call_id="ab2434d4d12d4ac4",
        at=AT,
        language="ru",
        attachments="attach",
        duration_seconds=8.4,
        link="https://files.voffice.example/r/ab2434d4d12d4ac4?sig=abc",
    )
    return replace(base, **changes)


def parse(message: EmailMessage) -> EmailMessage:
    """What a mail client gets: the message's wire bytes, parsed again."""
    raw = message.as_bytes()
    assert all(len(line) <= 998 for line in raw.split(b"\r\n")), "a line longer than RFC 5322 allows"
    assert b"\n" not in raw.replace(b"\r\n", b""), "a bare LF on the wire"
    parsed = email.parser.BytesParser(policy=email.policy.default).parsebytes(raw)
    assert isinstance(parsed, EmailMessage)
    return parsed


def body_text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    content = part.get_content()
    assert isinstance(content, str)
    return content


def attachments(message: EmailMessage) -> list[EmailMessage]:
    return list(message.iter_attachments())


ATTACH_WORDS = ("вложени", "attached")


# --- the message ------------------------------------------------------------------------


@needs_lame
def test_voicemail_attached_as_mp3_that_decodes_to_the_recording(wav: Path, tmp_path: Path) -> None:
    original = read_wav(wav)[2]
    message = parse(build_message(notice(audio=wav), SENDER, TO, now=NOW))

    assert message["Subject"] == "Голосовое сообщение от +79031112233 на +74951234567, 8 с"
    assert message["From"] == SENDER
    assert [a.addr_spec for a in message["To"].addresses] == TO
    assert message["Date"].datetime == NOW
    assert re.fullmatch(r"<voicemail\.[0-9a-f]{32}@voffice\.example>", message["Message-ID"].strip())
    assert message["Auto-Submitted"] == "auto-generated"
    text = body_text(message)
    assert "Звонивший: +79031112233" in text and "Номер: +74951234567" in text
    assert "25.11.2026 13:30:05 (UTC+03:00)" in text and "Длительность: 8 с" in text
    assert "во вложении" in text and "https://" not in text

    [part] = attachments(message)
    assert part.get_content_type() == "audio/mpeg"
    assert part.get_filename() == "voicemail-20261125-1330-79031112233.mp3"
    mp3_bytes = part.get_content()
    assert mp3_bytes == wav.with_suffix(".mp3").read_bytes()
    assert len(mp3_bytes) < wav.stat().st_size / 4

    received = tmp_path / "received.mp3"
    received.write_bytes(mp3_bytes)
    decoded_path = tmp_path / "decoded.wav"
    subprocess.run(["lame", "--quiet", "--decode", str(received), str(decoded_path)], check=True, timeout=60)
    rate, channels, decoded = read_wav(decoded_path)
    assert (rate, channels) == (8000, 1)
    assert abs(len(decoded) - len(original)) < 0.25 * 8000  # encoder padding at most
    # Normalised cross-correlation, whatever delay the codec adds.
    a, b = decoded.astype(float), original.astype(float)
    n = len(a) + len(b)
    corr = np.fft.irfft(np.fft.rfft(a, n) * np.conj(np.fft.rfft(b, n)), n)
    peak = np.max(np.abs(corr)) / (np.linalg.norm(a) * np.linalg.norm(b))
    assert peak > 0.9, f"decoded MP3 correlates only {peak:.3f} with the recording"


def test_voicemail_falls_back_to_the_wav_without_lame(
    wav: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "no-tools"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # the real lookup, with nothing to find
    message = parse(build_message(notice(audio=wav, language="en"), SENDER, TO, now=NOW))
    assert message["Subject"] == "Voicemail from +79031112233 to +74951234567, 8 s"
    [part] = attachments(message)
    assert part.get_content_type() == "audio/wav"
    assert part.get_filename() == "voicemail-20261125-1330-79031112233.wav"
    assert part.get_content() == wav.read_bytes()
    assert "The recording is attached (voicemail-20261125-1330-79031112233.wav)." in body_text(message)
    assert not wav.with_suffix(".mp3").exists()


def test_fax_attached_as_pdf(pdf: Path) -> None:
    for language, expected in (
        ("ru", "Факс от +79031112233 на +74951234567, 2 стр."),
        ("en", "Fax from +79031112233 to +74951234567, 2 pages"),
    ):
        message = parse(build_message(notice(kind="fax", pages=2, pdf=pdf, language=language), SENDER, TO))
        assert message["Subject"] == expected
        assert message["Message-ID"].strip().startswith("<fax.")
        [part] = attachments(message)
        assert part.get_content_type() == "application/pdf"
        assert part.get_filename() == "fax-20261125-1330-79031112233.pdf"
        assert part.get_content() == pdf.read_bytes()
        assert "PDF" in body_text(message)
    assert parse(build_message(notice(kind="fax", pages=1, pdf=pdf, language="en"), SENDER, TO))["Subject"].endswith(
        ", 1 page"
    )


@pytest.mark.parametrize("language", ["ru", "en"])
@pytest.mark.parametrize("kind", ["voicemail", "fax"])
def test_link_policy_gives_the_link_and_no_file(kind: str, language: str, wav: Path, pdf: Path) -> None:
    message = parse(
        build_message(notice(kind=kind, pages=3, audio=wav, pdf=pdf, language=language, attachments="link"), SENDER, TO)
    )
    assert not message.is_multipart() and attachments(message) == []
    text = body_text(message)
    assert "https://files.voffice.example/r/ab2434d4d12d4ac4?sig=abc" in text
    assert not any(word in text for word in ATTACH_WORDS)


@pytest.mark.parametrize("language", ["ru", "en"])
@pytest.mark.parametrize("kind", ["voicemail", "fax"])
def test_none_policy_says_the_file_stays_on_the_server(kind: str, language: str, wav: Path, pdf: Path) -> None:
    message = parse(
        build_message(notice(kind=kind, pages=3, audio=wav, pdf=pdf, language=language, attachments="none"), SENDER, TO)
    )
    assert attachments(message) == []
    text = body_text(message)
    assert "http" not in text
    assert ("хранится на сервере" if language == "ru" else "kept on the server") in text
    assert not any(word in text for word in ATTACH_WORDS)


@pytest.mark.parametrize("policy", ["attach", "link", "none"])
@pytest.mark.parametrize("language", ["ru", "en"])
def test_missed_call_is_text_only(policy: str, language: str, wav: Path) -> None:
    message = parse(
        build_message(
            notice(kind="missed", audio=wav, duration_seconds=None, attachments=policy, language=language), SENDER, TO
        )
    )
    assert not message.is_multipart()
    assert (
        message["Subject"]
        == {
            "ru": "Пропущенный вызов от +79031112233 на +74951234567",
            "en": "Missed call from +79031112233 to +74951234567",
        }[language]
    )
    text = body_text(message)
    assert "http" not in text and not any(word in text for word in ATTACH_WORDS)


@pytest.mark.parametrize("language", ["ru", "en"])
@pytest.mark.parametrize("kind", ["voicemail", "fax"])
def test_attach_policy_without_the_file_does_not_promise_one(kind: str, language: str, tmp_path: Path) -> None:
    missing = tmp_path / "gone.wav"
    for changes in ({"audio": None, "pdf": None}, {"audio": missing, "pdf": missing.with_suffix(".pdf")}):
        message = parse(build_message(notice(kind=kind, language=language, **changes), SENDER, TO))
        assert attachments(message) == []
        text = body_text(message)
        assert not any(word in text for word in ATTACH_WORDS)
        assert ("не удалось" if language == "ru" else "could not be included") in text


def test_too_large_a_file_is_not_attached(pdf: Path) -> None:
    message = parse(build_message(notice(kind="fax", pdf=pdf), SENDER, TO, max_attachment_bytes=100))
    assert attachments(message) == []
    assert "не удалось" in body_text(message)


def test_withheld_caller_and_long_duration() -> None:
    message = parse(build_message(notice(caller="anonymous", duration_seconds=125.4, language="en"), SENDER, TO))
    assert message["Subject"] == "Voicemail from an unknown caller to +74951234567, 2 min 05 s"
    assert "Caller: withheld" in body_text(message)
    ru = parse(build_message(notice(caller="", duration_seconds=61), SENDER, TO))
    assert ru["Subject"] == "Голосовое сообщение от неизвестного абонента на +74951234567, 1 мин 01 с"


_PRINTABLE = st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Zl", "Zp"))


@settings(max_examples=150, deadline=None)
@given(
    caller=st.text(_PRINTABLE, max_size=60),
    number=st.text(_PRINTABLE, min_size=1, max_size=60),
    language=st.sampled_from(["ru", "en"]),
    kind=st.sampled_from(["voicemail", "fax", "missed"]),
)
def test_subject_and_text_survive_the_wire(caller: str, number: str, language: str, kind: str) -> None:
    """Whatever a caller's number looks like, the client shows exactly our subject (the
    folding of encoded words loses no space) and no header gets added."""
    sent = notice(kind=kind, caller=caller, number=number, language=language, pages=2)
    message = parse(build_message(sent, SENDER, TO))
    assert message["Subject"] == subject(sent)
    assert sorted(message.keys()) == sorted(
        [
            "Subject",
            "From",
            "To",
            "Date",
            "Message-ID",
            "Auto-Submitted",
            "Content-Language",
            "MIME-Version",
            "Content-Type",
            "Content-Transfer-Encoding",
        ]
    )
    if not _withheld_caller(caller):
        assert caller in body_text(message)


def _withheld_caller(caller: str) -> bool:
    return caller.strip().lower() in ("", "anonymous", "unknown", "unavailable", "restricted", "private")


def test_message_id_is_stable_per_call_and_kind(wav: Path) -> None:
    first = build_message(notice(audio=wav), SENDER, TO, now=NOW)
    again = build_message(notice(audio=wav, language="en"), SENDER, TO[:1])
    assert first["Message-ID"] == again["Message-ID"]
    assert build_message(notice(kind="missed"), SENDER, TO)["Message-ID"] != first["Message-ID"]
    assert build_message(notice(call_id="other"), SENDER, TO)["Message-ID"] != first["Message-ID"]


@pytest.mark.parametrize(
    "bad",
    [
        {"caller": "+7903\r\nBcc: spy@evil.example"},
        {"caller": "+7903\nBcc: spy@evil.example"},
        {"number": "+7495\rX: y"},
        {"account": "berry\x00"},
        {"call_id": "ab\u2028cd"},
        {"caller": "+7\u202e3322111309"},  # a bidi override: displays as another number
        {"link": "https://x.example/a\r\nBcc: spy@evil.example"},
        {"link": "javascript:alert(1)"},
        {"kind": "sms"},
        {"language": "de"},
        {"attachments": "inline"},
        {"at": datetime(2026, 11, 25, 13, 30)},  # naive
        {"attachments": "link", "link": None},
    ],
)
def test_notice_refuses_header_injection_and_bad_values(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        notice(**bad)


@pytest.mark.parametrize(
    ("sender", "to"),
    [
        (SENDER, ["office@berry.example\r\nBcc: spy@evil.example"]),
        (SENDER, ["office@berry.example\nBcc: spy@evil.example"]),
        ("noreply@voffice.example\r\nBcc: spy@evil.example", TO),
        (SENDER, ["office@berry.example, spy@evil.example"]),
        (SENDER, ["Boss <boss@berry.example>"]),
        ("Voffice <noreply@voffice.example>", TO),
        (SENDER, ["no-at-sign"]),
        (SENDER, []),
        (SENDER, "office@berry.example"),  # a string, not a list of addresses
    ],
)
def test_build_message_refuses_bad_addresses(sender: str, to: Any) -> None:
    with pytest.raises(ValueError):
        build_message(notice(), sender, to)


def test_duplicate_recipients_are_sent_once() -> None:
    message = build_message(notice(), SENDER, ["a@berry.example", "A@berry.example", "b@berry.example"])
    assert message["To"] == "a@berry.example, b@berry.example"


# --- compressing --------------------------------------------------------------------------


@needs_lame
def test_compressed_audio_is_made_once_and_redone_when_the_wav_changes(wav: Path) -> None:
    mp3 = compressed_audio(wav)
    assert mp3 == wav.with_suffix(".mp3") and mp3.exists()
    made = mp3.stat().st_mtime_ns
    time.sleep(0.01)
    assert compressed_audio(wav) == mp3
    assert mp3.stat().st_mtime_ns == made, "an up-to-date MP3 was encoded again"
    later = time.time() + 5
    os.utime(wav, (later, later))  # the WAV is newer (e.g. repaired): encode again
    assert compressed_audio(wav) == mp3
    assert mp3.stat().st_mtime_ns != made
    assert [p.name for p in wav.parent.iterdir() if p.name.endswith(".tmp")] == []


@needs_lame
def test_compressed_audio_gives_up_when_it_does_not_help(tmp_path: Path) -> None:
    tiny = tmp_path / "tiny.wav"
    write_wav(tiny, seconds=0.002)  # 16 samples: any MP3 frame is larger
    assert compressed_audio(tiny) is None
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF but not really a wave file" * 100)
    assert compressed_audio(broken) is None
    assert compressed_audio(tmp_path / "missing.wav") is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.wav", "tiny.wav"]


def test_compressed_audio_without_lame(wav: Path) -> None:
    assert compressed_audio(wav, lame="/nonexistent/lame") is None
    assert not wav.with_suffix(".mp3").exists()


# --- SMTP URLs --------------------------------------------------------------------------


def test_parse_smtp_url() -> None:
    assert parse_smtp_url("smtp://mail.example.com") == SmtpSettings("mail.example.com", 25)
    assert parse_smtp_url("smtp://127.0.0.1:2525") == SmtpSettings("127.0.0.1", 2525)
    assert parse_smtp_url("smtp://[::1]:2525") == SmtpSettings("::1", 2525)
    assert parse_smtp_url("smtps://user@mail.example.com") == SmtpSettings("mail.example.com", 465, "tls", "user")
    quoted = "S3cr3t%3Ap%40ss%2Fw%25rd"
    settings = parse_smtp_url(f"smtp://voffice%40berry:{quoted}@mail.example.com?starttls=1")
    assert settings == SmtpSettings("mail.example.com", 587, "starttls", "voffice@berry", PASSWORD)
    assert PASSWORD not in repr(settings) and quoted not in repr(settings)
    assert str(settings) == "smtp://voffice@berry@mail.example.com:587?starttls=1"
    assert parse_smtp_url("smtp://h.example?starttls=0").security == "plain"


@pytest.mark.parametrize(
    "url",
    [
        "http://u:{pw}@mail.example.com",
        "smtp://u:{pw}@mail.example.com:99999?starttls=1",
        "smtp://u:{pw}@mail.example.com:port?starttls=1",
        "smtp://u:{pw}@mail.example.com?starttls=maybe",
        "smtp://u:{pw}@mail.example.com?tls=1",
        "smtps://u:{pw}@mail.example.com?starttls=1",
        "smtp://u:{pw}@mail.example.com",  # a password in clear
        "smtp://u:{pw}@/?starttls=1",
        "smtp://u:{pw}@mail.example.com/path?starttls=1",
        "smtp://u:{pw}@mail.example.com\r\n?starttls=1",
        "smtp://u:{pw}@mail example.com?starttls=1",
        "smtp://:{pw}@mail.example.com?starttls=1",
    ],
)
def test_smtp_url_errors_are_one_line_without_the_password(url: str) -> None:
    for password in (PASSWORD, "S3cr3t%3Ap%40ss%2Fw%25rd", "hunter2-zz9"):
        with pytest.raises(ValueError) as raised:
            parse_smtp_url(url.format(pw=password))
        text = str(raised.value)
        assert text.startswith("smtp url: ") and "\n" not in text and "\r" not in text
        for secret in (password, PASSWORD, "hunter2", "S3cr3t"):
            assert secret not in text


@settings(max_examples=200, deadline=None)
@given(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._~", min_size=6, max_size=30),
    st.sampled_from(["", ":0", ":65536", ":x", "?starttls=2", "?a=b", "/x"]),
)
def test_smtp_url_errors_never_show_the_password(secret: str, tail: str) -> None:
    password = f"pw{secret}QQ"
    try:
        parse_smtp_url(f"smtp://user:{password}@mail.example.com{tail}")
    except ValueError as exc:
        assert password not in str(exc) and secret not in str(exc)
    else:
        raise AssertionError("accepted")


# --- a real SMTP server -------------------------------------------------------------------


@dataclass
class Inbox:
    """aiosmtpd handler: keeps what it was given; refuses recipients at refused.example."""

    messages: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    logins: list[tuple[bytes, bytes]] = field(default_factory=list)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address.endswith("@refused.example"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content)))
        return "250 Message accepted"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        if isinstance(data, LoginPassword):
            self.logins.append((data.login, data.password))
            ok = data.login == b"voffice" and data.password == PASSWORD.encode()
            return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535
        return AuthResult(success=False, handled=False)


@dataclass(frozen=True)
class Tls:
    cert: Path
    key: Path

    def server(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context

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
def smtp_server(request: pytest.FixtureRequest, tls: Tls) -> Iterator[tuple[Inbox, int]]:
    """A real SMTP server on loopback. Parametrised indirectly: "plain", "starttls" (STARTTLS
    and AUTH required) or "tls" (TLS from the first byte, AUTH required)."""
    mode = getattr(request, "param", "plain")
    inbox = Inbox()
    port = free_port()
    options: dict[str, Any] = {}
    if mode == "starttls":
        options = {
            "tls_context": tls.server(),
            "require_starttls": True,
            "auth_required": True,
            "authenticator": inbox.authenticate,
        }
    elif mode == "tls":
        # aiosmtpd counts only STARTTLS as TLS for AUTH; the whole session is TLS here.
        options = {
            "ssl_context": tls.server(),
            "auth_required": True,
            "auth_require_tls": False,
            "authenticator": inbox.authenticate,
        }
    controller = aiosmtpd_controller.Controller(inbox, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def received(inbox: Inbox) -> EmailMessage:
    [(_sender, _rcpts, raw)] = inbox.messages
    parsed = email.parser.BytesParser(policy=email.policy.default).parsebytes(raw)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_send_smtp_plain(smtp_server: tuple[Inbox, int], wav: Path) -> None:
    inbox, port = smtp_server
    message = build_message(notice(audio=wav), SENDER, TO, now=NOW)
    send_smtp(parse_smtp_url(f"smtp://127.0.0.1:{port}"), message)
    [(mail_from, rcpts, _raw)] = inbox.messages
    assert (mail_from, rcpts) == (SENDER, TO)
    got = received(inbox)
    assert got["Message-ID"] == message["Message-ID"]
    assert got["Subject"] == "Голосовое сообщение от +79031112233 на +74951234567, 8 с"
    [part] = attachments(got)
    assert part.get_content() == attachments(message)[0].get_content()


@pytest.mark.parametrize("smtp_server", ["starttls"], indirect=True)
def test_send_smtp_starttls_and_login(smtp_server: tuple[Inbox, int], tls: Tls, pdf: Path) -> None:
    inbox, port = smtp_server
    message = build_message(notice(kind="fax", pdf=pdf, pages=2, language="en"), SENDER, TO)
    url = f"smtp://voffice:S3cr3t%3Ap%40ss%2Fw%25rd@localhost:{port}?starttls=1"
    send_smtp(parse_smtp_url(url), message, ssl_context=tls.client())
    assert inbox.logins == [(b"voffice", PASSWORD.encode())]
    assert attachments(received(inbox))[0].get_content() == pdf.read_bytes()


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
@pytest.mark.parametrize("smtp_server", ["tls"], indirect=True)
def test_send_smtps(smtp_server: tuple[Inbox, int], tls: Tls) -> None:
    inbox, port = smtp_server
    url = f"smtps://voffice:S3cr3t%3Ap%40ss%2Fw%25rd@localhost:{port}"
    send_smtp(parse_smtp_url(url), build_message(notice(kind="missed"), SENDER, TO), ssl_context=tls.client())
    assert received(inbox)["Subject"].startswith("Пропущенный вызов")


@pytest.mark.parametrize("smtp_server", ["starttls"], indirect=True)
def test_smtp_failures_are_one_line_without_the_password(smtp_server: tuple[Inbox, int], tls: Tls) -> None:
    inbox, port = smtp_server
    message = build_message(notice(kind="missed"), SENDER, TO)
    cases = [
        # a wrong password
        (SmtpSettings("localhost", port, "starttls", "voffice", PASSWORD + "x"), tls.client(), "login as voffice"),
        # the self-signed certificate is not trusted by the system's CAs
        (SmtpSettings("localhost", port, "starttls", "voffice", PASSWORD), None, "TLS failed"),
        # STARTTLS required by the server, not used by us
        (SmtpSettings("localhost", port, "plain"), None, "530"),
        # nobody listening
        (SmtpSettings("127.0.0.1", free_port(), "starttls", "voffice", PASSWORD), None, "cannot connect"),
    ]
    for settings_, context, expected in cases:
        with pytest.raises(DeliveryError) as raised:
            send_smtp(settings_, message, timeout=5, ssl_context=context)
        text = str(raised.value)
        assert expected in text, text
        assert "\n" not in text and PASSWORD not in text and "S3cr3t" not in text
    assert inbox.messages == []


def test_starttls_is_never_skipped(smtp_server: tuple[Inbox, int]) -> None:
    inbox, port = smtp_server  # a server without STARTTLS
    with pytest.raises(DeliveryError, match="does not offer STARTTLS"):
        send_smtp(
            SmtpSettings("127.0.0.1", port, "starttls", "voffice", PASSWORD),
            build_message(notice(kind="missed"), SENDER, TO),
        )
    assert inbox.messages == []


def test_partly_refused_recipients(smtp_server: tuple[Inbox, int]) -> None:
    inbox, port = smtp_server
    message = build_message(notice(kind="missed"), SENDER, ["office@berry.example", "x@refused.example"])
    with pytest.raises(PartiallyDelivered) as raised:
        send_smtp(SmtpSettings("127.0.0.1", port), message)
    assert raised.value.refused == ("x@refused.example",)
    assert [rcpts for _f, rcpts, _r in inbox.messages] == [["office@berry.example"]]
    with pytest.raises(DeliveryError, match="every recipient refused"):
        send_smtp(SmtpSettings("127.0.0.1", port), build_message(notice(kind="missed"), SENDER, ["x@refused.example"]))


def test_smtp_timeout(tmp_path: Path) -> None:
    import socket

    with socket.socket() as silent:  # accepts (the kernel does) but never greets
        silent.bind(("127.0.0.1", free_port()))
        silent.listen(1)
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(DeliveryError, match=r"timed out after 0\.5 s"):
            send_smtp(SmtpSettings("127.0.0.1", port), build_message(notice(kind="missed"), SENDER, TO), timeout=0.5)
        assert time.monotonic() - started < 5


# --- Maildir ----------------------------------------------------------------------------


def test_deliver_maildir(tmp_path: Path, pdf: Path) -> None:
    path = tmp_path / "spool" / "Maildir"
    message = build_message(notice(kind="fax", pdf=pdf, pages=2), SENDER, TO)
    key = deliver_maildir(path, message)
    again = deliver_maildir(path, build_message(notice(kind="missed"), SENDER, TO))
    assert key != again
    assert sorted(p.name for p in path.iterdir()) == ["cur", "new", "tmp"]
    stored = (path / "new" / key).read_bytes()
    assert b"\r\n" not in stored  # local line endings in a Maildir
    box = mailbox.Maildir(str(path), factory=None)
    assert sorted(box.keys()) == sorted([key, again])
    parsed = email.parser.BytesParser(policy=email.policy.default).parsebytes(stored)
    assert isinstance(parsed, EmailMessage)
    assert parsed["Message-ID"] == message["Message-ID"]
    assert attachments(parsed)[0].get_content() == pdf.read_bytes()


def test_deliver_maildir_failure_is_a_delivery_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(DeliveryError, match="maildir"):
        deliver_maildir(blocker / "Maildir", build_message(notice(kind="missed"), SENDER, TO))


def test_a_long_ascii_subject_has_no_leading_space() -> None:
    """Found by the property test above: a subject just over one line came back as
    " Voicemail from ..." (folded right after "Subject:")."""
    sent = notice(kind="voicemail", caller="", number="00000000000000000000000000000", language="en", pages=2)
    assert parse(build_message(sent, SENDER, TO))["Subject"] == subject(sent)
