"""A view's side of the run service: attach, catch up from the log, follow, command.

Owns :class:`RunClient`, an event source like the engine itself (the UI
cannot tell them apart): it connects to a run service's socket, says hello,
reads the run's state from the log (the newest keyframe and the events after
it), then applies each live event the service sends, dropping those it
already has. A view that fell behind reloads from the log on a thread, so the
loop it shares with drawing and keys is never held for the second or two that
takes under a flood; what the socket brings meanwhile is kept and applied
after the reload (:meth:`RunClient._catch_up`). While the view has a key on its
way to the screen, applying events waits (:meth:`RunClient.yield_to`): the loop
is the key's until its frame is drawn. Commands are checked here first with the same pure
:func:`commands.refusal` the engine uses, so the operator gets the answer at
once; what passes is sent to the service, and a refusal that comes back
later (the run moved meanwhile) is shown as a notice. Closing a client
(detaching) never ends the run: only ``stop`` or ``end`` do.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from delegate_tui.core.commands import Command, refusal
from delegate_tui.core.events import DecodeError, Event, Notice, decode
from delegate_tui.core.replay import final_state
from delegate_tui.core.runlog import LOG_NAME, LogError
from delegate_tui.core.service import message, reachable, socket_path
from delegate_tui.core.state import RunState, apply
from delegate_tui.core.view_socket import ViewSocket

Listener = Callable[[Event], None]
#: How long a service this client's command started may take to listen.
SERVICE_START_S = 30.0
#: What a reload may keep from the socket while it reads the log; past this it drops
#: what it kept and reads the log again when done (a service that floods faster
#: than the log is read).
HELD_BYTES = 64 << 20
#: How long applying what the socket brought may hold the loop before letting it run.
TAKE_S = 0.01
#: While the view has a key on its way to the screen (:meth:`RunClient.yield_to`),
#: applying events waits, at most this long at a time; after a wait, the next may
#: begin once as long again has passed (a key held down must not stop the view
#: following the run: it still applies events at least half the time).
INPUT_HOLD_S = 0.25
HOLD_STEP_S = 0.005
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
        self._socket: ViewSocket | None = None
        self._lines: list[bytes] = []  # read and not yet applied
        self._ids = itertools.count(1)
        self._pending: dict[int, str] = {}
        self._reloading: asyncio.Task[None] | None = None
        self._held: list[bytes] = []  # lines read while a reload runs
        self._held_bytes = 0
        self._reload_again = False
        self._input_pending: Callable[[], bool] = lambda: False
        self._next_wait = 0.0  # monotonic time from which applying may wait for input again

    # ------------------------------------------------------------ source

    @property
    def waiting(self) -> str:
        """What a view shows before it has the run's first state ("" once it has it,
        or once there is none to wait for)."""
        if self.state.plan is not None or self.service_gone or self.detached:
            return ""
        return "starting the run…" if self._starting is not None else "connecting to the run…"

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener`` with every event applied after the catch-up."""
        self._listeners.append(listener)

    def subscribe_reset(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` when the state was reloaded from the log (attach, falling behind)."""
        self._reset_listeners.append(listener)

    def yield_to(self, input_pending: Callable[[], bool]) -> None:
        """Let the view's input go first: while ``input_pending()`` (a key pressed and
        its frame not drawn yet), applying the run's events waits, so the loop the view
        shares with drawing does the key's work and nothing else (under a flood a batch
        of events took the loop for 10 ms at a time, and a key waited for several)."""
        self._input_pending = input_pending

    async def connect(self) -> None:
        """Attach: connect and say hello (ServiceGone if no service answers)."""
        deadline = time.monotonic() + SERVICE_START_S
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                with reachable(socket_path(self.run_dir)) as address:
                    sock.connect(address)  # a local socket: at once, or refused
                break
            except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError) as exc:
                sock.close()
                starting = self._starting
                if starting is None or time.monotonic() > deadline:
                    raise ServiceGone(f"no run service is running for {self.run_dir}") from exc
                if starting.poll() is not None:
                    raise ServiceGone(f"the run service did not start: {self._why()}") from exc
                await asyncio.sleep(0.01)
        self._socket = ViewSocket(sock)
        self._socket.send(message({"hello": 1}))
        lines = await self._socket.lines()
        if not lines:
            raise ServiceGone(f"the run service for {self.run_dir} closed the connection")
        answer = orjson.loads(lines[0])
        if "refused" in answer:
            raise ServiceGone(str(answer["refused"]))
        self._lines = lines[1:]
        await self._reload_off_loop()

    async def run(self) -> RunState:
        """Follow the run until it ends, the client detaches, or the service goes away."""
        if self._socket is None:
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
        assert self._socket is not None
        try:
            while True:
                await self._take(self._lines)
                lines = await self._socket.lines()
                if lines is None:
                    break
                self._lines = lines
        except (OSError, ValueError):
            pass
        while self._reloading is not None:  # what the socket brought before it closed
            await self._reloading
        if not self.detached and not self.state.finished:
            self._reload()  # the service closed before this view read the end: the log has it
            if not self.state.finished:
                self.service_gone = True
                self._local("error", SERVICE_GONE)
        return self.state

    async def _take(self, lines: list[bytes]) -> None:
        """Apply a batch of lines, letting the loop draw and take keys every
        :data:`TAKE_S` (a batch may hold seconds of a flood), and waiting while a
        key is on its way to the screen (:meth:`yield_to`)."""
        started = time.perf_counter()
        for line in lines:
            if self._reloading is not None:
                self._hold(line)
            else:
                self._line(line)
            if time.perf_counter() - started > TAKE_S:
                await asyncio.sleep(0)
                started = time.perf_counter()
            elif self._input_pending() and time.monotonic() >= self._next_wait:
                await self._wait_for_input()
                started = time.perf_counter()
        lines.clear()

    async def _wait_for_input(self) -> None:
        """Let the loop run while the view's input goes to the screen (at most
        :data:`INPUT_HOLD_S`; the next wait no sooner than as long again)."""
        began = time.monotonic()
        while self._input_pending() and time.monotonic() - began < INPUT_HOLD_S:
            await asyncio.sleep(HOLD_STEP_S)
        ended = time.monotonic()
        self._next_wait = ended + (ended - began)

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
            if self.state.last_seq >= answer["behind"].get("seq", 0):
                return  # a reload since has read past what was skipped
            self._reloading = asyncio.ensure_future(self._catch_up(skipped))

    def _hold(self, line: bytes) -> None:
        """Keep a line that came while the log is read; too many: read the log again."""
        if self._held_bytes + len(line) > HELD_BYTES:
            self._held.clear()
            self._held_bytes = 0
            self._reload_again = True
            return
        self._held.append(line)
        self._held_bytes += len(line)

    async def _catch_up(self, skipped: int) -> None:
        """Read the state from the log off the loop, then apply what came meanwhile."""
        try:
            while True:
                self._reload_again = False
                await self._reload_off_loop()
                if not self._reload_again:
                    break
        except (OSError, LogError) as exc:
            self._local("error", f"this view could not read the run log: {exc}")
        finally:
            self._reloading = None
            held, self._held, self._held_bytes = self._held, [], 0
        self._local("info", f"this view fell behind; skipped ahead {skipped} event(s)")
        for line in held:  # events the log already had are dropped by their seq
            if self._reloading is not None:  # another "behind" among them
                self._hold(line)
            else:
                self._line(line)

    async def _reload_off_loop(self) -> None:
        """:meth:`_reload`, with the log read on a thread."""
        self._apply_reload(await asyncio.to_thread(final_state, self.log_path))

    def _reload(self) -> None:
        """The state as the log has it now (the newest keyframe, then the events after it)."""
        self._apply_reload(final_state(self.log_path))

    def _apply_reload(self, loaded: tuple[RunState, object]) -> None:
        self.state = loaded[0]
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
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.close()

    # ------------------------------------------------------------ commands

    def _send(self, command: Command | str, **args: Any) -> str:
        check = {"input": "input", "stop": None}.get(command, command)
        if check is not None:
            refused = refusal(self.state, check, args.get("task_id"))  # type: ignore[arg-type]
            if refused:
                return refused
        if self._socket is None or self._socket.closed:
            return "not attached to the run"
        number = next(self._ids)
        self._pending[number] = f"{command} {args.get('task_id', '')}".strip()
        try:
            self._socket.send(message({"cmd": command, "args": args, "id": number}))
        except OSError:
            return "not attached to the run"
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
