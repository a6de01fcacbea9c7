"""Fuzz every parser and the config loader with many more examples than the test suite.

    .venv/bin/python bench/fuzz.py --examples 20000            # every target
    .venv/bin/python bench/fuzz.py --examples 5000 --target sdp --target rtp

The targets are the ones of tests/test_fuzz.py (tests/fuzz_targets.py). Per target it prints
the inputs tried, how many got through the parser (a message that parsed, a clean account
document...), the crashes (an exception other than the documented one, or a broken
property: must be 0) and the time. A crash is not shrunk; its input and traceback are
printed (the first three per target) and the exit code is 1.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fuzz_targets import TARGETS, Target, run  # noqa: E402

SHOWN = 3


def fuzz(target: Target, examples: int) -> tuple[int, int, list[tuple[Any, str]], float]:
    tried = accepted = 0
    crashes: list[tuple[Any, str]] = []

    def on_input(value: Any) -> None:
        nonlocal tried, accepted
        tried += 1
        try:
            accepted += bool(target.check(value))
        except Exception:
            crashes.append((value, traceback.format_exc()))

    start = time.perf_counter()
    run(target, examples, on_input, shrink=False, database=False)
    return tried, accepted, crashes, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=2000, help="examples per target (default 2000)")
    parser.add_argument("--target", action="append", choices=[t.name for t in TARGETS], help="only this target (repeatable)")
    args = parser.parse_args()
    chosen = [t for t in TARGETS if not args.target or t.name in args.target]
    print(f"{'target':<17} {'inputs':>8} {'accepted':>9} {'crashes':>8} {'seconds':>8}  code under test", flush=True)
    total_crashes = 0
    all_crashes: list[tuple[str, Any, str]] = []
    for target in chosen:
        tried, accepted, crashes, seconds = fuzz(target, args.examples)
        total_crashes += len(crashes)
        all_crashes += [(target.name, value, tb) for value, tb in crashes[:SHOWN]]
        print(f"{target.name:<17} {tried:>8} {accepted:>9} {len(crashes):>8} {seconds:>8.1f}  {target.what}", flush=True)
    for name, value, tb in all_crashes:
        print(f"\n--- {name}: {value!r:.2000}\n{tb}")
    print(f"\n{total_crashes} crash(es)")
    return 1 if total_crashes else 0


if __name__ == "__main__":
    sys.exit(main())
