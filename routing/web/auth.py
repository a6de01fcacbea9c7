"""Who is calling, and what they may see: the dependencies every API route uses.

Two roles. The NOC presents an API token (`Authorization: Bearer vot_...`, made by
`voffice token create --noc`) and sees every account. A subscriber logs in with its
account's password (`POST /api/login`) and gets a signed session cookie carrying its account
and a CSRF token; it sees its own account only.

Routers use:

    principal        -> Principal                 anyone authenticated (401 otherwise);
                                                  cookie sessions must send X-CSRF-Token
                                                  (or form field `csrf`) on unsafe methods
    noc_only         -> Principal                 the NOC only (404 for a subscriber)
    visible_account  -> AccountScope              the path's {account}, if this principal
                                                  may see it; 404 otherwise, loaded or not
    loaded_account   -> AccountScope              the same, and the account must be loaded

"Not yours" is always the 404 a missing account gives, word for word: a subscriber learns
nothing about other accounts, not even that they exist.
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Annotated, Any

import redis
from fastapi import Depends, HTTPException, Path, Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from routing.store import configs, credentials
from routing.web.settings import WebSettings

SESSION_COOKIE = "voffice_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
NOC, SUBSCRIBER = "noc", "subscriber"

# A number from a header, form or query: ASCII digits only (str.isdigit() also takes '²',
# which int() refuses) and within a 64-bit integer.
DIGITS = re.compile(r"[0-9]{1,18}")


@dataclass(frozen=True)
class Principal:
    role: str  # NOC | SUBSCRIBER
    account: str | None = None  # a subscriber's account
    name: str = ""  # for the audit trail: "api:noc:<token name>" / "api:<account>"
    via_cookie: bool = False

    @property
    def is_noc(self) -> bool:
        return self.role == NOC

    def may_see(self, account: str) -> bool:
        return self.is_noc or self.account == account


@dataclass(frozen=True)
class AccountScope:
    """An account the caller may act on, and the Redis client to do it with."""

    account: str
    principal: Principal
    redis: redis.Redis


def settings_of(request: Request) -> WebSettings:
    settings: WebSettings = request.app.state.settings
    return settings


def redis_of(request: Request) -> redis.Redis:
    client: redis.Redis = request.app.state.redis
    return client


def _serializer(settings: WebSettings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.secret_key, salt="voffice-session")


def start_session(response: Response, settings: WebSettings, account: str, stored_hash: str) -> str:
    """Set the session cookie; returns its CSRF token (the client sends it back as X-CSRF-Token)."""
    csrf = secrets.token_urlsafe(24)
    value = _serializer(settings).dumps({"a": account, "c": csrf, "p": credentials.fingerprint(stored_hash)})
    response.set_cookie(SESSION_COOKIE, value, max_age=settings.session_max_age, httponly=True, samesite="lax",
                        secure=settings.secure_cookies, path="/")
    return csrf


def start_noc_session(response: Response, settings: WebSettings, token: str) -> str:
    """A NOC cookie session for the console (a browser cannot send a Bearer header): carries a
    fingerprint of the token's digest, so revoking the token ends it. Returns the CSRF token."""
    csrf = secrets.token_urlsafe(24)
    value = _serializer(settings).dumps({"a": "", "n": 1, "c": csrf,
                                         "p": credentials.fingerprint(credentials.token_digest(token))})
    response.set_cookie(SESSION_COOKIE, value, max_age=settings.session_max_age, httponly=True, samesite="lax",
                        secure=settings.secure_cookies, path="/")
    return csrf


def end_session(response: Response, settings: WebSettings) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=settings.secure_cookies)


def session_of(request: Request) -> dict[str, Any] | None:
    """The cookie's signed content if it is genuine, not expired, and its password unchanged."""
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw:
        return None
    settings = settings_of(request)
    try:
        data = _serializer(settings).loads(raw, max_age=settings.session_max_age)
    except BadSignature:  # SignatureExpired is one
        return None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("a", "c", "p")):
        return None
    if data.get("n") == 1:  # a NOC console session: its token must still be live
        info = credentials.token_by_fingerprint(redis_of(request), data["p"])
        if info is None:
            return None
        return {**data, "name": info.name or info.id}
    stored = credentials.password_hash(redis_of(request), data["a"])
    if stored is None or not hmac.compare_digest(credentials.fingerprint(stored), data["p"]):
        return None  # password changed or removed since: the session is over
    return data


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(401, message, headers={"WWW-Authenticate": 'Bearer realm="voffice"'})


async def _csrf_sent(request: Request) -> str:
    sent = request.headers.get(CSRF_HEADER, "")
    if not sent and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else ""
    return sent


async def principal(request: Request) -> Principal:
    """The caller: a Bearer token's NOC, else a session cookie's subscriber; 401 for neither."""
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("Authorization: expected 'Bearer TOKEN'")
        info = credentials.token_info(redis_of(request), token.strip())
        if info is None:
            raise _unauthorized("the API token is not valid (unknown or revoked)")
        return Principal(NOC, None, f"api:noc:{info.name or info.id}")
    session = session_of(request)
    if session is None:
        raise _unauthorized("authentication required: an API token (Bearer) or a session (POST /api/login)")
    if request.method not in SAFE_METHODS:
        sent = await _csrf_sent(request)
        if not sent or not hmac.compare_digest(sent.encode(), session["c"].encode()):
            raise HTTPException(403, f"CSRF token missing or wrong: send the {CSRF_HEADER} header given at login")
    if session.get("n") == 1:
        return Principal(NOC, None, f"console:noc:{session['name']}", via_cookie=True)
    return Principal(SUBSCRIBER, session["a"], f"api:{session['a']}", via_cookie=True)


CurrentPrincipal = Annotated[Principal, Depends(principal)]


def not_found(account: str) -> HTTPException:
    """The one answer for an account that is missing or not the caller's."""
    return HTTPException(404, f"account {account!r} not found")


def noc_only(who: CurrentPrincipal) -> Principal:
    if not who.is_noc:
        raise HTTPException(404, "not found")
    return who


def visible_account(account: Annotated[str, Path(max_length=200)], who: CurrentPrincipal, request: Request) -> AccountScope:
    """The path's account if the caller may see it (loaded or not: a NOC PUT may create it)."""
    if not who.may_see(account):
        raise not_found(account)
    return AccountScope(account, who, redis_of(request))


def loaded_account(scope: Annotated[AccountScope, Depends(visible_account)]) -> AccountScope:
    """visible_account, and loaded: the same 404 whether it is missing or another's."""
    if not configs.current_version(scope.redis, scope.account):
        raise not_found(scope.account)
    return scope


VisibleAccount = Annotated[AccountScope, Depends(visible_account)]
LoadedAccount = Annotated[AccountScope, Depends(loaded_account)]
NocPrincipal = Annotated[Principal, Depends(noc_only)]
