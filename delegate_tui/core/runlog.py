"""The run log: ``.delegate/runs/<run-id>/events.jsonl``, append-only.

Owns getting events onto disk without losing any and reading them back
without trusting them. The writer makes one ``os.write`` per record on an
``O_APPEND`` descriptor, so a crash leaves at worst a torn last line; it
fsyncs decisions (approvals, kills, retries, the end of a run) at once and
everything else at most every 200 ms. On reopen it cuts a torn last line
before appending. The reader skips a torn last line quietly, reports a bad
line in the middle as corruption, and refuses a newer schema.

Beside the log the writer keeps an index (``events.index/``): where each event
starts, when it happened, what kind it is, and keyframes (the run's state as
data every few thousand events, from :func:`delegate_tui.core.state.snapshot`).
Replay opens a million-event log from it without decoding the events and
seeks from the nearest keyframe. The index is a cache, never the truth: it
names the log bytes it covers (their length and hashes of its first and last
bytes) and anything that does not match is rebuilt from the log.

(About 620 lines: the writer, the tolerant reader and the index share one
reading of damage rules, which is why they stay in one module.)
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import threading
import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from delegate_tui.core.events import (
    SCHEMA_VERSION,
    BatchApproved,
    BatchHeld,
    DecodeError,
    Event,
    FinalMerge,
    InputSent,
    KillRequested,
    RetryScheduled,
    RunFinished,
    RunResumed,
    RunStarted,
    TaskSkipped,
    TaskStarted,
    decode,
    dumps,
    encode,
)

LOG_NAME = "events.jsonl"
#: Events written to disk and synced before the engine acts on them.
DECISIONS: tuple[type[Event], ...] = (
    RunStarted,
    RunResumed,
    BatchApproved,
    BatchHeld,
    KillRequested,
    RetryScheduled,
    TaskSkipped,
    InputSent,
    TaskStarted,  # carries the pid that resume must be able to find
    FinalMerge,
    RunFinished,
)
FSYNC_INTERVAL_S = 0.2


def runs_dir(repo: Path) -> Path:
    """Where a repository's runs live."""
    return repo / ".delegate" / "runs"


def message_path(run_dir: Path, task_id: str, attempt: int) -> Path:
    """Where attempt ``attempt`` of ``task_id`` leaves its last message, beside the log
    (``DELEGATE_LAST_MESSAGE``): what it hands its dependents."""
    return run_dir / "messages" / f"{task_id}-{attempt}.txt"


def new_run_id() -> str:
    """A run's id, its folder's name under :func:`runs_dir`: sortable, unique, valid as a
    path and a branch component."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


class LogError(Exception):
    """A log that cannot be read at all (missing, empty, newer schema)."""


def repair_tail(path: Path) -> int:
    """Cut a torn (unterminated) last line; return how many bytes were removed."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0
    if size == 0:
        return 0
    with path.open("rb+") as fh:
        # Walk back from the end to the last newline.
        block = 64 * 1024
        pos = size
        while pos > 0:
            start = max(0, pos - block)
            fh.seek(start)
            chunk = fh.read(pos - start)
            if pos == size and chunk.endswith(b"\n"):
                return 0
            index = chunk.rfind(b"\n")
            if index >= 0:
                keep = start + index + 1
                fh.truncate(keep)
                return size - keep
            pos = start
        fh.truncate(0)
        return size


