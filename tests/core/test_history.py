"""Runs side by side (``core/history.py``): a run's summary is the numbers ``stats`` has for
it; the totals, pooled rates and trends are worked out by hand from runs made of events
folded through ``state.apply``; the summary kept beside a log's index is used only while
the log is unchanged."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from delegate_tui.core import history, metrics
from delegate_tui.core.events import (
    AgentUsage,
    ConflictDetected,
    Event,
    Notice,
    RetryScheduled,
    TokenUsage,
    encode,
)
from delegate_tui.core.history import RunSummary, aggregate, direction, load_summary, summarize
from delegate_tui.core.plan import parse_plan
from delegate_tui.core.runlog import LogError, index_dir
from delegate_tui.core.state import RunState, apply
from tests.core.test_metrics import T0, attempt, batch, finish, fold, run_started


def used(task: str, cost: float | None, tokens: int = 1000, number: int = 1) -> AgentUsage:
    return AgentUsage(
        task=task,
        attempt=number,
        usage=(TokenUsage(model="m", input=tokens, cached=tokens // 2, output=tokens // 10),),
        cost_usd=cost,
        cost_source="cli" if cost is not None else "",
    )


def eventful_run() -> list[Event]:
    """a fails (3 s) and is retried (2 s); b runs 4 s beside it and collides with a;
    c runs 1 s after a. a cost $0.10 + $0.05, b $0.20; c reported no cost."""
    return [
        run_started(),
        *batch(1, 0, "a", "b"),
        *attempt("a", 0.0, 3.0, status="failed"),
        used("a", 0.10),
        ConflictDetected(
            key="k", kind="overlap", severity="warning", tasks=("a", "b"), paths=("x.py",)
        ),
        RetryScheduled(task="a", attempt=2, prompt="again", ts=T0 + 3.0),
        *attempt("a", 3.0, 5.0, number=2),
        used("a", 0.05, number=2),
        *attempt("b", 0.0, 4.0),
        used("b", 0.20, tokens=2000),
        *batch(2, 5.0, "c"),
        *attempt("c", 5.0, 6.0),
    ]


def test_a_runs_summary_has_the_numbers_stats_prints_and_its_agents_cost() -> None:
    state = finish(fold(eventful_run()), 6.0, status="succeeded")
    s = summarize(state)
    data = metrics.stats(state)
    m = data["metrics"]
    assert (s.wall_s, s.sequential_s, s.time_saved_s) == (
        m["wall_s"],  # type: ignore[index]
        m["sequential_s"],  # type: ignore[index]
        m["time_saved_s"],  # type: ignore[index]
    )
    # sequential 3 + 2 + 4 + 1 = 10 in 6 s: 4 s saved; a and b collided (2 of 3 that
    # ran); one retry in 3 tasks.
    assert (s.sequential_s, s.time_saved_s) == (10.0, 4.0)
    assert (s.conflict_rate, s.rework_rate) == (0.6667, 0.3333)
    assert (s.tasks, s.ran, s.succeeded, s.failed) == (3, 3, 3, 0)
    assert s.cost_usd == pytest.approx(0.35) and s.cost_source == "cli"
    # tokens: a 1000/500/100 twice, b 2000/1000/200
    assert (s.tokens_in, s.tokens_cached, s.tokens_out) == (4000, 2000, 400)
    assert s.verdict == data["verdict"] and s.finished and s.status == "succeeded"
    assert s.as_json()["tokens"] == {"input": 4000, "cached": 2000, "output": 400}


def summary(run: int, **fields: object) -> RunSummary:
    """A finished run started ``run`` hours after T0, with the given numbers."""
    base: dict[str, object] = {
        "run_id": f"r{run:03d}",
        "plan": "p",
        "started": T0 + 3600 * run,
        "status": "succeeded",
        "finished": True,
        "wall_s": 100.0,
        "sequential_s": 150.0,
        "time_saved_s": 50.0,
        "operator_wait_s": 0.0,
        "downtime_s": 0.0,
        "conflict_rate": 0.0,
        "rework_rate": 0.0,
        "tasks": 4,
        "ran": 4,
        "succeeded": 4,
        "failed": 0,
        "tokens_in": 0,
        "tokens_cached": 0,
        "tokens_out": 0,
        "cost_usd": None,
        "cost_source": "",
        "verdict": "",
    }
    return RunSummary(**{**base, **fields})  # type: ignore[arg-type]


def test_rates_are_pooled_over_the_tasks_that_ran_in_finished_runs_only() -> None:
    runs = [
        summary(1, ran=2, conflict_rate=0.5, rework_rate=1.0, cost_usd=1.0, cost_source="cli"),
        summary(2, ran=8, conflict_rate=0.25, rework_rate=0.0, tokens_in=10, tokens_out=5),
        # cut off: its money and time count, its rates do not
        summary(
            3,
            status="running",
            finished=False,
            ran=10,
            conflict_rate=1.0,
            rework_rate=1.0,
            cost_usd=0.5,
            cost_source="estimated",
        ),
    ]
    past = aggregate(list(reversed(runs)))
    assert (past.runs, past.finished) == (3, 2)
    # (1 + 2) collided of 10 that ran; (2 + 0) retries of 10
    assert (past.conflict_rate, past.rework_rate) == (0.3, 0.2)
    assert (past.wall_s, past.time_saved_s) == (300.0, 150.0)
    assert past.cost_usd == 1.5 and past.cost_source == "estimated" and past.cost_unknown == 1
    assert (past.tokens_in, past.tokens_out) == (10, 5)
    # trends: finished runs only, oldest first, whatever order they came in
    assert past.trend("conflict_rate").values == (0.5, 0.25)
    assert past.trend("conflict_rate").runs == ("r001", "r002")
    assert past.trend("cost_usd").values == (1.0,)  # r002 reported no cost
    assert past.trend("conflict_rate").direction == "better"
    assert past.trend("rework_rate").direction == "better"
    assert past.trend("time_saved_s").direction == "steady"
    assert past.trend("cost_usd").direction == ""
    conflict = past.trend("conflict_rate")
    assert (conflict.before, conflict.recent) == (0.5, 0.25)
    assert past.trend("cost_usd").before is None


def test_no_runs_add_up_to_nothing() -> None:
    past = aggregate([])
    assert (past.runs, past.conflict_rate, past.cost_usd, past.cost_unknown) == (0, 0.0, None, 0)
    assert all(not t.values and t.direction == "" for t in past.trends)
    with pytest.raises(KeyError):
        past.trend("nothing")


def test_a_trend_follows_the_newest_runs() -> None:
    runs = [summary(i, time_saved_s=float(i)) for i in range(30)]
    past = aggregate(runs, last=20)
    trend = past.trend("time_saved_s")
    assert trend.values == tuple(float(i) for i in range(10, 30))
    assert trend.last == 29.0 and trend.runs[0] == "r010"


@pytest.mark.parametrize(
    ("values", "higher", "rate", "expected"),
    [
        ((), True, False, ""),
        ((5.0,), True, False, ""),
        ((10.0, 20.0), True, False, "better"),  # more time saved
        ((10.0, 20.0), False, False, "worse"),  # more cost
        ((10.0, 10.5), True, False, "steady"),  # within 10% of the larger
        ((0.30, 0.31), False, True, "steady"),  # one point of a rate
        ((0.30, 0.40), False, True, "worse"),  # ten points more conflicts
        # the last 5 (mean 0.1) against the 5 before (mean 0.5); older ones do not count
        ((0.0,) * 5 + (0.5,) * 5 + (0.1,) * 5, False, True, "better"),
        # three values: the newest against the one before it
        ((0.9, 0.1, 0.5), False, True, "worse"),
    ],
)
def test_direction_compares_the_recent_runs_with_the_ones_before(
    values: tuple[float, ...], higher: bool, rate: bool, expected: str
) -> None:
    assert direction(values, higher, rate=rate) == expected


# ---------------------------------------------------------------- the summary kept on disk


def write_log(folder: Path, events: list[Event]) -> Path:
    folder.mkdir(parents=True)
    log = folder / "events.jsonl"
    state = RunState()
    for seq, ev in enumerate(events, 1):
        object.__setattr__(ev, "seq", seq)
        apply(state, ev)
    log.write_bytes(b"".join(encode(ev) for ev in events))
    return log


def test_a_summary_is_kept_beside_the_index_and_refolded_once_the_log_changes(
    tmp_path: Path,
) -> None:
    state = finish(fold(eventful_run()), 6.0)
    assert state.metrics is not None
    events = [*eventful_run()]
    log = write_log(tmp_path / "run", events)
    live = load_summary(log)  # not finished yet: measured to its last event
    assert not live.finished and live.status == "running"
    kept = index_dir(log) / history.SUMMARY_NAME
    data = json.loads(kept.read_text())
    assert data["version"] == history.SUMMARY_VERSION and data["summary"]["run_id"]
    # Read back from the file, not folded: a value changed in it shows.
    data["summary"]["plan"] = "from the cache"
    kept.write_text(json.dumps(data))
    assert load_summary(log).plan == "from the cache"
    # The run goes on: the log no longer matches, so it is folded again.
    m = metrics.compute(state, T0 + 6.0)
    from delegate_tui.core.events import RunFinished

    with log.open("ab") as fh:
        fh.write(encode(RunFinished(status="succeeded", metrics=m, ts=T0 + 6.0)))
    done = load_summary(log)
    assert done.finished and done.plan == "measured" and done.time_saved_s == 4.0
    # A summary from another version, or a damaged one, is not trusted.
    good = json.loads(kept.read_text())
    newer = {**good, "version": history.SUMMARY_VERSION + 1}
    newer["summary"] = {**good["summary"], "plan": "stale"}
    for bad in (json.dumps(newer), json.dumps({**good, "summary": {"run_id": 3}}), "not json {"):
        kept.write_text(bad)
        assert load_summary(log).plan == "measured"


def test_a_log_without_a_run_is_left_out_with_its_reason(tmp_path: Path) -> None:
    runs = tmp_path / ".delegate" / "runs"
    write_log(runs / "20260101-000000-aaaa", [Notice(level="info", message="hi", ts=T0)])
    good = write_log(runs / "20260102-000000-bbbb", eventful_run())
    found, skipped = history.load_summaries(tmp_path)
    assert [log for log, _ in found] == [good]
    assert len(skipped) == 1 and "no RunStarted" in skipped[0]
    with pytest.raises(LogError, match="no RunStarted"):
        load_summary(runs / "20260101-000000-aaaa" / "events.jsonl")


def test_summary_fields_round_trip_through_the_file(tmp_path: Path) -> None:
    s = summary(1, cost_usd=0.25, cost_source="cli", tokens_in=3)
    assert history._from_json(dataclasses.asdict(s)) == s
    assert history._from_json({**dataclasses.asdict(s), "cost_usd": "x"}) is None
    assert history._from_json({**dataclasses.asdict(s), "finished": 1}) is None
    assert history._from_json([]) is None


# ---------------------------------------------------------------- runs that say nothing about delegating


def test_a_draft_and_a_run_stopped_before_any_task_ran_stay_out_of_the_trend() -> None:
    """One real run (27% of its tasks collided), then a drafting consult and a run stopped
    before anything ran: they were 0 s saved and 0% conflicts, and the trend said
    "better (mean 27% -> 0%)"."""
    real = summary(1, ran=11, conflict_rate=0.2727, rework_rate=0.1, time_saved_s=40.0)
    draft = summary(
        2,
        plan="draft 1: add rate limiting",
        tasks=1,
        ran=1,
        succeeded=1,
        wall_s=12.0,
        sequential_s=12.0,
        time_saved_s=0.0,
        cost_usd=0.04,
        cost_source="cli",
        tokens_in=3000,
        draft=True,
    )
    stopped = summary(
        3, status="stopped", ran=0, succeeded=0, wall_s=3.0, sequential_s=0.0, time_saved_s=-3.0
    )
    assert real.counted and not draft.counted and not stopped.counted
    past = aggregate([real, draft, stopped])
    assert (past.runs, past.finished, past.drafts, past.idle, past.left_out) == (3, 1, 1, 1, 2)
    for metric in ("time_saved_s", "conflict_rate", "rework_rate"):
        trend = past.trend(metric)
        assert trend.runs == ("r001",) and trend.direction == "", metric
    assert past.trend("conflict_rate").values == (0.2727,)
    # The totals of time and the rates are the real run's; the drafting's money is spent.
    assert (past.wall_s, past.sequential_s, past.time_saved_s) == (100.0, 150.0, 40.0)
    assert (past.conflict_rate, past.rework_rate) == (0.2727, 0.1)
    assert past.cost_usd == 0.04 and past.tokens_in == 3000
    assert past.cost_unknown == 1  # the real run; the stopped one ran no agent at all
    listed = draft.as_json()
    assert listed["draft"] is True and listed["counted"] is False
    assert past.as_json()["drafts"] == 1 and past.as_json()["idle"] == 1


def test_a_drafting_consults_log_is_known_by_its_plan(tmp_path: Path) -> None:
    from delegate_tui.core.consult import consult_plan

    plan = consult_plan(tmp_path, "demo", "draft a plan", name="draft 1: x", timeout=60)
    assert history.is_draft_consult(plan)
    started = dataclasses.replace(run_started(), plan=plan.model_dump(mode="json", by_alias=True))
    events = [
        started,
        *batch(1, 0, history.DRAFT_TASK),
        *attempt(history.DRAFT_TASK, 0.0, 4.0),
    ]
    s = summarize(finish(fold(events), 4.0))
    assert s.draft and s.ran == 1 and not s.counted
    # A plan of one consult task with another name, or of two tasks, is a run like any.
    assert not history.is_draft_consult(PLAN_TWO_CONSULTS)
    assert not summarize(finish(fold(eventful_run()), 6.0)).draft


PLAN_TWO_CONSULTS = parse_plan(
    "name: reviews\ntasks:\n"
    "  - {id: draft, prompt: x, kind: consult}\n"
    "  - {id: other, prompt: y, kind: consult}\n"
)


def test_a_summary_kept_by_an_older_version_is_folded_again_with_the_draft_flag(
    tmp_path: Path,
) -> None:
    from delegate_tui.core.consult import consult_plan

    plan = consult_plan(tmp_path, "demo", "q", name="draft 1: x", timeout=60)
    started = dataclasses.replace(run_started(), plan=plan.model_dump(mode="json", by_alias=True))
    events = [started, *batch(1, 0, "draft"), *attempt("draft", 0.0, 4.0)]
    log = write_log(tmp_path / "run", events)
    assert load_summary(log).draft
    kept = index_dir(log) / history.SUMMARY_NAME
    data = json.loads(kept.read_text())
    # As version 1 wrote it: no draft field.
    old = {**data, "version": 1, "summary": dict(data["summary"])}
    del old["summary"]["draft"]
    kept.write_text(json.dumps(old))
    again = load_summary(log)
    assert again.draft and not again.counted
    assert json.loads(kept.read_text())["version"] == history.SUMMARY_VERSION
