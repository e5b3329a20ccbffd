"""The Ray executor: each attempt's processes run on a node of a Ray cluster.

Owns the engine's side of ``executor: ray``. Each attempt gets an
:class:`~delegate_tui.core.ray_host.AttemptHost` actor, placed by Ray where
the task's ``resources:`` are (labels the cluster offers as resources; the
rest stay scheduling locks only) and spread over the nodes. The run's base
commit travels as one git bundle put in the object store once per run; an
attempt that starts elsewhere (the integration tip moved, a retry keeps its
work) adds a small bundle from the base. On the node the attempt's setup,
agent and criteria run under the same preset as locally; their output comes
back in order, batched by a long poll; the worktree's change set comes back as
a bundle once a second when it moved and is laid into the task's local
worktree, so the local watcher, the conflict analysis, the commit and the
merge work exactly as for a local attempt. Kill, timeout and input reach the
remote process group; a node that goes away fails the attempt as "node lost".
A host (one Ray worker process) serves one attempt at a time and then the
next attempt that asks for the same resources, so worker processes start
once per slot, not once per attempt; one idle for ``POOL_IDLE_S`` is ended.
Ray is imported only here, and only when a run uses it.

(About 590 lines: the executor's side of every operation the seam has, placement,
bundles, streaming, change sets, kill, timeout and node loss, for one cluster;
the node's side is ``core/ray_host.py``.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from delegate_tui.core import workspace
from delegate_tui.core.executor import RAY_INSTALL, AttemptLost, ExecutorError, Process
from delegate_tui.core.ray_host import NODE_PYTHON, AttemptHost, write_run_files

#: How long one poll of a remote process waits for something to say.
POLL_WAIT_S = 0.5
#: How often taking in a change set is tried before the attempt fails.
FETCH_TRIES = 4
#: How long the cluster's resources, as read for placing, are taken as still true.
OFFERED_S = 5.0
#: A host idle this long between attempts is ended, its CPU given back to the cluster.
POOL_IDLE_S = 30.0


def ray_resources(labels: Sequence[str], offered: Mapping[str, float]) -> dict[str, Any]:
    """Ray placement options for a task's ``resources:`` labels.

    ``gpu`` takes one GPU; a label the cluster offers as a custom resource takes one
    unit of it; other labels are only the plan's scheduling locks. Every attempt
    takes one CPU, so a node runs as many agents as it has CPUs.
    """
    options: dict[str, Any] = {"num_cpus": 1}
    custom: dict[str, float] = {}
    for label in labels:
        if label.lower() == "gpu" and offered.get("GPU", 0) > 0:
            options["num_gpus"] = 1
        elif label in offered:
            custom[label] = 1
    if custom:
        options["resources"] = custom
    return options


def node_label(info: Mapping[str, str]) -> str:
    """How a node is shown: its address and the start of its Ray id."""
    return f"{info.get('ip', '?')}/{info.get('node_id', '')[:6]}"


def _is_lost(exc: BaseException) -> bool:
    import ray.exceptions

    return isinstance(exc, ray.exceptions.RayActorError | ray.exceptions.ObjectLostError)


class RemoteProcess:
    """A process on a node, as the engine sees it: output, exit, input."""

    def __init__(
        self,
        host: _Host,
        reply: Mapping[str, Any],
        on_output: Callable[[bytes], None],
        run_dir: Path,
        timings: dict[str, list[float]],
    ) -> None:
        self.host = host
        self._timings = timings
        self.pid: int = reply["pid"]
        self.pgid: int = reply["pgid"]
        self.transport: str = reply["transport"]
        self.takes_input: bool = reply["takes_input"]
        self.lost = ""
        self._returncode: int | None = None
        self._on_output = on_output
        self._run_dir = run_dir
        self.exited = asyncio.Event()
        self._pump = asyncio.get_running_loop().create_task(self._follow())

    @property
    def returncode(self) -> int | None:
        return self._returncode

    async def _follow(self) -> None:
        try:
            while True:
                reply = await self.host.actor.poll.remote(POLL_WAIT_S)
                if reply["out"]:
                    self._on_output(reply["out"])
                if reply["snap"] is not None:
                    try:
                        await self.host.apply(reply["snap"])
                    except (workspace.GitError, OSError) as exc:
                        self.lost = f"could not take in the change set from {self.host.node}: {exc}"
                        return
                if reply["exit"] is not None:
                    self._timings.setdefault("exit -> engine (last output)", []).append(
                        max(0.0, time.time() - reply["exited_at"])
                    )
                    write_run_files(self._run_dir, reply["files"])
                    self._returncode = reply["exit"]
                    return
        except Exception as exc:
            self.lost = (
                f"node lost: {self.host.node} went away while the agent ran"
                if _is_lost(exc)
                else f"the Ray host on {self.host.node} failed: {exc}"
            )
        finally:
            self.exited.set()

    def send_input(self, text: str) -> None:
        if not self.takes_input:
            raise OSError("this agent reads no input: its stdin is /dev/null")
        if self.exited.is_set():
            raise ProcessLookupError("the process has ended")
        self.host.actor.send_input.remote(text)

    def resize(self, cols: int, rows: int) -> None:
        if not self.exited.is_set():
            self.host.actor.resize.remote(cols, rows)


class _Host:
    """One attempt's actor and where its scratch clone lives."""

    def __init__(self, actor: Any, key: str, workdir: Path, start: str, slot: str) -> None:
        self.actor = actor
        self.slot = slot
        self.reused = False
        self.key = key
        self.workdir = workdir
        self.start = start
        self.node = ""
        self.remote_work = ""
        self.remote_run = ""
        self.applied = start

    async def apply(self, snap: tuple[str, bytes]) -> None:
        """Lay a change set from the node into the local worktree."""
        commit, data = snap
        await asyncio.to_thread(_lay, self.workdir, self.key, commit, data)
        self.applied = commit


