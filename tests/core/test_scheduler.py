"""The scheduler's decisions, driven by a pure stand-in for the engine (no processes).

`drive` carries the scheduler's steps out as the engine does, by folding the
events they stand for through `apply`; operator commands and agents' ends are
events folded the same way, each checked first by `commands.refusal`.
"""

from __future__ import annotations

import typing

from hypothesis import given, settings
from hypothesis import strategies as st

from delegate_tui.core import scheduler
from delegate_tui.core.commands import refusal
from delegate_tui.core.events import (
    FAILED_STATUSES,
    BatchApproved,
    BatchProposed,
    Event,
    Metrics,
    Notice,
    RetryScheduled,
    RunFinished,
    RunStarted,
    TaskBlocked,
    TaskFinished,
    TaskSkipped,
    TaskStarted,
    TaskStatus,
)
from delegate_tui.core.graph import ancestors
from delegate_tui.core.plan import Plan, parse_plan
from delegate_tui.core.scheduler import Situation
from delegate_tui.core.state import RunState, apply, build


def plan_of(*tasks: str, max_parallel: int = 3) -> Plan:
    lines = "".join(f"  - {t}\n" for t in tasks)
    return parse_plan(f"name: p\nmax_parallel: {max_parallel}\ntasks:\n{lines}")


def start(plan: Plan, *, auto: bool = False) -> RunState:
    return build(
        [
            RunStarted(
                run_id="r",
                plan=plan.model_dump(mode="json", by_alias=True),
                plan_path="p.yaml",
                repo="/r",
                isolation="worktree",
                auto_approve=auto,
                max_parallel=plan.max_parallel,
            )
        ]
    )


def drive(plan: Plan, state: RunState, situation: Situation | None = None) -> list[object]:
    """Carry out steps until the scheduler has none; the steps taken."""
    situation = situation or Situation(hold_at_end=True)
    taken: list[object] = []
    for _ in range(100):
        steps = scheduler.next_steps(plan, state, situation)
        if not steps or state.finished:
            return taken
        for step in steps:
            taken.append(step)
            if isinstance(step, scheduler.Block):
                apply(state, TaskBlocked(task=step.task, by=step.by, reason=step.reason))
            elif isinstance(step, scheduler.Propose):
                p = step.proposal
                proposed = BatchProposed(
                    batch=step.batch,
                    tasks=p.tasks,
                    held=p.held,
                    notes=p.notes,
                    needs_approval=p.needs_approval,
                )
                apply(state, proposed)
            elif isinstance(step, scheduler.TellWaiting):
                situation = Situation(hold_at_end=situation.hold_at_end, told_waiting=True)
                apply(state, Notice(level="warning", message=step.message))
            elif isinstance(step, scheduler.Finish):
                apply(state, RunFinished(status=step.status, metrics=Metrics()))
    raise AssertionError("the scheduler never settled")


def approve(state: RunState) -> tuple[str, ...]:
    assert refusal(state, "approve") is None
    assert state.proposal is not None
    tasks = state.proposal.tasks
    apply(state, BatchApproved(batch=state.proposal.batch, tasks=tasks))
    for task in tasks:
        run(state, task)
    return tasks


def run(state: RunState, task: str) -> None:
    number = len(state.tasks[task].attempts) or 1
    apply(
        state,
        TaskStarted(task, number, "x", (), "/w", pid=1, pgid=1, prompt="", transport="pipes"),
    )


def end(state: RunState, task: str, status: str) -> None:
    assert status in typing.get_args(TaskStatus), status
    number = state.tasks[task].attempts[-1].number
    apply(state, TaskFinished(task=task, attempt=number, status=typing.cast(TaskStatus, status)))


def retry(state: RunState, task: str) -> None:
    assert refusal(state, "retry", task) is None
    number = len(state.tasks[task].attempts) + 1
    apply(state, RetryScheduled(task=task, attempt=number, prompt="again"))
    run(state, task)


def statuses(state: RunState) -> dict[str, str]:
    return {t: s.status for t, s in state.tasks.items()}


CHAIN = plan_of(
    "{id: a, prompt: x, edits: [a]}",
    "{id: b, prompt: x, edits: [b], depends_on: [a]}",
    "{id: c, prompt: x, edits: [c], depends_on: [b]}",
)


