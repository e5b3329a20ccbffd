"""RunState and ``apply(state, event)``: the one place a run's state changes.

Owns the projection of events into a picture of the run. Live runs, replay,
``stats``, resume and the tests all build state by folding events through
:func:`apply`, and nowhere else, so they cannot disagree.

``apply`` is deterministic and does no I/O. For speed under floods of output
it updates the state in place and returns it (copying a whole run per output
chunk would cost more than the agents' output itself); take a
``copy.deepcopy`` where a snapshot must not move, as replay keyframes do.

The plan a ``RunStarted`` carries is read by :func:`~delegate_tui.core.logged_plan.read_plan`:
validated into the plan's pydantic models, or, in a process that only views runs
(``attach``), read as logged without importing them.

(About 970 lines: one small handler per event type, thirty-eight of them, and
the per-attempt records they fill — agents' usage, tool calls, the timeline's
phases — kept in one registry so that the fold is read in one place; with them,
the two sets that say which tasks an event can give a new phase.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from delegate_tui.core.events import (
    ACTIVE_STATUSES,
    FINAL_STATUSES,
    AgentApiRetry,
    AgentMessage,
    AgentResult,
    AgentSession,
    AgentToolFinished,
    AgentToolStarted,
    AgentUsage,
    BatchApproved,
    BatchHeld,
    BatchProposed,
    ChangedFile,
    ConflictDetected,
    ConflictResolved,
    CriteriaChecked,
    CriterionResult,
    DecodeError,
    Event,
    FilesChanged,
    FinalMerge,
    GuardDenied,
    HeldTask,
    InputSent,
    KillRequested,
    MergeConflict,
    Metrics,
    Notice,
    RetryScheduled,
    RunFinished,
    RunResumed,
    RunStarted,
    SandboxDenied,
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
    TaskSandboxed,
    TaskSkipped,
    TaskStarted,
    TaskStatus,
    TokenUsage,
    from_json,
    held_after,
    to_json,
)
from delegate_tui.core.logged_plan import read_plan

if TYPE_CHECKING:
    from delegate_tui.core.plan import Plan
else:  # for the codec's type hints of RunState (keyframes leave the plan out): no pydantic
    Plan = object

#: Bytes of each attempt's output kept in state: enough for a retry's context
#: and a dependent's ``{{ outputs.x }}``; the whole output stays in the log.
TAIL_BYTES = 64 * 1024
#: Lines of an agent's transcript (its words and tool calls) kept in state.
TRANSCRIPT_LINES = 200
#: Paths an agent was seen reading or writing, kept per attempt.
SEEN_PATHS = 500
#: Failed calls to the vendor's API for bad credentials after which a task is stopped.
AUTH_RETRY_LIMIT = 3


def tool_line(ev: AgentToolStarted) -> str:
    """One line for a tool call: ``Edit src/app.py``, ``shell: npm test``."""
    if ev.command:
        return f"{ev.name}: {ev.command}"
    if ev.paths:
        more = f" (+{len(ev.paths) - 1})" if len(ev.paths) > 1 else ""
        return f"{ev.name} {ev.paths[0]}{more}"
    return ev.name


def total_by_model(usages: Iterable[Iterable[TokenUsage]]) -> list[TokenUsage]:
    """Several attempts' usage added up model by model."""
    by_model: dict[str, list[TokenUsage]] = {}
    for usage in usages:
        for u in usage:
            by_model.setdefault(u.model, []).append(u)
    out = []
    for model, items in by_model.items():
        t = total_usage(items)
        out.append(
            TokenUsage(
                model=model,
                input=t.input,
                cached=t.cached,
                cache_write=t.cache_write,
                output=t.output,
                reasoning=t.reasoning,
            )
        )
    return out


def total_usage(usages: Iterable[TokenUsage]) -> TokenUsage:
    """The sum of several models' (or attempts') usage, under no model name."""
    total = TokenUsage()
    for u in usages:
        total = TokenUsage(
            input=total.input + u.input,
            cached=total.cached + u.cached,
            cache_write=total.cache_write + u.cache_write,
            output=total.output + u.output,
            reasoning=total.reasoning + u.reasoning,
        )
    return total


