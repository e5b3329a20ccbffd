"""One attempt's place on a Ray node: its scratch clone and its processes, run there.

Owns what happens on the node for the Ray executor (:mod:`ray_executor`):
a scratch clone of the run's base (a git bundle fetched once per node and run
from Ray's object store, the attempt's own start commit added as a small
bundle), the attempt's processes started there exactly as on the local
machine (:class:`~delegate_tui.core.supervisor.Supervisor`: a process group
of their own, a PTY or pipes, a watchdog that ends them if this worker dies),
their output buffered for the engine to take in order, and the worktree's
change set: while the agent works its worktree is snapshot once a second
(the same snapshot commit the local watcher makes) and, when it changed, sent
as a bundle from the start commit. Ray runs :class:`AttemptHost` as an async
actor; this module itself imports nothing of Ray, so it is read and tested
like any other. A host outlives its attempt: the engine gives it the next
attempt that asks for the same resources, so a worker process starts once
per slot, not once per attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from delegate_tui.core import workspace
from delegate_tui.core.process import AgentProcess
from delegate_tui.core.supervisor import Supervisor

#: How often the agent's worktree is looked at for its change set.
SNAPSHOT_S = 1.0
#: The most output one poll hands back; the rest waits for the next poll.
POLL_MAX_BYTES = 4 * 1024 * 1024
#: The ref names used inside the scratch repository and in bundles.
BASE_REF = "refs/delegate/base"
START_REF = "refs/delegate/start"
SNAP_REF = "refs/delegate/snap"
#: An argv word the node reads as its own Python (the engine's is this machine's path).
NODE_PYTHON = "{node-python}"
#: Files of the run folder a process may write and the engine wants back (e.g. the
#: agent's last message), at most this big each.
RUN_FILE_MAX = 1024 * 1024


def scratch_root(run_id: str) -> Path:
    """Where a run's scratch clones live on a node."""
    return Path(tempfile.gettempdir()) / "delegate-ray" / run_id


def read_run_files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes), each at most ``RUN_FILE_MAX``."""
    found: dict[str, bytes] = {}
    if not root.is_dir():
        return found
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.stat().st_size <= RUN_FILE_MAX:
            found[str(path.relative_to(root))] = path.read_bytes()
    return found


def write_run_files(root: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` (relative path -> bytes) under ``root``; a path ending in ``/`` is a
    folder to make. Paths that leave ``root`` are ignored."""
    base = root.resolve()
    for rel, data in files.items():
        target = (root / rel).resolve()
        if base != target and base not in target.parents:
            continue
        if rel.endswith("/"):
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


