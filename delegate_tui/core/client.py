"""A view's side of the run service: attach, catch up from the log, follow, command.

Owns :class:`RunClient`, an event source like the engine itself (the UI
cannot tell them apart): it connects to a run service's socket, says hello,
reads the run's state from the log (the newest keyframe and the events after
it), then applies each live event the service sends, dropping those it
already has. Commands are checked here first with the same pure
:func:`commands.refusal` the engine uses, so the operator gets the answer at
once; what passes is sent to the service, and a refusal that comes back
later (the run moved meanwhile) is shown as a notice. Closing a client
(detaching) never ends the run: only ``stop`` or ``end`` do.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from delegate_tui.core.commands import Command, refusal
from delegate_tui.core.events import DecodeError, Event, Notice, decode
from delegate_tui.core.replay import final_state
from delegate_tui.core.runlog import LOG_NAME
from delegate_tui.core.service import MAX_LINE, message, reachable, socket_path
from delegate_tui.core.state import RunState, apply

Listener = Callable[[Event], None]
#: How long a service this client's command started may take to listen.
SERVICE_START_S = 30.0
#: The run service's own output (a traceback, if it ever has one), in the run folder.
SERVICE_LOG = "service.log"
SERVICE_GONE = (
    "the run service is gone (killed or crashed): its agents were ended; "
    "`delegate-tui resume` continues the run from its log"
)


class ServiceGone(Exception):
    """No run service answers at that socket (the run ended, or its service died)."""


class RunClient:
    """One attached view of a live run."""

    def __init__(self, run_dir: Path, *, starting: subprocess.Popen[bytes] | None = None) -> None:
        """``starting``: the service this client's command just started; connecting
        waits for it to listen (the UI draws meanwhile) instead of failing at once."""
        self.run_dir = run_dir
        self._starting = starting
        self.log_path = run_dir / LOG_NAME
        self.state = RunState()
        self.detached = False
        self.service_gone = False
        self._listeners: list[Listener] = []
        self._reset_listeners: list[Callable[[], None]] = []
        self._writer: asyncio.StreamWriter | None = None
        self._reader: asyncio.StreamReader | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, str] = {}

    # ------------------------------------------------------------ source

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener`` with every event applied after the catch-up."""
        self._listeners.append(listener)

    def subscribe_reset(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` when the state was reloaded from the log (attach, falling behind)."""
        self._reset_listeners.append(listener)

    async def connect(self) -> None:
        """Attach: connect and say hello (ServiceGone if no service answers)."""
        deadline = time.monotonic() + SERVICE_START_S
        while True:
            try:
                with reachable(socket_path(self.run_dir)) as address:
                    self._reader, self._writer = await asyncio.open_unix_connection(
                        address, limit=MAX_LINE * 16
                    )
                break
            except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError) as exc:
                starting = self._starting
                if starting is None or time.monotonic() > deadline:
                    raise ServiceGone(f"no run service is running for {self.run_dir}") from exc
                if starting.poll() is not None:
                    raise ServiceGone(f"the run service did not start: {self._why()}") from exc
                await asyncio.sleep(0.01)
        self._writer.write(message({"hello": 1}))
        first = await self._reader.readline()
        if not first:
            raise ServiceGone(f"the run service for {self.run_dir} closed the connection")
        answer = orjson.loads(first)
        if "refused" in answer:
            raise ServiceGone(str(answer["refused"]))
        self._reload()

    async def run(self) -> RunState:
        """Follow the run until it ends, the client detaches, or the service goes away."""
        if self._reader is None:
            try:
                await self.connect()
            except ServiceGone as exc:
                if self.log_path.exists():
                    self._reload()
                if self.state.finished:
                    return self.state  # it ended before this view came
                self.service_gone = True
                self._local("error", str(exc) if self._starting else SERVICE_GONE)
                return self.state
        assert self._reader is not None
        try:
            while True:
                line = await self._reader.readline()
                if not line:
                    break
                self._line(line)
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        if not self.detached and not self.state.finished:
            self._reload()  # the service closed before this view read the end: the log has it
            if not self.state.finished:
                self.service_gone = True
                self._local("error", SERVICE_GONE)
        return self.state

    def _why(self) -> str:
        """The end of the service's own output (its error), or where to find it."""
        path = self.run_dir / SERVICE_LOG
        try:
            lines = path.read_text(errors="replace").strip().splitlines()
        except OSError:
            lines = []
        return " / ".join(lines[-3:]) if lines else f"see {path}"

    def _line(self, line: bytes) -> None:
        if line.startswith(b'{"type"'):  # an event: the log's own line
            try:
                ev = decode(line)
            except DecodeError:
                return
            if ev.seq <= self.state.last_seq:
                return  # already read from the log
            apply(self.state, ev)
            for listener in self._listeners:
                listener(ev)
            return
        answer: dict[str, Any] = orjson.loads(line)
        if "ack" in answer:
            refused = answer.get("refusal") or ""
            command = self._pending.pop(answer["ack"], "")
            if refused:
                self._local("warning", f"{command}: {refused}" if command else refused)
        elif "behind" in answer:
            skipped = answer["behind"].get("skipped", 0)
            self._reload()
            self._local("info", f"this view fell behind; skipped ahead {skipped} event(s)")

    def _reload(self) -> None:
        """The state as the log has it now (the newest keyframe, then the events after it)."""
        self.state, _report = final_state(self.log_path)
        for listener in self._reset_listeners:
            listener()

    def _local(self, level: str, text: str) -> None:
        """A notice for this view only (not in the log)."""
        ev = Notice(level=level, message=text, ts=time.time())
        apply(self.state, ev)
        for listener in self._listeners:
            listener(ev)

    def detach(self) -> None:
        """Leave the run going; stop following it."""
        self.detached = True
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()

    # ------------------------------------------------------------ commands

    def _send(self, command: Command | str, **args: Any) -> str:
        check = {"input": "input", "stop": None}.get(command, command)
        if check is not None:
            refused = refusal(self.state, check, args.get("task_id"))  # type: ignore[arg-type]
            if refused:
                return refused
        if self._writer is None or self._writer.is_closing():
            return "not attached to the run"
        number = next(self._ids)
        self._pending[number] = f"{command} {args.get('task_id', '')}".strip()
        self._writer.write(message({"cmd": command, "args": args, "id": number}))
        return ""

    def approve(self, tasks: list[str] | None = None) -> str:
        """Approve the waiting batch (or only ``tasks`` of it)."""
        return self._send("approve", tasks=tasks)

    def hold(self) -> str:
        """Decline the waiting batch for now."""
        return self._send("hold")

    def pause(self) -> str:
        """Stop proposing batches."""
        return self._send("pause")

    def resume(self) -> str:
        """Propose batches again."""
        return self._send("resume")

    def kill(self, task_id: str) -> str:
        """End a running task's process group."""
        return self._send("kill", task_id=task_id)

    def retry(
        self, task_id: str, context: str = "", *, keep_worktree: bool = False, fresh: bool = False
    ) -> str:
        """Start a task again with the operator's context."""
        return self._send(
            "retry", task_id=task_id, context=context, keep_worktree=keep_worktree, fresh=fresh
        )

    def skip(self, task_id: str, reason: str = "skipped by the operator") -> str:
        """Give up on a task."""
        return self._send("skip", task_id=task_id, reason=reason)

    def send_input(self, task_id: str, text: str) -> str:
        """Type a line into a running agent."""
        return self._send("input", task_id=task_id, text=text)

    def merge(self, task_id: str) -> str:
        """Merge a task waiting for a manual merge."""
        return self._send("merge", task_id=task_id)

    def finish(self) -> str:
        """End the run and merge into the operator's branch."""
        return self._send("finish")

    def end(self) -> str:
        """End the run once nothing runs."""
        return self._send("end")

    def stop(self, reason: str = "stopped by the operator") -> str:
        """End the run now: agents are ended, their tasks interrupted (resumable)."""
        if self.state.finished:
            return ""
        return self._send("stop", reason=reason)
