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
elif mode == "spend":
    for turn in range(1, 100):
        say({"type": "item.started", "item": {"id": f"c{turn}", "type": "command_execution",
             "command": "make", "status": "in_progress"}})
        say({"type": "turn.completed", "usage": {"input_tokens": 400_000 * turn,
             "cached_input_tokens": 0, "output_tokens": 0}})
        time.sleep(0.2)
elif mode == "auth":
    for n in range(1, 100):
        say({"type": "error", "message": f"Reconnecting... {n}/5 (unexpected status 401 Unauthorized)"})
        time.sleep(0.2)
"""


def plan_for(repo: Path, tmp: Path, mode: str, extra: str = "") -> str:
    script = tmp / "agent.py"
    script.write_text(AGENT)
    return textwrap.dedent(
        f"""\
        name: streams
        repo: {repo}
        agents:
          streamer:
            command: ["{{python}}", "{script}", "{mode}"]
            stream: codex
        tasks:
          - id: t
            agent: streamer
            model: gpt-5
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
