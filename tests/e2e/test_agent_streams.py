"""End to end: an agent that speaks a structured stream, read live by the real engine.

The agent here is a plan's own agent (``agents: {x: {command: [...], stream: codex}}``,
as a team's wrapper around a CLI would be): a real process in a real worktree that
prints codex's ``exec --json`` events and writes a real file. The real CLIs against
loopback stand-ins of their vendors' APIs are in tests/agents/.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from delegate_tui.core.events import AgentToolStarted, AgentUsage, Notice, TaskExited
from delegate_tui.core.metrics import stats
from delegate_tui.core.plan import Plan
from delegate_tui.report import stats_lines
from tests.conftest import git, run_engine

pytestmark = pytest.mark.e2e
PlanWriter = Callable[..., Plan]

AGENT = r"""
import json, os, sys, time
mode = sys.argv[1]
def say(obj):
    print(json.dumps(obj), flush=True)
print("codex 0.0 starting (a line that is not JSON)", flush=True)
say({"type": "thread.started", "thread_id": "thread-" + os.environ["DELEGATE_ATTEMPT"]})
if mode == "work":
    os.makedirs("src", exist_ok=True)
    with open("src/made.py", "w") as fh:
        fh.write("MADE = True\n")
    path = os.path.join(os.getcwd(), "src/made.py")
    say({"type": "item.started", "item": {"id": "i1", "type": "file_change",
         "changes": [{"path": path, "kind": "add"}], "status": "in_progress"}})
    say({"type": "item.completed", "item": {"id": "i1", "type": "file_change",
         "changes": [{"path": path, "kind": "add"}], "status": "completed"}})
    say({"type": "item.completed", "item": {"id": "i2", "type": "agent_message",
         "text": "Made src/made.py."}})
    say({"type": "turn.completed", "usage": {"input_tokens": 2000, "cached_input_tokens": 1000,
         "output_tokens": 100, "reasoning_output_tokens": 50}})
elif mode == "announce":
    # A write it says it made, then a long think before it ends.
    os.makedirs("src", exist_ok=True)
    with open("src/made.py", "w") as fh:
        fh.write("MADE = True\n")
    change = [{"path": os.path.join(os.getcwd(), "src/made.py"), "kind": "add"}]
    say({"type": "item.started", "item": {"id": "i1", "type": "file_change",
         "changes": change, "status": "in_progress"}})
    say({"type": "item.completed", "item": {"id": "i1", "type": "file_change",
         "changes": change, "status": "completed"}})
    time.sleep(3)
    say({"type": "turn.completed", "usage": {"input_tokens": 10, "output_tokens": 1}})
elif mode == "spend":
    for turn in range(1, 100):
        say({"type": "item.started", "item": {"id": f"c{turn}", "type": "command_execution",
             "command": "make", "status": "in_progress"}})
        say({"type": "turn.completed", "usage": {"input_tokens": 400_000 * turn,
             "cached_input_tokens": 0, "output_tokens": 0}})
        time.sleep(0.2)
elif mode == "lastline":
    # Its final figures on a last line with no newline after it, then it exits 0.
    with open("src.txt", "w") as fh:
        fh.write("done\n")
    sys.stdout.write(json.dumps({"type": "turn.completed", "usage": {
        "input_tokens": 2_000_000, "cached_input_tokens": 0, "output_tokens": 0}}))
    sys.stdout.flush()
elif mode == "turns":
    # A command a turn, and usage only at the very end (as codex and gemini do).
    for turn in range(1, 51):
        say({"type": "item.started", "item": {"id": f"c{turn}", "type": "command_execution",
             "command": "make", "status": "in_progress"}})
        say({"type": "item.completed", "item": {"id": f"c{turn}", "type": "command_execution",
             "command": "make", "exit_code": 0, "status": "completed"}})
        time.sleep(0.2)
    say({"type": "turn.completed", "usage": {"input_tokens": 10, "output_tokens": 1}})
elif mode == "stdin":
    # As codex on pipes does: read stdin to its end before starting.
    print("Reading additional input from stdin...", flush=True)
    got = sys.stdin.read()
    say({"type": "item.completed", "item": {"id": "m", "type": "agent_message",
         "text": f"stdin gave {len(got)} bytes"}})
    say({"type": "turn.completed", "usage": {"input_tokens": 10, "output_tokens": 1}})
elif mode == "auth":
    for n in range(1, 100):
        say({"type": "error", "message": f"Reconnecting... {n}/5 (unexpected status 401 Unauthorized)"})
        time.sleep(0.2)
