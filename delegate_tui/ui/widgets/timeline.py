"""The timeline view (``g``): the run as a schedule, one row per task.

Draws :func:`delegate_tui.core.timeline.project` of the run's state with the
Line API: a time axis and a row of batch marks on top, a row per task with its
attempts as bars coloured by outcome and its waits drawn by why it waited, the
operator's actions as marks, and at the bottom how many agents ran at each
moment, what the cursor is on, and a legend (on as many lines as the width
needs). Top and bottom rows stay put;
task rows scroll under them, and time scrolls sideways once zoomed in (``z``,
``Z``). It follows the live run's now (or a replay's cursor) unless a bar is
being looked at.

Selecting a task (↑ ↓, a click) posts :class:`TimelineView.TaskSelected`; the
screen selects the same task everywhere (attributes down, messages up).
Hidden, :meth:`TimelineView.show` returns at once: no projection, no drawing.

(About 540 lines: drawing rows, axis, cursor, zoom and the selection of one
widget; what it draws is the pure projection in ``core/timeline.py``.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.strip import Strip
from textual.widget import Widget

from delegate_tui.core.state import RunState
from delegate_tui.core.timeline import (
    MARK_GLYPHS,
    Bar,
    Row,
    Timeline,
    TimelineMark,
    Wait,
    describe,
    fit_step,
    project,
    span_text,
    tick_every,
    zoom,
)
from delegate_tui.ui.style import ICONS, status_colour

#: How each outcome draws: the status whose theme colour it takes, and the glyph that ends it.
OUTCOMES: dict[str, tuple[str, str]] = {
    "running": ("running", "▶"),
    "merged": ("succeeded", "◆"),
    "succeeded": ("succeeded", ICONS["succeeded"]),
    "awaiting-merge": ("awaiting-merge", ICONS["awaiting-merge"]),
    "failed": ("failed", ICONS["failed"]),
    "killed": ("killed", ICONS["killed"]),
    "timed-out": ("timed-out", ICONS["timed-out"]),
    "conflict": ("merge-conflict", ICONS["merge-conflict"]),
    "interrupted": ("interrupted", ICONS["interrupted"]),
}
#: How each wait draws: glyph, and whose colour (operator waits stand out).
WAITS: dict[str, tuple[str, str]] = {
    "dependency": ("·", "pending"),
    "scheduling": ("-", "pending"),
    "slot": ("┄", "blocked"),
    "scope": ("╌", "blocked"),
    "approval": ("░", "proposed"),
    "operator": ("░", "failed"),
    "merge": ("░", "proposed"),
    "paused": ("‖", "proposed"),
    "blocked": ("─", "blocked"),
}
AGENT = "█"
AROUND = "▄"  # setup before the agent, checks and merge after it
#: The legend's entries in groups (what bars and waits are, the marks, how attempts end);
#: drawn on as many lines as the width needs (:func:`legend_lines`).
LEGEND: tuple[tuple[str, ...], ...] = (
    (
        "█ agent",
        "▄ setup/checks",
        "· dependency",
        "┄ slot",
        "╌ scope",
        "░ you: approve/retry/merge",
        "‖ paused",
        "─ blocked",
    ),
    ("✓ approved", "✖ kill", "↻ retry", "⤼ skip", "» input", "! finding"),
    ("▶ running", "◆ merged", "✘ failed", "⚠ conflict"),
)
_TOP = 2  # axis, batch marks
_BOTTOM = 3  # agents, what the cursor is on, its marks; then the legend's lines


def legend_lines(width: int) -> list[str]:
    """The legend wrapped to ``width`` columns: entries two spaces apart, groups three, an
    entry never split (one wider than the line is cut when drawn)."""
    lines: list[str] = []
    line = ""
    for group in LEGEND:
        for n, entry in enumerate(group):
            gap = "" if not line else "   " if n == 0 else "  "
            if line and cell_len(line + gap + entry) > width:
                lines.append(line)
                line, gap = "", ""
            line += gap + entry
    return [*lines, line] if line else lines


@dataclass(frozen=True, slots=True)
class _Scale:
    start: float
    step: float
    col0: int
    cells: int

    def col(self, ts: float) -> int:
        """The column (from the run's start, not the view's) a moment falls in."""
        return math.floor((ts - self.start) / self.step + 1e-9)


class TimelineView(Widget, can_focus=True):
    """A run's tasks over time."""

    BINDINGS = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("home", "cursor(-100000)", show=False),
        Binding("end", "cursor(100000)", show=False),
        Binding("shift+left", "span(-1)", "Previous bar", show=False),
        Binding("shift+right", "span(1)", "Next bar", show=False),
        Binding("escape", "span(0)", "Follow", show=False),
        Binding("z", "zoom(-1)", "Zoom in", show=False),
        Binding("Z", "zoom(1)", "Zoom out", show=False),
    ]

    class TaskSelected(Message):
        """The timeline's cursor moved to a task."""

        def __init__(self, task_id: str) -> None:
            super().__init__()
            self.task_id = task_id

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.timeline: Timeline | None = None
        """The picture drawn (None until first shown)."""
        self.selected = ""
        """The task under the cursor."""
        self.span = -1
        """Index of the bar or wait looked at in the selected row's spans (-1: follow)."""
        self.step: float | None = None
        """Seconds a column stands for (None: fit the whole run)."""
        self.row0 = 0
        """First task row shown."""
        self.projections = 0
        """How many times the picture was projected (a hidden view never does)."""
        self._axis_end = 0.0
        self._cursor_ts = 0.0
        self._signature: object = None
        self._scale = _Scale(0.0, 1.0, 0, 1)

    # ------------------------------------------------------------ data

    def show(self, state: RunState, now: float, *, selected: str, end: float = 0.0) -> None:
        """Attributes down: the state at ``now`` (a replay's cursor), the selected task, and
        where the axis ends (a replay's whole length; default ``now``). Hidden: nothing."""
        if not self.display or state.plan is None:
            return
        signature = (state.events, state.last_seq, round(now, 1), end, selected)
        if signature != self._signature or self.timeline is None:
            self._signature = signature
            self.timeline = project(state, now)
            self.projections += 1
            self._cursor_ts = self.timeline.end
            self._axis_end = max(self.timeline.end, end)
            if selected and selected != self.selected:
                self.selected = selected
                self.span = -1
            elif not self.selected and self.timeline.rows:
                self.selected = self.timeline.rows[0].task
            self._redraw()

    def _redraw(self) -> None:
        """Work out the rows and columns in view, then repaint."""
        self._keep_in_view()
        if self.timeline is not None:
            self._scale = self._compute_scale()
        self.refresh()

    def _row(self) -> Row | None:
        return self.timeline.row(self.selected) if self.timeline else None

    def _bottom_rows(self) -> int:
        """The rows under the tasks: agents, what the cursor is on, its marks, the legend."""
        return _BOTTOM + len(legend_lines(self.size.width))

    def _task_rows(self) -> int:
        return max(1, self.size.height - _TOP - self._bottom_rows())

    def _bottom_top(self) -> int:
        """The line the agents row is drawn on: under the last task row, or at the foot."""
        rows = len(self.timeline.rows) if self.timeline else 0
        shown = min(rows - self.row0, self._task_rows())
        return min(_TOP + shown + 1, self.size.height - self._bottom_rows())

    def _name_width(self) -> int:
        rows = self.timeline.rows if self.timeline else ()
        longest = max((cell_len(r.task) for r in rows), default=6)
        return max(10, min(longest + 3, 20, self.size.width // 3))

    def _compute_scale(self) -> _Scale:
        assert self.timeline is not None
        cells = max(4, self.size.width - self._name_width() - 1)
        duration = max(1.0, self._axis_end - self.timeline.start)
        step = self.step if self.step is not None else fit_step(duration * 1.02, cells - 1)
        scale = _Scale(self.timeline.start, step, 0, cells)
        total = scale.col(self._axis_end) + 2
        row = self._row()
        spans = row.spans() if row else []
        if 0 <= self.span < len(spans):  # keep the bar looked at in view
            focus = spans[self.span]
            left, right = scale.col(focus.start), scale.col(focus.end)
            col0 = self._scale.col0 if self._scale.step == step else 0
            if left < col0 or right >= col0 + cells:
                col0 = max(0, min(left - 2, right - cells + 3))
        else:  # follow now (the replay's cursor)
            col0 = max(0, scale.col(self._cursor_ts) - cells + 3)
        col0 = max(0, min(col0, max(0, total - cells)))
        return _Scale(self.timeline.start, step, col0, cells)

    def _keep_in_view(self) -> None:
        if self.timeline is None:
            return
        tasks = [r.task for r in self.timeline.rows]
        if self.selected in tasks:
            index = tasks.index(self.selected)
            height = self._task_rows()
            if index < self.row0:
                self.row0 = index
            elif index >= self.row0 + height:
                self.row0 = index - height + 1
        self.row0 = max(0, min(self.row0, max(0, len(tasks) - self._task_rows())))

    # ------------------------------------------------------------ keys and mouse

    def select(self, task_id: str, *, post: bool = True) -> None:
        """Put the cursor on a task."""
        if self.timeline is None or self.timeline.row(task_id) is None:
            return
        if task_id != self.selected:
            self.span = -1
        self.selected = task_id
        self._redraw()
        if post:
            self.post_message(self.TaskSelected(task_id))

    def action_cursor(self, step: int) -> None:
        if self.timeline is None or not self.timeline.rows:
            return
        tasks = [r.task for r in self.timeline.rows]
        index = tasks.index(self.selected) if self.selected in tasks else 0
        self.select(tasks[max(0, min(len(tasks) - 1, index + step))])

    def action_span(self, step: int) -> None:
        """Look at the previous or next bar or wait of the task (0: back to following)."""
        row = self._row()
        spans = row.spans() if row else []
        if step == 0 or not spans:
            self.span = -1
        elif self.span < 0:
            self.span = len(spans) - 1 if step < 0 else 0
        else:
            self.span = self.span + step
            if not 0 <= self.span < len(spans):
                self.span = -1  # stepped off either end: follow the run again
        self._redraw()

    def action_zoom(self, direction: int) -> None:
        """Finer (-1) or coarser (1) time; coarser than the whole run fits again."""
        if self.timeline is None:
            return
        current = self._scale.step
        fitted = fit_step(
            max(1.0, self._axis_end - self.timeline.start) * 1.02, self._scale.cells - 1
        )
        wanted = zoom(current, direction)
        self.step = None if wanted >= fitted else wanted
        self._redraw()

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if self.timeline is None or offset is None:
            return
        index = offset.y - _TOP + self.row0
        if not _TOP <= offset.y < self._bottom_top() or index >= len(self.timeline.rows):
            return
        row = self.timeline.rows[index]
        self.select(row.task)
        x = offset.x - self._name_width() - 1
        if x >= 0:
            scale = self._scale
            ts = scale.start + (scale.col0 + x + 0.5) * scale.step
            for i, span in enumerate(row.spans()):
                if span.start - scale.step / 2 <= ts <= span.end + scale.step / 2:
                    self.span = i
            self._redraw()

    def on_resize(self) -> None:
        self._redraw()

    # ------------------------------------------------------------ drawing

    def _colour(self, status: str) -> str:
        return status_colour(self.app, status)

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        base = self.rich_style
        timeline = self.timeline
        if timeline is None:
            return Strip.blank(width, base)
        if y == 0:
            return self._axis(width, base)
        if y == 1:
            return self._run_marks(width, base)
        bottom = y - self._bottom_top()
        if bottom == 0:
            return self._agents(width, base)
        if bottom == 1:
            return self._looking_at(width, base)
        if bottom == 2:
            return self._marks_line(width, base)
        legend = legend_lines(width)
        if 3 <= bottom < 3 + len(legend):
            return self._text_line(legend[bottom - 3], width, base + Style(dim=True))
        index = self.row0 + y - _TOP
        if bottom > 0 or index >= len(timeline.rows):
            return Strip.blank(width, base)
        return self._task_line(timeline.rows[index], index, width, base)

    def _label(self, text: str, style: Style, width: int) -> Segment:
        name_width = self._name_width()
        if cell_len(text) > name_width - 1:
            text = text[: name_width - 2] + "…"
        return Segment(text.ljust(name_width) + " ", style)

    def _axis(self, width: int, base: Style) -> Strip:
        scale = self._scale
        dim = base + Style(dim=True)
        every = tick_every(scale.step)
        cells = [" "] * scale.cells
        cursor = scale.col(self._cursor_ts) - scale.col0
        last = scale.col(self._axis_end) - scale.col0
        t = math.ceil(scale.col0 * scale.step / every) * every
        while (col := round(t / scale.step) - scale.col0) <= min(last, scale.cells - 1):
            label = "╵" + span_text(t)
            free = all(c == " " for c in cells[max(0, col - 1) : col + len(label)])
            if col + len(label) <= scale.cells and free and not col <= cursor < col + len(label):
                cells[col : col + len(label)] = list(label)
            t += every
        segments = [self._label(f"{_step_text(scale.step)}/col", dim, width)]
        text = "".join(cells)
        if 0 <= cursor < scale.cells:
            accent = base + Style(
                color=self.app.theme_variables.get("accent", "#ff9e64"), bold=True
            )
            segments += [
                Segment(text[:cursor], dim),
                Segment("▼", accent),
                Segment(text[cursor + 1 :], dim),
            ]
        else:
            segments.append(Segment(text, dim))
        return Strip(segments).crop_extend(0, width, base)

    def _run_marks(self, width: int, base: Style) -> Strip:
        assert self.timeline is not None
        scale = self._scale
        cells: list[tuple[str, Style]] = [(" ", base)] * scale.cells
        amber = base + Style(color=self._colour("proposed"), bold=True)
        dim = base + Style(dim=True)
        for mark in self.timeline.marks:
            col = scale.col(mark.ts) - scale.col0
            if 0 <= col < scale.cells:
                style = dim if mark.by == "policy" else amber
                cells[col] = (MARK_GLYPHS.get(mark.kind, "•"), style)
        return self._strip(self._label("batches", dim, width), cells, width, base)

    def _task_line(self, row: Row, index: int, width: int, base: Style) -> Strip:
        scale = self._scale
        selected = row.task == self.selected
        name_style = base + Style(bold=selected)
        if selected:
            name_style = base + Style(
                bgcolor=self.app.theme_variables.get(
                    "primary" if self.has_focus else "panel-lighten-2", "blue"
                ),
                color=self.app.theme_variables.get(
                    "background" if self.has_focus else "foreground", "white"
                ),
                bold=True,
            )
        icon = ICONS.get(row.status, "?")
        name_seg = self._label(f"{icon} {row.task}", name_style, width)
        cells: list[tuple[str, Style]] = [(" ", base)] * scale.cells
        looked_at = (
            row.spans()[self.span] if selected and 0 <= self.span < len(row.spans()) else None
        )
        for wait in row.waits:
            glyph, colour = WAITS.get(wait.why, ("?", "pending"))
            style = base + Style(color=self._colour(colour), dim=colour in ("pending", "blocked"))
            if wait is looked_at:
                style += Style(reverse=True)
            self._fill(cells, wait.start, wait.end, glyph, style, keep=False)
        for bar in row.bars:
            status, cap = OUTCOMES.get(bar.outcome, ("pending", "?"))
            colour = self._colour(status)
            if bar.outcome == "conflict":
                colour = self.app.theme_variables.get("accent", colour)
            style = base + Style(color=colour)
            if bar is looked_at:
                style += Style(reverse=True)
            self._fill(cells, bar.start, bar.end, AROUND, style, keep=False)
            if bar.agent_start:
                self._fill(cells, bar.agent_start, bar.agent_end, AGENT, style, keep=False)
            end_col = scale.col(bar.end) - scale.col0
            if scale.col(bar.end) > scale.col(bar.start) and 0 <= end_col < scale.cells:
                cells[end_col] = (cap, base + Style(color=colour, bold=True))
        for mark in row.marks:
            if mark.kind == "approved" and mark.by == "policy":
                continue  # an automatic approval is the batch row's, not news here
            col = scale.col(mark.ts) - scale.col0
            if 0 <= col < scale.cells:
                colour = self._colour("failed" if mark.kind in ("kill", "finding") else "proposed")
                cells[col] = (
                    MARK_GLYPHS.get(mark.kind, "•"),
                    base + Style(color=colour, bold=True),
                )
        return self._strip(name_seg, cells, width, base)

    def _fill(
        self,
        cells: list[tuple[str, Style]],
        start: float,
        end: float,
        glyph: str,
        style: Style,
        *,
        keep: bool,
    ) -> None:
        """Paint ``[start, end)`` (at least one column) in the view's cells."""
        scale = self._scale
        first = scale.col(start) - scale.col0
        last = scale.col(end - scale.step * 1e-6) - scale.col0 if end > start else first
        last = max(first, last)
        for col in range(max(0, first), min(scale.cells, last + 1)):
            if not keep or cells[col][0] == " ":
                cells[col] = (glyph, style)

    def _agents(self, width: int, base: Style) -> Strip:
        assert self.timeline is not None
        scale = self._scale
        timeline = self.timeline
        dim = base + Style(dim=True)
        busy = base + Style(color=self._colour("running"), bold=True)
        idle = base + Style(color=self._colour("proposed"))
        cells: list[tuple[str, Style]] = []
        for col in range(scale.cells):
            t0 = scale.start + (scale.col0 + col) * scale.step
            if t0 >= timeline.end:
                cells.append((" ", base))
                continue
            n = timeline.agents_between(t0, t0 + scale.step)
            if n:
                cells.append((str(n) if n < 10 else "+", busy))
            else:
                cells.append(("·", idle))
        return self._strip(self._label(f"agents ≤{timeline.peak}", dim, width), cells, width, base)

    def _looking_at(self, width: int, base: Style) -> Strip:
        assert self.timeline is not None
        row = self._row()
        if row is None:
            return Strip.blank(width, base)
        spans = row.spans()
        if 0 <= self.span < len(spans):
            text = f"▸ {row.task}: {describe(spans[self.span], self.timeline.start)}"
        elif spans:
            text = f"{row.task} ({row.status}): {describe(spans[-1], self.timeline.start)}"
        else:
            text = f"{row.task} ({row.status}): has not waited or run yet"
        return self._text_line(text, width, base + Style(bold=True))

    def _marks_line(self, width: int, base: Style) -> Strip:
        assert self.timeline is not None
        row = self._row()
        marks: tuple[TimelineMark, ...] = row.marks if row else ()
        parts = [
            f"{MARK_GLYPHS.get(m.kind, '•')} {span_text(m.ts - self.timeline.start)} {m.detail}"
            for m in marks
            if not (m.kind == "approved" and m.by == "policy")
        ]
        hint = "shift+←→ bars · z Z zoom · g back"
        text = "  ".join(parts[-3:]) if parts else hint
        return self._text_line(text, width, base + Style(dim=not parts))

    def _text_line(self, text: str, width: int, style: Style) -> Strip:
        if cell_len(text) > width:
            text = text[: max(0, width - 1)] + "…"
        return Strip([Segment(text, style)]).crop_extend(0, width, style)

    def _strip(
        self, name: Segment, cells: list[tuple[str, Style]], width: int, base: Style
    ) -> Strip:
        segments = [name]
        for glyph, style in cells:
            if segments and segments[-1].style == style and len(segments) > 1:
                segments[-1] = Segment(segments[-1].text + glyph, style)
            else:
                segments.append(Segment(glyph, style))
        return Strip(segments).crop_extend(0, width, base)


def _step_text(step: float) -> str:
    if step < 1:
        return f"{step:g}s"
    if step < 60:
        return f"{step:.0f}s"
    if step < 3600:
        return f"{step / 60:.0f}m"
    return f"{step / 3600:.0f}h"


__all__ = ["Bar", "TimelineView", "Wait"]
