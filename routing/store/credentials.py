"""Credentials of the cabinet (the web API) in Redis: NOC API tokens, subscriber passwords,
login throttling.

Layout (every key under `vo:web:`):

    vo:web:tokens                 hash  sha256(token) hex -> JSON {id, name, role, created_at}
    vo:web:passwords              hash  account id -> argon2 hash of its cabinet password
    vo:web:login-fail:{kind}:{k}  int   failed logins, expiring THROTTLE_WINDOW after the first

A token is shown once, when made; only its SHA-256 is kept (a token is 32 random bytes, so a
fast hash is enough: nothing to brute-force). Passwords are people's: argon2id, slow on purpose.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

import redis
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

TOKENS = "vo:web:tokens"
PASSWORDS = "vo:web:passwords"
FAILS = "vo:web:login-fail"
TOKEN_PREFIX = "vot_"
THROTTLE_LIMIT = 5  # failed logins ...
THROTTLE_WINDOW = 300  # ... per this many seconds, per account and per client address
MIN_PASSWORD = 8

_hasher = PasswordHasher()
# Verified when the account has no password, so an unknown account costs the same time as a
# wrong password (no enumeration by timing).
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


class CredentialError(Exception):
    """A credential operation refused for a reason the user can act on (one line)."""


@dataclass(frozen=True)
class TokenInfo:
    id: str
    name: str
    role: str
    created_at: str

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name, "role": self.role, "created_at": self.created_at}


def _text(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else value


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def create_token(r: redis.Redis, name: str, role: str = "noc") -> tuple[str, TokenInfo]:
    """A new token (returned once, never stored) and what is kept of it."""
    if role != "noc":
        raise CredentialError(f"role {role!r}: only NOC tokens exist")
    token_id = secrets.token_hex(4)
    token = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    info = TokenInfo(token_id, name, role, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    r.hset(TOKENS, _digest(token), json.dumps(info.to_json()))
    return token, info


def token_info(r: redis.Redis, token: str) -> TokenInfo | None:
    """What a presented token is, or None if it is not one (unknown or revoked)."""
    raw = _text(r.hget(TOKENS, _digest(token)))
    return TokenInfo(**json.loads(raw)) if raw else None


def tokens(r: redis.Redis) -> list[TokenInfo]:
    found = [TokenInfo(**json.loads(_text(v) or "{}")) for v in r.hvals(TOKENS)]
    return sorted(found, key=lambda t: (t.created_at, t.id))


def revoke_token(r: redis.Redis, token_id: str) -> TokenInfo:
    """Revoke by id (what `token list` shows), not by the secret itself."""
    for digest, raw in r.hgetall(TOKENS).items():
        info = TokenInfo(**json.loads(_text(raw) or "{}"))
        if info.id == token_id:
            r.hdel(TOKENS, digest)
            return info
    raise CredentialError(f"no token with id {token_id!r} (see `voffice token list`)")


def set_password(r: redis.Redis, account: str, password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise CredentialError(f"the password must have at least {MIN_PASSWORD} characters")
    r.hset(PASSWORDS, account, _hasher.hash(password))


def delete_password(r: redis.Redis, account: str) -> bool:
    return bool(r.hdel(PASSWORDS, account))


def password_hash(r: redis.Redis, account: str) -> str | None:
    return _text(r.hget(PASSWORDS, account))


def check_password(r: redis.Redis, account: str, password: str) -> str | None:
    """The account's stored hash if `password` is right, else None. Always one argon2
    verification, whether the account has a password or not."""
    stored = password_hash(r, account)
    try:
        _hasher.verify(stored or _DUMMY_HASH, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    return stored


def fingerprint(stored_hash: str) -> str:
    """A short digest of a password hash, carried in sessions: a new password ends them."""
    return hashlib.sha256(stored_hash.encode()).hexdigest()[:16]


def _fail_keys(account: str, client: str) -> list[str]:
    return [f"{FAILS}:account:{account}", f"{FAILS}:client:{client}"]


def throttled(r: redis.Redis, account: str, client: str) -> int:
    """Seconds until a login may be tried again (0: now)."""
    keys = _fail_keys(account, client)
    pipe = r.pipeline(transaction=False)
    for key in keys:
        pipe.get(key)
        pipe.ttl(key)
    replies: list[Any] = pipe.execute()
    wait = 0
    for count, ttl in zip(replies[::2], replies[1::2], strict=True):
        if count is not None and int(count) >= THROTTLE_LIMIT:
            wait = max(wait, int(ttl) if int(ttl) > 0 else THROTTLE_WINDOW)
    return wait


def record_failure(r: redis.Redis, account: str, client: str) -> None:
    """Counted for unknown accounts too: the same answer, whether the account exists or not."""
    pipe = r.pipeline(transaction=True)
    for key in _fail_keys(account, client):
        pipe.incr(key)
        pipe.expire(key, THROTTLE_WINDOW, nx=True)
    pipe.execute()


def record_success(r: redis.Redis, account: str) -> None:
    r.delete(_fail_keys(account, "")[0])


def token_digest(token: str) -> str:
    """What is stored of a token (its SHA-256): a NOC console session carries a fingerprint of
    it, so revoking the token ends the session."""
    return _digest(token)


def token_by_fingerprint(r: redis.Redis, fp: str) -> TokenInfo | None:
    """The live token whose digest has this fingerprint (a NOC console session), else None."""
    for digest, raw in r.hgetall(TOKENS).items():
        key = digest.decode() if isinstance(digest, bytes) else str(digest)
        if hmac.compare_digest(fingerprint(key), fp):
            text = _text(raw)
            return TokenInfo(**json.loads(text)) if text else None
    return None