"""


def plan_for(repo: Path, tmp: Path, mode: str, extra: str = "", model: str = "gpt-5") -> str:
    script = tmp / "agent.py"
    script.write_text(AGENT)
    codex_home = tmp / "codex-home"  # no config.toml: no model configured there either
    codex_home.mkdir(exist_ok=True)
    return textwrap.dedent(
        f"""\
        name: streams
        repo: {repo}
        agents:
          streamer:
            command: ["{{python}}", "{script}", "{mode}"]
            stream: codex
            env: {{CODEX_HOME: "{codex_home}"}}
        tasks:
          - id: t
            agent: streamer
            model: {model or '""'}
            prompt: make the file
            edits: [src/**]
        """
    ) + textwrap.indent(textwrap.dedent(extra), "    ")


def test_a_streaming_agent_shows_its_tools_tokens_and_cost(
    repo: Path, tmp_path: Path, write_plan: PlanWriter
) -> None:
    plan = write_plan(plan_for(repo, tmp_path, "work"))
    state, recorder, _ = run_engine(plan)
    assert state.tasks["t"].status == "succeeded"
    assert git(repo, "show", f"{state.integration_branch}:src/made.py") == "MADE = True\n"
    tools = [e for e in recorder.events if isinstance(e, AgentToolStarted)]
    assert [(t.name, t.paths, t.writes) for t in tools] == [("apply_patch", ("src/made.py",), True)]
    attempt = state.tasks["t"].attempts[-1]
    assert attempt.session_id == "thread-1" and attempt.wrote == ["src/made.py"]
    # The dependents' output is the agent's final message, not its JSON.
    assert state.tasks["t"].output == "Made src/made.py."
    data = stats(state)
    assert data["tokens"] == {"input": 1000, "cached": 1000, "output": 150}
    # gpt-5 list price: 1000 x 1.25 + 1000 x 0.125 + 150 x 10, per million
    assert data["cost_usd"] == pytest.approx(0.002875) and data["cost_source"] == "estimated"


def test_a_task_over_its_budget_is_stopped_with_the_figure(
    repo: Path, tmp_path: Path, write_plan: PlanWriter
) -> None:
    plan = write_plan(plan_for(repo, tmp_path, "spend", "budget_usd: 1.0\n"))
    state, recorder, _ = run_engine(plan)
    task = state.tasks["t"]
    assert task.status == "over-budget"
    # 400k tokens at $1.25 a million a turn: $0.50, $1.00, then $1.50 is over.
    assert task.attempts[-1].reason == "over budget: spent $1.50 of $1.00"
    (exited,) = [e for e in recorder.events if isinstance(e, TaskExited)]
    assert exited.reason == "stopped" and exited.duration_s < 20
    usage = [e for e in recorder.events if isinstance(e, AgentUsage)]
    assert len(usage) == 3, "stopped at the first figure over the budget"


def test_a_run_over_its_budget_starts_nothing_new(
    repo: Path, tmp_path: Path, write_plan: PlanWriter
) -> None:
    text = plan_for(repo, tmp_path, "work").replace(
        "name: streams\n", "name: streams\nbudget_usd: 0.001\n"
    )
    text += textwrap.indent(
        textwrap.dedent(
            """\
            - id: later
              agent: streamer
              model: gpt-5
              prompt: more
              depends_on: [t]
              edits: [lib/**]
            """
        ),
        "  ",
    )
    plan = write_plan(text)
    state, recorder, _ = run_engine(plan)
    assert state.tasks["t"].status == "succeeded"
    assert state.tasks["later"].status == "pending" and not state.tasks["later"].attempts
    told = [e.message for e in recorder.events if isinstance(e, Notice) and e.level == "error"]
    assert any(m.startswith("the run's budget is spent ($0.0029 of $0.0010)") for m in told), told
    assert state.paused and state.status in ("failed", "partial")


def test_an_agent_whose_key_is_refused_is_stopped_early(
    repo: Path, tmp_path: Path, write_plan: PlanWriter
) -> None:
    plan = write_plan(plan_for(repo, tmp_path, "auth", "timeout: 60s\n"))
    state, recorder, _ = run_engine(plan)
    task = state.tasks["t"]
    assert task.status == "failed"
    assert task.attempts[-1].reason.startswith("authentication failed: the API answered HTTP 401")
    (exited,) = [e for e in recorder.events if isinstance(e, TaskExited)]
    assert exited.duration_s < 15, "stopped after a few refusals, not at its timeout"
    assert json.dumps(stats(state)["tasks"]["t"]["reason"]).count("authentication") == 1  # type: ignore[index]


def test_a_last_line_without_a_newline_counts_against_the_budget(
    repo: Path, tmp_path: Path, write_plan: PlanWriter
) -> None:
    """The parser reads a last line with no newline only when the stream closes: its
    figures are checked against the budget like any other."""
    plan = write_plan(plan_for(repo, tmp_path, "lastline", "budget_usd: 1.0\n"))
    state, recorder, _ = run_engine(plan)
    task = state.tasks["t"]
    # 2M input tokens at gpt-5's $1.25 a million.
    assert task.status == "over-budget", task.attempts[-1].reason
    assert task.attempts[-1].reason == "over budget: spent $2.50 of $1.00"
    (exited,) = [e for e in recorder.events if isinstance(e, TaskExited)]
    assert exited.reason == "exit" and exited.exit_code == 0, "it ended by itself"


def test_an_agent_over_its_turns_is_stopped_before_it_reports_usage(
    repo: Path, tmp_path: Path, write_plan: PlanWriter
) -> None:
    """codex and gemini send usage (with their turns) only at their end: the turns the
    parser counts stop the agent mid-run, at the first tool call past the limit."""
    plan = write_plan(plan_for(repo, tmp_path, "turns", "max_turns: 2\ntimeout: 60s\n"))
    state, recorder, _ = run_engine(plan)
    task = state.tasks["t"]
    assert task.status == "over-budget"
    assert task.attempts[-1].reason == "over budget: 3 turns of 2"
    (exited,) = [e for e in recorder.events if isinstance(e, TaskExited)]
    assert exited.reason == "stopped" and exited.duration_s < 8, exited.duration_s
    started = [e for e in recorder.events if isinstance(e, AgentToolStarted)]
    assert 3 <= len(started) < 10, len(started)
    assert not [e for e in recorder.events if isinstance(e, AgentUsage)], "stopped before usage"


def test_a_budget_that_cannot_price_its_agent_says_so_once(
    repo: Path, tmp_path: Path, write_plan: PlanWriter
) -> None:
    """codex with no model named anywhere is "codex", which has no price: neither the
    task's nor the run's budget can act on its spend. The run says so once, and stats
    mark the total as partial."""
    text = plan_for(repo, tmp_path, "work", "budget_usd: 1.0\n", model="")
    plan = write_plan(text.replace("name: streams\n", "name: streams\nbudget_usd: 5.0\n"))
    state, recorder, _ = run_engine(plan)
    assert state.tasks["t"].status == "succeeded"
    told = [e.message for e in recorder.events if isinstance(e, Notice) and "no price" in e.message]
    assert len(told) == 1, told
    assert told[0].startswith(
        "t: no price known for 'codex': its budget ($1.00) cannot stop it and the run's "
        "budget ($5.00) does not count its spend; name the model (the task's `model:`)"
    ), told[0]
    data = stats(state)
    assert data["cost_usd"] is None and data["cost_partial"] is True
    assert data["unpriced_models"] == ["codex"]
    assert data["tasks"]["t"]["cost_partial"] is True  # type: ignore[index]
    assert "; no price for codex" in "\n".join(stats_lines(state, data))
    # A priced model says nothing of the kind.
    priced = write_plan(plan_for(repo, tmp_path, "work", "budget_usd: 1.0\n"))
    state, recorder, _ = run_engine(priced)
    assert not [e for e in recorder.events if isinstance(e, Notice) and "no price" in e.message]
    assert stats(state)["cost_partial"] is False


def test_an_agent_of_its_own_that_prints_codex_json_gets_an_empty_stdin(
    repo: Path, tmp_path: Path, write_plan: PlanWriter
) -> None:
    """codex reads its stdin to the end before it starts: a plan's own command that
    prints codex's stream (a wrapper around it) on pipes gets /dev/null, as the preset
    does, not a pipe kept open for input that never comes."""
    text = plan_for(repo, tmp_path, "stdin", "timeout: 20s\n").replace(
        "stream: codex\n", "stream: codex\n    transport: pipes\n"
    )
    state, recorder, _ = run_engine(write_plan(text))
    task = state.tasks["t"]
    assert task.status == "succeeded", task.attempts[-1].reason
    assert task.output == "stdin gave 0 bytes"
    (exited,) = [e for e in recorder.events if isinstance(e, TaskExited)]
    assert exited.reason == "exit" and exited.duration_s < 10


def test_a_file_the_agent_says_it_wrote_is_looked_at_at_once(
    repo: Path, tmp_path: Path, write_plan: PlanWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stream names the file before the watcher would see it (here it sees nothing:
    no file events, no first look, no reconcile): its change is found while the agent
    still runs, not only when it ends."""
    from delegate_tui.core import watcher
    from delegate_tui.core.events import FilesChanged

    monkeypatch.setattr(
        watcher.WorktreeWatcher.__init__,
        "__kwdefaults__",
        {"reconcile_s": 600.0, "first_look_s": 600.0, "tick_s": 0.25},
    )
    plan = write_plan(plan_for(repo, tmp_path, "announce"))
    state, recorder, _ = run_engine(plan)
    assert state.tasks["t"].status == "succeeded"
    # Its last words (the usage) come after its 3 s think, before it exits.
    (last_words,) = [e for e in recorder.events if isinstance(e, AgentUsage)]
    seen = [
        e
        for e in recorder.events
        if isinstance(e, FilesChanged) and [f.path for f in e.files] == ["src/made.py"]
    ]
    assert seen and seen[0].seq < last_words.seq, "found while the agent ran"
