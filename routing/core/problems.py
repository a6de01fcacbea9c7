"""Problems found in account documents, reported one per line: `FILE: /json/pointer: message`."""

from __future__ import annotations

from dataclasses import dataclass

ERROR, WARNING = "error", "warning"


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    pointer: str  # RFC 6901 JSON pointer; "" is the whole document
    message: str
    severity: str = ERROR

    def line(self) -> str:
        prefix = "warning: " if self.severity == WARNING else ""
        return f"{prefix}{self.file}: {self.pointer or '/'}: {self.message}"

    def to_json(self) -> dict[str, str]:
        return {
            "file": self.file,
            "pointer": self.pointer,
            "severity": self.severity,
            "message": self.message,
        }


def pointer(*parts: str | int) -> str:
    """A JSON pointer from path parts, escaping '~' and '/' as RFC 6901 says."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == ERROR]


def has_errors(problems: list[Problem]) -> bool:
    return any(p.severity == ERROR for p in problems)
