"""Pilot fixtures: the app over a source, started at a size, settled, and read back.

``start_app`` replaces the arrange block every UI test wrote out (config in a
temporary folder, no bell, a fixed clock, ``run_test``, wait for the run
screen): a test builds its scene on a fake source and drives the app
through the :class:`Running` it gets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from textual.pilot import Pilot

from delegate_tui.ui.app import DelegateApp
from delegate_tui.ui.config import UserConfig
from delegate_tui.ui.context import EventSource
from delegate_tui.ui.screens.run import RunScreen
from delegate_tui.ui.widgets.task_graph import TaskGraph
from tests.ui.fake_source import T0


@dataclass
class Running:
    """A started app, the pilot that drives it, and the source it shows."""

    app: DelegateApp
    pilot: Pilot[int]

    @property
    def screen(self) -> RunScreen:
        """The run (or replay) screen, under any dialog open over it."""
        (screen,) = [s for s in self.app.screen_stack if isinstance(s, RunScreen)]
        return screen

    async def settle(self) -> None:
        """Let the run screen finish mounting and the refresh draw every event emitted so
        far (the state is redrawn at most 10 times a second, later on a loaded machine:
        waiting a fixed time lost the race in CI), then one more frame."""
        app = self.app
        for _ in range(100):
            await self.pilot.pause(0.05)
            screens = [s for s in app.screen_stack if isinstance(s, RunScreen)]
            drawn = not (app._new_events or app._state_dirty or app._dirty)
            if screens and screens[0].ready and drawn:
                break
        await self.pilot.pause(0.1)

    async def press(self, *keys: str) -> None:
        """Press keys, then let the screen catch up."""
        await self.pilot.press(*keys)
        await self.settle()

    async def select(self, task: str) -> None:
        """Move the task graph's cursor to ``task``."""
        self.screen.query_one(TaskGraph).select(task)
        await self.settle()

    def toasts(self) -> list[str]:
        """The notifications on screen now, as text."""
        return [str(toast.render()) for toast in self.app.screen.query("Toast")]


StartApp = Callable[..., AbstractAsyncContextManager[Running]]


@pytest.fixture
def start_app(tmp_path: Path) -> StartApp:
    """Start the app over a source: ``async with start_app(source, size=(w, h)) as ui``."""

    @asynccontextmanager
    async def start(
        source: EventSource,
        *,
        size: tuple[int, int] = (120, 32),
        read_only: bool = False,
        theme: str | None = None,
        config: UserConfig | None = None,
    ) -> AsyncIterator[Running]:
        app = DelegateApp(
            source,
            theme=theme,
            config=config or UserConfig(path=tmp_path / "config.yaml"),
            read_only=read_only,
            bell=False,
            clock=lambda: T0 + 10,
        )
        async with app.run_test(size=size, notifications=True) as pilot:  # toasts on screen
            running = Running(app, pilot)
            await running.settle()
            yield running

    return start
