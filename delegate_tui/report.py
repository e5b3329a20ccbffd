"""What the commands print about plans and past runs, as plain lines.

Owns the text of ``plan`` (from a :class:`~delegate_tui.core.forecast.Forecast`),
``stats``, ``stats --all``, ``runs`` and ``replay --headless``, and
:func:`list_runs`, the one list of a repository's runs that ``runs``, ``stats
--all`` and the runs screen (``ui/screens/runs.py``) show, with the columns and
trend words they share. Functions here return strings and never echo, so
the commands decide where text goes; bold goes through ``click.style``, which
``click.echo`` drops when the output is not a terminal.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from delegate_tui.core import graph, history
from delegate_tui.core.forecast import Forecast
from delegate_tui.core.history import History, RunSummary, Trend
from delegate_tui.core.metrics import cost_text, tokens_text
from delegate_tui.core.plan import Plan
from delegate_tui.core.service import service_status
from delegate_tui.core.state import RunState

if TYPE_CHECKING:
    from delegate_tui.core.replay import ReplaySource


def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h10m``: a duration as people read it."""
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def _bold(text: str) -> str:
    return click.style(text, bold=True)


# ---------------------------------------------------------------- plan


def plan_lines(plan: Plan, outlook: Forecast) -> list[str]:
    """``delegate-tui plan``: layers, the first batch and why others wait, the forecast."""
    lines = [
        _bold(plan.name) + (f": {plan.description}" if plan.description else ""),
        f"{len(plan.tasks)} tasks, isolation {outlook.isolation}, "
        f"up to {outlook.max_parallel} at once\n",
        _bold("Layers"),
    ]
    for index, layer in enumerate(graph.layers(plan.deps)):
        entries = []
        for task_id in layer:
            task = plan.task(task_id)
            deps = f" ← {', '.join(task.depends_on)}" if task.depends_on else ""
            entries.append(f"{task_id} [{plan.agent_of(task)}]{deps}")
        lines.append(f"  {index}: " + "; ".join(entries))
    lines.append("\n" + _bold("First batch"))
    first = outlook.first
    if first is not None:
        lines.append("  " + ", ".join(first.tasks))
        lines.extend(f"  note: {note.task}: {note.reason}" for note in first.notes)
        lines.extend(f"  held: {held.task}: {held.reason}" for held in first.held)
    lines.append("\n" + _bold("Expected batches") + " (if every task succeeds)")
    for index, batch in enumerate(outlook.batches, 1):
        when = f"at {duration(batch.start)}" if outlook.estimated else f"step {batch.start:.0f}"
        lines.append(f"  {index}. {when:>10}: {', '.join(batch.tasks)}")
    if not outlook.estimated:
        return lines
    lines.append("\n" + _bold("Estimate"))
    lines.append(f"  sequential: {duration(outlook.sequential)}")
    if outlook.parallel:
        lines.append(
            f"  parallel:   {duration(outlook.parallel)} "
            f"(about {outlook.sequential / outlook.parallel:.1f}x faster)"
        )
    lines.append(
        f"  critical path: {' -> '.join(outlook.critical_path)} ({duration(outlook.critical)})"
    )
    if outlook.unestimated:
        lines.append(f"  no estimate (counted as 0): {', '.join(outlook.unestimated)}")
    return lines


# ---------------------------------------------------------------- stats


def saved_text(saved_s: float, operator_wait_s: float = 0.0, downtime_s: float = 0.0) -> str:
    """``time saved 1m12s (operator waits 3m05s not counted)``, or the loss when negative."""
    text = (
        f"time saved {duration(max(0.0, saved_s))}"
        if saved_s > -0.5
        else f"{duration(-saved_s)} slower than sequential"
    )
    left_out = [
        f"{what} {duration(seconds)}"
        for what, seconds in (("operator waits", operator_wait_s), ("downtime", downtime_s))
        if seconds >= 1
    ]
    return text + (f" ({' and '.join(left_out)} not counted)" if left_out else "")


