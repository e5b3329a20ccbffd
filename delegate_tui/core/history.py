"""A repository's runs side by side: one summary per run, their sums, and their trend.

Owns the numbers of ``stats --all``, ``runs`` and the runs screen's chart. The
pure part: :func:`summarize` makes a :class:`RunSummary` of a run's final
state (the same ``metrics.compute`` and ``verdict`` that ``stats`` prints, and
the agents' tokens and cost), :func:`aggregate` adds summaries up into a
:class:`History` (totals, rates pooled over the tasks that ran, and a
:class:`Trend` per number: its values over the last runs and whether the
recent runs did better or worse than the ones before).

The edge, :func:`load_summaries`: each log's final state comes through its
index (``replay.final_state``: the last keyframe and the events after it), and
its summary is kept beside the index (``events.index/summary.json``), named by
the log's bytes as the index is, so a second look at 200 runs reads 200 small
files instead of folding 200 logs. A live run keeps its own when it ends
(:func:`keep_summary`, from the emitter that closes its log). Like the index, that file is a cache: a log
that changed, or a summary written by another version, is folded again.

Not every run says something about delegating: the consult runs of
``delegate-tui draft`` (one question to the drafting agent, :func:`is_draft_consult`)
and runs stopped before any task ran would enter the totals and the trend as
0 s saved, 0 % conflicts, 0 % rework. They are listed like any run, their tokens
and cost are added up (that money is spent), but the time saved, the rates and
the trends leave them out (:attr:`RunSummary.counted`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from delegate_tui.core import runlog
from delegate_tui.core.events import FAILED_STATUSES, TokenUsage
from delegate_tui.core.metrics import compute, verdict
from delegate_tui.core.plan import Plan
from delegate_tui.core.state import RunState

#: Bump when what a summary holds or how it is worked out changes: older files are refolded.
SUMMARY_VERSION = 2
#: The one task of a ``delegate-tui draft`` consult run (``core/consult.consult_plan``).
DRAFT_TASK = "draft"
SUMMARY_NAME = "summary.json"
#: How many of the newest runs a trend looks at, and how many of those count as recent.
TREND_RUNS = 20
RECENT_RUNS = 5
#: Changes smaller than these are "steady": rates in points, seconds and dollars as shares.
STEADY_RATE = 0.02
STEADY_SHARE = 0.10


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One run in numbers, as the cross-run views show it."""

    run_id: str
    plan: str
    started: float
    status: str
    """The run's status as its log ends: ``succeeded``, ``partial``, ``failed``,
    ``stopped``, or ``running`` (not finished: live, or cut off by a crash)."""
    finished: bool
    wall_s: float
    sequential_s: float
    time_saved_s: float
    operator_wait_s: float
    downtime_s: float
    conflict_rate: float
    rework_rate: float
    tasks: int
    ran: int
    """Tasks that started at least one attempt (the rates' denominator)."""
    succeeded: int
    failed: int
    tokens_in: int
    tokens_cached: int
    tokens_out: int
    cost_usd: float | None
    cost_source: str
    """``cli`` (the agents reported it), ``estimated`` (from list prices) or ``""``."""
    verdict: str
    draft: bool = False
    """A consult run of ``delegate-tui draft``: one question to the drafting agent."""

    @property
    def counted(self) -> bool:
        """Whether the run is in the totals of time saved, the rates and the trends: it is
        not a drafting consult and at least one of its tasks ran."""
        return self.ran > 0 and not self.draft

    @property
    def tokens(self) -> int:
        """Every token the run's agents used (input, cached and output)."""
        return self.tokens_in + self.tokens_cached + self.tokens_out

    def as_json(self) -> dict[str, Any]:
        """The run as ``stats --all --json`` lists it."""
        data = asdict(self)
        data["tokens"] = {
            "input": data.pop("tokens_in"),
            "cached": data.pop("tokens_cached"),
            "output": data.pop("tokens_out"),
        }
        data["counted"] = self.counted
        return data


