"""The real app, real engine, real demo agents, driven from the keyboard as a newcomer
would: approve every batch, watch the collision in the sidebar, retry the task
that lost it with a note, and see the run succeed."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from delegate_tui.core.engine import Engine, EngineOptions
from delegate_tui.core.plan import load_plan
from delegate_tui.demo.scaffold import make_demo_repo
from delegate_tui.ui.app import DelegateApp
from delegate_tui.ui.config import UserConfig
from delegate_tui.ui.screens.dialogs import RetryDialog
from delegate_tui.ui.screens.run import RunScreen
from delegate_tui.ui.widgets.conflict_sidebar import ConflictSidebar
from delegate_tui.ui.widgets.task_graph import TaskGraph
from tests.conftest import git

pytestmark = pytest.mark.e2e

NOTE = "payments owns src/shop/config.py: leave it alone and change only shipping.py"


@pytest.mark.asyncio
async def test_demo_plan_runs_to_success_approved_and_retried_from_the_keyboard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fifth of the demo's pace: payments and shipping overlap for over 2 s (their
    # --min-seconds alone left the prediction about 1 s to show, and on a loaded
    # machine payments had merged before the sidebar's next redraw).
    monkeypatch.setenv("DELEGATE_DEMO_SPEED", "0.2")
    plan = load_plan(make_demo_repo(tmp_path))
    engine = Engine(plan, EngineOptions(hold_at_end=True, kill_grace_s=1.0))
    engine.preflight()
    app = DelegateApp(engine, config=UserConfig(path=tmp_path / "c.yaml"), bell=False)
    approvals = 0
    retried = False
    sidebar_saw = ""
    async with app.run_test(size=(160, 48)) as pilot:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            await pilot.pause(0.05)
            state = engine.state
            if state.finished:
                break
            screen = next(s for s in app.screen_stack if isinstance(s, RunScreen))
            both_running = all(
                not state.tasks[t].attempts[-1].merged_commit
                for t in ("payments", "shipping")
                if state.tasks[t].attempts
            )
            predicted = [
                f
                for f in state.findings.values()
                if f.kind == "predicted-conflict" and set(f.tasks) == {"payments", "shipping"}
            ]
            if predicted and both_running and not sidebar_saw:
                await pilot.pause(0.2)  # the screen redraws on a timer
                sidebar_saw = str(screen.query_one(ConflictSidebar).render())
            if state.tasks["shipping"].status == "merge-conflict" and not retried:
                # What the sidebar and the header ask for: retry it, with a note.
                screen.query_one(TaskGraph).select("shipping")
                await pilot.pause(0.1)
                await pilot.press("r")
                await pilot.pause(0.1)
                dialog = app.screen
                assert isinstance(dialog, RetryDialog)
                assert dialog.summary == "merge conflict in src/shop/config.py"
                await pilot.press(*NOTE)  # typed, key by key
                await pilot.press("ctrl+s")
                retried = True
                continue
            if state.proposal is not None and state.proposal.needs_approval:
                await pilot.press("a")
                approvals += 1
                await pilot.pause(0.1)
        assert engine.state.status == "succeeded", engine.state.summary
        await pilot.press("q")
    assert "payments ✕ shipping" in sidebar_saw and "predicted conflict" in sidebar_saw
    assert approvals >= 4  # every batch needed the operator
    assert app.return_code == 0
    state = engine.state
    # pricing failed its check and was retried by its `retries: 1`, with the failure.
    pricing = state.tasks["pricing"].attempts
    assert [a.status for a in pricing] == ["failed", "succeeded"]
    assert "Criterion failed: grep -q ROUND_HALF_EVEN" in pricing[1].prompt
    # shipping lost the collision; the operator's retry carried the conflict and the note,
    # and the agent, told which file collided, left it to payments this time.
    first, second = state.tasks["shipping"].attempts
    assert first.status == "merge-conflict" and second.status == "succeeded"
    assert "--- Operator's note ---\n" + NOTE in second.prompt
    assert "did not merge cleanly" in second.prompt
    assert [f.path for f in second.changed] == ["src/shop/shipping.py"]
    repo = plan.repo_path()
    config = git(repo, "show", f"{state.integration_branch}:src/shop/config.py")
    assert config.startswith("OWNER = 'payments'")
    assert (repo / ".delegate").is_dir()
    shutil.rmtree(tmp_path, ignore_errors=True)
