"""Pilot tests: the header's counts and the task glyphs say what they mean
(issue 12, item 7): skipped is not waiting, interrupted is not paused, and
``?`` explains every glyph."""

from __future__ import annotations

import pytest

from delegate_tui.core.events import TaskFinished, TaskSkipped
from delegate_tui.ui.screens.dialogs import TextScreen
from delegate_tui.ui.style import ICONS
from delegate_tui.ui.widgets.header import RunHeader
from tests.ui.conftest import StartApp
from tests.ui.fake_source import FakeSource


@pytest.mark.asyncio
async def test_skipped_tasks_are_not_counted_as_waiting(start_app: StartApp) -> None:
    source = FakeSource()
    source.start_run()  # six tasks, all pending
    source.emit(TaskSkipped(task="hotfix", reason="not needed"), 1.0)
    async with start_app(source, size=(200, 40)) as ui:
        header = str(ui.screen.query_one(RunHeader).render())
        assert "◌5" in header, header
        assert f"{ICONS['skipped']}1" in header


def test_interrupted_has_its_own_glyph_not_paused() -> None:
    assert ICONS["interrupted"] != "‖", "‖ means paused"
    assert len(set(ICONS.values())) == len(ICONS), "one glyph per status"


@pytest.mark.asyncio
async def test_an_interrupted_task_shows_its_glyph(start_app: StartApp) -> None:
    source = FakeSource()
    source.start_run()
    source.start_task("contract")
    source.emit(TaskFinished(task="contract", attempt=1, status="interrupted"), 2.0)
    async with start_app(source, size=(200, 40)) as ui:
        row = ui.screen.query_one("#graph").render_line(1).text
        assert "contract" in row and ICONS["interrupted"] in row and "‖" not in row


@pytest.mark.asyncio
@pytest.mark.parametrize("read_only", [False, True], ids=["live", "replay"])
async def test_help_explains_every_glyph(start_app: StartApp, read_only: bool) -> None:
    source = FakeSource()
    source.mid_run()
    async with start_app(source, size=(120, 40), read_only=read_only) as ui:
        await ui.press("question_mark")
        assert isinstance(ui.app.screen, TextScreen)
        body = str(ui.app.screen.body)
        for status, icon in ICONS.items():
            assert f"{icon} {status}" in body, status


def test_every_glyph_is_one_cell_wide() -> None:
    """A two-cell glyph (⌛) pushed its task's row one cell right of the others."""
    from rich.cells import cell_len

    assert {status: icon for status, icon in ICONS.items() if cell_len(icon) != 1} == {}
