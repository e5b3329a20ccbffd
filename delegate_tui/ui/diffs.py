"""The diffs the run screen shows for a collision or a task (``d``), live runs only.

Owns what is diffed (each side of the collision the operator stepped to, else
the sides of the selected task's collisions, else the task's own changes; the
other side of a predicted conflict with the integration branch is what was
merged there since the task started; for a stale input, the merged change
itself, as the integration branch took it)
and asking git for it through :func:`delegate_tui.core.workspace.diff_text`,
which runs no external diff or textconv from the repository's config.
:func:`render` blocks on git: call it from a worker thread. A replay never
gets here: a log from elsewhere must not make delegate-tui run git.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Group, RenderableType
from rich.style import Style
from rich.text import Text

from delegate_tui.core import workspace
from delegate_tui.core.state import RunState


@dataclass(frozen=True, slots=True)
class Side:
    """One side of a diff: what it is, the paths it is limited to (none: all), and the
    two commits between which git compares."""

    name: str
    paths: tuple[str, ...]
    base: str
    tip: str


def sides(state: RunState, finding: str, task_id: str) -> tuple[str, list[Side]] | str:
    """The dialog's title and the sides to diff, or why there is nothing to show.

    A collision has two sides: two tasks, or (a predicted conflict with the
    integration branch) the task and what was merged since it started."""
    current = state.findings.get(finding)
    if current is not None and current.tasks:
        chosen = _finding_sides(state, current.kind, current.tasks, current.paths)
        if current.kind == "stale-input" and len(current.tasks) == 2:
            reader, merger = current.tasks
            return f"{merger} merged this under {reader}", chosen
        names = [side.name for side in chosen]
        return " ✕ ".join(names), chosen
    findings = [f for f in state.findings.values() if task_id in f.tasks]
    if findings:
        chosen = sorted(
            {side for f in findings for side in _finding_sides(state, f.kind, f.tasks, f.paths)},
            key=lambda side: (side.name, side.paths),
        )
        return task_id, chosen
    side = _task_side(state, task_id, ())
    if side is None:
        return f"{task_id} has no changes to show"
    return task_id, [side]


def _finding_sides(
    state: RunState, kind: str, tasks: tuple[str, ...], paths: tuple[str, ...]
) -> list[Side]:
    if kind == "stale-input" and len(tasks) == 2:
        # The reader changed nothing there: what matters is what the merge changed.
        merged = _merge_side(state, tasks[1], paths)
        return [merged] if merged is not None else []
    chosen = [side for t in tasks if (side := _task_side(state, t, paths)) is not None]
    if kind == "predicted-conflict" and len(tasks) == 1:
        other = _integration_side(state, tasks[0], paths)
        if other is not None:
            chosen.append(other)
    return chosen


def _task_side(state: RunState, task_id: str, paths: tuple[str, ...]) -> Side | None:
    """A task's changes: its attempt's base to its commit (or, while it runs, snapshot)."""
    task = state.tasks.get(task_id)
    attempt = task.attempt if task else None
    if attempt is None or not (attempt.commit or attempt.snapshot):
        return None
    return Side(task_id, paths, attempt.base_commit, attempt.commit or attempt.snapshot)


def _merge_side(state: RunState, task_id: str, paths: tuple[str, ...]) -> Side | None:
    """What ``task_id``'s latest merge changed on the integration branch."""
    task = state.tasks.get(task_id)
    merged = next((a for a in reversed(task.attempts) if a.merged_commit), None) if task else None
    if merged is None:
        return None
    tip = merged.merged_commit
    return Side(f"{task_id} merged into the integration branch", paths, f"{tip}^1", tip)


def _integration_side(state: RunState, task_id: str, paths: tuple[str, ...]) -> Side | None:
    """What landed on the integration branch since ``task_id`` started (the other side
    of a predicted conflict with the integration branch), named by who merged it."""
    attempt = state.tasks[task_id].attempt
    tip = state.integration_tip or state.integration_branch
    if attempt is None or not attempt.base_commit or not tip:
        return None
    merged = [
        t.id
        for t in state.tasks.values()
        if t.id != task_id
        and (a := t.attempt) is not None
        and a.merged_commit
        and a.merged_ts >= attempt.prepared_ts
    ]
    since = f" ({', '.join(merged)} merged since {task_id} started)" if merged else ""
    return Side(f"integration branch{since}", paths, attempt.base_commit, tip)


def render(state: RunState, chosen: list[Side]) -> RenderableType:
    """Each side's diff against its base, coloured (runs git: blocking)."""
    parts: list[RenderableType] = []
    for side in chosen:
        text = workspace.diff_text(Path(state.repo), side.base, side.tip, side.paths)
        where = ", ".join(side.paths) if side.paths else "all changes"
        parts.append(Text(f"\n{side.name}: {where}\n", Style(bold=True)))
        parts.append(_syntax(text or "(no difference)"))
    return Group(*parts)


def _syntax(diff: str) -> RenderableType:
    """A diff, coloured (rich.syntax is imported when a diff is first shown)."""
    from rich.syntax import Syntax

    return Syntax(diff, "diff", theme="ansi_dark", word_wrap=False)
