"""The scope guard: the decision, and the hook process as claude and gemini run it (JSON in,
JSON out), and the home gemini is given it in.

The real claude and gemini CLIs refusing a write through this hook against a loopback
stand-in are in tests/agents/.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from delegate_tui.core import sandbox
from delegate_tui.core.agents import PRESETS, build_argv, guard_environment
from delegate_tui.core.guard import (
    GEMINI_HOOK_NAME,
    MARK,
    GuardSpec,
    decide,
    hook_call,
    install,
    main,
    read_denials,
)

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
    assert "--settings" not in codex  # no hook for codex (core/guard.py says why)


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


#: What gemini 0.61 sends its BeforeTool hook for a write_file call (captured from the CLI).
GEMINI_EVENT = {
    "session_id": "f3fa8f20-d672-472e-940f-8fcf1fac76d5",
    "transcript_path": "/home/u/.gemini/tmp/work/chats/session-f3fa8f20.jsonl",
    "cwd": ROOT,
    "hook_event_name": "BeforeTool",
    "timestamp": "2026-12-03T11:19:50.109Z",
    "tool_name": "write_file",
    "tool_input": {"file_path": f"{ROOT}/db/m.sql", "content": "x\n"},
}


def test_geminis_hook_input_is_read_and_its_write_tools_decided() -> None:
    assert hook_call(GEMINI_EVENT) == ("write_file", GEMINI_EVENT["tool_input"])
    assert hook_call({"tool_name": "replace", "tool_input": "not a dict"}) == ("replace", {})
    assert hook_call(["not", "an", "object"]) == ("", {})
    refused = decide(SPEC, *hook_call(GEMINI_EVENT))
    assert not refused.allowed and refused.path == "db/m.sql"
    assert "db/m.sql belongs to task db" in refused.reason
    edit = {"file_path": "api/schema.py", "old_string": "a", "new_string": "b"}
    assert "belongs to task contract" in decide(SPEC, "replace", edit).reason
    assert decide(SPEC, "write_file", {"file_path": "web/ok.ts", "content": ""}).allowed
    assert decide(SPEC, "read_file", {"file_path": f"{ROOT}/db/m.sql"}).allowed  # a read


def _run_hook(command: str, event: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command], input=json.dumps(event), capture_output=True, text=True, timeout=30
    )


def _gemini_hook(home: str) -> dict[str, object]:
    settings = json.loads((Path(home) / ".gemini" / "settings.json").read_text())
    (entry,) = [
        e for e in settings["hooks"]["BeforeTool"] if e["hooks"][0]["name"] == GEMINI_HOOK_NAME
    ]
    return entry  # type: ignore[no-any-return]


def test_the_hook_answers_gemini_and_records_the_refusal(tmp_path: Path) -> None:
    home, denials = install(SPEC, tmp_path / "guard", "client-1", "gemini", tmp_path / "none")
    entry = _gemini_hook(home)
    assert entry["matcher"] == "^(write_file|replace)$"
    command = entry["hooks"][0]["command"]  # type: ignore[index]
    allowed = _run_hook(command, {**GEMINI_EVENT, "tool_input": {"file_path": "web/a.ts"}})
    assert allowed.returncode == 0 and allowed.stdout == ""
    refused = _run_hook(command, GEMINI_EVENT)
    assert refused.returncode == 0
    answer = json.loads(refused.stdout)
    assert answer["decision"] == "deny" and "db/m.sql belongs to task db" in answer["reason"]
    assert read_denials(denials) == [
        {"tool": "write_file", "path": "db/m.sql", "reason": answer["reason"]}
    ]


def test_a_gemini_hook_that_cannot_start_or_read_its_file_refuses(tmp_path: Path) -> None:
    home, _ = install(SPEC, tmp_path / "guard", "client-1", "gemini")
    command = _gemini_hook(home)["hooks"][0]["command"]  # type: ignore[index]
    broken = _run_hook(command.replace(sys.executable, "/nonexistent/python", 1), GEMINI_EVENT)
    answer = json.loads(broken.stdout)
    assert answer["decision"] == "deny" and "could not start" in answer["reason"]
    code, out = main([str(tmp_path / "missing.json"), "gemini"], json.dumps(GEMINI_EVENT))
    assert code == 0 and json.loads(out)["decision"] == "deny"
    assert main([str(tmp_path / "missing.json"), "nobody"], "{}") == (1, "")  # the fallback


def test_geminis_guard_home_links_the_operators_files_and_adds_the_hook(tmp_path: Path) -> None:
    operator = tmp_path / "home" / ".gemini"
    (operator / "tmp").mkdir(parents=True)
    (operator / "oauth_creds.json").write_text("{}")
    own_hook = {"matcher": "run_shell_command", "hooks": [{"type": "command", "command": "x"}]}
    mine = (
        "// the operator's settings, with comments as gemini allows\n"
        '{"model": {"name": "gemini-9"}, /* kept */ "hooks": {"BeforeTool": ['
        + json.dumps(own_hook)
        + ']}, "hooksConfig": {"disabled": ["'
        + GEMINI_HOOK_NAME
        + '"]}}'
    )
    (operator / "settings.json").write_text(mine)
    home, _ = install(SPEC, tmp_path / "guard", "client-1", "gemini", operator)
    dot = Path(home) / ".gemini"
    assert (dot / "oauth_creds.json").resolve() == (operator / "oauth_creds.json").resolve()
    assert (dot / "tmp").is_symlink() and (dot / "tmp").resolve() == (operator / "tmp").resolve()
    settings = json.loads((dot / "settings.json").read_text())
    assert not (dot / "settings.json").is_symlink()
    assert settings["model"] == {"name": "gemini-9"}
    assert settings["hooks"]["BeforeTool"][1] == own_hook  # theirs still run, after ours
    assert settings["hooksConfig"] == {"enabled": True, "disabled": []}
    assert (operator / "settings.json").read_text() == mine  # theirs untouched
    # Their hooks turned off stay off; the guard's runs.
    (operator / "settings.json").write_text(
        json.dumps({"hooks": {"BeforeTool": [own_hook]}, "hooksConfig": {"enabled": False}})
    )
    home, _ = install(SPEC, tmp_path / "guard", "client-2", "gemini", operator)
    settings = json.loads((Path(home) / ".gemini" / "settings.json").read_text())
    assert [e["hooks"][0].get("name") for e in settings["hooks"]["BeforeTool"]] == [
        GEMINI_HOOK_NAME
    ]
    # In a sandbox, both its home and the operator's folder its links lead to are writable.
    env = guard_environment(PRESETS["gemini"], home)
    assert env == {"GEMINI_CLI_HOME": home}
    homes = sandbox.agent_homes("gemini", env, tmp_path / "home")
    assert homes == (Path(home) / ".gemini", operator)


def test_gemini_gets_the_guard_as_its_home_not_its_arguments() -> None:
    argv = build_argv(
        PRESETS["gemini"], prompt="p", task_id="t", workdir="", last_message="", guard_settings="/h"
    )
    assert argv == build_argv(
        PRESETS["gemini"], prompt="p", task_id="t", workdir="", last_message=""
    )
    assert guard_environment(PRESETS["gemini"], "/h") == {"GEMINI_CLI_HOME": "/h"}
    assert guard_environment(PRESETS["gemini"], None) == {}  # guard: off
    assert guard_environment(PRESETS["claude"], "{}") == {}


def test_geminis_guard_home_is_private_and_what_gemini_made_goes_home_after(
    tmp_path: Path,
) -> None:
    """On a first run the operator has no ~/.gemini yet: what gemini makes in the guard's
    home (its projects.json, a tmp/ folder) belongs in theirs, not in the run folder; the
    copy of their settings (tokens, at times) is theirs to read only."""
    from delegate_tui.core.guard import gemini_home_return

    operator = tmp_path / "home" / ".gemini"
    home, _ = install(SPEC, tmp_path / "guard", "client-1", "gemini", operator)
    dot = Path(home) / ".gemini"
    assert operator.is_dir() and operator.stat().st_mode & 0o777 == 0o700
    assert Path(home).stat().st_mode & 0o777 == 0o700
    assert (dot / "settings.json").stat().st_mode & 0o777 == 0o600
    (dot / "projects.json").write_text('{"projects": {}}')
    (dot / "tmp" / "work").mkdir(parents=True)
    (operator / "oauth_creds.json").write_text("theirs")
    (dot / "oauth_creds.json").write_text("made in the run")

    assert gemini_home_return(Path(home)) == ["projects.json", "tmp"]
    assert (operator / "projects.json").read_text() == '{"projects": {}}'
    assert (operator / "tmp" / "work").is_dir()
    assert (operator / "oauth_creds.json").read_text() == "theirs", "what is there stays"
    assert not (operator / "settings.json").exists(), "the guard's settings stay in the run"
