"""What every console page shares: the templates, the language, who is logged in, the
account a page is about, and how a page is rendered.

Pages are server-rendered Jinja2 templates (autoescape on: every name, however written,
shows as text). A page's route takes `user: ConsoleUser` (any login) or `scope: ConsoleAccount`
(the path's {account}, 404 if it is not the caller's, word for word the API's answer) and
returns `render(request, "console/NAME.html", {...}, scope=scope)`. Not logged in: a redirect
to the login page. Every form POST must carry the session's CSRF token as the hidden field
`csrf` (templates: `{{ csrf_field() }}`); without it, 403.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import redis
from fastapi import Depends, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.datastructures import FormData

from routing.store import configs
from routing.web.auth import CSRF_FIELD, NOC, SAFE_METHODS, SUBSCRIBER, Principal, redis_of, session_of
from routing.web.console.i18n import DEFAULT_LANG, LANGS, translate

WEB = Path(__file__).resolve().parent.parent
TEMPLATES = WEB / "templates"
STATIC = WEB / "static"
LANG_COOKIE = "voffice_lang"
PREFIX = "/console"

env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True, default_for_string=True),
                  trim_blocks=True, lstrip_blocks=True)

def _json(value: Any, limit: int = 400) -> str:
    """A value as JSON, in its own script (no escapes of non-ASCII), cut at LIMIT characters."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + " …"


env.filters["json"] = _json

# The navigation of an account's pages: (path under /console/{account}, label key).
# "calls" and "inbox" are served by the call-history and inbox routers (routing.web.console.history).
NAV: list[tuple[str, str]] = [
    ("", "overview"), ("/settings", "settings"), ("/operators", "operators"), ("/groups", "groups"), ("/sounds", "sounds"),
    ("/operations", "operations"), ("/schedules", "schedules"), ("/caller-lists", "caller_lists"),
    ("/scenarios", "scenarios"), ("/rules", "rules"), ("/check", "check_apply"), ("/versions", "versions"),
    ("/simulate", "simulate"), ("/coverage", "coverage"), ("/calls", "calls"), ("/inbox", "inbox"),
]


class ConsoleError(Exception):
    """An error page (rendered as HTML, never a traceback): status and a message key or text."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class LoginRequired(Exception):
    """No valid session: the handler redirects to the login page, back here afterwards."""


@dataclass(frozen=True)
class ConsoleSession:
    principal: Principal
    csrf: str

    @property
    def is_noc(self) -> bool:
        return self.principal.is_noc


@dataclass(frozen=True)
class AccountPage:
    """The account a page is about (the caller may see it), with the session and Redis."""

    account: str
    session: ConsoleSession
    redis: redis.Redis

    @property
    def principal(self) -> Principal:
        return self.session.principal

    @property
    def base(self) -> str:
        return f"{PREFIX}/{quote(self.account, safe='')}"


def lang_of(request: Request) -> str:
    """?lang= (the switch's links), else the cookie, else Russian (the seed's language)."""
    for value in (request.query_params.get("lang"), request.cookies.get(LANG_COOKIE)):
        if value in LANGS:
            return value
    return DEFAULT_LANG


def local_path(text: str | None) -> str:
    """A redirect target only within the console: no open redirect to another site."""
    if text and text.startswith(PREFIX) and not text.startswith("//") and "\\" not in text and "\n" not in text:
        return text
    return PREFIX


async def console_session(request: Request) -> ConsoleSession:
    """The logged-in caller (a subscriber's or the NOC's cookie session); CSRF checked on POST."""
    data = session_of(request)
    if data is None:
        raise LoginRequired()
    if request.method not in SAFE_METHODS:
        form = await request.form()
        sent = form.get(CSRF_FIELD)
        if not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), data["c"].encode()):
            raise ConsoleError(403, "csrf_failed")
    if data.get("n") == 1:
        who = Principal(NOC, None, f"console:noc:{data['name']}", via_cookie=True)
    else:
        who = Principal(SUBSCRIBER, data["a"], f"console:{data['a']}", via_cookie=True)
    session = ConsoleSession(who, data["c"])
    request.state.console_session = session
    return session


ConsoleUser = Annotated[ConsoleSession, Depends(console_session)]


async def posted_form(request: Request) -> FormData:
    """The posted form (already read, and cached, by the CSRF check): lets a sync route,
    which runs in the thread pool, take it as a parameter."""
    return await request.form()


PostedForm = Annotated[FormData, Depends(posted_form)]


def not_found(account: str) -> ConsoleError:
    """The API's words: a subscriber cannot tell another's account from a missing one."""
    return ConsoleError(404, f"account {account!r} not found")


def visible_page(account: Annotated[str, PathParam(max_length=200)], session: ConsoleUser,
                 request: Request) -> AccountPage:
    if not session.principal.may_see(account):
        raise not_found(account)
    return AccountPage(account, session, redis_of(request))


def loaded_page(page: Annotated[AccountPage, Depends(visible_page)]) -> AccountPage:
    if not configs.current_version(page.redis, page.account):
        raise not_found(page.account)
    return page


ConsoleAccount = Annotated[AccountPage, Depends(loaded_page)]


def render(request: Request, template: str, context: dict[str, Any] | None = None, *,
           scope: AccountPage | None = None, status: int = 200, active: str = "") -> HTMLResponse:
    """A page: the template with the language, the session, the account's nav and `t()`."""
    lang = lang_of(request)
    session: ConsoleSession | None = getattr(request.state, "console_session", None)
    csrf = session.csrf if session else ""

    def t(label: str, /, **values: object) -> str:
        return translate(label, lang, **values)

    def csrf_field() -> Markup:
        return Markup('<input type="hidden" name="csrf" value="{}">').format(csrf)

    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    ctx: dict[str, Any] = {
        "request": request, "lang": lang, "t": t, "csrf": csrf, "csrf_field": csrf_field,
        "session": session, "scope": scope, "nav": NAV if scope else [], "active": active,
        "here": request.url.path, "here_quoted": quote(here, safe=""), "prefix": PREFIX,
    }
    ctx.update(context or {})
    response = HTMLResponse(env.get_template(template).render(ctx), status_code=status)
    if request.query_params.get("lang") in LANGS:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax", path="/")
    return response


def redirect(url: str) -> RedirectResponse:
    """After a POST: 303, so reloading the next page does not post again."""
    return RedirectResponse(url, status_code=303)


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    lang = lang_of(request)
    return render(request, "console/error.html", {"status": status, "message": translate(message, lang)},
                  status=status)


def login_redirect(request: Request) -> RedirectResponse:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{PREFIX}/login?next={quote(here, safe='')}", status_code=303)
