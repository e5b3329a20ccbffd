"""A task on a Ray node: its pane title and its details say which node, not a local pid."""

from __future__ import annotations

import pytest

from delegate_tui.core.events import TaskPreparing, TaskStarted
from delegate_tui.ui.screens.dialogs import TextScreen
from delegate_tui.ui.widgets.agent_pane import AgentPane
from tests.ui.conftest import StartApp
from tests.ui.fake_source import FakeSource

NODE = "10.0.0.7/3f2a9c"


@pytest.mark.asyncio
async def test_a_remote_tasks_pane_and_details_name_its_node(start_app: StartApp) -> None:
    source = FakeSource()
    source.start_run()
    source.emit(
        TaskPreparing(task="contract", attempt=1, workdir="/repo/w/contract-1", branch="b"), 1.0
    )
    source.emit(
        TaskStarted(
            task="contract",
            attempt=1,
            agent="claude",
            argv=("claude",),
            cwd="/repo/w/contract-1",
            pid=31337,
            pgid=31337,
            prompt="p",
            node=NODE,
        ),
        1.0,
    )
    async with start_app(source, size=(160, 40)) as ui:
        await ui.select("contract")
        pane = ui.app.screen.query_one("#pane-contract", AgentPane)
        title = str(pane.border_title)
        assert f"on {NODE}" in title
        assert "pid 31337" not in title, "that pid is the node's, not this machine's"
        await ui.press("enter")
        assert isinstance(ui.app.screen, TextScreen)
        body = str(ui.app.screen.body)
        assert f"node  {NODE}" in body or f"node {NODE}" in " ".join(body.split())
        assert f"31337 (group 31337, pty, on {NODE})" in body
