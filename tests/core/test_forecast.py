"""The forecast of ``delegate-tui plan``: batches and times from plans with known answers."""

from __future__ import annotations

import textwrap

from delegate_tui.core import batching
from delegate_tui.core.forecast import Forecast, forecast
from delegate_tui.core.plan import Plan, parse_plan
from delegate_tui.core.state import RunState, TaskState


def plan_of(tasks: str, **top: object) -> Plan:
    head = "name: p\n" + "".join(f"{k}: {v}\n" for k, v in top.items())
    return parse_plan(head + "tasks:\n" + textwrap.indent(textwrap.dedent(tasks), "  "))


def run(plan: Plan, max_parallel: int | None = None, isolation: str = "worktree") -> Forecast:
    return forecast(plan, isolation=isolation, max_parallel=max_parallel or plan.max_parallel)


def starts(result: Forecast) -> list[tuple[float, tuple[str, ...]]]:
    return [(b.start, b.tasks) for b in result.batches]


TWO_INDEPENDENT = """\
- {id: a, prompt: x, edits: [a/**], estimate: 4}
- {id: b, prompt: x, edits: [b/**], estimate: 4}
"""


def test_two_independent_tasks_overlap_when_two_may_run_at_once() -> None:
    result = run(plan_of(TWO_INDEPENDENT), max_parallel=2)
    assert starts(result) == [(0.0, ("a", "b"))]
    assert (result.parallel, result.sequential) == (4.0, 8.0)


def test_one_at_a_time_takes_the_sum() -> None:
    result = run(plan_of(TWO_INDEPENDENT), max_parallel=1)
    assert starts(result) == [(0.0, ("a",)), (4.0, ("b",))]
    assert (result.parallel, result.sequential) == (8.0, 8.0)
    assert result.first is not None
    assert [(h.task, h.reason) for h in result.first.held] == [("b", "max_parallel (1) reached")]


def test_a_chain_runs_one_after_another_and_is_the_critical_path() -> None:
    plan = plan_of(
        """\
        - {id: a, prompt: x, edits: [a/**], estimate: 1}
        - {id: b, prompt: x, edits: [b/**], estimate: 2, depends_on: [a]}
        - {id: c, prompt: x, edits: [c/**], estimate: 3, depends_on: [b]}
        - {id: side, prompt: x, edits: [s/**], estimate: 2}
        """
    )
    result = run(plan)
    assert starts(result) == [(0.0, ("a", "side")), (1.0, ("b",)), (3.0, ("c",))]
    assert (result.parallel, result.sequential) == (6.0, 8.0)
    assert result.critical_path == ("a", "b", "c") and result.critical == 6.0


def test_overlapping_edits_serialize_with_the_reason_shown() -> None:
    plan = plan_of(
        """\
        - {id: wide, prompt: x, edits: ["src/**"], estimate: 5}
        - {id: narrow, prompt: x, edits: [src/auth/x.ts], estimate: 5}
        """
    )
    result = run(plan)
    assert starts(result) == [(0.0, ("wide",)), (5.0, ("narrow",))]
    assert result.parallel == 10.0
    assert result.first is not None
    assert result.first.held[0].reason == "edits overlap with wide on src/auth/x.ts / src/**"


def test_isolation_is_the_one_asked_for() -> None:
    undeclared = plan_of(
        """\
        - {id: a, prompt: x, estimate: 3}
        - {id: b, prompt: x, estimate: 3}
        """
    )
    assert run(undeclared, isolation="worktree").parallel == 3.0
    assert run(undeclared, isolation="shared").parallel == 6.0


def test_an_approve_true_task_goes_alone_and_the_rest_start_beside_it() -> None:
    # Approved at once in a forecast, the approve: true task is proposed on its own; the
    # tasks it kept out of its batch are proposed right after, as a live run would.
    plan = plan_of(
        """\
        - {id: gate, prompt: x, edits: [g/**], estimate: 2, approve: true}
        - {id: b, prompt: x, edits: [b/**], estimate: 2}
        - {id: c, prompt: x, edits: [c/**], estimate: 2}
        """
    )
    result = run(plan)
    assert starts(result) == [(0.0, ("gate",)), (0.0, ("b", "c"))]
    assert result.parallel == 2.0
    reordered = plan_of(
        """\
        - {id: b, prompt: x, edits: [b/**], estimate: 2}
        - {id: gate, prompt: x, edits: [g/**], estimate: 2, approve: true}
        """
    )
    assert starts(run(reordered)) == [(0.0, ("b",)), (0.0, ("gate",))]


def test_approve_true_tasks_never_share_a_batch() -> None:
    plan = plan_of(
        """\
        - {id: g1, prompt: x, edits: [a/**], estimate: 2, approve: true}
        - {id: g2, prompt: x, edits: [b/**], estimate: 2, approve: true}
        """
    )
    assert [b.tasks for b in run(plan).batches] == [("g1",), ("g2",)]


def test_without_estimates_every_task_is_one_step() -> None:
    plan = plan_of(
        """\
        - {id: a, prompt: x, edits: [a/**]}
        - {id: b, prompt: x, edits: [b/**], depends_on: [a]}
        - {id: c, prompt: x, edits: [c/**], depends_on: [a]}
        """
    )
    result = run(plan)
    assert not result.estimated and result.unestimated == ()
    assert starts(result) == [(0.0, ("a",)), (1.0, ("b", "c"))]
    assert (result.parallel, result.sequential) == (2.0, 3.0)


def test_a_task_without_an_estimate_counts_as_zero_when_others_have_one() -> None:
    plan = plan_of(
        """\
        - {id: a, prompt: x, edits: [a/**], estimate: 60}
        - {id: quick, prompt: x, edits: [q/**], depends_on: [a]}
        - {id: c, prompt: x, edits: [c/**], estimate: 30, depends_on: [quick]}
        """
    )
    result = run(plan)
    assert result.estimated and result.unestimated == ("quick",)
    assert starts(result) == [(0.0, ("a",)), (60.0, ("quick",)), (60.0, ("c",))]
    assert (result.parallel, result.sequential) == (90.0, 90.0)


def test_the_first_batch_is_the_one_a_run_would_propose() -> None:
    plan = plan_of(
        """\
        - {id: a, prompt: x, edits: [a/**, package.json], estimate: 1}
        - {id: b, prompt: x, edits: [b/**, package.json], estimate: 1}
        - {id: c, prompt: x, estimate: 1}
        """
    )
    result = run(plan)
    fresh = RunState(plan=plan, isolation="worktree", max_parallel=plan.max_parallel)
    fresh.tasks = {t.id: TaskState(t.id) for t in plan.tasks}
    proposal = batching.next_batch(plan, fresh, auto_approve=True)
    assert proposal is not None and result.first is not None
    assert (result.first.tasks, result.first.held, result.first.notes) == (
        proposal.tasks,
        proposal.held,
        proposal.notes,
    )
    assert result.first.held and result.first.notes  # the plan exercises both
