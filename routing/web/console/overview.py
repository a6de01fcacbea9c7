"""An account's first page: what is loaded (name, numbers, version) and the draft's state."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from routing.store import configs
from routing.web.console import draft as drafts
from routing.web.console.common import ConsoleAccount, PostedForm, lang_of, redirect, render
from routing.web.console.forms import KINDS
from routing.web.console.i18n import translate

router = APIRouter()


@router.get("/{account}", response_class=HTMLResponse)
def overview(request: Request, scope: ConsoleAccount, created: int = 0) -> HTMLResponse:
    info = configs.describe(scope.redis, scope.account)
    draft = drafts.get(scope.redis, scope.account)
    counts = {k: len(draft.items(k)) for k in KINDS}
    return render(request, "console/overview.html", {
        "info": info, "doc": info["document"], "draft": draft, "counts": counts,
        "draft_changed": draft.saved and drafts.changed(scope.redis, draft),
        "flash": translate("created", lang_of(request)) if created else "",
    }, scope=scope, active="")


@router.post("/{account}/draft/discard")
def discard(request: Request, scope: ConsoleAccount, form: PostedForm) -> Response:
    """Drop the draft: the screens show the loaded version again."""
    drafts.discard(scope.redis, scope.account)
    return redirect(scope.base)
