"""The engine: turns a plan into processes, worktrees, merges and events.

Owns the run's I/O and nothing else. Every decision (which batch next, who
is blocked, whether to retry, what a retry prompt says, when the run is over)
comes from the pure functions of :mod:`batching`, :mod:`prompts` and
:mod:`metrics` over the :class:`RunState` that :func:`state.apply` builds.
The engine acts on those decisions, and everything it does or observes is
emitted as an event: applied to the state, appended to the run log, and
handed to listeners (the UI, the headless printer).

Operator commands (approve, hold, kill, retry, skip, pause, resume, input,
merge, finish, stop) are plain methods, safe to call from the loop the
engine runs on; they return a message for the operator, empty when done.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from delegate_tui import __version__
from delegate_tui.core import batching, conflicts, metrics, prompts, workspace
from delegate_tui.core.agents import AgentError, AgentSpec, build_argv
from delegate_tui.core.events import (
    ACTIVE_STATUSES,
    RETRYABLE_STATUSES,
    BatchApproved,
    BatchHeld,
    BatchProposed,
    ConflictDetected,
    ConflictResolved,
    CriteriaChecked,
    CriterionResult,
    Event,
    FilesChanged,
    FinalMerge,
    InputSent,
    KillRequested,
    MergeConflict,
    Notice,
    RetryScheduled,
    RunFinished,
    RunResumed,
    RunStarted,
    SchedulingPaused,
    SchedulingResumed,
    SetupFinished,
    TaskBlocked,
    TaskCommitted,
    TaskExited,
    TaskFinished,
    TaskMerged,
    TaskOutput,
    TaskPreparing,
    TaskSkipped,
    TaskStarted,
)
from delegate_tui.core.plan import Plan
from delegate_tui.core.process import AgentProcess
from delegate_tui.core.reaper import Reaper, end_groups
from delegate_tui.core.replay import final_state
from delegate_tui.core.runlog import LOG_NAME, LogWriter, ReadReport, runs_dir
from delegate_tui.core.state import AttemptState, RunState, apply, snapshot
from delegate_tui.core.watcher import WorktreeWatcher

Listener = Callable[[Event], None]
CRITERIA_TIMEOUT_S = 600.0
#: Agent output is gathered per task for this long (or this many bytes) and
#: emitted as one event: a flood costs tens of events a second, not thousands.
OUTPUT_FLUSH_S = 0.025
OUTPUT_FLUSH_BYTES = 1 << 20
#: Tasks whose changes take part in conflict analysis: running, or finished
#: with work that is not merged (yet).
ANALYZED_STATUSES = ACTIVE_STATUSES | {"awaiting-merge", "merge-conflict"}
#: The watcher's key for the one working tree of ``isolation: shared``.
SHARED_KEY = "(shared tree)"


class PreflightError(Exception):
    """The run cannot start; nothing was created. The message names what and where."""


@dataclass(frozen=True, slots=True)
class EngineOptions:
    """How to run a plan, beyond what the plan itself says."""

    auto_approve: bool = False  # --yes: approve batches (not tasks with approve: true)
    max_parallel: int | None = None
    isolation: str | None = None
    agent_override: str | None = None
    include_dirty: bool = False
    kill_grace_s: float = 5.0
    transport: str | None = None  # force pty or pipes for every agent
    finish: bool = False  # merge into the operator's branch at the end, when clean
    run_id: str | None = None
    pty_size: tuple[int, int] = (120, 40)
    auto_merge: bool | None = None  # override `merge:` (None: the plan decides)
    #: An operator is present (the UI): a run with failures waits for them to
    #: retry, skip or end it, instead of ending by itself.
    hold_at_end: bool = False


def new_run_id() -> str:
    """Sortable, unique, valid as a path and a branch component."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


