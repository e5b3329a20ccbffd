"""The batch bar: the proposed batch, which tasks are in it, why others wait, and its collisions."""

from __future__ import annotations

from collections.abc import Iterable

from rich.style import Style
from rich.text import Text
from textual.widgets import Static

from delegate_tui.core.events import BatchProposed, ConflictDetected
from delegate_tui.ui.style import status_colour, update_if_changed


class BatchBar(Static):
    """Shown while a batch waits for the operator."""

    def show(
        self,
        proposal: BatchProposed | None,
        excluded: set[str],
        findings: Iterable[ConflictDetected],
        keys: dict[str, str],
    ) -> None:
        """Redraw for a proposal (or hide when there is none), warning of open collisions."""
        self.display = proposal is not None and proposal.needs_approval
        if proposal is None or not self.display:
            return
        app = self.app
        attention = Style(color=app.theme_variables.get("status-attention", "#ff8000"), bold=True)
        text = Text()
        text.append(f"⚑ Batch {proposal.batch} waits for approval  ", attention)
        for task in proposal.tasks:
            chosen = task not in excluded
            mark = "☑" if chosen else "☐"
            colour = status_colour(app, "proposed" if chosen else "skipped")
            text.append(f"{mark} {task}  ", Style(color=colour, bold=chosen, strike=not chosen))
        text.append("\n")
        hint = (
            f"{keys.get('approve', 'a')} approve{' selection' if excluded else ''} · "
            f"{keys.get('toggle', 'space')} toggle selected task · {keys.get('approve_all', 'A')} approve all · "
            f"{keys.get('hold', 'h')} hold"
        )
        text.append(hint, Style(dim=True))
        for note in proposal.notes:
            text.append(f"\nnote  {note.task}: {note.reason}", Style(dim=True))
        for held in proposal.held:
            text.append(f"\nheld  {held.task}: {held.reason}", Style(dim=True))
        members = set(proposal.tasks) - excluded
        for f in findings:
            if members & set(f.tasks):  # a collision involving a task still in the batch
                warning = f"{f.kind}: {' ✕ '.join(f.tasks)} on {', '.join(f.paths)}"
                text.append(f"\n⚠ {warning}", Style(color=status_colour(app, "failed")))
        update_if_changed(self, text)
