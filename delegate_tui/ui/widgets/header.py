"""The run header: elapsed, task counts, time saved, attention, then plan and run id."""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.widgets import Static

from delegate_tui.core.metrics import cost_text, unpriced_models
from delegate_tui.core.state import RunState
from delegate_tui.ui.style import clock, status_colour, update_if_changed

_GROUPS = (
    ("✔", "succeeded", ("succeeded",)),
    ("▶", "running", ("starting", "running", "checking", "merging")),
    (
        "✘",
        "failed",
        ("failed", "merge-conflict", "killed", "timed-out", "interrupted", "over-budget"),
    ),
    ("◌", "pending", ("pending",)),
)
#: Shown only when there are any, with the icons of the task list: a batch that waits
#: for your approval, work that waits for your merge, a blocked task (it cannot start:
#: it does not wait) and a skipped one (it neither waits nor failed).
_RARE = (
    ("◎", "proposed", ("proposed",)),
    ("◉", "awaiting-merge", ("awaiting-merge",)),
    ("⊘", "blocked", ("blocked",)),
    ("⤼", "skipped", ("skipped",)),
)


class RunHeader(Static):
    """One line that says how the run is going and whether you are needed."""

    def show(
        self, state: RunState, *, now: float, saved_s: float, attention: list[str], mode: str
    ) -> None:
        """Redraw from the state (attributes down).

        What the operator must see comes first: the clock, the counts and the
        attention flag, then the run's findings, time saved and end; then the plan's
        name (and, when wide, the run id), which is what a narrow screen cuts."""
        app = self.app
        wide = self.size.width >= 120
        colour = app.theme_variables.get("status-attention", "#ff8000")
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(" delegate-tui ", Style(bold=True, reverse=True))
        text.append(" ")
        if mode:
            text.append(f"[{mode}] ", Style(color=app.theme_variables.get("accent"), bold=True))
        end = state.finished_ts or now
        text.append(clock(end - state.started_ts if state.started_ts else 0) + "  ")
        for icon, colour_of, statuses in (*_GROUPS, *_RARE):
            count = sum(t.status in statuses for t in state.tasks.values())
            if not count and (icon, colour_of, statuses) in _RARE:
                continue
            text.append(
                f"{icon}{count} ", Style(color=status_colour(app, colour_of), bold=count > 0)
            )
        if attention:
            text.append(" ")
            text.append(f" ⚑ {attention[0]} ", Style(color=colour, bold=True, reverse=True))
            if len(attention) > 1:
                text.append(f" +{len(attention) - 1}", Style(color=colour))
        errors = sum(f.severity == "error" for f in state.findings.values())
        warnings = len(state.findings) - errors
        if errors:
            text.append(
                f" ✘ {errors} collision{'s' if errors > 1 else ''} ",
                Style(color=status_colour(app, "failed"), bold=True),
            )
        if warnings:
            text.append(f" ⚠ {warnings} ", Style(color=status_colour(app, "proposed"), bold=True))
        # Rounded as `stats` rounds it (report.duration), and a loss shown as one.
        saved = round(saved_s)
        if saved > 0:
            text.append(f" saved {clock(saved)} ", Style(color=status_colour(app, "succeeded")))
        elif saved < 0:
            text.append(f" slower {clock(-saved)} ", Style(color=status_colour(app, "proposed")))
        spent = cost_text(
            state.cost_usd, state.cost_source, bool(unpriced_models(state.tasks.values()))
        )
        if spent:
            budget = state.plan.budget_usd if state.plan else None
            over = budget is not None and (state.cost_usd or 0.0) >= budget
            of = f"/${budget:.2f}" if budget is not None and wide else ""
            text.append(
                f" {spent}{of} ",
                Style(color=status_colour(app, "failed"), bold=True) if over else Style(),
            )
        if state.paused:
            text.append(" ‖ paused ", Style(color=status_colour(app, "proposed"), bold=True))
        if state.finished:
            text.append(
                f" run {state.status} ",
                Style(color=status_colour(app, _final(state.status)), bold=True),
            )
        text.append(f"  {state.plan.name if state.plan else '(no plan)'}", Style(bold=True))
        if wide:
            text.append(f"  {state.run_id}", Style(dim=True))
        update_if_changed(self, text)

    def show_waiting(self, text: str) -> None:
        """Before the run's first state: what the view waits for."""
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(" delegate-tui ", Style(bold=True, reverse=True))
        line.append(f"  {text}", Style(italic=True))
        update_if_changed(self, line)


def _final(status: str) -> str:
    return {"succeeded": "succeeded", "partial": "proposed", "stopped": "blocked"}.get(
        status, "failed"
    )
