"""Forms for the document's lists (operators, groups, sounds, ...): which fields each kind of
item has, how a posted form becomes the item, and which problem goes next to which field.

A form only touches the fields it shows: keys it does not know (a sound's `language`, an
operation's `max_repeats`) stay as they were. A blank optional field is left out of the
item (or null where the schema says null); a number that is not one is kept as typed, so the
validator's message about it shows next to the field.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from routing.web.console.draft import Draft

Options = Callable[[Draft], list[tuple[str, str]]]
Form = Mapping[str, Any]  # a posted form: getlist() for repeated names


def field_id(pointer: str) -> str:
    """The HTML id of the field a JSON pointer points at: /operators/3/phone -> f-operators-3-phone."""
    return "f" + re.sub(r"[^A-Za-z0-9_-]", "_", pointer.replace("/", "-"))


def pointer_token(text: str) -> str:
    return text.replace("~", "~0").replace("/", "~1")


def _ids(kind: str) -> Options:
    def options(draft: Draft) -> list[tuple[str, str]]:
        out = []
        for item in draft.items(kind):
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                out.append((item["id"], f"{item.get('name', '')} ({item['id']})"))
        return out
    return options


def _fixed(*values: str) -> Options:
    return lambda draft: [(v, v) for v in values]


@dataclass(frozen=True)
class Field:
    name: str
    label: str  # i18n key
    kind: str = "text"  # text | int | textarea | lines | select | checkboxes
    options: Options | None = None
    blank: str = "omit"  # omit (leave the key out) | null | empty (lines: an empty list)
    hint: str = ""  # i18n key of a hint under the field
    required: bool = False

    def value(self, item: dict[str, Any]) -> Any:
        """What the form shows for this field of ITEM."""
        v = item.get(self.name)
        if self.kind == "lines":
            return "\n".join(str(x) for x in v) if isinstance(v, list) else ("" if v is None else str(v))
        if self.kind == "checkboxes":
            return [str(x) for x in v] if isinstance(v, list) else []
        return "" if v is None else str(v)

    def read(self, form: Form, item: dict[str, Any], prefix: str = "") -> None:
        """Set (or leave out) this field of ITEM from the form's field PREFIX+name."""
        if self.kind == "checkboxes":
            chosen = [v for v in form.getlist(prefix + self.name) if isinstance(v, str)]  # type: ignore[attr-defined]
            order = [v for v, _ in (self.options(Draft("", {}, 0)) if self.options else [])]
            values = [v for v in order if v in chosen] + [v for v in chosen if v not in order]
            if values:
                item[self.name] = values
            else:
                item.pop(self.name, None)
            return
        raw = form.get(prefix + self.name)
        text = raw.strip() if isinstance(raw, str) else ""
        if self.kind == "lines":
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            if lines or self.blank == "empty":
                item[self.name] = lines
            else:
                item.pop(self.name, None)
            return
        if text == "":
            if self.blank == "null":
                item[self.name] = None
            else:
                item.pop(self.name, None)
            return
        if self.kind == "int" and re.fullmatch(r"-?[0-9]{1,9}", text):
            item[self.name] = int(text)
        else:
            item[self.name] = raw if self.kind == "textarea" and isinstance(raw, str) else text


NAME = Field("name", "f_name", required=True)
DAY_TYPES = ("working", "weekend", "holiday")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
OPERATION_TYPES = ("voicemail", "fax", "menu", "extension", "group")
STRATEGIES = ("priority", "sequential", "round_robin", "random", "simultaneous")


@dataclass(frozen=True)
class Kind:
    """One list of the document and its screen."""

    key: str  # the document's list: "caller_lists"
    path: str  # the URL: "caller-lists"
    label: str  # i18n key of the screen
    fields: Sequence[Field]
    columns: Sequence[str]  # the list's columns (field names)
    sub: str = ""  # a sub-editor: members | intervals | tree
    sort: str = ""  # list order: "priority" for rules
    paged: bool = False


KINDS: dict[str, Kind] = {k.key: k for k in [
    Kind("operators", "operators", "operators",
         [NAME, Field("phone", "f_phone", required=True, hint="h_phone"), Field("extension", "f_extension", hint="h_extension")],
         ["name", "phone", "extension"], paged=True),
    Kind("groups", "groups", "groups",
         [NAME, Field("strategy", "f_strategy", "select", _fixed(*STRATEGIES), hint="h_strategy")],
         ["name", "strategy"], sub="members"),
    Kind("sounds", "sounds", "sounds",
         [NAME, Field("text", "f_text", "textarea", hint="h_text"), Field("file", "f_file", hint="h_file")],
         ["name", "text", "file"]),
    Kind("operations", "operations", "operations",
         [NAME, Field("type", "f_type", "select", _fixed(*OPERATION_TYPES), required=True),
          Field("sound", "f_sound", "select", _ids("sounds"), hint="h_sound"),
          Field("group", "f_group", "select", _ids("groups"), hint="h_group"),
          Field("input_timeout", "f_input_timeout", "int", hint="h_input_timeout"),
          Field("repeat_key", "f_repeat_key", hint="h_repeat_key")],
         ["name", "type", "sound", "group"]),
    Kind("schedules", "schedules", "schedules",
         [NAME, Field("days", "f_days", "checkboxes", _fixed(*DAY_TYPES), required=True),
          Field("weekdays", "f_weekdays", "checkboxes", _fixed(*WEEKDAYS), hint="h_weekdays")],
         ["name", "days"], sub="intervals"),
    Kind("caller_lists", "caller-lists", "caller_lists",
         [NAME, Field("patterns", "f_patterns", "lines", required=True, hint="h_patterns")],
         ["name", "patterns"]),
    Kind("scenarios", "scenarios", "scenarios", [NAME], ["name"], sub="tree"),
    Kind("rules", "rules", "rules",
         [NAME, Field("priority", "f_priority", "int", required=True, hint="h_priority"),
          Field("schedule", "f_schedule", "select", _ids("schedules"), required=True),
          Field("caller_list", "f_caller_list", "select", _ids("caller_lists"), blank="null", hint="h_caller_list"),
          Field("scenario", "f_scenario", "select", _ids("scenarios"), required=True)],
         ["priority", "name", "schedule", "caller_list", "scenario"], sort="priority"),
]}
BY_PATH: dict[str, Kind] = {k.path: k for k in KINDS.values()}


