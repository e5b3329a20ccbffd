"""Agent processes: spawn, stream, feed input, terminate.

Owns every agent's life as an operating-system process. Each agent runs in
its own session and process group, in a pseudo-terminal by default (agents
keep their colours and line buffering, as under a real terminal) or on
pipes. Output is read as raw byte chunks straight from the descriptor,
never as lines: a 1 MB line or a binary dump is just more chunks. Exit is
known from the process itself (a pidfd where the kernel has one), not from
end-of-output, because a grandchild may hold the output open forever; once
the leader exits the rest of its group is ended too.

A run service can start its agents at a lower CPU priority than its own
(``DELEGATE_AGENT_NICE=N``, 1 to 19; off by default): under a flood, eight agents
take the CPU from the service that reads them and the UI that shows them, and
keys wait for it (p95 2-3x lower niced by 5, bench/README.md). It is off by
default because niced agents yield to everything else on the machine too: with
other work running, the flood took 20-35% longer. An agent gets its niceness
before it starts (inherited by what it runs), and so does its *autogroup*: Linux
gives each session its own scheduling group
(``/proc/sys/kernel/sched_autogroup_enabled``), every agent is a session of its
own, and a niceness counts only inside its group, so the group's is the one that
weighs against delegate-tui. An unprivileged process may change one group's
niceness every 100 ms (the kernel's limit, for the whole machine), so eight
agents started at once get theirs over the next second.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Callable, Mapping, Sequence

from delegate_tui.core.reaper import group_alive
from delegate_tui.core.spawner import PIPE_SIZE as PIPE_SIZE
from delegate_tui.core.spawner import SpawnedChild, Spawner, start_child

READ_SIZE = 64 * 1024
#: Bytes read per wake-up before yielding to the loop, so one flooding agent
#: cannot starve the others or the UI.
READ_BUDGET = 512 * 1024
#: After the leader exits, how long stragglers may still flush output.
DRAIN_S = 0.3
#: After SIGKILL, how long to wait for the group to be gone (it takes a few
#: milliseconds on a busy machine), so that "ended" means ended.
KILL_WAIT_S = 1.0
#: An agent's output pipe holds PIPE_SIZE (1 MiB; Linux's default is 64 KiB, 1 MiB the
#: most an unprivileged process may ask for): a flooding agent rarely blocks on it.
#: A pipe that gave this much in one wake-up is flooding: its next read waits
#: ``FLOOD_PAUSE_S``, so output is read in a few large gulps instead of a wake-up
#: per write the agent makes (45,000 of them for 128 MB). A pipe that gives less
#: is read as soon as it has anything, so interactive output is not delayed.
FLOOD_BYTES = 32 * 1024
FLOOD_PAUSE_S = 0.004

#: How much nicer than the run service its agents run, unless ``DELEGATE_AGENT_NICE``
#: says otherwise (0: at the service's own priority).
AGENT_NICE = 0
NICE_ENV = "DELEGATE_AGENT_NICE"
#: Retries of an autogroup's niceness the kernel refused for now (its 100 ms limit).
AUTOGROUP_RETRY_S = 0.11
AUTOGROUP_TRIES = 50

OutputCallback = Callable[[bytes], None]


def agent_nice() -> int:
    """How much nicer than the run service its agents start: ``DELEGATE_AGENT_NICE``
    (0 to 19; 0: as the service), else :data:`AGENT_NICE`."""
    value = os.environ.get(NICE_ENV, "").strip()
    if not value:
        return AGENT_NICE
    try:
        return max(0, min(19, int(value)))
    except ValueError:
        return AGENT_NICE


def _autogroup_nice(pid: int, nice: int) -> bool | None:
    """Set the niceness of ``pid``'s autogroup: True when set, None when the kernel
    asks to try again later, False when there is nothing to set (no autogroups, the
    process is gone, not allowed)."""
    try:
        with open(f"/proc/{pid}/autogroup", "w") as group:
            group.write(str(nice))
        return True
    except BlockingIOError:  # EAGAIN: another group's niceness changed under 100 ms ago
        return None
    except OSError:
        return False


def autogroups_enabled() -> bool:
    """Whether Linux schedules sessions as groups (then a niceness counts inside its
    session only)."""
    try:
        with open("/proc/sys/kernel/sched_autogroup_enabled") as flag:
            return flag.read().strip() == "1"
    except OSError:
        return False


class AgentProcess:
    """One running agent (or setup/criteria command) in its own process group."""

    def __init__(
        self,
        popen: subprocess.Popen[bytes] | SpawnedChild,
        out_fd: int,
        in_fd: int | None,
        transport: str,
        on_output: OutputCallback,
    ) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.pgid = popen.pid  # start_new_session makes the child its group's leader
        self.transport = transport
        self.started = time.monotonic()
        self._out_fd = out_fd
        self._in_fd = in_fd
        self._on_output = on_output
        self._loop = asyncio.get_running_loop()
        self._eof = asyncio.Event()
        self._exited = asyncio.Event()
        self._pidfd = -1
        self._resume: asyncio.TimerHandle | None = None
        self._nice_retry: asyncio.TimerHandle | None = None
        #: False for an agent whose stdin is /dev/null.
        self.takes_input = True
        os.set_blocking(out_fd, False)
        self._loop.add_reader(out_fd, self._read_ready)
        if isinstance(popen, SpawnedChild):  # its parent, the spawner, says when it exits
            popen.notify(self._poll_exit)
        else:
            try:
                self._pidfd = os.pidfd_open(self.pid)
                self._loop.add_reader(self._pidfd, self._poll_exit)
            except (AttributeError, OSError):
                self._pidfd = -1
                self._loop.create_task(self._poll_exit_slowly())
        self._poll_exit()

    @classmethod
    def spawn(
        cls,
        argv: Sequence[str],
        *,
        cwd: str,
        env: Mapping[str, str],
        on_output: OutputCallback,
        transport: str = "pty",
        size: tuple[int, int] = (120, 40),
        stdin: str = "pipe",
        announce_fd: int = -1,
        nice: int = 0,
    ) -> AgentProcess:
        """Start ``argv`` in ``cwd``. Raises ``OSError`` when it cannot start.

        On pipes, ``stdin="devnull"`` gives the agent an empty stdin: CLIs that read
        their stdin to its end before they start (codex) then start at once, and the
        agent takes no typed input. ``announce_fd`` (the watchdog's pipe) is told
        ``+pgid`` by the child itself before its command runs. ``nice``: how much lower
        than this process's CPU priority it runs (its autogroup's too).
        """
        popen, fds = start_child(argv, env, cwd, transport, size, stdin, nice, announce_fd)
        if transport == "pty":
            proc = cls(popen, fds[0], fds[0], "pty", on_output)
        else:
            in_fd = fds[1] if len(fds) > 1 else None
            proc = cls(popen, fds[0], in_fd, "pipes", on_output)
            proc.takes_input = in_fd is not None
        proc.lower_group_priority(nice)
        return proc

    @classmethod
    async def start(
        cls,
        spawner: Spawner,
        argv: Sequence[str],
        *,
        cwd: str,
        env: Mapping[str, str],
        on_output: OutputCallback,
        transport: str = "pty",
        size: tuple[int, int] = (120, 40),
        stdin: str = "pipe",
        nice: int = 0,
    ) -> AgentProcess:
        """:meth:`spawn`, by ``spawner`` (:mod:`spawner`: a small process of this one's
        that forks instead of it; it tells its watchdog, ``spawner.announce_fd``)."""
        child, fds = await spawner.spawn(
            argv, cwd=cwd, env=env, transport=transport, size=size, stdin=stdin, nice=nice
        )
        if transport == "pty":
            proc = cls(child, fds[0], fds[0], "pty", on_output)
        else:
            child.stdout = open(fds[0], "rb", buffering=0)  # noqa: SIM115 (closed in _close)
            child.stdin = open(fds[1], "wb", buffering=0) if len(fds) > 1 else None  # noqa: SIM115
            proc = cls(child, fds[0], fds[1] if len(fds) > 1 else None, "pipes", on_output)
            proc.takes_input = len(fds) > 1
        proc.lower_group_priority(nice)
        return proc

    def lower_group_priority(self, nice: int, tries: int = AUTOGROUP_TRIES) -> None:
        """Give the agent's autogroup (its session) ``nice``, retrying while the
        kernel's rate limit refuses, for as long as the agent runs."""
        self._nice_retry = None
        if not nice or self._exited.is_set():
            return
        if tries == AUTOGROUP_TRIES and not autogroups_enabled():  # asked once, not each retry
            return
        if _autogroup_nice(self.pid, nice) is None and tries > 1:
            self._nice_retry = self._loop.call_later(
                AUTOGROUP_RETRY_S, self.lower_group_priority, nice, tries - 1
            )

    # ------------------------------------------------------------ output

    def _read_ready(self) -> None:
        budget = PIPE_SIZE if self.transport == "pipes" else READ_BUDGET
        while budget > 0:
            try:
                data = os.read(self._out_fd, READ_SIZE)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.EIO:  # PTY: every slave descriptor closed
                    self._at_eof()
                    return
                raise
            if not data:
                self._at_eof()
                return
            budget -= len(data)
            self._on_output(data)
            if len(data) < READ_SIZE:
                # Drained for now. Re-reading at once would return a line at a time
                # from a PTY that is being written to, and each read costs more than
                # waiting for the next wake-up, when more has gathered.
                break
        if self.transport == "pipes" and budget <= PIPE_SIZE - FLOOD_BYTES:
            self._loop.remove_reader(self._out_fd)
            self._resume = self._loop.call_later(FLOOD_PAUSE_S, self._resume_reading)

    def _resume_reading(self) -> None:
        self._resume = None
        if not self._eof.is_set() and self._out_fd >= 0:
            self._loop.add_reader(self._out_fd, self._read_ready)

    def _at_eof(self) -> None:
        if not self._eof.is_set():
            if self._resume is not None:
                self._resume.cancel()
                self._resume = None
            self._loop.remove_reader(self._out_fd)
            self._eof.set()
        if self._nice_retry is not None:
            self._nice_retry.cancel()
            self._nice_retry = None

    # ------------------------------------------------------------ exit

    def _poll_exit(self) -> None:
        if self.popen.poll() is not None and not self._exited.is_set():
            if self._pidfd >= 0:
                self._loop.remove_reader(self._pidfd)
                os.close(self._pidfd)
                self._pidfd = -1
            self._exited.set()

    async def _poll_exit_slowly(self) -> None:
        while not self._exited.is_set():
            await asyncio.sleep(0.05)
            self._poll_exit()

    @property
    def returncode(self) -> int | None:
        """Exit status; negative for a signal (as ``subprocess`` reports it)."""
        return self.popen.returncode

    async def wait(self) -> int:
        """Wait for the leader, drain output, end stragglers; return the exit status."""
        await self._exited.wait()
        if not self._eof.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._eof.wait(), DRAIN_S)
        if group_alive(self.pgid):
            # Stragglers (a daemon the agent left behind) end with their task.
            await self._signal_group_and_wait(signal.SIGTERM, 1.0)
            if group_alive(self.pgid):
                await self._signal_group_and_wait(signal.SIGKILL, KILL_WAIT_S)
        self._read_ready_final()
        self._close()
        rc = self.popen.returncode
        assert rc is not None
        return rc

    def _read_ready_final(self) -> None:
        if not self._eof.is_set():
            with contextlib.suppress(OSError):
                self._read_ready()
            self._at_eof()

    def _close(self) -> None:
        """Close each descriptor exactly once, through its owner.

        Closing a number twice is not harmless: by the second time the number
        may belong to a pipe another thread just opened (a git call), or to the
        run log. Pipes belong to Popen's file objects; the PTY master is ours.
        """
        if self.transport == "pipes":
            for stream in (self.popen.stdin, self.popen.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError, ValueError):
                        stream.close()
        elif self._out_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._out_fd)
        self._out_fd = -1
        self._in_fd = None

    # ------------------------------------------------------------ control

    def signal_group(self, sig: int) -> None:
        """Send ``sig`` to the whole process group."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, sig)

    async def _signal_group_and_wait(self, sig: int, grace: float) -> None:
        """Send ``sig`` to the group; return once it is gone or ``grace`` has passed."""
        self.signal_group(sig)
        deadline = time.monotonic() + grace
        step = 0.005  # a group usually ends within milliseconds: look soon, then less often
        while time.monotonic() < deadline:
            self.popen.poll()
            if not group_alive(self.pgid):
                return
            await asyncio.sleep(step)
            step = min(0.05, step * 2)

    async def terminate(self, grace: float = 5.0) -> None:
        """SIGTERM the group; SIGKILL it if anything is left after ``grace`` seconds.

        Returns once the whole group is gone (or ``KILL_WAIT_S`` after the SIGKILL).
        """
        await self._signal_group_and_wait(signal.SIGTERM, grace)
        self.popen.poll()
        if group_alive(self.pgid):
            await self._signal_group_and_wait(signal.SIGKILL, KILL_WAIT_S)

    def send_input(self, text: str) -> None:
        """Type a line into the agent's stdin (Enter included)."""
        if not self.takes_input:
            raise OSError("this agent reads no input: its stdin is /dev/null")
        if self._in_fd is None or self._in_fd < 0:
            raise ProcessLookupError("the process has ended")
        ending = "\r" if self.transport == "pty" else "\n"
        data = (text + ending).encode()
        if self._in_fd == self._out_fd:  # PTY master is non-blocking
            end = time.monotonic() + 1.0
            while data:
                try:
                    data = data[os.write(self._in_fd, data) :]
                except BlockingIOError:
                    if time.monotonic() > end:
                        raise
                    time.sleep(0.01)
        else:
            os.write(self._in_fd, data)

    def resize(self, cols: int, rows: int) -> None:
        """Tell a PTY agent its terminal changed size."""
        if self.transport == "pty" and self._out_fd >= 0:
            with contextlib.suppress(OSError):
                fcntl.ioctl(self._out_fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
