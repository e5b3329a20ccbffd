"""The ``delegate-tui`` command line.

Owns argument parsing, exit codes and the choice between the full-screen
UI and headless mode. Exit codes: 0 every task succeeded (or a command
worked), 1 the run ended partial, failed or stopped, 2 bad input (plan,
log, flag); bad input is refused before anything is created.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from delegate_tui import __version__
from delegate_tui.core import batching, graph, runlog
from delegate_tui.core.agents import PRESETS
from delegate_tui.core.engine import Engine, EngineOptions, PreflightError
from delegate_tui.core.metrics import stats as stats_of
from delegate_tui.core.plan import Plan, PlanError, json_schema, load_plan
from delegate_tui.core.replay import final_state
from delegate_tui.core.state import RunState

EXIT_OK, EXIT_RUN_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def fail(message: str) -> None:
    """Print one clear error and exit 2."""
    click.echo(f"delegate-tui: {message}", err=True)
    sys.exit(EXIT_BAD_INPUT)


def _load(path: str) -> Plan:
    try:
        return load_plan(path)
    except PlanError as exc:
        fail(str(exc))
        raise  # unreachable


def _fmt_s(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="delegate-tui")
def main() -> None:
    """Run a plan of AI coding agents in parallel: safe batches, one git worktree per
    task, live conflict detection, and a run log you can replay.

    Start with `delegate-tui demo` (no AI account needed), then write a plan
    (see `delegate-tui schema`) and `delegate-tui run plan.yaml`.
    """


# ---------------------------------------------------------------- run


def _run_options(func: Any) -> Any:
    options = [
        click.option(
            "--repo",
            type=click.Path(file_okay=False),
            help="Repository to work in (overrides the plan's `repo`).",
        ),
        click.option(
            "--headless", is_flag=True, help="No full-screen UI: print one line per event."
        ),
        click.option(
            "-y",
            "--yes",
            is_flag=True,
            help="Approve batches without asking (tasks with `approve: true` still ask).",
        ),
        click.option(
            "--max-parallel",
            type=click.IntRange(1, 64),
            help="Tasks running at once (overrides the plan).",
        ),
        click.option(
            "--isolation",
            type=click.Choice(["worktree", "shared", "none"]),
            help="Override the plan's isolation.",
        ),
        click.option(
            "--agent-override", metavar="NAME", help="Run every task with this agent (e.g. demo)."
        ),
        click.option(
            "--include-dirty", is_flag=True, help="Start agents from your uncommitted changes too."
        ),
        click.option(
            "--transport",
            type=click.Choice(["pty", "pipes"]),
            help="Force how agents are attached (default: pty).",
        ),
        click.option(
            "--finish",
            is_flag=True,
            help="At the end, merge the work into your branch (fast-forward or clean only).",
        ),
        click.option(
            "--kill-grace",
            type=float,
            default=5.0,
            show_default=True,
            help="Seconds between SIGTERM and SIGKILL.",
        ),
        click.option(
            "--stream",
            is_flag=True,
            help="Headless: also print every agent's output, prefixed by task.",
        ),
        click.option(
            "--theme",
            metavar="NAME",
            help="UI theme: delegate-dark, delegate-light, high-contrast, phosphor, or your own.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _start_run(plan: Plan, opts: dict[str, Any]) -> int:
    if opts["repo"]:
        plan = plan.model_copy(update={"repo": str(Path(opts["repo"]).resolve())})
    override = opts["agent_override"]
    if override and override not in plan.resolved_agents():
        fail(
            f"--agent-override: unknown agent '{override}' (presets: {', '.join(sorted(PRESETS))})"
        )
    auto = bool(opts["yes"]) or plan.approve == "auto"
    interactive_terminal = sys.stdin.isatty() and sys.stdout.isatty()
    use_ui = not opts["headless"] and interactive_terminal
    if not opts["headless"] and not use_ui:
        click.echo("delegate-tui: standard output is not a terminal; running headless", err=True)
    auto_merge = None
    if plan.merge == "manual" and not use_ui and (auto or not interactive_terminal):
        auto_merge = True
        click.echo(
            "delegate-tui: merge: manual needs an operator at the UI; "
            "this headless run merges clean work automatically",
            err=True,
        )
    engine = Engine(
        plan,
        EngineOptions(
            auto_approve=bool(opts["yes"]),
            max_parallel=opts["max_parallel"],
            isolation=opts["isolation"],
            agent_override=override,
            include_dirty=bool(opts["include_dirty"]),
            kill_grace_s=float(opts["kill_grace"]),
            transport=opts["transport"],
            finish=bool(opts["finish"]),
            auto_merge=auto_merge,
            hold_at_end=use_ui,
        ),
    )
    try:
        engine.preflight()
    except PreflightError as exc:
        fail(str(exc))
    needs_operator = [t.id for t in engine.plan.tasks if t.approve]
    if not interactive_terminal and (not auto or needs_operator):
        what = (
            f"tasks {', '.join(needs_operator)} have `approve: true`"
            if auto
            else "batches wait for approval (approve: batch)"
        )
        fail(
            f"{plan.source}: {what}, and there is no terminal to ask in; pass --yes or set approve: auto"
        )
    if use_ui:
        from delegate_tui.ui.app import DelegateApp

        code = DelegateApp(engine, theme=opts.get("theme")).run()
        state = engine.state
        click.echo(
            f"run {state.status}; log: {engine.log_path}" if state.run_id else "run not started"
        )
        return code if code is not None and state.finished else EXIT_RUN_FAILED
    from delegate_tui.headless import run_headless

    state = asyncio.run(
        run_headless(
            engine, interactive=not auto or bool(needs_operator), stream_output=bool(opts["stream"])
        )
    )
    click.echo(f"log: {engine.log_path}")
    return EXIT_OK if state.status == "succeeded" else EXIT_RUN_FAILED


@main.command()
@click.argument("plan_file", metavar="PLAN", type=click.Path(dir_okay=False))
@_run_options
def run(plan_file: str, **opts: Any) -> None:
    """Run PLAN: propose batches, run agents in worktrees, merge their work."""
    sys.exit(_start_run(_load(plan_file), opts))


@main.command()
@click.option("--headless", is_flag=True, help="Print events instead of the full-screen UI.")
@click.option(
    "--speed",
    type=float,
    default=1.0,
    show_default=True,
    help="Demo agents' pace (0.2 = five times faster).",
)
@click.option(
    "--keep/--no-keep",
    default=True,
    show_default=True,
    help="Keep the scratch repository afterwards.",
)
@click.option("--theme", metavar="NAME", help="UI theme.")
def demo(headless: bool, speed: float, keep: bool, theme: str | None) -> None:
    """Try delegate-tui with simulated agents on a scratch repository (no AI account needed).

    In a terminal it opens the full-screen UI, where you approve each batch
    (a); with --headless, or when output is not a terminal, it approves by itself.
    """
    from delegate_tui.demo.scaffold import make_demo_repo

    root = Path(tempfile.mkdtemp(prefix="delegate-demo-"))
    plan_path = make_demo_repo(root)
    os.environ["DELEGATE_DEMO_SPEED"] = str(max(0.0, speed))
    click.echo(f"demo repository: {plan_path.parent.parent}")
    code = _start_run(
        _load(str(plan_path)),
        {
            "repo": None,
            "headless": headless,
            "yes": headless or not sys.stdout.isatty(),
            "max_parallel": None,
            "isolation": None,
            "agent_override": None,
            "include_dirty": False,
            "transport": None,
            "finish": False,
            "kill_grace": 5.0,
            "stream": False,
            "theme": theme,
        },
    )
    if not keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    else:
        repo = plan_path.parent.parent
        click.echo(f"look at the result: git -C {repo} log --graph --oneline --all")
    sys.exit(code)


# ---------------------------------------------------------------- plans


@main.command()
@click.argument(
    "plans", metavar="PLAN...", nargs=-1, required=True, type=click.Path(dir_okay=False)
)
def validate(plans: tuple[str, ...]) -> None:
    """Check plan files; print every problem with its file, line and field."""
    bad = 0
    for path in plans:
        try:
            plan = load_plan(path)
        except PlanError as exc:
            bad += 1
            click.echo(str(exc), err=True)
            continue
        depth = len(graph.layers(plan.deps))
        click.echo(f"✔ {path}: {len(plan.tasks)} task(s) in {depth} layer(s)")
    sys.exit(EXIT_BAD_INPUT if bad else EXIT_OK)


@main.command("plan")
@click.argument("plan_file", metavar="PLAN", type=click.Path(dir_okay=False))
@click.option(
    "--isolation",
    type=click.Choice(["worktree", "shared", "none"]),
    help="Batch as this isolation mode would.",
)
@click.option("--max-parallel", type=click.IntRange(1, 64), help="Batch with this many at once.")
def plan_cmd(plan_file: str, isolation: str | None, max_parallel: int | None) -> None:
    """Show how PLAN will run: layers, the first batch, why others wait, time estimates."""
    plan = _load(plan_file)
    state = RunState(
        plan=plan,
        isolation=isolation or plan.isolation or "worktree",
        max_parallel=max_parallel or plan.max_parallel,
    )
    from delegate_tui.core.state import TaskState

    state.tasks = {t.id: TaskState(t.id) for t in plan.tasks}
    click.echo(
        click.style(plan.name, bold=True) + (f": {plan.description}" if plan.description else "")
    )
    click.echo(
        f"{len(plan.tasks)} tasks, isolation {state.isolation}, up to {state.max_parallel} at once\n"
    )
    click.echo(click.style("Layers", bold=True))
    for index, layer in enumerate(graph.layers(plan.deps)):
        entries = []
        for task_id in layer:
            task = plan.task(task_id)
            deps = f" ← {', '.join(task.depends_on)}" if task.depends_on else ""
            entries.append(f"{task_id} [{plan.agent_of(task)}]{deps}")
        click.echo(f"  {index}: " + "; ".join(entries))
    proposal = batching.next_batch(plan, state, auto_approve=plan.approve == "auto")
    click.echo("\n" + click.style("First batch", bold=True))
    if proposal is not None:
        click.echo("  " + ", ".join(proposal.tasks))
        for note in proposal.notes:
            click.echo(f"  note: {note.task}: {note.reason}")
        for held in proposal.held:
            click.echo(f"  held: {held.task}: {held.reason}")
    has_estimates = any(t.estimate for t in plan.tasks)
    weight = {t.id: t.estimate or (0.0 if has_estimates else 1.0) for t in plan.tasks}
    parallel, schedule = _simulate(plan, weight, state.max_parallel, state.isolation)
    click.echo("\n" + click.style("Expected batches", bold=True) + " (if every task succeeds)")
    for index, (start, tasks) in enumerate(schedule, 1):
        when = f"at {_fmt_s(start)}" if has_estimates else f"step {start:.0f}"
        click.echo(f"  {index}. {when:>10}: {', '.join(tasks)}")
    if has_estimates:
        click.echo("\n" + click.style("Estimate", bold=True))
        missing = [t.id for t in plan.tasks if not t.estimate]
        sequential = sum(weight.values())
        path = graph.critical_path(plan.deps, weight)
        click.echo(f"  sequential: {_fmt_s(sequential)}")
        if parallel:
            click.echo(
                f"  parallel:   {_fmt_s(parallel)} (about {sequential / parallel:.1f}x faster)"
            )
        click.echo(f"  critical path: {' -> '.join(path)} ({_fmt_s(sum(weight[p] for p in path))})")
        if missing:
            click.echo(f"  no estimate (counted as 0): {', '.join(missing)}")


def _simulate(
    plan: Plan, weight: dict[str, float], max_parallel: int, isolation: str
) -> tuple[float, list[tuple[float, tuple[str, ...]]]]:
    """Wall time and batch starts if every task succeeds in its estimated time."""
    from delegate_tui.core.state import AttemptState, TaskState

    state = RunState(plan=plan, isolation=isolation, max_parallel=max_parallel)
    state.tasks = {t.id: TaskState(t.id) for t in plan.tasks}
    clock, running = 0.0, {}
    batches: list[tuple[float, tuple[str, ...]]] = []
    while True:
        proposal = batching.next_batch(plan, state, auto_approve=True)
        if proposal is not None:
            batches.append((clock, proposal.tasks))
        for task_id in proposal.tasks if proposal else ():
            state.tasks[task_id].status = "running"
            state.tasks[task_id].attempts.append(AttemptState(1))
            running[task_id] = clock + weight[task_id]
        if not running:
            return clock, batches
        clock = min(running.values())
        for task_id in [t for t, end in running.items() if end == clock]:
            del running[task_id]
            state.tasks[task_id].status = "succeeded"


@main.command()
def schema() -> None:
    """Print the JSON Schema of plan files (for editor validation)."""
    click.echo(json.dumps(json_schema(), indent=2))


# ---------------------------------------------------------------- logs


def _run_argument(func: Any) -> Any:
    """RUN (an id, a run folder, an events.jsonl path, or `latest`) and --repo."""
    func = click.option(
        "--repo",
        default=".",
        show_default=True,
        type=click.Path(file_okay=False),
        help="Repository whose runs to look in.",
    )(func)
    return click.argument("run_arg", metavar="[RUN]", required=False)(func)


def _read_state(run_arg: str | None, repo: str) -> tuple[RunState, runlog.ReadReport, Path]:
    try:
        path = runlog.resolve_run(run_arg, Path(repo).resolve())
        state, report = final_state(path)
    except runlog.LogError as exc:
        fail(str(exc))
        raise
    if not state.run_id:
        fail(f"{path}: not a delegate-tui run log (no RunStarted event)")
    return state, report, path


@main.command()
@_run_argument
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def stats(run_arg: str | None, repo: str, as_json: bool) -> None:
    """Summarise a run: tasks, conflicts, time saved. RUN is an id, a folder, a log, or `latest`."""
    state, report, path = _read_state(run_arg, repo)
    for message in report.messages():
        click.echo(f"delegate-tui: {path}: {message}", err=True)
    data = stats_of(state)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    m = data["metrics"]
    assert isinstance(m, dict)
    click.echo(f"{click.style(state.run_id, bold=True)}  {data['plan']}  [{state.status}]")
    click.echo(
        f"wall {_fmt_s(m['wall_s'])}, sequential {_fmt_s(m['sequential_s'])}, saved {_fmt_s(m['time_saved_s'])}, "
        f"conflict rate {m['conflict_rate']:.0%}, rework rate {m['rework_rate']:.0%}"
    )
    tasks = data["tasks"]
    assert isinstance(tasks, dict)
    for task_id, info in tasks.items():
        files = len(info["changed_files"])
        extra = f"  {info['reason']}" if info["reason"] and info["status"] != "succeeded" else ""
        click.echo(
            f"  {task_id:<24} {info['status']:<15} {info['attempts']} attempt(s) "
            f"{_fmt_s(info['duration_s']):>6}  {files} file(s){extra}"
        )
    conflicts = data["conflicts"]
    assert isinstance(conflicts, list)
    for conflict in conflicts:
        click.echo(
            f"  conflict: {conflict['kind']} {', '.join(conflict['tasks'])}: {', '.join(conflict['files'])}"
        )


@main.command()
@_run_argument
@click.option("--headless", is_flag=True, help="No full-screen UI: print one line per event.")
@click.option(
    "-y", "--yes", is_flag=True, help="Approve batches without asking; retry interrupted tasks."
)
@click.option(
    "--kill-grace",
    type=float,
    default=5.0,
    show_default=True,
    help="Seconds between SIGTERM and SIGKILL.",
)
@click.option("--theme", metavar="NAME", help="UI theme.")
def resume(
    run_arg: str | None, repo: str, headless: bool, yes: bool, kill_grace: float, theme: str | None
) -> None:
    """Continue a run that was cut off (crash, kill -9, power loss) from its log.

    Agents the old process left running are ended (by the process groups in the
    log), their tasks marked interrupted, merged work kept; the log goes on in the
    same file. With --yes (or approve: auto) interrupted tasks are retried.
    """
    try:
        path = runlog.resolve_run(run_arg, Path(repo).resolve())
        interactive_terminal = sys.stdin.isatty() and sys.stdout.isatty()
        use_ui = not headless and interactive_terminal
        engine = Engine.from_log(
            path, EngineOptions(auto_approve=yes, kill_grace_s=kill_grace, hold_at_end=use_ui)
        )
    except (runlog.LogError, PreflightError) as exc:
        fail(str(exc))
        raise
    auto = yes or engine.state.auto_approve
    if not interactive_terminal and not auto:
        fail(f"{path}: batches wait for approval, and there is no terminal to ask in; pass --yes")
    if use_ui:
        from delegate_tui.ui.app import DelegateApp

        DelegateApp(engine, theme=theme).run()
    else:
        from delegate_tui.headless import run_headless

        asyncio.run(run_headless(engine, interactive=not auto))
    state = engine.state
    click.echo(f"run {state.status}; log: {path}")
    sys.exit(EXIT_OK if state.status == "succeeded" else EXIT_RUN_FAILED)


@main.command()
@_run_argument
@click.option("--headless", is_flag=True, help="Print the state at --at instead of opening the UI.")
@click.option(
    "--at",
    "at_s",
    type=float,
    default=None,
    metavar="SECONDS",
    help="Headless: the moment to show (default: the end).",
)
@click.option("--real-time", is_flag=True, help="Play quiet stretches at their real length.")
@click.option("--theme", metavar="NAME", help="UI theme.")
def replay(
    run_arg: str | None,
    repo: str,
    headless: bool,
    at_s: float | None,
    real_time: bool,
    theme: str | None,
) -> None:
    """Replay a run in the same UI (play, pause, speed, seek), or print it at a moment.

    RUN is a run id, a run folder, an events.jsonl path, `latest` (the default),
    or an asciinema recording (asciicast v2 .cast file), shown as a one-task run.
    Replay only reads the log: it never runs a process or touches git.
    """
    from delegate_tui.core import asciicast
    from delegate_tui.core.replay import ReplaySource

    try:
        if run_arg and Path(run_arg).is_file() and asciicast.looks_like_cast(Path(run_arg)):
            path = Path(run_arg)
            source = ReplaySource(asciicast.to_events(path), real_time=real_time)
        else:
            path = runlog.resolve_run(run_arg, Path(repo).resolve())
            source = ReplaySource.from_log(path, real_time=real_time)
    except (runlog.LogError, asciicast.CastError) as exc:
        fail(str(exc))
        raise
    for message in source.report.messages():
        click.echo(f"delegate-tui: {path}: {message}", err=True)
    if not source.has_run:
        fail(f"{path}: not a delegate-tui run log (no RunStarted event)")
    if headless or not sys.stdout.isatty():
        if at_s is None:
            source.seek(len(source.events))
        else:
            source.seek_seconds(at_s)
        click.echo(_describe_moment(source))
        return
    from delegate_tui.ui.app import DelegateApp

    source.seek(0)
    DelegateApp(source, theme=theme, read_only=True).run()


def _describe_moment(source: Any) -> str:
    """The state of a replayed run at its position, as text (no control sequences)."""
    from delegate_tui.core.attention import last_line

    state = source.state
    position = source.position
    lines = [
        f"{state.run_id}  {state.plan.name if state.plan else ''}  at {_fmt_s(position.seconds)} of "
        f"{_fmt_s(position.duration)} (event {position.index}/{position.total})  [{state.status}]"
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


@main.command()
@click.argument("repo", required=False, default=".", type=click.Path(file_okay=False))
@click.option(
    "--open", "open_ui", is_flag=True, help="Open the runs screen and replay the run you pick."
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def runs(repo: str, as_json: bool, open_ui: bool) -> None:
    """List the runs of REPO (default: here), newest first; --open picks one to replay."""
    root = Path(repo).resolve()
    if open_ui:
        from delegate_tui.core import workspace as ws
        from delegate_tui.core.replay import ReplaySource
        from delegate_tui.ui.app import DelegateApp
        from delegate_tui.ui.screens.runs import RunsApp

        picked = RunsApp(ws.find_repo(root) or root).run()
        if picked is not None:
            source = ReplaySource.from_log(picked)
            source.seek(0)
            DelegateApp(source, read_only=True).run()
        return
    from delegate_tui.core import workspace

    top = workspace.find_repo(root) or root
    rows: list[dict[str, Any]] = []
    for path in runlog.list_run_logs(top):
        try:
            state, _report = final_state(path)
        except runlog.LogError:
            continue
        ok = sum(t.status == "succeeded" for t in state.tasks.values())
        bad = sum(t.status in batching.FAILED_STATUSES for t in state.tasks.values())
        status = state.status if state.finished else "unfinished"
        rows.append(
            {
                "run_id": state.run_id,
                "plan": state.plan.name if state.plan else "?",
                "started": state.started_ts,
                "duration_s": round(state.elapsed_s, 1),
                "status": status,
                "ok": ok,
                "failed": bad,
                "tasks": len(state.tasks),
                "log": str(path),
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"no runs in {runlog.runs_dir(top)}")
        return
    for row in rows:
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(float(row["started"])))
        click.echo(
            f"{row['run_id']}  {started}  {_fmt_s(float(row['duration_s'])):>6}  {row['status']:<10} "
            f"{row['ok']}/{row['tasks']} ok, {row['failed']} failed  {row['plan']}"
        )


if __name__ == "__main__":
    main()
