"""The attempts of one process's runs on one Ray node: their clones and processes, run there.

Owns what happens on a node for the Ray executor (:mod:`ray_executor`). One
:class:`NodeHost` per node (a Ray async actor that takes no CPU, pinned to
its node, started for every node when a process's first run starts, and kept
for its later runs while it stays connected) serves every attempt placed
there, at once, each by its key; the attempts' CPUs and resources are held by
Ray placement groups, so no Ray worker starts for an attempt. Each run's
base, start commits and warm clones are :mod:`ray_clones`' (a clone taken
again gets a new git folder: no hook or config of an earlier agent). Each
attempt's processes start there exactly as on the local machine
(:class:`~delegate_tui.core.supervisor.Supervisor`: a process group of their
own, a PTY or pipes, a watchdog that ends them if this worker dies), from a
small process of the host's (:mod:`spawner`: no fork of the Ray worker); their
output is buffered for the engine to take in order (a flood gathered a little
longer per reply), and while the agent works its clone is watched for file
events as a local worktree is (:mod:`watcher`): on a burst of them, and every
few seconds anyway, its change set is taken (:mod:`ray_changes`: the files
that moved) for the engine. This module imports nothing of Ray at its top, so
it is read and tested like any other.

(About 550 lines: the node's side of every call the engine makes, for one
attempt's life, prepare, processes, polls, input, kill, cleanup, in one actor;
the clones are ``core/ray_clones.py``, the change sets ``core/ray_changes.py``.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from delegate_tui.core import workspace
from delegate_tui.core.process import AgentProcess
from delegate_tui.core.ray_changes import ChangeTaker
from delegate_tui.core.ray_clones import RunClones, sweep_gone_runs
from delegate_tui.core.supervisor import Supervisor
from delegate_tui.core.watcher import WorktreeWatcher

#: The most output one poll hands back; the rest waits for the next poll. Under Ray's
#: ``max_direct_call_object_size`` (100 KiB), a reply goes straight to the engine; a
#: bigger one is put in the node's object store and pulled by the engine's, which
#: cost the raylets 1 s of CPU per 64 MB in 256 KiB objects (bench/README.md).
POLL_MAX_BYTES = 96 * 1024
#: A poll that handed back this much found the agent flooding: the next one, once it
#: has output, gathers for ``POLL_GATHER_S`` more, so a flood travels in large replies
#: (as the local path reads a flooding pipe in gulps) and interactive output is not held.
POLL_FLOOD_BYTES = 32 * 1024
POLL_GATHER_S = 0.02
#: An argv word the node reads as its own Python (the engine's is this machine's path).
NODE_PYTHON = "{node-python}"
#: Files of the run folder a process may write and the engine wants back (e.g. the
#: agent's last message), at most this big each.
RUN_FILE_MAX = 1024 * 1024


def scratch_root(run_id: str) -> Path:
    """Where a run's scratch clones live on a node."""
    return Path(tempfile.gettempdir()) / "delegate-ray" / run_id


def attempt_folder(where: dict[str, str], key: str) -> str:
    """The folder of attempt ``key`` (``<run id>/<task>-<attempt>``) on the host that
    said ``where`` (:meth:`NodeHost.where`): its clone is ``work`` in it, its run-folder
    files ``run``. The engine knows it without asking (the prepare call is not waited
    for)."""
    run_id, name = key.rsplit("/", 1)
    return f"{where['scratch']}/{run_id}/host-{where['pid']}/{name}"


def node_environment() -> dict[str, str]:
    """The node's own environment for agents, as ``ray start`` had it: the raylet's.

    A Ray worker's adds Ray's settings for Python workers (``OMP_NUM_THREADS=1``,
    ``PYTHONBREAKPOINT``, ``RAY_*``), which an agent's builds and tests must not get.
    Ray's own variables are left out of either.
    """
    env = dict(os.environ)
    raylet = os.environ.get("RAY_RAYLET_PID", "")
    with contextlib.suppress(OSError, ValueError):
        raw = Path(f"/proc/{int(raylet)}/environ").read_bytes()
        items = raw.decode("utf-8", "surrogateescape").split("\0")
        env = dict(item.split("=", 1) for item in items if "=" in item)
    return {k: v for k, v in env.items() if not k.startswith("RAY_") and k != "SPT_NOENV"}


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


