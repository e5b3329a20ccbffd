"""DelegateApp: the full-screen UI over an event source.

Owns the terminal. The event source (the engine for a live run, a fake in
tests, a log for replay) is injected: the app subscribes to its events,
runs it in a worker, and redraws from its state on a timer (20 ticks a
second), never once per event: everything on a key, on the run's events (at
most ten times a second) and once a second for the clocks; only the agent
panes (at their own pace) when output alone came. Agent output goes into a bounded byte store
that panes parse only while shown. Keys go first: the driver's input thread
notes each key as it reads it, panes then wait to redraw, and an attached view's
events wait until the key's frame is drawn (``yield_to`` on the source). The
screen (live, or the replay screen)
is built with a :class:`~delegate_tui.ui.context.ScreenContext` that the app
keeps current; it takes nothing else from the app. The app decides nothing
about the run: keys become the source's commands, and the source answers. (About
460 lines: the source's pump, the refresh tick and the app-wide keys; each screen is
a module of its own.)
"""

from __future__ import annotations

import gc
import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from textual import events, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.command import CommandPalette
from textual.driver import Driver
from textual.message import Message
from textual.notifications import Notification, Notify
from textual.screen import Screen

from delegate_tui.core.attention import seems_to_wait_for_input
from delegate_tui.core.events import (
    BatchProposed,
    Event,
    MergeConflict,
    Notice,
    RunFinished,
    TaskFinished,
    TaskOutput,
)
from delegate_tui.core.procstats import TreeStats, forget, sample
from delegate_tui.core.state import RunState
from delegate_tui.resources import data_dir
from delegate_tui.ui import transcript
from delegate_tui.ui.config import UserConfig, config_dir
from delegate_tui.ui.context import EventSource, ScreenContext
from delegate_tui.ui.screens.run import RunScreen
from delegate_tui.ui.style import run_ended
from delegate_tui.ui.themes import DEFAULT_THEME, STATUS_VARIABLES, AppThemes, load_themes
from delegate_tui.ui.widgets.agent_pane import OutputStore

REFRESH_HZ = 20
#: A key holds back an attached view's events until its frame is drawn (RunClient.yield_to),
#: at most this long after it arrived.
INPUT_HOLD_S = 0.25
#: How often the run's events (not its output) may redraw the screen; a key redraws
#: at the next tick.
STATE_HZ = 10
GC_THRESHOLDS = (7000, 10, 100)
_ALARMING = {"failed", "merge-conflict", "timed-out", "over-budget"}


