"""Faults a long run meets, with real processes, real git and a real (small) filesystem."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from delegate_tui.core.engine import Engine, EngineOptions
from delegate_tui.core.events import Event, TaskOutput
from delegate_tui.core.plan import Plan
from delegate_tui.core.reaper import group_alive
from delegate_tui.core.replay import final_state
from tests.conftest import git, run_cli

pytestmark = pytest.mark.e2e


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs (root only); remounted larger by the test to 'free space'."""
    mount = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        reason = f"cannot mount a small tmpfs here ({made.stderr.strip() or 'not root'})"
        print(f"SKIPPED: {reason}")
        pytest.skip(reason)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_stops_the_run_cleanly_and_resume_finishes_it(
    small_disk: Path, tmp_path: Path
) -> None:
    repo = small_disk / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "--initial-branch=main")
    git(repo, "config", "user.name", "T")
    git(repo, "config", "user.email", "t@example.invalid")
    (repo / "README.md").write_text("x\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "initial")
    plan = tmp_path / "plan.yaml"
    # 8 MB of output into a log on a 3 MiB disk.
    plan.write_text(
        textwrap.dedent(
            f"""\
            name: flood
            repo: {repo}
            agent: shell
            tasks:
              - id: flood
                command: "head -c 6000000 /dev/zero | tr '\\\\0' 'x' | fold -w 79; echo ok > out.txt"
                edits: [out.txt]
            """
        )
    )
    home = tmp_path / "home"
    first = run_cli("run", str(plan), "--headless", "--yes", cwd=repo, home=home)
    output = first.stdout + first.stderr
    assert first.returncode == 1, output
    assert "Traceback" not in output
    log = next((repo / ".delegate" / "runs").glob("*/events.jsonl"))
    message = (
        f"no space left on device writing the run log at {log}: agents stopped; "
        "free space, then delegate-tui resume"
    )
    assert message in output
    # No agent is left behind, and the log reads back: an unfinished run, not a corrupt one.
    assert (
        "head -c"
        not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    )
    state, report = final_state(log)
    assert not report.corrupt_lines
    assert not state.finished

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    second = run_cli("resume", str(log), "--headless", "--yes", cwd=repo, home=home)
    assert second.returncode == 0, second.stdout + second.stderr
    state, _ = final_state(log)
    assert state.status == "succeeded"
    assert git(repo, "show", f"{state.integration_branch}:out.txt") == "ok\n"


@pytest.mark.parametrize(
    ("operation", "said"),
    [
        (["merge", "side"], "a merge"),
        (["cherry-pick", "side"], "a cherry-pick"),
        (["rebase", "side"], "a rebase"),
        (["revert", "--no-edit", "HEAD"], "a revert"),
        (["bisect", "start"], "a bisect"),
    ],
)
def test_a_repository_in_the_middle_of_an_operation_is_refused(
    repo: Path, tmp_path: Path, operation: list[str], said: str
) -> None:
    # Two branches that change the same line: the operation stops half done.
    git(repo, "checkout", "-q", "-b", "side")
    (repo / "README.md").write_text("side\n")
    git(repo, "commit", "-q", "-am", "side")
    git(repo, "checkout", "-q", "main")
    (repo / "README.md").write_text("main\n")
    git(repo, "commit", "-q", "-am", "main")
    if operation[0] == "revert":
        (repo / "README.md").write_text("later\n")
        git(repo, "commit", "-q", "-am", "later")
        subprocess.run(["git", "revert", "--no-edit", "HEAD~1"], cwd=repo, capture_output=True)
    else:
        subprocess.run(["git", *operation], cwd=repo, capture_output=True)
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"name: p\nrepo: {repo}\nagent: demo\ntasks:\n  - {{id: a, prompt: x}}\n")
    result = run_cli("run", str(plan), "--headless", "--yes", cwd=repo, home=tmp_path / "home")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip() == (
        f"delegate-tui: {repo}: {said} is in progress; finish or abort it first "
        "(agents would start from its half-done state)"
    )
    assert not (repo / ".delegate").exists()  # nothing half done


