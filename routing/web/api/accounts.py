"""Accounts: the whole JSON document (GET/PUT), validate, plan, apply, versions, rollback,
simulate and coverage, as the CLI gives them.

Concurrency: GET gives the version as an ETag ("3"). Every write names the version it was
planned against: `If-Match: "3"` (or `If-None-Match: *` for a new account, the same as
`If-Match: "0"`). No precondition: 428. Another version now: 412, nothing written.
"""

from __future__ import annotations

import json
import tempfile
from datetime import date, datetime
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response

from routing.core.clock import now as clock_now
from routing.core.clock import wall_time_problem
from routing.core.coverage import Coverage, parse_iso_week, render_png, week_coverage
from routing.core.engine import CompiledAccount
from routing.core.numbers import did_candidates
from routing.core.scenario import Event, EventError
from routing.core.simulate import simulate
from routing.store import configs, overrides
from routing.web import planning
from routing.web.auth import DIGITS, CurrentPrincipal, LoadedAccount, VisibleAccount, not_found, redis_of
from routing.web.planning import problem_json

router = APIRouter(prefix="/accounts", tags=["accounts"])

DOCUMENT_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"type": "object", "description": "An account document (`voffice schema`)."}}}}}
PRECONDITION = ('The version planned against: `"N"` (the ETag of GET or `planned_against` of plan); '
                '`"0"` or `If-None-Match: *` for a new account')


async def raw_body(request: Request) -> bytes:
    """The body, read here so the routes can be plain functions: FastAPI runs those in its
    thread pool, and validating, planning and loading then never block the event loop."""
    return await request.body()


Body = Annotated[bytes, Depends(raw_body)]


def etag(version: int) -> str:
    return f'"{version}"'


def expected_version(if_match: str | None, if_none_match: str | None) -> int:
    """The version a write is guarded by (see the module docstring)."""
    if if_match is None:
        if if_none_match is not None and if_none_match.strip() == "*":
            return 0
        raise HTTPException(428, 'If-Match required: the version planned against, e.g. If-Match: "3" '
                                 '(If-None-Match: * for a new account)')
    value = if_match.strip().removeprefix("W/").strip('"')
    if not DIGITS.fullmatch(value):
        raise HTTPException(400, f'If-Match {if_match[:40]!r}: expected a version such as "3"')
    return int(value)


@router.get("")
def list_accounts(who: CurrentPrincipal, request: Request) -> list[dict[str, Any]]:
    """Loaded accounts (as `voffice list --json`): all for the NOC, its own for a subscriber."""
    return [a for a in configs.accounts(redis_of(request)) if who.may_see(a["account"])]


@router.get("/{account}")
def get_account(scope: LoadedAccount, response: Response) -> Any:
    """The current document, exactly as loaded; its version in the ETag."""
    info = configs.describe(scope.redis, scope.account)
    response.headers["ETag"] = etag(info["version"])
    return info["document"]


def _write(scope: VisibleAccount, body: bytes, if_match: str | None, if_none_match: str | None,
           response: Response) -> dict[str, Any]:
    loaded = configs.current_version(scope.redis, scope.account)
    if not loaded and not scope.principal.is_noc:
        raise HTTPException(403, "only the NOC creates accounts")
    expected = expected_version(if_match, if_none_match)
    doc = planning.parse(body, scope.account)
    planned = planning.plan(scope.redis, doc, scope.account, name_owners=scope.principal.is_noc)
    result = planning.apply(scope.redis, planned, expected, scope.principal.name)
    response.headers["ETag"] = etag(result["version"])
    if not loaded:
        response.status_code = 201
    return result


@router.put("/{account}", openapi_extra=DOCUMENT_BODY)
def put_account(scope: VisibleAccount, body: Body, response: Response,
                      if_match: Annotated[str | None, Header(description=PRECONDITION)] = None,
                      if_none_match: Annotated[str | None, Header()] = None) -> dict[str, Any]:
    """Validate, plan and apply the whole document in one step, guarded by If-Match. 422 with
    every problem; 412 if the account moved; 201 for a new account (NOC only)."""
    return _write(scope, body, if_match, if_none_match, response)


