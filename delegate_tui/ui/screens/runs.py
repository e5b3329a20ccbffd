"""The runs screen: a repository's runs, newest first; Enter opens one for replay.

The list itself is ``report.list_runs``, the same one ``delegate-tui runs`` prints.
:func:`browse` goes back and forth: the list, the replay of the run picked,
and (esc in the replay) the list again, on the run that was open.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Label, OptionList
from textual.widgets.option_list import Option

from delegate_tui.report import list_runs
from delegate_tui.resources import data_dir
from delegate_tui.ui.themes import DEFAULT_THEME, load_themes


class RunsApp(App[Path | None]):
    """Pick a run to replay; returns its log path (or None)."""

    CSS = """
    Screen { background: $background; }
    #title {
        padding: 0 1; background: $panel; color: $primary; text-style: bold; width: 100%;
        text-wrap: nowrap; text-overflow: ellipsis;
    }
    OptionList { height: 1fr; border: round $foreground 25%; background: $surface; }
    """
    BINDINGS = [Binding("q,escape", "quit", "Quit"), Binding("enter", "open", "Replay")]

    def __init__(self, repo: Path, theme: str | None = None, current: Path | None = None) -> None:
        super().__init__()
        self.repo = repo
        self.rows = list_runs(repo)
        self._theme = theme
        self._current = current  # the log of the run last open: the list starts on it

    def compose(self) -> ComposeResult:
        yield Label(
            f" Runs · enter replays, q quits · {len(self.rows)} run(s) of {self.repo}",
            id="title",
        )
        options = []
        for row in self.rows:
            when = (
                time.strftime("%Y-%m-%d %H:%M", time.localtime(row.started)) if row.started else "?"
            )
            text = Text()
            text.append(f"{row.run_id}  ", "bold")
            text.append(f"{when}  {int(row.duration_s) // 60:>3}m{int(row.duration_s) % 60:02d}s  ")
            colour = {"succeeded": "green", "partial": "yellow", "unfinished": "cyan"}.get(
                row.status, "red"
            )
            text.append(f"{row.status:<11}", colour)
            text.append(f" {row.ok}/{row.total} ok  {row.plan}")
            options.append(Option(text, id=str(row.log)))
        yield (
            OptionList(*options)
            if options
            else Label("  No runs yet: `delegate-tui run PLAN` makes one.")
        )
        yield Footer()

    def on_mount(self) -> None:
        themes, _ = load_themes([data_dir("themes")])
        for theme in themes:
            self.register_theme(theme)
        self.theme = self._theme if self._theme in self.available_themes else DEFAULT_THEME
        logs = [row.log for row in self.rows]
        lists = self.query(OptionList)
        if lists and self._current in logs:
            lists.first().highlighted = logs.index(self._current)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.exit(Path(str(event.option.id)))

    def action_open(self) -> None:
        lists = self.query(OptionList)
        if lists and lists.first().highlighted is not None:
            option = lists.first().get_option_at_index(lists.first().highlighted or 0)
            self.exit(Path(str(option.id)))


def browse(
    repo: Path,
    replay: Callable[[Path, Callable[[], None]], object],
    pick: Callable[[Path | None], Path | None] | None = None,
) -> None:
    """The runs list, the replay of the run picked, and back to the list on esc.

    ``replay(log, back)`` shows a run's replay until it returns; calling ``back``
    from it (the replay screen's esc) ends it and opens the list again, on that
    run. The list or a replay quit any other way ends the loop. ``pick(current)``
    shows the list and returns the log picked (default: :class:`RunsApp`).
    """
    choose = pick or (lambda current: RunsApp(repo, current=current).run())
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
