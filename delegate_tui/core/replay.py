"""A run log as a timed, seekable event source.

Owns replay: the log's events go through the same ``apply`` into the same
``RunState`` the live run had, so the UI cannot tell a replay from a live run
except that commands are refused. Playback has a speed (0.25x to 64x), a
pause, and compresses quiet stretches (over ``QUIET_S`` of nothing happening
plays as ``QUIET_PLAY_S``) unless real time is asked for. Replay never runs a
process and never touches git.

A log opens through its index (``runlog.LogIndex``: each event's offset, time
and kind, and keyframes the writer took): nothing is decoded until it is
shown. Seeking starts from the nearest keyframe at or before the target and
applies the events after it, so a seek never rescans the log. A log without
an index (older, cut off by a crash, or from elsewhere) is indexed once on
opening, keyframes included, and the index is saved beside it for next time.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import copy
import mmap
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

from delegate_tui.core.events import (
    SCHEMA_VERSION,
    DecodeError,
    Event,
    Notice,
    TaskFinished,
    decode,
)
from delegate_tui.core.runlog import (
    IndexWriter,
    Keyframe,
    LogError,
    LogIndex,
    ReadReport,
    newer_schema,
)
from delegate_tui.core.state import RunState, apply, restore, snapshot

#: Keyframes of events held in memory (a recording, a test): every this many events.
KEYFRAME_EVERY = 2000
QUIET_S = 3.0
QUIET_PLAY_S = 0.5
#: Waits shorter than this are not slept (they add up on the playback clock).
SLEEP_MIN_S = 0.002
#: Playing a burst of events, let the loop draw and read keys this often.
YIELD_S = 0.01
SPEEDS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
REFUSED = "this is a replay: commands are not available"


def _always(_ev: Event) -> bool:
    return True


#: What "jump to the next ..." can look for: the event types, and a test of one.
MARKS: dict[str, tuple[tuple[str, ...], Callable[[Event], bool]]] = {
    "failure": (
        ("TaskFinished",),
        lambda e: isinstance(e, TaskFinished) and e.status not in ("succeeded", "awaiting-merge"),
    ),
    "conflict": (("ConflictDetected", "MergeConflict"), _always),
    "approval": (("BatchProposed", "BatchApproved", "BatchHeld"), _always),
    "operator": (
        ("KillRequested", "RetryScheduled", "TaskSkipped", "InputSent", "BatchApproved"),
        # Approvals by the policy and findings' notes typed by delegate-tui are not the operator's.
        lambda e: getattr(e, "by", "operator") == "operator",
    ),
}
MARKS["notable"] = (
    tuple(t for kind in ("failure", "conflict", "approval", "operator") for t in MARKS[kind][0]),
    lambda e: any(
        type(e).type_name in MARKS[k][0] and MARKS[k][1](e)
        for k in ("failure", "conflict", "approval", "operator")
    ),
)


@dataclass(frozen=True, slots=True)
class Position:
    """Where playback is: events applied, and seconds since the run started."""

    index: int
    total: int
    seconds: float
    duration: float


class LogEvents(Sequence[Event]):
    """The events of an indexed log, each decoded when it is asked for."""

    def __init__(self, log: Path, index: LogIndex) -> None:
        self._index = index
        self._map: mmap.mmap | bytes = b""
        if index.covered:
            with log.open("rb") as fh:
                self._map = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)

    def __len__(self) -> int:
        return len(self._index)

    @overload
    def __getitem__(self, i: int) -> Event: ...

    @overload
    def __getitem__(self, i: slice) -> list[Event]: ...

    def __getitem__(self, i: int | slice) -> Event | list[Event]:
        if isinstance(i, slice):
            return [self._decode(k) for k in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self._decode(i)

    def _decode(self, i: int) -> Event:
        start = self._index.offsets[i]
        end = self._map.find(b"\n", start)
        try:
            return decode(self._map[start : end + 1])
        except DecodeError as exc:  # the log changed under its index
            return Notice(
                ts=self._index.times[i],
                level="error",
                message=f"event {i + 1} of the log can no longer be read ({exc})",
            )


class ReplaySource:
    """Plays a run log into a RunState; refuses every operator command."""

    read_only = True

    def __init__(
        self,
        events: Sequence[Event],
        *,
        real_time: bool = False,
        report: ReadReport | None = None,
        index: LogIndex | None = None,
        log: Path | None = None,
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
        self._log = log
        if index is None:  # events held in memory: index them and take keyframes here
            index = _index_in_memory(events)
        self._index = index
        self._times = index.times
        self._start = self._times[0] if self._times else 0.0
        self._kinds = index.kinds.tobytes()
        self._keyframes = [Keyframe(0, state=RunState())]
        self._keyframes += [k for k in index.keyframes if k.events > 0]
        self._plan_state: RunState | None = None
        self._seeks = 0  # how many times the position was replaced

    @classmethod
    def from_log(cls, path: Path, *, real_time: bool = False) -> ReplaySource:
        """Open a log through its index (made and saved first if it has none or it is behind).

        Damage is tolerated and reported in ``report``; a newer schema is a LogError.
        """
        if not path.is_file():
            raise LogError(f"{path}: no such run log")
        size = path.stat().st_size
        writer = IndexWriter.open(path, extend=False)
        try:
            index = writer.index
            if index.covered < size:
                _catch_up(writer, path)
        finally:
            writer.close()
        if index.schema > SCHEMA_VERSION:  # an index saved by a newer version
            raise newer_schema(path, index.schema)
        return cls(
            LogEvents(path, index),
            real_time=real_time,
            report=index.report(size),
            index=index,
            log=path,
        )

    @property
    def has_run(self) -> bool:
        """True when the log holds the start of a run (else it is not a run log)."""
        return self._index.code("RunStarted") >= 0

    def _frame_state(self, frame: Keyframe) -> RunState:
        """A fresh copy of the state a keyframe holds."""
        if isinstance(frame.state, RunState):
            return copy.deepcopy(frame.state)
        assert self._log is not None
        return restore(self._index.read_keyframe(self._log, frame), self._plan())

    def _plan(self) -> Any:
        """The run's plan, from its RunStarted (keyframes leave it out)."""
        if self._plan_state is None:
            self._plan_state = RunState()
            code = self._index.code("RunStarted")
            if code >= 0:
                apply(self._plan_state, self.events[self._kinds.index(bytes([code]))])
        return self._plan_state.plan

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
        slot = bisect.bisect_right([k.events for k in self._keyframes], index) - 1
        frame = self._keyframes[slot]
        if frame.events <= self.index <= index and self.state.events:
            start, state = self.index, self.state  # forward from here is cheaper
        else:
            try:
                start, state = frame.events, self._frame_state(frame)
            except (LogError, DecodeError):  # a damaged keyframe: use the one before it
                del self._keyframes[slot]
                self.seek(index)
                return
        for ev in self.events[start:index]:
            apply(state, ev)
        self.state = state
        self.index = index
        self._seeks += 1
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
        types, test = MARKS[mark]
        codes = sorted({c for c in map(self._index.code, types) if c >= 0})
        if not codes:
            return False
        kinds = re.compile(b"[" + b"".join(re.escape(bytes([c])) for c in codes) + b"]")
        if direction > 0:
            pos = self.index
            while (found := kinds.search(self._kinds, pos)) is not None:
                i = found.start()
                if test(self.events[i]):
                    self.seek(i + 1)
                    return True
                pos = i + 1
        else:
            end = self.index - 1  # the event just applied is where we are, not before it
            while end > 0:
                i = max(self._kinds.rfind(bytes([c]), 0, end) for c in codes)
                if i < 0:
                    break
                if test(self.events[i]):
                    self.seek(i + 1)
                    return True
                end = i
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
        """Play until the end, then stay (the operator may seek back).

        Playback keeps a clock: each event is due its gap (shortened if quiet,
        divided by the speed) after the one before, so gaps too short to sleep
        add up instead of vanishing. Events already due play in a burst, but the
        loop is let go every ``YIELD_S``, so the screen draws and keys are read
        even when a dense log plays at 64x.
        """
        self._wake = asyncio.Event()
        loop = asyncio.get_running_loop()
        due: float | None = None  # when the next event is to be applied
        busy_since = loop.time()
        while True:
            if not self.playing or self.index >= len(self.events):
                if self.index >= len(self.events):
                    self.playing = False
                self._wake.clear()
                await self._wake.wait()
                due = None
                continue
            seeks = self._seeks
            ev = self.events[self.index]
            prev = self._times[self.index - 1] if self.index else ev.ts
            gap = max(0.0, ev.ts - prev)
            if not self.real_time and gap > QUIET_S:
                gap = QUIET_PLAY_S
            now = loop.time()
            due = (now if due is None else due) + gap / self.speed
            if due - now > SLEEP_MIN_S:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), due - now)
                    due = None  # a seek, a pause or a new speed: start the clock again
                    continue
                busy_since = loop.time()
            elif now - busy_since > YIELD_S:
                await asyncio.sleep(0)  # let the screen draw and keys be read
                busy_since = loop.time()
            if seeks != self._seeks or not self.playing:
                due = None  # the operator moved or paused while the loop was let go
                continue
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

    def retry(
        self, task_id: str, context: str = "", *, keep_worktree: bool = False, fresh: bool = False
    ) -> str:
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


def final_state(path: Path) -> tuple[RunState, ReadReport]:
    """The state a log ends in, and what reading it met, through its index: the last
    keyframe and the events after it, not a fold of the whole log (``stats``, ``runs``)."""
    source = ReplaySource.from_log(path)
    source.seek(len(source.events))
    return source.state, source.report


def _index_in_memory(events: Sequence[Event]) -> LogIndex:
    """Times, kinds and keyframes (whole states) for events that are not in a log file."""
    index = LogIndex()
    state = RunState()
    for i, ev in enumerate(events, 1):
        index.add(ev, 0)
        apply(state, ev)
        if i % KEYFRAME_EVERY == 0:
            index.keyframes.append(Keyframe(i, state=copy.deepcopy(state)))
    return index


def _catch_up(writer: IndexWriter, log: Path) -> None:
    """Index the log past what its index covers, taking keyframes as the writer would."""
    index = writer.index
    source = ReplaySource(LogEvents(log, index), index=index, log=log)
    source.seek(len(index))
    state = source.state

    def on_event(ev: Event) -> None:
        apply(state, ev)
        if index.keyframe_due():
            writer.take_keyframe(snapshot(state))

    index.extend(log, on_event)
