"""Check, apply, versions and rollback: the draft reaches the loaded configuration here.

"Check" runs the validator on the draft and lists every problem, each linked to the field it
points at (where the screen shows it too). A draft without errors gets its plan: the
field-level diff against the loaded version and the warnings it brings (routing.web.planning,
the same as `voffice plan`). "Apply" loads exactly the planned document, guarded by the
version it was planned against: if someone applied in between, nothing is written and the
page says so (the API's 412)."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from routing.store import configs
from routing.web import planning
from routing.web.auth import DIGITS
from routing.web.console import draft as drafts
from routing.web.console.common import AccountPage, ConsoleAccount, PostedForm, lang_of, redirect, render
from routing.web.console.forms import KINDS, field_id
from routing.web.console.i18n import translate

router = APIRouter()


def digest(doc: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def problem_link(page: AccountPage, draft: drafts.Draft, pointer: str) -> str:
    """The screen (and field) a problem's pointer points at."""
    m = re.match(r"/([a-z_]+)/([0-9]+)(/|$)", pointer)
    if m and m.group(1) in KINDS:
        kind = KINDS[m.group(1)]
        items = draft.items(kind.key)
        index = int(m.group(2))
        item = items[index] if index < len(items) else None
        if isinstance(item, dict) and isinstance(item.get("id"), str):
            return f"{page.base}/{kind.path}/{quote(item['id'], safe='')}#{field_id(pointer)}"
        return f"{page.base}/{kind.path}"
    return f"{page.base}/settings#{field_id(pointer)}"


def check_page(request: Request, page: AccountPage, message: str = "", kind: str = "ok", status: int = 200,
               plan_problems: list[dict[str, Any]] | None = None) -> HTMLResponse:
    r = page.redis
    draft = drafts.get(r, page.account)
    current = configs.current_version(r, page.account)
    problems = plan_problems if plan_problems is not None else draft.problems
    plan: dict[str, Any] | None = None
    if not any(p["severity"] == "error" for p in problems):
        try:
            planned = planning.plan(r, draft.doc, page.account, name_owners=page.principal.is_noc)
        except planning.Invalid as exc:  # e.g. a number another account holds
            problems = [planning.problem_json(p) for p in exc.problems]
        else:
            plan = planned.to_json()
    links = [(p, problem_link(page, draft, p["pointer"])) for p in problems]
    return render(request, "console/check.html", {
        "draft": draft, "current": current, "links": links, "plan": plan, "digest": digest(draft.doc),
        "flash": message, "flash_kind": kind, "has_errors": any(p["severity"] == "error" for p in problems),
    }, scope=page, status=status, active="/check")


@router.get("/{account}/check", response_class=HTMLResponse)
def check(request: Request, scope: ConsoleAccount) -> HTMLResponse:
    return check_page(request, scope)


@router.post("/{account}/check")
def recheck(request: Request, scope: ConsoleAccount, form: PostedForm) -> Response:
    """Run the validator on the draft again (the screens show the new problems)."""
    draft = drafts.get(scope.redis, scope.account)
    if draft.saved:
        drafts.save(scope.redis, draft)
    return redirect(f"{scope.base}/check")


@router.post("/{account}/apply", response_class=HTMLResponse)
def apply(request: Request, scope: ConsoleAccount, form: PostedForm) -> Response:
    lang = lang_of(request)
    r = scope.redis
    draft = drafts.get(r, scope.account)
    planned_against = str(form.get("planned_against") or "")
    if not DIGITS.fullmatch(planned_against) or form.get("digest") != digest(draft.doc):
        return check_page(request, scope, translate("draft_moved", lang), "error", 409)
    try:
        planned = planning.plan(r, draft.doc, scope.account, name_owners=scope.principal.is_noc)
        result = planning.apply(r, planned, int(planned_against), scope.principal.name)
    except planning.Invalid as exc:
        return check_page(request, scope, translate("apply_invalid", lang), "error", 422,
                          [planning.problem_json(p) for p in exc.problems])
    except planning.VersionMismatch as exc:
        return check_page(request, scope, translate("someone_else", lang, v=exc.current), "error", 412)
    drafts.discard(r, scope.account)
    return redirect(f"{scope.base}/versions?applied={result['version']}")


@router.get("/{account}/versions", response_class=HTMLResponse)
def versions(request: Request, scope: ConsoleAccount, applied: int = 0, rolled: int = 0) -> HTMLResponse:
    return versions_page(request, scope, applied, rolled)


def versions_page(request: Request, scope: AccountPage, applied: int = 0, rolled: int = 0, failed: str = "",
                  status: int = 200) -> HTMLResponse:
    """The audit trail; `failed`: why a rollback was refused (shown, never taken from the URL)."""
    r = scope.redis
    lang = lang_of(request)
    current = configs.current_version(r, scope.account)
    kept = [int(v) for v in r.lrange(configs.account_key(scope.account) + ":versions", 0, -1)]
    entries = configs.history(r, scope.account, 100)
    for e in entries:
        e["state"] = ("deleted" if e["action"] == "delete" else "current" if e["version"] == current
                      else "kept" if e["version"] in kept else "not kept")
    flash, kind = "", "ok"
    if applied:
        flash = translate("applied", lang, v=applied)
    elif rolled:
        flash = translate("rolled_back", lang, v=rolled)
    elif failed:
        flash, kind = failed, "error"
    return render(request, "console/versions.html", {"entries": entries, "current": current, "flash": flash,
                                                     "flash_kind": kind}, scope=scope, active="/versions",
                  status=status)


@router.post("/{account}/versions/{version}/rollback")
def rollback(request: Request, scope: ConsoleAccount, version: int, form: PostedForm) -> Response:
    """Make VERSION current again, as a new version; an untouched draft follows it."""
    r = scope.redis
    draft = drafts.get(r, scope.account)
    untouched = not draft.saved or not drafts.changed(r, draft)
    try:
        result = configs.rollback(r, scope.account, version, configs.keep_setting(r),
                                  allow_private_webhooks=planning.private_webhooks())
    except configs.StoreError as exc:
        return versions_page(request, scope, failed=planning.store_refusal(exc), status=409)
    if untouched:
        drafts.discard(r, scope.account)
    return redirect(f"{scope.base}/versions?rolled={result.versions[scope.account]}")
