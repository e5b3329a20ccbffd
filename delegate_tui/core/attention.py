"""When the operator's attention is needed, decided over state.

Owns the heuristics behind the UI's bell and toasts, as pure functions so the
UI only shows what they say: a batch waiting for approval, a task that
failed, a merge that conflicted, a task a crash or stop interrupted (after
``resume``), and an agent that seems to wait for input (no output for a
while, and a last line that reads like a prompt).
"""

from __future__ import annotations

import re

from delegate_tui.core.prompts import plain_text
from delegate_tui.core.state import AttemptState, RunState

#: Seconds without output before a prompt-like last line counts as waiting.
QUIET_S = 3.0
_PROMPT_RE = re.compile(
    r"(\?\s*(\[[^\]]*\]|\([^)]*\))?\s*$)"  # a question, maybe with [y/N] or (yes/no)
    r"|(\[[yY](es)?/[nN]o?\]\s*:?\s*$)"
    r"|((password|passphrase|token|continue|proceed|answer|choice|select|enter)[^:]*:\s*$)"
    r"|(^\s*[>›❯]\s*$)",
    re.IGNORECASE,
)


def last_line(attempt: AttemptState) -> str:
    """The last non-empty line an attempt printed, as plain text."""
    tail = bytes(attempt.tail[-2048:])
    for line in reversed(plain_text(tail).splitlines()):
        if line.strip():
            return line.rstrip()
    return ""


def seems_to_wait_for_input(attempt: AttemptState, now: float, quiet_s: float = QUIET_S) -> bool:
    """True when a running agent went quiet on a line that reads like a prompt."""
    if attempt.status != "running" or not attempt.last_output_ts:
        return False
    if now - attempt.last_output_ts < quiet_s:
        return False
    return bool(_PROMPT_RE.search(last_line(attempt)))


def needs_attention(state: RunState, now: float) -> list[str]:
    """Short reasons the operator is needed now, most urgent first."""
    reasons: list[str] = []
    if state.proposal is not None and state.proposal.needs_approval:
        reasons.append(f"batch {state.proposal.batch} waits for approval")
    for task in state.tasks.values():
        attempt = task.attempt
        if attempt is not None and seems_to_wait_for_input(attempt, now):
            reasons.append(f"{task.id} seems to wait for input")
    failed = [
        t.id
        for t in state.tasks.values()
        if t.status in ("failed", "merge-conflict", "timed-out", "over-budget")
    ]
    if failed and not state.finished:
        reasons.append("failed: " + ", ".join(failed))
    # Cut off by a crash or a stop: after `resume` (without --yes) they wait for the
    # operator's retry or skip like a failure does.
    interrupted = [t.id for t in state.tasks.values() if t.status == "interrupted"]
    if interrupted and not state.finished:
        reasons.append("interrupted: " + ", ".join(interrupted))
    awaiting = [t.id for t in state.tasks.values() if t.status == "awaiting-merge"]
    if awaiting:
        reasons.append("ready to merge: " + ", ".join(awaiting))
    return reasons
