"""The cabinet's web application: the REST API under /api (routers in routing.web.api) and the
web console under /console (routing.web.console).

Every error is JSON `{"detail": "..."}` (422s also carry `problems`: [{pointer, message}]),
never a traceback and never a secret: Redis URLs are shown without their passwords.
"""

from __future__ import annotations

import html
import logging
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from routing.store import configs
from routing.web import console
from routing.web.api import ROUTERS
from routing.web.console.common import error_page
from routing.web.planning import Invalid, VersionMismatch, problem_json, store_refusal
from routing.web.settings import WebSettings

log = logging.getLogger("voffice.web")

DESCRIPTION = """voffice's REST API. NOC: `Authorization: Bearer TOKEN` (`voffice token create --noc`).
Subscriber: `POST /api/login`, then the session cookie and `X-CSRF-Token` on unsafe methods.
See docs/api.md."""


def create_app(settings: WebSettings, client: redis.Redis | None = None) -> FastAPI:
    """The app; `client`: a Redis client to use instead of one made from settings.redis_url."""
    app = FastAPI(title="voffice", description=DESCRIPTION, openapi_url="/api/openapi.json",
                  docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.redis = client or configs.connect(settings.redis_url)
    @app.middleware("http")
    async def no_sniffing(request: Request, call_next: Any) -> Any:
        """Browsers take every response for the type it says (a sound or fax is never
        sniffed into a page)."""
        response = await call_next(request)
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    for router in ROUTERS:
        app.include_router(router, prefix="/api")
    console.mount(app)
    _errors(app, configs.shown_url(configs.redis_url(settings.redis_url)))

    @app.get("/api/docs", response_class=HTMLResponse, include_in_schema=False)
    def docs() -> HTMLResponse:
        """The operations, listed server-side from the OpenAPI schema: no CDN, works offline."""
        return HTMLResponse(docs_page(app.openapi()))

    return app


def _error(status: int, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": detail, **extra}, status_code=status)


def _errors(app: FastAPI, shown_redis: str) -> None:
    @app.exception_handler(Invalid)
    async def invalid(request: Request, exc: Invalid) -> JSONResponse:
        return _error(422, str(exc), problems=[problem_json(p) for p in exc.problems])

    @app.exception_handler(VersionMismatch)
    async def mismatch(request: Request, exc: VersionMismatch) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "current": exc.current}, status_code=412,
                            headers={"ETag": f'"{exc.current}"'})

    @app.exception_handler(configs.StoreError)
    async def refused(request: Request, exc: configs.StoreError) -> JSONResponse:
        return _error(409, store_refusal(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if console.is_console(request):  # the console's pages answer in HTML
            return error_page(request, exc.status_code, str(exc.detail))
        return await http_exception_handler(request, exc)

    @app.exception_handler(OverflowError)
    async def out_of_range(request: Request, exc: OverflowError) -> JSONResponse:
        """A date at the calendar's edge (year 9999 with a negative offset, year 1 with a
        positive one): the user's input, never a 500."""
        return _error(422, "a date or number out of range")

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Response:
        problems = [{"pointer": "/" + "/".join(str(p) for p in e.get("loc", ())), "message": str(e.get("msg", ""))}
                    for e in exc.errors()]
        where = ", ".join(f"{p['pointer']}: {p['message']}" for p in problems)
        if console.is_console(request):
            return error_page(request, 422, f"bad request: {where}")
        return _error(422, f"bad request: {where}", problems=problems)

    @app.exception_handler(redis.ConnectionError)
    @app.exception_handler(redis.TimeoutError)
    async def unreachable(request: Request, exc: Exception) -> Response:
        log.warning("cannot reach Redis at %s: %s", shown_redis, type(exc).__name__)
        if console.is_console(request):
            return error_page(request, 503, f"cannot reach Redis at {shown_redis}")
        return _error(503, f"cannot reach Redis at {shown_redis}", )

    @app.exception_handler(redis.RedisError)
    async def redis_failed(request: Request, exc: Exception) -> JSONResponse:
        log.warning("Redis error: %s", type(exc).__name__)
        return _error(503, "Redis error")

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> Response:
        log.error("internal error on %s %s: %s", request.method, request.url.path, type(exc).__name__)
        if console.is_console(request):
            return error_page(request, 500, "internal error")
        return _error(500, "internal error")


def docs_page(schema: dict[str, Any]) -> str:
    """A plain HTML list of the API's operations: method, path, summary, parameters."""
    e = html.escape
    rows = []
    for path, item in schema.get("paths", {}).items():
        for method, op in item.items():
            params = ", ".join(f"{p['name']} ({p['in']})" for p in op.get("parameters", []))
            doc = (op.get("description") or op.get("summary") or "").strip()
            rows.append(f"<tr><td><code>{e(method.upper())}</code></td><td><code>{e(path)}</code></td>"
                        f"<td>{e(params)}</td><td>{e(doc)}</td></tr>")
    info = schema.get("info", {})
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{e(info.get('title', 'API'))} API</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;vertical-align:top;text-align:left}}</style></head>
<body><h1>{e(info.get('title', 'API'))} API {e(str(info.get('version', '')))}</h1>
<p>{e(info.get('description', ''))}</p>
<p>Machine-readable: <a href="/api/openapi.json">/api/openapi.json</a> (OpenAPI {e(str(schema.get('openapi', '')))})</p>
<table><tr><th>Method</th><th>Path</th><th>Parameters</th><th>What</th></tr>
{''.join(rows)}
</table></body></html>
"""
