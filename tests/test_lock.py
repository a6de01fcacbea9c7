"""requirements.lock agrees with pyproject.toml.

`make install` installs only what requirements.lock pins (exact versions, sha256 hashes); pyproject.toml
keeps the ranges. `make lock` (uv pip compile) makes the lock from pyproject: [project].dependencies,
the dev extra, [build-system].requires and pip. These tests fail when the two disagree: a requirement
missing from the lock or pinned outside its range, an entry without `==` or without hashes, or a
dependency added to or removed from pyproject without re-locking (uv annotates the project's direct
requirements `# via voffice (pyproject.toml)`; the build tools and pip, given on stdin, carry no
annotation). Pure and offline: tomllib and packaging read the two files.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
LOCK = ROOT / "requirements.lock"
DEV_EXTRA = "dev"
PROJECT_VIA = "voffice (pyproject.toml)"  # uv's annotation of a requirement taken from pyproject.toml
ALWAYS_LOCKED = ("pip",)  # not in pyproject: `make lock` adds it, `make install` upgrades to it first
FIX = "pyproject.toml and requirements.lock disagree: run `make lock` (then `make install`) and commit both"
# What `make lock` resolves for: Debian 12's CPython 3.11 on x86_64.
TARGET = {
    "python_version": "3.11",
    "python_full_version": "3.11.2",
    "os_name": "posix",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "extra": "",
}


@dataclass
class Pin:
    """One entry of the lock: `name==version` (version None if not pinned with ==), its hashes and
    what its `# via` annotation names."""

    line: str
    version: str | None
    hashes: list[str] = field(default_factory=list)
    via: set[str] = field(default_factory=set)


@dataclass
class Wanted:
    """pyproject's requirements, by where they come from."""

    project: list[tuple[str, Requirement]]  # [project].dependencies and the dev extra
    build: list[tuple[str, Requirement]]  # [build-system].requires


ENTRY = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*(?P<op>===?|[<>!~]=?)?\s*(?P<version>[^\s;\\]*)")


def parse_lock(path: Path) -> dict[str, Pin]:
    """The lock's entries by canonical name (pip's requirements format as `uv pip compile` writes it)."""
    pins: dict[str, Pin] = {}
    current: Pin | None = None
    via_list = False
    for raw in path.read_text().splitlines():
        line = raw.rstrip().removesuffix("\\").rstrip()
        if not line or line[0] in "#-":  # blank, the header's comments, options such as --only-binary
            current, via_list = None, False
            continue
        if not line[0].isspace():
            m = ENTRY.match(line)
            if m is None:
                raise AssertionError(f"requirements.lock: cannot read {raw!r}. {FIX}")
            version = m["version"] if m["op"] == "==" and m["version"] else None
            current = pins[canonicalize_name(m["name"])] = Pin(line=line, version=version)
            via_list = False
            continue
        if current is None:
            continue
        text = line.strip()
        if text.startswith("--hash="):
            current.hashes.append(text.removeprefix("--hash="))
        elif text == "# via":
            via_list = True
        elif text.startswith("# via "):
            current.via.update(v.strip() for v in text.removeprefix("# via ").split(","))
            via_list = False
        elif via_list and text.startswith("#   "):
            current.via.add(text.removeprefix("#").strip())
    return pins


def wanted(pyproject: Path) -> Wanted:
    data = tomllib.loads(pyproject.read_text())
    project = data.get("project", {})
    sources = [("[project].dependencies", r) for r in project.get("dependencies", [])]
    sources += [
        (f"[project.optional-dependencies].{DEV_EXTRA}", r)
        for r in project.get("optional-dependencies", {}).get(DEV_EXTRA, [])
    ]
    build = [("[build-system].requires", r) for r in data.get("build-system", {}).get("requires", [])]

    def applicable(items: list[tuple[str, str]]) -> list[tuple[str, Requirement]]:
        reqs = [(where, Requirement(text)) for where, text in items]
        return [(where, req) for where, req in reqs if req.marker is None or req.marker.evaluate(TARGET)]

    return Wanted(project=applicable(sources), build=applicable(build))


def out_of_range(pyproject: Path, lock: Path) -> list[str]:
    """Every requirement of pyproject (runtime, dev extra, build system) and pip: pinned with ==, hashed,
    at a version inside pyproject's range."""
    pins = parse_lock(lock)
    want = wanted(pyproject)
    problems = []
    for where, req in [*want.project, *want.build, *(("Makefile", Requirement(n)) for n in ALWAYS_LOCKED)]:
        pin = pins.get(canonicalize_name(req.name))
        if pin is None:
            problems.append(f"{where}: {req} is not in requirements.lock")
        elif pin.version is None:
            problems.append(f"{where}: {req} is not pinned with == in requirements.lock ({pin.line!r})")
        elif not pin.hashes:
            problems.append(f"{where}: {req} has no --hash in requirements.lock")
        else:
            try:
                version = Version(pin.version)
            except InvalidVersion:
                problems.append(f"{where}: {req}: requirements.lock pins the invalid version {pin.version!r}")
                continue
            if not req.specifier.contains(version, prereleases=True):
                problems.append(f"{where}: {req}: requirements.lock pins {req.name}=={pin.version}, outside the range")
    return problems


