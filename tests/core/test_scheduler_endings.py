"""How the scheduler ends a run, and when it does not propose again (pure, no processes).

The run's final status and the headless summary come from the `Finish` steps
tested here: the operator ending a run with tasks never run, an auto-approved
run whose scheduling paused after a whole batch failed, and the policy
(`--yes`) carried into each proposal. A waiting batch is not proposed again
just because a blocker named in a held reason moved from running to checking.
These tests were written against the mutation pass of issue 20
(`tests/README.md`); the helpers are `test_scheduler.py`'s stand-in engine.
"""

from __future__ import annotations

from delegate_tui.core import scheduler
from delegate_tui.core.events import (
    BatchApproved,
    BatchProposed,
    CriteriaChecked,
    SchedulingPaused,
    TaskExited,
    TaskFinished,
    TaskMerged,
    TaskStarted,
)
from delegate_tui.core.plan import Plan
from delegate_tui.core.scheduler import Finish, Propose, Situation, TellWaiting
from delegate_tui.core.state import RunState, apply
from tests.core.test_scheduler import approve, drive, end, plan_of, start

PAIR = plan_of("{id: a, prompt: x, edits: [a]}", "{id: b, prompt: x, edits: [b]}")
THREE = plan_of(
    "{id: a, prompt: x, edits: [a]}",
    "{id: b, prompt: x, edits: [b]}",
    "{id: c, prompt: x, edits: [c]}",
    max_parallel=2,
)


def steps(plan: Plan, state: RunState, situation: Situation) -> list[scheduler.Step]:
    return scheduler.next_steps(plan, state, situation)


# ------------------------------------------------------------ the operator ends it


def test_ending_a_run_with_tasks_never_run_stops_it_as_ended_by_the_operator() -> None:
    state = start(PAIR)
    drive(PAIR, state)
    apply(state, BatchApproved(batch=1, tasks=("a",)))
    apply(state, TaskStarted("a", 1, "x", (), "/w", pid=1, pgid=1, prompt="", transport="pipes"))
    end(state, "a", "succeeded")  # b was never approved: no outcome yet
    ended = Situation(hold_at_end=True, end_requested=True)
    assert steps(PAIR, state, ended) == [Finish("stopped", "ended by the operator")]
    # Asked while a merge job still runs: the run does not end before the job does.
    busy = Situation(hold_at_end=True, end_requested=True, busy=True)
    assert not any(isinstance(s, Finish) for s in steps(PAIR, state, busy))
    # Not asked: the run goes on (b is proposed), it does not end by itself.
    assert [type(s) for s in steps(PAIR, state, Situation())] == [Propose]


def test_ending_a_run_whose_tasks_all_ended_keeps_its_outcome_with_no_reason() -> None:
    state = start(PAIR)
    drive(PAIR, state)
    approve(state)
    end(state, "a", "succeeded")
    end(state, "b", "succeeded")
    ended = Situation(hold_at_end=True, end_requested=True)
    assert steps(PAIR, state, ended) == [Finish("succeeded", "")]


# ------------------------------------------------------------ scheduling paused


def paused_after_a_failed_batch(*, auto: bool, first: str = "") -> RunState:
    """THREE with batch {a, b} (or {b, c} after ``first`` ran alone) all failed; paused."""
    state = start(THREE, auto=auto)
    if first:
        drive(THREE, state)
        apply(state, BatchApproved(batch=1, tasks=(first,)))
        apply(state, TaskStarted(first, 1, "x", (), "/w", 1, 1, "", "pipes"))
        end(state, first, "succeeded")
    drive(THREE, state, Situation(hold_at_end=True, told_waiting=True))
    failing = approve(state)
    assert len(failing) == 2
    for task in failing:
        end(state, task, "failed")
    step = scheduler.after_attempt(THREE, state, failing[-1])
    assert isinstance(step, scheduler.PauseAfterBatch)
    apply(state, SchedulingPaused())
    return state


def test_an_auto_approved_run_paused_with_tasks_left_fails_as_scheduling_stopped() -> None:
    state = paused_after_a_failed_batch(auto=True)
    assert state.paused and state.tasks["c"].status == "pending"
    assert steps(THREE, state, Situation()) == [Finish("failed", "scheduling stopped")]
    # Not while a job is under way.
    assert steps(THREE, state, Situation(busy=True)) == []


