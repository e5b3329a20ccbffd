"""apply() is the only writer of state; these sequences pin down its transitions."""

from __future__ import annotations

import dataclasses
import textwrap
import types
import typing
from typing import Any

import pytest

from delegate_tui.core.events import (
    BatchApproved,
    BatchHeld,
    BatchProposed,
    CriteriaChecked,
    Event,
    HeldTask,
    MergeConflict,
    RetryScheduled,
    RunStarted,
    SchedulingPaused,
    SchedulingResumed,
    TaskBlocked,
    TaskCommitted,
    TaskExited,
    TaskFinished,
    TaskMerged,
    TaskOutput,
    TaskPreparing,
    TaskSkipped,
    TaskStarted,
    TaskStatus,
)
from delegate_tui.core.metrics import compute
from delegate_tui.core.plan import parse_plan
from delegate_tui.core.state import (
    _NO_PHASE,
    _OWN_PHASE,
    TAIL_BYTES,
    AttemptState,
    Phase,
    RunState,
    TaskState,
    apply,
    build,
)

PLAN = parse_plan(
    textwrap.dedent(
        """\
        name: p
        tasks:
          - {id: a, prompt: x, edits: [a]}
          - {id: b, prompt: x, edits: [b]}
          - {id: c, prompt: x, edits: [c], depends_on: [a]}
        """
    )
)


def started() -> RunState:
    return build(
        [
            RunStarted(
                run_id="r",
                plan=PLAN.model_dump(mode="json", by_alias=True),
                plan_path="p.yaml",
                repo="/r",
                isolation="worktree",
                base_commit="base",
                integration_branch="i",
                ts=100.0,
            )
        ]
    )


def status(state: RunState, task: str) -> TaskStatus:
    """A task's status, read anew (mypy would keep an earlier assert's narrowing)."""
    return state.tasks[task].status


def test_run_started_loads_plan_and_tasks() -> None:
    state = started()
    assert state.plan is not None and state.plan.ids == ["a", "b", "c"]
    assert [t.status for t in state.tasks.values()] == ["pending"] * 3
    assert state.status == "running" and state.integration_tip == "base"


def test_happy_path_transitions_and_metrics() -> None:
    state = started()
    apply(state, BatchProposed(batch=1, tasks=("a", "b"), held=(HeldTask("c", "waits"),)))
    assert state.tasks["a"].status == "proposed" and state.tasks["c"].held_reason == "waits"
    apply(state, BatchApproved(batch=1, tasks=("a",)))
    assert status(state, "a") == "starting" and state.tasks["b"].status == "pending"
    assert state.proposal is None and state.tasks["a"].batch == 1
    apply(state, TaskPreparing(task="a", attempt=1, workdir="/w/a-1", branch="br"))
    apply(
        state,
        TaskStarted(
            task="a",
            attempt=1,
            agent="demo",
            argv=("x",),
            cwd="/w/a-1",
            pid=5,
            pgid=5,
            prompt="p",
            ts=101.0,
        ),
    )
    attempt = state.tasks["a"].attempt
    assert status(state, "a") == "running" and attempt is not None and attempt.pid == 5
    apply(state, TaskOutput(task="a", attempt=1, data=b"x" * (TAIL_BYTES + 10), ts=102.0))
    attempt = state.tasks["a"].attempts[0]
    assert len(attempt.tail) == TAIL_BYTES and attempt.output_bytes == TAIL_BYTES + 10
    apply(state, TaskExited(task="a", attempt=1, exit_code=0, ts=105.0))
    assert status(state, "a") == "checking"
    apply(state, CriteriaChecked(task="a", attempt=1, results=(), passed=True))
    apply(state, TaskCommitted(task="a", attempt=1, commit="c1"))
    apply(state, TaskMerged(task="a", attempt=1, commit="m1"))
    assert state.integration_tip == "m1"
    apply(state, TaskFinished(task="a", attempt=1, status="succeeded", output="done", ts=106.0))
    assert status(state, "a") == "succeeded" and state.tasks["a"].output == "done"
    assert state.tasks["a"].duration_s == 4.0
    m = compute(state, now=110.0)
    assert m.wall_s == 10.0 and m.sequential_s == 4.0 and m.tasks_succeeded == 1


