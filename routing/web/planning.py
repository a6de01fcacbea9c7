"""One account document through the CLI's steps (validate, plan, apply), for the API: the same
validator and store calls as `voffice validate`/`plan`/`load`, on a document sent in a request
body instead of a file. Free of FastAPI, so the console can use it as well."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

import msgpack
import redis

from routing.core.diff import field_changes
from routing.core.engine import CompiledAccount
from routing.core.problems import WARNING, Problem, errors, has_errors
from routing.core.validation import MAX_FILE_BYTES, parse_document, validate_document
from routing.store import configs


class Invalid(Exception):
    """A document with errors: every problem, as {pointer, message, severity} (HTTP 422)."""

    def __init__(self, problems: list[Problem], detail: str = ""):
        super().__init__(detail or f"{len(errors(problems))} error(s) in the document")
        self.problems = problems


class VersionMismatch(Exception):
    """The account is not at the version the client planned against (HTTP 412)."""

    def __init__(self, account: str, expected: int, current: int):
        super().__init__(f"account {account!r} is at version {current}, not {expected}: plan again")
        self.current = current


def private_webhooks() -> bool:
    """As the CLI: webhooks to private addresses only with VOFFICE_ALLOW_PRIVATE_WEBHOOKS=1."""
    return os.environ.get("VOFFICE_ALLOW_PRIVATE_WEBHOOKS") == "1"


def problem_json(problem: Problem) -> dict[str, Any]:
    return {"pointer": problem.pointer, "message": problem.message, "severity": problem.severity}


def parse(body: bytes, account: str) -> dict[str, Any]:
    """The request body as a document, parsed as strictly as a file (duplicate keys, NaN)."""
    if len(body) > MAX_FILE_BYTES:
        raise Invalid([Problem(account, "", f"the document is {len(body)} bytes; the limit is {MAX_FILE_BYTES}")])
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Invalid([Problem(account, "", f"not UTF-8 text (byte {exc.start})")]) from None
    doc, problems = parse_document(text, account)
    if problems:
        raise Invalid(problems)
    if not isinstance(doc, dict):
        raise Invalid([Problem(account, "", "the document must be a JSON object")])
    return doc


def validate(doc: dict[str, Any], account: str) -> list[Problem]:
    """Every problem of the document (errors and warnings), and that it is this account's:
    an account's id is not changed through its URL."""
    problems = validate_document(doc, account, allow_private_webhooks=private_webhooks())
    if isinstance(doc.get("account"), str) and doc["account"] != account:
        problems.append(Problem(account, "/account", f"the document is account {doc['account']!r}, "
                                                     f"not {account!r}: an account's id cannot be changed"))
    return problems


@dataclass
class Planned:
    change: configs.PlannedChange
    warnings: list[Problem]  # the warnings this change brings (the current version lacks them)
    all_warnings: list[Problem] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        c = self.change
        return {
            "account": c.account,
            "planned_against": c.current,
            "new": c.current == 0,
            "unchanged": c.unchanged,
            "changes": [] if c.unchanged else [
                {"pointer": f.pointer, "label": f.label, "kind": f.kind, "old": f.old, "new": f.new}
                for f in field_changes(c.old_doc, c.doc)],
            "summary": [] if c.unchanged else c.summary,
            "warnings": [problem_json(p) for p in self.warnings],
        }


def plan(r: redis.Redis, doc: dict[str, Any], account: str, *, name_owners: bool = False) -> Planned:
    """`voffice plan` for one document: Invalid if it has errors (its numbers taken by another
    account too), else the field-level changes and the warnings it introduces.
    name_owners: say which account holds a taken number (the NOC); a subscriber is told only
    that the number is taken, which names no other tenant."""
    problems = validate(doc, account)
    if has_errors(problems):
        raise Invalid(problems)
    changes, taken = configs.plan_load(r, [(account, doc)])
    if taken:
        raise Invalid(taken if name_owners else [
            Problem(p.file, p.pointer, f"number {doc['numbers'][int(p.pointer.rsplit('/', 1)[-1])]} is not available: "
                                       "another account holds it") for p in taken])
    change = changes[0]
    warnings = [p for p in problems if p.severity == WARNING]
    introduced = warnings
    if warnings and change.old_doc is not None and not change.unchanged:
        before = {(p.pointer, p.message) for p in validate_document(change.old_doc, account, allow_private_webhooks=private_webhooks())
                  if p.severity == WARNING}
        introduced = [p for p in warnings if (p.pointer, p.message) not in before]
    return Planned(change, [] if change.unchanged else introduced, warnings)


def apply(r: redis.Redis, planned: Planned, expected: int, user: str) -> dict[str, Any]:
    """`voffice load --expect-version ACCOUNT=expected` for one planned document."""
    change = planned.change
    if change.current != expected:
        raise VersionMismatch(change.account, expected, change.current)
    out = planned.to_json()
    if change.unchanged:
        return {**out, "version": change.current, "previous": change.current, "changed": False}
    try:
        result = configs.apply_load(r, [change], configs.keep_setting(r), user=user)
    except configs.StoreError as exc:
        now = configs.current_version(r, change.account)
        if now != expected:  # someone loaded it between our plan and our swap
            raise VersionMismatch(change.account, expected, now) from None
        raise exc
    return {**out, "version": result.versions[change.account], "previous": change.current, "changed": True}


def compiled(r: redis.Redis, account: str) -> CompiledAccount | None:
    """The current compiled version, as Kamailio's reader gets it (the same msgpack blob)."""
    version = configs.current_version(r, account)
    raw = r.get(configs.version_key(account, version)) if version else None
    return CompiledAccount(msgpack.unpackb(raw, raw=False)) if raw else None


_OWNER = re.compile(r"(belongs to) loaded account '[^']*'")


def store_refusal(exc: Exception) -> str:
    """A store's refusal as the cabinet shows it: without the name of the account that holds
    a number (a rollback or a racing load may hit another tenant's number; the API and the
    console never say whose it is)."""
    return _OWNER.sub(r"\1 another account", str(exc))
