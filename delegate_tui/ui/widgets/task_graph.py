"""The task graph: every task by dependency layer, its status, and its relations.

Tasks are grouped by layer (layer n depends only on layers before it) and
each row names the task's parents, so a task with two parents reads as such.
Selecting a task marks what it depends on (↑) and what depends on it (↓).
Drawn with the Line API; it posts :class:`TaskGraph.TaskSelected` when the
cursor moves and never reaches into other widgets.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding
from textual.geometry import Region
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from delegate_tui.core import graph
from delegate_tui.core.metrics import cost_text, unpriced_models
from delegate_tui.core.state import RunState
from delegate_tui.ui.style import ICONS, clock, set_virtual_height, status_style, task_elapsed


@dataclass(frozen=True, slots=True)
class _Row:
    kind: str  # "layer" | "task"
    key: str  # layer label or task id


class TaskGraph(ScrollView, can_focus=True):
    """Tasks by dependency layer, with a cursor."""

    BINDINGS = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("home", "cursor(-100000)", show=False),
        Binding("end", "cursor(100000)", show=False),
    ]

    class TaskSelected(Message):
        """The cursor moved to a task."""

        def __init__(self, task_id: str) -> None:
            super().__init__()
            self.task_id = task_id

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.state: RunState | None = None
        self.rows: list[_Row] = []
        self.selected: str = ""
        self.in_batch: set[str] = set()
        """Tasks of the waiting batch the operator keeps in it (marked ●)."""
        self.left_out: set[str] = set()
        """Tasks of the waiting batch the operator unticked (marked ○)."""
        self._related_up: set[str] = set()
        self._related_down: set[str] = set()
        self._deps: dict[str, tuple[str, ...]] = {}
        self._row_of: dict[str, int] = {}  # task id -> its row
        self._order: list[str] = []  # the tasks, top to bottom
        self._place: dict[str, int] = {}  # task id -> its place in _order
        self.now = 0.0
        self._signature: object = None
        self._base: Style | None = None

    # ------------------------------------------------------------ data

    def set_state(self, state: RunState, now: float) -> None:
        """Attributes down: the screen hands in the state to draw, and the time."""
        first = self.state is None or not self.rows
        self.state = state
        self.now = now
        if state.plan is not None and (first or len(self._deps) != len(state.plan.tasks)):
            self._deps = dict(state.plan.deps)
            self.rows = []
            for index, layer in enumerate(graph.layers(self._deps)):
                self.rows.append(_Row("layer", f"layer {index}"))
                self.rows += [_Row("task", task_id) for task_id in layer]
            self._row_of = {r.key: i for i, r in enumerate(self.rows) if r.kind == "task"}
            self._order = list(self._row_of)  # the tasks top to bottom, for the cursor keys
            self._place = {task_id: i for i, task_id in enumerate(self._order)}
            set_virtual_height(self, len(self.rows))
            if not self.selected and state.plan.tasks:
                self.select(state.plan.tasks[0].id)
        # Repaint only when something a row shows has changed (a new selection
        # repaints its own rows: select).
        signature = (
            tuple(
                (
                    t.status,
                    len(t.attempts),
                    int(task_elapsed(t, state.finished_ts or now)),
                    cost_text(t.cost_usd, t.cost_source),
                )
                for t in state.tasks.values()
            ),
            tuple(sorted(self.in_batch)),
            tuple(sorted(self.left_out)),
            self.has_focus,
            self.app.theme,
        )
        if signature != self._signature:
            self._signature = signature
            self.refresh()

    def select(self, task_id: str, *, post: bool = True) -> None:
        """Move the cursor to a task.

        Only the rows that change are drawn again (the cursor's old and new rows, and
        the ↑ ↓ marks of both): the key's frame then costs a few rows, not the list."""
        if task_id not in self._deps:
            return
        before = {self.selected, *self._related_up, *self._related_down}
        self.selected = task_id
        self._related_up = graph.ancestors(self._deps, task_id)
        self._related_down = graph.descendants(self._deps, task_id)
        row = self._row_of[task_id]
        if self.scroll_to_region_row(row):
            self.refresh()
        else:
            for changed in before | {task_id} | self._related_up | self._related_down:
                if changed in self._row_of:
                    self.refresh_line(self._row_of[changed])
        if post:
            self.post_message(self.TaskSelected(task_id))

    def scroll_to_region_row(self, row: int) -> bool:
        """Keep a row (and its layer heading) in view; True when that scrolls."""
        top = self.scroll_y
        height = max(1, self.size.height)
        if row - 1 < top:
            self.scroll_to(y=max(0, row - 1), animate=False)
            return True
        if row >= top + height:
            self.scroll_to(y=row - height + 1, animate=False)
            return True
        return False

    def action_cursor(self, step: int) -> None:
        tasks = self._order
        if not tasks:
            return
        index = self._place.get(self.selected, 0)
        self.select(tasks[max(0, min(len(tasks) - 1, index + step))])

    def on_click(self, event: object) -> None:
        y = int(getattr(event, "y", 0) + self.scroll_y)
        if 0 <= y < len(self.rows) and self.rows[y].kind == "task":
            self.select(self.rows[y].key)

    def on_resize(self) -> None:
        set_virtual_height(self, len(self.rows))

    # ------------------------------------------------------------ drawing

    def render_lines(self, crop: Region) -> list[Strip]:
        """Textual's one call per repaint: the base style is worked out once for it
        (``rich_style`` walks every ancestor's styles)."""
        self._base = self.rich_style
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        index = int(self.scroll_y) + y
        width = self.size.width
        base = self._base if self._base is not None else self.rich_style
        if index >= len(self.rows) or self.state is None:
            return Strip.blank(width, base)
        row = self.rows[index]
        if row.kind == "layer":
            label = f" {row.key} "
            dim = base + Style(dim=True)
            return Strip(
                [Segment("─" + label + "─" * max(0, width - len(label) - 1), dim)]
            ).crop_extend(0, width, base)
        return self._task_line(row.key, width, base)

    def _task_line(self, task_id: str, width: int, base: Style) -> Strip:
        assert self.state is not None and self.state.plan is not None
        task = self.state.tasks.get(task_id)
        status = task.status if task else "pending"
        spec = self.state.plan.task(task_id)
        selected = task_id == self.selected
        variables = self.app.theme_variables
        row_style = base
        if selected:
            row_style = base + Style(
                bgcolor=variables.get("primary" if self.has_focus else "panel-lighten-2", "blue"),
                color=variables.get("background" if self.has_focus else "foreground", "white"),
            )
        dim = Style() if selected else Style(dim=True)
        accent = Style(color=self.app.theme_variables.get("accent", "#ff9e64"), bold=True)
        if task_id in self._related_up:
            gutter = Segment("↑", row_style + accent)
        elif task_id in self._related_down:
            gutter = Segment("↓", row_style + accent)
        elif task_id in self.in_batch:
            gutter = Segment("●", row_style + status_style(self.app, "proposed", bold=True))
        elif task_id in self.left_out:
            gutter = Segment("○", row_style + status_style(self.app, "skipped"))
        else:
            gutter = Segment(" ", row_style)
        if selected:
            icon_style = row_style + Style(bold=True)  # status colour would vanish on the bar
        else:
            icon_style = row_style + status_style(self.app, status, bold=True)
        icon = Segment(ICONS.get(status, "?") + " ", icon_style)
        elapsed = (
            clock(task_elapsed(task, self.state.finished_ts or self.now))
            if task and task.attempts
            else ""
        )
        tries = f" #{len(task.attempts)}" if task and len(task.attempts) > 1 else ""
        agent = self.state.plan.agent_of(spec)
        spent = (
            cost_text(task.cost_usd, task.cost_source, bool(unpriced_models([task])))
            if task
            else ""
        )
        right = f"{spent + ' ' if spent and width >= 28 else ''}{elapsed}{tries}"
        longest = max((len(t) for t in self._deps), default=8)
        name_width = max(6, min(longest, width - 4 - len(right), max(12, width // 2)))
        name = task_id if len(task_id) <= name_width else task_id[: name_width - 1] + "…"
        segments = [gutter, icon, Segment(name.ljust(name_width), row_style + Style(bold=selected))]
        space = max(0, width - 3 - name_width - len(right) - 1)
        extra = ""
        if spec.depends_on:
            extra = " ← " + ", ".join(spec.depends_on)
        if len(extra) + len(agent) + 1 <= space:
            extra = f" {agent}{extra}"
        if len(extra) > space:
            extra = extra[: max(0, space - 1)] + "…" if space > 1 else ""
        segments.append(Segment(extra.ljust(space), row_style + dim))
        segments.append(Segment(" " + right, row_style))
        return Strip(segments).crop_extend(0, width, base)