def unhashed(lock: Path) -> list[str]:
    """Every entry of the lock is pinned with == and has at least one hash (pip --require-hashes needs both)."""
    problems = []
    for name, pin in parse_lock(lock).items():
        if pin.version is None:
            problems.append(f"requirements.lock: {name} is not pinned with == ({pin.line!r})")
        if not pin.hashes:
            problems.append(f"requirements.lock: {name} has no --hash")
    return problems


def direct_mismatch(pyproject: Path, lock: Path) -> list[str]:
    """What the lock says pyproject requires is what pyproject requires; entries with no `# via` are
    only the build system's requirements and pip."""
    pins = parse_lock(lock)
    want = wanted(pyproject)
    declared = {canonicalize_name(req.name) for _, req in want.project}
    locked_direct = {name for name, pin in pins.items() if PROJECT_VIA in pin.via}
    tools = {canonicalize_name(req.name) for _, req in want.build} | set(ALWAYS_LOCKED)
    orphans = {name for name, pin in pins.items() if not pin.via} - tools
    problems = [
        f"pyproject.toml requires {name}, but requirements.lock was not made with it (no `# via {PROJECT_VIA}`)"
        for name in sorted(declared - locked_direct)
    ]
    problems += [
        f"requirements.lock was made with {name} as a requirement of pyproject.toml, which no longer has it"
        for name in sorted(locked_direct - declared)
    ]
    problems += [
        f"requirements.lock has {name} for no reason (no `# via`, not in [build-system].requires, not pip)"
        for name in sorted(orphans)
    ]
    return problems


def report(problems: list[str]) -> str:
    return "\n".join([*problems, FIX])


def test_pyproject_requirements_are_pinned_in_range() -> None:
    problems = out_of_range(PYPROJECT, LOCK)
    assert not problems, report(problems)


def test_every_lock_entry_is_pinned_and_hashed() -> None:
    problems = unhashed(LOCK)
    assert not problems, report(problems)


def test_lock_was_made_from_these_requirements() -> None:
    problems = direct_mismatch(PYPROJECT, LOCK)
    assert not problems, report(problems)


def test_lock_is_for_wheels_only() -> None:
    # `make install` builds nothing but the project itself (with the locked setuptools).
    assert "--only-binary :all:" in LOCK.read_text().splitlines(), report(["requirements.lock lacks --only-binary :all:"])


# The checks catch disagreement: each case edits the requirements that requirements.lock says it was made
# from, written as a pyproject.toml (its direct requirements at >= their pins as dependencies, its entries
# with no `# via` but pip as the build system's), or edits a copy of the lock, and expects the problems the
# edit adds (so these pass whether or not the real files agree).

Requirements = tuple[list[str], list[str], list[str]]  # [project].dependencies, the dev extra, the build system's


def write_pyproject(path: Path, deps: list[str], dev: list[str], build: list[str]) -> Path:
    q = json.dumps  # a JSON string of ASCII text is a TOML basic string
    path.write_text(
        f"[build-system]\nrequires = [{', '.join(map(q, build))}]\n\n"
        f'[project]\nname = "voffice"\nversion = "0"\ndependencies = [{", ".join(map(q, deps))}]\n\n'
        f"[project.optional-dependencies]\n{DEV_EXTRA} = [{', '.join(map(q, dev))}]\n"
    )
    return path


def all_problems(pyproject: Path, lock: Path) -> list[str]:
    return out_of_range(pyproject, lock) + unhashed(lock) + direct_mismatch(pyproject, lock)


@pytest.fixture
def locked() -> Requirements:
    pins = parse_lock(LOCK)

    def at_least(name: str, pin: Pin) -> str:
        return f"{name}>={pin.version}" if pin.version else name

    # Those pinned and hashed first: the cases below edit the first one.
    deps = [at_least(n, p) for n, p in sorted(pins.items(), key=lambda i: not (i[1].version and i[1].hashes))
            if PROJECT_VIA in p.via]
    build = [at_least(n, p) for n, p in pins.items() if not p.via and n not in ALWAYS_LOCKED]
    assert deps and build
    return deps, [], build


@pytest.fixture
def added(tmp_path: Path, locked: Requirements) -> Callable[..., list[str]]:
    """The problems of a pyproject with these requirements (default: `locked`) and this lock (default:
    requirements.lock) that `locked` and requirements.lock have not."""
    before = set(all_problems(write_pyproject(tmp_path / "before.toml", *locked), LOCK))

    def problems(deps: list[str] = locked[0], dev: list[str] = locked[1], build: list[str] = locked[2],
                 lock: Path = LOCK) -> list[str]:
        pyproject = write_pyproject(tmp_path / "pyproject.toml", deps, dev, build)
        return [p for p in all_problems(pyproject, lock) if p not in before]

    return problems


