"""A watchdog process that ends every agent if delegate-tui dies.

Owns the promise that no agent outlives delegate-tui, even after ``kill -9``.
The engine starts one reaper per run in its own session and tells it, over a
pipe, which process groups it started and which ended. When the pipe closes
(the engine exited, crashed or was killed) the reaper sends SIGTERM to every
group still registered, waits a short grace, and SIGKILLs what is left.
It imports only the standard library so it starts in a few milliseconds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable

GRACE_S = 3.0


def _proc_group_alive(pgid: int) -> bool | None:
    """Scan /proc for a live (non-zombie) member of the group; ``None`` without /proc."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        # Fields after the command name (which may hold spaces and parentheses).
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            return True
    return False


def group_alive(pgid: int) -> bool:
    """True while any process of the group is alive.

    Zombies do not count: an init that never reaps (common in containers)
    would otherwise make a killed group look alive forever.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    alive = _proc_group_alive(pgid)
    return True if alive is None else alive


def end_groups(pgids: Iterable[int], grace: float = GRACE_S) -> list[int]:
    """SIGTERM each live group, then SIGKILL survivors after ``grace``; return the live ones."""
    live = [p for p in set(pgids) if p > 1 and group_alive(p)]
    for pgid in live:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(group_alive(p) for p in live):
        time.sleep(0.05)
    for pgid in live:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    return live


def main() -> None:
    """Read ``+pgid``/``-pgid`` lines from stdin; on EOF end what is registered."""
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGTSTP):
        signal.signal(sig, signal.SIG_IGN)
    groups: set[int] = set()
    for line in sys.stdin.buffer:
        text = line.strip().decode("ascii", "ignore")
        if len(text) > 1 and text[1:].isdigit():
            if text[0] == "+":
                groups.add(int(text[1:]))
            elif text[0] == "-":
                groups.discard(int(text[1:]))
    end_groups(groups)


class Reaper:
    """The engine's side of the reaper: start it, register groups, close it."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The reaper's pid (0 if not started)."""
        return self._proc.pid if self._proc else 0

    def start(self) -> None:
        """Start the watchdog in its own session, immune to the terminal's signals."""
        self._proc = subprocess.Popen(
            [sys.executable, "-S", "-c", _BOOTSTRAP, os.path.dirname(os.path.dirname(__file__))],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )

    @property
    def announce_fd(self) -> int:
        """The pipe an agent's child process writes ``+pgid`` to before its command runs
        (-1 when the watchdog is not running: a write would end the child with SIGPIPE)."""
        proc = self._proc
        if proc is None or proc.stdin is None or proc.poll() is not None:
            return -1
        return proc.stdin.fileno()

    def _send(self, line: str) -> None:
        if self._proc is None or self._proc.stdin is None:
            return
        try:
            self._proc.stdin.write(line.encode() + b"\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass

    def register(self, pgid: int) -> None:
        """Watch a new agent group."""
        self._send(f"+{pgid}")

    def unregister(self, pgid: int) -> None:
        """A group ended normally; forget it."""
        self._send(f"-{pgid}")

    def close(self) -> None:
        """Normal shutdown: groups still registered are ended by the reaper."""
        if self._proc is not None:
            if self._proc.stdin is not None:
                with contextlib.suppress(BrokenPipeError):
                    self._proc.stdin.close()
            try:
                self._proc.wait(timeout=GRACE_S + 2)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            self._proc = None


# Runs with -S (no site) for speed: import this module by path, not by package.
_BOOTSTRAP = (
    "import sys, importlib.util as u; "
    "s = u.spec_from_file_location('reaper', sys.argv[1] + '/core/reaper.py'); "
    "m = u.module_from_spec(s); s.loader.exec_module(m); m.main()"
)

if __name__ == "__main__":
    main()
