"""The benchmarks still run (on a tiny workload) and measure what they claim to measure:
the workload asked for, every byte and write accounted for, figures that agree with each
other. Their numbers live in bench/README.md.

Every subprocess limit stays under pytest's own timeout (120 s in pyproject.toml), so a
slow benchmark fails with its own message instead of being cut off by pytest.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e
BENCH = Path(__file__).resolve().parents[2] / "bench"
#: Under pytest's 120 s timeout for the whole test.
LIMIT_S = 100
#: Where bench/peers.py keeps the peers it installs from npm (its default folder).
PEERS_DIR = Path(
    os.environ.get("DELEGATE_BENCH_PEERS", Path(tempfile.gettempdir()) / "delegate-bench-peers")
)


def bench(*args: str) -> dict[str, Any]:
    """Run a benchmark script with ``--json`` and return what it printed (JSON: any values)."""
    result = subprocess.run(
        [sys.executable, str(BENCH / args[0]), *args[1:], "--json"],
        capture_output=True,
        text=True,
        timeout=LIMIT_S,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_ingest_benchmark_moves_the_whole_workload_and_checks_every_byte() -> None:
    data = bench("ingest.py", "--lines", "2000")
    # 8 agents x 2,000 lines of 80 bytes: the benchmark measured the workload asked for.
    assert (data["agents"], data["lines_per_agent"], data["bytes"]) == (8, 2000, 8 * 2000 * 80)
    assert data["headless_pty_bytes_ok"] is True and data["headless_pipes_bytes_ok"] is True
    for transport in ("pty", "pipes"):
        headless, bare = data[f"headless_{transport}_s"], data[f"bare_{transport}_s"]
        assert isinstance(headless, float) and isinstance(bare, float) and bare > 0
        assert data[f"headless_{transport}_ratio"] == pytest.approx(headless / bare, rel=0.1)


def test_conflict_latency_benchmark_sees_every_write_and_shows_it_after_it_was_watched() -> None:
    data = bench("conflict_latency.py", "--files", "200", "--agents", "2", "--writes", "3")
    assert (data["files"], data["agents"], data["writes"], data["missed"]) == (200, 2, 6, 0)
    watched, found = data["watched_p50_ms"], data["finding_p50_ms"]
    assert isinstance(watched, int) and isinstance(found, int)
    assert 0 < watched <= found, "a finding cannot be shown before its change was seen"
    assert found <= data["finding_p95_ms"] <= data["finding_max_ms"] < 5000


def test_replay_seek_benchmark_seeks_a_whole_log_within_its_target() -> None:
    """The script itself fails unless a seek to the end equals folding the whole log."""
    data = bench("replay_seek.py", "--events", "5000", "--seeks", "5")
    assert data["events"] == 5000
    assert data["seek_median_ms"] <= data["seek_max_ms"] < 1000
    assert data["open_ms"] < 1000
    assert 0 < data["index_mb"] < data["log_mb"]


def test_many_runs_benchmark_reads_every_run_cold_warm_and_unindexed() -> None:
    data = bench("many_runs.py", "--runs", "6", "--events", "300")
    # 6 runs of about 300 events each: the workload asked for, every run read each time
    # (the benchmark itself checks the kept summaries against the folds).
    assert data["runs"] == 6 and 6 * 250 <= data["events"] <= 6 * 400
    assert data["cold_s"] > 0 and data["unindexed_s"] > 0
    assert data["warm_ms"] >= 0 and data["command_warm_ms"] > 0
    assert 0 < data["conflict_rate"] < 1 and 0 < data["rework_rate"] < 1


def test_plan_scale_benchmark_fills_every_slot_of_the_first_batch() -> None:
    """The generated plan is seeded: 200 tasks in 12 layers, max_parallel 8, many ready."""
    data = bench("plan_scale.py", "--tasks", "200")
    assert (data["tasks"], data["layers"], data["first_batch"]) == (200, 12, 8)
    assert data["held_with_reasons"] >= 1
    assert data["total_ms"] < 5000


@pytest.mark.skipif(
    shutil.which("tmux") is None, reason="bench/startup.py drives a real terminal through tmux"
)
def test_startup_benchmark_sees_the_run_screen_drawn() -> None:
    """The script fails unless the run screen (Tasks, Agents) appears within 10 s."""
    data = bench("startup.py", "--runs", "1")
    assert data["runs"] == 1
    assert 0 < data["median_ms"] == data["max_ms"] < 10_000


@pytest.mark.skipif(
    shutil.which("tmux") is None, reason="bench/ui_flood.py drives a real terminal through tmux"
)
def test_ui_flood_benchmark_answers_keys_during_the_flood() -> None:
    data = bench("ui_flood.py", "--lines", "3000", "--rounds", "1", "--lead", "1.5")
    assert data["lines_per_agent"] == 3000
    assert data["ui_launch_to_end_s"] > data["ui_wall_s"] > 0
    assert data["key_samples"] >= 1 and data["key_median_ms"] is not None, "no key was answered"
    assert 0 < data["peak_rss_mb"] < 300


@pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in ("tmux", "npm", "node")),
    reason="bench/peers.py drives TUIs through tmux and runs peers installed with npm",
)
def test_peers_benchmark_runs_every_tool() -> None:
    """The test never downloads: installing the peers can take longer than a test may."""
    bin_dir = PEERS_DIR / "node_modules" / ".bin"
    missing = [t for t in ("concurrently", "mprocs", "turbo") if not (bin_dir / t).exists()]
    if missing:
        pytest.skip(
            f"peers {', '.join(missing)} not installed in {PEERS_DIR}; install them once with "
            f"`python3 bench/peers_install.py {PEERS_DIR}` (uses npm)"
        )
    data = bench("peers.py", "--lines", "1000", "--peers", str(PEERS_DIR))
    assert data["lines_per_agent"] == 1000 and data["headless_bytes_ok"] is True
    for tool in ("ui", "ui_pipes", "concurrently", "concurrently_raw", "mprocs", "turbo"):
        assert 0 < data[f"{tool}_s"] < LIMIT_S, tool


@pytest.mark.skipif(
    shutil.which("tmux") is None, reason="bench/attach.py drives a real terminal through tmux"
)
def test_attach_benchmark_shows_a_live_run_of_many_events() -> None:
    """The script fails unless the run stays live while views attach and detach, and
    every attach shows all eight tasks and their live agents' output."""
    data = bench("attach.py", "--events", "3000", "--floor-events", "200", "--rounds", "1")
    assert (data["events"], data["floor_events"], data["rounds"]) == (3000, 200, 1)
    assert 0 < data["catch_up_median_ms"] <= data["attach_median_ms"] < 60_000
    assert data["attach_median_ms"] == data["attach_max_ms"]
    assert 0 < data["service_rss_mb"] < 300


