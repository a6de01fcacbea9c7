"""Shared fixtures. Redis tests start a real redis-server on a free loopback port."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from routing.stack.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SEED = EXAMPLES / "seed-office.json"


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def seed_doc() -> dict[str, Any]:
    return json.loads(SEED.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """One real PostgreSQL (Debian's) for the session, fsync off; each test gets its own database."""
    import tempfile

    from routing.stack.postgres_server import PostgresServer, bin_dir, cluster_dir

    try:
        bin_dir()
    except Exception as exc:
        pytest.skip(str(exc))
    run = Path(tempfile.mkdtemp(prefix="voffice-pg-test-"))
    server = PostgresServer(cluster_dir(run / "run"), fsync=False, password_file=run / "postgres.password")
    server.start()
    try:
        yield server
    finally:
        server.remove()
        import shutil

        shutil.rmtree(run, ignore_errors=True)


@pytest.fixture
def database_url(postgres_server: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database with the schema applied (`voffice db upgrade`'s code)."""
    import re
    import secrets

    import psycopg

    from routing.records import database

    name = "t_" + re.sub(r"[^a-z0-9]", "_", request.node.name.lower())[:40] + "_" + secrets.token_hex(3)
    admin = postgres_server.url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = admin.rsplit("/", 1)[0] + "/" + name
    with database.connect(url) as conn:
        database.upgrade(conn)
    yield url
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[Any]:
    """A Redis master, 2 replicas and 3 sentinels on loopback (routing/stack/redis_sentinel.py)."""
    from routing.stack.redis_sentinel import SentinelCluster

    cluster = SentinelCluster(tmp_path / "ha")
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
