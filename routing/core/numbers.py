"""Phone number forms: E.164 normalisation of callers and DIDs, and caller-list patterns.

Callers arrive in whatever form the trunk sends (`+74951234567`, `74951234567`,
`84951234567`, `4951234567`, `810...`), and a caller list is written once in E.164. We
normalise to E.164 with a small per-country table instead of the `phonenumbers` package:
that package costs tens of microseconds per parse and megabytes per process, and every
Kamailio worker runs this on every INVITE. Only the national forms matter here, not the
full numbering plan.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class NationalForm:
    calling_code: str
    trunk_prefix: str | None  # dialled before a national number ("8" in Russia, "0" in Germany)
    international_prefixes: tuple[str, ...]  # dialled before a country code ("810", "00")
    national_lengths: tuple[int, ...]  # significant digits after the trunk prefix; () = variable


NATIONAL_FORMS: dict[str, NationalForm] = {
    "RU": NationalForm("7", "8", ("810", "00"), (10,)),
    "KZ": NationalForm("7", "8", ("810", "00"), (10,)),
    "BY": NationalForm("375", "8", ("810", "00"), (9,)),
    "UA": NationalForm("380", "0", ("00",), (9,)),
    "US": NationalForm("1", "1", ("011",), (10,)),
    "CA": NationalForm("1", "1", ("011",), (10,)),
    "GB": NationalForm("44", "0", ("00",), (9, 10)),
    "DE": NationalForm("49", "0", ("00",), ()),
    "FR": NationalForm("33", "0", ("00",), (9,)),
    "ES": NationalForm("34", None, ("00",), (9,)),
    "IT": NationalForm("39", None, ("00",), ()),
    "NL": NationalForm("31", "0", ("00",), (9,)),
    "PL": NationalForm("48", None, ("00",), (9,)),
    "AU": NationalForm("61", "0", ("0011",), (9,)),
    "AE": NationalForm("971", "0", ("00",), (8, 9)),
    "IL": NationalForm("972", "0", ("00",), (8, 9)),
    "JP": NationalForm("81", "0", ("010",), (9, 10)),
}

E164 = re.compile(r"\+[1-9][0-9]{6,14}")
# A plain sip:user@host[:port], no parameters or headers: operators dialled directly.
SIP_URI = re.compile(
    r"sip:[A-Za-z0-9._~+-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*(?::[0-9]{1,5})?"
)
_SEPARATORS = str.maketrans("", "", " -.()\t")
_DIGITS = re.compile(r"\+?[0-9]{1,20}")


def to_e164(raw: str | None, country: str | None) -> str | None:
    """The E.164 form of a number written as a caller or trunk would, or None.

    None means "not a phone number we can place": anonymous, a SIP name, an internal
    short number. Such callers match no caller list.
    """
    if not raw:
        return None
    text = raw.translate(_SEPARATORS)
    if not _DIGITS.fullmatch(text):
        return None
    if text[0] == "+":
        return text if E164.fullmatch(text) else None
    form = NATIONAL_FORMS.get(country) if country else None
    if form is not None:
        candidate = _national_to_e164(text, form)
        if candidate is not None:
            return candidate
    elif text.startswith("00"):
        text = text[2:]
    # Digits with no recognisable national form: an international number without '+'.
    if 11 <= len(text) <= 15:
        candidate = "+" + text
        return candidate if E164.fullmatch(candidate) else None
    return None


def _national_to_e164(digits: str, form: NationalForm) -> str | None:
    for prefix in form.international_prefixes:
        if digits.startswith(prefix) and len(digits) > len(prefix) + 6:
            candidate = "+" + digits[len(prefix):]
            return candidate if E164.fullmatch(candidate) else None
    lengths = form.national_lengths
    trunk = form.trunk_prefix
    if trunk and digits.startswith(trunk) and (not lengths or len(digits) - len(trunk) in lengths):
        candidate = "+" + form.calling_code + digits[len(trunk):]
        return candidate if E164.fullmatch(candidate) else None
    cc = form.calling_code
    if digits.startswith(cc) and (not lengths or len(digits) - len(cc) in lengths):
        candidate = "+" + digits
        return candidate if E164.fullmatch(candidate) else None
    if lengths and len(digits) in lengths:
        candidate = "+" + cc + digits
        return candidate if E164.fullmatch(candidate) else None
    return None


def did_candidates(raw: str, countries: tuple[str, ...] | frozenset[str]) -> list[str]:
    """E.164 forms a dialled number (R-URI user) may stand for, most literal first.

    The account (and so its country) is not known until the number is found, so each
    country that has accounts is tried.
    """
    out: list[str] = []
    plain = to_e164(raw, None)
    if plain:
        out.append(plain)
    for country in sorted(countries):
        candidate = to_e164(raw, country)
        if candidate and candidate not in out:
            out.append(candidate)
    return out


# --- caller-list patterns ---------------------------------------------------------------

PATTERN = re.compile(r"\+[0-9?*]{1,15}|\*")


def pattern_regex_source(pattern: str) -> str:
    """Regex source for one caller pattern: '?' one digit, '*' any digits (none included)."""
    parts = []
    for char in pattern:
        if char == "?":
            parts.append("[0-9]")
        elif char == "*":
            parts.append("[0-9]*")
        elif char == "+":
            parts.append(r"\+")
        else:
            parts.append(char)
    body = "".join(parts)
    return r"\+[0-9]*" if pattern == "*" else body


@lru_cache(maxsize=65536)
def compile_patterns(patterns: tuple[str, ...]) -> re.Pattern[str]:
    """One regex for a whole caller list, used with fullmatch (never `$`)."""
    return re.compile("|".join(f"(?:{pattern_regex_source(p)})" for p in patterns))


def pattern_problem(pattern: str) -> str | None:
    """Why a syntactically valid pattern can match no E.164 number, or None."""
    if pattern == "*":
        return None
    body = pattern[1:]
    fixed = sum(1 for c in body if c != "*")
    if fixed > 15:
        return f"pattern {pattern!r} needs {fixed} digits but E.164 numbers have at most 15"
    if body[:1] == "0":
        return f"pattern {pattern!r} starts with country code 0, which no E.164 number has"
    if "*" not in body and fixed < 7:
        return f"pattern {pattern!r} has {fixed} digits but E.164 numbers have at least 7"
    return None


def pattern_matches(pattern: str, number: str) -> bool:
    return compile_patterns((pattern,)).fullmatch(number) is not None