def test_kill_then_retry_unblocks_grandchildren() -> None:
    state = start(CHAIN)
    drive(CHAIN, state)
    assert approve(state) == ("a",)
    end(state, "a", "killed")
    drive(CHAIN, state)
    assert statuses(state) == {"a": "killed", "b": "blocked", "c": "blocked"}
    retry(state, "a")
    drive(CHAIN, state)
    assert statuses(state) == {"a": "running", "b": "pending", "c": "pending"}
    assert state.tasks["c"].held_reason == ""  # "dependency b blocked" no longer holds
    end(state, "a", "succeeded")
    drive(CHAIN, state)
    assert approve(state) == ("b",)
    end(state, "b", "succeeded")
    drive(CHAIN, state)
    assert approve(state) == ("c",)
    end(state, "c", "succeeded")
    steps = drive(CHAIN, state)
    assert steps == [scheduler.Finish("succeeded")]


def test_a_grandchild_stays_blocked_while_another_ancestor_failed() -> None:
    plan = plan_of(
        "{id: a, prompt: x, edits: [a]}",
        "{id: z, prompt: x, edits: [z]}",
        "{id: b, prompt: x, edits: [b], depends_on: [a, z]}",
        "{id: c, prompt: x, edits: [c], depends_on: [b]}",
    )
    state = start(plan)
    drive(plan, state)
    approve(state)
    end(state, "a", "failed")
    end(state, "z", "killed")
    drive(plan, state)
    retry(state, "a")
    drive(plan, state)
    assert statuses(state) == {"a": "running", "z": "killed", "b": "blocked", "c": "blocked"}
    assert state.tasks["b"].blocked_by == "z"


def test_a_waiting_batch_grows_when_a_slot_frees() -> None:
    plan = plan_of(*(f"{{id: t{i}, prompt: x, edits: [f{i}]}}" for i in range(4)), max_parallel=2)
    state = start(plan)
    drive(plan, state)
    assert approve(state) == ("t0", "t1")
    end(state, "t0", "succeeded")
    drive(plan, state)
    assert state.proposal is not None
    assert (state.proposal.batch, state.proposal.tasks) == (2, ("t2",))
    assert state.tasks["t3"].held_reason == "max_parallel (2) reached"
    end(state, "t1", "succeeded")
    drive(plan, state)
    # The same batch, revised: no reason shown that no longer holds.
    assert (state.proposal.batch, state.proposal.tasks) == (2, ("t2", "t3"))
    assert state.tasks["t3"].held_reason == ""
    assert statuses(state)["t3"] == "proposed"
    approve(state)
    assert state.batches == 2


def test_a_revised_batch_drops_a_task_that_no_longer_fits() -> None:
    plan = plan_of(
        "{id: a, prompt: x, edits: [src/a.py]}",
        "{id: b, prompt: x, edits: [src/b.py]}",
        "{id: c, prompt: x, edits: [src/a.py]}",
        max_parallel=3,
    )
    state = start(plan)
    drive(plan, state)
    assert state.proposal is not None and state.proposal.tasks == ("a", "b")
    assert drive(plan, state) == []  # nothing changed: no new proposal
    apply(state, TaskSkipped(task="a", reason="r"))  # (the engine holds the batch first)
    drive(plan, state)
    assert state.proposal.tasks == ("b", "c")
    assert statuses(state)["a"] == "skipped"


def test_the_run_ends_or_waits_for_the_operator() -> None:
    plan = plan_of("{id: a, prompt: x, edits: [a]}", "{id: b, prompt: x, edits: [b]}")
    state = start(plan)
    drive(plan, state)
    approve(state)
    end(state, "a", "succeeded")
    end(state, "b", "failed")
    # With an operator: tell them once, do not finish.
    steps = drive(plan, state, Situation(hold_at_end=True))
    assert steps == [scheduler.TellWaiting()]
    assert drive(plan, state, Situation(hold_at_end=True, told_waiting=True)) == []
    # Headless, or when the operator ends it: the outcome stands.
    assert scheduler.next_steps(plan, state, Situation()) == [scheduler.Finish("partial")]
    ended = Situation(hold_at_end=True, end_requested=True)
    assert scheduler.next_steps(plan, state, ended) == [scheduler.Finish("partial")]
    # A job still under way (a merge) keeps the run open.
    assert scheduler.next_steps(plan, state, Situation(busy=True)) == []


