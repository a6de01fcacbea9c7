"""The manual override (the day/night switch): `GET/PUT/DELETE /api/accounts/{a}/override`.

What `voffice override` does (routing/store/overrides.py), for the NOC and the account's
subscriber: it sends the account's calls to one scenario now, until a time or until cleared,
and needs no config load. PUT's `until` takes what `--until` takes (HH:MM, an ISO 8601 time
with or without an offset, the account's zone when without) or null (until cleared)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from routing.store import overrides
from routing.web.auth import LoadedAccount

router = APIRouter(prefix="/accounts", tags=["override"])


class OverrideRequest(BaseModel):
    scenario: str = Field(min_length=1, max_length=200)
    until: str | None = Field(default=None, max_length=64)


def _refused(exc: overrides.OverrideError) -> JSONResponse:
    """A refusal the user can act on: 422 pointing at the field it is about."""
    text = str(exc)
    if isinstance(exc, overrides.BadOverrideTime):
        pointer = "/until"
    elif "has no scenario" in text:
        pointer = "/scenario"
    else:
        pointer = "/until" if "until" in text else ""
    if not pointer:
        return JSONResponse({"detail": text}, status_code=409)
    return JSONResponse({"detail": text, "problems": [{"pointer": pointer, "message": text}]}, status_code=422)


@router.get("/{account}/override")
def show(scope: LoadedAccount) -> dict[str, Any]:
    """The override as `voffice override ACCOUNT --json` shows it (`override`: null when none)."""
    return overrides.override_status(scope.redis, scope.account)


@router.put("/{account}/override", response_model=None)
def put(scope: LoadedAccount, wanted: OverrideRequest) -> dict[str, Any] | JSONResponse:
    """Send the account's calls to `scenario` from now until `until` (null: until cleared)."""
    try:
        overrides.set_override(scope.redis, scope.account, wanted.scenario, wanted.until, scope.principal.name)
    except overrides.OverrideError as exc:
        return _refused(exc)
    return overrides.override_status(scope.redis, scope.account)


@router.delete("/{account}/override")
def delete(scope: LoadedAccount) -> dict[str, Any]:
    """Back to the rules; `cleared`: false when there was none."""
    cleared = overrides.clear_override(scope.redis, scope.account, scope.principal.name)
    return {"account": scope.account, "cleared": cleared}
