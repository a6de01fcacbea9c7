"""Phone numbers: E.164 normalisation of callers and DIDs, and caller-list patterns."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from routing.core.numbers import (
    E164,
    NATIONAL_FORMS,
    compile_patterns,
    did_candidates,
    pattern_matches,
    pattern_problem,
    to_e164,
)

COUNTRIES = [None, *sorted(NATIONAL_FORMS)]

# --- to_e164: Russia ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+74951234567", "+74951234567"),
        ("74951234567", "+74951234567"),
        ("84951234567", "+74951234567"),
        ("4951234567", "+74951234567"),
        ("9161230001", "+79161230001"),
        ("89161230001", "+79161230001"),
        ("8 (495) 123-45-67", "+74951234567"),
        ("+7 (495) 123-45-67", "+74951234567"),
        ("8-800-555-35-35", "+78005553535"),
        ("8.495.123.45.67", "+74951234567"),
        ("8\t495\t1234567", "+74951234567"),  # tab is a separator; the output is clean digits
        ("81012125550123", "+12125550123"),  # 810: the Russian international prefix
        ("810 44 20 7946 0100", "+442079460100"),
        ("0074951234567", "+74951234567"),  # 00 also works from Russian networks
    ],
)
def test_russian_forms(raw: str, expected: str) -> None:
    assert to_e164(raw, "RU") == expected


# --- to_e164: other countries -------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        # US / NANP: trunk prefix 1 equals the country code, 011 international
        ("2125550123", "US", "+12125550123"),
        ("12125550123", "US", "+12125550123"),
        ("1 (212) 555-0123", "US", "+12125550123"),
        ("(212) 555-0123", "US", "+12125550123"),
        ("011 44 20 7946 0100", "US", "+442079460100"),
        ("01174951234567", "US", "+74951234567"),
        # Germany: trunk 0, variable length, 00 international
        ("03023125999", "DE", "+493023125999"),
        ("030 23125999", "DE", "+493023125999"),
        ("0049 30 23125999", "DE", "+493023125999"),
        ("0170 1234567", "DE", "+491701234567"),
        # United Kingdom: trunk 0, 9 or 10 significant digits
        ("07700900912", "GB", "+447700900912"),
        ("020 7946 0100", "GB", "+442079460100"),
        ("00 44 20 7946 0100", "GB", "+442079460100"),
        ("447700900912", "GB", "+447700900912"),
        ("7700900912", "GB", "+447700900912"),
    ],
)
def test_other_countries(raw: str, country: str, expected: str) -> None:
    assert to_e164(raw, country) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0074951234567", "+74951234567"),  # 00 prefix without a country
        ("74951234567", "+74951234567"),  # international digits without '+'
        ("4951234567", None),  # a national number means nothing without a country
        ("495123", None),
    ],
)
def test_without_a_country(raw: str, expected: str | None) -> None:
    assert to_e164(raw, None) == expected


def test_unknown_country_falls_back_to_international_digits() -> None:
    assert to_e164("74951234567", "ZZ") == "+74951234567"
    assert to_e164("4951234567", "ZZ") is None


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "anonymous",
        "Anonymous",
        "unknown",
        "restricted",
        "sip:alice@example.com",
        "alice",
        "112",
        "101",
        "03",
        "+7495",  # too short for E.164
        "+0123456789",  # country code 0
        "+1234567890123456",  # 16 digits
        "++74951234567",
        "+7+4951234567",
        "8495123456a",
        "+7495١٢٣٤٥٦٧",  # Arabic-Indic digits are not ASCII digits
        "+７４９５１２３４５６７",  # full-width digits
        "+",
        "-",
        "()",
    ],
)
def test_not_placeable_numbers_are_none(raw: str | None) -> None:
    assert to_e164(raw, "RU") is None


@pytest.mark.parametrize(
    "raw",
    [
        "+74951234567\n",
        "84951234567\n",
        "4951234567\n",
        "\n+74951234567",
        "+74951234567\r",
        "+74951234567\r\n",
        "+7495\n1234567",
        "+7495\x001234567",
        "+74951234567\x00",
        "+74951234567\x0b",
        "+74951234567\x0c",
        "+74951234567\x1b",
        "+74951234567\x7f",
        "+74951234567\x85",
        "+74951234567\u2028",
    ],
)
def test_control_characters_are_rejected(raw: str) -> None:
    assert to_e164(raw, "RU") is None
    assert to_e164(raw, None) is None


# --- did_candidates -----------------------------------------------------------------------


def test_did_candidates_e164_is_only_itself() -> None:
    assert did_candidates("+74951234567", ("RU", "GB", "US")) == ["+74951234567"]


def test_did_candidates_national_form() -> None:
    assert did_candidates("4951234567", ("RU",)) == ["+74951234567"]
    assert did_candidates("84951234567", ("RU",)) == ["+84951234567", "+74951234567"]


def test_did_candidates_most_literal_first_and_no_duplicates() -> None:
    # "84951234567" literally is +84 (Viet Nam); as a Russian national form it is +7 495.
    out = did_candidates("84951234567", ("US", "RU"))
    assert out == ["+84951234567", "+74951234567"]
    assert len(out) == len(set(out))


def test_did_candidates_countries_tried_in_sorted_order() -> None:
    assert did_candidates("02079460100", frozenset({"GB", "DE"})) == ["+492079460100", "+442079460100"]


@pytest.mark.parametrize("raw", ["anonymous", "", "112", "+74951234567\n"])
def test_did_candidates_empty_for_non_numbers(raw: str) -> None:
    assert did_candidates(raw, ("RU", "US", "GB", "DE")) == []


def test_did_candidates_without_countries() -> None:
    assert did_candidates("4951234567", ()) == []
    assert did_candidates("0074951234567", ()) == ["+74951234567"]


# --- properties of to_e164 ----------------------------------------------------------------

e164_numbers = st.builds(
    lambda first, rest: "+" + first + rest,
    st.sampled_from("123456789"),
    st.text(alphabet="0123456789", min_size=6, max_size=14),
)
countries = st.sampled_from(COUNTRIES)


@settings(deadline=None)
@given(number=e164_numbers, country=countries)
def test_e164_is_a_fixed_point(number: str, country: str | None) -> None:
    assert to_e164(number, country) == number


# A Russian number: +7 then 10 digits. Russian ranges start with 3, 4, 8 or 9 (no area code
# starts with 0, 1 or 2, and +7 810 does not exist because 810 is the international prefix).
russian_national = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from("3489"),
    st.text(alphabet="0123456789", min_size=9, max_size=9),
).filter(lambda d: not d.startswith("810"))


@settings(deadline=None)
@given(d=russian_national)
def test_russian_national_forms_normalise(d: str) -> None:
    expected = "+7" + d
    assert to_e164("7" + d, "RU") == expected
    assert to_e164("8" + d, "RU") == expected
    assert to_e164(d, "RU") == expected
    assert to_e164("+7" + d, "RU") == expected
    assert to_e164(f"8 ({d[:3]}) {d[3:6]}-{d[6:8]}-{d[8:]}", "RU") == expected


@settings(deadline=None)
@given(
    raw=st.text(alphabet="0123456789+ -.()\t\n\r\x00\x7fab#*", max_size=20),
    country=countries,
)
def test_output_is_none_or_strict_e164_and_idempotent(raw: str, country: str | None) -> None:
    out = to_e164(raw, country)
    if out is not None:
        assert E164.fullmatch(out)
        assert to_e164(out, country) == out
        assert not any(c in raw for c in "\n\r\x00\x7f")


# --- caller patterns ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "number", "matches"),
    [
        ("+7495*", "+74951234567", True),
        ("+7495*", "+7495", True),  # '*' includes no digits
        ("+7495*", "+74961234567", False),
        ("+7916???????", "+79161230001", True),
        ("+7916???????", "+7916123000", False),  # one digit short
        ("+7916???????", "+791612300011", False),  # one digit long
        ("+7916???????", "+7916123000a", False),
        ("*", "+74951234567", True),
        ("*", "74951234567", False),
        ("+74951234567", "+74951234567", True),
        ("+74951234567", "+74951234568", False),
        ("+1212555*", "+12125550177", True),
        ("+1718555012?", "+17185550129", True),
        ("+1718555012?", "+171855501299", False),
        ("+7495*", "x+7495", False),
        ("+7495*", "+7495\n", False),
        ("+7495*", "+74951234567\n", False),
        ("+7495*", " +74951234567", False),
        ("+7?95*", "+7495", True),
        ("+7?95*", "+7a95", False),
    ],
)
def test_pattern_matches(pattern: str, number: str, matches: bool) -> None:
    assert pattern_matches(pattern, number) is matches


@st.composite
def number_and_pattern(draw: st.DrawFn, star: bool = True) -> tuple[str, str, int]:
    """A number, a pattern built from it, and the length of the pattern's fixed prefix.

    Random digits become '?', a random suffix becomes '*' (possibly none); with
    star=False no '*' at all.
    """
    number = draw(e164_numbers)
    digits = number[1:]
    star_at = draw(st.integers(min_value=0, max_value=len(digits))) if star else len(digits)
    use_star = star and (draw(st.booleans()) or star_at < len(digits))
    qmarks = draw(st.lists(st.booleans(), min_size=star_at, max_size=star_at))
    body = "".join("?" if q else c for q, c in zip(qmarks, digits[:star_at], strict=True))
    pattern = "+" + body + ("*" if use_star else "")
    return number, pattern, star_at


@settings(deadline=None)
@given(data=number_and_pattern())
def test_pattern_built_from_a_number_matches_it(data: tuple[str, str, int]) -> None:
    number, pattern, _ = data
    assert pattern_matches(pattern, number)
    # and such a pattern is never reported as matching nothing
    assert pattern_problem(pattern) is None


@settings(deadline=None)
@given(data=number_and_pattern(), pick=st.integers(min_value=0), bump=st.integers(min_value=1, max_value=9))
def test_changing_a_fixed_digit_breaks_the_match(data: tuple[str, str, int], pick: int, bump: int) -> None:
    number, pattern, star_at = data
    fixed = [i for i in range(star_at) if pattern[1 + i] != "?"]
    assume(fixed)
    i = fixed[pick % len(fixed)]
    digits = list(number[1:])
    digits[i] = str((int(digits[i]) + bump) % 10)
    changed = "+" + "".join(digits)
    assert not pattern_matches(pattern, changed)


@settings(deadline=None)
@given(data=number_and_pattern(star=False), extra=st.text(alphabet="0123456789", min_size=1, max_size=3))
def test_pattern_without_star_has_a_fixed_length(data: tuple[str, str, int], extra: str) -> None:
    number, pattern, _ = data
    assert "*" not in pattern
    assert not pattern_matches(pattern, number + extra)
    assert not pattern_matches(pattern, number[:-1])


patterns = st.one_of(
    st.just("*"),
    st.builds(lambda body: "+" + body, st.text(alphabet="0123456789??*", min_size=1, max_size=15)),
)


@settings(deadline=None)
@given(p1=patterns, p2=patterns, number=e164_numbers)
def test_a_list_matches_iff_one_of_its_patterns_does(p1: str, p2: str, number: str) -> None:
    combined = compile_patterns((p1, p2)).fullmatch(number) is not None
    assert combined == (pattern_matches(p1, number) or pattern_matches(p2, number))


@settings(deadline=None)
@given(p1=patterns, p2=patterns, data=number_and_pattern())
def test_a_list_matches_the_number_any_of_its_patterns_was_built_from(
    p1: str, p2: str, data: tuple[str, str, int]
) -> None:
    number, pattern, _ = data
    assert compile_patterns((p1, pattern, p2)).fullmatch(number) is not None


@settings(deadline=None)
@given(
    pattern=patterns,
    number=e164_numbers,
    junk=st.sampled_from(["\n", "\r\n", "\x00", " ", "x", "+"]),
)
def test_fullmatch_semantics(pattern: str, number: str, junk: str) -> None:
    assert not pattern_matches(pattern, number + junk)
    assert not pattern_matches(pattern, junk + number)
    assert not compile_patterns((pattern, "+7495*")).fullmatch(number + junk)


def test_fullmatch_seed_pattern() -> None:
    for bad in ("x+7495", "+7495\n", "x+74951234567", "+74951234567\n", "+74951234567 "):
        assert not pattern_matches("+7495*", bad)
    assert pattern_matches("+7495*", "+7495")


# --- pattern_problem ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "words"),
    [
        ("+1234567890123456", "16 digits"),
        ("+1234567890123456*", "16 digits"),
        ("+123456789012345?", "16 digits"),
        ("+0123*", "country code 0"),
        ("+0*", "country code 0"),
        ("+079161230001", "country code 0"),
        ("+123456", "6 digits"),
        ("+12345", "5 digits"),
        ("+?", "1 digits"),
        ("+791??", "5 digits"),
    ],
)
def test_pattern_problem(pattern: str, words: str) -> None:
    why = pattern_problem(pattern)
    assert why is not None
    assert words in why
    assert repr(pattern) in why


@pytest.mark.parametrize(
    "pattern",
    ["*", "+7495*", "+7916???????", "+1*", "+*", "+?*", "+1234567", "+123456?", "+123456789012345", "+?23*"],
)
def test_pattern_without_problem(pattern: str) -> None:
    assert pattern_problem(pattern) is None


@settings(deadline=None)
@given(pattern=patterns, number=e164_numbers)
def test_a_pattern_with_a_problem_matches_no_number(pattern: str, number: str) -> None:
    if pattern_problem(pattern) is not None:
        assert not pattern_matches(pattern, number)