def test_the_repository_config_runs_nothing_delegate_tui_did_not_ask_for(
    repo: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "ran.txt"
    tool = tmp_path / "tool.sh"
    tool.write_text(f'#!/bin/sh\necho "$0 $*" >> {marker}\n')
    tool.chmod(0o755)
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    for name in (
        "pre-commit",
        "prepare-commit-msg",
        "commit-msg",
        "post-commit",
        "pre-merge-commit",
        "post-merge",
        "post-checkout",
        "reference-transaction",
        "post-rewrite",
        "post-index-change",
    ):
        (hooks / name).symlink_to(tool)
    git(repo, "config", "core.hooksPath", str(hooks))
    git(repo, "config", "core.fsmonitor", str(tool))
    git(repo, "config", "diff.external", str(tool))
    git(repo, "config", "diff.evil.textconv", str(tool))
    (repo / ".gitattributes").write_text("* diff=evil\n")
    git(repo, "-c", "core.hooksPath=/dev/null", "add", "-A")
    git(repo, "-c", "core.hooksPath=/dev/null", "commit", "-q", "-m", "attributes")
    marker.unlink(missing_ok=True)
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        f"name: p\nrepo: {repo}\nagent: demo\ntasks:\n"
        "  - {id: a, prompt: x, edits: [src/a.py]}\n"
        "  - {id: b, prompt: x, edits: [src/b.py]}\n"
        "  - {id: c, prompt: x, edits: [src/c.py], depends_on: [a, b]}\n"
    )
    home = tmp_path / "home"
    result = run_cli("run", str(plan), "--headless", "--yes", cwd=repo, home=home)
    assert result.returncode == 0, result.stdout + result.stderr
    log = next((repo / ".delegate" / "runs").glob("*/events.jsonl"))
    for args in (("stats", str(log)), ("replay", str(log), "--headless")):
        assert run_cli(*args, cwd=repo, home=home).returncode == 0
    assert not marker.exists(), marker.read_text()
    # The check itself can fail: the operator's own git runs them.
    git(repo, "diff", "HEAD~1")
    assert marker.exists()


def test_sigterm_stops_a_headless_run_cleanly_and_resume_finishes_it(
    repo: Path, tmp_path: Path
) -> None:
    plan = tmp_path / "plan.yaml"
    flag = tmp_path / "second-attempt"
    # The first attempt waits to be stopped; the second one (after resume) finishes.
    plan.write_text(
        textwrap.dedent(
            f"""\
            name: long
            repo: {repo}
            agent: shell
            tasks:
              - id: slow
                command: "if [ -e {flag} ]; then echo done > out.txt; else touch {flag}; sleep 60; fi"
                edits: [out.txt]
            """
        )
    )
    home = tmp_path / "home"
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "NO_COLOR": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "delegate_tui", "run", str(plan), "--headless", "--yes"],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not flag.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert flag.exists(), "the agent started"
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert time.monotonic() - started < 10
    assert proc.returncode == 1, out
    assert "Traceback" not in out
    assert "interrupted by SIGTERM" in out
    log = next((repo / ".delegate" / "runs").glob("*/events.jsonl"))
    state, _ = final_state(log)
    assert state.status == "stopped"
    assert state.tasks["slow"].status == "interrupted"
    pgid = state.tasks["slow"].attempts[-1].pgid
    assert not group_alive(pgid)
    resumed = run_cli("resume", str(log), "--headless", "--yes", cwd=repo, home=home)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    state, _ = final_state(log)
    assert state.status == "succeeded"
    assert git(repo, "show", f"{state.integration_branch}:out.txt") == "done\n"


async def test_an_internal_error_in_a_callback_stops_the_run_with_the_traceback_in_a_file(
    repo: Path, write_plan: Callable[..., Plan]
) -> None:
    plan = write_plan(
        f"""\
        name: p
        repo: {repo}
        agent: shell
        tasks:
          - id: a
            command: "echo hello; sleep 30"
            edits: [x]
        """
    )
    engine = Engine(plan, EngineOptions(auto_approve=True, kill_grace_s=1.0))

    def broken(ev: Event) -> None:
        if isinstance(ev, TaskOutput):  # emitted from the output timer's callback
            raise RuntimeError("a bug in a listener")

    engine.subscribe(broken)
    state = await asyncio.wait_for(engine.run(), 30)
    assert state.status == "stopped"
    crash = engine.run_dir / "internal-errors.txt"
    assert "RuntimeError: a bug in a listener" in crash.read_text()
    assert any(f"traceback in {crash}" in n.message for n in state.notices)
    assert state.tasks["a"].status == "interrupted"
    assert not group_alive(state.tasks["a"].attempts[-1].pgid)
