"""`delegate-tui stats --all` on real runs: the demo plan run headless with the demo agent
(a failed check retried, a collision that ends in a merge conflict; its agent reports no
cost), then a plan whose agent is a real process printing a recorded claude stream (read
by the real parser: tokens and the cost claude reported). Every number of the cross-run
view must be the one `stats RUN --json` has for that run, and the totals their sums.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from delegate_tui.core import history
from delegate_tui.core.replay import final_state
from delegate_tui.core.runlog import index_dir
from delegate_tui.demo.scaffold import make_demo_repo
from tests.conftest import run_cli

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("stats_all")]
STREAM = Path(__file__).resolve().parents[1] / "streams" / "claude-write.jsonl"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[Path]]:
    """The demo repository after two runs (demo plan, then recorded agents), its scratch
    HOME, and the two logs, oldest first."""
    tmp = tmp_path_factory.mktemp("stats-all")
    plan = make_demo_repo(tmp)
    repo = plan.parent.parent
    home = tmp / "home"
    result = run_cli("run", str(plan), "--headless", "--yes", cwd=repo, home=home, timeout=180)
    assert result.returncode == 1, result.stdout + result.stderr  # partial: shipping conflicts
    recorded = plan.parent / "recorded.yaml"
    recorded.write_text(
        textwrap.dedent(
            f"""\
            name: Recorded agents
            agents:
              recorded:
                command: ["cat", "{STREAM}"]
                stream: claude
            tasks:
              - {{id: one, agent: recorded, prompt: "write it"}}
              - {{id: two, agent: recorded, prompt: "write it again"}}
            """
        )
    )
    result = run_cli("run", str(recorded), "--headless", "--yes", cwd=repo, home=home, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    logs = sorted((repo / ".delegate" / "runs").glob("*/events.jsonl"))
    assert len(logs) == 2
    return repo, home, logs


def stats_of(repo: Path, home: Path, log: Path) -> dict[str, object]:
    result = run_cli("stats", str(log), "--json", cwd=repo, home=home)
    assert result.returncode == 0, result.stderr
    data: dict[str, object] = json.loads(result.stdout)
    return data


def test_each_run_kept_its_summary_when_it_ended(runs: tuple[Path, Path, list[Path]]) -> None:
    _repo, _home, logs = runs
    for log in logs:  # before anything read the runs: only the run itself wrote these
        kept = json.loads((index_dir(log) / history.SUMMARY_NAME).read_text())
        state, _ = final_state(log)
        # what the live run kept is what a fold of its log gives
        assert history._from_json(kept["summary"]) == history.summarize(state)
        assert history.load_summary(log) == history.summarize(state)


def test_stats_all_json_has_every_run_as_stats_has_it(
    runs: tuple[Path, Path, list[Path]],
) -> None:
    repo, home, logs = runs
    result = run_cli("stats", "--all", "--json", cwd=repo, home=home)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["repo"] == str(repo)
    assert [r["log"] for r in data["runs"]] == [str(log) for log in reversed(logs)]
    singles = [stats_of(repo, home, log) for log in reversed(logs)]
    for run, single in zip(data["runs"], singles, strict=True):
        m = single["metrics"]
        assert run["run_id"] == single["run_id"] and run["status"] == single["status"]
        for key in ("wall_s", "time_saved_s", "operator_wait_s", "conflict_rate", "rework_rate"):
            assert run[key] == m[key], key  # type: ignore[index]
        assert run["cost_usd"] == single["cost_usd"] and run["tokens"] == single["tokens"]
        assert run["verdict"] == single["verdict"]
    recorded, demo = data["runs"]
    assert demo["status"] == "partial" and demo["cost_usd"] is None
    assert demo["conflict_rate"] > 0 and demo["rework_rate"] > 0
    # Two tasks, each the recorded stream: claude's own cost, twice.
    assert recorded["cost_usd"] == pytest.approx(2 * 0.01162) and recorded["cost_source"] == "cli"
    assert recorded["tokens"]["output"] == 2 * 60
    every = data["all"]
    assert (every["runs"], every["finished"], every["cost_unknown"]) == (2, 2, 1)
    assert every["cost_usd"] == pytest.approx(recorded["cost_usd"])
    assert every["time_saved_s"] == pytest.approx(demo["time_saved_s"] + recorded["time_saved_s"])
    # Pooled over the tasks that ran: the demo's collided and retried tasks over 8 + 2.
    assert every["conflict_rate"] == pytest.approx(demo["conflict_rate"] * 8 / 10, abs=1e-4)
    assert every["rework_rate"] == pytest.approx(demo["rework_rate"] * 8 / 10, abs=1e-4)
    conflict = every["trends"]["conflict_rate"]
    assert conflict["runs"] == [demo["run_id"], recorded["run_id"]]  # oldest first
    assert conflict["values"] == [demo["conflict_rate"], 0.0]
    assert conflict["direction"] == "better"
    assert every["trends"]["cost_usd"]["values"] == [recorded["cost_usd"]]


def test_stats_all_text_is_a_line_a_run_the_totals_and_the_chart(
    runs: tuple[Path, Path, list[Path]],
) -> None:
    repo, home, logs = runs
    result = run_cli("stats", "--all", cwd=repo, home=home)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"Runs of {repo}: 2 run(s), 2 finished, newest first"
    demo = stats_of(repo, home, logs[0])
    recorded = stats_of(repo, home, logs[1])
    (demo_line,) = [line for line in lines if line.strip().startswith(str(demo["run_id"]))]
    assert "partial" in demo_line and "7/8" in demo_line and "Shop checkout (demo)" in demo_line
    m = demo["metrics"]
    assert f"{m['conflict_rate']:.0%}" in demo_line and f"{m['rework_rate']:.0%}" in demo_line  # type: ignore[index]
    assert demo_line.split()[-4] == "-"  # no cost reported
    (rec_line,) = [line for line in lines if line.strip().startswith(str(recorded["run_id"]))]
    assert "succeeded" in rec_line and "2/2" in rec_line and "$0.02" in rec_line
    tokens = sum(recorded["tokens"].values())  # type: ignore[attr-defined]
    assert 1000 < tokens < 100_000  # claude's input, cache reads and output, twice
    assert f"agents: $0.02 (1 run(s) reported no cost); {tokens / 1000:.1f}k tokens" in (
        result.stdout
    )
    trend = lines[lines.index(next(x for x in lines if x.startswith("Trend"))) :]
    assert trend[0].startswith("Trend (last 2 finished runs, oldest first")
    assert [t.split()[0] for t in trend[1:]] == ["time", "conflict", "rework", "cost"]
    conflict = next(t for t in trend if t.strip().startswith("conflict rate"))
    assert "█▁" in conflict and "newest      0%" in conflict and "better" in conflict


def test_stats_all_refuses_a_run_and_an_empty_repository_and_leaves_out_a_broken_log(
    runs: tuple[Path, Path, list[Path]], tmp_path: Path
) -> None:
    repo, home, logs = runs
    result = run_cli("stats", "latest", "--all", cwd=repo, home=home)
    assert result.returncode == 2 and "give --repo, not RUN" in result.stderr
    result = run_cli("stats", "--all", "--repo", str(tmp_path), cwd=tmp_path, home=home)
    assert result.returncode == 2 and "no runs in" in result.stderr
    broken = tmp_path / ".delegate" / "runs" / "20260101-000000-dead" / "events.jsonl"
    broken.parent.mkdir(parents=True)
    broken.write_text('{"type": "Notice", "seq": 1, "ts": 1.0, "level": "info", "message": "x"}\n')
    good = tmp_path / ".delegate" / "runs" / logs[1].parent.name
    good.mkdir()
    (good / "events.jsonl").write_bytes(logs[1].read_bytes())
    result = run_cli("stats", "--all", "--repo", str(tmp_path), cwd=tmp_path, home=home)
    assert result.returncode == 0, result.stderr
    assert f"left out: {broken}: not a delegate-tui run log" in result.stderr
    assert "1 run(s), 1 finished" in result.stdout
