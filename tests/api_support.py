"""Shared by the API tests: one real redis-server and app per test module, and its clients."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from routing.stack.redis_server import RedisServer
from routing.store import configs, credentials
from routing.web.app import create_app
from routing.web.settings import WebSettings

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SEED = EXAMPLES / "seed-office.json"  # berry-demo, +74951234567
OTHER = EXAMPLES / "support-247.json"  # thames-support-247
PASSWORD = "correct horse battery"


def document(path: Path, account: str | None = None, number: str | None = None) -> dict[str, Any]:
    """An example document, optionally as another account with another number."""
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    doc = copy.deepcopy(doc)
    if account:
        doc["account"] = account
    if number:
        doc["numbers"] = [number]
    return doc


class Stack:
    def __init__(self, tmp: Path):
        self.server = RedisServer(tmp)
        self.server.start()
        self.redis = configs.connect(self.server.url)
        self.settings = WebSettings.from_state_dir(tmp / "state", redis_url=self.server.url)
        self.app = create_app(self.settings)
        self.token, _ = credentials.create_token(self.redis, "tests")

    def configure(self, **settings: Any) -> None:
        """The app again, with these settings changed (database_url, media_dirs, sounds_dir...)."""
        self.settings = dataclasses.replace(self.settings, **settings)
        self.app = create_app(self.settings)

    def load(self, doc: dict[str, Any]) -> None:
        changes, problems = configs.plan_load(self.redis, [(doc["account"], doc)])
        assert not problems
        configs.apply_load(self.redis, changes)

    def noc(self) -> TestClient:
        return TestClient(self.app, headers={"Authorization": f"Bearer {self.token}"})

    def anonymous(self) -> TestClient:
        return TestClient(self.app)

    def subscriber(self, account: str) -> tuple[TestClient, str]:
        """A client logged in as ACCOUNT, and its CSRF token."""
        credentials.set_password(self.redis, account, PASSWORD)
        client = TestClient(self.app)
        reply = client.post("/api/login", json={"account": account, "password": PASSWORD})
        assert reply.status_code == 200, reply.text
        return client, reply.json()["csrf_token"]

    def clear_throttle(self) -> None:
        keys = list(self.redis.scan_iter(f"{credentials.FAILS}:*"))
        if keys:
            self.redis.delete(*keys)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("api"))
    try:
        s.load(document(SEED))
        s.load(document(OTHER))
        yield s
    finally:
        s.server.stop()


@contextlib.contextmanager
def history_database(postgres_server: Any, prefix: str) -> Iterator[str]:
    """A fresh call-history database (schema applied) on the session's PostgreSQL, for a
    module-scoped fixture (conftest's `database_url` is one per test)."""
    import secrets

    import psycopg

    from routing.records import database

    name = f"t_{prefix}_{secrets.token_hex(3)}"
    admin = postgres_server.url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = admin.rsplit("/", 1)[0] + "/" + name
    try:
        with database.connect(url) as conn:
            database.upgrade(conn)
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
