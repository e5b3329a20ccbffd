"""Status icons and colours, read from the current theme's variables."""

from __future__ import annotations

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.style import Style
from rich.text import Text
from textual.app import App
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.widgets import Static

from delegate_tui.core.metrics import health, verdict
from delegate_tui.core.state import RunState, TaskState

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
    "timed-out": "⧗",
    "skipped": "⤼",
    "blocked": "⊘",
    "interrupted": "↯",  # not ‖: that is a paused run (header) or replay
    "over-budget": "$",
}
#: What each status means, for the legend in ``?`` help (one line each).
MEANINGS = {
    "pending": "waits for its dependencies or a batch",
    "proposed": "in the batch that waits for your approval",
    "starting": "worktree and setup under way",
    "running": "its agent is at work",
    "checking": "its checks (criteria) run",
    "merging": "committing and merging",
    "awaiting-merge": "done; waits for your merge",
    "succeeded": "done and merged",
    "failed": "failed: waits for a retry or a skip",
    "merge-conflict": "would not merge: waits for a retry",
    "killed": "ended by you",
    "timed-out": "ended by its timeout",
    "skipped": "skipped by you: not run, not waiting",
    "blocked": "cannot start: a dependency failed or was skipped",
    "interrupted": "the run stopped while it ran",
    "over-budget": "stopped: it spent its budget (cost or turns)",
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
    "over-budget": "status-failed",
}


_ENDED = {
    "succeeded": "The run succeeded",
    "partial": "The run ended partly done",
    "failed": "The run failed",
    "stopped": "The run was stopped",
}


def run_ended(state: RunState) -> str:
    """How a finished run went, as a sentence: 'The run ended partly done: 1 of 6 merged; …'."""
    head = _ENDED.get(state.status, f"The run ended ({state.status})")
    return f"{head}: {verdict(state)}." if state.tasks else f"{head}."


def health_text(state: RunState, limit: int | None = None) -> Text:
    """The health report as the screen shows it: a line per task, ✔ for work that
    merged or completed, ✘ for what did not, · for what never ran; past ``limit``
    lines, a count."""
    text = Text()
    report = health(state)
    for task_id, kind, words in report[:limit]:
        ok = kind in ("merged", "completed")
        mark, colour = ("✔", "green") if ok else ("·", "") if kind == "not-run" else ("✘", "red")
        text.append(mark, Style(color=colour or None, bold=True))
        text.append(f" {task_id}: ", Style(bold=True))
        text.append(f"{words}\n")
    if limit is not None and len(report) > limit:
        text.append(f"… and {len(report) - limit} more (H lists them all)\n")
    return text


def status_colour(app: App[object], status: str) -> str:
    """The theme's colour for a status."""
    variables = app.theme_variables
    return variables.get(_VARIABLE.get(status, "status-pending"), "#808080")


def status_style(app: App[object], status: str, *, bold: bool = False) -> Style:
    """A Rich style in the theme's colour for a status."""
    return Style(color=status_colour(app, status), bold=bold)


def clock(seconds: float) -> str:
    """``m:ss`` or ``h:mm:ss``, to the nearest second (as `stats` rounds durations)."""
    seconds = max(0, round(seconds))
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
    """Update a Static only when its text changed, and lay out only when its size may have.

    A layout redraws the whole screen (about 35 ms at 200x60, far more while agents
    flood), so a clock ticking in the header must not cost one: a new text of the same
    shape in a widget sized by its container is a repaint of that widget alone.
    """
    key = (
        text.plain,
        tuple((sp.start, sp.end, str(sp.style)) for sp in text.spans),
        str(text.style),
    )
    last = getattr(widget, "_delegate_last", None)
    if last == key:
        return
    widget._delegate_last = key  # type: ignore[attr-defined]
    lines = text.plain.split("\n")
    shape = (len(lines), max(cell_len(line) for line in lines))
    old_shape = getattr(widget, "_delegate_shape", None)
    widget._delegate_shape = shape  # type: ignore[attr-defined]
    height, width = widget.styles.height, widget.styles.width
    # Text wraps, so in a widget sized by its content any change of shape may resize it.
    sized_by_content = any(s is not None and s.is_auto for s in (height, width))
    layout = old_shape is None or (shape != old_shape and sized_by_content)
    widget.update(text, layout=layout)


def set_virtual_height(view: ScrollView, height: int) -> None:
    """Give a Line-API view a new scrollable height without laying out the screen.

    Assigning ``virtual_size`` costs a layout of the whole screen (Textual cannot
    know that the view's own size does not depend on it). These views are sized by
    their container, so only their scrollbars need to hear of it: what Textual
    itself does when it resizes a widget without a layout.
    """
    size = Size(view.size.width, height)
    if size != view.virtual_size:
        view.set_reactive(ScrollView.virtual_size, size)
        view._scroll_update(size)


class SlashWrap:
    """Text whose long ``label  value`` rows break after a ``/`` or a space that fits.

    Rich wraps at spaces only, so a long path was cut anywhere and its rest began
    at the left edge; here it breaks between directories and goes on ``indent``
    cells in, under the value of a ``label  value`` row.
    """

    def __init__(self, text: Text, indent: int = 12) -> None:
        self.text = text
        self.indent = indent

    def __str__(self) -> str:
        return str(self.text)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        out = Text(end="")
        for n, line in enumerate(self.text.split("\n", allow_blank=True)):
            if n:
                out.append("\n")
            out.append_text(_break(line, width, self.indent))
        yield out


def _break(line: Text, width: int, indent: int) -> Text:
    """A ``label  value`` line broken after the last ``/`` or space that fits each
    row (cut at the edge when there is neither); rows after the first start
    ``indent`` cells in."""
    plain = line.plain
    # A row's label is one span of exactly ``indent`` cells (details.py's row()).
    row = any(span.start == 0 and span.end == indent for span in line.spans)
    if not row or cell_len(plain) <= width or indent >= width - 8:
        return line  # prose, or short enough: Rich wraps it at spaces
    out = Text()
    start, room = 0, width
    while len(plain) - start > room:
        cut = max(plain.rfind("/", start, start + room), plain.rfind(" ", start, start + room))
        if cut <= start:
            cut = start + room - 1  # nothing to break at: cut at the edge
        out.append_text(line[start : cut + 1])
        out.append("\n" + " " * indent)
        start, room = cut + 1, width - indent
        while start < len(plain) and plain[start] == " ":
            start += 1  # a break at spaces starts the next row with the word
    out.append_text(line[start:])
    return out
