"""The real app, real engine, real demo agents: approve every batch with the keyboard."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from delegate_tui.core.engine import Engine, EngineOptions
from delegate_tui.core.plan import load_plan
from delegate_tui.demo.scaffold import make_demo_repo
from delegate_tui.ui.app import DelegateApp
from delegate_tui.ui.config import UserConfig

pytestmark = pytest.mark.e2e


@pytest.mark.asyncio
async def test_demo_plan_runs_to_success_approved_from_the_keyboard(tmp_path: Path) -> None:
    plan = load_plan(make_demo_repo(tmp_path))
    engine = Engine(plan, EngineOptions(hold_at_end=True, kill_grace_s=1.0))
    engine.preflight()
    app = DelegateApp(engine, config=UserConfig(path=tmp_path / "c.yaml"), bell=False)
    approvals = 0
    async with app.run_test(size=(160, 48)) as pilot:
        for _ in range(600):
            await pilot.pause(0.05)
            state = engine.state
            if state.finished:
                break
            if state.proposal is not None and state.proposal.needs_approval:
                await pilot.press("a")
                approvals += 1
                await pilot.pause(0.1)
        assert engine.state.status == "succeeded", engine.state.summary
        await pilot.press("q")
    assert approvals >= 4  # the demo has at least four batches: each one needed the operator
    assert app.return_code == 0
    repo = plan.repo_path()
    assert (repo / ".delegate").is_dir()
    shutil.rmtree(tmp_path, ignore_errors=True)
