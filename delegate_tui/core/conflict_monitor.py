"""Live conflict findings: watch the worktrees, ask git, predict merges, report what changed.

Owns the I/O side of conflict detection. The watcher's events are hints: on
each, git is asked what a task changed since it started (one
``status --porcelain=v2`` per debounce window), a change is emitted as
``FilesChanged``, and the analysis runs again: the pure rules of
:mod:`conflicts` over every analysed task's files, plus ``git merge-tree``
predictions (cached per pair of commits) between tasks and against the
integration tip. Findings that appear are emitted as ``ConflictDetected``,
findings that no longer hold as ``ConflictResolved``. In ``isolation:
shared`` the one tree is watched and changes are attributed to tasks by
their declared scope.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from delegate_tui.core import conflicts, workspace
from delegate_tui.core.emitter import Emitter
from delegate_tui.core.events import (
    ACTIVE_STATUSES,
    ANALYZED_STATUSES,
    ChangedFile,
    ConflictDetected,
    ConflictResolved,
    FilesChanged,
    Notice,
)
from delegate_tui.core.plan import Plan
from delegate_tui.core.state import RunState, TaskState
from delegate_tui.core.watcher import WorktreeWatcher

#: The watcher's key for the one working tree of ``isolation: shared``.
SHARED_KEY = "(shared tree)"


class ConflictMonitor:
    """Findings for one run, kept true while its tasks work."""

    def __init__(self, emitter: Emitter, plan: Plan, repo: Path, isolation: str) -> None:
        self._emitter = emitter
        self.plan = plan
        self.repo = repo
        self.isolation = isolation
        self._watcher = WorktreeWatcher(self._refresh, self._warn)
        self._watched: dict[str, tuple[int, Path, str]] = {}  # task -> (attempt, workdir, start)
        self._predictions: dict[tuple[str, str], tuple[str, ...]] = {}
        self._lock = asyncio.Lock()
        self._shared_start = ""  # isolation: shared: a snapshot of the tree at run start
        self._unattributed: list[str] = []

    def _warn(self, message: str) -> None:
        self._emitter.emit(Notice(level="warning", message=message))

    @property
    def enabled(self) -> bool:
        """False outside git (``isolation: none``): nothing to watch or predict."""
        return self.isolation in ("worktree", "shared")

    def start(self) -> None:
        """Start the watcher (no-op outside git)."""
        if self.enabled:
            self._watcher.start()

    async def watch_shared(self, base_commit: str) -> None:
        """``isolation: shared``: watch the one tree; the operator's changes at start are not the agents'."""
        self._shared_start = await asyncio.to_thread(
            workspace.snapshot_worktree, self.repo, base_commit, "delegate-tui: tree at run start"
        )
        self._watcher.watch(SHARED_KEY, self.repo, ignore_dirs=(".delegate",))

    def watch(self, task_id: str, number: int, workdir: Path, start: str) -> None:
        """Follow attempt ``number`` of ``task_id`` in its own worktree."""
        if self.isolation == "worktree":
            self._watched[task_id] = (number, workdir, start)
            self._watcher.watch(task_id, workdir)

    def poke(self, task_id: str) -> None:
        """Look at a watched task's worktree soon: its agent says it wrote a file."""
        if task_id in self._watched:
            self._watcher.poke(task_id)

    async def settle(self, task_id: str) -> tuple[str, tuple[ChangedFile, ...]] | None:
        """The agent is done: one last look, then its change set stands still.

        Returns that look: the snapshot (the engine's index of the worktree is
        now that snapshot's, so :func:`workspace.commit_work` need not read the
        files again) and the files changed since the attempt's start.
        """
        if task_id not in self._watched:
            return None
        self._watcher.unwatch(task_id)
        try:
            return await self._refresh(task_id)
        finally:
            self._watched.pop(task_id, None)

    def schedule(self) -> None:
        """Run the analysis again soon (after an attempt ended or a merge moved the tip)."""
        if self.enabled and not self._emitter.state.finished:
            asyncio.get_running_loop().create_task(self.analyze())

    async def close(self) -> None:
        """Stop watching."""
        await self._watcher.close()

    async def _refresh(self, task_id: str) -> tuple[str, tuple[ChangedFile, ...]] | None:
        """Ask git what a watched task has changed; report it if it moved."""
        if task_id == SHARED_KEY:
            await self._refresh_shared()
            return None
        info = self._watched.get(task_id)
        if info is None:
            return None
        number, workdir, start = info
        snapshot, found = await asyncio.to_thread(
            workspace.current_changes, workdir, start, parent=start or "HEAD"
        )
        files = tuple(found)
        task = self._emitter.state.tasks.get(task_id)
        if task is None or not task.attempts or task.attempts[-1].number != number:
            return None
        attempt = task.attempts[-1]
        if files != attempt.live_changes or snapshot != attempt.snapshot:
            self._emitter.emit(
                FilesChanged(task=task_id, attempt=number, files=files, snapshot=snapshot)
            )
            await self.analyze()
        return snapshot, files

    async def _refresh_shared(self) -> None:
        """isolation: shared: what changed in the tree, attributed to running tasks by scope."""
        snapshot, files = await asyncio.to_thread(
            workspace.current_changes, self.repo, self._shared_start
        )
        state = self._emitter.state
        running = [t.id for t in state.tasks.values() if t.status in ACTIVE_STATUSES and t.attempts]
        owned, loose = conflicts.attribute(self.plan, running, [f.path for f in files])
        by_path = {f.path: f for f in files}
        moved = loose != self._unattributed
        self._unattributed = loose
        for task_id, paths in owned.items():
            attempt = state.tasks[task_id].attempts[-1]
            mine = tuple(by_path[p] for p in paths)
            if mine != attempt.live_changes:
                self._emitter.emit(
                    FilesChanged(
                        task=task_id, attempt=attempt.number, files=mine, snapshot=snapshot
                    )
                )
                moved = True
        if moved:
            await self.analyze()

    async def analyze(self) -> None:
        """Re-run the conflict analysis; emit what appeared and what went."""
        async with self._lock:
            state = self._emitter.state
            if state.finished:
                return
            changes: dict[str, list[str]] = {}
            commits: dict[str, str] = {}
            starts: dict[str, str] = {}
            # Committed and waiting for the merge lock: every merge before it moves the
            # tip, and predicting each such task against each new tip was a merge-tree
            # per waiting task per merge (issue 15: six a task at 16 in parallel).
            queued = {
                t.id
                for t in state.tasks.values()
                if t.status == "merging" and t.attempt is not None and t.attempt.commit
            }
            for task in state.tasks.values():
                attempt = task.attempt
                if attempt is None or task.status not in ANALYZED_STATUSES:
                    continue
                files = attempt.changed if attempt.commit else attempt.live_changes
                changes[task.id] = sorted(
                    {f.path for f in files} | {f.old_path for f in files if f.old_path}
                )
                commits[task.id] = attempt.commit or attempt.snapshot
                starts[task.id] = attempt.base_commit
            predictions: dict[tuple[str, str], tuple[str, ...]] = {}
            if self.isolation != "worktree":
                commits = {}  # one tree: nothing to merge, nothing to predict
            asked: set[tuple[str, str]] = set()
            for a, b in conflicts.pairs_to_predict(changes):
                if commits.get(a) and commits.get(b):
                    asked.add((commits[a], commits[b]))
                    predictions[(a, b)] = await self._predict(commits[a], commits[b])
            tip = state.integration_tip
            for task_id, commit in commits.items():
                if task_id in queued:
                    continue  # its own merge, already queued, is the answer (one merge-tree)
                if commit and tip and changes[task_id] and starts[task_id] != tip:
                    asked.add((tip, commit))
                    predictions[(conflicts.INTEGRATION, task_id)] = await self._predict(tip, commit)
            # Only predictions about the tasks' and the integration's current commits
            # can be asked again: the rest would be kept for nothing, run after run.
            self._predictions = {k: v for k, v in self._predictions.items() if k in asked}
            loose = self._unattributed if self.isolation == "shared" else []
            findings = conflicts.analyze(self.plan, changes, predictions, loose)
            if self.isolation == "worktree":
                readers, merges = read_sets(self.plan, state)
                ancestry = Ancestry(self.repo, state)
                if ancestry.unknown(readers, merges):  # a retry that kept its old work
                    await asyncio.to_thread(ancestry.learn, readers, merges)
                findings += conflicts.stale_inputs(readers, merges, ancestry)
            found = {f.key: f for f in findings}
            for key in [k for k in state.findings if k not in found]:
                self._emitter.emit(ConflictResolved(key=key, reason="no longer holds"))
            for key, f in found.items():
                if key not in state.findings:
                    self._emitter.emit(
                        ConflictDetected(
                            key=key,
                            kind=f.kind,
                            severity=f.severity,
                            tasks=f.tasks,
                            paths=f.paths,
                            detail=f.detail,
                        )
                    )

    async def _predict(self, ours: str, theirs: str) -> tuple[str, ...]:
        """Paths that would conflict merging two commits (cached; '()' when clean)."""
        pair = (ours, theirs)
        if pair not in self._predictions:
            try:
                result = await asyncio.to_thread(workspace.predict_merge, self.repo, ours, theirs)
            except workspace.GitError:
                return ()
            self._predictions[pair] = () if result.ok else (result.conflicts or ("(tree)",))
        return self._predictions[pair]