def test_a_run_left_idle_by_a_skip_says_to_retry_the_skip_not_a_failure() -> None:
    """Once every failure is decided (skipped), "retry or skip the failed tasks" names
    nothing there is; the notice names the skipped task a retry would set going."""
    state = start(CHAIN)
    drive(CHAIN, state)
    approve(state)
    end(state, "a", "failed")
    drive(CHAIN, state)  # b and c blocked by a
    waiting = Situation(hold_at_end=True)
    assert drive(CHAIN, state, waiting) == [scheduler.TellWaiting(scheduler.WAITING_MESSAGE)]
    apply(state, TaskSkipped(task="a", reason="skipped by the operator"))
    (told,) = drive(CHAIN, state, waiting)
    assert told == scheduler.TellWaiting(
        "the run is waiting for you: retry the skipped task (a) to go on, or end the run"
    )
    assert told.message.startswith(scheduler.WAITING_PREFIX)  # how views know it
    # A failure left undecided beside the skip: the failed tasks come first.
    plan = plan_of("{id: a, prompt: x, edits: [a]}", "{id: b, prompt: x, edits: [b]}")
    state = start(plan)
    drive(plan, state)
    approve(state)
    end(state, "a", "killed")
    apply(state, TaskSkipped(task="b", reason="r"))
    assert scheduler.waiting_message(state) == scheduler.WAITING_MESSAGE


def test_stopping_finishes_only_when_idle() -> None:
    plan = plan_of("{id: a, prompt: x, edits: [a]}")
    state = start(plan)
    drive(plan, state)
    approve(state)
    stopping = Situation(stopping=True, stop_reason="interrupted by SIGTERM")
    assert scheduler.next_steps(plan, state, stopping) == []
    end(state, "a", "interrupted")
    assert scheduler.next_steps(plan, state, stopping) == [
        scheduler.Finish("stopped", "interrupted by SIGTERM")
    ]


def test_after_an_attempt_retry_or_pause() -> None:
    plan = plan_of(
        "{id: a, prompt: x, edits: [a], retries: 1}",
        "{id: b, prompt: x, edits: [b]}",
    )
    state = start(plan, auto=True)
    drive(plan, state)
    approve(state)
    end(state, "a", "failed")
    assert scheduler.after_attempt(plan, state, "a") == scheduler.AutoRetry("a")
    retry(state, "a")
    end(state, "a", "failed")
    assert scheduler.after_attempt(plan, state, "a") is None  # retries used up; b still runs
    end(state, "b", "timed-out")
    step = scheduler.after_attempt(plan, state, "b")
    assert step == scheduler.PauseAfterBatch(1, ("a", "b"))
    assert "every task of batch 1 failed (a, b)" in step.message


# ---------------------------------------------------------------- property

FAILING = sorted(FAILED_STATUSES - {"blocked"})


@st.composite
def dag_and_script(draw: st.DrawFn) -> tuple[Plan, list[tuple[str, int, str]]]:
    n = draw(st.integers(2, 7))
    lines = []
    for i in range(n):
        deps = draw(st.lists(st.integers(0, i - 1), unique=True, max_size=2)) if i else []
        dep_text = ", ".join(f"t{d}" for d in deps)
        lines.append(f"{{id: t{i}, prompt: x, edits: [f{i}], depends_on: [{dep_text}]}}")
    script = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["approve", "end", "retry", "skip"]),
                st.integers(0, n - 1),
                st.sampled_from(["succeeded", *FAILING]),
            ),
            max_size=30,
        )
    )
    return plan_of(*lines, max_parallel=3), script


@settings(max_examples=150, deadline=None)
@given(dag_and_script())
def test_blocked_iff_an_ancestor_failed(case: tuple[Plan, list[tuple[str, int, str]]]) -> None:
    plan, script = case
    state = start(plan)
    drive(plan, state)
    for command, index, outcome in script:
        task = f"t{index}"
        if command == "approve" and refusal(state, "approve") is None:
            approve(state)
        elif command == "end" and state.tasks[task].status == "running":
            end(state, task, outcome)
        elif command == "retry" and refusal(state, "retry", task) is None:
            retry(state, task)
        elif command == "skip" and refusal(state, "skip", task) is None:
            if state.proposal is not None and task in state.proposal.tasks:
                continue  # the engine holds the batch first; covered elsewhere
            apply(state, TaskSkipped(task=task, reason="r"))
        drive(plan, state, Situation(hold_at_end=True, told_waiting=True))
        for t in plan.tasks:
            status = state.tasks[t.id].status
            if status not in ("pending", "proposed", "blocked"):
                continue
            cut_off = any(state.tasks[a].status in FAILING for a in ancestors(plan.deps, t.id))
            assert (status == "blocked") == cut_off, (t.id, statuses(state))


