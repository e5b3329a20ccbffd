"""Pilot tests: after ``resume``, the tasks the crash interrupted wait for the
operator, and the header's ⚑ says so (issue 12, item 5)."""

from __future__ import annotations

import pytest

from delegate_tui.core.events import RunResumed, TaskFinished, TaskSkipped
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
    source.propose(1, ("contract",))
    async with start_app(source, size=(80, 24)) as ui:
        # Nothing runs, but work is pending: ending it for good asks first (item 8),
        # and Cancel is the default (enter keeps the run).
        await ui.press("e")
        dialog = ui.app.screen
        assert isinstance(dialog, ConfirmDialog), ui.toasts()
        assert "Batch 1 waits for approval" in dialog.question
        assert "6 task(s) not done (contract, schema, service, login-ui, …)" in dialog.question
        assert dialog.focused is not None and dialog.focused.id == "no"
        await ui.press("enter")
        assert source.commands == [], "cancelled by default: the run goes on"
        await ui.press("e")
        await ui.press("y")
        assert source.last() == ("end",)


@pytest.mark.asyncio
async def test_e_with_nothing_left_to_do_ends_the_run_without_asking(
    start_app: StartApp,
) -> None:
    source = FakeSource()
    source.start_run()
    for n, task in enumerate(source.plan.tasks):
        source.start_task(task.id, at=1.0 + n)
        if task.id == "hotfix":
            source.fail_task(task.id, at=1.5 + n)
            source.emit(TaskSkipped(task=task.id, reason="skipped by the operator"), 1.6 + n)
        else:
            source.succeed_task(task.id, at=1.5 + n)
    async with start_app(source, size=(80, 24)) as ui:
        await ui.press("e")
        assert source.last() == ("end",)
