"""An account's first page: what is loaded (name, numbers, version) and the draft's state."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from routing.store import configs
from routing.web.console.common import ConsoleAccount, render

router = APIRouter()


@router.get("/{account}", response_class=HTMLResponse)
def overview(request: Request, scope: ConsoleAccount) -> HTMLResponse:
    info = configs.describe(scope.redis, scope.account)
    return render(request, "console/overview.html", {"info": info, "doc": info["document"]},
                  scope=scope, active="")
