"""Issue 13: the run service under a flood, with the UI attached and with a stalled view.

Workload: the ingest flood (8 agents x N lines of 80 bytes, as fast as Python
prints; default 200,000 lines), PTY transport, default isolation (a worktree per
task, in a small git repository). In one invocation, --rounds times each,
alternating so that the machine's load falls on all of them alike:

* headless: `delegate-tui run --headless --yes`, one process, from launch to exit;
* the UI attached to its run service: `delegate-tui run` in a real terminal
  (tmux, 200x60), from launch until the end is on screen (target: within 1.15x
  of headless);
* detached (`run --detach`): the run service with no view, the run's own wall
  time from its log, and the service's RSS sampled every 0.1 s;
* the same with a stalled view: a client that says hello and then reads nothing
  until the run has ended (as a stalled SSH session): the run's time against the
  detached runs' (target: under 5% more), the service's peak RSS (target: under
  300 MB; a view's queue is bounded at 4,096 events or 32 MiB), and what the view
  finds when it reads at last (the service told it how many events it skipped).

Usage: python bench/service_flood.py [--lines 200000] [--rounds 3] [--json]
Needs tmux (--no-ui leaves the UI runs out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import AGENTS, producer
from tmux_term import Terminal

from delegate_tui.core.events import RunFinished, RunStarted, TaskOutput
from delegate_tui.core.runlog import list_run_logs, read_events
from delegate_tui.core.service import message, reachable, service_status, socket_path

GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.invalid",
}
CLI = [sys.executable, "-m", "delegate_tui"]


def flood_repo(folder: Path, lines: int) -> None:
    """A small git repository with the flood's plan (default isolation: worktrees)."""
    folder.mkdir(parents=True, exist_ok=True)
    argv = json.dumps(producer(lines))
    tasks = "".join(f"  - {{id: flood{i}, agent: shell, command: {argv}}}\n" for i in range(AGENTS))
    (folder / "plan.yaml").write_text(
        f"name: flood\nrepo: .\napprove: auto\nmax_parallel: {AGENTS}\ntasks:\n{tasks}"
    )
    (folder / "README.md").write_text("flood\n")
    env = {**os.environ, **GIT_ENV}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "plan"]):
        subprocess.run(["git", *args], cwd=folder, check=True, capture_output=True, env=env)


def log_of(folder: Path) -> tuple[float, int]:
    """The run's own wall time (RunStarted to RunFinished) and the output bytes logged."""
    (log,) = list_run_logs(folder)
    start = end = 0.0
    total = 0
    for ev in read_events(log):
        if isinstance(ev, RunStarted):
            start = ev.ts
        elif isinstance(ev, RunFinished):
            end = ev.ts
            if ev.status != "succeeded":
                raise SystemExit(f"the run ended {ev.status}: {ev.summary}")
        elif isinstance(ev, TaskOutput):
            total += len(ev.data)
    return end - start, total


def run_headless(lines: int) -> tuple[float, float, int]:
    """Launch to exit; the log's wall time; bytes logged."""
    with tempfile.TemporaryDirectory(prefix="delegate-svc-") as tmp:
        folder = Path(tmp)
        flood_repo(folder, lines)
        start = time.perf_counter()
        result = subprocess.run(
            [*CLI, "run", "plan.yaml", "--headless", "--yes"],
            cwd=folder,
            capture_output=True,
            text=True,
            env={**os.environ, **GIT_ENV, "NO_COLOR": "1"},
        )
        elapsed = time.perf_counter() - start
        if result.returncode != 0:
            raise SystemExit(f"headless run failed:\n{result.stdout}\n{result.stderr}")
        wall, total = log_of(folder)
        return elapsed, wall, total


def run_attached(lines: int) -> tuple[float, float, int]:
    """The UI attached to its service, in tmux: launch to the end on screen; the log's
    wall time; bytes logged."""
    with tempfile.TemporaryDirectory(prefix="delegate-svc-") as tmp, Terminal() as term:
        folder = Path(tmp)
        flood_repo(folder, lines)
        exports = " ".join(f"{k}='{v}'" for k, v in GIT_ENV.items())
        start = time.perf_counter()
        term.start(f"env {exports} {' '.join(CLI)} run plan.yaml; sleep 30", cwd=str(folder))
        deadline = time.monotonic() + 600
        while True:
            head = (term.screen().splitlines() or [""])[0]
            if "run succeeded" in head:
                elapsed = time.perf_counter() - start
                break
            if "run failed" in head or "run partial" in head or time.monotonic() > deadline:
                raise SystemExit(f"the attached run did not succeed:\n{term.screen()}")
            time.sleep(0.02)
        term.send("q")
        wall, total = log_of(folder)
        return elapsed, wall, total