class LogWriter:
    """Appends events to a run log. Not thread-safe: the engine's loop owns it.

    Decisions are synced before ``write`` returns. The periodic sync of
    everything else runs on a thread of the writer's own, so the loop reading
    agents' output does not wait for the disk (fsync lets go of the GIL).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.repaired = repair_tail(path)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._dirty = False
        self._last_sync = time.monotonic()
        self.index = IndexWriter.open(path)
        self._sync_wanted = threading.Event()
        self._closing = False
        self._syncer: threading.Thread | None = None

    def write(self, ev: Event, keyframe: Callable[[], object] | None = None) -> None:
        """Append one event; decisions are synced to disk before returning.

        ``keyframe`` gives the run's state after this event as JSON values; it is
        called only when a keyframe is due (see :data:`KEYFRAME_EVERY`).
        """
        data = encode(ev)
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self._dirty = True
        self.index.add(ev, len(data), keyframe)
        if isinstance(ev, DECISIONS):
            self.sync()
        elif time.monotonic() - self._last_sync >= FSYNC_INTERVAL_S:
            self._sync_soon()

    def sync(self) -> None:
        """Flush what was written to the disk itself (and bring the index up to it)."""
        if self._dirty and self._fd >= 0:
            os.fsync(self._fd)
            self._dirty = False
            self._last_sync = time.monotonic()
            self.index.flush()

    def _sync_soon(self) -> None:
        """Have the sync thread flush what was written so far."""
        self._dirty = False
        self._last_sync = time.monotonic()
        self.index.flush()
        if self._syncer is None:
            self._syncer = threading.Thread(
                target=self._sync_loop, name="delegate-log-sync", daemon=True
            )
            self._syncer.start()
        self._sync_wanted.set()

    def _sync_loop(self) -> None:
        while True:
            self._sync_wanted.wait()
            self._sync_wanted.clear()
            if self._closing:
                return
            with contextlib.suppress(OSError):
                os.fsync(self._fd)

    def close(self) -> None:
        """Sync and close; safe to call twice."""
        if self._fd >= 0:
            if self._syncer is not None:  # the descriptor outlives the thread using it
                self._closing = True
                self._sync_wanted.set()
                self._syncer.join()
                self._syncer = None
            try:
                self._dirty = True
                self.sync()
            finally:
                os.close(self._fd)
                self._fd = -1
                self.index.close()


@dataclass(slots=True)
class ReadReport:
    """What a reader met besides good events."""

    torn_tail: bool = False
    corrupt_lines: list[int] = field(default_factory=list)  # 1-based line numbers
    unknown_types: dict[str, int] = field(default_factory=dict)
    schema: int = 0

    def messages(self) -> list[str]:
        """Readable lines about what was skipped."""
        out = []
        if self.corrupt_lines:
            shown = ", ".join(str(n) for n in self.corrupt_lines[:5])
            more = f" and {len(self.corrupt_lines) - 5} more" if len(self.corrupt_lines) > 5 else ""
            out.append(f"skipped {len(self.corrupt_lines)} corrupt line(s): line {shown}{more}")
        if self.torn_tail:
            out.append("the last line was cut off mid-write (the run was interrupted); skipped it")
        for name, count in sorted(self.unknown_types.items()):
            out.append(f"skipped {count} event(s) of unknown type {name!r}")
        return out


def read_events(path: Path, report: ReadReport | None = None) -> Iterator[Event]:
    """Yield the events of a log, tolerating damage; details go into ``report``.

    The same scan that indexes a log (:meth:`LogIndex.scan`); a last line with no
    newline that is still a whole event (written by hand, or by another tool) is
    yielded too, where the index leaves it uncovered.
    """
    report = report if report is not None else ReadReport()
    if not path.exists():
        raise LogError(f"{path}: no such run log")
    index = LogIndex()
    yield from index.scan(path)
    report.corrupt_lines, report.unknown_types = index.corrupt_lines, index.unknown_types
    report.schema = index.schema
    tail = index.tail
    if not tail.strip():
        return
    ev: Event | None = None
    if not tail.endswith(b"\n"):  # one ending in a newline is a bad line torn by a crash
        with contextlib.suppress(DecodeError):
            ev = decode(tail)
    if ev is None:
        report.torn_tail = True
        return
    if isinstance(ev, RunStarted):
        report.schema = ev.schema
        _check_schema(path, ev)
    yield ev


def _check_schema(path: Path, ev: RunStarted) -> None:
    if ev.schema > SCHEMA_VERSION:
        raise newer_schema(path, ev.schema)


def newer_schema(path: Path, schema: int) -> LogError:
    """The refusal of a log written by a newer version."""
    return LogError(
        f"{path}: written by a newer delegate-tui (log schema {schema}, "
        f"this version reads up to {SCHEMA_VERSION}); upgrade to read it"
    )


def _type_name(raw: bytes) -> str:
    try:
        return str(json.loads(raw).get("type"))
    except (ValueError, AttributeError):
        return "?"


def resolve_run(arg: str | None, repo: Path) -> Path:
    """A RUN argument (id, folder, events.jsonl path or ``latest``) -> its log path."""
    if arg and arg != "latest":
        candidate = Path(arg)
        if candidate.is_file():
            return candidate
        if candidate.is_dir() and (candidate / LOG_NAME).is_file():
            return candidate / LOG_NAME
        by_id = runs_dir(repo) / arg / LOG_NAME
        if by_id.is_file():
            return by_id
        raise LogError(f"no run '{arg}' (not a log file, a run folder, or a run id in {repo})")
    runs = list_run_logs(repo)
    if not runs:
        raise LogError(f"no runs in {runs_dir(repo)}")
    return runs[0]


def list_run_logs(repo: Path) -> list[Path]:
    """Every run log of a repository, newest first.

    A run id sorts by its start to the second; runs started within one second (a draft's
    consult and the run of its plan, on a fast machine) are ordered by their logs' last
    write, not by their ids' random tails."""
    root = runs_dir(repo)
    if not root.is_dir():
        return []
    stamped = []
    for log in (p / LOG_NAME for p in root.iterdir()):
        with contextlib.suppress(OSError):  # a folder without a log is not a run
            stamped.append((log.parent.name[:15], log.stat().st_mtime_ns, log.parent.name, log))
    return [log for *_, log in sorted(stamped, reverse=True)]


