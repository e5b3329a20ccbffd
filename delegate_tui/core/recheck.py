"""Before a stale task merges: its criteria run again on the rebased result (issue 19).

Owns the :class:`Gate` that stands between finished work and the integration
branch. When an attempt is about to merge and a merge that is not in its
start (git's ancestry: a retry that kept old work started from an old tip)
changed a file it read (a stale input), its ``run:`` criteria run again in a
scratch worktree holding its commit merged onto the current integration tip:
the result as it would land. The run's ``CriteriaChecked`` for the attempt
says how that went; a failure keeps the work out of the integration branch,
and its retry carries the merged diff. A stale task with no ``run:`` criteria
has nothing to re-run: it is held for the operator (``awaiting-merge``, with
the reason), who merges it as it is or restarts it on the new tip; a merge
the operator asks for is theirs to judge. The scratch worktree and branch
are removed afterwards. A merge that would conflict is left to the merge
itself to report.

:meth:`Integration.merge` asks the gate itself, for an automatic merge and
the operator's alike. The re-check runs outside the merge lock (criteria may
take minutes, and other tasks' merges must not wait for them); :meth:`Gate.moved`,
asked under the lock, says whether a merge landed since the check that changed
what the task read, and :meth:`Integration.merge` checks again when it did.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

from delegate_tui.core import conflicts, prompts, scopes, workspace
from delegate_tui.core.conflict_monitor import Ancestry, merges_so_far, reader_of, stale_for
from delegate_tui.core.emitter import Emitter
from delegate_tui.core.events import CriteriaChecked, CriterionResult, Notice
from delegate_tui.core.executor import Executor
from delegate_tui.core.integration import Integration, MergeOutcome
from delegate_tui.core.plan import Plan
from delegate_tui.core.state import AttemptState

#: How long one re-checked criterion may run when its task sets no timeout.
RECHECK_TIMEOUT_S = 600.0
#: Why a stale task with nothing to re-run waits for the operator.
HELD_REASON = "its input changed under it and it has no run: check to re-run"


class Gate:
    """The re-checks of one run's stale work before it merges."""

    def __init__(
        self, plan: Plan, emitter: Emitter, supervisor: Executor, integration: Integration
    ) -> None:
        self.plan = plan
        self._emitter = emitter
        self._supervisor = supervisor
        self._integration = integration
        #: task -> (attempt, the integration tip its inputs were last found sound on)
        self._checked: dict[str, tuple[int, str]] = {}
        self._held: dict[str, int] = {}  # task -> the attempt the operator was told is held

    def stale_inputs(self, task_id: str) -> list[conflicts.Finding]:
        """Merges not in ``task_id``'s latest attempt's start that changed what it read
        (git asked here, blocking, only for a start that is not an integration tip)."""
        state = self._emitter.state
        reader = reader_of(self.plan, state.tasks[task_id])
        return [] if reader is None else stale_for(self._integration.repo, state, reader)

    def moved(self, task_id: str, attempt: AttemptState) -> bool:
        """True unless ``attempt`` was checked and no merge since changed what it read.

        Pure over the state: asked under the merge lock, where nothing may wait.
        """
        checked = self._checked.get(task_id)
        if checked is None or checked[0] != attempt.number:
            return True
        state = self._emitter.state
        reader = reader_of(self.plan, state.tasks[task_id])
        if reader is None:
            return False
        order = Ancestry(self._integration.repo, state)
        return any(
            m.task != task_id
            and order(m.commit, checked[1]) is not True  # landed after the checked tip
            and any(scopes.matches_any(reader.reads, p) for p in m.paths)
            for m in merges_so_far(state)
        )

    async def check(
        self, task_id: str, attempt: AttemptState, *, by_operator: bool = False
    ) -> MergeOutcome | None:
        """``None`` when ``attempt`` may merge as of the integration tip now; else how it
        ends instead: ``failed`` (its criteria fail on the new tip) or, for a task with
        no ``run:`` criteria whose input went stale, ``awaiting-merge`` (held for the
        operator; never when the operator asked for the merge)."""
        state = self._emitter.state
        tip = state.integration_tip
        stale = await asyncio.to_thread(self.stale_inputs, task_id)
        task = self.plan.task(task_id)
        runnable = [c for c in task.criteria if c.run]
        ok = not stale or not attempt.commit or state.isolation != "worktree"
        if ok or (not runnable and by_operator):
            self._checked[task_id] = (attempt.number, tip)
            return None
        why = "; ".join(f"{f.tasks[1]} merged a change to {', '.join(f.paths)}" for f in stale)
        if not runnable:
            if self._held.get(task_id) == attempt.number:
                return MergeOutcome("awaiting-merge", f"{HELD_REASON} ({why})")
            self._held[task_id] = attempt.number
            self._emitter.emit(
                Notice(
                    level="warning",
                    message=f"{task_id} waits for your merge: {HELD_REASON} ({why}); "
                    "m merges it as it is, r restarts it on the new tip",
                    task=task_id,
                )
            )
            return MergeOutcome("awaiting-merge", f"{HELD_REASON} ({why})")
        failed = await self._recheck(task_id, attempt, tip, why)
        if failed:
            return MergeOutcome("failed", failed)
        self._checked[task_id] = (attempt.number, tip)
        return None

    async def _recheck(self, task_id: str, attempt: AttemptState, tip: str, why: str) -> str:
        """Run ``attempt``'s ``run:`` criteria on its commit merged onto ``tip``: ``""``
        when they pass (or the merge conflicts: the merge itself says where), else why not."""
        integration, emitter = self._integration, self._emitter
        repo, run_id = integration.repo, integration.run_id
        branch = workspace.task_branch(run_id, task_id, attempt.number) + "-recheck"
        path = workspace.worktree_path(repo, run_id, task_id, attempt.number)
        path = path.with_name(path.name + "-recheck")
        out = emitter.sink(task_id, attempt.number, "criteria")
        out(f"re-checking on the new integration tip ({why}, which this task read)\n".encode())
        await asyncio.to_thread(workspace.create_branch, repo, branch, tip)
        try:
            merged = await asyncio.to_thread(
                workspace.merge_into, repo, branch, attempt.commit, f"re-check {task_id}"
            )
            if not merged.ok:
                return ""  # the merge itself says where it conflicts
            async with integration.git_lock:
                await asyncio.to_thread(workspace.add_worktree, repo, path, branch, merged.commit)
            results = await self._run_criteria(task_id, path, out)
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
                f"criteria failed on the new integration tip ({why}): "
                f"{failed.command or failed.text}"
            )
        finally:
            async with integration.git_lock:
                await asyncio.to_thread(workspace.remove_worktree, repo, path)
            await asyncio.to_thread(workspace.git, ["branch", "-D", branch], repo, check=False)

    async def _run_criteria(
        self, task_id: str, path: Path, out: Callable[[bytes], None]
    ) -> list[CriterionResult]:
        task = self.plan.task(task_id)
        env = {
            **os.environ,
            "DELEGATE_RUN_ID": self._integration.run_id,
            "DELEGATE_TASK_ID": task_id,
        }
        results = []
        for criterion in task.criteria:
            if not criterion.run:
                continue
            out(f"$ {criterion.run}\n".encode())
            rc, captured = await self._supervisor.shell(
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
                    passed=rc == 0 and not self._supervisor.was_ended(task_id),
                    exit_code=rc,
                    output=prompts.tail_text(captured, 2000),
                )
            )
        return results
