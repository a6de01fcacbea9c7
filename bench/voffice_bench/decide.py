"""`voffice bench decide`: how fast the engine answers, with thousands of accounts cached.

Not a test: it prints figures. Each run also measures its baselines on the same machine
in the same run: an in-process dict lookup (the floor) and one Redis GET round trip on
loopback (what every decision would cost if the cache were not there).
"""

from __future__ import annotations

import copy
import gc
import json
import multiprocessing
import random
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from routing.core.engine import decide
from routing.core.validation import validate_paths
from routing.stack.redis_server import RedisServer
from routing.store import configs
from routing.store.node_mirror import NodeMirror
from routing.store.node_store import NodeReader
from routing.store.reader import ConfigReader

ZONES = [
    ("Europe/Moscow", "RU", "+7495", "+7916"),
    ("Europe/Berlin", "DE", "+4930", "+49151"),
    ("America/New_York", "US", "+1212", "+1917"),
    ("Asia/Tokyo", "JP", "+813", "+8190"),
    ("Europe/London", "GB", "+4420", "+447700"),
    ("Asia/Dubai", "AE", "+9714", "+97150"),
]


def generate_accounts(template: dict[str, Any], count: int, numbers_per_account: int = 2, seed: int = 1,
                      zones: int = len(ZONES)) -> list[dict[str, Any]]:
    """Distinct, valid accounts shaped like the seed, spread over the first `zones` of six time zones."""
    rng = random.Random(seed)
    docs = []
    for i in range(count):
        zone, country, landline, mobile = ZONES[i % zones]
        doc = copy.deepcopy(template)
        doc.pop("$schema", None)
        doc["account"] = f"bench-{i:05d}"
        doc["name"] = f"Bench account {i}"
        doc["timezone"] = zone
        doc["calendar"] = {"country": country, "holidays": [], "workdays": []}
        doc["numbers"] = [f"+1555{i:05d}{k:02d}" for k in range(numbers_per_account)]
        for j, op in enumerate(doc["operators"]):
            op["phone"] = f"+1556{i:05d}{j:02d}"
        doc["caller_lists"][0]["patterns"] = [
            f"{landline}{rng.randrange(10)}*",
            f"{mobile}{rng.randrange(10)}" + "?" * (11 - len(mobile)),
        ]
        start = rng.choice([8, 9, 10])
        doc["schedules"][0]["intervals"] = [[f"{start:02d}:00", f"{start + 9:02d}:00"]]
        docs.append(doc)
    return docs


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, int(fraction * len(sorted_values)))
    return sorted_values[index]


def rss_kib(field: str = "VmRSS") -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


@dataclass
class Timing:
    name: str
    samples_ns: list[int]

    def row(self) -> str:
        values = sorted(self.samples_ns)
        mean = statistics.fmean(values)
        return (
            f"{self.name:<34} {1e9 / mean:>12,.0f}/s  p50 {percentile(values, 0.5) / 1000:>7.2f} us"
            f"  p99 {percentile(values, 0.99) / 1000:>7.2f} us  max {values[-1] / 1000:>8.1f} us"
        )


def time_each(name: str, fn: Callable[[int], object], n: int) -> Timing:
    clock = time.perf_counter_ns
    samples = [0] * n
    gc.disable()
    try:
        for i in range(n):
            t0 = clock()
            fn(i)
            samples[i] = clock() - t0
    finally:
        gc.enable()
    return Timing(name, samples)


def run_decide_bench(template: dict[str, Any], accounts: int, decisions: int, redis_url: str | None, echo: Callable[[str], None]) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="voffice-bench-"))
    server = None
    if redis_url is None:
        server = RedisServer(workdir / "redis")
        server.start()
        redis_url = server.url
    try:
        return _bench(template, accounts, decisions, redis_url, workdir, echo)
    finally:
        if server is not None:
            server.stop()