def read_sets(plan: Plan, state: RunState) -> tuple[list[conflicts.Reader], list[conflicts.Merge]]:
    """What each running or unmerged task read, and every merge so far, for stale inputs."""
    readers = [
        reader
        for task in state.tasks.values()
        if task.status in ANALYZED_STATUSES and (reader := reader_of(plan, task)) is not None
    ]
    return readers, merges_so_far(state) if readers else []  # nobody read: no merge matters


def merges_so_far(state: RunState) -> list[conflicts.Merge]:
    """Every merge of the run so far, with the paths it changed."""
    merges = []
    for task in state.tasks.values():
        for attempt in task.attempts:
            if attempt.merged_commit:
                paths = {f.path for f in attempt.changed} | {
                    f.old_path for f in attempt.changed if f.old_path
                }
                merges.append(
                    conflicts.Merge(
                        task.id, attempt.merged_ts, tuple(sorted(paths)), attempt.merged_commit
                    )
                )
    return merges


#: ``(merged commit, base) -> is it in that base``, as git answered (commits do not change).
_ANCESTRY: dict[tuple[str, str], bool] = {}
_ANCESTRY_LIMIT = 100_000


class Ancestry:
    """Whether a merge is already in an attempt's start (:data:`conflicts.InBase`).

    An attempt that started from an integration tip holds every merge up to that
    tip and none after: the run's order of merges answers it, without git. An
    attempt that kept an earlier attempt's work started from that work (an old
    tip, and its own changes): git's ancestry answers it, once per pair
    (:meth:`learn`, in a thread); until then, or when git cannot say, ``None``.
    """

    def __init__(self, repo: Path, state: RunState) -> None:
        self.repo = repo
        merged = sorted(
            (a.merged_ts, a.merged_commit)
            for t in state.tasks.values()
            for a in t.attempts
            if a.merged_commit
        )
        tips = [state.base_commit, *(commit for _, commit in merged)]
        self._order = {commit: i for i, commit in enumerate(tips) if commit}

    def __call__(self, merged: str, base: str) -> bool | None:
        at, of = self._order.get(merged), self._order.get(base)
        if at is not None and of is not None:
            return at <= of
        return _ANCESTRY.get((merged, base))

    def _pairs(
        self, readers: list[conflicts.Reader], merges: list[conflicts.Merge]
    ) -> list[tuple[str, str]]:
        return [
            (m.commit, r.base)
            for r in readers
            if r.base and r.base not in self._order
            for m in merges
            if m.commit and m.task != r.task and (m.commit, r.base) not in _ANCESTRY
        ]

    def unknown(self, readers: list[conflicts.Reader], merges: list[conflicts.Merge]) -> bool:
        """Some pair needs git (:meth:`learn`)."""
        return bool(self._pairs(readers, merges))

    def learn(self, readers: list[conflicts.Reader], merges: list[conflicts.Merge]) -> None:
        """Ask git about the pairs the run's order of merges cannot answer (blocking)."""
        if len(_ANCESTRY) > _ANCESTRY_LIMIT:
            _ANCESTRY.clear()
        for merged, base in self._pairs(readers, merges):
            rc = workspace.git(
                ["merge-base", "--is-ancestor", merged, base], self.repo, check=False
            ).returncode
            if rc in (0, 1):
                _ANCESTRY[(merged, base)] = rc == 0


