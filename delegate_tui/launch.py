"""Starting and resuming a run from the command line, once its options are parsed.

Owns :class:`RunRequest` (what ``run``, ``demo`` and ``resume`` ask for), the
checks that refuse a run before anything is created (an unknown agent, a
failed preflight, approvals with no terminal to ask in), the choice between
the full-screen UI and headless mode, and the run's exit code. It prints
only the run's own remarks; a refusal is raised as :class:`Refused` for the
command line to report, so that nothing here exits the process.

A run with the UI is run by a service process of its own; the UI's process
checks it with :mod:`~delegate_tui.core.preflight` alone and never imports the
engine, which only a headless run and the service load. The service runs the
plan that was checked, handed over as JSON in the run's folder
(:data:`CHECKED_PLAN`): not the file read again, which may have changed since,
and whose YAML takes a second parse (about 0.2 s for 2,000 tasks). Every import beyond
this module's first lines is made by the function that needs it, so that
``delegate-tui --help`` and the commands that read logs start quickly.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import click

if TYPE_CHECKING:
    import subprocess

    from delegate_tui.core.engine import Engine
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
    sandbox: Literal["off", "worktree", "scope"] | None = None
    """Run every task in this sandbox mode, over the plan and its tasks."""
    finish: bool = False
    kill_grace: float = 5.0
    stream: bool = False
    """Headless: print every agent's output too."""
    theme: str | None = None
    detach: bool = False
    """Start the run in the background and return (``run --detach``)."""
    executor: str | None = None
    """Where agents run, over the plan's ``executor`` (``local``, ``ray``, ``ray://HOST:PORT``)."""


def _interactive_terminal() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def _requested(plan: Plan, request: RunRequest) -> Plan:
    """``plan`` in the request's repository; an unknown ``--agent-override`` refused."""
    if request.repo:
        plan = plan.model_copy(update={"repo": str(Path(request.repo).resolve())})
    override = request.agent_override
    if override and override not in plan.resolved_agents():
        from delegate_tui.core.agents import PRESETS

        raise Refused(
            f"--agent-override: unknown agent '{override}' (presets: {', '.join(sorted(PRESETS))})"
        )
    return plan


def _engine_for(
    plan: Plan, request: RunRequest, *, operator: bool, run_id: str | None = None
) -> Engine:
    """The engine a request asks for (``operator``: someone attached decides at the end)."""
    from delegate_tui.core.engine import Engine, EngineOptions

    plan = _requested(plan, request)
    auto = request.yes or plan.approve == "auto"
    auto_merge = None
    if plan.merge == "manual" and not operator and (auto or not _interactive_terminal()):
        auto_merge = True
        click.echo(
            "delegate-tui: merge: manual needs an operator at the UI; "
            "this headless run merges clean work automatically",
            err=True,
        )
    return Engine(
        plan,
        EngineOptions(
            auto_approve=request.yes,
            max_parallel=request.max_parallel,
            isolation=request.isolation,
            agent_override=request.agent_override,
            include_dirty=request.include_dirty,
            kill_grace_s=request.kill_grace,
            transport=request.transport,
            sandbox=request.sandbox,
            finish=request.finish,
            auto_merge=auto_merge,
            hold_at_end=operator,
            run_id=run_id,
            executor=request.executor,
        ),
    )


def _checked_for_service(plan: Plan, request: RunRequest, run_id: str) -> Path:
    """Refuse (:class:`Refused`) a run the service's engine would refuse, as it would,
    without an engine; the repository it runs in."""
    from delegate_tui.core import preflight

    plan = preflight.prepare(
        _requested(plan, request),
        agent_override=request.agent_override,
        sandbox_mode=request.sandbox,
    )
    try:
        found = preflight.check_new_run(
            plan,
            isolation=request.isolation,
            include_dirty=request.include_dirty,
            executor=request.executor,
            kill_grace_s=request.kill_grace,
            run_id=run_id,
        )
    except preflight.PreflightError as exc:
        raise Refused(str(exc)) from exc
    return found.repo