def stats_lines(state: RunState, data: dict[str, Any]) -> list[str]:
    """``delegate-tui stats``: the run, its metrics, a line per task and per conflict.

    ``data`` is :func:`delegate_tui.core.metrics.stats` of ``state`` (what ``--json`` prints).
    """
    m = data["metrics"]
    lines = [
        f"{_bold(state.run_id)}  {data['plan']}  [{state.status}]",
        f"wall {duration(m['wall_s'])}, sequential {duration(m['sequential_s'])}, "
        f"{saved_text(m['time_saved_s'], m['operator_wait_s'], m['downtime_s'])}, "
        f"conflict rate {m['conflict_rate']:.0%}, rework rate {m['rework_rate']:.0%}",
        data["verdict"],
    ]
    cost = cost_text(data["cost_usd"], data["cost_source"])
    if cost or any(data["tokens"].values()):
        t = data["tokens"]
        budget = f" of a ${data['budget_usd']:.2f} budget" if data.get("budget_usd") else ""
        estimated = " (~ estimated from list prices)" if data["cost_source"] == "estimated" else ""
        unpriced = data.get("unpriced_models") or []
        if unpriced and cost:
            cost += " and more"
        lines.append(
            f"agents: {cost or 'cost unknown'}{budget}; tokens {t['input']:,} in, "
            f"{t['cached']:,} cached, {t['output']:,} out{estimated}"
            + (f"; no price for {', '.join(unpriced)}" if unpriced else "")
        )
    for task_id, info in data["tasks"].items():
        files = len(info["changed_files"])
        # How it ended, in words (what --json calls ending_text); a task not run yet
        # says why it waits.
        extra = f"  {info['ending_text']}" if info["ending"] != "not-run" else ""
        if info["ending"] == "not-run" and info["reason"]:
            extra = f"  {info['reason']}"
        spent = cost_text(info["cost_usd"], info["cost_source"])
        lines.append(
            f"  {task_id:<24} {info['status']:<15} {info['attempts']} attempt(s) "
            f"{duration(info['duration_s']):>6}  {files} file(s)"
            + (f"  {spent}" if spent else "")
            + extra
        )
        refused = info.get("sandbox_denied") or []
        if refused:
            shown = ", ".join(p or "?" for p in refused[:5])
            more = f" and {len(refused) - 5} more" if len(refused) > 5 else ""
            lines.append(f"    sandbox ({info['sandbox']}) refused writes to {shown}{more}")
    for conflict in data["conflicts"]:
        lines.append(
            f"  conflict: {conflict['kind']} {', '.join(conflict['tasks'])}: "
            f"{', '.join(conflict['files'])}"
        )
    return lines


# ---------------------------------------------------------------- runs


@dataclass(frozen=True, slots=True)
class RunRow:
    """One run of a repository, as ``runs``, ``stats --all`` and the runs picker list it."""

    log: Path
    summary: RunSummary
    status: str
    """The run's end status, ``live`` (its service runs it now), or ``unfinished`` (cut off)."""
    views: int = 0
    """Views attached to a live run."""

    @property
    def run_id(self) -> str:
        return self.summary.run_id

    @property
    def plan(self) -> str:
        return self.summary.plan or "?"

    @property
    def started(self) -> float:
        return self.summary.started

    @property
    def duration_s(self) -> float:
        return self.summary.wall_s

    @property
    def ok(self) -> int:
        return self.summary.succeeded

    @property
    def failed(self) -> int:
        return self.summary.failed

    @property
    def total(self) -> int:
        return self.summary.tasks

    def as_json(self) -> dict[str, object]:
        """The row of ``runs --json``."""
        return {
            "run_id": self.run_id,
            "plan": self.plan,
            "started": self.started,
            "duration_s": round(self.duration_s, 1),
            "status": self.status,
            "ok": self.ok,
            "failed": self.failed,
            "tasks": self.total,
            "live": self.status == "live",
            "views": self.views,
            # a consult of `delegate-tui draft`: listed, not counted in the trend
            "draft": self.summary.draft,
            "log": str(self.log),
        }

    def line(self) -> str:
        """The row of ``runs``."""
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.started))
        status = (
            f"live ({self.views} view{'s' if self.views != 1 else ''})"
            if (self.status == "live")
            else self.status
        )
        return (
            f"{self.run_id}  {started}  {duration(round(self.duration_s, 1)):>6}  "
            f"{status:<10} {self.ok}/{self.total} ok, {self.failed} failed  {self.plan}"
        )


