"""Replay as the operator drives it: seek by time and by event, step, jump to marks, speed,
pause, and play with quiet stretches shortened; over events held in memory or a small log."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest

from delegate_tui.core import replay
from delegate_tui.core.events import (
    BatchApproved,
    BatchHeld,
    BatchProposed,
    ConflictDetected,
    Event,
    InputSent,
    KillRequested,
    MergeConflict,
    Metrics,
    Notice,
    RetryScheduled,
    RunFinished,
    RunStarted,
    TaskExited,
    TaskFinished,
    TaskOutput,
    TaskSkipped,
    TaskStarted,
    TaskStatus,
)
from delegate_tui.core.plan import parse_plan
from delegate_tui.core.replay import REFUSED, SPEEDS, ReplaySource, final_state
from delegate_tui.core.runlog import LogError, LogWriter
from delegate_tui.core.state import RunState, apply, build, restore, snapshot

T0 = 5_000.0
PLAN = parse_plan(
    textwrap.dedent(
        """\
        name: replayed
        tasks:
          - {id: a, prompt: x, edits: [a/**]}
          - {id: b, prompt: x, edits: [b/**]}
        """
    )
)


def started(task: str, at: float, attempt: int = 1) -> TaskStarted:
    return TaskStarted(
        task=task,
        attempt=attempt,
        agent="demo",
        argv=(),
        cwd="",
        pid=7,
        pgid=7,
        prompt="",
        ts=T0 + at,
    )


def recording() -> list[Event]:
    """A small run: times in seconds from T0, several events sharing a time stamp."""
    events: list[Event] = [
        RunStarted(
            run_id="r1",
            plan=PLAN.model_dump(mode="json", by_alias=True),
            plan_path="p.yaml",
            repo="/r",
            isolation="worktree",
            ts=T0,
        ),
        BatchProposed(batch=1, tasks=("a", "b"), needs_approval=True, ts=T0 + 0.5),  # 1
        BatchApproved(batch=1, tasks=("a", "b"), by="operator", ts=T0 + 1.0),  # 2
        started("a", 1.0),  # 3
        started("b", 1.0),  # 4
        TaskOutput(task="a", attempt=1, data=b"hello\n", ts=T0 + 2.0),  # 5
        TaskExited(task="a", attempt=1, exit_code=0, ts=T0 + 2.0),  # 6
        TaskFinished(task="a", attempt=1, status="succeeded", ts=T0 + 2.0),  # 7
        ConflictDetected(
            key="overlap:a,b:x",
            kind="overlap",
            severity="warning",
            tasks=("a", "b"),
            paths=("x",),
            ts=T0 + 2.5,
        ),  # 8
        TaskExited(task="b", attempt=1, exit_code=1, ts=T0 + 3.0),  # 9
        TaskFinished(task="b", attempt=1, status="failed", reason="exit 1", ts=T0 + 3.0),  # 10
        RetryScheduled(task="b", attempt=2, prompt="again", ts=T0 + 20.0),  # 11 (a quiet gap)
        started("b", 20.0, attempt=2),  # 12
        InputSent(task="b", attempt=2, text="y", ts=T0 + 21.0),  # 13
        KillRequested(task="b", attempt=2, ts=T0 + 22.0),  # 14
        TaskExited(task="b", attempt=2, exit_code=None, signal=15, reason="killed", ts=T0 + 22.5),
        TaskFinished(task="b", attempt=2, status="killed", ts=T0 + 22.5),  # 16
        RunFinished(status="partial", metrics=Metrics(), ts=T0 + 23.0),  # 17
    ]
    for seq, ev in enumerate(events, 1):
        object.__setattr__(ev, "seq", seq)
    return events


def status(source: ReplaySource, task: str) -> TaskStatus:
    """A task's status where the source stands, read anew (mypy would keep an earlier narrowing)."""
    return source.state.tasks[task].status


@pytest.fixture
def source() -> ReplaySource:
    return ReplaySource(recording())


# ------------------------------------------------------------ seeking by time


def test_seek_by_time_includes_events_stamped_exactly_at_that_time(source: ReplaySource) -> None:
    """At 2.0 s the three events stamped 2.0 s have happened: a's output, exit and success."""
    source.seek_seconds(2.0)
    assert source.index == 8
    a = source.state.tasks["a"]
    assert a.status == "succeeded" and bytes(a.attempts[0].tail) == b"hello\n"
    assert source.position.seconds == 2.0
    source.seek_seconds(1.999)
    assert source.index == 5 and source.state.tasks["a"].status == "running"


def test_seek_to_the_start_shows_the_run_started_and_past_the_end_shows_its_end(
    source: ReplaySource,
) -> None:
    source.seek_seconds(0.0)
    assert source.index == 1 and source.state.status == "running"
    assert source.state.plan is not None and source.state.plan.name == "replayed"
    source.seek_seconds(-3.0)
    assert source.index == 1
    source.seek_seconds(1.0)
    assert source.index == 5, "the approval and both starts at 1.0 s are shown"
    assert {t.status for t in source.state.tasks.values()} == {"running"}
    source.seek_seconds(999.0)
    assert source.index == len(source.events) and source.state.status == "partial"
    assert source.position.seconds == 23.0


def test_seek_by_time_lands_where_folding_up_to_that_time_does(source: ReplaySource) -> None:
    events = recording()
    for seconds in (0.0, 0.5, 0.7, 1.0, 2.0, 2.5, 3.0, 19.9, 20.0, 22.5, 23.0):
        source.seek_seconds(seconds)
        shown = [e for e in events if e.ts - T0 <= seconds]
        assert source.state == build(shown), seconds


# ------------------------------------------------------------ seeking by event


def test_position_counts_events_and_seconds(source: ReplaySource) -> None:
    assert source.position == replay.Position(0, 18, 0.0, 23.0)
    source.seek(9)
    assert source.position == replay.Position(9, 18, 2.5, 23.0)
    source.step(-1)
    assert source.position.index == 8 and not source.state.findings
    source.step(2)
    assert source.position.index == 10 and source.state.tasks["b"].attempts[0].exit_code == 1
    source.seek(-4)
    assert source.index == 0 and source.state == RunState()
    source.seek(1000)
    assert source.index == 18


def test_seek_tells_views_to_redraw_and_backwards_gives_the_earlier_state(
    source: ReplaySource,
) -> None:
    resets: list[int] = []
    source.subscribe_reset(lambda: resets.append(source.index))
    source.seek(len(source.events))
    assert source.state.tasks["b"].status == "killed"
    source.seek(4)
    assert status(source, "b") == "starting"
    assert source.state.tasks["a"].status == "running"
    assert resets == [18, 4]


def test_seeking_forward_continues_from_the_current_state(
    source: ReplaySource, monkeypatch: pytest.MonkeyPatch
) -> None:
    source.seek(10)
    applied: list[Event] = []

    def recording_apply(state: RunState, ev: Event) -> None:
        applied.append(ev)
        apply(state, ev)

    monkeypatch.setattr(replay, "apply", recording_apply)
    source.seek(12)
    assert applied == recording()[10:12]


def test_keyframes_in_memory_start_a_seek_near_its_target(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(replay, "KEYFRAME_EVERY", 5)
    source = ReplaySource(recording())
    assert [k.events for k in source._keyframes] == [0, 5, 10, 15]
    applied: list[int] = []

    def counting_apply(state: RunState, ev: Event) -> None:
        applied.append(1)
        apply(state, ev)

    monkeypatch.setattr(replay, "apply", counting_apply)
    source.seek(17)
    assert len(applied) == 2
    assert source.state == build(recording()[:17])
    source.seek(6)
    assert source.state == build(recording()[:6])


# ------------------------------------------------------------ marks


def test_jump_to_failures_skips_successes_and_goes_both_ways(source: ReplaySource) -> None:
    assert source.jump("failure", 1)
    assert source.index == 11 and source.state.tasks["b"].status == "failed"
    assert source.jump("failure", 1)
    assert source.index == 17 and status(source, "b") == "killed"
    assert not source.jump("failure", 1) and source.index == 17
    assert source.jump("failure", -1) and source.index == 11
    assert not source.jump("failure", -1) and source.index == 11


def test_jump_to_conflicts_and_approvals(source: ReplaySource) -> None:
    assert source.jump("conflict", 1) and source.index == 9
    assert list(source.state.findings) == ["overlap:a,b:x"]
    assert source.jump("approval", -1) and source.index == 3
    assert source.jump("approval", -1) and source.index == 2
    assert source.jump("approval", -1) is False


def test_jump_to_operator_actions_leaves_out_policy_approvals() -> None:
    events = recording()
    object.__setattr__(events[2], "by", "policy")
    source = ReplaySource(events)
    found = []
    while source.jump("operator", 1):
        found.append(type(source.events[source.index - 1]).__name__)
    assert found == ["RetryScheduled", "InputSent", "KillRequested"]
    source.seek(0)
    notable = []
    while source.jump("notable", 1):
        notable.append(source.index)
    assert notable == [2, 3, 9, 11, 12, 14, 15, 17]


def test_marks_cover_merge_conflicts_skips_and_held_batches() -> None:
    events: list[Event] = [
        *recording()[:1],
        BatchProposed(batch=1, tasks=("a",), ts=T0 + 1),
        BatchHeld(batch=1, ts=T0 + 2),
        MergeConflict(task="a", attempt=1, paths=("x",), ts=T0 + 3),
        TaskSkipped(task="b", ts=T0 + 4),
        TaskFinished(task="a", attempt=1, status="awaiting-merge", ts=T0 + 5),
    ]
    source = ReplaySource(events)
    assert source.jump("approval", 1) and source.jump("approval", 1) and source.index == 3
    assert source.jump("conflict", 1) and source.index == 4
    assert source.jump("operator", 1) and source.index == 5
    assert not source.jump("failure", 1), "awaiting a merge is not a failure"
    assert not ReplaySource(events[:2]).jump("conflict", 1)


# ------------------------------------------------------------ speed, pause, commands


def test_speed_steps_through_the_list_and_stops_at_its_ends(source: ReplaySource) -> None:
    assert source.speed == 1.0
    assert [source.set_speed(1) for _ in range(8)] == [2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 64.0, 64.0]
    assert [source.set_speed(-1) for _ in range(10)][-3:] == [0.25, 0.25, 0.25]
    assert SPEEDS[0] == 0.25 and SPEEDS[-1] == 64.0


def test_play_after_the_end_starts_again_and_pause_holds(source: ReplaySource) -> None:
    assert source.playing
    assert source.toggle() is False
    source.seek(len(source.events))
    assert source.toggle() is True and source.index == 0
    assert source.toggle() is False and source.index == 0


def test_every_command_is_refused_and_stop_is_quiet(source: ReplaySource) -> None:
    assert source.read_only
    refused = [
        source.approve(),
        source.approve(["a"]),
        source.hold(),
        source.kill("a"),
        source.retry("a", "ctx", keep_worktree=True),
        source.skip("a"),
        source.pause(),
        source.resume(),
        source.send_input("a", "y"),
        source.merge("a"),
        source.finish(),
        source.end(),
    ]
    assert refused == [REFUSED] * len(refused)
    assert REFUSED == "this is a replay: commands are not available"
    assert source.stop("bye") == ""
    assert source.state == RunState(), "nothing was applied by a command"


# ------------------------------------------------------------ playback


def test_playback_applies_in_order_and_shortens_quiet_stretches() -> None:
    """The 17 s of nothing between b's failure and its retry plays as half a second."""
    events = recording()
    source = ReplaySource(events)
    source.speed = 8.0
    seen: list[Event] = []
    source.subscribe(seen.append)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        player = asyncio.create_task(source.run())
        start = loop.time()
        while source.index < len(events):
            await asyncio.sleep(0.005)
            assert loop.time() - start < 5, "playback stalled"
        elapsed = loop.time() - start
        await asyncio.sleep(0.02)
        assert not source.playing, "playback stops at the end"
        player.cancel()
        return elapsed

    elapsed = asyncio.run(main())
    assert seen == events and source.state == build(events)
    # Gaps: 0.5+0.5+1+0.5+0.5 (to 3 s), quiet -> 0.5, then 1+1+0.5+0.5 = 6.5 s of run.
    # At 8x that is about 0.81 s; real time would be 2.9 s.
    assert 0.6 <= elapsed < 1.6, elapsed


def test_real_time_playback_keeps_quiet_stretches() -> None:
    events: list[Event] = [
        *recording()[:1],
        TaskOutput(task="a", attempt=1, data=b"x", ts=T0 + 8.0),
    ]
    source = ReplaySource(events, real_time=True)
    source.speed = 32.0

    async def main() -> float:
        loop = asyncio.get_running_loop()
        player = asyncio.create_task(source.run())
        start = loop.time()
        while source.index < len(events):
            await asyncio.sleep(0.005)
            assert loop.time() - start < 5, "playback stalled"
        player.cancel()
        return loop.time() - start

    assert asyncio.run(main()) >= 0.2, "8 s at 32x is a quarter second, not the quiet 0.5/32"


# ------------------------------------------------------------ from a log file


def write_log(path: Path, events: list[Event]) -> None:
    state = RunState()
    writer = LogWriter(path)
    for ev in events:
        apply(state, ev)
        writer.write(ev, lambda: snapshot(state))
    writer.close()


def test_a_log_replays_to_its_final_state(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    events = recording()
    write_log(log, events)
    state, report = final_state(log)
    assert state == build(events) and state.status == "partial"
    assert report.messages() == []
    source = ReplaySource.from_log(log)
    assert source.has_run and len(source.events) == 18
    source.seek_seconds(2.0)
    assert source.index == 8
    assert source.events[-3:] == events[-3:]
    assert source.events[-1] == events[-1]


def test_a_log_without_a_run_and_a_missing_log(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    write_log(log, recording()[5:7])
    assert not ReplaySource.from_log(log).has_run
    with pytest.raises(LogError, match="no such run log"):
        ReplaySource.from_log(tmp_path / "missing.jsonl")


def test_a_keyframe_restores_the_state_it_was_taken_from(source: ReplaySource) -> None:
    """Keyframes on disk are JSON data: a round trip gives back the same run, plan aside."""
    import json

    from delegate_tui.core.events import DecodeError
    from delegate_tui.core.state import restore

    source.seek(14)
    state = source.state
    assert (state.events, state.last_seq, state.last_ts) == (14, 14, T0 + 21.0)
    data = json.loads(json.dumps(snapshot(state)))
    assert "plan" not in data and data["run_id"] == "r1"
    back = restore(data, state.plan)
    assert back == state and back.plan is state.plan
    assert back.tasks["b"].attempts[1].inputs == ["y"]
    assert restore({**data, "unknown": 1}, None).tasks == state.tasks, "unknown keys are ignored"
    with pytest.raises(DecodeError) as info:
        restore([data], state.plan)
    assert str(info.value) == "a keyframe must be a JSON object"
    # Folding the rest onto the restored state gives the run's end.
    assert build(recording()[14:], back) == build(recording())


def test_seeking_from_a_keyframe_on_disk_keeps_the_runs_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keyframes on disk leave the plan out; a seek from one gets it from the RunStarted."""
    from delegate_tui.core import runlog

    monkeypatch.setattr(runlog, "KEYFRAME_EVERY", 4)
    log = tmp_path / "events.jsonl"
    events = recording()
    write_log(log, events)
    source = ReplaySource.from_log(log)
    assert [k.events for k in source._keyframes] == [0, 4, 8, 12, 16]
    applied: list[Event] = []

    def recording_apply(state: RunState, ev: Event) -> None:
        applied.append(ev)
        apply(state, ev)

    monkeypatch.setattr(replay, "apply", recording_apply)
    source.seek(10)
    # The plan is read once from the RunStarted, then the events after the keyframe at 8.
    assert applied == [events[0], *events[8:10]]
    assert source.state == build(events[:10])
    assert source.state.plan is not None and source.state.plan.name == "replayed"
    source.seek(5)
    assert source.state == build(events[:5]) and source.state.plan == build(events[:1]).plan


def test_a_log_without_its_index_is_indexed_with_keyframes_on_opening(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A log copied from elsewhere (no index beside it) opens, and its index is saved with
    keyframes, so the next seek does not fold the whole log."""
    import shutil

    from delegate_tui.core import runlog

    events = recording()
    write_log(tmp_path / "first.jsonl", events)
    log = tmp_path / "events.jsonl"
    shutil.copy(tmp_path / "first.jsonl", log)  # the log alone
    assert runlog.load_index(log) is None
    monkeypatch.setattr(runlog, "KEYFRAME_EVERY", 5)
    source = ReplaySource.from_log(log)
    saved = runlog.load_index(log)
    assert saved is not None and len(saved) == 18
    assert [k.events for k in saved.keyframes] == [5, 10, 15]
    assert [k.events for k in source._keyframes] == [0, 5, 10, 15]
    for index in (18, 12, 3):
        source.seek(index)
        assert source.state == build(events[:index]), index
    for frame in saved.keyframes:  # each saved keyframe is the state after its events
        state = restore(saved.read_keyframe(log, frame), source.state.plan)
        assert state == build(events[: frame.events]), frame.events
    assert ReplaySource.from_log(log, real_time=True).real_time is True


def test_events_of_a_log_are_read_by_position_and_a_changed_line_is_reported(
    tmp_path: Path,
) -> None:
    log = tmp_path / "events.jsonl"
    events = recording()
    write_log(log, events)
    source = ReplaySource.from_log(log)
    assert source.events[-1] == events[-1] and source.events[0] == events[0]
    assert source.events[16:] == events[16:]
    with pytest.raises(IndexError):
        source.events[18]
    with pytest.raises(IndexError):
        source.events[-19]
    # The log changes while it is open (another program rewrote a line in place).
    start = log.read_bytes().index(b'"TaskOutput"')
    with log.open("r+b") as fh:
        fh.seek(start)
        fh.write(b"#" * 12)
    damaged = source.events[5]
    assert isinstance(damaged, Notice)
    assert damaged.level == "error" and damaged.ts == T0 + 2.0
    assert damaged.message.startswith("event 6 of the log can no longer be read")


def test_marks_are_found_at_the_very_start_of_a_log_that_has_no_run_start() -> None:
    """A cut-off or foreign log may begin with any event: a mark at position 0 counts."""
    events: list[Event] = [
        BatchProposed(batch=1, tasks=("a",), ts=T0),
        BatchApproved(batch=1, tasks=("a",), ts=T0 + 1),
        started("a", 2),
    ]
    source = ReplaySource(events)
    assert not source.has_run
    assert source.jump("approval", 1) and source.index == 1
    source.seek(len(events))
    assert source.jump("approval", -1) and source.index == 2
    assert source.jump("approval", -1) and source.index == 1
    assert source.jump("approval", -1) is False and source.index == 1
    assert source.jump("conflict", -1) is False


def test_pausing_at_the_end_stays_at_the_end(source: ReplaySource) -> None:
    source.seek(len(source.events))
    assert source.playing
    assert source.toggle() is False and source.index == len(source.events)


def test_a_damaged_keyframe_on_disk_falls_back_to_the_one_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from delegate_tui.core import runlog

    monkeypatch.setattr(runlog, "KEYFRAME_EVERY", 4)
    log = tmp_path / "events.jsonl"
    events = recording()
    write_log(log, events)
    frames = runlog.index_dir(log) / "keyframes.jsonl"
    lines = frames.read_bytes().splitlines(keepends=True)
    lines[2] = b"{" + b" " * (len(lines[2]) - 2) + b"\n"  # the keyframe after 12 events
    frames.write_bytes(b"".join(lines))
    source = ReplaySource.from_log(log)
    source.seek(14)
    assert source.state == build(events[:14])
    assert [k.events for k in source._keyframes] == [0, 4, 8, 16], "the bad one is dropped"


def test_a_log_indexed_by_a_newer_version_is_refused_with_its_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from delegate_tui.core import runlog
    from delegate_tui.core.events import SCHEMA_VERSION

    log = tmp_path / "events.jsonl"
    newer = recording()
    object.__setattr__(newer[0], "schema", SCHEMA_VERSION + 1)
    with monkeypatch.context() as m:  # written and indexed by the newer version
        m.setattr(runlog, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
        m.setattr(replay, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
        write_log(log, newer)
        ReplaySource.from_log(log)
    expected = (
        f"{log}: written by a newer delegate-tui (log schema {SCHEMA_VERSION + 1}, "
        f"this version reads up to {SCHEMA_VERSION}); upgrade to read it"
    )
    with pytest.raises(LogError) as info:
        ReplaySource.from_log(log)
    assert str(info.value) == expected


# ------------------------------------------------------------ playback, as the operator drives it


def test_pause_holds_playback_and_seek_then_play_continues_from_there() -> None:
    """A dense log (2,000 events 0.1 ms apart) at 1x: pausing stops it at once, a seek
    moves it, play continues from the new place to the end, and after the end a seek
    back and play plays again."""
    events: list[Event] = [recording()[0]]
    events += [
        TaskOutput(task="a", attempt=1, data=b"x", ts=T0 + n * 0.0001) for n in range(1, 2001)
    ]
    source = ReplaySource(events)
    seen: list[int] = []
    source.subscribe(lambda ev: seen.append(source.index))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        player = asyncio.create_task(source.run())
        start = loop.time()
        while source.index < 500:
            await asyncio.sleep(0)
            assert loop.time() - start < 5, "playback stalled"
        assert source.toggle() is False
        paused_at = source.index
        await asyncio.sleep(0.1)
        assert source.index == paused_at, "playback went on after the pause"
        source.seek(1500)
        assert source.toggle() is True
        while source.index < len(events):
            await asyncio.sleep(0.005)
            assert loop.time() - start < 5, "playback stalled after the seek"
        elapsed = loop.time() - start
        await asyncio.sleep(0.02)
        assert source.playing is False, "playback stops at the end"
        # The 0.15 s of run between 0 and the pause, then 1500 to 2000, at 1x: gaps too
        # short to sleep still add up, and a burst does not wait whole seconds to yield.
        assert 0.1 <= elapsed < 0.9, elapsed
        source.seek(1990)
        assert source.toggle() is True
        while source.index < len(events):
            await asyncio.sleep(0.005)
            assert loop.time() - start < 5, "playing again after the end never happened"
        player.cancel()

    asyncio.run(main())
    assert seen[-1] == 2001 and 1501 in seen and 1200 not in seen


def test_a_gap_of_exactly_the_quiet_threshold_plays_in_full() -> None:
    """Only gaps over QUIET_S (3 s) are shortened: one of exactly 3 s plays as 3 s / speed."""
    events: list[Event] = [
        recording()[0],
        TaskOutput(task="a", attempt=1, data=b"x", ts=T0 + replay.QUIET_S),
    ]
    source = ReplaySource(events)
    source.speed = 64.0

    async def main() -> float:
        loop = asyncio.get_running_loop()
        player = asyncio.create_task(source.run())
        start = loop.time()
        while source.index < len(events):
            await asyncio.sleep(0.002)
            assert loop.time() - start < 5, "playback stalled"
        player.cancel()
        return loop.time() - start

    assert asyncio.run(main()) >= 0.04, "3 s at 64x is 47 ms, not the quiet 0.5 s / 64"


def test_pausing_during_a_burst_at_64x_stops_at_once_and_play_resumes() -> None:
    """At 64x a dense log is all due at once: the player runs in bursts and lets the loop go
    every few milliseconds. A pause taken then stops it before the next event."""
    events: list[Event] = [recording()[0]]
    events += [
        TaskOutput(task="a", attempt=1, data=b"x", ts=T0 + n * 0.0001) for n in range(1, 40001)
    ]  # 1.6 us apart at 64x: faster than events can be applied, so always due
    source = ReplaySource(events)
    source.speed = 64.0

    async def main() -> None:
        loop = asyncio.get_running_loop()
        player = asyncio.create_task(source.run())
        start = loop.time()
        while source.index < 200:
            await asyncio.sleep(0)
            assert loop.time() - start < 5, "playback stalled"
        assert source.toggle() is False
        paused_at = source.index
        await asyncio.sleep(0.05)
        assert source.index == paused_at, "an event was applied after the pause"
        assert source.toggle() is True
        while source.index < len(events):
            await asyncio.sleep(0.005)
            assert loop.time() - start < 5, "playback never resumed"
        player.cancel()

    asyncio.run(main())
    assert source.state == build(events)


def test_changing_speed_while_the_player_waits_keeps_it_going() -> None:
    events: list[Event] = [recording()[0]]
    events += [TaskOutput(task="a", attempt=1, data=b"x", ts=T0 + n * 0.2) for n in range(1, 6)]
    source = ReplaySource(events)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        player = asyncio.create_task(source.run())
        start = loop.time()
        await asyncio.sleep(0.05)  # the player sleeps towards the event at 0.2 s
        assert source.set_speed(1) == 2.0
        while source.index < len(events):
            await asyncio.sleep(0.005)
            assert loop.time() - start < 5, "playback stalled after the speed change"
        player.cancel()

    asyncio.run(main())
