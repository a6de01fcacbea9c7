"""Work over many account documents at once (a load of 100,000): every core, and no
garbage collector walking the heap over and over.

Both matter only in bulk. A document is a tree of ~250 dicts and lists; holding 100,000
of them (and their compiled forms) is tens of millions of containers, and CPython's cyclic
collector walks all of them at every full collection, which comes again each time the heap
grew by a quarter: measured, a third of a validation's time (the trees have no cycles, so
reference counting frees everything anyway). A worker process forked from such a heap
walks the parent's objects too, and writes to their pages as it goes (copy-on-write), so
workers freeze what they inherit first, as the gc module's documentation advises.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

MAX_WORKERS = 8
FREEZE_FROM = 1_000_000  # containers made during a pause (a load of ~4,000 documents)


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection inside (reference counting still frees everything);
    the collector's previous state after.

    What a long pause made is still young to the collector, and its next young collection
    would walk all of it (7 s after a load of 100,000 accounts, measured), then again as it
    ages: a pause that made more than FREEZE_FROM containers freezes what is alive instead
    (gc.freeze: left to reference counting, which frees it when it is dropped)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            if gc.get_count()[0] > FREEZE_FROM:
                gc.freeze()
            gc.enable()


def workers_for(jobs: int, parallel_from: int) -> int:
    """Processes for `jobs` items: this one alone below `parallel_from` (a pool costs tens of
    milliseconds to start, and every result crosses a pipe), else one per core."""
    return min(os.cpu_count() or 1, MAX_WORKERS) if jobs >= parallel_from else 1


def parallel_map(fn: Callable[[T], R], items: list[T], workers: int) -> list[R]:
    """[fn(item) for item in items], over `workers` forked processes when more than one, with
    the results in the items' order. `fn` must be picklable (a module-level function or a
    partial of one)."""
    if workers <= 1:
        return [fn(item) for item in items]
    chunk = max(1, min(500, len(items) // (workers * 8)))
    with paused_gc(), ProcessPoolExecutor(workers, initializer=_start_worker) as pool:
        return list(pool.map(fn, items, chunksize=chunk))


def _start_worker() -> None:
    """A worker forks from a parent whose collector is paused: the inherited heap is frozen
    (never walked, its pages never written), the collector on for what the worker makes
    (an invalid document's jsonschema errors hold cycles)."""
    gc.freeze()
    gc.enable()