class DelegateApp(App[int]):
    """The delegate-tui terminal UI."""

    CSS_PATH = "app.tcss"
    TITLE = "delegate-tui"
    ENABLE_COMMAND_PALETTE = True
    BINDINGS = [Binding("ctrl+c", "request_quit", "Quit", show=False, priority=True)]

    def __init__(
        self,
        source: EventSource,
        *,
        theme: str | None = None,
        config: UserConfig | None = None,
        read_only: bool = False,
        bell: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.source = source
        self.config = config if config is not None else UserConfig.load()
        self.read_only = read_only
        self.clock = clock
        self.context = ScreenContext(source, self.config, read_only, clock, self.request_refresh)
        """What the run screen is built with; the app keeps its live fields current."""
        self._requested_theme = theme
        self._save_theme = False  # not the theme on_mount sets (--theme is for one run)
        self._theme_names: list[str] = []
        self._new_events: deque[Event] = deque(maxlen=2000)
        self._dirty = True  # redraw everything at the next tick (a key, a resize, a reset)
        self._state_dirty = False  # the run's state changed: redraw everything soon
        self._output_dirty = False  # output came: the panes redraw (at their own pace)
        self._next_state = 0.0
        self._shown_second = 0
        self._waiting_notified: set[tuple[str, int]] = set()
        self._batch_toasts: list[tuple[int, Notification]] = []
        self._quitting = False
        self._run_done = False
        self._bell = bell
        self._key_at = 0.0  # monotonic time the newest key arrived (the input thread's)
        self._key_drawn = 0.0  # the newest key whose frame has been drawn (its _key_at)
        source.subscribe(self._on_event)
        yield_to = getattr(source, "yield_to", None)
        if yield_to is not None:
            yield_to(self.input_pending)
        subscribe_reset = getattr(source, "subscribe_reset", None)
        if subscribe_reset is not None:
            subscribe_reset(self._on_reset)

    # ------------------------------------------------------------ setup

    def get_theme_variable_defaults(self) -> dict[str, str]:
        return {**super().get_theme_variable_defaults(), **STATUS_VARIABLES}

    def get_driver_class(self) -> type[Driver]:
        """Textual's driver for this terminal, noting when a key arrives: on the driver's
        input thread, before the key waits its turn on the loop."""
        return _noting_keys(super().get_driver_class(), self)

    def get_default_screen(self) -> Screen[None]:
        """The run screen is the app's own (no empty default screen laid out first)."""
        if self.read_only:
            from delegate_tui.ui.screens.replay import ReplayScreen

            return ReplayScreen(self.context)
        return RunScreen(self.context)

    def on_mount(self) -> None:
        themes, problems = load_themes([data_dir("themes"), config_dir() / "themes"])
        for theme in themes:
            self.register_theme(theme)
        self._theme_names = [t.name for t in themes]
        for problem in [*problems, *self.config.problems]:
            self.notify(problem, title="config", severity="warning", timeout=10)
        report = getattr(self.source, "report", None)
        for message in report.messages() if report is not None else []:
            self.notify(message, title="run log", severity="warning", timeout=15)
        wanted = self._requested_theme or self.config.theme or DEFAULT_THEME
        if wanted not in self.available_themes:
            self.notify(f"no theme named {wanted!r}; using {DEFAULT_THEME}", severity="warning")
            wanted = DEFAULT_THEME
        self.theme = wanted
        self._save_theme = True  # from now on a theme is the operator's choice: t, palette
        if self.config.keys:
            self.set_keymap(self.config.keys)
        self._seed_output()
        self.run_source()
        self.set_interval(1 / REFRESH_HZ, self._tick)
        self.set_interval(2.0, self._sample_processes)
        self.call_after_refresh(self._freeze_startup_objects)

    def _freeze_startup_objects(self) -> None:
        """Move what start-up built (modules, Textual's classes and styles, the plan)
        out of the cyclic collector's sight: a full collection walked all of it, about
        100 ms each, several times a second under a flood of output. Drawing makes
        short-lived containers by the thousand a frame, so collections also start
        ten times less often than Python's default (700, 10, 10)."""
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)

    def _seed_output(self) -> None:
        """Output that happened before the app subscribed (a resumed or replayed run)."""
        for task in self.source.state.tasks.values():
            for attempt in task.attempts:
                if attempt.tail:
                    self.context.store.append(task.id, attempt.number, bytes(attempt.tail))
                if attempt.transcript:
                    self.context.transcripts.append(
                        task.id, attempt.number, transcript.seed(attempt)
                    )

    @work(exclusive=True, group="source", exit_on_error=False)
    async def run_source(self) -> None:
        """Drive the event source until the run ends."""
        try:
            await self.source.run()
        finally:
            self._run_done = True
            self._dirty = True
            if self._quitting:
                code = self.exit_code_for(self.source.state)
                self.exit(code, return_code=code)

    # ------------------------------------------------------------ events

    def key_arrived(self) -> None:
        """A key was read (on the driver's input thread, or here): panes wait to
        redraw (AgentGrid), and an attached view's events wait for its frame."""
        now = time.monotonic()
        self._key_at = now
        self.context.last_input = now

    def input_pending(self) -> bool:
        """A key has arrived and its frame is not drawn yet (for at most
        :data:`INPUT_HOLD_S`)."""
        at = self._key_at
        return at > self._key_drawn and time.monotonic() - at < INPUT_HOLD_S

    async def on_event(self, event: events.Event) -> None:
        if not isinstance(event, events.Key):
            await super().on_event(event)
            return
        if self._key_at <= self._key_drawn:  # no driver noted it (Pilot, another driver)
            self.key_arrived()
        self.context.last_input = time.monotonic()  # panes wait from here (AgentGrid)
        arrived = self._key_at
        await super().on_event(event)  # its handler runs next, then the screen's next frame
        self.call_after_refresh(self._key_drawn_at, arrived)

    def _key_drawn_at(self, arrived: float) -> None:
        self._key_drawn = max(self._key_drawn, arrived)

    def _on_event(self, ev: Event) -> None:
        if type(ev) is TaskOutput:
            self.context.store.append(ev.task, ev.attempt, ev.data)
            self._output_dirty = True
            return
        if isinstance(ev, transcript.TRANSCRIPT_EVENTS):
            data = transcript.render(ev)
            if data:
                self.context.transcripts.append(ev.task, ev.attempt, data)
        self._new_events.append(ev)
        self._state_dirty = True

    def _on_reset(self) -> None:
        """The state was replaced (a replay seeked, or an attached view fell behind and
        read the log again): output starts again from it. A replay's panes are rebuilt
        (the run is at another moment); a live run's panes stay and read the new store
        (mounting eight panes again costs a layout of the screen, under a flood)."""
        self.context.store = OutputStore()
        self.context.transcripts = OutputStore()
        self._seed_output()
        if self.read_only:
            self._new_events.clear()  # a replay's toasts are those of the moment it shows
            for screen in self.screen_stack:
                if isinstance(screen, RunScreen):
                    screen.reset_panes()
        self._dirty = True

    def request_refresh(self) -> None:
        """Redraw at the next tick."""
        self._dirty = True

    def _tick(self) -> None:
        """Redraw what changed: everything when a key asked, when the run's state
        changed (at most :data:`STATE_HZ` a second) or a second turned; else only the
        panes, when output came (they keep their own pace: AgentGrid).

        A replay's "now" is the moment it shows, not the wall clock. A live run's is
        the whole second: every clock on screen (the header's, the task list's, each
        pane's title) then steps at the same tick, one frame a second, where clocks
        that turned at their own instants redrew the screen five times a second."""
        state = self.source.state
        now = (state.last_ts or self.clock()) if self.read_only else math.floor(self.clock())
        while self._new_events:
            self._attend(self._new_events.popleft())
        self._withdraw_batch_toasts(state)
        for task in state.tasks.values():
            attempt = task.attempt
            if attempt is None or (task.id, attempt.number) in self._waiting_notified:
                continue
            if seems_to_wait_for_input(attempt, now):
                self._waiting_notified.add((task.id, attempt.number))
                self._alert(f"{task.id} seems to wait for input (i to type to it)", "warning")
        tick = time.monotonic()
        second = int(now)
        everything = (
            self._dirty
            or (self._state_dirty and tick >= self._next_state)
            or second != self._shown_second
        )
        if not everything and not (self._output_dirty or state.active):
            return
        if everything:
            self._dirty = self._state_dirty = False
            self._next_state = tick + 1 / STATE_HZ
            self._shown_second = second
        self._output_dirty = False
        # The run screen is at the bottom of the stack (dialogs over it), and the
        # stack is empty while the app closes: a tick may still come then.
        for screen in self.screen_stack:
            if isinstance(screen, RunScreen):
                if everything:
                    screen.refresh_view(now=now)
                else:
                    screen.refresh_output(now=now)

    def _attend(self, ev: Event) -> None:
        """Bell and toast for what needs the operator."""
        if self.read_only:
            return
        if isinstance(ev, BatchProposed) and ev.needs_approval:
            proposal = self.source.state.proposal  # the state after this tick's events
            if proposal is None or proposal.batch != ev.batch or not proposal.needs_approval:
                return  # approved, held or replaced before a tick drew it: nothing waits
            toast = Notification(
                f"batch {ev.batch} waits for approval: {', '.join(ev.tasks)} (a approves)",
                severity="information",
                timeout=5,
            )
            if self._bell:
                self.bell()
            self._batch_toasts.append((ev.batch, toast))
            self.post_message(Notify(toast))
        elif isinstance(ev, TaskFinished) and ev.status in _ALARMING:
            self._alert(f"{ev.task} {ev.status}: {ev.reason}", "error")
        elif isinstance(ev, MergeConflict):
            self._alert(f"{ev.task}: merge conflict in {', '.join(ev.paths)}", "error")
        elif isinstance(ev, Notice) and ev.level in ("warning", "error"):
            self.notify(
                ev.message, severity="error" if ev.level == "error" else "warning", timeout=8
            )
        elif isinstance(ev, RunFinished):
            self.notify(
                f"{run_ended(self.source.state)} H: how each task ended. q quits.", timeout=10
            )

    def _withdraw_batch_toasts(self, state: RunState) -> None:
        """Take each "batch N waits" toast down once batch N no longer waits (approved,
        held, or replaced): the batch bar says what waits now, the toast must not lie."""
        proposal = state.proposal
        waiting = proposal.batch if proposal is not None and proposal.needs_approval else None
        kept: list[tuple[int, Notification]] = []
        for batch, toast in self._batch_toasts:
            if toast.has_expired:
                continue
            # Textual has no public call to withdraw one toast; App._unnotify is what
            # a toast's own timeout calls. A toast posted this very tick is not shown
            # yet: it is withdrawn on the next one.
            if batch != waiting and toast in self._notifications:
                self._unnotify(toast)
                continue
            kept.append((batch, toast))
        self._batch_toasts = kept

    def _alert(self, message: str, severity: str) -> None:
        if self._bell:
            self.bell()
        self.notify(message, severity=severity, timeout=5)  # type: ignore[arg-type]

    @work(thread=True, exclusive=True, group="procstats", exit_on_error=False)
    def _sample_processes(self) -> None:
        """CPU and memory of running agents' process trees (off the UI thread)."""
        # Agents on another machine (the Ray executor) are not this machine's processes.
        pids = {
            a.pid
            for t in self.source.state.active
            if (a := t.attempt) is not None and a.pid and not a.node
        }
        stats: dict[int, TreeStats] = {}
        for pid in pids:
            result = sample(pid)
            if result is not None:
                stats[pid] = result
        for pid in set(self.context.proc_stats) - pids:
            forget(pid)
        self.context.proc_stats = stats

    # ------------------------------------------------------------ app actions

    def action_next_theme(self) -> None:
        """Cycle through delegate-tui's themes; remember the choice."""
        names = self._theme_names or [DEFAULT_THEME]
        index = names.index(self.theme) if self.theme in names else -1
        self.theme = names[(index + 1) % len(names)]
        self.notify(f"theme: {self.theme}", timeout=2)

    def watch_theme(self, theme: str) -> None:
        if theme in self._theme_names and self._save_theme:
            self.config.save_theme(theme)
        self._dirty = True  # panes drop their drawn lines themselves (AgentGrid)

    async def action_request_quit(self) -> None:
        """Quit a live run: ask whether to detach (it goes on), end it, or stay."""
        state = self.source.state
        if self.read_only or self._run_done or state.finished:
            code = 0 if self.read_only else self.exit_code_for(state)
            self.exit(code, return_code=code)
            return
        detach = getattr(self.source, "detach", None)
        running = [t.id for t in state.active]
        if running:
            question = f"{len(running)} agent(s) still running ({', '.join(running)})."
        elif state.proposal is not None:
            question = f"Batch {state.proposal.batch} waits for your approval."
        else:
            question = "The run is not over."
        question += (
            " Detach (the run goes on; `delegate-tui attach` comes back), or end the run "
            "(agents ended; `delegate-tui resume` continues it)?"
            if detach is not None
            else " End the run (agents ended; `delegate-tui resume` continues it)?"
        )

        def chosen(answer: str | None) -> None:
            if answer == "detach" and detach is not None:
                detach()
                self.exit(0, return_code=0)
            elif answer == "end":
                self._quitting = True
                self.source.stop("quit by the operator")
                if running:
                    self.notify(f"ending {len(running)} agent(s)…")

        from delegate_tui.ui.screens.dialogs import QuitDialog  # only when quitting

        self.push_screen(QuitDialog(question, can_detach=detach is not None), chosen)

    @staticmethod
    def exit_code_for(state: RunState) -> int:
        """0 when every task succeeded, else 1 (as headless)."""
        return 0 if state.status == "succeeded" else 1

    @property
    def theme_names(self) -> list[str]:
        """delegate-tui's themes (shipped and the operator's), in the order ``t`` cycles."""
        return list(self._theme_names)

    def search_themes(self) -> None:
        """The palette's theme picker lists delegate-tui's themes only."""
        self.push_screen(CommandPalette(providers=[AppThemes], placeholder="Search for themes…"))

    async def action_quit(self) -> None:
        """Every way to quit asks first while the run goes on (the palette's Quit too)."""
        await self.action_request_quit()

    def get_system_commands(self, screen: Screen[Any]) -> Iterator[SystemCommand]:
        # Textual's own entries, less those that do nothing useful here: Keys and
        # Maximize (? and z do it for the run screen).
        for command in super().get_system_commands(screen):
            if command.title in ("Theme", "Quit", "Screenshot"):
                yield command
        if isinstance(screen, RunScreen):
            for title, help_text, callback in screen.palette_commands():
                yield SystemCommand(title, help_text, callback)
            yield SystemCommand("Next theme", "Cycle delegate-tui's themes", self.action_next_theme)


def _noting_keys(base: type[Driver], app: DelegateApp) -> type[Driver]:
    """``base`` whose input thread tells ``app`` of each key as it reads it."""

    class NotingDriver(base):  # type: ignore[valid-type,misc]
        def process_message(self, message: Message) -> None:
            if isinstance(message, events.Key):
                app.key_arrived()
            super().process_message(message)

    NotingDriver.__name__ = NotingDriver.__qualname__ = base.__name__
    return NotingDriver
