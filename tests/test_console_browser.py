"""The web console in a real browser (headless Debian chromium through Selenium) against the
real app under uvicorn and a real redis-server: the seed's example built from an empty
account through the forms alone, check/apply/rollback, escaping, 10,000 operators, tenant
isolation. The main pages' screenshots go to docs/screenshots/ (docs/console.md)."""

from __future__ import annotations

import json
import math
import os
import struct
import subprocess
import wave
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from routing.core.compiler import compile_account
from routing.core.engine import CompiledAccount
from routing.core.scenario import Event
from routing.core.simulate import simulate
from routing.store import configs
from routing.web.console import draft as drafts
from tests.console_support import PASSWORD, ROOT, Page, Served, browser, served

__all__ = ["browser", "served"]

SEED = ROOT / "examples" / "seed-office.json"
OTHER = ROOT / "examples" / "support-247.json"
VOFFICE = ROOT / ".venv" / "bin" / "voffice"
BERRY = "berry-demo"
NUMBER = "+74951234567"


def seed() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(SEED.read_text(encoding="utf-8"))
    doc.pop("$schema", None)
    return doc


def page_of(browser: webdriver.Chrome, served: Served) -> Page:
    return Page(browser, served.url)


# --- building the seed through the forms -----------------------------------------------------

def new_item(p: Page, path: str, item_id: str, fields: dict[str, str], selects: dict[str, str] | None = None,
             ticks: list[str] | None = None) -> None:
    p.go(f"/console/{BERRY}/{path}/-new")
    p.fill(p.named("id"), item_id)
    for name, value in fields.items():
        p.fill(p.named(name), value)
    for name, value in (selects or {}).items():
        p.choose(p.named(name), value)
    for box in ticks or []:
        box_el = p.d.find_element(By.CSS_SELECTOR, f"input[type=checkbox][name={box.split('=')[0]}][value={box.split('=')[1]}]")
        if not box_el.is_selected():
            box_el.click()
    p.submit()
    assert p.d.find_elements(By.ID, "flash"), p.d.page_source[-2000:]  # "saved in the draft"


def edit_tree(p: Page, scenario: str, steps: list[tuple[str, str]]) -> None:
    """Each step (form field name, operation) chosen and saved: the tree grows a level at a time."""
    p.go(f"/console/{BERRY}/scenarios/{scenario}")
    for name, op in steps:
        if name.startswith("newkey:"):
            key, _, op_id = op.partition("=")
            p.fill(p.named(name), key)
            p.choose(p.named(name.replace("newkey:", "newkeyop:")), op_id)
        else:
            p.choose(p.named(name), op)
        p.submit()


