"""What git said that cannot change under the engine, kept so that git is not asked again.

Owns three memories of git's answers for :mod:`workspace`, each kept only while
what decides it is unchanged, and each checked without starting a process:

* whether a repository has a user configured (``identity``): per worktree path and
  what its ``.git`` names, for one run only (:func:`identity_cache`; a cache for
  the whole process once outlived the HOME and config a test read it under). It
  says whose name the engine's commits carry, nothing a check relies on;
* where a worktree's index, git folder and repository's folder are (``folders``):
  by the worktree's path, its ``.git`` and that git folder's ``commondir``, read
  each time (a worktree moved or made again, or pointed elsewhere, is asked again);
* the tree of a commit (``trees``), by the commit's full id: a commit's tree never
  changes, so a commit the engine made, or one git named, is not looked up again.

Nothing a check relies on is remembered here: refs, the index and the config that
runs programs are read each time (:mod:`workspace`). The folders are re-read when
the files that name them change (a sandboxed agent cannot write them). Only the
user may be changed under the memory, by an agent without a sandbox that edits the
repository's config: the engine's commits then keep the name the run started with.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Any

#: How many answers each memory keeps before it starts again.
LIMIT = 20_000
TREE = "^{tree}"
FULL_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")

#: Whether ``user.email`` is configured, by :func:`identity_key`; set for a run only.
_IDENTITY: ContextVar[dict[tuple[str, str], bool] | None] = ContextVar(
    "delegate_identity", default=None
)
_FOLDERS: dict[tuple[str, str, str], tuple[Path, Path, Path]] = {}
_TREES: dict[str, str] = {}


def _remember(memory: dict[Any, Any], key: object, value: object) -> None:
    if len(memory) >= LIMIT:
        memory.clear()
    memory[key] = value


@contextlib.contextmanager
def identity_cache() -> Iterator[None]:
    """Remember whether repositories have a user until the block ends (one run: the
    tasks and threads it starts share the answers)."""
    token = _IDENTITY.set({})
    try:
        yield
    finally:
        _IDENTITY.reset(token)


def identity_key(workdir: Path) -> tuple[str, str] | None:
    """``workdir`` and what its ``.git`` names (a worktree made again at the same path
    has another git folder, and may have another ``config.worktree``); ``None`` when
    it cannot be read."""
    dotgit = workdir / ".git"
    try:
        return (str(workdir), "" if dotgit.is_dir() else dotgit.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return None


def identity(workdir: Path) -> bool | None:
    """Whether ``workdir``'s repository has a user, as git said during this run."""
    memory = _IDENTITY.get()
    key = identity_key(workdir) if memory is not None else None
    return memory.get(key) if memory is not None and key is not None else None


def learn_identity(workdir: Path, configured: bool) -> None:
    """Remember git's answer for the rest of the run (nothing outside a run)."""
    memory = _IDENTITY.get()
    key = identity_key(workdir) if memory is not None else None
    if memory is not None and key is not None:
        memory[key] = configured


def folders_key(workdir: Path) -> tuple[str, str, str] | None:
    """What git's answer about ``workdir``'s folders depends on: its path, its ``.git``
    (a folder, or a file naming its git folder) and that folder's ``commondir``;
    ``None`` when they cannot be read."""
    dotgit = workdir / ".git"
    try:
        if dotgit.is_dir() and not dotgit.is_symlink():
            pointer, git_dir = "", dotgit
        else:
            pointer = dotgit.read_text(encoding="utf-8")
            if not pointer.startswith("gitdir: "):
                return None
            git_dir = workdir / pointer.removeprefix("gitdir: ").strip()
        commondir = git_dir / "commondir"
        common = commondir.read_text(encoding="utf-8") if commondir.exists() else ""
    except (OSError, UnicodeDecodeError):
        return None
    return (str(workdir), pointer, common)


def folders(key: tuple[str, str, str] | None) -> tuple[Path, Path, Path] | None:
    """The index, git folder and common folder git named for ``key``, if it did."""
    return _FOLDERS.get(key) if key is not None else None


def learn_folders(key: tuple[str, str, str] | None, found: tuple[Path, Path, Path]) -> None:
    if key is not None:
        _remember(_FOLDERS, key, found)


def learn_tree(commit: str, tree: str) -> None:
    """Remember that ``commit`` (a full id) has ``tree``."""
    if FULL_ID.fullmatch(commit) and FULL_ID.fullmatch(tree):
        _remember(_TREES, commit, tree)


def learn_ids(revs: Sequence[str], ids: Sequence[str]) -> None:
    """Remember the trees among git's answer ``ids`` for ``revs`` (``<full id>^{tree}``)."""
    for rev, oid in zip(revs, ids, strict=True):
        if rev.endswith(TREE):
            learn_tree(rev[: -len(TREE)], oid)


def is_known_commit(oid: str) -> bool:
    """Whether ``oid`` is a commit whose tree is remembered (so a commit, of course)."""
    return oid in _TREES


def known_ids(revs: Sequence[str]) -> list[str] | None:
    """What ``git rev-parse`` says ``revs`` are, where that needs no git: a full id is
    itself, and ``<full id>^{tree}`` a tree remembered; ``None`` otherwise."""
    ids = []
    for rev in revs:
        if FULL_ID.fullmatch(rev):
            ids.append(rev)
        elif rev.endswith(TREE) and (tree := _TREES.get(rev[: -len(TREE)])) is not None:
            ids.append(tree)
        else:
            return None
    return ids
