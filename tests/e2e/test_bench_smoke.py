"""The benchmarks still run (on a tiny workload); their numbers live in bench/README.md."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_ingest_benchmark_runs_and_checks_every_byte() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH / "ingest.py"), "--lines", "2000", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    data = json.loads(result.stdout)
    assert data["headless_pty_bytes_ok"] and data["headless_pipes_bytes_ok"]
    assert data["headless_pty_s"] > 0 and data["bare_pipes_s"] > 0


def test_conflict_latency_benchmark_runs_and_sees_every_write() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(BENCH / "conflict_latency.py"),
            "--files",
            "200",
            "--agents",
            "2",
            "--writes",
            "3",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    data = json.loads(result.stdout)
    assert data["writes"] == 6 and data["missed"] == 0
    assert 0 < data["finding_p50_ms"] < 5000


def test_replay_seek_benchmark_runs() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(BENCH / "replay_seek.py"),
            "--events",
            "5000",
            "--seeks",
            "5",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    data = json.loads(result.stdout)
    assert data["events"] == 5000 and data["seek_max_ms"] < 1000


def test_plan_scale_benchmark_runs() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH / "plan_scale.py"), "--tasks", "200", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    data = json.loads(result.stdout)
    assert data["tasks"] == 200 and data["first_batch"] >= 1 and data["held_with_reasons"] >= 1


@pytest.mark.skipif(
    shutil.which("tmux") is None, reason="bench/startup.py drives a real terminal through tmux"
)
def test_startup_benchmark_runs() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH / "startup.py"), "--runs", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(result.stdout)["median_ms"] > 0


@pytest.mark.skipif(
    shutil.which("tmux") is None, reason="bench/ui_flood.py drives a real terminal through tmux"
)
def test_ui_flood_benchmark_runs() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH / "ui_flood.py"), "--lines", "3000", "--json"],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    data = json.loads(result.stdout)
    assert data["ui_wall_s"] > 0 and data["peak_rss_mb"] > 0
    assert data["ui_launch_to_end_s"] > data["ui_wall_s"]  # start-up is counted


@pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in ("tmux", "npm", "node")),
    reason="bench/peers.py installs its peers with npm and drives TUIs through tmux",
)
def test_peers_benchmark_runs_every_tool(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(BENCH / "peers.py"),
            "--lines",
            "2000",
            "--peers",
            str(tmp_path / "peers"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    data = json.loads(result.stdout)
    assert data["headless_bytes_ok"]
    for tool in ("ui", "ui_pipes", "concurrently", "concurrently_raw", "mprocs", "turbo"):
        assert data[f"{tool}_s"] > 0, tool
