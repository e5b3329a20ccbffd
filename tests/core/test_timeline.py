"""The timeline projection over event sequences shaped as the engine emits them.

A run with a held batch, a failure retried by the operator that then hits a
merge conflict, a dependent blocked by it, a kill, a skip, a pause, and a
task held for a slot and for a scope: each row's bars, waits (and why) and
marks, and the count of agents at each moment. The fold is the real
``state.apply``; the same projection survives a keyframe (snapshot/restore),
which is how replay and attached views get their state.
"""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from delegate_tui.core import runlog
from delegate_tui.core.events import (
    BatchApproved,
    BatchProposed,
    ChangedFile,
    ConflictDetected,
    CriteriaChecked,
    Event,
    HeldTask,
    InputSent,
    KillRequested,
    MergeConflict,
    Metrics,
    RetryScheduled,
    RunFinished,
    RunStarted,
    SchedulingPaused,
    SchedulingResumed,
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
from delegate_tui.core.plan import parse_plan
from delegate_tui.core.replay import final_state
from delegate_tui.core.state import RunState, apply, restore, snapshot
from delegate_tui.core.timeline import (
    Bar,
    Wait,
    describe,
    fit_step,
    project,
    tick_every,
    zoom,
)

T0 = 1_790_000_000.0
PLAN = textwrap.dedent(
    """\
    name: timeline
    max_parallel: 2
    tasks:
      - {id: build, agent: demo, prompt: b, edits: ["src/core/**"]}
      - {id: docs, agent: demo, prompt: d, edits: ["docs/**"]}
      - {id: api, agent: demo, prompt: a, edits: ["src/api/**"], depends_on: [build]}
      - {id: extra, agent: demo, prompt: e, edits: ["src/core/x.py"]}
      - {id: ui, agent: demo, prompt: u, edits: ["web/**"]}
      - {id: legacy, agent: demo, prompt: l, edits: ["old/**"]}
    """
)
SLOT = "max_parallel (2) reached"
SCOPE = "edits overlap with build on src/core/x.py / src/core/** (running)"


class Play:
    """Events as the engine emits them, stamped at offsets from T0 and folded."""

    def __init__(self) -> None:
        self.state = RunState()
        self.events: list[Event] = []
        self.plan = parse_plan(PLAN, "plan.yaml")

    def at(self, offset: float, *events: Event) -> None:
        for ev in events:
            ev = dataclasses.replace(ev, seq=len(self.events) + 1, ts=T0 + offset)
            self.events.append(ev)
            apply(self.state, ev)

    def start(self) -> None:
        self.at(
            0,
            RunStarted(
                run_id="r",
                plan=self.plan.model_dump(mode="json", by_alias=True),
                plan_path="plan.yaml",
                repo="/repo",
                isolation="worktree",
                max_parallel=2,
            ),
        )

    def begin(self, task: str, at: float, attempt: int = 1) -> None:
        self.at(at, TaskPreparing(task=task, attempt=attempt, workdir=f"/w/{task}"))
        self.at(
            at + 1,
            TaskStarted(
                task=task,
                attempt=attempt,
                agent="demo",
                argv=("x",),
                cwd="/w",
                pid=9,
                pgid=9,
                prompt="p",
            ),
        )

    def merge(self, task: str, at: float, attempt: int = 1) -> None:
        self.at(at, TaskExited(task=task, attempt=attempt, exit_code=0))
        self.at(at, CriteriaChecked(task=task, attempt=attempt, results=(), passed=True))
        self.at(at + 1, TaskCommitted(task=task, attempt=attempt, commit="c" + task))
        self.at(at + 2, TaskMerged(task=task, attempt=attempt, commit="m" + task))
        self.at(at + 2, TaskFinished(task=task, attempt=attempt, status="succeeded"))


def eventful() -> Play:
    """The run of the module docstring (offsets in seconds)."""
    p = Play()
    p.start()
    p.at(
        0,
        BatchProposed(
            batch=1,
            tasks=("build", "docs"),
            held=(HeldTask("extra", SCOPE), HeldTask("ui", SLOT), HeldTask("legacy", SLOT)),
        ),
    )
    p.at(5, BatchApproved(batch=1, tasks=("build", "docs")))
    p.begin("build", 5)
    p.begin("docs", 5)
    p.at(10, TaskOutput(task="docs", attempt=1, data=b"writing\n"))
    p.merge("docs", 20)
    p.at(22, BatchProposed(batch=2, tasks=("ui",), held=(HeldTask("extra", SCOPE),)))
    p.at(24, BatchApproved(batch=2, tasks=("ui",)))
    p.begin("ui", 24)
    p.at(28, InputSent(task="ui", attempt=1, text="yes"))
    p.at(30, TaskExited(task="build", attempt=1, exit_code=2))
    p.at(30, TaskFinished(task="build", attempt=1, status="failed", reason="exited with status 2"))
    p.at(35, KillRequested(task="ui", attempt=1))
    p.at(36, TaskExited(task="ui", attempt=1, exit_code=None, signal=15, reason="killed"))
    p.at(36, TaskFinished(task="ui", attempt=1, status="killed", reason="killed by the operator"))
    p.at(37, TaskSkipped(task="legacy", reason="not needed"))
    p.at(40, RetryScheduled(task="build", attempt=2, prompt="again", context="use the v2 API"))
    p.begin("build", 41, attempt=2)
    p.at(
        50,
        ConflictDetected(
            key="k1",
            kind="predicted-conflict",
            severity="error",
            tasks=("build", "extra"),
            paths=("src/core/x.py",),
        ),
    )
    p.at(60, TaskExited(task="build", attempt=2, exit_code=0))
    p.at(60, CriteriaChecked(task="build", attempt=2, results=(), passed=True))
    p.at(
        61,
        TaskCommitted(
            task="build", attempt=2, commit="c2", changed=(ChangedFile("src/core/x.py"),)
        ),
    )
    p.at(62, MergeConflict(task="build", attempt=2, paths=("src/core/x.py",)))
    p.at(
        62,
        TaskFinished(
            task="build", attempt=2, status="merge-conflict", reason="merge conflict in x.py"
        ),
    )
    p.at(62, TaskBlocked(task="api", by="build", reason="dependency build merge-conflict"))
    p.at(63, BatchProposed(batch=3, tasks=("extra",)))
    p.at(70, BatchApproved(batch=3, tasks=("extra",)))
    p.begin("extra", 70)
    p.merge("extra", 78)
    p.at(80, RunFinished(status="partial", metrics=Metrics()))
    return p


def spans(row_spans: list[Bar | Wait]) -> list[tuple[str, float, float]]:
    """Each span as (outcome or why, start, end) in seconds from T0."""
    return [
        (s.outcome if isinstance(s, Bar) else s.why, s.start - T0, s.end - T0) for s in row_spans
    ]


def test_a_failure_retried_by_the_operator_then_a_merge_conflict() -> None:
    line = project(eventful().state).row("build")
    assert line is not None
    assert spans(line.spans()) == [
        ("approval", 0, 5),
        ("failed", 5, 30),
        ("operator", 30, 40),
        ("conflict", 41, 62),
    ]
    first, second = line.bars
    assert (first.agent_start - T0, first.agent_end - T0) == (6, 30)
    assert first.reason == "exited with status 2"
    assert second.reason == "merge conflict in x.py" and not second.merged_ts
    assert [(m.kind, m.ts - T0, m.by) for m in line.marks] == [
        ("approved", 5, "operator"),
        ("retry", 40, "operator"),
        ("finding", 50, "engine"),
    ]
    assert "use the v2 API" in line.marks[1].detail
    assert line.marks[2].detail == "predicted-conflict: src/core/x.py"
    assert line.waits[0].detail == "batch 1 waited for approval"
    assert line.waits[1].detail == "failed; waited for a retry"


def test_a_killed_task_waited_for_a_slot_and_an_approval_first() -> None:
    line = project(eventful().state).row("ui")
    assert line is not None
    assert spans(line.spans()) == [("slot", 0, 22), ("approval", 22, 24), ("killed", 24, 36)]
    assert line.waits[0].detail == SLOT
    assert [(m.kind, m.ts - T0) for m in line.marks] == [
        ("approved", 24),
        ("input", 28),
        ("kill", 35),
    ]
    assert line.marks[1].detail == "typed: yes"


def test_a_skip_a_blocked_dependent_and_a_task_held_for_its_scope() -> None:
    timeline = project(eventful().state)
    legacy, api, extra, docs = (timeline.row(t) for t in ("legacy", "api", "extra", "docs"))
    assert legacy is not None and api is not None and extra is not None and docs is not None
    assert spans(legacy.spans()) == [("slot", 0, 22), ("scheduling", 22, 37)]
    assert [(m.kind, m.detail) for m in legacy.marks] == [
        ("skip", "skipped by the operator: not needed")
    ]
    assert legacy.status == "skipped" and legacy.bars == ()
    assert spans(api.spans()) == [("dependency", 0, 62), ("blocked", 62, 80)]
    assert api.waits[0].detail == "needs build"
    assert spans(extra.spans()) == [("scope", 0, 63), ("approval", 63, 70), ("merged", 70, 80)]
    assert extra.waits[0].detail == SCOPE
    (bar,) = docs.bars
    assert (bar.outcome, bar.merged_ts - T0, bar.end - T0) == ("merged", 22, 22)


def test_agents_at_each_moment() -> None:
    timeline = project(eventful().state)
    steps = [(ts - T0, n) for ts, n in timeline.concurrency]
    assert steps == [(6, 2), (20, 1), (25, 2), (30, 1), (36, 0), (42, 1), (60, 0), (71, 1), (78, 0)]
    assert timeline.peak == 2
    assert timeline.agents_between(T0 + 0, T0 + 6) == 0
    assert timeline.agents_between(T0 + 19, T0 + 21) == 2
    assert timeline.agents_between(T0 + 20, T0 + 25) == 1
    assert timeline.agents_between(T0 + 36, T0 + 42) == 0
    assert (timeline.start, timeline.end) == (T0, T0 + 80)


def test_run_marks_batches_and_approvals() -> None:
    timeline = project(eventful().state)
    assert [(m.kind, m.ts - T0) for m in timeline.marks] == [
        ("proposed", 0),
        ("approved", 5),
        ("proposed", 22),
        ("approved", 24),
        ("proposed", 63),
        ("approved", 70),
    ]
    assert timeline.marks[1].detail == "batch 1 approved by the operator: build, docs"


def test_a_live_run_ends_at_now_and_a_running_bar_grows() -> None:
    p = Play()
    p.start()
    p.at(0, BatchApproved(batch=1, tasks=("build",), by="policy"))
    p.begin("build", 0)
    p.at(4, TaskOutput(task="build", attempt=1, data=b"x"))
    timeline = project(p.state, now=T0 + 9)
    line = timeline.row("build")
    assert line is not None
    (bar,) = line.bars
    assert bar.live and (bar.end - T0, bar.agent_end - T0) == (9, 9)
    assert timeline.end == T0 + 9 and timeline.agents_between(T0 + 8, T0 + 9) == 1
    # docs was ready and waited for a batch the whole time (nothing held it).
    docs = timeline.row("docs")
    assert docs is not None and spans(docs.spans()) == [("scheduling", 0, 9)]


def test_the_engine_own_moments_are_not_waits() -> None:
    """A batch the policy approved at once, and the moment before the first proposal."""
    p = Play()
    p.start()
    p.at(0.01, BatchProposed(batch=1, tasks=("docs",), needs_approval=False))
    p.at(0.02, BatchApproved(batch=1, tasks=("docs",), by="policy"))
    p.begin("docs", 0.02)
    line = project(p.state, now=T0 + 5).row("docs")
    assert line is not None
    assert [b.outcome for b in line.spans() if isinstance(b, Bar)] == ["running"]
    assert line.waits == ()


def test_a_failure_nobody_decided_on_yet_waits_for_the_operator_until_now() -> None:
    p = Play()
    p.start()
    p.at(0, BatchApproved(batch=1, tasks=("docs", "ui"), by="policy"))
    p.begin("docs", 0)
    p.begin("ui", 0)
    p.at(3, TaskExited(task="docs", attempt=1, exit_code=1))
    p.at(3, TaskFinished(task="docs", attempt=1, status="failed", reason="exit 1"))
    p.at(4, KillRequested(task="ui", attempt=1))
    p.at(4, TaskFinished(task="ui", attempt=1, status="killed"))
    docs, ui = (project(p.state, now=T0 + 10).row(t) for t in ("docs", "ui"))
    assert docs is not None and ui is not None
    assert spans(docs.spans()) == [("failed", 0, 3), ("operator", 3, 10)]
    assert docs.waits[0].detail == "failed; waits for a retry or a skip"
    assert spans(ui.spans()) == [("killed", 0, 4)], "the operator's own kill waits for nobody"
    p.at(12, RunFinished(status="partial", metrics=Metrics()))
    docs = project(p.state).row("docs")
    assert docs is not None and spans(docs.spans()) == [("failed", 0, 3)]


def test_a_pause_shows_as_such_on_a_ready_task() -> None:
    p = Play()
    p.start()
    p.at(2, SchedulingPaused())
    p.at(7, SchedulingResumed())
    p.at(8, BatchProposed(batch=1, tasks=("docs",)))
    p.at(9, BatchApproved(batch=1, tasks=("docs",)))
    line = project(p.state, now=T0 + 9).row("docs")
    assert line is not None
    assert spans(line.spans()) == [
        ("scheduling", 0, 2),
        ("paused", 2, 7),
        ("scheduling", 7, 8),
        ("approval", 8, 9),
    ]


def test_an_automatic_retry_leaves_no_operator_wait_and_is_marked_as_automatic() -> None:
    p = Play()
    p.start()
    p.at(0, BatchApproved(batch=1, tasks=("docs",), by="policy"))
    p.begin("docs", 0)
    p.at(3, TaskExited(task="docs", attempt=1, exit_code=0))
    p.at(3, CriteriaChecked(task="docs", attempt=1, results=(), passed=False))
    p.at(3, TaskFinished(task="docs", attempt=1, status="failed", reason="criteria failed"))
    p.at(3, RetryScheduled(task="docs", attempt=2, prompt="p", automatic=True))
    p.begin("docs", 3, attempt=2)
    p.merge("docs", 6, attempt=2)
    line = project(p.state).row("docs")
    assert line is not None
    assert spans(line.spans()) == [("failed", 0, 3), ("merged", 3, 8)]
    assert [(m.kind, m.by) for m in line.marks] == [("approved", "policy"), ("retry", "policy")]
    assert line.marks[1].detail == "retried (automatic)"


def test_the_picture_survives_a_keyframe() -> None:
    """Replay seeks and attached views start from a snapshot: the phases and marks travel."""
    p = eventful()
    again = restore(snapshot(p.state), p.state.plan)
    assert project(again) == project(p.state)


def test_the_picture_survives_keyframes_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A log whose keyframes were written as the run went (how replay, ``report`` and an
    attached view open it): the state from the last keyframe draws the same timeline."""
    monkeypatch.setattr(runlog, "KEYFRAME_EVERY", 10)
    p = eventful()
    log = tmp_path / "events.jsonl"
    writer = runlog.LogWriter(log)
    state = RunState()
    for ev in p.events:
        apply(state, ev)
        writer.write(ev, keyframe=lambda: snapshot(state))
    writer.close()
    assert len(runlog.load_index(log).keyframes) >= 4  # type: ignore[union-attr]
    again, report = final_state(log)
    assert not report.messages()
    assert project(again) == project(p.state)


def test_the_picture_at_a_replay_cursor_is_the_fold_of_the_events_so_far() -> None:
    p = eventful()
    cut = next(i for i, e in enumerate(p.events) if isinstance(e, KillRequested)) + 1
    state = RunState()
    for ev in p.events[:cut]:
        apply(state, ev)
    line = project(state).row("ui")
    assert line is not None
    (bar,) = line.bars
    assert bar.live and bar.end == T0 + 35
    assert [m.kind for m in line.marks][-1] == "kill"
    build = project(state).row("build")
    assert build is not None and [b.outcome for b in build.bars] == ["failed"]


@pytest.mark.parametrize(
    ("duration", "cells", "step"),
    [
        (50, 60, 1),
        (61, 60, 2),
        (600, 60, 10),
        (3600, 60, 60),
        (3600, 50, 120),
        (0, 10, 0.1),
        (2, 10, 0.25),
    ],
)
def test_the_scale_fits_the_run_into_the_columns(duration: float, cells: int, step: float) -> None:
    assert fit_step(duration, cells) == step


def test_zoom_and_ticks() -> None:
    assert zoom(10, -1) == 5 and zoom(10, 1) == 15 and zoom(0.1, -1) == 0.1
    assert tick_every(1) == 10 and tick_every(10) == 120


def test_a_span_described_for_a_person() -> None:
    line = project(eventful().state).row("build")
    assert line is not None
    first, wait = line.bars[0], line.waits[1]
    assert describe(first, T0) == (
        "attempt 1 0:05–0:30 (0:25) failed (agent, setup or checks): exited with status 2"
    )
    assert describe(wait, T0) == (
        "waited 0:10 (0:30–0:40) for the operator to retry it: failed; waited for a retry"
    )
