"""Checks before a run starts: the repository, git, and every agent on PATH.

Owns the promise that a run refused is refused before anything is created:
no branch, no worktree, no log. :func:`check` looks at the plan's folder
(a git repository with commits, a base that resolves, git new enough for
``merge-tree --write-tree``), resolves the agents, and checks that each
task's agent is installed; it returns what the run needs (the repository's
top, the isolation mode, the resolved agents) and warnings such as a dirty
tree. :func:`with_agent` applies ``--agent`` to a plan.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from delegate_tui.core import sandbox, workspace
from delegate_tui.core.agents import AgentError, AgentSpec, build_argv
from delegate_tui.core.plan import Plan


class PreflightError(Exception):
    """The run cannot start; nothing was created. The message names what and where."""


@dataclass(frozen=True, slots=True)
class Preflight:
    """What the checks found: where and how the run goes."""

    repo: Path
    isolation: str
    agents: dict[str, AgentSpec]
    warnings: tuple[str, ...]


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
    try:
        sandbox.check_plan(plan, Path.home())
    except sandbox.SandboxError as exc:
        raise PreflightError(str(exc)) from None
    return Preflight(repo, mode, agents, tuple(warnings))


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
