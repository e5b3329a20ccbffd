"""The run as a schedule: one row per task, its attempts as bars, its waits and why.

Owns the pure projection of a :class:`~delegate_tui.core.state.RunState` into
what a timeline shows, for the UI's timeline (``ui/widgets/timeline.py``) and
the shared report's SVG (``delegate_tui/share.py``) alike:

* a **bar** per attempt, from its worktree being made to its end state, with
  the agent's own run inside it, coloured by outcome (succeeded, merged,
  failed, killed, timed out, merge conflict, interrupted, still running);
* the **waits** between them and why: for a dependency, for a slot
  (``max_parallel``), for a declared scope another task held, for the
  operator's approval, a pause, the operator's retry or merge;
* **marks**: batch proposals and approvals, pauses, and the operator's kills,
  retries, skips and typed input, plus the conflict findings;
* how many agents ran at each moment.

Everything comes from state the fold keeps (each task's phases, the run's
marks, the attempts' times), so a live run, a replay at its cursor, an
attached view caught up from a keyframe and ``report`` draw the same picture.

(About 470 lines: bars, waits with their reasons, marks and the concurrency row are
one projection, read together.)
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from delegate_tui.core.events import ACTIVE_STATUSES
from delegate_tui.core.state import AttemptState, Mark, Phase, RunState, TaskState

#: Why a task waited, in the words the legend uses.
WAIT_MEANINGS: dict[str, str] = {
    "dependency": "for a dependency to succeed",
    "slot": "for a free slot (max_parallel)",
    "scope": "for a task whose files or resources it shares",
    "approval": "for the operator's approval",
    "paused": "scheduling was paused",
    "scheduling": "ready, for the next batch",
    "operator": "for the operator to retry it",
    "merge": "for the operator's merge",
    "blocked": "cut off: a dependency failed or was skipped",
}

#: What ended an attempt, in the words the legend uses.
OUTCOME_MEANINGS: dict[str, str] = {
    "running": "still at work",
    "merged": "succeeded and merged",
    "succeeded": "succeeded",
    "awaiting-merge": "succeeded; waits for a merge",
    "failed": "failed (agent, setup or checks)",
    "killed": "killed by the operator",
    "timed-out": "ended by its timeout",
    "conflict": "would not merge (merge conflict)",
    "interrupted": "cut off when the run stopped",
}

#: Marks drawn on a task's row, and marks of the whole run.
TASK_MARKS = frozenset({"approved", "kill", "retry", "skip", "input", "finding"})
RUN_MARKS = frozenset(
    {"proposed", "approved", "held", "paused", "resumed", "run-resumed", "final-merge"}
)

#: A ready task's wait for a batch shorter than this is the engine at work, not a wait.
SCHEDULING_NOISE_S = 0.05

_FINAL_FAILED = frozenset(
    {"failed", "killed", "timed-out", "merge-conflict", "interrupted", "skipped", "blocked"}
)


@dataclass(frozen=True, slots=True)
class Bar:
    """One attempt of a task, from its worktree being made to its end state."""

    attempt: int
    start: float
    agent_start: float
    """When its agent process started (0: it never did, e.g. its setup failed)."""
    agent_end: float
    """When its agent exited (the view's now while it runs)."""
    end: float
    """Its end state (after checks and merge), or now while it runs."""
    outcome: str
    """A key of :data:`OUTCOME_MEANINGS`."""
    reason: str = ""
    merged_ts: float = 0.0

    @property
    def live(self) -> bool:
        """The attempt is still under way."""
        return self.outcome == "running"


@dataclass(frozen=True, slots=True)
class Wait:
    """A stretch in which a task waited, and why (a key of :data:`WAIT_MEANINGS`)."""

    start: float
    end: float
    why: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class TimelineMark:
    """A moment worth a glyph: an approval, an operator's action, a conflict finding."""

    ts: float
    kind: str
    detail: str = ""
    by: str = "operator"


@dataclass(frozen=True, slots=True)
class Row:
    """One task's line of the timeline."""

    task: str
    status: str
    bars: tuple[Bar, ...]
    waits: tuple[Wait, ...]
    marks: tuple[TimelineMark, ...]

    def spans(self) -> list[Bar | Wait]:
        """Bars and waits in time order (what a cursor steps through)."""
        return sorted([*self.bars, *self.waits], key=lambda s: (s.start, s.end))


@dataclass(frozen=True, slots=True)
class Timeline:
    """The whole picture of a run at one moment."""

    start: float
    end: float
    rows: tuple[Row, ...]
    marks: tuple[TimelineMark, ...]
    """Marks of the run as a whole: batches proposed, approved, held; pauses."""
    concurrency: tuple[tuple[float, int], ...]
    """Agents running from each time on: ``(ts, n)`` steps, in time order."""
    max_parallel: int = 3

    @property
    def duration(self) -> float:
        """Seconds from the run's start to its end (or now)."""
        return max(0.0, self.end - self.start)

    @property
    def peak(self) -> int:
        """The most agents that ran at once."""
        return max((n for _, n in self.concurrency), default=0)

    def row(self, task: str) -> Row | None:
        """The row of a task, if it has one."""
        return next((r for r in self.rows if r.task == task), None)

    def agents_between(self, t0: float, t1: float) -> int:
        """The most agents that ran at once in ``[t0, t1)``."""
        steps = self.concurrency
        index = bisect.bisect_right(steps, (t0, float("inf"))) - 1
        best = steps[index][1] if index >= 0 else 0
        for ts, n in steps[index + 1 :]:
            if ts >= t1:
                break
            best = max(best, n)
        return best


# ---------------------------------------------------------------- the projection


def project(state: RunState, now: float | None = None) -> Timeline:
    """The timeline of ``state``; ``now`` ends what is still under way (default: the last event)."""
    end = state.finished_ts or max(now or 0.0, state.last_ts)
    start = state.started_ts or end
    paused = _paused_spans(state.marks, end)
    done_at = {t.id: _succeeded_at(t) for t in state.tasks.values()}
    deps = dict(state.plan.deps) if state.plan is not None else {}
    rows = []
    for task in state.tasks.values():
        rows.append(
            Row(
                task=task.id,
                status=task.status,
                bars=tuple(b for a in task.attempts if (b := _bar(a, end)) is not None),
                waits=tuple(_waits(task, deps.get(task.id, ()), done_at, paused, end, state)),
                marks=tuple(_task_marks(state, task.id)),
            )
        )
    run_marks = tuple(
        TimelineMark(m.ts, m.kind, _mark_detail(m), m.by)
        for m in state.marks
        if m.kind in RUN_MARKS
    )
    return Timeline(
        start=start,
        end=max(start, end),
        rows=tuple(rows),
        marks=run_marks,
        concurrency=_concurrency(state.tasks.values(), end),
        max_parallel=state.max_parallel,
    )


def outcome_of(attempt: AttemptState) -> str:
    """An attempt's outcome as the timeline colours it."""
    status = attempt.status
    if status in ACTIVE_STATUSES:
        return "running"
    if status == "succeeded":
        return "merged" if attempt.merged_commit else "succeeded"
    if status == "merge-conflict":
        return "conflict"
    return status


def _bar(attempt: AttemptState, end: float) -> Bar | None:
    begin = attempt.prepared_ts or attempt.started_ts
    if not begin:
        return None  # scheduled, not begun
    outcome = outcome_of(attempt)
    live = outcome == "running"
    stop = end if live else (attempt.finished_ts or attempt.ended_ts or end)
    agent_end = attempt.ended_ts or (stop if attempt.started_ts else 0.0)
    return Bar(
        attempt=attempt.number,
        start=begin,
        agent_start=attempt.started_ts,
        agent_end=agent_end,
        end=max(begin, stop),
        outcome=outcome,
        reason=attempt.reason,
        merged_ts=attempt.merged_ts,
    )


def _succeeded_at(task: TaskState) -> float:
    """When a task first succeeded (infinity if it has not)."""
    return next((p.ts for p in task.phases if p.status == "succeeded"), float("inf"))


def _paused_spans(marks: Sequence[Mark], end: float) -> list[tuple[float, float]]:
    spans: list[tuple[float, float]] = []
    since: float | None = None
    for mark in marks:
        if mark.kind == "paused" and since is None:
            since = mark.ts
        elif mark.kind in ("resumed", "run-resumed") and since is not None:
            spans.append((since, mark.ts))
            since = None
    if since is not None:
        spans.append((since, end))
    return spans


def _intervals(phases: Sequence[Phase], end: float) -> Iterable[tuple[Phase, float, bool]]:
    """Each phase, when it ended, and whether a later phase left the failed states."""
    for i, phase in enumerate(phases):
        stop = phases[i + 1].ts if i + 1 < len(phases) else end
        retried = any(p.status not in _FINAL_FAILED for p in phases[i + 1 :])
        yield phase, min(stop, end), retried


def _classify_held(reason: str) -> str:
    if "max_parallel" in reason:
        return "slot"
    if "approv" in reason:
        return "approval"
    return "scope"


def _waits(
    task: TaskState,
    deps: Sequence[str],
    done_at: dict[str, float],
    paused: list[tuple[float, float]],
    end: float,
    state: RunState,
) -> Iterable[Wait]:
    for phase, stop, retried in _intervals(task.phases, end):
        begin = phase.ts
        if stop <= begin:
            continue
        status = phase.status
        if status == "pending":
            if phase.reason:
                yield Wait(begin, stop, _classify_held(phase.reason), phase.reason)
                continue
            ready = max((done_at.get(d, float("inf")) for d in deps), default=begin)
            if ready > begin:
                waiting = [d for d in deps if done_at.get(d, float("inf")) > begin]
                yield Wait(begin, min(stop, ready), "dependency", "needs " + ", ".join(waiting))
            if ready < stop:
                yield from _split_paused(max(begin, ready), stop, paused)
        elif status == "proposed":
            batch = _batch_of(state.marks, task.id, begin)
            if batch:  # else the policy approved it at once: nobody was asked
                yield Wait(begin, stop, "approval", f"batch {batch} waited for approval")
        elif status == "awaiting-merge":
            yield Wait(begin, stop, "merge", "done; waited for the operator's merge")
        elif status == "blocked":
            yield Wait(begin, stop, "blocked", phase.reason)
        elif status in _FINAL_FAILED and status not in ("skipped", "blocked"):
            if retried:
                yield Wait(begin, stop, "operator", f"{status}; waited for a retry")
            elif not state.finished and status != "killed" and phase is task.phases[-1]:
                yield Wait(begin, stop, "operator", f"{status}; waits for a retry or a skip")


def _split_paused(begin: float, stop: float, paused: list[tuple[float, float]]) -> Iterable[Wait]:
    """``[begin, stop)`` as waits for scheduling, paused where the run was paused."""
    if stop - begin < SCHEDULING_NOISE_S:
        return  # the engine's own moment between an event and its next proposal
    cursor = begin
    for p0, p1 in paused:
        a, b = max(cursor, p0), min(stop, p1)
        if a >= b:
            continue
        if a > cursor:
            yield Wait(cursor, a, "scheduling", "ready; waited for the next batch")
        yield Wait(a, b, "paused", "scheduling was paused")
        cursor = b
    if cursor < stop:
        yield Wait(cursor, stop, "scheduling", "ready; waited for the next batch")


def _batch_of(marks: Sequence[Mark], task: str, ts: float) -> int:
    """The batch proposed with ``task`` in it at or before ``ts``."""
    batch = 0
    for mark in marks:
        if mark.ts > ts:
            break
        if mark.kind == "proposed" and task in mark.tasks:
            batch = mark.batch
    return batch


def _mark_detail(mark: Mark) -> str:
    tasks = ", ".join(mark.tasks)
    if mark.kind == "proposed":
        return f"batch {mark.batch} proposed: {tasks}"
    if mark.kind == "approved":
        who = "by the policy" if mark.by == "policy" else "by the operator"
        return f"batch {mark.batch} approved {who}: {tasks}"
    if mark.kind == "held":
        return f"batch {mark.batch} held by the operator"
    if mark.kind == "paused":
        return "scheduling paused"
    if mark.kind == "resumed":
        return "scheduling resumed"
    if mark.kind == "run-resumed":
        return "the run was resumed after a stop"
    if mark.kind == "final-merge":
        return f"final merge {mark.detail}"
    return mark.detail


def _task_marks(state: RunState, task_id: str) -> Iterable[TimelineMark]:
    for mark in state.marks:
        if mark.kind in TASK_MARKS and task_id in mark.tasks:
            detail = mark.detail
            if mark.kind == "approved":
                detail = _mark_detail(mark)
            elif mark.kind == "retry":
                who = "automatic" if mark.by == "policy" else "by the operator"
                detail = f"retried ({who})" + (f": {mark.detail}" if mark.detail else "")
            elif mark.kind == "kill":
                detail = f"killed by the operator ({mark.detail})"
            elif mark.kind == "skip":
                detail = "skipped by the operator" + (f": {mark.detail}" if mark.detail else "")
            elif mark.kind == "input":
                detail = f"typed: {mark.detail}"
            yield TimelineMark(mark.ts, mark.kind, detail, mark.by)
    seen: set[str] = set()
    for finding in state.finding_history:
        if task_id in finding.tasks and finding.key not in seen:
            seen.add(finding.key)
            detail = f"{finding.kind}: {', '.join(finding.paths)}"
            yield TimelineMark(finding.ts, "finding", detail, "engine")


def _concurrency(tasks: Iterable[TaskState], end: float) -> tuple[tuple[float, int], ...]:
    deltas: dict[float, int] = {}
    for task in tasks:
        for attempt in task.attempts:
            if not attempt.started_ts:
                continue
            stop = attempt.ended_ts or end
            if stop <= attempt.started_ts:
                continue
            deltas[attempt.started_ts] = deltas.get(attempt.started_ts, 0) + 1
            deltas[stop] = deltas.get(stop, 0) - 1
    steps: list[tuple[float, int]] = []
    running = 0
    for ts in sorted(deltas):
        running += deltas[ts]
        steps.append((ts, running))
    return tuple(steps)


# ---------------------------------------------------------------- scale


#: Seconds a column (or a tick) may stand for: people read these.
STEPS: tuple[float, ...] = (
    0.1,
    0.25,
    0.5,
    1,
    2,
    5,
    10,
    15,
    30,
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    14400,
    43200,
    86400,
)


def fit_step(duration: float, cells: int) -> float:
    """The smallest step of :data:`STEPS` that fits ``duration`` into ``cells`` columns."""
    cells = max(1, cells)
    for step in STEPS:
        if duration / step <= cells:
            return step
    return STEPS[-1] * max(1, int(duration / STEPS[-1] / cells) + 1)


def zoom(step: float, direction: int) -> float:
    """The next finer (direction < 0) or coarser (> 0) step."""
    index = bisect.bisect_left(STEPS, step)
    index = max(0, min(len(STEPS) - 1, index + (1 if direction > 0 else -1)))
    return STEPS[index]


def tick_every(step: float, label_cells: int = 6) -> float:
    """Seconds between labelled ticks, so labels ``label_cells`` wide do not touch."""
    for candidate in STEPS:
        if candidate >= step * (label_cells + 2):
            return candidate
    return STEPS[-1]


def span_text(seconds: float) -> str:
    """``0:42``, ``12:05``, ``1:02:03``: an offset into the run."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def describe(span: Bar | Wait, start: float) -> str:
    """One line about a bar or a wait, times as offsets from the run's ``start``."""
    when = f"{span_text(span.start - start)}–{span_text(span.end - start)}"
    length = span_text(span.end - span.start)
    if isinstance(span, Bar):
        text = f"attempt {span.attempt} {when} ({length}) {OUTCOME_MEANINGS.get(span.outcome, span.outcome)}"
        if span.reason and span.outcome not in ("merged", "succeeded", "running"):
            text += f": {span.reason}"
        return text
    text = f"waited {length} ({when}) {WAIT_MEANINGS.get(span.why, span.why)}"
    return text + (f": {span.detail}" if span.detail else "")


#: How each kind of mark is drawn, on screen and in the report: one glyph.
MARK_GLYPHS: dict[str, str] = {
    "approved": "✓",
    "proposed": "?",
    "held": "✗",
    "paused": "‖",
    "resumed": "▷",
    "run-resumed": "↺",
    "final-merge": "⇒",
    "kill": "✖",
    "retry": "↻",
    "skip": "⤼",
    "input": "»",
    "finding": "!",
}
