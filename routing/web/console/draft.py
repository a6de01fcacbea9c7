"""The console's draft: the account document being edited, kept in Redis per account
(`vo:web:draft:{account}`) until it is applied or discarded.

Every screen edits its part of the draft; nothing reaches the loaded configuration before
"apply" (plan, then load guarded by the version planned against). A draft starts as a copy
of the loaded version (`base`). It may hold anything a form sent, invalid values included:
the validator's problems, recomputed at each save, are shown next to the fields they point
at, so a wrong value is visible where it was typed rather than refused without a trace.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from routing.core.problems import Problem
from routing.store import configs
from routing.web import planning

DRAFT_TTL = 30 * 86400  # an abandoned draft goes after a month


def key(account: str) -> str:
    return f"vo:web:draft:{account}"


@dataclass
class Draft:
    account: str
    doc: dict[str, Any]
    base: int  # the loaded version the draft started from
    problems: list[dict[str, Any]] = field(default_factory=list)  # {pointer, message, severity}
    saved: bool = False  # False: no draft yet, this is the loaded document

    def items(self, kind: str) -> list[dict[str, Any]]:
        """The draft's list KIND (operators, groups, ...), made a list if it is not one."""
        value = self.doc.get(kind)
        if not isinstance(value, list):
            value = []
            self.doc[kind] = value
        return value

    def index_of(self, kind: str, item_id: str) -> int | None:
        for i, item in enumerate(self.items(kind)):
            if isinstance(item, dict) and item.get("id") == item_id:
                return i
        return None

    def ids(self, kind: str) -> list[str]:
        return [str(item["id"]) for item in self.items(kind) if isinstance(item, dict) and isinstance(item.get("id"), str)]

    def errors(self) -> list[dict[str, Any]]:
        return [p for p in self.problems if p["severity"] == "error"]


def loaded_document(r: redis.Redis, account: str) -> tuple[dict[str, Any], int]:
    info = configs.describe(r, account)
    doc = info["document"]
    return (copy.deepcopy(doc) if isinstance(doc, dict) else {}), int(info["version"])


def get(r: redis.Redis, account: str) -> Draft:
    """The saved draft, or (not saved yet) the loaded document as a fresh one."""
    raw = r.hgetall(key(account))
    if raw:
        data = {(k.decode() if isinstance(k, bytes) else k): v for k, v in raw.items()}
        return Draft(account, json.loads(data["doc"]), int(data["base"]), json.loads(data.get("problems") or "[]"),
                     saved=True)
    doc, version = loaded_document(r, account)
    return Draft(account, doc, version, loaded_problems(r, account, version, doc))


def loaded_problems(r: redis.Redis, account: str, version: int, doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The loaded version's problems (warnings: it loaded), validated once per version and
    kept beside it: a page view does not validate a large account again."""
    cache = f"vo:web:checked:{account}"
    raw = r.hget(cache, str(version))
    if raw is not None:
        cached: list[dict[str, Any]] = json.loads(raw)
        return cached
    problems = check(doc, account)
    pipe = r.pipeline(transaction=True)
    pipe.delete(cache)  # only the current version's
    pipe.hset(cache, str(version), json.dumps(problems, ensure_ascii=False))
    pipe.expire(cache, DRAFT_TTL)
    pipe.execute()
    return problems


def check(doc: dict[str, Any], account: str) -> list[dict[str, Any]]:
    """The validator's problems of the document (errors and warnings), as the API gives them."""
    problems: list[Problem] = planning.validate(doc, account)
    return [planning.problem_json(p) for p in problems]


def save(r: redis.Redis, draft: Draft) -> None:
    """Store the draft with its problems recomputed."""
    draft.problems = check(draft.doc, draft.account)
    pipe = r.pipeline(transaction=True)
    pipe.hset(key(draft.account), mapping={"doc": json.dumps(draft.doc, ensure_ascii=False), "base": draft.base,
                                           "problems": json.dumps(draft.problems, ensure_ascii=False)})
    pipe.expire(key(draft.account), DRAFT_TTL)
    pipe.execute()
    draft.saved = True


class Busy(Exception):
    """The draft kept changing under us (many saves at once): nothing was saved."""


def edit(r: redis.Redis, account: str, change: Callable[[Draft], bool]) -> Draft:
    """Read, change and save the draft as one step (optimistic: WATCH, retried), so two
    people saving different items at once both keep theirs. CHANGE edits the draft in place
    and says whether to save it (False: a form error, nothing to write)."""
    for _ in range(20):
        with r.pipeline() as pipe:
            try:
                pipe.watch(key(account))  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
                draft = get(r, account)
                if not change(draft):
                    return draft
                draft.problems = check(draft.doc, draft.account)
                pipe.multi()
                pipe.hset(key(account), mapping={"doc": json.dumps(draft.doc, ensure_ascii=False), "base": draft.base,
                                                 "problems": json.dumps(draft.problems, ensure_ascii=False)})
                pipe.expire(key(account), DRAFT_TTL)
                pipe.execute()
            except redis.WatchError:
                continue
            draft.saved = True
            return draft
    raise Busy(f"the draft of {account!r} changed too often to save; try again")


def discard(r: redis.Redis, account: str) -> None:
    r.delete(key(account))


def changed(r: redis.Redis, draft: Draft) -> bool:
    """Whether the draft differs from the loaded document."""
    doc, _ = loaded_document(r, draft.account)
    return draft.doc != doc
