"""Every event of a run, and their JSON codec.

Owns the only vocabulary between the core and its projections (the UI, the
headless printer, replay, stats). Each event is a frozen dataclass with
``seq`` (its position in the log) and ``ts`` (seconds since the epoch);
:func:`encode` turns one into a single JSON line and :func:`decode` back.
Agent output is bytes: valid UTF-8 travels as text, anything else as base64,
so every byte survives exactly. ``SCHEMA_VERSION`` is written in the first
event of every log; a reader refuses a newer one.

(About 890 lines, two thirds of them the declarations of its thirty-eight events; the
rest their encoding, the equality, hash and repr every record shares, and rebuilding a
proposal's held list from its changes.)
"""

from __future__ import annotations

import base64
import dataclasses
import json
import operator
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import orjson

SCHEMA_VERSION = 1

TaskStatus = Literal[
    "pending",  # waiting for dependencies or a batch
    "proposed",  # in a batch waiting for approval
    "starting",  # worktree and setup under way
    "running",  # agent process alive
    "checking",  # criteria running
    "merging",  # committing and merging
    "awaiting-merge",  # succeeded; merge: manual waits for the operator
    "succeeded",  # merged (or finished, outside worktree mode)
    "failed",  # agent, criteria or setup failed and no retry is left
    "merge-conflict",  # could not merge cleanly into the integration branch
    "killed",  # ended by the operator
    "timed-out",  # ended by its timeout
    "skipped",  # skipped by the operator
    "blocked",  # a dependency failed or was skipped
    "interrupted",  # the run stopped while it was running
    "over-budget",  # ended because it spent its budget (cost or turns)
]

#: Statuses from which a task will not move again without an operator command.
FINAL_STATUSES: frozenset[str] = frozenset(
    {
        "succeeded",
        "failed",
        "merge-conflict",
        "killed",
        "timed-out",
        "skipped",
        "blocked",
        "interrupted",
        "over-budget",
    }
)
#: Final statuses that an operator retry can restart.
RETRYABLE_STATUSES: frozenset[str] = frozenset(
    {
        "failed",
        "merge-conflict",
        "killed",
        "timed-out",
        "interrupted",
        "skipped",
        "blocked",
        "over-budget",
    }
)
#: Statuses of a task holding a live process or worktree operation.
ACTIVE_STATUSES: frozenset[str] = frozenset({"starting", "running", "checking", "merging"})
#: Statuses of a dependency that mean its dependents can never start as things stand.
FAILED_STATUSES: frozenset[str] = FINAL_STATUSES - {"succeeded"}
#: Failures that wait for the operator's retry or skip (a skipped or blocked task is
#: decided, or follows from a decision).
UNDECIDED_STATUSES: frozenset[str] = FAILED_STATUSES - {"skipped", "blocked"}
#: Tasks whose changes take part in conflict analysis: running, or finished
#: with work that is not merged (yet).
ANALYZED_STATUSES: frozenset[str] = ACTIVE_STATUSES | {"awaiting-merge", "merge-conflict"}


class _Record:
    """Equality, hash and repr by fields, as ``dataclass`` writes them (same results),
    shared by every record of this module instead of compiled for each of its 44
    classes at import: that compiling was a third of this module's import time, and
    every process that reads or writes a run imports it."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        values = _values_of(self.__class__)
        return bool(values(self) == values(other))

    def __hash__(self) -> int:
        return hash(_values_of(self.__class__)(self))

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in _names(type(self)))
        return f"{type(self).__qualname__}({shown})"


_NAMES: dict[type, tuple[str, ...]] = {}
_VALUES: dict[type, Callable[[Any], tuple[Any, ...]]] = {}


def _names(cls: type) -> tuple[str, ...]:
    """The fields of record class ``cls``, in order."""
    names = _NAMES.get(cls)
    if names is None:
        names = _NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def _values_of(cls: type) -> Callable[[Any], tuple[Any, ...]]:
    """A function giving a record's field values as a tuple (``operator.attrgetter``)."""
    values = _VALUES.get(cls)
    if values is None:
        names = _names(cls)
        if len(names) == 1:
            one = operator.attrgetter(names[0])
            values = _VALUES[cls] = lambda record: (one(record),)
        else:
            values = _VALUES[cls] = operator.attrgetter(*names)
    return values


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Event(_Record):
    """Base of every event: ``seq`` is assigned by the log writer, ``ts`` at emission."""

    seq: int = field(default=0, kw_only=True)
    ts: float = field(default=0.0, kw_only=True)

    type_name: ClassVar[str] = "event"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # No super() call: zero-argument super() breaks under dataclass(slots=True).
        # dataclass(slots=True) builds a second class; the last one registered wins.
        cls.type_name = cls.__name__
        _REGISTRY[cls.__name__] = cls