class _Attempt:
    """One attempt on this node: its folder, scratch clone, process and what it has to say."""

    def __init__(self, run: RunClones, folder: Path, start: str, env: dict[str, str]) -> None:
        self.run = run
        self.dir = folder
        self.work = folder / "work"
        self.run_dir = folder / "run"
        self.start = start
        self.env = env  # set for every process of it (a GPU's CUDA_VISIBLE_DEVICES)
        self.proc: AgentProcess | None = None
        self.buf = bytearray()
        self.exit: int | None = None
        self.snap: dict[str, Any] | None = None  # the change set the engine has yet to take
        self.changes = ChangeTaker(self.work, start)
        self.files: dict[str, bytes] = {}
        self.snapshot_ok = False  # the last process's exit snapshot was taken
        self.exited_at = 0.0  # wall clock, for the engine's account of where time goes
        self.snapshot_s = 0.0  # how long the exit's change set took (the same account)
        self.flooding = False  # the last poll handed back a lot
        self.event = asyncio.Event()
        self.snapping = asyncio.Lock()  # one snapshot of the worktree at a time
        self.waiter: asyncio.Task[None] | None = None
        #: The clone's packs and checkout, under way while the engine gets ready to start
        #: the first process (their seconds): that process waits for them.
        self.checkout: asyncio.Task[tuple[float, float]] | None = None
        self.warm = False  # the clone was a warm one (for the engine's account)
        self.waited = 0.0  # its wait for a warm clone (the same account)

    def output(self, data: bytes) -> None:
        self.buf.extend(data)
        self.event.set()

    async def snapshot(self) -> bool:
        """:meth:`take_snapshot`, off the loop, one at a time; wakes a poll if it moved."""
        async with self.snapping:
            moved = await asyncio.to_thread(self.take_snapshot)
        if moved:
            self.event.set()
        return moved

    def take_snapshot(self) -> bool:
        """Take the worktree's change set for the engine, if it moved. True if so."""
        change = self.changes.take()
        if change is None:
            return False
        if self.snap is not None and "files" in self.snap and "files" in change:
            self.snap["files"].update(change["files"])  # the engine has not taken the last
        else:
            self.snap = change  # a bundle holds everything since the start
        return True