@dataclass(frozen=True, slots=True)
class Phase:
    """A task's status from ``ts`` on, and why it waits there (a held or skipped task's reason).

    Every change of a task's status (or of the reason it is held) is kept, so the
    timeline can tell a wait for a dependency from one for a slot or an approval.
    """

    ts: float
    status: TaskStatus
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Mark:
    """An approval or an operator's action, when it happened (the timeline's marks)."""

    ts: float
    #: proposed | approved | held | paused | resumed | kill | retry | skip | input
    #: | run-resumed | final-merge
    kind: str
    tasks: tuple[str, ...] = ()
    detail: str = ""
    batch: int = 0
    by: str = "operator"  # operator | policy | engine


@dataclass(slots=True)
class AttemptState:
    """One attempt of one task."""

    number: int
    prompt: str = ""
    context: str = ""  # the operator's words or failure summary that started it
    workdir: str = ""
    branch: str = ""
    base_commit: str = ""
    argv: tuple[str, ...] = ()
    pid: int = 0
    pgid: int = 0
    node: str = ""  # the cluster node it ran on ("": this machine)
    transport: str = ""
    started_ts: float = 0.0
    ended_ts: float = 0.0
    exit_code: int | None = None
    signal: int | None = None
    exit_reason: str = ""
    setup_ok: bool | None = None
    criteria: tuple[CriterionResult, ...] = ()
    criteria_passed: bool | None = None
    commit: str = ""
    changed: tuple[ChangedFile, ...] = ()
    merged_commit: str = ""
    merged_ts: float = 0.0
    finished_ts: float = 0.0  # when it reached its end state (after checks and merge)
    prepared_ts: float = 0.0  # when it took the integration tip as its start
    conflict_paths: tuple[str, ...] = ()
    live_changes: tuple[ChangedFile, ...] = ()  # from the watcher, while it works
    snapshot: str = ""
    status: TaskStatus = "starting"
    reason: str = ""
    output_bytes: int = 0
    tail: bytearray = field(default_factory=bytearray)
    last_output_ts: float = 0.0
    kill_requested: bool = False
    inputs: list[str] = field(default_factory=list)
    # What the agent's structured stream said (claude, codex, gemini; see core/streams/).
    session_id: str = ""
    model: str = ""
    usage: tuple[TokenUsage, ...] = ()
    cost_usd: float | None = None
    cost_source: str = ""  # cli | estimated
    turns: int = 0
    tool_calls: int = 0
    tool_errors: int = 0
    activity: str = ""  # the last thing it did, in one line
    open_tools: dict[str, str] = field(default_factory=dict)  # tool id -> line
    wrote: list[str] = field(default_factory=list)  # paths its tools wrote, by its account
    read: list[str] = field(default_factory=list)  # paths its tools read or searched
    transcript: list[str] = field(default_factory=list)  # its words and tool calls, the last lines
    api_retries: int = 0
    auth_failures: int = 0
    resume_session: bool = False  # a retry that continues the last attempt's conversation
    result_ok: bool | None = None
    result_reason: str = ""
    result_text: str = ""
    denials: tuple[str, ...] = ()
    guard_denials: list[str] = field(default_factory=list)  # "path: reason", by the guard

    sandbox: str = ""  # "scope, network off" when its agent ran in a sandbox
    sandbox_writable: tuple[str, ...] = ()
    sandbox_denied: tuple[str, ...] = ()  # paths the sandbox refused to let it write

    @property
    def tokens(self) -> TokenUsage:
        """Tokens of every model this attempt used."""
        return total_usage(self.usage)

    @property
    def duration_s(self) -> float:
        """Wall time of the attempt so far (0 before it started)."""
        if not self.started_ts:
            return 0.0
        return max(0.0, (self.ended_ts or self.started_ts) - self.started_ts)


