"""Choosing an executor from the command line and the plan: what is refused, and how."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def plan_file(tmp_path: Path, repo: Path, executor: str = "local") -> Path:
    path = tmp_path / f"plan-{executor}.yaml"
    path.write_text(
        f"name: x\nrepo: {repo}\nexecutor: {executor}\n"
        "tasks:\n  - {id: t, agent: shell, command: 'true', edits: [x]}\n"
    )
    return path


def cli(*args: str, cwd: Path, extra_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    home = cwd / "home"
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    if extra_path is not None:  # put a module first on the path
        env["PYTHONPATH"] = os.pathsep.join([str(extra_path), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "delegate_tui", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_executor_ray_without_ray_installed_is_refused_with_the_install_command(
    tmp_path: Path, repo: Path
) -> None:
    # A `ray` that cannot be imported, as on a machine without the extra.
    missing = tmp_path / "no-ray"
    missing.mkdir()
    (missing / "ray.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    for args in (
        ["run", str(plan_file(tmp_path, repo, "ray")), "--headless", "--yes"],
        ["run", str(plan_file(tmp_path, repo)), "--headless", "--yes", "--executor", "ray"],
    ):
        done = cli(*args, cwd=tmp_path, extra_path=missing)
        assert done.returncode == 2, done.stderr
        assert "pip install 'delegate-tui[ray]'" in done.stderr
        assert not (repo / ".delegate" / "runs").exists() or not any(
            (repo / ".delegate" / "runs").glob("*/events.jsonl")
        ), "nothing started"


def test_an_unknown_executor_is_refused_naming_the_file_line_and_field(
    tmp_path: Path, repo: Path
) -> None:
    done = cli("validate", str(plan_file(tmp_path, repo, "kubernetes")), cwd=tmp_path)
    assert done.returncode == 2
    assert "plan-kubernetes.yaml:3" in done.stderr and "executor" in done.stderr
    assert "local, ray or ray://HOST:PORT" in done.stderr
    flag = cli(
        "run", str(plan_file(tmp_path, repo)), "--headless", "--executor", "slurm", cwd=tmp_path
    )
    assert flag.returncode == 2 and "--executor" in flag.stderr