class NodeHost:
    """The attempts of this process's runs on one node; each method is called by the
    engine through Ray. It serves every run of the process that started it (each with
    its own clones, :class:`RunClones`), and ends with that process's Ray connection."""

    def __init__(self) -> None:
        self._supervisor: Supervisor | None = None
        self._env = node_environment()
        self._runs: dict[str, RunClones] = {}
        self._attempts: dict[str, _Attempt] = {}  # by key: "<run id>/<task>-<attempt>"
        #: Each attempt's prepare call, done or under way: its first process (and its
        #: cleanup) waits for it, however the calls arrive (the engine does not wait).
        self._prepared: dict[str, asyncio.Future[None]] = {}
        self._where: dict[str, str] = {}
        #: File events in agents' clones, as on the local machine (:mod:`watcher`): a
        #: change set is taken on a burst of them, and every few seconds anyway.
        self._watcher: WorktreeWatcher | None = None
        # The file watch's modules, imported off the event loop: imported by the first
        # watch instead, they held every attempt on this node for 0.1-1 s under load.
        threading.Thread(target=_import_file_watch, daemon=True).start()

    # ------------------------------------------------------------ place

    def where(self) -> dict[str, str]:
        """This node: its Ray id and address, and the host's name."""
        if not self._where:
            import ray  # on the node, inside its Ray worker

            context = ray.get_runtime_context()
            self._where = {
                "node_id": context.get_node_id(),
                "ip": ray.util.get_node_ip_address(),
                "host": socket.gethostname(),
                # Where its attempts' folders are (attempt_folder).
                "scratch": str(scratch_root("")).rstrip("/"),
                "pid": str(os.getpid()),
            }
        return self._where

    def _run(self, run_id: str, grace_s: float) -> RunClones:
        run = self._runs.get(run_id)
        if run is None:
            # A folder of its own: nodes simulated on one machine share its temporary folder.
            run = self._runs[run_id] = RunClones(
                scratch_root(run_id) / f"host-{os.getpid()}", grace_s
            )
            # What earlier runs' hosts that died here left (their clones, hundreds of KB
            # each), off the loop: no host of theirs is left to remove it.
            threading.Thread(
                target=sweep_gone_runs, args=(scratch_root(run_id).parent,), daemon=True
            ).start()
        return run

    async def begin(
        self, run_id: str, grace_s: float, base: list[Any], base_commit: str, warm: int
    ) -> None:
        """Run ``run_id`` starts: take in its base (``base`` holds its pack's object ref)
        and make ``warm`` clones at ``base_commit`` in the background for its first
        attempts."""
        self._run(run_id, grace_s).warm(warm, base_commit, base[0])
        self._supervise(grace_s)  # its spawner starts while the first batch waits

    def _supervise(self, grace_s: float) -> Supervisor:
        if self._supervisor is None:
            # Agents start from a small process of the host's: a fork of this Ray
            # worker (90-250 MB, a dozen threads) cost 75-110 ms an attempt.
            self._supervisor = Supervisor(grace_s, spawner=True)
            self._supervisor.start()
        return self._supervisor

    async def prepare(
        self,
        run_id: str,
        grace_s: float,
        key: str,
        base: list[Any],
        base_commit: str,
        increment: list[tuple[list[str], Any]],
        start: str,
        env: dict[str, str],
    ) -> dict[str, str]:
        """Make attempt ``key``'s scratch clone at ``start`` (in :func:`attempt_folder`).
        The run's base comes once per node (``base`` holds its pack's object ref);
        ``increment`` (when ``start`` is not the base: the start commits each pack
        brings and the pack, an object ref to it, or ``None`` when another attempt's
        call brings it) brings ``start``: each pack holds what the ones before it lack,
        and is taken in once per node. The engine does not wait for this call: the attempt's
        first process waits for it, then for the clone's packs and checkout (under way
        meanwhile), and fails with their error. Its folders: ``work`` (the clone) and
        ``run`` (files of the engine's run folder)."""
        prepared = self._prepared_future(key)
        try:
            run = self._run(run_id, grace_s)
            packs = [run.fetch(base_commit, base[0], base=True)]
            packs += [run.fetch(commits, pack) for commits, pack in increment]  # in order
            folder = run.root / key.rsplit("/", 1)[-1]
            attempt = _Attempt(run, folder, start, env)
            _new_folder(attempt)  # a folder not there yet: no thread needed
            attempt.waited, attempt.warm, attempt.checkout = await run.take(
                attempt.work, start, packs
            )
            self._attempts[key] = attempt
            self._supervise(grace_s)
        except BaseException as exc:
            if prepared.done():
                pass
            elif isinstance(exc, asyncio.CancelledError):
                prepared.cancel()
            else:
                prepared.set_exception(exc)
                prepared.exception()  # said by the process that waits for it, if any
            raise
        if not prepared.done():
            prepared.set_result(None)
        return {"work": str(attempt.work), "run": str(attempt.run_dir)}

    def _prepared_future(self, key: str) -> asyncio.Future[None]:
        prepared = self._prepared.get(key)
        if prepared is None:
            prepared = self._prepared[key] = asyncio.get_running_loop().create_future()
        return prepared

    # ------------------------------------------------------------ processes

    async def spawn(
        self,
        key: str,
        argv: list[str],
        env: dict[str, str],
        transport: str,
        size: tuple[int, int],
        stdin: str,
        files: dict[str, bytes],
        watch: bool,
        exclude: str,
    ) -> dict[str, Any]:
        """Start a process in attempt ``key``'s clone; ``env`` is laid over the node's own.

        ``files`` are the run-folder files it reads (e.g. the guard's settings);
        ``exclude`` is the repository's ``info/exclude`` (an agent's own files, such as
        aider's ``.aider*``, are no one's work there, so none here either).
        """
        began = time.monotonic()
        attempt = self._attempts.get(key)
        if attempt is None:  # its prepare call is still under way (or failed: its error)
            await self._prepared_future(key)
            attempt = self._attempts[key]
        prepare_wait = time.monotonic() - began
        assert self._supervisor is not None
        packs_s = checkout_s = -1.0
        if attempt.checkout is not None:  # the attempt's first process: its clone first
            checkout, attempt.checkout = attempt.checkout, None
            packs_s, checkout_s = await checkout  # its failure is the attempt's, as before
        waited = time.monotonic() - began
        write_run_files(attempt.run_dir, files)
        excludes = attempt.work / ".git" / "info" / "exclude"
        if exclude and (not excludes.exists() or excludes.read_text("utf-8") != exclude):
            excludes.parent.mkdir(parents=True, exist_ok=True)
            excludes.write_text(exclude, "utf-8")
        argv = [sys.executable if word == NODE_PYTHON else word for word in argv]
        attempt.buf.clear()
        attempt.exit, attempt.snap, attempt.files = None, None, {}
        attempt.snapshot_ok = False
        full = {**self._env, **attempt.env, **env}
        if transport == "pty" and full.get("TERM", "dumb") == "dumb":
            full["TERM"] = "xterm-256color"
        try:
            proc = await self._supervisor.start_process(
                key,
                argv,
                cwd=attempt.work,
                env=full,
                on_output=attempt.output,
                transport=transport,
                size=size,
                stdin=stdin,
            )
        except OSError as exc:
            return {"error": exc.strerror or str(exc)}
        attempt.proc = proc
        attempt.waiter = asyncio.get_running_loop().create_task(self._wait(key, attempt, proc))
        if watch:
            if self._watcher is None:
                self._watcher = WorktreeWatcher(self._changed)
                self._watcher.start()
            self._watcher.watch(key, attempt.work)
        return {
            "pid": proc.pid,
            "pgid": proc.pgid,
            "transport": proc.transport,
            "takes_input": proc.takes_input,
            # For bench/ray_overhead.py: the start's time here, of which the wait for the
            # clone; the packs' and the checkout's own times, whether the clone was warm.
            "spawn_s": time.monotonic() - began,
            "prepare_wait_s": prepare_wait,
            "checkout_wait_s": waited - prepare_wait,
            "packs_s": packs_s,
            "checkout_s": checkout_s,
            "warm": attempt.warm,
            "clone_wait_s": attempt.waited,
        }

    async def _wait(self, key: str, attempt: _Attempt, proc: AgentProcess) -> None:
        assert self._supervisor is not None
        rc = await self._supervisor.wait(key, proc, None)
        if self._watcher is not None:
            self._watcher.unwatch(key)
        attempt.snapshot_ok = False
        began = time.monotonic()

        def look() -> tuple[bool, dict[str, bytes]]:
            taken = False
            with contextlib.suppress(workspace.GitError, OSError):
                attempt.take_snapshot()
                taken = True
            return taken, read_run_files(attempt.run_dir)

        # The exit's change set goes with the exit, in one reply: woken by the change set
        # alone, a poll sent it first, and the exit waited for the engine's next poll.
        async with attempt.snapping:
            attempt.snapshot_ok, attempt.files = await asyncio.to_thread(look)
        attempt.snapshot_s = time.monotonic() - began
        attempt.proc = None
        attempt.exit = rc
        attempt.exited_at = time.time()
        attempt.event.set()

    async def _changed(self, key: str) -> None:
        """Files moved in attempt ``key``'s clone (or it is time to look anyway)."""
        attempt = self._attempts.get(key)
        if attempt is not None and attempt.proc is not None:
            with contextlib.suppress(workspace.GitError, OSError):
                await attempt.snapshot()

    async def poll(self, key: str, max_wait: float) -> dict[str, Any]:
        """What happened to attempt ``key`` since the last poll: output, the latest change
        set (a commit and its bundle), and the exit status once the process ended and its
        output is all out. Waits up to ``max_wait`` seconds for something to say."""
        attempt = self._attempts[key]
        if not attempt.buf and attempt.snap is None and attempt.exit is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(attempt.event.wait(), max_wait)
        if attempt.flooding and 0 < len(attempt.buf) < POLL_MAX_BYTES and attempt.exit is None:
            await asyncio.sleep(POLL_GATHER_S)
        attempt.event.clear()
        out = bytes(attempt.buf[:POLL_MAX_BYTES])
        del attempt.buf[:POLL_MAX_BYTES]
        attempt.flooding = len(out) >= POLL_FLOOD_BYTES
        snap, attempt.snap = attempt.snap, None
        ended = attempt.exit is not None and not attempt.buf
        if attempt.buf:
            attempt.event.set()
        return {
            "out": out,
            "snap": snap,
            "exit": attempt.exit if ended else None,
            "files": attempt.files if ended else {},
            "settled": ended and attempt.snapshot_ok,  # its exit's change set is in this reply
            "exited_at": attempt.exited_at,
            "snapshot_s": attempt.snapshot_s,
        }

    async def snapshot(self, key: str) -> dict[str, Any] | None:
        """Attempt ``key``'s change set now, if it moved since the last one sent (every
        process's exit sends one already: only a failed one is taken again here)."""
        attempt = self._attempts[key]
        if attempt.snapshot_ok:
            return None
        changed = await attempt.snapshot()
        snap, attempt.snap = attempt.snap, None
        return snap if changed else None

    async def terminate(self, key: str) -> None:
        """SIGTERM the attempt's process group, SIGKILL what is left after the grace period."""
        attempt = self._attempts.get(key)
        if attempt is not None and attempt.proc is not None:
            await attempt.proc.terminate(attempt.run.grace_s)

    def kill(self, key: str) -> None:
        """SIGKILL the attempt's process group at once."""
        attempt = self._attempts.get(key)
        if attempt is not None and attempt.proc is not None:
            attempt.proc.signal_group(signal.SIGKILL)

    def send_input(self, key: str, text: str) -> str:
        """Type a line into the attempt's process; what went wrong, or ``""``."""
        attempt = self._attempts.get(key)
        if attempt is None or attempt.proc is None:
            return "the process has ended"
        try:
            attempt.proc.send_input(text)
        except OSError as exc:
            return str(exc)
        return ""

    def resize(self, key: str, cols: int, rows: int) -> None:
        """Tell the attempt's PTY process its terminal changed size."""
        attempt = self._attempts.get(key)
        if attempt is not None and attempt.proc is not None:
            attempt.proc.resize(cols, rows)

    async def cleanup(self, key: str) -> None:
        """End anything attempt ``key`` left running; its clone is cleaned in the
        background for a later attempt and the rest of its folder removed."""
        prepared = self._prepared.pop(key, None)
        if prepared is not None and not prepared.done():  # its prepare call still runs
            with contextlib.suppress(Exception):
                await asyncio.shield(prepared)
        attempt = self._attempts.pop(key, None)
        if attempt is None:
            return
        if attempt.checkout is not None:  # no process started: its clone is given back whole
            with contextlib.suppress(Exception):
                await attempt.checkout
        if attempt.proc is not None:
            await attempt.proc.terminate(attempt.run.grace_s)
        if attempt.waiter is not None:
            with contextlib.suppress(Exception):
                await attempt.waiter
        attempt.run.give_back(attempt.work, attempt.dir)

    async def forget_run(self, run_id: str) -> None:
        """Run ``run_id`` is over: end what is left of it and remove everything it left on
        this node (clones, the base)."""
        for key in [k for k in {**self._prepared, **self._attempts} if k.startswith(f"{run_id}/")]:
            await self.cleanup(key)
        run = self._runs.pop(run_id, None)
        if run is not None:
            await run.close()


