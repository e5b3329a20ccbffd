"""One attempt of one task, from its worktree to its commit (and merge): an outcome.

Owns the steps of an attempt and the events each step reports: the worktree
(a new branch from the integration tip, or from the failed attempt's work
when the operator keeps it), the plan's ``worktree_setup``, the agent's argv
and environment, waiting for it under its timeout, the task's criteria, the
commit, and the merge into the integration branch when ``merge: auto``. It
returns an :class:`Outcome`, and the engine says how the task ended
(``TaskFinished``) and what follows. It decides nothing about other tasks.

An agent with a structured stream (``AgentSpec.stream``) is read as it works
(:mod:`delegate_tui.core.streams`): its tool calls, tokens and cost become
events, a file it says it wrote makes the conflict monitor look at once, and
the attempt stops it when it spends its budget (``over-budget``) or when its
vendor keeps refusing its credentials ("authentication failed") rather than
letting it burn its timeout. A retry continues the agent's conversation where
its CLI can (``resume_command``).

(About 770 lines: the steps of one attempt in the order they run, each a method;
what the stream, the scope guard and the sandbox ask of an attempt sits beside
the step that uses it, and their decisions live in their own modules.)
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from delegate_tui.core import guard, object_store, prompts, runlog, sandbox, streams, workspace
from delegate_tui.core.agents import (
    AgentSpec,
    agent_prompt,
    build_argv,
    configured_model,
    guard_environment,
)
from delegate_tui.core.conflict_monitor import ConflictMonitor
from delegate_tui.core.emitter import Emitter
from delegate_tui.core.events import (
    ANALYZED_STATUSES,
    AgentApiRetry,
    AgentMessage,
    AgentToolFinished,
    AgentToolStarted,
    AgentUsage,
    ChangedFile,
    CriteriaChecked,
    CriterionResult,
    Event,
    GuardDenied,
    Notice,
    SandboxDenied,
    SetupFinished,
    TaskCommitted,
    TaskExited,
    TaskOutput,
    TaskPreparing,
    TaskSandboxed,
    TaskStarted,
    TaskStatus,
)
from delegate_tui.core.executor import AttemptLost, Executor
from delegate_tui.core.integration import Integration
from delegate_tui.core.metrics import usd, usd_of
from delegate_tui.core.plan import Plan
from delegate_tui.core.prices import PriceTable, user_prices_path
from delegate_tui.core.state import AUTH_RETRY_LIMIT, AttemptState, total_by_model

#: Tasks whose declared files the guard holds for them: working, unmerged, or queued.
GUARDED_OWNERS = ANALYZED_STATUSES | {"pending", "proposed"}
#: How long a setup or criteria command may run when its task sets no timeout.
CRITERIA_TIMEOUT_S = 600.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an attempt ended: a task status, why, and its output for dependents."""

    status: TaskStatus
    reason: str = ""
    output: str = ""


@dataclass(frozen=True, slots=True)
class AttemptContext:
    """What every attempt of a run shares."""

    plan: Plan
    agents: dict[str, AgentSpec]
    repo: Path
    run_id: str
    run_dir: Path
    isolation: str
    auto_merge: bool
    transport: str | None = None  # force pty or pipes for every agent
    pty_size: tuple[int, int] = (120, 40)
    prices: PriceTable | None = None  # estimates costs the agents' CLIs do not report


