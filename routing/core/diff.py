"""A short, readable summary of what changed between two versions of an account document."""

from __future__ import annotations

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