def test_a_written_pyproject_reads_as_the_real_one(tmp_path: Path) -> None:
    data = tomllib.loads(PYPROJECT.read_text())
    copy = write_pyproject(
        tmp_path / "pyproject.toml",
        data["project"]["dependencies"],
        data["project"]["optional-dependencies"][DEV_EXTRA],
        data["build-system"]["requires"],
    )
    assert all_problems(copy, LOCK) == all_problems(PYPROJECT, LOCK)


def test_the_locked_requirements_agree(tmp_path: Path, locked: Requirements) -> None:
    pyproject = write_pyproject(tmp_path / "pyproject.toml", *locked)
    assert direct_mismatch(pyproject, LOCK) == []
    assert [p for p in out_of_range(pyproject, LOCK) if "is not in" in p or "outside the range" in p] == []


@pytest.mark.parametrize("section", ["dependencies", "dev"])
def test_an_added_dependency_fails(locked: Requirements, added: Callable[..., list[str]], section: str) -> None:
    deps, dev, _ = locked
    if section == "dependencies":
        problems, where = added(deps=[*deps, "requests>=2"]), "[project].dependencies"
    else:
        problems, where = added(dev=[*dev, "requests>=2"]), f"[project.optional-dependencies].{DEV_EXTRA}"
    assert problems == [
        f"{where}: requests>=2 is not in requirements.lock",
        f"pyproject.toml requires requests, but requirements.lock was not made with it (no `# via {PROJECT_VIA}`)",
    ]
    assert "`make lock`" in report(problems)


def test_an_added_dependency_locked_as_a_transitive_one_fails(
    locked: Requirements, added: Callable[..., list[str]]
) -> None:
    # Pinned, hashed, in range, and yet the lock was not made from this pyproject.
    transitive = next(n for n, p in parse_lock(LOCK).items() if p.via and PROJECT_VIA not in p.via)
    assert added(deps=[*locked[0], transitive]) == [
        f"pyproject.toml requires {transitive}, but requirements.lock was not made with it (no `# via {PROJECT_VIA}`)"
    ]


def test_a_removed_dependency_fails(locked: Requirements, added: Callable[..., list[str]]) -> None:
    removed = Requirement(locked[0][0]).name
    assert added(deps=locked[0][1:]) == [
        f"requirements.lock was made with {removed} as a requirement of pyproject.toml, which no longer has it"
    ]


def test_a_changed_range_fails(locked: Requirements, added: Callable[..., list[str]]) -> None:
    name = Requirement(locked[0][0]).name
    version = parse_lock(LOCK)[name].version
    bound = Version(str(version)).major + 1
    assert added(deps=[f"{name}>={bound}", *locked[0][1:]]) == [
        f"[project].dependencies: {name}>={bound}: requirements.lock pins {name}=={version}, outside the range"
    ]


def test_a_build_requirement_out_of_range_or_removed_fails(
    locked: Requirements, added: Callable[..., list[str]]
) -> None:
    name = Requirement(locked[2][0]).name
    version = parse_lock(LOCK)[name].version
    assert added(build=[f"{name}>=9999", *locked[2][1:]]) == [
        f"[build-system].requires: {name}>=9999: requirements.lock pins {name}=={version}, outside the range"
    ]
    assert added(build=locked[2][1:]) == [
        f"requirements.lock has {name} for no reason (no `# via`, not in [build-system].requires, not pip)"
    ]


def test_an_unhashed_entry_fails(tmp_path: Path, locked: Requirements, added: Callable[..., list[str]]) -> None:
    lock = tmp_path / "requirements.lock"
    lock.write_text(re.sub(r"\n    --hash=\S+(?: \\)?", "", LOCK.read_text()))
    before = set(all_problems(write_pyproject(tmp_path / "before.toml", *locked), LOCK))
    sections = [("[project].dependencies", locked[0]), ("[build-system].requires", locked[2]), ("Makefile", ["pip"])]
    assert set(added(lock=lock)) == (
        {f"requirements.lock: {name} has no --hash" for name in parse_lock(LOCK)}
        | {f"{where}: {req} has no --hash in requirements.lock" for where, reqs in sections for req in reqs}
    ) - before


def test_an_unpinned_entry_fails(tmp_path: Path, locked: Requirements, added: Callable[..., list[str]]) -> None:
    req = locked[0][0]
    name = Requirement(req).name
    pin = parse_lock(LOCK)[name]
    loose = pin.line.replace("==", ">=", 1)
    lock = tmp_path / "requirements.lock"
    lock.write_text(LOCK.read_text().replace(f"\n{pin.line} ", f"\n{loose} ", 1))
    assert added(lock=lock) == [
        f"[project].dependencies: {req} is not pinned with == in requirements.lock ({loose!r})",
        f"requirements.lock: {name} is not pinned with == ({loose!r})",
    ]