class Engine:
    """Runs one plan on one repository."""

    def __init__(self, plan: Plan, options: EngineOptions | None = None) -> None:
        self.options = options or EngineOptions()
        override = self.options.agent_override
        if override:
            # Tasks already on an agent built from the override keep it (and its args).
            agents = plan.resolved_agents()

            def keeps(name: str) -> bool:
                spec = agents.get(name)
                return spec is not None and override in (spec.name, spec.preset)

            plan = plan.model_copy(
                update={
                    "tasks": tuple(
                        t if keeps(plan.agent_of(t)) else t.model_copy(update={"agent": override})
                        for t in plan.tasks
                    )
                }
            )
        self.plan = plan
        self.state = RunState()
        self.run_id = self.options.run_id or new_run_id()
        self.repo = plan.repo_path()
        self.isolation = ""
        self.run_dir = Path()
        self._listeners: list[Listener] = []
        self._log: LogWriter | None = None
        self._reaper = Reaper()
        self._agents: dict[str, AgentSpec] = {}
        self._procs: dict[str, AgentProcess] = {}
        self._jobs: dict[str, asyncio.Task[None]] = {}
        self._kill_flags: set[str] = set()
        self._wake = asyncio.Event()
        self._git_lock = asyncio.Lock()
        self._merge_lock = asyncio.Lock()
        self._stopping = False
        self._stop_reason = ""
        self._end_requested = False
        self._final_merge_requested = self.options.finish
        self._told_waiting = False
        self._warnings: list[str] = []
        self._resume_report = ReadReport()
        self._out_buf: dict[tuple[str, int, str], bytearray] = {}
        self._out_bytes = 0
        self._out_timer: asyncio.TimerHandle | None = None
        self._watcher = WorktreeWatcher(self._refresh_changes)
        self._watched: dict[str, tuple[int, Path, str]] = {}  # task -> (attempt, workdir, start)
        self._predictions: dict[tuple[str, str], tuple[str, ...]] = {}
        self._analysis_lock = asyncio.Lock()
        self._shared_start = ""  # isolation: shared: a snapshot of the tree at run start
        self._unattributed: list[str] = []
        self._base_branch = ""
        self._seq = 0
        self._auto_merge = (
            self.options.auto_merge if self.options.auto_merge is not None else plan.merge == "auto"
        )

    # ------------------------------------------------------------ events

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener`` with every event, after it is applied and logged."""
        self._listeners.append(listener)

    def _emit(self, ev: Event) -> Event:
        if self._out_buf:
            self._flush_output()  # output first: an exit must follow its last bytes
        return self._emit_now(ev)

    def _emit_now(self, ev: Event) -> Event:
        self._seq += 1
        ev = dataclasses.replace(ev, seq=self._seq, ts=time.time())
        apply(self.state, ev)
        if self._log is not None:
            self._log.write(ev, self._keyframe)
        for listener in self._listeners:
            listener(ev)
        self._wake.set()
        return ev

    def _keyframe(self) -> object:
        """The state as data, for the log's index (replay seeks from these)."""
        return snapshot(self.state)

    def _output(self, task: str, attempt: int, stream: str, data: bytes) -> None:
        key = (task, attempt, stream)
        buffer = self._out_buf.get(key)
        if buffer is None:
            self._out_buf[key] = bytearray(data)
        else:
            buffer.extend(data)
        self._out_bytes += len(data)
        if self._out_bytes >= OUTPUT_FLUSH_BYTES:
            self._flush_output()
        elif self._out_timer is None:
            self._out_timer = asyncio.get_running_loop().call_later(
                OUTPUT_FLUSH_S, self._flush_output
            )

    def _flush_output(self) -> None:
        if self._out_timer is not None:
            self._out_timer.cancel()
            self._out_timer = None
        pending, self._out_buf, self._out_bytes = self._out_buf, {}, 0
        for (task, attempt, stream), data in pending.items():
            self._emit_now(TaskOutput(task=task, attempt=attempt, data=bytes(data), stream=stream))

    @property
    def log_path(self) -> Path:
        """Where this run's events go."""
        return self.run_dir / LOG_NAME

    # ------------------------------------------------------------ preflight

    def preflight(self) -> list[str]:
        """Check everything that can be checked before anything is created.

        Raises :class:`PreflightError`; returns warnings (e.g. a dirty tree).
        """
        plan, warnings = self.plan, []
        if not self.repo.is_dir():
            raise PreflightError(f"{plan.source}: repo: folder {self.repo} does not exist")
        top = workspace.find_repo(self.repo)
        isolation = self.options.isolation or plan.isolation or ("worktree" if top else "none")
        if isolation in ("worktree", "shared"):
            if top is None:
                raise PreflightError(
                    f"{plan.source}: isolation: {isolation} needs a git repository, and "
                    f"{self.repo} is not one (use isolation: none, or run `git init`)"
                )
            self.repo = top
            if isolation == "worktree" and workspace.git_version() < workspace.MIN_GIT:
                raise PreflightError(
                    "git 2.38 or newer is needed (for git merge-tree --write-tree)"
                )
            if not workspace.has_commits(self.repo):
                raise PreflightError(
                    f"{self.repo}: the repository has no commits yet; commit once first"
                )
            try:
                workspace.rev_parse(self.repo, plan.base)
            except workspace.GitError as exc:
                raise PreflightError(f"{plan.source}: base: {exc}") from None
            dirty = workspace.dirty_paths(self.repo)
            if dirty and isolation == "worktree":
                shown = ", ".join(dirty[:5]) + (
                    f" and {len(dirty) - 5} more" if len(dirty) > 5 else ""
                )
                warnings.append(
                    f"your working tree has uncommitted changes ({shown}); "
                    + (
                        "they are included in the agents' starting point (--include-dirty)"
                        if self.options.include_dirty
                        else "agents start from the last commit without them (use --include-dirty to include them)"
                    )
                )
        self.isolation = isolation
        self._warnings = warnings
        try:
            self._agents = plan.resolved_agents()
        except AgentError as exc:
            raise PreflightError(f"{plan.source}: agents.{exc.name}: {exc}") from None
        for task in plan.tasks:
            name = plan.agent_of(task)
            spec = self._agents.get(name)
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
        return warnings

    # ------------------------------------------------------------ run

    @classmethod
    def from_log(cls, log_path: Path, options: EngineOptions | None = None) -> Engine:
        """An engine that continues the run recorded in ``log_path`` (same log, same branches)."""
        state, report = final_state(log_path)
        if state.plan is None or not state.run_id:
            raise PreflightError(f"{log_path}: not a delegate-tui run log (no readable RunStarted)")
        if state.finished:
            raise PreflightError(
                f"{log_path}: run {state.run_id} already ended ({state.status}); nothing to resume"
            )
        engine = cls(
            state.plan, dataclasses.replace(options or EngineOptions(), run_id=state.run_id)
        )
        engine.state = state
        engine._seq = state.last_seq
        engine.repo = Path(state.repo)
        engine.isolation = state.isolation
        engine.run_dir = log_path.parent
        engine._resume_report = report
        engine._agents = engine.plan.resolved_agents()
        return engine

    async def _resume(self) -> None:
        """End what the previous process left running, mark it interrupted, go on."""
        self._log = LogWriter(self.log_path)
        self._reaper.start()
        if self.isolation in ("worktree", "shared"):
            self._watcher.start()
        left = [t for t in self.state.tasks.values() if t.status in ACTIVE_STATUSES and t.attempts]
        groups = [t.attempts[-1].pgid for t in left if t.attempts[-1].pgid]
        reaped = (
            await asyncio.to_thread(end_groups, groups, self.options.kill_grace_s) if groups else []
        )
        self._emit(
            RunResumed(host_pid=os.getpid(), reaper_pid=self._reaper.pid, reaped_pids=tuple(reaped))
        )
        for message in self._resume_report.messages():
            self._emit(Notice(level="warning", message=f"log: {message}"))
        if groups:
            still = (
                f"ended {len(reaped)} agent group(s) still alive"
                if reaped
                else "no agent was still alive"
            )
            self._emit(Notice(level="info", message=f"resumed run {self.run_id}: {still}"))
        for task in left:
            attempt = task.attempts[-1]
            self._emit(
                TaskFinished(
                    task=task.id,
                    attempt=attempt.number,
                    status="interrupted",
                    reason="delegate-tui stopped while it ran",
                )
            )
        if self.state.auto_approve or self.options.auto_approve:
            for task in left:
                self._schedule_retry(
                    task.id,
                    "The run was interrupted; start this task again.",
                    automatic=True,
                    keep_worktree=False,
                )

    async def run(self) -> RunState:
        """Run the plan to its end (or until stopped); return the final state."""
        if self.state.run_id:  # made by Engine.from_log: a resumed run
            try:
                await self._resume()
                await self._loop()
            finally:
                await self._shutdown()
            return self.state
        if not self.isolation:
            self.preflight()
        self.run_dir = runs_dir(self.repo) / self.run_id
        base_commit = ""
        integration = ""
        if self.isolation in ("worktree", "shared"):
            workspace.ensure_excluded(self.repo)
            base_commit = workspace.rev_parse(self.repo, self.plan.base)
            self._base_branch = (
                workspace.current_branch(self.repo) or ""
                if self.plan.base == "HEAD"
                else self.plan.base
            )
        if self.isolation == "worktree":
            integration = f"delegate/{self.run_id}/integration"
            if self.options.include_dirty and workspace.dirty_paths(self.repo):
                base_commit = workspace.snapshot_worktree(
                    self.repo, base_commit, "delegate-tui: uncommitted changes at run start"
                )
            workspace.create_branch(self.repo, integration, base_commit)
        elif self.isolation == "none":
            self.run_dir = self.repo / ".delegate" / "runs" / self.run_id
        self._log = LogWriter(self.log_path)
        self._reaper.start()
        if self.isolation in ("worktree", "shared"):
            self._watcher.start()
        if self.isolation == "shared":
            # The operator's own uncommitted work at start is not the agents' doing.
            self._shared_start = await asyncio.to_thread(
                workspace.snapshot_worktree,
                self.repo,
                base_commit,
                "delegate-tui: tree at run start",
            )
            self._watcher.watch(SHARED_KEY, self.repo, ignore_dirs=(".delegate",))
        plan = self.plan.model_copy(
            update={"max_parallel": self.options.max_parallel or self.plan.max_parallel}
        )
        self.plan = plan
        self._emit(
            RunStarted(
                run_id=self.run_id,
                plan=plan.model_dump(mode="json", by_alias=True),
                plan_path=str(Path(plan.source).resolve()) if plan.source else "",
                repo=str(self.repo),
                isolation=self.isolation,
                base=self.plan.base,
                base_commit=base_commit,
                integration_branch=integration,
                auto_approve=self.options.auto_approve or plan.approve == "auto",
                max_parallel=plan.max_parallel,
                host_pid=os.getpid(),
                reaper_pid=self._reaper.pid,
                version=__version__,
            )
        )
        for message in self._warnings:
            self._emit(Notice(level="warning", message=message))
        try:
            await self._loop()
        finally:
            await self._shutdown()
        return self.state

    async def _loop(self) -> None:
        while not self.state.finished:
            self._wake.clear()
            self._reconcile()
            if self.state.finished:
                break
            await self._wake.wait()

    def _reconcile(self) -> None:
        """Act on the pure decisions until nothing changes."""
        plan, state = self.plan, self.state
        for task_id, dep, reason in batching.newly_blocked(plan, state):
            self._emit(TaskBlocked(task=task_id, by=dep, reason=reason))
        idle = not state.active and not self._jobs
        if self._stopping:
            if idle:
                self._finish_run("stopped", self._stop_reason)
            return
        outcome = batching.run_outcome(plan, state)
        if idle and (
            self._end_requested or (outcome is not None and not self._waits_for_operator(outcome))
        ):
            self._finish_run(
                outcome or "stopped", "ended by the operator" if outcome is None else ""
            )
            return
        if idle and outcome is not None and not self._told_waiting:
            self._told_waiting = True
            self._emit(
                Notice(
                    level="warning",
                    message="the run is waiting for you: retry or skip the "
                    "failed tasks, or end the run",
                )
            )
        if state.paused or state.proposal is not None:
            if state.paused and idle and state.auto_approve and state.proposal is None:
                self._finish_run("failed" if outcome is None else outcome, "scheduling stopped")
            return
        proposal = batching.next_batch(plan, state, auto_approve=state.auto_approve)
        if proposal is None:
            return
        ev = self._emit(
            BatchProposed(
                batch=state.batches + 1,
                tasks=proposal.tasks,
                held=proposal.held,
                notes=proposal.notes,
                needs_approval=proposal.needs_approval,
            )
        )
        assert isinstance(ev, BatchProposed)
        if not proposal.needs_approval:
            self._approve(ev.batch, proposal.tasks, by="policy")

    def _waits_for_operator(self, outcome: str) -> bool:
        return self.options.hold_at_end and outcome != "succeeded" and not self._end_requested

    def _finish_run(self, status: str, reason: str = "") -> None:
        summary = metrics.summarize(self.state)
        if reason:
            summary = f"{reason}. {summary}" if summary else reason
        self._emit(
            RunFinished(
                status=status, metrics=metrics.compute(self.state, time.time()), summary=summary
            )
        )

    async def _shutdown(self) -> None:
        await self._watcher.close()
        for job in list(self._jobs.values()):
            job.cancel()
        for proc in list(self._procs.values()):
            await proc.terminate(self.options.kill_grace_s)
        if self._final_merge_requested and self.state.status in ("succeeded", "partial"):
            await self._final_merge()
        if self.isolation == "worktree":
            await self._cleanup_worktrees()
        if self._log is not None:
            self._log.close()
        self._reaper.close()

    async def _cleanup_worktrees(self) -> None:
        """Remove worktrees whose work is merged; keep the others for inspection."""
        kept = []
        for task in self.state.tasks.values():
            for attempt in task.attempts:
                if not attempt.workdir or not Path(attempt.workdir).exists():
                    continue
                if attempt.merged_commit:
                    async with self._git_lock:
                        await asyncio.to_thread(
                            workspace.remove_worktree, self.repo, Path(attempt.workdir)
                        )
                else:
                    kept.append(attempt.workdir)
        if kept and self._log is not None:
            # Logged without a listener round-trip: the run is over.
            self._seq += 1
            ev = Notice(
                seq=self._seq,
                ts=time.time(),
                level="info",
                message=f"kept {len(kept)} worktree(s) of unmerged work for inspection under "
                f"{self.repo / '.delegate' / 'worktrees' / self.run_id}",
            )
            apply(self.state, ev)
            self._log.write(ev, self._keyframe)
            for listener in self._listeners:
                listener(ev)

    # ------------------------------------------------------------ commands

    def approve(self, tasks: list[str] | None = None) -> str:
        """Approve the pending proposal (all of it, or only ``tasks``)."""
        if self.state.finished:
            return "the run has ended"
        proposal = self.state.proposal
        if proposal is None:
            return "no batch is waiting for approval"
        chosen = tuple(t for t in proposal.tasks if tasks is None or t in tasks)
        if not chosen:
            return "no task selected"
        self._approve(proposal.batch, chosen, by="operator")
        return ""

    def _approve(self, batch: int, tasks: tuple[str, ...], *, by: str) -> None:
        self._emit(BatchApproved(batch=batch, tasks=tasks, by=by))
        for task_id in tasks:
            self._start(
                task_id,
                self.state.tasks[task_id].attempts[-1].number + 1
                if self.state.tasks[task_id].attempts
                else 1,
            )

    def hold(self) -> str:
        """Decline the proposal for now; scheduling pauses until resumed."""
        if self.state.finished:
            return "the run has ended"
        proposal = self.state.proposal
        if proposal is None:
            return "no batch is waiting for approval"
        self._emit(BatchHeld(batch=proposal.batch))
        if not self.state.paused:
            self._emit(SchedulingPaused())
        return ""

    def pause(self) -> str:
        """Stop proposing batches; running tasks go on."""
        if self.state.finished:
            return "the run has ended"
        if self.state.paused:
            return "scheduling is already paused"
        self._emit(SchedulingPaused())
        return ""

    def resume(self) -> str:
        """Propose batches again."""
        if self.state.finished:
            return "the run has ended"
        if not self.state.paused:
            return "scheduling is not paused"
        self._emit(SchedulingResumed())
        return ""

    def kill(self, task_id: str) -> str:
        """End a running task's whole process group (SIGTERM, then SIGKILL)."""
        if self.state.finished:
            return "the run has ended"
        task = self.state.tasks.get(task_id)
        if task is None:
            return f"no task '{task_id}'"
        if task.status not in ACTIVE_STATUSES:
            return f"{task_id} is not running ({task.status})"
        attempt = task.attempts[-1]
        self._kill_flags.add(task_id)
        self._emit(KillRequested(task=task_id, attempt=attempt.number))
        proc = self._procs.get(task_id)
        if proc is not None:
            asyncio.get_running_loop().create_task(proc.terminate(self.options.kill_grace_s))
        return ""

    def skip(self, task_id: str, reason: str = "skipped by the operator") -> str:
        """Give up on a task that is not running; its dependents are blocked."""
        if self.state.finished:
            return "the run has ended"
        task = self.state.tasks.get(task_id)
        if task is None:
            return f"no task '{task_id}'"
        if task.status in ACTIVE_STATUSES:
            return f"{task_id} is running; kill it first"
        if task.status in ("succeeded", "skipped"):
            return f"{task_id} is already {task.status}"
        if self.state.proposal is not None and task_id in self.state.proposal.tasks:
            self._emit(BatchHeld(batch=self.state.proposal.batch))
        self._emit(TaskSkipped(task=task_id, reason=reason))
        return ""

    def retry(self, task_id: str, context: str = "", *, keep_worktree: bool = False) -> str:
        """Start a new attempt with the failure and ``context`` added to the prompt."""
        if self.state.finished:
            return "the run has ended"
        task = self.state.tasks.get(task_id)
        if task is None:
            return f"no task '{task_id}'"
        if task.status not in RETRYABLE_STATUSES:
            return f"{task_id} cannot be retried while {task.status}"
        waiting = batching.waiting_reason(self.plan, self.state, task_id)
        if waiting:
            return f"{task_id} {waiting}"
        self._schedule_retry(task_id, context, automatic=False, keep_worktree=keep_worktree)
        return ""

    def _schedule_retry(
        self, task_id: str, context: str, *, automatic: bool, keep_worktree: bool
    ) -> None:
        task = self.state.tasks[task_id]
        original = prompts.render_prompt(self.plan, self.state, task_id)
        last = task.attempt
        if last is not None and last.started_ts:
            prompt = prompts.retry_prompt(original, last, context)
        else:
            prompt = original + (
                f"\n\n--- Operator's note ---\n{context.strip()}\n" if context.strip() else ""
            )
        number = (last.number + 1) if last else 1
        self._kill_flags.discard(task_id)
        self._emit(
            RetryScheduled(
                task=task_id,
                attempt=number,
                prompt=prompt,
                context=context,
                automatic=automatic,
                keep_worktree=keep_worktree and last is not None and bool(last.workdir),
            )
        )
        self._start(task_id, number, prompt=prompt, keep_from=last if keep_worktree else None)

    def send_input(self, task_id: str, text: str) -> str:
        """Type a line into a running agent's stdin."""
        if self.state.finished:
            return "the run has ended"
        proc = self._procs.get(task_id)
        task = self.state.tasks.get(task_id)
        if proc is None or task is None or task.status != "running":
            return f"{task_id} has no running agent"
        try:
            proc.send_input(text)
        except OSError as exc:
            return f"could not send input: {exc}"
        self._emit(InputSent(task=task_id, attempt=task.attempts[-1].number, text=text))
        return ""

    def merge(self, task_id: str) -> str:
        """With ``merge: manual``, merge a finished task into the integration branch."""
        if self.state.finished:
            return "the run has ended"
        task = self.state.tasks.get(task_id)
        if task is None or task.status != "awaiting-merge":
            return f"{task_id} is not waiting for a merge"
        attempt = task.attempts[-1]
        self._jobs[task_id] = asyncio.get_running_loop().create_task(
            self._merge_job(task_id, attempt)
        )
        return ""

    async def _merge_job(self, task_id: str, attempt: AttemptState) -> None:
        try:
            await self._merge(task_id, attempt)
            self._schedule_analysis()
        finally:
            self._jobs.pop(task_id, None)
            self._wake.set()

    def finish(self) -> str:
        """End the run and merge the integration branch into the operator's branch (when clean)."""
        if self.state.finished:
            return "the run has ended"
        if self.isolation != "worktree":
            return "only worktree runs have an integration branch to merge"
        if self.state.active:
            return "tasks are still running"
        self._final_merge_requested = True
        return self.end()

    def end(self) -> str:
        """End the run once nothing is running; what did not run is reported as such."""
        if self.state.finished:
            return "the run has ended"
        if self.state.active:
            return "tasks are still running; kill them or wait"
        self._end_requested = True
        self._wake.set()
        return ""

    def stop(self, reason: str = "stopped by the operator") -> str:
        """End the run: running agents are ended and marked interrupted."""
        if self._stopping:
            return ""
        self._stopping = True
        self._stop_reason = reason
        for task_id, proc in list(self._procs.items()):
            self._kill_flags.add(task_id)
            asyncio.get_running_loop().create_task(proc.terminate(self.options.kill_grace_s))
        self._wake.set()
        return ""

    # ------------------------------------------------------------ attempts

    def _start(
        self,
        task_id: str,
        number: int,
        *,
        prompt: str | None = None,
        keep_from: AttemptState | None = None,
    ) -> None:
        if prompt is None:
            prompt = prompts.render_prompt(self.plan, self.state, task_id)
        job = asyncio.get_running_loop().create_task(
            self._attempt(task_id, number, prompt, keep_from)
        )
        self._jobs[task_id] = job

    async def _attempt(
        self, task_id: str, number: int, prompt: str, keep_from: AttemptState | None
    ) -> None:
        try:
            status, reason, output = await self._run_attempt(task_id, number, prompt, keep_from)
        except asyncio.CancelledError:
            self._emit(
                TaskFinished(
                    task=task_id, attempt=number, status="interrupted", reason="run stopped"
                )
            )
            raise
        except Exception as exc:  # a bug or an environment failure: never lose the run
            status, reason, output = "failed", f"internal error: {type(exc).__name__}: {exc}", ""
            self._emit(Notice(level="error", message=f"{task_id}: {reason}", task=task_id))
        finally:
            self._procs.pop(task_id, None)
        if status:
            if self._stopping and status in ("killed", "failed", "timed-out"):
                status, reason = "interrupted", self._stop_reason
            self._emit(
                TaskFinished(
                    task=task_id, attempt=number, status=status, reason=reason, output=output
                )
            )
        self._jobs.pop(task_id, None)
        self._after_attempt(task_id)
        self._schedule_analysis()

    def _after_attempt(self, task_id: str) -> None:
        if self._stopping:
            return
        if batching.auto_retry_allowed(self.plan, self.state, task_id):
            self._schedule_retry(task_id, "", automatic=True, keep_worktree=False)
            return
        task = self.state.tasks[task_id]
        if task.status in batching.FAILED_STATUSES and task.batch:
            members = [t.id for t in self.state.tasks.values() if t.batch == task.batch]
            if batching.batch_all_failed(self.state, members):
                self._emit(
                    Notice(
                        level="error",
                        message=f"every task of batch {task.batch} failed ({', '.join(members)}): "
                        "suspect the approach, not the tasks; scheduling paused",
                    )
                )
                if not self.state.paused:
                    self._emit(SchedulingPaused())

    async def _run_attempt(
        self, task_id: str, number: int, prompt: str, keep_from: AttemptState | None
    ) -> tuple[str, str, str]:
        """One attempt from workspace to merge. Returns (status, reason, output)."""
        task = self.plan.task(task_id)
        spec = self._agents[self.plan.agent_of(task)]
        workdir, start = await self._prepare_workspace(task_id, number, keep_from)

        def output(stream: str) -> Callable[[bytes], None]:
            def emit(data: bytes) -> None:
                self._output(task_id, number, stream, data)

            return emit

        ok, detail = await self._worktree_setup(task_id, number, workdir, output("setup"))
        if not ok:
            self._emit(SetupFinished(task=task_id, attempt=number, ok=False, detail=detail))
            return "failed", f"setup failed: {detail}", ""
        if self.plan.worktree_setup != type(self.plan.worktree_setup)():
            self._emit(SetupFinished(task=task_id, attempt=number, ok=True))
        if task_id in self._kill_flags:
            self._emit(TaskExited(task=task_id, attempt=number, exit_code=None, reason="killed"))
            return "killed", "killed before its agent started", ""

        messages = self.run_dir / "messages"
        messages.mkdir(parents=True, exist_ok=True)
        last_message = messages / f"{task_id}-{number}.txt"
        argv = build_argv(
            spec,
            prompt=prompt,
            task_id=task_id,
            workdir=str(workdir),
            last_message=str(last_message),
            model=task.model,
            persona=task.persona,
            task_command=task.command,
        )
        transport = self.options.transport or spec.transport
        env = {
            **os.environ,
            **spec.env,
            "DELEGATE_RUN_ID": self.run_id,
            "DELEGATE_TASK_ID": task_id,
            "DELEGATE_ATTEMPT": str(number),
            "DELEGATE_WORKDIR": str(workdir),
            "DELEGATE_EDITS": "\n".join(task.edits),
            "DELEGATE_PROMPT": prompt,
            "DELEGATE_LAST_MESSAGE": str(last_message),
        }
        if transport == "pty" and env.get("TERM", "dumb") == "dumb":
            env["TERM"] = "xterm-256color"
        started = time.monotonic()
        try:
            proc = AgentProcess.spawn(
                argv,
                cwd=str(workdir),
                env=env,
                on_output=output("agent"),
                transport=transport,
                size=self.options.pty_size,
            )
        except OSError as exc:
            message = f"could not start {argv[0]!r}: {exc.strerror or exc}"
            self._emit(
                TaskOutput(
                    task=task_id, attempt=number, data=(message + "\n").encode(), stream="agent"
                )
            )
            self._emit(
                TaskExited(task=task_id, attempt=number, exit_code=None, reason="spawn-error")
            )
            return "failed", message, ""
        self._procs[task_id] = proc
        self._reaper.register(proc.pgid)
        self._emit(
            TaskStarted(
                task=task_id,
                attempt=number,
                agent=spec.name,
                argv=tuple(argv),
                cwd=str(workdir),
                pid=proc.pid,
                pgid=proc.pgid,
                prompt=prompt,
                transport=proc.transport,
                branch=self.state.tasks[task_id].attempts[-1].branch,
            )
        )
        if self.isolation == "worktree":
            self._watched[task_id] = (number, workdir, start)
            self._watcher.watch(task_id, workdir)
        timed_out = False
        wait = asyncio.get_running_loop().create_task(proc.wait())
        done, _ = await asyncio.wait({wait}, timeout=task.timeout)
        if not done:
            timed_out = True
            self._emit(
                Notice(
                    level="warning",
                    message=f"{task_id}: timed out after {task.timeout:g}s; ending it",
                    task=task_id,
                )
            )
            await proc.terminate(self.options.kill_grace_s)
        rc = await wait
        self._reaper.unregister(proc.pgid)
        self._procs.pop(task_id, None)
        if task_id in self._watched:
            # The agent is done: one last look, then its change set stands still.
            self._watcher.unwatch(task_id)
            await self._refresh_changes(task_id)
            self._watched.pop(task_id, None)
        killed = task_id in self._kill_flags
        reason = "timeout" if timed_out else "killed" if killed else "exit"
        self._emit(
            TaskExited(
                task=task_id,
                attempt=number,
                exit_code=rc if rc >= 0 else None,
                signal=-rc if rc < 0 else None,
                duration_s=round(time.monotonic() - started, 3),
                reason=reason,
            )
        )
        attempt = self.state.tasks[task_id].attempts[-1]
        if timed_out:
            return "timed-out", f"timed out after {task.timeout:g}s", ""
        if killed:
            return "killed", "killed by the operator", ""
        if rc != 0:
            return "failed", prompts.failure_summary(attempt), ""

        if not await self._check_criteria(task_id, number, workdir, output("criteria")):
            return "failed", prompts.failure_summary(self.state.tasks[task_id].attempts[-1]), ""
        last_text = (
            last_message.read_text(encoding="utf-8", errors="replace")
            if last_message.exists()
            else ""
        )
        final = prompts.final_output(attempt, last_text)

        if self.isolation == "worktree":
            title = task.label
            commit = await asyncio.to_thread(
                workspace.commit_all,
                workdir,
                f"{title}\n\ndelegate-tui run {self.run_id}, task {task_id}, attempt {number}",
            )
            changed = await asyncio.to_thread(workspace.changed_files, workdir, start, commit)
            self._emit(
                TaskCommitted(task=task_id, attempt=number, commit=commit, changed=tuple(changed))
            )
            if not self._auto_merge:
                self._emit(
                    TaskFinished(
                        task=task_id, attempt=number, status="awaiting-merge", output=final
                    )
                )
                return "", "", ""
            return await self._merge(
                task_id, self.state.tasks[task_id].attempts[-1], output=final, emit_success=False
            )
        return "succeeded", "", final

    # ------------------------------------------------------------ conflicts

    async def _refresh_shared(self) -> None:
        """isolation: shared: what changed in the tree, attributed to running tasks by scope."""
        snapshot, files = await asyncio.to_thread(
            workspace.current_changes, self.repo, self._shared_start
        )
        running = [
            t.id for t in self.state.tasks.values() if t.status in ACTIVE_STATUSES and t.attempts
        ]
        owned, loose = conflicts.attribute(self.plan, running, [f.path for f in files])
        by_path = {f.path: f for f in files}
        moved = loose != self._unattributed
        self._unattributed = loose
        for task_id, paths in owned.items():
            attempt = self.state.tasks[task_id].attempts[-1]
            mine = tuple(by_path[p] for p in paths)
            if mine != attempt.live_changes:
                self._emit(
                    FilesChanged(
                        task=task_id, attempt=attempt.number, files=mine, snapshot=snapshot
                    )
                )
                moved = True
        if moved:
            await self._analyze()

    async def _refresh_changes(self, task_id: str) -> None:
        """Ask git what a watched task has changed; report it if it moved."""
        if task_id == SHARED_KEY:
            await self._refresh_shared()
            return
        info = self._watched.get(task_id)
        if info is None:
            return
        number, workdir, start = info
        snapshot, files = await asyncio.to_thread(workspace.current_changes, workdir, start)
        task = self.state.tasks.get(task_id)
        if task is None or not task.attempts or task.attempts[-1].number != number:
            return
        attempt = task.attempts[-1]
        if tuple(files) != attempt.live_changes or snapshot != attempt.snapshot:
            self._emit(
                FilesChanged(task=task_id, attempt=number, files=tuple(files), snapshot=snapshot)
            )
            await self._analyze()

    def _schedule_analysis(self) -> None:
        if self.isolation in ("worktree", "shared") and not self.state.finished:
            asyncio.get_running_loop().create_task(self._analyze())

    async def _analyze(self) -> None:
        """Re-run the conflict analysis; emit what appeared and what went."""
        async with self._analysis_lock:
            if self.state.finished:
                return
            changes: dict[str, list[str]] = {}
            commits: dict[str, str] = {}
            starts: dict[str, str] = {}
            for task in self.state.tasks.values():
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
            for a, b in conflicts.pairs_to_predict(changes):
                if a not in commits or b not in commits:
                    continue
                if commits[a] and commits[b]:
                    predictions[(a, b)] = await self._predict(commits[a], commits[b])
            tip = self.state.integration_tip
            for task_id, commit in commits.items():
                if commit and tip and changes[task_id] and starts[task_id] != tip:
                    predictions[(conflicts.INTEGRATION, task_id)] = await self._predict(tip, commit)
            loose = self._unattributed if self.isolation == "shared" else []
            found = {f.key: f for f in conflicts.analyze(self.plan, changes, predictions, loose)}
            for key in [k for k in self.state.findings if k not in found]:
                self._emit(ConflictResolved(key=key, reason="no longer holds"))
            for key, f in found.items():
                if key not in self.state.findings:
                    self._emit(
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

    async def _prepare_workspace(
        self, task_id: str, number: int, keep_from: AttemptState | None
    ) -> tuple[Path, str]:
        if self.isolation != "worktree":
            self._emit(TaskPreparing(task=task_id, attempt=number, workdir=str(self.repo)))
            return self.repo, ""
        branch = f"delegate/{self.run_id}/tasks/{task_id}" + (f"-{number}" if number > 1 else "")
        path = self.repo / ".delegate" / "worktrees" / self.run_id / f"{task_id}-{number}"
        start = self.state.integration_tip
        if keep_from is not None and keep_from.workdir and Path(keep_from.workdir).exists():
            # Keep the failed attempt's work, committed or not, as the new start.
            base = await asyncio.to_thread(workspace.head, Path(keep_from.workdir))
            start = await asyncio.to_thread(
                workspace.snapshot_worktree,
                Path(keep_from.workdir),
                base,
                f"delegate-tui: work of {task_id} attempt {keep_from.number}, kept for a retry",
            )
        self._emit(
            TaskPreparing(
                task=task_id, attempt=number, workdir=str(path), branch=branch, base_commit=start
            )
        )
        async with self._git_lock:
            await asyncio.to_thread(workspace.add_worktree, self.repo, path, branch, start)
        return path, start

    async def _worktree_setup(
        self, task_id: str, number: int, workdir: Path, out: Callable[[bytes], None]
    ) -> tuple[bool, str]:
        setup = self.plan.worktree_setup
        if self.isolation != "worktree":
            return True, ""
        for rel in setup.copy_paths:
            warning = await asyncio.to_thread(workspace.setup_copy, self.repo, workdir, rel)
            out((f"⚠ {warning}\n" if warning else f"copied {rel}\n").encode())
        for rel in setup.link:
            warning = await asyncio.to_thread(workspace.setup_link, self.repo, workdir, rel)
            out((f"⚠ {warning}\n" if warning else f"linked {rel}\n").encode())
        for command in setup.run:
            out(f"$ {command}\n".encode())
            rc, _ = await self._shell(command, workdir, out, CRITERIA_TIMEOUT_S, task_id)
            if rc != 0:
                return False, f"`{command}` exited with status {rc}"
        return True, ""

    async def _shell(
        self, command: str, cwd: Path, out: Callable[[bytes], None], timeout: float, task_id: str
    ) -> tuple[int, bytes]:
        """Run an operator-written command (setup, criteria) with ``sh -c``."""
        captured = bytearray()

        def sink(data: bytes) -> None:
            captured.extend(data)
            out(data)

        env = {**os.environ, "DELEGATE_RUN_ID": self.run_id, "DELEGATE_TASK_ID": task_id}
        proc = AgentProcess.spawn(
            ["sh", "-c", command], cwd=str(cwd), env=env, on_output=sink, transport="pipes"
        )
        self._procs[task_id] = proc
        self._reaper.register(proc.pgid)
        wait = asyncio.get_running_loop().create_task(proc.wait())
        done, _ = await asyncio.wait({wait}, timeout=timeout)
        if not done:
            await proc.terminate(self.options.kill_grace_s)
        rc = await wait
        self._reaper.unregister(proc.pgid)
        self._procs.pop(task_id, None)
        return (rc if done else 124), bytes(captured)

    async def _check_criteria(
        self, task_id: str, number: int, workdir: Path, out: Callable[[bytes], None]
    ) -> bool:
        task = self.plan.task(task_id)
        runnable = [c for c in task.criteria if c.run]
        if not runnable:
            return True
        results = []
        for criterion in runnable:
            assert criterion.run is not None
            out(f"$ {criterion.run}\n".encode())
            rc, captured = await self._shell(
                criterion.run, workdir, out, task.timeout or CRITERIA_TIMEOUT_S, task_id
            )
            if task_id in self._kill_flags:
                rc = rc or -1
            results.append(
                CriterionResult(
                    text=criterion.text,
                    command=criterion.run,
                    passed=rc == 0,
                    exit_code=rc,
                    output=prompts.tail_text(captured, 2000),
                )
            )
        passed = all(r.passed for r in results)
        self._emit(
            CriteriaChecked(task=task_id, attempt=number, results=tuple(results), passed=passed)
        )
        return passed

    async def _merge(
        self, task_id: str, attempt: AttemptState, *, output: str = "", emit_success: bool = True
    ) -> tuple[str, str, str]:
        integration = self.state.integration_branch
        title = self.plan.task(task_id).label
        async with self._merge_lock:
            result = await asyncio.to_thread(
                workspace.merge_into,
                self.repo,
                integration,
                attempt.commit,
                f"Merge {task_id}: {title}\n\ndelegate-tui run {self.run_id}, attempt {attempt.number}",
            )
        if not result.ok:
            self._emit(
                MergeConflict(
                    task=task_id,
                    attempt=attempt.number,
                    paths=result.conflicts,
                    detail=result.detail,
                )
            )
            reason = "merge conflict in " + (", ".join(result.conflicts) or "the tree")
            if emit_success:
                self._emit(
                    TaskFinished(
                        task=task_id, attempt=attempt.number, status="merge-conflict", reason=reason
                    )
                )
                self._after_attempt(task_id)
            return "merge-conflict", reason, ""
        self._emit(
            TaskMerged(
                task=task_id,
                attempt=attempt.number,
                commit=result.commit,
                fast_forward=result.fast_forward,
            )
        )
        if emit_success:
            self._emit(
                TaskFinished(
                    task=task_id,
                    attempt=attempt.number,
                    status="succeeded",
                    output=self.state.tasks[task_id].output,
                )
            )
            return "", "", ""
        return "succeeded", "", output

    async def _final_merge(self) -> None:
        integration = self.state.integration_branch
        if not integration:
            return
        async with self._merge_lock:
            try:
                result = await asyncio.to_thread(
                    workspace.final_merge, self.repo, integration, self._base_branch
                )
            except workspace.GitError as exc:
                result = workspace.MergeResult(False, detail=str(exc))
        branch = workspace.current_branch(self.repo) or "HEAD"
        detail = result.detail or ("fast-forward" if result.fast_forward else "merge commit")
        if result.conflicts:
            detail += ": " + ", ".join(result.conflicts)
        self._emit(FinalMerge(ok=result.ok, branch=branch, commit=result.commit, detail=detail))


def install_signal_handlers(engine: Engine) -> None:
    """Ctrl-C or SIGTERM ends the run cleanly; a second Ctrl-C ends agents at once."""
    loop = asyncio.get_running_loop()
    count = {"n": 0}

    def handle(signame: str) -> None:
        count["n"] += 1
        if count["n"] == 1:
            engine.stop(f"interrupted by {signame}")
        else:
            for proc in list(engine._procs.values()):
                proc.signal_group(signal.SIGKILL)

    if threading.current_thread() is not threading.main_thread():
        return  # only the main thread may take signals; its owner handles them
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, handle, sig.name)
