"""Benchmark 6: validate and batch a generated plan of 2,000 tasks.

Tasks get random dependencies (on earlier tasks, so the graph is acyclic) and
random scopes (some overlapping, some shared files, some resources). Measured:
load + validate (YAML, schema, ids, dependencies, cycles, agents), and the first
batch with a reason for every held task. Target: both together under 0.5 s.

With --ui (needs tmux), the same plan is opened by `delegate-tui run` in a real
terminal (200x60; the first batch waits for approval, so nothing runs) and the
task graph is scrolled from the keyboard: the time to the first frame, to jump
to the last task and back (End, Home), and for each of 40 steps down (Down,
the key a user holds), measured until the screen shows the move.

Usage: python bench/plan_scale.py [--tasks 2000] [--ui] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from delegate_tui.core import batching, graph
from delegate_tui.core.plan import load_plan
from delegate_tui.core.state import RunState, TaskState


def generate(path: Path, count: int) -> None:
    rng = random.Random(42)
    lines = ["name: scale", "max_parallel: 8", "tasks:"]
    for i in range(count):
        deps = sorted({f"t{rng.randrange(i)}" for _ in range(rng.randint(0, 3))}) if i else []
        area = rng.randrange(count // 10 + 1)
        edits = (
            [f"src/area{area}/**"]
            if rng.random() < 0.8
            else [f"src/area{area}/t{i}.py", "package.json"]
        )
        extra = ", resources: [db]" if rng.random() < 0.05 else ""
        lines.append(
            f"  - {{id: t{i}, agent: shell, command: 'true', depends_on: [{', '.join(deps)}], "
            f"edits: [{', '.join(edits)}], estimate: {rng.randint(1, 20)}m{extra}}}"
        )
    path.write_text("\n".join(lines) + "\n")


def bench_ui(path: Path) -> dict[str, float]:
    """Open the plan in the real UI and scroll its graph; times in ms."""
    import statistics
    import subprocess

    from tmux_term import Terminal

    folder = path.parent
    # A scratch HOME has no git identity: the commit names its own.
    env = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid"}
    env |= {"GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid"}
    for argv in (["git", "init", "-q"], ["git", "commit", "-q", "--allow-empty", "-m", "start"]):
        subprocess.run(argv, cwd=folder, check=True, capture_output=True, env=env)
    with Terminal(200, 60) as term:
        start = time.perf_counter()
        term.start(f"{sys.executable} -m delegate_tui run {path.name}; sleep 30", cwd=str(folder))
        term.wait_for(lambda screen: "t0 " in screen and "Agents" in screen, 30)
        first_frame = time.perf_counter() - start
        time.sleep(1.0)

        def press(key: str) -> float:
            before = term.screen(escapes=True)
            began = time.perf_counter()
            term.send(key)
            while term.screen(escapes=True) == before:
                if time.perf_counter() - began > 10:
                    raise SystemExit(f"{key} changed nothing on screen")
                time.sleep(0.002)
            return (time.perf_counter() - began) * 1000

        end = press("End")
        time.sleep(0.3)
        home = press("Home")
        time.sleep(0.3)
        steps = []
        for _ in range(40):
            steps.append(press("Down"))
            time.sleep(0.05)
        # The run waits for approval in its own service: end it (the terminal's end would not).
        subprocess.run(
            [sys.executable, "-m", "delegate_tui", "stop", "--repo", str(folder)],
            check=False,
            capture_output=True,
        )
    steps.sort()
    return {
        "ui_first_frame_ms": round(first_frame * 1000),
        "ui_end_ms": round(end),
        "ui_home_ms": round(home),
        "ui_down_median_ms": round(statistics.median(steps)),
        "ui_down_p95_ms": round(steps[int(len(steps) * 0.95) - 1]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--ui", action="store_true", help="also open it in the UI (tmux)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="delegate-scale-") as tmp:
        path = Path(tmp) / "plan.yaml"
        generate(path, args.tasks)
        start = time.perf_counter()
        plan = load_plan(path)
        loaded = time.perf_counter() - start
        start = time.perf_counter()
        state = RunState(plan=plan, isolation="worktree", max_parallel=plan.max_parallel)
        state.tasks = {t.id: TaskState(t.id) for t in plan.tasks}
        proposal = batching.next_batch(plan, state, auto_approve=True)
        layers = graph.layers(plan.deps)
        batched = time.perf_counter() - start
        ui = bench_ui(path) if args.ui else {}
    assert proposal is not None
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "tasks": len(plan.tasks),
        "layers": len(layers),
        "first_batch": len(proposal.tasks),
        "held_with_reasons": len(proposal.held),
        "load_validate_ms": round(loaded * 1000),
        "batch_ms": round(batched * 1000),
        "total_ms": round((loaded + batched) * 1000),
        **ui,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"plan scale: {result['tasks']:,} tasks in {result['layers']} layers, {result['machine']}"
    )
    print(
        f"  load + validate {result['load_validate_ms']} ms; first batch ({result['first_batch']} tasks, "
        f"{result['held_with_reasons']} held with reasons) {result['batch_ms']} ms; "
        f"total {result['total_ms']} ms (target < 500 ms)"
    )
    if ui:
        print(
            f"  in the UI (tmux, 200x60): first frame {ui['ui_first_frame_ms']} ms; End {ui['ui_end_ms']} ms, "
            f"Home {ui['ui_home_ms']} ms; Down median {ui['ui_down_median_ms']} ms, p95 {ui['ui_down_p95_ms']} ms"
        )


if __name__ == "__main__":
    main()
