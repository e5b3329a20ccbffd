"""Whole-screen snapshots of the run screen, in two themes and two sizes.

The scene is fixed (fake source, fixed clock), so any change to a snapshot
is a change to what the operator sees: review the SVG diff before updating
with ``pytest --snapshot-update``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from delegate_tui.ui.app import DelegateApp
from delegate_tui.ui.config import UserConfig
from delegate_tui.ui.screens.run import RunScreen
from delegate_tui.ui.widgets.task_graph import TaskGraph
from tests.ui.fake_source import T0, FakeSource


def scene_app(theme: str, tmp_path: Path) -> DelegateApp:
    source = FakeSource()
    source.mid_run()
    return DelegateApp(
        source,
        theme=theme,
        config=UserConfig(path=tmp_path / "c.yaml"),
        bell=False,
        clock=lambda: T0 + 10,
    )


def ready_with(task: str) -> Any:
    """A run_before hook: wait for the run screen, select ``task``, clear toasts."""

    async def ready(pilot: Any) -> None:
        for _ in range(60):
            await pilot.pause(0.05)
            screens = [s for s in pilot.app.screen_stack if isinstance(s, RunScreen)]
            if screens and screens[0].ready:
                break
        screens[0].query_one(TaskGraph).select(task)
        await pilot.pause(0.2)
        pilot.app.clear_notifications()
        await pilot.pause(0.1)

    return ready


@pytest.mark.parametrize("theme", ["delegate-dark", "delegate-light"])
@pytest.mark.parametrize("size", [(80, 24), (200, 60)], ids=["80x24", "200x60"])
def test_run_screen(snap_compare: Any, tmp_path: Path, theme: str, size: tuple[int, int]) -> None:
    assert snap_compare(
        scene_app(theme, tmp_path), terminal_size=size, run_before=ready_with("schema")
    )


def test_collision_scene(snap_compare: Any, tmp_path: Path) -> None:
    """Live collisions in the sidebar, grouped by file, while both tasks run."""
    source = FakeSource()
    source.collision()
    app = DelegateApp(
        source, config=UserConfig(path=tmp_path / "c.yaml"), bell=False, clock=lambda: T0 + 10
    )

    assert snap_compare(app, terminal_size=(160, 40), run_before=ready_with("hotfix"))
