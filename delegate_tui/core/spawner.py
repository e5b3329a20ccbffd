"""A small process that starts agents for a big one, so the big one never forks.

Owns starting a process's agents from a process of their own. A Ray node's
host (:mod:`ray_host`) is a Ray worker of 90-250 MB with a dozen threads:
each agent it started itself was a ``fork()`` of all of it (an agent needs
code between fork and exec: a session, its PTY as controlling terminal, the
announce to the watchdog): 20-40 ms of page tables and copy-on-write for a
96 MB worker at load 10, 0.11-0.28 s in the benchmark's hosts at load 10-20
(bench/README.md). The spawner is a Python of the watchdog's size
(:mod:`reaper`: the standard library only, started with ``-S``), started once:
it takes each request (argv, environment, folder, transport, PTY size) over a
Unix socketpair, starts the process exactly as :class:`AgentProcess` does
(its own session and group, the PTY or pipes, ``+pgid`` told to the watchdog
by the child before its command runs), and passes back its pid and its
descriptors (the PTY's master, or the pipes' ends, by ``SCM_RIGHTS``). It is
the processes' parent, so it reaps them and sends each exit status back; the
owner reads them on its event loop (:class:`Spawner`, :class:`SpawnedChild`).

The spawner holds the watchdog's pipe (to hand it to each child), so it must
not outlive its owner: it leaves when the socket closes, and the watchdog
then sees its pipe close and ends every group, as when it is the owner's
alone. The spawner changes no signal's disposition: its children get the
owner's, as they did when the owner forked them.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import marshal
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
from collections.abc import Callable, Mapping, Sequence
from typing import Any

#: Requests travel in messages of at most this many bytes (an argv may be a whole
#: prompt; a Unix socket's message is bounded by its buffer, about 200 KiB).
CHUNK = 32 * 1024
#: The most descriptors one reply carries (a pipe's output and input ends).
MAX_FDS = 2
#: An agent's output pipe holds this much (as :data:`process.PIPE_SIZE`).
PIPE_SIZE = 1024 * 1024
#: The exit status reported for a process whose spawner went away before it ended:
#: its real one is lost with the spawner (its parent); as a shell reports a SIGKILL.
LOST_EXIT = -signal.SIGKILL
#: Descriptors received are closed when this process runs another program.
CLOEXEC = getattr(socket, "MSG_CMSG_CLOEXEC", 0)


def child_setup(tty: bool, announce_fd: int, nice: int = 0) -> Callable[[], None] | None:
    """What the child does between fork and exec (after ``setsid()``, so its pid is its
    group): take the PTY as its controlling terminal, announce its group to the
    watchdog on ``announce_fd`` itself, before the agent's command can run, and lower
    its priority by ``nice``. (The parent registers the group too, once the process
    started; a ``kill -9`` of delegate-tui in between left the group unknown to the
    watchdog, and the agent ran on.)"""
    if not tty and announce_fd < 0 and not nice:
        return None

    def setup() -> None:  # raw system calls only: no lock another thread may hold
        if tty:
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        if announce_fd >= 0:
            os.write(announce_fd, b"+%d\n" % os.getpid())  # under PIPE_BUF: one write
        if nice:
            with contextlib.suppress(OSError):  # at the lowest priority already
                os.nice(nice)

    return setup


def set_pipe_size(fd: int) -> None:
    """Give a flooding agent's output pipe room (:data:`PIPE_SIZE`), where Linux allows."""
    if hasattr(fcntl, "F_SETPIPE_SZ"):
        with contextlib.suppress(OSError):  # over /proc/sys/fs/pipe-max-size: keep the default
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)


# ---------------------------------------------------------------- the spawner's side


def start_child(
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: str,
    transport: str,
    size: tuple[int, int],
    stdin: str,
    nice: int,
    announce_fd: int,
) -> tuple[subprocess.Popen[bytes], list[int]]:
    """Start one agent process in a session and group of its own: its Popen and the
    descriptors its owner reads and writes (the PTY's master; or the output pipe, then
    the input pipe if it has one). Here for a request, and in :class:`AgentProcess`
    for a process that forks its agents itself."""
    argv, env = list(argv), dict(env)
    if transport == "pty":
        master, slave = os.openpty()
        cols, rows = size
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        try:
            popen = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                start_new_session=True,
                preexec_fn=child_setup(True, announce_fd, nice),
                close_fds=True,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        return popen, [master]
    popen = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL if stdin == "devnull" else subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=child_setup(False, announce_fd, nice),
        close_fds=True,
    )
    assert popen.stdout is not None
    set_pipe_size(popen.stdout.fileno())
    fds = [popen.stdout.fileno()]
    if popen.stdin is not None:
        fds.append(popen.stdin.fileno())
    return popen, fds


