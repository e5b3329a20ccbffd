"""The watcher's promise about lost file events, and what a quiet worktree costs.

Real inotify (watchfiles), real folders. A lost event is made by watching one folder
while the refresh reads another: the change there has no event at all, as when the
kernel's queue overflowed. Issue 15: every worktree was re-read every 2 s, events or
not (16 snapshots of 5,000 files every 2 s while agents ran).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from delegate_tui.core import watcher
from delegate_tui.core.watcher import WorktreeWatcher

pytestmark = pytest.mark.e2e


def test_a_change_whose_events_are_lost_is_seen_within_the_stated_bound(tmp_path: Path) -> None:
    watched, truth = tmp_path / "watched", tmp_path / "truth"
    watched.mkdir()
    truth.mkdir()
    reconcile_s, tick_s = 1.0, 0.1
    seen: list[tuple[float, tuple[str, ...]]] = []

    async def refresh(key: str) -> None:
        seen.append(
            (asyncio.get_running_loop().time(), tuple(sorted(p.name for p in truth.iterdir())))
        )

    async def main() -> float:
        w = WorktreeWatcher(refresh, reconcile_s=reconcile_s, first_look_s=0.2, tick_s=tick_s)
        w.start()
        w.watch("task", watched)
        await asyncio.sleep(0.5)  # past the first look
        (truth / "lost.txt").write_text("no event reaches the watcher\n")
        made = asyncio.get_running_loop().time()
        for _ in range(40):
            if any("lost.txt" in files for _, files in seen):
                break
            await asyncio.sleep(0.05)
        await w.close()
        found = next(t for t, files in seen if "lost.txt" in files)
        return found - made

    delay = asyncio.run(main())
    assert delay <= reconcile_s + tick_s + 0.3, delay  # slack for a loaded machine


def test_a_quiet_worktree_is_not_read_again_before_the_reconcile_interval(tmp_path: Path) -> None:
    quiet, busy = tmp_path / "quiet", tmp_path / "busy"
    quiet.mkdir()
    busy.mkdir()
    reads: dict[str, int] = {"quiet": 0, "busy": 0}

    async def refresh(key: str) -> None:
        reads[key] += 1

    async def main() -> None:
        w = WorktreeWatcher(refresh)  # the defaults: RECONCILE_S, TICK_S
        w.start()
        w.watch("quiet", quiet)
        w.watch("busy", busy)
        await asyncio.sleep(1.5)  # the first looks are done, the watches in place
        (busy / "a.txt").write_text("an event\n")
        await asyncio.sleep(2.0)
        await w.close()

    asyncio.run(main())
    assert watcher.RECONCILE_S > 3.5 + watcher.TICK_S
    assert reads["quiet"] == 1  # its first look only: nothing happened there since
    assert reads["busy"] >= 2  # its first look, and its event


def test_what_an_agent_wrote_before_its_watch_is_read_soon_after_the_watch(
    tmp_path: Path,
) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "early.txt").write_text("written before the watch\n")
    reads: list[float] = []

    async def refresh(key: str) -> None:
        reads.append(asyncio.get_running_loop().time())

    async def main() -> float:
        w = WorktreeWatcher(refresh)
        w.start()
        started = asyncio.get_running_loop().time()
        w.watch("task", tree)
        await asyncio.sleep(watcher.FIRST_LOOK_S + watcher.TICK_S + 0.5)
        await w.close()
        return started

    started = asyncio.run(main())
    assert reads and reads[0] - started <= watcher.FIRST_LOOK_S + watcher.TICK_S + 0.3


def test_a_worktree_unwatched_before_its_first_look_costs_no_read(tmp_path: Path) -> None:
    """A task that ends within FIRST_LOOK_S (its agent took a moment): no git query and
    no file watch before the conflict monitor's last look, which is the caller's."""
    tree = tmp_path / "tree"
    tree.mkdir()
    reads: list[str] = []

    async def refresh(key: str) -> None:
        reads.append(key)

    async def main() -> bool:
        w = WorktreeWatcher(refresh)
        w.start()
        w.watch("short", tree)
        (tree / "out.txt").write_text("done\n")
        await asyncio.sleep(watcher.FIRST_LOOK_S / 4)
        followed = w._watches["short"].task is not None
        w.unwatch("short")
        await asyncio.sleep(watcher.FIRST_LOOK_S + 2 * watcher.TICK_S)
        await w.close()
        return followed

    assert asyncio.run(main()) is False  # no recursive watch was set up
    assert reads == []