def test_an_auto_approved_run_paused_after_a_success_ends_partial() -> None:
    state = paused_after_a_failed_batch(auto=True, first="a")
    assert [state.tasks[t].status for t in "abc"] == ["succeeded", "failed", "failed"]
    # An operator is present, so the run first says it waits; nothing can be
    # scheduled while paused, so the run ends with its outcome.
    assert steps(THREE, state, Situation(hold_at_end=True)) == [
        TellWaiting(),
        Finish("partial", "scheduling stopped"),
    ]


def test_a_paused_run_with_an_operator_approving_waits_for_them() -> None:
    state = paused_after_a_failed_batch(auto=False)
    assert not state.auto_approve and state.tasks["c"].status == "pending"
    assert steps(THREE, state, Situation()) == [], "the operator resumes or ends it"


def test_a_paused_auto_approved_run_with_a_batch_waiting_does_not_end() -> None:
    state = paused_after_a_failed_batch(auto=True)
    # A batch that needs the operator (``approve: true``) was waiting when it paused.
    apply(state, BatchProposed(batch=2, tasks=("c",), needs_approval=True))
    assert state.proposal is not None
    assert steps(THREE, state, Situation()) == []


# ------------------------------------------------------------ the approval policy


def test_an_auto_approved_run_proposes_batches_that_need_no_approval() -> None:
    auto = start(PAIR, auto=True)
    (step,) = steps(PAIR, auto, Situation())
    assert isinstance(step, Propose) and step.proposal.tasks == ("a", "b")
    assert not step.proposal.needs_approval
    manual = start(PAIR)
    (step,) = steps(PAIR, manual, Situation())
    assert isinstance(step, Propose) and step.proposal.needs_approval


# ------------------------------------------------------------ after an attempt


def test_a_failed_task_outside_any_batch_never_pauses_scheduling() -> None:
    from delegate_tui.core.state import AttemptState, TaskState

    state = RunState(plan=PAIR, isolation="worktree", auto_approve=True)
    state.tasks = {
        "a": TaskState("a", status="failed", attempts=[AttemptState(1)]),
        "b": TaskState("b", status="timed-out", attempts=[AttemptState(1)]),
    }
    assert state.tasks["a"].batch == 0
    assert scheduler.after_attempt(PAIR, state, "a") is None
    state.tasks["a"].batch = state.tasks["b"].batch = 4
    assert scheduler.after_attempt(PAIR, state, "a") == scheduler.PauseAfterBatch(4, ("a", "b"))


# ------------------------------------------------------------ a waiting batch


def test_a_waiting_batch_is_not_proposed_again_when_a_blocker_only_moves_on() -> None:
    plan = plan_of(
        "{id: a, prompt: x, edits: [src/x.py]}",
        "{id: b, prompt: x, edits: [src/x.py]}",
        "{id: c, prompt: x, edits: [src/c.py]}",
    )
    state = start(plan)
    drive(plan, state)
    apply(state, BatchApproved(batch=1, tasks=("a",)))  # the operator takes a alone
    drive(plan, state)
    assert state.proposal is not None and state.proposal.tasks == ("c",)
    (held,) = state.proposal.held
    assert held.task == "b" and held.reason.endswith("(starting)")
    # a goes through starting, running, checking and merging: b's reason names
    # each, but the batch waiting is the same one, so it is not proposed again.
    for ev in (
        TaskStarted("a", 1, "x", (), "/w", 1, 1, "", "pipes"),
        TaskExited(task="a", attempt=1, exit_code=0),
        CriteriaChecked(task="a", attempt=1, results=(), passed=True),
    ):
        apply(state, ev)
        status = state.tasks["a"].status
        assert steps(plan, state, Situation(hold_at_end=True)) == [], status
    assert status == "merging"
    # When a is done, b is free: the waiting batch is revised with it.
    apply(state, TaskMerged(task="a", attempt=1, commit="m"))
    apply(state, TaskFinished(task="a", attempt=1, status="succeeded"))
    (step,) = steps(plan, state, Situation(hold_at_end=True))
    assert isinstance(step, Propose) and step.batch == 2
    assert step.proposal.tasks == ("b", "c") and step.proposal.held == ()
