"""Notification e-mail for a voicemail, a fax or a missed call, and its delivery (SMTP or a
Maildir).

`build_message` makes a complete MIME message in the account's language: subject and text
body, a Message-ID that is the same each time the same call's notice is built (so a retried
delivery is recognisably the same mail and clients can collapse duplicates), and the
recording per the account's attachment policy:

    attach   the voicemail as MP3 (or the WAV when it cannot be compressed), the fax as PDF
    link     no file; the text carries the URL to fetch it
    none     neither file nor link; the text says the recording is kept on the server

The text never announces an attachment the message does not have (a missing file, one too
large for mail servers). Everything that reaches a header is checked first: the addresses
with `routing.core.notify_targets.email_problem`, the call's fields (which come from SIP) for
control characters, so nothing can add a header line.

Voicemail goes out as MP3 because every mail client and phone plays it, Debian ships an
encoder (`lame`), and 8 kHz speech at VBR quality 7 is about a tenth of the WAV (128 kbit/s).
Opus would be smaller still, but Ogg Opus attachments do not play everywhere (older Outlook,
some phones' mail apps).

Delivery errors are `DeliveryError`: one line, meant for logs and the delivery record, and
never containing a password.
"""

from __future__ import annotations

import contextlib
import email.header
import email.policy
import email.utils
import hashlib
import mailbox
import os
import re
import shutil
import smtplib
import ssl
import subprocess
import unicodedata
import wave
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import unquote, urlsplit

from routing.core.notify_targets import ATTACHMENTS, EVENTS, LANGUAGES, email_problem

MAX_ATTACHMENT_BYTES = 15 * 1024 * 1024  # mail servers cap messages at 10-25 MB; base64 adds a third
MAX_RECIPIENTS = 50
MAX_FIELD = 256
LAME_TIMEOUT = 120.0  # seconds; encoding an hour of 8 kHz speech takes a few seconds
LAME_ARGS = ("--quiet", "-V", "7", "-m", "m")  # VBR quality 7 (speech), mono; 8 kHz in -> 8 kHz out


class DeliveryError(Exception):
    """A notification could not be delivered. The text is one line without secrets."""


class PartiallyDelivered(DeliveryError):
    """The SMTP server took the message for some recipients and refused the others: a retry
    must go only to `refused`, or the others get it twice."""

    def __init__(self, text: str, refused: Sequence[str]) -> None:
        super().__init__(text)
        self.refused = tuple(refused)


class _MailPolicy(email.policy.EmailPolicy):
    """email.policy.SMTP, except that the Subject is folded (and, when not ASCII, encoded) by email.header.
    Python 3.11's folder splits such a header between two encoded words at a space and
    leaves the space outside them, where RFC 2047 says decoders drop it: "от неизвестного"
    arrived as "отнеизвестного". email.header keeps every space inside the encoded words."""

    def fold(self, name: str, value: str) -> str:
        if name.lower() == "subject":
            return self._encoded(name, str(value))
        folded: str = super().fold(name, value)
        return folded

    def fold_binary(self, name: str, value: str) -> bytes:
        if name.lower() == "subject":
            return self._encoded(name, str(value)).encode("ascii")
        return super().fold_binary(name, value)

    def _encoded(self, name: str, value: str) -> str:
        # An ASCII subject too: the policy's folder breaks a long one right after "Subject:",
        # and readers then show it with a leading space; email.header folds at a later space.
        header = email.header.Header(value, charset="us-ascii" if value.isascii() else "utf-8", header_name=name)
        return f"{name}: {header.encode(linesep=self.linesep, maxlinelen=self.max_line_length or 78)}{self.linesep}"


MAIL_POLICY = _MailPolicy(linesep="\r\n")


# --- the notice -------------------------------------------------------------------------


def _text_problem(value: object) -> str | None:
    """Why a call's field (it comes from SIP) may not go into a header or the text."""
    if not isinstance(value, str):
        return "is not a string"
    if len(value) > MAX_FIELD:
        return f"is longer than {MAX_FIELD} characters"
    for char in value:
        # Cc: control characters (CR, LF: header injection); Cf: invisible format characters
        # (bidi overrides make "+7903..." display as another number); Cs: lone surrogates (no
        # UTF-8 for them); Zl/Zp: line breaks.
        if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            return f"contains the control character U+{ord(char):04X}"
    return None


