"""A skip through the real engine: what it leaves behind is told, and what it ends goes.

After a skip, a run whose dependents are now blocked says it waits for the
operator (again, if it said so before the skip), and the skipped task's
collision findings are resolved (the header kept "✘ 1 collision" and the
sidebar the predicted conflict of a task long given up; issue 12, items 5, 6).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from delegate_tui.core.engine import Engine
from delegate_tui.core.events import ConflictResolved, Notice
from delegate_tui.core.plan import Plan
from delegate_tui.core.scheduler import WAITING_MESSAGE, WAITING_PREFIX
from tests.conftest import Recorder, run_engine
from tests.e2e.test_engine import plan_text, wait_for

pytestmark = pytest.mark.e2e
PlanWriter = Callable[..., Plan]


def waiting_notices(recorder: Recorder) -> list[str]:
    return [
        e.message
        for e in recorder.events
        if isinstance(e, Notice) and e.message.startswith(WAITING_PREFIX)
    ]


def waiting_told(recorder: Recorder) -> int:
    return len(waiting_notices(recorder))


def test_a_skip_that_leaves_dependents_blocked_says_the_run_waits(
    repo: Path, write_plan: PlanWriter
) -> None:
    plan = write_plan(
        plan_text(
            repo,
            """\
            - {id: a, agent: shell, command: "exit 3", edits: [a]}
            - {id: b, agent: shell, command: "true", edits: [b], depends_on: [a]}
            """,
        )
    )
    told: list[str] = []

    async def drive(engine: Engine, recorder: Recorder) -> None:
        await wait_for(recorder, lambda: waiting_told(recorder) == 1)
        assert engine.state.tasks["b"].status == "blocked"
        assert engine.skip("a") == ""
        await wait_for(recorder, lambda: waiting_told(recorder) == 2, timeout=10)
        told.extend(waiting_notices(recorder))
        assert not engine.state.finished, "it waits for the operator to end it"
        assert engine.end() == ""

    state, _, _ = run_engine(plan, during=drive, hold_at_end=True)
    # Before the skip, a failure to decide; after it, no failure is left: the skip is
    # what a retry would undo.
    assert told == [
        WAITING_MESSAGE,
        "the run is waiting for you: retry the skipped task (a) to go on, or end the run",
    ]
    assert {t: s.status for t, s in state.tasks.items()} == {"a": "skipped", "b": "blocked"}


def test_a_skipped_tasks_findings_are_resolved(repo: Path, write_plan: PlanWriter) -> None:
    # second changes the line only once first's change is merged (30 s at most), so
    # second's is the merge that conflicts, whatever the load.
    plan = write_plan(
        plan_text(
            repo,
            """\
            - {id: first, agent: shell, command: "sed -i 's/nobody/first/' src/shared.py", edits: [src/a.py]}
            - {id: second, agent: shell, command: "for i in $(seq 600); do git show delegate/$DELEGATE_RUN_ID/integration:src/shared.py | grep -q first && break; sleep 0.05; done; sed -i 's/nobody/second/' src/shared.py", edits: [src/b.py]}
            """,
        )
    )
    seen: list[str] = []

    def about_second(engine: Engine) -> list[str]:
        return [k for k, f in engine.state.findings.items() if "second" in f.tasks]

    async def drive(engine: Engine, recorder: Recorder) -> None:
        await wait_for(
            recorder,
            lambda: (
                engine.state.tasks["second"].status == "merge-conflict"
                and bool(about_second(engine))
            ),
            timeout=30,
        )
        seen.extend(about_second(engine))
        assert engine.skip("second") == ""
        await wait_for(recorder, lambda: not about_second(engine), timeout=10)
        assert engine.end() == ""

    state, recorder, _ = run_engine(plan, during=drive, hold_at_end=True)
    assert seen, "the merge that failed was a finding before the skip"
    resolved = {e.key for e in recorder.of(ConflictResolved)}
    assert set(seen) <= resolved
    assert state.tasks["second"].status == "skipped" and not state.findings
