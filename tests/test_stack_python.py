"""Kamailio's embedded Python is Debian's and the project's venv, whatever Python the caller has.

An embedded interpreter with no PYTHONHOME takes its standard library from next to the first
`python3` on PATH: a pyenv or conda python3 there once handed Kamailio a foreign `ssl`, redis-py
failed at import (`'NoneType' object has no attribute 'VerifyMode'`) and Kamailio exited 255.
The foreign interpreter here is made by the test itself, so this reproduces on a bare machine:
a prefix whose lib/python3.X is Debian's standard library except for an `ssl` built for
something else, plus a PYTHONPATH whose sitecustomize refuses to start.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from routing.stack.local import ROOT, embedded_python_env, interpreter_home, sip_options, without_python_vars
from routing.stack.ports import free_port, free_udp_port
from routing.stack.postgres_server import cluster_dir
from routing.stack.redis_server import RedisServer

from .callpath import STACK_TESTS, CallStack, free_port_block
from .conftest import SEED

pytestmark = STACK_TESTS
STDLIB = Path(f"/usr/lib/python{sys.version_info.major}.{sys.version_info.minor}")


def make_foreign_python(base: Path) -> tuple[Path, Path]:
    """(the foreign prefix, a PYTHONPATH folder), as another interpreter's install leaves them."""
    prefix = base / "other-python"
    lib = prefix / "lib" / STDLIB.name
    lib.mkdir(parents=True)
    for entry in STDLIB.iterdir():
        if entry.name not in ("ssl.py", "__pycache__"):
            (lib / entry.name).symlink_to(entry)
    (lib / "ssl.py").write_text("# another interpreter's ssl: none of the names this one's modules expect\n")
    (prefix / "bin").mkdir()
    fake = prefix / "bin" / "python3"
    fake.write_text("#!/bin/sh\necho 'the foreign python3 ran' >&2\nexit 3\n")
    fake.chmod(0o755)
    path_dir = base / "other-pythonpath"
    path_dir.mkdir()
    (path_dir / "sitecustomize.py").write_text("raise SystemExit('a foreign PYTHONPATH was used')\n")
    return prefix, path_dir


@pytest.fixture
def foreign_env(tmp_path: Path) -> dict[str, str]:
    prefix, path_dir = make_foreign_python(tmp_path)
    return {"PATH": f"{prefix / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONHOME": str(prefix), "PYTHONPATH": str(path_dir)}


def test_the_foreign_python_really_is_broken(foreign_env: dict[str, str]) -> None:
    """The fixture reproduces the failure: Debian's python3 under that environment cannot
    import redis (so a stack that passed it on would fail)."""
    env = {**os.environ, **foreign_env, "PYTHONPATH": ""}
    probe = subprocess.run(["/usr/bin/python3", "-c", "import ssl; ssl.VerifyMode"], env=env,
                           capture_output=True, text=True, timeout=30)
    assert probe.returncode != 0 and "VerifyMode" in probe.stderr
    env = {**os.environ, **foreign_env}
    probe = subprocess.run(["/usr/bin/python3", "-c", "pass"], env=env, capture_output=True, text=True, timeout=30)
    assert "a foreign PYTHONPATH was used" in probe.stderr


def test_kamailio_gets_debians_python_not_the_callers() -> None:
    env = embedded_python_env()
    assert env["PYTHONHOME"] == interpreter_home() == "/usr"  # the .venv is made from /usr/bin/python3
    assert without_python_vars({"PATH": "/x", "PYTHONHOME": "/y", "PYTHONPATH": "/z", "PYTHONSTARTUP": "s"}) == {"PATH": "/x"}


def test_interpreter_home_reads_the_venvs_base(tmp_path: Path) -> None:
    (tmp_path / "pyvenv.cfg").write_text("home = /opt/python/bin\ninclude-system-site-packages = false\n")
    assert interpreter_home(tmp_path) == "/opt/python"
    assert interpreter_home(tmp_path / "missing") == "/usr"


@pytest.fixture
def stack_in_foreign_env(tmp_path: Path, foreign_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[CallStack]:
    for key, value in foreign_env.items():
        monkeypatch.setenv(key, value)
    seed = json.loads(SEED.read_text(encoding="utf-8"))
    with CallStack(tmp_path, now="2026-11-25T11:00:00+03:00", config_doc=seed) as stack:
        yield stack


def test_stack_answers_with_a_foreign_python_first_on_path(stack_in_foreign_env: CallStack) -> None:
    config = stack_in_foreign_env.config
    assert config is not None
    assert sip_options("127.0.0.1", config.sip_port) == 200  # answered by the KEMI routes
    assert sip_options("127.0.0.1", config.media_port) == 200
    log = (config.run_dir / "kamailio.log").read_text(errors="replace")
    assert "VerifyMode" not in log and "foreign" not in log


def test_voffice_up_from_a_shell_whose_python3_is_another(tmp_path: Path, foreign_env: dict[str, str]) -> None:
    """The user's command: `PATH=/other/python/bin:$PATH voffice up` (detached), status, down;
    here with an existing Redis (`up --redis URL`), which `status` finds again without being told."""
    voffice = ROOT / ".venv" / "bin" / "voffice"
    env = {**os.environ, "PATH": foreign_env["PATH"]}
    env.pop("VOFFICE_REDIS_URL", None)
    existing = RedisServer(tmp_path / "existing-redis")
    existing.start()
    ports = ["--run-dir", str(tmp_path / "run"), "--sip-port", str(free_udp_port()),
             "--media-port", str(free_port_block(2)), "--rtpengine-port", str(free_udp_port()), "--postgres-port", str(free_port()),
             "--web-port", str(web_port := free_port())]
    up = subprocess.run([str(voffice), "up", "--redis", existing.url, *ports], env=env, capture_output=True, text=True, timeout=120)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert not any(line.startswith("redis ") for line in up.stdout.splitlines())  # no redis-server of its own
        status = subprocess.run([str(voffice), "status", *ports], env=env, capture_output=True, text=True, timeout=60)
        assert status.returncode == 0, status.stdout + status.stderr
        assert "kamailio" in status.stdout
        assert "history" in status.stdout and "postgres" in status.stdout
        assert f"{existing.url} PONG, 1 accounts, 1 numbers" in status.stdout  # the seed, loaded into it
        # the cabinet: its address, and the first credentials, printed this once, that work
        assert f"http://127.0.0.1:{web_port}/console" in up.stdout
        assert re.search(rf"^web +up +http://127.0.0.1:{web_port}/console answers", status.stdout, re.M), status.stdout
        token = re.search(r"NOC token \(shown once\): (\S+)", up.stdout)
        password = re.search(r"account berry-demo, password (\S+)", up.stdout)
        assert token and password, up.stdout
        api = f"http://127.0.0.1:{web_port}/api"
        listed = httpx.get(f"{api}/accounts", headers={"Authorization": f"Bearer {token[1]}"})
        assert listed.status_code == 200 and "berry-demo" in listed.text
        login = httpx.post(f"{api}/login", json={"account": "berry-demo", "password": password[1]})
        assert login.status_code == 200 and login.json()["role"] == "subscriber"
    finally:
        subprocess.run([str(voffice), "down", *ports], env=env, capture_output=True, text=True, timeout=60)
        shutil.rmtree(cluster_dir(tmp_path / "run"), ignore_errors=True)  # the stack's PostgreSQL cluster
        existing.stop()
