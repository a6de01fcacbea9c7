"""Redis with Sentinel on one machine: a master, its replicas and as many sentinels, each
from a config file of its own in a writable folder, so the CONFIG REWRITE that Sentinel does
at every failover (who is master, which replicas follow it) survives a restart. Used by the
tests and the benchmarks; the multi-node images run the same programs with the same files.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis

from routing.stack.ports import free_port
from routing.stack.redis_server import stop_process

SERVICE = "mymaster"


class SentinelCluster:
    """`size` redis-servers (the first starts as master) and `size` sentinels, quorum a
    majority, on loopback. `down_after_ms` is how long a silent master is given."""

    def __init__(self, workdir: Path, size: int = 3, down_after_ms: int = 1000, failover_timeout_ms: int = 5000,
                 host: str = "127.0.0.1"):
        self.workdir, self.size, self.host = workdir, size, host
        self.down_after_ms, self.failover_timeout_ms = down_after_ms, failover_timeout_ms
        self.redis_ports = [free_port(host) for _ in range(size)]
        self.sentinel_ports = [free_port(host) for _ in range(size)]
        self.servers: dict[int, subprocess.Popen[bytes]] = {}  # port -> process (redis and sentinels)

    @property
    def url(self) -> str:
        hosts = ",".join(f"{self.host}:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def _redis_conf(self, i: int) -> Path:
        folder = self.workdir / f"redis{i + 1}"
        folder.mkdir(parents=True, exist_ok=True)
        conf = folder / "redis.conf"
        if not conf.exists():  # a restart keeps what Sentinel rewrote
            lines = [f"port {self.redis_ports[i]}", f"bind {self.host}", f"dir {folder}", "appendonly yes",
                     "save 60 1", "loglevel warning", "protected-mode yes"]
            if i:
                lines.append(f"replicaof {self.host} {self.redis_ports[0]}")
            conf.write_text("\n".join(lines) + "\n")
        return conf

    def _sentinel_conf(self, i: int) -> Path:
        folder = self.workdir / f"sentinel{i + 1}"
        folder.mkdir(parents=True, exist_ok=True)
        conf = folder / "sentinel.conf"
        if not conf.exists():
            quorum = self.size // 2 + 1
            conf.write_text("\n".join([
                f"port {self.sentinel_ports[i]}", f"bind {self.host}", f"dir {folder}", "loglevel warning",
                f"sentinel monitor {SERVICE} {self.host} {self.redis_ports[0]} {quorum}",
                f"sentinel down-after-milliseconds {SERVICE} {self.down_after_ms}",
                f"sentinel failover-timeout {SERVICE} {self.failover_timeout_ms}",
                f"sentinel parallel-syncs {SERVICE} 1",
            ]) + "\n")
        return conf

    def start(self, timeout: float = 15.0) -> None:
        for i in range(self.size):
            self.start_redis(i, timeout)
        for i in range(self.size):
            self.start_sentinel(i, timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (self.master() is not None and all(self._replicas_seen(p) >= self.size - 1 for p in self.sentinel_ports)
                    and all(self._synced(port) for port in self.redis_ports[1:])):
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the sentinels did not agree on a master with {self.size - 1} replicas within {timeout} s")

    def start_redis(self, i: int, timeout: float = 15.0) -> None:
        self._run(self.redis_ports[i], [str(self._redis_conf(i))], f"redis-server {i + 1}", timeout)

    def start_sentinel(self, i: int, timeout: float = 15.0) -> None:
        self._run(self.sentinel_ports[i], [str(self._sentinel_conf(i)), "--sentinel"], f"sentinel {i + 1}", timeout)

    def _run(self, port: int, args: list[str], what: str, timeout: float) -> None:
        """redis-server with `args`, on `port`, until it answers PING."""
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.servers[port] = subprocess.Popen([binary, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(host=self.host, port=port, socket_connect_timeout=0.2, socket_timeout=1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                client.ping()
                return
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError(f"{what} did not answer on port {port} within {timeout} s")

    def _synced(self, port: int) -> bool:
        """A replica whose first full sync is done (until then a failover could promote an
        empty one: with appendonly, the master's start-up rewrite delays that sync)."""
        try:
            info = redis.Redis(host=self.host, port=port, socket_timeout=1, socket_connect_timeout=0.5).info("replication")
        except redis.RedisError:
            return False
        return info.get("master_link_status") == "up" and not info.get("master_sync_in_progress")

    def _replicas_seen(self, sentinel_port: int) -> int:
        try:
            client = redis.Redis(host=self.host, port=sentinel_port, socket_timeout=1, socket_connect_timeout=0.5)
            return len(client.sentinel_slaves(SERVICE))
        except redis.RedisError:
            return -1

    def master(self) -> int | None:
        """The master's port as a majority of sentinels reports it, or None."""
        votes: dict[int, int] = {}
        for port in self.sentinel_ports:
            try:
                client = redis.Redis(host=self.host, port=port, socket_timeout=1, socket_connect_timeout=0.5)
                address = client.sentinel_get_master_addr_by_name(SERVICE)
            except redis.RedisError:
                continue
            if isinstance(address, (tuple, list)):
                votes[int(address[1])] = votes.get(int(address[1]), 0) + 1
        best = max(votes.items(), key=lambda kv: kv[1], default=None)
        return best[0] if best and best[1] > self.size // 2 else None

    def process(self, port: int) -> subprocess.Popen[bytes]:
        return self.servers[port]

    def stop(self) -> None:
        for proc in self.servers.values():
            if proc.poll() is None:
                proc.kill()  # SIGCONT is not needed: SIGKILL ends a stopped process too
        for proc in self.servers.values():
            stop_process(proc, timeout=5)
        self.servers.clear()
