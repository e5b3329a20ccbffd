"""Issue 15 item 6: a plan of a thousand tiny tasks, run headless to the end.

Workload (the contract, do not shrink it for the numbers in bench/README.md): a
git repository of 5,000 committed files; a plan of N tasks (default 1,000), each a
shell agent writing its own file (`echo i > out/t<i>.txt`, `edits: [out/t<i>.txt]`),
`max_parallel: 16`, default worktree isolation, `approve: auto`, run by
`delegate-tui run --headless --yes` until it exits. Measured:

* every task merged (the files are on the integration branch), the exit code,
  and worktrees, branches and processes left behind;
* the run process's open file descriptors, threads and RSS, sampled every
  0.25 s from /proc: at the start, after the first 100 tasks finished, at
  their peak, at the end (when the log says the run finished; target: within
  10% of after-100) and as the process exits;
* wall time from launch to exit, the time after the log says the run finished
  (the issue saw 81-86 s of silence there), and the per-task overhead:
  ``(wall - N x a task's own work / max_parallel) / N``, a task's own work being
  its command run bare (target: under 150 ms); the CPU the run and everything it
  waited for used, per task. Where a task's time goes, from the log's timestamps:
  worktree and spawn (TaskPreparing -> TaskStarted), the agent and the watcher's
  last look at its worktree (TaskExited.duration_s), snapshot (TaskExited ->
  TaskCommitted), merge (TaskCommitted -> TaskMerged);
* the limit: what git alone takes for the same per-task work, one task after
  the other, on the same repository (`--git-floor K` tasks: worktree add, write,
  add + commit, merge into a branch, worktree remove, branch delete).

Usage: python bench/many_tasks.py [--tasks 1000] [--files 5000] [--parallel 16]
                                  [--git-floor 40] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from delegate_tui.core.events import (
    RunFinished,
    RunStarted,
    TaskCommitted,
    TaskExited,
    TaskFinished,
    TaskMerged,
    TaskPreparing,
    TaskStarted,
)
from delegate_tui.core.runlog import list_run_logs, read_events

GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.invalid",
}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_ENV},
    ).stdout


def make_repo(repo: Path, files: int) -> None:
    """A repository of ``files`` committed files, 100 a folder."""
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    for i in range(files):
        folder = repo / "src" / f"d{i // 100:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i:05d}.txt").write_text(f"file {i}\n" * 4)
    (repo / ".gitignore").write_text(".delegate/\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "5,000 files")
    git(repo, "gc", "-q")  # packed, as a repository of that size is


def write_plan(path: Path, tasks: int, parallel: int) -> None:
    lines = ["name: many", "repo: .", "approve: auto", f"max_parallel: {parallel}", "tasks:"]
    for i in range(tasks):
        lines.append(
            f"  - {{id: t{i}, agent: shell, command: 'mkdir -p out && echo {i} > out/t{i}.txt', "
            f"edits: [out/t{i}.txt]}}"
        )
    path.write_text("\n".join(lines) + "\n")


@dataclass
class Sample:
    t: float  # seconds since launch
    fds: int
    threads: int
    rss_mb: float
    children: int


@dataclass
class Watch:
    samples: list[Sample] = field(default_factory=list)


def sample(pid: int, t: float) -> Sample | None:
    try:
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        status = Path(f"/proc/{pid}/status").read_text()
        children = sum(
            len(Path(f"/proc/{pid}/task/{tid}/children").read_text().split())
            for tid in os.listdir(f"/proc/{pid}/task")
        )
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    if "VmRSS" not in fields:  # exiting: a zombie has no memory to report
        return None
    threads = int(fields["Threads"])
    rss_mb = int(fields["VmRSS"].split()[0]) / 1024
    return Sample(t, fds, threads, rss_mb, children)


def run_plan(folder: Path, interval: float) -> tuple[float, float, int, list[Sample], str]:
    """Run the plan headless, sampling the process; (launch epoch, wall, exit code, samples, output)."""
    out = folder / "run.out"
    # A scratch HOME and config folder: the run never reads the operator's config.
    home = tempfile.TemporaryDirectory(prefix="delegate-bench-home-")
    scratch = {"HOME": home.name, "XDG_CONFIG_HOME": str(Path(home.name) / ".config")}
    with home, out.open("wb") as sink:
        launched = time.perf_counter()
        epoch = time.time()
        proc = subprocess.Popen(
            [sys.executable, "-m", "delegate_tui", "run", "plan.yaml", "--headless", "--yes"],
            cwd=folder,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, **GIT_ENV, **scratch, "NO_COLOR": "1"},
        )
        samples: list[Sample] = []
        while proc.poll() is None:
            s = sample(proc.pid, time.perf_counter() - launched)
            if s is not None:
                samples.append(s)
            time.sleep(interval)
        wall = time.perf_counter() - launched
    return epoch, wall, proc.returncode, samples, out.read_text(errors="replace")


def at(samples: list[Sample], t: float) -> Sample:
    """The sample taken nearest after ``t`` seconds (or the last one)."""
    return next((s for s in samples if s.t >= t), samples[-1])


def own_work(folder: Path, count: int = 20) -> float:
    """Seconds a task's own work takes: its command run bare (median of ``count``)."""
    times = []
    for i in range(count):
        start = time.perf_counter()
        subprocess.run(
            ["sh", "-c", f"mkdir -p out && echo {i} > out/t{i}.txt"], cwd=folder, check=True
        )
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def git_floor(repo: Path, count: int) -> float:
    """Seconds a task for git alone: the same work with nothing of delegate-tui's."""
    git(repo, "branch", "floor", "main")
    trees = Path(tempfile.mkdtemp(prefix="floor-", dir=repo.parent))
    start = time.perf_counter()
    for i in range(count):
        tree = trees / f"w{i}"
        git(repo, "worktree", "add", "-q", "-b", f"floor-{i}", str(tree), "main")
        (tree / "out").mkdir()
        (tree / "out" / f"t{i}.txt").write_text(f"{i}\n")
        git(tree, "add", "-A")
        git(tree, "commit", "-q", "-m", f"t{i}")
        git(tree, "status", "--porcelain")
        # The merge into the integration branch, without a checkout of it (as merge-tree does).
        tree_id = git(repo, "merge-tree", "--write-tree", "floor", f"floor-{i}").split()[0]
        parent = git(repo, "rev-parse", "floor").strip()
        commit = git(
            repo, "commit-tree", tree_id, "-p", parent, "-p", f"floor-{i}", "-m", f"merge t{i}"
        ).strip()
        git(repo, "update-ref", "refs/heads/floor", commit)
        git(repo, "worktree", "remove", "--force", str(tree))
        git(repo, "branch", "-q", "-D", f"floor-{i}")
    return (time.perf_counter() - start) / count


