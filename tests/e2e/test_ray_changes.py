"""A remote attempt's change sets (core/ray_changes.py), with real git and no Ray: what
an agent does in a clone "on the node" ends up, exactly, in the task's worktree here."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from delegate_tui.core import workspace
from delegate_tui.core.ray_changes import ChangeTaker, lay


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


def pair(tmp_path: Path) -> tuple[Path, Path, str]:
    """A repository with a commit, and a second clone of it: the node's and ours."""
    node = tmp_path / "node"
    node.mkdir()
    git(node, "init", "-q", "-b", "main")
    git(node, "config", "user.name", "T")
    git(node, "config", "user.email", "t@example.invalid")
    (node / "keep.txt").write_text("keep\n")
    (node / "edit.txt").write_text("old\n")
    (node / "gone.txt").write_text("gone\n")
    (node / "tool.sh").write_text("echo tool\n")
    (node / "dir").mkdir()
    (node / "dir" / "inner.txt").write_text("inner\n")
    git(node, "add", "-A")
    git(node, "commit", "-qm", "start")
    start = git(node, "rev-parse", "HEAD").strip()
    local = tmp_path / "local"
    git(tmp_path, "clone", "-q", str(node), str(local))
    return node, local, start


def tree_of(path: Path) -> dict[str, tuple[bool, bool, str]]:
    """Every file under ``path`` but .git: (is a symlink, is executable, content)."""
    found = {}
    for root, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in files:
            full = Path(root) / name
            rel = str(full.relative_to(path))
            if full.is_symlink():
                found[rel] = (True, False, os.readlink(full))
            else:
                found[rel] = (False, os.access(full, os.X_OK), full.read_text())
    return found


def test_changed_files_travel_and_nothing_else(tmp_path: Path) -> None:
    node, local, start = pair(tmp_path)
    taker = ChangeTaker(node, start)
    assert taker.take() is None, "nothing moved yet"

    (node / "edit.txt").write_text("new\n")
    (node / "gone.txt").unlink()
    (node / "new" / "deep").mkdir(parents=True)
    (node / "new" / "deep" / "file.txt").write_text("fresh\n")
    (node / "tool.sh").chmod(0o755)
    (node / "link").symlink_to("keep.txt")
    first = taker.take()
    assert first is not None and "files" in first
    assert set(first["files"]) == {"edit.txt", "gone.txt", "new/deep/file.txt", "tool.sh", "link"}
    lay(local, "refs/x", first)
    assert tree_of(local) == tree_of(node)

    # Only what moved since: a second edit, and a file put back as it was.
    (node / "edit.txt").write_text("newer\n")
    (node / "gone.txt").write_text("gone\n")
    second = taker.take()
    assert second is not None and set(second["files"]) == {"edit.txt", "gone.txt"}
    assert taker.take() is None
    lay(local, "refs/x", second)
    assert tree_of(local) == tree_of(node)
    assert git(local, "status", "--porcelain", "--", "gone.txt") == ""


def test_once_the_agent_commits_a_bundle_brings_its_tree(tmp_path: Path) -> None:
    node, local, start = pair(tmp_path)
    taker = ChangeTaker(node, start)
    (node / "early.txt").write_text("sent as a file, then removed\n")
    (node / "edit.txt").write_text("first\n")
    first = taker.take()
    assert first is not None
    lay(local, "refs/delegate/ray/x", first)

    (node / "early.txt").unlink()
    (node / "edit.txt").write_text("committed\n")
    git(node, "add", "-A")
    git(node, "commit", "-qm", "the agent's own commit")
    (node / "after.txt").write_text("after the commit\n")
    second = taker.take()
    assert second is not None and "bundle" in second and "early.txt" in second["drop"]
    assert lay(local, "refs/delegate/ray/x", second), "the bundle's commit is kept"
    assert tree_of(local) == tree_of(node)
    # Our branch did not move: the work is in the worktree, to be committed as one.
    assert git(local, "rev-parse", "HEAD").strip() == start
    commit = workspace.commit_all(local, "one commit")
    assert git(local, "show", f"{commit}:edit.txt") == "committed\n"
    assert "early.txt" not in git(local, "ls-tree", "-r", "--name-only", commit)


def test_paths_that_leave_the_worktree_are_not_written(tmp_path: Path) -> None:
    _, local, _ = pair(tmp_path)
    lay(
        local,
        "refs/x",
        {
            "files": {
                "../outside.txt": (0o100644, b"no"),
                ".git/hooks/post-checkout": (0o100755, b"no"),
                "ok.txt": (0o100644, b"yes"),
            }
        },
    )
    assert not (tmp_path / "outside.txt").exists()
    assert not (local / ".git" / "hooks" / "post-checkout").exists()
    assert (local / "ok.txt").read_text() == "yes"
