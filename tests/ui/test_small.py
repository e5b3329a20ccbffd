"""Pilot tests for the smaller things an operator reads (issue 12, items 14 and 17):
the run's end as a sentence, the replay hint at 80 columns, ``F`` selecting the
failed task, details showing the prompt as sent and a shell task's command."""

from __future__ import annotations

import textwrap

import pytest

from delegate_tui.core.events import Event, Metrics, RunFinished, TaskFinished, TaskSkipped
from delegate_tui.core.plan import parse_plan
from delegate_tui.core.replay import ReplaySource
from delegate_tui.ui.screens.dialogs import TextScreen
from delegate_tui.ui.widgets.replay_bar import ReplayBar
from tests.ui.conftest import Running, StartApp
from tests.ui.fake_source import FakeSource


def finished_partly() -> FakeSource:
    source = FakeSource()
    source.start_run()
    source.start_task("contract")
    source.succeed_task("contract")
    source.start_task("schema", at=5.5)
    source.fail_task("schema", at=7.0)
    for task in ("service", "login-ui", "hotfix", "endpoints"):
        source.emit(TaskSkipped(task=task, reason="skipped by the operator"), 8.0)
    return source


@pytest.mark.asyncio
async def test_the_end_of_a_run_reads_as_a_sentence(start_app: StartApp) -> None:
    source = finished_partly()
    async with start_app(source, size=(120, 32)) as ui:
        source.emit(RunFinished(status="partial", metrics=Metrics()), 9.0)
        await ui.settle()
        toasts = " ".join(ui.toasts())
        assert "run partial." not in toasts and "The run partial" not in toasts
        assert "The run ended partly done: 1 of 6 merged" in toasts, toasts
        await ui.select("endpoints")  # skipped: no output, so no pane
        empty = str(ui.screen.query_one("#panes-empty").render())
        assert "The run ended partly done: 1 of 6 merged" in empty, empty


def recorded(live: FakeSource) -> list[Event]:
    events: list[Event] = []
    live.subscribe(events.append)
    return events


@pytest.mark.asyncio
async def test_the_replay_hint_fits_80_columns(start_app: StartApp) -> None:
    live = FakeSource()
    events = recorded(live)
    live.mid_run()
    source = ReplaySource(events)
    source.playing = False
    async with start_app(source, size=(80, 24), read_only=True) as ui:
        bar = ui.screen.query_one(ReplayBar)
        hint = bar.render_line(1).text.rstrip()
        assert "…" not in hint and hint.endswith("conflict"), hint
        assert "F C" in hint and "p " in hint


@pytest.mark.asyncio
async def test_f_in_a_replay_selects_the_failed_task(start_app: StartApp) -> None:
    live = FakeSource()
    events = recorded(live)
    live.start_run()
    live.start_task("contract")
    live.succeed_task("contract")
    live.start_task("schema", at=5.5)
    live.fail_task("schema", at=7.0)
    source = ReplaySource(events)
    source.playing = False
    async with start_app(source, size=(120, 32), read_only=True) as ui:
        await ui.press("less_than_sign")
        assert ui.screen.selected != "schema"
        await ui.press("F")
        assert source.state.tasks["schema"].status == "failed"
        assert ui.screen.selected == "schema"


PLAN = textwrap.dedent(
    """\
    name: outputs
    tasks:
      - {id: api, agent: claude, prompt: Write the API}
      - id: client
        agent: claude
        depends_on: [api]
        prompt: "Build a client for this API: {{ outputs.api }}"
      - {id: lint, agent: shell, command: [ruff, check, src/my app]}
    """
)


@pytest.mark.asyncio
async def test_details_show_the_prompt_as_sent_and_a_shell_tasks_command(
    start_app: StartApp,
) -> None:
    source = FakeSource(parse_plan(PLAN, "plan.yaml"))
    source.start_run()
    source.start_task("api")
    source.emit(
        TaskFinished(task="api", attempt=1, status="succeeded", output="GET /users returns a list"),
        5.0,
    )
    async with start_app(source, size=(120, 40)) as ui:
        await ui.select("client")
        await ui.press("enter")
        assert isinstance(ui.app.screen, TextScreen)
        body = str(ui.app.screen.body)
        assert "{{" not in body and "GET /users returns a list" in body, body
        await ui.press("escape")
        await ui.select("lint")
        await ui.press("enter")
        body = str(ui.app.screen.body)
        assert "ruff check 'src/my app'" in body, body


LONG = "/tmp/delegate-demo-5259131i/shop/.delegate/worktrees/20261202-175632-1e54/pricing-1"


