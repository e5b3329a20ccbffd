"""Declared reads: the batcher keeps a reader away from its files' writers, and a merge
under a reader is a stale input."""

from __future__ import annotations

from delegate_tui.core import batching, conflicts
from delegate_tui.core.events import TaskStatus
from delegate_tui.core.plan import Plan, parse_plan
from delegate_tui.core.state import RunState, TaskState


def plan_of(*tasks: str) -> Plan:
    return parse_plan("name: p\nmax_parallel: 4\ntasks:\n" + "".join(f"  - {t}\n" for t in tasks))


def state_of(plan: Plan, **statuses: TaskStatus) -> RunState:
    state = RunState(plan=plan, isolation="worktree", max_parallel=plan.max_parallel)
    state.tasks = {t.id: TaskState(t.id, status=statuses.get(t.id, "pending")) for t in plan.tasks}
    return state


WRITER = "{id: schema, prompt: x, edits: [api/schema.py]}"
READER = "{id: client, prompt: x, edits: [web/client.ts], reads: ['api/**']}"


def test_a_reader_waits_for_a_running_writer_to_merge() -> None:
    plan = plan_of(WRITER, READER)
    statuses: tuple[TaskStatus, ...] = ("running", "awaiting-merge")
    for status in statuses:
        proposal = batching.next_batch(plan, state_of(plan, schema=status), auto_approve=True)
        assert proposal is None or proposal.tasks == ()
        held = batching.next_batch(
            plan_of(WRITER, READER, "{id: other, prompt: x, edits: [z]}"),
            state_of(plan_of(WRITER, READER, "{id: other, prompt: x, edits: [z]}"), schema=status),
            auto_approve=True,
        )
        assert held is not None
        assert {h.task: h.reason for h in held.held} == {
            "client": f"reads api/** / api/schema.py, which schema edits: waits for it to merge ({status})"
        }


def test_a_writer_that_ended_unmerged_holds_back_neither_readers_nor_editors() -> None:
    """A writer in merge-conflict or failed has not merged, but it no longer runs: its
    retry starts from the integration tip, and if it merges under a reader that is a
    stale input (found, re-checked before the reader merges). Readers are treated as
    tasks whose edits overlap it are: neither waits, so a run without an operator can
    still end."""
    editor = "{id: editor, prompt: x, edits: [api/schema.py]}"
    plan = plan_of(WRITER, READER, editor)
    statuses: tuple[TaskStatus, ...] = ("merge-conflict", "failed")
    for status in statuses:
        proposal = batching.next_batch(plan, state_of(plan, schema=status), auto_approve=True)
        assert proposal is not None and proposal.tasks == ("client",), status
        # The editor waits for the client, which reads what it edits: not for schema.
        assert {h.task: h.reason for h in proposal.held} == {
            "editor": "edits api/schema.py / api/**, which client reads"
        }
        alone = plan_of(WRITER, editor)
        proposal = batching.next_batch(alone, state_of(alone, schema=status), auto_approve=True)
        assert proposal is not None and proposal.tasks == ("editor",), status


def test_a_reader_and_its_writer_are_not_proposed_together() -> None:
    plan = plan_of(WRITER, READER)
    proposal = batching.next_batch(plan, state_of(plan), auto_approve=True)
    assert proposal is not None and proposal.tasks == ("schema",)
    assert proposal.held[0].task == "client"
    # The other way round: a writer that comes after its reader waits for the reader.
    plan = plan_of(READER, WRITER)
    proposal = batching.next_batch(plan, state_of(plan), auto_approve=True)
    assert proposal is not None and proposal.tasks == ("client",)
    assert proposal.held[0].reason == "edits api/schema.py / api/**, which client reads"


def test_reads_stale_ok_lets_them_run_together() -> None:
    reader = READER.replace("reads:", "reads_stale_ok: true, reads:")
    plan = plan_of(WRITER, reader)
    proposal = batching.next_batch(plan, state_of(plan), auto_approve=True)
    assert proposal is not None and proposal.tasks == ("schema", "client")


def test_a_merge_after_a_reader_started_is_a_stale_input() -> None:
    reader = conflicts.Reader("client", 10.0, ("api/**",))
    merges = [
        conflicts.Merge("schema", 12.0, ("api/schema.py", "README.md")),
        conflicts.Merge("early", 9.0, ("api/old.py",)),  # before it started: in its base
        conflicts.Merge("docs", 13.0, ("docs/x.md",)),  # nothing it read
        conflicts.Merge("web", 14.0, ("web/client.ts",)),  # its own file: an overlap, not this
    ]
    found = conflicts.stale_inputs([reader], merges)
    assert [(f.kind, f.tasks, f.paths) for f in found] == [
        ("stale-input", ("client", "schema"), ("api/schema.py",)),
    ]
    assert found[0].key == "stale-input:client,schema:api/schema.py"


def test_what_an_agent_read_joins_its_declared_reads() -> None:
    """Files an agent's structured stream showed it reading (claude Read/Grep, gemini
    read_file) are part of its read set, with or without declared reads."""
    from delegate_tui.core.conflict_monitor import reader_of
    from delegate_tui.core.state import AttemptState

    plan = plan_of("{id: client, prompt: x, edits: [web/client.ts]}", WRITER)
    task = TaskState("client", status="running")
    assert reader_of(plan, task) is None  # no attempt yet
    attempt = AttemptState(1, prepared_ts=10.0)
    task.attempts.append(attempt)
    assert reader_of(plan, task) is None  # declared nothing, read nothing
    attempt.read = ["api/schema.py", "/etc/hosts", "src"]  # outside the worktree: not ours
    reader = reader_of(plan, task)
    assert reader == conflicts.Reader("client", 10.0, ("api/schema.py", "src"))
    merges = [
        conflicts.Merge("schema", 12.0, ("api/schema.py",)),
        conflicts.Merge("lib", 13.0, ("src/util/x.py",)),  # a folder it searched
    ]
    found = conflicts.stale_inputs([reader], merges)
    assert [(f.tasks, f.paths) for f in found] == [
        (("client", "schema"), ("api/schema.py",)),
        (("client", "lib"), ("src/util/x.py",)),
    ]
