"""The agent grid: which tasks have a pane, in what grid, and when each pane redraws.

Owns the panes' lifecycle (mounted when a task is shown, removed when it is
not, all dropped when a replay seeks), their titles, the grid's shape (a pane
is never squeezed under :data:`MIN_PANE_COLS` columns or :data:`MIN_PANE_ROWS`
rows: panes stack in one column, and the running agents that do not fit are
named under the grid), and the redraw budget
that keeps keys responsive while agents flood output: a pane redraws at once
after a quiet spell, at most ten times a second while output trickles, under a
flood four times a second for the selected pane and once for the others, flooded
panes on the same ticks (one frame, not eight), one tick
parses for a bounded time, and nothing redraws just after a key press. The screen hands down the state, the selection and the
zoom (attributes down); panes pull their output from the context's store.
"""

from __future__ import annotations

import math
import time

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Container
from textual.css.query import NoMatches
from textual.widgets import Static

from delegate_tui.core.events import ACTIVE_STATUSES
from delegate_tui.core.metrics import cost_text, tokens_text, unpriced_models
from delegate_tui.core.state import RunState
from delegate_tui.ui.context import ScreenContext
from delegate_tui.ui.style import (
    ICONS,
    clock,
    health_text,
    run_ended,
    task_elapsed,
    update_if_changed,
)
from delegate_tui.ui.widgets.agent_pane import AgentPane, OutputStore

#: Tasks the end screen lists by how they ended (``stats`` lists every one).
HEALTH_LINES = 12
#: Rows a pane needs to be worth showing (border, title, six lines of output).
MIN_PANE_ROWS = 8
#: Columns a pane needs to be readable: agents print lines of 60 to 100 cells, and a
#: narrower pane cuts every one of them. Panes stack in one column below this.
MIN_PANE_COLS = 60
#: The gap between two columns of panes (``grid-gutter`` in app.tcss).
GUTTER_COLS = 1
#: A pane redraws at most this often while output trickles in; at once (the next
#: tick) when it has been quiet that long.
PANE_INTERVAL_S = 0.1
#: Under a flood (this many new bytes in a pane since its last redraw) the selected
#: pane redraws four times a second and the others once: no one reads 4,000 lines
#: a second, and the loop's time is better spent on keys (a frame with eight panes
#: costs 11-14 ms of CPU, one with the selected pane alone 2-3 ms). Flooded panes
#: redraw on the same ticks (their redraws fall on the same quarter seconds, the
#: others' on the whole second), so a flood of eight panes costs one frame a second
#: with all of them and three with the selected one, not a frame on every tick
#: with two panes in it.
FLOOD_BYTES = 16 * 1024
FLOOD_INTERVAL_S = 0.25
FLOOD_OTHERS_S = 1.0
#: Slower steps when the loop lags (the machine is busy); each divides a second, so
#: panes on different steps still redraw together.
LAG_INTERVALS_S = (0.25, 0.5, 1.0)
#: The refresh tick (the app's timer: 20 a second).
TICK_S = 0.05
#: Parsing time one refresh tick may spend on panes before the rest wait a tick.
SYNC_BUDGET_S = 0.025
#: After a key press, panes that have drawn before wait this long to redraw: the
#: frame that shows the key's effect then carries no agent output and is drawn at
#: once (input first, as a terminal would). Output is not lost, only shown later.
INPUT_QUIET_S = 0.2


def next_redraw(tick: float, interval: float) -> float:
    """When a pane that redrew at ``tick`` may redraw next: the boundary of
    ``interval`` seconds (on the monotonic clock) half an interval or more away, so
    panes redraw on shared ticks and none more than twice as often as ``interval``."""
    return (math.floor((tick + interval / 2) / interval) + 1) * interval


def redraw_interval(flooding: bool, lag: float, *, selected: bool = True) -> float:
    """How long a pane waits between redraws: longer under a flood (longer still for
    a pane not selected) and while the loop lags behind its ticks (``lag``: seconds
    late), never over a second."""
    interval = PANE_INTERVAL_S
    if flooding:
        interval = FLOOD_INTERVAL_S if selected else FLOOD_OTHERS_S
    if lag * 4 <= interval:
        return interval
    return next((step for step in LAG_INTERVALS_S if step >= lag * 4), LAG_INTERVALS_S[-1])


