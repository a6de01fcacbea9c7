"""Where a JSON pointer stands in the JSON text it came from, as line and column.

Problems are found on the parsed document and named by JSON pointer; an editor wants
`file:line:column`. Python's json keeps no positions, so this walks the text down the
pointer's path only, skipping every other value with the C decoder (`raw_decode`), which
keeps it cheap on large files.
"""

from __future__ import annotations

import json
import re

_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


def _segments(pointer: str) -> list[str]:
    if not pointer:
        return []
    return [s.replace("~1", "/").replace("~0", "~") for s in pointer.split("/")[1:]]


def _skip_ws(text: str, i: int) -> int:
    match = _WS.match(text, i)
    return match.end() if match else i


def _child(text: str, i: int, segment: str) -> int | None:
    """Offset of the value `segment` names inside the container starting at `i`, or None.
    For a key given twice, the last (the one a strict parser complains about)."""
    opening = text[i : i + 1]
    i = _skip_ws(text, i + 1)
    if opening == "{":
        found = None
        while i < len(text) and text[i] == '"':
            key, i = json.decoder.scanstring(text, i + 1)  # type: ignore[attr-defined]
            i = _skip_ws(text, i)
            if text[i : i + 1] != ":":
                return found
            i = _skip_ws(text, i + 1)
            if key == segment:
                found = i
            _, i = _DECODER.raw_decode(text, i)
            i = _skip_ws(text, i)
            if text[i : i + 1] != ",":
                break
            i = _skip_ws(text, i + 1)
        return found
    if opening == "[" and segment.isdigit():
        wanted = int(segment)
        index = 0
        while i < len(text) and text[i] != "]":
            if index == wanted:
                return i
            _, i = _DECODER.raw_decode(text, i)
            i = _skip_ws(text, i)
            if text[i : i + 1] != ",":
                break
            i = _skip_ws(text, i + 1)
            index += 1
    return None


def offset_of(text: str, pointer: str) -> int | None:
    """Offset of the deepest value on the pointer's path that the text has (a missing
    member points at its parent), or None if the text is not JSON there."""
    try:
        i = _skip_ws(text, 0)
        for segment in _segments(pointer):
            child = _child(text, i, segment)
            if child is None:
                break
            i = child
        return i if i < len(text) else None
    except (ValueError, IndexError, RecursionError):
        return None


def line_column(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column (in characters) of an offset."""
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def position(text: str, pointer: str) -> tuple[int, int] | None:
    offset = offset_of(text, pointer)
    return None if offset is None else line_column(text, offset)
