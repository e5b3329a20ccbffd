"""The run log survives crashes and bad bytes, and reports what it skipped."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from delegate_tui.core.events import (
    SCHEMA_VERSION,
    BatchProposed,
    ChangedFile,
    CriteriaChecked,
    CriterionResult,
    DecodeError,
    HeldTask,
    Metrics,
    RunFinished,
    RunStarted,
    TaskCommitted,
    TaskExited,
    TaskOutput,
    decode,
    encode,
    event_types,
)
from delegate_tui.core.runlog import (
    LogError,
    LogWriter,
    ReadReport,
    list_run_logs,
    read_events,
    repair_tail,
    resolve_run,
)

SAMPLES = [
    RunStarted(
        run_id="r1",
        plan={"name": "p", "tasks": []},
        plan_path="/p.yaml",
        repo="/r",
        isolation="worktree",
        seq=1,
        ts=1.0,
    ),
    BatchProposed(
        batch=1,
        tasks=("a", "b"),
        held=(HeldTask("c", "edits overlap with a on src/**"),),
        seq=2,
        ts=2.0,
    ),
    TaskOutput(
        task="a", attempt=1, data=b"\x1b[31mred\x1b[0m \xff\xfe not utf-8 \xe2\x82", seq=3, ts=3.0
    ),
    TaskOutput(task="a", attempt=1, data="ünïcødé ✔\r\n".encode(), seq=4, ts=3.5),
    TaskExited(
        task="a",
        attempt=1,
        exit_code=None,
        signal=9,
        duration_s=1.5,
        reason="killed",
        seq=5,
        ts=4.0,
    ),
    CriteriaChecked(
        task="a",
        attempt=1,
        results=(CriterionResult("t", "test -f x", False, 1, "no"),),
        passed=False,
        seq=6,
        ts=5.0,
    ),
    TaskCommitted(
        task="a",
        attempt=1,
        commit="abc",
        changed=(ChangedFile("my file é.txt", "A", 3, 0),),
        seq=7,
        ts=6.0,
    ),
    RunFinished(
        status="partial",
        metrics=Metrics(wall_s=5.0, sequential_s=8.0, time_saved_s=3.0),
        seq=8,
        ts=7.0,
    ),
]


def test_every_event_type_round_trips() -> None:
    for ev in SAMPLES:
        assert decode(encode(ev)) == ev
    assert len(event_types()) >= 25


def test_records_compare_hash_and_print_by_their_fields_and_stay_frozen() -> None:
    """Equality, hash and repr are written once for every record (not compiled per class
    at import); they answer as the dataclass-made ones did."""
    a = TaskOutput(task="t", attempt=1, data=b"x", seq=3, ts=1.5)
    assert a == TaskOutput(task="t", attempt=1, data=b"x", seq=3, ts=1.5)
    assert a != TaskOutput(task="t", attempt=1, data=b"y", seq=3, ts=1.5)
    assert a != TaskOutput(task="t", attempt=1, data=b"x", seq=4, ts=1.5)  # base fields count
    assert len({a, TaskOutput(task="t", attempt=1, data=b"x", seq=3, ts=1.5)}) == 1
    assert repr(a) == "TaskOutput(seq=3, ts=1.5, task='t', attempt=1, data=b'x', stream='agent')"
    assert repr(HeldTask("a", "busy")) == "HeldTask(task='a', reason='busy')"
    assert HeldTask("a", "busy") != ("a", "busy")  # another type: never equal
    assert HeldTask("a", "busy") != CriterionResult("a", "busy", True, 0)
    assert (ChangedFile("x.py"),) == (ChangedFile("x.py"),)
    assert hash(ChangedFile("x.py", added=2)) == hash(ChangedFile("x.py", added=2))
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.task = "u"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"type":"TaskOutput","seq":3,"ts":1.0,"task":"a","attempt":1}', "data"),
        ('{"type":"TaskOutput","task":"a","attempt":"1","data":{"text":"x"}}', "attempt"),
        ('{"type":"TaskOutput","task":"a","attempt":1,"data":"x"}', "TaskOutput"),
        # Base64 that is not base64 is damage to report, not bytes to guess at.
        ('{"type":"TaskOutput","task":"a","attempt":1,"data":{"b64":"%%%"}}', "TaskOutput"),
        ('{"type":"TaskCommitted","task":"a","attempt":1,"files":[{"bad":1}]}', "TaskCommitted"),
    ],
)
def test_a_damaged_output_record_is_a_decode_error(line: str, problem: str) -> None:
    with pytest.raises(DecodeError, match=problem):
        decode(line)


def test_output_decodes_as_the_generic_walk_would() -> None:
    for data in (b"plain \xe2\x9c\x94 text\r\n", bytes(range(256))):
        ev = TaskOutput(task="t", attempt=2, data=data, stream="setup", seq=7, ts=3.5)
        assert decode(encode(ev)) == ev


def test_binary_output_survives_byte_for_byte(tmp_path: Path) -> None:
    payload = bytes(range(256)) * 4
    writer = LogWriter(tmp_path / "events.jsonl")
    writer.write(SAMPLES[0])
    writer.write(TaskOutput(task="a", attempt=1, data=payload, seq=2, ts=2.0))
    writer.close()
    events = list(read_events(tmp_path / "events.jsonl"))
    assert isinstance(events[1], TaskOutput) and events[1].data == payload
    for line in (tmp_path / "events.jsonl").read_bytes().splitlines():
        json.loads(line)  # each record is one valid JSON line


def test_torn_last_line_is_skipped_and_cut_on_reopen(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    writer = LogWriter(path)
    for ev in SAMPLES[:3]:
        writer.write(ev)
    writer.close()
    whole = path.read_bytes()
    path.write_bytes(whole + encode(SAMPLES[3])[:25])  # a crash mid-write
    report = ReadReport()
    assert list(read_events(path, report)) == SAMPLES[:3]
    assert report.torn_tail and not report.corrupt_lines
    assert "cut off mid-write" in report.messages()[0]
    writer = LogWriter(path)  # reopening repairs, then appends cleanly
    assert writer.repaired == 25
    writer.write(SAMPLES[3])
    writer.close()
    assert list(read_events(path)) == SAMPLES[:4]


def test_corrupt_middle_line_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    lines = [encode(ev) for ev in SAMPLES[:3]]
    path.write_bytes(
        lines[0] + b"{not json\n" + lines[1] + b'{"type":"FromTheFuture"}\n' + lines[2]
    )
    report = ReadReport()
    assert list(read_events(path, report)) == SAMPLES[:3]
    assert report.corrupt_lines == [2]
    assert report.unknown_types == {"FromTheFuture": 1}
    assert report.messages() == [
        "skipped 1 corrupt line(s): line 2",
        "skipped 1 event(s) of unknown type 'FromTheFuture'",
    ]


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    future = RunStarted(
        run_id="r", plan={}, plan_path="", repo="", isolation="none", schema=SCHEMA_VERSION + 1
    )
    path.write_bytes(encode(future))
    with pytest.raises(LogError, match="newer delegate-tui"):
        list(read_events(path))


def test_repair_tail_edge_cases(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    assert repair_tail(path) == 0
    path.write_bytes(b"no newline at all")
    assert repair_tail(path) == 17 and path.read_bytes() == b""
    path.write_bytes(b"ok\n")
    assert repair_tail(path) == 0 and path.read_bytes() == b"ok\n"


def test_resolve_run_by_id_folder_file_and_latest(tmp_path: Path) -> None:
    runs = tmp_path / ".delegate" / "runs"
    for run_id in ("20260101-000000-aaaa", "20260102-000000-bbbb"):
        (runs / run_id).mkdir(parents=True)
        (runs / run_id / "events.jsonl").write_bytes(encode(SAMPLES[0]))
    newest = runs / "20260102-000000-bbbb" / "events.jsonl"
    assert resolve_run(None, tmp_path) == newest
    assert resolve_run("latest", tmp_path) == newest
    assert resolve_run("20260101-000000-aaaa", tmp_path).parent.name == "20260101-000000-aaaa"
    assert resolve_run(str(newest.parent), tmp_path) == newest
    assert resolve_run(str(newest), tmp_path) == newest
    with pytest.raises(LogError, match="no run 'nope'"):
        resolve_run("nope", tmp_path)
    with pytest.raises(LogError, match="no runs"):
        resolve_run(None, tmp_path / "elsewhere")


def test_runs_started_within_one_second_are_newest_first_by_their_last_write(
    tmp_path: Path,
) -> None:
    # A draft's consult and the run of its plan can start in the same second: their ids
    # differ only in the random tail, which says nothing about which came later.
    runs = tmp_path / ".delegate" / "runs"
    for run_id, written in (
        ("20260101-000000-ffff", 1_000),  # the consult: written first
        ("20260101-000000-0000", 2_000),  # the run: written since
        ("20251231-235959-9999", 3_000),  # an earlier second, however recently written
    ):
        (runs / run_id).mkdir(parents=True)
        log = runs / run_id / "events.jsonl"
        log.write_bytes(encode(SAMPLES[0]))
        os.utime(log, ns=(written, written))
    (runs / "20260101-000001-aaaa").mkdir()  # a folder with no log is not a run
    assert [p.parent.name for p in list_run_logs(tmp_path)] == [
        "20260101-000000-0000",
        "20260101-000000-ffff",
        "20251231-235959-9999",
    ]
    assert resolve_run(None, tmp_path).parent.name == "20260101-000000-0000"


def test_text_with_a_lone_surrogate_still_round_trips() -> None:
    """YAML can produce lone surrogates; orjson refuses them, the log must not."""
    from delegate_tui.core.events import Notice

    ev = Notice(level="warning", message="half a pair: \ud83d!", seq=3, ts=1.25)
    line = encode(ev)
    assert line.endswith(b"\n") and b"\\ud83d" in line
    assert decode(line) == ev


def test_decisions_sync_at_once_and_the_rest_on_the_sync_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import threading

    from delegate_tui.core import runlog

    synced_on: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced_on.append(threading.current_thread().name)
        real_fsync(fd)

    monkeypatch.setattr(runlog, "FSYNC_INTERVAL_S", 0.0)
    monkeypatch.setattr(os, "fsync", fsync)
    writer = LogWriter(tmp_path / "events.jsonl")
    writer.write(SAMPLES[2])  # output: the sync thread's job
    for _ in range(200):
        if synced_on:
            break
        threading.Event().wait(0.01)
    assert synced_on == ["delegate-log-sync"]
    writer.write(SAMPLES[0])  # RunStarted is a decision: synced before write returns
    assert synced_on[-1] == threading.current_thread().name
    syncer = writer._syncer
    writer.close()
    assert syncer is not None and not syncer.is_alive()
    assert synced_on[-1] == threading.current_thread().name  # the last sync, before closing
    assert list(read_events(tmp_path / "events.jsonl")) == [SAMPLES[2], SAMPLES[0]]


@pytest.mark.parametrize(
    "line",
    [
        '{"type":"TaskExited","seq":5,"ts":4.0,"task":["a"],"attempt":1,"exit_code":0,"duration_s":1}',
        '{"type":"TaskExited","seq":5,"ts":"soon","task":"a","attempt":1,"exit_code":0,"duration_s":1}',
        '{"type":"TaskExited","seq":5,"ts":4.0,"task":"a","attempt":true,"exit_code":0,"duration_s":1}',
        '{"type":"TaskStarted","seq":5,"ts":4.0,"task":"a","attempt":1,"agent":"x","argv":"sh -c x",'
        '"cwd":"/","pid":1,"pgid":1,"prompt":""}',
        '{"type":"TaskOutput","seq":"5","ts":4.0,"task":"a","attempt":1,"data":{"text":"x"}}',
        '{"type":"TaskOutput","seq":5,"ts":[4],"task":"a","attempt":1,"data":{"text":"x"}}',
    ],
)
def test_a_field_of_the_wrong_type_is_a_corrupt_line_not_a_crash_later(
    tmp_path: Path, line: str
) -> None:
    """A log from elsewhere is untrusted: wrong types stop at decoding."""
    from delegate_tui.core.replay import ReplaySource

    with pytest.raises(DecodeError):
        decode(line)
    path = tmp_path / "events.jsonl"
    path.write_bytes(encode(SAMPLES[0]) + line.encode() + b"\n" + encode(SAMPLES[1]))
    report = ReadReport()
    assert list(read_events(path, report)) == [SAMPLES[0], SAMPLES[1]]
    assert report.corrupt_lines == [2]
    source = ReplaySource.from_log(path)
    source.seek(len(source.events))  # folds without a TypeError
    assert source.state.proposal == SAMPLES[1]


def test_whole_numbers_are_accepted_where_a_float_is_expected() -> None:
    ev = decode(
        '{"type":"TaskExited","seq":5,"ts":4,"task":"a","attempt":1,"exit_code":null,"duration_s":2}'
    )
    assert isinstance(ev, TaskExited) and ev.ts == 4.0 and isinstance(ev.duration_s, float)
