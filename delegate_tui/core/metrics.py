"""Run metrics: time saved against running tasks one by one, conflict and rework rates.

Owns the three numbers PATTERNS.md asks every run to track, as pure
functions over :class:`RunState`, so a live run, ``stats`` on an old log and
replay all report the same figures. Also the agents' tokens and cost as text
(:func:`cost_text`, :func:`tokens_text`) and in ``stats --json``, where a total
that leaves out spend with no known price says so (``cost_partial``).

Time saved compares agents' work with agents' work: the sequential time (every
attempt's duration, added up) against the wall time less the time in which no
agent ran because the run waited for the operator, and less the time no
delegate-tui process ran the run at all (a crash before ``resume``). Both are
reported beside it, so nothing is hidden.
"""

from __future__ import annotations

from collections.abc import Iterable

from delegate_tui.core.batching import ended_on_auth
from delegate_tui.core.events import Metrics, TokenUsage
from delegate_tui.core.state import RunState, TaskState


def compute(state: RunState, now: float | None = None) -> Metrics:
    """The metrics of a run as far as ``state`` (and ``now``, for a live run) goes."""
    end = state.finished_ts or (now if now is not None else state.last_ts)
    wall = max(0.0, end - state.started_ts) if state.started_ts else 0.0
    waits = state.idle_s
    if not state.finished and state.last_ts and end > state.last_ts and not state.active:
        waits += end - state.last_ts  # waiting right now
    ran = [t for t in state.tasks.values() if any(a.started_ts for a in t.attempts)]
    sequential = 0.0
    for task in state.tasks.values():
        for attempt in task.attempts:
            if attempt.started_ts:
                stop = attempt.ended_ts or end
                sequential += max(0.0, stop - attempt.started_ts)
    found = {
        t
        for f in state.finding_history
        if f.kind in ("predicted-conflict", "overlap")
        for t in f.tasks
    }
    collided = [t for t in ran if t.id in found or any(a.conflict_paths for a in t.attempts)]
    extra_attempts = sum(max(0, len(t.attempts) - 1) for t in ran)
    statuses = [t.status for t in state.tasks.values()]
    return Metrics(
        wall_s=round(wall, 3),
        sequential_s=round(sequential, 3),
        time_saved_s=round(sequential - max(0.0, wall - waits - state.downtime_s), 3),
        conflict_rate=round(len(collided) / len(ran), 4) if ran else 0.0,
        rework_rate=round(extra_attempts / len(ran), 4) if ran else 0.0,
        tasks_total=len(statuses),
        tasks_succeeded=statuses.count("succeeded"),
        tasks_failed=sum(
            s in ("failed", "merge-conflict", "killed", "timed-out", "interrupted", "over-budget")
            for s in statuses
        ),
        operator_wait_s=round(waits, 3),
        downtime_s=round(state.downtime_s, 3),
    )


def summarize(state: RunState) -> str:
    """One paragraph: what succeeded, what failed and why, what was blocked or skipped."""
    groups: dict[str, list[str]] = {}
    for task in state.tasks.values():
        detail = task.id
        attempt = task.attempt
        if task.status in (
            "failed",
            "merge-conflict",
            "killed",
            "timed-out",
            "interrupted",
            "over-budget",
        ):
            reason = (attempt.reason if attempt else "") or task.status
            detail = f"{task.id} ({reason})"
        elif task.status == "blocked":
            detail = f"{task.id} (needs {task.blocked_by})"
        # Proposed or pending, a task has not run: one "not run" group, in plan order.
        group = "pending" if task.status == "proposed" else task.status
        groups.setdefault(group, []).append(detail)
    order = [
        "succeeded",
        "awaiting-merge",
        "failed",
        "merge-conflict",
        "timed-out",
        "over-budget",
        "killed",
        "interrupted",
        "blocked",
        "skipped",
        "pending",
    ]
    parts = []
    for status in order + sorted(set(groups) - set(order)):
        if status in groups:
            label = "not run" if status == "pending" else status
            parts.append(f"{label}: {', '.join(groups[status])}")
    return "; ".join(parts)


