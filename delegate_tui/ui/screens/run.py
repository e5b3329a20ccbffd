"""The run screen: header, task graph, agent panes, conflict sidebar, batch bar.

Owns the layout and the operator's keys. It hands state down to its widgets
(attributes down), hears their messages (messages up), and turns keys into
commands on the event source; whether a command is allowed is the engine's
answer, shown as a toast. In replay the source is read-only and commands say
so instead of acting.
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Group, RenderableType
from rich.style import Style
from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Footer, Static

from delegate_tui.core import attention, batching, metrics, workspace
from delegate_tui.core.events import ACTIVE_STATUSES, RETRYABLE_STATUSES
from delegate_tui.core.prompts import failure_summary, tail_text
from delegate_tui.core.replay import REFUSED, ReplaySource
from delegate_tui.core.state import RunState, TaskState
from delegate_tui.ui.details import help_text, task_details
from delegate_tui.ui.screens.dialogs import (
    ConfirmDialog,
    LineDialog,
    RetryDialog,
    RetryRequest,
    TextScreen,
)
from delegate_tui.ui.style import ICONS, clock, task_elapsed, update_if_changed
from delegate_tui.ui.widgets.agent_pane import AgentPane
from delegate_tui.ui.widgets.batch_bar import BatchBar
from delegate_tui.ui.widgets.conflict_sidebar import ConflictSidebar
from delegate_tui.ui.widgets.header import RunHeader
from delegate_tui.ui.widgets.replay_bar import ReplayBar
from delegate_tui.ui.widgets.task_graph import TaskGraph

if TYPE_CHECKING:
    from delegate_tui.ui.app import DelegateApp

#: Rows a pane needs to be worth showing (border, title, a few lines).
MIN_PANE_ROWS = 7
#: Operator commands: refused in a replay (hidden from its footer; their keys say why).
LIVE_ONLY_ACTIONS = frozenset(
    {"approve", "toggle_task", "hold", "kill", "retry", "skip", "input", "merge", "finish", "end"}
)
#: Fastest pane redraw; slower when a redraw costs more (see _layout_panes).
PANE_INTERVAL_S = 0.1
#: Under a flood (this many new bytes across the shown panes since their last
#: redraw) panes redraw about three times a second: no one reads 4,000 lines a
#: second, and the loop's time is better spent reading the agents.
FLOOD_BYTES = 64 * 1024
FLOOD_INTERVAL_S = 0.33
#: Parsing time one refresh tick may spend on panes before yielding, and how many
#: panes one tick may redraw: a frame with eight busy panes costs about 100 ms on
#: two cores, and a key pressed meanwhile waits for it.
SYNC_BUDGET_S = 0.012
SYNCS_PER_TICK = 2
#: After a key press, panes that have drawn before wait this long to redraw: the
#: frame that shows the key's effect then carries no agent output and is drawn at
#: once (input first, as a terminal would). Output is not lost, only shown later.
INPUT_QUIET_S = 0.2


class RunScreen(Screen[None]):
    """The one screen of a run, live or replayed."""

    BINDINGS = [
        Binding("a", "approve(False)", "Approve", id="approve"),
        Binding("A", "approve(True)", "Approve all", id="approve_all", show=False),
        Binding("space", "toggle_task", "Toggle", id="toggle", show=False),
        Binding("h", "hold", "Hold", id="hold", show=False),
        Binding("enter", "details", "Details", id="details"),
        Binding("k", "kill", "Kill", id="kill"),
        Binding("r", "retry", "Retry", id="retry"),
        Binding("s", "skip", "Skip", id="skip"),
        Binding("p", "pause", "Pause", id="pause"),
        Binding("i", "input", "Input", id="input", show=False),
        Binding("slash", "search", "Search", id="search", show=False),
        Binding("n", "next_match(1)", "Next match", show=False),
        Binding("N", "next_match(-1)", "Previous match", show=False),
        Binding("z", "zoom", "Zoom", id="zoom"),
        Binding("m", "merge", "Merge", id="merge", show=False),
        Binding("f", "finish", "Finish", id="finish", show=False),
        Binding("e", "end", "End run", id="end", show=False),
        Binding("o", "copy_path", "Copy path", id="copy_path", show=False),
        Binding("c", "sidebar", "Sidebar", id="sidebar", show=False),
        Binding("d", "diff", "Diff", id="diff", show=False),
        Binding(
            "right_square_bracket", "finding(1)", "Next collision", id="next_finding", show=False
        ),
        Binding(
            "left_square_bracket",
            "finding(-1)",
            "Previous collision",
            id="previous_finding",
            show=False,
        ),
        Binding("pageup", "scroll_pane(-1)", "Scroll up", show=False),
        Binding("pagedown", "scroll_pane(1)", "Scroll down", show=False),
        Binding("G", "follow", "Follow", show=False),
        Binding("t", "app.next_theme", "Theme", id="theme", show=False),
        Binding("left", "replay_seek(-10)", "−10 s", show=False),
        Binding("right", "replay_seek(10)", "+10 s", show=False),
        Binding("comma", "replay_step(-1)", "Back one event", show=False),
        Binding("full_stop", "replay_step(1)", "One event", show=False),
        Binding("less_than_sign", "replay_edge(0)", "Start", show=False),
        Binding("greater_than_sign", "replay_edge(1)", "End", show=False),
        Binding("plus,equals_sign", "replay_speed(1)", "Faster", show=False),
        Binding("minus", "replay_speed(-1)", "Slower", show=False),
        Binding("ctrl+left", "replay_jump('notable', -1)", "Previous notable", show=False),
        Binding("ctrl+right", "replay_jump('notable', 1)", "Next notable", show=False),
        Binding("F", "replay_jump('failure', 1)", "Next failure", show=False),
        Binding("C", "replay_jump('conflict', 1)", "Next conflict", show=False),
        Binding("question_mark", "help", "Help", id="help"),
        Binding("q", "app.request_quit", "Quit", id="quit"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.selected = ""
        self.excluded: set[str] = set()
        self.zoomed = False
        self.sidebar_forced: bool | None = None
        self.panes: dict[str, AgentPane] = {}
        self._overlaps: list[tuple[str, str, str]] | None = None
        self._last_batch = 0
        self._findings = 0
        self._ready = False
        self._sync_cursor = 0
        self.finding = ""  # key of the collision the operator stepped to ([ ])
        self._last_tick = 0.0
        self._grid: tuple[int, int] = (0, 0)

    @property
    def delegate(self) -> DelegateApp:
        """The app, typed."""
        from delegate_tui.ui.app import DelegateApp

        assert isinstance(self.app, DelegateApp)
        return self.app

    def compose(self) -> ComposeResult:
        yield RunHeader(id="header")
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield TaskGraph(id="graph")
            with Container(id="panes"):
                yield Static(id="panes-empty")
            with VerticalScroll(id="sidebar"):
                yield ConflictSidebar(id="conflicts")
        yield BatchBar(id="batch")
        yield ReplayBar(id="replay")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(ReplayBar).display = self.delegate.read_only
        self._ready = True
        self.query_one(TaskGraph).focus()
        self.query_one("#sidebar").border_title = "Conflicts"
        self.query_one("#panes").border_title = "Agents"
        self.query_one("#left").border_title = "Tasks"

    # ------------------------------------------------------------ refresh

    @property
    def state(self) -> RunState:
        """The run's state (owned by the source; read only here)."""
        return self.delegate.source.state

    def on_unmount(self) -> None:
        self._ready = False

    def refresh_view(self, *, now: float) -> None:
        """Redraw everything from state (called by the app's timer)."""
        if not self._ready:
            return
        with contextlib.suppress(NoMatches):  # the app is closing; widgets are gone
            self._refresh_view(now)

    def _refresh_view(self, now: float) -> None:
        state = self.state
        replay = self._replay()
        if replay is not None:
            self.query_one(ReplayBar).show(
                replay.position,
                playing=replay.playing,
                speed=replay.speed,
                real_time=replay.real_time,
            )
        if state.plan is None or not self._ready:
            return
        graph = self.query_one(TaskGraph)
        proposal = state.proposal
        if proposal is not None and proposal.batch != self._last_batch:
            self._last_batch = proposal.batch
            self.excluded = set()
        graph.in_batch = (
            set(proposal.tasks) if proposal is not None and proposal.needs_approval else set()
        )
        graph.set_state(state, now)
        if not self.selected and graph.selected:
            self.selected = graph.selected
        self.query_one(BatchBar).show(
            proposal, self.excluded, self._batch_warnings(state), self.delegate.keys_for_hints()
        )
        if self._overlaps is None:
            self._overlaps = batching.declared_overlaps(state.plan, state.isolation or "worktree")
        self._findings = self.query_one(ConflictSidebar).show(
            state, self._overlaps, self.selected, self.finding
        )
        sidebar_title = f"Conflicts ({self._findings})" if self._findings else "Conflicts"
        sidebar = self.query_one("#sidebar")
        if sidebar.border_title != sidebar_title:  # each assignment repaints the sidebar
            sidebar.border_title = sidebar_title
        saved = metrics.compute(state, now).time_saved_s
        mode = "replay" if self.delegate.read_only else ""
        self.query_one(RunHeader).show(
            state,
            now=now,
            saved_s=saved,
            attention=attention.needs_attention(state, now),
            mode=mode,
        )
        self._layout_panes(state, now)

    def _batch_warnings(self, state: RunState) -> list[str]:
        """Open collisions involving a task of the waiting batch."""
        proposal = state.proposal
        if proposal is None:
            return []
        members = set(proposal.tasks) - self.excluded
        return [
            f"{f.kind}: {' ✕ '.join(f.tasks)} on {', '.join(f.paths)}"
            for f in state.findings.values()
            if members & set(f.tasks)
        ]

    def _visible_panes(self, state: RunState) -> list[str]:
        order = [t.id for t in state.plan.tasks] if state.plan else []
        if self.zoomed and self.selected:
            return [self.selected]
        active = [t for t in order if state.tasks[t].status in ACTIVE_STATUSES]
        shown = [t for t in active if t != self.selected]
        if self.selected and state.tasks.get(self.selected) and state.tasks[self.selected].attempts:
            shown.insert(0, self.selected)
        width, height = self.size.width, self.size.height
        columns = 1 if width < 110 else 2 if width < 180 else 3
        rows = max(1, (height - 4) // MIN_PANE_ROWS)
        return shown[: columns * rows]

    def _layout_panes(self, state: RunState, now: float) -> None:
        container = self.query_one("#panes", Container)
        wanted = self._visible_panes(state)
        for task_id in [t for t in self.panes if t not in wanted]:
            self.panes.pop(task_id).remove()
        for task_id in wanted:
            if task_id not in self.panes:
                try:  # its last pane is still being removed (a seek, a quick comeback)
                    container.get_child_by_id(AgentPane.id_for(task_id))
                    continue  # mount it next tick
                except NoMatches:
                    pass
                pane = AgentPane(task_id, self.delegate.store, self.delegate.scrollback)
                self.panes[task_id] = pane
                container.mount(pane)
        wanted = [t for t in wanted if t in self.panes]
        count = len(wanted)
        if count:
            columns = (
                1
                if self.size.width < 110 or count == 1
                else min(count, 2 if self.size.width < 180 else 3)
            )
            grid = (columns, math.ceil(count / columns))
            if grid != self._grid:  # a style change costs a layout: only on change
                self._grid = grid
                container.styles.grid_size_columns, container.styles.grid_size_rows = grid
        container.set_class(not count, "empty")
        empty = self.query_one("#panes-empty", Static)
        if empty.display != (not count):
            empty.display = not count
        if not count:
            update_if_changed(empty, self._empty_message(state))
        # Each pane redraws at most 10 times a second (3 under a flood, less while the
        # loop lags), and one tick parses for at most SYNC_BUDGET_S, round-robin: a
        # key press never waits behind eight panes' worth of output.
        tick = time.monotonic()
        typing = tick - self.delegate.last_input < INPUT_QUIET_S
        lag = tick - self._last_tick - 0.05 if self._last_tick else 0.0
        self._last_tick = tick
        store = self.delegate.store
        started = time.perf_counter()
        order = (
            wanted[self._sync_cursor % len(wanted) :] + wanted[: self._sync_cursor % len(wanted)]
            if wanted
            else []
        )
        synced: set[str] = set()
        for task_id in order:
            pane = self.panes[task_id]
            fresh = pane.buffer.bytes_fed == 0
            if not fresh and (
                typing
                or tick < pane.next_sync
                or len(synced) >= SYNCS_PER_TICK
                or time.perf_counter() - started > SYNC_BUDGET_S
            ):
                continue
            flooding = store.size_since(task_id, pane.seq) > FLOOD_BYTES
            if pane.sync():
                synced.add(task_id)
            interval = FLOOD_INTERVAL_S if flooding else PANE_INTERVAL_S
            pane.next_sync = tick + min(1.0, max(interval, lag * 4))
            self._sync_cursor += 1
        # A new title repaints the whole pane. What changes its meaning (status,
        # attempt, pid, scrolling) shows at once; a clock or CPU figure alone waits
        # for the pane's next redraw, or for its turn: one pane a tick, so eight
        # clocks never repaint eight panes in the same frame.
        clock_turns = 0 if typing else 1
        for task_id in order:
            pane = self.panes[task_id]
            if not typing:  # a new border repaints the whole pane: after the key's frame
                pane.set_class(task_id == self.selected and len(wanted) > 1, "selected")
            title, subtitle = self._pane_title(state, task_id, now), self._pane_subtitle(pane)
            if pane.border_subtitle != subtitle:
                pane.border_subtitle = subtitle
            if pane.border_title == title:
                continue
            meaning = self._pane_meaning(state, task_id)
            if meaning != pane.title_meaning or task_id in synced:
                pane.title_meaning = meaning
            elif clock_turns:
                clock_turns -= 1
            else:
                continue
            pane.border_title = title

    def _empty_message(self, state: RunState) -> Text:
        text = Text(justify="center")
        text.append("No agent is running.\n\n", Style(bold=True))
        if state.proposal is not None and state.proposal.needs_approval:
            text.append(f"Batch {state.proposal.batch} waits for you: ", Style())
            text.append(", ".join(state.proposal.tasks), Style(bold=True))
            text.append("\npress a to approve it, space to leave the selected task out, h to hold.")
        elif state.finished:
            text.append(f"The run {state.status}. Select a task to read its output; q quits.")
        elif state.paused:
            text.append("Scheduling is paused: p resumes.")
        else:
            text.append("Select a task (↑ ↓) to read its output.")
        return text

    def _pane_title(self, state: RunState, task_id: str, now: float) -> str:
        task = state.tasks[task_id]
        attempt = task.attempt
        parts = [f"{ICONS.get(task.status, '?')} {task_id}"]
        if state.plan:
            parts.append(state.plan.agent_of(state.plan.task(task_id)))
        if attempt is not None:
            if len(task.attempts) > 1:
                parts.append(f"attempt {attempt.number}")
            if attempt.pid and task.status in ACTIVE_STATUSES:
                parts.append(f"pid {attempt.pid}")
            parts.append(clock(task_elapsed(task, state.finished_ts or now)))
            stats = self.delegate.proc_stats.get(attempt.pid)
            if stats is not None and task.status in ACTIVE_STATUSES:
                parts.append(f"{stats.cpu_percent:.0f}% {stats.rss_bytes / 1e6:.0f} MB")
        if task.status not in ACTIVE_STATUSES:
            parts.append(task.status)
        return " · ".join(parts)

    def _pane_meaning(self, state: RunState, task_id: str) -> tuple[object, ...]:
        """What a pane's title says apart from its clock and CPU figures."""
        task = state.tasks[task_id]
        attempt = task.attempt
        return (task.status, attempt.number if attempt else 0, attempt.pid if attempt else 0)

    def _pane_subtitle(self, pane: AgentPane) -> str:
        if pane.search:
            return f"/{pane.search}: {len(pane.matches)} match(es) · n N"
        return "" if pane.follow else "scrolled · G to follow"

    # ------------------------------------------------------------ messages

    def on_task_graph_task_selected(self, message: TaskGraph.TaskSelected) -> None:
        self.selected = message.task_id
        self.delegate.request_refresh()

    def on_resize(self) -> None:
        if not self._ready:
            return
        wide = self.size.width >= 110
        show = self.sidebar_forced if self.sidebar_forced is not None else wide
        self.query_one("#sidebar").display = show
        self.set_class(self.size.width < 100, "narrow")
        self.delegate.request_refresh()

    # ------------------------------------------------------------ helpers

    def _command(self, result: str, done: str = "") -> None:
        if result:
            self.notify(result, severity="warning", timeout=4)
        elif done:
            self.notify(done, timeout=3)
        self.delegate.request_refresh()

    def _writable(self) -> bool:
        if self.delegate.read_only:
            self.notify(REFUSED, severity="warning")
            return False
        return True

    def _pane(self) -> AgentPane | None:
        return self.panes.get(self.selected)

    # ------------------------------------------------------------ actions

    def action_approve(self, everything: bool) -> None:
        if not self._writable():
            return
        proposal = self.state.proposal
        if proposal is None:
            self._command("no batch is waiting for approval")
            return
        tasks = (
            list(proposal.tasks)
            if everything
            else [t for t in proposal.tasks if t not in self.excluded]
        )
        self._command(
            self.delegate.source.approve(tasks),
            f"batch {proposal.batch} approved: {', '.join(tasks)}",
        )

    def action_toggle_task(self) -> None:
        proposal = self.state.proposal
        if proposal is None or self.selected not in proposal.tasks:
            self._command("select a task of the waiting batch to toggle it")
            return
        self.excluded ^= {self.selected}
        self.delegate.request_refresh()

    def action_hold(self) -> None:
        if self._writable():
            self._command(self.delegate.source.hold(), "batch held; scheduling paused (p resumes)")

    def action_details(self) -> None:
        if self.selected and self.state.plan:
            self.app.push_screen(
                TextScreen(
                    f"Task {self.selected}",
                    task_details(self.state, self.selected, self.delegate.clock()),
                )
            )

    def _selected_in(self, statuses: frozenset[str], refusal: str) -> TaskState | None:
        """The selected task if a command may act on it; otherwise say why and return None."""
        if not self._writable() or not self.selected:
            return None
        task = self.state.tasks[self.selected]
        if task.status not in statuses:
            self._command(refusal.format(task=self.selected, status=task.status))
            return None
        return task

    def action_kill(self) -> None:
        if self._selected_in(ACTIVE_STATUSES, "{task} is not running ({status})") is None:
            return
        task_id = self.selected

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._command(
                    self.delegate.source.kill(task_id), f"ending {task_id} (SIGTERM, then SIGKILL)"
                )

        self.app.push_screen(
            ConfirmDialog(f"Kill {task_id} and its whole process group?", "Kill"), confirmed
        )

    def action_retry(self) -> None:
        task = self._selected_in(RETRYABLE_STATUSES, "{task} cannot be retried while {status}")
        if task is None:
            return
        attempt = task.attempt
        summary = failure_summary(attempt) if attempt else task.status
        tail = tail_text(bytes(attempt.tail), 3000) if attempt else ""
        can_keep = bool(attempt and attempt.workdir and self.state.isolation == "worktree")
        task_id = self.selected

        def chosen(request: RetryRequest | None) -> None:
            if request is not None:
                result = self.delegate.source.retry(
                    task_id, request.context, keep_worktree=request.keep_worktree
                )
                self._command(result, f"retrying {task_id}")

        self.app.push_screen(RetryDialog(task_id, summary, tail, can_keep=can_keep), chosen)

    def action_skip(self) -> None:
        if self._writable() and self.selected:
            self._command(self.delegate.source.skip(self.selected), f"skipped {self.selected}")

    def action_pause(self) -> None:
        replay = self._replay()
        if replay is not None:
            replay.toggle()
            self.delegate.request_refresh()
            return
        if not self._writable():
            return
        if self.state.paused:
            self._command(self.delegate.source.resume(), "scheduling resumed")
        else:
            self._command(self.delegate.source.pause(), "scheduling paused: running tasks go on")

    def action_input(self) -> None:
        if not self._writable() or not self.selected:
            return
        task = self.state.tasks[self.selected]
        if task.status != "running":
            self._command(f"{self.selected} has no running agent")
            return
        last = attention.last_line(task.attempts[-1]) if task.attempts else ""
        task_id = self.selected

        def send(line: str | None) -> None:
            if line is not None:
                self._command(self.delegate.source.send_input(task_id, line), f"sent to {task_id}")

        self.app.push_screen(
            LineDialog(f"Type to {task_id}", f"its last line: {last}" if last else ""), send
        )

    def action_search(self) -> None:
        pane = self._pane()
        if pane is None:
            self._command("select a task with output to search it")
            return

        def search(text: str | None) -> None:
            if text is not None:
                found = pane.set_search(text)
                self._command("" if found or not text else f"no match for {text!r}")

        self.app.push_screen(LineDialog(f"Search {self.selected}", value=pane.search), search)

    def action_next_match(self, step: int) -> None:
        pane = self._pane()
        if pane is not None and pane.search:
            pane.next_match(step)
            self.delegate.request_refresh()

    def action_zoom(self) -> None:
        self.zoomed = not self.zoomed
        self.delegate.request_refresh()

    def action_merge(self) -> None:
        if self._writable() and self.selected:
            self._command(self.delegate.source.merge(self.selected), f"merging {self.selected}")

    def action_finish(self) -> None:
        if not self._writable():
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._command(
                    self.delegate.source.finish(), "ending the run and merging into your branch"
                )

        self.app.push_screen(
            ConfirmDialog(
                "End the run and merge the integration branch into your branch (only if clean)?",
                "Finish",
            ),
            confirmed,
        )

    def action_end(self) -> None:
        if self._writable():
            self._command(self.delegate.source.end(), "ending the run")

    def action_copy_path(self) -> None:
        task = self.state.tasks.get(self.selected)
        path = task.attempt.workdir if task and task.attempt else ""
        if not path:
            self._command(f"{self.selected} has no worktree yet")
            return
        self.app.copy_to_clipboard(path)
        self.notify(f"copied: {path}", timeout=6)

    def action_sidebar(self) -> None:
        sidebar = self.query_one("#sidebar")
        self.sidebar_forced = not sidebar.display
        sidebar.display = self.sidebar_forced

    def action_scroll_pane(self, direction: int) -> None:
        pane = self._pane()
        if pane is not None:
            pane.page(direction)
            self.delegate.request_refresh()

    def action_follow(self) -> None:
        pane = self._pane()
        if pane is not None:
            pane.resume_follow()
            self.delegate.request_refresh()

    def _ordered_findings(self) -> list[str]:
        findings = self.state.findings.values()
        ranked = sorted(findings, key=lambda f: (f.severity != "error", f.paths, f.kind, f.tasks))
        return [f.key for f in ranked]

    def action_finding(self, step: int) -> None:
        """Step to the next (or previous) open collision and jump to its first task's pane."""
        keys = self._ordered_findings()
        if not keys:
            self._command("no open collisions")
            return
        index = keys.index(self.finding) + step if self.finding in keys else (0 if step > 0 else -1)
        self.finding = keys[index % len(keys)]
        finding = self.state.findings[self.finding]
        if finding.tasks:
            self.query_one(TaskGraph).select(finding.tasks[0])
        self.notify(
            f"{finding.kind}: {' ✕ '.join(finding.tasks) or '?'} on {', '.join(finding.paths)} (d: diffs)",
            timeout=4,
        )
        self.delegate.request_refresh()

    def action_diff(self) -> None:
        """Each side's diff: for the collision stepped to, else the selected task's collisions."""
        state = self.state
        task_id = self.selected
        current = state.findings.get(self.finding)
        if current is not None and current.tasks:
            self._load_diffs(" ✕ ".join(current.tasks), [(t, current.paths) for t in current.tasks])
            return
        findings = [f for f in state.findings.values() if task_id in f.tasks]
        if not findings:
            task = state.tasks.get(task_id)
            attempt = task.attempt if task else None
            if attempt is None or not (attempt.commit or attempt.snapshot):
                self._command(f"{task_id} has no changes to show")
                return
            sides: list[tuple[str, tuple[str, ...]]] = [(task_id, ())]
        else:
            sides = sorted({(t, f.paths) for f in findings for t in f.tasks})
        self._load_diffs(task_id, sides)

    @work(thread=True, exclusive=True, group="diff", exit_on_error=False)
    def _load_diffs(self, task_id: str, sides: list[tuple[str, tuple[str, ...]]]) -> None:
        state = self.state
        parts: list[RenderableType] = []
        for side, paths in sides:
            attempt = state.tasks[side].attempt
            if attempt is None:
                continue
            tip = attempt.commit or attempt.snapshot
            text = workspace.diff_text(Path(state.repo), attempt.base_commit, tip, paths)
            where = ", ".join(paths) if paths else "all changes"
            parts.append(Text(f"\n{side}: {where}\n", Style(bold=True)))
            parts.append(_syntax(text or "(no difference)"))
        self.app.call_from_thread(
            self.app.push_screen, TextScreen(f"Diff: {task_id}", Group(*parts))
        )

    def action_help(self) -> None:
        self.app.push_screen(TextScreen("Keys", help_text(self.delegate.config.keys)))

    # ------------------------------------------------------------ replay

    def _replay(self) -> ReplaySource | None:
        source = self.delegate.source
        return source if isinstance(source, ReplaySource) else None

    def reset_panes(self) -> None:
        """Drop every pane: they are rebuilt from the (replaced) state on the next refresh."""
        for pane in self.panes.values():
            pane.remove()
        self.panes.clear()

    def action_replay_seek(self, seconds: float) -> None:
        replay = self._replay()
        if replay is not None:
            replay.seek_seconds(replay.position.seconds + seconds)

    def action_replay_step(self, events: int) -> None:
        replay = self._replay()
        if replay is not None:
            replay.playing = False
            replay.step(events)

    def action_replay_edge(self, end: int) -> None:
        replay = self._replay()
        if replay is not None:
            # The start is the run's start (its first event), not the empty
            # moment before it, which has no plan to show.
            replay.seek(len(replay.events) if end else min(1, len(replay.events)))

    def action_replay_speed(self, faster: int) -> None:
        replay = self._replay()
        if replay is not None:
            self.notify(f"speed {replay.set_speed(faster):g}x", timeout=1.5)
            self.delegate.request_refresh()

    def action_replay_jump(self, mark: str, direction: int) -> None:
        replay = self._replay()
        if replay is not None and not replay.jump(mark, direction):
            self.notify(f"no {'next' if direction > 0 else 'previous'} {mark} event", timeout=2)

    def on_key(self, event: events.Key) -> None:
        """In a replay, a command's key says why nothing happens (the command is hidden)."""
        if not self.delegate.read_only:
            return
        live = [
            b
            for b in self.BINDINGS
            if isinstance(b, Binding) and b.action.split("(")[0] in LIVE_ONLY_ACTIONS
        ]
        rebound = self.delegate.config.keys
        keys = {b.key for b in live} | {rebound[b.id] for b in live if b.id and b.id in rebound}
        if event.key in keys:
            event.stop()
            self.notify(REFUSED, severity="warning", timeout=3)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Hide operator commands from the footer in replay."""
        if action.startswith("replay_") and not self.delegate.read_only:
            return False
        # In a replay these are hidden from the footer and their keys do nothing.
        return not (self.delegate.read_only and action in LIVE_ONLY_ACTIONS)


def _syntax(diff: str) -> RenderableType:
    """A diff, coloured (rich.syntax is imported when a diff is first shown)."""
    from rich.syntax import Syntax

    return Syntax(diff, "diff", theme="ansi_dark", word_wrap=False)
