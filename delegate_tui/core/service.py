"""The run service: one process that owns a run, and the socket views attach to.

Owns a run's life apart from any terminal. The service runs the engine (the
agents, git, the watcher, the log) in its own session, so closing the
terminal, an SSH drop or the UI crashing does not end the run; it exits when
the run ends. Views (the UI in this or another terminal, a browser page)
attach over a Unix socket in the run's folder, ``control.sock``: the folder
is 0700, the socket 0600, and the peer's uid is checked (SO_PEERCRED), so
only the user who started the run may attach; so is its PID namespace, so a
sandboxed agent (which runs as that user, in a namespace of its own) cannot
command the run that started it.

The protocol is JSON, one object a line. A client says ``{"hello": 1}``;
the service answers ``{"welcome": {"run_id", "log", "seq"}}`` and from then
on sends every event as it is logged (the log's own line). The client
catches up from the log file itself (events up to ``seq`` are on disk before
the welcome is sent) and drops what it already has. Commands go the other
way: ``{"cmd": "kill", "args": {"task_id": "a"}, "id": 7}``, answered by
``{"ack": 7, "refusal": ""}`` (empty when carried out); every command the
engine carries out is in the log as usual.

With ``DELEGATE_AGENT_NICE=N`` the service starts its agents N nicer than
itself, their autogroups too (core/process.py), so that under a flood the
service reads them and its views draw before they print more; off by default.

A slow client never slows the run: each client has a bounded queue; when it
is full, the queue is dropped and the client is told ``{"behind": {"seq",
"skipped"}}``, and it reloads the state from the log (the newest keyframe and
the events after it) before following again.

A run nobody can reach is not left running: when the run's folder is deleted
(or replaced, or its socket removed), no view can attach and no ``stop`` can
find it, so within :data:`FOLDER_CHECK_S` the service stops the run as
``stop`` would (agents ended within their grace period, worktrees removed),
says so in one line on its stderr, and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from delegate_tui.core.events import Event, encode
from delegate_tui.core.process import agent_nice

if TYPE_CHECKING:
    from delegate_tui.core.engine import Engine

SOCKET_NAME = "control.sock"
#: Events, and bytes, a client may be behind before it is moved to the newest keyframe.
CLIENT_QUEUE_EVENTS = 4096
CLIENT_QUEUE_BYTES = 32 << 20
#: The longest line a client may send (a command with an operator's note).
MAX_LINE = 1 << 20
#: A run that ended before any view attached (a quick run started from the UI)
#: waits this long for its first view, so that view sees the end, not an error.
LINGER_S = 10.0
#: At the end of the run, a view whose queue has not shrunk for this long is left
#: behind (it reads the end from the log); one that is still reading is waited for.
CLOSE_STALL_S = 5.0
#: How often the service checks that its run folder and socket are still there.
FOLDER_CHECK_S = 1.0

#: Commands a client may send: name -> (engine method, allowed argument names).
COMMANDS: dict[str, tuple[str, frozenset[str]]] = {
    "approve": ("approve", frozenset({"tasks"})),
    "hold": ("hold", frozenset()),
    "pause": ("pause", frozenset()),
    "resume": ("resume", frozenset()),
    "kill": ("kill", frozenset({"task_id"})),
    "retry": ("retry", frozenset({"task_id", "context", "keep_worktree", "fresh"})),
    "skip": ("skip", frozenset({"task_id", "reason"})),
    "input": ("send_input", frozenset({"task_id", "text"})),
    "merge": ("merge", frozenset({"task_id"})),
    "finish": ("finish", frozenset()),
    "end": ("end", frozenset()),
    "stop": ("stop", frozenset({"reason"})),
}


def socket_path(run_dir: Path) -> Path:
    """Where a run's service listens."""
    return run_dir / SOCKET_NAME


@contextlib.contextmanager
def reachable(path: Path) -> Iterator[str]:
    """A path to bind or connect ``path`` by: itself, or one through the folder's descriptor
    when it is longer than a Unix socket address may be (108 bytes; repositories nest deep)."""
    if len(os.fsencode(path)) < 100:
        yield str(path)
        return
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{folder}/{path.name}"
    finally:
        os.close(folder)


def message(obj: dict[str, Any]) -> bytes:
    """One protocol line."""
    return orjson.dumps(obj) + b"\n"