def list_runs(repo: Path) -> tuple[list[RunRow], list[str]]:
    """Every readable run of ``repo``, newest first, and why any log was left out.

    Each run's numbers come from :func:`delegate_tui.core.history.load_summaries`
    (kept beside the log's index, folded again only when the log changed).
    """
    found, skipped = history.load_summaries(repo)
    rows = []
    for path, summary in found:
        live = None if summary.finished else service_status(path.parent)
        rows.append(
            RunRow(
                log=path,
                summary=summary,
                status=summary.status if summary.finished else "live" if live else "unfinished",
                views=live["views"] if live else 0,
            )
        )
    return rows, skipped


# ---------------------------------------------------------------- across runs

SPARKS = "▁▂▃▄▅▆▇█"
#: How each trend is labelled and its values written.
TREND_LABELS = {
    "time_saved_s": "time saved",
    "conflict_rate": "conflict rate",
    "rework_rate": "rework rate",
    "cost_usd": "cost",
}


def spark(values: Sequence[float]) -> str:
    """``▁▃▅█``: one bar per value, from the lowest to the highest (all alike: mid bars)."""
    if not values:
        return ""
    low, high = min(values), max(values)
    if high - low < 1e-9:
        return SPARKS[3] * len(values)
    top = len(SPARKS) - 1
    return "".join(SPARKS[round((v - low) / (high - low) * top)] for v in values)


def metric_text(metric: str, value: float | None, cost_source: str = "") -> str:
    """A value of a trend as people read it: ``1m12s``, ``25%``, ``$0.42``; ``-`` unknown."""
    if value is None:
        return "-"
    if metric == "time_saved_s":  # a loss under half a second reads as nothing saved
        return duration(max(0.0, value)) if value > -0.5 else f"-{duration(-value)}"
    if metric.endswith("_rate"):
        return f"{value:.0%}"
    return cost_text(value, cost_source)


def run_cells(row: RunRow) -> list[str]:
    """A run's columns in ``stats --all`` and the runs screen: when, status, the numbers."""
    s = row.summary
    counted = s.counted  # a drafting consult, or a run where no task ran: "-", not 0
    return [
        time.strftime("%Y-%m-%d %H:%M", time.localtime(s.started)) if s.started else "?",
        row.status,
        f"{s.succeeded}/{s.tasks}",
        metric_text("time_saved_s", s.time_saved_s if counted else None),
        metric_text("conflict_rate", s.conflict_rate if counted else None),
        metric_text("rework_rate", s.rework_rate if counted else None),
        metric_text("cost_usd", s.cost_usd, s.cost_source),
    ]


def left_out_text(past: History) -> str:
    """Which runs are listed but not in the time saved, the rates and the trend (``""``:
    none): drafting consults and runs where no task ran."""
    parts = [f"{past.drafts} drafting consult run(s)"] if past.drafts else []
    if past.idle:
        parts.append(f"{past.idle} run(s) where no task ran")
    if not parts:
        return ""
    return (
        " and ".join(parts) + " listed (- for their numbers) but left out of the time "
        "saved, the rates and the trend"
    )


RUN_HEADINGS = ["STARTED", "STATUS", "OK", "SAVED", "CONFLICT", "REWORK", "COST"]


