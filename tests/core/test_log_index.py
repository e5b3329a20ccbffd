"""The index beside a run log: written as the log grows, trusted only while it matches the log."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from delegate_tui.core import runlog
from delegate_tui.core.events import (
    Event,
    Notice,
    RunStarted,
    TaskOutput,
    encode,
)
from delegate_tui.core.replay import ReplaySource
from delegate_tui.core.runlog import (
    IndexWriter,
    LogError,
    LogWriter,
    ReadReport,
    index_dir,
    load_index,
    read_events,
)


def events(count: int) -> list[Event]:
    """A run start, then output of two tasks (some of it not UTF-8)."""
    out: list[Event] = [
        RunStarted(
            run_id="r",
            plan={"name": "p", "tasks": [{"id": "a", "prompt": "x"}, {"id": "b", "prompt": "y"}]},
            plan_path="",
            repo="/",
            isolation="none",
            seq=1,
            ts=100.0,
        )
    ]
    for n in range(1, count):
        data = b"line %d\r\n" % n if n % 5 else b"\xff\xfe %d\n" % n
        out.append(TaskOutput(task="ab"[n % 2], attempt=1, data=data, seq=n + 1, ts=100.0 + n))
    return out


def write_log(path: Path, evs: Sequence[Event], keyframe: object = None) -> None:
    writer = LogWriter(path)
    for ev in evs:
        writer.write(ev, (lambda: keyframe) if keyframe is not None else None)
    writer.close()


def test_the_writer_indexes_every_event_where_it_starts(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    evs = events(50)
    write_log(log, evs)
    index = load_index(log)
    assert index is not None and len(index) == 50
    raw = log.read_bytes()
    assert index.covered == len(raw)
    starts = [0]
    for line in raw.splitlines(keepends=True)[:-1]:
        starts.append(starts[-1] + len(line))
    assert list(index.offsets) == starts
    assert list(index.times) == [ev.ts for ev in evs]
    assert [index.types[k] for k in index.kinds] == [ev.type_name for ev in evs]
    assert isinstance(evs[0], RunStarted) and index.schema == evs[0].schema


def test_keyframes_are_taken_every_so_many_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runlog, "KEYFRAME_EVERY", 7)
    log = tmp_path / "events.jsonl"
    write_log(log, events(30), keyframe={"status": "running"})
    index = load_index(log)
    assert index is not None
    assert [k.events for k in index.keyframes] == [7, 14, 21, 28]
    assert index.read_keyframe(log, index.keyframes[2]) == {"status": "running"}


def test_keyframes_are_also_taken_every_so_many_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runlog, "KEYFRAME_BYTES", 1000)
    log = tmp_path / "events.jsonl"
    big = [TaskOutput(task="a", attempt=1, data=b"x" * 400, seq=n, ts=float(n)) for n in range(10)]
    write_log(log, big, keyframe={})
    index = load_index(log)
    assert index is not None
    # Each record is a little over 400 bytes: a keyframe once 1,000 bytes have passed.
    assert [k.events for k in index.keyframes] == [3, 6, 9]


def test_a_reopened_writer_goes_on_indexing_and_catches_up_on_lines_it_missed(
    tmp_path: Path,
) -> None:
    log = tmp_path / "events.jsonl"
    evs = events(20)
    write_log(log, evs[:10])
    with log.open("ab") as fh:  # written, but the process died before its index was saved
        fh.write(b"".join(encode(ev) for ev in evs[10:15]))
    write_log(log, evs[15:])
    index = load_index(log)
    assert index is not None and len(index) == 20 and index.covered == log.stat().st_size
    assert list(index.times) == [ev.ts for ev in evs]


def test_columns_left_longer_by_a_crash_mid_save_are_cut_to_the_meta(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    evs = events(12)
    write_log(log, evs[:8])
    with (index_dir(log) / "offsets").open("ab") as fh:
        fh.write(b"\x07" * 24)  # three stray entries the meta never listed
    assert len(load_index(log) or []) == 8
    write_log(log, evs[8:])
    index = load_index(log)
    assert index is not None and list(index.times) == [ev.ts for ev in evs]
    raw = log.read_bytes()
    assert all(raw[o : o + 9] == b'{"type":"' for o in index.offsets)


@pytest.mark.parametrize(
    "change",
    ["edit the first line", "edit the last line", "cut the log short", "truncate a column"],
)
def test_an_index_that_no_longer_matches_its_log_is_not_used(tmp_path: Path, change: str) -> None:
    log = tmp_path / "events.jsonl"
    write_log(log, events(30))
    raw = bytearray(log.read_bytes())
    if change == "edit the first line":
        raw[raw.index(b'"r"')] = ord("'")
        log.write_bytes(raw)
    elif change == "edit the last line":
        raw[-5] = ord("#")
        log.write_bytes(raw)
    elif change == "cut the log short":
        log.write_bytes(raw[: len(raw) // 2])
    else:
        column = index_dir(log) / "times"
        column.write_bytes(column.read_bytes()[:-8])
    assert load_index(log) is None


def test_a_damaged_log_reads_the_same_through_its_index_as_line_by_line(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    evs = events(6)
    lines = [encode(ev) for ev in evs]
    log.write_bytes(
        lines[0]
        + b"{not json\n"
        + lines[1]
        + b'{"type":"FromTheFuture"}\n'
        + b"\n"
        + b"".join(lines[2:])
        + lines[0][:30]  # torn
    )
    expected = ReadReport()
    assert list(read_events(log, expected)) == evs
    for _ in range(2):  # indexing it, then through the index it saved
        source = ReplaySource.from_log(log)
        assert list(source.events) == evs
        assert source.report == expected
        assert (index_dir(log) / "meta.json").is_file()


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    cuts=st.lists(st.integers(1, 39), min_size=1, max_size=4, unique=True),
    junk=st.sampled_from([b"{not json\n", b"garbage", b'{"type":"Nope"}\n', b"\n"]),
)
def test_a_log_indexed_in_steps_as_it_grows_matches_one_read_at_the_end(
    tmp_path: Path, cuts: list[int], junk: bytes
) -> None:
    folder = tmp_path / str(abs(hash((tuple(cuts), junk))))
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    log = folder / "events.jsonl"
    lines = [encode(ev) for ev in events(40)]
    done = 0
    for cut in sorted(cuts):
        with log.open("ab") as fh:
            fh.write(b"".join(lines[done:cut]) + (junk if cut == min(cuts) else b""))
        done = cut
        ReplaySource.from_log(log)  # indexes what is there so far and saves it
    with log.open("ab") as fh:
        fh.write(b"".join(lines[done:]))
    expected = ReadReport()
    wanted = list(read_events(log, expected))
    source = ReplaySource.from_log(log)
    assert list(source.events) == wanted
    assert source.report == expected


def test_an_event_that_no_longer_decodes_shows_as_an_error_notice(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    write_log(log, events(400))
    source = ReplaySource.from_log(log)
    raw = bytearray(log.read_bytes())
    start = source._index.offsets[200]  # the same length and both ends: the index still matches
    raw[start : start + 2] = b"[["
    log.write_bytes(raw)
    source = ReplaySource.from_log(log)
    changed = source.events[200]
    assert isinstance(changed, Notice) and changed.level == "error"
    assert "event 201 of the log can no longer be read" in changed.message
    source.seek(len(source.events))  # the rest still plays
    assert source.state.tasks["b"].attempts[0].output_bytes > 0


def test_a_reader_without_the_lock_keeps_its_index_in_memory(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    log.write_bytes(b"".join(encode(ev) for ev in events(10)))
    holder = IndexWriter.open(log, extend=False)  # another process writing the index
    assert holder.saving
    source = ReplaySource.from_log(log)
    assert len(source.events) == 10
    assert not (index_dir(log) / "meta.json").exists()
    holder.close()
    ReplaySource.from_log(log)
    assert json.loads((index_dir(log) / "meta.json").read_text())["events"] == 10


def test_an_unwritable_folder_still_replays(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    log.write_bytes(b"".join(encode(ev) for ev in events(10)))
    index_dir(log).write_text("a file where the index folder would go")
    source = ReplaySource.from_log(log)
    source.seek(len(source.events))
    assert source.state.tasks["b"].attempts[0].output_bytes > 0


def test_a_newer_schema_is_refused_through_the_index_too(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    future = RunStarted(
        run_id="r", plan={}, plan_path="", repo="", isolation="none", schema=99, seq=1, ts=1.0
    )
    write_log(log, [future])
    with pytest.raises(LogError, match="newer delegate-tui"):
        ReplaySource.from_log(log)