@dataclass(frozen=True)
class Notice:
    """What a customer is told about one call. `at` is the call's time in the account's
    zone (shown as is); `link` is where the recording can be fetched (policy "link")."""

    kind: str  # "voicemail" | "fax" | "missed"
    account: str
    number: str  # the virtual number called
    caller: str  # "" or "anonymous" when withheld
    call_id: str
    at: datetime
    language: str = "ru"  # "ru" | "en"
    attachments: str = "attach"  # "attach" | "link" | "none"
    duration_seconds: float | None = None
    pages: int | None = None
    audio: Path | None = None  # the voicemail WAV
    pdf: Path | None = None  # the fax as PDF
    link: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in EVENTS:
            raise ValueError(f"notice kind must be one of {', '.join(EVENTS)}, not {self.kind!r:.40}")
        if self.language not in LANGUAGES:
            raise ValueError(f"notice language must be one of {', '.join(LANGUAGES)}, not {self.language!r:.40}")
        if self.attachments not in ATTACHMENTS:
            raise ValueError(f"attachment policy must be one of {', '.join(ATTACHMENTS)}, not {self.attachments!r:.40}")
        for name in ("account", "number", "caller", "call_id"):
            problem = _text_problem(getattr(self, name))
            if problem:
                raise ValueError(f"notice {name} {problem}")
        if not self.call_id:
            raise ValueError("notice call_id is empty")
        if not isinstance(self.at, datetime) or self.at.utcoffset() is None:
            raise ValueError("notice time must be an aware datetime (with its UTC offset)")
        if self.duration_seconds is not None and not (0 <= self.duration_seconds < 1e7):
            raise ValueError(f"notice duration {self.duration_seconds!r} is out of range")
        if self.pages is not None and not (0 <= self.pages < 100_000):
            raise ValueError(f"notice pages {self.pages!r} is out of range")
        if self.link is not None:
            problem = _text_problem(self.link)
            if problem or not re.fullmatch(r"https?://[!-~]+", self.link):
                raise ValueError("notice link must be an http(s) URL without spaces or control characters")
        if self.attachments == "link" and self.kind != "missed" and not self.link:
            raise ValueError("attachment policy 'link' needs a link")


# --- compressing voicemail ----------------------------------------------------------------


def _is_pcm_wav(path: Path) -> bool:
    """A readable mono 16-bit PCM WAV with samples: lame would encode anything else as noise."""
    try:
        with wave.open(str(path), "rb") as source:
            return source.getnchannels() == 1 and source.getsampwidth() == 2 and source.getnframes() > 0
    except (OSError, EOFError, wave.Error):
        return False


