"""Which operator commands the run accepts in which state: the whole table, exhaustively."""

from __future__ import annotations

import typing

import pytest

from delegate_tui.core.commands import COMMANDS, TASK_COMMANDS, Command, refusal, restarts_stale
from delegate_tui.core.events import BatchProposed, ConflictDetected, TaskStatus
from delegate_tui.core.plan import parse_plan
from delegate_tui.core.state import RunState, TaskState

PLAN = parse_plan(
    "name: p\ntasks:\n"
    "  - {id: a, prompt: x, edits: [a]}\n"
    "  - {id: b, prompt: x, edits: [b], depends_on: [a]}\n"
)
STATUSES: tuple[str, ...] = typing.get_args(TaskStatus)


def status_of(text: str) -> TaskStatus:
    """A status named in a test, checked against the one type."""
    assert text in STATUSES, text
    return typing.cast(TaskStatus, text)


#: For each task command, the statuses of the task in which it is accepted
#: (its dependency `a` succeeded). Every other status is refused.
ACCEPTED: dict[Command, frozenset[str]] = {
    "kill": frozenset({"starting", "running", "checking", "merging"}),
    "input": frozenset({"running"}),
    "merge": frozenset({"awaiting-merge"}),
    "retry": frozenset(
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
    ),
    "skip": frozenset(
        {
            "pending",
            "proposed",
            "awaiting-merge",
            "failed",
            "merge-conflict",
            "killed",
            "timed-out",
            "blocked",
            "interrupted",
            "over-budget",
        }
    ),
}


def state_with(task_status: str, *, dep: str = "succeeded", **run: object) -> RunState:
    state = RunState(plan=PLAN, isolation="worktree", status="running")
    state.tasks = {
        "a": TaskState("a", status=status_of(dep)),
        "b": TaskState("b", status=status_of(task_status)),
    }
    for name, value in run.items():
        setattr(state, name, value)
    return state


def test_the_table_names_every_task_command() -> None:
    assert set(ACCEPTED) == set(TASK_COMMANDS)
    assert set(COMMANDS) >= TASK_COMMANDS


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("command", sorted(TASK_COMMANDS))
def test_task_commands_by_status(command: Command, status: str) -> None:
    answer = refusal(state_with(status), command, "b")
    if status in ACCEPTED[command]:
        assert answer is None
    else:
        assert answer is not None and "b" in answer  # names the task


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("command", sorted(TASK_COMMANDS))
def test_refusals_read_as_sentences_for_every_status(command: Command, status: str) -> None:
    """A status is a verb ("succeeded"), an adjective ("skipped") or a noun
    ("merge-conflict"): the text names it in brackets, or in words that fit it (it
    said "b is already succeeded" and "cannot be retried while succeeded")."""
    answer = refusal(state_with(status), command, "b") or ""
    for wrong in (f"is already {status}", f"while {status}", f"is {status}"):
        if status not in ("running", "skipped", "blocked", "pending", "proposed"):
            assert wrong not in answer, answer
    if command == "skip" and status in ("succeeded", "skipped"):
        assert answer in ("b has already succeeded", "b is already skipped")
    if command == "retry" and status not in ACCEPTED["retry"]:
        assert answer == f"b cannot be retried ({status})"


def test_retry_is_refused_while_a_dependency_has_not_succeeded() -> None:
    assert refusal(state_with("blocked", dep="killed"), "retry", "b") == "b waits for a (killed)"
    assert refusal(state_with("blocked", dep="succeeded"), "retry", "b") is None


def test_task_commands_need_a_known_task() -> None:
    state = state_with("running")
    assert refusal(state, "kill", "nope") == "no task 'nope'"
    assert refusal(state, "kill", None) == "no task selected"


@pytest.mark.parametrize("command", COMMANDS)
def test_an_ended_run_refuses_everything(command: Command) -> None:
    state = state_with("running", status="succeeded", proposal=BatchProposed(batch=1, tasks=("b",)))
    assert refusal(state, command, "b") == "the run has ended"


def test_run_commands() -> None:
    idle = state_with("pending")
    waiting = state_with("proposed", proposal=BatchProposed(batch=1, tasks=("b",)))
    busy = state_with("running")
    assert refusal(idle, "approve") == "no batch is waiting for approval"
    assert refusal(idle, "hold") == "no batch is waiting for approval"
    assert refusal(waiting, "approve") is None
    assert refusal(waiting, "hold") is None
    assert refusal(idle, "pause") is None
    assert refusal(state_with("pending", paused=True), "pause") == "scheduling is already paused"
    assert refusal(idle, "resume") == "scheduling is not paused"
    assert refusal(state_with("pending", paused=True), "resume") is None
    assert refusal(idle, "end") is None
    assert refusal(busy, "end") == "tasks are still running; kill them or wait"
    assert refusal(idle, "finish") is None
    assert refusal(busy, "finish") == "tasks are still running"
    shared = state_with("pending", isolation="shared")
    assert refusal(shared, "finish") == "only worktree runs have an integration branch to merge"


#: With an open stale-input finding, retry also restarts these (on the new tip).
STALE_RETRY = frozenset({"starting", "running", "checking", "awaiting-merge"})


@pytest.mark.parametrize("status", STATUSES)
def test_retry_restarts_a_task_whose_input_went_stale(status: str) -> None:
    """A merge changed what b read: r ends it (or drops its unmerged commit) and starts it
    again on the new tip, while it runs or waits to merge; one being merged is re-checked
    by the merge itself."""
    state = state_with(status)
    finding = ConflictDetected(
        key="stale-input:b,a:b/x",
        kind="stale-input",
        severity="warning",
        tasks=("b", "a"),
        paths=("b/x",),
    )
    state.findings = {finding.key: finding}
    answer = refusal(state, "retry", "b")
    if status in ACCEPTED["retry"] | STALE_RETRY:
        assert answer is None
    else:
        assert answer == f"b cannot be retried ({status})"
    assert restarts_stale(state, "b") == (status in STALE_RETRY)
    # Another task's stale input, or another kind of finding, restarts nothing.
    other = ConflictDetected(
        key="k", kind="overlap", severity="warning", tasks=("b", "a"), paths=("b/x",)
    )
    state.findings = {
        "k": other,
        "s": ConflictDetected(
            key="s", kind="stale-input", severity="warning", tasks=("a", "b"), paths=("b/x",)
        ),
    }
    assert not restarts_stale(state, "b")
    assert refusal(state, "retry", "b") == (
        None if status in ACCEPTED["retry"] else f"b cannot be retried ({status})"
    )
