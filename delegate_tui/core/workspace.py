"""Git workspaces: the integration branch, a worktree per task attempt, commits, merges.

Owns every change delegate-tui makes to a repository, and the promise that
the operator's own branch, index and working tree are never touched unless
they ask for the final merge. Merges into the integration branch are
computed with ``git merge-tree --write-tree`` and land with a
compare-and-swap ``update-ref``, so a conflicting merge changes nothing at
all, not even a temporary checkout. Everything goes through the git CLI with
``-z`` output (paths with spaces, newlines or unicode survive); callers in
async code run these blocking functions in a thread. An agent's worktree is its
own to break: an attempt's commit never goes through its HEAD, its branch's
name or its history (:func:`commit_work`), nor through the index it writes (the
engine keeps its own index of each worktree: :func:`snapshot_worktree`), and a
branch an agent turned into a link is unlinked before it is written
(:func:`unlink_branch`).

(About 800 lines: one short function per git operation the run needs, and the few
readers of git's own files that spare a process (a branch's file, a worktree's HEAD);
what git said that cannot change under it is remembered in :mod:`git_memo`.)
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from delegate_tui.core import git_memo

if TYPE_CHECKING:  # imported where used: a Ray node's host needs git, not the events
    from delegate_tui.core.events import ChangedFile

MIN_GIT = (2, 38)  # merge-tree --write-tree
DELEGATE_DIR = ".delegate"
_FALLBACK_IDENTITY = {
    "GIT_AUTHOR_NAME": "delegate-tui",
    "GIT_AUTHOR_EMAIL": "delegate-tui@localhost",
    "GIT_COMMITTER_NAME": "delegate-tui",
    "GIT_COMMITTER_EMAIL": "delegate-tui@localhost",
}


_FULL_ID = git_memo.FULL_ID

#: Every diff delegate-tui asks for is git's own: a ``diff.external`` tool or a
#: textconv driver from the repository's config would run a program it did not ask for.
NO_EXT = ("--no-ext-diff", "--no-textconv")


class GitError(RuntimeError):
    """A git command failed; the message holds the command and git's own words."""


