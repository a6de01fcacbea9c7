"""The screens of the document's lists: operators, groups (members with priority, attempts,
ring time), sounds, operations, schedules (day types, intervals), caller lists, scenarios
(a tree with nesting levels) and rules (in priority order). Each screen is a list, a form per
item, and delete; all of them edit the draft (routing.web.console.draft).

Operators are paged and searched on the server: an account may have thousands."""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, Response

from routing.web.console import draft as drafts
from routing.web.console.common import AccountPage, ConsoleAccount, PostedForm, lang_of, redirect, render
from routing.web.console.forms import (
    BLANK_ROWS,
    KINDS,
    MEMBER_FIELDS,
    Kind,
    assign,
    field_id,
    read_intervals,
    read_members,
    read_tree,
    tree_rows,
)
from routing.web.console.i18n import translate

router = APIRouter()
PAGE_SIZE = 50
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
NEW = "-new"  # the new item's form (no id starts with '-')
ItemId = Annotated[str, PathParam(max_length=200)]


def item_url(page: AccountPage, kind: Kind, item_id: str) -> str:
    return f"{page.base}/{kind.path}/{quote(item_id, safe='')}"


def _problem_counts(draft: drafts.Draft, kind: Kind) -> dict[int, int]:
    counts: dict[int, int] = {}
    prefix = f"/{kind.key}/"
    for p in draft.errors():
        if p["pointer"].startswith(prefix):
            head = p["pointer"][len(prefix):].split("/", 1)[0]
            if head.isdigit():
                counts[int(head)] = counts.get(int(head), 0) + 1
    return counts


