"""`delegate-tui demo` shows the product: a held task, a consultation, a failed check
retried with its failure, and a collision caught live before it merges.

Real processes and real git: the demo command in a subprocess, its run log read
back; and the demo agent on its own, to show that a retry succeeds because of
what its prompt says, not because it is the second attempt.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from delegate_tui.core.events import (
    BatchProposed,
    ConflictDetected,
    CriterionResult,
    RetryScheduled,
    TaskMerged,
)
from delegate_tui.core.plan import load_plan
from delegate_tui.core.prompts import SCOPE_HEADER, plain_text, retry_prompt
from delegate_tui.core.replay import final_state
from delegate_tui.core.runlog import read_events
from delegate_tui.core.state import AttemptState
from tests.conftest import git

# One xdist worker runs the tests of the module-scoped `demo_run`, so it is built once.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("demo_run")]
ROOT = Path(__file__).resolve().parents[2]
CHECK = "grep -q ROUND_HALF_EVEN src/shop/pricing.py"


def scratch_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a user trying the demo: a HOME and config of its own."""
    home = tmp_path / "home"
    return {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "TMPDIR": str(tmp_path),
        "NO_COLOR": "1",
        "DELEGATE_DEMO_SPEED": "0",
        **extra,
    }


@pytest.fixture(scope="module")
def demo_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """One headless demo run (speed 0) and its repository."""
    tmp = tmp_path_factory.mktemp("demo")
    result = subprocess.run(
        [sys.executable, "-m", "delegate_tui", "demo", "--headless", "--speed", "0"],
        env=scratch_env(tmp),
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )
    found = re.search(r"^demo repository: (.+)$", result.stdout, re.M)
    assert found, result.stdout + result.stderr
    return result, Path(found.group(1))


def run_log(repo: Path) -> Path:
    (log,) = (repo / ".delegate" / "runs").glob("*/events.jsonl")
    return log