def _one_account_load(doc: dict[str, Any], accounts: int, url: str, workdir: Path) -> str:
    """One account changed among all those loaded: the whole `voffice load` (a new process,
    as a NOC engineer runs it), then its parts in this process, each with another change."""
    path = workdir / "one-account.json"
    path.write_text(json.dumps({**doc, "name": "Changed by the bench"}, ensure_ascii=False), encoding="utf-8")
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "routing.cli.console", "load", str(path), "--redis", url, "--quiet"],
                          capture_output=True, text=True, check=False)
    t1 = time.perf_counter()
    if done.returncode != 0:
        raise RuntimeError(f"voffice load of one account failed: {done.stderr.strip()}")
    path.write_text(json.dumps({**doc, "name": "Changed again by the bench"}, ensure_ascii=False), encoding="utf-8")
    r = configs.connect(url, timeout=30)
    t2 = time.perf_counter()
    validated = validate_paths([str(path)], with_compiled=True)
    t3 = time.perf_counter()
    changes, problems = configs.plan_load(r, validated.documents, validated.compiled)
    t4 = time.perf_counter()
    result = configs.apply_load(r, changes)
    t5 = time.perf_counter()
    assert validated.ok and not problems and len(result.versions) == 1
    return (f"load of one changed account among {accounts}: {t1 - t0:.2f} s for `voffice load` (target < 1 s);"
            f" in process: validate {(t3 - t2) * 1000:.0f} ms + compile/diff {(t4 - t3) * 1000:.0f} ms"
            f" + write/swap {(t5 - t4) * 1000:.0f} ms")