def phase_times(log: Path) -> tuple[dict[str, list[float]], float, float, float, list[float]]:
    """Per task: seconds in each phase; the run's start and finish stamps; when each task finished."""
    prep: dict[str, float] = {}
    started: dict[str, float] = {}
    exited: dict[str, float] = {}
    committed: dict[str, float] = {}
    phases: dict[str, list[float]] = {
        "worktree+spawn": [],
        "agent": [],
        "snapshot": [],
        "merge": [],
    }
    run_start = run_end = 0.0
    finished_at: list[float] = []
    for ev in read_events(log):
        if isinstance(ev, RunStarted):
            run_start = ev.ts
        elif isinstance(ev, RunFinished):
            run_end = ev.ts
        elif isinstance(ev, TaskPreparing):
            prep[ev.task] = ev.ts
        elif isinstance(ev, TaskStarted):
            started[ev.task] = ev.ts
            phases["worktree+spawn"].append(ev.ts - prep.get(ev.task, ev.ts))
        elif isinstance(ev, TaskExited):
            exited[ev.task] = ev.ts
            phases["agent"].append(ev.duration_s)
        elif isinstance(ev, TaskCommitted):
            committed[ev.task] = ev.ts
            phases["snapshot"].append(ev.ts - exited.get(ev.task, ev.ts))
        elif isinstance(ev, TaskMerged):
            phases["merge"].append(ev.ts - committed.get(ev.task, ev.ts))
        elif isinstance(ev, TaskFinished):
            finished_at.append(ev.ts)
    return phases, run_start, run_end, sum(phases["agent"]), finished_at


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--parallel", type=int, default=16)
    parser.add_argument("--git-floor", type=int, default=40, help="tasks for git alone (0: skip)")
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between samples")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="delegate-many-"))
    try:
        result = measure(tmp, args)
    finally:
        if not args.keep:
            subprocess.run(["rm", "-rf", str(tmp)], check=False)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    report(result)


