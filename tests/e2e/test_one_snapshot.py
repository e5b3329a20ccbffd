"""At an agent's end its worktree is read once: the conflict monitor's last look is the commit.

Issue 15: the watcher's last snapshot (``git add -A`` through a copy of the index)
and then the commit's own ``git add -A`` read every file of the worktree twice, a
cost that grows with the repository. Real git (counted through a logging ``git``
first on PATH, which runs the real one), real shell agents, the real engine.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from delegate_tui.core import workspace
from delegate_tui.core.events import TaskCommitted
from delegate_tui.core.plan import Plan
from tests.conftest import git, logging_git, run_engine

pytestmark = pytest.mark.e2e


def test_a_finished_agents_worktree_is_read_once_and_committed_as_the_last_look_saw_it(
    repo: Path, tmp_path: Path, write_plan: Callable[..., Plan], monkeypatch: pytest.MonkeyPatch
) -> None:
    log = logging_git(tmp_path / "bin", monkeypatch)
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


def _task_tree(repo: Path) -> tuple[Path, str]:
    tree = repo.parent / "tree"
    git(repo, "worktree", "add", "-q", "-b", "task", str(tree), "main")
    return tree, git(tree, "rev-parse", "HEAD").strip()


def test_commit_work_commits_the_look_on_its_start_and_leaves_a_clean_index(repo: Path) -> None:
    tree, start = _task_tree(repo)
    (tree / "a.txt").write_text("a\n")
    git(tree, "add", "a.txt")
    (tree / "b.txt").write_text("b\n")
    look = workspace.snapshot_worktree(tree, start, "look")

    commit = workspace.commit_work(tree, "task", start, "task: a and b\n\nbody", look)

    assert commit != look
    assert git(tree, "rev-parse", "task").strip() == commit
    assert git(tree, "rev-parse", f"{commit}^").strip() == start
    assert git(tree, "rev-parse", f"{commit}^{{tree}}") == git(
        tree, "rev-parse", f"{look}^{{tree}}"
    )
    assert git(tree, "log", "-1", "--format=%B", commit).strip() == "task: a and b\n\nbody"
    assert git(tree, "status", "--porcelain") == ""  # the engine's index is the worktree's now
    assert not list(Path(git(tree, "rev-parse", "--git-dir").strip()).glob("index.delegate-*"))


def test_the_agents_own_commits_become_one_on_its_start_with_their_subjects(
    repo: Path,
) -> None:
    tree, start = _task_tree(repo)
    for name in ("a", "c"):
        (tree / f"{name}.txt").write_text(f"{name}\n")
        git(tree, "add", f"{name}.txt")
        git(tree, "commit", "-qm", f"add {name}")
    (tree / "d.txt").write_text("d\n")  # and one file it never committed

    commit = workspace.commit_work(tree, "task", start, "task: work")

    assert git(tree, "rev-parse", f"{commit}^@").split() == [start]
    names = git(tree, "ls-tree", "--name-only", commit).split()
    assert {"a.txt", "c.txt", "d.txt"} <= set(names)
    body = git(tree, "log", "-1", "--format=%B", commit)
    assert "The agent's own commits:\n- add a\n- add c" in body, body
    assert git(tree, "status", "--porcelain") == ""


def test_a_branch_an_agent_made_a_link_to_main_moves_nothing_but_itself(repo: Path) -> None:
    """The run's task folder is writable in a sandbox: an agent can point its own branch,
    or the branch of an attempt still to come, at the operator's."""
    tree, start = _task_tree(repo)
    main = git(repo, "rev-parse", "main").strip()
    git(tree, "symbolic-ref", "refs/heads/task", "refs/heads/main")
    git(tree, "symbolic-ref", "refs/heads/next", "refs/heads/main")
    git(tree, "symbolic-ref", "refs/heads/later", "refs/heads/main")
    (tree / "a.txt").write_text("a\n")

    commit = workspace.commit_work(tree, "task", start, "task: a")
    workspace.add_worktree(repo, repo.parent / "next", "next", start)
    workspace.create_branch(repo, "later", commit)

    assert git(repo, "rev-parse", "main").strip() == main
    assert git(repo, "status", "--porcelain") == ""
    assert git(repo, "rev-parse", "task").strip() == commit
    assert git(tree, "symbolic-ref", "HEAD").strip() == "refs/heads/task"


def test_nothing_changed_commits_nothing(repo: Path) -> None:
    tree, start = _task_tree(repo)
    look = workspace.snapshot_worktree(tree, start, "look")
    assert look == start
    assert workspace.commit_work(tree, "task", start, "nothing", look) == start
    assert textwrap.dedent(git(tree, "status", "--porcelain")) == ""
