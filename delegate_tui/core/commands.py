"""Which operator commands the run accepts now, and why it refuses the others.

Owns one pure function, :func:`refusal`, over a :class:`RunState`: the
message an operator sees when a command cannot be carried out (``None`` when
it can). The engine asks it before acting on a command, and the UI asks it
to decide which keys are live, so the two cannot disagree. A retry also
restarts a task whose input went stale while it runs or waits to merge
(:func:`restarts_stale`). Checks that need the live process (whether an
agent's stdin is still open) stay with the engine; everything that the
state knows is decided here.
"""

from __future__ import annotations

from typing import Literal, get_args

from delegate_tui.core import batching
from delegate_tui.core.events import ACTIVE_STATUSES, RETRYABLE_STATUSES
from delegate_tui.core.state import RunState

Command = Literal[
    "approve",
    "hold",
    "pause",
    "resume",
    "kill",
    "retry",
    "skip",
    "input",
    "merge",
    "finish",
    "end",
]
#: Every command, in the order the help lists them.
COMMANDS: tuple[Command, ...] = get_args(Command)
#: Commands that act on one task and need its id.
TASK_COMMANDS: frozenset[Command] = frozenset({"kill", "retry", "skip", "input", "merge"})

ENDED = "the run has ended"
#: A task in these statuses whose input went stale is restarted by ``retry``: a
#: running one is ended first, one waiting to merge drops its unmerged commit.
#: (One being merged is re-checked by the merge itself.)
STALE_RESTARTABLE = frozenset({"starting", "running", "checking", "awaiting-merge"})


def restarts_stale(state: RunState, task_id: str) -> bool:
    """``retry`` on ``task_id`` restarts it on the new integration tip: it runs or waits
    to merge, and a merge changed what it read (an open ``stale-input`` finding)."""
    task = state.tasks.get(task_id)
    return (
        task is not None
        and task.status in STALE_RESTARTABLE
        and any(
            f.kind == "stale-input" and f.tasks[:1] == (task_id,) for f in state.findings.values()
        )
    )


def refusal(state: RunState, command: Command, task_id: str | None = None) -> str | None:
    """Why ``command`` (on ``task_id``, for task commands) cannot be carried out now.

    ``None`` means the command is accepted. The text is for the operator: it
    names the task and what stands in the way.
    """
    if state.finished:
        return ENDED
    if command in TASK_COMMANDS:
        return _task_refusal(state, command, task_id)
    if command in ("approve", "hold"):
        return None if state.proposal is not None else "no batch is waiting for approval"
    if command == "pause":
        return "scheduling is already paused" if state.paused else None
    if command == "resume":
        return None if state.paused else "scheduling is not paused"
    if command == "finish":
        if state.isolation != "worktree":
            return "only worktree runs have an integration branch to merge"
        return "tasks are still running" if state.active else None
    if command == "end":
        return "tasks are still running; kill them or wait" if state.active else None
    raise ValueError(f"unknown command {command!r}")


def _task_refusal(state: RunState, command: Command, task_id: str | None) -> str | None:
    task = state.tasks.get(task_id or "")
    if task is None:
        return f"no task '{task_id}'" if task_id else "no task selected"
    status = task.status
    if command == "kill":
        return None if status in ACTIVE_STATUSES else f"{task.id} is not running ({status})"
    if command == "input":
        return None if status == "running" else f"{task.id} has no running agent"
    if command == "merge":
        return None if status == "awaiting-merge" else f"{task.id} is not waiting for a merge"
    if command == "skip":
        if status in ACTIVE_STATUSES:
            return f"{task.id} is running; kill it first"
        if status in ("succeeded", "skipped"):
            done = "has already succeeded" if status == "succeeded" else "is already skipped"
            return f"{task.id} {done}"
        return None
    # retry
    if restarts_stale(state, task.id):
        return None  # ended, or its commit dropped, and started again on the new tip
    if status not in RETRYABLE_STATUSES:
        return f"{task.id} cannot be retried ({status})"
    if state.plan is not None:
        waiting = batching.waiting_reason(state.plan, state, task.id)
        if waiting:
            return f"{task.id} {waiting}"
    return None
