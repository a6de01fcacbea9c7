"""Subscriber login and logout: a signed session cookie (routing.web.auth)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from starlette.concurrency import run_in_threadpool

from routing.store import credentials
from routing.web.auth import CurrentPrincipal, end_session, redis_of, settings_of, start_session

router = APIRouter(tags=["session"])

MAX_LOGIN_BYTES = 4096
WRONG = "wrong account or password"  # one text for every failure: no account enumeration


async def _login_fields(request: Request) -> tuple[str, str]:
    """account and password, from a JSON object only: a form or plain text is what another
    site can post in the browser's name (login CSRF); JSON needs a CORS preflight we never
    grant. The console's login form has its own nonce (console/session.py)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise HTTPException(415, 'login takes JSON: {"account": ..., "password": ...} (Content-Type: application/json)')
    body = await request.body()
    if len(body) > MAX_LOGIN_BYTES:
        raise HTTPException(413, "the login body is too large")
    try:
        data: Any = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise HTTPException(422, "the body must be JSON {\"account\": ..., \"password\": ...}") from None
    if not isinstance(data, dict):
        raise HTTPException(422, "the body must be an object with account and password")
    account, password = data.get("account"), data.get("password")
    missing = [k for k, v in (("account", account), ("password", password)) if not isinstance(v, str) or not v]
    if missing:
        raise HTTPException(422, f"missing: {', '.join(missing)}")
    assert isinstance(account, str) and isinstance(password, str)
    if len(account) > 200 or len(password) > 1024:
        raise HTTPException(422, "account or password too long")
    return account, password


@router.post("/login", openapi_extra={"requestBody": {"content": {
    "application/json": {"schema": {"type": "object", "required": ["account", "password"],
                                    "properties": {"account": {"type": "string"}, "password": {"type": "string"}}}}}}})
async def login(request: Request, response: Response) -> dict[str, str]:
    """Subscriber login: sets the session cookie; returns the CSRF token to send back as
    X-CSRF-Token on every unsafe request. 5 failures in 5 minutes, per account or per
    client address, give 429 with Retry-After."""
    account, password = await _login_fields(request)
    r = redis_of(request)
    client = request.client.host if request.client else "unknown"
    wait = credentials.throttled(r, account, client)
    if wait:
        raise HTTPException(429, f"too many failed logins; try again in {wait} s", headers={"Retry-After": str(wait)})
    stored = await run_in_threadpool(credentials.check_password, r, account, password)  # argon2: ~50 ms of CPU
    if stored is None:
        credentials.record_failure(r, account, client)
        raise HTTPException(401, WRONG)
    credentials.record_success(r, account)
    csrf = start_session(response, settings_of(request), account, stored)
    return {"account": account, "role": "subscriber", "csrf_token": csrf}


@router.post("/logout")
def logout(who: CurrentPrincipal, request: Request, response: Response) -> dict[str, str]:
    """Clears the session cookie (a new password also ends every session of the account)."""
    end_session(response, settings_of(request))
    return {"status": "logged out"}


@router.get("/whoami")
def whoami(who: CurrentPrincipal) -> dict[str, str | None]:
    """The caller's role and account (null for the NOC)."""
    return {"role": who.role, "account": who.account, "name": who.name}
