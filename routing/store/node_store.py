"""The node store: every loaded account of the cluster in one LMDB file per machine,
memory-mapped read-only by every Kamailio worker and media server on it.

Why: a compiled account costs ~25 KiB of Python objects per process, so 100,000 accounts
cannot be cached by each of a node's processes (2.4 GiB apiece) and a miss costs a Redis
round trip plus a rebuild. Here each account version is kept once per machine as two
msgpack blobs: its decision part (~300 bytes: zone, calendar, rules; what `decide` needs)
and its whole compiled form (read only when a call goes on to its scenario). The page
cache holds one copy for all processes; a worker builds a decision form from the small
blob in ~10 us and keeps a bounded LRU of them.

One writer, `NodeMirror` (routing/store/node_mirror.py), keeps the file in step with
Redis; readers never write. LMDB's MVCC gives what the Redis store gives: a load's
accounts and numbers switch in one transaction, a reader sees all of them or none, and a
worker started after a load sees it.

    numbers   number -> account id
    current   account id -> current version (8 bytes, big-endian) + its decision part: a
              lookup is two reads (number, account), whatever the worker has cached
    decision  "account\\0version" -> msgpack of engine.decision_part(plain)
    plain     "account\\0version" -> Redis's blob (msgpack of the compiled plain form), zlib'd:
              ~2 KiB instead of 4.8, so it fits an LMDB page instead of two overflow pages
    retired   "account\\0version" -> when it stopped being current (unix seconds, ASCII);
              kept for in-flight calls, purged after VOFFICE_CALL_MAX_SECONDS
    overrides account id -> its manual override (JSON, as vo:overrides holds it): switched in
              the same transactions, from the same messages (routing/store/overrides.py)
    meta      format, generation, epoch, countries (msgpack), stream (last vo:changes id), synced_at
"""

from __future__ import annotations

import json
import time
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import lmdb
import msgpack

from routing.core.engine import CompiledAccount, decision_part
from routing.core.numbers import did_candidates
from routing.core.override import Override
from routing.store.reader import ConfigReader, StoreUnavailable, cached, parse_override, remember

FORMAT = b"3"  # of what is stored; a store of another format is cleared and synced anew (3: overrides)
MAP_SIZE = 64 << 30  # address space only; the file grows with what it holds
MAX_READERS = 2048
DATABASES = (b"numbers", b"current", b"decision", b"plain", b"retired", b"overrides", b"meta")


def _version(current_value: bytes | memoryview) -> int:
    return int.from_bytes(current_value[:8], "big")


def version_key(account: str, version: int) -> bytes:
    return f"{account}\0{version}".encode()


def split_version_key(key: bytes) -> tuple[str, int]:
    account, _, version = bytes(key).decode().partition("\0")
    return account, int(version)


def _open(path: Path, readonly: bool) -> tuple[lmdb.Environment, dict[bytes, Any]]:
    env = lmdb.open(str(path), map_size=MAP_SIZE, max_dbs=len(DATABASES), max_readers=MAX_READERS,
                    readonly=readonly, create=not readonly, sync=False, metasync=False, readahead=False)
    # (without a txn= of ours: a handle opened in a read transaction dies with it)
    dbs = {name: env.open_db(name, create=not readonly) for name in DATABASES}
    return env, dbs


