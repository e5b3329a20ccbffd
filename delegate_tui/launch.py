"""Starting and resuming a run from the command line, once its options are parsed.

Owns :class:`RunRequest` (what ``run``, ``demo`` and ``resume`` ask for), the
checks that refuse a run before anything is created (an unknown agent, a
failed preflight, approvals with no terminal to ask in), the choice between
the full-screen UI and headless mode, and the run's exit code. It prints
only the run's own remarks; a refusal is raised as :class:`Refused` for the
command line to report, so that nothing here exits the process.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import click

from delegate_tui.core import runlog
from delegate_tui.core.agents import PRESETS
from delegate_tui.core.engine import Engine, EngineOptions, PreflightError
from delegate_tui.core.plan import Plan

#: Exit codes of every command: success, a run that ended partial, failed or
#: stopped, and bad input (plan, log, flag) refused before anything started.
EXIT_OK, EXIT_RUN_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class Refused(Exception):
    """Bad input found before the run started; the message names the file or flag."""


@dataclass(frozen=True, slots=True)
class RunRequest:
    """The operator's options for a run: the flags of ``run``, and what ``demo`` asks for.

    ``resume`` reads only ``headless``, ``yes``, ``kill_grace`` and ``theme``:
    the rest of a resumed run comes from its log.
    """

    repo: str | None = None
    """Repository to work in, over the plan's ``repo``."""
    headless: bool = False
    yes: bool = False
    """Approve batches without asking (``approve: true`` tasks still ask)."""
    max_parallel: int | None = None
    isolation: Literal["worktree", "shared", "none"] | None = None
    agent_override: str | None = None
    include_dirty: bool = False
    transport: Literal["pty", "pipes"] | None = None
    finish: bool = False
    kill_grace: float = 5.0
    stream: bool = False
    """Headless: print every agent's output too."""
    theme: str | None = None


def _interactive_terminal() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def start_run(plan: Plan, request: RunRequest) -> int:
    """Check, start and follow a run of ``plan``; the exit code (Refused on bad input)."""
    if request.repo:
        plan = plan.model_copy(update={"repo": str(Path(request.repo).resolve())})
    override = request.agent_override
    if override and override not in plan.resolved_agents():
        raise Refused(
            f"--agent-override: unknown agent '{override}' (presets: {', '.join(sorted(PRESETS))})"
        )
    auto = request.yes or plan.approve == "auto"
    interactive_terminal = _interactive_terminal()
    use_ui = not request.headless and interactive_terminal
    if not request.headless and not use_ui:
        click.echo("delegate-tui: standard output is not a terminal; running headless", err=True)
    auto_merge = None
    if plan.merge == "manual" and not use_ui and (auto or not interactive_terminal):
        auto_merge = True
        click.echo(
            "delegate-tui: merge: manual needs an operator at the UI; "
            "this headless run merges clean work automatically",
            err=True,
        )
    engine = Engine(
        plan,
        EngineOptions(
            auto_approve=request.yes,
            max_parallel=request.max_parallel,
            isolation=request.isolation,
            agent_override=override,
            include_dirty=request.include_dirty,
            kill_grace_s=request.kill_grace,
            transport=request.transport,
            finish=request.finish,
            auto_merge=auto_merge,
            hold_at_end=use_ui,
        ),
    )
    try:
        engine.preflight()
    except PreflightError as exc:
        raise Refused(str(exc)) from exc
    needs_operator = [t.id for t in engine.plan.tasks if t.approve]
    if not interactive_terminal and (not auto or needs_operator):
        what = (
            f"tasks {', '.join(needs_operator)} have `approve: true`"
            if auto
            else "batches wait for approval (approve: batch)"
        )
        raise Refused(
            f"{plan.source}: {what}, and there is no terminal to ask in; pass --yes or set approve: auto"
        )
    if use_ui:
        from delegate_tui.ui.app import DelegateApp

        code = DelegateApp(engine, theme=request.theme).run()
        state = engine.state
        click.echo(
            f"run {state.status}; log: {engine.log_path}" if state.run_id else "run not started"
        )
        return code if code is not None and state.finished else EXIT_RUN_FAILED
    from delegate_tui.headless import run_headless

    state = asyncio.run(
        run_headless(
            engine, interactive=not auto or bool(needs_operator), stream_output=request.stream
        )
    )
    click.echo(f"log: {engine.log_path}")
    return EXIT_OK if state.status == "succeeded" else EXIT_RUN_FAILED


def resume_run(path: Path, request: RunRequest) -> int:
    """Take over the cut-off run whose log is ``path`` and follow it; the exit code."""
    interactive_terminal = _interactive_terminal()
    use_ui = not request.headless and interactive_terminal
    try:
        engine = Engine.from_log(
            path,
            EngineOptions(
                auto_approve=request.yes, kill_grace_s=request.kill_grace, hold_at_end=use_ui
            ),
        )
    except (runlog.LogError, PreflightError) as exc:
        raise Refused(str(exc)) from exc
    auto = request.yes or engine.state.auto_approve
    if not interactive_terminal and not auto:
        raise Refused(
            f"{path}: batches wait for approval, and there is no terminal to ask in; pass --yes"
        )
    if use_ui:
        from delegate_tui.ui.app import DelegateApp

        DelegateApp(engine, theme=request.theme).run()
    else:
        from delegate_tui.headless import run_headless

        asyncio.run(run_headless(engine, interactive=not auto))
    state = engine.state
    click.echo(f"run {state.status}; log: {path}")
    return EXIT_OK if state.status == "succeeded" else EXIT_RUN_FAILED
