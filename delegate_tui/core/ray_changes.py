"""A remote attempt's change set: taken in its clone on the node, laid into its worktree here.

Owns how the work of an agent on a Ray node (:mod:`ray_host`) reaches the
task's local worktree (:mod:`ray_executor`), so the local watcher, the
conflict analysis, the commit and the merge see it as they see a local
agent's. While the agent has not committed, a change set is the files that
differ from the start commit (``git status``, one git command) and have moved
since the last one sent: their content and mode, or their removal, written
into the worktree here with no git at all. Once the agent has made commits of
its own, it is the worktree's snapshot commit (the one the local watcher
makes) as a bundle from the start commit, read into the worktree here; the
commits become one commit on the task's branch either way.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from delegate_tui.core import workspace

#: The ref name of a change set inside the scratch clone and its bundle.
SNAP_REF = "refs/delegate/snap"
#: How often taking in a bundle is tried before the attempt fails.
FETCH_TRIES = 4


def git_bytes(args: Sequence[str], cwd: Path, data: bytes | None = None) -> bytes:
    """Run git with binary input and output (packs); raise ``GitError`` on failure."""
    proc = subprocess.run(
        ["git", "-c", "core.fsmonitor=false", "-c", f"core.hooksPath={os.devnull}", *args],
        cwd=str(cwd),
        input=data if data is not None else b"",
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip().splitlines()
        raise workspace.GitError(
            f"git {' '.join(args[:2])}: " + (detail[-1] if detail else f"exit {proc.returncode}")
        )
    return proc.stdout


#: A file as sent: its git mode and content (a symlink's target), or ``None``: removed.
Entry = tuple[int, bytes] | None


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None
    return st.st_mode, st.st_size, st.st_mtime_ns


def _entry(path: Path) -> Entry | str:
    """What is at ``path`` now; ``"dir"`` for a folder (a submodule: not sent)."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        return 0o120000, os.fsencode(os.readlink(path))
    if stat.S_ISDIR(st.st_mode):
        return "dir"
    return (0o100755 if st.st_mode & 0o111 else 0o100644), path.read_bytes()


def _head(work: Path) -> str:
    """The commit checked out in clone ``work``, read from its files when they say it
    plainly (one git command less each time), else asked of git."""
    git_dir = work / ".git"
    with contextlib.suppress(OSError, UnicodeDecodeError):
        head = (git_dir / "HEAD").read_text("utf-8").strip()
        if head.startswith("ref: refs/"):
            head = (git_dir / head[5:]).read_text("utf-8").strip()  # not packed
        if len(head) == 40 and all(c in "0123456789abcdef" for c in head):
            return head
    return workspace.head(work)


class ChangeTaker:
    """The change sets of one attempt's clone, each against what was sent before."""

    def __init__(self, work: Path, start: str) -> None:
        self.work = work
        self.start = start
        self._sent: dict[str, tuple[int, int, int] | None] = {}  # path -> its stat when sent
        self._sent_tree = ""

    def take(self) -> dict[str, Any] | None:
        """The change set since the last one taken, or ``None`` when nothing moved."""
        head = _head(self.work)
        if head != self.start or self._sent_tree:
            return self._bundle(head)
        out = git_bytes(
            [
                *("status", "--porcelain=v1", "-z", "--untracked-files=all"),
                *("--no-renames", "--ignore-submodules=all"),
            ],
            self.work,
        )
        paths = {os.fsdecode(item[3:]) for item in out.split(b"\0") if len(item) > 3}
        now = {path: _signature(self.work / path) for path in paths | set(self._sent)}
        moved = [path for path, sig in now.items() if self._sent.get(path, ()) != sig]
        if not moved:
            return None
        files: dict[str, Entry] = {}
        for path in moved:
            entry = _entry(self.work / path)
            if entry != "dir":
                assert not isinstance(entry, str)
                files[path] = entry
        self._sent.update(now)
        return {"files": files}

    def _bundle(self, head: str) -> dict[str, Any] | None:
        commit = workspace.snapshot_worktree(self.work, head, "delegate-tui: watcher snapshot")
        tree = workspace.git(["rev-parse", f"{commit}^{{tree}}"], self.work).stdout.strip()
        if tree == self._sent_tree:
            return None
        data = b""
        if commit != self.start:
            workspace.git(["update-ref", SNAP_REF, commit], self.work)
            data = git_bytes(
                ["bundle", "create", "--quiet", "-", SNAP_REF, f"^{self.start}"], self.work
            )
        self._sent_tree = tree
        # Files sent before the agent committed: those its tree no longer has go.
        drop, self._sent = sorted(self._sent), {}
        return {"commit": commit, "bundle": data, "drop": drop}


def lay(workdir: Path, ref: str, change: dict[str, Any]) -> bool:
    """Lay a change set from the node into the task's worktree ``workdir``; ``ref`` is
    where a bundle's commit is kept. True when a ref was made."""
    if "files" in change:
        _write(workdir, change["files"])
        return False
    commit, data = change["commit"], change["bundle"]
    if data:
        with tempfile.NamedTemporaryFile(prefix="delegate-snap-", suffix=".bundle") as fh:
            fh.write(data)
            fh.flush()
            fetch = [
                *("-c", "gc.auto=0", "-c", "maintenance.auto=false"),
                *("fetch", "--quiet", "--no-write-fetch-head", fh.name),
                f"+{SNAP_REF}:{ref}",
            ]
            for tries_left in range(FETCH_TRIES - 1, -1, -1):
                try:
                    workspace.git(fetch, workdir)
                    break
                except workspace.GitError:
                    # Its connectivity check reads every worktree's HEAD, and a merged
                    # task's worktree may be going away at that moment: look again.
                    if not tries_left:
                        raise
                    time.sleep(0.2)
    workspace.git(["read-tree", "-u", "--reset", commit], workdir)
    drop = change.get("drop") or []
    if drop:
        kept = workspace.git(["ls-tree", "-r", "-z", "--name-only", commit, "--", *drop], workdir)
        _write(workdir, dict.fromkeys(set(drop) - set(kept.stdout.split("\0")), None))
    return bool(data)


def _write(workdir: Path, files: dict[str, Entry]) -> None:
    """Write (or remove) each file under ``workdir``; paths that leave it or reach into
    ``.git`` are ignored."""
    for rel, entry in files.items():
        parts = Path(rel).parts
        if not parts or Path(rel).is_absolute() or ".." in parts or parts[0] == ".git":
            continue
        target = workdir / rel
        for parent in reversed(target.relative_to(workdir).parents[:-1]):
            folder = workdir / parent
            if folder.is_symlink() or folder.is_file():  # a file became a folder
                folder.unlink()
        if target.is_dir() and not target.is_symlink():  # a folder became a file
            shutil.rmtree(target)
        if entry is None:
            with contextlib.suppress(FileNotFoundError):
                target.unlink()
            continue
        mode, data = entry
        target.parent.mkdir(parents=True, exist_ok=True)
        if mode == 0o120000:
            with contextlib.suppress(FileNotFoundError):
                target.unlink()
            target.symlink_to(os.fsdecode(data))
            continue
        # Whole at once: the local watcher never reads half a file.
        tmp = target.with_name(f".{target.name}.delegate-tmp")
        tmp.write_bytes(data)
        tmp.chmod(0o755 if mode == 0o100755 else 0o644)
        if target.is_symlink():
            target.unlink()
        os.replace(tmp, target)
