"""The layer contract of routing/__init__.py: each package imports only the layers below it.

import-linter reads its contracts from pyproject.toml; the second test proves the check bites
by adding an upward import to a copy of the tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = os.pathsep.join(str(root / d) for d in (".", "media-server", "bench"))
    return subprocess.run([str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_the_tree_keeps_its_layers() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def copy_tree(dest: Path) -> Path:
    for name in ("routing", "media-server", "bench"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "sipp"))
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("media-server/voffice_media/g711.py", "from routing.proxy import call_step", "voffice_media.g711 -> routing.proxy.call_step"),
        ("routing/core/engine.py", "import socket", "routing.core.engine -> socket"),  # the core opens no sockets
    ],
)
def test_a_forbidden_import_breaks_the_contract(tmp_path: Path, module: str, line: str, broken: str) -> None:
    tree = copy_tree(tmp_path)
    with (tree / module).open("a") as f:
        f.write(f"\n{line}  # noqa: E402,F401\n")
    result = lint_imports(tree)
    assert result.returncode != 0
    assert broken in result.stdout
