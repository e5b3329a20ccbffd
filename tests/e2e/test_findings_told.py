"""End to end: live findings reach the agents they name (issue 21).

Real processes in real worktrees: an agent in a terminal session gets a one-line note
typed into its input, once per finding, logged as ``InputSent`` by delegate-tui; an
agent with a structured stream (which takes no input) reads the finding in its next
attempt's prompt.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from delegate_tui.core.events import ConflictDetected, InputSent, RetryScheduled
from delegate_tui.core.plan import Plan
from delegate_tui.core.prompts import FOUND_HEADER
from delegate_tui.core.replay import ReplaySource
from tests.conftest import git, run_engine
from tests.e2e.test_agent_streams import AGENT

pytestmark = pytest.mark.e2e
PlanWriter = Callable[..., Plan]

#: Writes outside its scope, reads what it is told, undoes the write and writes it again
#: (the finding resolves and comes back), waits for a second note that must not come.
LISTENER = (
    "echo x > x.txt; read -t 20 a; rm x.txt; sleep 1.5; echo x > x.txt; "
    'read -t 3 b; rm x.txt; printf \'%s|%s\\n\' "$a" "$b" > heard.txt'
)


def test_an_agent_in_a_terminal_hears_of_a_finding_once(
    repo: Path, write_plan: PlanWriter, tmp_path: Path
) -> None:
    listener = tmp_path / "listener.sh"
    listener.write_text(LISTENER + "\n")
    plan = write_plan(
        f"name: told\nrepo: {repo}\ntasks:\n"
        + textwrap.indent(
            f"- id: lister\n  agent: shell\n  edits: [heard.txt]\n  command: bash {listener}\n",
            "  ",
        )
    )
    state, recorder, engine = run_engine(plan)
    task = state.tasks["lister"]
    assert task.status == "succeeded", task.attempts[-1].reason
    found = [
        e for e in recorder.events if isinstance(e, ConflictDetected) and e.kind == "out-of-scope"
    ]
    assert len(found) == 2, "the finding resolved and came back"
    told = [e for e in recorder.events if isinstance(e, InputSent)]
    note = (
        "[delegate-tui] you changed x.txt, outside the files this task may change; "
        "undo that and say in your final message what you need instead."
    )
    assert [(e.task, e.by, e.text) for e in told] == [("lister", "delegate-tui", note)]
    assert told[0].seq > found[0].seq
    heard = git(repo, "show", f"{state.integration_branch}:heard.txt")
    assert heard == note + "|\n", "typed once, read as one line"
    assert not [m for m in state.marks if m.kind == "input"], "not the operator's action"
    replay = ReplaySource.from_log(engine.log_path)
    assert not replay.jump("operator", 1), "replay's 'next operator action' skips it"


def test_an_agent_with_a_structured_stream_reads_it_in_its_next_prompt(
    repo: Path, write_plan: PlanWriter, tmp_path: Path
) -> None:
    script = tmp_path / "agent.py"
    script.write_text(AGENT)
    plan = write_plan(
        textwrap.dedent(
            f"""\
            name: told
            repo: {repo}
            agents:
              streamer:
                command: ["{{python}}", "{script}", "work"]
                stream: codex
            tasks:
              - id: t
                agent: streamer
                prompt: make the file
                edits: [lib/**]
                retries: 1
                criteria:
                  - run: test -f never-made
            """
        )
    )
    state, recorder, _ = run_engine(plan)
    assert not [e for e in recorder.events if isinstance(e, InputSent)], "it takes no input"
    (retry,) = [e for e in recorder.events if isinstance(e, RetryScheduled)]
    assert FOUND_HEADER in retry.prompt
    assert (
        "- you changed src/made.py, outside the files this task may change; undo that and "
        "say in your final message what you need instead."
    ) in retry.prompt
    second = state.tasks["t"].attempts[1]
    assert second.prompt.startswith(retry.prompt.rstrip()), "sent as logged"