def peer_creds(sock: socket.socket) -> tuple[int, int]:
    """``(pid, uid)`` of the process at the other end of a Unix socket; the pid as this
    process's PID namespace sees it (0 when it cannot see the peer's)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", creds)
    return int(pid), int(uid)


def in_our_pid_namespace(pid: int) -> bool:
    """Whether process ``pid`` shares this process's PID namespace.

    A sandboxed agent runs in a PID namespace of its own (bubblewrap's
    ``--unshare-pid``) as the operator's own user, so the uid check alone would
    let it attach and send commands (finish, merge, input) to the run that
    started it; its namespace tells it apart.
    """
    if pid <= 0:
        return False
    try:
        return os.readlink(f"/proc/{pid}/ns/pid") == os.readlink("/proc/self/ns/pid")
    except OSError:
        return False


@dataclass(eq=False)
class _Client:
    writer: asyncio.StreamWriter
    queue: asyncio.Queue[bytes] = field(default_factory=lambda: asyncio.Queue(CLIENT_QUEUE_EVENTS))
    queued_bytes: int = 0
    skipped: int = 0


class RunService:
    """Serves one engine's run to the clients that attach."""

    def __init__(self, engine: Engine, *, allowed_uid: Callable[[int], bool] | None = None) -> None:
        self.engine = engine
        self._allowed = allowed_uid or (lambda uid: uid == os.getuid())
        self._clients: set[_Client] = set()
        self._attached = asyncio.Event()  # some view said hello, once
        self._server: asyncio.AbstractServer | None = None
        self.path = Path()
        engine.subscribe(self._on_event)
        # DELEGATE_AGENT_NICE: the service and its views before the agents.
        engine.lower_agents(agent_nice())

    @property
    def clients(self) -> int:
        """How many clients are attached now."""
        return len(self._clients)

    async def run(self, on_listening: Callable[[Path], None] | None = None) -> None:
        """Run the engine and serve it until the run ends; then close every client."""
        engine = self.engine
        listening = asyncio.Event()

        def started(ev: Event) -> None:
            if not listening.is_set() and engine.run_dir != Path():
                listening.set()

        engine.subscribe(started)
        runner = asyncio.get_running_loop().create_task(engine.run())
        waiter = asyncio.get_running_loop().create_task(listening.wait())
        await asyncio.wait({runner, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        try:
            if listening.is_set():
                await self._listen()
                if on_listening is not None:
                    on_listening(self.path)
                watch = asyncio.get_running_loop().create_task(self._watch_folder())
                runner.add_done_callback(lambda _: watch.cancel())
            await runner
            if self._server is not None and not self._attached.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._attached.wait(), LINGER_S)
        finally:
            await self._close()

    async def _listen(self) -> None:
        run_dir = self.engine.run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(run_dir, 0o700)
        self.path = socket_path(run_dir)
        if service_status(run_dir) is not None:
            raise RuntimeError(f"another run service already serves {run_dir}")
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # left by a service that was killed
        # No umask games: git and agents start from this process meanwhile. The
        # folder is 0700, so nobody else can reach the socket before its chmod.
        with reachable(self.path) as address:
            self._server = await asyncio.start_unix_server(
                self._serve, path=address, limit=MAX_LINE
            )
        os.chmod(self.path, 0o600)

    async def _watch_folder(self) -> None:
        """Stop the run once nobody can reach it: its folder or socket is gone."""
        run_dir = self.engine.run_dir
        ours = os.stat(run_dir).st_ino, os.stat(self.path).st_ino
        while True:
            await asyncio.sleep(FOLDER_CHECK_S)
            try:
                there = os.stat(run_dir).st_ino, os.stat(self.path).st_ino
            except OSError:
                there = (-1, -1)
            if there != ours:
                break
        said = (
            f"delegate-tui: the run folder {run_dir} was deleted (or its control socket "
            "removed) while the run went on: no view could attach to it or stop it, so its "
            "agents were stopped and the run service exits"
        )
        print(said, file=sys.stderr, flush=True)
        self.engine.stop(said.removeprefix("delegate-tui: "))

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        for client in list(self._clients):
            self._put(client, b"")  # the end: the writer closes after what is queued
        # Give writers time to deliver the end of the run: as long as they move bytes
        # (a view draining a flood's queue on a busy machine may need more than a few
        # seconds), but not for a view that stopped reading.
        loop = asyncio.get_running_loop()
        progress_at, left = loop.time(), self._queued()
        while self._clients and loop.time() - progress_at < CLOSE_STALL_S:
            await asyncio.sleep(0.01)
            if self._queued() < left:
                progress_at, left = loop.time(), self._queued()

    def _queued(self) -> int:
        return sum(client.queued_bytes for client in self._clients)

    def _on_event(self, ev: Event) -> None:
        if not self._clients:
            return
        line = encode(ev)
        for client in list(self._clients):
            self._put(client, line)

    def _put(self, client: _Client, line: bytes) -> None:
        """Queue ``line`` for ``client``; one that is too far behind skips to the log's end."""
        try:
            if client.queued_bytes + len(line) > CLIENT_QUEUE_BYTES:
                raise asyncio.QueueFull
            client.queue.put_nowait(line)
            client.queued_bytes += len(line)
        except asyncio.QueueFull:
            dropped = client.queue.qsize()
            while not client.queue.empty():
                client.queue.get_nowait()
            client.queued_bytes = 0
            client.skipped += dropped + (1 if line else 0)
            behind = {"seq": self.engine.state.last_seq, "skipped": client.skipped}
            client.queue.put_nowait(message({"behind": behind}))
            if not line:
                client.queue.put_nowait(line)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # One view's connection: whatever ends it (the view going away, the server
        # closing, a cancel from asyncio's streams) ends only it, never the run. Python
        # 3.11's streams report a cancelled handler to the loop's exception handler,
        # which stops the run: so a cancel is absorbed here.
        with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
            await self._serve_view(reader, writer)

    async def _serve_view(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        try:
            pid, uid = peer_creds(sock)
        except OSError:
            pid, uid = 0, -1
        refused = ""
        if not self._allowed(uid):
            refused = "this run belongs to another user"
        elif not in_our_pid_namespace(pid):
            refused = (
                "this run takes views only from its own PID namespace "
                "(a sandboxed agent may not command it)"
            )
        if refused:
            writer.write(message({"refused": refused}))
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            writer.close()
            return
        client = _Client(writer)
        sender = asyncio.get_running_loop().create_task(self._send(client))
        try:
            await self._read(reader, client)
        finally:
            self._clients.discard(client)
            sender.cancel()
            with contextlib.suppress(Exception):
                writer.close()

    async def _send(self, client: _Client) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while True:
                line = await client.queue.get()
                client.queued_bytes = max(0, client.queued_bytes - len(line))
                if not line:
                    break
                client.writer.write(line)
                await client.writer.drain()
            # The end: the connection closes once the transport has sent what it holds
            # (the run's last events). Only then is the view let go: the service exits
            # when no view is left, and bytes still in a transport would be lost.
            client.writer.close()
            await client.writer.wait_closed()
        self._clients.discard(client)
        with contextlib.suppress(Exception):
            client.writer.close()

    async def _read(self, reader: asyncio.StreamReader, client: _Client) -> None:
        while True:
            try:
                line = await reader.readline()
            except (ConnectionError, ValueError):  # a line over MAX_LINE: not a client of ours
                return
            if not line:
                return
            try:
                request = orjson.loads(line)
            except orjson.JSONDecodeError:
                self._put(client, message({"error": "not JSON"}))
                continue
            if not isinstance(request, dict):
                continue
            if "hello" in request:
                # Registered before the welcome: every event after `seq` reaches its queue.
                self._clients.add(client)
                self._attached.set()
                state = self.engine.state
                welcome = {
                    "run_id": state.run_id,
                    "log": str(self.engine.log_path),
                    "seq": state.last_seq,
                }
                self._put(client, message({"welcome": welcome}))
            elif "status" in request:  # `runs` asks who is there, without attaching
                status = {
                    "pid": os.getpid(),
                    "views": len(self._clients),
                    "ended": int(self.engine.state.finished),
                }
                client.writer.write(message({"status": status}))
            elif "cmd" in request:
                answer = {"ack": request.get("id"), "refusal": self._command(request)}
                client.writer.write(message(answer))  # ahead of queued events: the answer
            else:
                self._put(client, message({"error": "unknown request"}))

    def _command(self, request: dict[str, Any]) -> str:
        name = request.get("cmd")
        args = request.get("args") or {}
        entry = COMMANDS.get(name) if isinstance(name, str) else None
        if entry is None or not isinstance(args, dict):
            return f"unknown command {name!r}"
        method, allowed = entry
        if set(args) - allowed:
            return f"{name}: unknown argument(s) {', '.join(sorted(set(args) - allowed))}"
        try:
            result = getattr(self.engine, method)(**args)
        except Exception as exc:  # a malformed command is refused, never the run's end
            return f"{name}: {type(exc).__name__}: {exc}"
        return str(result)


def newest_live_run(repo: Path) -> Path | None:
    """The folder of this repository's newest run whose service answers and whose run
    goes on, or ``None``. (A service whose run has ended answers for a while, waiting for
    a view to see the end: it is not the run ``stop`` or ``attach`` means.)"""
    from delegate_tui.core.runlog import list_run_logs

    for log in list_run_logs(repo):
        status = service_status(log.parent)  # None at once where there is no socket
        if status is not None and not status.get("ended"):
            return log.parent
    return None


def service_status(run_dir: Path, timeout: float = 0.5) -> dict[str, int] | None:
    """``{"pid", "views", "ended"}`` of the live service of ``run_dir`` (``ended``: 1 once its
    run has ended), or ``None`` when none answers."""
    path = socket_path(run_dir)
    if not path.exists():
        return None
    try:
        with reachable(path) as address, socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(timeout)
            sock.connect(address)
            sock.sendall(message({"status": 1}))
            answer = sock.makefile("rb").readline()
        status = orjson.loads(answer).get("status")
    except (OSError, ValueError, AttributeError):
        return None
    return status if isinstance(status, dict) else None