@router.post("/{account}/apply", openapi_extra=DOCUMENT_BODY)
def apply_account(scope: VisibleAccount, body: Body, response: Response,
                        if_match: Annotated[str | None, Header(description=PRECONDITION)] = None,
                        if_none_match: Annotated[str | None, Header()] = None) -> dict[str, Any]:
    """Apply a planned document: the same as PUT (If-Match = the plan's planned_against)."""
    return _write(scope, body, if_match, if_none_match, response)


@router.post("/{account}/validate", openapi_extra=DOCUMENT_BODY)
def validate_account(scope: VisibleAccount, body: Body) -> dict[str, Any]:
    """`voffice validate` for a document: 422 with every problem as {pointer, message,
    severity}; 200 with its warnings when it has no error."""
    doc = planning.parse(body, scope.account)
    problems = planning.validate(doc, scope.account)
    if any(p.severity == "error" for p in problems):
        raise planning.Invalid(problems)
    return {"account": scope.account, "valid": True, "warnings": [problem_json(p) for p in problems]}


@router.post("/{account}/plan", openapi_extra=DOCUMENT_BODY)
def plan_account(scope: VisibleAccount, body: Body, response: Response) -> dict[str, Any]:
    """`voffice plan` for a document: every changed field (JSON pointer, old, new), the
    warnings the change brings, and `planned_against`, the version to send as If-Match."""
    if not configs.current_version(scope.redis, scope.account) and not scope.principal.is_noc:
        raise HTTPException(403, "only the NOC creates accounts")
    doc = planning.parse(body, scope.account)
    planned = planning.plan(scope.redis, doc, scope.account, name_owners=scope.principal.is_noc)
    response.headers["ETag"] = etag(planned.change.current)
    return planned.to_json()


@router.get("/{account}/versions")
def versions(scope: LoadedAccount, limit: Annotated[int, Query(ge=1, le=1000)] = 20) -> dict[str, Any]:
    """The audit trail (`voffice history --json`), newest first, each marked current, kept
    (restorable) or not kept."""
    r = scope.redis
    current = configs.current_version(r, scope.account)
    kept = [int(v) for v in r.lrange(configs.account_key(scope.account) + ":versions", 0, -1)]
    entries = configs.history(r, scope.account, limit)
    for e in entries:
        e["state"] = ("deleted" if e["action"] == "delete" else "current" if e["version"] == current
                      else "kept" if e["version"] in kept else "not kept")
    return {"account": scope.account, "current": current, "versions_kept": kept, "history": entries}


@router.get("/{account}/versions/{version}")
def version_document(scope: LoadedAccount, version: int) -> dict[str, Any]:
    """A kept version's metadata and document (`voffice show --version N --json`)."""
    try:
        return configs.describe(scope.redis, scope.account, version)
    except configs.StoreError as exc:
        raise HTTPException(404, str(exc)) from None


@router.post("/{account}/rollback")
def rollback(scope: LoadedAccount, response: Response,
             to: Annotated[int | None, Query(ge=1, description="Version to restore (default: the one before the current)")] = None,
             dry_run: bool = False,
             if_match: Annotated[str | None, Header(description="Optional: refuse (412) unless still at this version")] = None,
             ) -> dict[str, Any]:
    """`voffice rollback`: an earlier version made current again, as a new version."""
    r = scope.redis
    current = configs.current_version(r, scope.account)
    if if_match is not None and expected_version(if_match, None) != current:
        raise planning.VersionMismatch(scope.account, expected_version(if_match, None), current)
    result = configs.rollback(r, scope.account, to, configs.keep_setting(r),
                              allow_private_webhooks=planning.private_webhooks(), dry_run=dry_run)
    change = result.changes[0]
    restored = int(change.file.rsplit("@v", 1)[-1])
    out = planning.Planned(change, []).to_json()
    if dry_run:
        return {**out, "to": restored, "dry_run": True}
    version = result.versions[scope.account]
    response.headers["ETag"] = etag(version)
    return {**out, "to": restored, "version": version, "previous": change.current,
            "action": f"rollback to v{restored}"}