@dataclass(slots=True)
class TaskState:
    """Everything known about one task."""

    id: str
    status: TaskStatus = "pending"
    attempts: list[AttemptState] = field(default_factory=list)
    held_reason: str = ""
    note: str = ""
    blocked_by: str = ""
    skip_reason: str = ""
    output: str = ""  # final output for dependents
    batch: int = 0  # the batch that first started it
    phases: list[Phase] = field(default_factory=list)  # every status it has been in, and when

    @property
    def attempt(self) -> AttemptState | None:
        """The latest attempt, if any."""
        return self.attempts[-1] if self.attempts else None

    @property
    def duration_s(self) -> float:
        """Time spent across every attempt (what the task cost sequentially)."""
        return sum(a.duration_s for a in self.attempts)

    @property
    def changed(self) -> tuple[ChangedFile, ...]:
        """Files changed by the latest committed attempt."""
        for attempt in reversed(self.attempts):
            if attempt.commit:
                return attempt.changed
        return ()

    @property
    def is_final(self) -> bool:
        """True when the task will not move without an operator command."""
        return self.status in FINAL_STATUSES

    @property
    def cost_usd(self) -> float | None:
        """What every attempt cost, as far as known (``None``: no agent reported usage)."""
        costs = [a.cost_usd for a in self.attempts if a.cost_usd is not None]
        return sum(costs) if costs else None

    @property
    def cost_source(self) -> str:
        """``cli`` when every cost came from the agents' CLIs, ``estimated`` when any is ours."""
        sources = {a.cost_source for a in self.attempts if a.cost_usd is not None}
        return "estimated" if "estimated" in sources else "cli" if sources else ""

    @property
    def tokens(self) -> TokenUsage:
        """Tokens of every attempt."""
        return total_usage(a.tokens for a in self.attempts)


@dataclass(slots=True)
class RunState:
    """The state of a run, as the events so far describe it."""

    run_id: str = ""
    plan: Plan | None = None
    plan_path: str = ""
    repo: str = ""
    isolation: str = ""
    base: str = ""
    base_commit: str = ""
    integration_branch: str = ""
    integration_tip: str = ""
    auto_approve: bool = False
    max_parallel: int = 3
    status: str = "new"  # new | running | succeeded | partial | failed | stopped
    started_ts: float = 0.0
    finished_ts: float = 0.0
    last_ts: float = 0.0
    last_seq: int = 0
    paused: bool = False
    tasks: dict[str, TaskState] = field(default_factory=dict)
    proposal: BatchProposed | None = None
    #: Every task the latest proposal held, and why (a proposal may list only changes to it).
    held_tasks: tuple[HeldTask, ...] = ()
    batches: int = 0
    notices: list[Notice] = field(default_factory=list)
    metrics: Metrics | None = None
    summary: str = ""
    host_pids: list[int] = field(default_factory=list)
    reaper_pids: list[int] = field(default_factory=list)
    final_merge: FinalMerge | None = None
    events: int = 0
    #: Open conflict findings by key, and every finding ever seen (for stats).
    findings: dict[str, ConflictDetected] = field(default_factory=dict)
    finding_history: list[ConflictDetected] = field(default_factory=list)
    #: Wall time with no agent at work while the run waited for the operator,
    #: and while no delegate-tui process ran it (between a crash and resume).
    idle_s: float = 0.0
    downtime_s: float = 0.0
    #: Approvals and operator actions, in order (the timeline draws them).
    marks: list[Mark] = field(default_factory=list)

    def task(self, task_id: str) -> TaskState:
        """State of one task (KeyError if the plan has no such task)."""
        return self.tasks[task_id]

    @property
    def cost_usd(self) -> float | None:
        """What the run's agents cost so far, as far as known."""
        costs = [c for c in (t.cost_usd for t in self.tasks.values()) if c is not None]
        return sum(costs) if costs else None

    @property
    def cost_source(self) -> str:
        """``cli``, ``estimated`` (any part of it is) or ``""`` (nothing known)."""
        sources = {t.cost_source for t in self.tasks.values()} - {""}
        return "estimated" if "estimated" in sources else "cli" if sources else ""

    @property
    def tokens(self) -> TokenUsage:
        """Tokens of every task."""
        return total_usage(t.tokens for t in self.tasks.values())

    @property
    def active(self) -> list[TaskState]:
        """Tasks holding a process or a workspace operation."""
        return [t for t in self.tasks.values() if t.status in ACTIVE_STATUSES]

    @property
    def finished(self) -> bool:
        """True once RunFinished was applied."""
        return self.status in ("succeeded", "partial", "failed", "stopped")

    @property
    def elapsed_s(self) -> float:
        """Wall time from start to the last event (or the finish)."""
        if not self.started_ts:
            return 0.0
        return max(0.0, (self.finished_ts or self.last_ts) - self.started_ts)


# ---------------------------------------------------------------- handlers

