"""Task details, built from state for the details dialog to show."""

from __future__ import annotations

import shlex
import time

from rich.style import Style
from rich.text import Text

from delegate_tui.core import batching, sandbox
from delegate_tui.core.metrics import cost_text, ending, unpriced_models
from delegate_tui.core.prompts import failure_summary, render_prompt
from delegate_tui.core.state import RunState
from delegate_tui.ui.style import clock, task_elapsed

BOLD = Style(bold=True)
DIM = Style(dim=True)


def task_details(state: RunState, task_id: str, now: float | None = None) -> Text:
    """Everything about one task: spec, status, attempts, files, why it waits."""
    assert state.plan is not None
    spec = state.plan.task(task_id)
    task = state.tasks[task_id]
    text = Text()

    def row(label: str, value: str) -> None:
        text.append(f"{label:<12}", DIM)
        text.append(value + "\n")

    row("title", spec.label)
    row("status", task.status)
    if task.is_final or task.status == "awaiting-merge":
        row("ended", ending(task, spec.retries))  # the health report's words for it
    stale = [
        f for f in state.findings.values() if f.kind == "stale-input" and f.tasks[0] == task_id
    ]
    for f in stale:
        row("stale input", f"{f.tasks[1]} merged a change to {', '.join(f.paths)} after it read it")
    row("agent", state.plan.agent_of(spec) + (f" ({spec.model})" if spec.model else ""))
    if spec.persona:
        row("persona", spec.persona)
    row("kind", spec.kind)
    if spec.command is not None:  # a shell task runs this instead of an agent's prompt
        command = spec.command
        row("command", command if isinstance(command, str) else shlex.join(command))
    if spec.depends_on:
        row("depends on", ", ".join(f"{d} ({state.tasks[d].status})" for d in spec.depends_on))
    dependents = [t.id for t in state.plan.tasks if task_id in t.depends_on]
    if dependents:
        row("needed by", ", ".join(dependents))
    row(
        "edits",
        ", ".join(spec.edits)
        or ("(nothing: consult)" if spec.kind == "consult" else "(undeclared)"),
    )
    mode, network = sandbox.effective(state.plan, spec)
    if mode != "off":
        row("sandbox", f"{mode}, network {'on' if network else 'off'}")
    if spec.reads:
        row("reads", ", ".join(spec.reads))
    if spec.resources:
        row("resources", ", ".join(spec.resources))
    if spec.timeout:
        row("timeout", clock(spec.timeout))
    if spec.retries:
        row("retries", str(spec.retries))
    if spec.budget_usd is not None:
        row("budget", f"${spec.budget_usd:.2f} per attempt")
    spent = cost_text(task.cost_usd, task.cost_source, bool(unpriced_models([task])))
    if spent or task.tokens.input or task.tokens.output:
        t = task.tokens
        estimated = " (estimated)" if task.cost_source == "estimated" else ""
        row(
            "cost",
            f"{spent or 'unknown'}{estimated} · {t.input:,} in, {t.cached:,} cached, "
            f"{t.output:,} out",
        )
    if task.status == "pending":
        why = task.held_reason or batching.waiting_reason(state.plan, state, task_id)
        if why:
            row("waiting", why)
    if task.blocked_by:
        row("blocked by", task.blocked_by)
    if task.attempts:
        row("time", clock(task_elapsed(task, state.finished_ts or now or time.time())))
    for attempt in task.attempts:
        text.append(f"\nattempt {attempt.number}", BOLD)
        text.append(f"  {attempt.status}\n", DIM)
        if attempt.workdir:
            row("  worktree", attempt.workdir)
        if attempt.branch:
            row("  branch", attempt.branch)
        if attempt.node:
            row("  node", attempt.node)
        if attempt.pid:
            where = f", on {attempt.node}" if attempt.node else ""
            row("  pid", f"{attempt.pid} (group {attempt.pgid}, {attempt.transport}{where})")
        if attempt.session_id:
            model = f", {attempt.model}" if attempt.model else ""
            resumed = ", continued" if attempt.resume_session else ""
            row("  session", f"{attempt.session_id}{model}{resumed}")
        if attempt.usage:
            for u in attempt.usage:
                price = f" ${u.cost_usd:.4f}" if u.cost_usd is not None else ""
                row(
                    "  tokens",
                    f"{u.model or '?'}: {u.input:,} in, {u.cached:,} cached, {u.output:,} out"
                    + (f" ({u.reasoning:,} reasoning)" if u.reasoning else "")
                    + price,
                )
            row(
                "  work",
                f"{attempt.turns} turn(s), {attempt.tool_calls} tool call(s)"
                + (f", {attempt.tool_errors} failed" if attempt.tool_errors else "")
                + (f", {attempt.api_retries} API retr(ies)" if attempt.api_retries else ""),
            )
        for denial in attempt.denials:
            row("  refused", denial)
        for denial in attempt.guard_denials:
            row("  guarded", f"{denial} (outside its scope: refused before it happened)")
        if attempt.sandbox:
            row("  sandbox", attempt.sandbox)
            for path in attempt.sandbox_writable[:8]:
                row("  writable", path)
        if attempt.sandbox_denied:
            shown = ", ".join(p or "?" for p in attempt.sandbox_denied[:5])
            more = (
                f" and {len(attempt.sandbox_denied) - 5} more"
                if len(attempt.sandbox_denied) > 5
                else ""
            )
            row("  sandboxed", f"refused writes to {shown}{more}")
        if attempt.status not in ("running", "starting", "succeeded", "checking", "merging"):
            row(
                "  outcome",
                failure_summary(attempt)
                if attempt.status != "awaiting-merge"
                else "awaiting merge",
            )
        for result in attempt.criteria:
            mark = "✔" if result.passed else "✘"
            row("  criterion", f"{mark} {result.command} (exit {result.exit_code})")
        if attempt.changed:
            for changed in attempt.changed[:20]:
                row(
                    "  changed",
                    f"{changed.status} {changed.path} +{changed.added} -{changed.deleted}",
                )
        if attempt.conflict_paths:
            row("  conflicts", ", ".join(attempt.conflict_paths))
        if attempt.live_changes and not attempt.commit:
            row("  changing", ", ".join(f.path for f in attempt.live_changes[:10]))
    if task.status == "awaiting-merge":
        blocked = [
            f
            for f in state.findings.values()
            if f.kind == "predicted-conflict" and f.tasks == (task_id,)
        ]
        row(
            "merge",
            "would conflict in " + ", ".join(blocked[0].paths) if blocked else "merges cleanly (m)",
        )
    findings = [f for f in state.findings.values() if task_id in f.tasks]
    if findings:
        text.append("\ncollisions\n", BOLD)
        for f in findings:
            text.append(f"  {f.kind}: {' ✕ '.join(f.tasks)} on {', '.join(f.paths)}\n")
        if attempt.context:
            row("  context", attempt.context)
    criteria = [c for c in spec.criteria if not c.run]
    if criteria:
        text.append("\ncriteria\n", BOLD)
        for c in criteria:
            text.append(f"  • {c.text}\n")
    # The prompt as the agent got it (logged as sent), or as it would be sent now:
    # never the plan's raw text with its {{ outputs.x }} placeholders.
    sent = next((a for a in reversed(task.attempts) if a.prompt), None)
    if sent is not None:
        text.append(f"\nprompt (as sent to attempt {sent.number})\n", BOLD)
        text.append(sent.prompt.rstrip() + "\n")
    elif spec.prompt:
        text.append("\nprompt (as it would be sent now)\n", BOLD)
        text.append(render_prompt(state.plan, state, task_id).rstrip() + "\n")
    return text