# --- sub-editors -------------------------------------------------------------------------------

MEMBER_FIELDS = ("operator", "priority", "attempts", "ring_seconds")
BLANK_ROWS = 3


def read_members(form: Form, item: dict[str, Any]) -> None:
    """Rows member-N-operator/priority/attempts/ring_seconds; a row without an operator is dropped."""
    rows = sorted({int(m.group(1)) for name in form if (m := re.fullmatch(r"member-([0-9]{1,5})-operator", name))})
    members = []
    for n in rows:
        op = form.get(f"member-{n}-operator")
        if not isinstance(op, str) or not op.strip():
            continue
        member: dict[str, Any] = {"operator": op.strip()}
        for name in MEMBER_FIELDS[1:]:
            Field(name, name, "int").read({name: form.get(f"member-{n}-{name}")}, member)
        members.append(member)
    item["members"] = members


def read_intervals(form: Form, item: dict[str, Any]) -> None:
    """Rows interval-N-start/end; none at all: the whole day (the key is left out)."""
    rows = sorted({int(m.group(1)) for name in form if (m := re.fullmatch(r"interval-([0-9]{1,5})-start", name))})
    intervals = []
    for n in rows:
        start, end = (str(form.get(f"interval-{n}-{side}") or "").strip() for side in ("start", "end"))
        if start or end:
            intervals.append([start, end])
    if intervals:
        item["intervals"] = intervals
    else:
        item.pop("intervals", None)


@dataclass
class TreeRow:
    """One line of the scenario editor: a node, or an empty slot where one may be added."""

    path: str  # "root", "root/next", "root/keys/1"
    level: int  # nesting level, 1 for the initial operation
    via: str  # "", "next" or the key: how the parent leads here
    operation: str  # "" for an empty slot
    is_menu: bool = False
    keys_slot: bool = False  # an "add a key" line under a menu node
    pointer: str = ""


def tree_rows(root: Any, base: str, menus: set[str]) -> list[TreeRow]:
    """The scenario's nodes depth first, each followed by its empty slots (next, a new key)."""
    rows: list[TreeRow] = []

    def walk(node: Any, path: str, level: int, via: str) -> None:
        op = node.get("operation") if isinstance(node, dict) else None
        pointer = f"{base}/{path}"
        if not isinstance(op, str):
            rows.append(TreeRow(path, level, via, "", pointer=pointer))
            return
        is_menu = op in menus
        rows.append(TreeRow(path, level, via, op, is_menu, pointer=pointer))
        keys = node.get("keys") if isinstance(node.get("keys"), dict) else {}
        for key in sorted(keys):
            walk(keys[key], f"{path}/keys/{pointer_token(key)}", level + 1, key)
        if is_menu or keys:
            rows.append(TreeRow(f"{path}/keys", level + 1, "+", "", keys_slot=True, pointer=f"{pointer}/keys"))
        walk(node.get("next"), f"{path}/next", level + 1, "next")

    walk(root, "root", 1, "")
    return rows


def read_tree(form: Form) -> dict[str, Any] | None:
    """The tree from fields node:PATH (an operation id; blank removes the node and what is
    under it) and newkey:PATH + newkeyop:PATH (a key added to a menu)."""
    names = [n for n in form if isinstance(n, str) and n.startswith("node:")]

    def build(path: str, depth: int) -> dict[str, Any] | None:
        op = str(form.get(f"node:{path}") or "").strip()
        if not op or depth > 40:
            return None
        node: dict[str, Any] = {"operation": op}
        prefix = f"node:{path}/keys/"
        keys: dict[str, Any] = {}
        for name in names:
            rest = name[len(prefix):] if name.startswith(prefix) else ""
            if rest and "/" not in rest:
                key = rest.replace("~1", "/").replace("~0", "~")
                child = build(f"{path}/keys/{rest}", depth + 1)
                if child is not None:
                    keys[key] = child
        new_key = str(form.get(f"newkey:{path}/keys") or "").strip()
        new_op = str(form.get(f"newkeyop:{path}/keys") or "").strip()
        if new_key and new_op:
            keys[new_key] = {"operation": new_op}
        if keys:
            node["keys"] = keys
        nxt = build(f"{path}/next", depth + 1)
        if nxt is not None:
            node["next"] = nxt
        return node

    return build("root", 1)


# --- problems next to fields ------------------------------------------------------------------

def assign(problems: list[dict[str, Any]], scope: str, targets: Sequence[str]) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
    """Problems under pointer SCOPE, each at the longest target pointer that contains it
    (/groups/0/members/1/priority at that member's priority field); those under no target
    are returned apart, to be shown at the top of the form."""
    at: dict[str, list[dict[str, Any]]] = {}
    other: list[dict[str, Any]] = []
    ordered = sorted(targets, key=len, reverse=True)
    for p in problems:
        pointer = p["pointer"]
        if not (pointer == scope or pointer.startswith(scope + "/")) and scope:
            continue
        for t in ordered:
            if pointer == t or pointer.startswith(t + "/"):
                at.setdefault(t, []).append(p)
                break
        else:
            other.append(p)
    return at, other