def test_hold_pause_skip_block_retry() -> None:
    state = started()
    apply(state, BatchProposed(batch=1, tasks=("a", "b")))
    apply(state, BatchHeld(batch=1))
    assert (
        state.tasks["a"].status == "pending"
        and state.tasks["a"].held_reason == "held by the operator"
    )
    apply(state, SchedulingPaused())
    assert state.paused
    apply(state, SchedulingResumed())
    assert not state.paused
    apply(state, TaskSkipped(task="b", reason="not needed"))
    assert state.tasks["b"].status == "skipped" and state.tasks["b"].is_final
    apply(state, TaskFinished(task="a", attempt=1, status="failed", reason="exit 1"))
    apply(state, TaskBlocked(task="c", by="a", reason="dependency a failed"))
    assert state.tasks["c"].status == "blocked"
    apply(state, RetryScheduled(task="a", attempt=2, prompt="again", context="use the v2 API"))
    assert state.tasks["a"].status == "starting" and len(state.tasks["a"].attempts) == 2
    assert state.tasks["a"].attempts[1].context == "use the v2 API"
    assert state.tasks["c"].status == "pending", "a retry unblocks the dependents"


def test_merge_conflict_is_recorded_on_the_attempt() -> None:
    state = started()
    apply(state, MergeConflict(task="a", attempt=1, paths=("src/x.py",)))
    apply(state, TaskFinished(task="a", attempt=1, status="merge-conflict"))
    assert state.tasks["a"].attempts[0].conflict_paths == ("src/x.py",)
    assert compute(state).conflict_rate == 0.0  # it never started, so it did not run


def _sample_value(name: str, hint: object) -> object:
    """A value of type ``hint`` for an event's field ``name`` (its task: ``a``)."""
    if name == "task":
        return "a"
    if name == "tasks":
        return ("a",)
    if hint is str:
        return "x"
    if hint is bool:
        return True
    if hint is int:
        return 1
    if hint is float:
        return 1.0
    if hint is bytes:
        return b"x"
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return typing.get_args(hint)[0]
    if origin is tuple:
        return ()
    if origin in (typing.Union, types.UnionType):
        return _sample_value(name, next(a for a in typing.get_args(hint) if a is not type(None)))
    raise AssertionError(f"no sample value for {name}: {hint}")


def an_event(kind: type[Event]) -> Event:
    """An event of type ``kind`` about task ``a`` (attempt 1), its fields filled in."""
    hints = typing.get_type_hints(kind)
    values: dict[str, Any] = {
        f.name: _sample_value(f.name, hints[f.name])
        for f in dataclasses.fields(kind)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    return kind(**values)


SCOPED: list[type[Event]] = sorted(_NO_PHASE | _OWN_PHASE, key=lambda kind: kind.type_name)


@pytest.mark.parametrize("kind", SCOPED, ids=[kind.type_name for kind in SCOPED])
def test_a_task_whose_status_an_event_changes_gets_a_new_phase(kind: type[Event]) -> None:
    # apply() looks for new phases only where an event can make them: nowhere after
    # one of _NO_PHASE, only on the event's own task after one of _OWN_PHASE (a
    # thousand-task run looked at every task after every event). Held to it from every
    # status, beside tasks in every status that wait on the event's task.
    statuses = typing.get_args(TaskStatus)
    for own in statuses:
        state = RunState(plan=PLAN, proposal=BatchProposed(batch=1, tasks=("a",)))
        state.tasks = {"a": TaskState("a", status=own, attempts=[AttemptState(1)])}
        for i, other in enumerate(statuses):
            state.tasks[f"o{i}"] = TaskState(
                f"o{i}", status=other, held_reason="held", skip_reason="skip", blocked_by="a"
            )
        for task in state.tasks.values():
            task.phases = [Phase(0.0, task.status, task.held_reason or task.skip_reason)]
        apply(state, dataclasses.replace(an_event(kind), seq=1, ts=1.0))
        for task in state.tasks.values():
            last = task.phases[-1]
            now = (task.status, task.held_reason or task.skip_reason)
            assert (last.status, last.reason) == now, (kind.__name__, own, task.id)


def test_a_task_an_output_event_brings_in_gets_its_first_phase_at_that_event() -> None:
    # A damaged or foreign log may name a task its RunStarted did not: its attempt is made
    # up when first named, and the timeline shows it from then.
    state = started()
    apply(state, TaskOutput(task="ghost", attempt=1, data=b"x", seq=2, ts=105.0))
    assert state.tasks["ghost"].phases == [Phase(105.0, "pending", "")]
