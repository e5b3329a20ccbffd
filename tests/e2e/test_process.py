"""Process plumbing that must hold under concurrency."""

from __future__ import annotations

import asyncio
import fcntl
import os
import sys

import pytest

from delegate_tui.core import process as process_module
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
    monkeypatch.setattr(process_module, "FLOOD_PAUSE_S", 0.4)
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
    assert end_read - flood_read >= 0.35, "read again before the pause was over"
