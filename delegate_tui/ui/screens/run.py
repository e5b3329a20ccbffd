"""The run screen: header, task graph, agent grid, conflict sidebar, batch bar.

Owns the layout and the operator's keys in a live run. It hands state down
to its widgets (attributes down), hears their messages (messages up), and
turns keys into commands on the event source. Whether a command is accepted
now is :func:`delegate_tui.core.commands.refusal`'s answer, the same function
the engine asks: a refused command's key is shown disabled in the footer and
says why when pressed. A replay is :class:`~delegate_tui.ui.screens.replay.ReplayScreen`,
a subclass with playback keys instead of commands.

(About 670 lines: one action per operator key and the layout they share; panes,
the task list, the sidebar and the timeline are widgets of their own.)
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from textual import events, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.dom import NoScreen
from textual.screen import Screen
from textual.widgets import Footer

from delegate_tui.core import attention, batching, metrics
from delegate_tui.core.commands import TASK_COMMANDS, Command, refusal, restarts_stale
from delegate_tui.core.prompts import failure_summary, tail_text
from delegate_tui.core.state import RunState
from delegate_tui.ui import keys
from delegate_tui.ui.context import ScreenContext
from delegate_tui.ui.keys import COMMAND_ACTIONS, HelpSections, PaletteEntry
from delegate_tui.ui.style import SlashWrap
from delegate_tui.ui.widgets.agent_grid import MIN_PANE_COLS, AgentGrid
from delegate_tui.ui.widgets.agent_pane import AgentPane
from delegate_tui.ui.widgets.batch_bar import BatchBar
from delegate_tui.ui.widgets.conflict_sidebar import ConflictSidebar
from delegate_tui.ui.widgets.header import RunHeader
from delegate_tui.ui.widgets.task_graph import TaskGraph

if TYPE_CHECKING:
    from delegate_tui.ui.diffs import Side
    from delegate_tui.ui.widgets.timeline import TimelineView

# What is opened later (the timeline, dialogs, details, diffs) is imported when first
# opened: the first frame waits for every import made before it.

#: From this width the sidebar shows by default: the task list (34), the sidebar (38)
#: and the grid's border leave a pane :data:`MIN_PANE_COLS` wide.
SIDEBAR_ROOMY = 34 + 38 + 2 + MIN_PANE_COLS
#: Narrower than this the sidebar shows only when asked for (``c``); between the
#: two, while it lists a conflict (the header counts them either way).
SIDEBAR_MIN = 110


class RunScreen(Screen[None]):
    """The one screen of a live run."""

    BINDINGS = keys.LIVE_BINDINGS

    MODE = ""
    """What the header calls this screen's run ("" for a live one)."""
    KEY_HELP: HelpSections = keys.LIVE_HELP
    """The key reference that ``?`` shows."""
    PALETTE: tuple[PaletteEntry, ...] = keys.LIVE_PALETTE
    """The screen's entries in the command palette (those its check_action does not hide)."""

    def __init__(self, context: ScreenContext) -> None:
        super().__init__()
        self.context = context
        self.selected = ""
        self.excluded: set[str] = set()
        self.zoomed = False
        self.sidebar_forced: bool | None = None
        self.finding = ""  # key of the collision the operator stepped to ([ ])
        self._overlaps: list[tuple[str, str, str]] | None = None
        self._last_batch = 0
        self._findings = 0
        self._left_out: set[str] = set()  # the waiting batch's tasks the operator unticked
        self._ready = False
        self._key_actions = keys.key_actions(type(self), context.config.keys)
        self._commands_live: tuple[bool, ...] = ()
        self.grid = AgentGrid(context, id="panes")
        """The agent panes."""
        self.timeline: TimelineView | None = None
        """The timeline (``g``), made when first asked for."""

    def compose(self) -> ComposeResult:
        yield RunHeader(id="header")
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield TaskGraph(id="graph")
            yield self.grid
            with VerticalScroll(id="sidebar"):
                yield ConflictSidebar(id="conflicts")
        yield BatchBar(id="batch")
        yield from self.compose_bars()
        yield Footer()

    def compose_bars(self) -> ComposeResult:
        """Bars between the batch bar and the footer (a replay adds its own)."""
        yield from ()

    def on_mount(self) -> None:
        self._ready = True
        self.query_one(TaskGraph).focus()
        self.query_one("#sidebar").border_title = "Conflicts"
        self.query_one("#left").border_title = "Tasks"

    def on_unmount(self) -> None:
        self._ready = False

    @property
    def ready(self) -> bool:
        """Mounted, and not yet closing: refreshes draw."""
        return self._ready

    @property
    def state(self) -> RunState:
        """The run's state (owned by the source; read only here)."""
        return self.context.state

    # ------------------------------------------------------------ refresh

    def refresh_view(self, *, now: float) -> None:
        """Redraw everything from state (called by the app's timer)."""
        if not self._ready:
            return
        with contextlib.suppress(NoMatches, NoScreen):  # the app is closing; widgets are gone
            self._refresh_view(now)

    def refresh_output(self, *, now: float) -> None:
        """Redraw the agent panes alone: output came, nothing else changed."""
        if not self._ready or self.state.plan is None:
            return
        with contextlib.suppress(NoMatches, NoScreen):  # the app is closing
            self.grid.show(
                self.state, now, selected=self.selected, zoomed=self.zoomed, left_out=self._left_out
            )

    def _refresh_view(self, now: float) -> None:
        state = self.state
        if state.plan is None or not self._ready:
            self._refresh_keys()
            if self._ready:
                self._show_waiting()
            return
        graph = self.query_one(TaskGraph)
        proposal = state.proposal
        if proposal is not None and proposal.batch != self._last_batch:
            self._last_batch = proposal.batch
            self.excluded = set()
        waiting = set(proposal.tasks) if proposal is not None and proposal.needs_approval else set()
        graph.in_batch = waiting - self.excluded
        graph.left_out = self._left_out = waiting & self.excluded
        graph.set_state(state, now)
        if not self.selected and graph.selected:
            self.selected = graph.selected
        # After the selection: the first state's keys recompose the footer once, not twice.
        self._refresh_keys()
        self.query_one(BatchBar).show(
            proposal, self.excluded, state.findings.values(), self.context.keys_for_hints()
        )
        if self._overlaps is None:
            self._overlaps = batching.declared_overlaps(state.plan, state.isolation or "worktree")
        self._findings = self.query_one(ConflictSidebar).show(
            state, self._overlaps, self.selected, self.finding
        )
        self._lay_out()  # the sidebar may come or go with the conflicts
        sidebar_title = f"Conflicts ({self._findings})" if self._findings else "Conflicts"
        sidebar = self.query_one("#sidebar")
        if sidebar.border_title != sidebar_title:  # each assignment repaints the sidebar
            sidebar.border_title = sidebar_title
        saved = metrics.compute(state, now).time_saved_s
        self.query_one(RunHeader).show(
            state,
            now=now,
            saved_s=saved,
            attention=attention.needs_attention(state, now),
            mode=self.MODE,
        )
        self.grid.show(
            state, now, selected=self.selected, zoomed=self.zoomed, left_out=graph.left_out
        )
        if self.timeline is not None:  # returns at once while hidden
            self.timeline.show(state, now, selected=self.selected, end=self.timeline_end(now))
        self._lift_toasts()

    def _show_waiting(self) -> None:
        """No state yet (the run service starts, or the view connects): say so, where
        empty panels were shown for up to a second; or, when nothing is coming (the
        service did not start), that there is no run to show."""
        waiting = getattr(self.context.source, "waiting", "")
        text = waiting or "no run to show: see the message"
        self.query_one(RunHeader).show_waiting(text)
        self.grid.show_waiting(text)

    def _lift_toasts(self) -> None:
        """Keep toasts above the bars under the main area (batch, replay, footer): Textual
        stacks them over the footer only, and they hid the batch the operator must approve."""
        below = self.region.bottom - self.query_one("#main").region.bottom
        for rack in self.query("#textual-toastrack"):  # Textual's own toast container
            if below > 0 and rack.styles.margin.bottom != below:
                rack.styles.margin = (0, 0, below, 0)

    def _refresh_keys(self) -> None:
        """Redraw the footer when a command became available or refused (not every tick)."""
        live = tuple(
            self.check_action(action, ()) is True for action in ("pause", *COMMAND_ACTIONS)
        )
        if live != self._commands_live:
            self._commands_live = live
            self.refresh_bindings()

    def reset_panes(self) -> None:
        """Drop every pane: they are rebuilt from the (replaced) state on the next refresh."""
        self.grid.reset()

    # ------------------------------------------------------------ messages

    def on_task_graph_task_selected(self, message: TaskGraph.TaskSelected) -> None:
        self.selected = message.task_id
        self.context.request_refresh()

    def on_timeline_view_task_selected(self, message: TimelineView.TaskSelected) -> None:
        self.selected = message.task_id
        self.query_one(TaskGraph).select(message.task_id, post=False)
        self.context.request_refresh()

    def timeline_end(self, now: float) -> float:
        """Where the timeline's axis ends: now (a replay: the end of the recording)."""
        return now

    async def action_timeline(self) -> None:
        """Show the timeline in place of the panes (g), or the panes again."""
        timeline = self.timeline
        if timeline is None:
            from delegate_tui.ui.widgets.timeline import TimelineView

            timeline = TimelineView(id="timeline")
            timeline.border_title = "Timeline"
            await self.mount(timeline, before=self.query_one(BatchBar))
            self.timeline = timeline
            timeline.display = True
        else:
            timeline.display = not timeline.display
        self.query_one("#main").display = not timeline.display
        (timeline if timeline.display else self.query_one(TaskGraph)).focus()
        self.context.request_refresh()

    def on_resize(self) -> None:
        if not self._ready:
            return
        self._lay_out()
        self.set_class(self.size.width < 100, "narrow")
        # At 80 columns the roomy footer cut "q Quit" off: less space between keys,
        # and no "^p palette" (ctrl+p still opens it; ? lists it).
        footer = self.query_one(Footer)
        footer.compact = self.size.width < 120
        if footer.show_command_palette != (self.size.width >= 100):
            footer.show_command_palette = self.size.width >= 100
            footer.refresh(recompose=True)  # the footer reads it only when composed
        self.context.request_refresh()

    def _lay_out(self) -> None:
        """Which columns show: zoomed, the agent grid alone; else the task list, the grid
        and the sidebar when there is room for it next to a readable pane, or (when
        narrower, from 110 columns) while it lists a conflict; ``c`` decides otherwise."""
        width = self.size.width
        if self.sidebar_forced is not None:
            sidebar = self.sidebar_forced
        else:
            sidebar = width >= SIDEBAR_ROOMY or (width >= SIDEBAR_MIN and self._findings > 0)
        for selector, shown in (
            ("#left", not self.zoomed),
            ("#sidebar", sidebar and not self.zoomed),
        ):
            widget = self.query_one(selector)
            if widget.display != shown:  # each assignment costs a layout
                widget.display = shown

    # ------------------------------------------------------------ which keys act

    def refusal_of(self, action: str) -> str | None:
        """Why the command behind ``action`` would be refused now (None: it would act).

        Actions that are not operator commands are never refused here.
        """
        state = self.state
        if action == "pause":
            command: Command = "resume" if state.paused else "pause"
        elif action in COMMAND_ACTIONS:
            command = COMMAND_ACTIONS[action]
        else:
            return None
        if command == "end" and state.active and not state.finished:
            return None  # not refused here: e offers to end the agents too (action_end)
        return refusal(state, command, self.selected if command in TASK_COMMANDS else None)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """A command the run would refuse now stays in the footer, shown disabled."""
        return None if self.refusal_of(action) else True

    def on_key(self, event: events.Key) -> None:
        """A refused command's key says why (a disabled binding would do nothing)."""
        action = self._key_actions.get(event.key)
        why = self.refusal_of(action) if action else None
        if why:
            event.stop()
            self._command(why)

    def palette_commands(self) -> Iterator[tuple[str, str, Callable[[], object]]]:
        """The command palette's entries for this screen: title, help, callback."""
        for title, help_text_, action, parameters in self.PALETTE:
            if self.check_action(action, parameters) is not False:
                method = getattr(self, f"action_{action}")
                yield title, help_text_, functools.partial(method, *parameters)

    # ------------------------------------------------------------ helpers

    def _command(self, result: str, done: str = "") -> None:
        if result:
            self.notify(result, severity="warning", timeout=4)
        elif done:
            self.notify(done, timeout=3)
        self.context.request_refresh()

    def _refused(self, action: str) -> bool:
        """Say why ``action`` cannot be carried out now, if it cannot."""
        why = self.refusal_of(action)
        if why:
            self._command(why)
        return bool(why)

    def _pane(self) -> AgentPane | None:
        return self.grid.pane(self.selected)

    # ------------------------------------------------------------ commands

    def action_approve(self, everything: bool) -> None:
        proposal = self.state.proposal
        if self._refused("approve") or proposal is None:
            return
        tasks = (
            list(proposal.tasks)
            if everything
            else [t for t in proposal.tasks if t not in self.excluded]
        )
        self._command(
            self.context.source.approve(tasks),
            f"batch {proposal.batch} approved: {', '.join(tasks)}",
        )

    def action_toggle_task(self) -> None:
        if self._refused("toggle_task"):
            return
        proposal = self.state.proposal
        if proposal is None or self.selected not in proposal.tasks:
            self._command("select a task of the waiting batch to toggle it")
            return
        self.excluded ^= {self.selected}
        self.context.request_refresh()

    def action_hold(self) -> None:
        if not self._refused("hold"):
            self._command(self.context.source.hold(), "batch held; scheduling paused (p resumes)")

    def action_kill(self) -> None:
        from delegate_tui.ui.screens.dialogs import ConfirmDialog

        if self._refused("kill"):
            return
        task_id = self.selected

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._command(
                    self.context.source.kill(task_id), f"ending {task_id} (SIGTERM, then SIGKILL)"
                )

        self.app.push_screen(
            ConfirmDialog(f"Kill {task_id} and its whole process group?", "Kill"), confirmed
        )

    def action_retry(self) -> None:
        from delegate_tui.ui.screens.dialogs import RetryDialog, RetryRequest

        if self._refused("retry"):
            return
        task_id = self.selected
        attempt = self.state.tasks[task_id].attempt
        summary = failure_summary(attempt) if attempt else self.state.tasks[task_id].status
        tail = ""
        if attempt is not None:
            readable = "\n".join(attempt.transcript) if attempt.transcript else bytes(attempt.tail)
            tail = tail_text(readable, 3000)
        can_keep = bool(attempt and attempt.workdir and self.state.isolation == "worktree")
        if restarts_stale(self.state, task_id):  # it is ended and starts on the new tip
            summary, can_keep = "its input went stale: restart it on the new integration tip", False
        session = attempt.session_id if attempt is not None else ""

        def chosen(request: RetryRequest | None) -> None:
            if request is not None:
                result = self.context.source.retry(
                    task_id,
                    request.context,
                    keep_worktree=request.keep_worktree,
                    fresh=request.fresh,
                )
                self._command(result, f"retrying {task_id}")

        self.app.push_screen(
            RetryDialog(task_id, summary, tail, can_keep=can_keep, session=session), chosen
        )

    def action_skip(self) -> None:
        if not self._refused("skip"):
            self._command(self.context.source.skip(self.selected), f"skipped {self.selected}")

    def action_pause(self) -> None:
        if self._refused("pause"):
            return
        if self.state.paused:
            self._command(self.context.source.resume(), "scheduling resumed")
        else:
            self._command(self.context.source.pause(), "scheduling paused: running tasks go on")

    def action_input(self) -> None:
        from delegate_tui.ui.screens.dialogs import LineDialog

        if self._refused("input"):
            return
        task_id = self.selected
        task = self.state.tasks[task_id]
        last = attention.last_line(task.attempts[-1]) if task.attempts else ""

        def send(line: str | None) -> None:
            if line is not None:
                self._command(self.context.source.send_input(task_id, line), f"sent to {task_id}")

        self.app.push_screen(
            LineDialog(f"Type to {task_id}", f"its last line: {last}" if last else ""), send
        )

    def action_merge(self) -> None:
        if not self._refused("merge"):
            self._command(self.context.source.merge(self.selected), f"merging {self.selected}")

    def action_finish(self) -> None:
        from delegate_tui.ui.screens.dialogs import ConfirmDialog

        if self._refused("finish"):
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._command(
                    self.context.source.finish(), "ending the run and merging into your branch"
                )

        self.app.push_screen(
            ConfirmDialog(
                "End the run and merge the integration branch into your branch (only if clean)?",
                "Finish",
            ),
            confirmed,
        )

    def action_end(self) -> None:
        """End the run; while agents run, offer to end them too (they are interrupted,
        and `delegate-tui resume` continues the run). With work still pending (a batch
        to approve, tasks not done) ask first: an ended run is not resumed, and a
        slip of `e` must not throw that work away (Cancel is the default)."""
        from delegate_tui.ui.screens.dialogs import ConfirmDialog

        if self._refused("end"):
            return
        running = [t.id for t in self.state.active]
        if not running:
            proposal = self.state.proposal
            undone = [
                t.id for t in self.state.tasks.values() if t.status not in ("succeeded", "skipped")
            ]
            if proposal is None and not undone:
                self._command(self.context.source.end(), "ending the run")
                return
            names = ", ".join(undone[:4]) + (", …" if len(undone) > 4 else "")
            pending = f"Batch {proposal.batch} waits for approval. " if proposal else ""
            if undone:
                pending += f"{len(undone)} task(s) not done ({names}). "

            def end_for_good(yes: bool | None) -> None:
                if yes:
                    self._command(self.context.source.end(), "ending the run")

            self.app.push_screen(
                ConfirmDialog(
                    f"{pending}End the run for good? What is not done stays undone "
                    "(an ended run cannot be resumed).",
                    "End run",
                    cancel_first=True,
                ),
                end_for_good,
            )
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._command(
                    self.context.source.stop("ended by the operator"),
                    f"ending {len(running)} agent(s) and the run",
                )

        self.app.push_screen(
            ConfirmDialog(
                f"{len(running)} agent(s) still running ({', '.join(running)}). End them and "
                "the run? Their tasks are marked interrupted; `delegate-tui resume` continues.",
                "End run",
            ),
            confirmed,
        )

    # ------------------------------------------------------------ looking

    def action_details(self) -> None:
        from delegate_tui.ui.details import task_details
        from delegate_tui.ui.screens.dialogs import TextScreen

        if self.selected and self.state.plan:
            self.app.push_screen(
                TextScreen(
                    f"Task {self.selected}",
                    SlashWrap(task_details(self.state, self.selected, self.context.clock())),
                )
            )

    def action_health(self) -> None:
        """The health report: how each task ended (or how far it got), all of them."""
        from rich.text import Text

        from delegate_tui.ui.screens.dialogs import TextScreen
        from delegate_tui.ui.style import health_text, run_ended

        state = self.state
        if state.plan is None:
            return
        head = Text(f"{run_ended(state)}\n\n" if state.finished else "The run goes on.\n\n")
        self.app.push_screen(TextScreen("How each task ended", head + health_text(state)))

    def action_search(self) -> None:
        from delegate_tui.ui.screens.dialogs import LineDialog

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
            self.context.request_refresh()

    def action_zoom(self) -> None:
        """Show the selected pane alone, the whole width of the screen (and back)."""
        if not self.zoomed and not self.grid.panes:
            self._command("no agent output to zoom: select a task that ran")
            return
        self.zoomed = not self.zoomed
        self._lay_out()
        if not self.zoomed:
            self.query_one(TaskGraph).focus()  # it lost the focus while hidden
        self.context.request_refresh()

    def action_raw_view(self) -> None:
        self.context.show_raw = not self.context.show_raw
        shown = "raw streams" if self.context.show_raw else "transcripts"
        self.notify(f"panes show the agents' {shown} (v switches)", timeout=4)
        self.context.request_refresh()

    def action_step_task(self, step: int) -> None:
        """Select the previous or next task, whether or not the task list is shown."""
        self.query_one(TaskGraph).action_cursor(step)

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
        if self.zoomed:  # the sidebar is asked for: show the screen whole
            self.zoomed = False
            self.query_one(TaskGraph).focus()
        self._lay_out()
        self.context.request_refresh()

    def action_scroll_pane(self, direction: int) -> None:
        pane = self._pane()
        if pane is not None:
            pane.page(direction)
            self.context.request_refresh()

    def action_follow(self) -> None:
        pane = self._pane()
        if pane is not None:
            pane.resume_follow()
            self.context.request_refresh()

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
        diffs = "" if self.refusal_of("diff") else " (d: diffs)"
        self.notify(
            f"{finding.kind}: {' ✕ '.join(finding.tasks) or '?'} on {', '.join(finding.paths)}{diffs}",
            timeout=4,
        )
        self.context.request_refresh()

    def action_diff(self) -> None:
        """Each side's diff: for the collision stepped to, else the selected task's collisions."""
        from delegate_tui.ui import diffs

        if self._refused("diff"):
            return
        chosen = diffs.sides(self.state, self.finding, self.selected)
        if isinstance(chosen, str):
            self._command(chosen)
            return
        self._load_diffs(*chosen)

    @work(thread=True, exclusive=True, group="diff", exit_on_error=False)
    def _load_diffs(self, title: str, sides: list[Side]) -> None:
        """Ask git for the diffs off the UI thread, then show them in one dialog."""
        from delegate_tui.ui import diffs
        from delegate_tui.ui.screens.dialogs import TextScreen

        body = diffs.render(self.state, sides)
        self.app.call_from_thread(self.app.push_screen, TextScreen(f"Diff: {title}", body))

    def action_help(self) -> None:
        from delegate_tui.ui.screens.dialogs import TextScreen

        rebindable = [
            b.id
            for b in keys.bindings_of(type(self))
            if b.id and self.check_action(b.action.split("(")[0], ()) is not False
        ]
        text = keys.help_text(self.KEY_HELP, self.context.config.keys, rebindable)
        self.app.push_screen(TextScreen("Keys", text))
