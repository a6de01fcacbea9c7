"""Print the part of requirements.lock the images need: the closure of [project].dependencies,
plus the build system (setuptools, for the editable install) and pip; not the `dev` extra.

Run with the project's venv (`make wheelhouse` does), whose installed distributions give each
package's own requirements: `.venv/bin/python docker/runtime-lock.py > .wheelhouse/runtime.lock`.
The entries are copied from the lock as they are (exact versions and sha256 hashes).
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def closure(roots: list[str]) -> set[str]:
    """Canonical names of the roots and everything they need, extras followed, on this Python."""
    seen: set[tuple[str, frozenset[str]]] = set()
    names: set[str] = set()
    todo = [Requirement(r) for r in roots]
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(req.name)
        key = (name, frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        names.add(name)
        try:
            requires = distribution(name).requires or []
        except PackageNotFoundError:
            sys.exit(f"runtime-lock: {name} is not installed in this venv (make install)")
        for text in requires:
            sub = Requirement(text)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in {"", *req.extras}):
                sub.marker = None
                todo.append(sub)
    return names


def main() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wanted = closure([*project["project"]["dependencies"], *project["build-system"]["requires"], "pip"])
    out: list[str] = []
    keep = False
    found: set[str] = set()
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line.startswith("--"):  # options such as --only-binary
            out.append(line)
        elif m := re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==", line):
            name = canonicalize_name(m[1])
            keep = name in wanted
            if keep:
                found.add(name)
                out.append(line)
        elif keep and line.startswith(" "):
            out.append(line)
        else:
            keep = False
    missing = wanted - found
    if missing:
        sys.exit(f"runtime-lock: not in requirements.lock: {', '.join(sorted(missing))} (make lock)")
    print("# The images' part of requirements.lock (docker/runtime-lock.py): no dev extra.")
    print("\n".join(out))


if __name__ == "__main__":
    main()
