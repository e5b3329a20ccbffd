"""The Ray executor on a real local Ray cluster: placement, output, conflicts, kill,
timeout, a lost node, and a resume after ``kill -9`` (issue 17)."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from delegate_tui.core.engine import Engine
from delegate_tui.core.events import (
    ConflictDetected,
    FilesChanged,
    TaskExited,
    TaskMerged,
    TaskOutput,
    TaskStarted,
)
from delegate_tui.core.plan import Plan
from delegate_tui.core.ray_host import scratch_root
from delegate_tui.core.reaper import group_alive
from delegate_tui.core.replay import final_state
from tests.conftest import Recorder, git, run_cli, run_engine
from tests.ray.conftest import HEAD_ONLY, LEAN, NODE_B

# One cluster per session: every test of it on one xdist worker.
pytestmark = [pytest.mark.e2e, pytest.mark.ray, pytest.mark.xdist_group("ray_cluster")]
PlanWriter = Callable[..., Plan]


def plan_text(repo: Path, tasks: str, executor: str = "ray") -> str:
    return (
        f"name: remote\nrepo: {repo}\nexecutor: {executor}\nmax_parallel: 4\ntasks:\n"
        + textwrap.indent(textwrap.dedent(tasks), "  ")
    )


def output_of(recorder: Recorder, task: str) -> bytes:
    return b"".join(
        e.data
        for e in recorder.events
        if isinstance(e, TaskOutput) and e.task == task and e.stream == "agent"
    )


async def until(check: Callable[[], bool], limit: float = 30.0) -> None:
    import asyncio

    deadline = time.monotonic() + limit
    while not check():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.05)


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_bytes()
    return int(stat[stat.rfind(b")") + 2 :].split()[1])


def gone(pgid: int, limit: float = 15.0) -> bool:
    deadline = time.monotonic() + limit
    while group_alive(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def node_with(resource: str) -> str:
    import ray

    nodes: list[dict[str, Any]] = ray.nodes()
    return str(next(n["NodeID"] for n in nodes if n["Alive"] and resource in n["Resources"]))


def test_a_plan_runs_to_success_with_tasks_on_different_nodes(
    ray_cluster: Any, repo: Path, write_plan: PlanWriter
) -> None:
    plan = write_plan(
        plan_text(
            repo,
            """\
            - {id: a, agent: shell, edits: [a.txt], command: "echo from-a > a.txt; sleep 1"}
            - {id: b, agent: shell, edits: [b.txt], command: "echo from-b-${OMP_NUM_THREADS:-}${PYTHONBREAKPOINT:-} > b.txt; sleep 1"}
            - {id: c, agent: shell, edits: [c.txt], resources: [node-b, gpu], command: "echo from-c-gpu-$CUDA_VISIBLE_DEVICES > c.txt"}
            - {id: d, agent: own, edits: [d.txt], prompt: write d}
            """,
        )
        # An agent that writes files of its own (aider's history): no one's work.
        + "agents:\n  own:\n    extends: aider\n"
        + "    command: [sh, -c, 'echo chat > .aider.chat.history.md; echo d > d.txt']\n"
    )
    state, recorder, _ = run_engine(plan)
    assert state.status == "succeeded", {t.id: t.attempts[-1].reason for t in state.tasks.values()}
    tip = state.integration_tip
    assert git(repo, "show", f"{tip}:a.txt") == "from-a\n"
    # The node's environment, not its Ray worker's (OMP_NUM_THREADS=1, PYTHONBREAKPOINT).
    assert git(repo, "show", f"{tip}:b.txt") == "from-b-\n"
    assert git(repo, "show", f"{tip}:d.txt") == "d\n"
    assert ".aider" not in git(repo, "ls-tree", "-r", "--name-only", tip)
    # c holds node B's GPU, and its agent is told which one.
    assert git(repo, "show", f"{tip}:c.txt") == "from-c-gpu-0\n"
    nodes = {e.task: e.node for e in recorder.of(TaskStarted) if isinstance(e, TaskStarted)}
    assert all(nodes.values()), nodes
    assert len(set(nodes.values())) >= 2, f"all on one node: {nodes}"
    # c asked for a resource only node B offers.
    assert nodes["c"].endswith("/" + node_with(NODE_B)[:6])
    assert state.tasks["c"].attempts[-1].node == nodes["c"]


def test_output_arrives_live_and_in_order(
    ray_cluster: Any, repo: Path, write_plan: PlanWriter
) -> None:
    plan = write_plan(
        plan_text(
            repo,
            """\
            - {id: talk, agent: shell, edits: [x], command: "for i in $(seq 1 60); do echo line-$i; sleep 0.01; done; sleep 1"}
            """,
        )
    )
    state, recorder, _ = run_engine(plan)
    assert state.status == "succeeded"
    lines = output_of(recorder, "talk").decode().split()
    assert lines == [f"line-{i}" for i in range(1, 61)]
    chunks = [e for e in recorder.events if isinstance(e, TaskOutput) and e.task == "talk"]
    assert len(chunks) > 1, "batched, but not held back to the end"
    exited = next(e for e in recorder.events if isinstance(e, TaskExited))
    assert chunks[-1].ts < exited.ts - 0.5, "the output came while the agent still ran"


def test_a_predicted_conflict_between_two_remote_tasks_is_found_before_merging(
    ray_cluster: Any, repo: Path, write_plan: PlanWriter, tmp_path: Path
) -> None:
    # Each edits, then works on until the conflict is predicted (at most 30 s): both work
    # at once however long placing them takes on a busy machine.
    meet = tmp_path / "meet"
    meet.mkdir()

    def edit(me: str, other: str, scope: str) -> str:
        return (
            f"sed -i 's/nobody/{me}/' src/shared.py; echo {me} > {scope}; "
            f"for i in $(seq 300); do test -e {meet}/go && break; sleep 0.05; done"
        )

    plan = write_plan(
        plan_text(
            repo,
            f"""\
            - {{id: first, agent: shell, edits: [src/a.py], command: "{edit("first", "second", "src/a.py")}"}}
            - {{id: second, agent: shell, edits: [src/b.py], command: "{edit("second", "first", "src/b.py")}"}}
            """,
        )
    )

    def predicted_now(recorder: Recorder) -> bool:
        return any(
            isinstance(e, ConflictDetected) and e.kind == "predicted-conflict"
            for e in recorder.events
        )

    async def drive(engine: Engine, recorder: Recorder) -> None:
        await until(lambda: predicted_now(recorder))
        (meet / "go").touch()  # the agents may end now

    state, recorder, _ = run_engine(plan, during=drive)
    found = [e for e in recorder.events if isinstance(e, ConflictDetected)]
    predicted = [
        e
        for e in found
        if e.kind == "predicted-conflict"
        and e.tasks == ("first", "second")
        and e.paths == ("src/shared.py",)
    ]
    assert predicted, [(e.kind, e.tasks, e.paths) for e in found]
    merged = [e.seq for e in recorder.events if isinstance(e, TaskMerged)]
    exits = [e.seq for e in recorder.events if isinstance(e, TaskExited)]
    assert predicted[0].seq < min(merged), "caught before merging"
    assert predicted[0].seq < min(exits), "caught while both still worked remotely"
    # Seen from the change sets the nodes sent while their agents worked.
    live = [
        e for e in recorder.events if isinstance(e, FilesChanged) and e.files and e.seq < min(exits)
    ]
    assert {e.task for e in live} == {"first", "second"}
    # Whichever finished first merged; the other is held back for the operator.
    assert sorted(state.tasks[t].status for t in ("first", "second")) == [
        "merge-conflict",
        "succeeded",
    ]


def test_a_task_whose_resources_no_node_has_fails_after_a_bounded_wait(
    ray_cluster: Any, repo: Path, write_plan: PlanWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each label is offered, by a different node: no node can hold both.
    monkeypatch.setenv("DELEGATE_RAY_PLACE_TIMEOUT", "1")
    plan = write_plan(
        plan_text(
            repo,
            f"""\
            - {{id: both, agent: shell, edits: [x], resources: [{NODE_B}, {HEAD_ONLY}], command: "echo never > x"}}
            - {{id: fine, agent: shell, edits: [y], resources: [{NODE_B}], command: "echo ok > y"}}
            """,
        )
    )
    began = time.monotonic()
    state, recorder, _ = run_engine(plan)
    assert time.monotonic() - began < 30
    both = state.tasks["both"]
    assert both.status == "failed"
    reason = both.attempts[-1].reason
    assert f"no node of the cluster has 1 CPU, 1 {HEAD_ONLY}, 1 {NODE_B}" in reason, reason
    assert "waited 1 s" in reason and "DELEGATE_RAY_PLACE_TIMEOUT" in reason
    assert f"has 4 CPU, 1 GPU, 4 {NODE_B}" in reason, "what the nodes offer"
    assert not [e for e in recorder.events if isinstance(e, TaskStarted) and e.task == "both"]
    assert state.tasks["fine"].status == "succeeded"


def test_input_kill_and_timeout_reach_the_remote_process_group(
    ray_cluster: Any, repo: Path, write_plan: PlanWriter
) -> None:
    stubborn = "trap '' TERM; echo ready; (sleep 300 &); while true; do sleep 0.1; done"
    plan = write_plan(
        plan_text(
            repo,
            f"""\
            - {{id: killed, agent: shell, edits: [k], command: "{stubborn}"}}
            - {{id: slow, agent: shell, edits: [s], timeout: 1s, command: "{stubborn}"}}
            - {{id: asks, agent: shell, edits: [a.txt], command: "echo name?; read n; echo got-$n > a.txt"}}
            """,
        )
    )

    async def drive(engine: Engine, recorder: Recorder) -> None:
        await until(lambda: b"name?" in output_of(recorder, "asks"))
        assert engine.send_input("asks", "remote") == ""
        await until(lambda: b"ready" in output_of(recorder, "killed"))
        # The host started it from its small spawner, not by a fork of its Ray worker.
        (started,) = [
            e for e in recorder.events if isinstance(e, TaskStarted) and e.task == "killed"
        ]
        parent = _parent(started.pid)
        spawner = Path(f"/proc/{parent}/cmdline").read_bytes().split(b"\0")
        assert spawner[1:3] == [b"-S", b"-c"] and spawner[4].endswith(b"core/spawner.py")
        assert engine.kill("killed") == ""

    state, _, _ = run_engine(plan, during=drive)
    assert state.tasks["asks"].status == "succeeded"
    assert git(repo, "show", f"{state.integration_tip}:a.txt") == "got-remote\n"
    assert state.tasks["killed"].status == "killed"
    assert state.tasks["slow"].status == "timed-out"
    for task in ("killed", "slow"):
        attempt = state.tasks[task].attempts[-1]
        assert attempt.node and attempt.pgid > 1
        # One machine: the node's process group is visible here too.
        assert not group_alive(attempt.pgid), f"{task}'s remote group survived"


def test_a_lost_node_fails_its_attempt_and_a_retry_succeeds_on_another(
    ray_cluster: Any, repo: Path, write_plan: PlanWriter
) -> None:
    doomed = ray_cluster.add_node(
        num_cpus=2, node_ip_address="127.0.0.1", resources={"doomed": 2}, **LEAN
    )
    ray_cluster.wait_for_nodes()
    plan = write_plan(
        plan_text(
            repo,
            """\
            - {id: t, agent: shell, edits: [out.txt], resources: [doomed], retries: 1, command: 'if [ "$DELEGATE_ATTEMPT" = 1 ]; then echo ready; sleep 300; fi; echo ok > out.txt'}
            """,
        )
    )

    async def drive(engine: Engine, recorder: Recorder) -> None:
        await until(lambda: b"ready" in output_of(recorder, "t"))
        ray_cluster.remove_node(doomed, allow_graceful=False)

    state, _, _ = run_engine(plan, during=drive)
    first, second = state.tasks["t"].attempts
    assert first.exit_reason == "node-lost"
    assert first.status == "failed" and "node lost" in first.reason
    assert second.status == "succeeded"
    assert second.node and second.node != first.node
    assert git(repo, "show", f"{state.integration_tip}:out.txt") == "ok\n"
    assert gone(first.pgid), "the lost node's agent survived"


@pytest.mark.parametrize("through", ["driver", "client"])
def test_resume_after_kill_9_leaves_no_remote_process_behind(
    through: str, ray_cluster: Any, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``kill -9`` of delegate-tui: its remote agent ends, and ``resume`` goes on. As a Ray
    driver, Ray ends the hosts at once; through Ray Client, the head keeps the client's
    session for the reconnect grace period the client asked for
    (``RAY_CLIENT_RECONNECT_GRACE_PERIOD`` in delegate-tui's environment), then ends it."""
    executor: list[str] = []
    if through == "client":
        if not ray_cluster.client_address:
            pytest.skip("Ray Client needs Ray's client extra: pip install 'ray[client]'")
        monkeypatch.delenv("RAY_ADDRESS")
        monkeypatch.setenv("RAY_CLIENT_RECONNECT_GRACE_PERIOD", "3")
        executor = ["--executor", ray_cluster.client_address]
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        plan_text(
            repo,
            """\
            - {id: t, agent: shell, edits: [out.txt], command: 'if [ "$DELEGATE_ATTEMPT" = 1 ]; then echo ready; sleep 300; fi; echo ok > out.txt'}
            """,
        )
    )
    home = tmp_path / "home"
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    child = subprocess.Popen(
        [sys.executable, "-m", "delegate_tui", "run", str(plan), "--headless", "--yes", *executor],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        pgid = 0
        deadline = time.monotonic() + 60
        while not pgid:
            assert time.monotonic() < deadline, "the remote agent never started"
            for log in (repo / ".delegate" / "runs").glob("*/events.jsonl"):
                for line in log.read_text().splitlines():
                    ev = json.loads(line)
                    if ev.get("type") == "TaskStarted" and ev.get("node"):
                        pgid = ev["pgid"]
            time.sleep(0.1)
        assert group_alive(pgid)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    # Through the client: within its 3 s of grace and the hosts' end (Ray's own 30 s
    # would fail this).
    assert gone(pgid, 30 if through == "driver" else 3 + 15), "the agent outlived delegate-tui"
    done = run_cli("resume", "--headless", "--yes", "--repo", str(repo), cwd=tmp_path, home=home)
    assert done.returncode == 0, done.stderr
    assert "started (shell, pid " in done.stdout and " on node 127.0.0.1/" in done.stdout
    (log,) = (repo / ".delegate" / "runs").glob("*/events.jsonl")
    state, _ = final_state(log)
    assert state.status == "succeeded"
    assert [a.status for a in state.tasks["t"].attempts] == ["interrupted", "succeeded"]
    assert git(repo, "show", f"{state.integration_tip}:out.txt") == "ok\n"
    # The nodes keep nothing of the run: not even what the killed process's hosts left.
    assert not scratch_root(state.run_id).exists(), list(scratch_root(state.run_id).rglob("*"))[:5]


def test_a_plan_runs_through_ray_client(
    ray_cluster: Any, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--executor ray://HOST:PORT``: connected through Ray Client's server on the head."""
    address = ray_cluster.client_address
    if not address:
        pytest.skip("Ray Client needs Ray's client extra: pip install 'ray[client]'")
    monkeypatch.delenv("RAY_ADDRESS")
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        plan_text(
            repo,
            f"""\
            - {{id: a, agent: shell, edits: [a.txt], command: "echo said-a; echo a > a.txt"}}
            - {{id: b, agent: shell, edits: [b.txt], resources: [{NODE_B}], command: "echo b > b.txt"}}
            """,
            executor="local",  # the command line says where
        )
    )
    home = tmp_path / "home"
    done = run_cli(
        *("run", str(plan), "--headless", "--yes", "--stream", "--executor", address),
        cwd=tmp_path,
        home=home,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(" on node 127.0.0.1/") == 2, done.stdout
    assert "said-a" in done.stdout, "the remote output came back through the client"
    (log,) = (repo / ".delegate" / "runs").glob("*/events.jsonl")
    state, _ = final_state(log)
    assert state.status == "succeeded"
    assert state.tasks["b"].attempts[-1].node.endswith("/" + node_with(NODE_B)[:6])
    for name in ("a", "b"):
        assert git(repo, "show", f"{state.integration_tip}:{name}.txt") == f"{name}\n"


def test_the_ray_benchmark_runs_and_accounts_for_every_byte(
    ray_cluster: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """bench/ray_overhead.py on a tiny workload, in this process: on this session's
    cluster, with the hosts the tests before started."""
    monkeypatch.setenv("DELEGATE_DEMO_SPEED", "0")  # the benchmark sets it; put back after
    path = Path(__file__).resolve().parents[2] / "bench" / "ray_overhead.py"
    spec = importlib.util.spec_from_file_location("ray_overhead", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    capsys.readouterr()
    bench.main(["--agents", "3", "--lines", "500", "--flooders", "2", "--once", "--json"])
    result = json.loads(capsys.readouterr().out)
    overhead, ingest = result["overhead"], result["ingest"]
    assert overhead["agents"] == 3 and overhead["nodes_used"] >= 2
    phases = overhead["where (mean s, count)"]
    assert phases["scratch clone (on the node)"][1] == 3, "one clone per attempt"
    assert phases["base pack (once a run)"][1] == 1
    # The start's own time on the node is part of its call's round trip, and follows it.
    names = list(phases)
    start = names.index("  of which: the start on the node")
    assert names[start - 1] == "spawn call" and phases[names[start]][1] == 3
    assert phases[names[start]][0] <= phases["spawn call"][0]
    assert ingest["bytes_local"] == ingest["bytes_ray"] == ingest["bytes_expected"]
