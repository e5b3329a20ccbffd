"""What the commands print about plans and past runs, as plain lines.

Owns the text of ``plan`` (from a :class:`~delegate_tui.core.forecast.Forecast`),
``stats``, ``runs`` and ``replay --headless``, and :func:`list_runs`, the one
list of a repository's runs that both ``runs`` and the runs picker
(``ui/screens/runs.py``) show. Functions here return strings and never echo, so
the commands decide where text goes; bold goes through ``click.style``, which
``click.echo`` drops when the output is not a terminal.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from delegate_tui.core import batching, graph, runlog
from delegate_tui.core.forecast import Forecast
from delegate_tui.core.metrics import cost_text
from delegate_tui.core.plan import Plan
from delegate_tui.core.replay import final_state
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
        lines.append(
            f"agents: {cost or 'cost unknown'}{budget}; tokens {t['input']:,} in, "
            f"{t['cached']:,} cached, {t['output']:,} out{estimated}"
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
    """One run of a repository, as ``runs`` and the runs picker list it."""

    log: Path
    run_id: str
    plan: str
    started: float
    duration_s: float
    status: str
    """The run's end status, ``live`` (its service runs it now), or ``unfinished`` (cut off)."""
    ok: int
    failed: int
    total: int
    views: int = 0
    """Views attached to a live run."""

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


def list_runs(repo: Path) -> list[RunRow]:
    """Every readable run of ``repo``, newest first (an unreadable log is left out)."""
    rows = []
    for path in runlog.list_run_logs(repo):
        try:
            state, _report = final_state(path)
        except runlog.LogError:
            continue
        tasks = state.tasks.values()
        live = None if state.finished else service_status(path.parent)
        rows.append(
            RunRow(
                log=path,
                run_id=state.run_id,
                plan=state.plan.name if state.plan else "?",
                started=state.started_ts,
                duration_s=state.elapsed_s,
                status=state.status if state.finished else "live" if live else "unfinished",
                ok=sum(t.status == "succeeded" for t in tasks),
                failed=sum(t.status in batching.FAILED_STATUSES for t in tasks),
                total=len(state.tasks),
                views=live["views"] if live else 0,
            )
        )
    return rows


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