def build_seed(p: Page) -> None:
    doc = seed()
    p.go(f"/console/{BERRY}/settings")
    p.fill("f-language", "ru")
    p.fill("f-extension_digits", "3")
    p.fill("f-calendar-country", "RU")
    p.fill("f-defaults-attempts", "2")
    p.fill("f-defaults-ring_seconds", "20")
    p.fill("f-defaults-input_timeout", "5")
    p.fill("f-notifications-email", "office@berry-demo.ru")
    for event in ("voicemail", "fax", "missed"):
        p.tick(f"f-notifications-events-{event}")
    p.choose("f-notifications-language", "ru")
    p.choose("f-notifications-attachments", "attach")
    p.submit()

    for op in doc["operators"]:
        new_item(p, "operators", op["id"], {"name": op["name"], "phone": op["phone"], "extension": op["extension"]})
    p.go(f"/console/{BERRY}/operators")
    p.shot("operators")

    for group in doc["groups"]:
        p.go(f"/console/{BERRY}/groups/-new")
        p.fill(p.named("id"), group["id"])
        p.fill(p.named("name"), group["name"])
        p.choose(p.named("strategy"), group["strategy"])
        for j, member in enumerate(group["members"]):
            p.fill(p.named(f"member-{j}-operator"), member["operator"])
            if "priority" in member:
                p.fill(p.named(f"member-{j}-priority"), str(member["priority"]))
        p.submit()
    p.go(f"/console/{BERRY}/groups/clients")
    p.shot("group")

    for sound in doc["sounds"]:
        new_item(p, "sounds", sound["id"], {"name": sound["name"], "text": sound["text"]})

    # the creation form's voicemail operation "vm" gets the seed's prompt
    p.go(f"/console/{BERRY}/operations/vm")
    p.choose(p.named("sound"), "vm-prompt")
    p.submit()
    for op in doc["operations"][1:]:
        fields = {k: str(op[k]) for k in ("name", "input_timeout", "repeat_key") if k in op}
        selects = {k: op[k] for k in ("type", "sound", "group") if k in op}
        new_item(p, "operations", op["id"], fields, selects)

    for schedule in doc["schedules"]:
        p.go(f"/console/{BERRY}/schedules/-new")
        p.fill(p.named("id"), schedule["id"])
        p.fill(p.named("name"), schedule["name"])
        for day in schedule["days"]:
            p.tick(f"f-days-{day}")
        for j, (start, end) in enumerate(schedule.get("intervals", [])):
            p.fill(p.named(f"interval-{j}-start"), start)
            p.fill(p.named(f"interval-{j}-end"), end)
        p.submit()

    for caller_list in doc["caller_lists"]:
        new_item(p, "caller-lists", caller_list["id"],
                 {"name": caller_list["name"], "patterns": "\n".join(caller_list["patterns"])})

    for scenario in doc["scenarios"]:
        new_item(p, "scenarios", scenario["id"], {"name": scenario["name"]})
    edit_tree(p, "workday", [("node:root", "ext"), ("node:root/next", "to-clients")])
    edit_tree(p, "lunch", [("node:root", "to-secretary"), ("node:root/next", "menu"),
                           ("newkey:root/next/keys", "1=vm"), ("newkey:root/next/keys", "2=fax")])
    edit_tree(p, "weekend", [("node:root", "greeting")])
    edit_tree(p, "weekend-vip", [("node:root", "menu"), ("newkey:root/keys", "1=vm"), ("newkey:root/keys", "2=fax")])
    p.go(f"/console/{BERRY}/scenarios/lunch")
    p.shot("scenario-tree")

    p.go(f"/console/{BERRY}/settings")
    p.choose("f-default_scenario", doc["default_scenario"])
    p.submit()
    p.shot("settings")
    p.go(f"/console/{BERRY}/scenarios/start")  # the creation form's starter scenario goes
    p.submit("delete")

    for rule in doc["rules"]:
        selects = {"schedule": rule["schedule"], "scenario": rule["scenario"]}
        if rule["caller_list"]:
            selects["caller_list"] = rule["caller_list"]
        new_item(p, "rules", rule["id"], {"name": rule["name"], "priority": str(rule["priority"])}, selects)
    p.go(f"/console/{BERRY}/rules")
    p.shot("rules")


