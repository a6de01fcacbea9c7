"""Problems found in account documents, reported one per line: `FILE: /json/pointer: message`."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

ERROR, WARNING = "error", "warning"


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    pointer: str  # RFC 6901 JSON pointer; "" is the whole document
    message: str
    severity: str = ERROR
    at: tuple[int, int] | None = None  # (line, column) in the file's text, where it has one

    def __reduce__(self) -> tuple[type[Problem], tuple[str, str, str, str, tuple[int, int] | None]]:
        """Pickled as its fields (a dataclass with slots pickles through dataclasses.fields(),
        ~25 us a problem: a third of what a 100,000-file validation's pool sends back)."""
        return Problem, (self.file, self.pointer, self.message, self.severity, self.at)

    def line(self) -> str:
        """`FILE:LINE:COLUMN: /pointer: message`, as compilers print, so editors jump there."""
        prefix = "warning: " if self.severity == WARNING else ""
        where = f"{self.file}:{self.at[0]}:{self.at[1]}" if self.at else self.file
        return f"{prefix}{where}: {self.pointer or '/'}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "file": self.file,
            "pointer": self.pointer,
            "severity": self.severity,
            "message": self.message,
        }
        if self.at:
            out["line"], out["column"] = self.at
        return out


def pointer(*parts: str | int) -> str:
    """A JSON pointer from path parts, escaping '~' and '/' as RFC 6901 says."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == ERROR]


def has_errors(problems: list[Problem]) -> bool:
    return any(p.severity == ERROR for p in problems)


def located(problems: list[Problem], text: str) -> list[Problem]:
    """The problems with the line and column their pointer has in `text` (the whole
    document's problems keep none: line 1 column 1 would say nothing)."""
    from routing.core.json_position import position

    return [replace(p, at=position(text, p.pointer)) if p.pointer and p.at is None else p for p in problems]
