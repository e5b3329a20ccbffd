"""What a live finding tells the agents it names (issue 21), as pure functions.

Owns the words and the "who hears it" of the notes. An agent in an interactive
session (a pseudo-terminal, no structured stream) gets a one-line note typed
into its input when a finding names its task, once per finding and attempt
(the engine types it and logs an ``InputSent`` by ``delegate-tui``); an agent
in a structured one-shot mode cannot be typed to, so the findings that named
its attempt go into its next retry or session resume prompt. Stale inputs
reach a retry with their diff by :func:`conflict_monitor.stale_context`, so
the prompt's list leaves them out.
"""

from __future__ import annotations

from delegate_tui.core.agents import AgentSpec
from delegate_tui.core.events import ConflictDetected
from delegate_tui.core.plan import Plan
from delegate_tui.core.state import AttemptState, RunState

#: Findings an agent is told about: the ones that ask something of it.
TOLD_KINDS = frozenset(
    {"overlap", "predicted-conflict", "out-of-scope", "undeclared-collision", "stale-input"}
)
#: The start of every typed note (and how a note is told from the operator's words).
PREFIX = "[delegate-tui]"
#: Paths named in one note before the rest are counted.
NOTE_PATHS = 3


def _paths(paths: tuple[str, ...]) -> str:
    shown = ", ".join(paths[:NOTE_PATHS])
    return shown + (f" (+{len(paths) - NOTE_PATHS} more)" if len(paths) > NOTE_PATHS else "")


def sentence(finding: ConflictDetected, task_id: str) -> str:
    """What ``finding`` means to the agent of ``task_id``, in one sentence (``""``: nothing)."""
    if finding.kind not in TOLD_KINDS or task_id not in finding.tasks:
        return ""
    others = [t for t in finding.tasks if t != task_id]
    other = others[0] if others else ""
    paths = _paths(finding.paths)
    if finding.kind == "stale-input":
        if finding.tasks[0] != task_id:
            return ""  # the merged task is done; the reader is the one to tell
        return (
            f"while you worked, {other} merged a change to {paths}, which you read; "
            "read it again before you rely on it."
        )
    if finding.kind == "overlap":
        return (
            f"{other} is changing {paths} too; keep to your own files and say in your "
            "final message what you need there."
        )
    if finding.kind == "predicted-conflict":
        with_whom = f"{other}'s work" if other else "what has merged meanwhile"
        return f"your changes to {paths} will not merge cleanly with {with_whom}; leave them be."
    if finding.kind == "undeclared-collision" and finding.tasks[0] == task_id:
        return (
            f"{paths} belongs to task {other}; undo your change there and say in your "
            "final message what you need instead."
        )
    if finding.kind == "undeclared-collision":
        return ""  # the owner did nothing wrong
    return (
        f"you changed {paths}, outside the files this task may change; undo that and say "
        "in your final message what you need instead."
    )


def typed_note(finding: ConflictDetected, task_id: str) -> str:
    """The line typed into an interactive agent's input (``""``: nothing to say)."""
    said = sentence(finding, task_id)
    return f"{PREFIX} {said}" if said else ""


def typed_to(
    plan: Plan, state: RunState, agents: dict[str, AgentSpec], finding: ConflictDetected
) -> list[tuple[str, int, str]]:
    """``(task, attempt, line)`` for each agent to type ``finding``'s note to: a running
    task it names, in an interactive session, that has not had this line yet."""
    out = []
    for task_id in finding.tasks:
        task = state.tasks.get(task_id)
        if task is None or task.status != "running" or task.attempt is None:
            continue
        attempt = task.attempt
        spec = agents.get(plan.agent_of(plan.task(task_id)))
        if attempt.transport != "pty" or spec is None or spec.stream is not None:
            continue  # a structured one-shot agent hears of it at its next attempt
        line = typed_note(finding, task_id)
        if line and line not in attempt.inputs:
            out.append((task_id, attempt.number, line))
    return out


def while_you_worked(state: RunState, task_id: str, attempt: AttemptState | None) -> str:
    """For the next prompt: what the findings that named ``attempt`` asked of it, one a
    line (stale inputs aside: their diffs come with them)."""
    if attempt is None or not attempt.started_ts:
        return ""
    lines: list[str] = []
    for finding in state.finding_history:
        if finding.kind == "stale-input" or finding.ts < attempt.started_ts:
            continue
        said = sentence(finding, task_id)
        if said and f"- {said}" not in lines:
            lines.append(f"- {said}")
    return "\n".join(lines)
