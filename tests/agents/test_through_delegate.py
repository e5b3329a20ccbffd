"""The real claude, codex and gemini CLIs run by delegate-tui, against loopback stand-ins.

Each CLI is a preset as a user runs it: its structured stream is read live, its tool
call lands in a real worktree and is merged, its tokens (and claude's cost) reach
``stats --json``. Then what a paying user needs of it: a budget that stops a task, a
rejected key that stops it early, a retry that continues the conversation, a prompt
that starts with ``-``, codex on pipes with nothing on its stdin, and the scope guard
refusing a claude or gemini write outside the task's edits (and off when the plan says).
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from delegate_tui.core.events import (
    AgentSession,
    AgentToolStarted,
    ConflictDetected,
    GuardDenied,
    RetryScheduled,
    TaskExited,
    TaskMerged,
    TaskStarted,
)
from delegate_tui.core.metrics import stats
from delegate_tui.core.plan import Plan
from delegate_tui.core.prompts import SCOPE_HEADER
from delegate_tui.ui.transcript import render
from tests.conftest import git, run_engine
from tests.standins.clis import AGENTS
from tests.standins.script import Conversation, ReadFile, Reply, RunCommand, Usage, WriteFile
from tests.standins.server import StandInServer

pytestmark = pytest.mark.e2e
PlanWriter = Callable[..., Plan]
CLIS = ("claude", "codex", "gemini")


@pytest.fixture
def use_cli(
    agent_clis: dict[str, Path],
    standin: StandInServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[..., None]]:
    """Point this process's environment (what delegate-tui's agents inherit) at the
    stand-in for one CLI and conversation, with the CLIs first on PATH."""

    def use(name: str, talk: Conversation, max_retries: int | None = 0) -> None:
        home = tmp_path / f"home-{name}"
        home.mkdir(exist_ok=True)
        env = AGENTS[name].prepare(home, standin.url, talk.key, max_retries=max_retries)
        for key in list(os.environ):
            if key not in env:
                monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        bin_dir = str(agent_clis[name].parent)
        monkeypatch.setenv("PATH", bin_dir + os.pathsep + env.get("PATH", ""))

    yield use


def plan_text(repo: Path, agent: str, task: str, **top: object) -> str:
    head = f"name: real CLIs\nrepo: {repo}\n" + "".join(f"{k}: {v}\n" for k, v in top.items())
    return head + "tasks:\n" + textwrap.indent(textwrap.dedent(task).format(agent=agent), "  ")


WRITE_TASK = """\
- id: hello
  agent: {agent}
  prompt: "- write src/hello.txt\\n- then say done"
  edits: [src/**]
"""


@pytest.mark.parametrize("cli", CLIS)
def test_a_real_cli_writes_through_its_tool_and_reports_its_tokens(
    cli: str,
    repo: Path,
    write_plan: PlanWriter,
    standin: StandInServer,
    use_cli: Callable[..., None],
) -> None:
    talk = standin.converse(
        [
            WriteFile("src/hello.txt", "hello\n", usage=Usage(input_tokens=1000, output_tokens=50)),
            Reply("done", usage=Usage(input_tokens=1200, output_tokens=10)),
        ]
    )
    use_cli(cli, talk)
    plan = write_plan(plan_text(repo, cli, WRITE_TASK))
    state, recorder, _ = run_engine(plan)
    task = state.tasks["hello"]
    assert task.status == "succeeded", task.attempts[-1].reason
    assert git(repo, "show", f"{state.integration_branch}:src/hello.txt") == "hello\n"
    # The prompt starting with "-" reached the model as a prompt, not as an option.
    assert "- write src/hello.txt" in talk.main_requests()[0].text
    tools = [e for e in recorder.events if isinstance(e, AgentToolStarted)]
    assert [(t.paths, t.writes) for t in tools] == [(("src/hello.txt",), True)]
    assert "→ " in render(tools[0]).decode() and "src/hello.txt" in render(tools[0]).decode()
    (session,) = [e for e in recorder.events if isinstance(e, AgentSession)]
    assert session.session_id
    data = stats(state)["tasks"]["hello"]  # type: ignore[index]
    tokens = data["tokens"]
    # Both answers' tokens (and, for gemini, its router's few): at least what was scripted.
    assert tokens["input"] >= 2200 and tokens["output"] >= 60, tokens
    if cli == "claude":
        assert data["cost_source"] == "cli" and data["cost_usd"] > 0
    assert task.output == "done"  # the dependents' output: its final words, not JSON


def test_claude_stops_at_its_budget_and_the_task_says_so(
    repo: Path, write_plan: PlanWriter, standin: StandInServer, use_cli: Callable[..., None]
) -> None:
    big = Usage(input_tokens=2_000_000, output_tokens=100_000)
    talk = standin.converse([WriteFile("src/a.txt", "a\n", usage=big), Reply("done", usage=big)])
    use_cli("claude", talk)
    task = WRITE_TASK + "  budget_usd: 0.01\n"
    plan = write_plan(plan_text(repo, "claude", task))
    state, _, _ = run_engine(plan)
    attempt = state.tasks["hello"].attempts[-1]
    assert state.tasks["hello"].status == "over-budget"
    assert attempt.reason.startswith("over budget: spent $")
    assert attempt.argv[attempt.argv.index("--max-budget-usd") + 1] == "0.01"


def test_codex_over_its_budget_is_stopped_by_delegate_tui(
    repo: Path, write_plan: PlanWriter, standin: StandInServer, use_cli: Callable[..., None]
) -> None:
    big = Usage(input_tokens=2_000_000, output_tokens=100_000)
    talk = standin.converse([WriteFile("src/a.txt", "a\n", usage=big), Reply("done", usage=big)])
    use_cli("codex", talk)
    plan = write_plan(plan_text(repo, "codex", WRITE_TASK + "  budget_usd: 1.0\n"))
    state, _, _ = run_engine(plan)
    task = state.tasks["hello"]
    assert task.status == "over-budget", task.attempts[-1].reason
    assert task.attempts[-1].reason.startswith("over budget: spent $")
    assert task.cost_source == "estimated" and (task.cost_usd or 0) > 1.0


def test_a_rejected_key_stops_claude_in_seconds_not_minutes(
    repo: Path, write_plan: PlanWriter, standin: StandInServer, use_cli: Callable[..., None]
) -> None:
    talk = standin.converse([], reject=401)
    use_cli("claude", talk, max_retries=None)  # claude's own default: 10 retries, ~3 minutes
    plan = write_plan(plan_text(repo, "claude", WRITE_TASK))
    state, recorder, _ = run_engine(plan)
    task = state.tasks["hello"]
    assert task.status == "failed"
    assert task.attempts[-1].reason.startswith("authentication failed"), task.attempts[-1].reason
    (exited,) = [e for e in recorder.events if isinstance(e, TaskExited)]
    assert exited.duration_s < 60


@pytest.mark.parametrize("cli", CLIS)
def test_a_retry_continues_the_agents_conversation(
    cli: str,
    repo: Path,
    write_plan: PlanWriter,
    standin: StandInServer,
    use_cli: Callable[..., None],
) -> None:
    talk = standin.converse(
        [
            WriteFile("src/hello.txt", "hello\n"),
            Reply("done"),
            WriteFile("src/second.txt", "second\n"),
            Reply("done again"),
        ]
    )
    use_cli(cli, talk)
    task = WRITE_TASK + "  retries: 1\n  criteria:\n    - run: test -f src/second.txt\n"
    plan = write_plan(plan_text(repo, cli, task))
    state, recorder, _ = run_engine(plan)
    first, second = state.tasks["hello"].attempts
    (retry,) = [e for e in recorder.events if isinstance(e, RetryScheduled)]
    assert retry.resume_session
    if cli == "codex":
        assert second.argv[:3] == ("codex", "exec", "resume")
        assert second.argv[-3:-1] == (first.session_id, "--")
    else:
        # gemini keeps sessions per project folder, and the retry runs in a new
        # worktree: the session was handed over to it (agents.gemini_hand_over).
        assert second.argv[second.argv.index("--resume") + 1] == first.session_id
    # Only what happened since goes to the conversation, which still holds the task,
    # and who owns what now (owners change between attempts).
    assert second.prompt.startswith("--- delegate-tui: your last attempt ended: criteria failed")
    started = [e for e in recorder.events if isinstance(e, TaskStarted) and e.attempt == 2]
    assert SCOPE_HEADER in started[0].prompt and "You may change: src/**" in started[0].prompt
    assert SCOPE_HEADER in talk.main_requests()[2].text
    resumed = talk.main_requests()[2].text
    assert "- write src/hello.txt" in resumed, "the earlier turns came back with the session"
    if cli == "claude":  # claude itself tells the model the conversation moved
        assert f"Primary working directory: {second.workdir} (was {first.workdir})" in resumed
    assert state.tasks["hello"].status == "succeeded", second.reason
    assert git(repo, "show", f"{state.integration_branch}:src/second.txt") == "second\n"


GUARDED_TASKS = """\
- id: hello
  agent: {agent}
  prompt: write the two files
  edits: [src/ok.txt]
- id: owner
  agent: shell
  command: "sleep 0"
  depends_on: [hello]
  edits: [src/owned/**]
"""
#: Each CLI's write tool, as the guard names a refusal.
WRITE_TOOL = {"claude": "Write", "gemini": "write_file"}


@pytest.mark.parametrize("cli", sorted(WRITE_TOOL))
def test_the_guard_refuses_a_write_outside_its_scope(
    cli: str,
    repo: Path,
    write_plan: PlanWriter,
    standin: StandInServer,
    use_cli: Callable[..., None],
) -> None:
    talk = standin.converse(
        [
            WriteFile("src/owned/api.py", "X = 1\n"),
            WriteFile("src/ok.txt", "fine\n"),
            Reply("done"),
        ]
    )
    use_cli(cli, talk)
    operator_settings = Path(os.environ["HOME"], ".gemini", "settings.json")
    before = operator_settings.read_text() if cli == "gemini" else ""
    plan = write_plan(plan_text(repo, cli, GUARDED_TASKS))
    state, recorder, _ = run_engine(plan)
    assert not (repo / "src" / "owned").exists()
    denied = [e for e in recorder.events if isinstance(e, GuardDenied)]
    assert [(d.tool, d.path) for d in denied] == [(WRITE_TOOL[cli], "src/owned/api.py")]
    assert "belongs to task owner" in denied[0].reason
    # The model was told why, in the request after the refused call.
    assert "belongs to task owner" in talk.main_requests()[1].text
    assert state.tasks["hello"].status == "succeeded", state.tasks["hello"].attempts[-1].reason
    integration = state.integration_branch
    assert git(repo, "show", f"{integration}:src/ok.txt") == "fine\n"
    assert "src/owned/api.py" not in git(repo, "ls-tree", "-r", "--name-only", integration)
    data = stats(state)
    assert data["tasks"]["hello"]["guard_denials"] == [f"{WRITE_TOOL[cli]} src/owned/api.py"]  # type: ignore[index]
    assert "1 write(s) outside scope blocked by the guard" in str(data["verdict"])
    if cli == "gemini":
        # Its hook came from a home of the attempt's own: the operator's settings and the
        # worktree hold none of it.
        assert operator_settings.read_text() == before
        assert "delegate_tui.guard" not in before
        assert not (Path(state.tasks["hello"].attempts[-1].workdir) / ".gemini").exists()


def test_with_the_guard_off_gemini_gets_no_guard_home(
    repo: Path, write_plan: PlanWriter, standin: StandInServer, use_cli: Callable[..., None]
) -> None:
    talk = standin.converse([WriteFile("src/owned/api.py", "X = 1\n"), Reply("done")])
    use_cli("gemini", talk)
    plan = write_plan(plan_text(repo, "gemini", GUARDED_TASKS, guard="off"))
    state, recorder, engine = run_engine(plan)
    assert not [e for e in recorder.events if isinstance(e, GuardDenied)]
    assert not (engine.run_dir / "guard").exists(), "no guard file, no home with a hook"
    assert state.tasks["hello"].status == "succeeded", state.tasks["hello"].attempts[-1].reason
    # Unguarded, the write outside its edits went through (detection reports it after).
    assert "src/owned/api.py" in git(repo, "ls-tree", "-r", "--name-only", state.integration_branch)


def test_guard_off_runs_claude_without_the_hook(
    repo: Path, write_plan: PlanWriter, standin: StandInServer, use_cli: Callable[..., None]
) -> None:
    """``guard: off`` on the task: no ``--settings`` hook, so the same write outside its
    edits goes through (and is left to live detection: an out-of-scope finding)."""
    talk = standin.converse([WriteFile("src/owned/api.py", "X = 1\n"), Reply("done")])
    use_cli("claude", talk)
    tasks = """\
    - id: hello
      agent: {agent}
      prompt: write the file
      edits: [src/ok.txt]
      guard: off
    - id: owner
      agent: shell
      command: "sleep 0"
      depends_on: [hello]
      edits: [src/owned/**]
    """
    plan = write_plan(plan_text(repo, "claude", tasks))
    state, recorder, engine = run_engine(plan)
    (attempt,) = state.tasks["hello"].attempts
    assert attempt.argv and "--settings" not in attempt.argv
    assert not list((engine.run_dir / "guard").glob("hello-*")), "no hook installed"
    assert not [e for e in recorder.events if isinstance(e, GuardDenied)]
    integration = state.integration_branch
    assert git(repo, "show", f"{integration}:src/owned/api.py") == "X = 1\n"


def test_a_read_seen_only_in_claudes_stream_makes_a_stale_input_and_restarts_it(
    repo: Path,
    write_plan: PlanWriter,
    standin: StandInServer,
    use_cli: Callable[..., None],
    tmp_path: Path,
) -> None:
    """Issue 19: the client declares no reads; claude's Read of src/schema.py in its stream
    is what makes schema's merge a stale input. It is restarted on the new tip with the
    merged diff in its prompt, and its work merges."""
    (repo / "src" / "schema.py").write_text('FIELDS = ("id",)\n')
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "schema")
    read = tmp_path / "client-has-read"
    talk = standin.converse(
        [
            ReadFile("src/schema.py"),
            RunCommand(f"touch {read}; sleep 30"),  # working on it, until it is ended
            WriteFile("src/client.py", 'FIELDS = ("id", "email")\n'),  # the restart
            Reply("done"),
        ]
    )
    use_cli("claude", talk)
    tasks = f"""\
    - id: schema
      agent: shell
      edits: [src/schema.py]
      command: "while [ ! -f {read} ]; do sleep 0.1; done; echo 'FIELDS = (1,)' > src/schema.py"
    - id: client
      agent: claude-tests
      prompt: write the client for src/schema.py
      edits: [src/client.py]
      on_stale_input: restart
    """
    agents = "agents:\n  claude-tests: {extends: claude, tools: all}\n"
    plan = write_plan(plan_text(repo, "claude", tasks).replace("tasks:\n", agents + "tasks:\n"))
    state, recorder, _ = run_engine(plan)
    assert not plan.task("client").reads, "nothing declared: the stream is the only source"
    stale = [
        e for e in recorder.events if isinstance(e, ConflictDetected) and e.kind == "stale-input"
    ]
    assert [(e.tasks, e.paths) for e in stale] == [(("client", "schema"), ("src/schema.py",))]
    merged = next(e for e in recorder.events if isinstance(e, TaskMerged) and e.task == "schema")
    assert 0 <= stale[0].ts - merged.ts < 1.0, "found within a second of the merge"
    first, second = state.tasks["client"].attempts
    assert "src/schema.py" in first.read and first.status == "killed"
    assert "schema merged a change to src/schema.py" in second.prompt
    assert "+FIELDS = (1,)" in second.prompt  # the diff itself
    # The restarted claude got that prompt.
    assert "schema merged a change to src/schema.py" in talk.main_requests()[2].text
    assert state.tasks["client"].status == "succeeded", second.reason
    integration = state.integration_branch
    assert git(repo, "show", f"{integration}:src/client.py") == 'FIELDS = ("id", "email")\n'
    assert git(repo, "show", f"{integration}:src/schema.py") == "FIELDS = (1,)\n"


@pytest.mark.parametrize("cli", CLIS)
def test_what_each_real_cli_reads_joins_its_read_set(
    cli: str,
    repo: Path,
    write_plan: PlanWriter,
    standin: StandInServer,
    use_cli: Callable[..., None],
) -> None:
    """claude's Read, gemini's read_file and codex's `cat` of a file are seen in their
    streams, and the file is in the attempt's read set (what stale inputs are found from)."""
    (repo / "src" / "schema.py").write_text('FIELDS = ("id",)\n')
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "schema")
    talk = standin.converse([ReadFile("src/schema.py"), Reply("read it")])
    use_cli(cli, talk)
    task = """\
    - id: reader
      agent: {agent}
      prompt: read src/schema.py
      edits: [src/client.py]
    """
    state, _, _ = run_engine(write_plan(plan_text(repo, cli, task)))
    attempt = state.tasks["reader"].attempts[-1]
    assert state.tasks["reader"].status == "succeeded", attempt.reason
    assert "src/schema.py" in attempt.read, attempt.transcript
    # The file's content went back to the model with the tool's result.
    assert "FIELDS" in talk.main_requests()[1].text
