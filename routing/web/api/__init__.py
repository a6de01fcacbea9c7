"""The API's routers, one module per resource kind, each mounted under /api by
routing.web.app.create_app. To add one: write routing/web/api/NAME.py with
`router = APIRouter(tags=[...])` and its routes (account-scoped ones under
/accounts/{account}/..., depending on routing.web.auth's LoadedAccount), then list it in
ROUTERS below."""

from __future__ import annotations

from fastapi import APIRouter

from routing.web.api import accounts, health, override, records, session, sounds

ROUTERS: list[APIRouter] = [health.router, session.router, accounts.router, override.router, records.router,
                            sounds.router]
