"""Pilot tests: the header's ⚑ and the sidebar say what needs the operator after a
kill or a skip, and the header's counts and time saved say what `stats` says
(issue 12, items 3, 5 and 7)."""

from __future__ import annotations

import pytest

from delegate_tui.core.events import (
    KillRequested,
    Notice,
    TaskBlocked,
    TaskFinished,
    TaskSkipped,
)
from delegate_tui.report import duration
from delegate_tui.ui.widgets.header import RunHeader
from tests.ui.conftest import Running, StartApp
from tests.ui.fake_source import FakeSource


def header(ui: Running) -> str:
    return str(ui.screen.query_one(RunHeader).render_line(0).text)


def sidebar(ui: Running) -> str:
    return str(ui.screen.query_one("#conflicts").render())


def killed_with_dependents_blocked() -> FakeSource:
    source = FakeSource()
    source.start_run()
    source.start_task("contract")
    source.emit(KillRequested(task="contract", attempt=1), 2.0)
    source.emit(TaskFinished(task="contract", attempt=1, status="killed"), 2.5)
    source.emit(TaskBlocked(task="schema", by="contract", reason="dependency contract killed"), 3)
    return source


@pytest.mark.asyncio
async def test_a_killed_task_raises_the_flag_and_blocked_ones_count_as_blocked(
    start_app: StartApp,
) -> None:
    async with start_app(killed_with_dependents_blocked(), size=(80, 24)) as ui:
        line = header(ui)
        assert "⚑ killed: contract" in line, line
        # schema cannot start: ⊘, not ◌ (waiting); the four still pending wait.
        assert "⊘1" in line and "◌4" in line, line


@pytest.mark.asyncio
@pytest.mark.parametrize("read_only", [False, True], ids=["live", "replay"])
async def test_a_run_idle_after_a_skip_says_who_is_blocked_and_by_what(
    start_app: StartApp, read_only: bool
) -> None:
    source = killed_with_dependents_blocked()
    source.emit(TaskSkipped(task="contract", reason="skipped by the operator"), 4.0)
    for task in ("service", "login-ui", "hotfix"):
        source.emit(TaskBlocked(task=task, by="schema", reason="dependency schema blocked"), 4.0)
    source.emit(
        TaskBlocked(task="endpoints", by="service", reason="dependency service blocked"), 4.0
    )
    told = "the run is waiting for you: retry the skipped task (contract) to go on, or end the run"
    source.emit(Notice(level="warning", message=told), 4.1)
    async with start_app(source, size=(200, 40), read_only=read_only) as ui:
        line = header(ui)
        assert "⚑ blocked: schema +4 (contract skipped)" in line
        assert "⊘5" in line and "⤼1" in line and "◌0" in line, line
        assert "waiting for you" in sidebar(ui), "kept while the skip leaves the run idle"
        # The notice wraps under itself, two cells in, not at the sidebar's left edge.
        notices = sidebar(ui).split("! Notices\n", 1)[1].split("\n\n", 1)[0].splitlines()
        assert len(notices) > 1 and all(line.startswith("  ") for line in notices), notices
        assert " ".join(line.strip() for line in notices) == told
        # Held back is headed with a waiting glyph, not ‖ (paused), and each task
        # carries its own status glyph.
        assert "‖" not in sidebar(ui)
        # A reason too long for the line goes under its task, not to the left edge.
        assert "◌ Held back\n  ⊘ schema\n    dependency contract skipped\n" in sidebar(ui)


@pytest.mark.asyncio
async def test_time_saved_is_rounded_as_stats_rounds_it_and_a_loss_is_shown(
    start_app: StartApp,
) -> None:
    source = FakeSource()
    source.start_run()
    async with start_app(source, size=(80, 24)) as ui:
        bar = ui.screen.query_one(RunHeader)
        # 18.705 s: `stats` says 19s; the header said 0:18 (it cut the seconds off).
        bar.show(source.state, now=source.state.started_ts, saved_s=18.705, attention=[], mode="")
        assert duration(18.705) == "19s" and "saved 0:19" in header(ui), header(ui)
        # Slower than sequential: it showed nothing.
        bar.show(source.state, now=source.state.started_ts, saved_s=-65.4, attention=[], mode="")
        line = header(ui)
        assert "slower 1:05" in line and "saved" not in line, line
        assert line.rstrip().endswith("OAuth login"), "fits 80 columns whole"
        bar.show(source.state, now=source.state.started_ts, saved_s=-0.4, attention=[], mode="")
        assert "slower" not in header(ui) and "saved" not in header(ui)
