"""Asking an agent one question: a read-only consult task, run by the engine.

Owns the "ask the agent" half of ``delegate-tui draft``. A question becomes a
one-task plan (``kind: consult``, the chosen agent) that the real
:class:`~delegate_tui.core.engine.Engine` runs like any other: a fresh
worktree from the repository's HEAD, the same presets and argv templates, the
scope section that tells the agent to change nothing, the conflict monitor
that flags it if it does, and a run log (so ``delegate-tui stats`` and
``replay`` show what drafting did and cost). The answer is the agent's last
message when it writes one (codex, the demo agent), else everything it
printed, as plain text.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from delegate_tui.core.agents import PRESETS
from delegate_tui.core.drafting import Answer, DraftError
from delegate_tui.core.engine import Engine, EngineOptions, PreflightError
from delegate_tui.core.events import (
    AgentMessage,
    AgentResult,
    ConflictDetected,
    Event,
    TaskExited,
    TaskFinished,
    TaskOutput,
)
from delegate_tui.core.history import DRAFT_TASK
from delegate_tui.core.metrics import cost_text, tokens_text
from delegate_tui.core.plan import Plan, Task
from delegate_tui.core.prompts import plain_text
from delegate_tui.core.runlog import message_path

#: Agents tried, in order, when ``draft`` is given none (``demo`` always works).
DRAFTING_AGENTS = ("claude", "codex", "gemini")
#: How long one drafting answer may take.
CONSULT_TIMEOUT_S = 900.0


def default_agent() -> str:
    """The first of claude, codex and gemini installed, else ``demo``."""
    for name in DRAFTING_AGENTS:
        if shutil.which(PRESETS[name].command[0]):
            return name
    return "demo"


def repo_files(repo: Path, limit: int = 2000) -> list[str]:
    """The repository's tracked files (what the drafting prompt lists)."""
    try:
        out = subprocess.run(
            ["git", "ls-files"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    return out.splitlines()[:limit]


def consult_plan(repo: Path, agent: str, prompt: str, *, name: str, timeout: float) -> Plan:
    """The one-task plan that asks ``agent`` the question ``prompt`` in ``repo``."""
    return Plan(
        name=name,
        repo=str(repo.resolve()),
        agent=agent,
        approve="auto",
        merge="auto",
        max_parallel=1,
        tasks=(
            Task(
                id=DRAFT_TASK,  # how `stats --all` knows a drafting consult
                title=name,
                kind="consult",
                prompt=prompt,
                timeout=timeout,
            ),
        ),
    )


def ask(
    repo: Path,
    agent: str,
    prompt: str,
    *,
    name: str = "draft",
    timeout: float = CONSULT_TIMEOUT_S,
    kill_grace_s: float = 5.0,
    on_output: Callable[[bytes], None] | None = None,
) -> Answer:
    """Run ``agent`` on ``prompt`` as a consult task in a fresh worktree of ``repo``.

    Raises :class:`DraftError` when it cannot start (unknown or missing agent,
    not a repository) or did not finish its answer.
    """
    plan = consult_plan(repo, agent, prompt, name=name, timeout=timeout)
    engine = Engine(plan, EngineOptions(auto_approve=True, kill_grace_s=kill_grace_s))
    printed = bytearray()
    said: list[str] = []  # the agent's own words, from its structured stream
    result: list[str] = []
    notes: list[str] = []
    ended: dict[str, object] = {}

    def listen(ev: Event) -> None:
        if type(ev) is TaskOutput:
            if ev.stream == "agent":
                printed.extend(ev.data)
                if on_output is not None:
                    on_output(ev.data)
        elif isinstance(ev, ConflictDetected) and ev.severity == "error":
            notes.append(
                f"the drafting agent changed {', '.join(ev.paths)} although it was told not "
                "to; its change was not used"
            )
        elif isinstance(ev, AgentMessage) and ev.kind == "assistant":
            said.append(ev.text)
        elif isinstance(ev, AgentResult) and ev.text.strip():
            result.append(ev.text)
        elif isinstance(ev, TaskExited):
            ended["seconds"] = ev.duration_s
        elif isinstance(ev, TaskFinished):
            ended["status"], ended["reason"] = ev.status, ev.reason

    engine.subscribe(listen)
    try:
        engine.preflight()
    except PreflightError as exc:
        message = str(exc).replace("plan: tasks[0].agent", "--agent")
        raise DraftError(message) from None
    asyncio.run(engine.run())
    status = ended.get("status")
    last = message_path(engine.run_dir, DRAFT_TASK, 1)
    if status != "succeeded":
        reason = ended.get("reason") or status or "it did not finish"
        tail = plain_text(bytes(printed)).strip().splitlines()[-5:]
        raise DraftError(
            f"{agent} did not answer (run {engine.run_id}: {reason})"
            + ("\n  " + "\n  ".join(tail) if tail else "")
        )
    # The answer: the last message the agent wrote to its file, else its stream's final
    # result, else everything it said, else everything it printed.
    candidates = [
        last.read_text(encoding="utf-8", errors="replace") if last.is_file() else "",
        result[-1] if result else "",
        "\n".join(said),
        plain_text(bytes(printed)),
    ]
    text = next((c for c in candidates if c.strip()), "")
    seconds = ended.get("seconds")
    return Answer(
        text=text,
        seconds=float(seconds) if isinstance(seconds, int | float) else 0.0,
        run_id=engine.run_id,
        cost=spent(engine),
        notes=tuple(notes),
    )


def spent(engine: Engine) -> str:
    """``12.3k tok, ~$0.04``: what the consult's agent reported using (empty if nothing)."""
    task = engine.state.tasks.get(DRAFT_TASK)
    if task is None:
        return ""
    parts = [tokens_text(task.tokens), cost_text(task.cost_usd, task.cost_source)]
    return ", ".join(p for p in parts if p)