# ---------------------------------------------------------------- the index beside the log

INDEX_VERSION = 1
#: A keyframe every this many events or this many log bytes, whichever comes first:
#: a seek decodes and applies at most that much from the keyframe before it (about
#: 0.1 s). A keyframe holds every attempt's output tail (64 KiB each), so closer
#: keyframes would make the index a large share of the log's size.
KEYFRAME_EVERY = 20000
KEYFRAME_BYTES = 64 * 1024 * 1024
_HASHED = 4096  # log bytes hashed at each end of what the index covers
_COLUMNS = (("offsets", "q"), ("times", "d"), ("kinds", "B"))


def index_dir(log: Path) -> Path:
    """Where a log's index lives: ``events.jsonl`` -> ``events.index/``."""
    return log.with_name(log.stem + ".index")


@dataclass(slots=True)
class Keyframe:
    """The state after ``events`` events: on disk (offset and length in keyframes.jsonl) or here."""

    events: int
    offset: int = 0
    length: int = 0
    state: object = None  # JSON values, for a keyframe not written to disk


@dataclass(slots=True)
class LogIndex:
    """Per event: its byte offset in the log, its time and its kind; and keyframes."""

    offsets: array[int] = field(default_factory=lambda: array("q"))
    times: array[float] = field(default_factory=lambda: array("d"))
    kinds: array[int] = field(default_factory=lambda: array("B"))
    types: list[str] = field(default_factory=list)  # kind code -> event type name
    keyframes: list[Keyframe] = field(default_factory=list)
    covered: int = 0  # log bytes indexed; always ends at a line end
    lines: int = 0  # physical lines in those bytes (for line numbers in reports)
    schema: int = 0
    corrupt_lines: list[int] = field(default_factory=list)
    unknown_types: dict[str, int] = field(default_factory=dict)
    tail: bytes = b""  # what the last scan left uncovered at the end of the log

    def __len__(self) -> int:
        return len(self.offsets)

    def code(self, type_name: str) -> int:
        """The kind code of an event type (-1 if the log has none of it)."""
        try:
            return self.types.index(type_name)
        except ValueError:
            return -1

    def add(self, ev: Event, size: int) -> None:
        """Index one event of ``size`` bytes that starts where the covered bytes end."""
        code = self.code(ev.type_name)
        if code < 0:
            code = len(self.types)
            self.types.append(ev.type_name)
        self.offsets.append(self.covered)
        self.times.append(ev.ts)
        self.kinds.append(code)
        self.covered += size
        self.lines += 1
        if isinstance(ev, RunStarted):
            self.schema = ev.schema

    def keyframe_due(self) -> bool:
        """True when enough events or bytes passed since the last keyframe."""
        last = self.keyframes[-1].events if self.keyframes else 0
        if len(self) - last >= KEYFRAME_EVERY:
            return True
        since = self.offsets[last] if last < len(self) else self.covered
        return self.covered - since >= KEYFRAME_BYTES

    def report(self, log_size: int) -> ReadReport:
        """What a reader met besides good events, in the bytes indexed (and a torn tail after)."""
        return ReadReport(
            torn_tail=log_size > self.covered,
            corrupt_lines=list(self.corrupt_lines),
            unknown_types=dict(self.unknown_types),
            schema=self.schema,
        )

    def extend(self, log: Path, on_event: Callable[[Event], None] | None = None) -> None:
        """Index the complete lines of ``log`` after the covered bytes (see :meth:`scan`)."""
        for ev in self.scan(log):
            if on_event is not None:
                on_event(ev)

    def scan(self, log: Path) -> Iterator[Event]:
        """Index and yield the events of ``log`` after the covered bytes, tolerating damage.

        A bad line followed by more lines is corruption (skipped, counted); an
        unterminated or bad last line is left uncovered, in ``tail``: a torn
        tail, or a line still being written.
        """
        self.tail = b""
        with log.open("rb") as fh:
            fh.seek(self.covered)
            pending = b""  # a bad line that may yet turn out to be the last
            for raw in fh:
                if pending:
                    self.lines += 1
                    self.corrupt_lines.append(self.lines)
                    self.covered += len(pending)
                    pending = b""
                if not raw.endswith(b"\n"):
                    self.tail = raw
                    return
                if not raw.strip():
                    self.lines += 1
                    self.covered += len(raw)
                    continue
                try:
                    ev = decode(raw)
                except DecodeError as exc:
                    if str(exc).startswith("unknown event type"):
                        name = _type_name(raw)
                        self.unknown_types[name] = self.unknown_types.get(name, 0) + 1
                        self.lines += 1
                        self.covered += len(raw)
                    else:
                        pending = raw
                    continue
                if isinstance(ev, RunStarted):
                    _check_schema(log, ev)
                self.add(ev, len(raw))
                yield ev
            self.tail = pending

    def read_keyframe(self, log: Path, frame: Keyframe) -> object:
        """The JSON state of a keyframe (LogError if its bytes are not what was written)."""
        if frame.state is not None:
            return frame.state
        try:
            with (index_dir(log) / "keyframes.jsonl").open("rb") as fh:
                fh.seek(frame.offset)
                obj = json.loads(fh.read(frame.length))
        except (OSError, ValueError) as exc:
            raise LogError(f"{index_dir(log)}: unreadable keyframe: {exc}") from None
        if not isinstance(obj, dict) or obj.get("events") != frame.events:
            raise LogError(f"{index_dir(log)}: keyframe at {frame.offset} is not the one listed")
        return obj.get("state")


