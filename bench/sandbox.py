"""What the bubblewrap sandbox costs: per attempt (start-up) and under an output flood.

Measured in one run, so machine noise cancels in the differences:

* spawn    - `true` started N times bare, then N times under the `bwrap` command line a
             `sandbox: worktree` attempt gets (real git repository, real worktree):
             the median extra milliseconds per start
* prepare  - `sandbox.prepare` for that attempt (git rev-parse, folders, the layout)
* take     - an agent's commit (two files) written to its own object store, then taken
             into the repository at its end (`object_store.take_objects`: each object
             checked, `git index-pack --strict`)
* flood    - benchmark 1's workload (8 agents printing N lines of 80 bytes, headless,
             PTYs) with `--sandbox off` and with `--sandbox worktree`, alternating, the
             median of each; every byte checked

Usage: python bench/sandbox.py [--starts N] [--lines N] [--rounds N] [--json]
"""

from __future__ import annotations

import argparse
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

from delegate_tui.core import object_store, sandbox, workspace
from delegate_tui.core.plan import parse_plan

LINE = "x" * 79
AGENTS = 8
RUN = (sys.executable, "-m", "delegate_tui", "run")


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def scratch_worktree(folder: Path) -> tuple[Path, Path]:
    repo = folder / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "--initial-branch=main")
    (repo / "README.md").write_text("bench\n")
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "init")
    wt = workspace.worktree_path(repo, "bench", "t", 1)
    workspace.add_worktree(repo, wt, workspace.task_branch("bench", "t", 1), "HEAD")
    return repo, wt


def timed_starts(argv: list[str], starts: int, cwd: Path) -> list[float]:
    out = []
    for _ in range(starts):
        start = time.perf_counter()
        subprocess.run(argv, cwd=cwd, check=True)
        out.append((time.perf_counter() - start) * 1000)
    return out


