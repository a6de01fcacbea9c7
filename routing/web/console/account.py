"""The account's own settings (name, time zone, numbers, calendar, defaults, default
scenario, notifications) and, for the NOC, creating an account.

A new account needs, to be valid, one operation, one scenario and a default scenario. The
NOC gives the id, name, time zone and numbers; the form adds the least that makes it valid —
a voicemail operation `vm` («Голосовое сообщение») and a scenario `start` that takes a
message — and says so; the subscriber then builds the rest and may delete `start`.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from routing.store import configs
from routing.web import planning
from routing.web.auth import redis_of
from routing.web.console import draft as drafts
from routing.web.console.common import (
    PREFIX,
    AccountPage,
    ConsoleAccount,
    ConsoleError,
    ConsoleUser,
    PostedForm,
    lang_of,
    redirect,
    render,
)
from routing.web.console.forms import Field, assign, field_id
from routing.web.console.i18n import translate

router = APIRouter()

TOP = [Field("name", "f_name", required=True), Field("timezone", "timezone", required=True, hint="h_timezone"),
       Field("numbers", "numbers", "lines", required=True, hint="h_numbers"),
       Field("language", "f_language", hint="h_language"),
       Field("extension_digits", "f_extension_digits", "int"),
       Field("default_scenario", "f_default_scenario", "select", None, required=True, hint="h_default_scenario")]
CALENDAR = [Field("country", "f_country", hint="h_country"), Field("holidays", "f_holidays", "lines", blank="empty", hint="h_dates"),
            Field("workdays", "f_workdays", "lines", blank="empty", hint="h_dates")]
DEFAULTS = [Field("attempts", "f_attempts", "int"), Field("ring_seconds", "f_ring_seconds", "int"),
            Field("input_timeout", "f_input_timeout", "int")]
NOTIFY = [Field("email", "f_email", "lines", hint="h_email"),
          Field("events", "f_events", "checkboxes", lambda d: [(v, v) for v in ("voicemail", "fax", "missed")]),
          Field("language", "f_notify_language", "select", lambda d: [("ru", "ru"), ("en", "en")]),
          Field("attachments", "f_attachments", "select", lambda d: [(v, v) for v in ("attach", "link", "none")])]
SECTIONS = [("", "", TOP), ("calendar", "calendar.", CALENDAR), ("defaults", "defaults.", DEFAULTS),
            ("notifications", "notifications.", NOTIFY)]


def settings_page(request: Request, page: AccountPage, draft: drafts.Draft, flash: str = "") -> HTMLResponse:
    sections = []
    targets = []
    for key, prefix, fields in SECTIONS:
        found = draft.doc.get(key) if key else draft.doc
        part: dict[str, Any] = found if isinstance(found, dict) else {}
        base = f"/{key}" if key else ""
        rows = []
        for f in fields:
            options = f.options(draft) if f.options else []
            if f.name == "default_scenario":
                options = [(str(s["id"]), f"{s.get('name', '')} ({s['id']})") for s in draft.items("scenarios")
                           if isinstance(s, dict) and isinstance(s.get("id"), str)]
            rows.append((f, f.value(part), f"{base}/{f.name}", prefix + f.name, options))
            targets.append(f"{base}/{f.name}")
        sections.append((key, rows))
    top_level = [p for p in draft.problems if not re.match(r"/(operators|groups|sounds|operations|schedules|caller_lists|scenarios|rules)/", p["pointer"])]
    at, other = assign(top_level, "", targets)
    return render(request, "console/settings.html", {"sections": sections, "at": at, "other": other, "fid": field_id,
                                                     "flash": flash, "noc": page.principal.is_noc},
                  scope=page, active="/settings")


@router.get("/{account}/settings", response_class=HTMLResponse)
def settings(request: Request, scope: ConsoleAccount, saved: int = 0) -> HTMLResponse:
    draft = drafts.get(scope.redis, scope.account)
    return settings_page(request, scope, draft, translate("saved", lang_of(request)) if saved else "")


@router.post("/{account}/settings")
def save_settings(request: Request, scope: ConsoleAccount, form: PostedForm) -> Response:
    def change(draft: drafts.Draft) -> bool:
        doc = draft.doc
        for key, prefix, fields in SECTIONS:
            if key == "":
                for f in fields:
                    f.read(form, doc, prefix)
                continue
            section: dict[str, Any] = dict(doc[key]) if isinstance(doc.get(key), dict) else {}
            for f in fields:
                f.read(form, section, prefix)
            if key == "notifications" and not section.get("events") and not section.get("email"):
                doc.pop(key, None)  # nothing to notify: no block (it would need events)
            elif section or key in doc:
                doc[key] = section
        return True

    drafts.edit(scope.redis, scope.account, change)
    return redirect(f"{scope.base}/settings?saved=1")


# --- the NOC creates an account -----------------------------------------------------------------

def minimal_document(account: str, name: str, timezone: str, numbers: list[str]) -> dict[str, Any]:
    """The least a valid account needs besides its id, name, zone and numbers."""
    return {"account": account, "name": name, "timezone": timezone, "numbers": numbers,
            "operations": [{"id": "vm", "name": "Голосовое сообщение", "type": "voicemail"}],
            "scenarios": [{"id": "start", "name": "Голосовое сообщение", "root": {"operation": "vm"}}],
            "default_scenario": "start"}


@router.post("/accounts/-new")
def create_account(request: Request, user: ConsoleUser, form: PostedForm) -> Response:
    if not user.is_noc:
        raise ConsoleError(404, "not found")
    r = redis_of(request)
    lang = lang_of(request)
    values = {k: str(form.get(k) or "").strip() for k in ("account", "name", "timezone", "numbers")}
    numbers = [n.strip() for n in values["numbers"].replace(",", "\n").splitlines() if n.strip()]
    errors: dict[str, str] = {}
    for k in ("account", "name", "timezone"):
        if not values[k]:
            errors[k] = translate("required", lang)
    if not numbers:
        errors["numbers"] = translate("required", lang)
    if not errors and configs.current_version(r, values["account"]):
        errors["account"] = translate("account_exists", lang)
    if not errors:
        doc = minimal_document(values["account"], values["name"], values["timezone"], numbers)
        try:
            planned = planning.plan(r, doc, values["account"], name_owners=True)
            planning.apply(r, planned, 0, user.principal.name)
        except planning.Invalid as exc:
            for p in exc.problems:
                if p.severity == "error":
                    key = p.pointer.strip("/").split("/", 1)[0] or "account"
                    errors.setdefault(key if key in values else "account", p.message)
        except planning.VersionMismatch:
            errors["account"] = translate("account_exists", lang)
        else:
            drafts.discard(r, values["account"])
            return redirect(f"{PREFIX}/{values['account']}?created=1")
    accounts = configs.accounts(r)
    return render(request, "console/accounts.html", {"accounts": accounts, "errors": errors, "values": values},
                  status=422)
