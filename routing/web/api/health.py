"""`GET /api/health`: what `voffice up` waits for and `voffice status` shows. No credentials:
it says only that the cabinet runs and reaches Redis, nothing about any account."""

from __future__ import annotations

from fastapi import APIRouter, Request

from routing.web.auth import redis_of

router = APIRouter(tags=["health"])


@router.get("/health")
def health(request: Request) -> dict[str, str]:
    redis_of(request).ping()  # unreachable: the app's 503
    return {"status": "ok"}
