"""`voffice up|down|status`: the stack on this machine, on loopback, with embedded defaults.

Today the stack is Redis (the config store) with the seed example loaded; Kamailio,
rtpengine and the media server join it as their issues land. Each component is a child
process whose pid is kept in the run directory, so `down` and `status` work from another
shell, and `up --foreground` stops everything on Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis

from . import store
from .redis_server import RedisServer
from .validation import validate_paths

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RUN_DIR = ROOT / ".run"
SEED = ROOT / "examples" / "seed-office.json"


@dataclass
class StackConfig:
    run_dir: Path = DEFAULT_RUN_DIR
    redis_port: int = 6479
    host: str = "127.0.0.1"
    load: tuple[str, ...] = (str(SEED),)

    @property
    def redis_url(self) -> str:
        return f"redis://{self.host}:{self.redis_port}/0"


class StackError(Exception):
    pass


def _pid_file(config: StackConfig, name: str) -> Path:
    return config.run_dir / f"{name}.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def up(config: StackConfig, echo: Callable[[str], None]) -> RedisServer:
    """Start what is not running yet and load the configs; returns the Redis server."""
    config.run_dir.mkdir(parents=True, exist_ok=True)
    pid_path = _pid_file(config, "redis")
    if _read_pid(pid_path):
        raise StackError(f"the stack is already up (redis pid {pid_path.read_text().strip()}); run `voffice down` first")
    server = RedisServer(config.run_dir / "redis", port=config.redis_port, persistent=True, host=config.host)
    try:
        server.start()
    except RuntimeError as exc:
        raise StackError(f"redis-server: {exc}") from exc
    assert server.proc is not None
    pid_path.write_text(str(server.proc.pid))
    echo(f"redis     {server.url}  (pid {server.proc.pid}, data in {server.workdir})")
    if config.load:
        result = validate_paths(list(config.load))
        if not result.ok:
            for p in result.problems:
                echo(p.line())
            raise StackError("the configs to load are invalid; nothing was loaded")
        r = store.connect(server.url)
        changes, problems = store.plan_load(r, result.documents)
        if problems:
            raise StackError(problems[0].line())
        loaded = store.apply_load(r, changes)
        for change in changes:
            version = loaded.versions.get(change.account, change.current)
            echo(f"loaded    {change.account} v{version} ({', '.join(change.doc['numbers'])})")
    return server


def down(config: StackConfig, echo: Callable[[str], None]) -> bool:
    pid_path = _pid_file(config, "redis")
    pid = _read_pid(pid_path)
    if pid is None:
        echo("the stack is not running")
        pid_path.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        if not _alive(pid):
            break
        time.sleep(0.05)
    pid_path.unlink(missing_ok=True)
    echo(f"stopped redis (pid {pid})")
    return True


def status(config: StackConfig) -> list[tuple[str, bool, str]]:
    """(component, healthy, detail) for each component."""
    rows = []
    pid = _read_pid(_pid_file(config, "redis"))
    try:
        client = redis.Redis.from_url(config.redis_url, socket_timeout=1, socket_connect_timeout=1)
        client.ping()
        accounts = client.scard("vo:accounts")
        numbers = client.hlen("vo:numbers")
        rows.append(("redis", True, f"{config.redis_url} PONG, {accounts} accounts, {numbers} numbers" + (f", pid {pid}" if pid else "")))
    except redis.RedisError as exc:
        rows.append(("redis", False, f"{config.redis_url}: {exc}"))
    return rows