_Handler = Callable[[RunState, Any], None]
_HANDLERS: dict[type[Event], _Handler] = {}


def _on(cls: type[Event]) -> Callable[[_Handler], _Handler]:
    def register(fn: _Handler) -> _Handler:
        _HANDLERS[cls] = fn
        return fn

    return register


def _attempt(state: RunState, task: str, number: int) -> AttemptState:
    """The attempt an event refers to, created if the log skipped its start."""
    ts = state.tasks.setdefault(task, TaskState(task))
    for attempt in reversed(ts.attempts):
        if attempt.number == number:
            return attempt
    attempt = AttemptState(number)
    ts.attempts.append(attempt)
    return attempt


@_on(RunStarted)
def _run_started(state: RunState, ev: RunStarted) -> None:
    plan = read_plan(ev.plan)  # None for a foreign or damaged log: show what we can
    state.run_id = ev.run_id
    state.plan = plan
    state.plan_path = ev.plan_path
    state.repo = ev.repo
    state.isolation = ev.isolation
    state.base = ev.base
    state.base_commit = ev.base_commit
    state.integration_branch = ev.integration_branch
    state.integration_tip = ev.base_commit
    state.auto_approve = ev.auto_approve
    state.max_parallel = ev.max_parallel
    state.status = "running"
    state.started_ts = ev.ts
    state.host_pids.append(ev.host_pid)
    if ev.reaper_pid:
        state.reaper_pids.append(ev.reaper_pid)
    ids: Iterable[str] = (
        (t.id for t in plan.tasks)
        if plan
        else (str(t.get("id")) for t in ev.plan.get("tasks", []) if isinstance(t, dict))
    )
    for task_id in ids:
        state.tasks.setdefault(task_id, TaskState(task_id))


@_on(RunResumed)
def _run_resumed(state: RunState, ev: RunResumed) -> None:
    # Attempts cut off by the crash ran until the old process was last heard of.
    for task in state.tasks.values():
        for attempt in task.attempts:
            if attempt.started_ts and not attempt.ended_ts and state.last_ts:
                attempt.ended_ts = state.last_ts
    state.host_pids.append(ev.host_pid)
    if ev.reaper_pid:
        state.reaper_pids.append(ev.reaper_pid)
    state.status = "running"
    state.finished_ts = 0.0
    state.proposal = None
    if ev.auto_approve is not None:
        state.auto_approve = ev.auto_approve
    state.marks.append(Mark(ev.ts, "run-resumed", by="engine"))
    for task in state.tasks.values():
        if task.status == "proposed":  # the proposal died with the old process
            task.status = "pending"


@_on(Notice)
def _notice(state: RunState, ev: Notice) -> None:
    state.notices.append(ev)


@_on(RunFinished)
def _run_finished(state: RunState, ev: RunFinished) -> None:
    state.status = ev.status
    state.metrics = ev.metrics
    state.summary = ev.summary
    state.finished_ts = ev.ts
    state.proposal = None


@_on(SchedulingPaused)
def _paused(state: RunState, ev: SchedulingPaused) -> None:
    state.paused = True
    state.marks.append(Mark(ev.ts, "paused"))


@_on(SchedulingResumed)
def _resumed(state: RunState, ev: SchedulingResumed) -> None:
    state.paused = False
    state.marks.append(Mark(ev.ts, "resumed"))


@_on(BatchProposed)
def _proposed(state: RunState, ev: BatchProposed) -> None:
    held_tasks = held_after(state.held_tasks, ev)
    state.held_tasks = held_tasks
    if ev.changes_only:  # the proposal as it stands, all its held tasks listed
        ev = replace(ev, held=held_tasks, changes_only=False, released=(), after=())
    state.proposal = ev
    state.batches = max(state.batches, ev.batch)
    if ev.needs_approval:
        state.marks.append(Mark(ev.ts, "proposed", ev.tasks, batch=ev.batch, by="engine"))
    for task in state.tasks.values():
        if task.status == "pending":
            task.held_reason = ""
    for held in ev.held:
        if held.task in state.tasks:
            state.tasks[held.task].held_reason = held.reason
    for note in ev.notes:
        if note.task in state.tasks:
            state.tasks[note.task].note = note.reason
    for task in state.tasks.values():
        if task.status == "proposed" and task.id not in ev.tasks:  # a revised proposal
            task.status = "pending"
    for task_id in ev.tasks:
        if task_id in state.tasks and state.tasks[task_id].status == "pending":
            state.tasks[task_id].status = "proposed"


