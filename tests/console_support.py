"""Shared by the console's browser tests: the app served by uvicorn on a loopback port (one
per test module), a headless Debian chromium driven by Selenium (one per module), and small
helpers that fill and submit forms and wait for the next page, never with sleeps.

Chromium never reaches the network: Selenium Manager is bypassed (the driver's path is
given), and the browser's background services are off."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from routing.stack.redis_server import RedisServer
from routing.store import configs, credentials
from routing.web.app import create_app
from routing.web.settings import WebSettings

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ROOT = Path(__file__).resolve().parent.parent
# The browser tests take their screenshots on every run; into docs/screenshots only when asked
# (`make screenshots`), so a test run leaves the tree as it was.
SCREENSHOTS = Path(os.environ.get("VOFFICE_SCREENSHOTS") or Path(tempfile.gettempdir()) / "voffice-screenshots")
PASSWORD = "correct horse battery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Served:
    """A real redis-server and the cabinet app under uvicorn, in a thread."""

    def __init__(self, tmp: Path):
        self.redis_server = RedisServer(tmp)
        self.redis_server.start()
        self.redis = configs.connect(self.redis_server.url)
        self.sounds_dir = tmp / "sounds"
        self.settings = WebSettings.from_state_dir(tmp / "state", redis_url=self.redis_server.url,
                                                   sounds_dir=self.sounds_dir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(self.settings), host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="console-uvicorn", daemon=True)
        self.thread.start()
        deadline = 200
        while not self.server.started and deadline and self.thread.is_alive():
            self.thread.join(0.05)
            deadline -= 1
        assert self.server.started, "uvicorn did not start"
        self.token, _ = credentials.create_token(self.redis, "console-tests")

    def load(self, doc: dict[str, Any]) -> None:
        changes, problems = configs.plan_load(self.redis, [(doc["account"], doc)])
        assert not problems, problems
        configs.apply_load(self.redis, changes)

    def password(self, account: str) -> None:
        credentials.set_password(self.redis, account, PASSWORD)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.redis_server.stop()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    s = Served(tmp_path_factory.mktemp("console"))
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        pytest.skip("Debian's chromium and chromium-driver are not installed (make install installs them)")
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1280,900", "--lang=ru",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(arg)
    options.binary_location = str(CHROMIUM)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


class Page:
    """The browser on the console, with the few moves the tests need."""

    def __init__(self, driver: webdriver.Chrome, base: str):
        self.d = driver
        self.base = base

    def go(self, path: str) -> None:
        self.d.get(self.base + path)

    def el(self, element_id: str) -> WebElement:
        return self.d.find_element(By.ID, element_id)

    def named(self, name: str) -> WebElement:
        return self.d.find_element(By.NAME, name)

    def fill(self, element: WebElement | str, value: str) -> None:
        """Set a text field as typed (the value property, as keystrokes would leave it: typing
        long Russian texts key by key costs seconds and tests nothing more)."""
        e = self.el(element) if isinstance(element, str) else element
        self.d.execute_script("arguments[0].value = arguments[1];"
                              "arguments[0].dispatchEvent(new Event('input', {bubbles: true}))", e, value)

    def choose(self, element: WebElement | str, value: str) -> None:
        Select(self.el(element) if isinstance(element, str) else element).select_by_value(value)

    def tick(self, element_id: str, on: bool = True) -> None:
        box = self.el(element_id)
        if box.is_selected() != on:
            box.click()

    def submit(self, button_id: str = "save") -> None:
        """Click and wait for the next page to replace this one."""
        self.d.execute_script("window.__voffice_old_page = true")
        self.el(button_id).click()

        def replaced(driver: webdriver.Chrome) -> bool:
            try:
                return bool(driver.execute_script(
                    "return window.__voffice_old_page === undefined && document.readyState === 'complete'"))
            except WebDriverException:  # the page is being replaced right now
                return False

        WebDriverWait(self.d, 20).until(replaced)

    def text(self, element_id: str) -> str:
        return self.el(element_id).text

    def shot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.d.save_screenshot(str(SCREENSHOTS / f"{name}.png"))

    def no_alert(self) -> bool:
        try:
            self.d.switch_to.alert.dismiss()
        except NoAlertPresentException:
            return True
        return False

    def login(self, account: str, password: str = PASSWORD) -> None:
        self.logout()
        self.go("/console/login")
        self.fill("f-account", account)
        self.fill("f-password", password)
        self.submit("login-submit")

    def login_noc(self, token: str) -> None:
        self.logout()
        self.go("/console/login")
        self.fill("f-token", token)
        self.submit("noc-submit")

    def logout(self) -> None:
        if not self.d.current_url.startswith(self.base):
            return  # nothing of ours open yet: no cookie either
        if self.d.find_elements(By.ID, "logout"):
            self.submit("logout")
        else:
            self.d.delete_all_cookies()

    def http(self) -> httpx.Client:
        """An HTTP client with the browser's cookies: to read status codes the browser hides."""
        cookies = {c["name"]: c["value"] for c in self.d.get_cookies()}
        return httpx.Client(base_url=self.base, cookies=cookies, follow_redirects=False)