class RayHost(NodeHost):
    """:class:`NodeHost` as a Ray actor runs it: in a Ray worker process of its own."""

    def __init__(self) -> None:
        super().__init__()
        leave_without_joining_threads()


def leave_without_joining_threads() -> None:
    """End this process as soon as Python starts to exit, before it joins its threads.

    Ray ends an actor gracefully when its owner goes away cleanly (a Ray Client
    session, at the end of its reconnect grace period): the worker leaves through
    Python's own exit, which waits for every non-daemon thread. The file watch's
    idle thread (anyio's, for watchfiles) waits for an event loop that is already
    gone, so the host lived on, with its folders, after its cluster had stopped
    (seen in ``test_resume_after_kill_9_leaves_no_remote_process_behind[client]``).
    There is nothing left to do at that point: the agents are ended by the
    supervisor's watchdog, as on any death of the host.
    """

    def leave() -> None:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(0)

    # Called by threading._shutdown before it joins the threads (as concurrent.futures
    # does); there is no public hook at that point.
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        register(leave)


def _import_file_watch() -> None:
    with contextlib.suppress(ImportError):
        import anyio._backends._asyncio  # noqa: F401 (what awatch's first step imports)
        import watchfiles  # noqa: F401


def _new_folder(attempt: _Attempt) -> None:
    shutil.rmtree(attempt.dir, ignore_errors=True)
    attempt.run_dir.mkdir(parents=True)