_ENDINGS = (
    ("merge-conflict", "merge conflict left for you in", "merge conflicts left for you in"),
    ("criteria-failed", "failed its criteria:", "failed their criteria:"),
    ("setup-failed", "failed its setup:", "failed their setup:"),
    ("agent-failed", "failed:", "failed:"),
    ("timed-out", "timed out:", "timed out:"),
    ("over-budget", "over budget:", "over budget:"),
    ("killed", "killed:", "killed:"),
    ("interrupted", "interrupted:", "interrupted:"),
    ("awaiting-merge", "waiting for your merge:", "waiting for your merge:"),
    ("blocked", "blocked:", "blocked:"),
    ("skipped", "skipped:", "skipped:"),
)


def verdict(state: RunState) -> str:
    """One line on how the run went: ``3 of 5 merged; 1 merge conflict left for you in shipping``."""
    tasks = list(state.tasks.values())
    done = sum(t.status == "succeeded" for t in tasks)
    word = "merged" if state.isolation == "worktree" else "succeeded"
    parts = [f"{done} of {len(tasks)} {word}"]
    kinds = {t.id: ending_kind(t) for t in tasks}
    for kind, one, many in _ENDINGS:
        ids = [t.id for t in tasks if kinds[t.id] == kind]
        if ids:
            parts.append(f"{len(ids)} {one if len(ids) == 1 else many} {', '.join(ids)}")
    waiting = [t.id for t in tasks if kinds[t.id] == "not-run"]
    if waiting:
        parts.append(f"{len(waiting)} not run: {', '.join(waiting)}")
    outside = {
        (t, p)
        for f in state.finding_history
        if f.kind == "out-of-scope"
        for t in f.tasks
        for p in f.paths
    }
    if outside:
        parts.append(f"{len(outside)} edit(s) outside a declared scope")
    blocked = sum(len(a.guard_denials) for t in tasks for a in t.attempts)
    if blocked:
        parts.append(f"{blocked} write(s) outside scope blocked by the guard")
    return "; ".join(parts)


#: How a task ended, as the health report words it (``ending_kind`` -> words).
ENDING_WORDS = {
    "merged": "completed and merged",
    "completed": "completed",
    "awaiting-merge": "completed, waiting for your merge",
    "criteria-failed": "criteria failed",
    "setup-failed": "setup failed",
    "agent-failed": "agent failed",
    "merge-conflict": "merge conflict",
    "killed": "killed by the operator",
    "timed-out": "timed out",
    "over-budget": "over budget",
    "interrupted": "interrupted",
    "skipped": "skipped",
    "blocked": "blocked",
    "not-run": "not run",
    "running": "still running",
}


def ending_kind(task: TaskState) -> str:
    """How ``task`` ended, one word of :data:`ENDING_WORDS` (a failure says whose it was)."""
    attempt = task.attempt
    status = task.status
    if status == "succeeded":
        return "merged" if attempt is not None and attempt.merged_commit else "completed"
    if status == "failed":
        if attempt is not None and attempt.setup_ok is False:
            return "setup-failed"
        if attempt is not None and attempt.criteria_passed is False:
            return "criteria-failed"
        return "agent-failed"
    if status in ("pending", "proposed"):
        return "not-run"
    if status in ("starting", "running", "checking", "merging"):
        return "running"
    return status


#: Why a task with ``retries:`` left was not retried after refused credentials.
NOT_RETRIED_AUTH = "not retried automatically: the same key would be refused again"


