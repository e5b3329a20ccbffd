"""Watching task worktrees: file events as hints, git as the truth.

Owns following each active worktree's files. ``watchfiles`` reports bursts of
file events (debounced to a fraction of a second); each burst only marks the
worktree dirty, and one git query per worktree per burst (a snapshot through
a temporary index, then a diff from the task's start commit) says what the
task has changed. Event queues can overflow silently, and what an agent writes
before its watch is in place has no event at all, so a worktree is also read
:data:`FIRST_LOOK_S` after its watch starts, and whenever it was not read for
:data:`RECONCILE_S`, events or not.

The guarantee: a change made before the watch was in place is seen within
``FIRST_LOOK_S + TICK_S`` of the watch's start (when the watch took longer
than that to set up, as one whose events are lost); a change whose file
events are all lost, within ``RECONCILE_S + TICK_S`` of being made; every
change at the agent's end, when the conflict monitor takes its last look. A
worktree with events is read once per burst and not again by the timer
meanwhile; a quiet one costs one git query every ``RECONCILE_S``. The file
watch itself starts at the first look (the timer's task comes first, so it is
in place before that read): an agent that ends within ``FIRST_LOOK_S`` costs
no watch and no read before its last look. (At 16 worktrees of 5,000 files,
reading them all every 2 s was most of a busy run's git time, and setting up
a recursive watch takes 25-80 ms of the loop, the GIL held.) When the OS
refuses a watch (inotify's ``max_user_watches``), that worktree is polled
instead, with one warning.
Nothing here decides what a collision is: that is :mod:`conflicts`; the
conflict monitor wires the two together.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

#: How long a burst may keep growing before it is reported, and how long the
#: watcher waits for more events; both in milliseconds. Well under the 300 ms
#: the sidebar has to show a change in.
DEBOUNCE_MS = 120
STEP_MS = 20
#: A worktree not read for this long is read again, events or not (lost events).
RECONCILE_S = 20.0
#: A new watch's worktree is first read this long after the watch starts.
FIRST_LOOK_S = 0.5
#: How often the timer looks for worktrees due a read.
TICK_S = 0.25

#: How often a worktree the OS would not watch is polled, in milliseconds.
POLL_MS = 300

Refresh = Callable[[str], Awaitable[object]]


@dataclass(eq=False)
class _Watch:
    """One key's worktree; its file watch (``task``) starts at the first look."""

    path: Path
    ignore_dirs: tuple[str, ...]
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class WorktreeWatcher:
    """Watches several worktrees; calls ``refresh(key)`` at most once per burst each."""

    def __init__(
        self,
        refresh: Refresh,
        warn: Callable[[str], None] | None = None,
        *,
        reconcile_s: float = RECONCILE_S,
        first_look_s: float = FIRST_LOOK_S,
        tick_s: float = TICK_S,
    ) -> None:
        self._refresh = refresh
        self._warn = warn
        self._reconcile_s = reconcile_s
        self._first_look_s = first_look_s
        self._tick_s = tick_s
        self._watches: dict[str, _Watch] = {}
        self._read_at: dict[str, float] = {}  # key -> loop time of its last read (or watch)
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._timer: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin processing (call from the engine's loop)."""
        loop = asyncio.get_running_loop()
        self._worker = loop.create_task(self._work())
        self._timer = loop.create_task(self._reconcile())

    def watch(self, key: str, path: Path, ignore_dirs: tuple[str, ...] = ()) -> None:
        """Follow ``path`` under ``key`` (a task id); replaces an earlier watch of the key."""
        self.unwatch(key)
        self._watches[key] = _Watch(path, ignore_dirs)
        # Its worktree starts as the task's start commit: nothing to read now. The
        # first look, FIRST_LOOK_S from now, starts the file watch and reads what was
        # written until then.
        now = asyncio.get_running_loop().time()
        self._read_at[key] = now - self._reconcile_s + self._first_look_s

    def unwatch(self, key: str) -> None:
        """Stop following a key."""
        entry = self._watches.pop(key, None)
        if entry is not None:
            entry.stop.set()
            if entry.task is not None:
                entry.task.cancel()
        self._dirty.discard(key)
        self._read_at.pop(key, None)

    def poke(self, key: str) -> None:
        """Ask for a refresh of ``key`` soon (coalesced with any pending one)."""
        self._dirty.add(key)
        self._wake.set()

    async def flush(self, key: str) -> None:
        """Refresh ``key`` now (e.g. when its agent exits) and wait for it."""
        self._dirty.discard(key)
        await self._refresh(key)

    async def _follow(
        self, key: str, path: Path, stop: asyncio.Event, ignore_dirs: tuple[str, ...]
    ) -> None:
        from watchfiles import DefaultFilter, awatch  # with the first worktree, not at start-up

        watch_filter = DefaultFilter(ignore_dirs=(*DefaultFilter.ignore_dirs, *ignore_dirs))
        polling = False
        with contextlib.suppress(asyncio.CancelledError, FileNotFoundError):
            while not stop.is_set():
                try:
                    async for _changes in awatch(
                        path,
                        watch_filter=watch_filter,
                        debounce=DEBOUNCE_MS,
                        step=STEP_MS,
                        stop_event=stop,
                        recursive=True,
                        force_polling=polling,
                        poll_delay_ms=POLL_MS,
                    ):
                        self.poke(key)
                    return
                except (RuntimeError, OSError) as exc:
                    if polling or not path.exists():
                        return  # the reconcile timer still reads it every few seconds
                    polling = True
                    if self._warn is not None:
                        self._warn(
                            f"cannot watch {path} for file events ({exc}); polling it "
                            "instead: its changes show up a little later"
                        )

    async def _work(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._dirty:
                key = self._dirty.pop()
                if key in self._watches:
                    self._read_at[key] = asyncio.get_running_loop().time()
                    with contextlib.suppress(Exception):  # a vanished worktree is not fatal
                        await self._refresh(key)

    async def _reconcile(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._tick_s)
            due = loop.time() - self._reconcile_s
            for key, read in list(self._read_at.items()):
                entry = self._watches.get(key)
                if read <= due and entry is not None:
                    if entry.task is None:  # the first look: the file watch starts now
                        follow = self._follow(key, entry.path, entry.stop, entry.ignore_dirs)
                        entry.task = loop.create_task(follow)
                    self.poke(key)

    async def close(self) -> None:
        """Stop everything."""
        for key in list(self._watches):
            self.unwatch(key)
        for task in (self._worker, self._timer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
