"""A run log as a timed, seekable event source.

Owns replay: the log's events go through the same ``apply`` into the same
``RunState`` the live run had, so the UI cannot tell a replay from a live run
except that commands are refused. Playback has a speed (0.25x to 64x), a
pause, and compresses quiet stretches (over ``QUIET_S`` of nothing happening
plays as ``QUIET_PLAY_S``) unless real time is asked for. Seeking rebuilds the
state from the nearest keyframe (a copy of the state taken every
``KEYFRAME_EVERY`` events while loading) plus the events after it, so a seek
never rescans the log. Replay never runs a process and never touches git.
"""

from __future__ import annotations

import asyncio
import bisect
import copy
import gc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from delegate_tui.core.events import (
    BatchApproved,
    BatchHeld,
    BatchProposed,
    ConflictDetected,
    Event,
    InputSent,
    KillRequested,
    MergeConflict,
    RetryScheduled,
    TaskFinished,
    TaskSkipped,
)
from delegate_tui.core.runlog import ReadReport, read_events
from delegate_tui.core.state import RunState, apply

KEYFRAME_EVERY = 2000
#: Keyframes hold whole states (output tails included): long logs space them out.
MAX_KEYFRAMES = 200
QUIET_S = 3.0
QUIET_PLAY_S = 0.5
SPEEDS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
REFUSED = "this is a replay: commands are not available"

#: What "jump to the next ..." can look for.
MARKS: dict[str, Callable[[Event], bool]] = {
    "failure": lambda e: (
        isinstance(e, TaskFinished) and e.status not in ("succeeded", "awaiting-merge")
    ),
    "conflict": lambda e: isinstance(e, ConflictDetected | MergeConflict),
    "approval": lambda e: isinstance(e, BatchProposed | BatchApproved | BatchHeld),
    "operator": lambda e: (
        isinstance(e, KillRequested | RetryScheduled | TaskSkipped | InputSent)
        or (isinstance(e, BatchApproved) and e.by == "operator")
    ),
}
MARKS["notable"] = lambda e: any(
    MARKS[k](e) for k in ("failure", "conflict", "approval", "operator")
)


@dataclass(frozen=True, slots=True)
class Position:
    """Where playback is: events applied, and seconds since the run started."""

    index: int
    total: int
    seconds: float
    duration: float


