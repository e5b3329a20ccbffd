"""The real claude, codex and gemini CLIs, run by delegate-tui under ``sandbox: scope``.

Each CLI talks to its vendor's stand-in (``tests/standins``), whose scripted "model"
asks for one shell command: a write inside the task's scope, one outside it inside
the worktree, one into the operator's checkout. The CLI still answers, the write in
scope merges, the other two fail with the kernel's ``Read-only file system``, which
delegate-tui finds in the CLI's structured stream and logs as ``SandboxDenied``.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from delegate_tui.core import sandbox
from delegate_tui.core.events import GuardDenied, SandboxDenied, TaskOutput, TaskSandboxed
from delegate_tui.core.plan import load_plan
from tests.conftest import run_engine
from tests.standins.clis import AGENTS, VENDOR_PREFIXES
from tests.standins.script import Reply, RunCommand, WriteFile
from tests.standins.server import StandInServer

SUPPORT = sandbox.probe()
pytestmark = pytest.mark.skipif(
    not SUPPORT.ok, reason=f"no sandbox on this machine: {SUPPORT.reason}"
)


def show(repo: Path, rev: str, path: str) -> str | None:
    proc = subprocess.run(
        ["git", "show", f"{rev}:{path}"], cwd=repo, capture_output=True, text=True
    )
    return proc.stdout if proc.returncode == 0 else None


def sandboxed_run(
    name: str,
    turns: list[object],
    repo: Path,
    tmp_path: Path,
    agent_clis: dict[str, Path],
    standin: StandInServer,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[Any, Any, Any, dict[str, str], Path]:
    """Run one task (edits ``src/api/**``, ``sandbox: scope``) with ``name`` on ``turns``."""
    talk = standin.converse(turns)  # type: ignore[arg-type]
    home = tmp_path / "home"
    env = AGENTS[name].prepare(home, standin.url, talk.key)
    for var in list(os.environ):
        if var.startswith(VENDOR_PREFIXES):
            monkeypatch.delenv(var)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setenv("PATH", f"{agent_clis[name].parent}{os.pathsep}{env['PATH']}")
    plan_path = tmp_path / "plan.yaml"
    plan_path.write_text(
        textwrap.dedent(
            f"""\
            name: sandboxed {name}
            repo: {repo}
            sandbox: scope
            agents:
              {name}-shell: {{extends: {name}, tools: all}}
            tasks:
              - id: api
                agent: {name}-shell
                edits: ["src/api/**"]
                prompt: Add src/api/x.py
            """
        )
    )
    state, recorder, _ = run_engine(load_plan(plan_path))
    return state, recorder, talk, env, home


@pytest.mark.parametrize("name", ["claude", "codex", "gemini"])
def test_a_sandboxed_cli_answers_writes_its_scope_and_its_stray_writes_fail(
    name: str,
    repo: Path,
    tmp_path: Path,
    agent_clis: dict[str, Path],
    standin: StandInServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shared = repo / "src" / "shared.py"
    command = (
        "mkdir -p src/api && echo 'X = 1' > src/api/x.py && echo in-scope-ok; "
        f"echo hacked > README.md; echo hacked > {shared}; true"
    )
    state, recorder, talk, env, home = sandboxed_run(
        name,
        [RunCommand(command), Reply("Done: src/api/x.py written.")],
        repo,
        tmp_path,
        agent_clis,
        standin,
        monkeypatch,
    )
    out = b"".join(e.data for e in recorder.of(TaskOutput)).decode(errors="replace")
    task = state.tasks["api"]
    assert task.status == "succeeded", out[-3000:]
    assert talk.main_requests(), f"{name} asked its stand-in"
    assert "Read-only file system" in out, out[-6000:] + repr(
        [
            t[t.find("function_call_output") - 100 : t.find("function_call_output") + 700]
            for t in (r.text for r in talk.main_requests())
        ]
    )
    tip = state.integration_branch
    assert show(repo, tip, "src/api/x.py") == "X = 1\n"
    assert show(repo, tip, "README.md") == "# test repo\n"
    assert "hacked" not in shared.read_text()
    refused = [e.path for e in recorder.of(SandboxDenied)]
    assert "README.md" in refused and str(shared) in refused, (refused, out[-3000:])
    (boxed,) = recorder.of(TaskSandboxed)
    assert boxed.mode == "scope"
    # Its CLI's own state stayed writable where the CLI keeps it.
    homes = sandbox.agent_homes(name, env, home)
    assert any(str(h) in boxed.writable for h in homes), json.dumps(boxed.writable)


@pytest.mark.parametrize("name", ["claude", "gemini"])
def test_in_a_sandbox_the_scope_guard_still_refuses_and_says_so(
    name: str,
    repo: Path,
    tmp_path: Path,
    agent_clis: dict[str, Path],
    standin: StandInServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The guard's hook runs inside the sandbox: it must still record its refusals (and
    gemini, run with a guard home of its own, still works there)."""
    state, recorder, _, _, _ = sandboxed_run(
        name,
        [
            WriteFile("src/api/x.py", "X = 1\n"),
            WriteFile("README.md", "guarded\n"),
            Reply("Done."),
        ],
        repo,
        tmp_path,
        agent_clis,
        standin,
        monkeypatch,
    )
    assert state.tasks["api"].status == "succeeded"
    guarded = [e.path for e in recorder.of(GuardDenied)]
    assert guarded == ["README.md"], guarded
    assert show(repo, state.integration_branch, "src/api/x.py") == "X = 1\n"
    assert show(repo, state.integration_branch, "README.md") == "# test repo\n"
