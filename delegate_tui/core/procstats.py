"""CPU and memory of an agent's whole process tree.

Owns the one place delegate-tui asks the operating system about running
agents (through psutil). Blocking: call it from a worker thread, never from
a widget. psutil is imported on the first sample (from that worker thread),
not while the screen is still to be drawn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psutil


@dataclass(frozen=True, slots=True)
class TreeStats:
    """Resource use of a process and its descendants."""

    cpu_percent: float
    rss_bytes: int
    processes: int


_PROCS: dict[int, psutil.Process] = {}


def sample(pid: int) -> TreeStats | None:
    """CPU (since the previous sample of each process) and RSS of ``pid``'s tree."""
    import psutil

    try:
        root = _PROCS.get(pid) or psutil.Process(pid)
        _PROCS[pid] = root
        members = [root, *root.children(recursive=True)]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        _PROCS.pop(pid, None)
        return None
    cpu, rss, alive = 0.0, 0, 0
    for proc in members:
        cached = _PROCS.setdefault(proc.pid, proc)
        try:
            cpu += cached.cpu_percent(None)
            rss += cached.memory_info().rss
            alive += 1
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            _PROCS.pop(proc.pid, None)
    return TreeStats(cpu, rss, alive)


def forget(pid: int) -> None:
    """Drop a finished process from the cache."""
    _PROCS.pop(pid, None)
