"""The call history (/console/{account}/calls: filters, pages, a CSV link) and the inbox
(/console/{account}/inbox: voicemail with a player, faxes as PDF, and the notices' delivery
status), over the same functions the records API answers with (routing.web.api.records).

The player and the PDF link point at the API's routes (/api/accounts/{a}/voicemail/{id},
.../faxes/{id}.pdf): the console's session cookie is accepted there, and those routes are the
one place that decides which file of which account may be served.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from routing.records import database
from routing.web import planning
from routing.web.api import records
from routing.web.console.common import ConsoleAccount, render

router = APIRouter()

Text = Annotated[str | None, Query(max_length=100)]


def _problems(exc: planning.Invalid) -> list[str]:
    return [f"{p.pointer.removeprefix('/query/')}: {p.message}" for p in exc.problems]


@router.get("/{account}/calls", response_class=HTMLResponse)
def calls(request: Request, scope: ConsoleAccount, since: Annotated[str | None, Query(alias="from", max_length=40)] = None,
          until: Annotated[str | None, Query(alias="to", max_length=40)] = None, status: Text = None,
          number: Text = None, caller: Text = None, rule: Text = None,
          cursor: Annotated[str | None, Query(max_length=200)] = None,
          limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> HTMLResponse:
    """The call history with the API's filters; the CSV link exports what the filters select."""
    filters = {"from": since or "", "to": until or "", "status": status or "", "number": number or "",
               "caller": caller or "", "rule": rule or ""}
    given = {k: v for k, v in filters.items() if v}
    sized = {"limit": str(limit)} if limit != 50 else {}
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    following = None
    try:
        found, zone, following = records.query_calls(scope, request, since or None, until or None, status or None,
                                                      number or None, caller or None, rule or None, limit,
                                                      cursor or None)
        rows = [records.call_json(r, scope.account, zone) for r in found]
    except planning.Invalid as exc:
        problems = _problems(exc)
    api = f"/api/accounts/{quote(scope.account, safe='')}"
    return render(request, "console/calls.html", {
        "calls": rows, "filters": filters, "statuses": database.STATUSES, "problems": problems,
        "csv_url": f"{api}/calls.csv" + (f"?{urlencode(given)}" if given else ""),
        "next_url": f"{scope.base}/calls?{urlencode({**given, **sized, 'cursor': following})}" if following else None,
        "first_url": f"{scope.base}/calls" + (f"?{urlencode(given)}" if given else "") if cursor else None,
    }, scope=scope, active="/calls")


@router.get("/{account}/inbox", response_class=HTMLResponse)
def inbox(request: Request, scope: ConsoleAccount,
          vm_cursor: Annotated[str | None, Query(max_length=200)] = None,
          fax_cursor: Annotated[str | None, Query(max_length=200)] = None) -> HTMLResponse:
    """Voicemail (an <audio> player each), faxes (the PDF) and the latest notices' status."""
    problems: list[str] = []
    voicemail: dict[str, Any] = {"voicemail": [], "next_cursor": None}
    faxes: dict[str, Any] = {"faxes": [], "next_cursor": None}
    notices: list[dict[str, Any]] = []
    try:
        voicemail = records.recordings(scope, request, "voicemail", 25, vm_cursor or None)
        faxes = records.recordings(scope, request, "fax", 25, fax_cursor or None)
        notices, _ = records.query_deliveries(scope, request, None, None, None, 50, None)
    except planning.Invalid as exc:
        problems = _problems(exc)
    return render(request, "console/inbox.html", {
        "voicemail": voicemail["voicemail"], "faxes": faxes["faxes"], "deliveries": notices, "problems": problems,
        "vm_next": f"{scope.base}/inbox?{urlencode({'vm_cursor': voicemail['next_cursor']})}"
        if voicemail["next_cursor"] else None,
        "fax_next": f"{scope.base}/inbox?{urlencode({'fax_cursor': faxes['next_cursor']})}"
        if faxes["next_cursor"] else None,
    }, scope=scope, active="/inbox")
