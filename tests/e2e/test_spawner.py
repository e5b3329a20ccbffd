"""Processes started by the small spawner (a Ray node's host uses it): they behave as
those the supervisor forks itself, and the watchdog still ends them when their owner
dies."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from delegate_tui.core.process import AgentProcess
from delegate_tui.core.reaper import group_alive
from delegate_tui.core.spawner import LOST_EXIT
from delegate_tui.core.supervisor import Supervisor

pytestmark = pytest.mark.e2e

ENV = {"PATH": os.environ["PATH"]}


def _stat(pid: int) -> list[bytes]:
    """The fields of ``/proc/PID/stat`` after the command's name: state, ppid, pgrp, session."""
    stat = Path(f"/proc/{pid}/stat").read_bytes()
    return stat[stat.rfind(b")") + 2 :].split()


def _gone(pgid: int, limit: float = 10.0) -> bool:
    deadline = time.monotonic() + limit
    while group_alive(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


async def _start(
    supervisor: Supervisor, argv: list[str], out: bytearray, transport: str, stdin: str = "pipe"
) -> AgentProcess:
    return await supervisor.start_process(
        "t", argv, cwd=Path("/"), env=ENV, on_output=out.extend, transport=transport, stdin=stdin
    )


def test_a_pty_process_is_the_spawners_child_in_a_session_of_its_own_with_its_terminal() -> None:
    async def main() -> None:
        supervisor = Supervisor(1.0, spawner=True)
        supervisor.start()
        try:
            out = bytearray()
            proc = await _start(
                supervisor,
                ["sh", "-c", "tty; stty size; read line; echo got-$line; exit 3"],
                out,
                transport="pty",
            )
            fields = _stat(proc.pid)
            assert int(fields[1]) != os.getpid(), "forked by its owner, not the spawner"
            assert int(fields[2]) == proc.pid == proc.pgid == int(fields[3])  # group, session
            parent = Path(f"/proc/{int(fields[1])}/cmdline").read_bytes()
            assert b"spawner.py" in parent
            # Typed once it reads: typed earlier, the terminal's echo comes before `tty`'s line.
            deadline = time.monotonic() + 10
            while b"40 120" not in out and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            proc.send_input("hello")
            assert await supervisor.wait("t", proc, 10) == 3
            lines = bytes(out).decode().split("\r\n")
            assert lines[0].startswith("/dev/pts/")  # its controlling terminal
            assert "40 120" in lines and "got-hello" in lines  # its size; what was typed
        finally:
            await supervisor.close()

    asyncio.run(main())


def test_pipes_input_exits_by_signal_timeout_and_errors_are_as_for_a_forked_process() -> None:
    async def main() -> None:
        supervisor = Supervisor(0.5, spawner=True)
        supervisor.start()
        try:
            out = bytearray()
            proc = await _start(
                supervisor, ["sh", "-c", "read x; echo got-$x"], out, transport="pipes"
            )
            proc.send_input("yo")
            assert await supervisor.wait("t", proc, 10) == 0 and bytes(out) == b"got-yo\n"
            proc = await _start(
                supervisor, ["sleep", "30"], out, transport="pipes", stdin="devnull"
            )
            assert not proc.takes_input
            assert await supervisor.wait("t", proc, 0.3) is None  # timed out: ended
            assert proc.returncode == -signal.SIGTERM and not group_alive(proc.pgid)
            proc = await _start(supervisor, ["sh", "-c", "kill -9 $$"], out, transport="pty")
            assert await supervisor.wait("t", proc, 10) == -signal.SIGKILL
            with pytest.raises(FileNotFoundError):
                await _start(supervisor, ["/no/such/program"], out, transport="pty")
            # A request bigger than a socket's message (a prompt in argv) arrives whole.
            words = ["a" * 100_000, "b" * 100_001, "c" * 100_002]
            out.clear()
            proc = await _start(
                supervisor,
                ["sh", "-c", "echo ${#1} ${#2} ${#3}", "sh", *words],
                out,
                transport="pipes",
            )
            assert await supervisor.wait("t", proc, 10) == 0
            assert bytes(out) == b"100000 100001 100002\n"
        finally:
            await supervisor.close()

    asyncio.run(main())


def test_a_spawner_that_dies_fails_nothing_silently_and_another_starts() -> None:
    """Its processes' statuses die with it: each reports ``LOST_EXIT`` once it is gone
    (here: ended by its owner), and the next start brings another spawner."""

    async def main() -> None:
        supervisor = Supervisor(0.5, spawner=True)
        supervisor.start()
        try:
            out = bytearray()
            proc = await _start(supervisor, ["sleep", "30"], out, transport="pipes")
            first = int(_stat(proc.pid)[1])
            os.kill(first, signal.SIGKILL)
            assert await supervisor.wait("t", proc, 1.0) is None
            assert proc.returncode == LOST_EXIT and not group_alive(proc.pgid)
            proc = await _start(
                supervisor, ["sh", "-c", "sleep 0.5; echo again"], out, transport="pty"
            )
            assert int(_stat(proc.pid)[1]) != first
            assert await supervisor.wait("t", proc, 10) == 0 and b"again" in out
        finally:
            await supervisor.close()

    asyncio.run(main())


OWNER = textwrap.dedent(
    """\
    import asyncio, os, sys
    from pathlib import Path
    from delegate_tui.core.supervisor import Supervisor

    async def main():
        supervisor = Supervisor(1.0, spawner=True)
        supervisor.start()
        proc = await supervisor.start_process(
            "t", ["sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"],
            cwd=Path("/"), env={"PATH": os.environ["PATH"]}, on_output=lambda d: None,
            transport="pty",
        )
        print(proc.pgid, flush=True)
        await asyncio.sleep(300)

    asyncio.run(main())
    """
)


def test_kill_9_of_the_owner_ends_what_its_spawner_started() -> None:
    """The spawner holds the watchdog's pipe: it leaves when its owner dies, so the
    watchdog sees the pipe close and ends the groups (a stubborn one by SIGKILL)."""
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert owner.stdout is not None
        pgid = int(owner.stdout.readline())
        assert group_alive(pgid)
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
    finally:
        if owner.poll() is None:
            owner.kill()
    assert _gone(pgid), "the agent outlived its owner"
