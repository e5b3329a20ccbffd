"""A sandboxed agent's own object store, taken into a real repository (real git)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from delegate_tui.core import object_store
from tests.conftest import git

pytestmark = pytest.mark.e2e


def agent_git(tree: Path, store: Path, repo: Path, *args: str, text: str | None = None) -> str:
    """git in ``tree`` as a sandboxed agent runs it: new objects go to ``store``."""
    env = {**os.environ, **object_store.store_env(store, repo / ".git")}
    proc = subprocess.run(
        ["git", *args], cwd=tree, env=env, input=text, capture_output=True, text=True, check=True
    )
    return proc.stdout


@pytest.fixture
def tree(repo: Path) -> Path:
    tree = repo.parent / "tree"
    git(repo, "worktree", "add", "-q", "-b", "task", str(tree), "main")
    return tree


def packs(repo: Path) -> set[str]:
    return {p.name for p in (repo / ".git/objects/pack").iterdir()}


def test_the_agents_objects_come_in_named_by_their_content(repo: Path, tree: Path) -> None:
    store = tree.parent / "store"
    store.mkdir()
    for name in ("a", "b"):
        (tree / f"{name}.txt").write_text(f"{name}\n")
        agent_git(tree, store, repo, "add", f"{name}.txt")
        agent_git(tree, store, repo, "commit", "-qm", f"add {name}")
    agent_git(tree, store, repo, "repack", "-q", "-d")  # a pack of the agent's own
    (tree / "c.txt").write_text("c\n")
    agent_git(tree, store, repo, "add", "c.txt")
    agent_git(tree, store, repo, "commit", "-qm", "add c")
    loose = next(p for p in store.glob("??/*"))
    forged = "f" * 40
    (store / "ff").mkdir(exist_ok=True)
    (store / "ff" / forged[2:]).write_bytes(loose.read_bytes())  # another object's content
    (store / "ff" / ("e" * 38)).write_bytes(b"not an object")
    with pytest.raises(subprocess.CalledProcessError):
        git(tree, "log", "-1")  # the repository does not have them yet

    why = object_store.take_objects(tree, store)

    assert why == "2 object(s) not named by their content"
    assert git(tree, "log", "--format=%s", "main..HEAD").split("\n")[:3] == [
        "add c",
        "add b",
        "add a",
    ]
    assert git(tree, "show", "HEAD:a.txt") == "a\n"
    missing = subprocess.run(["git", "cat-file", "-e", forged], cwd=repo, capture_output=True)
    assert missing.returncode != 0, "a file named for other content never comes in"
    assert not store.exists()
    fsck = subprocess.run(
        ["git", "fsck", "--strict", "--no-dangling"], cwd=repo, capture_output=True, text=True
    )
    assert fsck.returncode == 0, fsck.stderr


def test_a_malformed_object_is_refused_and_leaves_the_repository_as_it_was(
    repo: Path, tree: Path
) -> None:
    store = tree.parent / "store"
    store.mkdir()
    # A commit with no author: git's own check of untrusted objects refuses it.
    agent_git(
        tree,
        store,
        repo,
        "hash-object",
        "-t",
        "commit",
        "-w",
        "--literally",
        "--stdin",
        text=f"tree {git(repo, 'rev-parse', 'main^{tree}').strip()}\n\nno author\n",
    )
    before = packs(repo)

    why = object_store.take_objects(tree, store)

    assert why is not None and why.startswith("git refused loose.pack"), why
    assert packs(repo) == before, "nothing half done in the repository's objects"
    assert not store.exists()
