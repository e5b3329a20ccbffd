"""``delegate-tui draft`` with the real claude, codex and gemini CLIs against the stand-ins.

The command runs as a user runs it; the engine starts the real CLI (its preset, in
a fresh worktree, as a consult task) and the CLI asks a loopback stand-in of its
vendor's API, which answers with the scripted plan: a valid one; one with a
dependency cycle and two parallel writers of package.json, which the validator
sends back and the second answer fixes; one that never becomes valid (exit 2).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from delegate_tui.core.plan import load_plan

standins = pytest.importorskip(
    "tests.standins.fixtures", reason="the vendor stand-ins (tests/standins) are not here"
)
from tests.standins.clis import AGENTS  # noqa: E402
from tests.standins.fixtures import AgentRunner  # noqa: E402
from tests.standins.script import Reply, Usage  # noqa: E402

pytestmark = pytest.mark.e2e

CLIS = ["claude", "codex", "gemini"]

GOOD = """\
name: Rate limiting
description: Contract first, then code and tests
tasks:
  - id: contract
    why: The code and its tests build on it.
    prompt: Write the rate limit contract to docs/limits.md.
    edits: [docs/limits.md]
    criteria: [{run: test -s docs/limits.md}]
  - id: code
    why: The limiter owns one new file.
    depends_on: [contract]
    prompt: Implement the limiter in src/limits.py.
    edits: [src/limits.py]
    criteria: [{run: python3 -m py_compile src/limits.py}]
  - id: ui
    why: The only writer of package.json.
    depends_on: [contract]
    prompt: Show the limits in the UI and add its dependency.
    edits: [ui/limits.js, package.json]
    criteria: [{run: test -s ui/limits.js}]
"""

# The cycle: code waits for tests and tests for code. The parallel writers: ui and
# ui-client both add a dependency to package.json, and neither waits for the other.
BAD = """\
name: Rate limiting
tasks:
  - id: contract
    prompt: Write the rate limit contract to docs/limits.md.
    edits: [docs/limits.md]
    criteria: [{run: test -s docs/limits.md}]
  - id: code
    depends_on: [contract, tests]
    prompt: Implement the limiter in src/limits.py.
    edits: [src/limits.py]
    criteria: [{run: test -s src/limits.py}]
  - id: tests
    depends_on: [code]
    prompt: Test the limiter.
    edits: [tests/test_limits.py]
    criteria: [{run: test -s tests/test_limits.py}]
  - id: ui
    depends_on: [contract]
    prompt: Show the limits in the UI.
    edits: [ui/limits.js, package.json]
    criteria: [{run: test -s ui/limits.js}]
  - id: ui-client
    depends_on: [contract]
    prompt: Add the API client.
    edits: [ui/client.js, package.json]
    criteria: [{run: test -s ui/client.js}]
"""

FIXED = BAD.replace("depends_on: [contract, tests]", "depends_on: [contract]").replace(
    "  - id: ui-client\n    depends_on: [contract]", "  - id: ui-client\n    depends_on: [ui]"
)


def answer(plan: str) -> Reply:
    return Reply(
        f"Here is the plan.\n\n```yaml\n{plan}```\n",
        usage=Usage(input_tokens=3000, output_tokens=400),
    )


def scratch_repo(root: Path) -> Path:
    root.mkdir(parents=True)
    for args in (
        ["init", "-q", "--initial-branch=main"],
        ["config", "user.name", "Test Operator"],
        ["config", "user.email", "test@example.invalid"],
    ):
        subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)
    (root / "README.md").write_text("# shop\n")
    (root / "package.json").write_text('{"name": "shop"}\n')
    (root / ".gitignore").write_text("/plans/\n")
    subprocess.run(["git", "add", "-A"], cwd=root, check=True, capture_output=True)
    subprocess.run(["git", "commit", "-q", "-m", "init"], cwd=root, check=True)
    return root


def draft(
    agents: AgentRunner, name: str, key: str, repo: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """``delegate-tui draft`` in ``repo`` with the CLI ``name`` pointed at the stand-in."""
    env = AGENTS[name].prepare(agents.home(name), agents.server.url, key)
    env["PATH"] = f"{agents.clis[name].parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        [sys.executable, "-m", "delegate_tui", "draft", *args, "--agent", name, "--headless"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("name", CLIS)
def test_a_valid_plan_is_written_with_its_comments_and_cost(
    name: str, agents: AgentRunner, tmp_path: Path
) -> None:
    repo = scratch_repo(tmp_path / "repo")
    talk = agents.server.converse([answer(GOOD)])
    done = draft(agents, name, talk.key, repo, "add rate limiting", "-o", "plans/rl.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert talk.turns_taken == 1
    asked = talk.main_requests()[0].text
    assert "add rate limiting" in asked and "package.json" in asked  # the goal and the rules
    plan = load_plan(repo / "plans" / "rl.yaml")
    assert plan.ids == ["contract", "code", "ui"]
    assert plan.agent == name and plan.repo_path() == repo.resolve()
    text = (repo / "plans" / "rl.yaml").read_text()
    assert "  # · why: The only writer of package.json." in text
    assert f"round 1: {name} answered" in done.stderr and ": valid" in done.stderr
    assert "tok" in done.stderr  # the round's tokens, from the CLI's stream
    assert yaml.safe_load(done.stdout) == yaml.safe_load(text)


@pytest.mark.parametrize("name", CLIS)
def test_a_cycle_and_two_package_json_writers_go_back_and_round_two_fixes_them(
    name: str, agents: AgentRunner, tmp_path: Path
) -> None:
    repo = scratch_repo(tmp_path / "repo")
    talk = agents.server.converse([answer(BAD), answer(FIXED)])
    done = draft(agents, name, talk.key, repo, "add rate limiting", "-o", "plans/rl.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert talk.turns_taken == 2
    second = talk.main_requests()[1].text
    assert "dependency cycle: code -> tests -> code" in second
    assert "'ui-client' shares config file package.json with ui" in second
    plan = load_plan(repo / "plans" / "rl.yaml")
    assert plan.task("ui-client").depends_on == ("ui",)
    assert "round 1: " in done.stderr and "2 problems, sent back" in done.stderr
    assert "round 2: " in done.stderr


def test_a_plan_that_never_becomes_valid_exits_2_with_the_report(
    agents: AgentRunner, tmp_path: Path
) -> None:
    repo = scratch_repo(tmp_path / "repo")
    talk = agents.server.converse([answer(BAD)] * 3)
    done = draft(agents, "claude", talk.key, repo, "add rate limiting", "-o", "plans/rl.yaml")
    assert done.returncode == 2, done.stdout + done.stderr
    assert talk.turns_taken == 3
    assert not (repo / "plans" / "rl.yaml").exists()
    assert "# ✘ still invalid after 3 round(s); nothing written:" in done.stdout
    assert (
        "plans/rl.yaml:11: tasks[1].depends_on: dependency cycle: code -> tests -> code"
        in done.stdout
    )
    runs = json.loads(
        subprocess.run(
            [sys.executable, "-m", "delegate_tui", "runs", "--json"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert len(runs) == 3 and all(r["status"] == "succeeded" for r in runs)
