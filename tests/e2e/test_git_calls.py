"""How many git processes a run starts: a fixed small run stays under its count.

Issue 15 (overhead a task) and issue 20 (the suite is CPU-bound, git's start-up a
large part of it): every snapshot, commit and merge used to ask git again what
could not have changed (whether the repository has a user, where a worktree's git
folder is, a commit's tree), and read two diffs of the same commits. Real git,
counted through a logging ``git`` first on PATH that runs the real one; real shell
agents; the real engine. The folded calls give exactly what the separate ones gave.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from delegate_tui.core import workspace
from delegate_tui.core.events import ChangedFile, TaskMerged
from delegate_tui.core.plan import Plan
from tests.conftest import git, logging_git, run_engine

pytestmark = pytest.mark.e2e


def _commands(log: Path) -> Counter[str]:
    """Each git command of the log by its first two words (after the ``-c`` options)."""
    counts: Counter[str] = Counter()
    for line in log.read_text().splitlines():
        words = line.split(" :: ", 1)[1].split()
        while words[:1] == ["-c"]:
            words = words[2:]
        counts[" ".join(words[:2])] += 1
    return counts


TASKS = 4


def test_a_small_run_starts_few_git_processes(
    repo: Path, tmp_path: Path, write_plan: Callable[..., Plan], monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks = "".join(
        f"""
          - id: t{i}
            agent: shell
            command: "echo {i} > out{i}.txt"
            edits: [out{i}.txt]
        """
        for i in range(TASKS)
    )
    plan = write_plan(f"name: count\nrepo: {repo}\nmax_parallel: 1\ntasks:{tasks}")
    log = logging_git(tmp_path / "bin", monkeypatch)
    state, recorder, _ = run_engine(plan)
    counts = _commands(log)
    if os.environ.get("KEEP_GIT_LOG"):
        shutil.copy(log, os.environ["KEEP_GIT_LOG"])
    assert state.status == "succeeded", state.summary
    assert len(recorder.of(TaskMerged)) == TASKS
    for i in range(TASKS):
        assert git(repo, "show", f"{state.integration_branch}:out{i}.txt") == f"{i}\n"
    total = sum(counts.values())
    # Asked once a worktree and once for the repository, not at each snapshot,
    # commit and merge (8 before: 2 a task).
    assert counts["config user.email"] <= TASKS + 1, counts
    # A worktree's folders, and its start's tree, are known after its first index
    # (12 before: its first index, each look and the commit asked again); the
    # repository's once, at the start.
    assert counts["rev-parse --path-format=absolute"] <= TASKS + 2, counts
    # One diff a look (was two: --name-status and --numstat).
    assert counts["diff --name-status"] == counts["diff --numstat"] == 0, counts
    # Whether a task's branch is a link: read from its file once the worktree's
    # folders are known; git is asked for the integration branch and the first
    # worktree only (14 before: three times a task).
    assert counts["symbolic-ref -q"] <= 3, counts
    # The agents made no commits (their branches' files still name their starts):
    # nothing to look for in their history (was three processes a task).
    assert counts["rev-parse -q"] == counts["merge-base --is-ancestor"] == 0, counts
    assert counts["log -20"] == 0, counts
    # Each worktree's HEAD still names its branch: not written again (4 before). The
    # integration branch's file names the commit the last merge made: read, not asked
    # (7 before: preflight's two, the start's, and one a merge).
    assert counts["symbolic-ref HEAD"] == 0, counts
    assert counts["rev-parse --verify"] <= 3, counts
    # Measured: 116 before (main at 4addb0d), 67 after; a watcher look more is about
    # four processes.
    assert total <= 21 * TASKS, (total, counts)


def _tricky_history(repo: Path) -> tuple[str, str]:
    """Two commits whose diff has a rename, a deletion, a binary change, a type change
    and paths with a space, a tab, a newline and a leading colon."""
    for i in (1, 2):
        (repo / f"f{i}.txt").write_text("".join(f"{n}\n" for n in range(50)))
    (repo / "bin.dat").write_bytes(b"x\0y")
    (repo / "link").symlink_to("f1.txt")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "before")
    before = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "mv", "f1.txt", "moved name.txt")
    with (repo / "moved name.txt").open("a") as fh:
        fh.write("more\n")
    git(repo, "rm", "-q", "f2.txt")
    (repo / "bin.dat").write_bytes(b"z\0q")
    (repo / "link").unlink()
    (repo / "link").write_text("no longer a link\n")
    (repo / "new\nline.txt").write_text("new\n")
    (repo / "tab\tname").write_text("a\tb\n")
    (repo / ":colon").write_text("c\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "after")
    return before, git(repo, "rev-parse", "HEAD").strip()


def test_changed_files_reads_status_and_counts_from_one_diff(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before, after = _tricky_history(repo)
    log = logging_git(tmp_path / "bin", monkeypatch)
    files = workspace.changed_files(repo, before, after)
    assert sum(_commands(log).values()) == 1
    assert files == [
        ChangedFile(":colon", "A", 1, 0),
        ChangedFile("bin.dat", "M", 0, 0, binary=True),
        ChangedFile("f2.txt", "D", 0, 50),
        ChangedFile("link", "T", 1, 1),
        ChangedFile("moved name.txt", "R", 1, 0, old_path="f1.txt"),
        ChangedFile("new\nline.txt", "A", 1, 0),
        ChangedFile("tab\tname", "A", 1, 0),
    ]
    assert workspace.changed_files(repo, after, after) == []


def test_identity_is_asked_once_a_worktree_within_a_run_and_again_in_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = logging_git(tmp_path / "bin", monkeypatch)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home" / ".config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    path = tmp_path / "same-path"

    def fresh(email: str | None) -> None:  # a new repository at the same path
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir()
        git(path, "init", "-q")
        if email:
            git(path, "config", "user.email", email)

    fresh("someone@example.invalid")
    log.unlink()

    def asked() -> int:
        return _commands(log)["config user.email"]

    with workspace.identity_cache():
        assert workspace.identity_env(path) == {}
        assert workspace.identity_env(path) == {}
        assert asked() == 1
    # The next run: a repository made at the same path without a user is asked
    # again (a cache for the whole process once reused the answer: commits failed).
    fresh(None)
    with workspace.identity_cache():
        assert workspace.identity_env(path)["GIT_AUTHOR_NAME"] == "delegate-tui"
        assert workspace.identity_env(path)["GIT_AUTHOR_NAME"] == "delegate-tui"
        assert asked() == 2
    # Outside a run git is asked each time, as before.
    workspace.identity_env(path)
    workspace.identity_env(path)
    assert asked() == 4


def test_a_worktree_made_again_at_the_same_path_is_snapshotted_from_its_own_index(
    repo: Path, tmp_path: Path
) -> None:
    base = git(repo, "rev-parse", "HEAD").strip()
    path = tmp_path / "wt"
    workspace.add_worktree(repo, path, "delegate/r/tasks/a", base)
    (path / "a.txt").write_text("a\n")
    first = workspace.snapshot_worktree(path, base, "look")
    assert git(repo, "show", f"{first}:a.txt") == "a\n"
    # Another repository's worktree at the same path: its own folders, not the cached ones.
    other = tmp_path / "other"
    shutil.copytree(repo, other)
    workspace.remove_worktree(repo, path)
    git(other, "worktree", "prune")
    workspace.add_worktree(other, path, "delegate/r/tasks/b", base)
    (path / "b.txt").write_text("b\n")
    second = workspace.snapshot_worktree(path, base, "look")
    assert git(other, "show", "--name-only", "--format=", second).split() == ["b.txt"]
    in_repo = subprocess.run(["git", "cat-file", "-e", second], cwd=repo, check=False)
    assert in_repo.returncode != 0  # made in the other repository only
    own = Path(git(path, "rev-parse", "--path-format=absolute", "--git-dir").strip())
    assert own.is_relative_to(other) and (own / workspace.OWN_INDEX).exists()


def test_a_branch_link_is_read_from_its_file_as_git_reads_it(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 22: an agent can make a task branch a link to the operator's. Once a
    worktree's folders are known the check reads the branch's file instead of asking
    git: the same answer where git gives one, and a link also where git calls the
    file broken (the branch is then deleted before it is written, as a link is)."""
    base = git(repo, "rev-parse", "HEAD").strip()
    path = tmp_path / "wt"
    workspace.add_worktree(repo, path, "delegate/r/tasks/a", base)
    heads = repo / ".git" / "refs" / "heads"
    git(repo, "branch", "packed", base)
    git(repo, "pack-refs", "--all")
    git(repo, "branch", "plain", base)
    git(repo, "symbolic-ref", "refs/heads/to-main", "refs/heads/main")
    git(repo, "symbolic-ref", "refs/heads/dangling", "refs/heads/none-such")
    (heads / "no-space").write_text("ref:refs/heads/main\n")
    (heads / "symlink").symlink_to("refs/heads/main")
    (heads / "symlink-bare").symlink_to("main")  # git reads main's id through it
    (heads / "bad-target").write_text("ref: ../../config\n")
    (heads / "folder").mkdir()
    (heads / "folder" / "inside").write_text(base + "\n")

    def via_git(name: str) -> bool:
        argv = ["git", "symbolic-ref", "-q", f"refs/heads/{name}"]
        return subprocess.run(argv, cwd=path, capture_output=True).returncode == 0

    same = ["packed", "plain", "missing", "to-main", "dangling", "no-space", "symlink"]
    told = {name: via_git(name) for name in [*same, "symlink-bare", "bad-target"]}
    assert told["to-main"] and told["dangling"] and not told["packed"]
    log = logging_git(tmp_path / "bin", monkeypatch)
    for name in same:
        log.unlink(missing_ok=True)
        assert workspace._is_link(path, f"refs/heads/{name}") is told[name], name
        assert not log.exists(), name  # the file was read, git not asked
    for name in ("symlink-bare", "bad-target"):  # not links to git, links here
        assert not told[name] and workspace._is_link(path, f"refs/heads/{name}"), name
    log.unlink(missing_ok=True)
    assert not workspace._is_link(path, "refs/heads/folder")  # a folder: git is asked
    assert _commands(log)["symbolic-ref -q"] == 1