def log_marks(log: Path, covered: int) -> dict[str, object]:
    """What names the covered bytes of a log: their length and hashes of both ends."""
    with log.open("rb") as fh:
        head = fh.read(min(_HASHED, covered))
        fh.seek(max(0, covered - _HASHED))
        tail = fh.read(covered - max(0, covered - _HASHED))
    return {
        "covered": covered,
        "head": hashlib.blake2b(head, digest_size=16).hexdigest(),
        "tail": hashlib.blake2b(tail, digest_size=16).hexdigest(),
        "ends_line": tail.endswith(b"\n") or covered == 0,
    }


def load_index(log: Path) -> LogIndex | None:
    """The index of ``log`` if there is one that matches its bytes, else None."""
    folder = index_dir(log)
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        if meta.get("version") != INDEX_VERSION:
            return None
        covered = int(meta["log"]["covered"])
        if covered > log.stat().st_size or log_marks(log, covered) != meta["log"]:
            return None
        count = int(meta["events"])
        index = LogIndex(
            types=[str(t) for t in meta["types"]],
            covered=covered,
            lines=int(meta["lines"]),
            schema=int(meta["schema"]),
            corrupt_lines=[int(n) for n in meta["corrupt_lines"]],
            unknown_types={str(k): int(v) for k, v in meta["unknown_types"].items()},
        )
        for name, code in _COLUMNS:
            column: array[Any] = array(code)
            with (folder / name).open("rb") as fh:
                column.fromfile(fh, count)  # EOFError if the file is short
            setattr(index, name, column)
        kf_size = (folder / "keyframes.jsonl").stat().st_size if meta["keyframes"] else 0
        for events, offset, length in meta["keyframes"]:
            if not (0 <= int(events) <= count and int(offset) + int(length) <= kf_size):
                return None
            index.keyframes.append(Keyframe(int(events), int(offset), int(length)))
    except (OSError, ValueError, KeyError, TypeError, EOFError):
        return None
    if count and not (index.offsets[0] >= 0 and index.offsets[-1] < covered):
        return None
    if index.kinds and max(index.kinds) >= len(index.types):
        return None
    return index