def rss_mb(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_detached(lines: int, *, stalled: bool) -> dict[str, float]:
    """`run --detach`, with or without a view that stops reading; the log's wall time,
    the service's peak RSS and, with a stalled view, what it skipped."""
    with tempfile.TemporaryDirectory(prefix="delegate-svc-") as tmp:
        folder = Path(tmp)
        flood_repo(folder, lines)
        env = {**os.environ, **GIT_ENV, "NO_COLOR": "1"}
        subprocess.run(
            [*CLI, "run", "plan.yaml", "--detach", "--yes"],
            cwd=folder,
            check=True,
            env=env,
            capture_output=True,
        )
        (run_dir,) = [p for p in (folder / ".delegate" / "runs").iterdir() if p.is_dir()]
        status = service_status(run_dir, timeout=5)
        if status is None:
            raise SystemExit(f"no service answers for {run_dir}")
        pid = int(status["pid"])
        view = None
        if stalled:
            view = socket.socket(socket.AF_UNIX)
            view.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small, full buffer
            with reachable(socket_path(run_dir)) as address:
                view.connect(address)
            view.sendall(message({"hello": 1}))  # ... and never a read until the end
        peak = 0.0
        (log,) = list_run_logs(folder)
        # Until the log says the run finished (a service with no view then waits a while
        # for one, and one with a stalled view a while for it to read the end).
        while True:  # sampled at least once: a short flood may be over before the first look
            peak = max(peak, rss_mb(pid))
            if not Path(f"/proc/{pid}").exists() or b'{"type":"RunFinished"' in _tail(log):
                break
            time.sleep(0.1)
        wall, total = log_of(folder)
        skipped = 0
        if view is not None:
            view.settimeout(30)
            with view.makefile("rb") as stream:
                for line in stream:  # until the service closes the connection
                    if line.startswith(b'{"behind"'):
                        skipped = max(skipped, json.loads(line)["behind"]["skipped"])
            view.close()
        else:
            subprocess.run([*CLI, "stop"], cwd=folder, capture_output=True, check=False)
        return {"wall_s": wall, "peak_rss_mb": peak, "bytes": total, "skipped": skipped}


def _tail(log: Path) -> bytes:
    with log.open("rb") as fh:
        fh.seek(max(0, log.stat().st_size - 65536))
        return fh.read()


def median(values: list[float]) -> float:
    return round(statistics.median(values), 2)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-ui", action="store_true", help="leave out the UI runs")
    parser.add_argument("--no-stall", action="store_true", help="leave out the detached runs")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with_ui = not args.no_ui
    if with_ui and shutil.which("tmux") is None:
        raise SystemExit("bench/service_flood.py needs tmux for the UI runs (or --no-ui)")
    expected = AGENTS * args.lines * 81  # a PTY turns each \n into \r\n
    load = os.getloadavg()
    headless: list[tuple[float, float, int]] = []
    attached: list[tuple[float, float, int]] = []
    detached: list[dict[str, float]] = []
    stalled: list[dict[str, float]] = []
    for _ in range(args.rounds):
        headless.append(run_headless(args.lines))
        if with_ui:
            attached.append(run_attached(args.lines))
        if not args.no_stall:
            detached.append(run_detached(args.lines, stalled=False))
            stalled.append(run_detached(args.lines, stalled=True))
    every = [r[2] for r in headless + attached] + [r["bytes"] for r in detached + stalled]
    result: dict[str, object] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_before": [round(x, 2) for x in load],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "lines_per_agent": args.lines,
        "rounds": args.rounds,
        "bytes_ok": all(b == expected for b in every),
        "headless_s": [round(r[0], 2) for r in headless],
        "headless_median_s": median([r[0] for r in headless]),
        "headless_log_median_s": median([r[1] for r in headless]),
    }
    if attached:
        result |= {
            "attached_s": [round(r[0], 2) for r in attached],
            "attached_median_s": median([r[0] for r in attached]),
            "attached_log_median_s": median([r[1] for r in attached]),
            "attached_ratio": round(
                statistics.median([r[0] for r in attached])
                / statistics.median([r[0] for r in headless]),
                2,
            ),
            "attached_pair_ratios": [
                round(a[0] / h[0], 2) for a, h in zip(attached, headless, strict=True)
            ],
        }
    if stalled:
        result |= {
            "detached_log_s": [round(r["wall_s"], 2) for r in detached],
            "stalled_log_s": [round(r["wall_s"], 2) for r in stalled],
            "stalled_ratio": round(
                statistics.median([r["wall_s"] for r in stalled])
                / statistics.median([r["wall_s"] for r in detached]),
                3,
            ),
            "detached_peak_rss_mb": round(max(r["peak_rss_mb"] for r in detached)),
            "stalled_peak_rss_mb": round(max(r["peak_rss_mb"] for r in stalled)),
            "stalled_skipped_min": int(min(r["skipped"] for r in stalled)),
        }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    report(result)


def report(r: dict[str, object]) -> None:
    print(
        f"service flood: {AGENTS} agents x {r['lines_per_agent']:,} lines, PTY, worktrees, "
        f"{r['rounds']} rounds, {r['machine']}, load {r['load_before']} -> {r['load_after']}"
    )
    print(f"  every byte in every log: {r['bytes_ok']}")
    print(f"  headless, launch to exit: {r['headless_s']} s (median {r['headless_median_s']})")
    if "attached_s" in r:
        print(
            f"  UI attached to its service, launch to the end on screen: {r['attached_s']} s "
            f"(median {r['attached_median_s']}) = {r['attached_ratio']}x headless "
            f"(pairs {r['attached_pair_ratios']}; target 1.15x)"
        )
        print(
            f"  the runs' own wall time (log): headless {r['headless_log_median_s']} s, "
            f"attached {r['attached_log_median_s']} s"
        )
    if "stalled_log_s" in r:
        print(
            f"  detached, no view: {r['detached_log_s']} s; with a view that reads nothing: "
            f"{r['stalled_log_s']} s = {r['stalled_ratio']}x (target under 1.05x)"
        )
        print(
            f"  the service's peak RSS: no view {r['detached_peak_rss_mb']} MB, stalled view "
            f"{r['stalled_peak_rss_mb']} MB (target < 300 MB); the stalled view was told it "
            f"skipped at least {r['stalled_skipped_min']:,} events"
        )


if __name__ == "__main__":
    main()