def _reply(sock: socket.socket, message: tuple[Any, ...], fds: Sequence[int] = ()) -> None:
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))]
    sock.sendmsg([marshal.dumps(message)], ancillary if fds else [])


def serve(sock: socket.socket, announce_fd: int) -> None:
    """Start what ``sock`` asks for and say each one's exit, until ``sock`` closes."""
    children: dict[int, subprocess.Popen[bytes]] = {}
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # only to wake the select below
    pending = bytearray()
    total = -1
    fd = sock.fileno()
    while True:
        ready, _, _ = select.select([fd, wake_r], [], [])
        if wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                while os.read(wake_r, 512):
                    pass
        for pid, popen in list(children.items()):  # the wake-up may have been missed
            rc = popen.poll()
            if rc is not None:
                del children[pid]
                _reply(sock, ("exit", pid, rc))
        if fd not in ready:
            continue
        data = sock.recv(CHUNK + 8)
        if not data:
            return  # the owner went away: so does this process (the watchdog's pipe)
        if total < 0:
            total = int.from_bytes(data[:8], "big")
            data = data[8:]
        pending += data
        if len(pending) < total:
            continue
        request, pending, total = marshal.loads(bytes(pending)), bytearray(), -1
        number = request[0]
        try:
            argv, env, cwd, transport, size, stdin, nice = request[1:]
            popen, fds = start_child(argv, env, cwd, transport, size, stdin, nice, announce_fd)
        except OSError as exc:
            _reply(sock, ("error", number, exc.errno or 0, exc.strerror or str(exc), exc.filename))
            continue
        try:
            _reply(sock, ("started", number, popen.pid), fds)
        finally:  # the owner has its own copies now (or the spawner is going anyway)
            for stream in (popen.stdin, popen.stdout):
                if stream is not None:
                    stream.close()
            if popen.stdout is None:
                os.close(fds[0])
        children[popen.pid] = popen


def main() -> None:
    """``spawner.py SOCKET_FD ANNOUNCE_FD``: serve the owner on the socket inherited."""
    sock = socket.socket(fileno=int(sys.argv[1]))
    serve(sock, int(sys.argv[2]))


# ---------------------------------------------------------------- the owner's side


