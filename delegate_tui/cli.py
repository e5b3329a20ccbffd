"""The ``delegate-tui`` command line.

Owns the click commands: their arguments, options and help texts, and
turning bad input into one clear message and an exit code. Exit codes: 0
every task succeeded (or a command worked), 1 the run ended partial, failed
or stopped, 2 bad input (plan, log, flag); bad input is refused before
anything is created. Starting a run lives in ``launch.py``, the text the
commands print in ``report.py``, the plan's time estimate in ``core/forecast.py``.
(About 790 lines, most of them click options and their help texts.)
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from delegate_tui import __version__
from delegate_tui.launch import EXIT_BAD_INPUT, EXIT_OK, Refused, RunRequest

if TYPE_CHECKING:
    from delegate_tui.core.plan import Plan
    from delegate_tui.core.runlog import ReadReport
    from delegate_tui.core.state import RunState

# Each command imports what it uses when it runs: `--help`, `validate` or `stats`
# load neither the engine nor Textual (tests/e2e/test_cli_imports.py holds it).


def fail(message: str) -> NoReturn:
    """Print one clear error and exit 2."""
    click.echo(f"delegate-tui: {message}", err=True)
    sys.exit(EXIT_BAD_INPUT)


def _load(path: str) -> Plan:
    from delegate_tui.core.plan import PlanError, load_plan

    try:
        return load_plan(path)
    except PlanError as exc:
        fail(str(exc))


def _exit_with(launch: Callable[[], int]) -> NoReturn:
    """Run a launch and exit with its code; a refusal is bad input (exit 2)."""
    try:
        code = launch()
    except Refused as exc:
        fail(str(exc))
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="delegate-tui")
def main() -> None:
    """Run a plan of AI coding agents in parallel: safe batches, one git worktree per
    task, live conflict detection, and a run log you can replay.

    Start with `delegate-tui demo` (no AI account needed), then write a plan
    (see `delegate-tui schema`) or have an agent draft one
    (`delegate-tui draft "GOAL"`), and `delegate-tui run plan.yaml`.
    """


# ---------------------------------------------------------------- run


def _check_executor(_ctx: Any, _param: Any, value: str | None) -> str | None:
    if value is None:
        return None
    from delegate_tui.core.executor import parse_executor

    try:
        parse_executor(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


def _run_options(func: Any) -> Any:
    """The options of ``run``: one per :class:`RunRequest` field, named alike."""
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
            "--sandbox",
            type=click.Choice(["off", "worktree", "scope"]),
            help="Run every agent in this bubblewrap sandbox, over the plan and its tasks: "
            "worktree (only its worktree is writable), scope (only its `edits` folders) "
            "or off (which also lifts `network: off`).",
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
            "--executor",
            metavar="local|ray[://HOST:PORT]",
            callback=_check_executor,
            help="Where agents run (overrides the plan's `executor`): this machine, or a Ray "
            "cluster (`ray`: the one RAY_ADDRESS names; `ray://HOST:PORT`: through Ray Client). "
            "Needs `pip install 'delegate-tui[ray]'`.",
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
        click.option(
            "--detach",
            is_flag=True,
            help="Start the run in the background and return; `delegate-tui attach` watches it.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@main.command()
@click.argument("plan_file", metavar="PLAN", type=click.Path(dir_okay=False))
@_run_options
def run(plan_file: str, **opts: Any) -> None:
    """Run PLAN: propose batches, run agents in worktrees, merge their work.

    DELEGATE_AGENT_NICE=N: the run service starts its agents N nicer than itself, so
    the screen answers keys first on a busy machine (off by default).
    """
    from delegate_tui.launch import start_run

    plan = _load(plan_file)
    _exit_with(lambda: start_run(plan, RunRequest(**opts)))


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
    import tempfile

    from delegate_tui.core import runlog
    from delegate_tui.core.replay import final_state
    from delegate_tui.demo.scaffold import make_demo_repo, unattended
    from delegate_tui.launch import start_run

    root = Path(tempfile.mkdtemp(prefix="delegate-demo-"))
    plan_path = make_demo_repo(root)
    os.environ["DELEGATE_DEMO_SPEED"] = str(max(0.0, speed))
    click.echo(f"demo repository: {plan_path.parent.parent}")
    request = RunRequest(headless=headless, yes=headless or not sys.stdout.isatty(), theme=theme)
    plan = _load(str(plan_path))
    if request.yes:  # nobody at the keyboard to press r: each task retries once by itself
        plan = unattended(plan)
        click.echo("unattended: each task is retried once by itself (nobody is here to press r)")
    try:
        code = start_run(plan, request)
    except Refused as exc:
        fail(str(exc))
    repo = plan_path.parent.parent
    logs = runlog.list_run_logs(repo)
    live = bool(logs) and not final_state(logs[0])[0].finished  # detached: it goes on
    if not keep and not live:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    else:
        click.echo(f"look at the result: git -C {repo} log --graph --oneline --all")
    sys.exit(code)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def doctor(as_json: bool) -> None:
    """Report what this machine supports: git, the bubblewrap sandbox, agent CLIs.

    Exit 0 when runs can start (git 2.38 or newer); 1 otherwise. A missing sandbox
    or agent CLI is reported, not an error: only plans that need it are refused.
    """
    import shutil

    from delegate_tui.core import sandbox, workspace
    from delegate_tui.core.agents import PRESETS

    git = workspace.git_version()
    support = sandbox.probe(fresh=True)
    clis = {
        name: shutil.which(spec.command[0]) or ""
        for name, spec in PRESETS.items()
        if spec.command and not spec.command[0].startswith("{")
    }
    git_ok = git >= workspace.MIN_GIT
    if as_json:
        click.echo(
            json.dumps(
                {
                    "git": {"version": ".".join(map(str, git)), "ok": git_ok},
                    "sandbox": {
                        "ok": support.ok,
                        "bwrap": support.bwrap,
                        "version": support.version,
                        "reason": support.reason,
                    },
                    "agents": clis,
                },
                indent=2,
            )
        )
    else:
        mark = {True: "✔", False: "✘"}
        need = ".".join(map(str, workspace.MIN_GIT))
        found = f"git {'.'.join(map(str, git))}" if git > (0, 0) else "git: not found"
        click.echo(f"{mark[git_ok]} {found} (needs {need} or newer)")
        if support.ok:
            click.echo(
                f"✔ sandbox: {support.version or 'bwrap'} at {support.bwrap}; "
                "sandbox: worktree, scope and network: off work"
            )
        else:
            click.echo(f"✘ sandbox: {support.reason}; plans with sandbox: off still run")
        for name, path in clis.items():
            click.echo(f"{mark[bool(path)]} agent {name}: {path or 'not on PATH'}")
    sys.exit(EXIT_OK if git_ok else 1)


# ---------------------------------------------------------------- plans


@main.command()
@click.argument(
    "plans", metavar="PLAN...", nargs=-1, required=True, type=click.Path(dir_okay=False)
)
def validate(plans: tuple[str, ...]) -> None:
    """Check plan files; print every problem with its file, line and field."""
    from delegate_tui.core import graph
    from delegate_tui.core.plan import PlanError, load_plan

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
@click.option(
    "--review", is_flag=True, help="Open the review screen: edit, re-check, enter runs it."
)
@click.option("--theme", metavar="NAME", help="UI theme of the review screen.")
def plan_cmd(
    plan_file: str,
    isolation: str | None,
    max_parallel: int | None,
    review: bool,
    theme: str | None,
) -> None:
    """Show how PLAN will run: layers, the first batch, why others wait, time estimates."""
    plan = _load(plan_file)
    if review:
        from delegate_tui.draft import review_file

        _exit_with(lambda: review_file(Path(plan_file), theme=theme))
    from delegate_tui import report
    from delegate_tui.core.forecast import forecast

    outlook = forecast(
        plan,
        isolation=isolation or plan.isolation or "worktree",
        max_parallel=max_parallel or plan.max_parallel,
    )
    for line in report.plan_lines(plan, outlook):
        click.echo(line)


@main.command()
@click.argument("goal")
@click.option(
    "--agent",
    metavar="NAME",
    help="Agent that drafts (default: the first of claude, codex, gemini on PATH, else demo).",
)
@click.option(
    "-o", "--output", "out", metavar="FILE", help="Where the plan goes (default: plan.yaml)."
)
@click.option(
    "--repo", type=click.Path(file_okay=False), help="Repository the plan is for (default: here)."
)
@click.option(
    "--headless", is_flag=True, help="Print the plan and its validation report; no review screen."
)
@click.option(
    "--rounds",
    type=click.IntRange(1, 10),
    default=3,
    show_default=True,
    help="Answers asked of the agent at most.",
)
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
@click.option("--theme", metavar="NAME", help="UI theme of the review screen.")
def draft(goal: str, **opts: Any) -> None:
    """Draft a plan for GOAL with an agent, check it, review it, run it.

    The agent runs as a read-only consult task in a fresh worktree, asked with
    the delegation rules and the plan's JSON Schema; every problem the validator
    and batcher find goes back to it, up to --rounds answers. In a terminal the
    plan opens in the review screen, where enter starts the run; headless (or
    piped) it is printed with its report. Exit 2 if it is still invalid.
    """
    from delegate_tui.draft import run_draft

    _exit_with(lambda: run_draft(goal, **opts))


@main.command()
def schema() -> None:
    """Print the JSON Schema of plan files (for editor validation)."""
    from delegate_tui.core.plan import json_schema

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


def _read_state(run_arg: str | None, repo: str) -> tuple[RunState, ReadReport, Path]:
    from delegate_tui.core import runlog
    from delegate_tui.core.replay import final_state

    try:
        path = runlog.resolve_run(run_arg, Path(repo).resolve())
        state, reading = final_state(path)
    except runlog.LogError as exc:
        fail(str(exc))
    if not state.run_id:
        fail(f"{path}: not a delegate-tui run log (no RunStarted event)")
    return state, reading, path


@main.command()
@_run_argument
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--all",
    "every_run",
    is_flag=True,
    help="Every run of the repository: a line each, the totals, and the trend over the last runs.",
)
def stats(run_arg: str | None, repo: str, as_json: bool, every_run: bool) -> None:
    """Summarise a run: how each task ended, conflicts, time saved. RUN is an id, a folder, a
    log, or `latest`.

    With --all: one line per run of the repository (time saved, conflict and
    rework rates, the agents' cost), the totals, and a chart of those numbers
    over the last finished runs, with whether the recent ones did better.
    Drafting consults (`delegate-tui draft`) and runs where no task ran are
    listed but left out of the times, rates and trend (their cost counts).
    """
    if every_run:
        if run_arg:
            fail("stats --all reads every run of the repository: give --repo, not RUN")
        _stats_all(repo, as_json)
        return
    from delegate_tui import report
    from delegate_tui.core.metrics import stats as stats_of

    state, reading, path = _read_state(run_arg, repo)
    for message in reading.messages():
        click.echo(f"delegate-tui: {path}: {message}", err=True)
    data = stats_of(state)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for line in report.stats_lines(state, data):
        click.echo(line)


def _repo_root(repo: str) -> Path:
    """The repository ``repo`` is in (its top folder), or ``repo`` itself."""
    from delegate_tui.core import workspace

    root = Path(repo).resolve()
    return workspace.find_repo(root) or root


def _stats_all(repo: str, as_json: bool) -> None:
    from delegate_tui import report
    from delegate_tui.core import runlog
    from delegate_tui.core.history import aggregate

    top = _repo_root(repo)
    rows, skipped = report.list_runs(top)
    for reason in skipped:
        click.echo(f"delegate-tui: left out: {reason}", err=True)
    if not rows:
        fail(f"no runs in {runlog.runs_dir(top)}")
    past = aggregate([row.summary for row in rows])
    if as_json:
        data = {
            "repo": str(top),
            "runs": [
                {**row.summary.as_json(), "status": row.status, "log": str(row.log)} for row in rows
            ],
            "all": past.as_json(),
        }
        click.echo(json.dumps(data, indent=2))
        return
    for line in report.history_lines(top, rows, past):
        click.echo(line)


@main.command("report")
@_run_argument
@click.option(
    "-o",
    "--output",
    metavar="FILE",
    help="Where to write it (`-` for standard output). "
    "Default: report.html (or report.md) in the run's folder.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["html", "md"]),
    help="html: one self-contained page; md: Markdown for a pull request. "
    "Default: from FILE's suffix, else html.",
)
def report_cmd(run_arg: str | None, repo: str, output: str | None, fmt: str | None) -> None:
    """Write a report of a run to share: summary, timeline, tasks, conflicts and merges.

    The HTML page needs no network and runs no script (open it in any browser,
    attach it to a ticket); --format md writes Markdown for a pull request's
    description, with the timeline as a Mermaid chart.
    """
    from delegate_tui import share

    state, reading, path = _read_state(run_arg, repo)
    for message in reading.messages():
        click.echo(f"delegate-tui: {path}: {message}", err=True)
    if fmt is None:
        fmt = "md" if output and output.lower().endswith((".md", ".markdown")) else "html"
    text = share.render_markdown(state) if fmt == "md" else share.render_html(state)
    if output == "-":
        click.echo(text, nl=False)
        return
    target = Path(output) if output else path.parent / f"report.{fmt}"
    if target.is_dir():
        fail(f"{target}: is a folder; give a file name")
    if not target.parent.is_dir():
        fail(f"{target.parent}: no such folder")
    partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, target)  # readers never see half a report
    except OSError as exc:
        partial.unlink(missing_ok=True)
        fail(f"{target}: cannot write: {exc.strerror or exc}")
    click.echo(f"report: {target}")


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
    from delegate_tui.core import runlog
    from delegate_tui.launch import resume_run

    try:
        path = runlog.resolve_run(run_arg, Path(repo).resolve())
    except runlog.LogError as exc:
        fail(str(exc))
    request = RunRequest(headless=headless, yes=yes, kill_grace=kill_grace, theme=theme)
    _exit_with(lambda: resume_run(path, request))


def _live_run(run_arg: str | None, repo: str) -> Path:
    """The folder of the run RUN names (without RUN, or ``latest``: this repository's
    newest live run, else its newest run, which the caller then says is not live)."""
    from delegate_tui.core import runlog
    from delegate_tui.core.service import newest_live_run

    top = Path(repo).resolve()
    try:
        if run_arg in (None, "latest") and (live := newest_live_run(top)) is not None:
            return live
        return runlog.resolve_run(run_arg, top).parent
    except runlog.LogError as exc:
        fail(str(exc))


@main.command()
@_run_argument
@click.option("--theme", metavar="NAME", help="UI theme.")
def attach(run_arg: str | None, repo: str, theme: str | None) -> None:
    """Open the full-screen UI on a live run (one started in the UI or with --detach).

    Any number of terminals may attach to one run; each sees everything and may
    command it. Quitting offers to detach: the run goes on without a terminal.
    Without RUN: this repository's newest live run.
    """
    from delegate_tui.launch import attach_run

    run_dir = _live_run(run_arg, repo)
    _exit_with(lambda: attach_run(run_dir, theme=theme))


@main.command()
@_run_argument
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (the default: this machine only).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="Port to listen on (0: any free port).",
)
@click.option("--theme", metavar="NAME", help="UI theme of every tab.")
def serve(run_arg: str | None, repo: str, host: str, port: int, theme: str | None) -> None:
    """Show a live run's UI in a web browser: every tab is an attached view.

    Prints the page's URL, with a random token in it: without the token the page
    answers 403, and anyone with it can command the run. From another machine,
    forward the port over SSH (ssh -L 8000:127.0.0.1:8000 HOST). Closing a tab
    detaches it; Ctrl+C stops the page, never the run; the page stops by itself
    once the run has ended and its last tab is closed. Without RUN: this
    repository's newest live run.
    """
    from delegate_tui.web import serve_web  # aiohttp and textual-serve load for this command only

    run_dir = _live_run(run_arg, repo)
    _exit_with(lambda: serve_web(run_dir, host=host, port=port, theme=theme))


@main.command()
@_run_argument
def stop(run_arg: str | None, repo: str) -> None:
    """End a live run cleanly: agents ended (SIGTERM, then SIGKILL), the log says stopped.

    `delegate-tui resume` continues it later. Without RUN: this repository's newest
    live run.
    """
    from delegate_tui.launch import stop_run

    run_dir = _live_run(run_arg, repo)
    _exit_with(lambda: stop_run(run_dir))


@main.command("_service", hidden=True)
@click.option("--plan", "plan_path", type=click.Path(dir_okay=False))
@click.option("--resume", "log_path", type=click.Path(dir_okay=False))
@click.option("--checked", "checked", type=click.Path(dir_okay=False))
@click.option("--run-id", required=True)
@click.option("--request", "settings", required=True)
def service(
    plan_path: str | None, log_path: str | None, checked: str | None, run_id: str, settings: str
) -> None:
    """The run service's own process (started by run, demo and resume; not for people)."""
    from delegate_tui.launch import serve_run

    how, path = ("plan", plan_path) if plan_path else ("resume", log_path)
    if path is None:
        fail("_service needs --plan or --resume")
    handed = Path(checked) if checked else None
    sys.exit(serve_run(how, Path(path), run_id, json.loads(settings), handed))  # type: ignore[arg-type]


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
    from delegate_tui import report
    from delegate_tui.core import asciicast, runlog
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
    for message in source.report.messages():
        click.echo(f"delegate-tui: {path}: {message}", err=True)
    if not source.has_run:
        fail(f"{path}: not a delegate-tui run log (no RunStarted event)")
    if headless or not sys.stdout.isatty():
        if at_s is None:
            source.seek(len(source.events))
        else:
            source.seek_seconds(at_s)
        click.echo(report.describe_moment(source))
        return
    from delegate_tui.ui.app import DelegateApp

    source.seek(0)
    DelegateApp(source, theme=theme, read_only=True).run()


@main.command()
@click.argument("repo", required=False, default=".", type=click.Path(file_okay=False))
@click.option(
    "--open",
    "open_ui",
    is_flag=True,
    help="Open the runs screen (the trend chart above the list) and replay the run you pick.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--theme", metavar="NAME", help="UI theme of --open (default: your configured one).")
def runs(repo: str, as_json: bool, open_ui: bool, theme: str | None) -> None:
    """List the runs of REPO (default: here), newest first; --open picks one to replay."""
    top = _repo_root(repo)
    if open_ui:
        from delegate_tui.ui.screens.runs import browse

        browse(top, lambda log, back: _replay_until_back(log, back, theme), theme=theme)
        return
    from delegate_tui import report
    from delegate_tui.core import runlog

    rows, skipped = report.list_runs(top)
    for reason in skipped:
        click.echo(f"delegate-tui: left out: {reason}", err=True)
    if as_json:
        click.echo(json.dumps([row.as_json() for row in rows], indent=2))
        return
    if not rows:
        click.echo(f"no runs in {runlog.runs_dir(top)}")
        return
    for row in rows:
        click.echo(row.line())


def _replay_until_back(log: Path, back: Callable[[], None], theme: str | None = None) -> None:
    """Replay one run full screen; esc calls ``back`` and leaves (``runs --open``)."""
    from delegate_tui.core.replay import ReplaySource
    from delegate_tui.ui.app import DelegateApp

    source = ReplaySource.from_log(log)
    source.seek(0)
    app = DelegateApp(source, theme=theme, read_only=True)

    def leave() -> None:
        back()
        app.exit(0, return_code=0)

    app.context.back = leave
    app.run()


if __name__ == "__main__":
    main()
