"""Checks before a run starts: the repository, git, every agent on PATH, the executor.

Owns the promise that a run refused is refused before anything is created:
no branch, no worktree, no log. :func:`check` looks at the plan's folder
(a git repository with commits, a base that resolves, git new enough for
``merge-tree --write-tree``), resolves the agents, and checks that each
task's agent is installed; it returns what the run needs (the repository's
top, the isolation mode, the resolved agents) and warnings such as a dirty
tree. :func:`check_executor` refuses an executor that cannot run the plan,
:func:`load_prices` a price file that cannot be read. :func:`prepare` applies
``--agent`` and ``--sandbox`` to a plan.

:func:`check_new_run` and :func:`resumable` are every check of a new run and of a
resumed one, as the engine makes them, for a process that starts no engine: the
UI's, which starts the run service only once its run would be accepted. This
module imports neither the engine nor the executors' process machinery.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from delegate_tui.core import sandbox, workspace
from delegate_tui.core.agents import AgentError, AgentSpec, build_argv
from delegate_tui.core.executor import Executor, ExecutorError, make_executor, parse_executor
from delegate_tui.core.plan import Plan
from delegate_tui.core.prices import PriceError, PriceTable
from delegate_tui.core.replay import final_state

if TYPE_CHECKING:
    from delegate_tui.core.runlog import ReadReport
    from delegate_tui.core.state import RunState


class PreflightError(Exception):
    """The run cannot start; nothing was created. The message names what and where."""


@dataclass(frozen=True, slots=True)
class Preflight:
    """What the checks found: where and how the run goes."""

    repo: Path
    isolation: str
    agents: dict[str, AgentSpec]
    warnings: tuple[str, ...]


def prepare(plan: Plan, *, agent_override: str | None, sandbox_mode: str | None) -> Plan:
    """The plan a run runs: ``--agent-override`` and ``--sandbox`` applied to ``plan``."""
    return sandbox.with_mode(with_agent(plan, agent_override), sandbox_mode)


def with_agent(plan: Plan, override: str | None) -> Plan:
    """``plan`` with every task on agent ``override`` (``--agent``).

    Tasks already on an agent built from the override keep it (and its args).
    """
    if not override:
        return plan
    agents = plan.resolved_agents()

    def keeps(name: str) -> bool:
        spec = agents.get(name)
        return spec is not None and override in (spec.name, spec.preset)

    tasks = tuple(
        t if keeps(plan.agent_of(t)) else t.model_copy(update={"agent": override})
        for t in plan.tasks
    )
    return plan.model_copy(update={"tasks": tasks})


def check(plan: Plan, *, isolation: str | None, include_dirty: bool) -> Preflight:
    """Check everything that can be checked before anything is created.

    Raises :class:`PreflightError` naming the file and field at fault.
    """
    repo = plan.repo_path()
    if not repo.is_dir():
        raise PreflightError(f"{plan.source}: repo: folder {repo} does not exist")
    top = workspace.find_repo(repo)
    mode = isolation or plan.isolation or ("worktree" if top else "none")
    warnings: list[str] = []
    if mode in ("worktree", "shared"):
        if top is None:
            raise PreflightError(
                f"{plan.source}: isolation: {mode} needs a git repository, and "
                f"{repo} is not one (use isolation: none, or run `git init`)"
            )
        repo = top
        if mode == "worktree" and workspace.git_version() < workspace.MIN_GIT:
            raise PreflightError("git 2.38 or newer is needed (for git merge-tree --write-tree)")
        if not workspace.has_commits(repo):
            raise PreflightError(f"{repo}: the repository has no commits yet; commit once first")
        busy = workspace.operation_in_progress(repo)
        if busy:
            raise PreflightError(
                f"{repo}: {busy} is in progress; finish or abort it first "
                "(agents would start from its half-done state)"
            )
        try:
            workspace.rev_parse(repo, plan.base)
        except workspace.GitError as exc:
            raise PreflightError(f"{plan.source}: base: {exc}") from None
        dirty = workspace.dirty_paths(repo)
        if dirty and mode == "worktree":
            warnings.append(_dirty_warning(dirty, include_dirty))
    agents = check_agents(plan)
    check_sandboxes(plan)
    warnings += limit_warnings(plan, agents)
    return Preflight(repo, mode, agents, tuple(warnings))


def limit_warnings(plan: Plan, agents: dict[str, AgentSpec]) -> list[str]:
    """A ``budget_usd`` or ``max_turns`` that cannot act: its task's agent prints no
    stream delegate-tui reads (tokens, cost and turns come from claude's, codex's and
    gemini's structured output), so nothing would ever stop it."""
    blind: dict[str, list[str]] = {}
    for task in plan.tasks:
        spec = agents.get(plan.agent_of(task))
        if spec is None or spec.stream is not None or spec.uses_task_command:
            continue
        limited = task.budget_usd or task.max_turns or plan.budget_usd or plan.max_turns
        if limited:
            blind.setdefault(spec.name, []).append(task.id)
    return [
        f"the budget and turn limits do not act on {', '.join(ids)}: their agent {name} "
        "prints no stream delegate-tui reads for cost and turns (claude, codex and gemini do)"
        for name, ids in blind.items()
    ]


def _dirty_warning(dirty: list[str], include_dirty: bool) -> str:
    shown = ", ".join(dirty[:5]) + (f" and {len(dirty) - 5} more" if len(dirty) > 5 else "")
    return f"your working tree has uncommitted changes ({shown}); " + (
        "they are included in the agents' starting point (--include-dirty)"
        if include_dirty
        else "agents start from the last commit without them (use --include-dirty to include them)"
    )


def check_agents(plan: Plan) -> dict[str, AgentSpec]:
    """The plan's agents, resolved; every task's agent known and installed."""
    try:
        agents = plan.resolved_agents()
    except AgentError as exc:
        raise PreflightError(f"{plan.source}: agents.{exc.name}: {exc}") from None
    for task in plan.tasks:
        name = plan.agent_of(task)
        spec = agents.get(name)
        if spec is None:
            raise PreflightError(f"{plan.where(task.id, 'agent')}: unknown agent '{name}'")
        if spec.uses_task_command:
            if task.command is None:
                raise PreflightError(
                    f"{plan.where(task.id, 'command')}: the shell agent needs `command`"
                )
            continue
        exe = build_argv(spec, prompt="", task_id=task.id, workdir="", last_message="")[0]
        if os.sep not in exe and shutil.which(exe) is None:
            raise PreflightError(
                f"{plan.where(task.id, 'agent')}: agent '{name}' runs '{exe}', which is not "
                "installed (not found on PATH)"
            )
    return agents


def check_executor(plan: Plan, isolation: str, executor: Executor) -> None:
    """Refuse a run whose executor cannot run it (Ray missing or out of reach, a
    cluster asked for isolation other than worktree or for a sandbox)."""
    if executor.name != "local" and isolation not in ("", "worktree"):
        raise PreflightError(
            f"executor: {executor.name} needs isolation: worktree "
            f"(this run has isolation: {isolation})"
        )
    boxed = sandbox.sandboxed_tasks(plan)
    if executor.name != "local" and boxed:
        raise PreflightError(
            f"executor: {executor.name} runs no sandbox yet (tasks "
            f"{', '.join(boxed)} ask for one): use sandbox: off, or the local executor"
        )
    try:
        executor.check()
    except ExecutorError as exc:
        raise PreflightError(str(exc)) from None


def _check_executor_named(
    plan: Plan, isolation: str, value: str, kill_grace_s: float, run_id: str
) -> None:
    """:func:`check_executor` for the executor ``value`` names. The local executor
    passes every check, so none is made for it (nor its supervisor imported)."""
    if parse_executor(value)[0] != "local":
        check_executor(plan, isolation, make_executor(value, kill_grace_s, run_id))


def load_prices() -> PriceTable:
    """The price table the run estimates costs with; refused if a price file is unreadable."""
    try:
        return PriceTable.load()
    except PriceError as exc:
        raise PreflightError(str(exc)) from None


def check_new_run(
    plan: Plan,
    *,
    isolation: str | None,
    include_dirty: bool,
    executor: str | None,
    kill_grace_s: float,
    run_id: str,
) -> Preflight:
    """Every check :meth:`Engine.preflight <delegate_tui.core.engine.Engine.preflight>`
    makes of a new run of ``plan`` (already :func:`prepare`d), in its order; what it found.

    ``executor`` is the command line's, over the plan's.
    """
    found = check(plan, isolation=isolation, include_dirty=include_dirty)
    _check_executor_named(plan, found.isolation, executor or plan.executor, kill_grace_s, run_id)
    load_prices()
    return found


def read_resumable(log_path: Path) -> tuple[RunState, ReadReport]:
    """The state of the run ``log_path`` records, if it can be resumed: it has begun,
    and has not ended (a stopped run goes on). Raises :class:`PreflightError`, or
    :class:`~delegate_tui.core.runlog.LogError` for a log that cannot be read."""
    state, report = final_state(log_path)
    if state.plan is None or not state.run_id:
        raise PreflightError(f"{log_path}: not a delegate-tui run log (no readable RunStarted)")
    if state.finished and state.status != "stopped":
        raise PreflightError(
            f"{log_path}: run {state.run_id} already ended ({state.status}); nothing to resume"
        )
    return state, report


def check_sandboxes(plan: Plan) -> None:
    """Refuse a plan whose sandboxes cannot be made here (a resumed run's machine may
    not be the one that started it)."""
    try:
        sandbox.check_plan(plan, Path.home())
    except sandbox.SandboxError as exc:
        raise PreflightError(str(exc)) from None


def resumable(log_path: Path, *, kill_grace_s: float) -> RunState:
    """Every check :meth:`Engine.from_log <delegate_tui.core.engine.Engine.from_log>`
    makes of the run ``log_path`` records, in its order; the run's state."""
    state, _report = read_resumable(log_path)
    plan = state.plan
    assert plan is not None  # read_resumable refused a log without one
    check_sandboxes(plan)
    _check_executor_named(plan, state.isolation, plan.executor, kill_grace_s, state.run_id)
    return state
