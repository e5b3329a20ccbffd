"""The Ray executor: each attempt's processes run on a node of a Ray cluster.

Owns the engine's side of ``executor: ray``. Every node has a host
(:class:`~delegate_tui.core.ray_host.NodeHost`, a Ray actor that takes no CPU
and stays on its node; :mod:`ray_placement` keeps one per node for as long as
this process stays connected, so only its first run waits for them to start),
which serves every attempt placed there, so an attempt starts no Ray worker.
When a run starts, each host makes a few clones at the base for its first
attempts. Each attempt holds one CPU and the task's ``resources:`` in a
placement group of one bundle, which Ray places, spread over the nodes, in
milliseconds (:mod:`ray_placement`: the bundle, the bounded wait when no node
can hold it, a GPU's device), while the attempt's worktree is made here; its
host's prepare call (the clone) is sent and not waited for: the first process
waits for the clone on the node, so one round trip fewer comes before it. The
repository travels as git packs (:mod:`ray_packs`: the base once, then what
each node lacks of each start commit). On the node the attempt's setup, agent
and criteria run under the same preset as locally; their output comes back in
order, batched by a long poll; the worktree's change set comes back when it
moved (its changed files, :mod:`ray_changes`) and is laid into the task's
local worktree, so the local watcher, the conflict analysis, the commit and
the merge work exactly as for a local attempt. Kill, timeout and input reach
the remote process group; a node that goes away fails the attempt as "node
lost", a host that cannot start there with its own error. Ray is imported only
here, and only when a run uses it.

(About 600 lines: the executor's side of every operation the seam has,
streaming, kill, timeout and node loss, for one cluster; the node's side is
``core/ray_host.py``, placing and the hosts ``core/ray_placement.py``, packs
``core/ray_packs.py``, change sets ``core/ray_changes.py``.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from delegate_tui.core import workspace
from delegate_tui.core.executor import RAY_INSTALL, AttemptLost, ExecutorError, Process
from delegate_tui.core.ray_changes import lay
from delegate_tui.core.ray_host import NODE_PYTHON, attempt_folder, write_run_files
from delegate_tui.core.ray_packs import RunPacks
from delegate_tui.core.ray_placement import (
    HOSTS,
    alive_nodes,
    gpu_env,
    host_failure,
    is_lost,
    node_label,
    off_loop,
    place_timeout,
    placed,
    ray_bundle,
)

#: How long one poll of a remote process waits for something to say.
POLL_WAIT_S = 0.5
#: How often connecting through Ray Client is tried when its server fails to start one.
CONNECT_TRIES = 3
#: How long the cluster's resources, as read for placing, are taken as still true.
OFFERED_S = 5.0
#: Clones a node's host makes at the run's base when the run starts, at most (as
#: many as the node has CPUs and its share of ``max_parallel``, if fewer).
WARM_CLONES = 4


class RemoteProcess:
    """A process on a node, as the engine sees it: output, exit, input."""

    def __init__(
        self,
        place: _Place,
        reply: Mapping[str, Any],
        on_output: Callable[[bytes], None],
        run_dir: Path,
        timings: dict[str, list[float]],
    ) -> None:
        self.place = place
        self._timings = timings
        self.pid: int = reply["pid"]
        self.pgid: int = reply["pgid"]
        self.transport: str = reply["transport"]
        self.takes_input: bool = reply["takes_input"]
        self.lost = ""
        self.host_gone = False  # the host (or its node) went away: a later attempt starts one
        self._returncode: int | None = None
        self._on_output = on_output
        self._run_dir = run_dir
        self.exited = asyncio.Event()
        self._pump = asyncio.get_running_loop().create_task(self._follow())

    @property
    def returncode(self) -> int | None:
        return self._returncode

    async def _follow(self) -> None:
        place = self.place
        try:
            while True:
                reply = await place.actor.poll.remote(place.key, POLL_WAIT_S)
                if reply["out"]:
                    self._on_output(reply["out"])
                if reply["snap"] is not None:
                    try:
                        await place.apply(reply["snap"])
                    except (workspace.GitError, OSError) as exc:
                        self.lost = f"could not take in the change set from {place.node}: {exc}"
                        return
                if reply["exit"] is not None:
                    self._timings.setdefault("the exit's change set (on the node)", []).append(
                        reply["snapshot_s"]
                    )
                    self._timings.setdefault("exit -> engine (last output)", []).append(
                        max(0.0, time.time() - reply["exited_at"])
                    )
                    write_run_files(self._run_dir, reply["files"])
                    place.settled = bool(reply.get("settled"))
                    self._returncode = reply["exit"]
                    return
        except Exception as exc:
            why = await host_failure(exc, place.node_id, place.node, "while the agent ran")
            self.host_gone = bool(why)
            self.lost = why or f"the Ray host on {place.node} failed: {exc}"
        finally:
            self.exited.set()

    def send_input(self, text: str) -> None:
        if not self.takes_input:
            raise OSError("this agent reads no input: its stdin is /dev/null")
        if self.exited.is_set():
            raise ProcessLookupError("the process has ended")
        self.place.actor.send_input.remote(self.place.key, text)

    def resize(self, cols: int, rows: int) -> None:
        if not self.exited.is_set():
            self.place.actor.resize.remote(self.place.key, cols, rows)


class _Place:
    """Where one attempt runs: its placement group, its node's host, its scratch clone."""

    def __init__(self, run_id: str, key: str, workdir: Path, start: str, group: Any) -> None:
        self.key = f"{run_id}/{key}"  # the attempt's name on its host
        self.ref = f"refs/delegate/ray/{run_id}/{key}"  # the change sets' ref in the worktree
        self.workdir = workdir
        self.start = start
        self.group = group
        self.actor: Any = None  # the node's host, once placed
        self.node_id = ""
        self.node = ""
        self.remote_work = ""
        self.remote_run = ""
        self.settled = False  # the last process's exit brought the worktree's last change set
        self.where: dict[str, str] = {}  # its host's NodeHost.where()
        self.preparing: Any = None  # the prepare call's reply to come (not waited for)
        self.first = True  # its first process is yet to start (its clone is made meanwhile)
        self.ref_made = False

    async def apply(self, change: dict[str, Any]) -> None:
        """Lay a change set from the node into the local worktree."""
        made = await off_loop(lay, self.workdir, self.ref, change)
        self.ref_made = self.ref_made or made


