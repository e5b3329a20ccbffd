"""The real claude, codex and gemini CLIs against the loopback stand-ins of their vendors' APIs.

Each CLI runs in its structured mode in a scratch git repository with a scratch HOME, as
delegate-tui's presets will run it: it writes a file through its own tool call, fails on a
rejected key, and resumes a session with the earlier history. These tests pin what the
stand-ins must do for the CLIs and what the CLIs print (the streams the parsers read);
``DELEGATE_TUI_RECORD_STREAMS=tests/streams`` saves those streams (tests/streams/README.md).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.standins import anthropic, gemini, openai
from tests.standins.clis import AGENTS, CliRun
from tests.standins.fixtures import AgentRunner
from tests.standins.script import Reply, Request, Usage, WriteFile

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


def write_script(path: Path) -> list[WriteFile | Reply]:
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
        usage = next(iter(last["modelUsage"].values()))  # type: ignore[attr-defined]
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
            e["item"]["type"] == "file_change" and e["item"]["status"] == "completed"  # type: ignore[index]
            for e in changes
        ), done.stdout
    else:
        assert last["type"] == "result" and last["status"] == "success", last
        main_model = first.path.rsplit("/", 1)[-1].split(":")[0]
        usage = last["stats"]["models"][main_model]  # type: ignore[index]
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
        assert "401" in last["error"]["message"]  # type: ignore[index]
    else:
        assert last["type"] == "result" and last["status"] == "error", last
        assert "401" in last["error"]["message"]  # type: ignore[index]
    assert done.seconds < 30, done.describe()


@pytest.mark.parametrize("name", CLIS)
def test_cli_resumes_its_session_and_sends_the_earlier_history(
    name: str, agents: AgentRunner, tmp_path: Path
) -> None:
    repo = scratch_repo(tmp_path / "repo")
    target = repo / "notes" / "hello.txt"
    talk = agents.server.converse([*write_script(target), Reply("resumed and done")])
    first = agents.run(name, talk, AGENTS[name].write_args(PROMPT), cwd=repo)
    assert first.returncode == 0, first.describe()
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


@pytest.mark.parametrize("name", CLIS)
def test_cli_on_a_terminal_still_prints_its_json_stream(
    name: str, agents: AgentRunner, tmp_path: Path
) -> None:
    """delegate-tui runs agents on a pty by default: the stream stays JSON lines (CRLF)."""
    repo = scratch_repo(tmp_path / "repo")
    target = repo / "notes" / "hello.txt"
    talk = agents.server.converse(write_script(target))

    done = agents.run(
        name,
        talk,
        AGENTS[name].write_args(PROMPT),
        cwd=repo,
        transport="pty",
        record=f"{name}-write-pty",
    )

    assert done.returncode == 0, done.describe()
    assert target.read_text() == "hello from the stand-in\n"
    assert "\r\n" in done.stdout
    last = final_event(done)
    assert last["type"] in ("result", "turn.completed"), last
    assert talk.turns_taken == 2 and talk.overruns == 0, talk
