"""The conflict sidebar: where tasks collide, or would.

Shows what the core knows, most severe first: live collisions found by the
watcher (predicted merge conflicts, overlaps, out-of-scope edits, shared
files), grouped by file; merges that failed; tasks held back and why;
declared-scope overlaps between independent tasks; and the run's warnings.
It only renders what it is given, and only what is still true: every item is
derived from the state as it is now (a failed merge that was retried and
merged, a dependency that runs again, a run that no longer waits, all leave).
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from typing import TypeVar

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text
from textual.widgets import Static

from delegate_tui.core import attention, batching, commands
from delegate_tui.core.events import UNDECIDED_STATUSES, Notice
from delegate_tui.core.state import RunState
from delegate_tui.ui.style import ICONS, status_colour, update_if_changed

T = TypeVar("T")
#: Held-back tasks and declared overlaps shown at most (the selected task's first).
LIST_CAP = 12


class ConflictSidebar(Static):
    """Findings, most severe first."""

    def show(
        self,
        state: RunState,
        overlaps: list[tuple[str, str, str]],
        selected: str,
        current: str = "",
    ) -> int:
        """Redraw; returns the number of conflicts (collisions and failed merges, for the
        title): held tasks, declared scopes and warnings are listed but are not conflicts."""
        app = self.app
        red = Style(color=status_colour(app, "failed"), bold=True)
        amber = Style(color=status_colour(app, "proposed"), bold=True)
        dim = Style(dim=True)
        width = self.size.width - 1  # the scroll bar's column
        text = Text()
        count = 0

        # Live findings from the watcher, by severity and then by file.
        for severity, title, style in (
            ("error", "✘ Collisions", red),
            ("warning", "⚠ Warnings", amber),
        ):
            by_path: dict[str, list[tuple[str, tuple[str, ...], str, bool]]] = {}
            for finding in state.findings.values():
                if finding.severity == severity:
                    for path in finding.paths:
                        by_path.setdefault(path, []).append(
                            (finding.kind, finding.tasks, finding.detail, finding.key == current)
                        )
            if not by_path:
                continue
            text.append(f"{title}\n", style)
            for path in sorted(by_path):
                text.append(_path(path, 2, width), Style(bold=True))
                for kind, tasks, detail, is_current in by_path[path]:
                    count += severity == "error"
                    who = " ✕ ".join(tasks) or "(no running task's scope)"
                    text.append("  ▸ " if is_current else "    ", style)
                    text.append(f"{who}\n", Style(underline=selected in tasks, reverse=is_current))
                    text.append(_hanging(f"{kind.replace('-', ' ')}: {detail}", 4, width), dim)
                    if kind == "stale-input" and commands.restarts_stale(state, tasks[0]):
                        text.append("    r: restart on the new tip\n", dim)
            text.append("\n")

        # Only tasks whose merge failed and that wait for the operator: a retry
        # (running, merged or failed otherwise) takes the task off this list.
        conflicts = [
            (t.id, last.number, last.conflict_paths)
            for t in state.tasks.values()
            if t.status == "merge-conflict"
            and (last := t.attempt) is not None
            and last.conflict_paths
        ]
        if conflicts:
            text.append("✘ Merges that failed\n", red)
            for task, attempt, paths in conflicts:
                count += 1
                text.append(f"  {task}", Style(bold=True, underline=task == selected))
                text.append(f" #{attempt}\n", dim)
                for path in paths:
                    text.append(_path(path, 4, width))
            text.append(_hanging("r: retry on top of the integration branch", 2, width), dim)
            text.append("\n")

        held = [
            (t.id, t.held_reason)
            for t in state.tasks.values()
            if t.status == "pending" and t.held_reason
        ] + [
            # Why a blocked task cannot start, from its dependency's status now.
            (t.id, f"dependency {t.blocked_by} {state.tasks[t.blocked_by].status}")
            for t in state.tasks.values()
            if t.status == "blocked" and t.blocked_by in state.tasks
        ]
        if held:
            # ◌ waits, ⊘ blocked (as in the task list and the legend); not ‖, which
            # means paused.
            text.append("◌ Held back\n", amber)
            shown = _first(held, lambda item: item[0] == selected)
            for task, reason in shown:
                icon = ICONS[state.tasks[task].status]
                text.append(f"  {icon} {task}", Style(bold=True, underline=task == selected))
                # A reason that would wrap to the sidebar's left edge goes on a line of
                # its own, under the task.
                fits = cell_len(f"  {icon} {task}: {reason}") <= width
                text.append(f": {reason}\n" if fits else f"\n    {reason}\n")
            if len(held) > len(shown):
                text.append(f"  … and {len(held) - len(shown)} more (⏎ says why)\n", dim)
            text.append("\n")

        undeclared = [t.id for t in state.tasks.values() if t.note]
        if overlaps or undeclared:
            text.append("◇ Declared scopes\n", Style(bold=True))
            shown_overlaps = _first(overlaps, lambda item: selected in item[:2])
            for a, b, reason in shown_overlaps:
                mark = Style(bold=True, underline=selected in (a, b))
                text.append(f"  {a}", mark)
                text.append(" ✕ ", dim)
                text.append(f"{b}", mark)
                text.append("\n")
                text.append(_hanging(_short(reason, b), 4, width), dim)
            if len(overlaps) > len(shown_overlaps):
                text.append(f"  … and {len(overlaps) - len(shown_overlaps)} more overlaps\n", dim)
            for task in undeclared:
                text.append(f"  {task}", Style(bold=True))
                text.append(": scope undeclared\n", dim)
            text.append("\n")

        notices = [
            n for n in state.notices if n.level in ("warning", "error") and _still_true(state, n)
        ][-5:]
        if notices:
            text.append("! Notices\n", amber)
            for notice in notices:
                style = red if notice.level == "error" else Style()
                text.append(_hanging(notice.message, 2, width), style)
            text.append("\n")  # apart from the key hint under it
        if state.findings:
            text.append(_hanging("[ ] step through collisions · d diffs", 0, width), dim)
        if not text:
            text.append("No conflicts.\n", dim)
            text.append("Declared scopes do not overlap; merges so far were clean.", dim)
        update_if_changed(self, text)
        return count


def _still_true(state: RunState, notice: Notice) -> bool:
    """False for a notice the state has since made untrue: "the run is waiting for
    you" once a retry or skip set it going again (the engine says it once, and a
    replay plays it back; neither takes it back). It stays while a skip leaves
    tasks blocked and nothing else can move: only the operator ends such a run."""
    from delegate_tui.core.scheduler import WAITING_PREFIX  # not loaded before the first frame

    if notice.message.startswith(WAITING_PREFIX):
        return (
            state.plan is not None
            and not state.finished
            and not state.active
            and (
                any(t.status in UNDECIDED_STATUSES for t in state.tasks.values())
                or bool(attention.blocked_by_skips(state))
            )
            and not batching.ready(state.plan, state)
        )
    return True


def _hanging(message: str, indent: int, width: int) -> str:
    """``message`` wrapped at word breaks to lines ``indent`` cells in (a notice wrapped
    by Rich went on at the sidebar's left edge, under its heading's mark)."""
    lines = textwrap.wrap(
        message, max(width - indent, 10), break_on_hyphens=False, break_long_words=True
    )
    return "".join(f"{' ' * indent}{line}\n" for line in lines or [""])


def _path(path: str, indent: int, width: int) -> str:
    """A path on its own lines, ``indent`` cells in, broken after a ``/`` that fits
    (Rich would cut a long one anywhere and go on at the left edge)."""
    room = width - indent
    if room < 12 or len(path) <= room:
        return f"{' ' * indent}{path}\n"
    lines: list[str] = []
    while len(path) > room:
        cut = path.rfind("/", 0, room)
        cut = cut + 1 if cut > 0 else room
        lines.append(path[:cut])
        path = path[cut:]
    lines.append(path)
    return "".join(f"{' ' * indent}{line}\n" for line in lines)


def _first(items: list[T], mine: Callable[[T], bool]) -> list[T]:
    """At most LIST_CAP items, the selected task's first: a long list is not read, and
    drawing thousands of lines (a 2,000-task plan) made every key wait for them."""
    return sorted(items, key=lambda item: not mine(item))[:LIST_CAP]


def _short(reason: str, other: str) -> str:
    """'edits overlap with b on x' -> 'edits overlap on x' (b is named already)."""
    return reason.replace(f" with {other}", "")
