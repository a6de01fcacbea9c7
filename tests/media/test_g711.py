"""g711: tables against the segment rules, quantisation error, speed."""

from __future__ import annotations

import importlib
import time
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from voffice_media.g711 import CODECS, PCMA, PCMU, alaw_decode, alaw_encode, ulaw_decode, ulaw_encode

ALL = np.arange(-32768, 32768, dtype=np.int16)


@pytest.mark.parametrize("codec", [PCMU, PCMA], ids=["PCMU", "PCMA"])
def test_quantisation_error_bound_for_every_sample(codec: object) -> None:
    assert codec in CODECS.values()
    decoded = codec.decode(codec.encode(ALL)).astype(np.int64)  # type: ignore[attr-defined]
    error = np.abs(decoded - ALL.astype(np.int64))
    # Half a quantisation step of the sample's segment: 1/32 of the magnitude, plus the
    # first segment's 8 (and the clipping above 32635 for mu-law).
    assert (error <= (np.abs(ALL.astype(np.int64)) + 256) // 32 + 1).all()


def test_known_values() -> None:
    assert ulaw_encode(np.array([0, 1, -1, 32767, -32768], dtype=np.int16)) == bytes([0xFF, 0xFF, 0x7E, 0x80, 0x00])
    assert alaw_encode(np.array([0, -1, 32767, -32768], dtype=np.int16)) == bytes([0xD5, 0x55, 0xAA, 0x2A])
    assert ulaw_decode(bytes([0xFF, 0x7F, 0x80, 0x00])).tolist() == [0, 0, 32124, -32124]
    assert alaw_decode(bytes([0xD5, 0x55, 0xAA, 0x2A])).tolist() == [8, -8, 32256, -32256]


def test_codes_survive_decode_encode() -> None:
    codes = bytes(range(256))
    assert alaw_encode(alaw_decode(codes)) == codes
    mu = ulaw_encode(ulaw_decode(codes))
    assert mu == codes.replace(b"\x7f", b"\xff")  # -0 and +0 decode alike


def test_matches_cpython_audioop_when_available() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            audioop = importlib.import_module("audioop")
        except ImportError:
            pytest.skip("audioop is gone from this Python")
    raw = ALL.tobytes()
    assert ulaw_encode(ALL) == audioop.lin2ulaw(raw, 2)
    assert alaw_encode(ALL) == audioop.lin2alaw(raw, 2)
    codes = bytes(range(256))
    assert ulaw_decode(codes).tobytes() == audioop.ulaw2lin(codes, 2)
    assert alaw_decode(codes).tobytes() == audioop.alaw2lin(codes, 2)


def test_types_and_empty() -> None:
    frame = np.zeros(160, dtype=np.int16)
    assert isinstance(PCMU.encode(frame), bytes) and len(PCMU.encode(frame)) == 160
    decoded = PCMA.decode(b"\xd5" * 160)
    assert decoded.dtype == np.int16 and decoded.shape == (160,)
    assert PCMU.encode(np.zeros(0, dtype=np.int16)) == b"" and len(PCMU.decode(b"")) == 0
    assert (PCMU.payload_type, PCMA.payload_type) == (0, 8)


@given(arrays(np.int16, st.integers(0, 400)))
def test_round_trip_within_quantisation_error(samples: np.ndarray) -> None:
    for encode, decode in ((ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)):
        data = encode(samples)
        assert len(data) == len(samples)
        back = decode(data).astype(np.int64)
        bound = (np.abs(samples.astype(np.int64)) + 256) // 32 + 1
        assert (np.abs(back - samples) <= bound).all()
        assert encode(decode(data)) == encode(back.astype(np.int16))  # idempotent after one pass


def test_a_frame_costs_microseconds() -> None:
    frame = (np.sin(np.arange(160) / 5) * 10000).astype(np.int16)
    data = ulaw_encode(frame)
    rounds = 2000
    start = time.perf_counter()
    for _ in range(rounds):
        ulaw_decode(ulaw_encode(frame))
    per_frame = (time.perf_counter() - start) / rounds
    assert per_frame < 100e-6, per_frame  # measured ~3 us for both directions; loose for CI
    assert len(data) == 160
