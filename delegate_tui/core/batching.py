"""Which tasks may run together next, and why the others may not.

Owns the batcher's rules from ``shared/design/PATTERNS.md`` as pure functions
over a plan and a :class:`RunState`: a task is *ready* when every dependency
succeeded; ready tasks join the next batch, longest remaining chain first,
unless they conflict with a running or already chosen task (overlapping
``edits``, both touching a ``shared_files`` entry, a shared ``resource``) or
``max_parallel`` is reached. Every ready task left out carries a reason a
person can act on. Any doubt means sequential.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from delegate_tui.core import graph, scopes
from delegate_tui.core.events import ACTIVE_STATUSES, FAILED_STATUSES, HeldTask
from delegate_tui.core.state import AUTH_RETRY_LIMIT, AttemptState, RunState

if TYPE_CHECKING:
    from delegate_tui.core.plan import Plan, Task

__all__ = ["FAILED_STATUSES", "Proposal", "next_batch"]

#: Tasks in these statuses occupy their declared scope: a new task must not overlap them,
#: by its edits or its reads. (Tasks of the batch waiting for approval do not: the batch
#: is proposed anew from them. A task in merge-conflict or failed does not either, for
#: editors and readers alike: it runs no more, its retry starts from the integration tip,
#: and a merge of it under a reader is a stale input; waiting for it would leave a run
#: without an operator unable to end.)
_OCCUPYING = ACTIVE_STATUSES | {"awaiting-merge"}
#: Tasks that may join the next batch once their dependencies succeeded.
_CANDIDATES = ("pending", "proposed")


@dataclass(frozen=True, slots=True)
class Proposal:
    """A batch the engine may propose."""

    tasks: tuple[str, ...]
    held: tuple[HeldTask, ...]
    notes: tuple[HeldTask, ...]
    needs_approval: bool


def ready(plan: Plan, state: RunState) -> list[str]:
    """Pending (or proposed) tasks whose dependencies have all succeeded, in plan order."""
    tasks = state.tasks
    return [
        t.id
        for t in plan.tasks
        if tasks[t.id].status in _CANDIDATES
        and all(tasks[d].status == "succeeded" for d in t.depends_on)
    ]


def newly_blocked(plan: Plan, state: RunState) -> list[tuple[str, str, str]]:
    """``(task, dependency, reason)`` for pending tasks a dependency can no longer satisfy."""
    out: list[tuple[str, str, str]] = []
    for task in plan.tasks:
        if state.tasks[task.id].status not in ("pending", "proposed"):
            continue
        for dep in task.depends_on:
            dep_status = state.tasks[dep].status
            if dep_status in FAILED_STATUSES:
                out.append((task.id, dep, f"dependency {dep} {dep_status}"))
                break
    return out


def waiting_reason(plan: Plan, state: RunState, task_id: str) -> str:
    """Why a pending task is not ready yet (empty when it is)."""
    waiting = [d for d in plan.task(task_id).depends_on if state.tasks[d].status != "succeeded"]
    if not waiting:
        return ""
    parts = [f"{d} ({state.tasks[d].status})" for d in waiting]
    return "waits for " + ", ".join(parts)


_PRIORITIES: tuple[Plan, dict[str, float]] | None = None


def priorities(plan: Plan) -> dict[str, float]:
    """Weight of the longest remaining chain from each task (estimates, else 1 each).

    Asked on every scheduling pass; a plan does not change during a run, so the
    last plan's answer is kept.
    """
    global _PRIORITIES
    if _PRIORITIES is not None and _PRIORITIES[0] is plan:
        return _PRIORITIES[1]
    weight = {t.id: (t.estimate or 1.0) for t in plan.tasks}
    result = graph.remaining_path(plan.deps, weight)
    _PRIORITIES = (plan, result)
    return result


def _scope_undeclared(task: Task) -> bool:
    return task.kind == "code" and not task.edits


def conflict_reason(plan: Plan, task: Task, other: Task, *, isolation: str) -> str:
    """Why ``task`` may not run alongside ``other`` (empty when it may)."""
    if isolation == "shared" and (_scope_undeclared(task) or _scope_undeclared(other)):
        who = task.id if _scope_undeclared(task) else other.id
        return f"{who} has no declared edits and runs alone in shared mode"
    mine = scopes.shared_hits(task.edits, plan.shared_files)
    if mine:
        theirs = scopes.shared_hits(other.edits, plan.shared_files)
        if theirs:
            both = sorted(set(mine) & set(theirs)) or sorted({*mine, *theirs})
            return f"shares config file {', '.join(both)} with {other.id}"
    overlap = scopes.first_overlap(task.edits, other.edits)
    if overlap is not None:
        return f"edits overlap with {other.id} on {overlap.describe()}"
    if not task.reads_stale_ok:
        read = scopes.first_overlap(task.reads, other.edits)
        if read is not None:
            return f"reads {read.describe()}, which {other.id} edits: waits for it to merge"
    if not other.reads_stale_ok:
        read = scopes.first_overlap(task.edits, other.reads)
        if read is not None:
            return f"edits {read.describe()}, which {other.id} reads"
    common = sorted(set(task.resources) & set(other.resources))
    if common:
        return f"shares resource {', '.join(common)} with {other.id}"
    return ""


@dataclass(frozen=True, slots=True)
class _Paths:
    """A task's declared files when they are plain paths (no glob, no resource, no
    shared file): its paths and every folder above them, to rule out overlaps with
    set lookups instead of comparing it with each task in turn."""

    paths: frozenset[tuple[str, ...]]
    prefixes: frozenset[tuple[str, ...]]


_PATHS: tuple[Plan, dict[str, _Paths | None]] | None = None


def _plain_paths(plan: Plan, task: Task) -> _Paths | None:
    """``task``'s :class:`_Paths`, ``None`` when it must be compared rule by rule."""
    global _PATHS
    if _PATHS is None or _PATHS[0] is not plan:
        _PATHS = (plan, {})
    known = _PATHS[1]
    if task.id not in known:
        parts = [scopes.plain_parts(p) for p in (*task.edits, *task.reads)]
        simple = (
            bool(task.edits)
            and not task.resources
            and all(p is not None for p in parts)
            and not scopes.shared_hits(task.edits, plan.shared_files)
        )
        paths = frozenset(p for p in parts if p is not None)
        prefixes = frozenset(p[:k] for p in paths for k in range(1, len(p) + 1))
        known[task.id] = _Paths(paths, prefixes) if simple else None
    return known[task.id]


