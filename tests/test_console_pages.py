"""The console without a browser (fast): sessions, CSRF, redirects, the draft's concurrent
saves, every label translated, error pages without tracebacks."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from routing.store import credentials, overrides
from routing.web.console import draft as drafts
from routing.web.console.account import SECTIONS
from routing.web.console.forms import KINDS
from routing.web.console.i18n import TEXT
from tests.api_support import PASSWORD, SEED, Stack, document, stack

__all__ = ["stack"]

BERRY = "berry-demo"
TEMPLATES = Path(__file__).resolve().parent.parent / "routing" / "web" / "templates"


def post_login(client: TestClient, data: dict[str, str], **kw: Any) -> Any:
    """The login form posted as a browser does: the page first (its cookie and hidden field)."""
    page = client.get("/console/login")
    found = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
    assert found, page.text[:300]
    return client.post("/console/login", data={**data, "login_csrf": found.group(1)}, **kw)


def login(stack: Stack, account: str = BERRY) -> tuple[TestClient, str]:
    credentials.set_password(stack.redis, account, PASSWORD)
    client = TestClient(stack.app)
    page = post_login(client, {"account": account, "password": PASSWORD})
    assert page.status_code == 200, page.text
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found
    return client, found.group(1)


def test_every_label_in_the_templates_is_translated() -> None:
    used = set()
    for path in TEMPLATES.rglob("*.html"):
        used |= set(re.findall(r"""\bt\(\s*["']([a-z_0-9]+)["']""", path.read_text(encoding="utf-8")))
    used = {key for key in used if not key.endswith("_")}  # t("f_" ~ name): a prefix, the full keys below
    used |= {f"v_{v}" for v in ("working", "weekend", "holiday", "mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    used |= {f"state_{s}" for s in ("current", "kept", "not_kept", "deleted")}
    fields = [f for kind in KINDS.values() for f in kind.fields] + [f for _, _, fs in SECTIONS for f in fs]
    used |= {f.label for f in fields} | {f.hint for f in fields if f.hint} | {f"s_{key}" for key, _, _ in SECTIONS if key}
    used |= {f"f_{c}" for kind in KINDS.values() for c in kind.columns} | {kind.label for kind in KINDS.values()}
    assert used and not used - set(TEXT), sorted(used - set(TEXT))
    assert all(len(pair) == 2 and all(pair) for pair in TEXT.values())


def test_login_redirects_and_no_open_redirect(stack: Stack) -> None:
    anonymous = stack.anonymous()
    page = anonymous.get(f"/console/{BERRY}/operators", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/console/login?next=%2Fconsole%2Fberry-demo%2Foperators"
    assert anonymous.get("/", follow_redirects=False).headers["location"] == "/console"
    credentials.set_password(stack.redis, BERRY, PASSWORD)
    for target in ("https://evil.example/", "//evil.example/console", "/console\\@evil.example"):
        reply = post_login(anonymous, {"account": BERRY, "password": PASSWORD, "next": target},
                               follow_redirects=False)
        assert reply.status_code == 303 and reply.headers["location"] == f"/console/{BERRY}", target
    assert anonymous.get("/console/lang/en?next=//evil.example", follow_redirects=False).headers["location"] == "/console"


def test_wrong_password_and_throttling_say_so_next_to_the_field(stack: Stack) -> None:
    stack.clear_throttle()
    client = stack.anonymous()
    for _ in range(5):
        wrong = post_login(client, {"account": "nobody-here", "password": "nope-nope"})
        assert wrong.status_code == 401 and 'id="err-password">Неверный аккаунт или пароль' in wrong.text
    throttled = post_login(client, {"account": "nobody-here", "password": "nope-nope"})
    assert "Слишком много неудачных попыток" in throttled.text and "nope-nope" not in throttled.text
    stack.clear_throttle()


def test_csrf_is_required_and_another_account_is_a_404(stack: Stack) -> None:
    other = document(SEED, "other-office", "+74950000077")
    stack.load(other)
    client, csrf = login(stack)
    assert client.post(f"/console/{BERRY}/operators/ivanov", data={"name": "x"}).status_code == 403
    mine = client.get("/console/other-office/operators")
    missing = client.get("/console/no-such/operators")
    assert mine.status_code == missing.status_code == 404
    assert "account &#39;other-office&#39; not found" in mine.text and "Traceback" not in mine.text
    assert client.post("/console/other-office/operators/ivanov", data={"csrf": csrf, "name": "x"}).status_code == 404
    assert client.post("/console/accounts/-new", data={"csrf": csrf, "account": "x"}).status_code == 404


def test_a_noc_console_session_ends_when_its_token_is_revoked(stack: Stack) -> None:
    token, info = credentials.create_token(stack.redis, "night shift")
    client = stack.anonymous()
    reply = post_login(client, {"token": token}, follow_redirects=False)
    assert reply.status_code == 303
    assert BERRY in client.get("/console").text
    assert client.get("/api/whoami").json() == {"role": "noc", "account": None, "name": "console:noc:night shift"}
    assert token not in client.get("/console").text
    credentials.revoke_token(stack.redis, info.id)
    assert client.get("/console", follow_redirects=False).status_code == 303
    bad = post_login(stack.anonymous(), {"token": "vot_nothing"})
    assert bad.status_code == 401 and "Токен недействителен" in bad.text


def test_bad_input_is_an_html_page_without_traceback(stack: Stack) -> None:
    client, _ = login(stack)
    for path in (f"/console/{BERRY}/operators?page=abc", f"/console/{BERRY}/simulate?caller=%2B7&at=yesterday",
                 f"/console/{BERRY}/coverage?week=2026-W99", f"/console/{BERRY}/operators/%00", "/console/" + "a" * 300):
        reply = client.get(path)
        assert reply.status_code in (200, 404, 422) and reply.headers["content-type"].startswith("text/html"), path
        assert "Traceback" not in reply.text and "<h1>" in reply.text


def test_two_saves_at_once_both_keep_their_change(stack: Stack) -> None:
    """The second save starts while the first is between its read and its write: it is
    retried on the new draft, and neither change is lost."""
    r = stack.redis
    drafts.discard(r, BERRY)
    runs = 0

    def second(draft: drafts.Draft) -> bool:
        nonlocal runs
        runs += 1
        if runs == 1:  # someone else saves in between
            drafts.edit(r, BERRY, lambda d: bool(d.items("operators")[0].update(name="First")) or True)
        draft.items("operators")[1]["name"] = "Second"
        return True

    drafts.edit(r, BERRY, second)
    saved = drafts.get(r, BERRY)
    assert runs == 2
    assert [o["name"] for o in saved.items("operators")[:2]] == ["First", "Second"]
    drafts.discard(r, BERRY)


def test_simulate_the_draft_before_applying_it(stack: Stack) -> None:
    client, csrf = login(stack)
    drafts.discard(stack.redis, BERRY)
    saved = client.post(f"/console/{BERRY}/operators/ivanov", data={"csrf": csrf, "name": "Иванов", "phone": "+79161239999",
                                                                   "extension": "101"})
    assert saved.status_code == 200
    query = "caller=%2B79031112233&at=2026-11-25T11:00&events=timeout"
    draft = client.get(f"/console/{BERRY}/simulate?source=draft&{query}").text
    loaded = client.get(f"/console/{BERRY}/simulate?source=loaded&{query}").text
    assert "+79161239999" in draft and "+79161230001" not in draft
    assert "+79161230001" in loaded and "+79161239999" not in loaded
    client.post(f"/console/{BERRY}/operators/ivanov", data={"csrf": csrf, "name": "Иванов", "phone": "x"})
    refused = client.get(f"/console/{BERRY}/simulate?source=draft&{query}").text
    assert 'id="err-source"' in refused and 'id="result"' not in refused
    drafts.discard(stack.redis, BERRY)


def test_the_tree_loses_a_level_and_rules_list_by_priority(stack: Stack) -> None:
    client, csrf = login(stack)
    drafts.discard(stack.redis, BERRY)
    page = client.get(f"/console/{BERRY}/scenarios/lunch").text
    assert 'name="node:root/next/keys/2"' in page and 'name="newkey:root/next/keys"' in page
    client.post(f"/console/{BERRY}/scenarios/lunch", data={"csrf": csrf, "name": "Обед", "node:root": "to-secretary",
                                                           "node:root/next": "menu", "node:root/next/keys/1": "vm",
                                                           "node:root/next/keys/2": ""})
    lunch = drafts.get(stack.redis, BERRY).items("scenarios")[1]
    assert lunch["root"] == {"operation": "to-secretary", "next": {"operation": "menu", "keys": {"1": {"operation": "vm"}}}}
    client.post(f"/console/{BERRY}/scenarios/lunch", data={"csrf": csrf, "name": "Обед", "node:root": "to-secretary",
                                                           "node:root/next": "", "node:root/next/keys/1": "vm"})
    assert drafts.get(stack.redis, BERRY).items("scenarios")[1]["root"] == {"operation": "to-secretary"}

    client.post(f"/console/{BERRY}/rules/r1", data={"csrf": csrf, "name": "Правило №1", "priority": "10",
                                                    "schedule": "lunch-time", "caller_list": "", "scenario": "lunch"})
    rules = drafts.get(stack.redis, BERRY).items("rules")
    assert rules[0]["priority"] == 10 and rules[0]["caller_list"] is None
    listed = re.findall(r'<tr id="row-(r[0-9])">', client.get(f"/console/{BERRY}/rules").text)
    assert listed == ["r2", "r3", "r4", "r1"]
    drafts.discard(stack.redis, BERRY)


def test_the_noc_sets_a_subscribers_password(stack: Stack) -> None:
    token, _ = credentials.create_token(stack.redis, "desk")
    noc = stack.anonymous()
    page = post_login(noc, {"token": token})
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found
    csrf = found.group(1)
    differ = noc.post(f"/console/{BERRY}/password", data={"csrf": csrf, "password": "long enough 1", "password2": "long enough 2"})
    short = noc.post(f"/console/{BERRY}/password", data={"csrf": csrf, "password": "short", "password2": "short"})
    assert differ.status_code == short.status_code == 422
    assert "Пароли не совпадают" in differ.text and "не меньше 8" in short.text and "long enough" not in differ.text
    subscriber, sub_csrf = login(stack)  # its password, set the CLI's way
    done = noc.post(f"/console/{BERRY}/password", data={"csrf": csrf, "password": "a new one!", "password2": "a new one!"})
    assert done.status_code == 200 and "Пароль абонента задан" in done.text
    assert subscriber.get(f"/console/{BERRY}", follow_redirects=False).status_code == 303  # its session ended
    again = stack.anonymous()
    assert post_login(again, {"account": BERRY, "password": "a new one!"}, follow_redirects=False).status_code == 303
    subscriber, sub_csrf = login(stack)
    assert subscriber.post(f"/console/{BERRY}/password", data={"csrf": sub_csrf, "password": "x" * 10,
                                                               "password2": "x" * 10}).status_code == 404


def test_the_override_button_switches_calls_and_back(stack: Stack) -> None:
    """The day/night switch on the account's page: a scenario now (simulate follows it, no
    load), a bad time shown next to its field, then back to the rules."""
    client, csrf = login(stack)
    page = client.get(f"/console/{BERRY}")
    assert 'id="override-form"' in page.text and "звонки идут по правилам" in page.text
    bad = client.post(f"/console/{BERRY}/override", data={"csrf": csrf, "scenario": "weekend", "until": "soonish"})
    assert bad.status_code == 422 and 'id="err-override-until"' in bad.text
    assert overrides.get_override(stack.redis, BERRY) is None
    done = client.post(f"/console/{BERRY}/override", data={"csrf": csrf, "scenario": "weekend", "until": ""})
    assert done.status_code == 200 and "Переключение включено" in done.text and "«weekend»" in done.text
    stored = overrides.get_override(stack.redis, BERRY)
    assert stored is not None and stored.scenario == "weekend" and stored.until is None
    assert client.post(f"/console/{BERRY}/override/clear", data={}).status_code == 403  # CSRF
    cleared = client.post(f"/console/{BERRY}/override/clear", data={"csrf": csrf})
    assert cleared.status_code == 200 and "Правила снова действуют" in cleared.text
    assert overrides.get_override(stack.redis, BERRY) is None


def test_a_login_posted_from_another_site_is_refused(stack: Stack) -> None:
    """Login CSRF: a post without the login page's cookie and field starts no session."""
    credentials.set_password(stack.redis, BERRY, PASSWORD)
    client = stack.anonymous()
    forged = client.post("/console/login", data={"account": BERRY, "password": PASSWORD}, follow_redirects=False)
    assert forged.status_code == 403 and 'id="err-form"' in forged.text
    assert "voffice_session" not in forged.cookies
    assert client.get(f"/console/{BERRY}", follow_redirects=False).status_code == 303  # still logged out
    assert post_login(client, {"account": BERRY, "password": PASSWORD}, follow_redirects=False).status_code == 303