def git(
    args: Sequence[str],
    cwd: Path | str,
    *,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    input_text: str | None = None,
    operator_hooks: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run git without a pager or prompts and capture its output as text.

    The repository's config runs nothing here that delegate-tui did not ask
    for: no fsmonitor daemon or hook, and no hooks at all unless
    ``operator_hooks`` (only where the operator's own branch is written).
    Diffs add ``--no-ext-diff --no-textconv`` themselves.
    """
    argv, full_env = git_command(args, env, operator_hooks)
    proc = subprocess.run(
        argv,
        cwd=str(cwd),
        env=full_env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="surrogateescape",
        input=input_text,
        stdin=None if input_text is not None else subprocess.DEVNULL,
        check=False,
    )
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise GitError(
            f"git {' '.join(args[:3])}: " + (detail[-1] if detail else f"exit {proc.returncode}")
        )
    return proc


def git_command(
    args: Sequence[str], env: Mapping[str, str] | None = None, operator_hooks: bool = False
) -> tuple[list[str], dict[str, str]]:
    """The argv and environment :func:`git` runs ``args`` with."""
    full_env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat", "LC_ALL": "C"}
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", *_OBJECT_VARIABLES):
        full_env.pop(name, None)
    if env:
        full_env.update(env)
    guard = ["-c", "core.fsmonitor=false"]
    if not operator_hooks:
        guard += ["-c", f"core.hooksPath={os.devnull}"]
    return ["git", *guard, *args], full_env


#: Where git reads and writes objects: a sandboxed agent's own are set to its store.
_OBJECT_VARIABLES = ("GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES")


def git_version() -> tuple[int, int]:
    """The installed git's (major, minor), (0, 0) if git is missing."""
    try:
        out = subprocess.run(
            ["git", "--version"], capture_output=True, text=True, check=False
        ).stdout
    except FileNotFoundError:
        return (0, 0)
    match = re.search(r"(\d+)\.(\d+)", out)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def find_repo(path: Path) -> Path | None:
    """The top of the git work tree containing ``path``, or ``None``."""
    if not path.exists():
        return None
    proc = git(["rev-parse", "--show-toplevel"], path, check=False)
    return Path(proc.stdout.strip()) if proc.returncode == 0 else None


def ensure_excluded(repo: Path) -> None:
    """Add ``/.delegate/`` to ``.git/info/exclude`` (never the user's .gitignore)."""
    exclude_paths(repo, (f"/{DELEGATE_DIR}/",), "delegate-tui runs and worktrees")


def exclude_paths(
    repo: Path, patterns: Sequence[str], why: str = "files agents write for themselves"
) -> None:
    """Add ``patterns`` to the repository's ``info/exclude`` (shared by its worktrees), so
    git never sees them as anyone's work (e.g. aider's ``.aider*`` history and caches)."""
    common = _folders(repo)[2]
    exclude = common / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    existing = exclude.read_text(encoding="utf-8") if exclude.exists() else ""
    missing = [p for p in patterns if p not in existing.split("\n")]
    if missing:
        prefix = "" if not existing or existing.endswith("\n") else "\n"
        with exclude.open("a", encoding="utf-8") as fh:
            fh.write(f"{prefix}# {why} (delegate-tui)\n" + "".join(f"{p}\n" for p in missing))


def integration_branch(run_id: str) -> str:
    """The run's integration branch (beside, not under, ``delegate/<run-id>``)."""
    return f"delegate/{run_id}/integration"


def task_branch(run_id: str, task_id: str, attempt: int) -> str:
    """The branch of one attempt: ``-<attempt>`` from the second attempt on."""
    return f"delegate/{run_id}/tasks/{task_id}" + (f"-{attempt}" if attempt > 1 else "")


def worktrees_dir(repo: Path, run_id: str) -> Path:
    """Where a run's worktrees live."""
    return repo / ".delegate" / "worktrees" / run_id


def worktree_path(repo: Path, run_id: str, task_id: str, attempt: int) -> Path:
    """The worktree of one attempt."""
    return worktrees_dir(repo, run_id) / f"{task_id}-{attempt}"


def rev_parse(repo: Path, rev: str) -> str:
    """The commit id ``rev`` names; GitError if none."""
    proc = git(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], repo, check=False)
    if proc.returncode != 0:
        raise GitError(f"'{rev}' is not a branch or commit in {repo}")
    return proc.stdout.strip()


def has_commits(repo: Path) -> bool:
    """False for a freshly initialised repository."""
    return git(["rev-parse", "--verify", "--quiet", "HEAD"], repo, check=False).returncode == 0


#: Files git leaves while an operation waits for the operator, and what each means.
_IN_PROGRESS = (
    ("rebase-merge", "a rebase"),
    ("rebase-apply", "a rebase or `git am`"),
    ("MERGE_HEAD", "a merge"),
    ("CHERRY_PICK_HEAD", "a cherry-pick"),
    ("REVERT_HEAD", "a revert"),
    ("BISECT_LOG", "a bisect"),
)


def operation_in_progress(repo: Path) -> str | None:
    """The git operation left half done in ``repo`` (``"a rebase"``, …), if any."""
    args = [arg for name, _ in _IN_PROGRESS for arg in ("--git-path", name)]
    paths = git(["rev-parse", *args], repo).stdout.splitlines()
    for (_, what), path in zip(_IN_PROGRESS, paths, strict=True):
        if (repo / path).exists():
            return what
    return None


def current_branch(repo: Path) -> str | None:
    """The checked-out branch, or ``None`` when HEAD is detached."""
    proc = git(["symbolic-ref", "--quiet", "--short", "HEAD"], repo, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def identity_env(repo: Path) -> dict[str, str]:
    """Author variables to use when the repository has no user configured.

    Within :func:`identity_cache` (a run) git is asked once per worktree
    (:mod:`git_memo`): every snapshot, commit and merge needs the answer.
    """
    configured = git_memo.identity(repo)
    if configured is None:
        configured = git(["config", "user.email"], repo, check=False).returncode == 0
        git_memo.learn_identity(repo, configured)
    return {} if configured else dict(_FALLBACK_IDENTITY)


identity_cache = git_memo.identity_cache


def dirty_paths(repo: Path) -> list[str]:
    """Uncommitted paths of the operator's tree (tracked or untracked, not ignored)."""
    out = git(["status", "--porcelain=v1", "-z", "--untracked-files=all"], repo).stdout
    paths: list[str] = []
    records = out.split("\0")
    i = 0
    while i < len(records):
        record = records[i]
        i += 1
        if len(record) < 4:
            continue
        status, path = record[:2], record[3:]
        if status[0] in "RC":
            i += 1  # the rename's source follows
        if not path.startswith(f"{DELEGATE_DIR}/"):
            paths.append(path)
    return paths


def snapshot_worktree(workdir: Path, parent: str, message: str) -> str:
    """Commit the current state of ``workdir`` (untracked included) without touching its index.

    Works on a copy of an index of the worktree, so only changed files are hashed
    and the operator's (or agent's) staged changes stay as they were. In a linked
    worktree that copy is the engine's own index of it (:func:`own_index`), never the
    one its agent can write: an entry the agent staged could name an object of its own
    store (sandboxed) or any content at all. The updated copy (the snapshot's files,
    their stat data fresh) becomes the engine's index again, for the next look and for
    :func:`commit_work`. In the operator's checkout it is a copy of the real index.
    Returns ``parent`` (as a commit id) itself when nothing differs from it.
    """
    real, own, (parent_id, parent_tree) = _indexes(workdir, parent, f"{parent}^{{tree}}")
    base = own if own is not None and own.exists() else real
    with tempfile.TemporaryDirectory(prefix="delegate-index-") as tmp:
        index = Path(tmp) / "index"
        env = {"GIT_INDEX_FILE": str(index)}
        if base.exists():
            shutil.copy2(base, index)
        else:
            git(["read-tree", parent_id], workdir, env=env)
        git(["add", "-A"], workdir, env=env)  # .delegate/ is in info/exclude
        tree = git(["write-tree"], workdir, env=env).stdout.strip()
        snapshot = (
            parent_id
            if tree == parent_tree
            else git(
                ["commit-tree", tree, "-p", parent_id, "-m", message],
                workdir,
                env={**env, **identity_env(workdir)},  # who, asked only when it commits
            ).stdout.strip()
        )
        git_memo.learn_tree(snapshot, tree)
        if own is not None:
            _replace_with_copy(index, own)
        return snapshot


#: In a linked worktree's own git folder: the engine's index of the worktree
#: (:func:`snapshot_worktree`), read-only to a sandboxed agent.
OWN_INDEX = "delegate-index"


def _indexes(workdir: Path, *revs: str) -> tuple[Path, Path | None, list[str]]:
    """``workdir``'s index, the engine's own index of it (:func:`own_index`), and the
    ids of ``revs``: one ``git rev-parse``, none when git answered both before
    (:mod:`git_memo`: where a worktree's folders are, a commit's tree)."""
    key = git_memo.folders_key(workdir)
    folders, ids = git_memo.folders(key), git_memo.known_ids(revs)
    if folders is None or ids is None:
        out = git(
            ["rev-parse", "--path-format=absolute", "--git-path", "index", "--git-dir",
             "--git-common-dir", *revs],
            workdir,
        ).stdout.splitlines()  # fmt: skip
        folders, ids = (Path(out[0]), Path(out[1]), Path(out[2])), out[3:]
        git_memo.learn_folders(key, folders)
        git_memo.learn_ids(revs, ids)
    return folders[0], own_index(folders[1], folders[2]), ids


def _folders(workdir: Path) -> tuple[Path, Path, Path]:
    """``workdir``'s index, git folder and the repository's folder (absolute paths)."""
    key = git_memo.folders_key(workdir)
    found = git_memo.folders(key)
    if found is None:
        out = git(
            ["rev-parse", "--path-format=absolute", "--git-path", "index", "--git-dir",
             "--git-common-dir"],
            workdir,
        ).stdout.splitlines()  # fmt: skip
        found = (Path(out[0]), Path(out[1]), Path(out[2]))
        git_memo.learn_folders(key, found)
    return found


def own_index(git_dir: Path, common_dir: Path) -> Path | None:
    """The engine's own index of a linked worktree; ``None`` for a main checkout."""
    return None if git_dir.resolve() == common_dir.resolve() else git_dir / OWN_INDEX


def _replace_with_copy(source: Path, target: Path) -> None:
    """``target`` becomes a copy of ``source`` at once (a new file renamed over it)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}-", dir=target.parent)
    os.close(fd)
    try:
        shutil.copy2(source, tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def seed_index(workdir: Path) -> None:
    """Start the engine's own index of linked worktree ``workdir`` from its index as
    git just wrote it, before any agent runs there (nothing for a main checkout)."""
    real, own, _ = _indexes(workdir)
    if own is None:
        return
    if real.exists():
        _replace_with_copy(real, own)
    else:
        own.unlink(missing_ok=True)


def current_changes(
    workdir: Path, start: str, *, parent: str = "HEAD"
) -> tuple[str, list[ChangedFile]]:
    """A snapshot commit of ``workdir`` now (a child of ``parent``), and every change
    since ``start``: committed on its branch, staged, unstaged and untracked."""
    message = "delegate-tui: watcher snapshot"
    snapshot = snapshot_worktree(workdir, parent, message)
    return snapshot, changed_files(workdir, start, snapshot)


def commit_work(
    workdir: Path, branch: str, start: str, message: str, look: str | None = None
) -> str:
    """Commit an attempt's work: one commit of its worktree's files on ``start``, on
    ``branch``; return it.

    Nothing here goes through what the agent could change: not its HEAD, nor its
    branch's name (a symbolic ref in the run's writable task folder could point at
    the operator's branch), nor its history. Merged as it was, an agent's commit on
    the integration branch's newer tip would fast-forward the integration branch to
    a tree without what other tasks merged, and one on another task's unmerged
    commit would mark that work merged; so the work is always one commit on its
    start, and the subjects of the agent's own commits go in its message.
    ``look``: a :func:`snapshot_worktree` of ``workdir`` on ``start`` (the watcher's
    last look, when nothing ran since), committed without reading the files again.
    The worktree ends on ``branch`` with the engine's index of that snapshot (clean).
    """
    ref = f"refs/heads/{branch}"
    # One look at the branch serves both: a link has no commits of the agent's own, and
    # is deleted (never what it points at). A link made after this look is overwritten,
    # not followed: the branch is written with update-ref --no-deref.
    linked = _is_link(workdir, ref)
    subjects = [] if linked else _own_subjects(workdir, ref, start)
    if linked:
        git(["update-ref", "--no-deref", "-d", ref], workdir)
    snapshot = look or snapshot_worktree(workdir, start, message)
    real, own, (tree, start_tree) = _indexes(workdir, f"{snapshot}^{{tree}}", f"{start}^{{tree}}")
    commit = start
    if tree != start_tree:
        body = ["-m", "The agent's own commits:\n" + "\n".join(f"- {s}" for s in subjects)]
        commit = git(
            ["commit-tree", tree, "-p", start, "-m", message, *(body if subjects else [])],
            workdir,
            env=identity_env(workdir),
        ).stdout.strip()
        git_memo.learn_tree(commit, tree)
    subject = message.splitlines()[0] if message else ""
    git(["update-ref", "--no-deref", "-m", f"commit: {subject}", ref, commit], workdir)
    if not _head_names(workdir, ref):  # an agent moved it: back on its branch
        git(["symbolic-ref", "HEAD", ref], workdir)
    if own is not None and own.exists():  # the snapshot's files, stat data fresh: status clean
        _replace_with_copy(own, real)
    else:
        git(["reset", "--quiet", "--mixed"], workdir, check=False)
    return commit


def _head_names(workdir: Path, ref: str) -> bool:
    """Whether linked worktree ``workdir``'s HEAD file says ``ref: <ref>`` as
    ``git symbolic-ref HEAD <ref>`` writes it (which would then change nothing: it
    keeps no reflog without ``-m``); False when unsure (a main checkout, a link)."""
    found = git_memo.folders(git_memo.folders_key(workdir))
    if found is None or own_index(found[1], found[2]) is None:
        return False
    head_file = found[1] / "HEAD"
    try:
        return not head_file.is_symlink() and head_file.read_bytes() == f"ref: {ref}\n".encode()
    except OSError:
        return False


def _own_subjects(workdir: Path, ref: str, start: str, most: int = 20) -> list[str]:
    """The subjects of the commits the agent made on its branch since ``start`` (read
    only; none when the branch does not descend from ``start``; the caller asks first
    whether it is a symbolic ref, which has none)."""
    if _FULL_ID.fullmatch(start) and _loose_value(workdir, ref) == start:
        return []  # still where the engine put it: nothing committed since start
    tip = git(["rev-parse", "-q", "--verify", f"{ref}^{{commit}}"], workdir, check=False)
    if tip.returncode or tip.stdout.strip() == start:  # nothing committed since start
        return []
    if not is_ancestor(workdir, start, tip.stdout.strip()):
        return []
    out = git(["log", f"-{most}", "--format=%s", f"{start}..{tip.stdout.strip()}"], workdir)
    return [line for line in out.stdout.splitlines() if line][::-1]


def unlink_branch(repo: Path, branch: str) -> None:
    """Make ``branch`` a plain branch again if it is a symbolic ref (delete the link,
    never what it points at): git would follow it when the branch is written, and an
    agent can make one in the run's task folder pointing at the operator's branch."""
    ref = f"refs/heads/{branch}"
    if _is_link(repo, ref):
        git(["update-ref", "--no-deref", "-d", ref], repo)


def _is_link(repo: Path, ref: str) -> bool:
    """Whether ``ref`` (a branch) is a symbolic ref now: read each time, an agent can
    make one. Read from its file where git keeps branches as files (:func:`_loose_link`),
    else asked of git (``symbolic-ref``)."""
    known = _loose_link(repo, ref)
    if known is not None:
        return known
    return git(["symbolic-ref", "-q", ref], repo, check=False).returncode == 0


def _loose_path(repo: Path, ref: str) -> Path | None:
    """Where git keeps branch ``ref`` as a file (in the repository's own folder, as git
    named it for ``repo`` before), ``None`` when unknown or kept in a reftable."""
    found = git_memo.folders(git_memo.folders_key(repo))
    if found is None or (found[2] / "reftable").exists():
        return None
    return found[2] / ref


def _loose_value(repo: Path, ref: str) -> str | None:
    """The text of branch ``ref``'s loose file (an id, or ``ref: ...``), read without git;
    ``None`` when that cannot be said so (see :func:`_loose_link`)."""
    path = _loose_path(repo, ref)
    try:
        return (
            None if path is None or path.is_symlink() else path.read_text(encoding="ascii").strip()
        )
    except (OSError, UnicodeDecodeError):
        return None


def _known_commit(repo: Path, ref: str) -> str | None:
    """What ``rev_parse(repo, ref)`` says, read from the branch's loose file when that
    names a commit :mod:`git_memo` knows (one the engine made or git named); else None."""
    value = _loose_value(repo, ref)
    return value if value is not None and git_memo.is_known_commit(value) else None


def _loose_link(repo: Path, ref: str) -> bool | None:
    """Whether branch ``ref`` is a link, read from the repository's files without git;
    ``None`` when that cannot be said so (its folders not yet known, reftable, a file
    that cannot be read).

    With the files backend a symbolic ref is always a loose file (packed-refs holds
    none): git reads one as a link when it is a symbolic link naming ``refs/...``, or
    when its text starts with ``ref:``. Any symbolic link counts here, and so does a
    ``ref:`` naming no valid ref (git says "no such ref"): such a branch is deleted
    (``update-ref --no-deref -d``, never what it points at) before the engine writes
    it, as a link would be.
    """
    path = _loose_path(repo, ref)
    if path is None:
        return None
    try:
        if path.is_symlink():
            return True
        with path.open("rb") as loose:
            return loose.read(4) == b"ref:"
    except FileNotFoundError:
        return False  # no loose file: packed or missing, a link neither way
    except OSError:
        return None


def create_branch(repo: Path, branch: str, commit: str) -> None:
    """Create (or move, if it exists and nothing has it checked out) a branch."""
    unlink_branch(repo, branch)
    git(["branch", "--force", branch, commit], repo)


#: In a run's worktrees folder: merged attempts' worktrees kept for the next attempts
#: (``@`` is not allowed in a task id, so no attempt's folder has this name).
POOL_DIR = "@pool"


def add_worktree(repo: Path, path: Path, branch: str, start: str, *, checkout: bool = True) -> None:
    """A new worktree at ``path`` on a new branch ``branch`` from ``start``
    (without its files when not ``checkout``: :func:`reset_worktree` writes them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    files = [] if checkout else ["--no-checkout"]
    unlink_branch(repo, branch)
    git(["worktree", "add", "--quiet", *files, "-B", branch, str(path), start], repo)
    if checkout:
        seed_index(path)


def park_worktree(repo: Path, path: Path) -> None:
    """Keep a merged attempt's worktree for a next attempt instead of deleting it.

    Moved into the run's pool (its branch stays, as after a removal);
    :func:`take_parked` gives it to the next attempt, and what is left is
    removed at the end of the run. A worktree git cannot move is removed.
    Callers hold the run's git lock.
    """
    pool = path.parent / POOL_DIR
    pool.mkdir(exist_ok=True)
    if git(["worktree", "move", str(path), str(pool / path.name)], repo, check=False).returncode:
        remove_worktree(repo, path)


def take_parked(repo: Path, path: Path) -> bool:
    """Move a parked worktree of the same run to ``path``; False when there is none.

    :func:`reset_worktree` then makes it exactly what a new one would hold, and
    git rewrites only the files that differ instead of the whole tree (at 5,000
    files a fresh checkout takes seconds on a busy disk). A parked worktree git
    cannot move is removed. Callers hold the run's git lock.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    for spare in pool_worktrees(path.parent):
        if git(["worktree", "move", str(spare), str(path)], repo, check=False).returncode == 0:
            return True
        remove_worktree(repo, spare)
    return False


def reset_worktree(path: Path, branch: str, start: str) -> bool:
    """Put worktree ``path`` on a new branch ``branch`` at ``start``, its files exactly
    ``start``'s: changes and untracked files (ignored ones too) gone. False if git failed."""
    checkout = ["checkout", "--quiet", "--force", "--no-recurse-submodules", "-B", branch, start]
    with contextlib.suppress(GitError):  # its folders, for the link check and its index
        _indexes(path)
    unlink_branch(path, branch)
    if (
        git(checkout, path, check=False).returncode
        or git(["clean", "-ffdxq"], path, check=False).returncode
    ):
        return False
    seed_index(path)
    return True


def pool_worktrees(worktrees: Path) -> list[Path]:
    """The parked worktrees in a run's worktrees folder."""
    pool = worktrees / POOL_DIR
    return sorted(pool.iterdir()) if pool.is_dir() else []


def remove_worktree(repo: Path, path: Path) -> None:
    """Remove a worktree (its branch stays)."""
    git(["worktree", "remove", "--force", str(path)], repo, check=False)
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)
    git(["worktree", "prune"], repo, check=False)


def prune_worktrees(repo: Path) -> None:
    """Forget worktrees whose folders are gone (their branches stay)."""
    git(["worktree", "prune"], repo, check=False)


def head(workdir: Path) -> str:
    """The commit checked out in ``workdir``."""
    return git(["rev-parse", "HEAD"], workdir).stdout.strip()


def commit_all(workdir: Path, message: str) -> str:
    """Commit everything in the worktree (tracked, staged, untracked); return HEAD."""
    env = identity_env(workdir)
    git(["add", "-A"], workdir, env=env)
    staged = git(["diff", "--cached", "--quiet", *NO_EXT], workdir, check=False).returncode != 0
    if staged:
        git(["commit", "--quiet", "--no-verify", "-m", message], workdir, env=env)
    return head(workdir)


def changed_files(repo: Path, base: str, tip: str) -> list[ChangedFile]:
    """Files that differ between two commits, with status and line counts.

    One ``git diff --raw --numstat -z``: its raw records (``:modes ids status``,
    then the path, or a rename's two) come first, then its numstat ones (added,
    deleted and the path, tab-separated; a rename's two paths after an empty one).
    """
    from delegate_tui.core.events import ChangedFile

    if base == tip:
        return []
    args = ["diff", "--raw", "--no-abbrev", "--numstat", "-z", "-M", *NO_EXT, base, tip]
    fields = git(args, repo).stdout.split("\0")
    statuses: list[tuple[str, str, str]] = []  # (letter, old path, new path)
    i = 0
    while i < len(fields) and fields[i].startswith(":"):  # a numstat record starts with a digit
        letter = fields[i].rsplit(" ", 1)[-1][:1]
        if letter in "RC":
            statuses.append((letter, fields[i + 1], fields[i + 2]))
            i += 3
        else:
            statuses.append((letter, "", fields[i + 1]))
            i += 2
    counts: dict[str, tuple[int, int, bool]] = {}
    while i < len(fields):
        record = fields[i]
        i += 1
        parts = record.split("\t", 2)  # a path may hold a tab
        if len(parts) < 3:
            continue
        plus, minus, path = parts
        if path == "" and i + 1 < len(fields):  # rename: old\0new\0 follow
            path = fields[i + 1]
            i += 2
        binary = plus == "-"
        counts[path] = (0 if binary else int(plus), 0 if binary else int(minus), binary)
    files: list[ChangedFile] = []
    for letter, old, new in statuses:
        added, deleted, binary = counts.get(new, (0, 0, False))
        files.append(
            ChangedFile(new, "R" if letter == "R" else letter, added, deleted, old, binary)
        )
    return files


def diff_text(repo: Path, base: str, tip: str, paths: Sequence[str] = ()) -> str:
    """The unified diff between two commits, limited to ``paths`` when given.

    Git's own diff only: a ``diff.external`` tool or a textconv driver from the
    repository's config would run a program delegate-tui did not ask for.
    """
    if not base or not tip:
        return ""
    args = ["diff", "--no-color", *NO_EXT, "-M", base, tip]
    if paths:
        args += ["--", *paths]
    return git(args, repo, check=False).stdout


@dataclass(frozen=True, slots=True)
class MergeResult:
    """The outcome of merging a commit into a branch."""

    ok: bool
    commit: str = ""
    fast_forward: bool = False
    conflicts: tuple[str, ...] = ()
    detail: str = ""


def is_ancestor(repo: Path, older: str, newer: str) -> bool:
    """True when ``older`` is reachable from ``newer``."""
    return git(["merge-base", "--is-ancestor", older, newer], repo, check=False).returncode == 0


def predict_merge(repo: Path, ours: str, theirs: str) -> MergeResult:
    """Merge two commits in memory: the tree, or the conflicting paths. Changes nothing."""
    proc = git(["merge-tree", "--write-tree", "--name-only", "-z", ours, theirs], repo, check=False)
    if proc.returncode not in (0, 1):
        raise GitError(f"git merge-tree: {proc.stderr.strip()}")
    sections = proc.stdout.split("\0\0", 1)
    head_part = sections[0].split("\0")
    tree, paths = head_part[0], tuple(p for p in head_part[1:] if p)
    messages = _merge_messages(sections[1]) if len(sections) > 1 else ""
    if proc.returncode == 1:  # the exit code is the truth, not the list
        return MergeResult(False, conflicts=paths, detail=messages)
    return MergeResult(True, commit=tree)


def _merge_messages(raw: str) -> str:
    """merge-tree's informational records: count, paths, type, message; keep conflicts."""
    fields = raw.split("\0")
    out: list[str] = []
    i = 0
    while i < len(fields) and fields[i].isdigit():
        count = int(fields[i])
        i += 1 + count
        if i + 1 >= len(fields):
            break
        kind, text = fields[i], fields[i + 1].strip()
        i += 2
        if kind.startswith("CONFLICT"):
            out.append(text)
    return "; ".join(out)


def merge_into(repo: Path, branch: str, commit: str, message: str) -> MergeResult:
    """Merge ``commit`` (a full commit id) into ``branch`` (not checked out anywhere) atomically."""
    ref = f"refs/heads/{branch}"
    tip = _known_commit(repo, ref) or rev_parse(repo, ref)
    # One merge-base answers both questions: when one commit is the other's
    # ancestor, it is their (only) best common ancestor.
    base = git(["merge-base", tip, commit], repo, check=False).stdout.strip()
    if base == commit:
        return MergeResult(True, tip, fast_forward=True, detail="already merged")
    if base == tip:
        git(["update-ref", ref, commit, tip], repo)
        return MergeResult(True, commit, fast_forward=True)
    predicted = predict_merge(repo, tip, commit)
    if not predicted.ok:
        return predicted
    env = identity_env(repo)
    merged = git(
        ["commit-tree", predicted.commit, "-p", tip, "-p", commit, "-m", message], repo, env=env
    ).stdout.strip()
    git_memo.learn_tree(merged, predicted.commit)
    git(["update-ref", ref, merged, tip], repo)  # compare-and-swap: fails if tip moved
    return MergeResult(True, merged)


def final_merge(repo: Path, integration: str, expected_branch: str) -> MergeResult:
    """Bring the integration branch into the operator's checked-out branch.

    Only a fast-forward or a merge that ``merge-tree`` proves clean, and only
    when the operator's tree has no uncommitted changes that git would touch.
    """
    branch = current_branch(repo)
    if branch is None:
        return MergeResult(False, detail="HEAD is detached; check out your branch first")
    if expected_branch and branch != expected_branch:
        return MergeResult(
            False, detail=f"the run started from '{expected_branch}' but '{branch}' is checked out"
        )
    tip = rev_parse(repo, "HEAD")
    target = rev_parse(repo, integration)
    if is_ancestor(repo, target, tip):
        return MergeResult(True, tip, fast_forward=True, detail="already up to date")
    dirty = dirty_paths(repo)
    if dirty:
        return MergeResult(
            False, detail=f"your working tree has uncommitted changes ({', '.join(dirty[:3])})"
        )
    if is_ancestor(repo, tip, target):
        git(["merge", "--ff-only", "--quiet", target], repo, operator_hooks=True)
        return MergeResult(True, target, fast_forward=True)
    predicted = predict_merge(repo, tip, target)
    if not predicted.ok:
        return MergeResult(False, conflicts=predicted.conflicts, detail="would conflict")
    env = identity_env(repo)
    git(["merge", "--no-ff", "--no-edit", "--quiet", target], repo, env=env, operator_hooks=True)
    return MergeResult(True, rev_parse(repo, "HEAD"))


def setup_copy(repo: Path, workdir: Path, rel: str) -> str:
    """Copy an untracked file or folder from the repo into a worktree; '' or a warning."""
    src, dst = repo / rel, workdir / rel
    if not src.exists():
        return f"worktree_setup.copy: {rel} does not exist in the repository; skipped"
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dst, symlinks=True, dirs_exist_ok=True)
    else:
        shutil.copy2(src, dst)
    return ""


def setup_link(repo: Path, workdir: Path, rel: str) -> str:
    """Symlink a big folder of the repo into a worktree; '' or a warning."""
    src, dst = repo / rel, workdir / rel
    if not src.exists():
        return f"worktree_setup.link: {rel} does not exist in the repository; skipped"
    if dst.is_symlink() or dst.exists():
        return f"worktree_setup.link: {rel} already exists in the worktree; left as it is"
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.symlink_to(src, target_is_directory=src.is_dir())
    return ""
