"""One way to open a Redis client from a URL, for every component: a plain server
(redis://, rediss://, unix://) or a master found through Redis Sentinel
(redis+sentinel://[:password@]host1:26379,host2:26379,.../SERVICE[/DB]).

With Sentinel, redis-py's SentinelConnectionPool asks the sentinels for the master each time
it opens a connection, and drops a connection that meets a read-only replica (a demoted
master), so a client follows a failover by itself once its broken connection is dropped.
Every client gets a socket timeout and TCP keepalive: a silently partitioned master (no RST,
no FIN) costs a bounded wait, never a hung worker. No `health_check_interval`: on a Sentinel
pub/sub connection it keeps reconnecting to the dead master (redis-py#3874); the config
reader checks its subscription itself (routing/store/reader.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

import redis
from redis.sentinel import Sentinel

SENTINEL_SCHEME = "redis+sentinel"
SCHEMES = ("redis", "rediss", "unix", SENTINEL_SCHEME)
URL_FORMS = "redis://[:password@]host[:port]/db, rediss://, unix://, redis+sentinel://[:password@]h1:26379,h2:26379/master[/db]"


class BadURL(ValueError):
    """A URL no client can be made from (the message never holds its password)."""


@dataclass(frozen=True)
class SentinelTarget:
    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int
    password: str | None
    username: str | None
    sentinel_password: str | None


def parse_sentinel(url: str) -> SentinelTarget:
    """redis+sentinel://[[user]:password@]h1[:26379],h2[:26379]/SERVICE[/DB][?sentinel_password=P]"""
    rest = url.split("://", 1)[1]
    rest, _, query = rest.partition("?")
    where, _, path = rest.partition("/")
    userinfo, at, hosts = where.rpartition("@")
    if not at:
        hosts, userinfo = where, ""
    username = password = None
    if userinfo:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    sentinels = []
    for item in hosts.split(","):
        host, colon, port = item.strip().rpartition(":") if ":" in item else (item.strip(), "", "26379")
        host = host.strip("[]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise BadURL(f"sentinel address {item.strip()!r} is not HOST[:PORT]")
        sentinels.append((host, int(port)))
    parts = [p for p in path.split("/") if p]
    if not parts or len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
        raise BadURL("a Sentinel URL names the master's service and optionally the db: .../mymaster/0")
    options = parse_qs(query)
    sentinel_password = options.get("sentinel_password", [None])[0]
    return SentinelTarget(tuple(sentinels), unquote(parts[0]), int(parts[1]) if len(parts) == 2 else 0,
                          password, username, sentinel_password)


def client(url: str, timeout: float = 2.0, connect_timeout: float | None = None, **options: Any) -> redis.Redis:
    """A client for `url`; nothing is connected yet (Kamailio forks after loading Python).
    `options` go to redis.Redis (decode_responses, ...). Raises BadURL."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in SCHEMES:
        raise BadURL(f"not a Redis URL ({URL_FORMS})")
    common: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": connect_timeout if connect_timeout is not None else timeout,
        **({} if scheme == "unix" else {"socket_keepalive": True}),
        **options,
    }
    if scheme != SENTINEL_SCHEME:
        try:
            return redis.Redis.from_url(url, **common)
        except ValueError as exc:  # a bad port, db, ...
            raise BadURL(f"not a usable Redis URL ({exc})") from None
    target = parse_sentinel(url)
    sentinel_options = {"socket_timeout": common["socket_timeout"], "socket_connect_timeout": common["socket_connect_timeout"],
                        "socket_keepalive": True}
    if target.sentinel_password:
        sentinel_options["password"] = target.sentinel_password
    sentinel = Sentinel(list(target.sentinels), sentinel_kwargs=sentinel_options)
    master: redis.Redis = sentinel.master_for(target.service, db=target.db, password=target.password, username=target.username,
                                              **common)
    return master


def is_sentinel(url: str) -> bool:
    return url.lower().startswith(SENTINEL_SCHEME + "://")


def append_replicated(client: redis.Redis, url: str, stream: str, entries: list[Any], wait_ms: int = 200) -> bool:
    """XADD the entries in one round trip; True once a replica holds them too. Redis
    replicates asynchronously: a master killed right after acknowledging a write takes it
    along, so with Sentinel the same connection asks WAIT for one replica, and a caller that
    gets False sends the entries again later (the consumers ignore a record they already
    have). Without Sentinel there is no replica to wait for: True."""
    pipe = client.pipeline(transaction=False)
    for fields in entries:
        pipe.xadd(stream, fields)
    if is_sentinel(url):
        pipe.execute_command("WAIT", 1, wait_ms)  # type: ignore[no-untyped-call]
    results = pipe.execute()
    return not is_sentinel(url) or int(results[-1]) >= 1


def sentinel_view(url: str, timeout: float = 1.0) -> str:
    """What the sentinels of a redis+sentinel URL say, for `voffice status`: the master,
    its replicas, how many sentinels answer (a NOC wants all three, not just "PONG")."""
    target = parse_sentinel(url)
    answering, master, replicas = 0, None, 0
    for host, port in target.sentinels:
        try:
            sentinel = redis.Redis(host=host, port=port, socket_timeout=timeout, socket_connect_timeout=timeout,
                                   password=target.sentinel_password)
            found = sentinel.sentinel_get_master_addr_by_name(target.service)
            answering += 1
            if master is None and isinstance(found, (tuple, list)):
                host_text = found[0].decode() if isinstance(found[0], bytes) else str(found[0])
                master = f"{host_text}:{found[1]}"
                replicas = sum(1 for r in sentinel.sentinel_slaves(target.service)
                               if "s_down" not in str(r.get("flags", "")) and "disconnected" not in str(r.get("flags", "")))
        except redis.RedisError:
            continue
    where = f"master {master}, {replicas} replica(s) up" if master else "no master known"
    return f"{where}; {answering}/{len(target.sentinels)} sentinels answer"


def replicas_confirming(client: redis.Redis, url: str, timeout_ms: int = 1000) -> int | None:
    """After a write on `client`: how many replicas have it (WAIT; the pool hands the
    connection that wrote back first), or None when the URL has no replicas to ask about."""
    if not is_sentinel(url):
        return None
    return int(client.execute_command("WAIT", 1, timeout_ms))  # type: ignore[no-untyped-call]
