"""What the run does next, decided from its state alone.

Owns the driver's decisions as pure functions that return steps as data:
block the tasks a dependency can no longer satisfy, propose the next batch
(or revise the one waiting for approval when a slot frees or a task becomes
ready, so its held reasons stay true), tell the operator the run waits for
them, pause when the run's budget is spent, finish the run; and after an attempt, retry it automatically or pause
scheduling when a whole batch failed. The engine carries the steps out and
asks again until no step is left. Nothing here does I/O, so every decision
is tested without processes (``tests/core/test_scheduler.py``).

The facts the state cannot know (the engine is stopping, a merge job is
still running, the operator asked to end, someone is there to decide) come
in as a :class:`Situation`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from delegate_tui.core import batching
from delegate_tui.core.batching import Proposal
from delegate_tui.core.events import FAILED_STATUSES, UNDECIDED_STATUSES
from delegate_tui.core.metrics import usd
from delegate_tui.core.plan import Plan
from delegate_tui.core.state import RunState

#: Every "nothing moves without you" notice starts so (views match it by this prefix,
#: older logs included).
WAITING_PREFIX = "the run is waiting for you: "
WAITING_MESSAGE = WAITING_PREFIX + "retry or skip the failed tasks, or end the run"


def waiting_message(state: RunState) -> str:
    """What the run waits for, in the operator's terms: the failed tasks to retry or
    skip; or, when only skips stand in the way (every failure decided), the skipped
    tasks that a retry would set going again."""
    if any(t.status in UNDECIDED_STATUSES for t in state.tasks.values()):
        return WAITING_MESSAGE
    skipped = sorted(t.id for t in state.tasks.values() if t.status == "skipped")
    if not skipped:
        return WAITING_MESSAGE
    named = ", ".join(skipped[:3]) + (f" +{len(skipped) - 3}" if len(skipped) > 3 else "")
    which = "the skipped task" if len(skipped) == 1 else "a skipped task"
    return f"{WAITING_PREFIX}retry {which} ({named}) to go on, or end the run"


@dataclass(frozen=True, slots=True)
class Situation:
    """What the driver knows that the state does not."""

    busy: bool = False  # a job (an attempt or a merge) is still under way
    stopping: bool = False
    stop_reason: str = ""
    end_requested: bool = False
    #: An operator is present: a run with failures waits for a decision
    #: instead of ending by itself.
    hold_at_end: bool = False
    told_waiting: bool = False
    #: The run's budget was reached and the operator told (they may go on regardless).
    budget_told: bool = False


@dataclass(frozen=True, slots=True)
class Block:
    """``task`` can no longer start: ``by`` (a dependency) failed, was killed or skipped."""

    task: str
    by: str
    reason: str


@dataclass(frozen=True, slots=True)
class Propose:
    """Propose ``proposal`` as batch ``batch`` (the waiting batch's number when revising it)."""

    batch: int
    proposal: Proposal


@dataclass(frozen=True, slots=True)
class TellWaiting:
    """Nothing can move without the operator: say so, once (:func:`waiting_message`)."""

    message: str = WAITING_MESSAGE


@dataclass(frozen=True, slots=True)
class Finish:
    """End the run with ``status``."""

    status: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class AutoRetry:
    """Start ``task`` again: its ``retries:`` allow another attempt."""

    task: str


@dataclass(frozen=True, slots=True)
class PauseAfterBatch:
    """Every task of ``batch`` failed: suspect the approach, pause scheduling."""

    batch: int
    members: tuple[str, ...]

    @property
    def message(self) -> str:
        """What the operator is told."""
        return (
            f"every task of batch {self.batch} failed ({', '.join(self.members)}): "
            "suspect the approach, not the tasks; scheduling paused"
        )


@dataclass(frozen=True, slots=True)
class PauseForBudget:
    """The run spent its ``budget_usd``: start nothing new; running tasks go on."""

    spent: float
    budget: float

    @property
    def message(self) -> str:
        """What the operator is told."""
        return (
            f"the run's budget is spent ({usd(self.spent)} of {usd(self.budget)}): no new task "
            "starts; running ones finish. Resume scheduling (p) to go on regardless"
        )


Step = Block | Propose | TellWaiting | Finish | PauseForBudget


def next_steps(plan: Plan, state: RunState, situation: Situation) -> list[Step]:
    """The steps to take now, in order; empty when the run must wait for something."""
    blocks: list[Step] = [Block(*b) for b in batching.newly_blocked(plan, state)]
    if blocks:
        return blocks  # carried out first: the rest depends on who is blocked
    idle = not state.active and not situation.busy
    if situation.stopping:
        return [Finish("stopped", situation.stop_reason)] if idle else []
    outcome = batching.run_outcome(plan, state)
    waits = situation.hold_at_end and outcome != "succeeded" and not situation.end_requested
    if idle and (situation.end_requested or (outcome is not None and not waits)):
        return [Finish(outcome or "stopped", "ended by the operator" if outcome is None else "")]
    steps: list[Step] = []
    if idle and outcome is not None and not situation.told_waiting:
        steps.append(TellWaiting(waiting_message(state)))
    spent, budget = state.cost_usd, plan.budget_usd
    if budget is not None and spent is not None and spent >= budget and not situation.budget_told:
        steps.append(PauseForBudget(spent, budget))
        return steps
    if state.paused:
        if idle and state.auto_approve and state.proposal is None:
            steps.append(Finish("failed" if outcome is None else outcome, "scheduling stopped"))
        return steps
    proposal = batching.next_batch(plan, state, auto_approve=state.auto_approve)
    waiting = state.proposal
    if proposal is None:
        return steps
    if waiting is None:
        steps.append(Propose(state.batches + 1, proposal))
    elif _gist(waiting.tasks, waiting.held, waiting.notes, waiting.needs_approval) != _gist(
        proposal.tasks, proposal.held, proposal.notes, proposal.needs_approval
    ):
        steps.append(Propose(waiting.batch, proposal))
    return steps


def _gist(*parts: object) -> str:
    """A proposal without the blockers' passing statuses ("(running)" then "(checking)"):
    a blocker moving on is no reason to propose the same batch again."""
    return re.sub(r" \((starting|running|checking|merging)\)", "", repr(parts))


def after_attempt(plan: Plan, state: RunState, task_id: str) -> AutoRetry | PauseAfterBatch | None:
    """What follows the end of ``task_id``'s attempt, if anything."""
    if batching.auto_retry_allowed(plan, state, task_id):
        return AutoRetry(task_id)
    task = state.tasks[task_id]
    if task.status in FAILED_STATUSES and task.batch:
        members = tuple(t.id for t in state.tasks.values() if t.batch == task.batch)
        if batching.batch_all_failed(state, members):
            return PauseAfterBatch(task.batch, members)
    return None