@_on(BatchApproved)
def _approved(state: RunState, ev: BatchApproved) -> None:
    state.marks.append(Mark(ev.ts, "approved", ev.tasks, batch=ev.batch, by=ev.by))
    if state.proposal is not None and state.proposal.batch == ev.batch:
        for task_id in state.proposal.tasks:
            task = state.tasks.get(task_id)
            if task is not None and task.status == "proposed" and task_id not in ev.tasks:
                task.status = "pending"
        state.proposal = None
    for task_id in ev.tasks:
        task = state.tasks.get(task_id)
        if task is not None and task.status in ("proposed", "pending"):
            task.status = "starting"
            task.held_reason = ""
            task.batch = ev.batch


@_on(BatchHeld)
def _held(state: RunState, ev: BatchHeld) -> None:
    held = state.proposal.tasks if state.proposal and state.proposal.batch == ev.batch else ()
    state.marks.append(Mark(ev.ts, "held", held, batch=ev.batch))
    if state.proposal is not None and state.proposal.batch == ev.batch:
        for task_id in state.proposal.tasks:
            task = state.tasks.get(task_id)
            if task is not None and task.status == "proposed":
                task.status = "pending"
                task.held_reason = "held by the operator"
        state.proposal = None


@_on(TaskPreparing)
def _preparing(state: RunState, ev: TaskPreparing) -> None:
    attempt = _attempt(state, ev.task, ev.attempt)
    attempt.workdir = ev.workdir
    attempt.branch = ev.branch
    attempt.base_commit = ev.base_commit
    attempt.prepared_ts = ev.ts
    attempt.status = "starting"
    state.tasks[ev.task].status = "starting"


@_on(SetupFinished)
def _setup(state: RunState, ev: SetupFinished) -> None:
    attempt = _attempt(state, ev.task, ev.attempt)
    attempt.setup_ok = ev.ok
    if not ev.ok:
        attempt.reason = f"setup failed: {ev.detail}"


@_on(TaskStarted)
def _started(state: RunState, ev: TaskStarted) -> None:
    attempt = _attempt(state, ev.task, ev.attempt)
    attempt.argv = ev.argv
    attempt.pid = ev.pid
    attempt.pgid = ev.pgid
    attempt.node = ev.node
    attempt.transport = ev.transport
    attempt.prompt = ev.prompt
    attempt.started_ts = ev.ts
    attempt.last_output_ts = ev.ts
    attempt.workdir = attempt.workdir or ev.cwd
    attempt.branch = attempt.branch or ev.branch
    attempt.status = "running"
    state.tasks[ev.task].status = "running"


@_on(TaskSandboxed)
def _sandboxed(state: RunState, ev: TaskSandboxed) -> None:
    attempt = _attempt(state, ev.task, ev.attempt)
    attempt.sandbox = f"{ev.mode}, network {'on' if ev.network else 'off'}"
    attempt.sandbox_writable = ev.writable


@_on(SandboxDenied)
def _denied(state: RunState, ev: SandboxDenied) -> None:
    attempt = _attempt(state, ev.task, ev.attempt)
    attempt.sandbox_denied = (*attempt.sandbox_denied, ev.path)


@_on(TaskOutput)
def _output(state: RunState, ev: TaskOutput) -> None:
    attempt = _attempt(state, ev.task, ev.attempt)
    attempt.output_bytes += len(ev.data)
    tail = attempt.tail
    tail += ev.data
    if len(tail) > TAIL_BYTES:
        del tail[: len(tail) - TAIL_BYTES]
    attempt.last_output_ts = ev.ts


def _transcribe(attempt: AttemptState, line: str) -> None:
    attempt.transcript.append(line)
    if len(attempt.transcript) > TRANSCRIPT_LINES:
        del attempt.transcript[: len(attempt.transcript) - TRANSCRIPT_LINES]


def _remember(paths: list[str], new: Iterable[str]) -> None:
    for path in new:
        if path not in paths:
            paths.append(path)
    if len(paths) > SEEN_PATHS:
        del paths[: len(paths) - SEEN_PATHS]