_REGISTRY: dict[str, type[Event]] = {}


# ---------------------------------------------------------------- nested records


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class HeldTask(_Record):
    """A ready task left out of a batch, and why."""

    task: str
    reason: str


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class CriterionResult(_Record):
    """The outcome of one ``run:`` criterion."""

    text: str
    command: str
    passed: bool
    exit_code: int
    output: str = ""


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class ChangedFile(_Record):
    """A path a task changed, relative to the repo root."""

    path: str
    status: str = "M"  # A added, M modified, D deleted, R renamed, T type change
    added: int = 0
    deleted: int = 0
    old_path: str = ""
    binary: bool = False


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Metrics(_Record):
    """The numbers that say whether parallel work paid off."""

    wall_s: float = 0.0
    sequential_s: float = 0.0
    #: Agents' time saved: sequential time against wall time less the waits below.
    time_saved_s: float = 0.0
    conflict_rate: float = 0.0
    rework_rate: float = 0.0
    tasks_total: int = 0
    tasks_succeeded: int = 0
    tasks_failed: int = 0
    #: Wall time in which no agent ran because the run waited for the operator
    #: (a batch to approve, scheduling paused, a failure to decide).
    operator_wait_s: float = 0.0
    #: Wall time in which delegate-tui was not running at all (a crash, then resume).
    downtime_s: float = 0.0


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class TokenUsage(_Record):
    """Tokens one model used for an attempt so far, as the agent's stream reported them.

    ``input`` is uncached input (cache writes included), ``cached`` is input read from
    the provider's prompt cache, ``output`` is everything billed as output (reasoning
    included; ``reasoning`` says how much of it was)."""

    model: str = ""
    input: int = 0
    cached: int = 0
    cache_write: int = 0
    output: int = 0
    reasoning: int = 0
    #: The cost the agent's CLI reported for this model, when it reports one.
    cost_usd: float | None = None


# ---------------------------------------------------------------- run lifecycle


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class RunStarted(Event):
    """A run began. Carries everything needed to understand the log alone."""

    run_id: str
    plan: dict[str, Any]  # the validated plan, as JSON
    plan_path: str
    repo: str
    isolation: str
    base: str = ""
    base_commit: str = ""
    integration_branch: str = ""
    auto_approve: bool = False
    max_parallel: int = 3
    schema: int = SCHEMA_VERSION
    host_pid: int = 0
    reaper_pid: int = 0
    version: str = ""


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Notice(Event):
    """Something the operator should read that is not tied to one task."""

    level: str  # info | warning | error
    message: str
    task: str = ""


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class RunResumed(Event):
    """A later process took the run over from its log."""

    host_pid: int
    reaper_pid: int = 0
    reaped_pids: tuple[int, ...] = ()
    #: The approval policy from now on (``None`` in older logs: unchanged). A
    #: run resumed in the UI asks the operator unless ``resume --yes``.
    auto_approve: bool | None = None


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class RunFinished(Event):
    """The run ended."""

    status: str  # succeeded | partial | failed | stopped
    metrics: Metrics
    summary: str = ""


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class SchedulingPaused(Event):
    """No new batch will be proposed until resumed; running tasks go on."""


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class SchedulingResumed(Event):
    """Scheduling goes on."""


