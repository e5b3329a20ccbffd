"""Replay: the same apply over the log gives the live run's state; seeking equals folding."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from delegate_tui.core import replay as replay_module
from delegate_tui.core.events import Event
from delegate_tui.core.metrics import stats
from delegate_tui.core.plan import Plan
from delegate_tui.core.replay import REFUSED, ReplaySource
from delegate_tui.core.runlog import read_events
from delegate_tui.core.state import RunState, apply, build
from tests.conftest import run_engine

# One xdist worker runs the tests of the module-scoped `recorded`, so it is built once.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("recorded")]
PlanWriter = Callable[..., Plan]


def projection(state: RunState) -> dict[str, object]:
    """What a person would compare: statuses, attempts, files, findings, tip, counts."""
    return {
        "status": state.status,
        "tasks": {
            t.id: (t.status, len(t.attempts), [f.path for f in t.changed])
            for t in state.tasks.values()
        },
        "findings": sorted(state.findings),
        "tip": state.integration_tip,
        "events": state.events,
        "batches": state.batches,
        "tails": {t.id: bytes(t.attempt.tail) if t.attempt else b"" for t in state.tasks.values()},
    }


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunState, Path]:
    """A real run with parallel work, a failure and retry, and a collision."""
    tmp = tmp_path_factory.mktemp("replay")
    repo = tmp / "repo"
    repo.mkdir()
    for args in (["init", "-q"], ["config", "user.email", "t@t"], ["config", "user.name", "t"]):
        subprocess.run(["git", *args], cwd=repo, check=True)
    (repo / "shared.py").write_text("OWNER = 'nobody'\n")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "init"], cwd=repo, check=True)
    plan_path = tmp / "plan.yaml"
    plan_path.write_text(
        textwrap.dedent(
            f"""\
            name: recorded
            repo: {repo}
            agents:
              flaky: {{extends: demo, args: [--fail-first]}}
            tasks:
              - {{id: a, agent: shell, edits: [a.txt], command: "echo a > a.txt; sed -i 's/nobody/a/' shared.py; sleep 1.5"}}
              - {{id: b, agent: shell, edits: [b.txt], command: "echo b > b.txt; sed -i 's/nobody/b/' shared.py; sleep 2.5"}}
              - {{id: c, agent: flaky, prompt: Fix it, edits: [c.py], retries: 1}}
            """
        )
    )
    from delegate_tui.core.plan import load_plan

    old = os.environ.get("DELEGATE_DEMO_SPEED")
    os.environ["DELEGATE_DEMO_SPEED"] = "0"
    try:
        state, _, engine = run_engine(load_plan(plan_path))
    finally:
        if old is None:
            os.environ.pop("DELEGATE_DEMO_SPEED", None)
        else:
            os.environ["DELEGATE_DEMO_SPEED"] = old
    return state, engine.log_path


def figures_from_the_raw_log(log: Path) -> dict[str, float]:
    """Wall and sequential time worked out from the log's JSON by hand, not through
    ``state`` or ``metrics``: start to finish, and each attempt from its start to its exit."""
    import json

    records = [json.loads(line) for line in log.read_text().splitlines()]
    start = next(r["ts"] for r in records if r["type"] == "RunStarted")
    end = next(r["ts"] for r in records if r["type"] == "RunFinished")
    began = {(r["task"], r["attempt"]): r["ts"] for r in records if r["type"] == "TaskStarted"}
    ended = {(r["task"], r["attempt"]): r["ts"] for r in records if r["type"] == "TaskExited"}
    assert began.keys() == ended.keys()
    sequential = sum(ended[k] - began[k] for k in began)
    return {"wall_s": end - start, "sequential_s": sequential, "attempts": len(began)}


def test_replay_ends_in_the_live_runs_state(recorded: tuple[RunState, Path]) -> None:
    live, log = recorded
    assert live.finding_history, "the recorded run had collisions"
    assert any(len(t.attempts) == 2 for t in live.tasks.values()), "and a retry"
    source = ReplaySource.from_log(log)
    source.seek(len(source.events))
    assert projection(source.state) == projection(live)
    # What the run was: a and b both rewrote shared.py at once (b, working longer, lost
    # the merge: which of two agents ending together merges first is a race), c
    # failed once and succeeded on its automatic retry.
    assert source.state.status == "partial"
    assert {t.id: (t.status, len(t.attempts)) for t in source.state.tasks.values()} == {
        "a": ("succeeded", 1),
        "b": ("merge-conflict", 1),
        "c": ("succeeded", 2),
    }
    replayed = stats(source.state)["metrics"]
    assert isinstance(replayed, dict)
    assert replayed == stats(live)["metrics"]
    raw = figures_from_the_raw_log(log)
    assert raw["attempts"] == 4
    assert replayed["wall_s"] == pytest.approx(raw["wall_s"], abs=0.001)
    assert replayed["sequential_s"] == pytest.approx(raw["sequential_s"], abs=0.001)
    # Time saved: the agents' time one after another against the wall time in which they
    # worked (moments with no agent running are the operator's, and not counted).
    waits, down = replayed["operator_wait_s"], replayed["downtime_s"]
    assert down == 0.0 and 0.0 <= waits < raw["wall_s"] / 2
    assert replayed["time_saved_s"] == pytest.approx(
        raw["sequential_s"] - (raw["wall_s"] - waits), abs=0.003
    )
    assert raw["sequential_s"] > 4.0, "a and b slept 1.5 s and 2.5 s"
    assert replayed["conflict_rate"] == 0.6667, "a and b collided, c did not"
    assert replayed["rework_rate"] == 0.3333, "one retry over three tasks"


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_seek_anywhere_equals_folding_from_the_start(
    recorded: tuple[RunState, Path], data: st.DataObject
) -> None:
    _, log = recorded
    events = list(read_events(log))
    source = ReplaySource(events)
    for _ in range(3):  # several seeks in a row, forwards and backwards
        index = data.draw(st.integers(0, len(events)))
        source.seek(index)
        assert projection(source.state) == projection(build(events[:index]))


def test_keyframes_make_seeking_cheap(
    recorded: tuple[RunState, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, log = recorded
    monkeypatch.setattr(replay_module, "KEYFRAME_EVERY", 10)
    events = list(read_events(log))
    source = ReplaySource(events)
    assert len(source._keyframes) == 1 + len(events) // 10
    applied: list[int] = []

    def counting_apply(state: RunState, ev: Event) -> None:
        applied.append(1)
        apply(state, ev)

    monkeypatch.setattr(replay_module, "apply", counting_apply)
    source.seek(len(events) - 3)
    assert len(applied) < 10, "a seek applies only the events after the nearest keyframe"


def test_replay_refuses_commands_and_jumps_to_marks(recorded: tuple[RunState, Path]) -> None:
    _, log = recorded
    source = ReplaySource.from_log(log)
    assert (
        source.approve() == REFUSED
        and source.kill("a") == REFUSED
        and source.retry("c", "x") == REFUSED
    )
    source.seek(0)
    assert source.jump("conflict", 1)
    assert source.state.findings, "the collision was found live, before the failure"
    assert source.jump("failure", 1)
    failed = source.events[source.index - 1]
    assert getattr(failed, "status", "") in ("failed", "merge-conflict")
    at_failure = source.index
    assert source.jump("conflict", -1) and source.index < at_failure
    assert source.set_speed(1) == 2.0 and source.set_speed(-1) == 1.0


def test_headless_replay_at_a_moment(recorded: tuple[RunState, Path]) -> None:
    _, log = recorded
    out = subprocess.run(
        [sys.executable, "-m", "delegate_tui", "replay", str(log), "--headless", "--at", "0.8"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "NO_COLOR": "1"},
    ).stdout
    head, *rows = out.splitlines()
    assert head.startswith("2") and "recorded" in head and "[running]" in head
    assert any(row.split()[:2] == ["a", "running"] for row in rows)
    assert "\x1b" not in out, "nothing from the log reaches the terminal raw"
    end = subprocess.run(
        [sys.executable, "-m", "delegate_tui", "replay", str(log), "--headless"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "[partial]" in end or "[succeeded]" in end


def test_damaged_log_opens_with_a_message(recorded: tuple[RunState, Path], tmp_path: Path) -> None:
    _, log = recorded
    damaged = tmp_path / "events.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    damaged.write_bytes(b"".join(lines[:5]) + b"{garbage\n" + b"".join(lines[5:]) + lines[-1][:30])
    result = subprocess.run(
        [sys.executable, "-m", "delegate_tui", "replay", str(damaged), "--headless"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0
    assert "skipped 1 corrupt line(s): line 6" in result.stderr
    assert "cut off mid-write" in result.stderr


def test_resume_after_sigkill_finishes_the_run_without_orphans(tmp_path: Path, repo: Path) -> None:
    import json
    import signal
    import time

    from delegate_tui.core.reaper import group_alive

    plan = tmp_path / "plan.yaml"
    plan.write_text(
        textwrap.dedent(
            f"""\
            name: resumable
            repo: {repo}
            agents:
              stuck: {{extends: demo, args: [--hang-first]}}
            tasks:
              - {{id: quick, agent: demo, prompt: Add q, edits: [q.txt]}}
              - {{id: slow, agent: stuck, prompt: Add s, edits: [s.txt]}}
              - {{id: after, agent: shell, edits: [a.txt], depends_on: [quick, slow], command: "cat q.txt s.txt > a.txt"}}
            """
        )
    )
    env = {**os.environ, "NO_COLOR": "1", "DELEGATE_DEMO_SPEED": "0"}
    first = subprocess.Popen(
        [sys.executable, "-m", "delegate_tui", "run", str(plan), "--headless", "--yes"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    log = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        logs = (
            list((repo / ".delegate" / "runs").glob("*/events.jsonl"))
            if (repo / ".delegate").exists()
            else []
        )
        if (
            logs
            and '"TaskMerged"' in logs[0].read_text()
            and '"task":"slow"' in logs[0].read_text()
        ):
            log = logs[0]
            break
        time.sleep(0.1)
    assert log is not None, "the first run got going"
    started = [json.loads(line) for line in log.read_text().splitlines() if '"TaskStarted"' in line]
    slow_group = next(e["pgid"] for e in started if e["task"] == "slow")
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and group_alive(slow_group):
        time.sleep(0.1)
    assert not group_alive(slow_group), "no agent outlived the killed process"

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "delegate_tui",
            "resume",
            "--repo",
            str(repo),
            "--headless",
            "--yes",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "slow interrupted" in result.stdout and "run succeeded" in result.stdout
    state = build(read_events(log))
    assert state.status == "succeeded" and len(state.host_pids) == 2
    assert [a.status for a in state.tasks["slow"].attempts] == ["interrupted", "succeeded"]
    assert len(state.tasks["quick"].attempts) == 1, "finished work was kept, not redone"
    out = subprocess.run(
        ["git", "show", f"{state.integration_branch}:a.txt"],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    assert out.stdout.count("## quick") == 1 and out.stdout.count("## slow") == 1
    again = subprocess.run(
        [
            sys.executable,
            "-m",
            "delegate_tui",
            "resume",
            "--repo",
            str(repo),
            "--headless",
            "--yes",
        ],
        capture_output=True,
        text=True,
    )
    assert again.returncode == 2 and "already ended (succeeded); nothing to resume" in again.stderr


def test_asciicast_recording_replays_as_a_one_task_run(tmp_path: Path) -> None:
    from delegate_tui.core import asciicast

    cast = tmp_path / "session.cast"
    cast.write_text(
        '{"version": 2, "width": 80, "height": 24, "timestamp": 1700000000, "title": "npm test", "command": "npm test"}\n'
        '[0.1, "o", "\\u001b[32mPASS\\u001b[0m a.test.js\\r\\n"]\n'
        '[0.5, "o", "  10%\\r 100%\\r\\n"]\n'
        '[0.7, "i", "q"]\n'
        '[1.5, "o", "done\\r\\n"]\n'
    )
    source = ReplaySource(asciicast.to_events(cast))
    source.seek(len(source.events))
    session = source.state.tasks["session"]
    assert session.status == "succeeded" and source.state.plan is not None
    assert (
        bytes(session.attempts[0].tail)
        == b"\x1b[32mPASS\x1b[0m a.test.js\r\n  10%\r 100%\r\ndone\r\n"
    )
    assert session.attempts[0].inputs == ["q"]
    assert source.position.duration == 1.5
    source.seek_seconds(0.6)
    assert source.state.tasks["session"].status == "running"
    out = subprocess.run(
        [sys.executable, "-m", "delegate_tui", "replay", str(cast), "--headless", "--at", "0.6"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "session" in out and "running" in out and "100%" in out
    bad = tmp_path / "bad.cast"
    bad.write_text('{"version": 2}\n[0.1, "o"]\n')
    with pytest.raises(asciicast.CastError, match=r"bad.cast:2: expected \[time, type, data\]"):
        asciicast.to_events(bad)


def rewrite_with_keyframes(
    log: Path, target: Path, every: int, monkeypatch: pytest.MonkeyPatch
) -> int:
    """Write the recorded events again, as the engine writes them, with a keyframe every few."""
    from delegate_tui.core import runlog
    from delegate_tui.core.runlog import LogWriter
    from delegate_tui.core.state import apply, snapshot

    monkeypatch.setattr(runlog, "KEYFRAME_EVERY", every)
    state = RunState()
    writer = LogWriter(target)
    count = 0
    for ev in read_events(log):
        apply(state, ev)
        writer.write(ev, lambda: snapshot(state))
        count += 1
    writer.close()
    return count


def test_the_engine_leaves_an_index_that_covers_its_whole_log(
    recorded: tuple[RunState, Path],
) -> None:
    from delegate_tui.core.runlog import load_index

    _, log = recorded
    index = load_index(log)
    assert index is not None
    assert len(index) == len(list(read_events(log))) and index.covered == log.stat().st_size


def test_a_keyframe_holds_the_whole_state_but_the_plan(recorded: tuple[RunState, Path]) -> None:
    import json

    from delegate_tui.core.state import restore, snapshot

    live, _ = recorded
    data = json.loads(json.dumps(snapshot(live)))
    assert "plan" not in data
    assert restore(data, live.plan) == live


@pytest.fixture
def keyframed(
    recorded: tuple[RunState, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, Path, int]:
    """The recorded log, its copy written with a keyframe every 9 events, and its length."""
    _, log = recorded
    copy = tmp_path / "events.jsonl"
    return log, copy, rewrite_with_keyframes(log, copy, 9, monkeypatch)


def test_seeking_through_written_keyframes_equals_folding(
    keyframed: tuple[Path, Path, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    log, copy, count = keyframed
    monkeypatch.setattr(
        replay_module, "_catch_up", lambda *_: pytest.fail("the index was not up to date")
    )
    source = ReplaySource.from_log(copy)
    assert [k.events for k in source._keyframes] == list(range(0, count + 1, 9))
    events = list(read_events(log))
    for index in [count, 0, *range(1, count, 4), count - 1, 5]:
        source.seek(index)
        assert source.state == build(events[:index]), f"after {index} events"


def test_a_damaged_keyframe_falls_back_to_the_one_before(
    keyframed: tuple[Path, Path, int],
) -> None:
    from delegate_tui.core.runlog import index_dir

    log, copy, count = keyframed
    frames = index_dir(copy) / "keyframes.jsonl"
    raw = bytearray(frames.read_bytes())
    second = raw.index(b"\n") + 1  # the keyframe after 18 events: make it lie about its state
    raw[second : second + 40] = b'{"events":18,"state":{"tasks":7}}'.ljust(40)
    frames.write_bytes(raw)
    source = ReplaySource.from_log(copy)
    events = list(read_events(log))
    source.seek(20)
    assert source.state == build(events[:20])
    assert 18 not in [k.events for k in source._keyframes]
    source.seek(count)
    assert source.state == build(events)


def test_a_log_without_an_index_is_indexed_once_with_keyframes(
    recorded: tuple[RunState, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from delegate_tui.core import runlog
    from delegate_tui.core.runlog import load_index

    _, log = recorded
    copy = tmp_path / "events.jsonl"
    shutil.copy(log, copy)  # the log alone, as from another machine
    monkeypatch.setattr(runlog, "KEYFRAME_EVERY", 10)
    source = ReplaySource.from_log(copy)
    index = load_index(copy)
    assert index is not None and len(index) == len(source.events)
    assert [k.events for k in index.keyframes] == list(range(10, len(index) + 1, 10))
    events = list(read_events(log))
    again = ReplaySource.from_log(copy)
    again.seek(len(events) - 1)
    assert again.state == build(events[:-1])


def test_a_dense_log_plays_in_time_and_lets_the_loop_run() -> None:
    """Gaps too short to sleep add up; a burst of due events still lets the loop go."""
    import asyncio

    from delegate_tui.core.events import RunStarted, TaskOutput

    events: list[Event] = [
        RunStarted(run_id="r", plan={}, plan_path="", repo="", isolation="none", ts=100.0)
    ]
    events += [
        TaskOutput(task="a", attempt=1, data=b"x\n", seq=n, ts=100.0 + n * 0.0002)
        for n in range(1, 4001)
    ]  # 4,000 events 0.2 ms apart: 0.8 s of run
    source = ReplaySource(events)
    seen_by_the_loop: list[int] = []

    async def main() -> float:
        loop = asyncio.get_running_loop()

        def tick() -> None:  # stands for the screen's refresh timer
            seen_by_the_loop.append(source.index)
            if source.index < len(events):
                loop.call_later(0.05, tick)

        player = asyncio.create_task(source.run())
        start = loop.time()
        loop.call_soon(tick)
        while source.index < len(events):
            await asyncio.sleep(0.01)
        elapsed = loop.time() - start
        player.cancel()
        return elapsed

    elapsed = asyncio.run(main())
    assert elapsed >= 0.6, f"0.8 s of events played in {elapsed:.2f} s: short gaps were dropped"
    assert len(seen_by_the_loop) >= 8, "the loop hardly ran while the replay played"
    assert seen_by_the_loop == sorted(seen_by_the_loop) and seen_by_the_loop[2] < len(events)
    # At 64x the same events are all due at once: still the loop runs between bursts.
    source.seek(0)
    source.speed = 64.0
    source.playing = True
    seen_by_the_loop.clear()
    asyncio.run(main())
    assert any(0 < i < len(events) for i in seen_by_the_loop), "played in one blocking burst"
