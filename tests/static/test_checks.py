"""The linters and the type checker, as tests: ``ruff check``, ``ruff format --check``
and ``mypy`` over the tree, as CI has them.

Run here, they run beside the other tests (on an xdist worker while the others wait on
agents and frames) instead of after them; the README's test command is then the whole
check. Each fails with the tool's own report. Skipped, with the reason, where the test
extra's tools are not installed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """The venv's own executable ``name`` (the one the test extra installs)."""
    path = BIN / name
    if not path.exists():
        found = shutil.which(name)
        if found is None:
            pytest.skip(f"{name} is not installed: pip install -e '.[test]'")
        return found
    return str(path)


def check(*argv: str) -> None:
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, f"{' '.join(argv)}\n{done.stdout}{done.stderr}"


def test_ruff_finds_nothing_and_every_file_is_formatted() -> None:
    ruff = tool("ruff")
    check(ruff, "check", ".")
    check(ruff, "format", "--check", ".")


def test_mypy_finds_nothing() -> None:
    check(tool("mypy"))
