"""Where an attempt's processes run: the executor seam, and the local executor.

Owns the boundary between an attempt's steps (:mod:`attempt`) and the
machine its agent runs on. An attempt asks its :class:`Executor` to place it
(``place``), to start its agent or an operator-written command in its
worktree (``spawn``, ``shell``) with an argv, an environment and a working
directory, to wait for it under a timeout, to type into it, to end it, and,
once its agent and criteria are done, to bring what it made back into the
task's worktree (``collect``) before the attempt commits it. Output arrives
as byte chunks through the callback given to ``spawn``, in order.

The :class:`LocalExecutor` is the :class:`~delegate_tui.core.supervisor.Supervisor`
unchanged (the worktree is the agent's own, so there is nothing to place or
collect). The Ray executor (:mod:`delegate_tui.core.ray_executor`, behind the
``ray`` extra) runs the same steps on a cluster node. Nothing else in the core
knows which executor runs: :func:`make_executor` picks one from the plan's (or
the command line's) ``executor``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # loaded by the local executor when it is made: a plan's
    # validation (parse_executor) and a check before a run need neither.
    from delegate_tui.core.supervisor import Supervisor

#: What ``executor: ray`` needs installed, said when it is missing.
RAY_INSTALL = "pip install 'delegate-tui[ray]'"


class ExecutorError(Exception):
    """An executor cannot be used (its extra is missing, its cluster unreachable)."""


class AttemptLost(Exception):
    """The machine an attempt ran on went away (a lost node), or no machine could take
    it (no node has its resources): the attempt failed."""


class Process(Protocol):
    """A running agent or command, wherever it runs."""

    pid: int
    pgid: int
    transport: str
    takes_input: bool

    @property
    def returncode(self) -> int | None: ...

    def send_input(self, text: str) -> None: ...

    def resize(self, cols: int, rows: int) -> None: ...


class Executor(Protocol):
    """Runs the processes of one run's attempts, by task id (one attempt per task at a time)."""

    #: ``local``, or where the attempts run (``ray``, ``ray://head:10001``).
    name: str

    @property
    def reaper_pid(self) -> int: ...

    def check(self) -> None:
        """Raise :class:`ExecutorError` when this executor cannot run (before anything starts)."""

    def start(self, run_dir: Path, repo: Path, tip: str, slots: int) -> None:
        """Begin the run whose folder is ``run_dir`` (the watchdog; a cluster connection),
        whose attempts start from commits of ``repo`` (the first ones from ``tip``), at most
        ``slots`` at once: what can be made ready before the first attempt starts now."""

    async def place(
        self, task_id: str, number: int, workdir: Path, start: str, resources: Sequence[str]
    ) -> str:
        """Make a place for attempt ``number`` of ``task_id`` whose worktree ``workdir``
        starts at commit ``start``; return where it runs (``""``: here)."""

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
    ) -> Process:
        """Start ``argv`` for ``task_id`` in a process group of its own. Raises ``OSError``."""

    async def wait(
        self,
        task_id: str,
        proc: Process,
        timeout: float | None,
        on_timeout: Callable[[], object] | None = None,
    ) -> int | None:
        """Its exit status, or ``None`` when ``timeout`` struck and it was ended.
        Raises :class:`AttemptLost` when its machine went away."""

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
        """Run an operator-written command with ``sh -c``: its exit code and output."""

    async def collect(self, task_id: str, workdir: Path) -> None:
        """Bring the attempt's work into ``workdir`` (its agent and criteria are done)."""

    def settled(self, task_id: str) -> bool:
        """True when nothing this executor does changes ``task_id``'s worktree after its
        agent's ``wait`` returned (no ``collect`` to come): the conflict monitor's last
        look at it then is its work, committed as it is. Asked after ``release``."""

    async def release(self, task_id: str) -> None:
        """The attempt is over: free its place."""

    def running(self, task_id: str) -> Process | None: ...

    def end(self, task_id: str) -> None:
        """The operator's kill: end the task's group in the background."""

    def stop(self, task_id: str) -> None:
        """End the task's group for a reason of its own (a budget spent)."""

    def end_all(self) -> None: ...

    def kill_all(self) -> None: ...

    def was_ended(self, task_id: str) -> bool: ...

    def forget(self, task_id: str) -> None: ...

    async def close(self) -> None:
        """End everything still running and let the run's resources go."""


