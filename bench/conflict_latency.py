"""Benchmark 4: a file written by an agent -> the finding, with 8 worktrees of 5,000 files.

Each of 8 agents (in its own worktree of a 5,000-file repository) writes a
new file every 0.3-0.9 s, outside its declared edits, and records the moment
each write finished. The benchmark runs the real engine in-process and
matches every write to the first FilesChanged that lists the path (the
watcher saw it) and the first ConflictDetected naming it (the finding the
sidebar shows; the UI adds at most one 50 ms refresh tick on top).

Usage: python bench/conflict_latency.py [--files 5000] [--agents 8] [--writes 12] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from delegate_tui.core.engine import Engine, EngineOptions
from delegate_tui.core.events import ConflictDetected, Event, FilesChanged
from delegate_tui.core.plan import load_plan

AGENT = """
import os, random, sys, time
rng = random.Random(os.environ["DELEGATE_TASK_ID"])
out = open(os.environ["BENCH_LOG"], "a")
for k in range(int(sys.argv[1])):
    time.sleep(rng.uniform(0.3, 0.9))
    path = f"scratch/{os.environ['DELEGATE_TASK_ID']}-{k}.txt"
    os.makedirs("scratch", exist_ok=True)
    with open(path, "w") as fh:
        fh.write("x\\n" * 10)
    out.write(f"{os.environ['DELEGATE_TASK_ID']} {path} {time.time()}\\n")
    out.flush()
"""


def make_repo(root: Path, files: int) -> Path:
    repo = root / "repo"
    for i in range(files):
        path = repo / "src" / f"pkg{i // 100}" / f"mod{i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"VALUE_{i} = {i}\n")
    for args in (
        ["init", "-q"],
        ["add", "-A"],
        ["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-q", "-m", "init"],
    ):
        subprocess.run(["git", *args], cwd=repo, check=True)
    return repo


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def run(repo: Path, agents: int, writes: int, log: Path) -> list[Event]:
    agent_file = repo.parent / "agent.py"
    agent_file.write_text(AGENT)
    tasks = "".join(
        f"  - {{id: a{i}, agent: shell, edits: ['src/pkg{i}/**'], command: [{sys.executable!r}, {str(agent_file)!r}, '{writes}']}}\n"
        for i in range(agents)
    )
    plan_path = repo.parent / "plan.yaml"
    plan_path.write_text(f"name: latency\nrepo: repo\nmax_parallel: {agents}\ntasks:\n{tasks}")
    engine = Engine(load_plan(plan_path), EngineOptions(auto_approve=True))
    events: list[Event] = []
    engine.subscribe(events.append)
    os.environ["BENCH_LOG"] = str(log)
    await engine.run()
    return events


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--agents", type=int, default=8)
    parser.add_argument("--writes", type=int, default=12)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="delegate-latency-") as tmp:
        root = Path(tmp)
        repo = make_repo(root, args.files)
        log = root / "writes.log"
        events = asyncio.run(run(repo, args.agents, args.writes, log))
        writes = [line.split() for line in log.read_text().splitlines()]
    seen: dict[tuple[str, str], float] = {}
    found: dict[tuple[str, str], float] = {}
    for ev in events:
        if isinstance(ev, FilesChanged):
            for f in ev.files:
                seen.setdefault((ev.task, f.path), ev.ts)
        elif isinstance(ev, ConflictDetected):
            for path in ev.paths:
                for task in ev.tasks:
                    found.setdefault((task, path), ev.ts)
    watched = [seen[(t, p)] - float(ts) for t, p, ts in writes if (t, p) in seen]
    shown = [found[(t, p)] - float(ts) for t, p, ts in writes if (t, p) in found]
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "files": args.files,
        "agents": args.agents,
        "writes": len(writes),
        "missed": len(writes) - len(shown),
        "watched_p50_ms": round(statistics.median(watched) * 1000),
        "watched_p95_ms": round(percentile(watched, 95) * 1000),
        "finding_p50_ms": round(statistics.median(shown) * 1000),
        "finding_p95_ms": round(percentile(shown, 95) * 1000),
        "finding_max_ms": round(max(shown) * 1000),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"conflict latency: {args.agents} worktrees of a {args.files:,}-file repo, {len(writes)} writes, {result['machine']}"
    )
    print(
        f"  write -> FilesChanged      p50 {result['watched_p50_ms']} ms, p95 {result['watched_p95_ms']} ms"
    )
    print(
        f"  write -> ConflictDetected  p50 {result['finding_p50_ms']} ms, p95 {result['finding_p95_ms']} ms, "
        f"max {result['finding_max_ms']} ms (target p95 < 300 ms); missed {result['missed']}"
    )


if __name__ == "__main__":
    main()