class IndexWriter:
    """Keeps a log's index on disk in step with the log.

    One process writes an index at a time: it holds an exclusive lock on the
    index folder. Without the lock (another process writes it, or the folder
    cannot be written) the index lives in memory only.
    """

    def __init__(self, log: Path, index: LogIndex, lock: int) -> None:
        self.log = log
        self.index = index
        self._lock = lock
        self._saved = 0  # events whose columns are on disk
        self._saved_meta: tuple[int, int] = (-1, -1)

    @classmethod
    def open(cls, log: Path, *, extend: bool = True) -> IndexWriter:
        """The index of ``log`` (loaded if it matches, else started afresh), brought up to the log
        unless ``extend`` is False."""
        folder = index_dir(log)
        lock = -1
        try:
            folder.mkdir(exist_ok=True)
            lock = os.open(folder / "lock", os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            if lock >= 0:
                os.close(lock)
            lock = -1
        index = load_index(log) if log.exists() else None
        writer = cls(log, index or LogIndex(), lock)
        if lock >= 0:
            if index is None:
                for name in ("meta.json", "keyframes.jsonl", *(n for n, _ in _COLUMNS)):
                    (folder / name).unlink(missing_ok=True)
            else:  # columns past what the meta lists are left over from a crash mid-save
                for name, code in _COLUMNS:
                    os.truncate(folder / name, len(index) * array(code).itemsize)
            writer._saved = len(writer.index)
        if extend and log.exists():
            writer.index.extend(log)
        return writer

    @property
    def saving(self) -> bool:
        """True when this writer holds the lock and keeps the index on disk."""
        return self._lock >= 0

    def add(self, ev: Event, size: int, keyframe: Callable[[], object] | None = None) -> None:
        """Index an event just appended to the log; take a keyframe if one is due."""
        self.index.add(ev, size)
        if keyframe is not None and self.index.keyframe_due():
            self.take_keyframe(keyframe())

    def take_keyframe(self, state: object) -> None:
        """Record the state after the events indexed so far."""
        events = len(self.index)
        if not self.saving:
            self.index.keyframes.append(Keyframe(events, state=state))
            return
        data = dumps({"events": events, "state": state}) + b"\n"
        path = index_dir(self.log) / "keyframes.jsonl"
        try:
            with path.open("ab") as fh:
                offset = fh.tell()
                fh.write(data)
        except OSError:
            self.index.keyframes.append(Keyframe(events, state=state))
            return
        self.index.keyframes.append(Keyframe(events, offset, len(data)))

    def flush(self) -> None:
        """Put what was indexed since the last flush on disk (columns first, then the meta)."""
        index = self.index
        if not self.saving or self._saved_meta == (len(index), len(index.keyframes)):
            return
        folder = index_dir(self.log)
        try:
            for name, _code in _COLUMNS:
                column = getattr(index, name)
                fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT, 0o644)
                try:  # at its place, not appended: a failed flush is simply written again
                    os.pwrite(fd, column[self._saved :].tobytes(), self._saved * column.itemsize)
                finally:
                    os.close(fd)
            self._saved = len(index)
            meta = {
                "version": INDEX_VERSION,
                "log": log_marks(self.log, index.covered),
                "events": len(index),
                "lines": index.lines,
                "types": index.types,
                "schema": index.schema,
                "corrupt_lines": index.corrupt_lines,
                "unknown_types": index.unknown_types,
                "keyframes": [
                    [k.events, k.offset, k.length] for k in index.keyframes if k.state is None
                ],
            }
            tmp = folder / "meta.json.tmp"
            tmp.write_text(json.dumps(meta), encoding="utf-8")
            os.replace(tmp, folder / "meta.json")
            self._saved_meta = (len(index), len(index.keyframes))
        except OSError:
            return  # a cache: the next reader rebuilds what is missing

    def close(self) -> None:
        """Flush and let go of the lock; safe to call twice."""
        self.flush()
        if self._lock >= 0:
            os.close(self._lock)
            self._lock = -1
