"""Headless mode: one readable line per significant event, for CI and pipes.

Owns the text projection of a run. It listens to the same events the UI
does and never decides anything; in a terminal without ``--yes`` it asks
the operator to approve each batch on stdin. Colours only on a terminal
and never under ``NO_COLOR``. Agent output is not echoed unless asked
(``--stream``), but a failed attempt's last lines always are, since that
is what someone reading a CI log needs.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from typing import IO, Any

import click

from delegate_tui.core import metrics, prompts
from delegate_tui.core.engine import Engine
from delegate_tui.core.events import (
    BatchApproved,
    BatchHeld,
    BatchProposed,
    ConflictDetected,
    ConflictResolved,
    CriteriaChecked,
    Event,
    FinalMerge,
    InputSent,
    KillRequested,
    MergeConflict,
    Notice,
    RetryScheduled,
    RunFinished,
    RunResumed,
    RunStarted,
    SandboxDenied,
    SchedulingPaused,
    SchedulingResumed,
    SetupFinished,
    TaskBlocked,
    TaskCommitted,
    TaskExited,
    TaskFinished,
    TaskMerged,
    TaskOutput,
    TaskSandboxed,
    TaskSkipped,
    TaskStarted,
)
from delegate_tui.core.state import RunState
from delegate_tui.report import saved_text

FAILURE_TAIL_LINES = 15
_STATUS_COLOUR = {
    "succeeded": "green",
    "failed": "red",
    "merge-conflict": "red",
    "timed-out": "red",
    "over-budget": "red",
    "killed": "yellow",
    "interrupted": "yellow",
    "awaiting-merge": "cyan",
    "partial": "yellow",
    "stopped": "yellow",
}


def use_colour(stream: IO[str]) -> bool:
    """Colours on a terminal, unless NO_COLOR is set (https://no-color.org)."""
    return stream.isatty() and "NO_COLOR" not in os.environ


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class Printer:
    """Turns events into lines on a stream."""

    def __init__(
        self, state: RunState, stream: IO[str] | None = None, *, stream_output: bool = False
    ) -> None:
        self.state = state
        self.out = stream or sys.stdout
        self.colour = use_colour(self.out)
        self.stream_output = stream_output
        self._partial: dict[str, bytes] = {}

    def style(self, text: str, **kwargs: Any) -> str:
        """``click.style`` when colours are on."""
        return click.style(text, **kwargs) if self.colour else text

    def line(self, ts: float, text: str) -> None:
        """Print one timestamped line."""
        stamp = time.strftime("%H:%M:%S", time.localtime(ts or time.time()))
        self.out.write(f"{self.style(stamp, dim=True)}  {text}\n")
        self.out.flush()

    def __call__(self, ev: Event) -> None:
        handler: Callable[[Any], str | None] | None = getattr(self, f"on_{type(ev).__name__}", None)
        if handler is None:
            return
        text = handler(ev)
        if text:
            self.line(ev.ts, text)

    # ---------------------------------------------------------------- handlers

    def on_RunStarted(self, ev: RunStarted) -> str:
        name = ev.plan.get("name", "")
        where = f"{ev.repo} ({ev.isolation}"
        where += f", integration branch {ev.integration_branch})" if ev.integration_branch else ")"
        return self.style(f"run {ev.run_id}", bold=True) + f": {name} on {where}"

    def on_RunResumed(self, ev: RunResumed) -> str:
        return self.style("run resumed", bold=True) + f" (pid {ev.host_pid})"

    def on_Notice(self, ev: Notice) -> str:
        colour = {"warning": "yellow", "error": "red"}.get(ev.level, "blue")
        return self.style(f"{ev.level}:", fg=colour, bold=True) + f" {ev.message}"

    def on_BatchProposed(self, ev: BatchProposed) -> str:
        text = self.style(f"batch {ev.batch}", bold=True) + ": " + ", ".join(ev.tasks)
        if ev.needs_approval:
            text += self.style("  (waiting for approval)", fg="yellow")
        for note in ev.notes:
            text += f"\n          note: {note.task}: {note.reason}"
        # A batch waiting for the operator: every held task. Otherwise what changed
        # (a proposal may list only that; a thousand held tasks each time would flood).
        proposal = self.state.proposal
        waiting = ev.needs_approval and proposal is not None and proposal.batch == ev.batch
        for held in proposal.held if waiting and proposal is not None else ev.held:
            text += f"\n          held: {held.task}: {held.reason}"
        return text

    def on_BatchApproved(self, ev: BatchApproved) -> str:
        who = "by policy" if ev.by == "policy" else "by the operator"
        return f"batch {ev.batch} approved {who}: {', '.join(ev.tasks)}"

    def on_BatchHeld(self, ev: BatchHeld) -> str:
        return f"batch {ev.batch} held"

    def on_SchedulingPaused(self, ev: SchedulingPaused) -> str:
        return self.style("scheduling paused", fg="yellow")

    def on_SchedulingResumed(self, ev: SchedulingResumed) -> str:
        return "scheduling resumed"

    def on_TaskStarted(self, ev: TaskStarted) -> str:
        attempt = f", attempt {ev.attempt}" if ev.attempt > 1 else ""
        where = f" on {ev.branch}" if ev.branch else ""
        node = f" on node {ev.node}" if ev.node else ""
        return (
            self.style(f"▶ {ev.task}", fg="cyan", bold=True)
            + f" started ({ev.agent}, pid {ev.pid}{node}{attempt}){where}"
        )

    def on_TaskSandboxed(self, ev: TaskSandboxed) -> str:
        network = "on" if ev.network else "off (loopback only)"
        return self.style(
            f"  {ev.task}: sandbox {ev.mode}, network {network}; writable: "
            + ", ".join(ev.writable[:3])
            + (f" and {len(ev.writable) - 3} more" if len(ev.writable) > 3 else ""),
            dim=True,
        )

    def on_SandboxDenied(self, ev: SandboxDenied) -> str:
        what = ev.path or ev.detail
        return self.style(f"⛔ {ev.task}: the sandbox refused a write to {what}", fg="yellow")

    def on_SetupFinished(self, ev: SetupFinished) -> str | None:
        return None if ev.ok else self.style(f"✘ {ev.task} setup failed: {ev.detail}", fg="red")

    def on_TaskOutput(self, ev: TaskOutput) -> None:
        if not self.stream_output:
            return
        data = self._partial.pop(ev.task, b"") + ev.data
        *lines, rest = data.split(b"\n")
        if rest:
            self._partial[ev.task] = rest
        prefix = self.style(f"[{ev.task}]", fg="cyan")
        for raw in lines:
            self.out.write(f"{prefix} {prompts.plain_text(raw)}\n")
        self.out.flush()

    def on_InputSent(self, ev: InputSent) -> str:
        if ev.by != "operator":
            return self.style(f"⌨ {ev.task}: told it {ev.text!r}", dim=True)
        return f"⌨ {ev.task}: sent {ev.text!r}"

    def on_KillRequested(self, ev: KillRequested) -> str:
        return self.style(f"✘ {ev.task}: kill requested", fg="yellow")

    def on_TaskExited(self, ev: TaskExited) -> str | None:
        if ev.reason == "spawn-error":
            return None
        how = f"signal {ev.signal}" if ev.signal else f"exit {ev.exit_code}"
        text = f"■ {ev.task} {how} after {_duration(ev.duration_s)}"
        if ev.reason in ("timeout", "killed"):
            text += f" ({ev.reason})"
        return self.style(text, dim=ev.exit_code == 0)

    def on_CriteriaChecked(self, ev: CriteriaChecked) -> str:
        passed = sum(r.passed for r in ev.results)
        text = f"criteria {ev.task}: {passed}/{len(ev.results)} passed"
        for r in ev.results:
            if not r.passed:
                text += "\n          " + self.style(f"✘ {r.command} (exit {r.exit_code})", fg="red")
        return text if ev.passed else self.style(text, fg="red")

    def on_TaskCommitted(self, ev: TaskCommitted) -> str | None:
        if not ev.changed:
            return f"  {ev.task}: no file changes"
        added = sum(f.added for f in ev.changed)
        deleted = sum(f.deleted for f in ev.changed)
        names = ", ".join(f.path for f in ev.changed[:4]) + (" …" if len(ev.changed) > 4 else "")
        return f"  {ev.task}: {len(ev.changed)} file(s) +{added} -{deleted}: {names}"

    def on_TaskMerged(self, ev: TaskMerged) -> str | None:
        return self.style(f"⇢ {ev.task} merged", fg="green") + f" ({ev.commit[:10]})"

    def on_MergeConflict(self, ev: MergeConflict) -> str:
        return self.style(
            f"⚠ {ev.task}: merge conflict in {', '.join(ev.paths) or '?'}", fg="red", bold=True
        )

    def on_TaskFinished(self, ev: TaskFinished) -> str | None:
        colour = _STATUS_COLOUR.get(ev.status, "white")
        mark = "✔" if ev.status == "succeeded" else "…" if ev.status == "awaiting-merge" else "✘"
        text = self.style(f"{mark} {ev.task} {ev.status}", fg=colour, bold=True)
        if ev.reason:
            text += f": {ev.reason}"
        if ev.status not in ("succeeded", "awaiting-merge"):
            task = self.state.tasks.get(ev.task)
            attempt = task.attempt if task else None
            if attempt is not None and attempt.tail:
                lines = prompts.tail_text(bytes(attempt.tail), 4000).splitlines()[
                    -FAILURE_TAIL_LINES:
                ]
                text += "".join(f"\n          │ {line}" for line in lines)
        return text

    def on_RetryScheduled(self, ev: RetryScheduled) -> str:
        who = "automatic retry" if ev.automatic else "retry by the operator"
        return self.style(f"↻ {ev.task}: {who}, attempt {ev.attempt}", fg="yellow")

    def on_TaskSkipped(self, ev: TaskSkipped) -> str:
        return self.style(f"⤼ {ev.task} skipped", fg="yellow") + (
            f": {ev.reason}" if ev.reason else ""
        )

    def on_TaskBlocked(self, ev: TaskBlocked) -> str:
        return self.style(f"⊘ {ev.task} blocked", fg="yellow") + f": {ev.reason}"

    def on_ConflictDetected(self, ev: ConflictDetected) -> str:
        colour = "red" if ev.severity == "error" else "yellow"
        who = " ✕ ".join(ev.tasks) or "(no running task's scope)"
        return (
            self.style(f"⚠ {ev.kind}", fg=colour, bold=True)
            + f" {who}: {', '.join(ev.paths)}"
            + self.style(f" ({ev.detail})", dim=True)
        )

    def on_ConflictResolved(self, ev: ConflictResolved) -> str:
        kind, tasks, paths = [*ev.key.split(":", 2), "", ""][:3]
        return (
            self.style(f"✓ {kind} resolved", fg="green") + f" {tasks.replace(',', ' ✕ ')}: {paths}"
        )

    def on_FinalMerge(self, ev: FinalMerge) -> str:
        if ev.ok:
            return (
                self.style(f"⇢ merged into {ev.branch}", fg="green", bold=True) + f" ({ev.detail})"
            )
        return self.style(f"✘ not merged into {ev.branch}: {ev.detail}", fg="red")

    def on_RunFinished(self, ev: RunFinished) -> str:
        m = ev.metrics
        colour = _STATUS_COLOUR.get(ev.status, "white")
        head = self.style(f"run {ev.status}", fg=colour, bold=True)
        saved = saved_text(m.time_saved_s, m.operator_wait_s, m.downtime_s)
        text = (
            f"{head} in {_duration(m.wall_s)} ({m.tasks_succeeded}/{m.tasks_total} tasks succeeded; "
            f"sequential {_duration(m.sequential_s)}, {saved})"
        )
        text += f"\n          {metrics.verdict(self.state)}"
        for task_id, kind, words in metrics.health(self.state):
            ok = kind in ("merged", "completed")
            mark = self.style("✔", fg="green") if ok else self.style("✘", fg="red")
            if kind in ("not-run", "awaiting-merge", "skipped", "blocked", "interrupted"):
                mark = self.style("·", dim=True)
            text += f"\n          {mark} {task_id}: {words}"
        if ev.summary and ev.status == "stopped":  # why it stopped (the tasks are above)
            text += f"\n          {ev.summary}"
        return text


async def read_line(prompt: str) -> str:
    """Read a line from stdin without a thread (a blocked thread would hold up exit)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[str] = loop.create_future()
    buffer = bytearray()
    sys.stdout.write(prompt)
    sys.stdout.flush()

    def readable() -> None:
        chunk = os.read(0, 1024)
        if not chunk:
            if not done.done():
                done.set_exception(EOFError())
            return
        buffer.extend(chunk)
        if b"\n" in buffer and not done.done():
            done.set_result(buffer.split(b"\n", 1)[0].decode(errors="replace"))

    loop.add_reader(0, readable)
    try:
        return await done
    finally:
        loop.remove_reader(0)


async def ask_approvals(engine: Engine, proposals: asyncio.Queue[BatchProposed]) -> None:
    """Prompt on the terminal for each batch that needs the operator."""
    while True:
        ev = await proposals.get()
        if engine.state.proposal is None or engine.state.proposal.batch != ev.batch:
            continue
        question = (
            f"approve batch {ev.batch} ({', '.join(ev.tasks)})? [Y]es / [n]o, skip them / [q]uit "
        )
        try:
            answer = (await read_line(question)).strip().lower()
        except EOFError:
            answer = "q"
        if answer in ("", "y", "yes"):
            engine.approve()
        elif answer in ("n", "no"):
            for task in ev.tasks:
                engine.skip(task, "declined by the operator")
        else:
            engine.hold()
            engine.stop("stopped by the operator")


async def run_headless(
    engine: Engine, *, interactive: bool, stream_output: bool = False
) -> RunState:
    """Run the engine, printing events; ask approvals on stdin when ``interactive``."""
    from delegate_tui.core.engine import install_signal_handlers

    printer = Printer(engine.state, stream_output=stream_output)
    engine.subscribe(printer)
    proposals: asyncio.Queue[BatchProposed] = asyncio.Queue()
    if interactive:
        engine.subscribe(
            lambda ev: (
                proposals.put_nowait(ev)
                if isinstance(ev, BatchProposed) and ev.needs_approval
                else None
            )
        )
    install_signal_handlers(engine)
    asker = (
        asyncio.get_running_loop().create_task(ask_approvals(engine, proposals))
        if interactive
        else None
    )
    try:
        return await engine.run()
    finally:
        if asker is not None:
            asker.cancel()
