"""Pilot tests: unticking a task of the waiting batch shows at once everywhere
the batch is named (issue 12, item 17): its mark in the task list, the batch
bar, and the centre's message while no agent runs."""

from __future__ import annotations

import pytest

from delegate_tui.ui.widgets.task_graph import TaskGraph
from tests.ui.conftest import Running, StartApp
from tests.ui.fake_source import FakeSource


def row(ui: Running, task: str) -> str:
    graph = ui.screen.query_one(TaskGraph)
    index = next(i for i, r in enumerate(graph.rows) if r.key == task)
    return graph.render_line(index - int(graph.scroll_y)).text


def centre(ui: Running) -> str:
    return str(ui.screen.query_one("#panes-empty").render())


@pytest.mark.asyncio
async def test_unticking_a_task_updates_its_mark_and_the_centre_text(start_app: StartApp) -> None:
    source = FakeSource()
    source.start_run()
    source.start_task("contract", at=0.5)
    source.succeed_task("contract", at=1.0)
    source.start_task("schema", at=1.5)
    source.succeed_task("schema", at=2.0)
    source.propose(2, ("service", "login-ui"), at=3.0)
    async with start_app(source, size=(120, 32)) as ui:
        await ui.select("hotfix")  # not in the batch: service and login-ui rows unmarked by ↑↓
        assert row(ui, "service").startswith("●") and row(ui, "login-ui").startswith("●")
        assert "waits for you: service, login-ui" in centre(ui)
        await ui.select("login-ui")
        await ui.press("space")
        await ui.select("hotfix")
        assert row(ui, "login-ui").startswith("○"), row(ui, "login-ui")
        assert row(ui, "service").startswith("●")
        assert "waits for you: service (login-ui left out)" in centre(ui)
        await ui.select("login-ui")
        await ui.press("space")  # ticked again
        await ui.select("hotfix")
        assert row(ui, "login-ui").startswith("●")
        assert "waits for you: service, login-ui" in centre(ui)
        await ui.press("a")
        assert source.last() == ("approve", ["service", "login-ui"])
