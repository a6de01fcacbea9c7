"""G.711 PCMU (mu-law) and PCMA (A-law) through numpy lookup tables.

Public API:

    ulaw_encode(pcm: NDArray[int16]) -> bytes      alaw_encode(pcm) -> bytes
    ulaw_decode(data: bytes) -> NDArray[int16]     alaw_decode(data) -> NDArray[int16]
    Codec: PCMU, PCMA (name, payload_type, encode, decode);  CODECS: {payload type: Codec}

Each table is built once at import from the ITU-T G.711 segment rules: encoding indexes a
65536-entry table with the samples' bit patterns, decoding a 256-entry one, so a 160-sample
frame costs one numpy fancy-index (a few microseconds).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["CODECS", "PCMA", "PCMU", "Codec", "alaw_decode", "alaw_encode", "ulaw_decode", "ulaw_encode"]

ULAW_BIAS = 0x84
ULAW_CLIP = 32635


def _ulaw_decode_table() -> NDArray[np.int16]:
    code = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (code >> 4) & 0x07
    mantissa = code & 0x0F
    magnitude = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS
    return np.where(code & 0x80, -magnitude, magnitude).astype(np.int16)


def _ulaw_encode_table() -> NDArray[np.uint8]:
    pcm = np.arange(65536, dtype=np.int32)
    pcm = np.where(pcm >= 32768, pcm - 65536, pcm) >> 2  # index = the int16's bit pattern; 14-bit
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(pcm), ULAW_CLIP >> 2) + (ULAW_BIAS >> 2)
    segment_ends = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
    segment = np.searchsorted(segment_ends, magnitude)
    value = segment << 4 | (magnitude >> (segment + 1)) & 0x0F
    return ((value ^ mask) & 0xFF).astype(np.uint8)


def _alaw_decode_table() -> NDArray[np.int16]:
    code = np.arange(256, dtype=np.int32) ^ 0x55
    segment = (code & 0x70) >> 4
    step = (code & 0x0F) << 4
    magnitude = np.where(segment == 0, step + 8, (step + 0x108) << np.maximum(segment - 1, 0))
    return np.where(code & 0x80, magnitude, -magnitude).astype(np.int16)


def _alaw_encode_table() -> NDArray[np.uint8]:
    pcm = np.arange(65536, dtype=np.int32)
    pcm = np.where(pcm >= 32768, pcm - 65536, pcm) >> 3  # 13-bit
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    magnitude = np.where(pcm >= 0, pcm, -pcm - 1)
    segment_ends = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])
    segment = np.searchsorted(segment_ends, magnitude)
    shift = np.where(segment < 2, 1, segment)
    value = segment << 4 | (magnitude >> shift) & 0x0F
    value = np.where(segment >= 8, 0x7F, value)
    return ((value ^ mask) & 0xFF).astype(np.uint8)


_ULAW_DECODE = _ulaw_decode_table()
_ULAW_ENCODE = _ulaw_encode_table()
_ALAW_DECODE = _alaw_decode_table()
_ALAW_ENCODE = _alaw_encode_table()


def _encoder(table: NDArray[np.uint8]) -> Callable[[NDArray[np.int16]], bytes]:
    def encode(pcm: NDArray[np.int16]) -> bytes:
        samples = np.asarray(pcm, dtype=np.int16)
        return table[samples.view(np.uint16)].tobytes()

    return encode


def _decoder(table: NDArray[np.int16]) -> Callable[[bytes], NDArray[np.int16]]:
    def decode(data: bytes) -> NDArray[np.int16]:
        return table[np.frombuffer(data, dtype=np.uint8)]

    return decode


ulaw_encode = _encoder(_ULAW_ENCODE)
ulaw_decode = _decoder(_ULAW_DECODE)
alaw_encode = _encoder(_ALAW_ENCODE)
alaw_decode = _decoder(_ALAW_DECODE)


@dataclass(frozen=True, slots=True)
class Codec:
    name: str
    payload_type: int
    encode: Callable[[NDArray[np.int16]], bytes]
    decode: Callable[[bytes], NDArray[np.int16]]


PCMU = Codec("PCMU", 0, ulaw_encode, ulaw_decode)
PCMA = Codec("PCMA", 8, alaw_encode, alaw_decode)
CODECS = {PCMU.payload_type: PCMU, PCMA.payload_type: PCMA}
