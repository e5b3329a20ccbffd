"""A run of many held tasks writes a log that grows linearly, and says why each is held.

Issue 15: every ``BatchProposed`` listed every held task with its reason, so at a
thousand ready tasks the proposals were 28 MB of a 28.5 MB log (O(tasks^2)). A
proposal now lists what changed since the previous one; the state folds it back into
the whole list, which must be exactly what the batcher decided, proposal by proposal.
Real engine, real shell agents; the log read back from disk.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from delegate_tui.core import batching
from delegate_tui.core.events import BatchProposed
from delegate_tui.core.plan import Plan
from delegate_tui.core.runlog import list_run_logs, read_events
from delegate_tui.core.state import RunState, apply
from tests.conftest import run_engine

pytestmark = pytest.mark.e2e

TASKS = 90


def _plan(repo: Path, write_plan: Callable[..., Plan]) -> Plan:
    lines = [f"name: held\nrepo: {repo}\nisolation: none\nmax_parallel: 3\ntasks:"]
    for i in range(TASKS):  # independent tasks, each its own file
        lines.append(f"  - {{id: t{i}, agent: shell, command: 'true', edits: [out/t{i}.txt]}}")
    for i in range(30):  # ahead of the others (a longer estimate)
        lines.append(
            f"  - {{id: h{i}, agent: shell, command: 'true', estimate: 5, edits: [out/h{i}.txt]}}"
        )
    # d1 becomes ready while h and t tasks are held: it goes between them (priority 2).
    lines.append("  - {id: d0, agent: shell, command: 'true', estimate: 10, edits: [d/0.txt]}")
    lines.append(
        "  - {id: d1, agent: shell, command: 'true', estimate: 2, edits: [d/1.txt], "
        "depends_on: [d0]}"
    )
    for i in range(4):  # one file for four tasks: held for an overlap, then for another
        lines.append(f"  - {{id: o{i}, agent: shell, command: 'true', edits: [shared/x.txt]}}")
    return write_plan("\n".join(lines) + "\n")


def test_many_held_tasks_log_linearly_and_every_held_reason_is_the_batchers(
    repo: Path, write_plan: Callable[..., Plan]
) -> None:
    plan = _plan(repo, write_plan)
    state, _, _ = run_engine(plan)
    assert state.status == "succeeded", state.summary
    total = len(plan.tasks)

    (log,) = list_run_logs(repo)
    lines = log.read_bytes().splitlines()
    proposed = [line for line in lines if b'"type":"BatchProposed"' in line]
    assert len(proposed) >= total // 3  # a proposal each time a slot freed
    # Linear: the first proposal lists every held task (about 60 bytes each); after it,
    # a proposal costs what changed. Listing every held task each time was about
    # 60 x (total / 2) bytes a proposal, 2,800 here.
    later = sum(len(line) for line in proposed[1:]) / len(proposed[1:])
    assert later < 600, f"{later:.0f} bytes a proposal"
    assert sum(len(line) for line in proposed) < 1_500 * total

    # Folded from the log, each proposal holds exactly the tasks, in the order and for
    # the reasons, the batcher gave from the state it was proposed in.
    folded = RunState()
    compared = changes_only = inserted = 0
    overlap = False
    for ev in read_events(log):
        if isinstance(ev, BatchProposed):
            decided = batching.next_batch(plan, folded, auto_approve=folded.auto_approve)
            before = {h.task for h in folded.held_tasks}
            apply(folded, ev)
            assert decided is not None and folded.proposal is not None
            assert folded.proposal.tasks == decided.tasks
            assert folded.proposal.held == decided.held, ev.seq
            for held in decided.held:
                assert folded.tasks[held.task].held_reason == held.reason
            compared += 1
            changes_only += ev.changes_only
            # A task that became ready mid-run, placed among the held ones by priority.
            inserted += ev.changes_only and any(
                h.task not in before and after for h, after in zip(ev.held, ev.after, strict=True)
            )
            overlap = overlap or any("edits overlap with o" in h.reason for h in decided.held)
        else:
            apply(folded, ev)
    assert compared == len(proposed)
    assert changes_only >= compared // 2  # most proposals were changes
    assert inserted and overlap  # the cases a list of changes must place and re-word