class Attempt:
    """One attempt: call :meth:`run` once."""

    def __init__(
        self,
        ctx: AttemptContext,
        emitter: Emitter,
        executor: Executor,
        monitor: ConflictMonitor,
        integration: Integration,
        *,
        task_id: str,
        number: int,
        prompt: str,
        keep_from: AttemptState | None = None,
    ) -> None:
        self.ctx = ctx
        self._emitter = emitter
        self._executor = executor
        self._monitor = monitor
        self._integration = integration
        self.task_id = task_id
        self.number = number
        self.prompt = prompt
        self.keep_from = keep_from
        self.task = ctx.plan.task(task_id)
        #: Set when the attempt itself ends its agent (budget, credentials): status, why.
        self._stopped: tuple[TaskStatus, str] | None = None
        self._writes: set[str] = set()  # ids of the agent's open file-writing tool calls
        self._told_unpriced = False  # said that its spend has no price a budget can count
        self._denials: Path | None = None  # the scope guard's record of refused writes
        self._denials_seen = 0
        self._guard_env: dict[str, str] = {}  # what installs the guard, for gemini
        self._node = ""  # where the executor placed it ("": this machine)
        #: The conflict monitor's look at the worktree as the agent ended: snapshot, files.
        self._final_look: tuple[str, tuple[ChangedFile, ...]] | None = None

    def _emit(self, ev: Event) -> None:
        self._emitter.emit(ev)

    def _out(self, stream: str) -> Callable[[bytes], None]:
        return self._emitter.sink(self.task_id, self.number, stream)

    @property
    def _ended(self) -> bool:
        return self._executor.was_ended(self.task_id)

    def _latest(self) -> AttemptState:
        return self._emitter.state.tasks[self.task_id].attempts[-1]

    async def run(self) -> Outcome:
        """The attempt from workspace to merge."""
        task_id, number = self.task_id, self.number
        workdir, start = await self._choose_workspace()
        try:
            # The executor places the attempt (a remote node's clone) while its worktree is
            # made here: both are done before anything runs.
            placing = asyncio.ensure_future(
                self._executor.place(task_id, number, workdir, start, self.task.resources)
            )
            try:
                await self._add_worktree(workdir, start)
            except BaseException:
                placing.cancel()
                await asyncio.wait({placing})
                if not placing.cancelled():
                    placing.exception()  # the worktree's failure is the one said
                raise
            self._node = await placing
            outcome = await self._work(workdir, start)
            if outcome is None:
                await self._executor.collect(task_id, workdir)
        finally:
            await self._executor.release(task_id)
        if outcome is not None:
            return outcome
        final = prompts.final_output(self._latest(), self._last_message())
        if self.ctx.isolation != "worktree":
            return Outcome("succeeded", "", final)
        commit, changed = await self._commit(workdir, start)
        self._emit(
            TaskCommitted(task=task_id, attempt=number, commit=commit, changed=tuple(changed))
        )
        if not self.ctx.auto_merge:
            return Outcome("awaiting-merge", "", final)
        # The merge re-checks it first when what it read changed under it (recheck.Gate):
        # ``failed`` when its criteria fail on the new tip, ``awaiting-merge`` when held.
        merged = await self._integration.merge(task_id, self._latest())
        return Outcome(merged.status, merged.reason, final if merged.status == "succeeded" else "")

    async def _commit(self, workdir: Path, start: str) -> tuple[str, tuple[ChangedFile, ...]]:
        """Commit the attempt's work on its branch: the commit and the files it changed.

        One commit of the worktree's files on the attempt's start
        (:func:`workspace.commit_work`: whatever the agent did to its HEAD, its
        branch or its history). The conflict monitor's last look at the worktree,
        when the agent ended, is that work when nothing ran in the worktree since (no
        criteria commands, and nothing for the executor to bring back: ``settled``): it is committed as it is,
        and git does not read the worktree's files a second time.
        """
        message = (
            f"{self.task.label}\n\n"
            f"delegate-tui run {self.ctx.run_id}, task {self.task_id}, attempt {self.number}"
        )
        if not start:  # no worktree of its own (isolation shared or none)
            commit = await asyncio.to_thread(workspace.commit_all, workdir, message)
            changed = await asyncio.to_thread(workspace.changed_files, workdir, start, commit)
            return commit, tuple(changed)
        branch = workspace.task_branch(self.ctx.run_id, self.task_id, self.number)
        look = self._final_look
        untouched = self._executor.settled(self.task_id) and not any(
            c.run for c in self.task.criteria
        )
        if look is None or not untouched:
            look = None
        commit = await asyncio.to_thread(
            workspace.commit_work, workdir, branch, start, message, look[0] if look else None
        )
        if look is not None:
            return commit, look[1]
        return commit, tuple(
            await asyncio.to_thread(workspace.changed_files, workdir, start, commit)
        )

    async def _work(self, workdir: Path, start: str) -> Outcome | None:
        """Setup, agent and criteria where the executor placed them; ``None`` when all passed."""
        task_id, number = self.task_id, self.number
        ok, detail = await self._setup(workdir)
        if not ok:
            self._emit(SetupFinished(task=task_id, attempt=number, ok=False, detail=detail))
            return Outcome("failed", f"setup failed: {detail}")
        if self.ctx.plan.worktree_setup != type(self.ctx.plan.worktree_setup)():
            self._emit(SetupFinished(task=task_id, attempt=number, ok=True))
        if self._ended:
            self._emit(TaskExited(task=task_id, attempt=number, exit_code=None, reason="killed"))
            return Outcome("killed", "killed before its agent started")
        failed = await self._run_agent(workdir, start)
        if failed is not None:
            return failed
        if not await self._check_criteria(workdir):
            return Outcome("failed", prompts.failure_summary(self._latest()))
        return None

    # ------------------------------------------------------------ steps

    @property
    def _last_message_path(self) -> Path:
        return runlog.message_path(self.ctx.run_dir, self.task_id, self.number)

    def _last_message(self) -> str:
        path = self._last_message_path
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    async def _choose_workspace(self) -> tuple[Path, str]:
        """Where the attempt works and the commit it starts from (its worktree is made by
        :meth:`_add_worktree`)."""
        task_id, number, ctx = self.task_id, self.number, self.ctx
        if ctx.isolation != "worktree":
            self._emit(TaskPreparing(task=task_id, attempt=number, workdir=str(ctx.repo)))
            return ctx.repo, ""
        branch = workspace.task_branch(ctx.run_id, task_id, number)
        path = workspace.worktree_path(ctx.repo, ctx.run_id, task_id, number)
        start = self._emitter.state.integration_tip
        keep = self.keep_from
        if keep is not None and keep.workdir and Path(keep.workdir).exists():
            # Keep the failed attempt's work, committed or not, as the new start: its
            # files on its own start (not on its HEAD, which its agent could have moved).
            base = keep.base_commit or await asyncio.to_thread(workspace.head, Path(keep.workdir))
            start = await asyncio.to_thread(
                workspace.snapshot_worktree,
                Path(keep.workdir),
                base,
                f"delegate-tui: work of {task_id} attempt {keep.number}, kept for a retry",
            )
        self._emit(
            TaskPreparing(
                task=task_id, attempt=number, workdir=str(path), branch=branch, base_commit=start
            )
        )
        return path, start

    async def _add_worktree(self, workdir: Path, start: str) -> None:
        if self.ctx.isolation == "worktree":
            branch = workspace.task_branch(self.ctx.run_id, self.task_id, self.number)
            await self._integration.add_worktree(workdir, branch, start)

    async def _setup(self, workdir: Path) -> tuple[bool, str]:
        setup, ctx = self.ctx.plan.worktree_setup, self.ctx
        if ctx.isolation != "worktree":
            return True, ""
        out = self._out("setup")
        for rel in setup.copy_paths:
            warning = await asyncio.to_thread(workspace.setup_copy, ctx.repo, workdir, rel)
            out((f"⚠ {warning}\n" if warning else f"copied {rel}\n").encode())
        for rel in setup.link:
            warning = await asyncio.to_thread(workspace.setup_link, ctx.repo, workdir, rel)
            out((f"⚠ {warning}\n" if warning else f"linked {rel}\n").encode())
        for command in setup.run:
            out(f"$ {command}\n".encode())
            rc, _ = await self._shell(command, workdir, out, CRITERIA_TIMEOUT_S)
            if rc != 0:
                return False, f"`{command}` exited with status {rc}"
        return True, ""

    def _env(self, workdir: Path, prompt: str, transport: str) -> dict[str, str]:
        spec = self.ctx.agents[self.ctx.plan.agent_of(self.task)]
        env = {
            **os.environ,
            **spec.env,
            "DELEGATE_RUN_ID": self.ctx.run_id,
            "DELEGATE_TASK_ID": self.task_id,
            "DELEGATE_ATTEMPT": str(self.number),
            "DELEGATE_WORKDIR": str(workdir),
            "DELEGATE_EDITS": "\n".join(self.task.edits),
            "DELEGATE_PROMPT": prompt,
            "DELEGATE_LAST_MESSAGE": str(self._last_message_path),
            **self._guard_env,  # the scope guard's, for a CLI that takes it so (gemini)
        }
        if transport == "pty" and env.get("TERM", "dumb") == "dumb":
            env["TERM"] = "xterm-256color"
        return env

    def _resumable_session(self, spec: AgentSpec) -> tuple[str, AttemptState | None]:
        """The conversation this attempt continues (``""``: a fresh one) and its attempt."""
        attempts = self._emitter.state.tasks[self.task_id].attempts
        if not spec.resume_command or len(attempts) < 2 or not attempts[-1].resume_session:
            return "", None
        previous = attempts[-2]
        return previous.session_id, previous if previous.session_id else None

    def _parser(
        self, spec: AgentSpec, workdir: Path, resumed: AttemptState | None
    ) -> streams.StreamParser | None:
        if spec.stream is None:
            return None
        prices = self.ctx.prices
        # A resumed session reports totals since it began (claude, codex): what every
        # earlier attempt of that session used is taken off.
        chain = [
            a
            for a in self._emitter.state.tasks[self.task_id].attempts[:-1]
            if resumed is not None and a.session_id == resumed.session_id
        ]
        costs = [a.cost_usd for a in chain if a.cost_usd is not None]
        return streams.parser_for(
            spec.stream,
            self.task_id,
            self.number,
            workdir=str(workdir),
            model=self.task.model or configured_model(spec, {**os.environ, **spec.env}),
            price=prices.estimate if prices is not None else None,
            baseline=total_by_model(a.usage for a in chain),
            baseline_cost=sum(costs) if costs else None,
        )

    def _install_guard(self, spec: AgentSpec, workdir: Path) -> str | None:
        """The scope guard's settings for this attempt's agent, where its CLI takes one
        (``guard_args``; ``guard_env``, kept in ``self._guard_env`` for :meth:`_env`)."""
        task, ctx = self.task, self.ctx
        self._guard_env = {}
        if (task.guard or ctx.plan.guard) != "on" or not (spec.guard_args or spec.guard_env):
            return None
        cli = spec.preset or spec.name
        if spec.guard_env and self._node:
            return None  # its home links the operator's files on this machine, not the node's
        if ctx.isolation != "worktree" or not (task.edits or task.kind == "consult"):
            return None  # nothing declared to hold it to (the prompt says so)
        state = self._emitter.state
        owners = {
            other.id: other.edits
            for other in ctx.plan.tasks
            if other.id != task.id
            and other.edits
            and state.tasks.get(other.id) is not None
            and state.tasks[other.id].status in GUARDED_OWNERS
        }
        spec_ = guard.GuardSpec(
            root=str(workdir),
            task=task.id,
            edits=task.edits,
            consult=task.kind == "consult",
            owners=owners,
            shared_files=ctx.plan.shared_files,
        )
        env = {**os.environ, **spec.env}
        gemini_dir = Path(env.get("GEMINI_CLI_HOME") or env.get("HOME") or Path.home()) / ".gemini"
        settings, self._denials = guard.install(
            spec_, ctx.run_dir / "guard", f"{self.task_id}-{self.number}", cli, gemini_dir
        )
        self._guard_env = guard_environment(spec, settings)
        return settings

    def _report_denials(self) -> None:
        """Say what the guard refused since the last look (it writes them to a file)."""
        if self._denials is None:
            return
        found = guard.read_denials(self._denials, self._denials_seen)
        self._denials_seen += len(found)
        for d in found:
            self._emit(
                GuardDenied(
                    task=self.task_id,
                    attempt=self.number,
                    tool=d.get("tool", ""),
                    path=d.get("path", ""),
                    reason=d.get("reason", ""),
                )
            )

    def _limits(self, spec: AgentSpec) -> tuple[float | None, int | None]:
        """This task's budget (USD) and turn limit per attempt."""
        return self.task.budget_usd, self.task.max_turns or self.ctx.plan.max_turns

    def _stop(self, status: TaskStatus, reason: str, *, running: bool = True) -> None:
        """End the agent for a reason of the attempt's own; ``running`` is False for what
        its stream said last, read once it had exited (the verdict stands, nothing to end)."""
        if self._stopped is None and not self._ended:
            self._stopped = (status, reason)
            self._emit(
                Notice(level="warning", message=f"{self.task_id}: {reason}", task=self.task_id)
            )
            if running:
                self._executor.stop(self.task_id)

    def _on_agent_event(
        self, ev: Event, spec: AgentSpec, parser: streams.StreamParser, *, running: bool = True
    ) -> None:
        """Act on what the agent's stream says while it works (and on what it said last,
        read at its end, with ``running`` False)."""
        budget, max_turns = self._limits(spec)
        if isinstance(ev, AgentUsage):
            self._tell_unpriced(ev, spec, budget)
            if budget is not None and not spec.budget_args and (ev.cost_usd or 0.0) > budget:
                spent = usd_of(ev.cost_usd or 0.0, budget)
                self._stop("over-budget", f"over budget: spent {spent}", running=running)
        if (
            max_turns is not None
            and not spec.turns_args
            and isinstance(ev, AgentToolStarted | AgentMessage | AgentUsage)
        ):
            # codex and gemini report usage (and so turns) only at their end: the turns
            # the parser counted are checked at each tool call and message as well.
            turns = max(parser.turns, ev.turns if isinstance(ev, AgentUsage) else 0)
            if turns > max_turns:
                self._stop(
                    "over-budget", f"over budget: {turns} turns of {max_turns}", running=running
                )
        if isinstance(ev, AgentToolStarted) and ev.writes:
            self._writes.add(ev.tool_id)
        elif isinstance(ev, AgentToolFinished) and ev.tool_id in self._writes:
            self._writes.discard(ev.tool_id)
            if not ev.ok and guard.MARK in ev.detail:
                self._report_denials()
            else:
                self._monitor.poke(self.task_id)  # look before the watcher's next round
        elif (
            isinstance(ev, AgentApiRetry)
            and ev.status in (401, 403)
            and self._latest().auth_failures >= AUTH_RETRY_LIMIT
        ):
            self._stop(
                "failed",
                f"authentication failed: the API answered HTTP {ev.status} "
                f"{self._latest().auth_failures} times; check the agent's key or login",
                running=running,
            )

    def _tell_unpriced(self, ev: AgentUsage, spec: AgentSpec, budget: float | None) -> None:
        """Say once, when a budget counts on it, that the agent's spend has no price."""
        if self._told_unpriced or ev.cost_usd is not None or spec.stream in streams.CLI_COST:
            return
        models = [u.model for u in ev.usage if u.input or u.cached or u.output]
        task_budget = budget if budget is not None and not spec.budget_args else None
        run_budget = self.ctx.plan.budget_usd
        if not models or (task_budget is None and run_budget is None):
            return
        self._told_unpriced = True
        acts = []
        if task_budget is not None:
            acts.append(f"its budget ({usd(task_budget)}) cannot stop it")
        if run_budget is not None:
            acts.append(f"the run's budget ({usd(run_budget)}) does not count its spend")
        message = (
            f"{self.task_id}: no price known for {', '.join(map(repr, models))}: "
            f"{' and '.join(acts)}; name the model (the task's `model:`) or add it to "
            f"{user_prices_path()}"
        )
        self._emit(Notice(level="warning", message=message, task=self.task_id))

    def _result_outcome(self, rc: int) -> Outcome | None:
        """What the agent's own account of its end says, where it says more than its exit code."""
        latest = self._latest()
        if latest.result_ok is not False:
            return None
        reason = latest.result_reason
        text = " ".join(latest.result_text.split())[:300]
        if reason == "budget":
            budget = self.task.budget_usd
            spent = usd(latest.cost_usd) if latest.cost_usd is not None else "its budget"
            limit = f" of {usd(budget)}" if budget is not None else ""
            return Outcome("over-budget", f"over budget: spent {spent}{limit}")
        if reason == "max_turns":
            return Outcome("over-budget", f"over budget: reached its turn limit ({latest.turns})")
        if reason == "auth":
            return Outcome("failed", f"authentication failed: {text or 'the API refused the key'}")
        if reason == "permission_denied":
            return Outcome("failed", "its CLI refused tools: " + "; ".join(latest.denials))
        detail = text or f"exited with status {rc}"
        return Outcome("failed", f"the agent reported an error: {detail}")

    async def _run_agent(self, workdir: Path, start: str) -> Outcome | None:
        """Run the agent to its end; an outcome when it failed, ``None`` when it exited 0."""
        task, task_id, number, ctx = self.task, self.task_id, self.number, self.ctx
        spec = ctx.agents[ctx.plan.agent_of(task)]
        self._last_message_path.parent.mkdir(parents=True, exist_ok=True)
        session, resumed = self._resumable_session(spec)
        # Who owns what now: a resumed conversation holds the owners of its last attempt.
        prompt = prompts.with_scope_section(
            self.prompt,
            ctx.plan,
            self._emitter.state,
            task_id,
            lambda rel: (workdir / rel).is_dir(),  # what its sandbox opens, if it has one
        )
        if not session:
            prompt = agent_prompt(spec, prompt, task.persona)  # logged exactly as sent
        budget, max_turns = self._limits(spec)
        guard_settings = self._install_guard(spec, workdir)
        argv = build_argv(
            spec,
            prompt=prompt,
            task_id=task_id,
            workdir=str(workdir),
            last_message=str(self._last_message_path),
            model=task.model,
            persona=None if session else task.persona,
            task_command=task.command,
            session=session or None,
            budget_usd=budget,
            max_turns=max_turns,
            guard_settings=guard_settings,
        )
        if spec.own_files and ctx.isolation == "worktree":
            await asyncio.to_thread(workspace.exclude_paths, workdir, spec.own_files)
        transport = ctx.transport or spec.transport
        parser = self._parser(spec, workdir, resumed)
        raw = self._out("agent")
        on_output = raw
        if parser is not None:

            def on_output(data: bytes) -> None:
                raw(data)
                for ev in parser.feed(data):
                    self._emit(ev)
                    self._on_agent_event(ev, spec, parser)

        env, run_argv = self._env(workdir, prompt, transport), argv
        started = time.monotonic()
        try:
            box = await asyncio.to_thread(self._sandbox, spec, workdir, env)
            if box is not None:  # the agent runs under bwrap (core/sandbox.py)
                argv = sandbox.inner_argv(spec.preset or spec.name, argv)
                run_argv = self._sandboxed(box, argv, env.get("PATH"))
                env = sandbox.sandbox_env(env, box[0])
                on_output = sandbox.scanning(on_output, self._denied)
            proc = await self._executor.spawn(
                task_id,
                run_argv,
                cwd=workdir,
                env=env,
                on_output=on_output,
                transport=transport,
                size=ctx.pty_size,
                stdin=spec.stdin,
            )
        except (OSError, sandbox.SandboxError) as exc:
            what = "its sandbox" if isinstance(exc, sandbox.SandboxError) else repr(run_argv[0])
            strerror = exc.strerror if isinstance(exc, OSError) else None
            message = f"could not start {what}: {strerror or exc}"
            data = (message + "\n").encode()
            self._emit(TaskOutput(task=task_id, attempt=number, data=data, stream="agent"))
            self._emit(
                TaskExited(task=task_id, attempt=number, exit_code=None, reason="spawn-error")
            )
            return Outcome("failed", message)
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
                branch=self._latest().branch,
                node=self._node,
            )
        )
        self._monitor.watch(task_id, number, workdir, start)
        try:
            rc = await self._executor.wait(task_id, proc, task.timeout, self._timing_out)
        except AttemptLost as exc:
            await self._monitor.settle(task_id)
            self._emit(
                TaskExited(
                    task=task_id,
                    attempt=number,
                    exit_code=None,
                    duration_s=round(time.monotonic() - started, 3),
                    reason="node-lost",
                )
            )
            return Outcome("failed", str(exc))
        stopped = self._stopped  # the attempt ended it (not what its last words show)
        if box is not None and box[0].objects is not None:
            await self._take_objects(workdir, box[0].objects[0])
        if parser is not None:
            # A last line with no newline after it (claude's `result`, codex's
            # `turn.completed`) is read only now: it counts against the limits too.
            for ev in parser.close():
                self._emit(ev)
                self._on_agent_event(ev, spec, parser, running=False)
        self._report_denials()
        if "GEMINI_CLI_HOME" in self._guard_env:  # what gemini made goes where it belongs
            guard.gemini_home_return(Path(self._guard_env["GEMINI_CLI_HOME"]))
        self._final_look = await self._monitor.settle(task_id)
        killed = self._ended
        reason = (
            "timeout"
            if rc is None
            else "killed"
            if killed
            else "stopped"
            if stopped is not None
            else "exit"
        )
        code = proc.returncode if rc is None else rc
        self._emit(
            TaskExited(
                task=task_id,
                attempt=number,
                exit_code=code if code is not None and code >= 0 else None,
                signal=-code if code is not None and code < 0 else None,
                duration_s=round(time.monotonic() - started, 3),
                reason=reason,
            )
        )
        if rc is None:
            return Outcome("timed-out", f"timed out after {task.timeout:g}s")
        if killed:
            return Outcome("killed", "killed by the operator")
        if self._stopped is not None:
            return Outcome(*self._stopped)
        if (told := self._result_outcome(rc)) is not None:
            return told
        if rc != 0:
            return Outcome("failed", prompts.failure_summary(self._latest()))
        return None

    async def _take_objects(self, workdir: Path, store: Path) -> None:
        """The objects its sandboxed agent wrote, into the repository, checked
        (:func:`object_store.take_objects`); a warning when git refused them."""
        why = await asyncio.to_thread(object_store.take_objects, workdir, store)
        if why is not None:
            self._emit(
                Notice(
                    level="warning",
                    message=f"{self.task_id}: the objects its agent wrote were not taken "
                    f"into the repository ({why}); its work is committed from its files",
                    task=self.task_id,
                )
            )

    def _sandbox(
        self, spec: AgentSpec, workdir: Path, env: dict[str, str]
    ) -> tuple[sandbox.Layout, str] | None:
        """The attempt's sandbox and the bwrap to run it with; ``None`` when it has none."""
        box = sandbox.prepare(
            self.ctx.plan,
            self.task,
            preset=spec.preset or spec.name,
            workdir=workdir,
            repo=self.ctx.repo,
            files=[self._last_message_path, *([self._denials] if self._denials else [])],
            env=env,
            home=Path(env.get("HOME") or Path.home()),
        )
        return None if box is None else (box, sandbox.probe().bwrap or "bwrap")

    def _sandboxed(
        self, box: tuple[sandbox.Layout, str], argv: list[str], path_env: str | None = None
    ) -> list[str]:
        """``argv`` under bwrap, announced (``TaskSandboxed``)."""
        layout, bwrap = box
        layout = sandbox.with_program(layout, argv[0], path_env)
        if self._denials is not None:  # the scope guard's hook runs this Python and package
            here = Path(guard.__file__).resolve().parent.parent
            layout = sandbox.with_visible(layout, (Path(sys.executable), here))
        wrapped = layout.argv(argv, bwrap)
        self._emit(
            TaskSandboxed(
                task=self.task_id,
                attempt=self.number,
                mode=layout.mode,
                network=layout.network,
                writable=tuple(str(p) for p in layout.writable),
                wrapper=tuple(wrapped[: len(wrapped) - len(argv) - 1]),
            )
        )
        return wrapped

    def _denied(self, denial: sandbox.Denial) -> None:
        self._emit(
            SandboxDenied(
                task=self.task_id, attempt=self.number, path=denial.path, detail=denial.line
            )
        )

    def _timing_out(self) -> None:
        self._emit(
            Notice(
                level="warning",
                message=f"{self.task_id}: timed out after {self.task.timeout:g}s; ending it",
                task=self.task_id,
            )
        )

    async def _shell(
        self, command: str, cwd: Path, out: Callable[[bytes], None], timeout: float
    ) -> tuple[int, bytes]:
        env = {**os.environ, "DELEGATE_RUN_ID": self.ctx.run_id, "DELEGATE_TASK_ID": self.task_id}
        return await self._executor.shell(
            self.task_id, command, cwd=cwd, env=env, out=out, timeout=timeout
        )

    async def _check_criteria(self, workdir: Path) -> bool:
        runnable = [c for c in self.task.criteria if c.run]
        if not runnable:
            return True
        out = self._out("criteria")
        results = []
        for criterion in runnable:
            assert criterion.run is not None
            out(f"$ {criterion.run}\n".encode())
            rc, captured = await self._shell(
                criterion.run, workdir, out, self.task.timeout or CRITERIA_TIMEOUT_S
            )
            if self._ended:
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
            CriteriaChecked(
                task=self.task_id, attempt=self.number, results=tuple(results), passed=passed
            )
        )
        return passed
