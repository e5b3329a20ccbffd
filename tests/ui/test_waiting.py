"""Pilot tests: before an attached view has the run's first state, it says what it waits for.

The view is the real RunClient on a run folder with no socket yet; the run
service it waits for is a real process that takes its time (and, here, never
listens), as a service does while it imports and starts on a busy machine.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from delegate_tui.core.client import RunClient
from delegate_tui.ui.widgets.agent_grid import AgentGrid
from delegate_tui.ui.widgets.header import RunHeader
from tests.ui.conftest import Running, StartApp


def header(ui: Running) -> str:
    return ui.screen.query_one(RunHeader).render_line(0).text


def middle(ui: Running) -> str:
    return str(ui.screen.query_one("#panes-empty").render())


@pytest.mark.asyncio
async def test_a_view_says_the_run_is_starting_until_its_service_answers(
    start_app: StartApp, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    service = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        async with start_app(RunClient(run_dir, starting=service), size=(120, 32)) as ui:
            assert "starting the run…" in header(ui)
            assert "Starting the run…" in middle(ui)
            assert ui.screen.query_one(AgentGrid).has_class("empty")
            service.kill()  # it never listened: the view says so and waits no more
            service.wait()
            # The header changes as the connect gives up; the message comes with the
            # screen's next refresh, so wait for both (2 s at most).
            for _ in range(40):
                await ui.pilot.pause(0.05)
                told = any("the run service did not start" in t for t in ui.toasts())
                if "starting" not in header(ui) and told:
                    break
            assert "no run to show" in header(ui)
            assert any("the run service did not start" in toast for toast in ui.toasts())
    finally:
        service.kill()
        service.wait()


@pytest.mark.asyncio
async def test_attaching_says_it_connects(start_app: StartApp, tmp_path: Path) -> None:
    """A view attaching to a live run (no service started by it) waits for no process:
    with no service there it says so at once."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    client = RunClient(run_dir)
    assert client.waiting == "connecting to the run…"
    async with start_app(client, size=(80, 24)) as ui:
        await ui.settle()
        assert "no run to show" in header(ui)
        assert client.waiting == ""