@_on(AgentSession)
def _agent_session(state: RunState, ev: AgentSession) -> None:
    attempt = _attempt(state, ev.task, ev.attempt)
    attempt.session_id = ev.session_id
    attempt.model = ev.model or attempt.model


@_on(AgentMessage)
def _agent_message(state: RunState, ev: AgentMessage) -> None:
    attempt = _attempt(state, ev.task, ev.attempt)
    if ev.kind == "assistant":
        first = next((ln.strip() for ln in ev.text.splitlines() if ln.strip()), "")
        attempt.activity = first[:200]
        _transcribe(attempt, ev.text)
    else:
        _transcribe(attempt, "  " + ev.text)
    attempt.last_output_ts = max(attempt.last_output_ts, ev.ts)


@_on(AgentToolStarted)
def _agent_tool(state: RunState, ev: AgentToolStarted) -> None:
    attempt = _attempt(state, ev.task, ev.attempt)
    line = tool_line(ev)
    attempt.tool_calls += 1
    attempt.activity = line[:200]
    attempt.open_tools[ev.tool_id] = line
    _remember(attempt.wrote if ev.writes else attempt.read, ev.paths)
    _transcribe(attempt, "→ " + line)
    attempt.last_output_ts = max(attempt.last_output_ts, ev.ts)


@_on(AgentToolFinished)
def _agent_tool_done(state: RunState, ev: AgentToolFinished) -> None:
    attempt = _attempt(state, ev.task, ev.attempt)
    line = attempt.open_tools.pop(ev.tool_id, "")
    if not ev.ok:
        attempt.tool_errors += 1
        _transcribe(attempt, f"✗ {line or 'tool'}: {ev.detail or 'failed'}")
    else:
        _transcribe(attempt, f"✓ {ev.detail or 'done'}")


@_on(AgentUsage)
def _agent_usage(state: RunState, ev: AgentUsage) -> None:
    attempt = _attempt(state, ev.task, ev.attempt)
    attempt.usage = ev.usage
    attempt.cost_usd = ev.cost_usd
    attempt.cost_source = ev.cost_source
    attempt.turns = max(attempt.turns, ev.turns)
    if ev.usage and not attempt.model:
        attempt.model = ev.usage[0].model


@_on(AgentApiRetry)
def _agent_retry(state: RunState, ev: AgentApiRetry) -> None:
    attempt = _attempt(state, ev.task, ev.attempt)
    attempt.api_retries += 1
    if ev.status in (401, 403):
        attempt.auth_failures += 1
    what = f"HTTP {ev.status}" if ev.status else "error"
    attempt.activity = f"retrying the API ({what}){': ' + ev.detail if ev.detail else ''}"[:200]


@_on(AgentResult)
def _agent_result(state: RunState, ev: AgentResult) -> None:
    attempt = _attempt(state, ev.task, ev.attempt)
    attempt.result_ok = ev.ok
    attempt.result_reason = ev.reason
    attempt.result_text = ev.text
    attempt.denials = ev.denials
    if ev.reason == "auth":
        attempt.auth_failures += 1


@_on(GuardDenied)
def _guard_denied(state: RunState, ev: GuardDenied) -> None:
    attempt = _attempt(state, ev.task, ev.attempt)
    attempt.guard_denials.append(f"{ev.tool} {ev.path}")


@_on(InputSent)
def _input(state: RunState, ev: InputSent) -> None:
    if ev.by == "operator":  # a finding's note typed by delegate-tui is no operator's action
        state.marks.append(Mark(ev.ts, "input", (ev.task,), ev.text))
    attempt = _attempt(state, ev.task, ev.attempt)
    attempt.inputs.append(ev.text)
    attempt.last_output_ts = ev.ts


@_on(KillRequested)
def _kill(state: RunState, ev: KillRequested) -> None:
    state.marks.append(Mark(ev.ts, "kill", (ev.task,), f"attempt {ev.attempt}"))
    _attempt(state, ev.task, ev.attempt).kill_requested = True


@_on(TaskExited)
def _exited(state: RunState, ev: TaskExited) -> None:
    attempt = _attempt(state, ev.task, ev.attempt)
    attempt.exit_code = ev.exit_code
    attempt.signal = ev.signal
    attempt.exit_reason = ev.reason
    if not attempt.started_ts:
        attempt.started_ts = ev.ts - ev.duration_s
    attempt.ended_ts = ev.ts
    task = state.tasks[ev.task]
    if ev.exit_code == 0 and ev.reason == "exit":
        task.status = attempt.status = "checking"


