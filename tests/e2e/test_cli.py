"""The command line as a user runs it: exit codes, messages, and the sample plans."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from delegate_tui.core.plan import load_plan
from delegate_tui.core.reaper import group_alive
from delegate_tui.core.scopes import matches_any
from delegate_tui.demo.scaffold import make_demo_repo
from tests.conftest import git

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
SAMPLES = sorted((ROOT / "sample_plans").glob("*.yaml"))
#: The demo fails, retries and collides on purpose: tests/e2e/test_demo.py checks its run.
RUN_SAMPLES = [p for p in SAMPLES if p.stem != "demo"]


@pytest.fixture(autouse=True)
def scratch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI runs with a HOME and config folder of its own, never the user's."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


def cli(
    *args: str, cwd: Path | None = None, timeout: float = 120, speed: str = "0"
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DELEGATE_DEMO_SPEED": speed, "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "delegate_tui", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_validate_good_and_broken_plans(tmp_path: Path) -> None:
    ok = cli("validate", *map(str, SAMPLES))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.count("✔") == len(SAMPLES)
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: b\ntasks:\n  - id: a\n    prompt: x\n    depends_on: [b]\n")
    result = cli("validate", str(broken))
    assert result.returncode == 2
    assert result.stderr.strip() == f"{broken}:5: tasks[0].depends_on: unknown task 'b'"


def test_run_refuses_bad_input_before_creating_anything(tmp_path: Path, repo: Path) -> None:
    plan = tmp_path / "p.yaml"
    plan.write_text(f"name: p\nrepo: {repo}\ntasks:\n  - {{id: a, agent: codx, prompt: x}}\n")
    result = cli("run", str(plan), "--headless", "--yes")
    assert result.returncode == 2
    assert "tasks[0].agent: unknown agent 'codx' (did you mean 'codex'?)" in result.stderr
    assert not (repo / ".delegate").exists()
    plan.write_text(f"name: p\nrepo: {repo}\ntasks:\n  - {{id: a, agent: demo, prompt: x}}\n")
    result = cli("run", str(plan), "--headless")
    assert result.returncode == 2
    assert (
        "batches wait for approval (approve: batch), and there is no terminal to ask in"
        in result.stderr
    )
    result = cli("run", str(plan), "--headless", "--yes", "--agent-override", "nobody")
    assert result.returncode == 2 and "--agent-override: unknown agent 'nobody'" in result.stderr
    assert not (repo / ".delegate").exists()
    result = cli("run", str(plan), "--bogus-flag")
    assert result.returncode == 2 and "No such option" in result.stderr


@pytest.mark.parametrize("sample", RUN_SAMPLES, ids=[p.stem for p in RUN_SAMPLES])
def test_every_sample_plan_runs_headless_with_the_demo_agent(tmp_path: Path, sample: Path) -> None:
    plan = make_demo_repo(tmp_path)
    repo = plan.parent.parent
    # The collision must be seen live, so its agents work at a human pace (a few seconds).
    speed = "0.8" if sample.stem == "collision" else "0"
    result = cli(
        "run",
        str(sample),
        "--repo",
        str(repo),
        "--headless",
        "--yes",
        "--agent-override",
        "demo",
        speed=speed,
    )
    if sample.stem == "collision":
        # The collision plan collides on purpose: one side merges, the other is caught.
        assert result.returncode == 1, result.stdout + result.stderr
        assert "merge conflict in src/shop/config.py" in result.stdout
    else:
        assert result.returncode == 0, result.stdout + result.stderr
        assert "run succeeded" in result.stdout
    stats = json.loads(cli("stats", "--repo", str(repo), "--json").stdout)
    check_stats_of_a_sample_run(stats, sample, repo)
    if sample.stem == "collision":
        for line in (
            "⚠ overlap payments ✕ shipping: src/shop/config.py",
            "⚠ predicted-conflict payments ✕ shipping: src/shop/config.py",
            "⚠ out-of-scope payments: src/shop/config.py",
        ):
            assert line in result.stdout
    if sample.stem == "shared-config":
        assert "held: date-picker: shares config file" in result.stdout


def check_stats_of_a_sample_run(stats: dict[str, Any], sample: Path, repo: Path) -> None:
    """``stats --json`` after a demo run of a sample: the values, not only the keys."""
    plan = load_plan(sample)
    collision = sample.stem == "collision"
    assert stats["plan"] == plan.name and stats["repo"] == str(repo)
    assert stats["status"] == ("partial" if collision else "succeeded")
    assert stats["integration_branch"] == f"delegate/{stats['run_id']}/integration"
    tasks = stats["tasks"]
    assert list(tasks) == plan.ids
    expected = {t: "succeeded" for t in plan.ids} | (
        {"shipping": "merge-conflict"} if collision else {}
    )
    assert {t: info["status"] for t, info in tasks.items()} == expected
    assert all(info["attempts"] == 1 for info in tasks.values()), "no task was retried"
    for task in plan.tasks:
        info = tasks[task.id]
        assert info["duration_s"] > 0, task.id
        if task.kind == "consult":
            assert info["changed_files"] == [] and info["lines_added"] == 0, task.id
        elif not collision:
            assert info["changed_files"], f"{task.id} changed nothing"
            assert all(matches_any(task.edits, f) for f in info["changed_files"]), task.id
            assert info["lines_added"] > 0, task.id
    m = stats["metrics"]
    durations = [info["duration_s"] for info in tasks.values()]
    # Time saved is the tasks' time one after another minus the wall time in which they
    # worked: with --yes nobody is waited for (moments between batches, no downtime).
    assert m["sequential_s"] == pytest.approx(sum(durations), abs=0.002 * len(durations))
    assert m["downtime_s"] == 0.0 and 0.0 <= m["operator_wait_s"] < 1.0
    working = m["wall_s"] - m["operator_wait_s"]
    # Four figures each rounded to the millisecond: allow for their rounding.
    assert m["time_saved_s"] == pytest.approx(m["sequential_s"] - working, abs=0.0025)
    assert 0 < m["wall_s"] < 60 and m["rework_rate"] == 0.0
    if not collision:
        assert m["conflict_rate"] == 0.0
        found = {(c["kind"], tuple(c["tasks"]), tuple(c["files"])) for c in stats["conflicts"]}
        shared = ("package-lock.json", "package.json")
        assert found == (
            {("shared-file", ("charts",), shared), ("shared-file", ("date-picker",), shared)}
            if sample.stem == "shared-config"
            else set()
        ), "a warning is not a collision, and the others touch nothing shared"
        assert stats["summary"] == "succeeded: " + ", ".join(plan.ids)
        return
    # payments and shipping collided on src/shop/config.py; release-notes ran clean.
    assert m["conflict_rate"] == 0.6667
    assert m["time_saved_s"] > 0, "payments and shipping ran at the same time"
    assert tasks["shipping"]["reason"] == "merge conflict in src/shop/config.py"
    assert tasks["payments"]["changed_files"] == ["src/shop/config.py", "src/shop/payments.py"]
    collided = {(c["kind"], tuple(c["tasks"])) for c in stats["conflicts"]}
    assert collided == {
        ("merge-conflict", ("shipping",)),
        ("overlap", ("payments", "shipping")),
        ("predicted-conflict", ("payments", "shipping")),
        ("predicted-conflict", ("shipping",)),
        ("out-of-scope", ("payments",)),
        ("out-of-scope", ("shipping",)),
    }
    assert all(c["files"] == ["src/shop/config.py"] for c in stats["conflicts"])


def test_demo_command_runs_headless_and_cleans_up_with_no_keep() -> None:
    result = cli("demo", "--headless", "--speed", "0", "--no-keep")
    # Unattended, the task that lost the demo's collision retries by itself and merges.
    assert result.returncode == 0, result.stdout + result.stderr
    assert "standard output is not a terminal" not in result.stderr  # --headless asked for it
    assert "run succeeded" in result.stdout and "8 of 8 merged" in result.stdout
    repo = Path(result.stdout.split("demo repository: ", 1)[1].split("\n", 1)[0])
    assert not repo.exists(), "--no-keep removes the scratch repository"


def test_plan_command_shows_layers_batches_and_estimates() -> None:
    result = cli("plan", str(ROOT / "sample_plans" / "dashboard.yaml"))
    assert result.returncode == 0
    assert "  0: layout [claude]" in result.stdout
    assert "2.   at 3m00s: widget-traffic, widget-errors, widget-latency" in result.stdout
    assert "3.   at 6m00s: widget-deploys, widget-costs" in result.stdout
    assert "parallel:   9m00s (about 2.0x faster)" in result.stdout


def test_schema_runs_and_stats_of_missing_run(tmp_path: Path) -> None:
    schema = json.loads(cli("schema").stdout)
    assert schema["title"] == "delegate-tui plan"
    result = cli("stats", "--repo", str(tmp_path))
    assert result.returncode == 2 and "no runs in" in result.stderr
    assert cli("runs", str(tmp_path)).stdout.startswith("no runs in")


def test_runs_lists_newest_first(tmp_path: Path, repo: Path) -> None:
    plan = tmp_path / "p.yaml"
    plan.write_text(
        f"name: Listing\nrepo: {repo}\ntasks:\n  - {{id: a, agent: shell, command: 'true'}}\n"
    )
    for n in range(2):
        if n:
            time.sleep(1.1)  # run ids are per second
        assert cli("run", str(plan), "--headless", "--yes").returncode == 0
    rows = json.loads(cli("runs", str(repo), "--json").stdout)
    assert len(rows) == 2 and rows[0]["run_id"] > rows[1]["run_id"]
    assert rows[0]["status"] == "succeeded" and rows[0]["plan"] == "Listing" and rows[0]["ok"] == 1


@pytest.mark.parametrize("transport", ["pty", "pipes"])
def test_no_agent_outlives_a_sigkilled_delegate_tui(
    tmp_path: Path, repo: Path, transport: str
) -> None:
    marker = tmp_path / "pids"
    plan = tmp_path / "p.yaml"
    # The agent starts a grandchild that ignores SIGHUP and SIGTERM, and records both pids.
    plan.write_text(
        f"name: orphans\nrepo: {repo}\ntasks:\n"
        f"  - id: a\n    agent: shell\n    edits: [x]\n"
        f"    command: \"(trap '' HUP TERM; echo $$ >> {marker}; exec sleep 300) & echo $$ >> {marker}; sleep 300\"\n"
    )
    env = {**os.environ, "NO_COLOR": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "delegate_tui",
            "run",
            str(plan),
            "--headless",
            "--yes",
            "--transport",
            transport,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    runs = repo / ".delegate" / "runs"

    def logged_start() -> bool:  # the agent may write its pids before the log has its start
        logs = list(runs.glob("*/events.jsonl")) if runs.exists() else []
        return bool(logs) and b'"TaskStarted"' in logs[0].read_bytes()

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (
        not marker.exists() or len(marker.read_text().split()) < 2 or not logged_start()
    ):
        time.sleep(0.05)
    pids = [int(p) for p in marker.read_text().split()]
    assert len(pids) == 2
    pgids = {os.getpgid(p) for p in pids}
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(group_alive(g) for g in pgids):
        time.sleep(0.1)
    assert not any(group_alive(g) for g in pgids), "an agent outlived delegate-tui"
    # The log kept the pid and group for a later resume.
    log = next((repo / ".delegate" / "runs").iterdir()) / "events.jsonl"
    started = [json.loads(line) for line in log.read_text().splitlines() if '"TaskStarted"' in line]
    assert started and started[0]["pgid"] in pgids
    assert git(repo, "status", "--porcelain") == ""
