"""Issue 13: attach the full UI to a live run whose log holds a million events.

The run: 8 shell tasks whose first attempts wrote N events (default 1,000,000:
lifecycle events and output chunks of about 80 bytes, the bulk of any real
log), written as the engine writes a log (each event applied to the run state,
then written by the real LogWriter, which keeps the index and keyframes beside
it); the run was cut off there. A run service takes it over as `delegate-tui
resume` does (a process of its own session, the same hidden `_service`
command `run` and `resume` start): it marks the cut-off attempts interrupted and
starts the tasks again, and the agents (`echo attached-tN; sleep`) keep the run
live. Then, --rounds times, `delegate-tui attach` opens the UI on it in a real
terminal (tmux, 200x60), timed from launch until the screen shows the whole run:
the task list with all eight tasks and the live agents' output. Target: under
1 s. Apart, what the log's size costs: the same attach without a UI (connect,
hello, the state from the log's newest keyframe and the events after it). The floor: the same on a run whose log holds 1,000 events (the UI's own
start-up and first frame, measured in the same invocation). The run is stopped
with `delegate-tui stop` at the end. Needs tmux.

Usage: python bench/attach.py [--events 1000000] [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tmux_term import Terminal

from delegate_tui.core.client import SERVICE_LOG, RunClient
from delegate_tui.core.events import (
    BatchApproved,
    BatchProposed,
    RunStarted,
    TaskOutput,
    TaskPreparing,
    TaskStarted,
)
from delegate_tui.core.plan import load_plan
from delegate_tui.core.runlog import LOG_NAME, LogWriter, runs_dir
from delegate_tui.core.service import service_status
from delegate_tui.core.state import RunState, apply, snapshot

AGENTS = 8
RUN_ID = "bench-attach"


def write_cut_off_run(folder: Path, total: int) -> Path:
    """A run of 8 tasks cut off mid-flood after ``total`` events; its log's path."""
    tasks = [f"t{i}" for i in range(AGENTS)]
    lines = ["name: attach", "repo: .", "isolation: none", "approve: auto", "max_parallel: 8"]
    lines.append("tasks:")
    lines += [
        f"  - {{id: {t}, agent: shell, command: 'echo attached-{t}; exec sleep 900'}}"
        for t in tasks
    ]
    plan_path = folder / "plan.yaml"
    plan_path.write_text("\n".join(lines) + "\n")
    plan = load_plan(plan_path)
    log = runs_dir(folder) / RUN_ID / LOG_NAME
    log.parent.mkdir(parents=True)
    os.chmod(log.parent, 0o700)
    writer = LogWriter(log)
    state = RunState()
    seq, ts = 0, time.time() - 3600

    def put(ev: object) -> None:
        # As the engine records: number, stamp, apply, write (the writer takes keyframes).
        nonlocal seq, ts
        seq += 1
        ts += 0.001
        object.__setattr__(ev, "seq", seq)
        object.__setattr__(ev, "ts", ts)
        apply(state, ev)  # type: ignore[arg-type]
        writer.write(ev, lambda: snapshot(state))  # type: ignore[arg-type]

    put(
        RunStarted(
            run_id=RUN_ID,
            plan=plan.model_dump(mode="json", by_alias=True),
            plan_path=str(plan_path),
            repo=str(folder),
            isolation="none",
            auto_approve=True,
            max_parallel=AGENTS,
        )
    )
    put(BatchProposed(batch=1, tasks=tuple(tasks), needs_approval=False))
    put(BatchApproved(batch=1, tasks=tuple(tasks), by="policy"))
    for task in tasks:
        put(TaskPreparing(task=task, attempt=1, workdir=str(folder)))
        # No process group: the service that takes over has nothing of the old one's to end.
        put(
            TaskStarted(
                task=task,
                attempt=1,
                agent="shell",
                argv=("sh", "-c", "flood"),
                cwd=str(folder),
                pid=0,
                pgid=0,
                prompt="",
            )
        )
    line = b"x" * 70
    n = 0
    while seq < total:
        task = tasks[n % AGENTS]
        put(TaskOutput(task=task, attempt=1, data=b"%08d " % n + line + b"\r\n"))
        n += 1
    writer.close()
    return log


def start_service(folder: Path, log: Path) -> subprocess.Popen[bytes]:
    """The run service taking the cut-off run over, as `delegate-tui resume` starts it."""
    with (log.parent / SERVICE_LOG).open("ab") as out:
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "delegate_tui",
                "_service",
                "--resume",
                str(log),
                "--run-id",
                RUN_ID,
                "--request",
                json.dumps({"yes": True, "kill_grace": 1.0}),
            ],
            cwd=folder,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    deadline = time.monotonic() + 120
    while service_status(log.parent) is None:
        if child.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(
                "the run service did not start: " + (log.parent / SERVICE_LOG).read_text()[-2000:]
            )
        time.sleep(0.05)
    # Live once every task runs again (attempt 2) and said so.
    deadline = time.monotonic() + 60
    while log.read_bytes()[-2_000_000:].count(b"attached-t") < AGENTS:
        if time.monotonic() > deadline:
            raise SystemExit("the resumed agents did not start in 60 s")
        time.sleep(0.1)
    return child