@_on(CriteriaChecked)
def _criteria(state: RunState, ev: CriteriaChecked) -> None:
    attempt = _attempt(state, ev.task, ev.attempt)
    attempt.criteria = ev.results
    attempt.criteria_passed = ev.passed
    if ev.passed:
        state.tasks[ev.task].status = attempt.status = "merging"


@_on(TaskCommitted)
def _committed(state: RunState, ev: TaskCommitted) -> None:
    attempt = _attempt(state, ev.task, ev.attempt)
    attempt.commit = ev.commit
    attempt.changed = ev.changed
    state.tasks[ev.task].status = attempt.status = "merging"


@_on(TaskMerged)
def _merged(state: RunState, ev: TaskMerged) -> None:
    attempt = _attempt(state, ev.task, ev.attempt)
    attempt.merged_commit = ev.commit
    attempt.merged_ts = ev.ts
    state.integration_tip = ev.commit


@_on(MergeConflict)
def _conflict(state: RunState, ev: MergeConflict) -> None:
    _attempt(state, ev.task, ev.attempt).conflict_paths = ev.paths


@_on(TaskFinished)
def _finished(state: RunState, ev: TaskFinished) -> None:
    attempt = _attempt(state, ev.task, ev.attempt)
    attempt.status = ev.status
    attempt.reason = ev.reason or attempt.reason
    if not attempt.ended_ts:
        attempt.ended_ts = ev.ts
    attempt.finished_ts = ev.ts
    task = state.tasks[ev.task]
    task.status = ev.status
    if ev.output:
        task.output = ev.output


@_on(RetryScheduled)
def _retry(state: RunState, ev: RetryScheduled) -> None:
    task = state.tasks.setdefault(ev.task, TaskState(ev.task))
    state.marks.append(
        Mark(
            ev.ts,
            "retry",
            (ev.task,),
            ev.context,
            by="policy" if ev.automatic else "operator",
        )
    )
    task.attempts.append(
        AttemptState(
            ev.attempt, prompt=ev.prompt, context=ev.context, resume_session=ev.resume_session
        )
    )
    task.status = "starting"
    task.blocked_by = ""
    task.skip_reason = ""
    # Dependents blocked by this task, and theirs in turn, may run again once it
    # succeeds; any of them still cut off by another dependency is blocked again
    # by the scheduler.
    freed = {ev.task}
    while freed:
        freed = {
            other.id
            for other in state.tasks.values()
            if other.status == "blocked" and other.blocked_by in freed
        }
        for task_id in freed:
            other = state.tasks[task_id]
            other.status = "pending"
            other.blocked_by = ""
            other.held_reason = ""


@_on(TaskSkipped)
def _skipped(state: RunState, ev: TaskSkipped) -> None:
    task = state.tasks[ev.task]
    task.status = "skipped"
    task.skip_reason = ev.reason
    state.marks.append(Mark(ev.ts, "skip", (ev.task,), ev.reason))


@_on(TaskBlocked)
def _blocked(state: RunState, ev: TaskBlocked) -> None:
    task = state.tasks[ev.task]
    task.status = "blocked"
    task.blocked_by = ev.by
    task.held_reason = ev.reason


@_on(FilesChanged)
def _files_changed(state: RunState, ev: FilesChanged) -> None:
    attempt = _attempt(state, ev.task, ev.attempt)
    attempt.live_changes = ev.files
    attempt.snapshot = ev.snapshot


@_on(ConflictDetected)
def _conflict_detected(state: RunState, ev: ConflictDetected) -> None:
    state.findings[ev.key] = ev
    state.finding_history.append(ev)


@_on(ConflictResolved)
def _conflict_resolved(state: RunState, ev: ConflictResolved) -> None:
    state.findings.pop(ev.key, None)


@_on(FinalMerge)
def _final_merge(state: RunState, ev: FinalMerge) -> None:
    state.final_merge = ev
    detail = f"into {ev.branch}" if ev.ok else f"refused: {ev.detail}"
    state.marks.append(Mark(ev.ts, "final-merge", detail=detail))


