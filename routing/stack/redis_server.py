"""Start and stop a local redis-server: for `voffice up`, the benchmarks and the tests."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis

from routing.stack.ports import free_port


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if it has not gone within `timeout`."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class RedisServer:
    """A redis-server bound to loopback. `persistent=False` keeps everything in memory."""

    def __init__(self, workdir: Path, port: int | None = None, persistent: bool = False, host: str = "127.0.0.1"):
        self.workdir = workdir
        self.host = host
        self.port = port or free_port(host)
        self.persistent = persistent
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def command(self) -> list[str]:
        binary = shutil.which("redis-server") or "/usr/sbin/redis-server"
        persistence = ["--appendonly", "yes", "--save", "60 1"] if self.persistent else ["--appendonly", "no", "--save", ""]
        return [
            binary, "--port", str(self.port), "--bind", self.host, "--protected-mode", "yes",
            "--dir", str(self.workdir), "--loglevel", "warning", *persistence,
        ]

    def start(self, timeout: float = 10.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(host=self.host, port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with code {self.proc.returncode} (port {self.port} in use?)")
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout} s")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None
