"""The runs screen (``delegate-tui runs --open``): its trend chart and its list of runs.

The runs are real logs in a repository's ``.delegate/runs/``, their events folded
by the real ``apply`` when the screen reads them (``report.list_runs``). Six
finished runs: conflicts and retries fall over the last three while the cost
rises, one run reported no cost; and a run cut off before its end. The tests
read the widgets back at 80x24 and 200x60: one bar per run in each sparkline
and the same number of cells for each, the newest value and the direction in
the colour that says better or worse, the means compared where there is room,
nothing outside the screen, the list newest first with the same numbers, and
Enter opening the run under the cursor.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from textual.coordinate import Coordinate
from textual.widgets import DataTable, Label, Sparkline

from delegate_tui.core.consult import consult_plan
from delegate_tui.core.events import (
    AgentUsage,
    ConflictDetected,
    Event,
    Metrics,
    RetryScheduled,
    RunFinished,
    RunStarted,
    TokenUsage,
    encode,
)
from delegate_tui.core.runlog import runs_dir
from delegate_tui.core.state import RunState
from delegate_tui.ui.screens.runs import RunsApp, TrendRow
from tests.core.test_metrics import T0, attempt, batch, finish, fold, run_started

#: Per run, oldest first: (collided, retried, cost). a, b and c each run 2 s.
RUNS = [
    (False, False, 0.10),
    (True, True, 0.20),
    (True, False, None),  # its agents reported no cost
    (False, False, 0.30),
    (False, False, 0.40),
    (False, False, 0.50),
]


def run_events(number: int, collided: bool, retried: bool, cost: float | None) -> list[Event]:
    """A run ``number`` hours after T0: a and b side by side, then c."""
    shift = 3600.0 * number
    run_id = f"20260101-{number:02d}0000-run{number}"
    events: list[Event] = [
        dataclasses.replace(run_started(), run_id=run_id),
        *batch(1, 0, "a", "b"),
        *attempt("a", 0.0, 2.0, status="failed" if retried else "succeeded"),
        *attempt("b", 0.0, 2.0),
    ]
    if collided:
        events.append(
            ConflictDetected(
                key="k", kind="overlap", severity="warning", tasks=("a", "b"), paths=("x",)
            )
        )
    if retried:
        events += [
            RetryScheduled(task="a", attempt=2, prompt="again", ts=T0 + 2.0),
            *attempt("a", 2.0, 4.0, number=2),
        ]
    if cost is not None:
        events.append(
            AgentUsage(
                task="b",
                attempt=1,
                usage=(TokenUsage(model="m", input=1000, output=100),),
                cost_usd=cost,
                cost_source="cli",
            )
        )
    events += [*batch(2, 4.0, "c"), *attempt("c", 4.0, 6.0)]
    return [dataclasses.replace(ev, ts=ev.ts + shift) for ev in events]


def make_runs(repo: Path) -> list[Path]:
    """The runs of RUNS written as logs, and one cut off (no RunFinished); oldest first."""
    logs = []
    for number, (collided, retried, cost) in enumerate(RUNS):
        events = run_events(number, collided, retried, cost)
        state = fold(events)
        events.append(finish_event(state, 3600.0 * number + 6.0))
        logs.append(write(repo, events))
    cut = run_events(len(RUNS), False, False, 1.0)[:8]
    logs.append(write(repo, cut))
    return logs


def finish_event(state: RunState, at: float) -> Event:
    """The RunFinished the engine would write at ``at`` seconds (its metrics measured then)."""
    done = finish(state, at)
    assert done.metrics is not None
    return RunFinished(status="succeeded", metrics=done.metrics, ts=T0 + at)


def write(repo: Path, events: list[Event]) -> Path:
    started = events[0]
    assert isinstance(started, RunStarted)
    run_id = started.run_id
    folder = runs_dir(repo) / run_id
    folder.mkdir(parents=True)
    log = folder / "events.jsonl"
    log.write_bytes(
        b"".join(encode(dataclasses.replace(ev, seq=i)) for i, ev in enumerate(events, 1))
    )
    return log


async def opened(app: RunsApp, pilot: object) -> None:
    """Wait until the screen has read the runs and drawn them."""
    for _ in range(100):
        await pilot.pause(0.05)  # type: ignore[attr-defined]
        if app.query(DataTable) or app.query("#empty"):
            break
    await pilot.pause(0.1)  # type: ignore[attr-defined]
    # Each trend row sizes its chart on its own resize, a refresh or more after the table
    # (later under load): wait for the charts' one cell per value (the tests then check it).
    for _ in range(60):
        sparks = [spark for row in app.query(TrendRow) for spark in row.query(Sparkline)]
        if all(s.size.width == len(s.data or []) for s in sparks):
            break
        await pilot.pause(0.05)  # type: ignore[attr-defined]


def trend_row(app: RunsApp, metric: str) -> TrendRow:
    (row,) = [r for r in app.query(TrendRow) if r.trend.metric == metric]
    return row


def label_texts(row: TrendRow) -> list[str]:
    return [str(label.render()) for label in row.query(Label) if label.display]


@pytest.mark.asyncio
async def test_the_trend_chart_at_80x24_gives_each_run_a_bar_and_says_where_it_goes(
    tmp_path: Path,
) -> None:
    logs = make_runs(tmp_path)
    app = RunsApp(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await opened(app, pilot)
        assert app.history is not None and app.history.finished == len(RUNS)
        panel = app.query_one("#trends")
        assert panel.border_title == f"Trend: last {len(RUNS)} finished runs, oldest first"
        assert [r.trend.metric for r in app.query(TrendRow)] == [
            "time_saved_s",
            "conflict_rate",
            "rework_rate",
            "cost_usd",
        ]
        # Conflicts: runs 1 and 2 had a and b collide (2 of 3 tasks); none since.
        conflict = trend_row(app, "conflict_rate")
        assert conflict.trend.values == (0.0, 0.6667, 0.6667, 0.0, 0.0, 0.0)
        spark = conflict.query_one(Sparkline)
        cells = spark.size.width // len(RUNS)
        assert cells >= 2 and spark.size.width == cells * len(RUNS)
        assert list(spark.data or []) == [v for v in conflict.trend.values for _ in range(cells)]
        name, newest, direction = label_texts(conflict)
        assert (name, newest, direction) == ("conflict rate", "newest 0%", "better")
        assert conflict.query(Label)[2].has_class("better")
        # The cost: five runs reported one, rising: worse; the compared means need room.
        cost = trend_row(app, "cost_usd")
        assert cost.trend.values == (0.1, 0.2, 0.3, 0.4, 0.5)
        assert label_texts(cost)[1:] == ["newest $0.50", "worse"]
        assert cost.query(Label)[2].has_class("worse")
        assert not app.screen.has_class("wide") and not cost.query_one(".trend-compare").display
        # A number some runs did not report takes the same room: the columns line up.
        assert len({r.query(Label)[1].region.x for r in app.query(TrendRow)}) == 1
        assert cost.query_one(Sparkline).size.width == cells * len(cost.trend.values)
        # Nothing of the chart is cut off at 80 columns.
        for row in app.query(TrendRow):
            for widget in (*row.query(Label), row.query_one(Sparkline)):
                if widget.display and widget.size.width:
                    assert widget.region.right <= panel.region.right - 1, widget
        # The totals say the unknown cost out loud.
        summary = str(app.query_one("#summary", Label).render())
        assert "agents' cost $1.50 (2 run(s) reported none)" in summary
        # The list: newest first, the cut-off run included, same numbers as the chart.
        table = app.query_one(DataTable)
        keys = [
            table.coordinate_to_cell_key(Coordinate(i, 0)).row_key.value
            for i in range(table.row_count)
        ]
        assert keys == [str(log) for log in reversed(logs)]
        first = [str(c) for c in table.get_row_at(0)]
        assert first[0] == "20260101-060000-run6" and first[1] == "unfinished"
        latest = [str(c) for c in table.get_row_at(1)]
        assert latest[1:7] == ["succeeded", "3/3", "2s", "0%", "0%", "$0.50"]
        assert app.screen.region.height == 24


@pytest.mark.asyncio
async def test_the_runs_screen_takes_the_operators_configured_theme(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "xdg"
    (config / "delegate-tui").mkdir(parents=True)
    (config / "delegate-tui" / "config.yaml").write_text("theme: high-contrast\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    make_runs(tmp_path)
    for app, wanted in (
        (RunsApp(tmp_path), "high-contrast"),
        (RunsApp(tmp_path, theme="delegate-light"), "delegate-light"),  # --theme, this once
    ):
        async with app.run_test(size=(100, 30)) as pilot:
            await opened(app, pilot)
            assert app.theme == wanted


@pytest.mark.asyncio
async def test_at_200x60_the_chart_shows_the_means_it_compares_and_every_run_fits(
    tmp_path: Path,
) -> None:
    make_runs(tmp_path)
    app = RunsApp(tmp_path, theme="delegate-light")
    async with app.run_test(size=(200, 60)) as pilot:
        await opened(app, pilot)
        assert app.theme == "delegate-light" and app.screen.has_class("wide")
        rework = trend_row(app, "rework_rate")
        # one retry of three tasks in run 1; the last three runs none: 11% -> 0%
        assert label_texts(rework) == [
            "rework rate",
            "newest 0%",
            "better",
            "mean 11% → 0%",
        ]
        spark = rework.query_one(Sparkline)
        for _ in range(40):  # the row sizes its chart on its resize, a refresh after the table
            if spark.size.width == 3 * len(RUNS):
                break
            await pilot.pause(0.05)
        assert spark.size.width == 3 * len(RUNS)  # as many cells as CELLS_PER_RUN
        saved = trend_row(app, "time_saved_s")
        assert label_texts(saved)[1:3] == ["newest 2s", "steady"]
        table = app.query_one(DataTable)
        assert table.row_count == len(RUNS) + 1
        assert table.size.height >= table.row_count + 1  # every run on the screen at once
        assert not table.show_horizontal_scrollbar


@pytest.mark.asyncio
async def test_enter_replays_the_run_under_the_cursor(tmp_path: Path) -> None:
    logs = make_runs(tmp_path)
    app = RunsApp(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await opened(app, pilot)
        await pilot.press("down", "down", "enter")
        await pilot.pause(0.1)
    assert app.return_value == logs[-3]


@pytest.mark.asyncio
async def test_a_repository_without_runs_says_how_to_make_one(tmp_path: Path) -> None:
    app = RunsApp(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await opened(app, pilot)
        assert "No runs yet" in str(app.query_one("#empty", Label).render())
        assert not app.query(DataTable) and not app.query(TrendRow)
        await pilot.press("enter")
        await pilot.press("q")
    assert app.return_value is None


@pytest.mark.asyncio
async def test_one_finished_run_has_no_trend_yet(tmp_path: Path) -> None:
    events = run_events(0, False, False, 0.1)
    events.append(finish_event(fold(events), 6.0))
    write(tmp_path, events)
    app = RunsApp(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await opened(app, pilot)
        panel = app.query_one("#trends")
        assert panel.border_title == "Trend: the trend shows from the second finished run"
        assert label_texts(trend_row(app, "cost_usd")) == ["cost", "newest $0.10", "-"]


@pytest.mark.asyncio
@pytest.mark.parametrize("size", [(80, 24), (200, 60)])
async def test_a_number_no_run_reported_says_so_on_the_screen_without_a_chart(
    tmp_path: Path, size: tuple[int, int]
) -> None:
    for number in range(3):  # the demo's agents: no cost, ever
        events = run_events(number, False, False, None)
        events.append(finish_event(fold(events), 3600.0 * number + 6.0))
        write(tmp_path, events)
    app = RunsApp(tmp_path)
    async with app.run_test(size=size) as pilot:
        await opened(app, pilot)
        cost = trend_row(app, "cost_usd")
        assert cost.trend.values == ()
        assert not cost.query(Sparkline), "no flat chart as wide as the row"
        (note,) = cost.query(".trend-note")
        assert str(note.render()) == "not reported by any finished run"
        panel = app.query_one("#trends")
        assert note.size.width == len("not reported by any finished run")
        assert panel.region.x < note.region.x and note.region.right <= panel.region.right - 1
        # The screen as drawn says it, whole.
        screen = [strip.text for strip in app.screen._compositor.render_strips()]
        (line,) = [ln for ln in screen if "cost " in ln and "not reported" in ln]
        assert "not reported by any finished run" in line
        # The other numbers keep their charts, one bar per run.
        saved = trend_row(app, "time_saved_s").query_one(Sparkline)
        assert saved.size.width % 3 == 0 and saved.size.width >= 3


def draft_consult_events(number: int) -> list[Event]:
    """A ``delegate-tui draft`` consult run ``number`` hours after T0: one task, 4 s."""
    plan = consult_plan(Path("/repo"), "demo", "draft a plan", name="draft 1: x", timeout=60)
    started = dataclasses.replace(
        run_started(),
        run_id=f"20260101-{number:02d}0000-draft",
        plan=plan.model_dump(mode="json", by_alias=True),
    )
    events: list[Event] = [started, *batch(1, 0, "draft"), *attempt("draft", 0.0, 4.0)]
    events = [dataclasses.replace(ev, ts=ev.ts + 3600.0 * number) for ev in events]
    events.append(finish_event(fold(events), 3600.0 * number + 4.0))
    return events


@pytest.mark.asyncio
async def test_drafting_consults_and_runs_where_nothing_ran_are_listed_but_not_charted(
    tmp_path: Path,
) -> None:
    for number in range(2):  # two real runs: collisions, then none
        events = run_events(number, number == 0, False, 0.1)
        events.append(finish_event(fold(events), 3600.0 * number + 6.0))
        write(tmp_path, events)
    write(tmp_path, draft_consult_events(2))
    stopped: list[Event] = [
        dataclasses.replace(run_started(), run_id="20260101-030000-stop", ts=T0 + 3 * 3600.0),
        RunFinished(status="stopped", metrics=Metrics(), ts=T0 + 3 * 3600.0 + 1),
    ]
    write(tmp_path, stopped)
    app = RunsApp(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await opened(app, pilot)
        assert app.history is not None
        assert (app.history.runs, app.history.finished) == (4, 2)
        # The chart: the two real runs only (before, a draft and a stop read as 0% conflicts).
        conflict = trend_row(app, "conflict_rate")
        assert conflict.trend.values == (0.6667, 0.0)
        table = app.query_one(DataTable)
        rows = {str(table.get_row_at(i)[0]): table.get_row_at(i) for i in range(table.row_count)}
        assert len(rows) == 4
        for run in ("20260101-020000-draft", "20260101-030000-stop"):
            assert [str(c) for c in rows[run][3:6]] == ["-", "-", "-"], run
        screen = "\n".join(strip.text for strip in app.screen._compositor.render_strips())
        assert "1 drafting consult run(s) and 1 run(s) where no task ran" in screen
        assert "the rates and the trend." in screen
        summary = str(app.query_one("#summary", Label).render())
        assert summary.endswith(
            "1 drafting consult run(s) and 1 run(s) where no task ran listed (- for their "
            "numbers) but left out of the time saved, the rates and the trend."
        )
        label = app.query_one("#summary", Label)
        assert label.region.bottom <= app.query_one(DataTable).region.y  # all of it shows
