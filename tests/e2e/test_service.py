"""The run service: a run outlives its terminal; views attach, detach and command it.

Real processes, real sockets, real git: the service is started by the CLI as a
user starts it, and views are the same RunClient the UI uses.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from unittest.mock import ANY

import pytest

from delegate_tui.core import service as service_module
from delegate_tui.core.client import RunClient, ServiceGone
from delegate_tui.core.engine import Engine, EngineOptions
from delegate_tui.core.events import Event, Notice, RunFinished, TaskFinished, TaskOutput
from delegate_tui.core.plan import Plan
from delegate_tui.core.reaper import group_alive
from delegate_tui.core.replay import final_state
from delegate_tui.core.service import RunService, reachable, service_status, socket_path
from delegate_tui.core.state import RunState
from tests.conftest import git, run_cli

pytestmark = pytest.mark.e2e


def start_detached(plan: Path, repo: Path, home: Path) -> Path:
    """``run --detach --yes`` of ``plan`` in ``repo``; the run's folder."""
    assert run_cli("run", str(plan), "--detach", "--yes", cwd=repo, home=home).returncode == 0
    return next((repo / ".delegate" / "runs").iterdir())


async def follow_until_slow_runs(run_dir: Path) -> tuple[RunClient, asyncio.Task[RunState]]:
    """A view attached to the run in ``run_dir``, following it, once its task ``slow`` runs."""
    view = RunClient(run_dir)
    await view.connect()
    following = asyncio.create_task(view.run())
    await wait_for(lambda: view.state.tasks["slow"].status == "running")
    return view, following


def long_plan(tmp_path: Path, repo: Path) -> Path:
    """`slow` waits (printing) on its first attempt and finishes on the next; `after` needs it."""
    flag = tmp_path / "attempted"
    pid = tmp_path / "slow.pid"
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        textwrap.dedent(
            f"""\
            name: long
            repo: {repo}
            agent: shell
            tasks:
              - id: slow
                command: "echo $$ > {pid}; if [ -e {flag} ]; then echo done > out.txt; else touch {flag}; for i in $(seq 60); do echo tick $i; sleep 0.5; done; fi"
                edits: [out.txt]
              - id: after
                command: "echo ok > after.txt"
                edits: [after.txt]
                depends_on: [slow]
            """
        )
    )
    return plan