class _Index:
    """The plain paths of a group of tasks (running, or chosen so far)."""

    def __init__(self) -> None:
        self.paths: set[tuple[str, ...]] = set()
        self.prefixes: set[tuple[str, ...]] = set()
        self.exact = True  # some task of the group has globs, resources or shared files

    def add(self, found: _Paths | None) -> None:
        if found is None:
            self.exact = False
        else:
            self.paths |= found.paths
            self.prefixes |= found.prefixes

    def clear_of(self, found: _Paths | None) -> bool:
        """True when no task of the group can conflict with a task of ``found`` paths."""
        return (
            found is not None
            and self.exact
            and found.paths.isdisjoint(self.prefixes)
            and self.paths.isdisjoint(found.prefixes)
        )


def next_batch(
    plan: Plan, state: RunState, *, auto_approve: bool, explain: bool = True
) -> Proposal | None:
    """The next batch to propose, or ``None`` when nothing can start now.

    ``auto_approve`` is the policy (``approve: auto`` or ``--yes``); tasks with
    ``approve: true`` are always proposed alone and always need the operator.
    Without ``explain``, ready tasks left out once the batch is full get no
    reason (a forecast of a large plan needs the batches, not the reasons).
    """
    running = sum(1 for t in state.tasks.values() if t.status in ACTIVE_STATUSES)
    slots = max(0, state.max_parallel - running)
    if not slots:
        return None
    candidates = ready(plan, state)
    if not candidates:
        return None
    prio = priorities(plan)
    candidates.sort(key=lambda t: -prio[t])  # stable: plan order among equals
    occupying = [plan.task(t.id) for t in state.tasks.values() if t.status in _OCCUPYING]
    isolation = state.isolation or "worktree"

    # Tasks whose files are plain paths are checked against a whole group at once:
    # only a possible overlap is looked at task by task (a thousand ready tasks against
    # sixteen running ones, on every pass). The reasons are the same.
    busy, picked = _Index(), _Index()
    for other in occupying:
        busy.add(_plain_paths(plan, other))
    chosen: list[Task] = []
    held: list[HeldTask] = []
    notes: list[HeldTask] = []
    alone = False
    for task_id in candidates:
        if not explain and (alone or len(chosen) >= slots):
            break
        task = plan.task(task_id)
        if alone:
            held.append(HeldTask(task_id, f"{chosen[0].id} needs its own approval"))
            continue
        mine = _plain_paths(plan, task)
        reason = ""
        for other in () if busy.clear_of(mine) else occupying:
            reason = conflict_reason(plan, task, other, isolation=isolation)
            if reason:
                reason += f" ({state.tasks[other.id].status})"
                break
        if not reason:
            for other in () if picked.clear_of(mine) else chosen:
                reason = conflict_reason(plan, task, other, isolation=isolation)
                if reason:
                    break
        if not reason and len(chosen) >= slots:
            reason = f"max_parallel ({state.max_parallel}) reached"
        if not reason and task.approve and chosen:
            reason = "approve: true, so it is proposed on its own"
        if reason:
            held.append(HeldTask(task_id, reason))
            continue
        chosen.append(task)
        picked.add(_plain_paths(plan, task))
        if _scope_undeclared(task) and isolation == "worktree":
            notes.append(HeldTask(task_id, "scope undeclared: no edits declared"))
        if task.approve:
            alone = True
    if not chosen:
        return None
    needs_approval = (not auto_approve) or any(t.approve for t in chosen)
    return Proposal(tuple(t.id for t in chosen), tuple(held), tuple(notes), needs_approval)


