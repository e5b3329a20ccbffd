"""Benchmark 5: open a one-million-event log and seek to the end and to random points.

The log is generated (8 tasks, lifecycle events, and output chunks of about 80
bytes, the bulk of any real log) and written as the engine writes it: each
event applied to the run state, then written by the real LogWriter, which
keeps the index beside the log and takes keyframes. Measured: opening (through
that index), each seek (nearest keyframe plus the events after it), and, apart,
opening the same log with its index deleted. Target: open and every seek under 1 s.

Usage: python bench/replay_seek.py [--events 1000000] [--seeks 20] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from delegate_tui.core.events import (
    BatchApproved,
    BatchProposed,
    RunStarted,
    TaskExited,
    TaskFinished,
    TaskOutput,
    TaskStarted,
)
from delegate_tui.core.replay import ReplaySource
from delegate_tui.core.runlog import LogWriter, index_dir, read_events
from delegate_tui.core.state import RunState, apply, build, snapshot


def generate(path: Path, total: int) -> None:
    tasks = [f"t{i}" for i in range(8)]
    plan = {
        "name": "bench",
        "tasks": [{"id": t, "prompt": "x", "agent": "shell", "command": "true"} for t in tasks],
    }
    writer = LogWriter(path)
    state = RunState()
    seq, ts = 0, 1_790_000_000.0

    def put(ev: object) -> None:
        # As the engine records: number, stamp, apply, write (the writer takes keyframes).
        nonlocal seq, ts
        seq += 1
        ts += 0.001
        object.__setattr__(ev, "seq", seq)
        object.__setattr__(ev, "ts", ts)
        apply(state, ev)  # type: ignore[arg-type]
        writer.write(ev, lambda: snapshot(state))  # type: ignore[arg-type]

    put(RunStarted(run_id="bench", plan=plan, plan_path="", repo="/", isolation="none"))
    put(BatchProposed(batch=1, tasks=tuple(tasks)))
    put(BatchApproved(batch=1, tasks=tuple(tasks)))
    for i, task in enumerate(tasks):
        put(
            TaskStarted(
                task=task,
                attempt=1,
                agent="shell",
                argv=("true",),
                cwd="/",
                pid=100 + i,
                pgid=100 + i,
                prompt="",
            )
        )
    line = b"x" * 70
    n = 0
    while seq < total - 2 * len(tasks):
        task = tasks[n % len(tasks)]
        put(TaskOutput(task=task, attempt=1, data=b"%08d " % n + line + b"\r\n"))
        n += 1
    for task in tasks:
        put(TaskExited(task=task, attempt=1, exit_code=0, duration_s=1.0))
        put(TaskFinished(task=task, attempt=1, status="succeeded"))
    writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--seeks", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="delegate-seek-") as tmp:
        log = Path(tmp) / "events.jsonl"
        start = time.perf_counter()
        generate(log, args.events)
        generated = time.perf_counter() - start
        size = log.stat().st_size
        start = time.perf_counter()
        source = ReplaySource.from_log(log)
        opened = time.perf_counter() - start
        timings = []
        rng = random.Random(7)
        targets = [
            len(source.events),
            0,
            *[rng.randrange(len(source.events)) for _ in range(args.seeks)],
        ]
        for target in targets:
            start = time.perf_counter()
            source.seek(target)
            timings.append(time.perf_counter() - start)
        assert source.index == targets[-1]
        # The same picture as folding every event from the start (not timed).
        source.seek(len(source.events))
        folded = build(read_events(log))
        assert snapshot(source.state) == snapshot(folded), "seek to the end differs from a fold"
        # A log without its index (written by an older version, or copied without it):
        # opening indexes it once, keyframes included, and saves that beside it.
        index_size = sum(f.stat().st_size for f in index_dir(log).iterdir())
        shutil.rmtree(index_dir(log))
        start = time.perf_counter()
        ReplaySource.from_log(log)
        unindexed = time.perf_counter() - start
        start = time.perf_counter()
        ReplaySource.from_log(log).seek(targets[0])
        reopened = time.perf_counter() - start
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "events": len(source.events),
        "log_mb": round(size / 1e6, 1),
        "index_mb": round(index_size / 1e6, 1),
        "generate_s": round(generated, 1),
        "open_ms": round(opened * 1000),
        "open_unindexed_s": round(unindexed, 1),
        "reopen_and_seek_end_ms": round(reopened * 1000),
        "seek_end_ms": round(timings[0] * 1000),
        "seek_max_ms": round(max(timings) * 1000),
        "seek_median_ms": round(sorted(timings)[len(timings) // 2] * 1000),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"replay seek: {result['events']:,} events ({result['log_mb']} MB log, "
        f"{result['index_mb']} MB index), {result['machine']}"
    )
    print(
        f"  open (through the index the writer kept): {result['open_ms']} ms; "
        f"peak RSS {result['peak_rss_mb']} MB"
    )
    print(
        f"  seek to end {result['seek_end_ms']} ms; {len(timings)} seeks: median {result['seek_median_ms']} ms, "
        f"max {result['seek_max_ms']} ms (target < 1000 ms)"
    )
    print(
        f"  a log without its index: first open {result['open_unindexed_s']} s (indexes and saves "
        f"it); then open + seek to end {result['reopen_and_seek_end_ms']} ms"
    )


if __name__ == "__main__":
    main()
