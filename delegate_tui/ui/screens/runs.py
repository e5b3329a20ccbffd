"""The runs screen: a repository's runs, newest first, with their trend; Enter replays one.

The list is ``report.list_runs``, the same one ``delegate-tui runs`` and
``stats --all`` print, with the same columns (``report.run_cells``); the chart
above it is ``history.aggregate`` of those runs: a Textual ``Sparkline`` per
number (time saved, conflict rate, rework rate, the agents' cost) over the last
finished runs, oldest first, with the newest value and whether the recent runs
did better than the ones before. Reading the logs happens in a thread, so the
screen opens at once however many runs there are. :func:`browse` goes back and
forth: the list, the replay of the run picked, and (esc in the replay) the
list again, on the run that was open.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Label, Sparkline

from delegate_tui.core import history
from delegate_tui.core.history import History
from delegate_tui.report import (
    RUN_HEADINGS,
    TREND_LABELS,
    RunRow,
    compare_text,
    left_out_text,
    list_runs,
    metric_text,
    run_cells,
    trend_caption,
    trend_note,
)
from delegate_tui.resources import data_dir
from delegate_tui.ui.config import UserConfig, config_dir
from delegate_tui.ui.themes import DEFAULT_THEME, load_themes

#: Cells of the chart per run at most (fewer where the screen is narrow).
CELLS_PER_RUN = 3
#: From this width on, each trend also shows the means it compares.
WIDE = 120
STATUS_STYLES = {"succeeded": "green", "partial": "yellow", "unfinished": "cyan", "live": "cyan"}
DIRECTION_CLASSES = {"better": "better", "worse": "worse", "steady": "steady"}


class TrendRow(Horizontal):
    """One number's chart: its name, a sparkline of its values, the newest and its direction."""

    def __init__(self, trend: history.Trend, cost_source: str, shown: int, note: str = "") -> None:
        higher = dict(history.TREND_METRICS)[trend.metric]
        super().__init__(classes="trend " + ("higher-better" if higher else "lower-better"))
        self.trend = trend
        self._cost_source = cost_source
        self._note = note or trend_note(1)
        self._shown = max(shown, len(trend.values))
        """Runs in the chart: a number some runs did not report is drawn as wide as it
        would be, so the columns after it line up with the other rows'."""

    def compose(self) -> ComposeResult:
        trend = self.trend
        yield Label(TREND_LABELS[trend.metric], classes="trend-name")
        if not trend.values:  # no chart: a Sparkline with no data would fill the row
            yield Label(self._note, classes="trend-note")
            return
        yield Sparkline(list(trend.values), classes="trend-spark")
        newest = metric_text(trend.metric, trend.last, self._cost_source)
        yield Label(f"newest {newest}", classes="trend-value")
        yield Label(
            trend.direction or "-",
            classes="trend-direction " + DIRECTION_CLASSES.get(trend.direction, "steady"),
        )
        yield Label(compare_text(trend, self._cost_source), classes="trend-compare")

    def on_resize(self) -> None:
        """Give each run the same number of cells, as many as fit, up to ``CELLS_PER_RUN``."""
        runs = len(self.trend.values)
        if not runs:
            return
        beside = sum(
            w.outer_size.width for w in self.query(Label) if w.display and w.outer_size.width
        )
        room = max(1, self.size.width - beside - 2)  # the sparkline's right margin
        cells = max(1, min(CELLS_PER_RUN, room // self._shown))
        spark = self.query_one(Sparkline)
        spark.styles.width = min(room, runs * cells)
        spark.styles.margin = (0, 2 + max(0, min(room, self._shown * cells) - runs * cells), 0, 0)
        # One value per cell: Textual's sparkline spreads fewer values than cells unevenly.
        spark.data = [v for v in self.trend.values for _ in range(cells)]


class RunsApp(App[Path | None]):
    """Pick a run to replay; returns its log path (or None)."""

    CSS = """
    Screen { background: $background; }
    #title {
        padding: 0 1; background: $panel; color: $primary; text-style: bold; width: 100%;
        text-wrap: nowrap; text-overflow: ellipsis;
    }
    #trends {
        height: auto; border: round $foreground 25%; background: $surface; padding: 0 1;
        border-title-color: $primary;
    }
    .trend { height: 1; }
    .trend-name { width: 14; color: $foreground 80%; }
    .trend-spark { margin-right: 2; }
    .trend-value { width: 14; }
    .trend-direction { width: 6; text-style: bold; }
    .trend-note { color: $foreground 60%; }
    .trend-compare { display: none; width: 26; color: $foreground 60%; margin-left: 2; }
    .wide .trend-compare { display: block; }
    .better { color: $success; }
    .worse { color: $error; }
    .steady { color: $foreground 60%; }
    .higher-better Sparkline > .sparkline--max-color { color: $success; }
    .higher-better Sparkline > .sparkline--min-color { color: $warning 70%; }
    .lower-better Sparkline > .sparkline--max-color { color: $error; }
    .lower-better Sparkline > .sparkline--min-color { color: $success 70%; }
    #summary { color: $foreground 80%; padding: 0 1; height: auto; width: 100%; }
    DataTable { height: 1fr; border: round $foreground 25%; background: $surface; }
    #empty { padding: 1 2; }
    """
    BINDINGS = [Binding("q,escape", "quit", "Quit"), Binding("enter", "open", "Replay")]

    def __init__(self, repo: Path, theme: str | None = None, current: Path | None = None) -> None:
        super().__init__()
        self.repo = repo
        self._current = current  # the log of the run last open: the list starts on it
        self.rows: list[RunRow] = []
        self.skipped: list[str] = []
        self.history: History | None = None
        self._theme = theme

    def compose(self) -> ComposeResult:
        yield Label(f" Runs · reading the run logs… · {self.repo}", id="title")
        yield Footer()

    def on_mount(self) -> None:
        # The operator's themes and choice, as the run screen takes them (ui/app.py).
        themes, _ = load_themes([data_dir("themes"), config_dir() / "themes"])
        for theme in themes:
            self.register_theme(theme)
        wanted = self._theme or UserConfig.load().theme or DEFAULT_THEME
        self.theme = wanted if wanted in self.available_themes else DEFAULT_THEME
        self._load()

    @work(exclusive=True, group="runs", exit_on_error=False)
    async def _load(self) -> None:
        rows, skipped = await asyncio.to_thread(list_runs, self.repo)  # reads the logs
        await self._show(rows, skipped, history.aggregate([row.summary for row in rows]))

    async def _show(self, rows: list[RunRow], skipped: list[str], past: History) -> None:
        """Put the runs on the screen: chart, totals and list mounted at once."""
        self.rows, self.skipped, self.history = rows, skipped, past
        left_out = f" ({len(skipped)} unreadable log(s) left out)" if skipped else ""
        self.query_one("#title", Label).update(
            f" Runs · enter replays, q quits · {len(rows)} run(s){left_out} of {self.repo}"
        )
        footer = self.query_one(Footer)
        if not rows:
            await self.mount(
                Label("  No runs yet: `delegate-tui run PLAN` makes one.", id="empty"),
                before=footer,
            )
            return
        shown = max(len(t.values) for t in past.trends)
        trends = Vertical(
            *(TrendRow(t, past.cost_source, shown, trend_note(past.finished)) for t in past.trends),
            id="trends",
        )
        trends.border_title = f"Trend: {trend_caption(past, short=True)}"
        table: DataTable[Text | str] = DataTable(cursor_type="row", zebra_stripes=True)
        table.add_columns("RUN", *RUN_HEADINGS[1:], "PLAN", RUN_HEADINGS[0])
        for row in rows:
            when, status, ok, saved, conflict, rework, cost = run_cells(row)
            table.add_row(
                Text(row.run_id, "bold"),
                Text(status, STATUS_STYLES.get(row.status, "red")),
                Text(ok, justify="right"),
                Text(saved, justify="right"),
                Text(conflict, justify="right"),
                Text(rework, justify="right"),
                Text(cost, justify="right"),
                row.plan,
                when,
                key=str(row.log),
            )
        summary = Label(self._summary_text(past), id="summary")
        await self.mount_all([trends, summary, table], before=footer)
        logs = [row.log for row in rows]
        if self._current in logs:
            table.move_cursor(row=logs.index(self._current))
        table.focus()

    @staticmethod
    def _summary_text(past: History) -> str:
        cost = metric_text("cost_usd", past.cost_usd, past.cost_source)
        unknown = f" ({past.cost_unknown} run(s) reported none)" if past.cost_unknown else ""
        left_out = left_out_text(past)
        return (
            f"In all: {metric_text('time_saved_s', past.time_saved_s)} saved, "
            f"conflict rate {past.conflict_rate:.0%}, rework rate {past.rework_rate:.0%} "
            f"({past.finished} finished run(s)); agents' cost "
            f"{cost if past.cost_usd is not None else 'unknown'}{unknown}"
            + (f"\n{left_out[:1].upper()}{left_out[1:]}." if left_out else "")
        )

    def on_resize(self) -> None:
        self.screen.set_class(self.size.width >= WIDE, "wide")

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.exit(Path(str(event.row_key.value)))

    def action_open(self) -> None:
        tables = self.query(DataTable)
        if not tables or not self.rows:
            return
        table = tables.first()
        self.exit(Path(str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)))


def browse(
    repo: Path,
    replay: Callable[[Path, Callable[[], None]], object],
    pick: Callable[[Path | None], Path | None] | None = None,
    theme: str | None = None,
) -> None:
    """The runs list, the replay of the run picked, and back to the list on esc.

    ``replay(log, back)`` shows a run's replay until it returns; calling ``back``
    from it (the replay screen's esc) ends it and opens the list again, on that
    run. The list or a replay quit any other way ends the loop. ``pick(current)``
    shows the list and returns the log picked (default: :class:`RunsApp`).
    """
    choose = pick or (lambda current: RunsApp(repo, theme=theme, current=current).run())
    current: Path | None = None
    while True:
        picked = choose(current)
        if picked is None:
            return
        wanted: list[bool] = []
        replay(picked, partial(wanted.append, True))
        if not wanted:
            return
        current = picked
