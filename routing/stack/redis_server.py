"""Start and stop a local redis-server: for `voffice up`, the benchmarks and the tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

# Ports this process has handed out. Nothing holds a port between the probe and its use, and
# the kernel readily hands a just-closed port to the next bind(0): two "free" ports asked for
# one after the other (a test's operator gateway, then Kamailio's SIP port) came out equal once.
_handed_out: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on loopback now, and not one this process handed out before."""
    if len(_handed_out) > 10000:  # a long run: start over rather than run out of the range
        _handed_out.clear()
    for _ in range(1000):
        with socket.socket() as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise OSError("no free TCP port on loopback that was not already handed out")


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A port free for both TCP (Redis) and UDP (SIP, rtpengine's ng) on loopback."""
    for _ in range(100):
        port = free_port(host)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    raise OSError("no free UDP port on loopback")


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