def measure(tmp: Path, args: argparse.Namespace) -> dict[str, object]:
    repo = tmp / "repo"
    make_repo(repo, args.files)
    write_plan(repo / "plan.yaml", args.tasks, args.parallel)
    load = os.getloadavg()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    launch_at, wall, code, samples, output = run_plan(repo, args.interval)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU of the run and everything it waited for (git, the agents, the watcher's threads).
    cpu_user = after.ru_utime - before.ru_utime
    cpu_sys = after.ru_stime - before.ru_stime
    if code != 0:
        raise SystemExit(f"the run failed (exit {code}):\n{output[-3000:]}")
    (log,) = list_run_logs(repo)
    phases, run_start, run_end, agent_total, finished_at = phase_times(log)
    integration = next(e.integration_branch for e in read_events(log) if isinstance(e, RunStarted))
    merged = (
        len(git(repo, "ls-tree", "--name-only", f"{integration}:out").split()) if integration else 0
    )
    worktrees = len(git(repo, "worktree", "list", "--porcelain").split("\nworktree ")) - 1
    branches = len(git(repo, "branch", "--list").splitlines())
    # The samples' clock starts at launch, the log's stamps are epoch seconds: the launch
    # was the run's start less the process's start-up (imports, plan, preflight), which
    # the output does not say; take the run's start as the first task's preparation.
    launch_epoch = launch_at
    first = at(samples, run_start - launch_epoch)  # the process as the run starts
    finished_at.sort()
    hundred_t = (finished_at[min(99, len(finished_at) - 1)] - launch_epoch) if finished_at else 0
    after100 = at(samples, hundred_t)
    # The end: when the last task is done (the log's RunFinished), before the process
    # removes what is left and exits; "exit" is the last sample before it was gone.
    last = at(samples, run_end - launch_epoch)
    gone = samples[-1]
    peak = {
        "fds": max(s.fds for s in samples),
        "threads": max(s.threads for s in samples),
        "rss_mb": max(s.rss_mb for s in samples),
        "children": max(s.children for s in samples),
    }
    floor = git_floor(repo, args.git_floor) if args.git_floor else None
    own = own_work(tmp)
    ideal = own * args.tasks / args.parallel
    result: dict[str, object] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_before": [round(x, 2) for x in load],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "tasks": args.tasks,
        "files": args.files,
        "max_parallel": args.parallel,
        "merged": merged,
        "worktrees_left": worktrees,
        "branches_left": branches,
        "wall_s": round(wall, 1),
        "log_run_s": round(run_end - run_start, 1),
        "after_finished_s": round(wall - (run_end - launch_epoch), 2),
        "agent_total_s": round(agent_total, 1),
        "own_work_ms": round(own * 1000, 1),
        "overhead_per_task_ms": round((wall - ideal) / args.tasks * 1000),
        "wall_per_task_ms": round(wall / args.tasks * 1000),
        "cpu_per_task_ms": {
            "user": round(cpu_user / args.tasks * 1000),
            "sys": round(cpu_sys / args.tasks * 1000),
        },
        "phase_median_ms": {k: round(statistics.median(v) * 1000) for k, v in phases.items() if v},
        "steady_phase_median_ms": {
            k: round(statistics.median(v[2 * args.parallel :]) * 1000)
            for k, v in phases.items()
            if len(v) > 2 * args.parallel
        },
        "phase_p95_ms": {
            k: round(sorted(v)[int(len(v) * 0.95) - 1] * 1000) for k, v in phases.items() if v
        },
        "git_floor_per_task_ms": round(floor * 1000) if floor is not None else None,
        "start": {
            "t_s": round(first.t, 1),
            "fds": first.fds,
            "threads": first.threads,
            "rss_mb": round(first.rss_mb, 1),
        },
        "after_100": {
            "t_s": round(after100.t, 1),
            "fds": after100.fds,
            "threads": after100.threads,
            "rss_mb": round(after100.rss_mb, 1),
        },
        "peak": {k: round(v, 1) for k, v in peak.items()},
        "end": {
            "t_s": round(last.t, 1),
            "fds": last.fds,
            "threads": last.threads,
            "rss_mb": round(last.rss_mb, 1),
        },
        "exit": {
            "t_s": round(gone.t, 1),
            "fds": gone.fds,
            "threads": gone.threads,
            "rss_mb": round(gone.rss_mb, 1),
        },
        "series": [
            [round(s.t, 1), s.fds, s.threads, round(s.rss_mb, 1), s.children]
            for s in samples[:: max(1, len(samples) // 40)]
        ],
    }
    return result


def report(r: dict[str, object]) -> None:
    print(
        f"many tasks: {r['tasks']} tasks, max_parallel {r['max_parallel']}, a repository of "
        f"{r['files']} files, {r['machine']}, load {r['load_before']} -> {r['load_after']}"
    )
    print(
        f"  merged {r['merged']} of {r['tasks']}; worktrees left {r['worktrees_left']}, "
        f"branches left {r['branches_left']}"
    )
    print(
        f"  wall {r['wall_s']} s (the log's run {r['log_run_s']} s; after it finished "
        f"{r['after_finished_s']} s); agents' own time {r['agent_total_s']} s"
    )
    print(
        f"  overhead per task {r['overhead_per_task_ms']} ms (target < 150 ms; a task's own "
        f"work {r['own_work_ms']} ms); "
        f"git alone, one task after the other: {r['git_floor_per_task_ms']} ms a task"
    )
    print(
        f"  CPU per task (the run, git and the agents, user + sys): {r['cpu_per_task_ms']} ms "
        f"on {os.cpu_count()} cores"
    )
    print(f"  phases, median: {r['phase_median_ms']}; p95: {r['phase_p95_ms']}")
    print(f"  phases after the first 2 x max_parallel tasks, median: {r['steady_phase_median_ms']}")
    for name in ("start", "after_100", "peak", "end", "exit"):
        print(f"  {name:<9} {r[name]}")
    series = r["series"]
    assert isinstance(series, list)
    print("  over time (s, fds, threads, RSS MB, children):")
    for row in series[:: max(1, len(series) // 12)]:
        print(f"    {row}")


if __name__ == "__main__":
    main()