def ending(task: TaskState, retries: int = 0) -> str:
    """One line on how ``task`` ended: ``criteria failed: pytest -q (exit 1); 1 write
    outside its scope blocked by the guard``. ``retries`` is the task's ``retries:``:
    when some were left but not used (refused credentials), it says why."""
    kind = ending_kind(task)
    words = ENDING_WORDS.get(kind, kind)
    attempt = task.attempt
    detail = ""
    if kind == "criteria-failed" and attempt is not None:
        failed = [c for c in attempt.criteria if not c.passed]
        if "on the new integration tip" in attempt.reason:  # a stale input's re-check
            words += " on the new integration tip"
        if failed:
            detail = f"{failed[0].command or failed[0].text} (exit {failed[0].exit_code})"
    elif kind == "merge-conflict" and attempt is not None and attempt.conflict_paths:
        words += " in " + ", ".join(attempt.conflict_paths)
    elif kind == "blocked":
        detail = f"needs {task.blocked_by}" if task.blocked_by else ""
    elif kind == "skipped":
        detail = task.skip_reason
    elif kind in ("agent-failed", "setup-failed", "timed-out", "over-budget") and attempt:
        detail = attempt.reason
        for prefix in ("setup failed: ", "over budget: "):
            detail = detail.removeprefix(prefix)
    if detail.startswith(words):  # "timed out after 1s" says it already
        words, detail = detail, ""
    text = f"{words}: {detail}" if detail else words
    if len(task.attempts) > 1:
        text += f" (after {len(task.attempts)} attempts)"
    if (
        kind == "agent-failed"
        and attempt is not None
        and ended_on_auth(attempt)
        and len(task.attempts) < 1 + retries
    ):
        text += f"; {NOT_RETRIED_AUTH}"
    blocked = sum(len(a.guard_denials) for a in task.attempts)
    if blocked:
        text += f"; {blocked} write(s) outside its scope blocked by the guard"
    return text


def health(state: RunState) -> list[tuple[str, str, str]]:
    """The health report: ``(task, ending kind, ending)`` for every task, in plan order."""
    return [(t.id, ending_kind(t), ending(t, _retries(state, t.id))) for t in state.tasks.values()]


def _retries(state: RunState, task_id: str) -> int:
    """The task's ``retries:`` (0 when the state has no plan)."""
    try:
        return state.plan.task(task_id).retries if state.plan is not None else 0
    except KeyError:
        return 0


def unpriced_models(tasks: Iterable[TaskState]) -> list[str]:
    """Models that used tokens in an attempt whose cost is unknown (no price for them):
    what a cost total leaves out, so that it is only part of the spend."""
    models: dict[str, None] = {}
    for task in tasks:
        for attempt in task.attempts:
            if attempt.cost_usd is None:
                models.update(
                    (u.model, None) for u in attempt.usage if u.input or u.cached or u.output
                )
    return list(models)


def _tokens(u: TokenUsage) -> dict[str, int]:
    return {"input": u.input, "cached": u.cached, "output": u.output}


def usd(amount: float) -> str:
    """``$1.50``; ``$0.0029`` for amounts under a cent, which two places would call zero."""
    return f"${amount:.2f}" if amount >= 0.01 or amount == 0 else f"${amount:.4f}"


def usd_of(spent: float, limit: float) -> str:
    """``$1.50 of $1.00``: as many places as it takes to tell the two apart."""
    places = 2
    while places < 6 and f"{spent:.{places}f}" == f"{limit:.{places}f}" and spent != limit:
        places += 1
    if places == 2:
        return f"{usd(spent)} of {usd(limit)}"
    return f"${spent:.{places}f} of ${limit:.{places}f}"


def cost_text(cost: float | None, source: str, partial: bool = False) -> str:
    """``$0.42``, ``~$0.42`` (estimated from the price table), ``$0.42+`` (``partial``:
    some spend has no price, see :func:`unpriced_models`) or ``""`` (nothing known)."""
    if cost is None:
        return ""
    return ("~" if source == "estimated" else "") + usd(cost) + ("+" if partial else "")