# ---------------------------------------------------------------- the fold's table

#: What a task event does to the task's status, from any status. The fold trusts
#: the log: an event that reports a step sets the status that step means.
SETS: dict[str, str] = {
    "TaskPreparing": "starting",
    "TaskStarted": "running",
    "TaskExited(0)": "checking",
    "CriteriaChecked(pass)": "merging",
    "TaskCommitted": "merging",
    "RetryScheduled": "starting",
    "TaskSkipped": "skipped",
    "TaskBlocked": "blocked",
}
#: Batch events move only the tasks they are about, from these statuses.
BATCH: dict[tuple[str, str], str] = {
    ("pending", "BatchProposed"): "proposed",
    ("pending", "BatchApproved"): "starting",
    ("proposed", "BatchApproved"): "starting",
    ("proposed", "BatchHeld"): "pending",
}


def _event(name: str) -> Event:
    from delegate_tui.core import events as e

    return {
        "BatchProposed": e.BatchProposed(batch=1, tasks=("a",)),
        "BatchApproved": e.BatchApproved(batch=1, tasks=("a",)),
        "BatchHeld": e.BatchHeld(batch=1),
        "TaskPreparing": e.TaskPreparing(task="a", attempt=1, workdir="w"),
        "TaskStarted": e.TaskStarted("a", 1, "x", (), "w", 1, 1, "", "pipes"),
        "TaskExited(0)": e.TaskExited(task="a", attempt=1, exit_code=0, reason="exit"),
        "TaskExited(1)": e.TaskExited(task="a", attempt=1, exit_code=1, reason="exit"),
        "TaskExited(killed)": e.TaskExited(task="a", attempt=1, exit_code=0, reason="killed"),
        "CriteriaChecked(pass)": e.CriteriaChecked(task="a", attempt=1, results=(), passed=True),
        "CriteriaChecked(fail)": e.CriteriaChecked(task="a", attempt=1, results=(), passed=False),
        "TaskCommitted": e.TaskCommitted(task="a", attempt=1, commit="c"),
        "MergeConflict": e.MergeConflict(task="a", attempt=1, paths=("x",)),
        "TaskMerged": e.TaskMerged(task="a", attempt=1, commit="m"),
        "KillRequested": e.KillRequested(task="a", attempt=1),
        "RetryScheduled": e.RetryScheduled(task="a", attempt=2, prompt="p"),
        "TaskSkipped": e.TaskSkipped(task="a", reason="r"),
        "TaskBlocked": e.TaskBlocked(task="a", by="b", reason="r"),
    }[name]


EVENTS = (
    *SETS,
    "BatchProposed",
    "BatchApproved",
    "BatchHeld",
    "TaskExited(1)",
    "TaskExited(killed)",
    "CriteriaChecked(fail)",
    "MergeConflict",
    "TaskMerged",
    "KillRequested",
)


def test_every_status_and_event_pair() -> None:
    from delegate_tui.core.state import AttemptState, TaskState

    plan = plan_of("{id: a, prompt: x, edits: [a]}", "{id: b, prompt: x, edits: [b]}")
    for status in typing.get_args(TaskStatus):
        for name in EVENTS:
            state = RunState(plan=plan)
            state.tasks = {
                "a": TaskState("a", status=status, attempts=[AttemptState(1)]),
                "b": TaskState("b", status="failed"),
            }
            if name in ("BatchApproved", "BatchHeld"):
                state.proposal = BatchProposed(batch=1, tasks=("a",))
            apply(state, _event(name))
            expected = SETS.get(name) or BATCH.get((status, name), status)
            assert state.tasks["a"].status == expected, (status, name)
        for final in typing.get_args(TaskStatus):
            state = RunState(plan=plan)
            state.tasks = {"a": TaskState("a", status=status, attempts=[AttemptState(1)])}
            apply(state, TaskFinished(task="a", attempt=1, status=final))
            assert state.tasks["a"].status == final
