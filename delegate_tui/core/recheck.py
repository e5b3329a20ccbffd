"""Before a stale task merges: its criteria run again on the rebased result (issue 19).

Owns the re-check of finished work whose inputs changed under it. When an
attempt is about to merge and a merge that landed after it started changed a
file it read (a stale input, :func:`conflict_monitor.merges_so_far`), its
``run:`` criteria run again in a scratch worktree holding its commit merged
onto the current integration tip: the result as it would land. The run's
``CriteriaChecked`` for the attempt says how that went; a failure keeps the
work out of the integration branch, and its retry carries the merged diff.
The scratch worktree and branch are removed afterwards. A merge that would
conflict is left to the merge itself to report.
"""

from __future__ import annotations

import asyncio
import os

from delegate_tui.core import conflicts, prompts, workspace
from delegate_tui.core.conflict_monitor import merges_so_far, reader_of
from delegate_tui.core.emitter import Emitter
from delegate_tui.core.events import CriteriaChecked, CriterionResult
from delegate_tui.core.executor import Executor
from delegate_tui.core.integration import Integration
from delegate_tui.core.plan import Plan

#: How long one re-checked criterion may run when its task sets no timeout.
RECHECK_TIMEOUT_S = 600.0


def stale_inputs(plan: Plan, emitter: Emitter, task_id: str) -> list[conflicts.Finding]:
    """Merges since ``task_id``'s latest attempt started that changed what it read."""
    state = emitter.state
    reader = reader_of(plan, state.tasks[task_id])
    if reader is None:
        return []
    return conflicts.stale_inputs([reader], merges_so_far(state))


async def before_merge(
    plan: Plan,
    emitter: Emitter,
    supervisor: Executor,
    integration: Integration,
    task_id: str,
    run_id: str,
) -> str:
    """Re-check the latest attempt of ``task_id`` if an input of it is stale: ``""`` when it
    may merge, else why not (``criteria failed on the new integration tip: ...``)."""
    task = plan.task(task_id)
    runnable = [c for c in task.criteria if c.run]
    stale = stale_inputs(plan, emitter, task_id)
    state = emitter.state
    attempt = state.tasks[task_id].attempts[-1]
    if not runnable or not stale or not attempt.commit or state.isolation != "worktree":
        return ""
    repo = integration.repo
    branch = workspace.task_branch(run_id, task_id, attempt.number) + "-recheck"
    path = workspace.worktree_path(repo, run_id, task_id, attempt.number)
    path = path.with_name(path.name + "-recheck")
    out = emitter.sink(task_id, attempt.number, "criteria")
    why = "; ".join(f"{f.tasks[1]} merged a change to {', '.join(f.paths)}" for f in stale)
    out(f"re-checking on the new integration tip ({why}, which this task read)\n".encode())
    await asyncio.to_thread(workspace.create_branch, repo, branch, state.integration_tip)
    try:
        merged = await asyncio.to_thread(
            workspace.merge_into, repo, branch, attempt.commit, f"re-check {task_id}"
        )
        if not merged.ok:
            return ""  # the merge itself says where it conflicts
        async with integration.git_lock:
            await asyncio.to_thread(workspace.add_worktree, repo, path, branch, merged.commit)
        env = {**os.environ, "DELEGATE_RUN_ID": run_id, "DELEGATE_TASK_ID": task_id}
        results = []
        for criterion in runnable:
            assert criterion.run is not None
            out(f"$ {criterion.run}\n".encode())
            rc, captured = await supervisor.shell(
                task_id,
                criterion.run,
                cwd=path,
                env=env,
                out=out,
                timeout=task.timeout or RECHECK_TIMEOUT_S,
            )
            results.append(
                CriterionResult(
                    text=criterion.text,
                    command=criterion.run,
                    passed=rc == 0 and not supervisor.was_ended(task_id),
                    exit_code=rc,
                    output=prompts.tail_text(captured, 2000),
                )
            )
        passed = all(r.passed for r in results)
        emitter.emit(
            CriteriaChecked(
                task=task_id, attempt=attempt.number, results=tuple(results), passed=passed
            )
        )
        if passed:
            return ""
        failed = next(r for r in results if not r.passed)
        return (
            f"criteria failed on the new integration tip ({why}): {failed.command or failed.text}"
        )
    finally:
        async with integration.git_lock:
            await asyncio.to_thread(workspace.remove_worktree, repo, path)
        await asyncio.to_thread(workspace.git, ["branch", "-D", branch], repo, check=False)