def simulate_cli(*args: str, redis_url: str | None = None) -> dict[str, Any]:
    env = dict(os.environ)
    env.pop("VOFFICE_REDIS_URL", None)
    if redis_url:
        env["VOFFICE_REDIS_URL"] = redis_url
    done = subprocess.run([str(VOFFICE), "simulate", "--number", NUMBER, "--json", *args], capture_output=True,
                          text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    out: dict[str, Any] = json.loads(done.stdout)
    return out


# The seed's Situation, case by case (tests/test_engine_seed.py): caller, local time, events.
CASES = [
    ("+79031112233", "2026-11-25T10:00", ["digits:101", "answer:ivanov"]),  # weekday: extension dialled
    ("+79031112233", "2026-11-25T11:00", ["timeout", "answer:sidorov"]),  # no extension: the clients group
    ("+79031112233", "2026-11-25T13:30", ["no-answer", "key:1"]),  # lunch: secretary, then the menu
    ("+74957654321", "2026-11-28T13:00", ["key:2"]),  # Saturday, VIP: weekend-vip menu
    ("+79031112233", "2026-11-28T13:00", []),  # Saturday, not VIP: the greeting
    ("+79031112233", "2026-11-25T20:00", []),  # no rule: the default scenario
]


def test_seed_built_from_an_empty_account_through_the_forms(browser: webdriver.Chrome, served: Served) -> None:
    p = page_of(browser, served)
    p.go("/console/login")
    p.shot("login")
    p.login_noc(served.token)
    p.go("/console")
    doc = seed()
    p.fill("f-new-account", BERRY)
    p.fill("f-new-name", doc["name"])
    p.fill("f-new-timezone", doc["timezone"])
    p.fill("f-new-numbers", NUMBER)
    p.submit("create-submit")
    assert configs.current_version(served.redis, BERRY) == 1

    p.fill("f-new-password", PASSWORD)  # the NOC sets the subscriber's password (`voffice password`)
    p.fill("f-new-password2", PASSWORD)
    p.submit("password-submit")
    assert p.el("flash").text == "Пароль абонента задан"
    p.login(BERRY)
    assert p.d.current_url.endswith(f"/console/{BERRY}")
    build_seed(p)

    p.go(f"/console/{BERRY}/check")
    assert not p.d.find_elements(By.CSS_SELECTOR, "#problems li.problem"), p.text("problems")
    diff = p.text("diff")
    assert "/operators" in diff and "/rules" in diff and "Правило №4" in diff
    p.shot("check-apply")
    p.submit("apply")
    assert "2" in p.text("flash")
    p.shot("versions")

    loaded = configs.describe(served.redis, BERRY)["document"]
    assert loaded == seed()

    compiled_seed = CompiledAccount(compile_account(seed()))
    for caller, at, events in CASES:
        flags = ["--caller", caller, "--at", at, *[x for e in events for x in ("--event", e)]]
        from_console = simulate_cli(*flags, redis_url=served.redis_server.url)
        from_seed = simulate(compiled_seed, NUMBER, caller, datetime.fromisoformat(at), [Event.parse(e) for e in events])
        assert from_console == json.loads(json.dumps(from_seed)), (caller, at, events)
    assert simulate_cli("--caller", "+79031112233", "--at", "2026-11-25T13:30", "--config", str(SEED)) == \
        simulate_cli("--caller", "+79031112233", "--at", "2026-11-25T13:30", redis_url=served.redis_server.url)

    p.go(f"/console/{BERRY}/simulate?caller=%2B74957654321&at=2026-11-28T13:00&events=key:2")
    assert "weekend-vip" in p.text("r-scenario") and p.text("r-end") == "fax"
    p.shot("simulate")
    p.go(f"/console/{BERRY}/coverage?week=2026-W48")
    assert p.d.execute_script("return document.getElementById('heatmap').naturalWidth") > 100
    p.shot("coverage")
    p.go(f"/console/{BERRY}")
    p.shot("overview")


# --- check, apply, rollback, escaping, scale, isolation (an account loaded from the seed) ------

TWO = "berry-two"
TWO_NUMBER = "+74950000002"


@pytest.fixture(scope="module")
def two(served: Served) -> str:
    doc = seed()
    doc.update(account=TWO, numbers=[TWO_NUMBER])
    served.load(doc)
    served.password(TWO)
    return TWO


def test_check_shows_a_problem_next_to_its_field(browser: webdriver.Chrome, served: Served, two: str) -> None:
    p = page_of(browser, served)
    p.login(two)
    p.go(f"/console/{two}/operators/petrov")
    assert p.text("nav-operators") == "Операторы" and p.d.find_element(By.CSS_SELECTOR, "label[for=f-operators-1-phone]").text == "Номер телефона *"
    p.submit("lang-en")  # the switch keeps the page, in English
    assert p.d.current_url.endswith(f"/console/{two}/operators/petrov")
    assert p.text("nav-operators") == "Operators" and p.d.find_element(By.CSS_SELECTOR, "label[for=f-operators-1-phone]").text == "Phone number *"
    p.shot("operator-en")
    p.submit("lang-ru")
    p.fill(p.named("phone"), "not-a-phone")
    p.fill(p.named("extension"), "0123")
    p.submit()
    box = p.el("f-operators-1-phone-box")
    assert "neither an E.164 number" in box.find_element(By.CSS_SELECTOR, ".problem").text
    assert "has-problem" in (p.el("f-operators-1-phone").get_attribute("class") or "")
    assert p.el("f-operators-1-extension-box").find_elements(By.CSS_SELECTOR, ".problem")
    p.shot("problem-next-to-field")

    p.go(f"/console/{two}/check")
    p.submit("check")
    assert p.d.find_elements(By.ID, "cannot-apply") and not p.d.find_elements(By.ID, "apply")
    link = p.d.find_element(By.CSS_SELECTOR, "#problems a[href$='#f-operators-1-phone']")
    link.click()
    assert p.d.current_url.endswith(f"/console/{two}/operators/petrov#f-operators-1-phone")
    assert p.el("f-operators-1-phone").get_attribute("value") == "not-a-phone"

    p.go(f"/console/{two}")
    p.submit("discard")
    p.go(f"/console/{two}/operators/petrov")
    assert p.el("f-operators-1-phone").get_attribute("value") == "+79161230002"
    assert not p.d.find_elements(By.CSS_SELECTOR, ".problem")


def test_apply_shows_the_diff_refuses_a_stale_plan_and_rolls_back(browser: webdriver.Chrome, served: Served,
                                                                  two: str) -> None:
    p = page_of(browser, served)
    p.login(two)
    before = configs.current_version(served.redis, two)
    p.go(f"/console/{two}/operators/ivanov")
    p.fill(p.named("phone"), "+79161239999")
    p.submit()
    p.go(f"/console/{two}/check")
    row = p.el("diff").find_element(By.CSS_SELECTOR, "tr.change")
    assert "/operators/0/phone" in row.text and '"+79161230001"' in row.text and '"+79161239999"' in row.text

    # someone else loads a version in between: nothing is applied, and the page says so
    other = seed()
    other.update(account=two, numbers=[TWO_NUMBER], name="Changed by a colleague")
    served.load(other)
    p.submit("apply")
    assert str(before + 1) in p.text("flash") and "flash error" in (p.el("flash").get_attribute("class") or "")
    assert configs.describe(served.redis, two)["document"]["name"] == "Changed by a colleague"

    p.go(f"/console/{two}/check")  # planned again, against the colleague's version
    assert p.d.find_elements(By.ID, "stale")
    p.submit("apply")
    applied = configs.current_version(served.redis, two)
    assert applied == before + 2 and str(applied) in p.text("flash")
    assert configs.describe(served.redis, two)["document"]["operators"][0]["phone"] == "+79161239999"

    p.submit(f"rollback-{before}")
    assert configs.current_version(served.redis, two) == applied + 1
    restored = configs.describe(served.redis, two)["document"]
    assert restored == {**seed(), "account": two, "numbers": [TWO_NUMBER]}
    p.go(f"/console/{two}/operators/ivanov")  # the untouched draft follows the rollback
    assert p.el("f-operators-0-phone").get_attribute("value") == "+79161230001"


def test_a_sound_is_uploaded_played_and_named_in_the_draft(browser: webdriver.Chrome, served: Served, two: str,
                                                         tmp_path: Path) -> None:
    wav = tmp_path / "hello.wav"
    with wave.open(str(wav), "wb") as out:  # half a second of a 440 Hz tone, 16 kHz
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / 16000)))
                                 for i in range(8000)))
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("just text, named .wav")
    p = page_of(browser, served)
    p.login(two)
    p.go(f"/console/{two}/sounds/vm-prompt")
    assert not p.d.find_elements(By.ID, "player")
    p.el("f-upload").send_keys(str(not_audio))
    p.submit("upload")
    assert "notes.wav" in p.text("upload-error")
    p.el("f-upload").send_keys(str(wav))
    p.submit("upload")
    assert p.el("f-sounds-0-file").get_attribute("value") == "vm-prompt.wav"
    src = p.el("player").get_attribute("src") or ""
    assert src.endswith(f"/api/accounts/{two}/sounds/vm-prompt.wav")
    with p.http() as client:
        played = client.get(src.removeprefix(served.url))
        assert played.status_code == 200 and played.content[:4] == b"RIFF"
    with wave.open(str(served.sounds_dir / two / "vm-prompt.wav"), "rb") as stored:
        assert stored.getframerate() == 8000 and stored.getnchannels() == 1  # the media server's prompt format
    p.shot("sound")
    p.go(f"/console/{two}")
    p.submit("discard")


