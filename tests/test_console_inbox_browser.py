"""A subscriber listens to a voicemail that a real call left; another subscriber cannot reach it.

The whole path, nothing staged: the seed's lunch case through the stack (Kamailio, rtpengine,
the media server, the history writer into a real PostgreSQL): the secretary is busy, the
caller keys 1 and speaks after the beep. Then the cabinet under uvicorn, on that stack's Redis,
database and media folder, in headless Debian chromium: the inbox's <audio> element must load
the recording (its metadata read, a duration > 0), the screenshot goes to
docs/screenshots/inbox.png (and the call history's, calls.png). Another account's subscriber gets 404 for the page and the file."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
import uvicorn
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from routing.records import database
from routing.store import configs, credentials
from routing.web.app import create_app
from routing.web.settings import WebSettings
from tests.api_support import OTHER, SEED, history_database
from tests.callpath import STACK_TESTS, StackFactory, dtmf_caller, operator, short_ring_config
from tests.console_support import PASSWORD, SCREENSHOTS, browser, free_port

__all__ = ["browser"]

pytestmark = [*STACK_TESTS, pytest.mark.postgres]

BERRY, THAMES = "berry-demo", "thames-support-247"
NUMBER = "+74951234567"
LUNCH = "2026-11-25T13:30:00+03:00"  # rule 1: the secretary, then the menu (1: voicemail)


class Cabinet:
    """The app under uvicorn in a thread, on a given Redis, database and media folder (the
    console's Served starts a Redis of its own; this one serves the call's stack)."""

    def __init__(self, settings: WebSettings):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=self.port,
                                                   log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, name="cabinet-uvicorn", daemon=True)
        self.thread.start()
        for _ in range(200):
            if self.server.started or not self.thread.is_alive():
                break
            self.thread.join(0.05)
        assert self.server.started, "uvicorn did not start"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def login(driver: webdriver.Chrome, base: str, account: str) -> None:
    driver.delete_all_cookies()
    driver.get(f"{base}/console/login")
    driver.find_element(By.ID, "f-account").send_keys(account)
    driver.find_element(By.ID, "f-password").send_keys(PASSWORD)
    old = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(By.ID, "login-submit").click()
    WebDriverWait(driver, 20).until(ec.staleness_of(old))
    assert driver.find_elements(By.ID, "logout"), driver.page_source[-1000:]


def fetch_status(driver: webdriver.Chrome, url: str) -> int:
    """The status the browser gets for `url` with its own cookies (what a page's player would)."""
    status: Any = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0], {credentials: 'same-origin'}).then(r => done(r.status), e => done(String(e)));", url)
    return int(status)


def test_a_subscriber_listens_to_a_voicemail_another_cannot(tmp_path_factory: pytest.TempPathFactory,
                                                            postgres_server: Any, browser: webdriver.Chrome) -> None:
    work = tmp_path_factory.mktemp("inbox-browser")
    doc = short_ring_config(json.loads(SEED.read_text(encoding="utf-8")))
    with history_database(postgres_server, "inbox_browser") as url:
        factory = StackFactory(work, doc)
        try:
            stack = factory(LUNCH, database_url=url)
            gateway = operator(work, "gateway", "busy", stack.gateway_port, calls=2).start()
            call = dtmf_caller(work, stack, NUMBER, "+79031112233", "1", message_after_ms=5000, talk_ms=2500).start()
            assert call.wait(120) == 0
            gateway.stop()
            deadline = time.monotonic() + 30
            while True:
                with database.connect(url) as conn:
                    left = database.recordings(conn, account=BERRY, kind="voicemail")
                    calls = database.calls(conn, account=BERRY)
                if (left and calls) or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert left and calls, "the call left no voicemail (or no call record) in the history"
            voicemail = left[0]["call_id"]

            assert stack.config is not None
            client = configs.connect(stack.config.redis_url)
            other = json.loads(OTHER.read_text(encoding="utf-8"))
            changes, problems = configs.plan_load(client, [(THAMES, other)])
            assert not problems
            configs.apply_load(client, changes)
            for account in (BERRY, THAMES):
                credentials.set_password(client, account, PASSWORD)
            cabinet = Cabinet(WebSettings.from_state_dir(
                work / "state", redis_url=stack.config.redis_url, database_url=url,
                media_dirs=(stack.config.run_dir / "media",)))
            try:
                inbox = f"{cabinet.url}/console/{BERRY}/inbox"
                audio_url = f"/api/accounts/{BERRY}/voicemail/{voicemail}"

                login(browser, cabinet.url, BERRY)
                browser.get(inbox)
                player = browser.find_element(By.CSS_SELECTOR, f"#voicemail-{voicemail} audio")
                assert player.get_attribute("src") == cabinet.url + audio_url
                loaded = WebDriverWait(browser, 20).until(lambda d: d.execute_script(
                    "const a = arguments[0]; return a.readyState >= 1 && a.duration > 0 ? a.duration : null;", player))
                assert 0.5 < float(loaded) < 30, loaded
                assert "+79031112233" in browser.find_element(By.ID, f"voicemail-{voicemail}").text
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                browser.save_screenshot(str(SCREENSHOTS / "inbox.png"))
                browser.get(f"{cabinet.url}/console/{BERRY}/calls?lang=en")
                row = browser.find_element(By.CSS_SELECTOR, f'tr.call[data-call="{voicemail}"]')
                assert "+79031112233" in row.text and "voicemail" in row.text
                assert browser.find_element(By.ID, "csv-link").get_attribute("href") == \
                    f"{cabinet.url}/api/accounts/{BERRY}/calls.csv"
                browser.save_screenshot(str(SCREENSHOTS / "calls.png"))

                login(browser, cabinet.url, THAMES)
                browser.get(inbox)
                assert "account 'berry-demo' not found" in browser.page_source
                assert not browser.find_elements(By.TAG_NAME, "audio")
                assert fetch_status(browser, audio_url) == 404
                assert fetch_status(browser, f"/api/accounts/{THAMES}/voicemail/{voicemail}") == 404
                browser.get(f"{cabinet.url}/console/{THAMES}/inbox")
                assert not browser.find_elements(By.TAG_NAME, "audio")  # thames has none; berry's is not listed
            finally:
                cabinet.stop()
        finally:
            factory.stop()
