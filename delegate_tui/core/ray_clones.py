"""One run's scratch clones on a Ray node: its base, its start commits, clones kept warm.

Owns the git side of a node's host (:mod:`ray_host`) for one run: a bare
repository holding the run's base (a git pack fetched from Ray's object store
once per node) and each later commit an attempt starts from (a small pack,
also once per node), and the clones attempts work in, which borrow its
objects. Clones are kept warm: when the run starts the host makes a few at the
base in the background (while the first batch waits for its approval), and a
finished attempt's clone is cleaned and kept for a later one; an attempt takes
one and checks out its own start commit, which rewrites only the files that
differ (its packs and checkout in the background: the attempt's first process
waits for them). A clone taken again gets a new git folder, as a new clone has (git's
own config, no hook, no ref, no object of its own; only the index, which
spares the checkout, is kept), so nothing an agent set in its clone's ``.git``
(a hook, ``core.hooksPath``, a filter, an alias) runs in a later attempt's git
commands there. A host holds a claim on its folder (an ``flock``, freed when it dies);
a host taking a run on sweeps what hosts now gone left, of any run. Ray is not
imported here.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import itertools
import os
import shutil
import tempfile
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from delegate_tui.core import workspace
from delegate_tui.core.ray_changes import git_bytes

#: The config ``git init`` writes in a new clone; a clone taken again gets it back.
CLONE_CONFIG = (
    "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n"
    "\tbare = false\n\tlogallrefupdates = true\n"
)
#: The branch an attempt's clone has checked out.
CLONE_BRANCH = "delegate-task"
#: A start commit's pack at most this big is indexed here, without git.
INDEX_MAX = 1024 * 1024
#: How long the end of a run waits for clones still being made or cleaned.
CLOSE_WAIT_S = 10.0
#: How long an attempt waits for a pack another attempt's call brings.
PROMISE_WAIT_S = 60.0


def make_pack(repo: Path, commit: str, exclude: Sequence[str] = ()) -> bytes:
    """A git pack of ``commit`` and its history, without what the ``exclude`` commits
    have. A pack of what a start commit adds to what a node has (``exclude``) has no
    deltas: a node indexes a small one itself (:func:`write_pack`), with no git
    command."""
    revs = "".join([f"{commit}\n", *(f"^{c}\n" for c in exclude)])
    flat = ["--window=0", "--no-reuse-delta"] if exclude else []
    return git_bytes(["pack-objects", "--revs", "--stdout", "-q", *flat], repo, revs.encode())


#: Git's object types by their number in a pack (6 and 7 are deltas).
PACK_TYPES = {1: b"commit", 2: b"tree", 3: b"blob", 4: b"tag"}


def join_packs(packs: Sequence[bytes]) -> bytes:
    """One git pack holding the objects of ``packs`` (each a whole pack, version 2)."""
    count = sum(int.from_bytes(pack[8:12], "big") for pack in packs)
    body = b"".join(
        [b"PACK", (2).to_bytes(4, "big"), count.to_bytes(4, "big")]
        + [pack[12:-20] for pack in packs]
    )
    return body + hashlib.sha1(body).digest()


def write_pack(pack: bytes, objects: Path) -> bool:
    """Put a git pack without deltas under ``objects/pack`` with the index git reads it
    by, made here (what ``git index-pack`` does, with no process and a handful of file
    operations, however many objects). False, with nothing written, when the pack holds
    a delta (:func:`make_pack` makes none for start commits; ``index-pack`` takes such).
    """
    if len(pack) < 32 or pack[:4] != b"PACK" or int.from_bytes(pack[4:8], "big") != 2:
        raise ValueError("not a git pack")
    trailer = pack[-20:]
    if hashlib.sha1(pack[:-20]).digest() != trailer:
        raise ValueError("the pack's checksum does not match")
    entries: list[tuple[bytes, int, int]] = []  # object id, CRC-32 of its entry, offset
    pos, view = 12, memoryview(pack)[:-20]
    for _ in range(int.from_bytes(pack[8:12], "big")):
        start, byte = pos, pack[pos]
        kind, size, shift, pos = (byte >> 4) & 7, byte & 15, 4, pos + 1
        while byte & 0x80:
            byte, pos = pack[pos], pos + 1
            size, shift = size | (byte & 0x7F) << shift, shift + 7
        if kind not in PACK_TYPES:
            return False
        inflate = zlib.decompressobj()
        data = inflate.decompress(view[pos:])
        if not inflate.eof or len(data) != size:
            raise ValueError("a pack entry does not inflate to its size")
        pos = len(view) - len(inflate.unused_data)
        name = hashlib.sha1(PACK_TYPES[kind] + b" %d\0" % size + data).digest()
        entries.append((name, zlib.crc32(view[start:pos]), start))
    if pos != len(view) or len(pack) >= 1 << 31:
        raise ValueError("the pack has bytes after its objects, or is too big for this")
    entries.sort()
    fanout = [0] * 256
    for name, _, _ in entries:
        fanout[name[0]] += 1
    index = bytearray(b"\xfftOc" + (2).to_bytes(4, "big"))
    total = 0
    for count in fanout:
        total += count
        index += total.to_bytes(4, "big")
    for name, _, _ in entries:
        index += name
    for _, crc, _ in entries:
        index += crc.to_bytes(4, "big")
    for _, _, offset in entries:
        index += offset.to_bytes(4, "big")
    index += trailer
    index += hashlib.sha1(index).digest()
    folder = objects / "pack"
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"pack-{trailer.hex()}"
    for suffix, content in ((".pack", pack), (".idx", bytes(index))):  # the index last
        fd, tmp = tempfile.mkstemp(prefix=".pack-", dir=folder)  # whole, or not there
        with os.fdopen(fd, "wb") as out:
            out.write(content)
        os.replace(tmp, stem.with_suffix(suffix))
    return True


def _indexed(pack: bytes, objects: Path) -> bool:
    try:
        return write_pack(pack, objects)
    except ValueError:  # git's index-pack says what is wrong with it
        return False


def fresh_git_dir(work: Path, objects: Path) -> None:
    """Give clone ``work`` the git folder of a new clone whose objects are borrowed from
    ``objects``: git's own config, no hook, no ref, no reflog, no object of its own,
    ``HEAD`` on :data:`CLONE_BRANCH` yet to be made. Only a real index file is kept (a
    checkout then rewrites only the files that differ from it). No git command runs."""
    git_dir = work / ".git"
    new = work.parent / f".{work.name}.git-new"
    old = work.parent / f".{work.name}.git-old"
    for stale in (new, old):
        shutil.rmtree(stale, ignore_errors=True)
    for folder in ("objects/info", "objects/pack", "refs/heads", "refs/tags", "hooks", "info"):
        (new / folder).mkdir(parents=True)
    (new / "HEAD").write_text(f"ref: refs/heads/{CLONE_BRANCH}\n")
    (new / "config").write_text(CLONE_CONFIG)
    (new / "objects" / "info" / "alternates").write_text(f"{objects}\n")
    if git_dir.is_symlink() or git_dir.is_file():  # not what a clone of ours has
        git_dir.unlink()
    elif git_dir.is_dir():
        index = git_dir / "index"
        if index.is_file() and not index.is_symlink():
            os.replace(index, new / "index")
        os.replace(git_dir, old)
    os.replace(new, git_dir)
    shutil.rmtree(old, ignore_errors=True)


def check_out(work: Path, start: str) -> None:
    """Check out ``start`` in clone ``work`` on its branch, files and index."""
    workspace.git(["checkout", "--quiet", "--force", "-B", CLONE_BRANCH, start], work)


def clean(work: Path, spare: Path, objects: Path) -> None:
    """Leave nothing of an attempt in its clone but its checked-out files: a new git
    folder first (so the agent's config runs nothing in the clean), then no untracked or
    ignored file; move it to ``spare``."""
    if not (work / ".git").is_dir() or (work / ".git").is_symlink():
        raise OSError(f"{work} is no clone")
    fresh_git_dir(work, objects)
    workspace.git(["clean", "--quiet", "-ffdx"], work)
    shutil.rmtree(spare, ignore_errors=True)
    work.rename(spare)


class RunClones:
    """One run's base repository and clones on this node."""

    def __init__(self, root: Path, grace_s: float) -> None:
        self.root = root
        self._claim = _claim(root)  # held while this host lives: see sweep_gone_runs
        self.base = root / "base.git"
        self.grace_s = grace_s  # SIGTERM to SIGKILL for this run's processes
        self._spares: list[Path] = []  # clean clones, ready for attempts (the latest last)
        self._making: set[asyncio.Task[None]] = set()  # clones being made or cleaned
        self._fetches: dict[str, asyncio.Task[None]] = {}  # commit -> taking in its pack
        #: Commits an attempt waits for whose pack another call brings (not here yet).
        self._promised: dict[str, asyncio.Future[None]] = {}
        self._last: asyncio.Task[None] | None = None  # the pack asked for last
        self._names = itertools.count()

    @property
    def objects(self) -> Path:
        return self.base / "objects"

    def fetch(
        self, commits: str | Sequence[str], source: Any, *, base: bool = False
    ) -> asyncio.Future[None]:
        """Take in the pack of ``commits`` (the start commits it brings, the last its
        own; its bytes, or a Ray object ref to them) once, after the packs asked for
        before it (a pack holds only what the node lacks then). Attempts that start at
        one of them meanwhile wait for the same one. With ``source`` ``None``, another
        attempt's call brings the pack (the engine sent it there, and does not wait
        for calls): wait for that one, however the calls arrive."""
        covered = [commits] if isinstance(commits, str) else list(commits)
        if source is None:
            return self._promise(covered[-1])
        commit = covered[-1]
        job = self._fetches.get(commit)
        if job is None or (job.done() and (job.cancelled() or job.exception() is not None)):
            before = self._last

            async def fetch() -> None:
                data = source if isinstance(source, bytes) else await source
                if before is not None:
                    await asyncio.wait({before})
                await asyncio.to_thread(self._take, data, commit, base)

            job = asyncio.get_running_loop().create_task(fetch())
            job.add_done_callback(_settled)
            self._last = job
            for each in covered:
                self._fetches[each] = job
                promised = self._promised.pop(each, None)
                if promised is not None:
                    _chain(job, promised)
        return job

    def _promise(self, commit: str) -> asyncio.Future[None]:
        """The taking in of ``commit``'s pack, whichever call brings it (within
        :data:`PROMISE_WAIT_S`)."""
        job = self._fetches.get(commit)
        if job is not None:
            return job
        promised = self._promised.get(commit)
        if promised is None:
            promised = self._promised[commit] = asyncio.get_running_loop().create_future()
            never = workspace.GitError(f"the pack of commit {commit} never came to this node")
            timer = asyncio.get_running_loop().call_later(
                PROMISE_WAIT_S, lambda: None if promised.done() else promised.set_exception(never)
            )
            promised.add_done_callback(lambda _: timer.cancel())
        return promised

    def _take(self, data: bytes, commit: str, base: bool) -> None:
        if base and not (self.base / "HEAD").is_file():  # a later base adds to the first
            self.root.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(self.base, ignore_errors=True)
            workspace.git(["init", "--quiet", "--bare", str(self.base)], self.root)
        if base or len(data) > INDEX_MAX or not _indexed(data, self.objects):
            git_bytes(["index-pack", "--stdin"], self.base, data)
        # A ref keeps the commit's objects reachable (nothing prunes here, but be plain).
        ref = self.base / "refs" / "delegate" / commit
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(commit + "\n")

    def _job(self, work: Any) -> None:
        job = asyncio.get_running_loop().create_task(work)
        self._making.add(job)
        job.add_done_callback(_settled)
        job.add_done_callback(self._making.discard)

    def warm(self, count: int, base_commit: str, source: Any) -> None:
        """Make ``count`` clones at the base in the background, for the first attempts."""
        fetched = self.fetch(base_commit, source, base=True)
        for _ in range(count):
            self._job(self._warm_one(fetched, base_commit))

    async def _warm_one(self, fetched: asyncio.Future[None], commit: str) -> None:
        await fetched
        spare = self.root / f"spare-{next(self._names)}"

        def make() -> None:
            shutil.rmtree(spare, ignore_errors=True)
            spare.mkdir(parents=True)
            fresh_git_dir(spare, self.objects)
            check_out(spare, commit)

        await asyncio.to_thread(make)
        self._spares.append(spare)

    async def take(
        self, work: Path, start: str, packs: Sequence[asyncio.Future[None]]
    ) -> tuple[float, bool, asyncio.Task[tuple[float, float]]]:
        """A clone at ``work`` with ``start`` checked out: a warm one (waiting for one
        being made or cleaned), else a new one. How long it waited for a warm one, whether
        it got one, and the clone's making, under way in the background: the ``packs``
        that bring ``start`` taken in, then the checkout (their seconds, or the error they
        met). The attempt's call returns meanwhile; its first process waits for it
        (:mod:`ray_host`)."""
        began = time.monotonic()
        while not self._spares and self._making:
            await asyncio.wait(set(self._making), return_when=asyncio.FIRST_COMPLETED)
        spare = self._spares.pop() if self._spares else None
        waited = time.monotonic() - began

        def make() -> float:
            began = time.monotonic()
            if spare is not None:  # its git folder was made new when it was cleaned
                spare.rename(work)
            else:
                work.mkdir(parents=True)
                fresh_git_dir(work, self.objects)
            check_out(work, start)
            return time.monotonic() - began

        async def ready() -> tuple[float, float]:
            began = time.monotonic()
            for pack in packs:  # in order: each adds to those before it
                await pack
            fetched = time.monotonic() - began
            return fetched, await asyncio.to_thread(make)

        return waited, spare is not None, asyncio.get_running_loop().create_task(ready())

    def give_back(self, work: Path, then: Path) -> None:
        """Clean clone ``work`` in the background for a later attempt, then remove the
        folder ``then`` (the attempt's, around it)."""

        async def recycle() -> None:
            spare = self.root / f"spare-{next(self._names)}"
            with contextlib.suppress(workspace.GitError, OSError):
                await asyncio.to_thread(clean, work, spare, self.objects)
                self._spares.append(spare)
            await asyncio.to_thread(shutil.rmtree, then, True)

        self._job(recycle())

    async def close(self) -> None:
        """The run is over: remove everything it left here, and what hosts of it that
        are gone left (a delegate-tui ended by ``kill -9`` before a resume)."""
        if self._making:  # a clone being made or cleaned: let it end first
            await asyncio.wait(set(self._making), timeout=CLOSE_WAIT_S)
        for job in [*self._making, *self._fetches.values(), *self._promised.values()]:
            job.cancel()
        await asyncio.to_thread(_remove_run, self.root)
        if self._claim is not None:
            self._claim.close()


def _remove_run(root: Path) -> None:
    """Remove a host's folder ``root`` (``host-<pid>``), its run's folders of hosts whose
    process is gone, and the run's folder once empty. (Nodes simulated on one machine
    share its temporary folder: a live host's folder is its own to remove.)"""
    shutil.rmtree(root, ignore_errors=True)
    _remove_gone_hosts(root.parent)


def sweep_gone_runs(top: Path) -> None:
    """Remove what hosts that are gone left under ``top`` (``delegate-ray``), for every run:
    a run whose only host on this node died with it (a lost node, ``kill -9``) had no
    host left to remove its clones at its end. Called as a host takes a run on."""
    with contextlib.suppress(OSError):
        for run in top.iterdir():
            _remove_gone_hosts(run)


def _remove_gone_hosts(run: Path) -> None:
    """Remove run folder ``run``'s ``host-<pid>`` folders whose host is gone, then the
    run's folder if that left it empty."""
    with contextlib.suppress(OSError):
        for other in run.glob("host-*"):
            if _gone(other):
                shutil.rmtree(other, ignore_errors=True)
        run.rmdir()


#: The file a live host holds an exclusive ``flock`` on, in its ``host-<pid>`` folder.
CLAIM = ".host"


def _claim(root: Path) -> Any:
    """Make the host's folder and hold its claim (the open file; ``None`` if it could not
    be taken: the folder is then judged by its pid alone)."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        held = (root / CLAIM).open("ab")
    except OSError:
        return None
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        held.close()
        return None
    return held


def _gone(host: Path) -> bool:
    """Whether the host of folder ``host`` is gone. Its claim decides where it has one:
    a ``flock`` is freed when its holder dies, and it holds between processes that see
    one another's pids differently (containers sharing the temporary folder), where a
    pid alone would call a live host dead. Without one (a host of an older version, or
    one that died before claiming it), its process id in the name decides."""
    try:
        with (host / CLAIM).open("rb") as claim:
            try:
                fcntl.flock(claim, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # held: the host is alive
            return True
    except FileNotFoundError:
        pid = host.name.removeprefix("host-")
        return pid.isdigit() and not _alive(int(pid))
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True


def _chain(job: asyncio.Task[None], promised: asyncio.Future[None]) -> None:
    """Settle ``promised`` as ``job`` ends."""

    def done(_: asyncio.Task[None]) -> None:
        if promised.done():
            return
        if job.cancelled():
            promised.cancel()
        elif (exc := job.exception()) is not None:
            promised.set_exception(exc)
        else:
            promised.set_result(None)

    job.add_done_callback(done)


def _settled(job: asyncio.Task[None]) -> None:
    """A background clone that failed is only not there (an attempt makes its own)."""
    if not job.cancelled():
        job.exception()
