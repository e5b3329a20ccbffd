"""The report of a run that people share: one self-contained HTML file, or Markdown.

Owns what ``delegate-tui report`` writes. The HTML page needs no network and
runs no script: its styles are inline, the timeline is an SVG drawn here from
the same projection as the UI's timeline (:mod:`delegate_tui.core.timeline`),
and hovering a bar or a wait shows what it was through SVG ``<title>``
elements. It holds the run's summary (time saved, operator waits, conflict and
rework rates), the timeline, every task with its attempts, prompts, criteria
results and changed files, every conflict finding, the merges and the
operator's actions. The Markdown is for a pull request's description: the
summary, a table of tasks, the findings, and the timeline as a Mermaid Gantt
chart (which GitHub draws).

Everything from the log is escaped: prompts and reasons are the agents' and
the plan's text, not markup.

(About 530 lines: one report in two formats, HTML with its SVG timeline and
Markdown with its Gantt chart, made from the same sections.)
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable

from delegate_tui import __version__
from delegate_tui.core.events import TokenUsage
from delegate_tui.core.metrics import cost_text, stats, tokens_text
from delegate_tui.core.state import AttemptState, RunState, TaskState
from delegate_tui.core.timeline import (
    MARK_GLYPHS,
    OUTCOME_MEANINGS,
    WAIT_MEANINGS,
    Bar,
    Timeline,
    Wait,
    describe,
    project,
    span_text,
    tick_every,
)
from delegate_tui.report import duration, saved_text

#: Colours of outcomes and waits on the page (light background).
OUTCOME_COLOURS: dict[str, str] = {
    "running": "#0969da",
    "merged": "#1a7f37",
    "succeeded": "#2da44e",
    "awaiting-merge": "#9a6700",
    "failed": "#cf222e",
    "killed": "#57606a",
    "timed-out": "#bc4c00",
    "conflict": "#e16f24",
    "interrupted": "#8250df",
}
WAIT_COLOURS: dict[str, str] = {
    "dependency": "#d0d7de",
    "scheduling": "#e1e4e8",
    "slot": "#a5b1be",
    "scope": "#c5b3e6",
    "approval": "#f2c744",
    "operator": "#ff9aa2",
    "merge": "#f2c744",
    "paused": "#f2c744",
    "blocked": "#eaeef2",
}

_E = html.escape


# ---------------------------------------------------------------- the SVG timeline


def timeline_svg(timeline: Timeline, *, width: int = 1040) -> str:
    """The timeline as an SVG: a row per task, the batch row on top, agents at the foot."""
    label_w, row_h, top = 150, 24, 44
    chart_w = width - label_w - 16
    rows = timeline.rows
    agents_h = 56
    height = top + row_h * len(rows) + 16 + agents_h + 24
    span = max(timeline.duration, 1e-6)

    def x(ts: float) -> float:
        return round(label_w + (ts - timeline.start) / span * chart_w, 2)

    out = [
        f'<svg id="timeline" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'aria-label="Timeline of the run: one row per task" font-family="sans-serif" '
        f'font-size="12">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
    ]
    # Axis: a tick every so often, labelled as offsets into the run.
    every = tick_every(span / max(1, chart_w / 8), 6)
    t = 0.0
    while t <= span + 1e-9:
        tx = x(timeline.start + t)
        out.append(
            f'<line class="tick" x1="{tx}" y1="14" x2="{tx}" y2="{top + row_h * len(rows)}" '
            f'stroke="#eaeef2"/>'
            f'<text x="{tx}" y="11" text-anchor="middle" fill="#57606a">{span_text(t)}</text>'
        )
        t += every
    # Batches: proposals, approvals, holds, pauses.
    out.append(f'<text x="4" y="{top - 8}" fill="#57606a">batches</text>')
    for mark in timeline.marks:
        colour = "#8c959f" if mark.by == "policy" else "#9a6700"
        out.append(
            f'<text class="mark run-mark" data-kind="{_E(mark.kind)}" x="{x(mark.ts)}" '
            f'y="{top - 8}" text-anchor="middle" fill="{colour}">'
            f"<title>{_E(span_text(mark.ts - timeline.start))} {_E(mark.detail)}</title>"
            f"{MARK_GLYPHS.get(mark.kind, '•')}</text>"
        )
    for index, row in enumerate(rows):
        y = top + index * row_h
        out.append(f'<g class="row" data-task="{_E(row.task)}">')
        if index % 2:
            out.append(
                f'<rect x="0" y="{y}" width="{width}" height="{row_h}" fill="#f6f8fa" '
                f'fill-opacity="0.6"/>'
            )
        out.append(
            f'<text x="4" y="{y + 16}" fill="#1f2328">{_E(row.task[:22])}'
            f"<title>{_E(row.task)}: {_E(row.status)}</title></text>"
        )
        for wait in row.waits:
            colour = WAIT_COLOURS.get(wait.why, "#d0d7de")
            out.append(
                f'<rect class="wait" data-why="{_E(wait.why)}" x="{x(wait.start)}" y="{y + 9}" '
                f'width="{max(1.0, x(wait.end) - x(wait.start)):.2f}" height="6" rx="2" '
                f'fill="{colour}"><title>{_E(describe(wait, timeline.start))}</title></rect>'
            )
        for bar in row.bars:
            colour = OUTCOME_COLOURS.get(bar.outcome, "#8c959f")
            left, right = x(bar.start), max(x(bar.end), x(bar.start) + 2)
            tip = _E(describe(bar, timeline.start))
            out.append(
                f'<g class="bar" data-outcome="{_E(bar.outcome)}" data-attempt="{bar.attempt}">'
                f'<rect x="{left}" y="{y + 7}" width="{right - left:.2f}" height="10" rx="2" '
                f'fill="{colour}" fill-opacity="0.45"><title>{tip}</title></rect>'
            )
            if bar.agent_start:
                a0, a1 = x(bar.agent_start), max(x(bar.agent_end), x(bar.agent_start) + 2)
                out.append(
                    f'<rect x="{a0}" y="{y + 4}" width="{a1 - a0:.2f}" height="16" rx="2" '
                    f'fill="{colour}"><title>{tip}</title></rect>'
                )
            out.append("</g>")
        for mark in row.marks:
            if mark.kind == "approved" and mark.by == "policy":
                continue
            colour = "#cf222e" if mark.kind in ("kill", "finding") else "#9a6700"
            out.append(
                f'<text class="mark" data-kind="{_E(mark.kind)}" x="{x(mark.ts)}" y="{y + 3}" '
                f'text-anchor="middle" font-size="11" font-weight="bold" fill="{colour}">'
                f"<title>{_E(span_text(mark.ts - timeline.start))} {_E(mark.detail)}</title>"
                f"{MARK_GLYPHS.get(mark.kind, '•')}</text>"
            )
        out.append("</g>")
    # Agents at each moment, as a step chart.
    base = top + row_h * len(rows) + 16 + agents_h
    scale = agents_h / max(1, timeline.peak, timeline.max_parallel)
    points = [f"{x(timeline.start)},{base}"]
    level = 0
    for ts, n in timeline.concurrency:
        points.append(f"{x(ts)},{base - level * scale:.2f}")
        points.append(f"{x(ts)},{base - n * scale:.2f}")
        level = n
    points.append(f"{x(timeline.end)},{base - level * scale:.2f}")
    points.append(f"{x(timeline.end)},{base}")
    out.append(
        f'<text x="4" y="{base - agents_h / 2 + 4}" fill="#57606a">agents (peak '
        f"{timeline.peak})</text>"
        f'<polygon id="agents" points="{" ".join(points)}" fill="#0969da" fill-opacity="0.35" '
        f'stroke="#0969da"><title>agents at work at each moment (peak {timeline.peak})</title>'
        f"</polygon>"
        f'<line x1="{label_w}" y1="{base}" x2="{label_w + chart_w}" y2="{base}" stroke="#8c959f"/>'
    )
    out.append("</svg>")
    return "".join(out)


# ---------------------------------------------------------------- HTML

_CSS = """
body{font:14px/1.45 -apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#1f2328;
margin:24px auto;max-width:1080px;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #d0d7de}
h3{font-size:15px;margin:18px 0 4px}.muted{color:#57606a}
table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #d0d7de;padding:3px 8px;
text-align:left;vertical-align:top}th{background:#f6f8fa}
.summary td:first-child{font-weight:600}
pre{background:#f6f8fa;padding:8px;overflow:auto;white-space:pre-wrap;max-height:320px}
.pass{color:#1a7f37}.fail{color:#cf222e}.status{font-weight:600}
.legend span{display:inline-block;margin:2px 10px 2px 0}
.swatch{display:inline-block;width:12px;height:12px;border-radius:2px;vertical-align:-1px;
margin-right:4px}
.scroll{overflow-x:auto}
"""


def _summary_rows(state: RunState, data: dict[str, object]) -> list[tuple[str, str]]:
    m = data["metrics"]
    assert isinstance(m, dict)
    started = time.strftime("%Y-%m-%d %H:%M", time.localtime(state.started_ts))
    total = len(state.tasks)
    done = sum(t.status == "succeeded" for t in state.tasks.values())
    return [
        ("Outcome", f"{state.status}: {data['verdict']}"),
        ("Started", f"{started} (wall time {duration(m['wall_s'])})"),
        (
            "Time saved",
            f"{saved_text(m['time_saved_s'], m['operator_wait_s'], m['downtime_s'])}; "
            f"agents' time one after another {duration(m['sequential_s'])}",
        ),
        ("Operator waits", f"{duration(m['operator_wait_s'])} with no agent at work"),
        ("Conflict rate", f"{m['conflict_rate']:.0%} of the tasks that ran collided"),
        ("Rework rate", f"{m['rework_rate']:.0%} extra attempts per task that ran"),
        ("Tasks", f"{done} of {total} succeeded"),
        ("Tokens and cost", _spend(state.tokens, state.cost_usd, state.cost_source, run=True)),
        ("Repository", f"{state.repo} (integration branch {state.integration_branch or '-'})"),
    ]


def _spend(tokens: TokenUsage, cost: float | None, source: str, *, run: bool = False) -> str:
    """``12.3k tok (in 10.0k, cached 2.0k, out 300), $0.42``, or what is not known."""
    words = tokens_text(tokens)
    if words:
        words += f" (in {tokens.input:,}, cached {tokens.cached:,}, out {tokens.output:,})"
    money = cost_text(cost, source)
    if money:
        money += " (estimated from list prices)" if source == "estimated" else ""
    known = ", ".join(p for p in (words, money) if p)
    if known:
        return known
    return "not reported by this run's agents" if run else "-"


def _attempt_row(attempt: AttemptState, start: float) -> str:
    begin = attempt.prepared_ts or attempt.started_ts
    when = span_text(begin - start) if begin else "-"
    end = attempt.finished_ts or attempt.ended_ts
    took = span_text(end - begin) if begin and end else "-"
    exit_text = (
        "-"
        if attempt.exit_code is None and attempt.signal is None
        else f"signal {attempt.signal}"
        if attempt.signal
        else str(attempt.exit_code)
    )
    return (
        f"<tr><td>{attempt.number}</td><td>{when}</td><td>{took}</td>"
        f'<td class="status">{_E(attempt.status)}</td><td>{exit_text}</td>'
        f"<td>{_E(_spend(attempt.tokens, attempt.cost_usd, attempt.cost_source))}</td>"
        f"<td>{_E(attempt.reason)}</td></tr>"
    )


def _task_section(state: RunState, task: TaskState) -> str:
    plan = state.plan
    spec = plan.task(task.id) if plan is not None and task.id in plan.deps else None
    parts = [f'<section class="task" id="task-{_E(task.id)}">']
    parts.append(f'<h3>{_E(task.id)} <span class="muted">{_E(task.status)}</span></h3>')
    facts = []
    if spec is not None:
        facts.append(f"agent {_E(plan.agent_of(spec))}" if plan else "")
        if spec.depends_on:
            facts.append("needs " + _E(", ".join(spec.depends_on)))
        if spec.edits:
            facts.append("edits " + _E(", ".join(spec.edits)))
    if task.blocked_by:
        facts.append(f"blocked by {_E(task.blocked_by)}")
    if task.skip_reason:
        facts.append(f"skipped: {_E(task.skip_reason)}")
    if task.held_reason and task.status in ("pending", "blocked"):
        facts.append(f"held: {_E(task.held_reason)}")
    if facts:
        parts.append(f'<p class="muted">{"; ".join(f for f in facts if f)}</p>')
    if task.attempts:
        parts.append(
            '<table class="attempts"><tr><th>attempt</th><th>at</th><th>took</th>'
            "<th>outcome</th><th>exit</th><th>tokens, cost</th><th>why</th></tr>"
        )
        parts.extend(_attempt_row(a, state.started_ts) for a in task.attempts)
        parts.append("</table>")
    for attempt in task.attempts:
        if attempt.prompt:
            parts.append(
                f"<details><summary>Prompt of attempt {attempt.number}</summary>"
                f'<pre class="prompt">{_E(attempt.prompt)}</pre></details>'
            )
        if attempt.criteria:
            parts.append(
                f'<table class="criteria"><tr><th>check (attempt {attempt.number})</th>'
                "<th>result</th></tr>"
            )
            for c in attempt.criteria:
                verdict = (
                    '<span class="pass">passed</span>'
                    if c.passed
                    else f'<span class="fail">failed (exit {c.exit_code})</span>'
                )
                parts.append(
                    f"<tr><td><code>{_E(c.command or c.text)}</code></td><td>{verdict}</td></tr>"
                )
            parts.append("</table>")
    changed = task.changed
    if changed:
        parts.append(
            '<table class="files"><tr><th>changed file</th><th></th><th>+</th><th>−</th></tr>'
        )
        for f in changed:
            name = f"{f.old_path} → {f.path}" if f.old_path else f.path
            parts.append(
                f"<tr><td><code>{_E(name)}</code></td><td>{_E(f.status)}</td>"
                f"<td>{'bin' if f.binary else f.added}</td><td>{'' if f.binary else f.deleted}</td></tr>"
            )
        parts.append("</table>")
    elif task.attempts:
        parts.append('<p class="muted">no files changed</p>')
    parts.append("</section>")
    return "".join(parts)


def _legend() -> str:
    items = [
        f'<span><i class="swatch" style="background:{OUTCOME_COLOURS[k]}"></i>{_E(v)}</span>'
        for k, v in OUTCOME_MEANINGS.items()
    ]
    items += [
        f'<span><i class="swatch" style="background:{WAIT_COLOURS[k]}"></i>waited {_E(v)}</span>'
        for k, v in WAIT_MEANINGS.items()
    ]
    marks = "  ".join(
        f"{MARK_GLYPHS[k]} {k}" for k in ("approved", "kill", "retry", "skip", "input", "finding")
    )
    items.append(f"<span>marks: {_E(marks)}</span>")
    return f'<p class="legend">{"".join(items)}</p>'


def _merges(state: RunState) -> Iterable[tuple[float, str, int, str]]:
    merged = [
        (a.merged_ts, t.id, a.number, a.merged_commit)
        for t in state.tasks.values()
        for a in t.attempts
        if a.merged_commit
    ]
    return sorted(merged)


def render_html(state: RunState, *, now: float | None = None) -> str:
    """The whole report as one HTML page."""
    data = stats(state)
    timeline = project(state, now)
    name = state.plan.name if state.plan else "run"
    title = f"{name}: run {state.run_id}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_E(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_E(name)}</h1>",
        f'<p class="muted">run {_E(state.run_id)} · {_E(state.isolation)} · up to '
        f"{state.max_parallel} at once · plan {_E(state.plan_path)}</p>",
        '<h2 id="summary">Summary</h2><table class="summary">',
    ]
    parts += [f"<tr><td>{_E(k)}</td><td>{_E(v)}</td></tr>" for k, v in _summary_rows(state, data)]
    parts.append("</table>")
    parts.append('<h2 id="timeline-heading">Timeline</h2>')
    parts.append(f'<div class="scroll">{timeline_svg(timeline)}</div>')
    parts.append(_legend())
    parts.append('<h2 id="tasks">Tasks</h2>')
    parts += [_task_section(state, task) for task in state.tasks.values()]
    parts.append('<h2 id="conflicts">Conflicts</h2>')
    conflicts = data["conflicts"]
    assert isinstance(conflicts, list)
    if conflicts:
        parts.append(
            '<table class="findings"><tr><th>kind</th><th>tasks</th><th>files</th>'
            "<th>detail</th><th>now</th></tr>"
        )
        for c in conflicts:
            state_text = "open" if c.get("open") else "resolved"
            if c["kind"] == "merge-conflict":
                state_text = f"attempt {c['attempt']} not merged"
            parts.append(
                f'<tr class="finding"><td>{_E(str(c["kind"]))}</td><td>{_E(", ".join(c["tasks"]))}</td>'
                f"<td>{_E(', '.join(c['files']))}</td><td>{_E(str(c.get('detail', '')))}</td>"
                f"<td>{state_text}</td></tr>"
            )
        parts.append("</table>")
    else:
        parts.append("<p>No collisions were found.</p>")
    parts.append('<h2 id="merges">Merges</h2>')
    merges = list(_merges(state))
    if merges:
        parts.append(
            '<table class="merges"><tr><th>at</th><th>task</th><th>attempt</th><th>commit</th></tr>'
        )
        for ts, task_id, number, commit in merges:
            parts.append(
                f'<tr class="merge"><td>{span_text(ts - state.started_ts)}</td><td>{_E(task_id)}</td>'
                f"<td>{number}</td><td><code>{_E(commit[:12])}</code></td></tr>"
            )
        parts.append("</table>")
    else:
        parts.append("<p>Nothing was merged.</p>")
    if state.final_merge is not None:
        fm = state.final_merge
        result = f"into {fm.branch} at {fm.commit[:12]}" if fm.ok else f"refused: {fm.detail}"
        parts.append(f"<p>Final merge {_E(result)}.</p>")
    else:
        parts.append(
            f'<p class="muted">The work stays on {_E(state.integration_branch or "its branches")}: '
            "no final merge into the operator's branch.</p>"
        )
    parts.append('<h2 id="actions">Approvals and operator actions</h2>')
    actions = [m for m in state.marks if m.by != "policy"]
    if actions:
        parts.append(
            '<table class="actions"><tr><th>at</th><th>what</th><th>tasks</th><th>detail</th></tr>'
        )
        for m in actions:
            batch = f"batch {m.batch}" if m.batch else ""
            parts.append(
                f'<tr class="action"><td>{span_text(m.ts - state.started_ts)}</td><td>{_E(m.kind)}</td>'
                f"<td>{_E(', '.join(m.tasks))}</td><td>{_E(' '.join(p for p in (batch, m.detail) if p))}</td></tr>"
            )
        parts.append("</table>")
    else:
        parts.append("<p>None: every batch was approved by the policy.</p>")
    parts.append(
        f'<p class="muted">Written by delegate-tui {__version__} from the run log '
        f"({state.events} events). This page runs no script and loads nothing.</p>"
    )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------- Markdown


def _md(text: str) -> str:
    """Text safe in a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ").replace("<", "&lt;")


def _gantt(timeline: Timeline) -> list[str]:
    """The timeline as a Mermaid Gantt chart, its bars in Unix milliseconds (``dateFormat
    x``): each attempt where it was to the millisecond, at least 1 ms long, and never
    before the end of the task's attempt before it (whole seconds drew 704-706 then 705-707)."""
    lines = ["```mermaid", "gantt", "  dateFormat x", "  axisFormat %H:%M:%S"]
    for row in timeline.rows:
        if not row.bars:
            continue
        lines.append(f"  section {row.task}")
        after = 0
        for bar in sorted(row.bars, key=lambda b: (b.start, b.attempt)):
            tag = {
                "merged": "done, ",
                "succeeded": "done, ",
                "running": "active, ",
                "failed": "crit, ",
                "conflict": "crit, ",
                "timed-out": "crit, ",
            }.get(bar.outcome, "")
            start = max(round(bar.start * 1000), after)
            end = max(round(bar.end * 1000), start + 1)
            after = end
            lines.append(f"  attempt {bar.attempt} {bar.outcome} :{tag}{start}, {end}")
    lines.append("```")
    return lines


def render_markdown(state: RunState, *, now: float | None = None) -> str:
    """The report as Markdown, for a pull request's description."""
    data = stats(state)
    timeline = project(state, now)
    name = state.plan.name if state.plan else "run"
    lines = [f"## {_md(name)}: run `{state.run_id}` ({state.status})", ""]
    lines += ["| | |", "|---|---|"]
    lines += [f"| {_md(k)} | {_md(v)} |" for k, v in _summary_rows(state, data)]
    lines += ["", "### Timeline", ""]
    lines += _gantt(timeline)
    lines += ["", "### Tasks", "", "| task | status | attempts | took | files | spent | why |"]
    lines.append("|---|---|---|---|---|---|---|")
    for task in state.tasks.values():
        attempt = task.attempt
        why = (attempt.reason if attempt else "") or task.held_reason or task.skip_reason
        if task.status == "succeeded":
            why = ""
        waits = sum(w.end - w.start for w in (timeline.row(task.id) or _EMPTY).waits)
        took = duration(task.duration_s) + (f" (waited {duration(waits)})" if waits >= 1 else "")
        lines.append(
            f"| {_md(task.id)} | {task.status} | {len(task.attempts)} | {took} | "
            f"{len(task.changed)} | {_md(_spend(task.tokens, task.cost_usd, task.cost_source))} "
            f"| {_md(why)} |"
        )
    conflicts = data["conflicts"]
    assert isinstance(conflicts, list)
    lines += ["", "### Conflicts", ""]
    if conflicts:
        for c in conflicts:
            lines.append(
                f"- **{_md(str(c['kind']))}** {_md(', '.join(c['tasks']))}: "
                f"{_md(', '.join(c['files']))}"
                + (f" ({_md(str(c['detail']))})" if c.get("detail") else "")
            )
    else:
        lines.append("No collisions were found.")
    merges = list(_merges(state))
    lines += ["", "### Merges", ""]
    lines += [
        f"- {span_text(ts - state.started_ts)} `{_md(t)}` attempt {n} → `{c[:12]}`"
        for ts, t, n, c in merges
    ] or ["Nothing was merged."]
    lines += [
        "",
        f"<sub>delegate-tui {__version__} · `delegate-tui report {state.run_id}`</sub>",
        "",
    ]
    return "\n".join(lines)


class _Empty:
    waits: tuple[Wait, ...] = ()
    bars: tuple[Bar, ...] = ()


_EMPTY = _Empty()