def is_draft_consult(plan: Plan | None) -> bool:
    """``plan`` is one that ``delegate-tui draft`` runs to ask its agent a question: a
    single consult task named ``draft`` (so the logs of older versions are known too)."""
    if plan is None or len(plan.tasks) != 1:
        return False
    (task,) = plan.tasks
    return task.id == DRAFT_TASK and task.kind == "consult"


def summarize(state: RunState) -> RunSummary:
    """The summary of a run as far as ``state`` goes (its metrics as ``stats`` has them)."""
    m = state.metrics if state.finished and state.metrics else compute(state)
    tokens = state.tokens
    cost = state.cost_usd
    return RunSummary(
        run_id=state.run_id,
        plan=state.plan.name if state.plan else "",
        started=state.started_ts,
        status=state.status,
        finished=state.finished,
        wall_s=m.wall_s,
        sequential_s=m.sequential_s,
        time_saved_s=m.time_saved_s,
        operator_wait_s=m.operator_wait_s,
        downtime_s=m.downtime_s,
        conflict_rate=m.conflict_rate,
        rework_rate=m.rework_rate,
        tasks=len(state.tasks),
        ran=sum(any(a.started_ts for a in t.attempts) for t in state.tasks.values()),
        succeeded=sum(t.status == "succeeded" for t in state.tasks.values()),
        failed=sum(t.status in FAILED_STATUSES for t in state.tasks.values()),
        tokens_in=tokens.input,
        tokens_cached=tokens.cached,
        tokens_out=tokens.output,
        cost_usd=None if cost is None else round(cost, 6),
        cost_source=state.cost_source,
        verdict=verdict(state),
        draft=is_draft_consult(state.plan),
    )


# ---------------------------------------------------------------- across runs


@dataclass(frozen=True, slots=True)
class Trend:
    """One number over the last finished runs, oldest first."""

    metric: str
    """``time_saved_s``, ``conflict_rate``, ``rework_rate`` or ``cost_usd``."""
    values: tuple[float, ...]
    """One per run that has the number (a run whose agents reported no cost has none)."""
    runs: tuple[str, ...]
    """The run of each value."""
    direction: str
    """``better``, ``worse`` or ``steady``: the recent runs against the ones before them;
    ``""`` when there are too few runs to say."""
    before: float | None = None
    """The mean of the runs the recent ones are compared with (see :func:`halves`)."""
    recent: float | None = None
    """The mean of the recent runs."""

    @property
    def last(self) -> float | None:
        """The newest value."""
        return self.values[-1] if self.values else None


