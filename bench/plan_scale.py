"""Benchmark 6: validate and batch a generated plan of 2,000 tasks.

Tasks get random dependencies (on earlier tasks, so the graph is acyclic) and
random scopes (some overlapping, some shared files, some resources). Measured:
load + validate (YAML, schema, ids, dependencies, cycles, agents), and the first
batch with a reason for every held task. Target: both together under 0.5 s.

Usage: python bench/plan_scale.py [--tasks 2000] [--json]
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=2000)
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


if __name__ == "__main__":
    main()
