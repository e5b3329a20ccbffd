"""The integration branch: merging finished work, the final merge, cleaning up.

Owns every write to the run's integration branch and to the operator's own
branch. A finished attempt's commit is merged into the integration branch
one merge at a time (``TaskMerged``, or ``MergeConflict`` with the paths);
the outcome goes back to the caller, which says how the task ended. At the
end, when asked, the integration branch is merged into the operator's branch
(``FinalMerge``), and worktrees whose work was merged are removed (the
others are kept for inspection). While tasks wait to start, a merged
attempt's worktree is parked for the next attempt instead (``add_worktree``
takes it: only the files that differ are rewritten, and no checkout holds the
git lock). Before the run, it makes the integration branch. Branch and worktree names come from
:mod:`workspace`.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from delegate_tui.core import workspace
from delegate_tui.core.emitter import Emitter
from delegate_tui.core.events import FinalMerge, MergeConflict, Notice, TaskMerged, TaskStatus
from delegate_tui.core.plan import Plan
from delegate_tui.core.state import AttemptState


@dataclass(frozen=True, slots=True)
class MergeOutcome:
    """How a merge ended: ``succeeded`` or ``merge-conflict`` with a reason."""

    status: TaskStatus
    reason: str = ""


class MergeGate(Protocol):
    """What stands between finished work and the integration branch (``recheck.Gate``)."""

    def moved(self, task_id: str, attempt: AttemptState) -> bool:
        """Asked under the merge lock: must :meth:`check` run (again) before this merge?"""
        ...

    async def check(
        self, task_id: str, attempt: AttemptState, *, by_operator: bool = False
    ) -> MergeOutcome | None:
        """``None`` when the attempt may merge now, else how it ends instead."""
        ...


class Integration:
    """Merges of one run into its integration branch, and the final merge."""

    def __init__(self, emitter: Emitter, plan: Plan, repo: Path, run_id: str) -> None:
        self._emitter = emitter
        self.plan = plan
        self.repo = repo
        self.run_id = run_id
        #: Held by every git call that adds or removes a worktree.
        self.git_lock = asyncio.Lock()
        self._merge_lock = asyncio.Lock()
        self._releases: set[asyncio.Task[None]] = set()
        self._released = False  # some worktree was parked or removed: prune git's notes
        #: Re-checks stale work before it merges (set by the engine: ``recheck.Gate``).
        self.gate: MergeGate | None = None

    def prepare(self, isolation: str, base: str, *, include_dirty: bool) -> tuple[str, str, str]:
        """Before the run starts: ``(base commit, integration branch, operator's branch)``.

        In worktree mode the integration branch is made at the base (or at a
        snapshot of the operator's uncommitted work with ``include_dirty``).
        Outside git all three are empty.
        """
        if isolation not in ("worktree", "shared"):
            return "", "", ""
        workspace.ensure_excluded(self.repo)
        base_commit = workspace.rev_parse(self.repo, base)
        base_branch = (workspace.current_branch(self.repo) or "") if base == "HEAD" else base
        if isolation != "worktree":
            return base_commit, "", base_branch
        integration = workspace.integration_branch(self.run_id)
        if include_dirty and workspace.dirty_paths(self.repo):
            base_commit = workspace.snapshot_worktree(
                self.repo, base_commit, "delegate-tui: uncommitted changes at run start"
            )
        workspace.create_branch(self.repo, integration, base_commit)
        return base_commit, integration, base_branch

    async def merge(
        self, task_id: str, attempt: AttemptState, *, by_operator: bool = False
    ) -> MergeOutcome:
        """Merge ``attempt``'s commit into the integration branch.

        With a :attr:`gate`, the attempt is checked first (outside the lock: a re-check
        may take minutes), and again whenever a merge that landed meanwhile changed what
        it read: the check that let it through holds for the tip it merges onto.
        """
        title = self.plan.task(task_id).label
        gate = self.gate
        while True:
            if gate is not None and gate.moved(task_id, attempt):
                held = await gate.check(task_id, attempt, by_operator=by_operator)
                if held is not None:
                    return held
            async with self._merge_lock:
                if gate is not None and gate.moved(task_id, attempt):
                    continue  # a merge landed under the check: check again
                result = await asyncio.to_thread(
                    workspace.merge_into,
                    self.repo,
                    self._emitter.state.integration_branch,
                    attempt.commit,
                    f"Merge {task_id}: {title}\n\n"
                    f"delegate-tui run {self.run_id}, attempt {attempt.number}",
                )
                break
        if not result.ok:
            self._emitter.emit(
                MergeConflict(
                    task=task_id,
                    attempt=attempt.number,
                    paths=result.conflicts,
                    detail=result.detail,
                )
            )
            return MergeOutcome(
                "merge-conflict", "merge conflict in " + (", ".join(result.conflicts) or "the tree")
            )
        self._emitter.emit(
            TaskMerged(
                task=task_id,
                attempt=attempt.number,
                commit=result.commit,
                fast_forward=result.fast_forward,
            )
        )
        return MergeOutcome("succeeded")

    async def final_merge(self, base_branch: str) -> None:
        """Merge the integration branch into the operator's branch, when that is clean."""
        integration = self._emitter.state.integration_branch
        if not integration:
            return
        async with self._merge_lock:
            try:
                result = await asyncio.to_thread(
                    workspace.final_merge, self.repo, integration, base_branch
                )
            except workspace.GitError as exc:
                result = workspace.MergeResult(False, detail=str(exc))
        branch = workspace.current_branch(self.repo) or "HEAD"
        detail = result.detail or ("fast-forward" if result.fast_forward else "merge commit")
        if result.conflicts:
            detail += ": " + ", ".join(result.conflicts)
        self._emitter.emit(
            FinalMerge(ok=result.ok, branch=branch, commit=result.commit, detail=detail)
        )

    async def add_worktree(self, path: Path, branch: str, start: str) -> None:
        """An attempt's worktree at ``path`` on a new branch ``branch`` from ``start``.

        A merged attempt's parked worktree when there is one, else a new one.
        Only the move or the new worktree's note holds the git lock; writing the
        files does not, so one attempt's checkout never holds up the others.
        """
        async with self.git_lock:
            reused = await asyncio.to_thread(workspace.take_parked, self.repo, path)
            if not reused:
                await asyncio.to_thread(
                    workspace.add_worktree, self.repo, path, branch, start, checkout=False
                )
        if await asyncio.to_thread(workspace.reset_worktree, path, branch, start):
            return
        async with self.git_lock:  # a worktree git could not check out: a new one, whole
            await asyncio.to_thread(workspace.remove_worktree, self.repo, path)
            await asyncio.to_thread(workspace.add_worktree, self.repo, path, branch, start)

    def release(self, workdir: Path) -> None:
        """A merged attempt's worktree is no longer needed: park it for the next
        attempt (a checkout of only what differs instead of the whole tree), or
        remove it when enough are parked, in the background, so that the end of
        a long run does not remove hundreds at once."""
        task = asyncio.get_running_loop().create_task(self._release(workdir))
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def _release(self, workdir: Path) -> None:
        self._released = True
        state = self._emitter.state
        # Parked only while tasks wait to start: at the end of a run the last
        # worktrees are removed as they finish, not all at once after the last one.
        waiting = sum(
            1 for t in state.tasks.values() if t.status in ("pending", "proposed", "starting")
        )
        async with self.git_lock:
            if len(workspace.pool_worktrees(workdir.parent)) < min(state.max_parallel, waiting):
                await asyncio.to_thread(workspace.park_worktree, self.repo, workdir)
                return
        # The files only, without git (no lock held against new worktrees); git's
        # note of the worktree is pruned once, at the end.
        await asyncio.to_thread(shutil.rmtree, workdir, True)

    async def cleanup(self) -> None:
        """Remove worktrees whose work is merged; keep the others for inspection."""
        if self._releases:
            await asyncio.gather(*self._releases, return_exceptions=True)
        parked = workspace.pool_worktrees(workspace.worktrees_dir(self.repo, self.run_id))
        if self._released or parked:
            if parked:  # the disk's work, seconds on a big tree: say what the wait is
                self._emitter.emit(
                    Notice(
                        level="info", message=f"removing {len(parked)} worktree(s) of merged work"
                    )
                )
            # Parked worktrees go at once, each in a thread: removing files is the disk's work.
            await asyncio.gather(*(asyncio.to_thread(shutil.rmtree, path, True) for path in parked))
            with contextlib.suppress(OSError):
                (workspace.worktrees_dir(self.repo, self.run_id) / workspace.POOL_DIR).rmdir()
            async with self.git_lock:
                await asyncio.to_thread(workspace.prune_worktrees, self.repo)
        kept = 0
        for task in self._emitter.state.tasks.values():
            for attempt in task.attempts:
                if not attempt.workdir or not Path(attempt.workdir).exists():
                    continue
                if attempt.merged_commit:
                    async with self.git_lock:
                        await asyncio.to_thread(
                            workspace.remove_worktree, self.repo, Path(attempt.workdir)
                        )
                else:
                    kept += 1
        if kept:
            self._emitter.emit(
                Notice(
                    level="info",
                    message=f"kept {kept} worktree(s) of unmerged work for inspection under "
                    f"{workspace.worktrees_dir(self.repo, self.run_id)}",
                )
            )
