"""When the operator's attention is needed, decided over state.

Owns the heuristics behind the UI's bell and toasts, as pure functions so the
UI only shows what they say: a batch waiting for approval, a task that
failed, a merge that conflicted, a task the operator killed, a task a crash or
stop interrupted (after ``resume``), a run that sits idle because a skip left
tasks blocked, and an agent that seems to wait for input (no output for a
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
    # Killed by the operator: their dependents are blocked until a retry or a skip.
    killed = [t.id for t in state.tasks.values() if t.status == "killed"]
    if killed and not state.finished:
        reasons.append("killed: " + ", ".join(killed))
    if not state.finished and not state.active and (skipped := blocked_by_skips(state)):
        reasons.append(skipped)
    awaiting = [t.id for t in state.tasks.values() if t.status == "awaiting-merge"]
    if awaiting:
        reasons.append("ready to merge: " + ", ".join(awaiting))
    return reasons


def blocked_by_skips(state: RunState) -> str:
    """``blocked: b +1 (a skipped)``: tasks that cannot start because a task they
    depend on (directly or through other blocked tasks) was skipped; empty if none.
    The first task is named and the rest counted, so the flag fits 80 columns (the
    sidebar lists them all under Held back)."""
    by_root: dict[str, list[str]] = {}
    for task in state.tasks.values():
        if task.status != "blocked":
            continue
        root, seen = task.blocked_by, {task.id}
        while root in state.tasks and state.tasks[root].status == "blocked" and root not in seen:
            seen.add(root)
            root = state.tasks[root].blocked_by
        if root in state.tasks and state.tasks[root].status == "skipped":
            by_root.setdefault(root, []).append(task.id)
    return (
        "blocked: "
        + "; ".join(
            f"{ids[0]}{f' +{len(ids) - 1}' if len(ids) > 1 else ''} ({root} skipped)"
            for root, ids in by_root.items()
        )
        if by_root
        else ""
    )
