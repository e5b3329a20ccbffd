"""The replay screen: the run screen over a recorded log, with playback keys.

Owns what differs in a replay: the playback bar and keys (pause, seek, step,
speed, jumps to notable events), and the refusal of every operator command.
Commands are hidden from the footer and the palette, and their keys say that
this is a replay; the diff (``d``) is refused too, since a replay never runs
git. The layout and everything that only looks (details, search, zoom,
collisions) is the run screen's own.
"""

from __future__ import annotations

from textual.app import ComposeResult

from delegate_tui.core.replay import REFUSED, ReplaySource
from delegate_tui.ui.keys import (
    LIVE_ONLY_ACTIONS,
    REPLAY_BINDINGS,
    REPLAY_HELP,
    REPLAY_PALETTE,
    HelpSections,
    PaletteEntry,
)
from delegate_tui.ui.screens.run import RunScreen
from delegate_tui.ui.widgets.replay_bar import ReplayBar
from delegate_tui.ui.widgets.task_graph import TaskGraph


class ReplayScreen(RunScreen):
    """The run screen of a replayed log."""

    BINDINGS = REPLAY_BINDINGS

    MODE = "replay"
    KEY_HELP: HelpSections = REPLAY_HELP
    PALETTE: tuple[PaletteEntry, ...] = REPLAY_PALETTE

    def compose_bars(self) -> ComposeResult:
        yield ReplayBar(id="replay")

    def _replay(self) -> ReplaySource | None:
        source = self.context.source
        return source if isinstance(source, ReplaySource) else None

    def _refresh_view(self, now: float) -> None:
        replay = self._replay()
        if replay is not None:
            self.query_one(ReplayBar).show(
                replay.position,
                playing=replay.playing,
                speed=replay.speed,
                real_time=replay.real_time,
            )
        super()._refresh_view(now)

    def timeline_end(self, now: float) -> float:
        """The timeline spans the whole recording; its cursor is the moment shown."""
        replay = self._replay()
        if replay is None or not replay.state.started_ts:
            return now
        return replay.state.started_ts + replay.position.duration

    # ------------------------------------------------------------ which keys act

    def refusal_of(self, action: str) -> str | None:
        """Every command is refused: this is a record of a run, not a run."""
        return REFUSED if action in LIVE_ONLY_ACTIONS else None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Commands are hidden from the footer (their keys still say why they do nothing),
        and so is esc when there is no runs list to go back to."""
        if action == "back":
            return self.context.back is not None
        return action not in LIVE_ONLY_ACTIONS

    def action_back(self) -> None:
        """Back to the runs list this replay was opened from."""
        if self.context.back is not None:
            self.context.back()

    # ------------------------------------------------------------ playback

    def action_pause(self) -> None:
        """Play or pause the replay."""
        replay = self._replay()
        if replay is None:
            self._command(REFUSED)
            return
        replay.toggle()
        self.context.request_refresh()

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
            self.context.request_refresh()

    def action_replay_jump(self, mark: str, direction: int) -> None:
        """Jump to the next (previous) event of a kind, and select the task it is about."""
        replay = self._replay()
        if replay is None:
            return
        if not replay.jump(mark, direction):
            self.notify(f"no {'next' if direction > 0 else 'previous'} {mark} event", timeout=2)
            return
        event = replay.events[replay.index - 1]  # the event jumped to was just applied
        tasks = getattr(event, "tasks", ())
        task = getattr(event, "task", "") or (tasks[0] if tasks else "")
        if task:
            self.query_one(TaskGraph).select(task)