async def wait_for(check: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_a_run_outlives_its_views_and_answers_every_view(repo: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    plan = long_plan(tmp_path, repo)
    started = run_cli("run", str(plan), "--detach", cwd=repo, home=home)
    assert started.returncode == 0, started.stderr
    assert "goes on in the background" in started.stdout
    run_dir = next((repo / ".delegate" / "runs").iterdir())
    assert oct(run_dir.stat().st_mode & 0o777) == "0o700"
    assert oct(socket_path(run_dir).stat().st_mode & 0o777) == "0o600"

    first = RunClient(run_dir)
    await first.connect()
    assert first.state.proposal is not None and first.state.proposal.tasks == ("slow",)
    assert first.approve() == ""
    following = asyncio.create_task(first.run())
    pid_file = tmp_path / "slow.pid"
    await wait_for(pid_file.exists)
    await wait_for(lambda: first.state.tasks["slow"].status == "running")
    agent = first.state.tasks["slow"].attempts[-1].pid
    first.detach()  # the terminal goes away
    await following
    service_pid = first.state.host_pids[-1]
    os.kill(service_pid, signal.SIGHUP)  # as a closed terminal would send
    await asyncio.sleep(0.5)
    assert alive(agent) and alive(service_pid), "closing the view ended nothing"

    # Two views at once: both see everything, both may command.
    one, two = RunClient(run_dir), RunClient(run_dir)
    seen: dict[str, list[Event]] = {"one": [], "two": []}
    for name, view in (("one", one), ("two", two)):
        await view.connect()
        view.subscribe(seen[name].append)
        assert view.state.tasks["slow"].attempts[-1].pid == agent  # the same agent, not a new one
    runs = [asyncio.create_task(one.run()), asyncio.create_task(two.run())]
    assert one.kill("slow") == ""
    assert one.kill("after") == "after is not running (pending)"  # refused at once, locally
    for events in seen.values():

        def task_finished(events: list[Event] = events) -> bool:
            return any(isinstance(e, TaskFinished) for e in events)

        await wait_for(task_finished)
    assert two.state.tasks["slow"].status == "killed"
    assert not group_alive(agent)
    assert two.retry("slow", "go on") == ""  # the other view decides next
    await wait_for(lambda: one.state.proposal is not None, 30)
    assert one.state.proposal is not None and one.state.proposal.tasks == ("after",)
    assert one.approve() == ""
    await asyncio.wait_for(asyncio.gather(*runs), 30)
    for name in seen:
        finished = [e for e in seen[name] if isinstance(e, RunFinished)]
        assert [e.status for e in finished] == ["succeeded"], name
    await wait_for(lambda: not alive(service_pid))  # the service's life is the run's
    assert not socket_path(run_dir).exists()
    state, _ = final_state(run_dir / "events.jsonl")
    assert [a.context for a in state.tasks["slow"].attempts] == ["", "go on"]


async def test_stop_and_attach_from_the_command_line(repo: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    plan = long_plan(tmp_path, repo)
    run_dir = start_detached(plan, repo, home)
    await wait_for((tmp_path / "slow.pid").exists)
    view = RunClient(run_dir)
    await view.connect()
    listed = json.loads(run_cli("runs", "--json", cwd=repo, home=home).stdout)
    assert [(r["run_id"], r["status"], r["live"], r["views"], r["draft"]) for r in listed] == [
        (run_dir.name, "live", True, 1, False)
    ]
    view.detach()
    twice = run_cli("resume", run_dir.name, "--headless", "--yes", cwd=repo, home=home)
    assert twice.returncode == 2, "a live run is not taken over by a second engine"
    assert f"run {run_dir.name} is live" in twice.stderr
    # A newer run that is not live (as a draft's consult, or a run that ended): without
    # RUN, `stop` ends the newest live run, not the newest run.
    newer = run_dir.parent / "99991231-235959-0000"
    newer.mkdir()
    shutil.copy(run_dir / "events.jsonl", newer / "events.jsonl")
    stopped = run_cli("stop", cwd=repo, home=home)
    shutil.rmtree(newer)
    assert stopped.returncode == 0, stopped.stderr
    assert f"run {run_dir.name} stopped" in stopped.stdout
    state, _ = final_state(run_dir / "events.jsonl")
    assert state.status == "stopped"
    assert state.tasks["slow"].status == "interrupted"
    listed = json.loads(run_cli("runs", "--json", cwd=repo, home=home).stdout)
    assert [(r["status"], r["live"]) for r in listed] == [("stopped", False)]
    assert not group_alive(state.tasks["slow"].attempts[-1].pgid)
    again = run_cli("attach", run_dir.name, cwd=repo, home=home)
    assert again.returncode == 2
    assert "the run is not live" in again.stderr and "resume" in again.stderr
    # Stopped is resumable: the interrupted task starts again.
    resumed = run_cli("resume", run_dir.name, "--headless", "--yes", cwd=repo, home=home)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    state, _ = final_state(run_dir / "events.jsonl")
    assert state.status == "succeeded"
    assert git(repo, "show", f"{state.integration_branch}:out.txt") == "done\n"


async def test_a_killed_service_leaves_no_agent_and_views_say_so(
    repo: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    plan = long_plan(tmp_path, repo)
    run_dir = start_detached(plan, repo, home)
    view, following = await follow_until_slow_runs(run_dir)
    pgid = view.state.tasks["slow"].attempts[-1].pgid
    os.kill(view.state.host_pids[-1], signal.SIGKILL)
    await asyncio.wait_for(following, 10)
    assert view.service_gone
    assert "the run service is gone" in view.state.notices[-1].message
    await wait_for(lambda: not group_alive(pgid), 10)  # the watchdog ended the agent
    resumed = run_cli("resume", run_dir.name, "--headless", "--yes", cwd=repo, home=home)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr


async def test_another_users_view_is_refused(
    repo: Path, write_plan: Callable[..., Plan], monkeypatch: pytest.MonkeyPatch
) -> None:
    # No view ever attaches here, so the service would wait LINGER_S (10 s) for one.
    monkeypatch.setattr(service_module, "LINGER_S", 0.2)
    plan = write_plan(
        f"name: p\nrepo: {repo}\nagent: shell\ntasks:\n"
        "  - {id: a, command: 'sleep 5', edits: [a]}\n"
    )
    engine = Engine(plan, EngineOptions(kill_grace_s=1.0))
    seen: list[int] = []

    def only_nobody(uid: int) -> bool:
        seen.append(uid)
        return False

    service = RunService(engine, allowed_uid=only_nobody)
    listening = asyncio.Event()
    serving = asyncio.create_task(service.run(on_listening=lambda _path: listening.set()))
    await asyncio.wait_for(listening.wait(), 20)
    with pytest.raises(ServiceGone, match="belongs to another user"):
        await RunClient(engine.run_dir).connect()
    assert seen == [os.getuid()]  # the peer's real uid, from the kernel
    engine.stop("test over")
    await asyncio.wait_for(serving, 20)


async def test_a_view_that_reads_nothing_never_holds_up_the_run(
    repo: Path, write_plan: Callable[..., Plan], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service_module, "CLIENT_QUEUE_EVENTS", 5)
    plan = write_plan(
        f"name: p\nrepo: {repo}\nagent: shell\nmax_parallel: 2\ntasks:\n"
        "  - {id: wait, command: 'sleep 1', edits: [w]}\n"
        "  - {id: flood, command: 'sleep 1; seq 1500000', edits: [f]}\n"
    )
    engine = Engine(plan, EngineOptions(auto_approve=True, kill_grace_s=1.0))
    service = RunService(engine)
    listening = asyncio.Event()
    serving = asyncio.create_task(service.run(on_listening=lambda _path: listening.set()))
    await asyncio.wait_for(listening.wait(), 20)
    # A stalled view: says hello, then reads nothing while the flood runs.
    with service_module.reachable(socket_path(engine.run_dir)) as address:
        reader, writer = await asyncio.open_unix_connection(address)
    writer.write(b'{"hello": 1}\n')
    await writer.drain()
    view = RunClient(engine.run_dir)
    await view.connect()
    following = asyncio.create_task(view.run())
    await asyncio.wait_for(serving, 60)  # the run ends although one view never read
    await asyncio.wait_for(following, 10)
    assert engine.state.status == "succeeded"
    assert view.state.status == "succeeded"
    assert view.state.tasks["flood"].attempts[-1].output_bytes > 10_000_000
    stalled = (await asyncio.wait_for(reader.read(), 10)).splitlines()
    behind = [line for line in stalled if line.startswith(b'{"behind"')]
    assert behind, "the stalled view is told it fell behind"
    # It sees the end: the RunFinished event itself, or (if it fell behind again at the
    # very end) a last `behind` that sends it to the log, which holds the end.
    end = engine.state.last_seq
    last = json.loads(stalled[-1])
    assert last.get("type") == "RunFinished" or (
        any(b'"type":"RunFinished"' in line for line in stalled[-3:])
        or last.get("behind", {}).get("seq", 0) >= end - 2
    ), stalled[-3:]


async def test_a_view_busy_drawing_is_not_dropped_behind(repo: Path, tmp_path: Path) -> None:
    """A view whose loop is held (a UI drawing under a flood, on a busy machine) still
    drains its socket: the service never drops it behind (which cost a reload from the
    log each time), and it sees every byte of output as it came."""
    home = tmp_path / "home"
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        f"name: flood\nrepo: {repo}\nagent: shell\ntasks:\n"
        "  - {id: flood, command: 'sleep 1; seq 4000000', edits: [f]}\n"
    )
    run_dir = start_detached(plan, repo, home)
    view = RunClient(run_dir)
    seen: list[Event] = []
    view.subscribe(seen.append)
    await view.connect()
    # What the log had when the view came (a busy machine may start the agent first) is
    # in its state, not in its events.
    task = view.state.tasks["flood"]
    before = task.attempts[-1].output_bytes if task.attempts else 0
    following = asyncio.create_task(view.run())
    await asyncio.sleep(0.1)
    # The loop held, without a pause, while more than the service queues for a view
    # (32 MiB of log lines) is written.
    log = run_dir / "events.jsonl"
    deadline = time.monotonic() + 60
    while log.stat().st_size < 40_000_000 and time.monotonic() < deadline:
        sum(range(10_000))
    assert log.stat().st_size >= 40_000_000, "the flood did not come"
    await asyncio.wait_for(following, 90)
    assert view.state.status == "succeeded"
    notices = [e.message for e in seen if isinstance(e, Notice)]
    assert not [n for n in notices if "fell behind" in n], notices
    output = view.state.tasks["flood"].attempts[-1].output_bytes
    assert output > 30_000_000
    assert before + sum(len(e.data) for e in seen if isinstance(e, TaskOutput)) == output


def test_a_slow_view_still_reading_gets_the_end_of_the_run(repo: Path, tmp_path: Path) -> None:
    """When the run ends, the service waits for a view that is still reading its queue
    (a slow link, a busy machine) as long as it makes progress, so the view sees the run
    end from the service itself (it used to give every view 5 s, then closed)."""
    home = tmp_path / "home"
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        f"name: flood\nrepo: {repo}\nagent: shell\ntasks:\n"
        "  - {id: flood, command: 'sleep 1; seq 1600000', edits: [f]}\n"
    )
    run_dir = start_detached(plan, repo, home)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with reachable(socket_path(run_dir)) as address:
        sock.connect(address)
    sock.sendall(b'{"hello": 1}\n')
    # Read nothing until the run has ended: the flood (about 12 MB) waits in this view's
    # queue, under the service's bound, so the view is never moved to the log's end.
    log = run_dir / "events.jsonl"
    deadline = time.monotonic() + 60
    while b'"RunFinished"' not in log.read_bytes()[-4096:] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert b'"RunFinished"' in log.read_bytes()[-4096:], "the run did not end"
    # Then read at about 1.7 MB/s: draining the queue takes longer than 5 s.
    received = bytearray()
    started = time.monotonic()
    while chunk := sock.recv(1 << 18):
        received += chunk
        time.sleep(0.15)
    took = time.monotonic() - started
    sock.close()
    lines = bytes(received).splitlines()
    assert b'"type":"RunFinished"' in lines[-1], (took, lines[-1][:200])
    assert not [line for line in lines if line.startswith(b'{"behind"')]
    assert took > 5.5, "the queue drained too fast to tell"


async def test_a_service_whose_run_folder_is_deleted_stops_its_agents_and_exits(
    repo: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    plan = long_plan(tmp_path, repo)
    run_dir = start_detached(plan, repo, home)
    view, following = await follow_until_slow_runs(run_dir)
    pid, pgid = view.state.host_pids[-1], view.state.tasks["slow"].attempts[-1].pgid
    view.detach()
    await asyncio.wait_for(following, 10)
    # The service writes its stderr to service.log in the run folder: kept open to read
    # what it says once the folder is gone.
    with (run_dir / "service.log").open("rb") as said:
        subprocess.run(["rm", "-rf", str(run_dir)], check=True)
        await wait_for(lambda: not alive(pid), 20)
        lines = said.read().decode().strip().splitlines()
    assert not group_alive(pgid), "its agent was left running"
    assert lines and "run folder" in lines[-1] and "deleted" in lines[-1], lines
    assert "Traceback" not in "\n".join(lines)


async def test_the_service_runs_the_plan_as_it_was_checked_not_the_file_read_again(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The launching process checks the plan and hands it over: an edit to the file after
    # the check (or a plan changed in memory, as `demo` does) does not reach the service.
    from delegate_tui.core.plan import load_plan
    from delegate_tui.launch import CHECKED_PLAN, RunRequest, _hand_over, _handed_over, start_run

    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    path = tmp_path / "plan.yaml"
    path.write_text(
        f"name: handed\nrepo: {repo}\nagent: shell\ntasks:\n"
        "  - {id: a, command: 'echo from-the-file > out.txt', edits: [out.txt]}\n"
    )
    plan = load_plan(path)
    (task,) = plan.tasks
    checked = plan.model_copy(
        update={"tasks": (task.model_copy(update={"command": "echo as-checked > out.txt"}),)}
    )
    assert start_run(checked, RunRequest(detach=True, yes=True)) == 0
    (run_dir,) = (repo / ".delegate" / "runs").iterdir()
    log = run_dir / "events.jsonl"
    await wait_for(lambda: log.exists() and final_state(log)[0].finished)
    state, _ = final_state(log)
    assert state.status == "succeeded"
    assert git(repo, "show", f"{state.integration_branch}:out.txt") == "as-checked\n"
    assert not (run_dir / CHECKED_PLAN).exists(), "the hand-over is removed once read"
    # The service's messages still say where in the file a task sits.
    handed = _handed_over(_hand_over(plan, tmp_path), path)
    assert handed == plan
    assert (
        handed.where("a", "command") == plan.where("a", "command") == f"{path}:5: tasks[0].command"
    )


async def test_stop_without_a_run_ends_the_run_that_goes_on_not_a_newer_one_that_ended(
    repo: Path, tmp_path: Path, write_plan: Callable[..., Plan]
) -> None:
    # A run that has ended keeps its service for a while (a view may still come to see the
    # end): it answers, but `stop` and `latest` mean the run that goes on.
    home = tmp_path / "home"
    going = start_detached(long_plan(tmp_path, repo), repo, home)
    await wait_for((tmp_path / "slow.pid").exists)
    quick = write_plan(
        f"name: quick\nrepo: {repo}\nagent: shell\n"
        "tasks:\n  - {id: q, command: 'echo q > q.txt', edits: [q.txt]}\n",
        name="quick.yaml",
    )
    assert (
        run_cli("run", str(quick.source), "--detach", "--yes", cwd=repo, home=home).returncode == 0
    )
    (ended,) = [d for d in (repo / ".delegate" / "runs").iterdir() if d != going]
    await wait_for(lambda: final_state(ended / "events.jsonl")[0].finished)
    assert service_status(ended) == {"pid": ANY, "views": 0, "ended": 1}, "it lingers"
    stopped = run_cli("stop", "latest", cwd=repo, home=home)
    assert stopped.returncode == 0, stopped.stderr
    assert f"run {going.name} stopped" in stopped.stdout
    assert final_state(going / "events.jsonl")[0].status == "stopped"
    assert final_state(ended / "events.jsonl")[0].status == "succeeded"


async def test_a_plan_reached_through_a_symlink_runs_where_it_was_checked(
    repo: Path, tmp_path: Path
) -> None:
    # `repo: .` is the folder of the plan as named, not of the file the link points to.
    home = tmp_path / "home"
    target = tmp_path / "plans" / "plan.yaml"
    target.parent.mkdir()
    target.write_text(
        "name: linked\nrepo: .\nagent: shell\n"
        "tasks:\n  - {id: a, command: 'echo linked > out.txt', edits: [out.txt]}\n"
    )
    (repo / "plan.yaml").symlink_to(target)
    started = run_cli("run", "plan.yaml", "--detach", "--yes", cwd=repo, home=home)
    assert started.returncode == 0, started.stdout + started.stderr
    (run_dir,) = (repo / ".delegate" / "runs").iterdir()
    await wait_for(lambda: final_state(run_dir / "events.jsonl")[0].finished)
    state, _ = final_state(run_dir / "events.jsonl")
    assert state.status == "succeeded"
    assert git(repo, "show", f"{state.integration_branch}:out.txt") == "linked\n"
