"""An account's first page: what is loaded (name, numbers, version) and the draft's state."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from routing.store import configs, credentials, overrides
from routing.web.console import draft as drafts
from routing.web.console.common import AccountPage, ConsoleAccount, ConsoleError, PostedForm, lang_of, redirect, render
from routing.web.console.forms import KINDS
from routing.web.console.i18n import translate

router = APIRouter()
log = logging.getLogger("voffice.web")


@router.get("/{account}", response_class=HTMLResponse)
def overview(request: Request, scope: ConsoleAccount, created: int = 0, password: int = 0, override: str = "") -> HTMLResponse:
    lang = lang_of(request)
    flash = (translate("created", lang) if created else translate("password_set", lang) if password
             else translate("override_done", lang) if override == "set"
             else translate("override_cleared", lang) if override == "cleared" else "")
    return overview_page(request, scope, flash)


def overview_page(request: Request, scope: AccountPage, flash: str = "", password_error: str = "",
                  status: int = 200, override_errors: dict[str, str] | None = None,
                  override_form: dict[str, str] | None = None) -> HTMLResponse:
    info = configs.describe(scope.redis, scope.account)
    draft = drafts.get(scope.redis, scope.account)
    counts = {k: len(draft.items(k)) for k in KINDS}
    return render(request, "console/overview.html", {
        "info": info, "doc": info["document"], "draft": draft, "counts": counts,
        "draft_changed": draft.saved and drafts.changed(scope.redis, draft),
        "flash": flash, "password_error": password_error,
        "override": overrides.override_status(scope.redis, scope.account),
        "override_errors": override_errors or {}, "override_form": override_form or {},
    }, scope=scope, active="", status=status)


@router.post("/{account}/override")
def set_override(request: Request, scope: ConsoleAccount, form: PostedForm) -> Response:
    """The day/night switch (as `voffice override`): the calls go to a scenario now, until a
    time or until switched back; no config load."""
    scenario = str(form.get("scenario") or "").strip()
    until = str(form.get("until") or "").strip() or None
    try:
        overrides.set_override(scope.redis, scope.account, scenario, until, scope.principal.name)
    except overrides.OverrideError as exc:
        text = str(exc)
        field = "scenario" if "has no scenario" in text else "until" if until else "scenario"
        return overview_page(request, scope, override_errors={field: text}, status=422,
                             override_form={"scenario": scenario, "until": until or ""})
    return redirect(f"{scope.base}?override=set")


@router.post("/{account}/override/clear")
def clear_override(request: Request, scope: ConsoleAccount, form: PostedForm) -> Response:
    overrides.clear_override(scope.redis, scope.account, scope.principal.name)
    return redirect(f"{scope.base}?override=cleared")


@router.post("/{account}/password")
def set_password(request: Request, scope: ConsoleAccount, form: PostedForm) -> Response:
    """The NOC sets the subscriber's password (as `voffice password`): a new password ends
    the account's open sessions. Not a subscriber's page: 404 for them."""
    if not scope.principal.is_noc:
        raise ConsoleError(404, f"account {scope.account!r} not found")
    lang = lang_of(request)
    first, second = (str(form.get(k) or "") for k in ("password", "password2"))
    error = ""
    if first != second:
        error = translate("passwords_differ", lang)
    else:
        try:
            credentials.set_password(scope.redis, scope.account, first)
        except credentials.CredentialError:
            error = translate("password_short", lang, n=credentials.MIN_PASSWORD)
    if error:
        return overview_page(request, scope, password_error=error, status=422)
    log.info("password of %s set by %s", scope.account, scope.principal.name)
    return redirect(f"{scope.base}?password=1")


@router.post("/{account}/draft/discard")
def discard(request: Request, scope: ConsoleAccount, form: PostedForm) -> Response:
    """Drop the draft: the screens show the loaded version again."""
    drafts.discard(scope.redis, scope.account)
    return redirect(scope.base)
