"""Pilot tests: what needs the operator leaves the screen once it no longer does.

Every item is derived from the state (tasks' statuses, findings, notices),
never from a toast or a line remembered from an earlier event (issue 12, item 6).
"""

from __future__ import annotations

import pytest

from delegate_tui.core.events import (
    BatchApproved,
    KillRequested,
    MergeConflict,
    Notice,
    RetryScheduled,
    TaskBlocked,
    TaskFinished,
    TaskMerged,
)
from delegate_tui.core.scheduler import WAITING_MESSAGE
from tests.ui.conftest import Running, StartApp
from tests.ui.fake_source import FakeSource


def sidebar(ui: Running) -> str:
    return str(ui.screen.query_one("#conflicts").render())


def retry(source: FakeSource, task: str, at: float) -> None:
    source.emit(RetryScheduled(task=task, attempt=2, prompt="p", context="again"), at)


def a_failed_merge() -> FakeSource:
    """contract's first attempt ended in a merge conflict on docs/api/a.md."""
    source = FakeSource()
    source.start_run()
    source.start_task("contract")
    source.commit_task("contract", "c1")
    source.emit(MergeConflict(task="contract", attempt=1, paths=("docs/api/a.md",)), 5.0)
    source.emit(TaskFinished(task="contract", attempt=1, status="merge-conflict"), 5.0)
    return source


@pytest.mark.asyncio
async def test_a_failed_merge_retried_and_merged_leaves_the_sidebar(start_app: StartApp) -> None:
    source = a_failed_merge()
    async with start_app(source, size=(200, 40)) as ui:
        assert "Merges that failed" in sidebar(ui) and "contract #1" in sidebar(ui)
        retry(source, "contract", 6.0)
        source.emit(TaskMerged(task="contract", attempt=2, commit="c2"), 7.0)
        source.emit(TaskFinished(task="contract", attempt=2, status="succeeded"), 7.0)
        await ui.settle()
        assert "Merges that failed" not in sidebar(ui)
        assert "contract #1" not in sidebar(ui)


@pytest.mark.asyncio
async def test_the_failed_merges_hint_wraps_under_itself(start_app: StartApp) -> None:
    async with start_app(a_failed_merge(), size=(120, 40)) as ui:
        section = sidebar(ui).split("Merges that failed\n", 1)[1].split("\n\n", 1)[0]
        hint = section.splitlines()[2:]  # under the task and its path
        assert len(hint) > 1, "the sidebar is 38 columns: the hint takes two lines"
        assert all(line.startswith("  ") for line in hint), hint
        assert (
            " ".join(line.strip() for line in hint) == "r: retry on top of the integration branch"
        )


@pytest.mark.asyncio
@pytest.mark.parametrize("read_only", [False, True], ids=["live", "replay"])
async def test_the_run_waits_for_you_only_while_it_does(
    start_app: StartApp, read_only: bool
) -> None:
    source = FakeSource()
    source.start_run()
    source.start_task("contract")
    source.fail_task("contract")
    source.emit(Notice(level="warning", message=WAITING_MESSAGE), 5.5)
    async with start_app(source, size=(200, 40), read_only=read_only) as ui:
        assert "waiting for you" in sidebar(ui)
        retry(source, "contract", 6.0)
        await ui.settle()
        assert "waiting for you" not in sidebar(ui)


@pytest.mark.asyncio
async def test_held_back_by_a_killed_dependency_leaves_when_it_runs_again(
    start_app: StartApp,
) -> None:
    source = FakeSource()
    source.start_run()
    source.start_task("contract")
    source.emit(KillRequested(task="contract", attempt=1), 2.0)
    source.emit(TaskFinished(task="contract", attempt=1, status="killed"), 2.5)
    source.emit(TaskBlocked(task="schema", by="contract", reason="dependency contract killed"), 3)
    async with start_app(source, size=(200, 40)) as ui:
        assert "schema\n    dependency contract killed" in sidebar(ui)
        retry(source, "contract", 6.0)
        await ui.settle()
        assert "dependency contract killed" not in sidebar(ui)


@pytest.mark.asyncio
async def test_a_batch_toast_goes_when_the_batch_is_approved(start_app: StartApp) -> None:
    source = FakeSource()
    source.start_run()
    async with start_app(source, size=(200, 40)) as ui:
        source.propose(1, ("contract",))
        await ui.settle()
        assert any("batch 1 waits" in toast for toast in ui.toasts())
        source.emit(BatchApproved(batch=1, tasks=("contract",)), 7.0)
        await ui.settle()
        assert not any("batch 1 waits" in toast for toast in ui.toasts())


@pytest.mark.asyncio
async def test_the_conflicts_count_counts_conflicts_only(start_app: StartApp) -> None:
    """Held tasks and declared scopes are listed, but they are not conflicts."""
    source = FakeSource()
    source.mid_run()  # a batch waits, hotfix held back, declared overlaps: no conflict
    async with start_app(source, size=(200, 40)) as ui:
        assert "Held back" in sidebar(ui) and "Declared scopes" in sidebar(ui)
        assert ui.screen.query_one("#sidebar").border_title == "Conflicts"


@pytest.mark.asyncio
async def test_a_batch_approved_before_its_toast_showed_leaves_no_toast(
    start_app: StartApp,
) -> None:
    source = FakeSource()
    source.start_run()
    async with start_app(source, size=(200, 40)) as ui:
        source.propose(1, ("contract",))
        source.propose(1, ("contract", "schema"))  # revised before a tick drew either
        source.emit(BatchApproved(batch=1, tasks=("contract",)), 7.0)
        await ui.settle()
        assert not any("waits" in toast for toast in ui.toasts())


@pytest.mark.asyncio
async def test_long_paths_in_the_sidebar_break_after_a_slash(start_app: StartApp) -> None:
    path = "services/payments/internal/adapters/stripe/webhooks/handler_test.py"
    source = FakeSource()
    source.start_run()
    source.start_task("contract")
    source.commit_task("contract", "c1")
    source.emit(MergeConflict(task="contract", attempt=1, paths=(path,)), 5.0)
    source.emit(TaskFinished(task="contract", attempt=1, status="merge-conflict"), 5.0)
    async with start_app(source, size=(200, 40)) as ui:
        widget = ui.screen.query_one("#conflicts")
        lines = [widget.render_line(y).text.rstrip() for y in range(widget.size.height)]
        first = next(i for i, line in enumerate(lines) if line.strip().startswith("services/"))
        pieces = [lines[first]]
        while not pieces[-1].endswith("handler_test.py"):
            assert pieces[-1].endswith("/"), pieces
            pieces.append(lines[first + len(pieces)])
        assert "".join(p.strip() for p in pieces) == path
