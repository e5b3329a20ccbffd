"""An attached view lets its operator's key go first: while a key is on its way to the
screen, the run's events wait; a key held down never stops the view following the run.

A real run service with a flooding agent, and the RunClient the UI uses.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from delegate_tui.core import service as service_module
from delegate_tui.core.client import RunClient
from delegate_tui.core.engine import Engine, EngineOptions
from delegate_tui.core.events import Event, RunFinished, TaskOutput
from delegate_tui.core.plan import Plan
from delegate_tui.core.service import RunService

pytestmark = pytest.mark.e2e


def flood(lines: int) -> str:
    """An agent that prints ``lines`` lines as fast as Python does."""
    return json.dumps([sys.executable, "-c", f"for i in range({lines}): print('x' * 70)"])


async def attached_to_a_flood(
    repo: Path, write_plan: Callable[..., Plan], monkeypatch: pytest.MonkeyPatch, lines: int
) -> tuple[Engine, asyncio.Task[None], RunClient, list[Event]]:
    monkeypatch.setattr(service_module, "LINGER_S", 0.2)
    plan = write_plan(
        f"name: p\nrepo: {repo}\nagent: shell\napprove: auto\nisolation: none\ntasks:\n"
        f"  - {{id: a, command: {flood(lines)}}}\n"
    )
    engine = Engine(plan, EngineOptions(kill_grace_s=1.0))
    listening = asyncio.Event()
    serving = asyncio.create_task(
        RunService(engine).run(on_listening=lambda _path: listening.set())
    )
    await asyncio.wait_for(listening.wait(), 20)
    view = RunClient(engine.run_dir)
    seen: list[Event] = []
    view.subscribe(seen.append)
    await view.connect()
    return engine, serving, view, seen


async def test_no_event_is_applied_while_a_key_goes_to_the_screen(
    repo: Path, write_plan: Callable[..., Plan], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, serving, view, seen = await attached_to_a_flood(repo, write_plan, monkeypatch, 500_000)
    pending = False
    view.yield_to(lambda: pending)
    following = asyncio.create_task(view.run())
    try:
        while sum(type(e) is TaskOutput for e in seen) < 20:  # the flood is on
            assert not following.done()
            await asyncio.sleep(0.01)
        pending = True  # a key: its handler and frame have the loop to themselves
        before = len(seen)
        await asyncio.sleep(0.2)  # under the hold's limit (INPUT_HOLD_S)
        during = len(seen) - before
        pending = False
        assert during <= 1, f"{during} events were applied while the key waited"  # one in hand
        state = await asyncio.wait_for(following, 60)  # then the view follows the run again
        assert state.finished and state.tasks["a"].status == "succeeded"
        assert isinstance(seen[-1], RunFinished)
    finally:
        engine.stop("test over")
        await asyncio.wait_for(serving, 30)
        await asyncio.wait_for(following, 30)


async def test_a_key_held_down_never_stops_the_view_following_the_run(
    repo: Path, write_plan: Callable[..., Plan], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, serving, view, seen = await attached_to_a_flood(repo, write_plan, monkeypatch, 100_000)
    asked: list[bool] = []

    def always() -> bool:  # a key repeats faster than frames are drawn
        asked.append(True)
        return True

    view.yield_to(always)
    state = await asyncio.wait_for(view.run(), 120)
    await asyncio.wait_for(serving, 30)
    assert state.finished and any(isinstance(e, RunFinished) for e in seen)
    assert state.tasks["a"].status == "succeeded"
    assert asked, "the view asked whether a key waited"
