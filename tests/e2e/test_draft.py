"""``delegate-tui draft`` as a user runs it, with the demo agent on the demo repository.

The drafting agent is a real process started by the engine as a consult task
in a fresh worktree; the plan it drafts is then run for real: headless, and
from the review screen in a real terminal (tmux on a private socket), where
enter starts the run and ``delegate-tui stop`` ends it.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from bench.tmux_term import Terminal
from delegate_tui.core.plan import load_plan
from delegate_tui.core.service import service_status
from delegate_tui.demo.scaffold import make_demo_repo
from tests.conftest import git, run_cli

pytestmark = pytest.mark.e2e


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """The demo repository (its plans folder is git-excluded)."""
    return make_demo_repo(tmp_path / "demo").parent.parent


@pytest.fixture(autouse=True)
def good_drafts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo agent drafts its good plan unless a test asks otherwise."""
    monkeypatch.delenv("DELEGATE_DEMO_DRAFT", raising=False)


def draft(shop: Path, home: Path, *args: str, mode: str = "") -> subprocess.CompletedProcess[str]:
    """``delegate-tui draft ARGS``; ``mode`` is the demo agent's DELEGATE_DEMO_DRAFT."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DELEGATE_DEMO_DRAFT", mode)
        return run_cli("draft", *args, cwd=shop, home=home)


def test_goal_to_draft_to_run_with_the_demo_agent(shop: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    before = git(shop, "status", "--porcelain")
    result = draft(
        shop, home, "add rate limiting", "--agent", "demo", "-o", ".plans/rl.yaml", "--headless"
    )
    assert result.returncode == 0, result.stderr
    assert "round 1: demo answered" in result.stderr and ": valid" in result.stderr
    out = shop / ".plans" / "rl.yaml"
    text = out.read_text()
    assert result.stdout.startswith(text.rstrip("\n"))  # the plan, then its report
    assert "# ✔ valid: 6 task(s) in 4 layer(s), written to .plans/rl.yaml" in result.stdout
    assert "#   2.      at 6s: module, tests, ui" in result.stdout
    assert yaml.safe_load(result.stdout) == yaml.safe_load(text)  # stdout is a plan too
    assert "  # · why: The only task that writes package.json" in text
    plan = load_plan(out)
    assert plan.repo == ".." and plan.repo_path() == shop.resolve()
    # The consult changed nothing in the repository, and it is a run of its own.
    assert git(shop, "status", "--porcelain") == before
    runs = json.loads(run_cli("runs", "--json", cwd=shop, home=home).stdout)
    assert [r["plan"] for r in runs] == ["draft 1: add rate limiting"]
    assert runs[0]["status"] == "succeeded" and runs[0]["draft"] is True

    ran = run_cli("run", str(out), "--headless", "--yes", cwd=shop, home=home)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "6 of 6 merged" in ran.stdout
    integration = [
        b for b in git(shop, "branch", "--format=%(refname:short)").split() if "integration" in b
    ]
    newest = sorted(integration)[-1]
    files = git(shop, "ls-tree", "-r", "--name-only", newest).split()
    for path in (
        "docs/api/rate-limiting.md",
        "src/shop/rate_limiting.py",
        "tests/test_rate_limiting.py",
        "ui/rate-limiting.js",
    ):
        assert path in files
    manifest = json.loads(git(shop, "show", f"{newest}:package.json"))
    assert manifest["ui"] is True  # the demo keeps package.json valid JSON

    # The drafting consult is listed, but only the plan's run is in the totals and trend.
    every = run_cli("stats", "--all", cwd=shop, home=home)
    assert every.returncode == 0, every.stderr
    lines = every.stdout.splitlines()
    (consult,) = [line for line in lines if line.endswith("draft 1: add rate limiting")]
    assert consult.split()[5:8] == ["-", "-", "-"]  # SAVED CONFLICT REWORK: not 0s 0% 0%
    assert "In all (1 finished run(s) in the rates)" in lines
    assert (
        "  1 drafting consult run(s) listed (- for their numbers) but left out of the time "
        "saved, the rates and the trend; their tokens and cost are counted above" in lines
    )
    assert "Trend (the trend shows from the second finished run)" in lines
    data = json.loads(run_cli("stats", "--all", "--json", cwd=shop, home=home).stdout)
    assert [r["draft"] for r in data["runs"]] == [False, True]
    assert data["all"]["drafts"] == 1 and data["all"]["finished"] == 1
    assert data["all"]["trends"]["time_saved_s"]["runs"] == [data["runs"][0]["run_id"]]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_in_a_terminal_the_draft_opens_in_review_and_enter_starts_the_run(
    shop: Path, tmp_path: Path
) -> None:
    if shutil.which("tmux") is None:
        pytest.skip("needs tmux for a real terminal (apt-get install tmux)")
    home = tmp_path / "home"
    env = f"HOME={home} XDG_CONFIG_HOME={home / '.config'} DELEGATE_DEMO_DRAFT="
    goal = ("draft", "add rate limiting", "--agent", "demo", "-o", ".plans/rl.yaml")
    command = shlex.join([sys.executable, "-m", "delegate_tui", *goal])
    runs = shop / ".delegate" / "runs"
    try:
        with Terminal(120, 40) as term:
            term.start(f"cd {shop} && env {env} {command}; echo EXIT=$?; sleep 60")
            # The review screen: the drafted plan by layer and the batches it makes, nothing run.
            wanted = (
                "Review Add rate limiting",
                "6 tasks",
                "enter runs it",
                "First batch: contract",
            )
            term.wait_for(lambda screen: all(w in screen for w in wanted), 60, poll=0.05)
            (consult,) = list(runs.iterdir())  # the drafting consult, and no run yet
            term.send("Enter")
            # The run screen of the plan's run, its first batch waiting for the operator.
            term.wait_for(lambda screen: "Batch 1 waits for approval" in screen, 30, poll=0.05)
            (run_dir,) = [d for d in runs.iterdir() if d != consult]
            # The header: the flag, then the plan's name (cut to fit: at 80 columns, where
            # this view has come out on a loaded machine, only its start is left).
            assert "⚑ batch 1 waits for approval   Add rate" in term.screen()
            live = service_status(run_dir)
            assert live is not None and live["views"] >= 1
            stop = run_cli("stop", cwd=shop, home=home)
            assert stop.returncode == 0, stop.stderr
            assert stop.stdout.startswith(f"run {run_dir.name} stopped; log: ")
            # The view says the run was stopped; q closes it and the command returns.
            term.wait_for(lambda screen: "The run was stopped: 0 of 6 merged" in screen, 15, 0.05)
            term.send("q")
            term.wait_for(lambda screen: "EXIT=" in screen, 15, poll=0.05)
            assert f"run stopped; log: {run_dir}" in term.screen().replace("\n", "")
            assert "EXIT=1" in term.screen()  # a run that did not succeed
            deadline = time.monotonic() + 15
            while not gone(live["pid"]) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert gone(live["pid"]), "the run service is still there"
            assert service_status(run_dir) is None
    finally:  # a failure above must not leave a run service behind
        for folder in runs.iterdir() if runs.is_dir() else ():
            if service_status(folder) is not None:
                run_cli("stop", str(folder), cwd=shop, home=home)
    assert load_plan(shop / ".plans" / "rl.yaml").name == "Add rate limiting"
    listed = json.loads(run_cli("runs", "--json", cwd=shop, home=home).stdout)
    assert [(r["run_id"], r["status"], r["live"]) for r in listed] == [
        (run_dir.name, "stopped", False),
        (consult.name, "succeeded", False),
    ]


def test_a_flawed_first_draft_is_sent_back_and_fixed_in_round_two(
    shop: Path, tmp_path: Path
) -> None:
    result = draft(
        shop, tmp_path / "home", "add rate limiting", "--agent", "demo", "-o", ".plans/p.yaml",
        "--headless", mode="flawed",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("round 1:"))
    assert lines[first].endswith("2 problems, sent back")
    assert lines[first + 1].endswith("dependency cycle: tests -> wire -> tests")
    assert "'ui-client' shares config file package.json with ui" in lines[first + 2]
    assert lines[first + 3].startswith("round 2: demo answered") and lines[first + 3].endswith(
        ": valid"
    )
    plan = load_plan(shop / ".plans" / "p.yaml")
    assert plan.task("ui-client").depends_on == ("contract", "ui")
    assert "wire" not in plan.task("tests").depends_on
    assert "# ---- delegate-tui draft: 2 rounds with demo" in result.stdout


def test_a_draft_never_valid_exits_2_with_its_report_and_writes_nothing(
    shop: Path, tmp_path: Path
) -> None:
    result = draft(
        shop, tmp_path / "home", "add rate limiting", "--agent", "demo", "-o", ".plans/p.yaml",
        "--headless", "--rounds", "2", mode="stubborn",
    )  # fmt: skip
    assert result.returncode == 2
    assert not (shop / ".plans" / "p.yaml").exists()
    assert result.stderr.count("sent back") == 2
    assert "# ✘ still invalid after 2 round(s); nothing written:" in result.stdout
    assert (
        ".plans/p.yaml:30: tasks[2].depends_on: dependency cycle: tests -> wire -> tests"
        in result.stdout
    )
    assert result.stdout.startswith("name: Add rate limiting\n")


def test_bad_input_is_refused_before_any_agent_runs(shop: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    (shop / ".plans" / "taken.yaml").write_text("name: mine\n")
    cases = [
        (("x", "-o", ".plans/taken.yaml"), "-o: .plans/taken.yaml exists"),
        (("x", "--agent", "shell"), "--agent: unknown agent 'shell' (one of"),
        (("x", "--agent", "demo", "--repo", str(tmp_path)), "is not in a git repository"),
        (("  ", "--agent", "demo", "-o", ".plans/new.yaml"), "GOAL: empty"),
    ]
    for args, message in cases:
        result = draft(shop, home, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
    assert (shop / ".plans" / "taken.yaml").read_text() == "name: mine\n"
    assert not (shop / ".delegate" / "runs").exists()  # no consult started


def test_an_agent_that_is_not_installed_is_named(
    shop: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # git, and no agent CLI
    result = draft(shop, tmp_path / "home", "x", "--agent", "gemini", "-o", ".plans/g.yaml")
    assert result.returncode == 2
    assert (
        "delegate-tui: --agent: agent 'gemini' runs 'gemini', which is not installed"
        in result.stderr
    )
    assert not (shop / ".plans" / "g.yaml").exists()
    assert not (shop / ".delegate" / "runs").exists()


def test_review_needs_a_terminal(shop: Path, tmp_path: Path) -> None:
    result = run_cli("plan", ".plans/demo.yaml", "--review", cwd=shop, home=tmp_path / "home")
    assert result.returncode == 2
    assert "--review needs a terminal" in result.stderr
