"""The diffs the run screen shows for a collision or a task (``d``), live runs only.

Owns what is diffed (each side of the collision the operator stepped to, else
the sides of the selected task's collisions, else the task's own changes)
and asking git for it through :func:`delegate_tui.core.workspace.diff_text`,
which runs no external diff or textconv from the repository's config.
:func:`render` blocks on git: call it from a worker thread. A replay never
gets here: a log from elsewhere must not make delegate-tui run git.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Group, RenderableType
from rich.style import Style
from rich.text import Text

from delegate_tui.core import workspace
from delegate_tui.core.state import RunState

#: One side of a diff: a task, and the paths to limit it to (none: all its changes).
Side = tuple[str, tuple[str, ...]]


def sides(state: RunState, finding: str, task_id: str) -> tuple[str, list[Side]] | str:
    """The dialog's title and the sides to diff, or why there is nothing to show."""
    current = state.findings.get(finding)
    if current is not None and current.tasks:
        return " ✕ ".join(current.tasks), [(t, current.paths) for t in current.tasks]
    findings = [f for f in state.findings.values() if task_id in f.tasks]
    if findings:
        return task_id, sorted({(t, f.paths) for f in findings for t in f.tasks})
    task = state.tasks.get(task_id)
    attempt = task.attempt if task else None
    if attempt is None or not (attempt.commit or attempt.snapshot):
        return f"{task_id} has no changes to show"
    return task_id, [(task_id, ())]


def render(state: RunState, chosen: list[Side]) -> RenderableType:
    """Each side's diff against its attempt's base, coloured (runs git: blocking)."""
    parts: list[RenderableType] = []
    for side, paths in chosen:
        attempt = state.tasks[side].attempt
        if attempt is None:
            continue
        tip = attempt.commit or attempt.snapshot
        text = workspace.diff_text(Path(state.repo), attempt.base_commit, tip, paths)
        where = ", ".join(paths) if paths else "all changes"
        parts.append(Text(f"\n{side}: {where}\n", Style(bold=True)))
        parts.append(_syntax(text or "(no difference)"))
    return Group(*parts)


def _syntax(diff: str) -> RenderableType:
    """A diff, coloured (rich.syntax is imported when a diff is first shown)."""
    from rich.syntax import Syntax

    return Syntax(diff, "diff", theme="ansi_dark", word_wrap=False)
