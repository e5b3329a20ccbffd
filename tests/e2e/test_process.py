"""Process plumbing that must hold under concurrency."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from delegate_tui.core import process as process_module
from delegate_tui.core.plan import Plan
from delegate_tui.core.process import PIPE_SIZE, AgentProcess

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("transport", ["pipes", "pty"])
def test_descriptors_are_closed_exactly_once(
    transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second close of a reused fd number closes someone else's descriptor.

    Another thread (a git call in a worker) can open a pipe between the two
    closes and get the freed number; this test plays that thread: every close
    immediately takes the number back, and those descriptors must survive.
    """
    stolen: list[int] = []
    real_close = os.close

    def close_and_steal(fd: int) -> None:
        real_close(fd)
        read_end, write_end = os.pipe()  # the lowest free numbers: very likely fd itself
        stolen.extend((read_end, write_end))

    async def main() -> None:
        out = bytearray()
        proc = AgentProcess.spawn(
            ["sh", "-c", "echo hi"],
            cwd="/",
            env={"PATH": os.environ["PATH"]},
            on_output=out.extend,
            transport=transport,
        )
        monkeypatch.setattr(os, "close", close_and_steal)
        try:
            assert await proc.wait() == 0 and b"hi" in out
        finally:
            monkeypatch.setattr(os, "close", real_close)

    asyncio.run(main())
    try:
        for fd in stolen:
            os.fstat(fd)  # EBADF here means a descriptor was closed twice
    finally:
        for fd in stolen:
            real_close(fd)


def _flood_then_prompt(chunks: int) -> list[str]:
    """Writes ``chunks`` x 4 KiB as separate writes, then a prompt and waits on stdin."""
    code = (
        "import os, sys\n"
        f"for n in range({chunks}): os.write(1, (b'%07d' % n) + b'.' * 4088 + b'\\n')\n"
        "os.write(1, b'continue? ')\n"
        "sys.stdin.readline()\n"
        "os.write(1, b'done\\n')\n"
    )
    return [sys.executable, "-c", code]


def test_a_flood_on_pipes_arrives_whole_and_a_prompt_after_it_at_once() -> None:
    """Every byte in order through a 1 MiB pipe; then a prompt shows without delay."""
    reads: list[bytes] = []
    seen_prompt: list[float] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()

        def on_output(data: bytes) -> None:
            reads.append(data)
            if b"continue?" in data:
                seen_prompt.append(loop.time())

        proc = AgentProcess.spawn(
            _flood_then_prompt(2000),
            cwd="/",
            env={"PATH": os.environ["PATH"]},
            on_output=on_output,
            transport="pipes",
        )
        if hasattr(fcntl, "F_GETPIPE_SZ"):
            assert fcntl.fcntl(proc._out_fd, fcntl.F_GETPIPE_SZ) == PIPE_SIZE
        while not seen_prompt:
            await asyncio.sleep(0.01)
        proc.send_input("yes")
        sent = loop.time()
        while not b"".join(reads).endswith(b"done\n"):
            await asyncio.sleep(0.001)
            assert loop.time() - sent < 2, "the answer to a prompt took too long to show"
        assert await proc.wait() == 0

    asyncio.run(main())
    out = b"".join(reads)
    lines = out.split(b"\n")
    assert [int(line[:7]) for line in lines[:2000]] == list(range(2000))
    assert all(len(line) == 4095 for line in lines[:2000])
    assert out.endswith(b"continue? done\n")


