"""Watching task worktrees: file events as hints, git as the truth.

Owns following each active worktree's files. ``watchfiles`` reports bursts of
file events (debounced to a fraction of a second); each burst only marks the
worktree dirty, and one git query per worktree per burst (a snapshot through
a temporary index, then a diff from the task's start commit) says what the
task has changed. A timer reconciles every worktree as well, since event
queues can overflow silently. When the OS refuses a watch (inotify's
``max_user_watches``), that worktree is polled instead, with one warning.
Nothing here decides what a collision is: that is :mod:`conflicts`; the
conflict monitor wires the two together.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path

#: How long a burst may keep growing before it is reported, and how long the
#: watcher waits for more events; both in milliseconds. Well under the 300 ms
#: the sidebar has to show a change in.
DEBOUNCE_MS = 120
STEP_MS = 20
#: Every worktree is re-read this often even without events.
RECONCILE_S = 2.0

#: How often a worktree the OS would not watch is polled, in milliseconds.
POLL_MS = 300

Refresh = Callable[[str], Awaitable[None]]


class WorktreeWatcher:
    """Watches several worktrees; calls ``refresh(key)`` at most once per burst each."""

    def __init__(self, refresh: Refresh, warn: Callable[[str], None] | None = None) -> None:
        self._refresh = refresh
        self._warn = warn
        self._watches: dict[str, tuple[asyncio.Event, asyncio.Task[None]]] = {}
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
        stop = asyncio.Event()
        task = asyncio.get_running_loop().create_task(self._follow(key, path, stop, ignore_dirs))
        self._watches[key] = (stop, task)
        self.poke(key)

    def unwatch(self, key: str) -> None:
        """Stop following a key."""
        entry = self._watches.pop(key, None)
        if entry is not None:
            entry[0].set()
            entry[1].cancel()
        self._dirty.discard(key)

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
                    with contextlib.suppress(Exception):  # a vanished worktree is not fatal
                        await self._refresh(key)

    async def _reconcile(self) -> None:
        while True:
            await asyncio.sleep(RECONCILE_S)
            for key in list(self._watches):
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
