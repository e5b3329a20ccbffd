"""`stats --all` over a repository with many past runs (issue 16).

Generates RUNS run logs (default 200) in a scratch repository's
``.delegate/runs/``, each written as the engine writes one: every event applied
to the run state, then written by the real LogWriter (which keeps the index
beside the log). A run has 8 tasks, each attempt's agent messages, tool calls,
token usage with a cost, and output chunks (EVENTS events per run in all, the
bulk of any log); some tasks fail and are retried, some collide; the run ends
with RunFinished and its metrics, as the engine ends it.

Measured, in this process (``report.list_runs`` + ``history.aggregate``, what
``stats --all`` and the runs screen do):
* cold: the logs as runs leave them (index, no summary kept yet): each log is
  folded through its index (``final_state``) and its summary is kept;
* warm: every summary kept and the logs unchanged (every later look);
* unindexed: logs with neither index nor summary (copied from elsewhere);
and ``delegate-tui stats --all`` as a user runs it (warm), start-up included.

Usage: python bench/many_runs.py [--runs 200] [--events 2000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from delegate_tui import report
from delegate_tui.core import history, metrics
from delegate_tui.core.events import (
    AgentMessage,
    AgentToolFinished,
    AgentToolStarted,
    AgentUsage,
    BatchApproved,
    BatchProposed,
    ConflictDetected,
    Event,
    RetryScheduled,
    RunFinished,
    RunStarted,
    TaskExited,
    TaskFinished,
    TaskOutput,
    TaskStarted,
    TokenUsage,
)
from delegate_tui.core.runlog import LogWriter, index_dir, runs_dir
from delegate_tui.core.state import RunState, apply, snapshot

TASKS = [f"t{i}" for i in range(8)]


def generate(log: Path, run: int, events: int, rng: random.Random) -> None:
    """One run of ``events`` events or so, started ``run`` hours into the series."""
    run_id = log.parent.name
    plan = {
        "name": "bench",
        "tasks": [{"id": t, "prompt": "x", "agent": "shell", "command": "true"} for t in TASKS],
    }
    writer = LogWriter(log)
    state = RunState()
    seq, ts = 0, 1_790_000_000.0 + 3600.0 * run

    def put(ev: Event, gap: float = 0.01) -> None:
        nonlocal seq, ts
        seq += 1
        ts += gap
        object.__setattr__(ev, "seq", seq)
        object.__setattr__(ev, "ts", ts)
        apply(state, ev)
        writer.write(ev, lambda: snapshot(state))

    put(RunStarted(run_id=run_id, plan=plan, plan_path="", repo="/", isolation="none"))
    put(BatchProposed(batch=1, tasks=tuple(TASKS)))
    put(BatchApproved(batch=1, tasks=tuple(TASKS)))
    retried = {t for t in TASKS if rng.random() < 0.1 + 0.2 * (run % 3 == 0)}
    collided = rng.sample(TASKS, 2) if rng.random() < 0.4 else []
    attempts = len(TASKS) + len(retried)
    line = b"x" * 70 + b"\r\n"
    for number in (1, 2):
        names = TASKS if number == 1 else sorted(retried)
        if not names:
            break
        for i, task in enumerate(names):
            if number == 2:
                put(RetryScheduled(task=task, attempt=2, prompt="again", automatic=True))
            put(
                TaskStarted(
                    task=task,
                    attempt=number,
                    agent="shell",
                    argv=("true",),
                    cwd="/",
                    pid=100 + i,
                    pgid=100 + i,
                    prompt="x",
                )
            )
        for n in range(max(1, (events - 10 - 6 * attempts) * len(names) // attempts)):
            task = names[n % len(names)]
            if n % 5 == 0:
                put(AgentMessage(task=task, attempt=number, text=f"step {n}: editing files"))
            elif n % 5 == 1:
                put(
                    AgentToolStarted(
                        task=task,
                        attempt=number,
                        tool_id=f"c{n}",
                        name="Edit",
                        paths=(f"src/{task}.py",),
                        writes=True,
                    )
                )
            elif n % 5 == 2:
                put(AgentToolFinished(task=task, attempt=number, tool_id=f"c{n}", ok=True))
            else:
                put(TaskOutput(task=task, attempt=number, data=b"%08d " % n + line))
        if number == 1 and collided:
            put(
                ConflictDetected(
                    key=f"k{run}",
                    kind="overlap",
                    severity="warning",
                    tasks=tuple(collided),
                    paths=("src/x.py",),
                )
            )
        for task in names:
            failed = number == 1 and task in retried
            tokens = TokenUsage(model="m", input=20_000, cached=50_000, output=3_000)
            put(
                AgentUsage(
                    task=task,
                    attempt=number,
                    usage=(tokens,),
                    cost_usd=round(0.05 + 0.1 * rng.random(), 4),
                    cost_source="cli",
                )
            )
            put(TaskExited(task=task, attempt=number, exit_code=1 if failed else 0), gap=1.0)
            put(TaskFinished(task=task, attempt=number, status="failed" if failed else "succeeded"))
    m = metrics.compute(state, ts + 0.01)
    put(RunFinished(status="succeeded", metrics=m, summary=metrics.summarize(state)))
    writer.close()


def timed_list(repo: Path) -> tuple[float, int, history.History]:
    start = time.perf_counter()
    rows, skipped = report.list_runs(repo)
    past = history.aggregate([r.summary for r in rows])
    elapsed = time.perf_counter() - start
    assert not skipped, skipped
    return elapsed, len(rows), past


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rng = random.Random(16)
    with tempfile.TemporaryDirectory(prefix="delegate-runs-") as tmp:
        repo = Path(tmp)
        start = time.perf_counter()
        logs = []
        for run in range(args.runs):
            folder = runs_dir(repo) / f"2026{run // 24 + 1:04d}-{run % 24:02d}0000-b{run:03d}"
            folder.mkdir(parents=True)
            logs.append(folder / "events.jsonl")
            generate(logs[-1], run, args.events, rng)
        generated = time.perf_counter() - start
        events = sum(len(log.read_bytes().splitlines()) for log in logs)
        size = sum(log.stat().st_size for log in logs)
        cold, count, past = timed_list(repo)
        warm, _, again = timed_list(repo)
        assert again == past, "the kept summaries differ from the folds"
        assert count == args.runs and past.finished == args.runs
        env = {**os.environ, "HOME": tmp, "XDG_CONFIG_HOME": str(Path(tmp) / ".config")}
        start = time.perf_counter()
        cli = subprocess.run(
            [sys.executable, "-m", "delegate_tui", "stats", "--all", "--repo", tmp],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        command = time.perf_counter() - start
        assert cli.stdout.count("bench") == args.runs, cli.stdout[-2000:]
        for log in logs:
            shutil.rmtree(index_dir(log))
        unindexed, _, fresh = timed_list(repo)
        assert fresh == past
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "runs": count,
        "events": events,
        "log_mb": round(size / 1e6, 1),
        "generate_s": round(generated, 1),
        "cold_s": round(cold, 2),
        "cold_per_run_ms": round(cold * 1000 / count, 1),
        "warm_ms": round(warm * 1000),
        "warm_per_run_ms": round(warm * 1000 / count, 2),
        "unindexed_s": round(unindexed, 2),
        "command_warm_ms": round(command * 1000),
        "conflict_rate": past.conflict_rate,
        "rework_rate": past.rework_rate,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"stats --all: {count} runs, {events:,} events ({result['log_mb']} MB of logs), "
        f"{result['machine']}"
    )
    print(
        f"  cold (folded through each index, summaries kept): {result['cold_s']} s "
        f"({result['cold_per_run_ms']} ms a run)"
    )
    print(
        f"  warm (summaries kept, logs unchanged): {result['warm_ms']} ms "
        f"({result['warm_per_run_ms']} ms a run)"
    )
    print(f"  `delegate-tui stats --all`, warm, start-up included: {result['command_warm_ms']} ms")
    print(f"  logs without index or summary: {result['unindexed_s']} s")


if __name__ == "__main__":
    main()
