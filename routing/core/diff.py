"""A short, readable summary of what changed between two versions of an account document."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from routing.core.compiler import NOTIFICATION_DEFAULTS
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
    skip = set(COLLECTIONS) | {"numbers", "notifications"}
    for key in sorted((set(old) | set(new)) - skip):
        if old.get(key) != new.get(key):
            lines.append(f"{key}: {_brief(old.get(key))} -> {_brief(new.get(key))}")
    lines += _notifications(old.get("notifications"), new.get("notifications"))
    return lines or ["no changes"]


def _notifications(old: Any, new: Any) -> list[str]:
    """`notifications.email: +a@example.ru -b@example.ru`, `notifications.attachments: attach -> none`."""
    if old == new:
        return []
    if not isinstance(new, dict):
        return ["notifications: removed"]
    if not isinstance(old, dict):
        events = ", ".join(map(str, new.get("events", [])))
        return [f"notifications: added ({events}; {len(new.get('email', []))} email, {len(new.get('webhooks', []))} webhooks)"]
    lines = []
    for key in sorted(set(old) | set(new)):
        default = NOTIFICATION_DEFAULTS.get(key)
        before, after = old.get(key, default), new.get(key, default)
        if before == after:
            continue
        if isinstance(before, list | None) and isinstance(after, list | None):
            was, now = before or [], after or []
            parts = [f"+{_brief(v)}" for v in now if v not in was] + [f"-{_brief(v)}" for v in was if v not in now]
            lines.append(f"notifications.{key}: " + (" ".join(parts) or "reordered"))
        else:
            lines.append(f"notifications.{key}: {_brief(before)} -> {_brief(after)}")
    return lines


def _brief(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= 50 else text[:47] + "..."


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One field that differs: its JSON pointer (in the new document; in the old one for what
    was removed), the id of the item it belongs to, and the values before and after."""

    pointer: str
    label: str  # "petrov" for /operators/1/phone: the id of the nearest item that has one
    old: Any = None
    new: Any = None
    kind: str = "change"  # change | add | remove

    def line(self) -> str:
        where = f"{self.pointer} ({self.label})" if self.label else self.pointer
        if self.kind == "add":
            return f"+ {where}: {_brief(_json(self.new))}"
        if self.kind == "remove":
            return f"- {where}: {_brief(_json(self.old))}"
        return f"~ {where}: {_brief(_json(self.old))} -> {_brief(_json(self.new))}"


def field_changes(old: dict[str, Any] | None, new: dict[str, Any]) -> list[FieldChange]:
    """Every field that differs between two versions of an account document, as JSON
    pointers: items of a list of objects are matched by `id` (a renamed item is one removed
    and one added; a reordered list is shown by its order), other values compared whole."""
    if old is None:
        return [FieldChange("", "", None, new.get("account"), "add")]
    out: list[FieldChange] = []
    _walk(old, new, "", "", out)
    return out


def _walk(old: Any, new: Any, path: str, label: str, out: list[FieldChange]) -> None:
    if old == new:
        return
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(new) + [k for k in old if k not in new]:
            child = f"{path}/{_escape(str(key))}"
            if key not in old:
                out.append(FieldChange(child, label, None, new[key], "add"))
            elif key not in new:
                out.append(FieldChange(child, label, old[key], None, "remove"))
            else:
                _walk(old[key], new[key], child, label, out)
        return
    if _by_id(old) and _by_id(new):
        before = {item["id"]: (i, item) for i, item in enumerate(old)}
        after = {item["id"]: (i, item) for i, item in enumerate(new)}
        for key, (i, item) in after.items():
            if key not in before:
                out.append(FieldChange(f"{path}/{i}", str(key), None, item, "add"))
            else:
                _walk(before[key][1], item, f"{path}/{i}", str(key), out)
        for key, (i, item) in before.items():
            if key not in after:
                out.append(FieldChange(f"{path}/{i}", str(key), item, None, "remove"))
        if [k for k in after if k in before] != [k for k in before if k in after]:
            out.append(FieldChange(path, label, [k for k in before if k in after], [k for k in after if k in before]))
        return
    out.append(FieldChange(path, label, old, new))


def _by_id(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(i, dict) and isinstance(i.get("id"), str) for i in value) \
        and len({i["id"] for i in value}) == len(value)


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
