"""A merged attempt's worktree is reused by the next attempt, and holds what a new one would.

Real git, real shell agents, the real engine (issue 15: a thousand tasks in a repository
of thousands of files; a fresh checkout per task cost seconds).
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from delegate_tui.core import workspace
from delegate_tui.core.events import Notice, TaskOutput, TaskStarted
from delegate_tui.core.plan import Plan
from tests.conftest import git, run_engine

pytestmark = pytest.mark.e2e

#: Prints the folder's inode (the same folder, moved, keeps it), then every file but git's.
LOOK = "stat -c inode=%i . && find . -path ./.git -prune -o -type f -print | sort"


def test_the_next_attempt_reuses_a_merged_worktree_cleaned_to_the_integration_tip(
    repo: Path, write_plan: Callable[..., Plan]
) -> None:
    (repo / ".gitignore").write_text("__pycache__/\nbuild/\n")
    git(repo, "commit", "-qam", "ignore build/")
    tasks = f"""\
        - id: first
          agent: shell
          command: "{LOOK} && echo one > one.txt && mkdir build && echo junk > build/cache && echo stray > src/shared.py.orig"
          edits: [one.txt, src/shared.py.orig]
        - id: second
          agent: shell
          depends_on: [first]
          command: "{LOOK} && echo two > two.txt"
          edits: [two.txt]
        """
    plan = write_plan(
        f"name: pool\nrepo: {repo}\nmax_parallel: 1\ntasks:\n" + textwrap.indent(tasks, "  ")
    )
    state, recorder, engine = run_engine(plan)
    assert state.status == "succeeded", state.summary
    out = {
        task: b"".join(e.data for e in recorder.of(TaskOutput) if e.task == task).decode()
        for task in ("first", "second")
    }
    inode = {task: text.split("inode=")[1].split()[0] for task, text in out.items()}
    assert inode["first"] == inode["second"], "the second attempt got a fresh checkout"
    starts = {e.task: e.cwd for e in recorder.of(TaskStarted)}
    assert starts["first"] != starts["second"]  # each attempt's folder has its own name
    # Exactly the integration tip's files: the first task's merged work, none of its
    # ignored leftovers (build/ is ignored, so it was never committed).
    seen = [line for line in out["second"].splitlines()[1:] if line.startswith("./")]
    assert seen == [
        "./.gitignore",
        "./README.md",
        "./one.txt",
        "./src/shared.py",
        "./src/shared.py.orig",
    ]
    assert git(repo, "show", f"{state.integration_branch}:two.txt") == "two\n"
    # Nothing is left: no parked worktree (with no task left waiting, the last one was
    # removed as it finished, not parked), no note of one in git, branches kept.
    notes = [e.message for e in recorder.of(Notice)]
    assert not any(n.startswith("removing") for n in notes)
    worktrees = workspace.worktrees_dir(repo, engine.run_id)
    assert not (worktrees / workspace.POOL_DIR).exists()
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1
    assert f"delegate/{engine.run_id}/tasks/first" in git(repo, "branch", "--list", "delegate/*")


def test_a_parked_worktree_git_cannot_move_is_removed_and_none_is_taken(repo: Path) -> None:
    """A parked worktree whose folder was damaged: taking one from the pool removes it
    and says there is none, so the attempt gets a new worktree."""
    folder = repo / ".delegate" / "worktrees" / "r1"
    workspace.add_worktree(repo, folder / "a-1", "delegate/r1/tasks/a/1", "main")
    workspace.park_worktree(repo, folder / "a-1")
    parked = workspace.pool_worktrees(folder)
    assert [p.name for p in parked] == ["a-1"] and not (folder / "a-1").exists()
    (parked[0] / ".git").unlink()  # no longer a worktree git knows how to move
    assert workspace.take_parked(repo, folder / "b-1") is False
    assert workspace.pool_worktrees(folder) == [] and not (folder / "b-1").exists()


def test_a_taken_worktree_is_reset_to_its_new_branch_without_the_old_files(repo: Path) -> None:
    folder = repo / ".delegate" / "worktrees" / "r1"
    workspace.add_worktree(repo, folder / "a-1", "delegate/r1/tasks/a/1", "main")
    (folder / "a-1" / "README.md").write_text("changed, never committed\n")
    (folder / "a-1" / "__pycache__").mkdir()
    (folder / "a-1" / "__pycache__" / "x.pyc").write_text("ignored\n")
    (folder / "a-1" / "stray.txt").write_text("untracked\n")
    workspace.park_worktree(repo, folder / "a-1")
    assert workspace.take_parked(repo, folder / "b-1") is True
    assert workspace.reset_worktree(folder / "b-1", "delegate/r1/tasks/b/1", "main") is True
    b = folder / "b-1"
    assert git(b, "rev-parse", "--abbrev-ref", "HEAD").strip() == "delegate/r1/tasks/b/1"
    assert sorted(p.name for p in b.iterdir()) == [".git", ".gitignore", "README.md", "src"]
    assert (b / "README.md").read_text() == "# test repo\n"
    assert git(b, "status", "--porcelain", "--ignored") == ""
