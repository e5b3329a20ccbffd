"""Status icons and colours, read from the current theme's variables."""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.app import App
from textual.widgets import Static

from delegate_tui.core.state import TaskState

ICONS = {
    "pending": "◌",
    "proposed": "◎",
    "starting": "◔",
    "running": "▶",
    "checking": "◑",
    "merging": "⇢",
    "awaiting-merge": "◉",
    "succeeded": "✔",
    "failed": "✘",
    "merge-conflict": "⚠",
    "killed": "✖",
    "timed-out": "⌛",
    "skipped": "⤼",
    "blocked": "⊘",
    "interrupted": "‖",
}
_VARIABLE = {
    "pending": "status-pending",
    "proposed": "status-proposed",
    "starting": "status-running",
    "running": "status-running",
    "checking": "status-running",
    "merging": "status-running",
    "awaiting-merge": "status-proposed",
    "succeeded": "status-succeeded",
    "failed": "status-failed",
    "merge-conflict": "status-failed",
    "killed": "status-failed",
    "timed-out": "status-failed",
    "skipped": "status-skipped",
    "blocked": "status-blocked",
    "interrupted": "status-blocked",
}


def status_colour(app: App[object], status: str) -> str:
    """The theme's colour for a status."""
    variables = app.theme_variables
    return variables.get(_VARIABLE.get(status, "status-pending"), "#808080")


def status_style(app: App[object], status: str, *, bold: bool = False) -> Style:
    """A Rich style in the theme's colour for a status."""
    return Style(color=status_colour(app, status), bold=bold)


def clock(seconds: float) -> str:
    """``m:ss`` or ``h:mm:ss``."""
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def task_elapsed(task: TaskState, now: float) -> float:
    """Time spent on a task so far: finished attempts plus the running one."""
    total = 0.0
    for attempt in task.attempts:
        if attempt.started_ts:
            total += (attempt.ended_ts or now) - attempt.started_ts
    return max(0.0, total)


def update_if_changed(widget: Static, text: Text) -> None:
    """Static.update costs a layout and a repaint; skip it when nothing changed."""
    key = (
        text.plain,
        tuple((sp.start, sp.end, str(sp.style)) for sp in text.spans),
        str(text.style),
    )
    if getattr(widget, "_delegate_last", None) != key:
        widget._delegate_last = key  # type: ignore[attr-defined]
        widget.update(text)