class SpawnedChild:
    """A process the spawner started, as :class:`AgentProcess` sees a ``Popen``: its pid,
    its exit status once the spawner says it (it is the parent), its pipes."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.stdin: Any = None  # the pipes' ends, as file objects, on pipes
        self.stdout: Any = None
        self._on_exit: Callable[[], None] | None = None

    def poll(self) -> int | None:
        return self.returncode

    def notify(self, on_exit: Callable[[], None]) -> None:
        """Call ``on_exit`` when the exit status arrives."""
        self._on_exit = on_exit

    def exited(self, rc: int) -> None:
        if self.returncode is None:
            self.returncode = rc
            if self._on_exit is not None:
                self._on_exit()


class Spawner:
    """The owner's side: start the spawner, ask it to start processes, take their exits.

    Used from one asyncio event loop (its replies are read there)."""

    def __init__(self, announce_fd: int = -1) -> None:
        self.announce_fd = announce_fd
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._numbers = itertools.count(1)
        self._waiting: dict[int, Any] = {}  # request number -> its future
        self._children: dict[int, SpawnedChild] = {}
        self._lost: set[Any] = set()  # watching processes whose spawner went away

    @property
    def pid(self) -> int:
        """The spawner's pid (0 when it is not running)."""
        return self._proc.pid if self._proc is not None and self._sock is not None else 0

    def start(self) -> None:
        """Start the spawner (a few milliseconds here; its own start-up overlaps what
        comes before the first request, which waits in the socket meanwhile)."""
        import asyncio

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        keep = [theirs.fileno()] + ([self.announce_fd] if self.announce_fd >= 0 else [])
        try:
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    *("-S", "-c", _BOOTSTRAP, __file__),
                    *(str(theirs.fileno()), str(self.announce_fd)),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                close_fds=True,
                pass_fds=keep,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self._sock = ours
        asyncio.get_running_loop().add_reader(ours.fileno(), self._read)

    async def spawn(
        self,
        argv: Sequence[str],
        *,
        cwd: str,
        env: Mapping[str, str],
        transport: str,
        size: tuple[int, int],
        stdin: str,
        nice: int,
    ) -> tuple[SpawnedChild, list[int]]:
        """Start ``argv``; the child and its descriptors (as :func:`_start` lists them).
        Raises ``OSError`` as ``Popen`` would (no such program, no such folder)."""
        import asyncio

        if self._sock is None:
            self.start()
        assert self._sock is not None
        number = next(self._numbers)
        future = asyncio.get_running_loop().create_future()
        self._waiting[number] = future
        request = (number, list(argv), dict(env), cwd, transport, tuple(size), stdin, nice)
        try:
            self._send(marshal.dumps(request))
            result: tuple[SpawnedChild, list[int]] = await future
        finally:
            self._waiting.pop(number, None)
        return result

    def _send(self, data: bytes) -> None:
        sock = self._sock
        assert sock is not None
        data = len(data).to_bytes(8, "big") + data
        for at in range(0, len(data), CHUNK + 8):
            chunk = data[at : at + CHUNK + 8]
            while True:
                try:
                    sock.send(chunk)
                    break
                except BlockingIOError:  # the spawner is busy starting one: wait for room
                    select.select([], [sock], [], 1.0)
                except OSError as exc:
                    self._gone()
                    raise OSError(exc.errno, "the agent spawner has ended") from None

    def _read(self) -> None:
        sock = self._sock
        if sock is None:
            return
        space = socket.CMSG_SPACE(MAX_FDS * struct.calcsize("i"))
        while True:
            try:
                data, ancillary, _, _ = sock.recvmsg(4096, space, CLOEXEC)
            except BlockingIOError:
                return
            except OSError:
                data, ancillary = b"", []
            fds: list[int] = []
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    usable = len(payload) - len(payload) % struct.calcsize("i")
                    fds.extend(struct.unpack(f"{usable // 4}i", payload[:usable]))
            if not data:
                for fd in fds:
                    os.close(fd)
                self._gone()
                return
            self._take(marshal.loads(data), fds)

    def _take(self, message: tuple[Any, ...], fds: list[int]) -> None:
        kind = message[0]
        if kind == "exit":
            child = self._children.pop(message[1], None)
            if child is not None:
                child.exited(message[2])
            return
        future = self._waiting.get(message[1])
        if kind == "started":
            child = SpawnedChild(message[2])
            self._children[child.pid] = child
            if future is None or future.done():  # its caller is gone: nobody reads it
                for fd in fds:
                    os.close(fd)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.pid, signal.SIGKILL)
                return
            future.set_result((child, fds))
        elif kind == "error" and future is not None and not future.done():
            _, _, number, text, filename = message
            future.set_exception(OSError(number, text, filename))

    def _gone(self) -> None:
        """The spawner ended (killed, or its socket failed): what waits for it fails, and
        its processes' statuses are lost with it (:data:`LOST_EXIT` once each is gone).
        The next request starts another."""
        import asyncio

        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(ValueError, RuntimeError):  # no loop (any more)
                asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(1.0)
            self._proc = None
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(OSError("the agent spawner ended"))
        children, self._children = self._children, {}
        with contextlib.suppress(RuntimeError):  # no loop: no one waits for them
            loop = asyncio.get_running_loop()
            for child in children.values():
                job = loop.create_task(_when_gone(child))
                self._lost.add(job)
                job.add_done_callback(self._lost.discard)

    def close(self) -> None:
        """Let the spawner go (it leaves when its socket closes) and wait for it: until it
        is gone it holds the watchdog's pipe open."""
        self._gone()


async def _when_gone(child: SpawnedChild) -> None:
    """Mark ``child`` exited (:data:`LOST_EXIT`) once its pid is gone or a zombie no one
    will wait for (its parent, the spawner, went away: init reaps it)."""
    import asyncio

    while child.returncode is None:
        try:
            with open(f"/proc/{child.pid}/stat", "rb") as fh:
                stat = fh.read()
            gone = stat[stat.rfind(b")") + 2 :][:1] in (b"Z", b"X")
        except OSError:
            gone = True
        if gone:
            child.exited(LOST_EXIT)
            return
        await asyncio.sleep(0.1)


# Runs with -S (no site) for speed: import this module by path, not by package.
_BOOTSTRAP = (
    "import sys, importlib.util as u; "
    "s = u.spec_from_file_location('spawner', sys.argv[1]); "
    "m = u.module_from_spec(s); s.loader.exec_module(m); del sys.argv[1]; m.main()"
)

if __name__ == "__main__":
    main()