class LocalExecutor:
    """Today's path: every process a child of this one, in the task's own worktree."""

    name = "local"

    def __init__(self, grace_s: float) -> None:
        from delegate_tui.core.supervisor import Supervisor

        self.supervisor: Supervisor = Supervisor(grace_s)

    @property
    def reaper_pid(self) -> int:
        return self.supervisor.reaper_pid

    def check(self) -> None:
        return None

    def start(self, run_dir: Path, repo: Path, tip: str, slots: int) -> None:
        self.supervisor.start()

    async def place(
        self, task_id: str, number: int, workdir: Path, start: str, resources: Sequence[str]
    ) -> str:
        return ""

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
    ) -> Process:
        return self.supervisor.spawn(
            task_id,
            argv,
            cwd=cwd,
            env=env,
            on_output=on_output,
            transport=transport,
            size=size,
            stdin=stdin,
        )

    async def wait(
        self,
        task_id: str,
        proc: Process,
        timeout: float | None,
        on_timeout: Callable[[], object] | None = None,
    ) -> int | None:
        from delegate_tui.core.process import AgentProcess

        assert isinstance(proc, AgentProcess)
        return await self.supervisor.wait(task_id, proc, timeout, on_timeout)

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
        return await self.supervisor.shell(
            task_id, command, cwd=cwd, env=env, out=out, timeout=timeout
        )

    async def collect(self, task_id: str, workdir: Path) -> None:
        return None

    def settled(self, task_id: str) -> bool:
        return True  # the agent worked in the worktree itself

    async def release(self, task_id: str) -> None:
        return None

    def running(self, task_id: str) -> Process | None:
        return self.supervisor.running(task_id)

    def end(self, task_id: str) -> None:
        self.supervisor.end(task_id)

    def stop(self, task_id: str) -> None:
        self.supervisor.stop(task_id)

    def end_all(self) -> None:
        self.supervisor.end_all()

    def kill_all(self) -> None:
        self.supervisor.kill_all()

    def was_ended(self, task_id: str) -> bool:
        return self.supervisor.was_ended(task_id)

    def forget(self, task_id: str) -> None:
        self.supervisor.forget(task_id)

    async def close(self) -> None:
        await self.supervisor.close()


def parse_executor(value: str) -> tuple[str, str]:
    """``local``, ``ray`` or ``ray://HOST:PORT`` as (kind, address); ``ValueError`` otherwise.

    ``ray`` alone means the ``RAY_ADDRESS`` environment variable's cluster, or the one
    ``ray start --head`` runs on this machine (``auto``).
    """
    text = value.strip()
    if text in ("", "local"):
        return "local", ""
    if text == "ray":
        return "ray", ""
    if text.startswith("ray://") and len(text) > len("ray://"):
        return "ray", text
    raise ValueError(f"unknown executor {value!r}: use local, ray or ray://HOST:PORT")


def ray_available() -> bool:
    """True when the ``ray`` extra is installed."""
    return importlib.util.find_spec("ray") is not None


def make_executor(value: str, grace_s: float, run_id: str) -> Executor:
    """The executor ``value`` names (see :func:`parse_executor`; validated with the plan).

    Its :meth:`Executor.check` says whether it can run (Ray installed and reachable).
    """
    kind, address = parse_executor(value)
    if kind == "local":
        return LocalExecutor(grace_s)
    from delegate_tui.core.ray_executor import RayExecutor  # imports Ray only when it runs

    return RayExecutor(address, grace_s, run_id)