class AttemptHost:
    """One attempt on one node; each method is called by the engine through Ray."""

    def __init__(self, run_id: str, grace_s: float) -> None:
        self.root = scratch_root(run_id)
        self.dir = self.root / "unplaced"
        self.work = self.dir / "work"
        self.run_dir = self.dir / "run"
        self.grace_s = grace_s
        self._supervisor: Supervisor | None = None
        self._proc: AgentProcess | None = None
        self._start = ""
        self._buf = bytearray()
        self._exit: int | None = None
        self._snap: tuple[str, bytes] | None = None
        self._sent_tree = ""
        self._files: dict[str, bytes] = {}
        self._snapshot_ok = False  # the last process's exit snapshot was taken
        self._exited_at = 0.0  # wall clock, for the engine's account of where time goes
        self._event: asyncio.Event | None = None
        self._watch: asyncio.Task[None] | None = None
        self._waiter: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ place

    def where(self) -> dict[str, str]:
        """This node: its Ray id and address, and the host's name."""
        import ray  # on the node, inside its Ray worker

        context = ray.get_runtime_context()
        return {
            "node_id": context.get_node_id(),
            "ip": ray.util.get_node_ip_address(),  # type: ignore[no-untyped-call]
            "host": socket.gethostname(),
        }

    async def prepare(
        self, attempt_key: str, base: list[Any], base_commit: str, increment: bytes, start: str
    ) -> dict[str, str]:
        """Make the scratch clone of an attempt at ``start``: the run's base comes once
        per node (``base`` holds its bundle's object ref), ``increment`` brings ``start``.
        One host serves one attempt at a time, and the next once :meth:`cleanup` ran."""
        began = time.monotonic()
        self.dir = self.root / attempt_key
        self.work = self.dir / "work"
        self.run_dir = self.dir / "run"
        self._sent_tree = ""
        await asyncio.to_thread(self._ensure_base, base, base_commit)
        await asyncio.to_thread(self._clone, increment, start)
        self._start = start
        if self._supervisor is None:
            self._supervisor = Supervisor(self.grace_s)
            self._supervisor.start()
        self._event = asyncio.Event()
        return {
            **self.where(),
            "work": str(self.work),
            "run": str(self.run_dir),
            "clone_s": f"{time.monotonic() - began:.6f}",
        }

    def _ensure_base(self, base: list[Any], base_commit: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        repo = self.root / "base.git"
        with (self.root / "base.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one clone of the base per node and run
            if (repo / "delegate-ready").exists():
                return
            import ray

            data = ray.get(base[0])
            shutil.rmtree(repo, ignore_errors=True)
            workspace.git(["init", "--quiet", "--bare", str(repo)], self.root)
            bundle = self.root / "base.bundle"
            bundle.write_bytes(data)
            workspace.git(["fetch", "--quiet", str(bundle), f"+{BASE_REF}:{BASE_REF}"], repo)
            bundle.unlink()
            got = workspace.git(["rev-parse", BASE_REF], repo).stdout.strip()
            if got != base_commit:
                raise RuntimeError(f"the base bundle holds {got}, not {base_commit}")
            (repo / "delegate-ready").write_text(base_commit)

    @property
    def _spare(self) -> Path:
        """The previous attempt's clone, kept by this host (its worker process) for the next."""
        return self.root / f"spare-{os.getpid()}"

    def _clone(self, increment: bytes, start: str) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        self.run_dir.mkdir(parents=True)
        reused = self._spare.is_dir()
        if reused:
            self._spare.rename(self.work)
        else:
            workspace.git(["init", "--quiet", str(self.work)], self.dir)
            alternates = self.work / ".git" / "objects" / "info" / "alternates"
            alternates.write_text(str(self.root / "base.git" / "objects") + "\n")
        if increment:
            bundle = self.dir / "start.bundle"
            bundle.write_bytes(increment)
            workspace.git(["fetch", "--quiet", str(bundle), f"+{START_REF}:{START_REF}"], self.work)
            bundle.unlink()
        workspace.git(["checkout", "--quiet", "--force", "-B", "delegate-task", start], self.work)
        if reused:  # nothing of the previous attempt's may remain
            workspace.git(["clean", "--quiet", "-ffdx"], self.work)

    # ------------------------------------------------------------ processes

    async def spawn(
        self,
        argv: list[str],
        env: dict[str, str],
        transport: str,
        size: tuple[int, int],
        stdin: str,
        files: dict[str, bytes],
        watch: bool,
    ) -> dict[str, Any]:
        """Start a process in the scratch clone; ``env`` is laid over the node's own.

        ``files`` are the run-folder files it reads (e.g. the guard's settings).
        """
        assert self._supervisor is not None and self._event is not None
        write_run_files(self.run_dir, files)
        argv = [sys.executable if word == NODE_PYTHON else word for word in argv]
        self._buf.clear()
        self._exit, self._snap, self._files = None, None, {}
        self._snapshot_ok = False
        full = {**os.environ, **env}
        if transport == "pty" and full.get("TERM", "dumb") == "dumb":
            full["TERM"] = "xterm-256color"
        try:
            proc = self._supervisor.spawn(
                "agent",
                argv,
                cwd=self.work,
                env=full,
                on_output=self._output,
                transport=transport,
                size=size,
                stdin=stdin,
            )
        except OSError as exc:
            return {"error": exc.strerror or str(exc)}
        self._proc = proc
        self._waiter = asyncio.get_running_loop().create_task(self._wait(proc))
        if watch:
            self._watch = asyncio.get_running_loop().create_task(self._watch_changes())
        return {
            "pid": proc.pid,
            "pgid": proc.pgid,
            "transport": proc.transport,
            "takes_input": proc.takes_input,
        }

    def _output(self, data: bytes) -> None:
        self._buf.extend(data)
        assert self._event is not None
        self._event.set()

    async def _wait(self, proc: AgentProcess) -> None:
        assert self._supervisor is not None and self._event is not None
        rc = await self._supervisor.wait("agent", proc, None)
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        self._snapshot_ok = False
        with contextlib.suppress(workspace.GitError, OSError):
            await asyncio.to_thread(self._take_snapshot)
            self._snapshot_ok = True
        self._files = await asyncio.to_thread(read_run_files, self.run_dir)
        self._proc = None
        self._exit = rc
        self._exited_at = time.time()
        self._event.set()

    async def _watch_changes(self) -> None:
        assert self._event is not None
        while True:
            await asyncio.sleep(SNAPSHOT_S)
            with contextlib.suppress(workspace.GitError, OSError):
                if await asyncio.to_thread(self._take_snapshot):
                    self._event.set()

    def _take_snapshot(self) -> bool:
        """Snapshot the worktree; keep it for the engine when its tree moved. True if so."""
        commit = workspace.snapshot_worktree(
            self.work, workspace.head(self.work), "delegate-tui: watcher snapshot"
        )
        tree = workspace.git(["rev-parse", f"{commit}^{{tree}}"], self.work).stdout.strip()
        if tree == self._sent_tree:
            return False
        data = b""
        if commit != self._start:
            workspace.git(["update-ref", SNAP_REF, commit], self.work)
            bundle = self.dir / "snap.bundle"
            workspace.git(
                ["bundle", "create", "--quiet", str(bundle), SNAP_REF, f"^{self._start}"],
                self.work,
            )
            data = bundle.read_bytes()
            bundle.unlink()
        self._sent_tree = tree
        self._snap = (commit, data)
        return True

    async def poll(self, max_wait: float) -> dict[str, Any]:
        """What happened since the last poll: output, the latest change set (a commit and
        its bundle), and the exit status once the process ended and its output is all out.
        Waits up to ``max_wait`` seconds for something to say."""
        assert self._event is not None
        if not self._buf and self._snap is None and self._exit is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), max_wait)
        self._event.clear()
        out = bytes(self._buf[:POLL_MAX_BYTES])
        del self._buf[:POLL_MAX_BYTES]
        snap, self._snap = self._snap, None
        ended = self._exit is not None and not self._buf
        if self._buf:
            self._event.set()
        return {
            "out": out,
            "snap": snap,
            "exit": self._exit if ended else None,
            "files": self._files if ended else {},
            "exited_at": self._exited_at,
        }

    async def snapshot(self) -> tuple[str, bytes] | None:
        """The worktree's change set now, if it moved since the last one sent (every
        process's exit sends one already: only a failed one is taken again here)."""
        if self._snapshot_ok:
            return None
        changed = await asyncio.to_thread(self._take_snapshot)
        snap, self._snap = self._snap, None
        return snap if changed else None

    async def terminate(self) -> None:
        """SIGTERM the process group, SIGKILL what is left after the grace period."""
        proc = self._proc
        if proc is not None:
            await proc.terminate(self.grace_s)

    def kill(self) -> None:
        """SIGKILL the process group at once."""
        if self._proc is not None:
            self._proc.signal_group(signal.SIGKILL)

    def send_input(self, text: str) -> str:
        """Type a line into the process; what went wrong, or ``""``."""
        if self._proc is None:
            return "the process has ended"
        try:
            self._proc.send_input(text)
        except OSError as exc:
            return str(exc)
        return ""

    def resize(self, cols: int, rows: int) -> None:
        """Tell a PTY process its terminal changed size."""
        if self._proc is not None:
            self._proc.resize(cols, rows)

    async def cleanup(self) -> None:
        """End anything the attempt left running and remove its scratch clone; the host
        (and its watchdog) stays for the next attempt."""
        proc = self._proc
        if proc is not None:
            await proc.terminate(self.grace_s)
        if self._waiter is not None:
            with contextlib.suppress(Exception):
                await self._waiter
            self._waiter = None
        await asyncio.to_thread(self._keep_clone)

    def _keep_clone(self) -> None:
        """Keep the clone for this host's next attempt (checked out afresh then); drop the rest."""
        shutil.rmtree(self._spare, ignore_errors=True)
        if (self.work / ".git").is_dir():
            with contextlib.suppress(OSError):
                self.work.rename(self._spare)
        shutil.rmtree(self.dir, ignore_errors=True)

    async def forget_run(self) -> None:
        """The run is over: remove everything it left on this node (clones, the base)."""
        await asyncio.to_thread(shutil.rmtree, self.root, True)
