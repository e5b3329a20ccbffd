"""An agent's transcript: what its structured stream says, as lines a pane draws.

Owns how the events read from an agent's structured stream (core/streams/)
look in its pane: its own words as they are, each tool call as one line with
its file or command, failed calls and API retries in colour, and how it ended.
The result is terminal bytes (the same ANSI colours and CR LF line ends a PTY
gives), so the pane's terminal buffer, search and scrolling work on a transcript
exactly as on raw output. The raw stream stays one key (``v``) away.
"""

from __future__ import annotations

from collections.abc import Iterable

from delegate_tui.core.events import (
    AgentApiRetry,
    AgentMessage,
    AgentResult,
    AgentSession,
    AgentToolFinished,
    AgentToolStarted,
    Event,
)
from delegate_tui.core.state import AttemptState, tool_line

#: The events a transcript is made of.
TRANSCRIPT_EVENTS = (
    AgentSession,
    AgentMessage,
    AgentToolStarted,
    AgentToolFinished,
    AgentApiRetry,
    AgentResult,
)

_DIM, _CYAN, _RED, _YELLOW, _BOLD, _GREEN, _OFF = (
    "\x1b[2m",
    "\x1b[36m",
    "\x1b[31m",
    "\x1b[33m",
    "\x1b[1m",
    "\x1b[32m",
    "\x1b[0m",
)
_REASONS = {
    "max_turns": "it reached its turn limit",
    "budget": "it spent its budget",
    "auth": "the API refused its credentials",
    "permission_denied": "its CLI refused tools it needed",
    "error": "an error",
}


def _lines(text: str, style: str = "", prefix: str = "") -> str:
    body = text.replace("\r\n", "\n").replace("\r", "\n").rstrip("\n")
    out = [f"{style}{prefix}{line}{_OFF if style else ''}" for line in body.split("\n")]
    return "\r\n".join(out) + "\r\n"


def render(ev: Event) -> bytes:
    """The transcript lines for one event (empty for events that add none)."""
    if isinstance(ev, AgentMessage):
        if ev.kind == "assistant":
            return (_lines(ev.text) + "\r\n").encode()
        return _lines(ev.text, _DIM).encode()
    if isinstance(ev, AgentToolStarted):
        return _lines(tool_line(ev), _CYAN, "→ ").encode()
    if isinstance(ev, AgentToolFinished):
        if ev.ok:
            return _lines(ev.detail or "done", _GREEN, "  ✓ ").encode()
        return _lines(ev.detail or "failed", _RED, "  ✗ ").encode()
    if isinstance(ev, AgentApiRetry):
        what = f"HTTP {ev.status}" if ev.status else "error"
        detail = f": {ev.detail}" if ev.detail else ""
        return _lines(f"retrying the API ({what}){detail}", _YELLOW, "↻ ").encode()
    if isinstance(ev, AgentSession):
        model = f" · {ev.model}" if ev.model else ""
        verb = "continues conversation" if ev.resumed else "conversation"
        return _lines(f"{verb} {ev.session_id}{model}", _DIM).encode()
    if isinstance(ev, AgentResult):
        if ev.ok:
            text = _lines("finished", _GREEN + _BOLD, "■ ")
        else:
            why = _REASONS.get(ev.reason, ev.reason)
            text = _lines(f"stopped: {why}", _RED + _BOLD, "■ ")
            if ev.text and ev.reason != "completed":
                text += _lines(ev.text[:500], _RED, "  ")
        for denial in ev.denials:
            text += _lines(f"refused: {denial}", _YELLOW, "  ")
        return text.encode()
    return b""


def seed(attempt: AttemptState) -> bytes:
    """What the state keeps of an attempt's transcript (its last lines), for a pane
    opened after the events went by (a resumed or seeked run)."""
    parts: Iterable[str] = attempt.transcript
    out = []
    for line in parts:
        if line.startswith("→ "):
            out.append(_lines(line[2:], _CYAN, "→ "))
        elif line.startswith("✗ "):
            out.append(_lines(line[2:], _RED, "  ✗ "))
        elif line.startswith("✓ "):
            out.append(_lines(line[2:], _GREEN, "  ✓ "))
        elif line.startswith("  "):
            out.append(_lines(line[2:], _DIM))
        else:
            out.append(_lines(line) + "\r\n")
    return "".join(out).encode()