class RayExecutor:
    """Attempts in placement groups, run by each node's host."""

    def __init__(self, address: str, grace_s: float, run_id: str) -> None:
        self.address = address
        self.name = address or "ray"
        self.grace_s = grace_s
        self.run_id = run_id
        self.place_timeout = place_timeout()
        self._places: dict[str, _Place] = {}
        self._cleanups: set[asyncio.Task[None]] = set()
        self._offered: tuple[float, dict[str, float]] = (-OFFERED_S - 1, {})
        self._procs: dict[str, RemoteProcess] = {}
        self._ended: set[str] = set()
        self._used: set[str] = set()  # nodes whose hosts this run used (told when it ends)
        #: Tasks whose last process's exit brought their worktree's last change set, laid
        #: before ``wait`` returned: no ``collect`` changes their worktree afterwards.
        self._settled: set[str] = set()
        self._connected = False  # True when this executor connected (and disconnects)
        #: Seconds spent per phase, every attempt (bench/ray_overhead.py reads them).
        self.timings: dict[str, list[float]] = {}
        self._run_dir = Path()
        self._packs = RunPacks(Path(), self.timings)
        self._exclude_file: Path | None = None

    @property
    def reaper_pid(self) -> int:
        return 0  # every agent runs on a node, ended there when this process goes

    def check(self) -> None:
        try:
            import ray
        except ImportError:
            raise ExecutorError(f"executor: ray needs Ray installed: {RAY_INSTALL}") from None
        if not ray.is_initialized():  # else this process is a driver already (a test)
            self._connect()

    def _connect(self) -> None:
        import ray

        address = self.address or os.environ.get("RAY_ADDRESS") or "auto"
        for tries_left in range(CONNECT_TRIES - 1, -1, -1):
            try:
                ray.init(
                    address=address,
                    logging_level=logging.ERROR,
                    log_to_driver=False,
                    configure_logging=True,
                    namespace="delegate-tui",
                )
            except Exception as exc:
                # Ray Client's server starts a server process for each client, which
                # can fail to start (a port another cluster took meanwhile): ask again.
                if tries_left and "Initialization failure from server" in str(exc):
                    with contextlib.suppress(Exception):
                        ray.shutdown()
                    time.sleep(1.0)
                    continue
                raise ExecutorError(
                    f"executor: {self.name}: cannot reach the Ray cluster at {address!r} "
                    f"({exc}); start one with `ray start --head`, or set RAY_ADDRESS"
                ) from None
            self._connected = True
            return

    def start(self, run_dir: Path, repo: Path, tip: str, slots: int) -> None:
        """Connect, and have every node's host ready before the first attempt: its start
        (a Ray worker each, for this process's first run) and a few warm clones at
        ``tip`` overlap what comes before (the first batch's approval, its worktrees)."""
        self._run_dir = run_dir  # files a remote process writes for the engine go here
        self._packs = RunPacks(repo, self.timings)
        self.check()
        nodes = alive_nodes()
        hosts = {str(n["NodeID"]): HOSTS.host(str(n["NodeID"]))[0] for n in nodes}
        for node_id in list(HOSTS.current()):
            if node_id not in hosts:  # a node gone since an earlier run
                HOSTS.drop(node_id)
        if not tip or not nodes:
            return
        share = -(-max(1, slots) // len(nodes))  # the run's slots, spread over the nodes
        warm = {
            str(n["NodeID"]): min(share, WARM_CLONES, int(n.get("Resources", {}).get("CPU", 0)))
            for n in nodes
        }
        job = asyncio.get_running_loop().create_task(self._warm(hosts, warm, tip))
        self._cleanups.add(job)
        job.add_done_callback(self._cleanups.discard)

    async def _warm(self, hosts: dict[str, Any], warm: dict[str, int], tip: str) -> None:
        with contextlib.suppress(Exception):  # an attempt makes its own clone then
            ref, commit = await self._packs.base(tip)
            begun = []
            for node_id, actor in hosts.items():
                if warm.get(node_id):
                    self._used.add(node_id)
                    call = actor.begin.remote(
                        self.run_id, self.grace_s, [ref], commit, warm[node_id]
                    )
                    begun.append(_quietly(call))  # a host that failed says so to its attempts
            await asyncio.gather(*begun)

    async def place(
        self, task_id: str, number: int, workdir: Path, start: str, resources: Sequence[str]
    ) -> str:
        import ray
        from ray.util.placement_group import placement_group

        self._settled.discard(task_id)
        # The packs are made (or found) while Ray places the attempt.
        self._packs.start(start)
        packs = asyncio.ensure_future(self._packs.base(start))
        try:
            if time.monotonic() - self._offered[0] > OFFERED_S:  # what the nodes offer
                self._offered = (time.monotonic(), ray.cluster_resources())
            bundle = ray_bundle(resources, self._offered[1])
            began = time.monotonic()
            place = _Place(
                self.run_id, f"{task_id}-{number}", workdir, start, placement_group([bundle])
            )
            self._places[task_id] = place  # release() removes the group, whatever happens next
            place.node_id = await placed(
                place.group, bundle, self.place_timeout, lambda: task_id in self._ended
            )
            place.actor, ready = HOSTS.host(place.node_id)
            self._used.add(place.node_id)
            self._took("placement (a placement group)", began)
            began = time.monotonic()
            try:
                place.where = await ready
                place.node = node_label(place.where)
            except Exception as exc:
                raise await self._failed(exc, place, "before the attempt started") from None
            self._took("the node's host ready (started with the run)", began)
            env = await gpu_env(place.group) if "GPU" in bundle else {}
            base, base_commit = await packs
        finally:
            if not packs.done():
                packs.cancel()
            elif not packs.cancelled():
                packs.exception()  # taken, whatever else failed
        increment = await self._packs.for_node(place.node_id, start)
        # The clone is made on the node while the engine gets ready to start the first
        # process, which waits there for it: this call is not waited for (its failure is
        # that process's). The attempt's folders there are known without asking.
        place.preparing = place.actor.prepare.remote(
            self.run_id, self.grace_s, place.key, [base], base_commit, increment, start, env
        )
        self._packs.taken(place.node_id, start)  # forgotten if its first process fails
        folder = attempt_folder(place.where, place.key)
        place.remote_work, place.remote_run = f"{folder}/work", f"{folder}/run"
        return place.node

    def _clone_took(self, place: _Place, reply: Mapping[str, Any]) -> None:
        """The account of the attempt's clone, once its checkout (under way on the node
        while the engine got ready for the first process) is done."""
        packs, waited, checkout = reply["packs_s"], reply["clone_wait_s"], reply["checkout_s"]
        self.timings.setdefault("scratch clone (on the node)", []).append(packs + waited + checkout)
        for phase, took in (
            ("  of which: the packs taken in", packs),
            ("  of which: waiting for a warm clone", waited),
            (
                "  of which: the checkout" + (" (warm clone)" if reply["warm"] else " (new clone)"),
                checkout,
            ),
        ):
            self.timings.setdefault(phase, []).append(took)

    async def _failed(self, exc: BaseException, place: _Place, when: str) -> BaseException:
        """The error to raise for ``exc`` from ``place``'s host: :class:`AttemptLost` with
        what happened when the host or its node failed, else ``exc`` itself."""
        why = await host_failure(exc, place.node_id, place.node, when)
        if not why:
            return exc
        if getattr(exc, "actor_init_failed", False):  # it will not start there: keep saying so
            self._offered = (-OFFERED_S - 1, {})
        else:
            self._gone(place.node_id)
        return AttemptLost(why)

    def _gone(self, node_id: str) -> None:
        """Node ``node_id``'s host (or the node) went away: a later attempt there starts
        another host (which has no pack yet), and what the cluster offers is read afresh."""
        HOSTS.drop(node_id)
        self._packs.forget(node_id)
        self._offered = (-OFFERED_S - 1, {})

    def _remote(self, place: _Place, text: str, cwd: Path) -> str:
        """A local path (the worktree, the run folder, this Python) as the node sees it."""
        if text == sys.executable:
            return NODE_PYTHON
        text = text.replace(str(cwd), place.remote_work)
        if str(self._run_dir) not in ("", "."):
            text = text.replace(str(self._run_dir), place.remote_run)
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
        place = self._places[task_id]
        # What the attempt set, over the node's own environment (PATH, HOME are the node's).
        own = {k: v for k, v in env.items() if os.environ.get(k) != v}
        remote_env = {k: self._remote(place, v, cwd) for k, v in own.items()}
        remote_argv = [self._remote(place, a, cwd) for a in argv]
        files = _run_files_named(self._run_dir, [*argv, *own.values()])
        if not self._exclude_file:  # the repository's, shared by its worktrees
            common = await off_loop(
                workspace.git, ["rev-parse", "--path-format=absolute", "--git-common-dir"], cwd
            )
            self._exclude_file = Path(common.stdout.strip()) / "info" / "exclude"
        exclude = await off_loop(_read_text, self._exclude_file)
        began = time.monotonic()
        place.settled = False
        first, place.first = place.first, False
        try:
            reply = await place.actor.spawn.remote(
                place.key, remote_argv, remote_env, transport, size, stdin, files, watch, exclude
            )
            self._took("spawn call", began)
        except Exception as exc:
            if first:  # its clone's packs may not all have been taken in: send them again
                self._packs.forget(place.node_id)
            raise await self._failed(exc, place, "as its process started") from None
        if "error" in reply:
            raise OSError(f"{reply['error']} (on {place.node})")
        self.timings.setdefault("  of which: the start on the node", []).append(reply["spawn_s"])
        if reply["checkout_s"] >= 0:  # the attempt's first process: its clone's checkout
            self.timings.setdefault("  of which: waiting for the prepare call", []).append(
                reply["prepare_wait_s"]
            )
            self.timings.setdefault("  of which: waiting for the clone's checkout", []).append(
                reply["checkout_wait_s"]
            )
            self._clone_took(place, reply)
        proc = RemoteProcess(place, reply, on_output, self._run_dir, self.timings)
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
        if proc.place.settled and not proc.lost:
            self._settled.add(task_id)
        else:
            self._settled.discard(task_id)
        if proc.lost:
            if proc.host_gone:
                self._gone(proc.place.node_id)
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
        place = self._places.get(task_id)
        if place is None or place.settled:  # nothing moved since the last exit's change set
            return
        began = time.monotonic()
        try:
            snap = await place.actor.snapshot.remote(place.key)
        except Exception as exc:
            raise await self._failed(exc, place, "before its work came back") from None
        if snap is not None:
            await place.apply(snap)
        self._took("collect (final change set)", began)

    def settled(self, task_id: str) -> bool:
        return task_id in self._settled

    def _took(self, phase: str, began: float) -> None:
        self.timings.setdefault(phase, []).append(time.monotonic() - began)

    async def release(self, task_id: str) -> None:
        place = self._places.pop(task_id, None)
        if place is None:
            return
        began = time.monotonic()
        if place.ref_made:
            with contextlib.suppress(workspace.GitError, OSError):
                await off_loop(_drop_ref, place.workdir, place.ref)
        # The node ends what is left and recycles the clone; then the CPU is given back.
        job = asyncio.get_running_loop().create_task(self._free(place))
        self._cleanups.add(job)
        job.add_done_callback(self._cleanups.discard)
        self._took("release", began)

    async def _free(self, place: _Place) -> None:
        from ray.util.placement_group import remove_placement_group

        try:
            if place.preparing is not None:  # its failure, if any, was its first process's
                await asyncio.wait_for(_quietly(place.preparing), self.grace_s + 5)
            if place.actor is not None:
                await asyncio.wait_for(place.actor.cleanup.remote(place.key), self.grace_s + 5)
        except Exception as exc:
            if is_lost(exc) and not getattr(exc, "actor_init_failed", False):
                self._gone(place.node_id)
        finally:
            with contextlib.suppress(Exception):
                remove_placement_group(place.group)

    async def _terminate(self, proc: RemoteProcess) -> None:
        with contextlib.suppress(Exception):
            await proc.place.actor.terminate.remote(proc.place.key)

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
                proc.place.actor.kill.remote(proc.place.key)

    def was_ended(self, task_id: str) -> bool:
        return task_id in self._ended

    def forget(self, task_id: str) -> None:
        self._ended.discard(task_id)

    async def close(self) -> None:
        for proc in list(self._procs.values()):
            await self._terminate(proc)
        self._procs.clear()
        for task_id in list(self._places):
            await self.release(task_id)
        if self._cleanups:
            await asyncio.wait(set(self._cleanups), timeout=self.grace_s + 5)
        import ray

        # Each node's clones and base of this run go; the hosts stay for the next run.
        hosts = HOSTS.current() if self._used and ray.is_initialized() else {}
        forgotten = [
            asyncio.ensure_future(_quietly(hosts[n][0].forget_run.remote(self.run_id)))
            for n in self._used
            if n in hosts
        ]
        if forgotten:
            await asyncio.wait(forgotten, timeout=10)
        if self._connected:  # the hosts end with the connection
            with contextlib.suppress(Exception):
                ray.shutdown()
            self._connected = False


async def _quietly(ref: Any) -> None:
    """Wait for a call whose failure changes nothing (its host is gone)."""
    with contextlib.suppress(Exception):
        await ref


def _read_text(path: Path) -> str:
    try:
        return path.read_text("utf-8")
    except OSError:
        return ""


def _drop_ref(workdir: Path, ref: str) -> None:
    workspace.git(["update-ref", "-d", ref], workdir, check=False)


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