def batch_all_failed(state: RunState, members: Iterable[str]) -> bool:
    """True when a batch of two or more tasks ended with every task failed."""
    members = list(members)
    if len(members) < 2:
        return False
    statuses = [state.tasks[m].status for m in members]
    return all(s in FAILED_STATUSES - {"skipped", "blocked"} for s in statuses)


def ended_on_auth(attempt: AttemptState) -> bool:
    """True when the attempt ended because its vendor refused the agent's credentials:
    its CLI said so (``AgentResult`` reason ``auth``), or the attempt stopped it after
    :data:`AUTH_RETRY_LIMIT` refusals."""
    return attempt.result_reason == "auth" or attempt.auth_failures >= AUTH_RETRY_LIMIT


def auto_retry_allowed(plan: Plan, state: RunState, task_id: str) -> bool:
    """True when a failed attempt should be retried automatically (``retries:``).

    An attempt that ended on refused credentials is not: the same key is refused
    again. The operator retries it by hand once the key is fixed.
    """
    task = state.tasks[task_id]
    attempt = task.attempt
    if attempt is None or attempt.kill_requested or task.status == "killed":
        return False
    if task.status not in ("failed", "timed-out", "merge-conflict"):
        return False
    if task.status == "failed" and ended_on_auth(attempt):
        return False
    return len(task.attempts) < 1 + plan.task(task_id).retries


def run_outcome(plan: Plan, state: RunState) -> str | None:
    """``succeeded``/``partial``/``failed`` once no task can move on its own, else ``None``."""
    statuses = [state.tasks[t.id].status for t in plan.tasks]
    if any(s not in ("succeeded", *FAILED_STATUSES) for s in statuses):
        return None
    if all(s == "succeeded" for s in statuses):
        return "succeeded"
    if any(s == "succeeded" for s in statuses):
        return "partial"
    return "failed"


def declared_overlaps(plan: Plan, isolation: str, limit: int = 400) -> list[tuple[str, str, str]]:
    """Pairs of independent tasks whose declared scopes keep them apart, with the reason.

    Tasks on one dependency chain never run together anyway, so only
    independent pairs are listed; plans over ``limit`` tasks are skipped.
    """
    if len(plan.tasks) > limit:
        return []
    deps = plan.deps
    upstream = {t.id: graph.ancestors(deps, t.id) for t in plan.tasks}
    out = []
    for i, a in enumerate(plan.tasks):
        for b in plan.tasks[i + 1 :]:
            if a.id in upstream[b.id] or b.id in upstream[a.id]:
                continue
            reason = conflict_reason(plan, b, a, isolation=isolation)
            if reason:
                out.append((a.id, b.id, reason))
    return out