class ReplaySource:
    """Plays a run log into a RunState; refuses every operator command."""

    read_only = True

    def __init__(
        self, events: list[Event], *, real_time: bool = False, report: ReadReport | None = None
    ) -> None:
        self.events = events
        self.report = report or ReadReport()
        self.real_time = real_time
        self.state = RunState()
        self.index = 0  # events applied so far
        self.speed = 1.0
        self.playing = True
        self._listeners: list[Callable[[Event], None]] = []
        self._reset_listeners: list[Callable[[], None]] = []
        self._wake = asyncio.Event() if _loop_running() else None
        self._times = [e.ts for e in events]
        self._start = self._times[0] if self._times else 0.0
        self._keyframes: list[tuple[int, RunState]] = []
        self._build_keyframes()

    @classmethod
    def from_log(cls, path: Path, *, real_time: bool = False) -> ReplaySource:
        """Load a log file (damage is tolerated and reported in ``report``).

        A long log is a million objects that live as long as the replay: the cyclic
        garbage collector would walk them all again and again while they load (a
        quarter of the time), and later in the middle of playback. They are made
        with it off, then moved out of its sight (``gc.freeze``).
        """
        report = ReadReport()
        collecting = gc.isenabled()
        gc.disable()
        try:
            source = cls(list(read_events(path, report)), real_time=real_time, report=report)
        finally:
            if collecting:
                gc.enable()
        gc.freeze()
        return source

    def _build_keyframes(self) -> None:
        state = RunState()
        self._keyframes = [(0, copy.deepcopy(state))]
        every = max(KEYFRAME_EVERY, len(self.events) // MAX_KEYFRAMES)
        for i, ev in enumerate(self.events, 1):
            apply(state, ev)
            if i % every == 0:
                self._keyframes.append((i, copy.deepcopy(state)))
        self.final_state = state

    # ------------------------------------------------------------ listening

    def subscribe(self, listener: Callable[[Event], None]) -> None:
        """Called with each event as playback applies it."""
        self._listeners.append(listener)

    def subscribe_reset(self, listener: Callable[[], None]) -> None:
        """Called after a seek replaced the state (views must redraw from it)."""
        self._reset_listeners.append(listener)

    # ------------------------------------------------------------ position

    @property
    def position(self) -> Position:
        """Events applied, and time into the run."""
        last = self._times[self.index - 1] if self.index else self._start
        end = self._times[-1] if self._times else self._start
        return Position(self.index, len(self.events), last - self._start, end - self._start)

    def seek(self, index: int) -> None:
        """Show the run as it was after ``index`` events."""
        index = max(0, min(len(self.events), index))
        slot = bisect.bisect_right([k for k, _ in self._keyframes], index) - 1
        base, frame = self._keyframes[slot]
        if base <= self.index <= index and self.index - base >= 0 and self.state.events:
            start, state = self.index, self.state  # forward from here is cheaper
        else:
            start, state = base, copy.deepcopy(frame)
        for ev in self.events[start:index]:
            apply(state, ev)
        self.state = state
        self.index = index
        for listener in self._reset_listeners:
            listener()
        self._poke()

    def seek_seconds(self, seconds: float) -> None:
        """Jump to a time into the run."""
        self.seek(bisect.bisect_right(self._times, self._start + max(0.0, seconds)))

    def step(self, events: int) -> None:
        """Move by a number of events (negative goes back)."""
        self.seek(self.index + events)

    def jump(self, mark: str, direction: int) -> bool:
        """To the next (1) or previous (-1) event of a kind in ``MARKS``; False if none."""
        test = MARKS[mark]
        if direction > 0:
            for i in range(self.index, len(self.events)):
                if test(self.events[i]):
                    self.seek(i + 1)
                    return True
        else:
            for i in range(self.index - 2, -1, -1):
                if test(self.events[i]):
                    self.seek(i + 1)
                    return True
        return False

    def set_speed(self, faster: int) -> float:
        """Step the speed up (1) or down (-1) through SPEEDS."""
        index = min(range(len(SPEEDS)), key=lambda i: abs(SPEEDS[i] - self.speed))
        self.speed = SPEEDS[max(0, min(len(SPEEDS) - 1, index + faster))]
        self._poke()
        return self.speed

    def toggle(self) -> bool:
        """Play or pause; returns whether it now plays."""
        self.playing = not self.playing
        if self.playing and self.index >= len(self.events):
            self.seek(0)
        self._poke()
        return self.playing

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    # ------------------------------------------------------------ playback

    async def run(self) -> RunState:
        """Play until the end, then stay (the operator may seek back)."""
        self._wake = asyncio.Event()
        while True:
            if not self.playing or self.index >= len(self.events):
                if self.index >= len(self.events):
                    self.playing = False
                self._wake.clear()
                await self._wake.wait()
                continue
            ev = self.events[self.index]
            prev = self._times[self.index - 1] if self.index else ev.ts
            gap = max(0.0, ev.ts - prev)
            if not self.real_time and gap > QUIET_S:
                gap = QUIET_PLAY_S
            delay = gap / self.speed
            if delay > 0.001:
                self._wake.clear()
                before = self.index
                try:
                    await asyncio.wait_for(self._wake.wait(), delay)
                    if self.index != before or not self.playing:
                        continue  # a seek or a pause happened while waiting
                except TimeoutError:
                    pass
            apply(self.state, ev)
            self.index += 1
            for listener in self._listeners:
                listener(ev)

    # ------------------------------------------------------------ commands (refused)

    def approve(self, tasks: list[str] | None = None) -> str:
        return REFUSED

    def hold(self) -> str:
        return REFUSED

    def kill(self, task_id: str) -> str:
        return REFUSED

    def retry(self, task_id: str, context: str = "", *, keep_worktree: bool = False) -> str:
        return REFUSED

    def skip(self, task_id: str, reason: str = "") -> str:
        return REFUSED

    def pause(self) -> str:
        return REFUSED

    def resume(self) -> str:
        return REFUSED

    def send_input(self, task_id: str, text: str) -> str:
        return REFUSED

    def merge(self, task_id: str) -> str:
        return REFUSED

    def finish(self) -> str:
        return REFUSED

    def end(self) -> str:
        return REFUSED

    def stop(self, reason: str = "") -> str:
        return ""


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
