"""Pilot tests: a stale input on screen (the pane title, ``d`` showing the merged change)
and the end screen's account of how each task ended (issues 19 and 21)."""

from __future__ import annotations

from pathlib import Path

import pytest

from delegate_tui.core.events import (
    ConflictDetected,
    CriteriaChecked,
    CriterionResult,
    Metrics,
    RunFinished,
    TaskExited,
    TaskFinished,
    TaskMerged,
)
from delegate_tui.ui.widgets.agent_pane import AgentPane
from tests.conftest import git
from tests.ui.conftest import StartApp
from tests.ui.fake_source import FakeSource
from tests.ui.test_screens import dialog, plain

STALE = ConflictDetected(
    key="stale-input:service,schema:db/users.sql",
    kind="stale-input",
    severity="warning",
    tasks=("service", "schema"),
    paths=("db/users.sql",),
    detail="schema merged a change to what service read, after it started",
)


def pane_title(ui: object, task: str) -> str:
    panes = [p for p in ui.app.screen.query(AgentPane) if p.task_id == task]  # type: ignore[attr-defined]
    assert panes, f"no pane for {task}"
    return str(panes[0].border_title)


@pytest.mark.asyncio
async def test_a_stale_input_marks_the_pane_and_d_shows_the_merged_change(
    start_app: StartApp, repo: Path
) -> None:
    base = git(repo, "rev-parse", "HEAD").strip()
    (repo / "db").mkdir()
    (repo / "db" / "users.sql").write_text("CREATE TABLE users (id int, email text);\n")
    (repo / "db" / "other.sql").write_text("-- not read by anyone\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "merge schema")
    merged = git(repo, "rev-parse", "HEAD").strip()
    source = FakeSource()
    source.start_run(repo=str(repo), base_commit=base)
    source.start_task("schema", base_commit=base, pid=3001)
    source.start_task("service", base_commit=base, pid=3002)
    source.commit_task("schema", merged)
    source.emit(TaskMerged(task="schema", attempt=1, commit=merged), 4.6)
    source.emit(TaskFinished(task="schema", attempt=1, status="succeeded"), 4.6)
    async with start_app(source, size=(160, 40)) as ui:
        await ui.select("service")
        assert "stale input" not in pane_title(ui, "service")
        source.emit(STALE, 4.7)
        await ui.settle()
        assert "⚠ stale input" in pane_title(ui, "service")
        await ui.press("enter")
        details = await dialog(ui)
        assert details is not None
        assert "schema merged a change to db/users.sql after it read it" in plain(details.body)
        await ui.press("escape")
        await ui.press("right_square_bracket")
        assert ui.screen.finding == STALE.key
        await ui.press("d")
        shown = await dialog(ui)
        assert shown is not None and shown.title_text == "Diff: schema merged this under service"
        body = plain(shown.body)
        # What the merge changed on the integration branch, limited to what service read.
        assert "+CREATE TABLE users (id int, email text);" in body
        assert "other.sql" not in body
        await ui.press("escape")
        # The finding resolved: the mark goes.
        from delegate_tui.core.events import ConflictResolved

        source.emit(ConflictResolved(key=STALE.key, reason="no longer holds"), 5.0)
        await ui.settle()
        assert "stale input" not in pane_title(ui, "service")


@pytest.mark.asyncio
@pytest.mark.parametrize("size", [(80, 24), (200, 60)])
async def test_the_end_screen_says_how_each_task_ended(
    start_app: StartApp, size: tuple[int, int]
) -> None:
    source = FakeSource()
    source.start_run()
    source.start_task("contract", at=0.5)
    source.emit(TaskExited(task="contract", attempt=1, exit_code=0), 1.0)
    source.emit(TaskMerged(task="contract", attempt=1, commit="c1"), 1.0)
    source.emit(TaskFinished(task="contract", attempt=1, status="succeeded"), 1.0)
    source.start_task("schema", at=1.5)
    source.emit(TaskExited(task="schema", attempt=1, exit_code=0), 2.0)
    source.emit(
        CriteriaChecked(
            task="schema",
            attempt=1,
            passed=False,
            results=(CriterionResult(text="t", command="pytest -q", passed=False, exit_code=1),),
        ),
        2.0,
    )
    source.emit(
        TaskFinished(task="schema", attempt=1, status="failed", reason="criteria failed"), 2.0
    )
    async with start_app(source, size=size) as ui:
        source.emit(RunFinished(status="failed", metrics=Metrics()), 3.0)
        await ui.settle()
        await ui.select("service")  # not run: no output, so no pane
        empty = str(ui.screen.query_one("#panes-empty").render())
        assert "contract: completed and merged" in empty
        assert "schema: criteria failed: pytest -q (exit 1)" in empty
        assert "service: not run" in empty
        await ui.select("schema")
        await ui.press("enter")  # its details say it too
        shown = await dialog(ui)
        assert shown is not None
        assert "ended       criteria failed: pytest -q (exit 1)" in plain(shown.body)
        await ui.press("escape")
        # With a task's pane on screen, H still shows the whole report.
        await ui.select("contract")
        assert ui.screen.query_one("#panes-empty").display is False
        await ui.press("H")
        report = await dialog(ui)
        assert report is not None
        body = plain(report.body)
        assert body.startswith("The run failed: ")
        for line in (
            "✔ contract: completed and merged",
            "✘ schema: criteria failed: pytest -q (exit 1)",
            "· service: not run",
        ):
            assert line in body, body


@pytest.mark.asyncio
async def test_r_on_a_running_task_whose_input_went_stale_restarts_it(
    start_app: StartApp,
) -> None:
    """The sidebar offers r on a stale running reader, and r asks for that restart (the
    engine's part, on the new tip, is in tests/e2e/test_conflicts_live.py)."""
    from delegate_tui.ui.screens.dialogs import RetryDialog

    source = FakeSource()
    source.start_run()
    source.start_task("schema", pid=3001)
    source.start_task("service", pid=3002)
    source.emit(TaskMerged(task="schema", attempt=1, commit="c1"), 4.6)
    source.emit(TaskFinished(task="schema", attempt=1, status="succeeded"), 4.6)
    async with start_app(source, size=(200, 40)) as ui:
        await ui.select("service")
        assert ui.screen.refusal_of("retry") == "service cannot be retried (running)"
        source.emit(STALE, 4.7)
        await ui.settle()
        sidebar = str(ui.screen.query_one("#conflicts").render())
        assert "r: restart on the new tip" in sidebar
        assert ui.screen.refusal_of("retry") is None
        await ui.press("r")
        dialog = ui.app.screen
        assert isinstance(dialog, RetryDialog)
        assert dialog.summary == "its input went stale: restart it on the new integration tip"
        assert not dialog.can_keep, "a restart starts on the new tip, not on the old work"
        await ui.press("ctrl+s")
        assert source.commands == [("retry", "service", "", False, False)]