def _bench(template: dict[str, Any], accounts: int, decisions: int, url: str, workdir: Path, echo: Callable[[str], None]) -> dict[str, Any]:
    docs = generate_accounts(template, accounts)
    files_dir = workdir / "accounts"
    files_dir.mkdir()
    for doc in docs:
        (files_dir / f"{doc['account']}.json").write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    echo(f"{accounts} accounts, {sum(len(d['numbers']) for d in docs)} numbers, Redis {url}")

    r = configs.connect(url, timeout=30)
    t0 = time.perf_counter()
    validated = validate_paths([str(files_dir)], with_compiled=True)
    t1 = time.perf_counter()
    assert validated.ok, validated.problems[:3]
    changes, problems = configs.plan_load(r, validated.documents, validated.compiled)
    assert not problems
    t2 = time.perf_counter()
    result = configs.apply_load(r, changes)
    t3 = time.perf_counter()
    echo(
        f"load: validate {t1 - t0:.1f} s + compile/diff {t2 - t1:.1f} s + write/swap {t3 - t2:.1f} s"
        f" = {t3 - t0:.1f} s for {len(result.versions)} accounts (target < 60 s)"
    )
    echo(_one_account_load(docs[accounts // 2], accounts, url, workdir))

    rng = random.Random(7)
    numbers = [n for d in docs for n in d["numbers"]]
    base = datetime(2026, 11, 23, tzinfo=UTC)
    calls = []
    for _ in range(decisions):
        zone = rng.choice(ZONES)
        caller = rng.choice([zone[2], zone[3], "+7903", "8495"]) + "".join(rng.choice("0123456789") for _ in range(7))
        at = base + timedelta(minutes=rng.randrange(7 * 24 * 60))
        calls.append((rng.choice(numbers), caller, at))

    cached = _cached_reader_figures(url, accounts, numbers, calls, decisions, echo)
    gc.collect()  # the per-process cache's 25 KiB per account, freed before the node store's figures
    store = _node_store_figures(url, workdir, accounts, numbers, calls, decisions, echo)
    return {"accounts": accounts, "load_seconds": t3 - t0, "validate_seconds": t1 - t0, **cached, **store}


def _cached_reader_figures(url: str, accounts: int, numbers: list[str], calls: list[tuple[str, str, datetime]],
                           decisions: int, echo: Callable[[str], None]) -> dict[str, Any]:
    """Today's per-process cache (ConfigReader), every account warmed: the baseline."""
    gc.collect()
    rss_before = rss_kib()
    reader = ConfigReader(url, max_accounts=accounts, check_interval=0.1)
    t4 = time.perf_counter()
    compiled = {n: reader.account_for_number(n) for n in numbers}
    t5 = time.perf_counter()
    gc.collect()
    rss_after = rss_kib()
    assert all(a is not None for a in compiled.values())
    echo(f"cache: {reader.cached_accounts()} compiled accounts warmed in {t5 - t4:.1f} s, RSS +{(rss_after - rss_before) / 1024:.1f} MiB ({(rss_after - rss_before) / accounts:.1f} KiB per account)")

    accounts_by_number = {n: a for n, a in compiled.items() if a is not None}
    plain_dict = {n: a.id for n, a in accounts_by_number.items()}
    client = configs.connect(url)
    timings = [
        time_each("baseline: dict lookup", lambda i: plain_dict.get(calls[i][0]), decisions),
        time_each("baseline: Redis GET (loopback)", lambda i: client.hget("vo:numbers", calls[i][0]), min(decisions, 20_000)),
        time_each("decide (account in hand)", lambda i: decide(accounts_by_number[calls[i][0]], calls[i][0], calls[i][1], calls[i][2]), decisions),
        time_each(
            "lookup + decide (cached reader)",
            lambda i: as_kemi(reader, calls[i]),
            decisions,
        ),
    ]
    for timing in timings:
        echo(timing.row())
    full = sorted(timings[3].samples_ns)
    p99_us = percentile(full, 0.99) / 1000
    echo(f"p99 of a cached decision: {p99_us:.1f} us (target < 50 us): {'OK' if p99_us < 50 else 'MISSED'}")
    return {
        "cache_rss_mib": (rss_after - rss_before) / 1024,
        "decide_p50_us": percentile(sorted(timings[2].samples_ns), 0.5) / 1000,
        "decide_p99_us": percentile(sorted(timings[2].samples_ns), 0.99) / 1000,
        "lookup_decide_p99_us": p99_us,
        "reader_stats": reader.stats,
    }


def as_kemi(reader: ConfigReader | NodeReader, call: tuple[str, str, datetime]) -> object:
    """One decision as routing/proxy/kemi.py makes it: the lookup, the account's manual
    override (none here: the cost of asking), then decide."""
    number, caller, at = call
    found = reader.lookup(number)
    assert found is not None
    return decide(found[0], found[1], caller, at, reader.override_of(found[0].id))


def _node_store_figures(url: str, workdir: Path, accounts: int, numbers: list[str], calls: list[tuple[str, str, datetime]],
                        decisions: int, echo: Callable[[str], None]) -> dict[str, Any]:
    """The same decisions from the node store (one memory map per machine, a bounded LRU of
    decision forms per worker), on calls spread over every account: the case a per-process
    cache cannot serve at 100,000 accounts."""
    store_dir = workdir / "store"
    mirror = NodeMirror(url, store_dir)
    t0 = time.perf_counter()
    mirror.sync_all()
    synced = time.perf_counter() - t0
    size_mib = (store_dir / "data.mdb").stat().st_size / 2**20
    echo(f"node store: {accounts} accounts mirrored in {synced:.1f} s; {size_mib:.0f} MiB once per machine, "
         f"shared by every worker ({size_mib * 1024 / accounts:.1f} KiB per account)")
    limit = min(accounts, 10_000)
    # Measured in a new process, as a Kamailio worker is: not in this one, whose heap the
    # per-process cache above grew to gigabytes and freed.
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        lru_mib, cached, first, timing, stats = pool.apply(_worker_figures, (str(store_dir), limit, numbers[-limit * 2:], calls))
    echo(f"node store reader: LRU of {cached} decision forms, {lru_mib:.1f} MiB of Python objects "
         f"({lru_mib * 1024 / max(1, cached):.1f} KiB per account); a miss reads ~300 bytes from the map")
    echo(first.row())
    echo(timing.row())
    samples = sorted(timing.samples_ns)
    p99_us = percentile(samples, 0.99) / 1000
    hit_rate = stats["hits"] / max(1, stats["hits"] + stats["misses"])
    echo(f"p99 of a node-store decision on any account ({hit_rate:.0%} LRU hits; pages mapped by the pass before): "
         f"{p99_us:.1f} us (target < 50 us): {'OK' if p99_us < 50 else 'MISSED'}")
    return {"store_sync_seconds": synced, "store_mib": size_mib, "store_lru_mib": lru_mib,
            "store_lookup_decide_p99_us": p99_us, "store_first_p99_us": percentile(sorted(first.samples_ns), 0.99) / 1000, "store_hit_rate": hit_rate}


def _worker_figures(store: str, limit: int, warm: list[str], calls: list[tuple[str, str, datetime]]
                    ) -> tuple[float, int, Timing, Timing, dict[str, int]]:
    """In a fresh process: fill the LRU, then a first pass (pages mapped as touched; the page
    cache is shared) and a second pass (a worker that has run a while) over the calls."""
    reader = NodeReader(store, max_accounts=limit)
    tracemalloc.start()
    for number in warm:
        reader.account_for_number(number)
    lru_mib = tracemalloc.get_traced_memory()[0] / 2**20
    tracemalloc.stop()

    def one(i: int) -> object:
        return as_kemi(reader, calls[i])

    first = time_each("lookup + decide (node store, 1st)", one, len(calls))
    reader.stats.update(hits=0, misses=0)
    timing = time_each("lookup + decide (node store, any)", one, len(calls))
    return lru_mib, reader.cached_accounts(), first, timing, dict(reader.stats)