@pytest.mark.asyncio
async def test_long_paths_in_details_wrap_at_a_slash(start_app: StartApp) -> None:
    from rich.console import Console

    from delegate_tui.core.events import TaskPreparing

    source = FakeSource()
    source.start_run()
    source.emit(TaskPreparing(task="contract", attempt=1, workdir=LONG, branch="b"), 1.0)
    async with start_app(source, size=(80, 24)) as ui:
        await ui.select("contract")
        await ui.press("enter")
        assert isinstance(ui.app.screen, TextScreen)
        console = Console(width=50, color_system=None)
        with console.capture() as captured:
            console.print(ui.app.screen.body)
        lines = captured.get().splitlines()
        start = next(i for i, line in enumerate(lines) if line.strip().startswith("worktree"))
        pieces = [lines[start][12:]]
        while not pieces[-1].rstrip().endswith("pricing-1"):
            assert pieces[-1].endswith("/"), pieces  # broken after a slash, not mid-name
            line = lines[start + len(pieces)]
            assert line.startswith(" " * 12) and line[12] != " ", line  # under the value
            pieces.append(line[12:])
        assert "".join(p.strip() for p in pieces) == LONG


async def details_lines(ui: Running, task: str) -> list[str]:
    """The lines of ``task``'s details dialog, each with its spacing made single."""
    await ui.select(task)
    await ui.press("enter")
    assert isinstance(ui.app.screen, TextScreen)
    return [" ".join(line.split()) for line in str(ui.app.screen.body).splitlines()]


SANDBOXED = textwrap.dedent(
    """\
    name: boxed
    sandbox: scope
    tasks:
      - {id: api, agent: claude, prompt: Write the API, edits: ['src/api/**'], network: 'off'}
      - {id: docs, agent: claude, prompt: Write the docs, sandbox: 'off'}
    """
)


@pytest.mark.asyncio
async def test_details_show_a_tasks_sandbox_what_it_could_write_and_what_was_refused(
    start_app: StartApp,
) -> None:
    from delegate_tui.core.events import SandboxDenied, TaskSandboxed

    source = FakeSource(parse_plan(SANDBOXED, "plan.yaml"))
    source.start_run()
    source.emit(
        TaskSandboxed(
            task="api",
            attempt=1,
            mode="scope",
            network=False,
            writable=("/repo/.delegate/worktrees/r/api-1/src/api", "/home/op/.claude"),
        ),
        0.9,
    )
    source.start_task("api")
    source.emit(SandboxDenied(task="api", attempt=1, path="/repo/README.md"), 1.5)
    async with start_app(source, size=(120, 40)) as ui:
        lines = await details_lines(ui, "api")
        assert "sandbox scope, network off" in lines, lines
        assert "writable /repo/.delegate/worktrees/r/api-1/src/api" in lines
        assert "writable /home/op/.claude" in lines
        assert "sandboxed refused writes to /repo/README.md" in lines
        await ui.press("escape")
        docs = await details_lines(ui, "docs")
        assert not [ln for ln in docs if "sandbox" in ln], "a task with its sandbox off shows none"


def test_details_say_why_a_refused_key_was_not_retried() -> None:
    """The task's details use the health report's words, retries included."""
    from delegate_tui.ui.details import task_details
    from tests.core.test_batching import ended_attempt

    state = ended_attempt("codex-auth-fail.jsonl", "codex", "authentication failed: 401")
    text = str(task_details(state, "t"))
    assert "not retried automatically: the same key would be refused again" in text, text


@pytest.mark.asyncio
async def test_details_list_the_writes_the_guard_refused(start_app: StartApp) -> None:
    from delegate_tui.core.events import GuardDenied

    source = FakeSource(parse_plan(SANDBOXED, "plan.yaml"))
    source.start_run()
    source.start_task("api")
    source.emit(
        GuardDenied(
            task="api",
            attempt=1,
            tool="Write",
            path="src/web/app.py",
            reason="delegate-tui guard: src/web/app.py belongs to task web",
        ),
        1.5,
    )
    async with start_app(source, size=(120, 40)) as ui:
        lines = await details_lines(ui, "api")
        assert (
            "guarded Write src/web/app.py (outside its scope: refused before it happened)" in lines
        ), lines


@pytest.mark.asyncio
async def test_tools_the_cli_refused_are_in_the_details_and_stats(start_app: StartApp) -> None:
    """With `tools: edits` a CLI refuses the agent's shell commands: the details and
    `stats --json` list them, so the operator knows to allow them (`tools: all`)."""
    from delegate_tui.core.events import AgentResult
    from delegate_tui.core.metrics import stats

    source = FakeSource(parse_plan(SANDBOXED, "plan.yaml"))
    source.start_run()
    source.start_task("api")
    source.emit(
        AgentResult(task="api", attempt=1, ok=True, text="done", denials=("Bash: npm test",)),
        2.0,
    )
    async with start_app(source, size=(120, 40)) as ui:
        lines = await details_lines(ui, "api")
        assert "refused Bash: npm test" in lines, lines
    assert stats(source.state)["tasks"]["api"]["denials"] == ["Bash: npm test"]  # type: ignore[index]
