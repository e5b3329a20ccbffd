"""Pilot tests: after ``resume``, the tasks the crash interrupted wait for the
operator, and the header's ⚑ says so (issue 12, item 5)."""

from __future__ import annotations

import pytest

from delegate_tui.core.events import RunResumed, TaskFinished
from delegate_tui.ui.widgets.header import RunHeader
from tests.ui.conftest import Running, StartApp
from tests.ui.fake_source import FakeSource


def header(ui: Running) -> str:
    return str(ui.screen.query_one(RunHeader).render())


def resumed_after_a_crash() -> FakeSource:
    """contract done; schema was running when the host died; a new host resumed."""
    source = FakeSource()
    source.start_run()
    source.start_task("contract", at=0.5, pid=1001)
    source.succeed_task("contract", at=1.0)
    source.start_task("schema", at=1.5, pid=1002)
    source.emit(RunResumed(host_pid=4321, auto_approve=False), 30.0)
    source.emit(
        TaskFinished(
            task="schema",
            attempt=1,
            status="interrupted",
            reason="delegate-tui stopped while it ran",
        ),
        30.0,
    )
    return source


@pytest.mark.asyncio
async def test_interrupted_tasks_raise_the_flag_until_retried(start_app: StartApp) -> None:
    source = resumed_after_a_crash()
    async with start_app(source, size=(120, 32)) as ui:
        assert "⚑ interrupted: schema" in header(ui), header(ui)
        await ui.select("schema")
        await ui.press("r")
        await ui.press("ctrl+s")
        assert source.last()[:2] == ("retry", "schema")
        source.start_task("schema", at=31.0, pid=1003)  # the engine's answer
        await ui.settle()
        assert "interrupted" not in header(ui)


@pytest.mark.asyncio
async def test_the_flag_fits_80_columns(start_app: StartApp) -> None:
    async with start_app(resumed_after_a_crash(), size=(80, 24)) as ui:
        shown = ui.screen.query_one(RunHeader).render_line(0).text  # as drawn, cut to 80
        assert "⚑ interrupted: schema" in shown, shown


@pytest.mark.asyncio
async def test_e_while_agents_run_offers_to_end_them(start_app: StartApp) -> None:
    """Issue 12, item 9: `e` refused while agents ran ("kill them or wait")."""
    from delegate_tui.ui.screens.dialogs import ConfirmDialog

    source = FakeSource()
    source.start_run()
    source.start_task("contract", pid=1001)
    source.start_task("schema", pid=1002)
    async with start_app(source, size=(80, 24)) as ui:
        await ui.press("e")
        dialog = ui.app.screen
        assert isinstance(dialog, ConfirmDialog), ui.toasts()
        assert "2 agent(s) still running (contract, schema)" in dialog.question
        assert "resume" in dialog.question
        await ui.press("n")
        assert source.commands == [], "cancelled: nothing ended"
        await ui.press("e")
        await ui.press("y")
        assert source.last() == ("stop", "ended by the operator")
    source = FakeSource()
    source.start_run()
    async with start_app(source, size=(80, 24)) as ui:
        await ui.press("e")  # nothing runs: the run ends as before, no question
        assert source.last() == ("end",)