def test_service_flood_benchmark_logs_every_byte_and_tells_a_stalled_view_what_it_skipped() -> None:
    """Headless and detached runs of the flood, one with a view that reads nothing (the
    UI runs are left out: ui_flood's smoke test drives the UI under a flood)."""
    data = bench("service_flood.py", "--lines", "2000", "--rounds", "1", "--no-ui")
    assert data["lines_per_agent"] == 2000 and data["bytes_ok"] is True
    assert 0 < data["headless_log_median_s"] <= data["headless_median_s"]
    assert len(data["detached_log_s"]) == len(data["stalled_log_s"]) == 1
    assert 0 < data["stalled_peak_rss_mb"] < 300


def test_many_tasks_benchmark_merges_every_task_and_leaves_nothing_behind() -> None:
    # 12 tasks, 4 at a time: three rounds, so the steady-state medians (after the first two
    # rounds) have tasks too. 24 tasks in 300 files took a quarter more CPU (5.9 s, not 4.5).
    data = bench(
        "many_tasks.py", "--tasks", "12", "--files", "100", "--parallel", "4", "--git-floor", "1"
    )
    assert (data["tasks"], data["merged"], data["worktrees_left"]) == (12, 12, 0)
    assert data["branches_left"] == 12 + 2  # every task's branch, main and the integration branch
    phases = data["phase_median_ms"]
    assert isinstance(phases, dict) and set(phases) == {
        "worktree+spawn",
        "agent",
        "snapshot",
        "merge",
    }
    assert data["wall_per_task_ms"] > 0 and data["git_floor_per_task_ms"] > 0
    for point in ("start", "after_100", "peak", "end"):
        assert data[point]["fds"] > 0 and data[point]["rss_mb"] > 0


def test_sandbox_benchmark_times_both_starts_and_moves_every_byte_either_way() -> None:
    from delegate_tui.core.sandbox import probe

    if not probe().ok:
        pytest.skip(f"no sandbox on this machine: {probe().reason}")
    data = bench("sandbox.py", "--starts", "5", "--lines", "500", "--rounds", "1")
    assert data["starts"] == 5 and data["lines_per_agent"] == 500
    assert data["flood_off_bytes_ok"] is True and data["flood_worktree_bytes_ok"] is True
    bare, boxed = data["bare_start_ms"], data["sandboxed_start_ms"]
    assert isinstance(bare, float) and isinstance(boxed, float) and bare > 0
    assert data["extra_start_ms"] == pytest.approx(boxed - bare, abs=0.02)
    assert isinstance(data["take_ms"], float) and data["take_ms"] > 0  # an agent's commit came in
    assert data["flood_ratio"] == pytest.approx(
        data["flood_worktree_s"] / data["flood_off_s"],
        rel=0.02,
    )


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_a_benchmark_terminal_runs_its_app_with_a_scratch_home_removed_at_close() -> None:
    """The app a benchmark launches never reads the operator's config (issue 12, item 16)."""
    from bench.tmux_term import Terminal

    with Terminal(120, 10) as term:
        term.start('echo "H=$HOME X=$XDG_CONFIG_HOME"; sleep 30')
        term.wait_for(lambda screen: "H=" in screen, 10)
        shown = term.screen()
        home = term.home
        assert home.is_dir() and str(home) != os.environ.get("HOME")
        assert f"H={home} X={home / '.config'}" in shown, shown
    assert not home.exists(), "removed at close"
