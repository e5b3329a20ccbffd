"""The engine: the driver of one run, and the operator's commands on it.

Owns the run's life (start or resume, the main loop, shutdown) and the
command façade. It decides nothing itself: each pass of the loop asks the
pure :func:`scheduler.next_steps` what to do and carries the steps out
(block, propose, approve by policy, tell the operator, finish); each
command asks the pure :func:`commands.refusal` whether it may act. The work
is done by small parts that return outcomes or report events: the
:class:`Emitter` (numbering, state, log, listeners), the :class:`Executor`
(process groups, here or on a Ray cluster), an :class:`Attempt` per task attempt, the
:class:`ConflictMonitor` (watcher, git, findings) and the
:class:`Integration` (merges). Everything that happens is an event, applied
to the state, appended to the run log and handed to listeners (the UI, the
headless printer).

Commands (approve, hold, kill, retry, skip, pause, resume, input, merge,
finish, end, stop) are plain methods, safe to call from the loop the engine
runs on; they return a message for the operator, empty when done. (They, and
the guards that stop a run cleanly when its log cannot be written or a bug
strikes in a callback, are why this module is about 850 lines: the decisions
and the work are elsewhere.)
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from delegate_tui import __version__
from delegate_tui.core import (
    metrics,
    notes,
    preflight,
    prompts,
    recheck,
    scheduler,
    workspace,
)
from delegate_tui.core.agents import AgentSpec, gemini_hand_over
from delegate_tui.core.attempt import Attempt, AttemptContext, Outcome
from delegate_tui.core.commands import Command, refusal, restarts_stale
from delegate_tui.core.conflict_monitor import ConflictMonitor, stale_context
from delegate_tui.core.emitter import Emitter, Listener
from delegate_tui.core.events import (
    ACTIVE_STATUSES,
    ANALYZED_STATUSES,
    BatchApproved,
    BatchHeld,
    BatchProposed,
    ConflictDetected,
    ConflictResolved,
    Event,
    InputSent,
    KillRequested,
    Notice,
    RetryScheduled,
    RunFinished,
    RunResumed,
    RunStarted,
    SchedulingPaused,
    SchedulingResumed,
    TaskBlocked,
    TaskFinished,
    TaskOutput,
    TaskSkipped,
    held_changes,
)
from delegate_tui.core.executor import AttemptLost, LocalExecutor, make_executor
from delegate_tui.core.integration import Integration
from delegate_tui.core.plan import Plan
from delegate_tui.core.preflight import PreflightError
from delegate_tui.core.prices import PriceError, PriceTable
from delegate_tui.core.reaper import end_groups
from delegate_tui.core.runlog import LOG_NAME, ReadReport, message_path, new_run_id, runs_dir
from delegate_tui.core.state import AttemptState, RunState
from delegate_tui.core.supervisor import Supervisor
from delegate_tui.core.supervisor import install_signal_handlers as _install

__all__ = ["Engine", "EngineOptions", "PreflightError", "install_signal_handlers", "new_run_id"]


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
    sandbox: str | None = None  # run every task in this sandbox mode (`run --sandbox`)
    finish: bool = False  # merge into the operator's branch at the end, when clean
    run_id: str | None = None
    pty_size: tuple[int, int] = (120, 40)
    auto_merge: bool | None = None  # override `merge:` (None: the plan decides)
    #: An operator is present (the UI): a run with failures waits for them to
    #: retry, skip or end it, instead of ending by itself.
    hold_at_end: bool = False
    executor: str | None = None  # local, ray, ray://HOST:PORT (None: the plan decides)


class Engine:
    """Runs one plan on one repository."""

    def __init__(self, plan: Plan, options: EngineOptions | None = None) -> None:
        self.options = options or EngineOptions()
        self.plan = preflight.prepare(
            plan, agent_override=self.options.agent_override, sandbox_mode=self.options.sandbox
        )
        self.state = RunState()
        self.run_id = self.options.run_id or new_run_id()
        self.repo = self.plan.repo_path()
        self.isolation = ""
        self.run_dir = Path()
        self._emitter = Emitter(self.state)
        self._emitter.subscribe(self._on_event)
        self._emitter.on_log_failure = self._log_lost
        self._executor = make_executor(
            self.options.executor or self.plan.executor, self.options.kill_grace_s, self.run_id
        )
        self._agents: dict[str, AgentSpec] = {}
        self._prices: PriceTable | None = None
        self._jobs: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._stop_reason = ""
        self._end_requested = False
        self._final_merge_requested = self.options.finish
        self._told_waiting = False
        self._budget_told = False
        #: Stale input: start these again once they end: (the operator's words, a fresh
        #: conversation, by the operator).
        self._restarts: dict[str, tuple[str, bool, bool]] = {}
        self._warnings: tuple[str, ...] = ()
        self._resume_report = ReadReport()
        self._base_branch = ""
        self._auto_merge = (
            self.options.auto_merge
            if self.options.auto_merge is not None
            else self.plan.merge == "auto"
        )
        # Made once the repository is known (after preflight, or from the log).
        self._monitor: ConflictMonitor | None = None
        self._integration: Integration | None = None

    # ------------------------------------------------------------ events

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener`` with every event, after it is applied and logged."""
        self._emitter.subscribe(listener)

    def lower_agents(self, nice: int) -> None:
        """Start this run's processes ``nice`` lower in CPU priority than this one (the
        run service does, so its views stay quick under a flood: core/process.py).
        Agents on other machines (the Ray executor) are left as they are."""
        supervisor = getattr(self._executor, "supervisor", None)
        if isinstance(supervisor, Supervisor):
            supervisor.nice = nice

    def _emit(self, ev: Event) -> Event:
        return self._emitter.emit(ev)

    def _on_event(self, ev: Event) -> None:
        if type(ev) is TaskOutput:  # output changes no decision: a flood wakes nothing
            return
        self._wake.set()
        if type(ev) is ConflictDetected:  # agents in a terminal session hear of it now
            for task_id, number, line in notes.typed_to(self.plan, self.state, self._agents, ev):
                asyncio.get_running_loop().call_soon(self._type_note, task_id, number, line)
        if type(ev) is ConflictDetected and ev.kind == "stale-input":
            reader = ev.tasks[0]
            task = self.state.tasks[reader]
            if (
                self.plan.task(reader).on_stale_input == "restart"
                and task.status in ACTIVE_STATUSES
                and self._merged_under(reader, ev.tasks[1])
            ):
                # on_stale_input: restart: end it, then start it again on the new tip
                # (after this event has reached every listener).
                self._restarts[reader] = ("", True, False)
                asyncio.get_running_loop().call_soon(self.kill, reader)

    def _merged_under(self, reader: str, merged: str) -> bool:
        """``merged`` landed after ``reader``'s attempt took its start. A retry that kept
        its old work started on an older tip and was told what merged since in its
        prompt: that is no reason to end it (the finding stays, the merge re-checks it)."""
        attempt = self.state.tasks[reader].attempt
        landed = max((a.merged_ts for a in self.state.tasks[merged].attempts), default=0.0)
        return attempt is not None and landed > attempt.prepared_ts

    def _type_note(self, task_id: str, number: int, line: str) -> None:
        """Type a finding's note into the agent still running that attempt, once."""
        attempt = self.state.tasks[task_id].attempt
        proc = self._executor.running(task_id)
        if proc is None or attempt is None or attempt.number != number or line in attempt.inputs:
            return
        try:
            proc.send_input(line)
        except OSError:
            return  # it reads no input, or has just ended: its next prompt says it
        self._emit(InputSent(task=task_id, attempt=number, text=line, by="delegate-tui"))

    def _log_lost(self, message: str) -> None:
        """The log cannot be written: nothing more may happen that it cannot record."""
        self.stop(message)
        # Said after the event being written is handed out, not in the middle of it.
        asyncio.get_running_loop().call_soon(self._emit, Notice(level="error", message=message))

    def _internal_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        """A bug in a callback: the traceback goes to a file, and the run stops cleanly."""
        exc = context.get("exception")
        if isinstance(exc, asyncio.CancelledError):
            return  # a task cancelled on purpose, reported by asyncio's machinery: no bug
        where = self.run_dir / "internal-errors.txt"
        detail = (
            "".join(traceback.format_exception(exc))
            if isinstance(exc, BaseException)
            else str(context.get("message", "unknown error"))
        )
        try:
            where.parent.mkdir(parents=True, exist_ok=True)
            with where.open("a", encoding="utf-8") as fh:
                fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {detail}\n")
            said = f"internal error ({type(exc).__name__ if exc else 'callback'}), traceback in {where}"
        except OSError:
            said = f"internal error: {detail.strip().splitlines()[-1]}"
        if not self._stopping:
            self.stop(said)
            loop.call_soon(self._emit, Notice(level="error", message=said))

    @property
    def log_failure(self) -> str:
        """Why the run log could not be written (empty while it can)."""
        return self._emitter.log_failure

    @property
    def log_path(self) -> Path:
        """Where this run's events go."""
        return self.run_dir / LOG_NAME

    @property
    def monitor(self) -> ConflictMonitor:
        """The run's conflict monitor (made when the repository is known)."""
        if self._monitor is None:
            self._monitor = ConflictMonitor(self._emitter, self.plan, self.repo, self.isolation)
        return self._monitor

    @property
    def integration(self) -> Integration:
        """The run's merges (made when the repository is known)."""
        if self._integration is None:
            self._integration = Integration(self._emitter, self.plan, self.repo, self.run_id)
            self._integration.gate = recheck.Gate(
                self.plan, self._emitter, self._executor, self._integration
            )
        return self._integration

    # ------------------------------------------------------------ start

    def preflight(self) -> list[str]:
        """Check everything that can be checked before anything is created.

        Raises :class:`PreflightError`; returns warnings (e.g. a dirty tree).
        """
        found = preflight.check(
            self.plan, isolation=self.options.isolation, include_dirty=self.options.include_dirty
        )
        self.repo, self.isolation, self._agents = found.repo, found.isolation, found.agents
        self._warnings = found.warnings
        preflight.check_executor(self.plan, self.isolation, self._executor)
        self._prices = preflight.load_prices()
        return list(found.warnings)

    @classmethod
    def from_log(cls, log_path: Path, options: EngineOptions | None = None) -> Engine:
        """An engine that continues the run recorded in ``log_path`` (same log, same branches)."""
        state, report = preflight.read_resumable(log_path)
        assert state.plan is not None  # read_resumable refuses a log without one
        engine = cls(
            state.plan, dataclasses.replace(options or EngineOptions(), run_id=state.run_id)
        )
        engine.state = engine._emitter.state = state
        engine._emitter.seq = state.last_seq
        engine.repo = Path(state.repo)
        engine.isolation = state.isolation
        engine.run_dir = log_path.parent
        engine._resume_report = report
        engine._agents = engine.plan.resolved_agents()
        preflight.check_sandboxes(engine.plan)  # this machine may not be the one that started it
        preflight.check_executor(engine.plan, engine.isolation, engine._executor)
        return engine

    async def run(self) -> RunState:
        """Run the plan to its end (or until stopped); return the final state."""
        asyncio.get_running_loop().set_exception_handler(self._internal_error)
        # The tasks and threads the run starts share what git said about identities.
        with workspace.identity_cache():
            try:
                if self.state.run_id:  # made by Engine.from_log: a resumed run
                    await self._resume()
                else:
                    await self._begin()
                await self._loop()
            finally:
                await self._shutdown()
        return self.state

    async def _begin(self) -> None:
        if not self.isolation:
            self.preflight()
        self.run_dir = runs_dir(self.repo) / self.run_id
        base_commit, integration, self._base_branch = self.integration.prepare(
            self.isolation, self.plan.base, include_dirty=self.options.include_dirty
        )
        self._emitter.open_log(self.log_path)
        max_parallel = self.options.max_parallel or self.plan.max_parallel
        self._executor.start(self.run_dir, self.repo, base_commit, max_parallel)
        self.monitor.start()
        if self.isolation == "shared":
            await self.monitor.watch_shared(base_commit)
        self.plan = plan = self.plan.model_copy(
            update={"max_parallel": max_parallel, "executor": self._executor.name}
        )
        self._emit(
            RunStarted(
                run_id=self.run_id,
                plan=plan.model_dump(mode="json", by_alias=True),
                plan_path=str(Path(plan.source).resolve()) if plan.source else "",
                repo=str(self.repo),
                isolation=self.isolation,
                base=plan.base,
                base_commit=base_commit,
                integration_branch=integration,
                auto_approve=self.options.auto_approve or plan.approve == "auto",
                max_parallel=plan.max_parallel,
                host_pid=os.getpid(),
                reaper_pid=self._executor.reaper_pid,
                version=__version__,
            )
        )
        for message in self._warnings:
            self._emit(Notice(level="warning", message=message))

    async def _resume(self) -> None:
        """End what the previous process left running, mark it interrupted, go on."""
        self._emitter.open_log(self.log_path)
        self._executor.start(
            self.run_dir, self.repo, self.state.integration_tip, self.plan.max_parallel
        )
        self.monitor.start()
        left = [t for t in self.state.tasks.values() if t.status in ACTIVE_STATUSES and t.attempts]
        # Groups on this machine; a remote node's ended with the previous process's
        # connection to the cluster.
        groups = [
            t.attempts[-1].pgid for t in left if t.attempts[-1].pgid and not t.attempts[-1].node
        ]
        reaped = (
            await asyncio.to_thread(end_groups, groups, self.options.kill_grace_s) if groups else []
        )
        # With an operator present the operator decides, unless `resume --yes`.
        auto = (
            self.options.auto_approve
            or self.plan.approve == "auto"
            or (self.state.auto_approve and not self.options.hold_at_end)
        )
        self._emit(
            RunResumed(
                host_pid=os.getpid(),
                reaper_pid=self._executor.reaper_pid,
                reaped_pids=tuple(reaped),
                auto_approve=auto,
            )
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
            self._emit(
                TaskFinished(
                    task=task.id,
                    attempt=task.attempts[-1].number,
                    status="interrupted",
                    reason="delegate-tui stopped while it ran",
                )
            )
        if auto:  # what the stop or the crash cut off starts again
            again = [t for t in self.state.tasks.values() if t.status == "interrupted"]
            for task in again:
                self._schedule_retry(
                    task.id,
                    "The run was interrupted; start this task again.",
                    automatic=True,
                    keep_worktree=False,
                    fresh=True,
                )

    # ------------------------------------------------------------ loop

    async def _loop(self) -> None:
        while not self.state.finished:
            self._wake.clear()
            self._reconcile()
            if self.state.finished:
                break
            await self._wake.wait()

    def _situation(self) -> scheduler.Situation:
        return scheduler.Situation(
            busy=bool(self._jobs),
            stopping=self._stopping,
            stop_reason=self._stop_reason,
            end_requested=self._end_requested,
            hold_at_end=self.options.hold_at_end,
            told_waiting=self._told_waiting,
            budget_told=self._budget_told,
        )

    def _reconcile(self) -> None:
        """Carry out the scheduler's steps until it has none."""
        while not self.state.finished:
            steps = scheduler.next_steps(self.plan, self.state, self._situation())
            if not steps:
                return
            for step in steps:
                self._carry_out(step)

    def _carry_out(self, step: scheduler.Step) -> None:
        if isinstance(step, scheduler.Block):
            self._emit(TaskBlocked(task=step.task, by=step.by, reason=step.reason))
        elif isinstance(step, scheduler.TellWaiting):
            self._told_waiting = True
            self._emit(Notice(level="warning", message=step.message))
        elif isinstance(step, scheduler.Finish):
            self._finish_run(step.status, step.reason)
        elif isinstance(step, scheduler.PauseForBudget):
            self._budget_told = True
            self._emit(Notice(level="error", message=step.message))
            if self.state.proposal is not None:
                self._emit(BatchHeld(batch=self.state.proposal.batch))
            if not self.state.paused:
                self._emit(SchedulingPaused())
        else:
            proposal = step.proposal
            # Only what changed in the held list when that is shorter (a thousand
            # ready tasks would otherwise be listed again in every proposal).
            delta = held_changes(self.state.held_tasks, proposal.held)
            ev = self._emit(
                BatchProposed(
                    batch=step.batch,
                    tasks=proposal.tasks,
                    held=proposal.held if delta is None else delta[0],
                    notes=proposal.notes,
                    needs_approval=proposal.needs_approval,
                    changes_only=delta is not None,
                    released=() if delta is None else delta[2],
                    after=() if delta is None else delta[1],
                )
            )
            assert isinstance(ev, BatchProposed)
            if not proposal.needs_approval:
                self._approve(ev.batch, proposal.tasks, by="policy")

    def _finish_run(self, status: str, reason: str = "") -> None:
        # Findings about work that has all landed (or ended) no longer need anyone;
        # those about work still unmerged stay open for the operator.
        for key, finding in list(self.state.findings.items()):
            tasks = [self.state.tasks.get(t) for t in finding.tasks]
            if not any(t is not None and t.status in ANALYZED_STATUSES for t in tasks):
                self._emit(ConflictResolved(key=key, reason="its tasks have ended"))
        summary = metrics.summarize(self.state)
        if reason:
            summary = f"{reason}. {summary}" if summary else reason
        # The metrics end at the event's own time, as a replay of the log reckons them.
        self._emitter.emit(
            lambda now: RunFinished(
                status=status, metrics=metrics.compute(self.state, now), summary=summary
            )
        )

    async def _shutdown(self) -> None:
        monitor = self._monitor
        if monitor is not None:
            await monitor.close()
        for job in list(self._jobs.values()):
            job.cancel()
        await self._executor.close()
        if self._final_merge_requested and self.state.status in ("succeeded", "partial"):
            await self.integration.final_merge(self._base_branch)
        if self.isolation == "worktree":
            await self.integration.cleanup()
        self._emitter.close()

    # ------------------------------------------------------------ commands

    def _refused(self, command: Command, task_id: str | None = None) -> str:
        return refusal(self.state, command, task_id) or ""

    def approve(self, tasks: list[str] | None = None) -> str:
        """Approve the pending proposal (all of it, or only ``tasks``)."""
        if refused := self._refused("approve"):
            return refused
        proposal = self.state.proposal
        assert proposal is not None
        chosen = tuple(t for t in proposal.tasks if tasks is None or t in tasks)
        if not chosen:
            return "no task selected"
        self._approve(proposal.batch, chosen, by="operator")
        return ""

    def _approve(self, batch: int, tasks: tuple[str, ...], *, by: str) -> None:
        self._emit(BatchApproved(batch=batch, tasks=tasks, by=by))
        for task_id in tasks:
            last = self.state.tasks[task_id].attempt
            self._start(task_id, last.number + 1 if last else 1)

    def hold(self) -> str:
        """Decline the proposal for now; scheduling pauses until resumed."""
        if refused := self._refused("hold"):
            return refused
        assert self.state.proposal is not None
        self._emit(BatchHeld(batch=self.state.proposal.batch))
        if not self.state.paused:
            self._emit(SchedulingPaused())
        return ""

    def pause(self) -> str:
        """Stop proposing batches; running tasks go on."""
        if refused := self._refused("pause"):
            return refused
        self._emit(SchedulingPaused())
        return ""

    def resume(self) -> str:
        """Propose batches again."""
        if refused := self._refused("resume"):
            return refused
        self._emit(SchedulingResumed())
        return ""

    def kill(self, task_id: str) -> str:
        """End a running task's whole process group (SIGTERM, then SIGKILL)."""
        if refused := self._refused("kill", task_id):
            return refused
        attempt = self.state.tasks[task_id].attempts[-1]
        self._emit(KillRequested(task=task_id, attempt=attempt.number))
        self._executor.end(task_id)
        return ""

    def skip(self, task_id: str, reason: str = "skipped by the operator") -> str:
        """Give up on a task that is not running; its dependents are blocked."""
        if refused := self._refused("skip", task_id):
            return refused
        if self.state.proposal is not None and task_id in self.state.proposal.tasks:
            self._emit(BatchHeld(batch=self.state.proposal.batch))
        self._emit(TaskSkipped(task=task_id, reason=reason))
        self._told_waiting = False  # if its dependents are blocked now, that is news
        self.monitor.schedule()  # its findings (a merge that failed, a collision) go
        return ""

    def retry(
        self, task_id: str, context: str = "", *, keep_worktree: bool = False, fresh: bool = False
    ) -> str:
        """Start a new attempt with the failure and ``context`` added to the prompt.

        The agent continues its conversation where its CLI can, unless ``fresh``. A task
        whose input went stale while it runs or waits to merge is ended (its unmerged
        commit dropped) and started again on the new integration tip, with the merged
        change in its prompt (what ``on_stale_input: restart`` does by itself).
        """
        if refused := self._refused("retry", task_id):
            return refused
        if restarts_stale(self.state, task_id):
            if task_id in self._jobs and self.state.tasks[task_id].status == "awaiting-merge":
                return f"{task_id} is being merged; wait for it"
            self._restart_stale(task_id, context, fresh=fresh)
            return ""
        self._schedule_retry(
            task_id, context, automatic=False, keep_worktree=keep_worktree, fresh=fresh
        )
        return ""

    def _restart_stale(self, task_id: str, context: str, *, fresh: bool) -> None:
        task = self.state.tasks[task_id]
        self._restarts[task_id] = (context, fresh, True)
        if task.status in ACTIVE_STATUSES:
            self.kill(task_id)  # its end starts the restart (_end_attempt)
            return
        # Waiting for a merge: nothing runs; its commit stays on its branch, unmerged.
        attempt = task.attempts[-1]
        self._end_attempt(
            task_id,
            attempt.number,
            Outcome("killed", "its input went stale; restarted on the new tip by the operator"),
        )

    def _schedule_retry(
        self,
        task_id: str,
        context: str,
        *,
        automatic: bool,
        keep_worktree: bool,
        fresh: bool = False,
    ) -> None:
        last = self.state.tasks[task_id].attempt
        original = prompts.render_prompt(self.plan, self.state, task_id)
        stale = ""
        if self.isolation == "worktree":  # what merged under it goes into its prompt
            stale = stale_context(self.plan, self.state, self.repo, task_id)
        spec = self._agents.get(self.plan.agent_of(self.plan.task(task_id)))
        continues = (
            not fresh
            and last is not None
            and bool(last.session_id)
            and spec is not None
            and bool(spec.resume_command)
        )
        found = notes.while_you_worked(self.state, task_id, last)
        number = (last.number + 1) if last else 1
        if continues and last is not None and spec is not None and spec.stream == "gemini":
            continues = self._gemini_hand_over(spec, last, task_id, number)
        if continues and last is not None:
            kept = keep_worktree and bool(last.workdir)
            prompt = prompts.continue_prompt(last, context, changed=stale, kept=kept, found=found)
        else:
            prompt = prompts.next_prompt(original, last, context, changed=stale, found=found)
        self._executor.forget(task_id)
        self._told_waiting = False  # the run moves again: a later wait is news
        self._emit(
            RetryScheduled(
                task=task_id,
                attempt=number,
                prompt=prompt,
                context=context,
                automatic=automatic,
                keep_worktree=keep_worktree and last is not None and bool(last.workdir),
                resume_session=continues,
            )
        )
        self._start(task_id, number, prompt=prompt, keep_from=last if keep_worktree else None)

    def _gemini_hand_over(self, spec: AgentSpec, last: AttemptState, task_id: str, n: int) -> bool:
        """gemini keeps a session per project folder: put ``last``'s where gemini, run in
        attempt ``n``'s worktree, takes it over (:func:`agents.gemini_hand_over`); False
        (a fresh start) when there is none, or the attempt runs elsewhere."""
        if (
            self.isolation != "worktree"
            or not last.workdir
            or not isinstance(self._executor, LocalExecutor)
        ):
            return False
        env = {**os.environ, **spec.env}
        home = Path(env.get("GEMINI_CLI_HOME") or env.get("HOME") or Path.home())
        new_root = workspace.worktree_path(self.repo, self.run_id, task_id, n)
        return gemini_hand_over(home / ".gemini", Path(last.workdir), new_root)

    def send_input(self, task_id: str, text: str) -> str:
        """Type a line into a running agent's stdin."""
        if refused := self._refused("input", task_id):
            return refused
        proc = self._executor.running(task_id)
        if proc is None:
            return f"{task_id} has no running agent"
        try:
            proc.send_input(text)
        except OSError as exc:
            return f"could not send input: {exc}"
        attempt = self.state.tasks[task_id].attempts[-1]
        self._emit(InputSent(task=task_id, attempt=attempt.number, text=text))
        return ""

    def merge(self, task_id: str) -> str:
        """With ``merge: manual``, merge a finished task into the integration branch."""
        if refused := self._refused("merge", task_id):
            return refused
        attempt = self.state.tasks[task_id].attempts[-1]
        self._jobs[task_id] = asyncio.get_running_loop().create_task(
            self._merge_job(task_id, attempt)
        )
        return ""

    def finish(self) -> str:
        """End the run and merge the integration branch into the operator's branch (when clean)."""
        if refused := self._refused("finish"):
            return refused
        self._final_merge_requested = True
        return self.end()

    def end(self) -> str:
        """End the run once nothing is running; what did not run is reported as such."""
        if refused := self._refused("end"):
            return refused
        self._end_requested = True
        self._wake.set()
        return ""

    def stop(self, reason: str = "stopped by the operator") -> str:
        """End the run: running agents are ended and marked interrupted."""
        if self._stopping:
            return ""
        self._stopping = True
        self._stop_reason = reason
        self._executor.end_all()
        self._wake.set()
        return ""

    def install_signal_handlers(self, *, hang_up: bool = True) -> None:
        """Ctrl-C, SIGTERM or SIGHUP ends the run cleanly; a second one ends agents at once.

        Without ``hang_up`` (the run service) a lost terminal ends nothing.
        """
        _install(self.stop, self._executor, hang_up=hang_up)

    # ------------------------------------------------------------ jobs

    def _start(
        self,
        task_id: str,
        number: int,
        *,
        prompt: str | None = None,
        keep_from: AttemptState | None = None,
    ) -> None:
        attempt = Attempt(
            self._attempt_context(),
            self._emitter,
            self._executor,
            self.monitor,
            self.integration,
            task_id=task_id,
            number=number,
            prompt=prompts.render_prompt(self.plan, self.state, task_id)
            if prompt is None
            else prompt,
            keep_from=keep_from,
        )
        self._jobs[task_id] = asyncio.get_running_loop().create_task(self._attempt_job(attempt))

    def _attempt_context(self) -> AttemptContext:
        return AttemptContext(
            plan=self.plan,
            agents=self._agents,
            repo=self.repo,
            run_id=self.run_id,
            run_dir=self.run_dir,
            isolation=self.isolation,
            auto_merge=self._auto_merge,
            transport=self.options.transport,
            pty_size=self.options.pty_size,
            prices=self._price_table(),
        )

    def _price_table(self) -> PriceTable:
        if self._prices is None:  # a resumed run: its preflight read the prices already once
            try:
                self._prices = PriceTable.load()
            except PriceError as exc:
                self._emit(Notice(level="warning", message=f"{exc}; using the shipped prices"))
                self._prices = PriceTable.load(user_file=Path("/nonexistent"))
        return self._prices

    async def _attempt_job(self, attempt: Attempt) -> None:
        task_id, number = attempt.task_id, attempt.number
        try:
            outcome = await attempt.run()
        except asyncio.CancelledError:
            self._emit(
                TaskFinished(
                    task=task_id, attempt=number, status="interrupted", reason="run stopped"
                )
            )
            raise
        except AttemptLost as exc:  # its node went away before or after its agent ran
            outcome = Outcome("failed", str(exc))
        except workspace.GitError as exc:  # e.g. a full disk: git's own words
            outcome = Outcome("failed", str(exc))
            self._emit(Notice(level="error", message=f"{task_id}: {exc}", task=task_id))
        except Exception as exc:  # a bug or an environment failure: never lose the run
            outcome = Outcome("failed", f"internal error: {type(exc).__name__}: {exc}")
            self._emit(Notice(level="error", message=f"{task_id}: {outcome.reason}", task=task_id))
        self._end_attempt(task_id, number, outcome)

    async def _merge_job(self, task_id: str, attempt: AttemptState) -> None:
        try:
            # Re-checked first when what it read changed since it started (recheck.Gate).
            merged = await self.integration.merge(task_id, attempt, by_operator=True)
            output = ""
            if merged.status == "succeeded":  # held by the re-check, it said nothing yet
                output = self.state.tasks[task_id].output or self._final_output(task_id, attempt)
            self._end_attempt(
                task_id, attempt.number, Outcome(merged.status, merged.reason, output)
            )
        finally:
            if self._jobs.get(task_id) is asyncio.current_task():  # not a retry it started
                del self._jobs[task_id]
            self._wake.set()

    def _final_output(self, task_id: str, attempt: AttemptState) -> str:
        """What ``attempt`` hands its dependents (its last message, else its output's tail)."""
        path = message_path(self.run_dir, task_id, attempt.number)
        message = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
        return prompts.final_output(attempt, message)

    def _end_attempt(self, task_id: str, number: int, outcome: Outcome) -> None:
        """Say how the attempt ended, then act on what the scheduler makes of it."""
        status, reason = outcome.status, outcome.reason
        if self._stopping and status in ("killed", "failed", "timed-out"):
            status, reason = "interrupted", self._stop_reason
        self._emit(
            TaskFinished(
                task=task_id, attempt=number, status=status, reason=reason, output=outcome.output
            )
        )
        done = self.state.tasks[task_id].attempts[-1]
        if status == "succeeded" and done.merged_commit and self.isolation == "worktree":
            self.integration.release(Path(done.workdir))
        if self._jobs.get(task_id) is asyncio.current_task():
            del self._jobs[task_id]
        if task_id in self._restarts and not self._stopping:
            context, fresh, by_operator = self._restarts.pop(task_id)
            self._schedule_retry(
                task_id, context, automatic=not by_operator, keep_worktree=False, fresh=fresh
            )
        elif not self._stopping:
            step = scheduler.after_attempt(self.plan, self.state, task_id)
            if isinstance(step, scheduler.AutoRetry):
                self._schedule_retry(task_id, "", automatic=True, keep_worktree=False)
            elif isinstance(step, scheduler.PauseAfterBatch):
                self._emit(Notice(level="error", message=step.message))
                if not self.state.paused:
                    self._emit(SchedulingPaused())
        self.monitor.schedule()


def install_signal_handlers(engine: Engine) -> None:
    """Ctrl-C, SIGTERM or SIGHUP ends the run cleanly; a second one ends agents at once."""
    engine.install_signal_handlers()
