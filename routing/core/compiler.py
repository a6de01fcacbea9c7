"""Compile a validated account document into the compact form the engine runs on.

The compiled form is plain data (dicts, lists, str, int, None) so it round-trips through
msgpack into Redis and out again in every Kamailio worker and media server. Defaults are
resolved here, times become minutes, dates become ordinals, and the scenario trees are
flattened into one node table so a call's position in its scenario is a single integer
(easy to keep in a SIP transaction AVP).
"""

from __future__ import annotations

import hashlib
import json
from datetime import date
from typing import Any

from routing.core.day_type import DAY_TYPE_BIT, WEEKDAY_NAMES

FORMAT = 1
DEFAULTS = {"attempts": 2, "ring_seconds": 20, "input_timeout": 5}
MENU_DEFAULTS = {"repeat_key": "0", "max_repeats": 3}
EXTENSION_DEFAULTS = {"inter_digit_timeout": 3}
RECORDING_DEFAULTS = {"max_seconds": 180}
NOTIFICATION_DEFAULTS = {"language": "en", "email": [], "webhooks": [], "attachments": "attach"}

Plain = dict[str, Any]


def document_sha256(doc: Any) -> str:
    """Digest of a document's meaning, independent of key order and whitespace."""
    canonical = json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def minutes(hhmm: str) -> int:
    hours, mins = hhmm.split(":")
    return int(hours) * 60 + int(mins)


def compile_account(doc: Plain) -> Plain:
    """The compiled form of one account document that `validation` found valid."""
    defaults = {**DEFAULTS, **doc.get("defaults", {})}
    calendar = doc.get("calendar", {})
    operators = {
        op["id"]: {"name": op["name"], "phone": op["phone"], "extension": op.get("extension")}
        for op in doc.get("operators", [])
    }
    groups = {
        g["id"]: {
            "name": g["name"],
            "strategy": g.get("strategy", "priority"),
            "members": [
                [
                    m["operator"],
                    m.get("priority", 1),
                    m.get("attempts", defaults["attempts"]),
                    m.get("ring_seconds", defaults["ring_seconds"]),
                ]
                for m in g["members"]
            ],
        }
        for g in doc.get("groups", [])
    }
    language = doc.get("language", "en")
    sounds = {
        s["id"]: {
            "name": s["name"],
            "file": s.get("file"),
            "text": s.get("text"),
            "language": s.get("language", language),
        }
        for s in doc.get("sounds", [])
    }
    operations = {op["id"]: _operation(op, defaults) for op in doc["operations"]}
    schedules = {
        s["id"]: {
            "name": s["name"],
            "days": sum(DAY_TYPE_BIT[d] for d in s["days"]),
            "weekdays": sum(1 << WEEKDAY_NAMES.index(w) for w in s.get("weekdays", WEEKDAY_NAMES)),
            "intervals": sorted(
                [minutes(a), minutes(b)] for a, b in s.get("intervals", [["00:00", "24:00"]])
            ),
        }
        for s in doc.get("schedules", [])
    }
    caller_lists = {
        c["id"]: {"name": c["name"], "patterns": list(c["patterns"])}
        for c in doc.get("caller_lists", [])
    }
    nodes: list[list[Any]] = []
    scenarios = {
        s["id"]: {"name": s["name"], "root": _flatten(s["root"], nodes)} for s in doc["scenarios"]
    }
    rules = [
        {
            "id": r["id"],
            "name": r["name"],
            "priority": r["priority"],
            "schedule": r["schedule"],
            "caller_list": r.get("caller_list"),
            "scenario": r["scenario"],
        }
        for r in sorted(doc.get("rules", []), key=lambda r: r["priority"])
        if r.get("enabled", True)
    ]
    return {
        "format": FORMAT,
        "account": doc["account"],
        "name": doc["name"],
        "timezone": doc["timezone"],
        "language": language,
        "extension_digits": doc.get("extension_digits", 3),
        "numbers": list(doc["numbers"]),
        "calendar": {
            "country": calendar.get("country"),
            "subdivision": calendar.get("subdivision"),
            "holidays": sorted(date.fromisoformat(d).toordinal() for d in calendar.get("holidays", [])),
            "workdays": sorted(date.fromisoformat(d).toordinal() for d in calendar.get("workdays", [])),
        },
        "defaults": defaults,
        "operators": operators,
        "extensions": {op["extension"]: op_id for op_id, op in operators.items() if op["extension"]},
        "groups": groups,
        "sounds": sounds,
        "operations": operations,
        "schedules": schedules,
        "caller_lists": caller_lists,
        "scenarios": scenarios,
        "nodes": nodes,
        "rules": rules,
        "default_scenario": doc["default_scenario"],
        "notifications": _notifications(doc.get("notifications")),
        "sha256": document_sha256(doc),
    }


def _notifications(notifications: Plain | None) -> Plain | None:
    """Who is told about voicemail, faxes and missed calls, defaults resolved; None: nobody."""
    if notifications is None:
        return None
    out = {k: notifications.get(k, v) for k, v in NOTIFICATION_DEFAULTS.items()}
    out["events"] = notifications["events"]
    return {k: list(v) if isinstance(v, list) else v for k, v in out.items()}


def _operation(op: Plain, defaults: Plain) -> Plain:
    kind = op["type"]
    out: Plain = {"name": op["name"], "type": kind, "sound": op.get("sound")}
    if kind in ("menu", "extension"):
        out["input_timeout"] = op.get("input_timeout", defaults["input_timeout"])
    if kind == "menu":
        out.update({k: op.get(k, v) for k, v in MENU_DEFAULTS.items()})
    elif kind == "extension":
        out.update({k: op.get(k, v) for k, v in EXTENSION_DEFAULTS.items()})
    elif kind == "group":
        out["group"] = op["group"]
    else:
        out.update({k: op.get(k, v) for k, v in RECORDING_DEFAULTS.items()})
    return out


def _flatten(node: Plain, nodes: list[list[Any]]) -> int:
    """Append a node and its subtree; a node is [operation, next index or -1, {key: index}]."""
    index = len(nodes)
    entry: list[Any] = [node["operation"], -1, {}]
    nodes.append(entry)
    if "next" in node:
        entry[1] = _flatten(node["next"], nodes)
    for key in sorted(node.get("keys", {})):
        entry[2][key] = _flatten(node["keys"][key], nodes)
    return index