def test_a_pipe_that_floods_is_read_again_only_after_a_pause(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a wake-up that brought a flood, the next read waits (so output gathers)."""
    monkeypatch.setattr(process_module, "FLOOD_PAUSE_S", 0.5)
    arrivals: list[tuple[float, bytes]] = []
    code = "import os, time\nos.write(1, b'.' * 200000)\ntime.sleep(0.05)\nos.write(1, b'end')\n"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        proc = AgentProcess.spawn(
            [sys.executable, "-c", code],
            cwd="/",
            env={"PATH": os.environ["PATH"]},
            on_output=lambda data: arrivals.append((loop.time(), data)),
            transport="pipes",
        )
        assert await proc.wait() == 0

    asyncio.run(main())
    flood_read = max(t for t, data in arrivals if data.startswith(b"."))
    end_read = min(t for t, data in arrivals if b"end" in data)
    assert b"".join(d for _, d in arrivals) == b"." * 200000 + b"end"
    # Without the pause the gap is the writer's 0.05 s; with it, 0.5 s less what a busy
    # machine holds this process off between the wake-up and its stamp (70 ms seen).
    assert end_read - flood_read >= 0.3, "read again before the pause was over"


# ------------------------------------------ the whole group ends (issue 20)

#: The agent starts a grandchild that ignores SIGHUP and SIGTERM (as a daemon or a
#: careless build tool does) and prints its pid. A PTY's hang-up does not end it, so
#: only a signal to the whole group (SIGKILL after the grace) does.
_STUBBORN_GRANDCHILD = "(trap '' HUP TERM; exec sleep 300) & echo grandchild=$!; "


def _grandchild_of(out: bytearray) -> int:
    text = out.decode(errors="replace")
    return int(text.split("grandchild=", 1)[1].split()[0])


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, awaiting its reaper, has ended)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except FileNotFoundError:
        return False


async def _spawn_and_find_grandchild(command: str, transport: str) -> tuple[AgentProcess, int]:
    out = bytearray()
    proc = AgentProcess.spawn(
        ["sh", "-c", command],
        cwd="/",
        env={"PATH": os.environ["PATH"]},
        on_output=out.extend,
        transport=transport,
    )
    loop = asyncio.get_running_loop()
    end = loop.time() + 10
    while b"grandchild=" not in out or not out.rstrip().endswith(b"ready"):
        assert loop.time() < end, f"the agent never started its grandchild: {bytes(out)!r}"
        await asyncio.sleep(0.01)
    grandchild = _grandchild_of(out)
    assert os.getpgid(grandchild) == proc.pgid, "the grandchild is in the agent's group"
    return proc, grandchild


@pytest.mark.parametrize("transport", ["pty", "pipes"])
def test_kill_ends_the_whole_group_including_a_grandchild_ignoring_hup_and_term(
    transport: str,
) -> None:
    """terminate() must signal the group, not only its leader: once it returns, nothing of
    the task is left (the leader's hang-up does not end a grandchild that ignores it)."""
    from delegate_tui.core.reaper import group_alive

    async def main() -> None:
        proc, grandchild = await _spawn_and_find_grandchild(
            _STUBBORN_GRANDCHILD + "echo ready; wait", transport
        )
        try:
            await proc.terminate(grace=0.3)
            assert not _alive(grandchild), "the grandchild outlived the kill"
            assert not group_alive(proc.pgid), "something of the task's group outlived the kill"
            assert await proc.wait() == -signal.SIGTERM
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(grandchild, signal.SIGKILL)

    asyncio.run(main())


@pytest.mark.parametrize("transport", ["pty", "pipes"])
def test_a_task_that_exits_leaves_no_grandchild_ignoring_hup_and_term(transport: str) -> None:
    """The agent exits 0 and leaves a grandchild behind: by the time wait() reports the
    exit, the whole group is gone (a daemon the agent left does not outlive its task)."""
    from delegate_tui.core.reaper import group_alive

    async def main() -> None:
        proc, grandchild = await _spawn_and_find_grandchild(
            _STUBBORN_GRANDCHILD + "echo ready; read line", transport
        )
        try:
            proc.send_input("done")
            assert await proc.wait() == 0
            assert not _alive(grandchild), "the grandchild outlived its task"
            assert not group_alive(proc.pgid)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(grandchild, signal.SIGKILL)

    asyncio.run(main())


@pytest.mark.parametrize("transport", ["pty", "pipes"])
def test_when_a_task_exit_is_reported_its_whole_group_is_gone(
    transport: str, repo: Path, write_plan: Callable[..., Plan]
) -> None:
    """Through the engine, as the operator sees it: one task is killed (k), one exits
    and leaves a stubborn grandchild; at each TaskExited event nothing of its group runs."""
    from delegate_tui.core.events import Event, TaskExited, TaskOutput, TaskStarted
    from delegate_tui.core.reaper import group_alive
    from tests.conftest import run_engine

    plan = write_plan(
        f"name: groups\nrepo: {repo}\ntasks:\n"
        f"  - id: killed\n    agent: shell\n    edits: [k]\n"
        f'    command: "{_STUBBORN_GRANDCHILD}echo ready; wait"\n'
        f"  - id: leaves\n    agent: shell\n    edits: [l]\n"
        f'    command: "{_STUBBORN_GRANDCHILD}echo ready; exit 0"\n'
    )
    groups: dict[str, int] = {}
    grandchildren: dict[str, int] = {}
    outputs: dict[str, bytearray] = {"killed": bytearray(), "leaves": bytearray()}
    alive_at_exit: dict[str, tuple[bool, bool]] = {}

    def watch(ev: Event) -> None:
        if isinstance(ev, TaskStarted):
            groups[ev.task] = ev.pgid
        elif isinstance(ev, TaskOutput):
            outputs[ev.task] += ev.data
            if b"grandchild=" in outputs[ev.task] and ev.task not in grandchildren:
                grandchildren[ev.task] = _grandchild_of(outputs[ev.task])
        elif isinstance(ev, TaskExited):
            gc = grandchildren.get(ev.task, 0)
            alive_at_exit[ev.task] = (group_alive(groups[ev.task]), bool(gc) and _alive(gc))

    async def drive(engine: Any, recorder: Any) -> None:
        engine.subscribe(watch)
        loop = asyncio.get_running_loop()
        end = loop.time() + 20
        while not outputs["killed"].rstrip().endswith(b"ready"):
            assert loop.time() < end, "the task never got going"
            await asyncio.sleep(0.02)
        assert engine.kill("killed") == ""

    try:
        state, _, _ = run_engine(plan, during=drive, kill_grace_s=0.3, transport=transport)
    finally:
        for pid in grandchildren.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert state.tasks["killed"].status == "killed"
    assert state.tasks["leaves"].status == "succeeded"
    assert set(grandchildren) == {"killed", "leaves"}
    assert alive_at_exit == {"killed": (False, False), "leaves": (False, False)}


#: A delegate-tui killed right after starting an agent whose group the parent never
#: registered with the watchdog (as when ``kill -9`` lands between ``Popen`` returning and
#: the register): it waits for the agent to be up, then kills itself.
DIES_BEFORE_REGISTERING = """
import asyncio, os, signal, sys, time
from pathlib import Path
from delegate_tui.core.reaper import Reaper
from delegate_tui.core.supervisor import Supervisor

Reaper.register = lambda self, pgid: None

async def main():
    supervisor = Supervisor(grace_s=1.0)
    supervisor.start()
    marker = Path(sys.argv[1])
    supervisor.spawn(
        "a",
        ["sh", "-c", "trap '' HUP TERM; echo $$ > " + sys.argv[1] + ".new; mv "
         + sys.argv[1] + ".new " + sys.argv[1] + "; exec sleep 300"],
        cwd=Path.cwd(), env=dict(os.environ), on_output=lambda data: None,
        transport=sys.argv[2],
    )
    deadline = time.monotonic() + 20
    while not marker.exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


@pytest.mark.parametrize("transport", ["pipes", "pty"])
def test_an_agent_started_just_before_delegate_tui_is_killed_is_still_ended(
    tmp_path: Path, transport: str
) -> None:
    """The child tells the watchdog its group itself, before its command runs: a
    ``kill -9`` right after the start no longer leaves the agent running unwatched."""
    import subprocess
    import time

    from delegate_tui.core.reaper import group_alive

    marker = tmp_path / "pid"
    rc = subprocess.run(
        [sys.executable, "-c", DIES_BEFORE_REGISTERING, str(marker), transport],
        cwd=tmp_path,
        timeout=30,
    ).returncode
    assert rc == -signal.SIGKILL
    pgid = int(marker.read_text())  # the agent ran: sh is its group's leader
    deadline = time.monotonic() + 15
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = group_alive(pgid)
    if alive:
        os.killpg(pgid, signal.SIGKILL)
    assert not alive, "the agent outlived delegate-tui"