def _parse_at(text: str | None, account: CompiledAccount, response: Response) -> datetime:
    """As `voffice simulate --at`: without an offset, the account's local time."""
    if not text:
        return clock_now()
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise HTTPException(422, f"at: {text[:60]!r} is not an ISO 8601 time such as 2026-11-28T13:00") from None
    if at.tzinfo is None:
        problem = wall_time_problem(at, account.tz)
        if problem is not None and problem[0] == "gap":
            raise HTTPException(422, f"at: {problem[1]}")
        if problem is not None:
            response.headers["X-Voffice-Note"] = f"at {problem[1]}"
    return at


def _compiled(scope: LoadedAccount) -> CompiledAccount:
    found = planning.compiled(scope.redis, scope.account)
    if found is None:
        raise not_found(scope.account)
    return found


@router.get("/{account}/simulate")
def simulate_call(scope: LoadedAccount, response: Response,
                  number: Annotated[str, Query(max_length=40, description="The dialled number, one of this account's")],
                  caller: Annotated[str, Query(max_length=80, description="The caller's number ('anonymous' allowed)")],
                  at: Annotated[str | None, Query(description="ISO 8601; without an offset, the account's local time")] = None,
                  event: Annotated[list[str] | None, Query(description="digits:101 key:1 timeout ... in order")] = None,
                  seed: str = "") -> dict[str, Any]:
    """What happens to a call: the same JSON as `voffice simulate --json`."""
    account = _compiled(scope)
    r = scope.redis
    countries = frozenset(c.decode() if isinstance(c, bytes) else str(c) for c in r.smembers("vo:countries"))
    raw = r.hget(configs.account_key(scope.account), "numbers")
    numbers = set(json.loads(raw or "[]"))
    if not ({number} | set(did_candidates(number, countries))) & numbers:
        raise HTTPException(404, f"number {number[:40]} is not a number of account {scope.account!r}")
    try:
        events = [Event.parse(e) for e in event or []]
    except EventError as exc:
        raise HTTPException(422, f"event: {exc}") from None
    when = _parse_at(at, account, response)
    return simulate(account, number, caller, when, events, seed=seed, override=overrides.get_override(r, scope.account))


def _coverage(scope: LoadedAccount, week: str | None, slot: int) -> tuple[Coverage, CompiledAccount]:
    account = _compiled(scope)
    try:
        if week is None:
            year, number, _ = clock_now().isocalendar()
            week = f"{year}-W{number:02d}"
        monday: date = parse_iso_week(week)
    except ValueError as exc:
        raise HTTPException(422, f"week: {exc}") from None
    try:
        return week_coverage(account, monday, slot, overrides.get_override(scope.redis, scope.account)), account
    except ValueError as exc:
        raise HTTPException(422, f"slot: {exc}") from None


Week = Annotated[str | None, Query(max_length=10, description="ISO week, e.g. 2026-W48 (default: this week)")]
Slot = Annotated[int, Query(ge=5, le=240, description="Slot length in minutes")]


@router.get("/{account}/coverage")
def coverage_json(scope: LoadedAccount, week: Week = None, slot: Slot = 15) -> dict[str, Any]:
    """Which rule and scenario apply in each slot of a week: `voffice coverage --json`."""
    cov, _ = _coverage(scope, week, slot)
    return cov.to_json()


@router.get("/{account}/coverage.png", response_class=Response,
            responses={200: {"content": {"image/png": {}}, "description": "The week as a heat map"}})
def coverage_png(scope: LoadedAccount, week: Week = None, slot: Slot = 15) -> Response:
    """The week as a heat map: `voffice coverage --png`."""
    cov, account = _coverage(scope, week, slot)
    with tempfile.TemporaryDirectory(prefix="voffice-coverage-") as tmp:
        path = FilePath(tmp) / "coverage.png"
        render_png(cov, account, path)
        return Response(path.read_bytes(), media_type="image/png")
