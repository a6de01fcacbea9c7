"""The web console: server-rendered pages under /console for subscribers and the NOC.

Layout
    routing/web/console/common.py   the shared parts: templates (Jinja2, autoescape on), the
                                    language (RU/EN), the session dependencies, NAV, render()
    routing/web/console/i18n.py     every label, (ru, en), in one table
    routing/web/console/NAME.py     one module per screen group, each with `router`
    routing/web/templates/console/  base.html (layout: header, RU/EN switch, nav, messages)
                                    and one template per page
    routing/web/static/console.css  the only stylesheet; no JavaScript is needed

How to add a page (e.g. the call history at /console/{account}/calls)
    1. routing/web/console/history.py:

        from fastapi import APIRouter, Request
        from fastapi.responses import HTMLResponse
        from routing.web.console.common import ConsoleAccount, render

        router = APIRouter()

        @router.get("/{account}/calls", response_class=HTMLResponse)
        def calls(request: Request, scope: ConsoleAccount, page: int = 1) -> HTMLResponse:
            rows = ...  # scope.account, scope.redis, scope.principal (is_noc, name)
            return render(request, "console/calls.html", {"rows": rows}, scope=scope, active="/calls")

       `ConsoleAccount` logs the caller in (a redirect to the login page otherwise), gives the
       same 404 for another's account as for a missing one, and checks the CSRF field on
       POST. Use `ConsoleUser` for a page that is not about one account. A sync route runs in
       the thread pool: blocking calls (Redis, PostgreSQL) are fine there.
    2. routing/web/templates/console/calls.html:

        {% extends "console/base.html" %}
        {% block title %}{{ t("calls") }}{% endblock %}
        {% block content %} ... {{ t("some_label") }} ... {% endblock %}

       Forms that POST include `{{ csrf_field() }}`. Never mark data `|safe`.
    3. Labels: add (ru, en) pairs to i18n.TEXT; `t("key", n=3)` fills `{n}`.
    4. List the router in ROUTERS below. NAV in common.py already has "/calls" (call history)
       and "/inbox" (voicemail and fax); `active` is the NAV path to highlight.
    5. Browser tests: tests/console_support.py has the fixtures (`served`: redis-server and
       the app under uvicorn; `browser`: headless chromium; one of each per module) and `Page`
       (fill, choose, submit-and-wait, shot); tests/test_console_browser.py uses them. Tests
       without a browser (faster): tests/test_console_pages.py, with TestClient.

Screens that edit the account document change its draft (draft.py), never the loaded
version: `draft.get(r, account)` to show it, `draft.edit(r, account, change)` to change it
(read-change-write under WATCH; `change(draft) -> bool` says whether to save). Lists of the
document are described in forms.KINDS (fields, sub-editors) and served by items.py; the
validator's problems are placed next to fields by JSON pointer (forms.assign, field_id).
check/apply/versions are in changes.py.

Errors: raise `ConsoleError(status, "message key or text")`; it is rendered as an HTML page.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from routing.web.console import account, changes, draft, history, items, overview, session, tools, uploads
from routing.web.console.common import PREFIX, STATIC, ConsoleError, LoginRequired, error_page, login_redirect

# Order matters where paths overlap: fixed paths (/login) before /{account}.
ROUTERS: list[APIRouter] = [session.router, account.router, overview.router, history.router, items.router,
                            uploads.router, changes.router, tools.router]


def mount(app: FastAPI) -> None:
    """The console's routes under /console, its static files, `/` -> /console, and HTML error
    pages for every error under /console (the API keeps its JSON errors)."""
    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC), name="console-static")
    for router in ROUTERS:
        app.include_router(router, prefix=PREFIX, include_in_schema=False)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse(PREFIX, status_code=307)

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        return login_redirect(request)

    @app.exception_handler(draft.Busy)
    async def busy(request: Request, exc: draft.Busy) -> Response:
        return error_page(request, 409, str(exc))

    @app.exception_handler(ConsoleError)
    async def console_error(request: Request, exc: ConsoleError) -> Response:
        return error_page(request, exc.status, exc.message)


def is_console(request: Request) -> bool:
    return request.url.path == PREFIX or request.url.path.startswith(PREFIX + "/")

