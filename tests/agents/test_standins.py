"""The real claude, codex and gemini CLIs against the loopback stand-ins of their vendors' APIs.

Each CLI runs in its structured mode in a scratch git repository with a scratch HOME, as
delegate-tui's presets will run it: it writes a file through its own tool call, fails on a
rejected key, and resumes a session with the earlier history. These tests pin what the
stand-ins must do for the CLIs and what the CLIs print (the streams the parsers read);
``DELEGATE_TUI_RECORD_STREAMS=tests/streams`` saves those streams (tests/streams/README.md).
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.standins import anthropic, gemini, openai
from tests.standins.clis import AGENTS, CliRun, run
from tests.standins.fixtures import AgentRunner, save_stream
from tests.standins.script import Fail, Reply, Request, RunCommand, Turn, Usage, WriteFile

pytestmark = pytest.mark.e2e

CLIS = ["claude", "codex", "gemini"]

# A prompt that starts with "-", as a Markdown list or front matter does: the argument forms
# (`--` before it for claude and codex, `--prompt=` for gemini) must keep it a prompt.
PROMPT = "- write notes/hello.txt\n- then say done"

WRITE_USAGE = Usage(input_tokens=1000, output_tokens=50, cache_read=200, cache_write=300)
FINAL_USAGE = Usage(input_tokens=1200, output_tokens=10, cache_read=400, reasoning=7)


def scratch_repo(root: Path) -> Path:
    root.mkdir(parents=True)
    for args in (
        ["init", "-q", "--initial-branch=main"],
        ["config", "user.name", "Test Operator"],
        ["config", "user.email", "test@example.invalid"],
    ):
        subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)
    (root / "README.md").write_text("# scratch\n")
    (root / "notes").mkdir()
    subprocess.run(["git", "add", "-A"], cwd=root, check=True, capture_output=True)
    subprocess.run(["git", "commit", "-q", "-m", "init"], cwd=root, check=True)
    return root


def user_texts(name: str, request: Request) -> list[str]:
    if name == "claude":
        return anthropic.user_texts(request)
    if name == "codex":
        return openai.input_texts(request)
    return gemini.user_texts(request)


def final_event(run: CliRun) -> dict[str, Any]:
    events = run.events()
    assert events, run.describe()
    return events[-1]


def write_script(path: Path) -> list[Turn]:
    return [
        WriteFile(str(path), "hello from the stand-in\n", usage=WRITE_USAGE),
        Reply("done", usage=FINAL_USAGE),
    ]


@pytest.mark.parametrize("name", CLIS)
def test_cli_writes_a_file_through_its_own_tool_and_reports_the_scripted_tokens(
    name: str, agents: AgentRunner, tmp_path: Path
) -> None:
    repo = scratch_repo(tmp_path / "repo")
    target = repo / "notes" / "hello.txt"
    talk = agents.server.converse(write_script(target))

    done = agents.run(name, talk, AGENTS[name].write_args(PROMPT), cwd=repo, record=f"{name}-write")

    assert done.returncode == 0, done.describe()
    assert target.read_text() == "hello from the stand-in\n"
    assert talk.turns_taken == 2 and talk.overruns == 0, talk
    first, second = talk.main_requests()[:2]
    assert any(PROMPT in text for text in user_texts(name, first)), first.text[:2000]
    # the second call carries the tool's result back to the model
    assert "hello.txt" in second.text and len(second.text) > len(first.text)

    last = final_event(done)
    if name == "claude":
        assert last["type"] == "result" and last["is_error"] is False, last
        assert last["result"] == "done"
        usage = next(iter(last["modelUsage"].values()))
        assert usage["inputTokens"] == 2200 and usage["outputTokens"] == 60
        assert usage["cacheReadInputTokens"] == 600 and usage["cacheCreationInputTokens"] == 300
        assert last["total_cost_usd"] > 0
    elif name == "codex":
        assert last == {
            "type": "turn.completed",
            "usage": {
                "input_tokens": WRITE_USAGE.prompt_total + FINAL_USAGE.prompt_total,
                "cached_input_tokens": 600,
                "cache_write_input_tokens": 0,
                "output_tokens": 60,
                "reasoning_output_tokens": 7,
            },
        }
        changes = [e for e in done.events() if e.get("type") == "item.completed"]
        assert any(
            e["item"]["type"] == "file_change" and e["item"]["status"] == "completed"
            for e in changes
        ), done.stdout
    else:
        assert last["type"] == "result" and last["status"] == "success", last
        main_model = first.path.rsplit("/", 1)[-1].split(":")[0]
        usage = last["stats"]["models"][main_model]
        assert usage["input_tokens"] == WRITE_USAGE.prompt_total + FINAL_USAGE.prompt_total
        assert usage["output_tokens"] == 60 and usage["cached"] == 600
        # gemini leaves thinking out of output_tokens; only the total carries it
        assert usage["total_tokens"] - usage["input_tokens"] == 60 + 7


@pytest.mark.parametrize("name", CLIS)
def test_cli_fails_on_a_rejected_key_without_writing(
    name: str, agents: AgentRunner, tmp_path: Path
) -> None:
    repo = scratch_repo(tmp_path / "repo")
    talk = agents.server.converse([], reject=401)

    # claude retries a 401 ten times over about three minutes by default; two retries show
    # its api_retry events in a couple of seconds
    retries = 2 if name == "claude" else 0
    done = agents.run(
        name,
        talk,
        AGENTS[name].write_args(PROMPT),
        cwd=repo,
        max_retries=retries,
        record=f"{name}-auth-fail",
    )

    assert done.returncode != 0, done.describe()
    assert talk.requests and all(r.status == 401 for r in talk.requests)
    assert [p.name for p in (repo / "notes").iterdir()] == []
    last = final_event(done)
    if name == "claude":
        retried = [e for e in done.events() if e.get("subtype") == "api_retry"]
        assert [e["error_status"] for e in retried] == [401, 401], done.stdout
        assert last["is_error"] is True and last["api_error_status"] == 401, last
    elif name == "codex":
        assert last["type"] == "turn.failed", last
        assert "401" in last["error"]["message"]
    else:
        assert last["type"] == "result" and last["status"] == "error", last
        assert "401" in last["error"]["message"]
    assert done.seconds < 30, done.describe()


@pytest.mark.parametrize("name", CLIS)
def test_cli_resumes_its_session_and_sends_the_earlier_history(
    name: str, agents: AgentRunner, tmp_path: Path
) -> None:
    repo = scratch_repo(tmp_path / "repo")
    target = repo / "notes" / "hello.txt"
    # a path relative to the CLI's working directory, as delegate-tui's worktrees need
    relative: list[Turn] = [
        WriteFile("notes/hello.txt", "hello from the stand-in\n"),
        Reply("done"),
    ]
    talk = agents.server.converse([*relative, Reply("resumed and done")])
    first = agents.run(name, talk, AGENTS[name].write_args(PROMPT), cwd=repo)
    assert first.returncode == 0, first.describe()
    assert target.read_text() == "hello from the stand-in\n"
    session = first.session_id()
    asked_before = len(talk.main_requests())

    follow_up = "add a second line, please"
    again = agents.run(
        name,
        talk,
        AGENTS[name].resume_args(session, follow_up),
        cwd=repo,
        record=f"{name}-resume",
    )

    assert again.returncode == 0, again.describe()
    assert again.session_id() == session
    resumed = talk.main_requests()[asked_before:]
    assert len(resumed) == 1 and talk.overruns == 0, talk
    texts = user_texts(name, resumed[0])
    assert follow_up in texts[-1], texts[-3:]
    # the history: the first prompt, the tool call with its content, the final answer
    assert any(PROMPT in text for text in texts[:-1]), texts
    assert "hello from the stand-in" in resumed[0].text and "done" in resumed[0].text
    assert "resumed and done" in again.stdout


PROGRAM = "python3 -c \"open('ran.txt', 'w').write('ran')\""


@pytest.mark.parametrize("name", CLIS)
def test_cli_on_a_terminal_runs_or_refuses_a_program_as_its_edit_mode_allows(
    name: str, agents: AgentRunner, tmp_path: Path
) -> None:
    """On a pty (delegate-tui's default transport) the stream stays JSON lines, CRLF-ended.

    The edit-only modes of the presets: claude ``acceptEdits`` refuses a program (it allows
    file and read-only shell commands such as ``touch`` or ``git status``) and lists it in
    ``permission_denials``; gemini ``auto_edit`` does not offer its shell tool at all; codex
    ``workspace-write`` runs it in its sandbox.
    """
    repo = scratch_repo(tmp_path / "repo")
    talk = agents.server.converse([RunCommand(PROGRAM), Reply("after the command")])

    done = agents.run(
        name,
        talk,
        AGENTS[name].write_args(PROMPT),
        cwd=repo,
        transport="pty",
        record=f"{name}-command-pty",
    )

    assert done.returncode == 0, done.describe()
    assert "\r\n" in done.stdout
    assert talk.turns_taken == 2 and talk.overruns == 0, talk
    ran = repo / "ran.txt"
    last = final_event(done)
    if name == "claude":
        assert not ran.exists()
        denied = last["permission_denials"]
        assert [(d["tool_name"], d["tool_input"]["command"]) for d in denied] == [("Bash", PROGRAM)]
    elif name == "codex":
        assert ran.read_text() == "ran"
        executed = [
            e["item"]
            for e in done.events()
            if e.get("type") == "item.completed" and e["item"]["type"] == "command_execution"
        ]
        # codex shows the command wrapped and quoted: /bin/bash -lc 'python3 -c …'
        assert [("python3 -c" in c["command"], c["exit_code"]) for c in executed] == [(True, 0)]
    else:
        assert not ran.exists()
        results = [e for e in done.events() if e.get("type") == "tool_result"]
        assert [(r["status"], r["error"]["type"]) for r in results] == [
            ("error", "tool_not_registered")
        ]
    # the refusal or the output goes back to the model
    assert "ran.txt" in talk.main_requests()[1].text


@pytest.mark.parametrize("name", CLIS)
def test_cli_retries_a_server_error_and_carries_on(
    name: str, agents: AgentRunner, tmp_path: Path
) -> None:
    """A 500 then an answer: claude says so (``system/api_retry``), codex retries silently,
    gemini prints a stack trace between the JSON lines and waits about 5 s."""
    repo = scratch_repo(tmp_path / "repo")
    talk = agents.server.converse([Fail(500), Reply("after the retry")])

    done = agents.run(
        name,
        talk,
        AGENTS[name].write_args(PROMPT),
        cwd=repo,
        max_retries=1,
        record=f"{name}-retry",
    )

    assert done.returncode == 0, done.describe()
    assert [r.status for r in talk.main_requests()] == [500, 200]
    assert "after the retry" in done.stdout
    if name == "claude":
        retried = [e for e in done.events() if e.get("subtype") == "api_retry"]
        assert [(e["attempt"], e["error_status"]) for e in retried] == [(1, 500)]
    elif name == "gemini":
        assert "Attempt 1 failed with status 500" in done.stdout


@pytest.mark.parametrize(
    ("limit", "subtype", "written"),
    [
        # Whether that answer's tool runs is claude's race (it starts tools while the
        # answer streams): it did not on a quiet machine, and did once under load.
        (["--max-budget-usd", "0.10"], "error_max_budget_usd", None),
        (["--max-turns", "1"], "error_max_turns", True),
    ],
    ids=["budget", "max-turns"],
)
def test_claude_stops_at_its_own_limits(
    limit: list[str], subtype: str, written: bool | None, agents: AgentRunner, tmp_path: Path
) -> None:
    """``--max-budget-usd`` is checked after each call (it overshoots, and no second call
    is made); ``--max-turns`` lets the tool run, then stops."""
    repo = scratch_repo(tmp_path / "repo")
    target = repo / "notes" / "hello.txt"
    expensive = Usage(input_tokens=1_000_000, output_tokens=100)
    talk = agents.server.converse([WriteFile(str(target), "x\n", usage=expensive), Reply("done")])
    args = AGENTS["claude"].write_args(PROMPT)

    done = agents.run(
        "claude",
        talk,
        [*args[:-2], *limit, *args[-2:]],
        cwd=repo,
        record="claude-" + ("budget" if "budget" in subtype else "max-turns"),
    )

    assert done.returncode == 1, done.describe()
    last = final_event(done)
    assert (last["subtype"], last["is_error"]) == (subtype, True), last
    assert last["total_cost_usd"] > 0.10
    if written is not None:
        assert target.exists() is written
    assert talk.turns_taken == 1


def test_codex_without_a_server_reconnects_then_gives_up_when_unbounded_retries_are_off(
    agents: AgentRunner, tmp_path: Path
) -> None:
    """By default codex prints "Reconnecting... waiting for network" forever when it cannot
    connect (tests/streams/codex-no-network-default.jsonl); with the feature
    ``unbounded_connection_retries`` off it honours ``stream_max_retries`` and fails."""
    repo = scratch_repo(tmp_path / "repo")
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    home = agents.home("codex")
    env = AGENTS["codex"].prepare(home, closed, "unused-key", max_retries=1)

    done = run(agents.clis["codex"], AGENTS["codex"].write_args(PROMPT), cwd=repo, env=env)
    save_stream("codex-no-network", done)

    assert done.returncode == 1, done.describe()
    errors = [e["message"] for e in done.events() if e.get("type") == "error"]
    assert errors[0].startswith("Reconnecting... 1/1"), errors
    assert final_event(done)["type"] == "turn.failed"
    assert done.seconds < 30