HOSTILE = ["<script>alert(1)</script>", "<b>x</b>", "\u202eevil\u202c name", "\"'><img src=x onerror=alert(2)>"]


def test_names_with_html_and_bidi_overrides_render_as_text(browser: webdriver.Chrome, served: Served, two: str) -> None:
    p = page_of(browser, served)
    p.login(two)
    for i, name in enumerate(HOSTILE):
        new_item_in(p, two, "operators", f"hostile{i}", {"name": name, "phone": f"+7916555000{i}"})
        assert p.text("item-form") and p.no_alert()
        assert p.named("name").get_attribute("value") == name
    p.go(f"/console/{two}/operators?q=hostile")
    assert p.no_alert()
    for i, name in enumerate(HOSTILE):  # the text shows as typed, the override character included
        assert p.d.execute_script(f"return document.querySelector('#row-hostile{i} td:nth-child(2)').textContent") == name
    source = p.d.page_source
    assert "<script>alert(1)" not in source and "<b>x</b>" not in source and "<img src=x" not in source
    assert not p.d.find_elements(By.CSS_SELECTOR, "main b, main img, main script")
    p.shot("escaped-names")
    p.go(f"/console/{two}")
    p.submit("discard")


def new_item_in(p: Page, account: str, path: str, item_id: str, fields: dict[str, str]) -> None:
    p.go(f"/console/{account}/{path}/-new")
    p.fill(p.named("id"), item_id)
    for name, value in fields.items():
        p.fill(p.named(name), value)
    p.submit()