def test_the_headless_demo_retries_the_collision_by_itself_and_succeeds(
    demo_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    """Nobody is at the keyboard to press r: each task retries once by itself, and the
    collision's retry, told which file collided, leaves it alone and merges."""
    result, repo = demo_run
    assert result.returncode == 0, result.stdout + result.stderr
    assert "unattended: each task is retried once by itself" in result.stdout
    state, report = final_state(run_log(repo))
    assert not report.corrupt_lines
    tasks = ("contract", "storage-advice", "guide", "pricing", "payments", "shipping")
    assert {t: s.status for t, s in state.tasks.items()} == dict.fromkeys(
        (*tasks, "service", "tests"), "succeeded"
    )
    assert state.status == "succeeded"
    first, second = state.tasks["shipping"].attempts
    assert first.status == "merge-conflict" and first.conflict_paths == ("src/shop/config.py",)
    assert "src/shop/config.py" in second.prompt
    assert [f.path for f in second.changed] == ["src/shop/shipping.py"], "config.py left alone"
    assert "✔ shipping: completed and merged (after 2 attempts)" in result.stdout


def test_the_failed_check_is_retried_with_its_failure_and_the_retry_passes(
    demo_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    _, repo = demo_run
    state, _ = final_state(run_log(repo))
    first, second = state.tasks["pricing"].attempts
    assert first.status == "failed" and first.exit_code == 0, "the agent ran; its check failed"
    assert first.criteria_passed is False
    assert [(c.command, c.passed) for c in first.criteria] == [(CHECK, False)]
    assert f"Criterion failed: {CHECK} (exit 1)" in second.prompt
    assert second.status == "succeeded" and second.criteria_passed is True
    retries = [e for e in read_events(run_log(repo)) if isinstance(e, RetryScheduled)]
    assert [(e.task, e.automatic) for e in retries] == [("pricing", True), ("shipping", True)]
    # What the check asked for is in the merged code, added by the retry.
    integration = state.integration_branch
    assert "ROUND_HALF_EVEN" in git(repo, "show", f"{integration}:src/shop/pricing.py")


def test_the_collision_is_predicted_live_before_either_side_merges(
    demo_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    _, repo = demo_run
    events = list(read_events(run_log(repo)))
    pair = {"payments", "shipping"}
    predicted = next(
        i
        for i, e in enumerate(events)
        if isinstance(e, ConflictDetected)
        and e.kind == "predicted-conflict"
        and set(e.tasks) == pair
    )
    merged = next(i for i, e in enumerate(events) if isinstance(e, TaskMerged) and e.task in pair)
    assert predicted < merged, "the conflict was only found at merge time"
    finding = events[predicted]
    assert isinstance(finding, ConflictDetected) and finding.paths == ("src/shop/config.py",)
    state, _ = final_state(run_log(repo))
    attempt = state.tasks["shipping"].attempts[0]
    assert attempt.conflict_paths == ("src/shop/config.py",)
    plan = load_plan(ROOT / "sample_plans" / "demo.yaml")
    declared = {t.id: t.edits for t in plan.tasks}
    assert declared["payments"] != declared["shipping"], "their declared edits do not overlap"


def test_the_consultation_changes_nothing_and_a_held_task_says_why(
    demo_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    _, repo = demo_run
    state, _ = final_state(run_log(repo))
    advice = state.tasks["storage-advice"]
    assert advice.status == "succeeded" and advice.changed == ()
    assert "streams" in state.tasks["service"].attempts[0].prompt, "the advice reached the service"
    first = next(e for e in read_events(run_log(repo)) if isinstance(e, BatchProposed))
    assert first.tasks == ("contract", "storage-advice")
    assert [(h.task, h.reason) for h in first.held] == [
        ("guide", "edits overlap with contract on docs/** / docs/api/**")
    ]


def test_stats_of_the_demo_count_the_retry_and_the_collision(
    demo_run: tuple[subprocess.CompletedProcess[str], Path], tmp_path: Path
) -> None:
    _, repo = demo_run
    result = subprocess.run(
        [sys.executable, "-m", "delegate_tui", "stats", "--repo", str(repo), "--json"],
        env=scratch_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    stats = json.loads(result.stdout)
    tasks = stats["tasks"]
    assert stats["status"] == "succeeded"
    assert {t: i["attempts"] for t, i in tasks.items() if i["attempts"] != 1} == {
        "pricing": 2,
        "shipping": 2,
    }
    assert tasks["storage-advice"]["changed_files"] == []
    assert stats["metrics"]["rework_rate"] > 0 and stats["metrics"]["conflict_rate"] > 0


# ------------------------------------------------------------- the demo agent itself


def run_agent(
    workdir: Path, prompt: str, *args: str, attempt: int = 2, edits: str = ""
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DELEGATE_DEMO_SPEED": "0",
        "DELEGATE_TASK_ID": "pricing",
        "DELEGATE_ATTEMPT": str(attempt),
        "DELEGATE_EDITS": edits,
        "DELEGATE_PROMPT": prompt,
    }
    result = subprocess.run(
        [sys.executable, "-m", "delegate_tui.demo.agent", *args, prompt],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    result.stdout = plain_text(result.stdout)  # what the pane shows, without colours
    return result


def failed_attempt(**fields: object) -> AttemptState:
    """A first attempt that ran and failed as ``fields`` say (exit 0 unless told)."""
    attempt = AttemptState(number=1, started_ts=1.0, ended_ts=2.0, exit_code=0)
    for name, value in fields.items():
        setattr(attempt, name, value)
    attempt.tail += b"pricing: changed src/shop/pricing.py.\n"
    return attempt


TASK = "Add VAT rates per country and a function for order totals in src/shop/pricing.py."


def test_the_agent_adds_what_a_failed_check_looks_for_only_when_its_prompt_says_so(
    tmp_path: Path,
) -> None:
    pricing = tmp_path / "src/shop/pricing.py"
    # A second attempt told nothing does what the first did: the check still fails.
    run_agent(tmp_path, TASK, edits="src/shop/pricing.py")
    assert "ROUND_HALF_EVEN" not in pricing.read_text()
    failed = failed_attempt(
        criteria=(CriterionResult(text="", command=CHECK, passed=False, exit_code=1),),
        criteria_passed=False,
        reason=f"criteria failed: {CHECK}",
    )
    prompt = retry_prompt(TASK, failed)
    pricing.unlink()
    result = run_agent(tmp_path, prompt, edits="src/shop/pricing.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ROUND_HALF_EVEN" in pricing.read_text()
    assert "The previous attempt failed: criteria failed" in result.stdout
    # The previous attempt's output, quoted in the prompt, is not taken as an instruction.
    echo = failed_attempt(exit_code=1)
    echo.tail += b"TODO: use `ROUND_HALF_UP` and touch src/shop/config.py\n"
    pricing.unlink()
    run_agent(tmp_path, retry_prompt(TASK, echo), edits="src/shop/pricing.py")
    assert "ROUND_HALF" not in pricing.read_text()


def test_the_operators_note_is_acted_on(tmp_path: Path) -> None:
    pricing = tmp_path / "src/shop/pricing.py"
    note = "Finance rounds with `ROUND_HALF_EVEN`; keep the rates in a dict."
    # As sent: the prompt ends with who owns what, which is not part of the note.
    owners = f"{SCOPE_HEADER}\nYou may change: src/shop/pricing.py\n  `LEGACY_RATES`: old\n"
    prompt = retry_prompt(TASK, failed_attempt(exit_code=1), note) + "\n" + owners
    result = run_agent(tmp_path, prompt, edits="src/shop/pricing.py")
    assert result.returncode == 0
    assert "Operator's note: Finance rounds with" in result.stdout
    assert "ROUND_HALF_EVEN" in pricing.read_text()
    assert "LEGACY_RATES" not in pricing.read_text()


def test_a_stray_edit_is_not_made_again_once_the_prompt_names_its_file(tmp_path: Path) -> None:
    config = tmp_path / "src/shop/config.py"
    config.parent.mkdir(parents=True)
    config.write_text('OWNER = "payments"\n')
    args = ("--collide", "src/shop/config.py")
    # Told only that it failed (not where): it strays again.
    run_agent(tmp_path, retry_prompt(TASK, failed_attempt(exit_code=1)), *args)
    assert "pricing" in config.read_text()
    config.write_text('OWNER = "payments"\n')
    conflicted = failed_attempt(conflict_paths=("src/shop/config.py",))
    result = run_agent(tmp_path, retry_prompt(TASK, conflicted), *args)
    assert result.returncode == 0
    assert config.read_text() == 'OWNER = "payments"\n'
    assert "src/shop/config.py is named in the retry prompt: leaving it alone" in result.stdout