def _lay(workdir: Path, key: str, commit: str, data: bytes) -> None:
    if data:
        with tempfile.NamedTemporaryFile(prefix="delegate-snap-", suffix=".bundle") as fh:
            fh.write(data)
            fh.flush()
            ref = f"refs/delegate/ray/{key}"
            fetch = [
                *("-c", "gc.auto=0", "-c", "maintenance.auto=false"),
                *("fetch", "--quiet", "--no-write-fetch-head", fh.name),
                f"+refs/delegate/snap:{ref}",
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


class RayExecutor:
    """Attempts as actors on a Ray cluster."""

    def __init__(self, address: str, grace_s: float, run_id: str) -> None:
        self.address = address
        self.name = address or "ray"
        self.grace_s = grace_s
        self.run_id = run_id
        self._hosts: dict[str, _Host] = {}
        #: Hosts between attempts: (actor, resources they hold, since when).
        self._idle: list[tuple[Any, str, float]] = []
        self._cleanups: set[asyncio.Task[None]] = set()
        self._starts: dict[str, bytes] = {}  # the latest start commit's bundle
        self._offered: tuple[float, dict[str, float]] = (-OFFERED_S - 1, {})
        self._procs: dict[str, RemoteProcess] = {}
        self._ended: set[str] = set()
        self._base: tuple[Any, str] | None = None  # object ref of the base bundle, its commit
        self._base_lock: asyncio.Lock | None = None
        self._connected = False  # True when this executor connected (and disconnects)
        #: Seconds spent per phase, every attempt (bench/ray_overhead.py reads them).
        self.timings: dict[str, list[float]] = {}
        self._run_dir = Path()

    @property
    def reaper_pid(self) -> int:
        return 0  # every agent runs on a node, ended there when this process goes

    def check(self) -> None:
        try:
            import ray
        except ImportError:
            raise ExecutorError(f"executor: ray needs Ray installed: {RAY_INSTALL}") from None
        if ray.is_initialized():  # this process is a driver already (a test, a notebook)
            return
        address = self.address or os.environ.get("RAY_ADDRESS") or "auto"
        try:
            ray.init(
                address=address,
                logging_level=logging.ERROR,
                log_to_driver=False,
                configure_logging=True,
                namespace="delegate-tui",
            )
        except Exception as exc:
            raise ExecutorError(
                f"executor: {self.name}: cannot reach the Ray cluster at {address!r} ({exc}); "
                "start one with `ray start --head`, or set RAY_ADDRESS"
            ) from None
        self._connected = True

    def start(self, run_dir: Path) -> None:
        self._run_dir = run_dir  # files a remote process writes for the engine go here
        self.check()

    async def _base_bundle(self, repo: Path, start: str) -> tuple[Any, str]:
        if self._base_lock is None:
            self._base_lock = asyncio.Lock()
        async with self._base_lock:
            if self._base is None:
                import ray

                began = time.monotonic()
                data = await asyncio.to_thread(_bundle, repo, self.run_id, "base", start, "")
                self._base = (ray.put(data), start)
                self._took("base bundle (once a run)", began)
            return self._base

    async def place(
        self, task_id: str, number: int, workdir: Path, start: str, resources: Sequence[str]
    ) -> str:
        import ray

        ref, base_commit = await self._base_bundle(workdir, start)
        increment = b""
        began = time.monotonic()
        if start != base_commit:  # attempts after a merge share the new tip's bundle
            increment = self._starts.get(start, b"")
            if not increment:
                key = f"{task_id}-{number}-start"
                increment = await asyncio.to_thread(
                    _bundle, workdir, self.run_id, key, start, base_commit
                )
                self._starts = {start: increment}
        self._took("start bundle", began)
        began = time.monotonic()
        if time.monotonic() - self._offered[0] > OFFERED_S:  # what the cluster's nodes offer
            self._offered = (time.monotonic(), ray.cluster_resources())  # type: ignore[no-untyped-call]
        options = ray_resources(resources, self._offered[1])
        slot = json.dumps(options, sort_keys=True)
        key = f"{task_id}-{number}"
        while True:
            actor = self._idle_host(slot)
            reused = actor is not None
            if actor is None:
                actor = (
                    _host_class()
                    .options(max_restarts=0, scheduling_strategy="SPREAD", **options)
                    .remote(self.run_id, self.grace_s)
                )
            host = _Host(actor, f"{self.run_id}/{key}", workdir, start, slot)
            host.reused = reused
            self._hosts[task_id] = host
            try:
                info = await actor.prepare.remote(key, [ref], base_commit, increment, start)
                break
            except Exception as exc:
                if not _is_lost(exc):
                    raise
                self._offered = (-OFFERED_S - 1, {})
                if not host.reused:  # a new host's node went away: nothing ran yet
                    raise AttemptLost(
                        f"node lost: the node placed for {task_id} went away"
                    ) from None
                # An idle host whose node went away meanwhile: place it afresh.
        clone = float(info["clone_s"])
        phase = "placement, worker reused" if host.reused else "placement, new worker"
        self.timings.setdefault(phase, []).append(time.monotonic() - began - clone)
        self.timings.setdefault("scratch clone (on the node)", []).append(clone)
        host.node = node_label(info)
        host.remote_work, host.remote_run = info["work"], info["run"]
        return host.node

    def _remote(self, host: _Host, text: str, cwd: Path) -> str:
        """A local path (the worktree, the run folder, this Python) as the node sees it."""
        if text == sys.executable:
            return NODE_PYTHON
        text = text.replace(str(cwd), host.remote_work)
        if str(self._run_dir) not in ("", "."):
            text = text.replace(str(self._run_dir), host.remote_run)
        return text

    async def spawn(
        self,
        task_id: str,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        on_output: Callable[[bytes], None],
        transport: str,
        size: tuple[int, int] = (120, 40),
        stdin: str = "pipe",
        watch: bool = True,
    ) -> Process:
        """Start ``argv`` on the attempt's node; with ``watch`` (an agent, not a setup or
        criteria command) its worktree's change set comes back every second."""
        host = self._hosts[task_id]
        # What the attempt set, over the node's own environment (PATH, HOME are the node's).
        own = {k: v for k, v in env.items() if os.environ.get(k) != v}
        remote_env = {k: self._remote(host, v, cwd) for k, v in own.items()}
        remote_argv = [self._remote(host, a, cwd) for a in argv]
        files = _run_files_named(self._run_dir, [*argv, *own.values()])
        began = time.monotonic()
        try:
            reply = await host.actor.spawn.remote(
                remote_argv, remote_env, transport, size, stdin, files, watch
            )
            self._took("spawn call", began)
        except Exception as exc:
            if _is_lost(exc):
                raise AttemptLost(f"node lost: {host.node} went away") from None
            raise
        if "error" in reply:
            raise OSError(f"{reply['error']} (on {host.node})")
        proc = RemoteProcess(host, reply, on_output, self._run_dir, self.timings)
        self._procs[task_id] = proc
        return proc

    async def wait(
        self,
        task_id: str,
        proc: Process,
        timeout: float | None,
        on_timeout: Callable[[], object] | None = None,
    ) -> int | None:
        assert isinstance(proc, RemoteProcess)
        try:
            await asyncio.wait_for(asyncio.shield(proc.exited.wait()), timeout)
            timed_out = False
        except TimeoutError:
            timed_out = True
            if on_timeout is not None:
                on_timeout()
            await self._terminate(proc)
            await proc.exited.wait()
        if self._procs.get(task_id) is proc:
            del self._procs[task_id]
        if proc.lost:
            self._offered = (-OFFERED_S - 1, {})  # a node went: read the cluster afresh
            raise AttemptLost(proc.lost)
        return None if timed_out else proc.returncode

    async def shell(
        self,
        task_id: str,
        command: str,
        *,
        cwd: Path,
        env: Mapping[str, str],
        out: Callable[[bytes], None],
        timeout: float,
    ) -> tuple[int, bytes]:
        captured = bytearray()

        def sink(data: bytes) -> None:
            captured.extend(data)
            out(data)

        proc = await self.spawn(
            task_id,
            ["sh", "-c", command],
            cwd=cwd,
            env=env,
            on_output=sink,
            transport="pipes",
            watch=False,
        )
        rc = await self.wait(task_id, proc, timeout)
        return (124 if rc is None else rc), bytes(captured)

    async def collect(self, task_id: str, workdir: Path) -> None:
        host = self._hosts.get(task_id)
        if host is None:
            return
        began = time.monotonic()
        try:
            snap = await host.actor.snapshot.remote()
        except Exception as exc:
            if _is_lost(exc):
                raise AttemptLost(
                    f"node lost: {host.node} went away before its work came back"
                ) from None
            raise
        if snap is not None:
            await host.apply(snap)
        self._took("collect (final change set)", began)

    def _took(self, phase: str, began: float) -> None:
        self.timings.setdefault(phase, []).append(time.monotonic() - began)

    def _idle_host(self, slot: str) -> Any:
        """A host that served an earlier attempt with the same resources, if one is idle."""
        import ray

        now = time.monotonic()
        for idle in list(self._idle):
            if now - idle[2] > POOL_IDLE_S:  # idle too long: give its CPU back to the cluster
                self._idle.remove(idle)
                with contextlib.suppress(Exception):
                    ray.kill(idle[0])
        for idle in self._idle:
            if idle[1] == slot:
                self._idle.remove(idle)
                return idle[0]
        return None

    async def release(self, task_id: str) -> None:
        host = self._hosts.pop(task_id, None)
        if host is None:
            return
        began = time.monotonic()
        with contextlib.suppress(workspace.GitError, OSError):
            await asyncio.to_thread(_drop_refs, host.workdir, host.key)
        # The scratch clone goes in the background; then the host serves the next attempt.
        job = asyncio.get_running_loop().create_task(self._recycle(host))
        self._cleanups.add(job)
        job.add_done_callback(self._cleanups.discard)
        self._took("release", began)

    async def _recycle(self, host: _Host) -> None:
        import ray

        try:
            await asyncio.wait_for(host.actor.cleanup.remote(), self.grace_s + 5)
        except Exception:
            with contextlib.suppress(Exception):
                ray.kill(host.actor)
            return
        self._idle.append((host.actor, host.slot, time.monotonic()))

    async def _terminate(self, proc: RemoteProcess) -> None:
        with contextlib.suppress(Exception):
            await proc.host.actor.terminate.remote()

    def running(self, task_id: str) -> Process | None:
        return self._procs.get(task_id)

    def end(self, task_id: str) -> None:
        self._ended.add(task_id)
        self.stop(task_id)

    def stop(self, task_id: str) -> None:
        proc = self._procs.get(task_id)
        if proc is not None:
            asyncio.get_running_loop().create_task(self._terminate(proc))

    def end_all(self) -> None:
        for task_id in list(self._procs):
            self.end(task_id)

    def kill_all(self) -> None:
        for proc in list(self._procs.values()):
            with contextlib.suppress(Exception):
                proc.host.actor.kill.remote()

    def was_ended(self, task_id: str) -> bool:
        return task_id in self._ended

    def forget(self, task_id: str) -> None:
        self._ended.discard(task_id)

    async def close(self) -> None:
        for proc in list(self._procs.values()):
            await self._terminate(proc)
        self._procs.clear()
        for task_id in list(self._hosts):
            await self.release(task_id)
        if self._cleanups:
            await asyncio.wait(set(self._cleanups), timeout=self.grace_s + 5)
        import ray

        for actor, _, _ in self._idle:
            with contextlib.suppress(Exception):  # each node's scratch clones and base go
                await asyncio.wait_for(actor.forget_run.remote(), 10)
            with contextlib.suppress(Exception):
                ray.kill(actor)
        self._idle.clear()
        if self._connected:
            import ray

            with contextlib.suppress(Exception):
                ray.shutdown()
            self._connected = False


_HOST_CLASS: Any = None


def _host_class() -> Any:
    """The actor class, made once per process (Ray exports it on first use)."""
    global _HOST_CLASS
    if _HOST_CLASS is None:
        import ray

        _HOST_CLASS = ray.remote(AttemptHost)
    return _HOST_CLASS


def _bundle(repo: Path, run_id: str, key: str, commit: str, exclude: str) -> bytes:
    """A bundle of ``commit`` (without what ``exclude`` already has), as bytes."""
    ref = f"refs/delegate/ray/{run_id}/{key}"
    workspace.git(["update-ref", ref, commit], repo)
    try:
        with tempfile.TemporaryDirectory(prefix="delegate-bundle-") as tmp:
            path = Path(tmp) / "b.bundle"
            args = ["bundle", "create", "--quiet", str(path), ref]
            if exclude:
                args.append(f"^{exclude}")
            workspace.git(args, repo)
            data = path.read_bytes()
    finally:
        workspace.git(["update-ref", "-d", ref], repo, check=False)
    # The node fetches it under the name it expects.
    return _renamed(data, ref, "refs/delegate/start" if exclude else "refs/delegate/base")


def _renamed(bundle: bytes, old: str, new: str) -> bytes:
    """The bundle with its one ref renamed (the header is text, the pack follows it)."""
    head, sep, pack = bundle.partition(b"\n\n")
    return head.replace(old.encode(), new.encode()) + sep + pack


def _drop_refs(workdir: Path, key: str) -> None:
    workspace.git(["update-ref", "-d", f"refs/delegate/ray/{key}"], workdir, check=False)


def _run_files_named(run_dir: Path, values: Sequence[str]) -> dict[str, bytes]:
    """Files under ``run_dir`` that an argv or environment value names: the content of
    those that exist, and (as ``folder/``) the folder of those still to be written."""
    if str(run_dir) in ("", "."):
        return {}
    found: dict[str, bytes] = {}
    prefix = str(run_dir) + os.sep
    for value in values:
        for word in value.split():
            if not word.startswith(prefix):
                continue
            if os.path.isfile(word):
                found[os.path.relpath(word, run_dir)] = Path(word).read_bytes()
            elif os.path.isdir(os.path.dirname(word)):
                found[os.path.relpath(os.path.dirname(word), run_dir) + "/"] = b""
    return found
