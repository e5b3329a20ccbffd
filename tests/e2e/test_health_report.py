"""End to end: the health report of a run with one task of each ending (issue 21).

Real processes and real git: a task that merges, one whose criteria fail, one that
times out, one the operator kills, one whose merge conflicts, one stopped at its
budget (an agent printing codex's stream). ``stats --json``, ``stats``, the headless
printer and the verdict say how each ended.
"""

from __future__ import annotations

import asyncio
import io
import json
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from delegate_tui.core.engine import Engine
from delegate_tui.core.metrics import stats
from delegate_tui.core.plan import Plan
from delegate_tui.headless import Printer
from tests.conftest import Recorder, run_cli, run_engine
from tests.e2e.test_agent_streams import AGENT

pytestmark = pytest.mark.e2e
PlanWriter = Callable[..., Plan]


def health_plan(repo: Path, tmp: Path) -> str:
    script = tmp / "agent.py"
    script.write_text(AGENT)
    tasks = """\
    - id: ok
      agent: shell
      edits: [ok.txt]
      command: "echo ok > ok.txt"
    - id: checked
      agent: shell
      edits: [checked.txt]
      command: "echo c > checked.txt"
      criteria:
        - run: test -f does-not-exist
    - id: slow
      agent: shell
      edits: [slow.txt]
      timeout: 1s
      command: "sleep 30"
    - id: victim
      agent: shell
      edits: [victim.txt]
      command: "sleep 30"
    - id: first
      agent: shell
      edits: [same.txt]
      command: "echo first > same.txt"
    - id: second
      agent: shell
      edits: [second.txt]
      command: "sleep 1.5; echo second > same.txt"
    - id: spender
      agent: streamer
      model: gpt-5
      prompt: spend
      edits: [src/**]
      budget_usd: 1.0
    """
    return (
        f"name: health\nrepo: {repo}\nmax_parallel: 8\n"
        f'agents:\n  streamer:\n    command: ["{{python}}", "{script}", "spend"]\n'
        "    stream: codex\n"
        "tasks:\n" + textwrap.indent(textwrap.dedent(tasks), "  ")
    )


def test_the_health_report_says_how_each_task_ended(
    repo: Path, write_plan: PlanWriter, tmp_path: Path
) -> None:
    plan = write_plan(health_plan(repo, tmp_path))
    printed = io.StringIO()

    async def kill_victim(engine: Engine, recorder: Recorder) -> None:
        while (task := engine.state.tasks.get("victim")) is None or task.status != "running":
            await asyncio.sleep(0.05)
        assert engine.kill("victim") == ""

    def during(engine: Engine, recorder: Recorder) -> object:
        engine.subscribe(Printer(engine.state, printed))
        return kill_victim(engine, recorder)

    state, _, _ = run_engine(plan, during=during)
    data = stats(state)
    tasks = data["tasks"]
    assert isinstance(tasks, dict)
    endings = {t: info["ending"] for t, info in tasks.items()}
    assert endings == {
        "ok": "merged",
        "checked": "criteria-failed",
        "slow": "timed-out",
        "victim": "killed",
        "first": "merged",
        "second": "merge-conflict",
        "spender": "over-budget",
    }
    words = {t: info["ending_text"] for t, info in tasks.items()}
    assert words["ok"] == "completed and merged"
    assert words["checked"] == "criteria failed: test -f does-not-exist (exit 1)"
    assert words["slow"] == "timed out after 1s"
    assert words["victim"] == "killed by the operator"
    assert words["second"] == "merge conflict in same.txt"
    assert words["spender"].startswith("over budget: spent $")
    verdict = str(data["verdict"])
    assert verdict.startswith("2 of 7 merged; 1 merge conflict left for you in second; ")
    assert "1 failed its criteria: checked" in verdict
    assert "1 timed out: slow" in verdict and "1 killed: victim" in verdict
    assert "1 over budget: spender" in verdict
    # The headless printer's last lines: the verdict, then a line per task.
    tail = printed.getvalue().split("run partial", 1)[1]
    assert verdict in tail
    assert "✔ ok: completed and merged" in tail
    assert "✘ checked: criteria failed: test -f does-not-exist (exit 1)" in tail
    assert "✘ second: merge conflict in same.txt" in tail
    # `stats` (text and --json) read the same account back from the log.
    home = tmp_path / "home"
    home.mkdir()
    shown = run_cli("stats", "--repo", str(repo), cwd=repo, home=home)
    assert shown.returncode == 0, shown.stderr
    assert verdict in shown.stdout
    line = next(x for x in shown.stdout.splitlines() if x.strip().startswith("checked "))
    assert line.rstrip().endswith("criteria failed: test -f does-not-exist (exit 1)")
    as_json = run_cli("stats", "--json", "--repo", str(repo), cwd=repo, home=home)
    assert json.loads(as_json.stdout)["tasks"]["victim"]["ending"] == "killed"
