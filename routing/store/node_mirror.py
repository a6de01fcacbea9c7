"""Keeps a machine's node store (routing/store/node_store.py) in step with Redis.

One process per machine (`voffice node-store`). It follows `vo:changes`, the log every load,
delete and override change appends to in the same Lua script that publishes it, with a
blocking XREAD: a stream is read from where we left off, so nothing is missed while we were busy, and a
gap (a trimmed log, a failover that lost entries, a new epoch) is noticed by the message
numbers themselves and answered with a full sync. A full sync reads the whole mapping in
one MULTI (a consistent snapshot) and fetches only the blobs the store lacks, so a
restarted mirror or a 100,000-account load costs what changed, not everything.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import redis

from routing.store import configs, redis_client
from routing.store.configs import CHANGES, OVERRIDES, account_key, shown_url, version_key
from routing.store.node_store import NodeStoreWriter

BATCH = 1000  # blobs per pipelined GET and per write transaction
RETIRED_KEEP_SECONDS = 12 * 3600  # a call keeps its version this long (VOFFICE_CALL_MAX_SECONDS)


class MirrorError(Exception):
    """Redis changed under a full sync three times running (or lost what it points at)."""


class NodeMirror:
    def __init__(self, url: str, path: Path, timeout: float = 5.0, keep_retired: float = RETIRED_KEEP_SECONDS,
                 echo: Callable[[str], None] = lambda s: None):
        self.url = url
        self.store = NodeStoreWriter(path)
        self.timeout = timeout
        self.keep_retired = keep_retired
        self.echo = echo
        self._redis: redis.Redis | None = None
        self.stats = {"full_syncs": 0, "messages": 0, "blobs": 0}

    def _client(self) -> redis.Redis:
        if self._redis is None:
            self._redis = redis_client.client(self.url, timeout=self.timeout)
        return self._redis

    # --- full sync ---------------------------------------------------------------------

    def sync_all(self) -> int:
        """Make the store equal Redis; returns the blobs fetched."""
        for _ in range(3):
            fetched = self._try_sync_all()
            if fetched is not None:
                self.stats["full_syncs"] += 1
                return fetched
        raise MirrorError(f"Redis at {shown_url(self.url)} kept changing during a full sync")

    def _try_sync_all(self) -> int | None:
        r = self._client()
        members: set[bytes] = r.smembers("vo:accounts")  # type: ignore[assignment]
        accounts = sorted(a.decode() for a in members)
        pipe = r.pipeline(transaction=True)  # MULTI/EXEC: one consistent snapshot
        pipe.get("vo:epoch")
        pipe.get("vo:generation")
        pipe.hgetall("vo:numbers")
        pipe.smembers("vo:countries")
        pipe.xrevrange(CHANGES, count=1)
        pipe.scard("vo:accounts")
        pipe.hgetall(OVERRIDES)
        for account in accounts:
            pipe.hget(account_key(account), "current")
        epoch, generation, numbers_raw, countries_raw, last, count, overrides_raw, *currents = pipe.execute()
        if int(count) != len(accounts):
            return None  # a load or delete between SMEMBERS and MULTI
        versions = {a: int(v) for a, v in zip(accounts, currents, strict=True) if v is not None and int(v) > 0}
        meta = self.store.meta()
        if meta["epoch"] is not None and epoch is not None and meta["epoch"] != epoch:
            self.echo("Redis has a new epoch (it lost its data and was loaded anew): the node store starts over")
            self.store.clear()
        wanted = self.store.missing(versions.items())
        fetched = 0
        for start in range(0, len(wanted), BATCH):
            chunk = wanted[start:start + BATCH]
            blobs = self._get_blobs(chunk)
            if blobs is None:
                return None  # trimmed since the snapshot: a newer load; start over
            fetched += self.store.write_blobs(blobs)
        numbers = {k.decode(): v.decode() for k, v in numbers_raw.items()}
        stream = last[0][0].decode() if last else "0-0"
        self.store.switch(numbers, versions, generation=int(generation or 0), epoch=epoch,
                          countries=(c.decode() for c in countries_raw), stream=stream, complete=True,
                          overrides={k.decode(): bytes(v) for k, v in overrides_raw.items()})
        self.stats["blobs"] += fetched
        return fetched

    def _get_blobs(self, wanted: list[tuple[str, int]]) -> list[tuple[str, int, bytes]] | None:
        pipe = self._client().pipeline(transaction=False)
        for account, version in wanted:
            pipe.get(version_key(account, version))
        found = pipe.execute()
        if any(blob is None for blob in found):
            return None
        return [(a, v, blob) for (a, v), blob in zip(wanted, found, strict=True)]

    # --- following ---------------------------------------------------------------------

    def follow_once(self, block_ms: int = 1000) -> int:
        """Apply what the log holds after our position (waiting up to `block_ms` for it);
        returns the messages applied. A gap of any kind: a full sync."""
        meta = self.store.meta()
        if meta["generation"] is None:
            self.sync_all()
            return 0
        r = self._client()
        replies: list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]] = r.xread(  # type: ignore[assignment]
            {CHANGES: meta["stream"]}, count=100, block=block_ms)
        applied = 0
        generation = meta["generation"]
        for _, entries in replies or []:
            for entry_id, fields in entries:
                text = fields[b"m"].decode()
                number_text, _, payload = text.partition(" ")
                # Only the next message will do: anything else (a gap, an older number after
                # Redis lost its data, a "read everything") is answered by a full sync, which
                # also moves our position past it.
                if int(number_text) != generation + 1 or payload == "*" or not self._apply(entry_id.decode(), int(number_text), payload):
                    self.sync_all()
                    return applied
                generation += 1
                applied += 1
        if not replies:  # quiet: check that nothing went by unseen (a failover, a new epoch)
            epoch, remote = r.mget("vo:epoch", "vo:generation")
            if int(remote or 0) != generation or (meta["epoch"] is not None and epoch != meta["epoch"]):
                self.sync_all()
        return applied

    def _apply(self, stream: str, generation: int, payload_text: str) -> bool:
        payload: dict[str, Any] = json.loads(payload_text)
        versions: dict[str, int | None] = {a: int(v) or None for a, v in payload["accounts"].items()}  # 0: deleted
        wanted = self.store.missing((a, v) for a, v in versions.items() if v is not None)
        blobs = self._get_blobs(wanted) if wanted else []
        if blobs is None:
            return False  # trimmed meanwhile: the full sync will take the newest
        self.store.write_blobs(blobs)
        countries = set(self._countries()) | set(payload.get("countries") or [])  # only ever added, as in Redis
        self.store.switch(payload["numbers"], versions, generation=generation, epoch=None, countries=countries, stream=stream,
                          overrides=payload.get("overrides"))
        self.stats["messages"] += 1
        self.stats["blobs"] += len(blobs)
        return True

    def _countries(self) -> list[str]:
        with self.store.env.begin(db=self.store.db[b"meta"]) as txn:
            raw = txn.get(b"countries")
        return list(msgpack.unpackb(raw)) if raw else []

    def run(self, stop: Callable[[], bool], retry: float = 0.5) -> None:
        """Follow until `stop()`; Redis away: keep the store as it is (readers go on
        deciding from it) and try again."""
        purge_at = 0.0
        while not stop():
            try:
                self.follow_once()
                if time.monotonic() >= purge_at:
                    purge_at = time.monotonic() + 60
                    self.store.purge_retired(time.time() - self.keep_retired)
                    self.store.env.reader_check()  # slots of readers that died (kill -9) would pin old pages
            except (redis.RedisError, OSError, MirrorError) as exc:
                self.echo(f"Redis at {shown_url(self.url)}: {exc}; the node store keeps generation "
                          f"{self.store.meta()['generation']} and retries")
                self._redis = None
                time.sleep(retry)


def default_url() -> str:
    return configs.redis_url(None)
