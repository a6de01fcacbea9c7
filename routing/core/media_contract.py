"""The contract between Kamailio and the media server: `X-VO-Op`, `X-VO-Call`, `X-VO-Result`.

Both sides are ours; this module is the one place that encodes and decodes them, and it is
strict in both directions: a header value is `key=value;key=value`, every key known, every
value matching its own whole-string pattern, so nothing from a config or a caller can
smuggle a CRLF, a `;` or a `,` into a SIP header.

X-VO-Op: v=1;type=menu;account=berry-demo;version=3;op=menu;sound=menu-prompt;timeout=5;
         repeat=0;max_repeats=3;keys=12;number=+74951234567;caller=+79031112233
X-VO-Call: a call id (hex) that events of the call carry
X-VO-Result (on the media server's final reply): digits=101 | key=1 | timeout | invalid | done
"""

from __future__ import annotations

import re

OP_TYPES = ("menu", "announcement", "extension", "voicemail", "fax")
_ID = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
_FIELDS: dict[str, re.Pattern[str]] = {
    "v": re.compile(r"1"),
    "type": re.compile("|".join(OP_TYPES)),
    "account": re.compile(_ID),
    "version": re.compile(r"[1-9][0-9]{0,9}"),
    "op": re.compile(_ID),
    "sound": re.compile(_ID),
    "timeout": re.compile(r"[1-9][0-9]{0,2}"),
    "inter_digit": re.compile(r"[1-9][0-9]{0,2}"),
    "digits": re.compile(r"[1-9]"),
    "repeat": re.compile(r"[0-9*#]"),
    "max_repeats": re.compile(r"[0-9]{1,2}"),
    "keys": re.compile(r"[0-9*#]{0,12}"),
    "max_seconds": re.compile(r"[1-9][0-9]{0,4}"),
    "number": re.compile(r"\+[1-9][0-9]{6,14}"),
    "caller": re.compile(r"\+[1-9][0-9]{6,14}|anonymous"),
}
_REQUIRED = ("v", "type", "account", "version", "op")
CALL_ID = re.compile(r"[0-9a-f]{16,32}")
_RESULT = re.compile(r"(?:digits=(?P<digits>[0-9]{1,12})|key=(?P<key>[0-9*#])|(?P<word>timeout|invalid|done))")


class ContractError(ValueError):
    """A header that does not follow the contract."""


def encode_op(fields: dict[str, str | int]) -> str:
    parts = []
    for key, value in fields.items():
        text = str(value)
        pattern = _FIELDS.get(key)
        if pattern is None:
            raise ContractError(f"unknown X-VO-Op field {key!r}")
        if not pattern.fullmatch(text):
            raise ContractError(f"X-VO-Op field {key}={text!r} does not match its pattern")
        parts.append(f"{key}={text}")
    for key in _REQUIRED:
        if key not in fields:
            raise ContractError(f"X-VO-Op needs {key}")
    return ";".join(parts)


def decode_op(header: str) -> dict[str, str]:
    if len(header) > 1024:
        raise ContractError("X-VO-Op is too long")
    fields: dict[str, str] = {}
    for part in header.strip().split(";"):
        key, sep, value = part.partition("=")
        pattern = _FIELDS.get(key)
        if not sep or pattern is None:
            raise ContractError(f"bad X-VO-Op field {part[:40]!r}")
        if key in fields:
            raise ContractError(f"X-VO-Op field {key} given twice")
        if not pattern.fullmatch(value):
            raise ContractError(f"X-VO-Op field {key}={value[:40]!r} does not match its pattern")
        fields[key] = value
    missing = [k for k in _REQUIRED if k not in fields]
    if missing:
        raise ContractError(f"X-VO-Op lacks {', '.join(missing)}")
    return fields


def encode_result(kind: str, value: str | None = None) -> str:
    text = f"{kind}={value}" if value is not None else kind
    if not _RESULT.fullmatch(text):
        raise ContractError(f"bad X-VO-Result {text!r}")
    return text


def decode_result(header: str | None) -> tuple[str, str | None] | None:
    """('digits', '101') / ('key', '1') / ('timeout', None) ...; None if absent or malformed."""
    if not header:
        return None
    match = _RESULT.fullmatch(header.strip())
    if match is None:
        return None
    if match.group("digits") is not None:
        return "digits", match.group("digits")
    if match.group("key") is not None:
        return "key", match.group("key")
    return match.group("word"), None


# An account's own sounds folder (SOUNDS_DIR/<account>/, the cabinet's uploads) holds this
# file: the media server's fallback to the shared SOUNDS_DIR never reaches into a folder
# marked so, so one account's config cannot name another's uploads ("B/x.wav").
ACCOUNT_SOUNDS_MARKER = ".voffice-account-sounds"