# ---------------------------------------------------------------- batches


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class BatchProposed(Event):
    """The engine proposes the next tasks to start together."""

    batch: int
    tasks: tuple[str, ...]
    held: tuple[HeldTask, ...] = ()
    needs_approval: bool = True
    notes: tuple[HeldTask, ...] = ()  # per-task remarks, e.g. "scope undeclared"
    #: ``held`` lists only what changed since the previous proposal's held tasks
    #: (a task newly held, or held for a new reason), each placed after the task
    #: of the same index in ``after`` ("": first); ``released`` are no longer held.
    #: :func:`held_after` rebuilds the whole list. False, as in every log written
    #: before it: ``held`` is the whole list. (At a thousand ready tasks, listing
    #: every held task in every proposal was 28 MB of a 28.5 MB log.)
    changes_only: bool = False
    released: tuple[str, ...] = ()
    after: tuple[str, ...] = ()


def held_after(previous: tuple[HeldTask, ...], ev: BatchProposed) -> tuple[HeldTask, ...]:
    """Every task ``ev`` holds, in order: its list, or the previous one with its changes."""
    if not ev.changes_only:
        return ev.held
    gone = {*ev.released, *(h.task for h in ev.held)}
    held = [h for h in previous if h.task not in gone]
    for entry, anchor in zip(ev.held, ev.after, strict=False):
        at = 0
        if anchor:
            at = next((i + 1 for i, h in enumerate(held) if h.task == anchor), len(held))
        held.insert(at, entry)
    return tuple(held)


def held_changes(
    previous: tuple[HeldTask, ...], held: tuple[HeldTask, ...]
) -> tuple[tuple[HeldTask, ...], tuple[str, ...], tuple[str, ...]] | None:
    """``held`` as changes to ``previous`` (entries, their places, released tasks), for
    :class:`BatchProposed`; ``None`` when the whole list is shorter or the changes
    would not rebuild it exactly (:func:`held_after` is the test)."""
    before = {h.task: h.reason for h in previous}
    now = {h.task for h in held}
    changed: list[HeldTask] = []
    after: list[str] = []
    for i, entry in enumerate(held):
        if before.get(entry.task) != entry.reason:
            changed.append(entry)
            after.append(held[i - 1].task if i else "")
    released = tuple(t for t in before if t not in now)
    if 2 * (len(changed) + len(released)) >= len(held):
        return None
    delta = (tuple(changed), tuple(after), released)
    probe = BatchProposed(
        batch=0, tasks=(), held=delta[0], changes_only=True, released=released, after=delta[1]
    )
    return delta if held_after(previous, probe) == held else None


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class BatchApproved(Event):
    """The operator (or the policy) approved a batch or part of it."""

    batch: int
    tasks: tuple[str, ...]
    by: str = "operator"  # operator | policy


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class BatchHeld(Event):
    """The operator declined the proposal for now."""

    batch: int


# ---------------------------------------------------------------- tasks


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class TaskPreparing(Event):
    """A task attempt's workspace is being made."""

    task: str
    attempt: int
    workdir: str
    branch: str = ""
    base_commit: str = ""


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class SetupFinished(Event):
    """``worktree_setup`` ended for an attempt."""

    task: str
    attempt: int
    ok: bool
    detail: str = ""


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class TaskStarted(Event):
    """An agent process started."""

    task: str
    attempt: int
    agent: str
    argv: tuple[str, ...]
    cwd: str
    pid: int
    pgid: int
    prompt: str
    transport: str = "pty"
    branch: str = ""
    #: Where it runs when not on this machine (the Ray executor's node); its pid and
    #: pgid are that machine's.
    node: str = ""


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class TaskSandboxed(Event):
    """An agent is about to start in a sandbox (``core/sandbox.py``): what it may write."""

    task: str
    attempt: int
    mode: str  # worktree | scope
    network: bool
    writable: tuple[str, ...]
    wrapper: tuple[str, ...] = ()  # the bwrap command line before the agent's own argv


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class SandboxDenied(Event):
    """The sandbox refused one of the agent's writes (as its output reported it)."""

    task: str
    attempt: int
    path: str
    detail: str = ""


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class TaskOutput(Event):
    """A chunk of an agent's (or its setup's) output, as raw bytes."""

    task: str
    attempt: int
    data: bytes
    stream: str = "agent"  # agent | setup | criteria | input


