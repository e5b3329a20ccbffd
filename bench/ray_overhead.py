"""Benchmark 8: the Ray executor against the local one, on a local 4-node Ray cluster.

Two workloads, each run on the local executor and on the cluster in the same run,
so machine noise cancels in the ratios:

* overhead - a plan of 64 demo agents (``DELEGATE_DEMO_SPEED=0``, each edits its own
             file), ``max_parallel: 8``. Per-attempt overhead is the mean attempt time
             (prepared -> finished) on Ray minus the same on the local executor; the
             executor's own timings say where it goes (packs, placement, waiting for a
             node's host, the scratch clone on the node, the spawn call, the exit's
             change set, exit -> engine, release), and the run logs' steps (prepared,
             started, exited, committed, merged) where it lands, local beside Ray.
             Target: under 0.5 s per attempt.
             The Ray run is done twice: first as a run's first (the nodes' hosts
             start), then again in this process (the hosts are up).
* ingest   - 8 shell tasks, each printing N lines of 80 characters as fast as it can
             (on a PTY, the default), headless. Target: Ray within 2x of local.

The cluster is a head and three more nodes on loopback (``ray.cluster_utils.Cluster``,
4 CPUs each), started before and shut down after; its start-up is not counted.

Usage: python bench/ray_overhead.py [--agents 64] [--lines 200000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # one machine: loopback only
os.environ["DELEGATE_DEMO_SPEED"] = "0"

from delegate_tui.core.engine import Engine, EngineOptions
from delegate_tui.core.plan import load_plan
from delegate_tui.core.ray_executor import RayExecutor
from delegate_tui.core.state import RunState

LINE = "x" * 79


def make_repo(root: Path) -> Path:
    repo = root / "repo"
    repo.mkdir(parents=True)
    for args in (
        ["init", "-q", "--initial-branch=main"],
        ["config", "user.name", "Bench"],
        ["config", "user.email", "bench@example.invalid"],
    ):
        subprocess.run(["git", *args], cwd=repo, check=True)
    (repo / "README.md").write_text("# bench\n")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "initial"], cwd=repo, check=True)
    return repo


def overhead_plan(repo: Path, agents: int) -> str:
    tasks = "".join(
        f"  - {{id: t{i:02d}, agent: demo, prompt: 'Write part {i}', edits: [parts/p{i:02d}.txt]}}\n"
        for i in range(agents)
    )
    return f"name: overhead\nrepo: {repo}\nmax_parallel: 8\ntasks:\n{tasks}"


def ingest_plan(repo: Path, lines: int, flooders: int) -> str:
    code = f"for _ in range({lines}): print({LINE!r})"
    tasks = "".join(
        f"  - {{id: f{i}, agent: shell, edits: [f{i}], command: [{sys.executable}, -c, {json.dumps(code)}]}}\n"
        for i in range(flooders)
    )
    return f"name: ingest\nrepo: {repo}\nmax_parallel: 8\ntasks:\n{tasks}"


def run(plan_text: str, root: Path, executor: str) -> tuple[float, RunState, Engine]:
    path = root / f"plan-{executor}.yaml"
    path.write_text(plan_text)
    engine = Engine(
        load_plan(path), EngineOptions(auto_approve=True, kill_grace_s=1.0, executor=executor)
    )
    engine.preflight()
    began = time.perf_counter()
    state = asyncio.run(engine.run())
    took = time.perf_counter() - began
    bad = {
        t.id: (t.status, t.attempts[-1].reason if t.attempts else "")
        for t in state.tasks.values()
        if t.status != "succeeded"
    }
    if bad:
        raise SystemExit(f"{executor}: tasks did not succeed: {bad}")
    return took, state, engine


def attempt_times(state: RunState) -> list[float]:
    return [
        a.finished_ts - a.prepared_ts
        for t in state.tasks.values()
        for a in t.attempts
        if a.finished_ts and a.prepared_ts
    ]


#: The attempt's steps as the engine logs them, in order: each phase runs from one to the next.
STEPS = (
    ("TaskPreparing", "prepared -> agent started"),
    ("TaskStarted", "agent started -> exited"),
    ("TaskExited", "exited -> committed"),
    ("TaskCommitted", "committed -> merged"),
    ("TaskMerged", ""),
)


def engine_phases(engine: Engine) -> dict[str, float]:
    """Mean seconds per attempt between the steps the run log records (the same for
    either executor: where the Ray run's extra time lands, as the engine sees it)."""
    from delegate_tui.core.runlog import read_events

    kinds = {kind for kind, _ in STEPS}
    seen: dict[tuple[str, int], dict[str, float]] = {}
    for ev in read_events(engine.log_path):
        kind = type(ev).__name__
        if kind in kinds:
            key = (ev.task, ev.attempt)  # type: ignore[attr-defined]
            seen.setdefault(key, {}).setdefault(kind, ev.ts)
    spans: dict[str, list[float]] = {}
    for stamps in seen.values():
        for (kind, name), (after, _) in itertools.pairwise(STEPS):
            if kind in stamps and after in stamps:
                spans.setdefault(name, []).append(stamps[after] - stamps[kind])
    return {name: round(statistics.mean(v), 4) for name, v in spans.items()}


def where(executor: RayExecutor) -> dict[str, tuple[float, int]]:
    """The executor's timings (mean seconds, count) per phase, in the order they were first
    taken: a sub-phase ("  of which: ...") is taken with its phase, so it follows it."""
    timings = executor.timings
    return {p: (round(statistics.mean(t), 4), len(t)) for p, t in timings.items()}


def output_bytes(state: RunState) -> int:
    return sum(t.attempts[-1].output_bytes for t in state.tasks.values())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=64)
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--flooders", type=int, default=8, help="Agents flooding at once.")
    parser.add_argument("--address", help="Use this running cluster instead of starting one.")
    parser.add_argument(
        "--once", action="store_true", help="Run the Ray overhead workload once (hosts starting)."
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    import ray
    from ray.cluster_utils import Cluster

    began = time.perf_counter()
    cluster = None
    connected = ray.is_initialized()  # called by a test already connected to its cluster
    if connected or args.address:
        if not connected:
            ray.init(address=args.address, logging_level="ERROR", log_to_driver=False)
        args.nodes = len([n for n in ray.nodes() if n["Alive"]])
    else:
        cluster = Cluster(
            initialize_head=True,
            connect=False,
            head_node_args={
                "num_cpus": 4,
                "node_ip_address": "127.0.0.1",
                "include_dashboard": False,
            },
        )
        for _ in range(args.nodes - 1):
            cluster.add_node(num_cpus=4, node_ip_address="127.0.0.1")
        ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
    cluster_s = time.perf_counter() - began
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_average_at_start": os.getloadavg(),
        "cluster_start_s": round(cluster_s, 1),
        "nodes": args.nodes,
    }
    try:
        with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
            root = Path(tmp)
            repo = make_repo(root / "o")
            text = overhead_plan(repo, args.agents)
            local_s, local, local_engine = run(text, root / "o", "local")
            repo = make_repo(root / "o2")
            ray_s, remote, engine = run(overhead_plan(repo, args.agents), root / "o2", "ray")
            executor = engine._executor
            assert isinstance(executor, RayExecutor)
            lt, rt = attempt_times(local), attempt_times(remote)
            nodes = {a.node for t in remote.tasks.values() for a in t.attempts}
            result["overhead"] = {
                "agents": args.agents,
                "wall_local_s": round(local_s, 2),
                "wall_ray_s": round(ray_s, 2),
                "attempt_mean_local_s": round(statistics.mean(lt), 3),
                "attempt_mean_ray_s": round(statistics.mean(rt), 3),
                "overhead_per_attempt_s": round(statistics.mean(rt) - statistics.mean(lt), 3),
                "nodes_used": len(nodes),
                "steps local (mean s)": engine_phases(local_engine),
                "steps ray (mean s)": engine_phases(engine),
                "where (mean s, count)": where(executor),
            }
            # The same again in this process: the nodes' hosts are up (a later run of a
            # test session or a benchmark; a run service's first run starts them).
            if not args.once:
                repo = make_repo(root / "o3")
                again_s, again, engine = run(overhead_plan(repo, args.agents), root / "o3", "ray")
                executor = engine._executor
                assert isinstance(executor, RayExecutor)
                at = attempt_times(again)
                result["overhead_hosts_up"] = {
                    "wall_ray_s": round(again_s, 2),
                    "attempt_mean_ray_s": round(statistics.mean(at), 3),
                    "overhead_per_attempt_s": round(statistics.mean(at) - statistics.mean(lt), 3),
                    "steps ray (mean s)": engine_phases(engine),
                    "where (mean s, count)": where(executor),
                }
            repo = make_repo(root / "i")
            ingest_local_s, state_l, _ = run(
                ingest_plan(repo, args.lines, args.flooders), root / "i", "local"
            )
            repo = make_repo(root / "i2")
            ingest_ray_s, state_r, _ = run(
                ingest_plan(repo, args.lines, args.flooders), root / "i2", "ray"
            )
            expected = args.flooders * args.lines * 81  # 80 characters and a CRLF on a PTY
            result["ingest"] = {
                "agents": args.flooders,
                "lines_per_agent": args.lines,
                "local_s": round(ingest_local_s, 2),
                "ray_s": round(ingest_ray_s, 2),
                "ratio": round(ingest_ray_s / ingest_local_s, 2),
                "bytes_local": output_bytes(state_l),
                "bytes_ray": output_bytes(state_r),
                "bytes_expected": expected,
            }
    finally:
        if not connected:
            ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
    result["load_average_at_end"] = os.getloadavg()
    if args.json:
        print(json.dumps(result, indent=2))
        return
    o, i = result["overhead"], result["ingest"]
    print(f"cluster of {args.nodes} nodes up in {result['cluster_start_s']} s (not counted)")
    print(
        f"overhead: {o['agents']} demo agents, local {o['wall_local_s']} s, Ray {o['wall_ray_s']} s "
        f"on {o['nodes_used']} nodes; mean attempt {o['attempt_mean_local_s']} s -> "
        f"{o['attempt_mean_ray_s']} s: {o['overhead_per_attempt_s']} s per attempt"
    )
    local_steps = o["steps local (mean s)"]
    for name, mean in o["steps ray (mean s)"].items():
        print(f"  step {name:41} {local_steps.get(name, 0):.4f} -> {mean:.4f} s")
    for phase, (mean, count) in o["where (mean s, count)"].items():
        print(f"  {phase:46} {mean:.4f} s  (x{count})")
    up = result.get("overhead_hosts_up")
    if up is not None:
        print(
            f"again, the hosts up: Ray {up['wall_ray_s']} s; mean attempt "
            f"{up['attempt_mean_ray_s']} s: {up['overhead_per_attempt_s']} s per attempt"
        )
        for name, mean in up["steps ray (mean s)"].items():
            print(f"  step {name:41} {local_steps.get(name, 0):.4f} -> {mean:.4f} s")
        for phase, (mean, count) in up["where (mean s, count)"].items():
            print(f"  {phase:46} {mean:.4f} s  (x{count})")
    print(
        f"ingest: {i['agents']} x {i['lines_per_agent']} lines, local {i['local_s']} s, Ray {i['ray_s']} s "
        f"({i['ratio']}x); bytes {i['bytes_local']} / {i['bytes_ray']} (expected {i['bytes_expected']})"
    )
    print(
        f"load average: start {result['load_average_at_start']}, end {result['load_average_at_end']}"
    )


if __name__ == "__main__":
    main()
