"""Where a live run's events are made real: numbered, timed, applied, logged, heard.

Owns the one path every event of a live run takes: it gets the next sequence
number and the time, is folded into the :class:`RunState` through
:func:`state.apply`, is appended to the run log (with a keyframe of the state
when one is due), and is handed to each listener (the UI, the headless
printer, the engine's own wake-up; a listener that raises is reported to the
loop's exception handler, which stops the run cleanly, and never breaks the
emitting code's flow). Agents' output is gathered per task for
a moment and emitted as one event, so a flood costs tens of events a second,
not thousands; any other event flushes the gathered output first, so an exit
always follows its last bytes.

When the log cannot be written (a full disk, a quota, an I/O error), the
emitter stops writing (the log keeps its last complete record; a torn tail
is cut when it is reopened), tells its ``on_log_failure`` callback once, with
one line for the operator, and goes on applying events and handing them out,
so the run can end its agents cleanly and show why.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import time
from collections.abc import Callable
from pathlib import Path

from delegate_tui.core import history
from delegate_tui.core.events import Event, TaskOutput
from delegate_tui.core.runlog import LogWriter
from delegate_tui.core.state import RunState, apply, snapshot

Listener = Callable[[Event], None]
#: Agent output is gathered per task for this long (or this many bytes) and
#: emitted as one event.
OUTPUT_FLUSH_S = 0.025
OUTPUT_FLUSH_BYTES = 1 << 20


class Emitter:
    """Numbers, applies, logs and fans out the events of one live run."""

    def __init__(self, state: RunState) -> None:
        self.state = state
        self.seq = state.last_seq
        self._log: LogWriter | None = None
        #: Called once, with a line for the operator, when the log cannot be written.
        self.on_log_failure: Callable[[str], None] | None = None
        self.log_failure = ""
        self._listeners: list[Listener] = []
        self._out_buf: dict[tuple[str, int, str], bytearray] = {}
        self._out_bytes = 0
        self._out_timer: asyncio.TimerHandle | None = None

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener`` with every event, after it is applied and logged."""
        self._listeners.append(listener)

    def open_log(self, path: Path) -> None:
        """Append from now on to the log at ``path`` (created, or continued on resume)."""
        self._log = LogWriter(path)

    def close(self) -> None:
        """Flush what output is gathered, then sync and close the log."""
        if self._out_buf:
            self._flush_output()
        if self._log is not None:
            self._log.close()
            if self.state.finished:  # what stats --all and the runs screen read
                history.keep_summary(self._log.path, self.state)
            self._log = None

    def emit(self, ev: Event | Callable[[float], Event]) -> Event:
        """Number, apply, log and hand out ``ev``; return it as it was logged.

        ``ev`` may be a function of the event's own time, for an event that carries
        figures up to that moment (the run's metrics in ``RunFinished``): it is called
        with the very ``ts`` the event is stamped with, after any pending output."""
        if self._out_buf:
            self._flush_output()  # output first: an exit must follow its last bytes
        return self._emit_now(ev)

    def _emit_now(self, ev: Event | Callable[[float], Event]) -> Event:
        self.seq += 1
        now = time.time()
        if not isinstance(ev, Event):
            ev = ev(now)
        ev = dataclasses.replace(ev, seq=self.seq, ts=now)
        apply(self.state, ev)
        if self._log is not None:
            try:
                self._log.write(ev, self._keyframe)
            except OSError as exc:
                self._lost_log(exc)
        for listener in self._listeners:
            try:
                listener(ev)
            except Exception as exc:  # a view's bug: reported, never a break in the run's flow
                asyncio.get_running_loop().call_exception_handler(
                    {"message": f"a listener failed on {ev.type_name}", "exception": exc}
                )
        return ev

    def _lost_log(self, exc: OSError) -> None:
        log, self._log = self._log, None
        assert log is not None
        with contextlib.suppress(OSError):
            log.close()
        self.log_failure = log_failure_message(exc, log.path)
        if self.on_log_failure is not None:
            self.on_log_failure(self.log_failure)

    def _keyframe(self) -> object:
        """The state as data, for the log's index (replay seeks from these)."""
        return snapshot(self.state)

    def output(self, task: str, attempt: int, stream: str, data: bytes) -> None:
        """Gather a chunk of a task's output; it is emitted within ``OUTPUT_FLUSH_S``."""
        key = (task, attempt, stream)
        buffer = self._out_buf.get(key)
        if buffer is None:
            self._out_buf[key] = bytearray(data)
        else:
            buffer.extend(data)
        self._out_bytes += len(data)
        if self._out_bytes >= OUTPUT_FLUSH_BYTES:
            self._flush_output()
        elif self._out_timer is None:
            self._out_timer = asyncio.get_running_loop().call_later(
                OUTPUT_FLUSH_S, self._flush_output
            )

    def sink(self, task: str, attempt: int, stream: str) -> Callable[[bytes], None]:
        """A callback that gathers one stream of one attempt's output."""

        def gather(data: bytes) -> None:
            self.output(task, attempt, stream, data)

        return gather

    def _flush_output(self) -> None:
        if self._out_timer is not None:
            self._out_timer.cancel()
            self._out_timer = None
        pending, self._out_buf, self._out_bytes = self._out_buf, {}, 0
        for (task, attempt, stream), data in pending.items():
            self._emit_now(TaskOutput(task=task, attempt=attempt, data=bytes(data), stream=stream))


def log_failure_message(exc: OSError, path: Path) -> str:
    """One line on why the log could not be written, and what to do about it."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        what = "no space left on device" if exc.errno == errno.ENOSPC else "disk quota exceeded"
        remedy = "free space"
    else:
        what = (exc.strerror or type(exc).__name__).lower()
        remedy = "fix that"
    return (
        f"{what} writing the run log at {path}: agents stopped; {remedy}, then delegate-tui resume"
    )
