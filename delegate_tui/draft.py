"""``delegate-tui draft`` and ``plan --review``, once their options are parsed.

Owns the command's flow: pick the agent, ask it for a plan round by round
(each round a consult task run by the engine, ``core/consult.py``; the rounds
and checks are ``core/drafting.py``), say how each round went on stderr, then
either print the plan with its validation report (``--headless``, or no
terminal) or open the review screen, and start the run only when the operator
presses enter there. A draft still invalid after its rounds is printed with
its problems and written nowhere (exit 2). Like ``launch.py`` it raises
:class:`~delegate_tui.launch.Refused` for bad input and returns exit codes.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from delegate_tui import report
from delegate_tui.core import consult, drafting, graph, workspace
from delegate_tui.core.agents import PRESETS
from delegate_tui.core.forecast import forecast
from delegate_tui.core.plan import PlanError, load_plan
from delegate_tui.launch import EXIT_BAD_INPUT, EXIT_OK, Refused, RunRequest, start_run

#: Presets that can draft (``shell`` runs a task's own command, so it cannot).
DRAFTING_PRESETS = tuple(
    sorted(name for name, spec in PRESETS.items() if not spec.uses_task_command)
)


def _terminal() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def _say(text: str) -> None:
    click.echo(text, err=True)


def _round_line(agent: str, rnd: drafting.Round) -> list[str]:
    answer = rnd.answer
    n = len(rnd.problems)
    spent = f" in {report.duration(answer.seconds)}" if answer.seconds else ""
    cost = f", {answer.cost}" if answer.cost else ""
    run = f" (run {answer.run_id})" if answer.run_id else ""
    verdict = "valid" if not n else f"{n} problem{'s' if n != 1 else ''}, sent back"
    lines = [f"round {rnd.number}: {agent} answered{spent}{cost}{run}: {verdict}"]
    lines += [f"  ! {note}" for note in answer.notes]
    lines += [f"  {p}" for p in rnd.problems]
    return lines


def report_lines(result: drafting.Draft, out: Path, agent: str) -> list[str]:
    """The validation report printed after the plan, as YAML comments."""
    rounds = len(result.rounds)
    runs = ", ".join(r.answer.run_id for r in result.rounds if r.answer.run_id)
    lines = [
        f"---- delegate-tui draft: {rounds} round{'s' if rounds != 1 else ''} with {agent}, "
        f"{report.duration(result.seconds)} of agent time"
        + (f" (runs {runs}: `delegate-tui stats RUN`)" if runs else "")
    ]
    costs = [f"round {r.number}: {r.answer.cost}" for r in result.rounds if r.answer.cost]
    if costs:
        lines.append("cost: " + "; ".join(costs))
    plan = result.plan
    if result.valid and plan is not None:
        depth = len(graph.layers(plan.deps))
        lines.append(f"✔ valid: {len(plan.tasks)} task(s) in {depth} layer(s), written to {out}")
        outlook = forecast(
            plan, isolation=plan.isolation or "worktree", max_parallel=plan.max_parallel
        )
        lines += [
            part
            for line in report.plan_lines(plan, outlook)
            for part in line.split("\n")
            if part.strip()
        ]
    else:
        lines.append(f"✘ still invalid after {rounds} round(s); nothing written:")
        lines += [f"  {p}" for p in result.problems]
    return lines


def run_draft(
    goal: str,
    *,
    agent: str | None,
    out: str | None,
    repo: str | None,
    headless: bool,
    rounds: int,
    force: bool,
    theme: str | None,
) -> int:
    """Draft a plan for ``goal``; review and run it in a terminal. The exit code."""
    top = workspace.find_repo(Path(repo or ".").resolve())
    if top is None:
        raise Refused(
            f"--repo: {Path(repo or '.').resolve()} is not in a git repository "
            "(the drafting agent reads it in a worktree)"
        )
    name = agent or consult.default_agent()
    if name not in DRAFTING_PRESETS:
        raise Refused(f"--agent: unknown agent '{name}' (one of {', '.join(DRAFTING_PRESETS)})")
    path = Path(out or "plan.yaml")
    if path.exists() and not force:
        raise Refused(f"-o: {path} exists; choose another file or add --force")
    if not goal.strip():
        raise Refused("GOAL: empty; say what the plan should achieve")
    plan_repo = os.path.relpath(top, path.resolve().parent)
    _say(
        f"drafting with {name}: a read-only consult in a fresh worktree of {top}, "
        f"at most {rounds} round{'s' if rounds != 1 else ''}"
    )

    def ask(prompt: str, number: int) -> drafting.Answer:
        title = f"draft {number}: {goal.strip().splitlines()[0][:60]}"
        return consult.ask(top, name, prompt, name=title)

    def heard(rnd: drafting.Round) -> None:
        for line in _round_line(name, rnd):
            _say(line)

    try:
        result = drafting.draft(
            goal,
            ask,
            agent=name,
            repo=plan_repo,
            file=str(path),
            repo_files=consult.repo_files(top),
            rounds=rounds,
            on_round=heard,
        )
    except drafting.DraftError as exc:
        raise Refused(str(exc)) from None
    interactive = not headless and _terminal()
    if result.valid:
        from delegate_tui.ui.screens.review import save_plan

        save_plan(path, result.text)
    if not interactive or not result.valid:
        if result.text:
            click.echo(result.text.rstrip("\n"))
        for line in report_lines(result, path, name):
            click.echo(f"# {line}" if line else "#")
        return EXIT_OK if result.valid else EXIT_BAD_INPUT
    lines = report_lines(result, path, name)
    for line in lines[:2]:
        _say(line)
    note = lines[0].strip("- ") + "".join(
        f"\n{line}" for line in lines[1:2] if line.startswith("cost: ")
    )
    return review_file(path, theme=theme, hand_written=False, note=note)


def review_file(path: Path, *, theme: str | None, hand_written: bool = True, note: str = "") -> int:
    """Open the review screen on the plan in ``path``; run it if the operator says so."""
    if not _terminal():
        raise Refused("--review needs a terminal (use `delegate-tui plan PLAN` to print it)")
    from delegate_tui.ui.screens.review import ReviewApp

    text = path.read_text(encoding="utf-8")
    outcome = ReviewApp(path, text, theme=theme, hand_written=hand_written, note=note).run()
    if outcome != "run":
        _say(f"not started; the plan is in {path}: `delegate-tui run {path}` runs it")
        return EXIT_OK
    try:
        plan = load_plan(path)
    except PlanError as exc:  # the screen saves only a plan the validator accepts
        raise Refused(str(exc)) from None
    return start_run(plan, RunRequest(theme=theme))
