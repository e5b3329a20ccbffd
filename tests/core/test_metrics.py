"""Run metrics as values from known runs: events folded through ``state.apply``, then
``metrics.compute`` / ``stats`` / ``summarize``, compared with what a person works out by hand."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from typing import Any

import pytest

from delegate_tui.core import metrics
from delegate_tui.core.events import (
    BatchApproved,
    BatchProposed,
    ChangedFile,
    ConflictDetected,
    ConflictResolved,
    Event,
    HeldTask,
    MergeConflict,
    RetryScheduled,
    RunFinished,
    RunStarted,
    TaskBlocked,
    TaskCommitted,
    TaskExited,
    TaskFinished,
    TaskSkipped,
    TaskStarted,
    TaskStatus,
)
from delegate_tui.core.plan import parse_plan
from delegate_tui.core.state import RunState, apply

T0 = 1_000.0  # the run starts here; every time below is T0 + seconds

PLAN = parse_plan(
    textwrap.dedent(
        """\
        name: measured
        tasks:
          - {id: a, prompt: x, edits: [a/**]}
          - {id: b, prompt: x, edits: [b/**]}
          - {id: c, prompt: x, edits: [c/**], depends_on: [a]}
        """
    )
)


def run_started(at: float = 0.0) -> RunStarted:
    return RunStarted(
        run_id="20261202-120000",
        plan=PLAN.model_dump(mode="json", by_alias=True),
        plan_path="plan.yaml",
        repo="/repo",
        isolation="worktree",
        integration_branch="delegate/20261202-120000/integration",
        auto_approve=True,
        ts=T0 + at,
    )


def batch(number: int, at: float, *tasks: str) -> list[Event]:
    """A batch proposed and approved by policy at once (no operator wait)."""
    return [
        BatchProposed(batch=number, tasks=tasks, needs_approval=False, ts=T0 + at),
        BatchApproved(batch=number, tasks=tasks, by="policy", ts=T0 + at),
    ]


def attempt(
    task: str, start: float, end: float, status: TaskStatus = "succeeded", number: int = 1
) -> list[Event]:
    """One attempt that runs from ``start`` to ``end`` seconds into the run."""
    code = 0 if status == "succeeded" else 1
    return [
        TaskStarted(
            task=task,
            attempt=number,
            agent="demo",
            argv=("demo",),
            cwd=f"/w/{task}",
            pid=100 + number,
            pgid=100 + number,
            prompt="x",
            ts=T0 + start,
        ),
        TaskExited(task=task, attempt=number, exit_code=code, duration_s=end - start, ts=T0 + end),
        TaskFinished(task=task, attempt=number, status=status, ts=T0 + end),
    ]


def stats_of(state: RunState) -> dict[str, Any]:
    """``metrics.stats``, read as ``stats --json`` is: nested values of any JSON type."""
    return metrics.stats(state)


def fold(events: Iterable[Event]) -> RunState:
    state = RunState()
    for seq, ev in enumerate(events, 1):
        object.__setattr__(ev, "seq", seq)
        apply(state, ev)
    return state


def finish(state: RunState, at: float, status: str = "succeeded") -> RunState:
    """End the run as the engine does: metrics computed at the finish, then RunFinished."""
    m = metrics.compute(state, T0 + at)
    summary = metrics.summarize(state)
    return apply(state, RunFinished(status=status, metrics=m, summary=summary, ts=T0 + at))


def test_two_parallel_4s_tasks_in_a_5s_run_save_3s() -> None:
    # Their worktrees take the first second (the tasks are starting: not a wait).
    state = fold([run_started(), *batch(1, 0, "a", "b"), *attempt("a", 1.0, 5.0)])
    for ev in attempt("b", 1.0, 5.0):
        apply(state, ev)
    finish(state, 5.0)
    m = state.metrics
    assert m is not None
    assert (m.wall_s, m.sequential_s, m.time_saved_s) == (5.0, 8.0, 3.0)
    assert (m.conflict_rate, m.rework_rate) == (0.0, 0.0)
    assert (m.tasks_total, m.tasks_succeeded, m.tasks_failed) == (3, 2, 0)
    report = stats_of(state)["metrics"]
    assert {k: report[k] for k in METRIC_KEYS} == {
        "wall_s": 5.0,
        "sequential_s": 8.0,
        "time_saved_s": 3.0,
        "conflict_rate": 0.0,
        "rework_rate": 0.0,
    }


METRIC_KEYS = ("wall_s", "sequential_s", "time_saved_s", "conflict_rate", "rework_rate")


def test_operator_waits_and_downtime_are_not_counted_against_time_saved() -> None:
    """a and b run 4 s side by side; the second batch waits 60 s for the operator; the
    process then dies and is resumed 100 s later; c runs 2 s. Agents' work: 10 s of
    sequential time in 6 s of working wall time: 4 s saved, whatever the waits."""
    from delegate_tui.core.events import Notice, RunResumed

    state = fold(
        [
            run_started(),
            *batch(1, 0, "a", "b"),
            *attempt("a", 0.0, 4.0),
            *attempt("b", 0.0, 4.0),
            BatchProposed(batch=2, tasks=("c",), needs_approval=True, ts=T0 + 4.0),
            Notice(level="info", message="still waiting", ts=T0 + 30.0),
            BatchApproved(batch=2, tasks=("c",), by="operator", ts=T0 + 64.0),
            *attempt("c", 64.0, 65.0)[:1],  # started, then the process died at 65 s
            Notice(level="info", message="c is working", ts=T0 + 65.0),
            RunResumed(host_pid=2, ts=T0 + 165.0),
            TaskFinished(task="c", attempt=1, status="interrupted", ts=T0 + 165.0),
            RetryScheduled(task="c", attempt=2, prompt="again", ts=T0 + 165.0),
        ]
    )
    for ev in attempt("c", 165.0, 167.0, number=2):
        apply(state, ev)
    finish(state, 167.0)
    m = state.metrics
    assert m is not None
    assert (m.wall_s, m.operator_wait_s, m.downtime_s) == (167.0, 60.0, 100.0)
    # c's first attempt ran 1 s before the crash (not until the resume) and its second
    # 2 s: sequential 4 + 4 + 1 + 2 = 11; working wall 167 - 60 - 100 = 7.
    assert (m.sequential_s, m.time_saved_s) == (11.0, 4.0)
    report = stats_of(state)["metrics"]
    assert (report["operator_wait_s"], report["downtime_s"]) == (60.0, 100.0)


def test_a_live_run_waiting_now_counts_the_wait_so_far() -> None:
    state = fold(
        [
            run_started(),
            *batch(1, 0, "a", "b"),
            *attempt("a", 0.0, 4.0),
            *attempt("b", 0.0, 4.0),
            BatchProposed(batch=2, tasks=("c",), needs_approval=True, ts=T0 + 4.0),
        ]
    )
    m = metrics.compute(state, T0 + 34.0)  # the header, 30 s into the wait
    assert (m.wall_s, m.operator_wait_s, m.time_saved_s) == (34.0, 30.0, 4.0)


def test_tasks_run_one_after_another_save_nothing_and_show_the_loss() -> None:
    """Back to back, 2 s + 2 s in a 4.5 s run (b's worktree took half a second): parallelism
    lost half a second, not gained it."""
    state = fold(
        [
            run_started(),
            *batch(1, 0, "a"),
            *attempt("a", 0.0, 2.0),
            *batch(2, 2.0, "b"),
            *attempt("b", 2.5, 4.5),
        ]
    )
    m = metrics.compute(state, T0 + 4.5)
    assert (m.wall_s, m.sequential_s, m.time_saved_s) == (4.5, 4.0, -0.5)


def test_every_attempt_counts_and_a_retry_is_rework() -> None:
    """a fails after 3 s and its retry takes 2 s; b runs 4 s beside them; c 1 s after a."""
    state = fold(
        [
            run_started(),
            *batch(1, 0, "a", "b"),
            *attempt("a", 0.0, 3.0, status="failed"),
            RetryScheduled(task="a", attempt=2, prompt="again", context="exit 1", ts=T0 + 3.0),
            *attempt("a", 3.0, 5.0, number=2),
        ]
    )
    for ev in [*attempt("b", 0.0, 4.0), *batch(2, 5.0, "c"), *attempt("c", 5.0, 6.0)]:
        apply(state, ev)
    m = metrics.compute(state, T0 + 6.0)
    assert (m.wall_s, m.sequential_s, m.time_saved_s) == (6.0, 10.0, 4.0)
    assert m.rework_rate == round(1 / 3, 4)
    assert state.tasks["a"].duration_s == 5.0
    assert stats_of(state)["tasks"]["a"]["attempts"] == 2


def test_conflict_rate_counts_tasks_that_collided_among_those_that_ran() -> None:
    state = fold([run_started(), *batch(1, 0, "a", "b"), *attempt("a", 0, 2), *attempt("b", 0, 2)])
    for ev in [*batch(2, 2, "c"), *attempt("c", 2, 3, status="merge-conflict")]:
        apply(state, ev)
    assert metrics.compute(state).conflict_rate == 0.0
    apply(state, MergeConflict(task="c", attempt=1, paths=("c/x.py",), ts=T0 + 3))
    assert metrics.compute(state).conflict_rate == round(1 / 3, 4)
    overlap = ConflictDetected(
        key="overlap:a,b:x",
        kind="overlap",
        severity="warning",
        tasks=("a", "b"),
        paths=("x",),
        ts=T0 + 1,
    )
    apply(state, overlap)
    assert metrics.compute(state).conflict_rate == 1.0
    # A resolved finding still happened: the rate is about the run, not the moment.
    apply(state, ConflictResolved(key=overlap.key, ts=T0 + 3))
    assert metrics.compute(state).conflict_rate == 1.0


def test_warnings_that_are_not_collisions_do_not_count_as_conflicts() -> None:
    state = fold([run_started(), *batch(1, 0, "a", "b"), *attempt("a", 0, 2), *attempt("b", 0, 2)])
    for kind in ("out-of-scope", "shared-file", "undeclared-collision"):
        apply(
            state,
            ConflictDetected(
                key=f"{kind}:a:x", kind=kind, severity="warning", tasks=("a",), paths=("x",)
            ),
        )
    assert metrics.compute(state).conflict_rate == 0.0
    apply(
        state,
        ConflictDetected(
            key="predicted-conflict:a:x",
            kind="predicted-conflict",
            severity="error",
            tasks=("a",),
            paths=("x",),
        ),
    )
    assert metrics.compute(state).conflict_rate == 0.5


def test_a_live_run_counts_the_running_attempt_up_to_now() -> None:
    state = fold([run_started(), *batch(1, 0, "a", "b"), *attempt("a", 0.0, 2.0)])
    apply(state, attempt("b", 0.0, 9.0)[0])  # b started and is still running
    m = metrics.compute(state, now=T0 + 3.0)
    assert (m.wall_s, m.sequential_s, m.time_saved_s) == (3.0, 5.0, 2.0)
    # Without a clock, the last event is "now".
    m = metrics.compute(state)
    assert (m.wall_s, m.sequential_s) == (2.0, 4.0)


def test_a_run_that_has_not_started_measures_zero() -> None:
    m = metrics.compute(RunState(), now=T0)
    assert (m.wall_s, m.sequential_s, m.time_saved_s, m.conflict_rate, m.rework_rate) == (
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
    )
    state = fold([run_started()])
    m = metrics.compute(state, now=T0 + 2)
    assert (m.wall_s, m.conflict_rate, m.rework_rate, m.tasks_total) == (2.0, 0.0, 0.0, 3)


def test_failed_tasks_and_the_summary_name_what_happened() -> None:
    state = fold(
        [
            run_started(),
            *batch(1, 0, "a", "b"),
            *attempt("a", 0, 1, status="failed"),
            *attempt("b", 0, 2),
            TaskBlocked(task="c", by="a", reason="dependency a failed", ts=T0 + 2),
        ]
    )
    m = metrics.compute(state, T0 + 2)
    assert (m.tasks_total, m.tasks_succeeded, m.tasks_failed) == (3, 1, 1)
    assert metrics.summarize(state) == "succeeded: b; failed: a (failed); blocked: c (needs a)"
    for status in ("merge-conflict", "killed", "timed-out", "interrupted"):
        state.tasks["b"].status = status
        assert metrics.compute(state).tasks_failed == 2, status
    state.tasks["b"].status = "skipped"
    assert metrics.compute(state).tasks_failed == 1, "a skip is not a failure"


def test_summary_lists_groups_in_a_fixed_order() -> None:
    state = fold([run_started()])
    state.tasks["a"].status = "proposed"
    state.tasks["b"].status = "skipped"
    state.tasks["c"].status = "awaiting-merge"
    assert metrics.summarize(state) == "awaiting-merge: c; skipped: b; not run: a"


def test_stats_reports_each_tasks_files_lines_and_conflicts_once() -> None:
    state = fold([run_started(), *batch(1, 0, "a", "b"), *attempt("a", 0, 3)])
    changed = (
        ChangedFile("a/x.py", "A", added=10),
        ChangedFile("a/y.py", "M", added=2, deleted=5),
    )
    for ev in [
        TaskStarted(
            task="b", attempt=1, agent="demo", argv=(), cwd="", pid=1, pgid=1, prompt="", ts=T0
        ),
        TaskExited(task="b", attempt=1, exit_code=0, ts=T0 + 2),
        TaskCommitted(task="b", attempt=1, commit="abc", changed=changed, ts=T0 + 2),
        MergeConflict(task="b", attempt=1, paths=("a/x.py",), ts=T0 + 2),
        TaskFinished(task="b", attempt=1, status="merge-conflict", reason="conflict", ts=T0 + 2),
    ]:
        apply(state, ev)
    finding = ConflictDetected(
        key="overlap:a,b:a/x.py",
        kind="overlap",
        severity="warning",
        tasks=("a", "b"),
        paths=("a/x.py",),
        detail="both changed these paths",
    )
    apply(state, finding)
    apply(state, finding)  # seen again after a refresh: reported once
    apply(state, ConflictResolved(key=finding.key))
    report = stats_of(state)
    assert report["run_id"] == "20261202-120000" and report["plan"] == "measured"
    assert report["status"] == "running" and report["started"] == T0
    assert report["tasks"]["b"] == {
        "status": "merge-conflict",
        "attempts": 1,
        "duration_s": 2.0,
        "changed_files": ["a/x.py", "a/y.py"],
        "lines_added": 12,
        "lines_deleted": 5,
        "reason": "conflict",
        # A plain-text agent reports no tokens or cost: unknown, not zero dollars.
        "tokens": {"input": 0, "cached": 0, "output": 0},
        "cost_usd": None,
        "cost_source": "",
        "cost_partial": False,  # no tokens: nothing left out of a total
        "unpriced_models": [],
        "turns": 0,
        "tool_calls": 0,
        "model": "",
        "denials": [],
        "guard_denials": [],
        "sandbox": "",
        "sandbox_denied": [],
        "ending": "merge-conflict",
        "ending_text": "merge conflict in a/x.py",
    }
    assert report["tasks"]["c"]["attempts"] == 0
    assert report["conflicts"] == [
        {
            "kind": "merge-conflict",
            "files": ["a/x.py"],
            "tasks": ["b"],
            "attempt": 1,
            "against": "delegate/20261202-120000/integration",
        },
        {
            "kind": "overlap",
            "severity": "warning",
            "files": ["a/x.py"],
            "tasks": ["a", "b"],
            "detail": "both changed these paths",
            "open": False,
        },
    ]


@pytest.mark.parametrize("at", [5.0, 5.0004])
def test_figures_are_rounded_to_the_millisecond(at: float) -> None:
    state = fold([run_started(), *batch(1, 0, "a"), *attempt("a", 0.0, 1.0 / 3)])
    m = metrics.compute(state, T0 + at)
    assert m.sequential_s == 0.333 and m.wall_s == 5.0


def test_summary_names_every_outcome_with_its_reason() -> None:
    """The paragraph at the end of a run: who succeeded, who failed and why, what is left."""
    plan = parse_plan(
        "name: all\ntasks:\n"
        + "".join(
            f"  - {{id: {t}, prompt: x, edits: [{t}]}}\n"
            for t in ("ok", "merge", "kill", "slow", "cut", "stuck", "skip", "wait", "next", "held")
        )
    )
    state = RunState()
    apply(
        state,
        RunStarted(
            run_id="r",
            plan=plan.model_dump(mode="json", by_alias=True),
            plan_path="p",
            repo="/r",
            isolation="worktree",
            ts=T0,
        ),
    )
    outcomes: dict[str, tuple[TaskStatus, str]] = {
        "ok": ("succeeded", ""),
        "merge": ("merge-conflict", "merge conflict in a.py"),
        "kill": ("killed", ""),
        "slow": ("timed-out", "timed out after 20m"),
        "cut": ("interrupted", ""),
        "held": ("awaiting-merge", ""),
    }
    for task, (status, reason) in outcomes.items():
        for ev in attempt(task, 0, 1)[:1]:
            apply(state, ev)
        apply(state, TaskFinished(task=task, attempt=1, status=status, reason=reason, ts=T0 + 1))
    apply(state, TaskBlocked(task="stuck", by="kill", reason="dependency kill killed", ts=T0 + 2))
    apply(state, TaskSkipped(task="skip", reason="not needed", ts=T0 + 2))
    apply(state, BatchProposed(batch=2, tasks=("next",), ts=T0 + 2))
    assert metrics.summarize(state) == (
        "succeeded: ok; awaiting-merge: held; merge-conflict: merge (merge conflict in a.py); "
        "timed-out: slow (timed out after 20m); killed: kill (killed); "
        "interrupted: cut (interrupted); blocked: stuck (needs kill); skipped: skip; "
        "not run: wait, next"
    )
    state.tasks["wait"].status = "failed"  # failed before any attempt started
    assert "failed: wait (failed)" in metrics.summarize(state)


def test_stats_gives_a_waiting_tasks_reason_and_durations_to_the_millisecond() -> None:
    state = fold([run_started(), *batch(1, 0, "a"), *attempt("a", 0.0, 1.0 / 3)])
    apply(
        state,
        BatchProposed(
            batch=2, tasks=(), held=(HeldTask("b", "max_parallel (1) reached"),), ts=T0 + 1
        ),
    )
    tasks = stats_of(state)["tasks"]
    assert tasks["a"]["duration_s"] == 0.333
    assert tasks["a"]["reason"] == ""
    assert tasks["b"]["reason"] == "max_parallel (1) reached"
    assert tasks["c"]["reason"] == ""


def test_the_verdict_says_how_each_task_ended_in_one_line() -> None:
    plan = parse_plan(
        "name: v\ntasks:\n"
        + "".join(f"  - {{id: {t}, prompt: x, edits: [{t}/**]}}\n" for t in "abcdefg")
    )
    state = RunState(plan=plan, isolation="worktree")
    from delegate_tui.core.state import TaskState

    endings: dict[str, TaskStatus] = {
        "a": "succeeded",
        "b": "succeeded",
        "c": "merge-conflict",
        "d": "failed",
        "e": "killed",
        "f": "blocked",
        "g": "pending",
    }
    state.tasks = {t: TaskState(t, status=s) for t, s in endings.items()}
    state.finding_history = [
        ConflictDetected(
            key="k", kind="out-of-scope", severity="warning", tasks=("d",), paths=("x.py", "y.py")
        )
    ]
    assert metrics.verdict(state) == (
        "2 of 7 merged; 1 merge conflict left for you in c; 1 failed: d; 1 killed: e; "
        "1 blocked: f; 1 not run: g; 2 edit(s) outside a declared scope"
    )
    assert metrics.stats(state)["verdict"] == metrics.verdict(state)
    state.isolation = "none"
    state.tasks = {t: TaskState(t, status="succeeded") for t in endings}
    state.finding_history = []
    assert metrics.verdict(state) == "7 of 7 succeeded"


def test_short_runs_and_waits_are_measured_to_the_millisecond() -> None:
    """A run of 0.4 s, 1/3 s spent waiting for the operator before it started: no figure is
    rounded up to a second or cut to a whole number."""
    state = fold(
        [
            run_started(),
            BatchProposed(batch=1, tasks=("a",), needs_approval=True, ts=T0),
            BatchApproved(batch=1, tasks=("a",), by="operator", ts=T0 + 1 / 3),
            *attempt("a", 1 / 3, 0.4),
        ]
    )
    m = metrics.compute(state, T0 + 0.4)
    assert (m.wall_s, m.operator_wait_s, m.sequential_s) == (0.4, 0.333, 0.067)
    assert m.time_saved_s == 0.0
    # Later it waits again, for 2.5 s so far: both waits count, not only the current one.
    m = metrics.compute(state, T0 + 2.9)
    assert (m.wall_s, m.operator_wait_s, m.time_saved_s) == (2.9, 2.833, 0.0)


def test_stats_reports_the_run_itself_and_every_distinct_finding() -> None:
    state = fold([run_started(), *batch(1, 0, "a", "b"), *attempt("a", 0, 1), *attempt("b", 0, 1)])
    first = ConflictDetected(
        key="overlap:a,b:x", kind="overlap", severity="warning", tasks=("a", "b"), paths=("x",)
    )
    second = ConflictDetected(
        key="shared-file:a:package.json",
        kind="shared-file",
        severity="warning",
        tasks=("a",),
        paths=("package.json",),
    )
    for ev in (first, first, second):
        apply(state, ev)
    report = metrics.stats(state)
    conflicts = report["conflicts"]
    assert isinstance(conflicts, list)
    assert [c["kind"] for c in conflicts] == ["overlap", "shared-file"]
    assert {k: report[k] for k in ("repo", "isolation", "integration_branch", "summary")} == {
        "repo": "/repo",
        "isolation": "worktree",
        "integration_branch": "delegate/20261202-120000/integration",
        "summary": "",
    }
    finish(state, 2.0, status="partial")
    assert metrics.stats(state)["summary"] == "succeeded: a, b; not run: c"
    foreign = RunState(run_id="x")  # a log whose plan could not be read
    assert metrics.stats(foreign)["plan"] == ""


def test_a_stopped_run_resumed_later_counts_the_gap_as_downtime() -> None:
    """Stopped on Friday, resumed on Monday: the weekend is not the agents' time."""
    from delegate_tui.core.events import RunResumed

    state = fold([run_started(), *batch(1, 0, "a", "b"), *attempt("a", 0.0, 4.0)])
    for ev in attempt("b", 0.0, 4.0):
        apply(state, ev)
    finish(state, 4.0, status="stopped")
    apply(state, RunResumed(host_pid=2, ts=T0 + 4.0 + 259_200))
    apply(state, BatchProposed(batch=2, tasks=("c",), needs_approval=False, ts=T0 + 259_204))
    apply(state, BatchApproved(batch=2, tasks=("c",), by="policy", ts=T0 + 259_204))
    for ev in attempt("c", 259_204.0, 259_206.0):
        apply(state, ev)
    finish(state, 259_206.0)
    m = state.metrics
    assert m is not None
    assert m.downtime_s == 259_200.0
    assert m.time_saved_s == 4.0  # 10 s of agents' work in 6 s of working wall time


def test_downtime_of_two_crashes_adds_up() -> None:
    """The run dies twice (30 s and 50 s before each resume): 80 s of downtime, not the last 50."""
    from delegate_tui.core.events import RunResumed

    state = fold(
        [
            run_started(),
            *batch(1, 0, "a"),
            *attempt("a", 0.0, 2.0),
            RunResumed(host_pid=2, ts=T0 + 32.0),
            *batch(2, 32.0, "b"),
            *attempt("b", 32.0, 34.0),
            RunResumed(host_pid=3, ts=T0 + 84.0),
        ]
    )
    finish(state, 84.0)
    m = state.metrics
    assert m is not None
    assert (m.wall_s, m.downtime_s, m.operator_wait_s) == (84.0, 80.0, 0.0)
    assert (m.sequential_s, m.time_saved_s) == (4.0, 0.0)


def test_the_verdict_counts_several_of_a_kind_in_the_plural() -> None:
    from delegate_tui.core.state import TaskState

    state = RunState(isolation="worktree")
    endings: dict[str, TaskStatus] = {
        "a": "merge-conflict",
        "b": "merge-conflict",
        "c": "pending",
        "d": "proposed",
    }
    state.tasks = {t: TaskState(t, status=s) for t, s in endings.items()}
    assert metrics.verdict(state) == (
        "0 of 4 merged; 2 merge conflicts left for you in a, b; 2 not run: c, d"
    )


def test_an_event_stamped_before_the_last_one_takes_no_wait_away() -> None:
    """Clocks step back (NTP, a suspended laptop): waits only ever grow."""
    from delegate_tui.core.events import Notice

    state = fold(
        [
            run_started(),
            *batch(1, 0, "a"),
            *attempt("a", 0.0, 2.0),
            BatchProposed(batch=2, tasks=("b",), needs_approval=True, ts=T0 + 10.0),
            Notice(level="info", message="stamped a second early", ts=T0 + 9.0),
        ]
    )
    m = metrics.compute(state, T0 + 10.0)
    assert (m.operator_wait_s, m.wall_s) == (8.0, 10.0)


def test_each_tasks_ending_says_whose_failure_and_what_the_guard_blocked() -> None:
    from delegate_tui.core.state import AttemptState, TaskState

    setup = TaskState("s", status="failed", attempts=[AttemptState(1, setup_ok=False)])
    setup.attempts[0].reason = "setup failed: `npm ci` exited with status 1"
    agent = TaskState("a", status="failed", attempts=[AttemptState(1), AttemptState(2)])
    agent.attempts[-1].reason = "exited with status 3"
    guarded = TaskState("g", status="succeeded", attempts=[AttemptState(1, merged_commit="c")])
    guarded.attempts[0].guard_denials += ["Write api/schema.py", "Edit api/x.py"]
    blocked = TaskState("b", status="blocked", blocked_by="a")
    assert metrics.ending(setup) == "setup failed: `npm ci` exited with status 1"
    assert metrics.ending(agent) == "agent failed: exited with status 3 (after 2 attempts)"
    assert metrics.ending(guarded) == (
        "completed and merged; 2 write(s) outside its scope blocked by the guard"
    )
    assert metrics.ending(blocked) == "blocked: needs a"
    state = RunState(isolation="worktree")
    state.tasks = {t.id: t for t in (setup, agent, guarded, blocked)}
    assert metrics.verdict(state) == (
        "1 of 4 merged; 1 failed its setup: s; 1 failed: a; 1 blocked: b; "
        "2 write(s) outside scope blocked by the guard"
    )
    assert [(t, k) for t, k, _ in metrics.health(state)] == [
        ("s", "setup-failed"),
        ("a", "agent-failed"),
        ("g", "merged"),
        ("b", "blocked"),
    ]


async def test_the_finished_runs_wall_time_ends_at_its_own_event() -> None:
    """``RunFinished`` carries metrics reckoned to the instant it is stamped with, even
    when output still gathered is emitted first and a view takes its time with it (a
    replay of the log reckons the wall time from the events' stamps: they must agree)."""
    import time

    from delegate_tui.core.emitter import Emitter

    state = RunState()
    emitter = Emitter(state)
    heard: list[str] = []

    def slow_view(ev: Event) -> None:
        heard.append(type(ev).__name__)
        if heard[-1] == "TaskOutput":
            time.sleep(0.05)

    emitter.subscribe(slow_view)
    started = emitter.emit(run_started())
    emitter.output("a", 1, "stdout", b"the last words\n")
    finished = emitter.emit(
        lambda now: RunFinished(status="succeeded", metrics=metrics.compute(state, now))
    )
    assert heard == ["RunStarted", "TaskOutput", "RunFinished"]
    assert isinstance(finished, RunFinished)
    assert finished.ts - started.ts >= 0.05
    assert finished.metrics.wall_s == round(finished.ts - started.ts, 3)


def test_a_cost_with_unpriced_spend_reads_as_partial() -> None:
    from delegate_tui.core.metrics import cost_text

    assert cost_text(0.42, "cli") == "$0.42"
    assert cost_text(0.42, "estimated") == "~$0.42"
    assert cost_text(0.42, "cli", partial=True) == "$0.42+"
    assert cost_text(None, "cli", partial=True) == ""
