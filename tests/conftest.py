"""Shared fixtures: real git repositories in temporary folders, plans, engine runs."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import pytest

from delegate_tui.core.engine import Engine, EngineOptions
from delegate_tui.core.events import Event
from delegate_tui.core.plan import Plan, load_plan
from delegate_tui.core.state import RunState

E = TypeVar("E", bound=Event)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto`` starts two workers per core: most tests wait on agents, git and timers
    rather than compute (on 2 cores the suite took 250 s with 2 workers, 177 s with 4).
    ``DELEGATE_TEST_WORKERS`` overrides the count."""
    wanted = os.environ.get("DELEGATE_TEST_WORKERS", "")
    if wanted.isdigit() and int(wanted) > 0:
        return int(wanted)
    return 2 * (os.cpu_count() or 1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The Ray tests first, then the other folders' modules spread evenly over the run.

    The Ray tests are one xdist group (one cluster, on one worker), the longest chain of
    the suite (40-150 s with its cluster's start), and xdist hands out work in
    collection order, so it starts at once and the other workers share the rest
    (collected last, it could start when the others were nearly done).

    The rest, each module kept whole (its module fixtures are built once), in an order
    that mixes the folders: the UI tests mostly wait on frames and timers, the e2e and
    agents tests mostly compute, and in folder order the UI tests came last, so the
    last 80 s of a run left a third of the two cores idle while all four workers
    waited. A module's place is its rank within its folder, as a fraction of the folder.
    """
    ray = [item for item in items if item.get_closest_marker("ray") is not None]
    modules: dict[str, list[pytest.Item]] = {}
    for item in items:
        if item.get_closest_marker("ray") is None:
            modules.setdefault(item.nodeid.split("::")[0], []).append(item)
    folders: dict[str, list[str]] = {}
    for module in modules:
        folders.setdefault(module.rsplit("/", 1)[0], []).append(module)
    place = {
        module: (rank + 0.5) / len(members)
        for members in folders.values()
        for rank, module in enumerate(members)
    }
    items[:] = ray + [item for m in sorted(modules, key=place.__getitem__) for item in modules[m]]


def logging_git(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put a ``git`` first on this process's PATH that appends ``<its folder> :: <its
    arguments>`` (their first line) to ``folder/calls.log``, then runs git; the log."""
    real = shutil.which("git")
    assert real is not None
    folder.mkdir()
    log = folder / "calls.log"
    shim = folder / "git"
    shim.write_text(
        f'#!/bin/sh\nline="$PWD :: $*"\nprintf "%s\\n" "${{line%%\n*}}" >> "{log}"\n'
        f'exec "{real}" "$@"\n'
    )
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return log


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo`` and return its stdout."""
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture(autouse=True)
def fast_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    """Demo agents run without their theatrical pauses in tests."""
    monkeypatch.setenv("DELEGATE_DEMO_SPEED", "0")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with one commit on ``main``."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "--initial-branch=main")
    git(root, "config", "user.name", "Test Operator")
    git(root, "config", "user.email", "test@example.invalid")
    (root / "README.md").write_text("# test repo\n")
    (root / "src").mkdir()
    (root / "src" / "shared.py").write_text("OWNER = 'nobody'\nA = 1\nB = 2\n")
    (root / ".gitignore").write_text("__pycache__/\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    return root


@pytest.fixture
def write_plan(tmp_path: Path) -> Callable[..., Plan]:
    """Write plan YAML (dedented) next to the repo and load it."""

    def write(text: str, name: str = "plan.yaml", folder: Path | None = None) -> Plan:
        path = (folder or tmp_path) / name
        path.write_text(textwrap.dedent(text))
        return load_plan(path)

    return write


class Recorder:
    """Collects every event an engine emits."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, ev: Event) -> None:
        self.events.append(ev)

    def of(self, cls: type[E]) -> list[E]:
        """The events of one class, in the order they were emitted."""
        return [e for e in self.events if isinstance(e, cls)]


def run_engine(
    plan: Plan,
    *,
    during: Callable[[Engine, Recorder], object] | None = None,
    **options: Any,
) -> tuple[RunState, Recorder, Engine]:
    """Run a plan to its end with the real engine; ``during`` may drive commands."""
    engine = Engine(plan, replace(EngineOptions(auto_approve=True, kill_grace_s=1.0), **options))
    recorder = Recorder()
    engine.subscribe(recorder)

    async def main() -> RunState:
        engine.preflight()
        driver = None
        if during is not None:
            result = during(engine, recorder)
            if asyncio.iscoroutine(result):
                driver = asyncio.get_running_loop().create_task(result)
        state = await asyncio.wait_for(engine.run(), 90)
        if driver is not None:  # a driver that waits for what never happens fails, in time
            await asyncio.wait_for(driver, 60)
        return state

    return asyncio.run(main()), recorder, engine


def run_cli(
    *args: str, cwd: Path, home: Path, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """``delegate-tui ARGS`` as a user runs it, with a scratch HOME and config folder."""
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "NO_COLOR": "1",
        "DELEGATE_DEMO_SPEED": "0",
    }
    return subprocess.run(
        [sys.executable, "-m", "delegate_tui", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
