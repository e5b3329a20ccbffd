"""`resume` in the UI: the operator decides, unless `resume --yes` (issue 12, item 4).

A run started with `--yes` is killed (SIGKILL of the real process) while an
agent works; `delegate-tui resume` in a real terminal (tmux) then takes it over.
Without `--yes` the interrupted task waits for the operator's retry or skip
(no RetryScheduled) and the next batch waits for approval; with `--yes` the
interrupted task starts again by itself. The README says so; the engine did
not (it kept the first run's auto-approve).
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bench.tmux_term import Terminal
from delegate_tui.core.events import BatchProposed, Event, RetryScheduled, RunResumed
from delegate_tui.core.runlog import read_events

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux for a real terminal"),
]


def events_after_resume(log: Path) -> list[Event]:
    events = list(read_events(log))
    starts = [n for n, e in enumerate(events) if isinstance(e, RunResumed)]
    return events[starts[0] :] if starts else []


def killed_mid_run(tmp_path: Path, repo: Path) -> Path:
    """Start a `--yes` run, SIGKILL it while `slow` works; the run's log."""
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        textwrap.dedent(
            f"""\
            name: resumable
            repo: {repo}
            max_parallel: 1
            agents:
              stuck: {{extends: demo, args: [--hang-first]}}
            tasks:
              - {{id: quick, agent: demo, prompt: Add q, edits: [q.txt]}}
              - {{id: slow, agent: stuck, prompt: Add s, edits: [s.txt]}}
              - {{id: after, agent: shell, edits: [a.txt], depends_on: [quick, slow], command: "cat q.txt s.txt > a.txt"}}
              - {{id: other, agent: demo, prompt: Add o, edits: [o.txt]}}
            """
        )
    )
    env = {**os.environ, "NO_COLOR": "1", "DELEGATE_DEMO_SPEED": "0"}
    first = subprocess.Popen(
        [sys.executable, "-m", "delegate_tui", "run", str(plan), "--headless", "--yes"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    log = None
    while time.monotonic() < deadline:
        logs = list((repo / ".delegate" / "runs").glob("*/events.jsonl"))
        text = logs[0].read_text() if logs else ""
        if '"TaskStarted"' in text and '"task":"slow"' in text.split('"TaskStarted"', 2)[-1]:
            log = logs[0]
            break
        time.sleep(0.05)
    assert log is not None, "the first run got to slow"
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    return log


@pytest.mark.parametrize("yes", [False, True], ids=["asks", "yes"])
def test_resume_in_the_ui_asks_unless_yes(tmp_path: Path, repo: Path, yes: bool) -> None:
    log = killed_mid_run(tmp_path, repo)
    home = tmp_path / "home"
    env = f"HOME={home} XDG_CONFIG_HOME={home / '.config'} NO_COLOR=1 DELEGATE_DEMO_SPEED=0"
    resume = shlex.join(
        [sys.executable, "-m", "delegate_tui", "resume", "--repo", str(repo)]
        + (["--yes"] if yes else [])
    )
    try:
        with Terminal(120, 40) as term:
            term.start(f"env {env} {resume}; sleep 30", cwd=str(repo))
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                after = events_after_resume(log)
                if yes and any(isinstance(e, RetryScheduled) for e in after):
                    break
                if not yes and any(
                    isinstance(e, BatchProposed) and e.needs_approval for e in after
                ):
                    break
                time.sleep(0.1)
            else:
                pytest.fail(f"the resumed run never got there; the screen:\n{term.screen()}")
            # No wait for "anything the engine would do next": the resumed engine
            # schedules what it restarts by itself before it proposes the next batch, and
            # the log has its events in order, so once the proposal is in the log a retry
            # of slow would be there before it.
            after = events_after_resume(log)
            resumed = next(e for e in after if isinstance(e, RunResumed))
            retries = [e.task for e in after if isinstance(e, RetryScheduled)]
            if yes:
                assert resumed.auto_approve is True
                assert retries[:1] == ["slow"], "the interrupted task starts again by itself"
            else:
                assert resumed.auto_approve is False
                assert retries == [], "the interrupted task waits for the operator"
                proposal = next(e for e in after if isinstance(e, BatchProposed))
                assert proposal.tasks == ("other",) and proposal.needs_approval
                term.wait_for(
                    lambda screen: (
                        "⚑ batch" in screen
                        and "waits for approval" in screen
                        and "↯ slow" in screen
                    ),
                    20,
                )
    finally:
        subprocess.run(
            [sys.executable, "-m", "delegate_tui", "stop", "--repo", str(repo)],
            capture_output=True,
            timeout=60,
            check=False,
        )
