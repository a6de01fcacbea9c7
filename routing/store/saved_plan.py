"""A plan saved to a file (`voffice plan --out`), applied later by `voffice load --plan`.

As with terraform's saved plans, what is applied is exactly what was reviewed: the file holds
the documents themselves (not paths to files that may have been edited since), the version
each account was planned against, and each document's digest, so a plan that was edited or
damaged is refused rather than applied.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from routing.core.compiler import document_sha256

FORMAT = "voffice-plan/1"


class PlanFileError(Exception):
    """A saved plan that cannot be applied as it is (one line)."""


@dataclass(frozen=True)
class SavedPlan:
    documents: list[tuple[str, dict[str, Any]]]  # (file it came from, document)
    planned_against: dict[str, int]  # account -> version it was planned against (0: new)
    created: str


def write(path: Path, changes: list[Any]) -> None:
    """Every account of the plan (changed or not: an unchanged one is still checked)."""
    body = {
        "format": FORMAT,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "accounts": [
            {"account": c.account, "file": c.file, "planned_against": c.current, "sha256": document_sha256(c.doc), "document": c.doc}
            for c in changes
        ],
    }
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(body, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(tmp, path)  # a plan is whole or absent


def read(path: Path) -> SavedPlan:
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PlanFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise PlanFileError(f"{path}: not a saved plan (not JSON: {exc})") from None
    if not isinstance(body, dict) or body.get("format") != FORMAT or not isinstance(body.get("accounts"), list):
        raise PlanFileError(f"{path}: not a saved plan of this voffice (format {FORMAT}; made by `voffice plan --out`)")
    documents: list[tuple[str, dict[str, Any]]] = []
    planned: dict[str, int] = {}
    for i, entry in enumerate(body["accounts"]):
        try:
            account, doc, version, digest = entry["account"], entry["document"], entry["planned_against"], entry["sha256"]
            file = str(entry.get("file") or path)
        except (KeyError, TypeError):
            raise PlanFileError(f"{path}: account entry {i} is incomplete") from None
        if not isinstance(doc, dict) or not isinstance(version, int) or doc.get("account") != account:
            raise PlanFileError(f"{path}: account entry {i} is malformed")
        if document_sha256(doc) != digest:
            raise PlanFileError(f"{path}: the document of {account!r} was changed after it was planned; plan again")
        if account in planned:
            raise PlanFileError(f"{path}: account {account!r} appears twice")
        documents.append((file, doc))
        planned[account] = version
    if not documents:
        raise PlanFileError(f"{path}: the plan holds no account")
    return SavedPlan(documents, planned, str(body.get("created", "")))
