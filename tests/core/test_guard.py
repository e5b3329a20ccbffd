"""The scope guard: the decision, and the hook process as claude runs it (JSON in, JSON out).

The real claude CLI refusing a write through this hook against a loopback stand-in
is in tests/agents/.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from delegate_tui.core.agents import PRESETS, build_argv
from delegate_tui.core.guard import MARK, GuardSpec, decide, install, read_denials

ROOT = "/runs/wt/client-1"
SPEC = GuardSpec(
    root=ROOT,
    task="client",
    edits=("web/**",),
    owners={"contract": ("api/schema.py",), "db": ("db/**",)},
    shared_files=("package.json",),
)


def test_writes_inside_the_scope_pass_and_others_are_refused_with_the_owner() -> None:
    assert decide(SPEC, "Write", {"file_path": f"{ROOT}/web/app.ts"}).allowed
    assert decide(SPEC, "Edit", {"file_path": "web/relative.ts"}).allowed
    assert decide(SPEC, "Read", {"file_path": f"{ROOT}/api/schema.py"}).allowed  # not a write
    verdict = decide(SPEC, "Edit", {"file_path": f"{ROOT}/api/schema.py"})
    assert not verdict.allowed and verdict.path == "api/schema.py"
    assert verdict.reason == (
        f"{MARK}: api/schema.py belongs to task contract; "
        "say in your final message what you need instead"
    )
    shared = decide(SPEC, "MultiEdit", {"file_path": f"{ROOT}/package.json"})
    assert "shared config file that task client does not own" in shared.reason
    loose = decide(SPEC, "NotebookEdit", {"notebook_path": f"{ROOT}/notes/x.ipynb"})
    assert "outside what task client may change (web/**)" in loose.reason


def test_outside_the_worktree_git_data_and_consult_tasks_are_refused() -> None:
    escape = decide(SPEC, "Write", {"file_path": f"{ROOT}/../other-1/web/x.ts"})
    assert not escape.allowed and "outside your worktree" in escape.reason
    assert not decide(SPEC, "Write", {"file_path": f"{ROOT}/.git/config"}).allowed
    consult = GuardSpec(root=ROOT, task="review", consult=True)
    verdict = decide(consult, "Write", {"file_path": f"{ROOT}/web/app.ts"})
    assert not verdict.allowed and "consult task" in verdict.reason
    # Nothing declared: the guard holds nothing back (the prompt says so instead).
    assert decide(GuardSpec(root=ROOT, task="free"), "Write", {"file_path": "a/b"}).allowed


def test_the_hook_answers_claude_and_records_the_refusal(tmp_path: Path) -> None:
    settings, denials = install(SPEC, tmp_path / "guard", "client-1")
    hook = json.loads(settings)["hooks"]["PreToolUse"][0]
    assert hook["matcher"] == "Write|Edit|MultiEdit|NotebookEdit"
    command = hook["hooks"][0]["command"]

    def run(event: dict[str, object]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-c", command],
            input=json.dumps(event),
            capture_output=True,
            text=True,
            timeout=30,
        )

    allowed = run({"tool_name": "Write", "tool_input": {"file_path": f"{ROOT}/web/a.ts"}})
    assert allowed.returncode == 0 and allowed.stdout == ""
    refused = run({"tool_name": "Edit", "tool_input": {"file_path": f"{ROOT}/db/m.sql"}})
    assert refused.returncode == 0
    answer = json.loads(refused.stdout)["hookSpecificOutput"]
    assert answer["hookEventName"] == "PreToolUse" and answer["permissionDecision"] == "deny"
    assert "db/m.sql belongs to task db" in answer["permissionDecisionReason"]
    assert read_denials(denials) == [
        {"tool": "Edit", "path": "db/m.sql", "reason": answer["permissionDecisionReason"]}
    ]
    assert read_denials(denials, seen=1) == []


def test_a_guard_that_cannot_read_its_file_refuses(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "delegate_tui.guard", str(tmp_path / "missing.json")],
        input=json.dumps({"tool_name": "Write", "tool_input": {"file_path": "/x"}}),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert json.loads(out.stdout)["hookSpecificOutput"]["permissionDecision"] == "deny"


def test_claude_gets_the_guard_as_its_settings() -> None:
    argv = build_argv(
        PRESETS["claude"], prompt="p", task_id="t", workdir="", last_message="", guard_settings="{}"
    )
    assert argv[argv.index("--settings") + 1] == "{}" and argv[-2:] == ["--", "p"]
    codex = build_argv(
        PRESETS["codex"], prompt="p", task_id="t", workdir="", last_message="", guard_settings="{}"
    )
    assert "--settings" not in codex  # codex has no hook for it: detection and the sandbox


def test_a_hook_that_cannot_start_refuses(tmp_path: Path) -> None:
    """No Python where the hook expects one (a sandbox that hides it): the write is
    refused, not let through with a hook error."""
    settings, _ = install(SPEC, tmp_path / "guard", "client-1")
    command = json.loads(settings)["hooks"]["PreToolUse"][0]["hooks"][0]["command"]
    broken = command.replace(sys.executable, "/nonexistent/python", 1)
    out = subprocess.run(
        ["bash", "-c", broken],
        input=json.dumps({"tool_name": "Write", "tool_input": {"file_path": f"{ROOT}/web/a"}}),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0
    answer = json.loads(out.stdout)["hookSpecificOutput"]
    assert (
        answer["permissionDecision"] == "deny"
        and "could not start" in answer["permissionDecisionReason"]
    )