def reader_of(plan: Plan, task: TaskState) -> conflicts.Reader | None:
    """What the latest attempt of ``task`` read: its declared reads, and the files (or
    folders) its agent's structured stream showed it reading or searching."""
    latest = task.attempt
    if latest is None or not latest.prepared_ts:
        return None
    # reads_stale_ok lets a task start beside its reads' writers; it is still told
    # when one of them merges under it. (Files it changed itself are not counted:
    # a merge that changes them is an overlap or a predicted conflict already.)
    spec = plan.task(task.id)
    seen = tuple(p for p in latest.read if not p.startswith("/") and not any(c in p for c in "*?["))
    reads = tuple(dict.fromkeys((*spec.reads, *seen)))
    if not reads:
        return None
    return conflicts.Reader(task.id, latest.prepared_ts, reads, latest.base_commit)


def stale_for(repo: Path, state: RunState, reader: conflicts.Reader) -> list[conflicts.Finding]:
    """The stale inputs of one reader now, by ancestry (git asked here, blocking, for a
    start the run's order of merges does not know)."""
    merges = merges_so_far(state)
    ancestry = Ancestry(repo, state)
    ancestry.learn([reader], merges)
    return conflicts.stale_inputs([reader], merges, ancestry)


def stale_context(plan: Plan, state: RunState, repo: Path, task_id: str) -> str:
    """For a restart: what merged under the task's latest attempt, with the diffs."""
    reader = reader_of(plan, state.tasks[task_id])
    if reader is None:
        return ""
    base = state.tasks[task_id].attempts[-1].base_commit
    parts = []
    for finding in stale_for(repo, state, reader):
        merged = finding.tasks[1]
        diff = workspace.diff_text(repo, base, state.integration_tip, finding.paths)
        parts.append(
            f"While you worked, {merged} merged a change to {', '.join(finding.paths)}, "
            f"which you read; start from the new integration tip. The change:\n"
            + (diff[:4000] + ("\n[...]" if len(diff) > 4000 else ""))
        )
    return "\n\n".join(parts)