def trend_caption(past: History, *, short: bool = False) -> str:
    """What the trend chart covers: ``last 12 finished runs, oldest first; ...``."""
    shown = max((len(t.values) for t in past.trends), default=0)
    if shown < 2:
        return "the trend shows from the second finished run"
    caption = f"last {shown} finished runs, oldest first"
    if short:
        return caption
    recent = min(history.RECENT_RUNS, shown // 2)
    newest = (
        "the newest run against the one"
        if recent == 1
        else f"the newest {recent} against the {recent}"
    )
    return f"{caption}; {newest} before"


def trend_note(finished: int) -> str:
    """What a trend with no values says: no run counts yet, or none reported the number."""
    if not finished:
        return "no finished run where tasks ran yet"
    return "not reported by any finished run"


def compare_text(trend: Trend, cost_source: str = "") -> str:
    """``mean 43s -> 45s``: the runs before against the recent ones (``""`` when too few)."""
    if trend.before is None or trend.recent is None:
        return ""
    before = metric_text(trend.metric, trend.before, cost_source)
    recent = metric_text(trend.metric, trend.recent, cost_source)
    return f"mean {before} → {recent}"


def trend_lines(past: History) -> list[str]:
    """The trend chart of ``stats --all``: a sparkline per number, its newest value, where
    it is going."""
    lines = [_bold("Trend") + f" ({trend_caption(past)})"]
    for trend in past.trends:
        label = TREND_LABELS[trend.metric]
        if not trend.values:
            lines.append(f"  {label:<14} ({trend_note(past.finished)})")
            continue
        compare = compare_text(trend, past.cost_source)
        lines.append(
            f"  {label:<14} {spark(trend.values):<{history.TREND_RUNS}}  "
            f"newest {metric_text(trend.metric, trend.last, past.cost_source):>7}  "
            f"{trend.direction or '-':<6}" + (f"  ({compare})" if compare else "")
        )
    return lines


def history_lines(repo: Path, rows: list[RunRow], past: History) -> list[str]:
    """``delegate-tui stats --all``: a line per run, the totals, the trend chart."""
    lines = [
        _bold(f"Runs of {repo}") + f": {past.runs} run(s), {past.finished} finished, newest first",
        f"  {'RUN':<20}  {RUN_HEADINGS[0]:<16}  {RUN_HEADINGS[1]:<10}  {RUN_HEADINGS[2]:>5}  "
        f"{RUN_HEADINGS[3]:>7}  {RUN_HEADINGS[4]:>8}  {RUN_HEADINGS[5]:>6}  {RUN_HEADINGS[6]:>8}"
        "  PLAN",
    ]
    for row in rows:
        when, status, ok, saved, conflict, rework, cost = run_cells(row)
        lines.append(
            f"  {row.run_id:<20}  {when:<16}  {status:<10}  {ok:>5}  {saved:>7}  "
            f"{conflict:>8}  {rework:>6}  {cost:>8}  {row.plan}"
        )
    lines.append("")
    lines.append(_bold("In all") + f" ({past.finished} finished run(s) in the rates)")
    lines.append(
        f"  {saved_text(past.time_saved_s, past.operator_wait_s)} over "
        f"{duration(past.wall_s)} of runs; conflict rate {past.conflict_rate:.0%}, "
        f"rework rate {past.rework_rate:.0%}"
    )
    cost = cost_text(past.cost_usd, past.cost_source)
    tokens = tokens_text(history.token_usage(past))
    unknown = f" ({past.cost_unknown} run(s) reported no cost)" if past.cost_unknown else ""
    lines.append(
        f"  agents: {cost or 'cost unknown'}{unknown}"
        + (f"; {tokens.replace(' tok', ' tokens')}" if tokens else "")
    )
    left_out = left_out_text(past)
    if left_out:
        lines.append(f"  {left_out}; their tokens and cost are counted above")
    lines.append("")
    lines.extend(trend_lines(past))
    return lines


# ---------------------------------------------------------------- replay


def describe_moment(source: ReplaySource) -> str:
    """The state of a replayed run at its position, as text (no control sequences)."""
    from delegate_tui.core.attention import last_line

    state = source.state
    position = source.position
    lines = [
        f"{state.run_id}  {state.plan.name if state.plan else ''}  "
        f"at {duration(position.seconds)} of {duration(position.duration)} "
        f"(event {position.index}/{position.total})  [{state.status}]"
    ]
    for task in state.tasks.values():
        attempt = task.attempt
        extra = f"  attempt {attempt.number}" if attempt and attempt.number > 1 else ""
        lines.append(f"  {task.id:<24} {task.status:<15}{extra}")
        if attempt is not None and task.status in ("starting", "running", "checking", "merging"):
            last = last_line(attempt)
            if last:
                lines.append(f"      │ {last[:160]}")
    if state.findings:
        lines.append("open conflicts:")
        for finding in state.findings.values():
            lines.append(
                f"  {finding.kind}: {' ✕ '.join(finding.tasks)} on {', '.join(finding.paths)}"
            )
    return "\n".join(lines)
