"""What the app hands its run screens: the source, the settings, and the live buffers.

Owns :class:`EventSource` (what the UI needs from a run: the engine, a replay
or a test's fake) and :class:`ScreenContext`, the one object a run screen is
built with. The app writes the context's live fields (the output store, the
process figures, the time of the last key); screens and their widgets only
read them. Screens take everything from here and nothing from the app, so
``app.py`` imports the screens and no screen imports the app.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from delegate_tui.core.events import Event
from delegate_tui.core.procstats import TreeStats
from delegate_tui.core.state import RunState
from delegate_tui.ui.config import UserConfig
from delegate_tui.ui.widgets.agent_pane import OutputStore

#: Default keys of the commands the batch bar names (the operator's rebindings win).
HINT_KEYS = {"approve": "a", "approve_all": "A", "toggle": "space", "hold": "h"}


class EventSource(Protocol):
    """What the app needs from a run: state, events, and the operator's commands."""

    state: RunState

    def subscribe(self, listener: Callable[[Event], None]) -> None: ...

    async def run(self) -> RunState: ...

    def approve(self, tasks: list[str] | None = None) -> str: ...

    def hold(self) -> str: ...

    def kill(self, task_id: str) -> str: ...

    def retry(
        self, task_id: str, context: str = "", *, keep_worktree: bool = False, fresh: bool = False
    ) -> str: ...

    def skip(self, task_id: str, reason: str = ...) -> str: ...

    def pause(self) -> str: ...

    def resume(self) -> str: ...

    def send_input(self, task_id: str, text: str) -> str: ...

    def merge(self, task_id: str) -> str: ...

    def finish(self) -> str: ...

    def end(self) -> str: ...

    def stop(self, reason: str = ...) -> str: ...


@dataclass(slots=True)
class ScreenContext:
    """Everything a run screen takes from the app, handed down once (attributes down)."""

    source: EventSource
    """The run: its state, and the operator's commands (refused in a replay)."""
    config: UserConfig
    """The operator's settings: key rebindings, scrollback."""
    read_only: bool
    """A replay: nothing the operator does changes the run."""
    clock: Callable[[], float]
    """Wall-clock time (fixed in tests and snapshots)."""
    request_refresh: Callable[[], None]
    """Ask the app to redraw at its next tick."""
    store: OutputStore = field(default_factory=OutputStore)
    """Agent output by task, raw; the app replaces it when a replay seeks."""
    transcripts: OutputStore = field(default_factory=OutputStore)
    """What agents with a structured stream did, as lines (ui/transcript.py); by task."""
    show_raw: bool = False
    """Panes show agents' raw streams instead of their transcripts (``v``)."""
    proc_stats: dict[int, TreeStats] = field(default_factory=dict)
    """CPU and memory by agent pid, sampled by the app every two seconds."""
    last_input: float = 0.0
    """Monotonic time of the operator's last key press (panes wait after one)."""
    back: Callable[[], None] | None = None
    """Leave for the list this run was opened from (``runs --open``); None: none."""

    @property
    def state(self) -> RunState:
        """The run's state (owned by the source; read only here)."""
        return self.source.state

    @property
    def scrollback(self) -> int:
        """Lines a pane keeps."""
        return self.config.scrollback

    def keys_for_hints(self) -> dict[str, str]:
        """Action id -> key, with the operator's rebindings."""
        return {**HINT_KEYS, **self.config.keys}