def start_run(plan: Plan, request: RunRequest) -> int:
    """Check, start and follow a run of ``plan``; the exit code (Refused on bad input).

    With the UI (or ``--detach``) the run goes to a run service of its own and the
    UI attaches to it; headless, it runs in this process, as CI wants it.
    """
    from delegate_tui.core.preflight import PreflightError

    auto = request.yes or plan.approve == "auto"
    interactive_terminal = _interactive_terminal()
    use_ui = not request.headless and not request.detach and interactive_terminal
    if not request.headless and not request.detach and not use_ui:
        click.echo("delegate-tui: standard output is not a terminal; running headless", err=True)
    if use_ui or request.detach:
        from delegate_tui.core.runlog import new_run_id, runs_dir

        run_id = new_run_id()
        repo = _checked_for_service(plan, request, run_id)
        return _serve(
            # Absolute, not resolved: through a symlink, the plan's folder (which its
            # `repo` is relative to) stays the one it was checked in.
            ["--plan", os.path.abspath(plan.source)],
            runs_dir(repo) / run_id,
            request,
            checked=plan,
        )
    engine = _engine_for(plan, request, operator=False)
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
    import asyncio

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
    from delegate_tui.core import preflight
    from delegate_tui.core.runlog import LogError
    from delegate_tui.core.service import service_status

    if service_status(path.parent) is not None:
        raise Refused(
            f"run {path.parent.name} is live (its service runs it): "
            f"`delegate-tui attach {path.parent.name}` watches it"
        )
    interactive_terminal = _interactive_terminal()
    use_ui = not request.headless and interactive_terminal
    if use_ui or request.detach:
        try:  # refused here, before a service starts
            preflight.resumable(path, kill_grace_s=request.kill_grace)
        except (LogError, preflight.PreflightError) as exc:
            raise Refused(str(exc)) from exc
        return _serve(["--resume", str(path.resolve())], path.parent, request)
    from delegate_tui.core.engine import Engine, EngineOptions

    try:
        engine = Engine.from_log(
            path,
            EngineOptions(
                auto_approve=request.yes, kill_grace_s=request.kill_grace, hold_at_end=use_ui
            ),
        )
    except (LogError, preflight.PreflightError) as exc:
        raise Refused(str(exc)) from exc
    auto = request.yes or engine.state.auto_approve
    if not interactive_terminal and not auto:
        raise Refused(
            f"{path}: batches wait for approval, and there is no terminal to ask in; pass --yes"
        )
    import asyncio

    from delegate_tui.headless import run_headless

    asyncio.run(run_headless(engine, interactive=not auto))
    state = engine.state
    click.echo(f"run {state.status}; log: {path}")
    return EXIT_OK if state.status == "succeeded" else EXIT_RUN_FAILED


# ---------------------------------------------------------------- the run service

#: The plan a run's service runs, as the process that started it checked it (JSON in the
#: run's folder, removed once read).
CHECKED_PLAN = "plan-checked.json"


def _hand_over(plan: Plan, run_dir: Path) -> Path:
    """Write ``plan`` for the service of the run in ``run_dir``; the file."""
    handed = run_dir / CHECKED_PLAN
    data = {"plan": plan.model_dump(mode="json", by_alias=True), "field_lines": plan.field_lines}
    handed.write_text(json.dumps(data))
    return handed


def _handed_over(checked: Path, source: Path) -> Plan:
    """The plan handed over in ``checked`` (then removed), as read from ``source``."""
    from delegate_tui.core.plan import Plan

    data = json.loads(checked.read_text())
    checked.unlink()
    plan = Plan.model_validate({**data["plan"], "source": str(source)})
    return plan.model_copy(update={"field_lines": data["field_lines"]})