def test_ten_thousand_operators_are_paged_and_searched(browser: webdriver.Chrome, served: Served) -> None:
    big = seed()
    big.update(account="big-office", numbers=["+74950000099"])
    served.load(big)
    draft = drafts.get(served.redis, "big-office")
    draft.doc["operators"] = [{"id": f"op{i:05d}", "name": f"Оператор {i:05d}", "phone": f"+7926{i:07d}"}
                              for i in range(10_000)]
    drafts.save(served.redis, draft)  # through the store, not typed
    p = page_of(browser, served)
    p.login_noc(served.token)
    p.go("/console/big-office/operators")
    assert len(p.d.find_elements(By.CSS_SELECTOR, "#items tr")) == 1 + 50
    assert "10000" in p.text("total") and "200" in p.text("page-of")
    p.submit("next")
    assert p.d.find_elements(By.ID, "row-op00050") and not p.d.find_elements(By.ID, "row-op00000")
    p.fill("q", "Оператор 07777")
    p.submit("search-submit")
    rows = p.d.find_elements(By.CSS_SELECTOR, "#items tr[id^=row-]")
    assert [r.get_attribute("id") for r in rows] == ["row-op07777"]
    p.shot("operators-10000")
    p.d.find_element(By.LINK_TEXT, "op07777").click()
    assert p.named("name").get_attribute("value") == "Оператор 07777"


def test_a_subscriber_cannot_reach_another_accounts_pages(browser: webdriver.Chrome, served: Served, two: str) -> None:
    doc = json.loads(OTHER.read_text(encoding="utf-8"))
    doc.pop("$schema", None)
    served.load(doc)
    served.password(doc["account"])
    p = page_of(browser, served)
    p.login(doc["account"])
    with p.http() as client:
        assert client.get(f"/console/{doc['account']}/operators").status_code == 200
        for path in ("", "/operators", "/operators/ivanov", "/settings", "/check", "/versions", "/simulate",
                     "/coverage", "/calls", "/inbox"):
            mine, missing = client.get(f"/console/{two}{path}"), client.get(f"/console/no-such-account{path}")
            assert mine.status_code == missing.status_code == 404, path
            assert mine.text.replace(two, "X") == missing.text.replace("no-such-account", "X")
        csrf = p.d.find_element(By.NAME, "csrf").get_attribute("value")
        post = client.post(f"/console/{two}/operators/ivanov", data={"csrf": csrf, "name": "x", "phone": "+79160000000"})
        assert post.status_code == 404
        assert client.get(f"/api/accounts/{two}/coverage.png").status_code == 404
    assert configs.describe(served.redis, two)["document"]["operators"][0]["name"] == seed()["operators"][0]["name"]
    p.go(f"/console/{two}/operators")
    assert "not found" in p.text("error-message")