def test_a_reused_worktree_is_reset_onto_its_branch_not_through_a_link(
    repo: Path, tmp_path: Path
) -> None:
    base = git(repo, "rev-parse", "HEAD").strip()
    main = git(repo, "rev-parse", "main").strip()
    path = tmp_path / "wt"
    workspace.add_worktree(repo, path, "delegate/r/tasks/a", base)
    (path / "a.txt").write_text("a\n")
    work = workspace.commit_work(path, "delegate/r/tasks/a", base, "a")
    moved = tmp_path / "next"
    git(repo, "worktree", "move", str(path), str(moved))
    # An agent of the run links the next attempt's branch to the operator's, and
    # makes another a symbolic link file to it.
    git(repo, "symbolic-ref", "refs/heads/delegate/r/tasks/b", "refs/heads/main")
    heads = repo / ".git" / "refs" / "heads" / "delegate" / "r" / "tasks"
    (heads / "c").symlink_to("refs/heads/main")
    assert workspace.reset_worktree(moved, "delegate/r/tasks/b", work)
    assert workspace.reset_worktree(moved, "delegate/r/tasks/c", work)
    assert git(repo, "rev-parse", "main").strip() == main
    for name in ("b", "c"):
        assert git(repo, "rev-parse", f"delegate/r/tasks/{name}").strip() == work
        assert not (heads / name).is_symlink()
    assert git(moved, "symbolic-ref", "HEAD").strip() == "refs/heads/delegate/r/tasks/c"
    assert (moved / "a.txt").read_text() == "a\n"


@pytest.mark.parametrize("moved", ["detached", "other-branch", "untouched"])
def test_the_commit_puts_head_back_on_its_branch_and_only_then_writes_it(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moved: str
) -> None:
    base = git(repo, "rev-parse", "HEAD").strip()
    path = tmp_path / "wt"
    workspace.add_worktree(repo, path, "delegate/r/tasks/a", base)
    (path / "a.txt").write_text("a\n")
    if moved == "detached":  # what an agent may do to its worktree's HEAD
        git(path, "checkout", "-q", "--detach")
    elif moved == "other-branch":
        git(path, "symbolic-ref", "HEAD", "refs/heads/main")
    log = logging_git(tmp_path / "bin", monkeypatch)
    commit = workspace.commit_work(path, "delegate/r/tasks/a", base, "a")
    wrote = _commands(log)["symbolic-ref HEAD"]
    assert wrote == (0 if moved == "untouched" else 1)
    assert git(path, "symbolic-ref", "HEAD").strip() == "refs/heads/delegate/r/tasks/a"
    assert git(repo, "rev-parse", "delegate/r/tasks/a").strip() == commit
    assert git(repo, "rev-parse", "main").strip() == base
    assert git(path, "status", "--porcelain") == ""