def compressed_audio(wav: Path, *, lame: str = "lame", timeout: float = LAME_TIMEOUT) -> Path | None:
    """The voicemail as MP3 next to the WAV (same name, .mp3), made once: an existing MP3 at
    least as new as the WAV is reused, so a resent notice does not encode again. None when
    lame is not installed, fails or takes longer than `timeout`, or when the MP3 would not
    be smaller (a very short message): then the WAV itself is sent."""
    mp3 = wav.with_suffix(".mp3")
    try:
        source = wav.stat()
    except OSError:
        return None
    try:
        existing = mp3.stat()
    except OSError:
        existing = None
    if existing is not None and existing.st_mtime_ns >= source.st_mtime_ns and 0 < existing.st_size < source.st_size:
        return mp3
    binary = shutil.which(lame)
    if binary is None or not _is_pcm_wav(wav):
        return None
    # Encode to a private name, then rename: a concurrent sender or a crash never leaves a
    # half-written MP3 under the final name.
    tmp = mp3.with_name(f".{mp3.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        result = subprocess.run(
            [binary, *LAME_ARGS, os.path.abspath(wav), os.path.abspath(tmp)],  # never "-x" as an option
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0 or not tmp.exists() or not 0 < tmp.stat().st_size < source.st_size:
            return None
        os.replace(tmp, mp3)
        return mp3
    except (OSError, subprocess.SubprocessError):
        return None
    finally:
        with contextlib.suppress(OSError):  # a read-only folder: the WAV is sent instead
            tmp.unlink(missing_ok=True)


# --- the message ------------------------------------------------------------------------

_WORDS: dict[str, dict[str, str]] = {
    "ru": {
        "voicemail": "Голосовое сообщение",
        "fax": "Факс",
        "missed": "Пропущенный вызов",
        "from": "от {caller}",
        "unknown": "от неизвестного абонента",
        "to": "на {number}",
        "seconds": "{s} с",
        "minutes": "{m} мин {s:02d} с",
        "page": "{n} стр.",
        "pages": "{n} стр.",
        "caller": "Звонивший",
        "number": "Номер",
        "time": "Время звонка",
        "duration": "Длительность",
        "page_count": "Страниц",
        "account": "Аккаунт",
        "call": "Звонок",
        "withheld": "номер скрыт",
        "time_format": "%d.%m.%Y %H:%M:%S",
        "voicemail_attached": "Запись — во вложении ({name}).",
        "fax_attached": "Факс — во вложении, PDF ({name}).",
        "voicemail_link": "Запись можно скачать по ссылке:\n{link}",
        "fax_link": "Факс (PDF) можно скачать по ссылке:\n{link}",
        "voicemail_kept": "Запись хранится на сервере; к письму она не приложена.",
        "fax_kept": "Факс хранится на сервере; к письму он не приложен.",
        "voicemail_unattached": "Приложить запись к письму не удалось; она хранится на сервере.",
        "fax_unattached": "Приложить факс к письму не удалось; он хранится на сервере.",
        "missed_text": "Звонок не был принят.",
        "footer": "Это письмо отправлено автоматически, отвечать на него не нужно.",
    },
    "en": {
        "voicemail": "Voicemail",
        "fax": "Fax",
        "missed": "Missed call",
        "from": "from {caller}",
        "unknown": "from an unknown caller",
        "to": "to {number}",
        "seconds": "{s} s",
        "minutes": "{m} min {s:02d} s",
        "page": "{n} page",
        "pages": "{n} pages",
        "caller": "Caller",
        "number": "Number",
        "time": "Time of the call",
        "duration": "Duration",
        "page_count": "Pages",
        "account": "Account",
        "call": "Call",
        "withheld": "withheld",
        "time_format": "%Y-%m-%d %H:%M:%S",
        "voicemail_attached": "The recording is attached ({name}).",
        "fax_attached": "The fax is attached as a PDF ({name}).",
        "voicemail_link": "Download the recording:\n{link}",
        "fax_link": "Download the fax (PDF):\n{link}",
        "voicemail_kept": "The recording is kept on the server and is not sent by e-mail.",
        "fax_kept": "The fax is kept on the server and is not sent by e-mail.",
        "voicemail_unattached": "The recording could not be included in this message; it is kept on the server.",
        "fax_unattached": "The fax could not be included in this message; it is kept on the server.",
        "missed_text": "Nobody answered the call.",
        "footer": "This message was sent automatically; there is no need to reply.",
    },
}


def _withheld(caller: str) -> bool:
    return caller.strip().lower() in ("", "anonymous", "unknown", "unavailable", "restricted", "private")


def _duration(seconds: float, words: dict[str, str]) -> str:
    whole = round(seconds) if seconds >= 1 or seconds == 0 else 1
    if whole < 60:
        return words["seconds"].format(s=whole)
    return words["minutes"].format(m=whole // 60, s=whole % 60)


def _pages(pages: int, words: dict[str, str]) -> str:
    return words["page" if pages == 1 else "pages"].format(n=pages)


def _time(at: datetime, words: dict[str, str]) -> str:
    offset = at.strftime("%z")  # +0300
    return f"{at.strftime(words['time_format'])} (UTC{offset[:3]}:{offset[3:5]})"


def subject(notice: Notice) -> str:
    """'Голосовое сообщение от +79031112233 на +74951234567, 8 с'."""
    words = _WORDS[notice.language]
    parts = [words[notice.kind]]
    parts.append(words["unknown"] if _withheld(notice.caller) else words["from"].format(caller=notice.caller))
    parts.append(words["to"].format(number=notice.number))
    text = " ".join(parts)
    if notice.kind == "voicemail" and notice.duration_seconds is not None:
        text += ", " + _duration(notice.duration_seconds, words)
    if notice.kind == "fax" and notice.pages is not None:
        text += ", " + _pages(notice.pages, words)
    return text


def message_id(notice: Notice, domain: str) -> str:
    """The same for every build of one call's notice of one kind."""
    digest = hashlib.sha256(f"voffice\0{notice.kind}\0{notice.call_id}".encode()).hexdigest()[:32]
    return f"<{notice.kind}.{digest}@{domain}>"


def _filename(notice: Notice, suffix: str) -> str:
    """voicemail-20261125-1330-79031112233.mp3: what the customer's download folder shows."""
    caller = re.sub(r"[^0-9A-Za-z]+", "", notice.caller)[:32] or "unknown"
    return f"{notice.kind}-{notice.at.strftime('%Y%m%d-%H%M')}-{caller}{suffix}"


_MIME = {".mp3": ("audio", "mpeg"), ".wav": ("audio", "wav"), ".pdf": ("application", "pdf")}


def _attachment(notice: Notice, max_bytes: int) -> tuple[Path, str] | None:
    """The file to attach and its name, or None (policy, kind, missing or too large)."""
    if notice.attachments != "attach":
        return None
    if notice.kind == "voicemail" and notice.audio is not None:
        path = compressed_audio(notice.audio) or notice.audio
    elif notice.kind == "fax" and notice.pdf is not None:
        path = notice.pdf
    else:
        return None
    try:
        size = path.stat().st_size
    except OSError:
        return None
    if size == 0 or size > max_bytes:
        return None
    return path, _filename(notice, path.suffix.lower() if path.suffix.lower() in _MIME else ".bin")


def _addresses(sender: str, to: Sequence[str] | str) -> list[str]:
    if isinstance(to, str):
        raise ValueError("recipients must be a sequence of addresses, not one string")
    problem = email_problem(sender)
    if problem:
        raise ValueError(f"sender address {problem}")
    recipients: list[str] = []
    for address in to:
        problem = email_problem(address)
        if problem:
            raise ValueError(f"recipient address {problem}")
        if address.lower() not in (r.lower() for r in recipients):
            recipients.append(address)
    if not recipients:
        raise ValueError("no recipients")
    if len(recipients) > MAX_RECIPIENTS:
        raise ValueError(f"more than {MAX_RECIPIENTS} recipients")
    return recipients


def build_message(
    notice: Notice,
    sender: str,
    to: Sequence[str],
    *,
    now: datetime | None = None,
    max_attachment_bytes: int = MAX_ATTACHMENT_BYTES,
) -> EmailMessage:
    """The notification mail for `notice` from `sender` to `to` (plain addresses). Raises
    ValueError for an address that is not a plain addr-spec (or anything that would put a
    line break into a header). `now` is the Date (default: the current time)."""
    recipients = _addresses(sender, to)
    words = _WORDS[notice.language]
    found = _attachment(notice, max_attachment_bytes)

    lines = [subject(notice) + ".", ""]
    lines.append(f"{words['caller']}: {words['withheld'] if _withheld(notice.caller) else notice.caller}")
    lines.append(f"{words['number']}: {notice.number}")
    lines.append(f"{words['time']}: {_time(notice.at, words)}")
    if notice.kind == "voicemail" and notice.duration_seconds is not None:
        lines.append(f"{words['duration']}: {_duration(notice.duration_seconds, words)}")
    if notice.kind == "fax" and notice.pages is not None:
        lines.append(f"{words['page_count']}: {notice.pages}")
    lines.append(f"{words['account']}: {notice.account}")
    lines.append(f"{words['call']}: {notice.call_id}")
    lines.append("")
    if notice.kind == "missed":
        lines.append(words["missed_text"])
    elif found is not None:
        lines.append(words[f"{notice.kind}_attached"].format(name=found[1]))
    elif notice.attachments == "link" and notice.link:
        lines.append(words[f"{notice.kind}_link"].format(link=notice.link))
    elif notice.attachments == "attach":
        lines.append(words[f"{notice.kind}_unattached"])
    else:
        lines.append(words[f"{notice.kind}_kept"])
    lines += ["", "-- ", words["footer"], ""]

    message = EmailMessage(policy=MAIL_POLICY)
    message["Subject"] = subject(notice)
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = email.utils.format_datetime((now or datetime.now(UTC)).astimezone(UTC))
    message["Message-ID"] = message_id(notice, sender.rpartition("@")[2].lower())
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: vacation responders stay quiet
    message.set_content("\n".join(lines), charset="utf-8")
    message["Content-Language"] = notice.language  # after set_content, which clears Content-*
    if found is not None:
        path, name = found
        maintype, subtype = _MIME.get(path.suffix.lower(), ("application", "octet-stream"))
        message.add_attachment(path.read_bytes(), maintype=maintype, subtype=subtype, filename=name)
    return message


# --- SMTP -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmtpSettings:
    """Where mail goes. `security`: "plain", "starttls" (required, never skipped when the
    server does not offer it) or "tls" (smtps, TLS from the first byte)."""

    host: str
    port: int
    security: str = "plain"
    user: str | None = None
    password: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        """The URL without the password, for logs."""
        scheme = "smtps" if self.security == "tls" else "smtp"
        user = f"{self.user}@" if self.user else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        query = "?starttls=1" if self.security == "starttls" else ""
        return f"{scheme}://{user}{host}:{self.port}{query}"


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def parse_smtp_url(url: str) -> SmtpSettings:
    """`smtp://[user[:password]@]host[:port][?starttls=1]` or `smtps://...` (user and
    password percent-encoded). Default ports: 25, 587 with STARTTLS, 465 for smtps. A user
    needs TLS (smtps or starttls=1): a password must not cross the network in clear. Raises
    ValueError with a one-line reason that never contains the password."""
    if not isinstance(url, str) or _text_problem(url) or any(c.isspace() for c in url):
        raise ValueError("smtp url: not a single-line URL without spaces")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ValueError("smtp url: malformed") from None
    if parts.scheme not in ("smtp", "smtps"):
        raise ValueError("smtp url: the scheme must be smtp:// or smtps://")
    if parts.path not in ("", "/") or parts.fragment:
        raise ValueError("smtp url: nothing may follow the host and port but ?starttls=1")
    starttls = False
    for item in parts.query.split("&") if parts.query else []:
        name, _, value = item.partition("=")
        if name != "starttls":
            raise ValueError(f"smtp url: unknown parameter {name[:20]!r} (only starttls)")
        if value.lower() not in _TRUE + _FALSE:
            raise ValueError("smtp url: starttls must be 1 or 0")
        starttls = value.lower() in _TRUE
    if parts.scheme == "smtps" and starttls:
        raise ValueError("smtp url: smtps:// is TLS already; starttls=1 goes with smtp://")
    netloc = parts.netloc
    userinfo, at, hostport = netloc.rpartition("@")
    if not at:
        userinfo, hostport = "", netloc
    user: str | None = None
    password: str | None = None
    if at:
        raw_user, colon, raw_password = userinfo.partition(":")
        user = unquote(raw_user)
        password = unquote(raw_password) if colon else None
        if not user or _text_problem(user):
            raise ValueError("smtp url: the user name is empty or contains control characters")
        if password is not None and _text_problem(password):
            raise ValueError("smtp url: the password contains control characters")
    match = re.fullmatch(
        r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9._-]+))(?::(?P<port>[0-9]{1,5}))?", hostport
    )
    if not match:
        raise ValueError("smtp url: the host is missing or not a host name, IPv4 or [IPv6] address")
    host = match.group("v6") or match.group("name")
    security = "tls" if parts.scheme == "smtps" else "starttls" if starttls else "plain"
    port = int(match.group("port")) if match.group("port") else {"tls": 465, "starttls": 587, "plain": 25}[security]
    if not 1 <= port <= 65535:
        raise ValueError("smtp url: the port must be 1-65535")
    if user is not None and security == "plain":
        raise ValueError("smtp url: a login needs TLS (smtps://, or smtp://...?starttls=1)")
    return SmtpSettings(host=host, port=port, security=security, user=user, password=password)