def grid_shape(count: int, width: int, height: int) -> tuple[int, int]:
    """Columns and rows for up to ``count`` panes in a ``width`` x ``height`` area.

    As many columns as keep each pane at least :data:`MIN_PANE_COLS` wide (one
    at least, however narrow), as many rows as keep each at least
    :data:`MIN_PANE_ROWS` high (one at least), and never more cells than panes.
    """
    if count <= 0:
        return (0, 0)
    fit_columns = max(1, (width + GUTTER_COLS) // (MIN_PANE_COLS + GUTTER_COLS))
    fit_rows = max(1, height // MIN_PANE_ROWS)
    columns = min(count, fit_columns)
    rows = min(fit_rows, math.ceil(count / columns))
    return (columns, rows)


class AgentGrid(Container):
    """The panes of the running (and the selected) tasks, in a grid."""

    def __init__(self, context: ScreenContext, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.context = context
        self.panes: dict[str, AgentPane] = {}
        """Task id -> its pane, for the tasks shown."""
        self._empty = Static(id="panes-empty")
        self._last_tick = 0.0
        self._grid: tuple[int, int] = (0, 0)
        self.off_screen: list[str] = []
        """Running tasks with no pane: the grid is full (named under it)."""

    def compose(self) -> ComposeResult:
        yield self._empty

    def on_mount(self) -> None:
        self.border_title = "Agents"
        self.watch(self.app, "theme", self._theme_changed, init=False)

    def on_resize(self) -> None:
        """How many panes fit changed: lay them out again at the next tick."""
        self.context.request_refresh()

    def _theme_changed(self) -> None:
        for pane in self.panes.values():
            pane.forget_drawing()

    def pane(self, task_id: str) -> AgentPane | None:
        """The shown pane of ``task_id``, if it has one."""
        return self.panes.get(task_id)

    def reset(self) -> None:
        """Drop every pane: they are rebuilt from the (replaced) state on the next show."""
        for pane in self.panes.values():
            pane.remove()
        self.panes.clear()

    # ------------------------------------------------------------ layout

    def area(self) -> tuple[int, int]:
        """The width and height panes share: the grid's own, or (before its first
        layout) the screen's less the columns and rows around the grid."""
        width, height = self.size
        if width and height:
            return width, height
        screen = self.screen.size
        return max(1, screen.width - 2 * 36), max(1, screen.height - 4)

    def shown_tasks(self, state: RunState, selected: str, zoomed: bool) -> list[str]:
        """The tasks that get a pane: the selected one (if it ran), then the active ones,
        as many as the grid holds at a readable size (:func:`grid_shape`).

        Zoomed, only the selected task's pane (or, when it never ran, the first one).
        The active tasks left out are :attr:`off_screen`.
        """
        order = [t.id for t in state.plan.tasks] if state.plan else []
        active = [t for t in order if state.tasks[t].status in ACTIVE_STATUSES]
        shown = [t for t in active if t != selected]
        if selected and state.tasks.get(selected) and state.tasks[selected].attempts:
            shown.insert(0, selected)
        if zoomed:
            kept = shown[:1]
        else:
            columns, rows = grid_shape(len(shown), *self.area())
            kept = shown[: columns * rows]
        self.off_screen = [t for t in active if t not in kept]
        return kept

    def show(
        self,
        state: RunState,
        now: float,
        *,
        selected: str,
        zoomed: bool,
        left_out: set[str] | None = None,
    ) -> None:
        """Mount and remove panes for what is shown, lay out the grid, redraw within budget.

        ``left_out``: the waiting batch's tasks the operator unticked (the message
        shown while no agent runs names only the tasks approving would start)."""
        wanted = self.shown_tasks(state, selected, zoomed)
        for task_id in [t for t in self.panes if t not in wanted]:
            self.panes.pop(task_id).remove()
        new: list[AgentPane] = []
        for task_id in wanted:
            if task_id not in self.panes:
                try:  # its last pane is still being removed (a seek, a quick comeback)
                    self.get_child_by_id(AgentPane.id_for(task_id))
                    # Mount it next tick, and ask for that tick: a paused replay
                    # with nothing running would not redraw by itself.
                    self.context.request_refresh()
                    continue
                except NoMatches:
                    pass
                pane = AgentPane(task_id, self.store_for(task_id), self.context.scrollback)
                self.panes[task_id] = pane
                new.append(pane)
        if new:  # all at once: one layout for them (mounted one by one, a layout each)
            self.mount_all(new)
        wanted = [t for t in wanted if t in self.panes]
        self._arrange(state, len(wanted), zoomed, left_out or set())
        self._redraw(state, wanted, now, selected)

    def _redraw(self, state: RunState, wanted: list[str], now: float, selected: str) -> None:
        """Parse new output into the panes that are due, and retitle them.

        A pane redraws at most :data:`PANE_INTERVAL_S` apart (:data:`FLOOD_INTERVAL_S`
        under a flood, longer while the loop lags), on boundaries it shares with the
        others, and not at all for :data:`INPUT_QUIET_S` after a key. One tick parses
        for at most :data:`SYNC_BUDGET_S`; the panes left wait for the next tick."""
        tick = time.monotonic()
        typing = tick - self.context.last_input < INPUT_QUIET_S
        lag = tick - self._last_tick - TICK_S if self._last_tick else 0.0
        self._last_tick = tick
        started = time.perf_counter()
        synced: set[str] = set()
        highlight = selected if len(wanted) > 1 else ""
        moved = any(
            pane.has_class("selected") != (t == highlight) for t, pane in self.panes.items()
        )
        chosen = self.panes.get(selected)
        if moved and chosen is not None:
            # The newly selected pane takes the selected pane's pace at once.
            chosen.next_sync = min(chosen.next_sync, next_redraw(tick, FLOOD_INTERVAL_S))
        for task_id in wanted:
            pane = self.panes[task_id]
            pane.use_store(self.store_for(task_id))
            fresh = pane.buffer.bytes_fed == 0
            if not fresh and (
                typing or tick < pane.next_sync or time.perf_counter() - started > SYNC_BUDGET_S
            ):
                continue
            flooding = pane.store.size_since(task_id, pane.seq) > FLOOD_BYTES
            if pane.sync():
                synced.add(task_id)
                interval = redraw_interval(flooding, lag, selected=task_id == selected)
                pane.next_sync = next_redraw(tick, interval)
        # Due but left for the next tick (the tick's parsing budget was spent) is not
        # enough: its redraw comes a tick later, and the highlight waits for it.
        # (Whether it is idle is asked last: it walks the pane's store.)
        if (
            moved
            and not typing
            and (
                chosen is None
                or selected in synced
                or (
                    tick >= chosen.next_sync
                    and (
                        chosen.buffer.bytes_fed == 0
                        or chosen.store.size_since(selected, chosen.seq) == 0
                    )
                )
            )
        ):
            # The highlight moves (a new border repaints the whole pane) after the key's
            # frame, and under a flood with the selected pane's next redraw, not in a
            # frame of its own.
            for task_id, pane in self.panes.items():
                pane.set_class(task_id == highlight, "selected")
        # A new title repaints the whole pane. What changes its meaning (status,
        # attempt, pid) shows at once, as does a new subtitle (scrolled, searching);
        # its clock and CPU figures (which step once a second, all together: the app
        # hands down whole seconds) wait while the operator types, and a flooded pane's
        # wait for its next redraw (the wall clock's seconds are not the redraws'
        # ticks: a pane redrawn once a second would be repainted twice).
        for task_id in wanted:
            pane = self.panes[task_id]
            title, subtitle = self._title(state, task_id, now), _subtitle(pane, state)
            if pane.border_subtitle != subtitle:
                pane.border_subtitle = subtitle
            if pane.border_title == title:
                continue
            meaning = _meaning(state, task_id)
            if meaning != pane.title_meaning or task_id in synced:
                pane.title_meaning = meaning
            elif typing or tick < pane.next_sync:
                continue
            pane.border_title = title

    def show_waiting(self, text: str) -> None:
        """No run to show yet: say why in the middle of the grid (starting, connecting)."""
        self.set_class(True, "empty")
        if not self._empty.display:
            self._empty.display = True
        message = Text(justify="center")
        message.append(text[:1].upper() + text[1:], Style(bold=True))
        update_if_changed(self._empty, message)

    def store_for(self, task_id: str) -> OutputStore:
        """Where a task's pane reads: its transcript when its agent has a structured
        stream (unless the operator asked for raw output), else its raw output."""
        context = self.context
        if not context.show_raw and context.transcripts.has(task_id):
            return context.transcripts
        return context.store

    def _arrange(self, state: RunState, count: int, zoomed: bool, left_out: set[str]) -> None:
        """The grid's shape for ``count`` panes, or the message shown when there are none."""
        if count:
            grid = grid_shape(count, *self.area())
            if grid != self._grid:  # a style change costs a layout: only on change
                self._grid = grid
                self.styles.grid_size_columns, self.styles.grid_size_rows = grid
        self.set_class(not count, "empty")
        empty = self._empty
        if empty.display != (not count):
            empty.display = not count
        if not count:
            update_if_changed(empty, _empty_message(state, left_out))
        subtitle = _grid_subtitle(self.off_screen, zoomed and bool(count))
        if self.border_subtitle != subtitle:
            self.border_subtitle = subtitle

    def _title(self, state: RunState, task_id: str, now: float) -> str:
        task = state.tasks[task_id]
        attempt = task.attempt
        parts = [f"{ICONS.get(task.status, '?')} {task_id}"]
        if state.plan:
            parts.append(state.plan.agent_of(state.plan.task(task_id)))
        if stale_input(state, task_id):
            parts.append("⚠ stale input")
        if attempt is not None:
            # What matters most first: a narrow pane cuts its title from the end.
            if len(task.attempts) > 1:
                parts.append(f"attempt {attempt.number}")
            parts.append(clock(task_elapsed(task, state.finished_ts or now)))
            used = " ".join(
                part
                for part in (
                    cost_text(task.cost_usd, task.cost_source, bool(unpriced_models([task]))),
                    tokens_text(task.tokens),
                )
                if part
            )
            if used:
                parts.append(used)
        if task.status not in ACTIVE_STATUSES:
            parts.append(task.status)
        elif attempt is not None:
            if attempt.node:  # on a cluster node: where, not a pid of this machine's
                parts.append(f"on {attempt.node}")
            elif attempt.pid:
                parts.append(f"pid {attempt.pid}")
            stats = None if attempt.node else self.context.proc_stats.get(attempt.pid)
            if stats is not None:
                parts.append(f"{stats.cpu_percent:.0f}% {stats.rss_bytes / 1e6:.0f} MB")
        return " · ".join(parts)


def _meaning(state: RunState, task_id: str) -> tuple[object, ...]:
    """What a pane's title says apart from its clock and CPU figures."""
    task = state.tasks[task_id]
    attempt = task.attempt
    return (
        task.status,
        attempt.number if attempt else 0,
        attempt.pid if attempt else 0,
        attempt.node if attempt else "",
        stale_input(state, task_id),
    )


def stale_input(state: RunState, task_id: str) -> bool:
    """An open stale-input finding says a merge changed what ``task_id`` read."""
    return any(
        f.kind == "stale-input" and f.tasks[:1] == (task_id,) for f in state.findings.values()
    )


def _grid_subtitle(off_screen: list[str], zoomed: bool) -> str:
    """Under the grid: the running agents that have no pane, and how to get back."""
    parts = ["zoomed · z: all panes"] if zoomed else []
    if off_screen:
        parts.append(f"also running: {', '.join(off_screen)} (↑↓ to show)")
    return " · ".join(parts)


def _subtitle(pane: AgentPane, state: RunState) -> str:
    held = " · new output waits" if pane.held else ""
    if pane.search:
        return f"/{pane.search}: {len(pane.matches)} match(es) · n N{held}"
    if not pane.follow:
        return f"scrolled{held} · G to follow"
    task = state.tasks.get(pane.task_id)
    attempt = task.attempt if task else None
    if task is not None and attempt is not None and task.status == "running" and attempt.activity:
        return attempt.activity[:120]  # what its agent does now, by its own stream
    return ""


def _empty_message(state: RunState, left_out: set[str]) -> Text:
    text = Text(justify="center")
    text.append("No agent is running.\n\n", Style(bold=True))
    if state.proposal is not None and state.proposal.needs_approval:
        kept = [t for t in state.proposal.tasks if t not in left_out]
        text.append(f"Batch {state.proposal.batch} waits for you: ", Style())
        text.append(", ".join(kept) or "every task left out", Style(bold=True))
        if len(kept) < len(state.proposal.tasks):
            dropped = [t for t in state.proposal.tasks if t in left_out]
            text.append(f" ({', '.join(dropped)} left out)", Style(dim=True))
        text.append(
            "\npress a to approve it, space to tick or untick the selected task, h to hold."
        )
    elif state.finished:
        text.append(f"{run_ended(state)}\n\n")
        text.append_text(health_text(state, HEALTH_LINES))
        text.append("\nSelect a task to read its output; q quits.")
    elif state.paused:
        text.append("Scheduling is paused: p resumes.")
    else:
        text.append("Select a task (↑ ↓) to read its output.")
    return text