def whole_run_shown(screen: str) -> bool:
    """The task list with all eight tasks and the live agents' output are on screen."""
    return all(f"t{i}" in screen for i in range(AGENTS)) and "attached-t" in screen


def attach_once(folder: Path) -> float:
    """Seconds from launching `delegate-tui attach` to the whole run on screen."""
    with Terminal() as term:
        start = time.perf_counter()
        term.start(f"{sys.executable} -m delegate_tui attach {RUN_ID}; sleep 30", cwd=str(folder))
        took = term.wait_for(whole_run_shown, 60, poll=0.003)
        elapsed = time.perf_counter() - start
        assert took <= elapsed
        term.send("q")  # the quit dialog: detach, the run goes on
        time.sleep(0.3)
        term.send("d")
        time.sleep(0.3)
        return elapsed


def catch_up(run_dir: Path) -> float:
    """Seconds a view takes to attach without drawing: connect, hello, the state from the
    log (its newest keyframe and the events after it)."""

    async def attach() -> float:
        client = RunClient(run_dir)
        start = time.perf_counter()
        await client.connect()
        took = time.perf_counter() - start
        assert len(client.state.tasks) == AGENTS and not client.state.finished
        client.detach()
        return took

    return asyncio.run(attach())


def measure(events: int, rounds: int) -> tuple[list[float], list[float], float, float, float]:
    """Attach ``rounds`` times to a live run of ``events`` events: UI times, catch-up
    times (no UI), generation s, log MB, and the service's RSS (MB) at the end."""
    with tempfile.TemporaryDirectory(prefix="delegate-attach-") as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        log = write_cut_off_run(folder, events)
        generated = time.perf_counter() - start
        size_mb = log.stat().st_size / 1e6
        service = start_service(folder, log)
        try:
            times = [attach_once(folder) for _ in range(rounds)]
            caught = [catch_up(log.parent) for _ in range(rounds)]
            status = service_status(log.parent)
            assert status is not None, "the run ended while views attached and detached"
            rss = int(
                next(
                    line.split()[1]
                    for line in Path(f"/proc/{service.pid}/status").read_text().splitlines()
                    if line.startswith("VmRSS")
                )
            )
        finally:
            subprocess.run(
                [sys.executable, "-m", "delegate_tui", "stop", RUN_ID],
                cwd=folder,
                capture_output=True,
                timeout=60,
                check=False,
            )
            try:
                service.wait(30)
            except subprocess.TimeoutExpired:
                service.kill()
                service.wait()
    return times, caught, generated, size_mb, rss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--floor-events", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if shutil.which("tmux") is None:
        raise SystemExit("bench/attach.py needs tmux")
    load = os.getloadavg()
    floor, floor_caught, _, _, _ = measure(args.floor_events, args.rounds)
    times, caught, generated, size_mb, rss_mb = measure(args.events, args.rounds)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load": [round(x, 2) for x in load],
        "events": args.events,
        "log_mb": round(size_mb, 1),
        "generate_s": round(generated, 1),
        "rounds": len(times),
        "attach_median_ms": round(statistics.median(times) * 1000),
        "attach_max_ms": round(max(times) * 1000),
        "catch_up_median_ms": round(statistics.median(caught) * 1000),
        "catch_up_max_ms": round(max(caught) * 1000),
        "floor_events": args.floor_events,
        "floor_catch_up_median_ms": round(statistics.median(floor_caught) * 1000),
        "floor_median_ms": round(statistics.median(floor) * 1000),
        "floor_max_ms": round(max(floor) * 1000),
        "service_rss_mb": round(rss_mb),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"attach: a live run of {result['events']:,} events ({result['log_mb']} MB log), "
        f"{result['machine']}, load {result['load']}"
    )
    print(
        f"  launch -> the whole run on screen: median {result['attach_median_ms']} ms, "
        f"max {result['attach_max_ms']} ms ({result['rounds']} attaches; target < 1000 ms)"
    )
    print(
        f"  of which catching up (connect, hello, state from the log; no UI): median "
        f"{result['catch_up_median_ms']} ms, max {result['catch_up_max_ms']} ms"
    )
    print(
        f"  the floor, a live run of {result['floor_events']:,} events: median "
        f"{result['floor_median_ms']} ms, max {result['floor_max_ms']} ms (catching up "
        f"{result['floor_catch_up_median_ms']} ms)"
    )
    print(f"  the service's RSS {result['service_rss_mb']} MB")


if __name__ == "__main__":
    main()