@dataclass(frozen=True, slots=True)
class History:
    """A repository's runs added up, and how its numbers move."""

    runs: int
    finished: int
    """Counted runs that reached their end; the rates and trends count these only."""
    drafts: int
    """Drafting consult runs: listed, their cost added up, left out of everything else."""
    idle: int
    """Other runs in which no task ran (stopped or failed before): left out the same way."""
    wall_s: float
    """This and the other times: the counted runs (see :attr:`RunSummary.counted`)."""
    sequential_s: float
    time_saved_s: float
    operator_wait_s: float
    conflict_rate: float
    """Pooled: tasks that collided over tasks that ran, across the finished runs."""
    rework_rate: float
    """Pooled: extra attempts over tasks that ran, across the finished runs."""
    tokens_in: int
    tokens_cached: int
    tokens_out: int
    cost_usd: float | None
    """Every run's cost that is known (unfinished runs too: their money is spent)."""
    cost_source: str
    cost_unknown: int
    """Runs in which a task ran but whose agents reported no cost (nothing above)."""
    trends: tuple[Trend, ...] = field(default_factory=tuple)

    @property
    def left_out(self) -> int:
        """Runs listed but not counted: drafting consults, and runs where no task ran."""
        return self.drafts + self.idle

    def trend(self, metric: str) -> Trend:
        """The trend of one metric (KeyError if there is none of that name)."""
        for trend in self.trends:
            if trend.metric == metric:
                return trend
        raise KeyError(metric)

    def as_json(self) -> dict[str, Any]:
        """The totals and trends as ``stats --all --json`` prints them."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "trends"}
        data["tokens"] = {
            "input": data.pop("tokens_in"),
            "cached": data.pop("tokens_cached"),
            "output": data.pop("tokens_out"),
        }
        data["trends"] = {
            t.metric: {
                "values": list(t.values),
                "runs": list(t.runs),
                "direction": t.direction,
                "before": t.before,
                "recent": t.recent,
            }
            for t in self.trends
        }
        return data


#: The charted numbers, and whether a higher value is the better one.
TREND_METRICS: tuple[tuple[str, bool], ...] = (
    ("time_saved_s", True),
    ("conflict_rate", False),
    ("rework_rate", False),
    ("cost_usd", False),
)


def halves(values: tuple[float, ...]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The runs a trend compares: the ones before, and the last ``RECENT_RUNS`` (with fewer
    than twice that many values, the newest half against as many before it)."""
    recent = min(RECENT_RUNS, len(values) // 2)
    if not recent:
        return (), ()
    return values[-2 * recent : -recent], values[-recent:]


def _mean(values: tuple[float, ...]) -> float | None:
    return sum(values) / len(values) if values else None


def direction(values: tuple[float, ...], higher_is_better: bool, *, rate: bool) -> str:
    """``better`` or ``worse`` when the means of :func:`halves` differ by more than
    ``STEADY_RATE`` (a rate) or ``STEADY_SHARE`` of the larger mean (seconds, dollars),
    else ``steady``; ``""`` with fewer than two values."""
    before, now = halves(values)
    if not now:
        return ""
    old_mean, new_mean = sum(before) / len(before), sum(now) / len(now)
    change = new_mean - old_mean
    threshold = STEADY_RATE if rate else STEADY_SHARE * max(abs(old_mean), abs(new_mean))
    if abs(change) <= threshold:
        return "steady"
    return "better" if (change > 0) == higher_is_better else "worse"


def aggregate(summaries: list[RunSummary], last: int = TREND_RUNS) -> History:
    """Add runs up; the trends follow the newest ``last`` finished runs, oldest first.

    ``summaries`` may come in any order: runs are ordered by when they started.
    Drafting consults and runs where no task ran count in the tokens and cost only.
    """
    ordered = sorted(summaries, key=lambda s: (s.started, s.run_id))
    counted = [s for s in ordered if s.counted]
    done = [s for s in counted if s.finished]
    ran = sum(s.ran for s in done)
    costs = [s.cost_usd for s in ordered if s.cost_usd is not None]
    sources = {s.cost_source for s in ordered} - {""}
    recent = done[-last:] if last > 0 else []
    trends = []
    for metric, higher in TREND_METRICS:
        pairs = [(s.run_id, getattr(s, metric)) for s in recent if getattr(s, metric) is not None]
        values = tuple(float(v) for _, v in pairs)
        before, now = halves(values)
        trends.append(
            Trend(
                metric=metric,
                values=values,
                runs=tuple(r for r, _ in pairs),
                direction=direction(values, higher, rate=metric.endswith("_rate")),
                before=_mean(before),
                recent=_mean(now),
            )
        )
    return History(
        runs=len(ordered),
        finished=len(done),
        drafts=sum(s.draft for s in ordered),
        idle=sum(not s.draft and not s.ran for s in ordered),
        wall_s=round(sum(s.wall_s for s in counted), 3),
        sequential_s=round(sum(s.sequential_s for s in counted), 3),
        time_saved_s=round(sum(s.time_saved_s for s in counted), 3),
        operator_wait_s=round(sum(s.operator_wait_s for s in counted), 3),
        conflict_rate=round(sum(s.conflict_rate * s.ran for s in done) / ran, 4) if ran else 0.0,
        rework_rate=round(sum(s.rework_rate * s.ran for s in done) / ran, 4) if ran else 0.0,
        tokens_in=sum(s.tokens_in for s in ordered),
        tokens_cached=sum(s.tokens_cached for s in ordered),
        tokens_out=sum(s.tokens_out for s in ordered),
        cost_usd=round(sum(costs), 6) if costs else None,
        cost_source="estimated" if "estimated" in sources else "cli" if sources else "",
        cost_unknown=sum(s.cost_usd is None and s.ran > 0 for s in ordered),
        trends=tuple(trends),
    )


def token_usage(summary: RunSummary | History) -> TokenUsage:
    """The tokens of a run or of all runs, for ``metrics.tokens_text``."""
    return TokenUsage(
        input=summary.tokens_in, cached=summary.tokens_cached, output=summary.tokens_out
    )


# ---------------------------------------------------------------- reading logs (the edge)


def _from_json(data: object) -> RunSummary | None:
    """A cached summary read back (None unless every field is there with its type)."""
    if not isinstance(data, dict):
        return None
    values: dict[str, Any] = {}
    for f in fields(RunSummary):
        value = data.get(f.name)
        kind = str(f.type)
        if kind == "float | None":
            ok = value is None or (isinstance(value, int | float) and not isinstance(value, bool))
        elif kind == "float":
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        elif kind == "int":
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif kind == "bool":
            ok = isinstance(value, bool)
        else:
            ok = isinstance(value, str)
        if not ok:
            return None
        values[f.name] = value
    return RunSummary(**values)


def _cached(log: Path, marks: dict[str, object]) -> RunSummary | None:
    try:
        data = json.loads((runlog.index_dir(log) / SUMMARY_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    if data.get("version") != SUMMARY_VERSION or data.get("log") != marks:
        return None
    return _from_json(data.get("summary"))


def _save(log: Path, marks: dict[str, object], summary: RunSummary) -> None:
    folder = runlog.index_dir(log)
    tmp = folder / f".{SUMMARY_NAME}.{os.getpid()}.tmp"
    try:
        folder.mkdir(exist_ok=True)
        data = {"version": SUMMARY_VERSION, "log": marks, "summary": asdict(summary)}
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, folder / SUMMARY_NAME)
    except OSError:  # a cache: without it the next look folds the log again
        tmp.unlink(missing_ok=True)


def keep_summary(log: Path, state: RunState) -> None:
    """Keep the summary of a run that just ended, its log closed (the run service's last
    step, so ``stats --all`` never has to fold a run it saw end)."""
    try:
        marks = runlog.log_marks(log, log.stat().st_size)
    except OSError:
        return
    _save(log, marks, summarize(state))


def load_summary(log: Path) -> RunSummary:
    """The summary of one run log: kept beside its index if the log is unchanged, else
    folded (``final_state``) and kept. Raises ``runlog.LogError`` for a log that is not
    a run's (no ``RunStarted``) or cannot be read."""
    from delegate_tui.core.replay import final_state

    try:
        marks = runlog.log_marks(log, log.stat().st_size)
    except OSError as exc:
        raise runlog.LogError(f"{log}: cannot read: {exc.strerror or exc}") from None
    cached = _cached(log, marks)
    if cached is not None:
        return cached
    state, _report = final_state(log)
    if not state.run_id:
        raise runlog.LogError(f"{log}: not a delegate-tui run log (no RunStarted event)")
    summary = summarize(state)
    _save(log, marks, summary)
    return summary


def load_summaries(repo: Path) -> tuple[list[tuple[Path, RunSummary]], list[str]]:
    """Every run of ``repo``, newest first, with its log; and why any log was left out."""
    found: list[tuple[Path, RunSummary]] = []
    skipped: list[str] = []
    for log in runlog.list_run_logs(repo):
        try:
            found.append((log, load_summary(log)))
        except runlog.LogError as exc:
            skipped.append(str(exc))
    return found, skipped
