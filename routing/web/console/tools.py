"""What happens if +7... calls on Saturday at 13:00 (the loaded version, as `voffice
simulate`), and the week's coverage heat map (the API's PNG, `voffice coverage`)."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from routing.core.clock import now as clock_now
from routing.core.clock import wall_time_problem
from routing.core.compiler import compile_account
from routing.core.coverage import parse_iso_week
from routing.core.engine import CompiledAccount
from routing.core.numbers import did_candidates
from routing.core.scenario import Event, EventError
from routing.core.simulate import simulate
from routing.store import configs
from routing.web import planning
from routing.web.console import draft as drafts
from routing.web.console.common import ConsoleAccount, lang_of, render
from routing.web.console.i18n import translate

router = APIRouter()
Text = Annotated[str, Query(max_length=200)]


@router.get("/{account}/simulate", response_class=HTMLResponse)
def simulate_page(request: Request, scope: ConsoleAccount, number: Text = "", caller: Text = "", at: Text = "",
                  events: Text = "", source: Annotated[str, Query(pattern="^(loaded|draft)$")] = "loaded") -> HTMLResponse:
    """The form, and (once a caller is given) the decision: rule, scenario, steps with their
    ringing waves, end. `source=draft`: the draft as it would be applied (if it has no errors)."""
    lang = lang_of(request)
    r = scope.redis
    numbers = json.loads(r.hget(configs.account_key(scope.account), "numbers") or "[]")
    errors: dict[str, str] = {}
    result: dict[str, Any] | None = None
    note = ""
    account: CompiledAccount | None = None
    if source == "draft":
        draft = drafts.get(r, scope.account)
        if draft.errors():
            errors["source"] = translate("draft_has_errors", lang, n=len(draft.errors()))
        else:
            account = CompiledAccount(compile_account(draft.doc))
            numbers = [n for n in draft.doc.get("numbers", []) if isinstance(n, str)]
    if (caller or at or events) and not errors:
        account = account or planning.compiled(r, scope.account)
        countries = frozenset(c.decode() if isinstance(c, bytes) else str(c) for c in r.smembers("vo:countries"))
        number = number or (numbers[0] if numbers else "")
        if not ({number} | set(did_candidates(number, countries))) & set(numbers):
            errors["number"] = translate("not_our_number", lang)
        if not caller:
            errors["caller"] = translate("required", lang)
        parsed: list[Event] = []
        try:
            parsed = [Event.parse(e) for e in re.split(r"[\s,]+", events.strip()) if e]
        except EventError as exc:
            errors["events"] = str(exc)
        when: datetime | None = None
        if at:
            try:
                when = datetime.fromisoformat(at)
            except ValueError:
                errors["at"] = translate("bad_time", lang)
        else:
            when = clock_now()
        if when is not None and when.tzinfo is None and account is not None:
            problem = wall_time_problem(when, account.tz)
            if problem is not None and problem[0] == "gap":
                errors["at"] = problem[1]
            elif problem is not None:
                note = problem[1]
        if not errors and account is not None and when is not None:
            result = simulate(account, number, caller, when, parsed)
    return render(request, "console/simulate.html", {
        "numbers": numbers, "values": {"number": number, "caller": caller, "at": at, "events": events, "source": source},
        "errors": errors, "result": result, "note": note,
        "result_json": json.dumps(result, ensure_ascii=False, indent=1) if result else "",
    }, scope=scope, active="/simulate")


@router.get("/{account}/coverage", response_class=HTMLResponse)
def coverage_page(request: Request, scope: ConsoleAccount, week: Annotated[str, Query(max_length=10)] = "",
                  slot: Annotated[int, Query(ge=5, le=240)] = 15) -> HTMLResponse:
    """The heat map is the API's PNG (the same cookie session reads it)."""
    error = ""
    if week:
        try:
            parse_iso_week(week)
        except ValueError as exc:
            error = str(exc)
    if not week or error:
        year, number, _ = clock_now().isocalendar()
        week = f"{year}-W{number:02d}" if not error else week
    return render(request, "console/coverage.html", {"week": week, "slot": slot, "error": error},
                  scope=scope, active="/coverage")