def list_page(request: Request, page: AccountPage, kind: Kind, q: str = "", n: int = 1) -> HTMLResponse:
    draft = drafts.get(page.redis, page.account)
    rows = [(i, item) for i, item in enumerate(draft.items(kind.key)) if isinstance(item, dict)]
    if kind.sort:
        rows.sort(key=lambda r: (r[1].get(kind.sort) if isinstance(r[1].get(kind.sort), int) else 10**9, r[0]))
    total = len(rows)
    if q:
        needle = q.casefold()
        rows = [r for r in rows if any(needle in str(r[1].get(f, "")).casefold() for f in ("id", *kind.columns))]
    found = len(rows)
    pages = max(1, -(-found // PAGE_SIZE))
    n = min(max(1, n), pages)
    if kind.paged or found > PAGE_SIZE:
        rows = rows[(n - 1) * PAGE_SIZE: n * PAGE_SIZE]
    return render(request, "console/list.html", {
        "kind": kind, "rows": rows, "total": total, "found": found, "q": q, "n": n, "pages": pages,
        "counts": _problem_counts(draft, kind), "draft": draft, "item_url": lambda i: item_url(page, kind, i),
    }, scope=page, active=f"/{kind.path}")


def _options(draft: drafts.Draft, kind: str) -> list[tuple[str, str]]:
    return [(str(i["id"]), f"{i.get('name', '')} ({i['id']})") for i in draft.items(kind)
            if isinstance(i, dict) and isinstance(i.get("id"), str)]


def edit_page(request: Request, page: AccountPage, kind: Kind, draft: drafts.Draft, item: dict[str, Any],
              index: int | None, errors: dict[str, str] | None = None, status: int = 200,
              flash: str = "", upload_error: str = "") -> HTMLResponse:
    """The item's form, the validator's problems next to the fields they point at."""
    base = f"/{kind.key}/{index}" if index is not None else ""
    targets = [f"{base}/id"] + [f"{base}/{f.name}" for f in kind.fields]
    sub: dict[str, Any] = {}
    if kind.sub == "members":
        members: list[Any] = item["members"] if isinstance(item.get("members"), list) else []
        member_rows = [m if isinstance(m, dict) else {} for m in members] + [{} for _ in range(BLANK_ROWS)]
        rows = member_rows
        operators = _options(draft, "operators")
        names = {str(o["id"]): str(o.get("name", "")) for o in draft.items("operators") if isinstance(o, dict) and "id" in o}
        found = draft.doc.get("defaults")
        defaults = {"attempts": 2, "ring_seconds": 20, **(found if isinstance(found, dict) else {})}
        sub = {"members": member_rows, "operators": operators, "names": names, "member_fields": MEMBER_FIELDS,
               "defaults": {k: v for k, v in defaults.items() if isinstance(v, int)}}
        targets += [f"{base}/members"] + [f"{base}/members/{j}/{name}" for j in range(len(rows)) for name in MEMBER_FIELDS]
        targets += [f"{base}/members/{j}" for j in range(len(rows))]
    elif kind.sub == "intervals":
        intervals: list[Any] = item["intervals"] if isinstance(item.get("intervals"), list) else []
        interval_rows = [[*list(v), "", ""] if isinstance(v, list) else ["", ""] for v in intervals] + [["", ""] for _ in range(2)]
        sub = {"intervals": [(str(r[0]), str(r[1])) for r in interval_rows]}
        targets += [f"{base}/intervals"] + [f"{base}/intervals/{j}/{s}" for j in range(len(interval_rows)) for s in (0, 1)]
        targets += [f"{base}/intervals/{j}" for j in range(len(interval_rows))]
    elif kind.sub == "tree":
        menus = {str(o["id"]) for o in draft.items("operations") if isinstance(o, dict) and o.get("type") == "menu"}
        nodes = tree_rows(item.get("root"), base, menus)
        sub = {"tree": nodes, "operations": _options(draft, "operations")}
        targets += [f"{base}/root"] + [r.pointer for r in nodes]
    at, other = assign(draft.problems, base, targets) if index is not None else ({}, [])
    return render(request, "console/item.html", {
        "kind": kind, "item": item, "index": index, "draft": draft, "errors": errors or {}, "at": at,
        "other": other, "base": base, "fid": field_id, "sub": sub, "new": index is None,
        "options": {f.name: (f.options(draft) if f.options else []) for f in kind.fields},
        "list_url": f"{page.base}/{kind.path}", "flash": flash, "upload_error": upload_error,
        "action": f"{page.base}/{kind.path}/{NEW}" if index is None else item_url(page, kind, str(item.get("id"))),
    }, scope=page, status=status, active=f"/{kind.path}")


def read_item(kind: Kind, form: Any, item: dict[str, Any]) -> None:
    for f in kind.fields:
        f.read(form, item)
    if kind.sub == "members":
        read_members(form, item)
    elif kind.sub == "intervals":
        read_intervals(form, item)
    elif kind.sub == "tree":
        root = read_tree(form)
        if root is None:
            item.pop("root", None)
        else:
            item["root"] = root


def _routes(kind: Kind) -> None:
    path = f"/{{account}}/{kind.path}"

    def listing(request: Request, scope: ConsoleAccount, q: Annotated[str, Query(max_length=200)] = "",
                page: Annotated[int, Query(ge=1, le=10**6)] = 1) -> HTMLResponse:
        return list_page(request, scope, kind, q.strip(), page)

    def new_form(request: Request, scope: ConsoleAccount) -> HTMLResponse:
        draft = drafts.get(scope.redis, scope.account)
        return edit_page(request, scope, kind, draft, {}, None)

    def create(request: Request, scope: ConsoleAccount, form: PostedForm) -> Response:
        lang = lang_of(request)
        item_id = str(form.get("id") or "").strip()
        item: dict[str, Any] = {"id": item_id}
        read_item(kind, form, item)
        error = ""

        def add(draft: drafts.Draft) -> bool:
            nonlocal error
            if not item_id:
                error = translate("required", lang)
            elif not ID_PATTERN.fullmatch(item_id):
                error = translate("bad_id", lang)
            elif draft.index_of(kind.key, item_id) is not None:
                error = translate("id_taken", lang)
            else:
                draft.items(kind.key).append(item)
            return not error

        draft = drafts.edit(scope.redis, scope.account, add)
        if error:
            return edit_page(request, scope, kind, draft, item, None, {"id": error}, status=422)
        return redirect(item_url(scope, kind, item_id) + "?saved=1")

    def edit(request: Request, scope: ConsoleAccount, item_id: ItemId, saved: int = 0) -> HTMLResponse:
        draft = drafts.get(scope.redis, scope.account)
        index = draft.index_of(kind.key, item_id)
        if index is None:
            return _missing(request, scope, kind, item_id)
        flash = translate("saved", lang_of(request)) if saved else ""
        return edit_page(request, scope, kind, draft, draft.items(kind.key)[index], index, flash=flash)

    def update(request: Request, scope: ConsoleAccount, item_id: ItemId, form: PostedForm) -> Response:
        found = False

        def change(draft: drafts.Draft) -> bool:
            nonlocal found
            index = draft.index_of(kind.key, item_id)
            found = index is not None
            if index is not None:
                read_item(kind, form, draft.items(kind.key)[index])
            return found

        drafts.edit(scope.redis, scope.account, change)
        if not found:
            return _missing(request, scope, kind, item_id)
        return redirect(item_url(scope, kind, item_id) + "?saved=1")

    def delete(request: Request, scope: ConsoleAccount, item_id: ItemId, form: PostedForm) -> Response:
        def remove(draft: drafts.Draft) -> bool:
            index = draft.index_of(kind.key, item_id)
            if index is not None:
                del draft.items(kind.key)[index]
            return index is not None

        drafts.edit(scope.redis, scope.account, remove)
        return redirect(f"{scope.base}/{kind.path}")

    router.add_api_route(path, listing, methods=["GET"], response_class=HTMLResponse)
    router.add_api_route(f"{path}/{NEW}", new_form, methods=["GET"], response_class=HTMLResponse)
    router.add_api_route(f"{path}/{NEW}", create, methods=["POST"])
    router.add_api_route(f"{path}/{{item_id}}", edit, methods=["GET"], response_class=HTMLResponse)
    router.add_api_route(f"{path}/{{item_id}}", update, methods=["POST"])
    router.add_api_route(f"{path}/{{item_id}}/delete", delete, methods=["POST"])


def _missing(request: Request, scope: AccountPage, kind: Kind, item_id: str) -> HTMLResponse:
    lang = lang_of(request)
    shown = "".join(c if c.isprintable() else "\ufffd" for c in item_id[:80])
    return render(request, "console/error.html", {"status": 404, "message": translate("no_item", lang, id=shown)},
                  scope=scope, status=404, active=f"/{kind.path}")


for _kind in KINDS.values():
    _routes(_kind)
