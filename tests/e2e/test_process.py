"""Process plumbing that must hold under concurrency."""

from __future__ import annotations

import asyncio
import os

import pytest

from delegate_tui.core.process import AgentProcess

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