def tokens_text(u: TokenUsage) -> str:
    """``12.3k tok``: input (cached included) plus output, as people read it."""
    total = u.input + u.cached + u.output
    if not total:
        return ""
    if total >= 1_000_000:
        return f"{total / 1_000_000:.1f}M tok"
    return f"{total / 1000:.1f}k tok" if total >= 1000 else f"{total} tok"


def stats(state: RunState) -> dict[str, object]:
    """The machine-readable report of ``delegate-tui stats --json``."""
    m = state.metrics if state.finished and state.metrics else compute(state)
    tasks: dict[str, object] = {}
    conflicts: list[dict[str, object]] = []
    for task in state.tasks.values():
        changed = task.changed
        tasks[task.id] = {
            "status": task.status,
            "attempts": len(task.attempts),
            "duration_s": round(task.duration_s, 3),
            "changed_files": [f.path for f in changed],
            "lines_added": sum(f.added for f in changed),
            "lines_deleted": sum(f.deleted for f in changed),
            "reason": (task.attempt.reason if task.attempt else "") or task.held_reason,
            "tokens": _tokens(task.tokens),
            "cost_usd": None if task.cost_usd is None else round(task.cost_usd, 6),
            "cost_source": task.cost_source,
            "cost_partial": bool(unpriced := unpriced_models([task])),
            "unpriced_models": unpriced,
            "turns": sum(a.turns for a in task.attempts),
            "tool_calls": sum(a.tool_calls for a in task.attempts),
            "model": next((a.model for a in reversed(task.attempts) if a.model), ""),
            "denials": [d for a in task.attempts for d in a.denials],
            "guard_denials": [d for a in task.attempts for d in a.guard_denials],
            "sandbox": task.attempt.sandbox if task.attempt else "",
            "sandbox_denied": [p for a in task.attempts for p in a.sandbox_denied],
            "ending": ending_kind(task),
            "ending_text": ending(task, _retries(state, task.id)),
        }
        for attempt in task.attempts:
            if attempt.conflict_paths:
                conflicts.append(
                    {
                        "kind": "merge-conflict",
                        "files": list(attempt.conflict_paths),
                        "tasks": [task.id],
                        "attempt": attempt.number,
                        "against": state.integration_branch,
                    }
                )
    seen: set[str] = set()
    for finding in state.finding_history:
        if finding.key in seen:
            continue
        seen.add(finding.key)
        conflicts.append(
            {
                "kind": finding.kind,
                "severity": finding.severity,
                "files": list(finding.paths),
                "tasks": list(finding.tasks),
                "detail": finding.detail,
                "open": finding.key in state.findings,
            }
        )
    return {
        "run_id": state.run_id,
        "plan": state.plan.name if state.plan else "",
        "status": state.status,
        "started": state.started_ts,
        "repo": state.repo,
        "isolation": state.isolation,
        "integration_branch": state.integration_branch,
        "tasks": tasks,
        "tokens": _tokens(state.tokens),
        "cost_usd": None if state.cost_usd is None else round(state.cost_usd, 6),
        "cost_source": state.cost_source,
        # Spend with no known price (a model missing from the price table) is not in
        # cost_usd: the total is then partial, and a budget cannot count that spend.
        "cost_partial": bool(unpriced_models(state.tasks.values())),
        "unpriced_models": unpriced_models(state.tasks.values()),
        "budget_usd": state.plan.budget_usd if state.plan else None,
        "conflicts": conflicts,
        "metrics": {
            "wall_s": m.wall_s,
            "sequential_s": m.sequential_s,
            "time_saved_s": m.time_saved_s,
            "operator_wait_s": m.operator_wait_s,
            "downtime_s": m.downtime_s,
            "conflict_rate": m.conflict_rate,
            "rework_rate": m.rework_rate,
        },
        "summary": state.summary,
        "verdict": verdict(state),
    }
