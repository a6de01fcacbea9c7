"""The spiral that gives each operator of a wave their own ring timer (routing/branch_timer)."""

from __future__ import annotations

import secrets

from hypothesis import given
from hypothesis import strategies as st

from routing.proxy.branch_timer import Branch, is_operator_uri, spiral_uri, unspiral, wave_branches, wave_ring_ms
from routing.proxy.call_step import operator_uri

KEY = "0123456789abcdef0123456789abcdef"

e164 = st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True)
gateways = st.sampled_from(["127.0.0.1:5080", "gw.example.net", "[::1]:5080", "10.0.0.7"])
sip_uris = st.from_regex(r"sip:[a-z0-9._+-]{1,20}@[a-z]([a-z0-9-]{0,8}[a-z0-9])?(\.[a-z]{2,5})?(:[0-9]{1,5})?", fullmatch=True)
operator_uris = st.one_of(st.builds(operator_uri, e164, gateways), sip_uris)
ring_ms = st.integers(5, 300).map(lambda s: s * 1000)


@given(operator_uris, ring_ms)
def test_a_spiral_gives_back_the_operator_and_the_ring_time(uri: str, ms: int) -> None:
    assert unspiral(spiral_uri(uri, ms, KEY), KEY) == (uri, ms)


@given(operator_uris, ring_ms)
def test_a_spiral_with_another_key_is_refused(uri: str, ms: int) -> None:
    assert unspiral(spiral_uri(uri, ms, KEY), secrets.token_hex(16)) is None


def test_what_is_not_ours_is_refused() -> None:
    ring = f";vo-ring=5000.{KEY}"
    for request_uri in (
        "sip:+74951234567@127.0.0.1:5080",  # no spiral at all
        f"sip:evil@attacker.example;transport=tcp{ring}",  # parameters: not an operator URI
        f"sip:+74951234567@gw?Route=%3Csip:x%3E{ring}",  # headers
        f"sip:+74951234567@127.0.0.1:5080{ring}x",  # trailing junk
        f"sip:+74951234567@127.0.0.1:5080;vo-ring=500.{KEY}",  # 0.5 s: below any ring time
        f"sip:+74951234567@127.0.0.1:5080;vo-ring=999999.{KEY}",  # out of range
        f"sip:+74951234567@127.0.0.1:5080;vo-ring=5000.{KEY.upper()}",
        f"tel:+74951234567{ring}",
        f"{ring}",
    ):
        assert unspiral(request_uri, KEY) is None, request_uri


@given(st.text(max_size=200))
def test_any_request_uri_is_refused_or_an_operator_uri(text: str) -> None:
    found = unspiral(text, KEY)
    assert found is None or is_operator_uri(found[0])
    found = unspiral(text + f";vo-ring=5000.{KEY}", KEY)
    assert found is None or (is_operator_uri(found[0]) and found[1] == 5000)


def ring(operator: str, seconds: int) -> dict[str, object]:
    return {"operator": operator, "phone": f"sip:{operator}@10.0.0.1", "ring_seconds": seconds, "attempt": 1}


def test_only_members_shorter_than_the_wave_spiral() -> None:
    wave = [ring("a", 5), ring("b", 9), ring("c", 9), ring("d", 7)]
    uris = [str(r["phone"]) for r in wave]
    branches = wave_branches(wave, uris, KEY)
    assert wave_ring_ms(wave) == 9000
    assert [b.spiral for b in branches] == [True, False, False, True]
    assert branches[1:3] == [Branch("sip:b@10.0.0.1", False), Branch("sip:c@10.0.0.1", False)]
    assert [unspiral(b.uri, KEY) for b in (branches[0], branches[3])] == [("sip:a@10.0.0.1", 5000), ("sip:d@10.0.0.1", 7000)]


@given(st.lists(st.integers(5, 300), min_size=1, max_size=6))
def test_a_wave_of_equal_ring_times_never_spirals(seconds: list[int]) -> None:
    same = [ring(f"op{i}", seconds[0]) for i in range(len(seconds))]
    assert not any(b.spiral for b in wave_branches(same, [str(r["phone"]) for r in same], KEY))
    mixed = [ring(f"op{i}", s) for i, s in enumerate(seconds)]
    branches = wave_branches(mixed, [str(r["phone"]) for r in mixed], KEY)
    assert [b.spiral for b in branches] == [s < max(seconds) for s in seconds]
    assert wave_ring_ms(mixed) == max(seconds) * 1000
