"""Login and logout pages, the language switch, and the account list (the console's home).

A subscriber logs in with its account and password (the API's session: the same cookie, the
same throttling, the same one answer for a wrong account or password). The NOC, whose API
token a browser cannot send as a header, logs in by pasting the token: that starts a NOC
cookie session, ended by logout or by revoking the token."""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from routing.store import configs, credentials
from routing.web.auth import end_session, redis_of, session_of, settings_of, start_noc_session, start_session
from routing.web.console.common import (
    LANG_COOKIE,
    PREFIX,
    ConsoleUser,
    lang_of,
    local_path,
    redirect,
    render,
)
from routing.web.console.i18n import LANGS, translate

router = APIRouter()
# Failed NOC token logins count per client address only (under this name and the address: no
# account id has a space), so nobody can lock every NOC out by posting wrong tokens.
NOC_THROTTLE = "(noc token)"
# Login CSRF (another site posting its own credentials to make the browser log into its
# account): the login page sets a random value in a SameSite=Lax cookie and in the forms;
# a post must bring both, and another site's post carries no Lax cookie.
LOGIN_COOKIE = "voffice_login"


def login_form(request: Request, context: dict[str, object], status: int = 200) -> Response:
    nonce = secrets.token_urlsafe(18)
    response = render(request, "console/login.html", {**context, "login_csrf": nonce}, status=status)
    response.set_cookie(LOGIN_COOKIE, nonce, max_age=3600, httponly=True, samesite="lax",
                        secure=settings_of(request).secure_cookies, path=f"{PREFIX}/login")
    return response


@router.get("", response_class=HTMLResponse)
def home(request: Request, user: ConsoleUser) -> Response:
    """A subscriber goes straight to its account; the NOC sees every account."""
    if not user.is_noc:
        return redirect(f"{PREFIX}/{user.principal.account}")
    accounts = configs.accounts(redis_of(request))
    return render(request, "console/accounts.html", {"accounts": accounts})


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "") -> Response:
    return login_form(request, {"next": local_path(next), "errors": {}, "account": ""})


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, account: Annotated[str, Form(max_length=200)] = "",
                password: Annotated[str, Form(max_length=1024)] = "",
                token: Annotated[str, Form(max_length=200)] = "", next: Annotated[str, Form(max_length=2000)] = "",
                login_csrf: Annotated[str, Form(max_length=100)] = "",
                ) -> Response:
    """A form post from our login page (LOGIN_COOKIE); throttled as the API's login."""
    lang = lang_of(request)
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not hmac.compare_digest(expected.encode(), login_csrf.encode()):
        return login_form(request, {"next": local_path(next), "errors": {"form": translate("login_again", lang)},
                                    "account": account}, status=403)
    r = redis_of(request)
    settings = settings_of(request)
    client = request.client.host if request.client else "unknown"
    target = local_path(next)
    errors: dict[str, str] = {}
    if token:
        wait = credentials.throttled(r, f"{NOC_THROTTLE} {client}", client)
        if wait:
            errors["token"] = translate("throttled", lang, wait=wait)
        elif credentials.token_info(r, token.strip()) is None:
            credentials.record_failure(r, f"{NOC_THROTTLE} {client}", client)
            errors["token"] = translate("wrong_token", lang)
        else:
            response = RedirectResponse(target, status_code=303)
            start_noc_session(response, settings, token.strip())
            return response
    else:
        if not account:
            errors["account"] = translate("required", lang)
        if not password:
            errors["password"] = translate("required", lang)
        if not errors:
            wait = credentials.throttled(r, account, client)
            if wait:
                errors["password"] = translate("throttled", lang, wait=wait)
            else:
                stored = await run_in_threadpool(credentials.check_password, r, account, password)
                if stored is None:
                    credentials.record_failure(r, account, client)
                    errors["password"] = translate("wrong_login", lang)
                else:
                    credentials.record_success(r, account)
                    response = RedirectResponse(target if target != PREFIX else f"{PREFIX}/{account}",
                                                status_code=303)
                    start_session(response, settings, account, stored)
                    return response
    return login_form(request, {"next": target, "errors": errors, "account": account},
                      status=401 if "token" in errors or "password" in errors else 422)


@router.post("/logout")
async def logout(request: Request, user: ConsoleUser) -> Response:
    response = redirect(f"{PREFIX}/login")
    end_session(response, settings_of(request))
    return response


@router.get("/lang/{code}")
def switch_language(request: Request, code: str, next: str = "") -> Response:
    """The RU/EN switch: a cookie for a year, then back to the page."""
    response = redirect(local_path(next))
    if code in LANGS:
        response.set_cookie(LANG_COOKIE, code, max_age=365 * 86400, samesite="lax", path="/")
    return response


def logged_in(request: Request) -> bool:
    return session_of(request) is not None
