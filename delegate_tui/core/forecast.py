"""The time estimate of ``delegate-tui plan``: the run a plan would have if every task succeeded.

Owns the forecast as a pure function of a plan, an isolation mode and
``max_parallel``. It does not model a scheduler of its own: it plays the run
as events (``RunStarted``, ``BatchProposed``/``BatchApproved``, ``TaskStarted``,
``TaskFinished``, ``RunFinished``) through the same :func:`state.apply` a live
run folds, picks every batch with the same :func:`batching.next_batch`, and
reads the wall and sequential times with :func:`metrics.compute`. So when the
batcher's rules change, the forecast changes with them.

Assumptions, which are what "if every task succeeds" means: each task takes
its ``estimate`` (1 unit each when the plan gives none; 0 for a task without
one when others have one), every batch is approved at once (``approve: true``
tasks still go alone), and nothing fails, retries or waits for a merge.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass

from delegate_tui.core import batching, graph, metrics
from delegate_tui.core.events import (
    BatchApproved,
    BatchProposed,
    HeldTask,
    RunFinished,
    RunStarted,
    TaskFinished,
    TaskStarted,
)
from delegate_tui.core.plan import Plan
from delegate_tui.core.state import RunState, apply

#: The simulated clock starts here, not at 0: the fold reads a time of 0 as "not yet".
_ORIGIN = 1.0


@dataclass(frozen=True, slots=True)
class ForecastBatch:
    """One batch of the forecast run."""

    start: float
    """When it starts: seconds from the run's start, or steps when the plan has no estimates."""
    tasks: tuple[str, ...]
    held: tuple[HeldTask, ...] = ()
    """Ready tasks the batcher kept out of this batch, with its reason for each (first batch only)."""
    notes: tuple[HeldTask, ...] = ()


@dataclass(frozen=True, slots=True)
class Forecast:
    """What ``delegate-tui plan`` prints about time: batches, parallel and sequential."""

    isolation: str
    max_parallel: int
    estimated: bool
    """True when some task has an ``estimate`` (times are seconds); else every task is one step."""
    batches: tuple[ForecastBatch, ...]
    parallel: float
    """Wall time of the whole run, batches overlapping as the batcher allows."""
    sequential: float
    """The sum of every task's time: the run done one task at a time."""
    critical_path: tuple[str, ...]
    """The heaviest dependency chain; no schedule can beat its length."""
    critical: float
    unestimated: tuple[str, ...]
    """Tasks without an estimate in a plan that has some (counted as 0)."""

    @property
    def first(self) -> ForecastBatch | None:
        """The batch a run of the plan would propose first."""
        return self.batches[0] if self.batches else None


def weights(plan: Plan) -> dict[str, float]:
    """Each task's expected time: its estimate, else 0 (or 1 each when no task has one)."""
    estimated = any(t.estimate for t in plan.tasks)
    return {t.id: t.estimate or (0.0 if estimated else 1.0) for t in plan.tasks}


def forecast(plan: Plan, *, isolation: str, max_parallel: int) -> Forecast:
    """Play ``plan`` as a run in which every task succeeds in its estimated time."""
    weight = weights(plan)
    agents = {t.id: plan.agent_of(t) for t in plan.tasks}
    state = apply(
        RunState(),
        RunStarted(
            run_id="forecast",
            plan=plan.model_dump(mode="json", by_alias=True),
            plan_path=plan.source,
            repo="",
            isolation=isolation,
            auto_approve=True,
            max_parallel=max_parallel,
            ts=_ORIGIN,
        ),
    )
    batches: list[ForecastBatch] = []
    running: list[tuple[float, int, str]] = []  # (end, start order, task): a heap
    order = itertools.count()
    clock = 0.0
    while True:
        # Keep proposing while slots are free: a task held back only because an
        # ``approve: true`` task goes alone starts at once, as in a live run.
        while len(running) < max_parallel:
            # Only the first batch's held reasons are shown: later ones are not worked out.
            proposal = batching.next_batch(plan, state, auto_approve=True, explain=not batches)
            if proposal is None:
                break
            ts = _ORIGIN + clock
            batch = state.batches + 1
            proposed = BatchProposed(
                batch=batch,
                tasks=proposal.tasks,
                held=proposal.held,
                notes=proposal.notes,
                needs_approval=proposal.needs_approval,
                ts=ts,
            )
            apply(state, proposed)
            apply(state, BatchApproved(batch=batch, tasks=proposal.tasks, by="policy", ts=ts))
            for task_id in proposal.tasks:
                apply(state, _started(task_id, agents[task_id], ts))
                heapq.heappush(running, (clock + weight[task_id], next(order), task_id))
            batches.append(ForecastBatch(clock, proposal.tasks, proposal.held, proposal.notes))
        if not running:
            break
        clock = running[0][0]
        while running and running[0][0] == clock:
            task_id = heapq.heappop(running)[2]
            done = TaskFinished(task=task_id, attempt=1, status="succeeded", ts=_ORIGIN + clock)
            apply(state, done)
    end = _ORIGIN + clock
    outcome = batching.run_outcome(plan, state) or "partial"
    apply(state, RunFinished(status=outcome, metrics=metrics.compute(state, end), ts=end))
    assert state.metrics is not None
    path = graph.critical_path(plan.deps, weight)
    estimated = any(t.estimate for t in plan.tasks)
    return Forecast(
        isolation=isolation,
        max_parallel=max_parallel,
        estimated=estimated,
        batches=tuple(batches),
        parallel=state.metrics.wall_s,
        sequential=state.metrics.sequential_s,
        critical_path=tuple(path),
        critical=sum(weight[p] for p in path),
        unestimated=tuple(t.id for t in plan.tasks if not t.estimate) if estimated else (),
    )


def _started(task_id: str, agent: str, ts: float) -> TaskStarted:
    """A forecast task's start: no process, so no argv, pid or prompt."""
    return TaskStarted(
        task=task_id, attempt=1, agent=agent, argv=(), cwd="", pid=0, pgid=0, prompt="", ts=ts
    )
