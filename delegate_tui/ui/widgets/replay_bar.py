"""The replay bar: where playback is, how fast, and the keys to move."""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.widgets import Static

from delegate_tui.core.replay import Position
from delegate_tui.ui.style import clock, update_if_changed

_HINT = (
    "p play/pause · ← → 10 s · , . one event · < > start/end · + - speed · "
    "ctrl+← → notable · F C next failure/conflict"
)
#: The same keys in 77 columns (? says more).
_SHORT_HINT = "p play · ←→ 10s · ,. step · <> ends · +- speed · ^←→ jump · F C fail/conflict"


class ReplayBar(Static):
    """Position readout and timeline of a replayed run."""

    def show(self, position: Position, *, playing: bool, speed: float, real_time: bool) -> None:
        """Redraw from the replay's position (attributes down)."""
        accent = Style(color=self.app.theme_variables.get("accent", "#ff9e64"), bold=True)
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(" ▶ playing " if playing else " ‖ paused ", accent + Style(reverse=True))
        text.append(f" {speed:g}x ", accent)
        text.append(f" {clock(position.seconds)} / {clock(position.duration)} ")
        text.append(f" event {position.index:,}/{position.total:,} ", Style(dim=True))
        width = max(10, self.size.width - len(text.plain) - 4)
        done = int(width * position.index / position.total) if position.total else 0
        text.append("▕" + "█" * done + "░" * (width - done) + "▏", accent)
        text.append("\n")
        hint = _HINT + ("" if real_time else " · quiet stretches shortened")
        if len(hint) > self.size.width - 2:  # 80 columns: every key, in fewer words
            hint = _SHORT_HINT
        text.append(hint, Style(dim=True))
        update_if_changed(self, text)