def _one_line(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` on one line, at most 300 characters, with every secret blanked out."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."


def _reply(code: int, reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return f"{code} {text}"


def send_smtp(
    settings: SmtpSettings, message: EmailMessage, timeout: float = 10.0, *, ssl_context: ssl.SSLContext | None = None
) -> None:
    """Hand `message` to the SMTP server (envelope from its From/To). TLS certificates are
    verified (`ssl_context`: the system's CAs unless given). Raises DeliveryError."""
    where = f"smtp {settings.host}:{settings.port}"
    secrets = (settings.password,)
    context = ssl_context or ssl.create_default_context()
    try:
        client: smtplib.SMTP
        if settings.security == "tls":
            client = smtplib.SMTP_SSL(settings.host, settings.port, timeout=timeout, context=context)
        else:
            client = smtplib.SMTP(settings.host, settings.port, timeout=timeout)
        with client:
            client.ehlo()
            if settings.security == "starttls":
                if not client.has_extn("starttls"):
                    raise DeliveryError(f"{where}: the server does not offer STARTTLS (not sending in clear)")
                client.starttls(context=context)
                client.ehlo()
            if settings.user is not None:
                client.login(settings.user, settings.password or "")
            refused = client.send_message(message)
    except DeliveryError:
        raise
    except smtplib.SMTPAuthenticationError as exc:
        detail = _reply(exc.smtp_code, exc.smtp_error)
        raise DeliveryError(_one_line(f"{where}: login as {settings.user} refused: {detail}", secrets)) from None
    except smtplib.SMTPRecipientsRefused as exc:
        detail = "; ".join(f"{rcpt}: {_reply(*reply)}" for rcpt, reply in exc.recipients.items())
        raise DeliveryError(_one_line(f"{where}: every recipient refused ({detail})", secrets)) from None
    except smtplib.SMTPResponseException as exc:
        detail = _reply(exc.smtp_code, exc.smtp_error)
        raise DeliveryError(_one_line(f"{where}: the server answered {detail}", secrets)) from None
    except smtplib.SMTPNotSupportedError as exc:
        raise DeliveryError(_one_line(f"{where}: not supported by the server: {exc}", secrets)) from None
    except smtplib.SMTPServerDisconnected as exc:
        if isinstance(exc.__context__, TimeoutError):  # smtplib wraps a read timeout
            raise DeliveryError(f"{where}: timed out after {timeout:g} s") from None
        raise DeliveryError(_one_line(f"{where}: the server closed the connection ({exc})", secrets)) from None
    except smtplib.SMTPException as exc:
        raise DeliveryError(_one_line(f"{where}: {type(exc).__name__}: {exc}", secrets)) from None
    except ssl.SSLError as exc:
        raise DeliveryError(_one_line(f"{where}: TLS failed: {exc.reason or exc}", secrets)) from None
    except TimeoutError:
        raise DeliveryError(f"{where}: timed out after {timeout:g} s") from None
    except OSError as exc:
        raise DeliveryError(_one_line(f"{where}: cannot connect: {exc.strerror or exc}", secrets)) from None
    if refused:
        detail = "; ".join(f"{rcpt}: {_reply(*reply)}" for rcpt, reply in refused.items())
        raise PartiallyDelivered(_one_line(f"{where}: some recipients refused ({detail})", secrets), list(refused))


# --- Maildir ----------------------------------------------------------------------------


def _fsync(path: Path, flags: int = os.O_RDONLY) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def deliver_maildir(path: Path, message: EmailMessage) -> str:
    """Drop `message` into the Maildir at `path` (created if missing) and return its key.
    The file and its directory are synced: a delivery reported done survives a crash."""
    try:
        for sub in ("tmp", "new", "cur"):  # mailbox creates these only with the directory itself
            (path / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        box = mailbox.Maildir(os.fspath(path), factory=None, create=False)
        # Maildir files use the local line ending, not SMTP's CRLF.
        key = box.add(message.as_bytes(policy=message.policy.clone(linesep="\n")))
        stored = path / "new" / key
        if stored.exists():
            _fsync(stored)
            _fsync(stored.parent, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise DeliveryError(_one_line(f"maildir {path}: {exc.strerror or exc}")) from None
    return key