# ------------------------------------------------- what an agent does (structured streams)
# Read from the CLIs' structured modes (claude stream-json, codex --json, gemini
# stream-json) by core/streams/; the raw stream stays in TaskOutput.


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class AgentSession(Event):
    """The agent opened (or resumed) a conversation."""

    task: str
    attempt: int
    session_id: str
    model: str = ""
    resumed: bool = False


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class AgentMessage(Event):
    """Text the agent wrote: its own words (``assistant``), or a line of its stream that is
    not one of its events (``raw``: warnings, stack traces, unknown event types)."""

    task: str
    attempt: int
    text: str
    kind: str = "assistant"  # assistant | raw


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class AgentToolStarted(Event):
    """The agent called one of its tools."""

    task: str
    attempt: int
    tool_id: str
    name: str
    paths: tuple[str, ...] = ()  # files it names (relative to the worktree where possible)
    command: str = ""  # for shell tools
    writes: bool = False  # a tool that changes files


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class AgentToolFinished(Event):
    """One of the agent's tool calls ended."""

    task: str
    attempt: int
    tool_id: str
    ok: bool
    detail: str = ""  # the error, or an exit code


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class AgentUsage(Event):
    """What the attempt has used so far: totals per model (each event replaces the last)."""

    task: str
    attempt: int
    usage: tuple[TokenUsage, ...]
    cost_usd: float | None = None
    cost_source: str = ""  # cli | estimated | "" (no price known)
    turns: int = 0


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class AgentApiRetry(Event):
    """The agent's CLI is retrying a call to its vendor's API."""

    task: str
    attempt: int
    status: int | None = None  # HTTP status, when known
    retry: int = 0
    detail: str = ""


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class AgentResult(Event):
    """The agent said how its work ended."""

    task: str
    attempt: int
    ok: bool
    #: completed | max_turns | budget | auth | permission_denied | error
    reason: str = "completed"
    text: str = ""
    denials: tuple[str, ...] = ()  # tools the CLI refused, e.g. "Bash: npm test"


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class GuardDenied(Event):
    """The scope guard refused one of the agent's writes before it happened."""

    task: str
    attempt: int
    tool: str
    path: str
    reason: str


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class InputSent(Event):
    """A line typed to an agent: by the operator, or by delegate-tui (a live finding's note)."""

    task: str
    attempt: int
    text: str
    by: str = "operator"  # operator | delegate-tui


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class KillRequested(Event):
    """The operator asked to end a task."""

    task: str
    attempt: int


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class TaskExited(Event):
    """An agent process ended."""

    task: str
    attempt: int
    exit_code: int | None
    signal: int | None = None
    duration_s: float = 0.0
    reason: str = "exit"  # exit | killed | timeout | spawn-error | setup-failed | node-lost


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class CriteriaChecked(Event):
    """The ``run:`` criteria of an attempt were executed."""

    task: str
    attempt: int
    results: tuple[CriterionResult, ...]
    passed: bool


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class TaskCommitted(Event):
    """An attempt's changes were committed on its branch."""

    task: str
    attempt: int
    commit: str
    changed: tuple[ChangedFile, ...] = ()


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class TaskMerged(Event):
    """An attempt's branch was merged into the integration branch."""

    task: str
    attempt: int
    commit: str  # the integration branch's new tip
    fast_forward: bool = False


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class MergeConflict(Event):
    """An attempt's branch would not merge cleanly; nothing was changed."""

    task: str
    attempt: int
    paths: tuple[str, ...]
    detail: str = ""


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class TaskFinished(Event):
    """An attempt reached its end state."""

    task: str
    attempt: int
    status: TaskStatus
    reason: str = ""
    output: str = ""  # the final output passed to dependents ({{ outputs.id }})


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class RetryScheduled(Event):
    """A new attempt will start, with the failure and the operator's words as context."""

    task: str
    attempt: int  # the new attempt's number
    prompt: str
    context: str = ""
    automatic: bool = False
    keep_worktree: bool = False
    #: Continue the agent's conversation (the session of the last attempt) when its CLI
    #: can; ``False`` starts from nothing.
    resume_session: bool = True


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class TaskSkipped(Event):
    """The operator skipped a task; its dependents are blocked."""

    task: str
    reason: str = ""


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class TaskBlocked(Event):
    """A task cannot run because a dependency failed or was skipped."""

    task: str
    by: str
    reason: str = ""


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class FilesChanged(Event):
    """What a task has changed so far since its start commit (committed or not)."""

    task: str
    attempt: int
    files: tuple[ChangedFile, ...]
    snapshot: str = ""  # a commit of the worktree's state, for merge predictions


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class ConflictDetected(Event):
    """A collision between tasks (or a task and its declared scope) now holds."""

    key: str
    kind: str  # overlap | predicted-conflict | out-of-scope | shared-file | undeclared-collision
    severity: str  # error | warning
    tasks: tuple[str, ...]
    paths: tuple[str, ...]
    detail: str = ""


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class ConflictResolved(Event):
    """A collision no longer holds (reverted, merged, reset)."""

    key: str
    reason: str = ""


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class FinalMerge(Event):
    """The integration branch was merged into the operator's branch (or refused)."""

    ok: bool
    branch: str
    commit: str = ""
    detail: str = ""