def _account_idle(state: RunState, ev: Event) -> None:
    """Add the time since the last event to the run's idle or down time, where it was."""
    if not state.last_ts or ev.ts <= state.last_ts:
        return
    gap = ev.ts - state.last_ts
    if type(ev) is RunResumed:
        state.downtime_s += gap  # no process ran the run (a crash, or a stop, then resume)
    elif state.status == "running" and not any(
        t.status in ACTIVE_STATUSES for t in state.tasks.values()
    ):
        state.idle_s += gap  # nothing ran: the run waited for the operator


#: Events whose handler changes the status (or the reasons it waits) of no task: after
#: one, no task has a new phase.
_NO_PHASE: frozenset[type[Event]] = frozenset(
    {
        Notice,
        SchedulingPaused,
        SchedulingResumed,
        SetupFinished,
        TaskSandboxed,
        SandboxDenied,
        TaskOutput,
        AgentSession,
        AgentMessage,
        AgentToolStarted,
        AgentToolFinished,
        AgentUsage,
        AgentApiRetry,
        AgentResult,
        GuardDenied,
        InputSent,
        KillRequested,
        TaskMerged,
        MergeConflict,
        FilesChanged,
        ConflictDetected,
        ConflictResolved,
        FinalMerge,
    }
)
#: Events whose handler changes the status (or the reasons) of their own task only.
#: Any other event may change any task's, and every task is looked at after it: a run of
#: a thousand tasks would otherwise look at each of them after every one of its events.
#: (tests/core/test_state.py holds both sets to what the handlers do.)
_OWN_PHASE: frozenset[type[Event]] = frozenset(
    {
        TaskPreparing,
        TaskStarted,
        TaskExited,
        CriteriaChecked,
        TaskCommitted,
        TaskFinished,
        TaskSkipped,
        TaskBlocked,
    }
)
_SCOPED = _NO_PHASE | _OWN_PHASE


def _record_phases(state: RunState, ev: Event) -> None:
    """Note each task whose status (or the reason it waits) changed with this event."""
    kind = type(ev)
    tasks: Iterable[TaskState] = state.tasks.values()
    if kind in _SCOPED:
        # Its own task only: after one of _NO_PHASE, a task the event's attempt brought
        # into the state (a log that skipped its start) still gets its first phase.
        own = state.tasks.get(getattr(ev, "task", ""))
        tasks = () if own is None or (kind in _NO_PHASE and own.phases) else (own,)
    ts = ev.ts
    for task in tasks:
        reason = task.held_reason or task.skip_reason
        phases = task.phases
        if not phases or phases[-1].status != task.status or phases[-1].reason != reason:
            phases.append(Phase(ts, task.status, reason))


def apply(state: RunState, ev: Event) -> RunState:
    """Fold one event into ``state`` (in place) and return it."""
    output = type(ev) is TaskOutput
    if not output:  # output comes from a running agent: never idle
        _account_idle(state, ev)
    handler = _HANDLERS.get(type(ev))
    if handler is not None:
        handler(state, ev)
    _record_phases(state, ev)
    state.events += 1
    if ev.seq:
        state.last_seq = ev.seq
    if ev.ts:
        state.last_ts = max(state.last_ts, ev.ts)
    return state


def snapshot(state: RunState) -> dict[str, Any]:
    """The state as JSON values, without its plan (a replay keyframe; the plan is in the log).

    Data only: a keyframe read back from disk is checked field by field, never executed.
    """
    return {name: to_json(getattr(state, name)) for name in _SNAPSHOT_FIELDS}


def restore(obj: Any, plan: Plan | None) -> RunState:
    """A state from :func:`snapshot` (DecodeError if it does not fit RunState)."""
    if not isinstance(obj, dict):
        raise DecodeError("a keyframe must be a JSON object")
    value: RunState = from_json(RunState, {k: v for k, v in obj.items() if k in _SNAPSHOT_FIELDS})
    value.plan = plan
    return value


_SNAPSHOT_FIELDS = tuple(f.name for f in fields(RunState) if f.name != "plan")


def build(events: Iterable[Event], state: RunState | None = None) -> RunState:
    """Fold a sequence of events from scratch (or onto ``state``)."""
    state = state if state is not None else RunState()
    for ev in events:
        apply(state, ev)
    return state