def _serve(
    how: list[str], run_dir: Path, request: RunRequest, *, checked: Plan | None = None
) -> int:
    """Start a run service for the run in ``run_dir`` in its own session, then attach the
    UI (or, detached, return once it listens). ``checked``: the plan to run, as checked
    here (the service takes it from :data:`CHECKED_PLAN`)."""
    import subprocess

    from delegate_tui.core.client import SERVICE_LOG

    run_id = run_dir.name
    run_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(run_dir, 0o700)
    if checked is not None:
        how = [*how, "--checked", str(_hand_over(checked, run_dir))]
    settings = {k: v for k, v in dataclasses.asdict(request).items() if k != "theme"}
    with (run_dir / SERVICE_LOG).open("ab") as out:
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "delegate_tui",
                "_service",
                *how,
                "--run-id",
                run_id,
                "--request",
                json.dumps(settings),
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,  # no terminal's hang-up reaches it
            close_fds=True,
        )
    if not request.detach:  # the UI draws while the service starts
        return attach_run(run_dir, theme=request.theme, starting=child)
    from delegate_tui.core.client import SERVICE_START_S
    from delegate_tui.core.runlog import LOG_NAME
    from delegate_tui.core.service import socket_path

    sock, log = socket_path(run_dir), run_dir / LOG_NAME
    deadline = time.monotonic() + SERVICE_START_S
    while not sock.exists():
        ended = child.poll() is not None
        if ended and log.exists():
            break  # a quick run that is already over
        if ended or time.monotonic() > deadline:
            tail = (run_dir / SERVICE_LOG).read_text(errors="replace").strip().splitlines()[-5:]
            raise Refused(
                "the run service did not start"
                + (": " + " / ".join(tail) if tail else f" (see {run_dir / SERVICE_LOG})")
            )
        time.sleep(0.02)
    click.echo(f"run {run_id} goes on in the background (log: {log})")
    click.echo(f"  watch it: delegate-tui attach {run_id}")
    click.echo(f"  end it:   delegate-tui stop {run_id}")
    return EXIT_OK


def attach_run(
    run_dir: Path, *, theme: str | None = None, starting: subprocess.Popen[bytes] | None = None
) -> int:
    """Open the full-screen UI on the live run in ``run_dir``; the exit code.

    ``starting``: the service just started for it (the UI opens without waiting).
    """
    from delegate_tui.core.client import RunClient
    from delegate_tui.core.logged_plan import read_plans_as_logged
    from delegate_tui.core.service import service_status
    from delegate_tui.ui.app import DelegateApp

    read_plans_as_logged()  # this process views the run: no pydantic before its first frame
    if starting is None and service_status(run_dir) is None:
        raise Refused(
            f"no run service is running for {run_dir}; the run is not live "
            f"(`delegate-tui resume {run_dir.name}` continues it)"
        )
    client = RunClient(run_dir, starting=starting)
    DelegateApp(client, theme=theme).run()
    state = client.state
    if client.detached:
        click.echo(f"detached: run {state.run_id} goes on")
        click.echo(f"  watch it again: delegate-tui attach {state.run_id}")
        click.echo(f"  end it:         delegate-tui stop {state.run_id}")
        return EXIT_OK
    click.echo(f"run {state.status}; log: {client.log_path}")
    return EXIT_OK if state.status == "succeeded" else EXIT_RUN_FAILED


def stop_run(run_dir: Path, reason: str = "stopped by the operator") -> int:
    """End a live run cleanly (agents ended, log says stopped, resumable); the exit code."""
    import asyncio

    from delegate_tui.core.client import RunClient, ServiceGone

    async def stop() -> RunClient:
        client = RunClient(run_dir)
        await client.connect()
        if client.state.finished:
            return client
        refused = client.stop(reason)
        if refused:
            raise Refused(refused)
        await client.run()
        return client

    try:
        client = asyncio.run(stop())
    except ServiceGone as exc:
        raise Refused(f"{exc}; nothing to stop") from exc
    click.echo(f"run {client.state.run_id} {client.state.status}; log: {client.log_path}")
    return EXIT_OK


def serve_run(
    how: Literal["plan", "resume"],
    path: Path,
    run_id: str,
    settings: dict[str, object],
    checked: Path | None = None,
) -> int:
    """The run service's process: run the engine and serve it until the run ends.

    ``checked``: the plan file's content as the launching process checked it (see
    :data:`CHECKED_PLAN`); without it the plan file at ``path`` is read."""
    import asyncio

    from delegate_tui.core.engine import Engine, EngineOptions
    from delegate_tui.core.service import RunService

    request = RunRequest(**settings)  # type: ignore[arg-type]
    if how == "plan":
        from delegate_tui.core.plan import load_plan

        plan = _handed_over(checked, path) if checked is not None else load_plan(path)
        engine = _engine_for(plan, request, operator=True, run_id=run_id)
        engine.preflight()
    else:
        engine = Engine.from_log(
            path,
            EngineOptions(
                auto_approve=request.yes, kill_grace_s=request.kill_grace, hold_at_end=True
            ),
        )

    async def serve() -> None:
        engine.install_signal_handlers(hang_up=False)
        await RunService(engine).run()

    asyncio.run(serve())
    return EXIT_OK if engine.state.status == "succeeded" else EXIT_RUN_FAILED