# ---------------------------------------------------------------- codec

_HINTS: dict[type[Any], dict[str, Any]] = {}


def _hints(cls: type[Any]) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _to_json(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        try:
            return {"text": value.decode("utf-8")}
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(value).decode("ascii")}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    return value


def _bytes_from_json(value: Any) -> bytes:
    """Bytes as _to_json wrote them: UTF-8 text, or strict base64."""
    if "b64" in value:
        return base64.b64decode(value["b64"], validate=True)
    return str(value["text"]).encode("utf-8")


#: What each scalar field accepts from JSON (a log from elsewhere is untrusted:
#: a wrong type must stop at decoding, not crash the fold later).
_SCALARS: dict[Any, tuple[type, ...]] = {
    str: (str,),
    int: (int,),
    float: (int, float),
    bool: (bool,),
}


def _from_json(hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    accepted = _SCALARS.get(hint)
    if accepted is not None:
        if not isinstance(value, accepted) or (hint is not bool and isinstance(value, bool)):
            raise TypeError(f"expected {hint.__name__}, got {type(value).__name__}")
        return float(typing.cast(float, value)) if hint is float else value
    if origin is Literal:
        if not any(value == a and type(value) is type(a) for a in typing.get_args(hint)):
            raise TypeError(f"unexpected value {value!r}")
        return value
    if hint is bytes:
        return _bytes_from_json(value)
    if hint is bytearray:
        return bytearray(_bytes_from_json(value))
    if origin is tuple or origin is list:
        if not isinstance(value, list):
            raise TypeError(f"expected a list, got {type(value).__name__}")
        (item, *_rest) = typing.get_args(hint)
        return origin(_from_json(item, v) for v in value)
    if origin is dict:
        _key, item = typing.get_args(hint)
        return {str(k): _from_json(item, v) for k, v in value.items()}
    if origin in (types.UnionType, typing.Union):
        if value is None:
            return None
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _from_json(options[0], value) if len(options) == 1 else value
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        known = {f.name for f in dataclasses.fields(hint)}
        hints = _hints(hint)
        return hint(**{k: _from_json(hints[k], v) for k, v in value.items() if k in known})
    return value


def to_json(value: Any) -> Any:
    """Any record of this vocabulary (dataclasses, bytes, tuples, lists, dicts) as JSON values."""
    return _to_json(value)


def from_json(hint: Any, value: Any) -> Any:
    """The inverse of :func:`to_json` for a value of type ``hint``; DecodeError if it does not fit."""
    try:
        return _from_json(hint, value)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise DecodeError(f"{getattr(hint, '__name__', hint)}: {exc!r}") from None


def to_dict(ev: Event) -> dict[str, Any]:
    """The JSON-ready form of an event, with its ``type``."""
    if type(ev) is TaskOutput:  # the hot path under floods of output
        data: Any = _to_json(ev.data)
        return {
            "type": "TaskOutput",
            "seq": ev.seq,
            "ts": ev.ts,
            "task": ev.task,
            "attempt": ev.attempt,
            "data": data,
            "stream": ev.stream,
        }
    out = {"type": ev.type_name}
    out.update(_to_json(ev))
    return out


def encode(ev: Event) -> bytes:
    """One event as one line of JSON, newline included.

    orjson, because escaping agent output for JSON is most of what logging a
    flood costs: the standard library's encoder takes 2.4 ms a MiB, orjson 0.2.
    Text orjson refuses (a lone surrogate from a plan's YAML) goes through the
    standard encoder, which writes it as an escape.
    """
    return dumps(to_dict(ev)) + b"\n"


def dumps(obj: Any) -> bytes:
    """JSON values as compact JSON bytes (orjson; the standard encoder for what it refuses)."""
    try:
        return orjson.dumps(obj)
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(obj, separators=(",", ":")).encode()


class DecodeError(ValueError):
    """A line that is not a known event."""


def from_dict(obj: dict[str, Any]) -> Event:
    """Rebuild an event from its JSON form (unknown fields are ignored)."""
    if not isinstance(obj, dict):
        raise DecodeError("not a JSON object")
    name = obj.get("type")
    if name == "TaskOutput":  # nearly every event of a long log: no generic walk
        return _output_from_dict(obj)
    cls = _REGISTRY.get(str(name))
    if cls is None:
        raise DecodeError(f"unknown event type {name!r}")
    hints = _hints(cls)
    try:
        kwargs = {k: _from_json(hints[k], v) for k, v in obj.items() if k in hints and k != "type"}
        return cls(**kwargs)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:  # a damaged field
        raise DecodeError(f"{name}: {exc!r}") from None


def _output_from_dict(obj: dict[str, Any]) -> TaskOutput:
    """The generic walk of from_dict, written out for the one event type that floods."""
    try:
        ev = TaskOutput(
            seq=obj.get("seq", 0),
            ts=obj.get("ts", 0.0),
            task=obj["task"],
            attempt=obj["attempt"],
            data=_bytes_from_json(obj["data"]),
            stream=obj.get("stream", "agent"),
        )
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise DecodeError(f"TaskOutput: {exc!r}") from None
    if not (
        isinstance(ev.task, str)
        and type(ev.attempt) is int
        and type(ev.seq) is int
        and type(ev.ts) in (int, float)
        and isinstance(ev.stream, str)
    ):
        raise DecodeError("TaskOutput: task and stream must be text, attempt and seq whole numbers")
    return ev


def decode(line: bytes | str) -> Event:
    """Parse one log line."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        obj = _decode_escaped(line)
    return from_dict(obj)


def _decode_escaped(line: bytes | str) -> Any:
    """A line orjson refused: the standard decoder also reads escaped lone surrogates
    (and NaN), as it did before orjson; what neither reads is not JSON."""
    try:
        return json.loads(line.decode("utf-8") if isinstance(line, bytes) else line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodeError(f"not JSON: {exc}") from None


def event_types() -> dict[str, type[Event]]:
    """Every registered event class by name."""
    return dict(_REGISTRY)


Listener = Callable[[Event], None]
