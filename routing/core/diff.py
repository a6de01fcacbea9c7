"""A short, readable summary of what changed between two versions of an account document."""

from __future__ import annotations

from typing import Any

from routing.core.validation import COLLECTIONS


def summarize(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    """Lines like `operators: +kuznetsov ~petrov -volkov`, `timezone: Europe/Moscow -> Asia/Dubai`."""
    if old is None:
        counts = ", ".join(f"{len(new.get(c, []))} {c.replace('_', ' ')}" for c in COLLECTIONS if new.get(c))
        return [f"new account: {len(new['numbers'])} numbers, {counts}"]
    lines = []
    old_numbers, new_numbers = set(old.get("numbers", [])), set(new.get("numbers", []))
    if old_numbers != new_numbers:
        parts = [f"+{n}" for n in sorted(new_numbers - old_numbers)]
        parts += [f"-{n}" for n in sorted(old_numbers - new_numbers)]
        lines.append("numbers: " + " ".join(parts))
    for collection in COLLECTIONS:
        before = {i.get("id"): i for i in old.get(collection, [])}
        after = {i.get("id"): i for i in new.get(collection, [])}
        parts = [f"+{k}" for k in after if k not in before]
        parts += [f"~{k}" for k in after if k in before and after[k] != before[k]]
        parts += [f"-{k}" for k in before if k not in after]
        if parts:
            lines.append(f"{collection}: " + " ".join(parts))
    skip = set(COLLECTIONS) | {"numbers"}
    for key in sorted((set(old) | set(new)) - skip):
        if old.get(key) != new.get(key):
            lines.append(f"{key}: {_brief(old.get(key))} -> {_brief(new.get(key))}")
    return lines or ["no changes"]


def _brief(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= 50 else text[:47] + "..."
