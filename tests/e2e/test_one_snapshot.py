"""At an agent's end its worktree is read once: the conflict monitor's last look is the commit.

Issue 15: the watcher's last snapshot (``git add -A`` through a copy of the index)
and then the commit's own ``git add -A`` read every file of the worktree twice, a
cost that grows with the repository. Real git (counted through a logging ``git``
first on PATH, which runs the real one), real shell agents, the real engine.
"""

from __future__ import annotations

import os
import shutil
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from delegate_tui.core import workspace
from delegate_tui.core.events import TaskCommitted
from delegate_tui.core.plan import Plan
from tests.conftest import git, run_engine

pytestmark = pytest.mark.e2e


def _logging_git(folder: Path) -> Path:
    """A ``git`` that appends its folder and arguments to ``calls.log``, then runs git."""
    real = shutil.which("git")
    assert real is not None
    folder.mkdir()
    log = folder / "calls.log"
    shim = folder / "git"
    shim.write_text(f'#!/bin/sh\necho "$PWD :: $*" >> "{log}"\nexec "{real}" "$@"\n')
    shim.chmod(0o755)
    return log


def test_a_finished_agents_worktree_is_read_once_and_committed_as_the_last_look_saw_it(
    repo: Path, tmp_path: Path, write_plan: Callable[..., Plan], monkeypatch: pytest.MonkeyPatch
) -> None:
    log = _logging_git(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{log.parent}{os.pathsep}{os.environ['PATH']}")
    # Staged, unstaged and untracked work, and a file deleted: all of it is the task's.
    command = (
        "echo new > new.txt && git add new.txt && echo more >> new.txt "
        "&& echo loose > loose.txt && git rm -q src/shared.py"
    )
    plan = write_plan(
        f"""\
        name: once
        repo: {repo}
        tasks:
          - id: work
            agent: shell
            command: "{command}"
            edits: [new.txt, loose.txt, src/shared.py]
        """
    )
    state, recorder, _ = run_engine(plan)
    assert state.status == "succeeded", state.summary
    (committed,) = recorder.of(TaskCommitted)
    assert sorted((f.path, f.status) for f in committed.changed) == [
        ("loose.txt", "A"),
        ("new.txt", "A"),
        ("src/shared.py", "D"),
    ]
    shown = git(repo, "show", f"{committed.commit}:new.txt")
    assert shown == "new\nmore\n"  # the file as the agent left it, not as it staged it
    worktree = state.tasks["work"].attempts[-1].workdir
    adds = [
        line
        for line in log.read_text().splitlines()
        if line.startswith(f"{worktree} :: ") and " add -A" in line
    ]
    # The agent's own `git add` has no -A: what is left is delegate-tui reading the tree.
    assert len(adds) == 1, adds


def test_commit_snapshot_commits_the_snapshot_and_leaves_a_clean_index(repo: Path) -> None:
    tree = repo.parent / "tree"
    git(repo, "worktree", "add", "-q", "-b", "task", str(tree), "main")
    (tree / "a.txt").write_text("a\n")
    git(tree, "add", "a.txt")
    (tree / "b.txt").write_text("b\n")
    head = git(tree, "rev-parse", "HEAD").strip()
    snapshot = workspace.snapshot_worktree(tree, "HEAD", "look", keep_index=True)

    commit = workspace.commit_snapshot(tree, snapshot, "task: a and b\n\nbody")

    assert commit is not None and commit != snapshot
    assert git(tree, "rev-parse", "task").strip() == commit
    assert git(tree, "rev-parse", f"{commit}^").strip() == head
    assert git(tree, "rev-parse", f"{commit}^{{tree}}") == git(
        tree, "rev-parse", f"{snapshot}^{{tree}}"
    )
    assert git(tree, "log", "-1", "--format=%B", commit).strip() == "task: a and b\n\nbody"
    assert git(tree, "status", "--porcelain") == ""  # the kept index is the worktree's now
    assert not list(Path(git(tree, "rev-parse", "--git-dir").strip()).glob("index.delegate-*"))


def test_commit_snapshot_declines_when_the_branch_moved_since_the_look(repo: Path) -> None:
    tree = repo.parent / "tree"
    git(repo, "worktree", "add", "-q", "-b", "task", str(tree), "main")
    (tree / "a.txt").write_text("a\n")
    snapshot = workspace.snapshot_worktree(tree, "HEAD", "look", keep_index=True)
    (tree / "c.txt").write_text("c\n")
    git(tree, "add", "c.txt")
    git(tree, "commit", "-qm", "c")
    assert workspace.commit_snapshot(tree, snapshot, "late") is None
    assert git(tree, "log", "-1", "--format=%s").strip() == "c"


def test_nothing_changed_commits_nothing(repo: Path) -> None:
    tree = repo.parent / "tree"
    git(repo, "worktree", "add", "-q", "-b", "task", str(tree), "main")
    head = git(tree, "rev-parse", "HEAD").strip()
    snapshot = workspace.snapshot_worktree(tree, "HEAD", "look", keep_index=True)
    assert snapshot == head
    assert workspace.commit_snapshot(tree, snapshot, "nothing") == head
    assert textwrap.dedent(git(tree, "status", "--porcelain")) == ""
