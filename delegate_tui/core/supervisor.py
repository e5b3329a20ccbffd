"""The run's processes: spawn each in its own group, watch it, end it, leave nothing behind.

Owns every child process a run starts (agents, setup and criteria commands):
spawning through :class:`AgentProcess`, registering each process group with
the :class:`Reaper` watchdog (so ``kill -9`` of delegate-tui still ends
them), or through a small process of its own that forks instead of a big one
(:mod:`spawner`, for a Ray node's host), waiting with a timeout, ending a group (SIGTERM, then SIGKILL after
the grace period), remembering which tasks the operator or a stop asked to
end, and the signal handlers of a run. One task has at most one process at
a time, so processes are known by task id. It decides nothing about tasks:
callers get an exit code and whether it timed out.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from delegate_tui.core.process import AgentProcess
from delegate_tui.core.reaper import Reaper
from delegate_tui.core.spawner import Spawner

#: The exit code reported for a command ended by its timeout (as timeout(1) does).
TIMEOUT_EXIT = 124


class Supervisor:
    """The processes of one run, by task id."""

    def __init__(self, grace_s: float, *, nice: int = 0, spawner: bool = False) -> None:
        self.grace_s = grace_s
        self.nice = nice
        """How much lower than this process's CPU priority children run (process.py)."""
        self._reaper = Reaper()
        #: With ``spawner``, :meth:`start_process` starts processes from a small process
        #: (:mod:`spawner`) rather than by a fork of this one.
        self._spawner: Spawner | None = Spawner() if spawner else None
        self._procs: dict[str, AgentProcess] = {}
        self._ended: set[str] = set()  # tasks asked to end (kill, stop)

    @property
    def reaper_pid(self) -> int:
        """The watchdog's pid, for the log (0 before :meth:`start`)."""
        return self._reaper.pid

    def start(self) -> None:
        """Start the watchdog that ends every group if this process dies (and the
        spawner, which tells it each group it starts). Call from the event loop."""
        self._reaper.start()
        if self._spawner is not None:
            self._spawner.announce_fd = self._reaper.announce_fd
            self._spawner.start()

    async def start_process(
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
    ) -> AgentProcess:
        """:meth:`spawn`, by the spawner when this supervisor has one. Raises ``OSError``."""
        if self._spawner is None:
            return self.spawn(
                task_id,
                argv,
                cwd=cwd,
                env=env,
                on_output=on_output,
                transport=transport,
                size=size,
                stdin=stdin,
            )
        proc = await AgentProcess.start(
            self._spawner,
            argv,
            cwd=str(cwd),
            env=env,
            on_output=on_output,
            transport=transport,
            size=size,
            stdin=stdin,
            nice=self.nice,
        )
        self._procs[task_id] = proc
        self._reaper.register(proc.pgid)  # again, in case the child could not
        return proc

    def spawn(
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
    ) -> AgentProcess:
        """Start ``argv`` for ``task_id`` in a group of its own. Raises ``OSError``."""
        proc = AgentProcess.spawn(
            argv,
            cwd=str(cwd),
            env=env,
            on_output=on_output,
            transport=transport,
            size=size,
            stdin=stdin,
            announce_fd=self._reaper.announce_fd,
            nice=self.nice,
        )
        self._procs[task_id] = proc
        self._reaper.register(proc.pgid)  # again, in case the child could not
        return proc

    async def wait(
        self,
        task_id: str,
        proc: AgentProcess,
        timeout: float | None,
        on_timeout: Callable[[], object] | None = None,
    ) -> int | None:
        """Wait for ``proc`` to end; after ``timeout`` seconds end it and return ``None``.

        ``on_timeout`` is called when the timeout strikes, before the group is ended.
        """
        wait = asyncio.get_running_loop().create_task(proc.wait())
        done, _ = await asyncio.wait({wait}, timeout=timeout)
        if not done:
            if on_timeout is not None:
                on_timeout()
            await proc.terminate(self.grace_s)
        rc = await wait
        self._reaper.unregister(proc.pgid)
        if self._procs.get(task_id) is proc:
            del self._procs[task_id]
        return rc if done else None

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
        """Run an operator-written command with ``sh -c``; its exit code and output.

        A command that outlives ``timeout`` is ended and reported as exit 124.
        """
        captured = bytearray()

        def sink(data: bytes) -> None:
            captured.extend(data)
            out(data)

        proc = self.spawn(
            task_id, ["sh", "-c", command], cwd=cwd, env=env, on_output=sink, transport="pipes"
        )
        rc = await self.wait(task_id, proc, timeout)
        return (TIMEOUT_EXIT if rc is None else rc), bytes(captured)

    def running(self, task_id: str) -> AgentProcess | None:
        """The live process of ``task_id``, if any."""
        return self._procs.get(task_id)

    def end(self, task_id: str) -> None:
        """Mark ``task_id`` as asked to end and end its group, if it has one, in the background."""
        self._ended.add(task_id)
        proc = self._procs.get(task_id)
        if proc is not None:
            asyncio.get_running_loop().create_task(proc.terminate(self.grace_s))

    def stop(self, task_id: str) -> None:
        """End ``task_id``'s group in the background for a reason of the task's own (a
        budget spent, credentials refused): unlike :meth:`end`, not the operator's kill."""
        proc = self._procs.get(task_id)
        if proc is not None:
            asyncio.get_running_loop().create_task(proc.terminate(self.grace_s))

    def end_all(self) -> None:
        """:meth:`end` every task that has a process."""
        for task_id in list(self._procs):
            self.end(task_id)

    def kill_all(self) -> None:
        """SIGKILL every group at once (a second Ctrl-C)."""
        for proc in list(self._procs.values()):
            proc.signal_group(signal.SIGKILL)

    def was_ended(self, task_id: str) -> bool:
        """True when ``task_id`` was asked to end since its last :meth:`forget`."""
        return task_id in self._ended

    def forget(self, task_id: str) -> None:
        """A new attempt starts: an earlier request to end the task no longer holds."""
        self._ended.discard(task_id)

    async def close(self) -> None:
        """End every group still running (waiting for each), then let the watchdog go."""
        for proc in list(self._procs.values()):
            await proc.terminate(self.grace_s)
        self._procs.clear()
        if self._spawner is not None:  # first: it holds the watchdog's pipe too
            self._spawner.close()
        self._reaper.close()


class _KillsAll(Protocol):
    def kill_all(self) -> None: ...


def install_signal_handlers(
    stop: Callable[[str], object], supervisor: _KillsAll, *, hang_up: bool = True
) -> None:
    """Ctrl-C, SIGTERM or SIGHUP ends the run cleanly; a second one ends agents at once.

    Without ``hang_up`` (the run service, which outlives its terminal) SIGHUP is ignored.
    """
    loop = asyncio.get_running_loop()
    count = {"n": 0}

    def handle(signame: str) -> None:
        count["n"] += 1
        if count["n"] == 1:
            stop(f"interrupted by {signame}")
        else:
            supervisor.kill_all()

    if threading.current_thread() is not threading.main_thread():
        return  # only the main thread may take signals; its owner handles them
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        if sig == signal.SIGHUP and not hang_up:
            signal.signal(sig, signal.SIG_IGN)
        else:
            loop.add_signal_handler(sig, handle, sig.name)