def bench_start(starts: int) -> dict[str, float]:
    support = sandbox.probe()
    if not support.ok:
        raise SystemExit(f"no sandbox here: {support.reason}")
    with tempfile.TemporaryDirectory(prefix="delegate-bench-") as tmp:
        repo, wt = scratch_worktree(Path(tmp))
        plan = parse_plan(
            f"name: b\nrepo: {repo}\nsandbox: worktree\ntasks:\n- {{id: t, prompt: x}}\n",
            str(repo / "plan.yaml"),
        )
        home = Path(tmp) / "home"
        home.mkdir()
        prepare_ms = []
        layout = None
        for _ in range(max(5, starts // 4)):
            start = time.perf_counter()
            layout = sandbox.prepare(
                plan,
                plan.tasks[0],
                preset="claude",
                workdir=wt,
                repo=repo,
                files=[repo / ".delegate" / "m.txt"],
                env={},
                home=home,
            )
            prepare_ms.append((time.perf_counter() - start) * 1000)
        assert layout is not None and layout.objects is not None
        store, shared = layout.objects
        agent_env = {**os.environ, **object_store.store_env(store, shared.parent)}
        take_ms = []
        for n in range(max(5, starts // 4)):
            store.mkdir(exist_ok=True)
            for name in ("a", "b"):
                (wt / f"{name}.txt").write_text(f"{name} {n}\n")
            for args in (["add", "-A"], ["-c", "user.name=b", "-c", "user.email=b@b",
                                         "commit", "-qm", f"agent commit {n}"]):  # fmt: skip
                subprocess.run(["git", *args], cwd=wt, env=agent_env, check=True)
            start = time.perf_counter()
            refused = object_store.take_objects(wt, store)
            take_ms.append((time.perf_counter() - start) * 1000)
            assert refused is None, refused
        bare = timed_starts(["true"], starts, wt)
        boxed = timed_starts(layout.argv(["true"], support.bwrap), starts, wt)
    return {
        "bare_start_ms": round(statistics.median(bare), 2),
        "sandboxed_start_ms": round(statistics.median(boxed), 2),
        "extra_start_ms": round(statistics.median(boxed) - statistics.median(bare), 2),
        "prepare_ms": round(statistics.median(prepare_ms), 2),
        "take_ms": round(statistics.median(take_ms), 2),
    }


def bench_flood(lines: int, mode: str) -> tuple[float, int]:
    producer = [sys.executable, "-c", f"for _ in range({lines}): print({LINE!r})"]
    with tempfile.TemporaryDirectory(prefix="delegate-bench-") as tmp:
        folder = Path(tmp)
        tasks = "".join(
            f"  - {{id: flood{i}, agent: shell, command: {json.dumps(producer)}}}\n"
            for i in range(AGENTS)
        )
        plan = folder / "plan.yaml"
        plan.write_text(
            f"name: flood\nrepo: .\nisolation: none\nmax_parallel: {AGENTS}\ntasks:\n{tasks}"
        )
        start = time.perf_counter()
        result = subprocess.run(
            [*RUN, str(plan), "--headless", "--yes", "--sandbox", mode],
            capture_output=True,
            text=True,
            env={**os.environ, "NO_COLOR": "1"},
        )
        elapsed = time.perf_counter() - start
        if result.returncode != 0:
            raise SystemExit(f"run failed:\n{result.stdout}\n{result.stderr}")
        from delegate_tui.core.events import TaskOutput, TaskSandboxed
        from delegate_tui.core.runlog import list_run_logs, read_events

        (log,) = list_run_logs(folder)
        events = list(read_events(log))
        boxed = sum(isinstance(e, TaskSandboxed) for e in events)
        if boxed != (AGENTS if mode != "off" else 0):
            raise SystemExit(f"{boxed} sandboxed attempts with --sandbox {mode}")
        total = sum(len(e.data) for e in events if isinstance(e, TaskOutput))
        return elapsed, total


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--starts", type=int, default=200)
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3, help="flood runs of each mode")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, object] = {
        "starts": args.starts,
        "lines_per_agent": args.lines,
        "agents": AGENTS,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "bwrap": sandbox.probe().version,
        "date": time.strftime("%Y-%m-%d"),
    }
    results.update(bench_start(args.starts))
    want = AGENTS * args.lines * 81  # a PTY turns each \n into \r\n
    times: dict[str, list[float]] = {"off": [], "worktree": []}
    for _ in range(args.rounds):  # alternating, so a busy spell hits both alike
        for mode in ("off", "worktree"):
            elapsed, logged = bench_flood(args.lines, mode)
            times[mode].append(elapsed)
            results[f"flood_{mode}_bytes_ok"] = logged == want and results.get(
                f"flood_{mode}_bytes_ok", True
            )
    for mode, spent in times.items():
        results[f"flood_{mode}_s"] = round(statistics.median(spent), 2)
        results[f"flood_{mode}_all_s"] = [round(t, 2) for t in spent]
    results["flood_ratio"] = round(
        float(results["flood_worktree_s"]) / float(results["flood_off_s"]),  # type: ignore[arg-type]
        3,
    )
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"sandbox: {results['bwrap']}, {results['machine']}")
    print(
        f"  start `true` ({args.starts}x, median): bare {results['bare_start_ms']} ms, "
        f"sandboxed {results['sandboxed_start_ms']} ms: +{results['extra_start_ms']} ms"
    )
    print(f"  sandbox.prepare per attempt (median): {results['prepare_ms']} ms")
    print(f"  an agent's commit taken in at its end (median): {results['take_ms']} ms")
    print(
        f"  flood {AGENTS} x {args.lines:,} lines: off {results['flood_off_s']} s, "
        f"worktree {results['flood_worktree_s']} s = {results['flood_ratio']}x (medians of "
        f"{args.rounds}: off {results['flood_off_all_s']}, worktree {results['flood_worktree_all_s']})"
        + ("" if results["flood_worktree_bytes_ok"] else "; BYTES MISSING")
    )


if __name__ == "__main__":
    main()