class NodeStoreWriter:
    """The mirror's side: blobs first (invisible until pointed at), then one switch."""

    def __init__(self, path: Path):
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.env, self.db = _open(path, readonly=False)
        with self.env.begin(db=self.db[b"meta"]) as txn:
            stored = txn.get(b"format")
        if stored != FORMAT:
            self.clear()

    def close(self) -> None:
        self.env.close()

    def meta(self) -> dict[str, Any]:
        with self.env.begin(db=self.db[b"meta"]) as txn:
            raw = {bytes(k).decode(): bytes(v) for k, v in txn.cursor()}
        return {
            "generation": int(raw["generation"]) if "generation" in raw else None,
            "epoch": raw.get("epoch"),
            "stream": raw.get("stream", b"0-0").decode(),
            "synced_at": float(raw["synced_at"]) if "synced_at" in raw else None,
        }

    def current(self) -> dict[str, int]:
        with self.env.begin(db=self.db[b"current"]) as txn:
            return {bytes(k).decode(): _version(v) for k, v in txn.cursor()}

    def missing(self, wanted: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
        with self.env.begin(db=self.db[b"decision"]) as txn:
            return [(a, v) for a, v in wanted if txn.get(version_key(a, v)) is None]

    def write_blobs(self, blobs: Iterable[tuple[str, int, bytes]]) -> int:
        count = 0
        with self.env.begin(write=True) as txn:
            for account, version, blob in blobs:
                key = version_key(account, version)
                part = decision_part(msgpack.unpackb(blob, raw=False))
                txn.put(key, msgpack.packb(part), db=self.db[b"decision"])
                txn.put(key, zlib.compress(blob, 6), db=self.db[b"plain"])
                count += 1
        return count

    def switch(self, numbers: Mapping[str, str | None], versions: Mapping[str, int | None], *, generation: int,
               epoch: bytes | None, countries: Iterable[str], stream: str, complete: bool = False,
               overrides: Mapping[str, Any] | None = None) -> None:
        """One transaction: numbers, current versions and overrides (as JSON-ready data) as
        given (None: gone); with `complete`, they are the whole truth and everything else goes."""
        now = f"{time.time():.0f}".encode()
        with self.env.begin(write=True) as txn:
            numbers_db, current_db, retired_db = self.db[b"numbers"], self.db[b"current"], self.db[b"retired"]
            if complete:
                for key in [bytes(k) for k in txn.cursor(db=numbers_db).iternext(values=False)]:
                    if key.decode() not in numbers:
                        txn.delete(key, db=numbers_db)
                for key, value in [(bytes(k), bytes(v)) for k, v in txn.cursor(db=current_db)]:
                    if key.decode() not in versions:
                        txn.delete(key, db=current_db)
                        txn.put(version_key(key.decode(), _version(value)), now, db=retired_db)
            for number, owner in numbers.items():
                if owner is None:
                    txn.delete(number.encode(), db=numbers_db)
                else:
                    txn.put(number.encode(), owner.encode(), db=numbers_db)
            for account, version in versions.items():
                old = txn.get(account.encode(), db=current_db)
                if old is not None and (version is None or _version(old) != version):
                    txn.put(version_key(account, _version(old)), now, db=retired_db)
                if version is None:
                    txn.delete(account.encode(), db=current_db)
                elif old is None or _version(old) != version:
                    part = txn.get(version_key(account, version), db=self.db[b"decision"])
                    if part is None:
                        raise KeyError(f"{account} v{version}: its blob was not written before the switch")
                    txn.put(account.encode(), version.to_bytes(8, "big") + part, db=current_db)
                    txn.delete(version_key(account, version), db=retired_db)
            overrides_db = self.db[b"overrides"]
            if complete:
                txn.drop(overrides_db, delete=False)
            for account, value in (overrides or {}).items():
                if value is None:
                    txn.delete(account.encode(), db=overrides_db)
                else:
                    raw = value if isinstance(value, bytes) else json.dumps(value, ensure_ascii=False).encode()
                    txn.put(account.encode(), raw, db=overrides_db)
            meta = self.db[b"meta"]
            txn.put(b"generation", str(generation).encode(), db=meta)
            if epoch is not None:
                txn.put(b"epoch", epoch, db=meta)
            txn.put(b"countries", msgpack.packb(sorted(set(countries))), db=meta)
            txn.put(b"stream", stream.encode(), db=meta)
            txn.put(b"synced_at", f"{time.time():.3f}".encode(), db=meta)

    def purge_retired(self, older_than: float) -> int:
        """Drop versions no call can still be on (retired before `older_than`)."""
        gone = 0
        with self.env.begin(write=True) as txn:
            for key, when in [(bytes(k), bytes(v)) for k, v in txn.cursor(db=self.db[b"retired"])]:
                if float(when) < older_than:
                    for name in (b"retired", b"decision", b"plain"):
                        txn.delete(key, db=self.db[name])
                    gone += 1
        return gone

    def clear(self) -> None:
        """Redis lost its data (a new epoch): versions restarted, nothing here can be trusted."""
        with self.env.begin(write=True) as txn:
            for name in DATABASES:
                txn.drop(self.db[name], delete=False)
            txn.put(b"format", FORMAT, db=self.db[b"meta"])


class NodeReader:
    """A worker's reader of the node store; the same interface as ConfigReader.

    Nothing is opened at construction: Kamailio forks after loading Python, and an LMDB
    environment must be opened in the process that uses it."""

    def __init__(self, path: str | Path, max_accounts: int = 10_000, opened: NodeStoreWriter | None = None):
        self.path = Path(path)
        self.max_accounts = max_accounts
        # LMDB allows one open environment per file and process: a reader in the mirror's
        # own process (tests) reads through the writer's.
        self._env: lmdb.Environment | None = opened.env if opened else None
        self._db: dict[bytes, Any] = opened.db if opened else {}
        self._compiled: OrderedDict[tuple[str, int], CompiledAccount] = OrderedDict()
        self._last_versions: OrderedDict[str, int] = OrderedDict()
        self._override_read: tuple[str | None, bytes | None] = (None, None)  # (account, its override) of the last lookup
        self.stats = {"hits": 0, "misses": 0}

    # --- the ConfigReader interface ------------------------------------------------------

    def account_for_number(self, raw_number: str) -> CompiledAccount | None:
        found = self.lookup(raw_number)
        return found[0] if found else None

    def lookup(self, raw_number: str) -> tuple[CompiledAccount, str] | None:
        with self._begin() as txn:
            number = raw_number
            owner = txn.get(number.encode(), db=self._db[b"numbers"])
            if owner is None:
                countries = txn.get(b"countries", db=self._db[b"meta"])
                for candidate in did_candidates(raw_number, frozenset(msgpack.unpackb(countries) if countries else ())):
                    owner = txn.get(candidate.encode(), db=self._db[b"numbers"])
                    if owner is not None:
                        number = candidate
                        break
                else:
                    return None
            account = self._current(txn, bytes(owner).decode())
            return (account, number) if account else None

    def account(self, account_id: str) -> CompiledAccount | None:
        with self._begin() as txn:
            return self._current(txn, account_id)

    def version_of(self, account_id: str) -> int:
        return self._last_versions[account_id]

    def override_of(self, account_id: str) -> Override | None:
        """The account's manual override as the mirror last wrote it: read in the same
        transaction as the lookup that found the account (no second one per call); only an
        account that has one pays for parsing it. That read serves once: asked again, or
        for another account, it is read anew."""
        if self._override_read[0] == account_id:
            raw = self._override_read[1]
            self._override_read = (None, None)
        else:
            with self._begin() as txn:
                found = txn.get(account_id.encode(), db=self._db[b"overrides"])
                raw = bytes(found) if found is not None else None
        return parse_override(raw) if raw is not None else None

    def account_version(self, account_id: str, version: int) -> CompiledAccount | None:
        """A specific version (a call keeps the version it started with), None once the
        mirror has purged it, even if this worker's LRU still holds its decision form."""
        with self._begin() as txn:
            part = txn.get(version_key(account_id, version), db=self._db[b"decision"])
            return self._compiled_version(txn, account_id, version, part) if part is not None else None

    def warm(self, preload: int = 0) -> None:
        """Nothing to preload: every account is already on this machine."""

    def cached_accounts(self) -> int:
        return len(self._compiled)

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None

    def summary(self) -> tuple[int | None, int, float | None]:
        """(generation, accounts, when the mirror last wrote) for `voffice status`."""
        with self._begin() as txn:
            generation = txn.get(b"generation", db=self._db[b"meta"])
            synced_at = txn.get(b"synced_at", db=self._db[b"meta"])
            accounts = txn.stat(self._db[b"current"])["entries"]
            return (int(bytes(generation)) if generation is not None else None, accounts,
                    float(bytes(synced_at)) if synced_at is not None else None)

    def generation(self) -> int | None:
        with self._begin() as txn:
            raw = txn.get(b"generation", db=self._db[b"meta"])
            return int(raw) if raw is not None else None

    # --- inside ------------------------------------------------------------------------

    def _begin(self) -> lmdb.Transaction:
        if self._env is None:
            if not (self.path / "data.mdb").exists():
                raise StoreUnavailable(f"the node store {self.path} does not exist yet (is `voffice node-store` running?)")
            try:
                self._env, self._db = _open(self.path, readonly=True)
            except lmdb.Error as exc:
                raise StoreUnavailable(f"the node store {self.path}: {exc}") from exc
        return self._env.begin(buffers=True)

    def _current(self, txn: lmdb.Transaction, account_id: str) -> CompiledAccount | None:
        raw = txn.get(account_id.encode(), db=self._db[b"current"])
        if raw is None:
            return None
        version = _version(raw)
        compiled = self._compiled_version(txn, account_id, version, raw[8:])
        if compiled is not None:
            remember(self._last_versions, account_id, version, self.max_accounts)
            override = txn.get(account_id.encode(), db=self._db[b"overrides"])
            self._override_read = (account_id, bytes(override) if override is not None else None)
        return compiled

    def _compiled_version(self, txn: lmdb.Transaction, account_id: str, version: int,
                          part: bytes | memoryview | None = None) -> CompiledAccount | None:
        key = (account_id, version)
        compiled: CompiledAccount | None = cached(self._compiled, key)
        if compiled is not None:
            self.stats["hits"] += 1
            return compiled
        raw = part if part is not None else txn.get(version_key(account_id, version), db=self._db[b"decision"])
        if raw is None:
            return None
        self.stats["misses"] += 1
        compiled = CompiledAccount.from_decision(msgpack.unpackb(raw), lambda: self._plain(account_id, version))
        remember(self._compiled, key, compiled, self.max_accounts)
        return compiled

    def _plain(self, account_id: str, version: int) -> dict[str, Any]:
        with self._begin() as txn:
            raw = txn.get(version_key(account_id, version), db=self._db[b"plain"])
            if raw is None:
                raise StoreUnavailable(f"account {account_id!r} version {version} is no longer in the node store")
            plain: dict[str, Any] = msgpack.unpackb(zlib.decompress(raw), raw=False)
            return plain


def reader_from_env(env: Mapping[str, str], redis_url: str | None, max_accounts: int = 10_000,
                    check_interval: float = 0.1) -> NodeReader | ConfigReader:
    """The node store when this machine has one (VOFFICE_NODE_STORE), else a per-process
    cache read from Redis (a media server in its own container, say)."""
    path = env.get("VOFFICE_NODE_STORE", "")
    if path:
        return NodeReader(path, max_accounts=max_accounts)
    return ConfigReader(redis_url, max_accounts=max_accounts, check_interval=check_interval)
