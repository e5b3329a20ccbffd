"""The run log: ``.delegate/runs/<run-id>/events.jsonl``, append-only.

Owns getting events onto disk without losing any and reading them back
without trusting them. The writer makes one ``os.write`` per record on an
``O_APPEND`` descriptor, so a crash leaves at worst a torn last line; it
fsyncs decisions (approvals, kills, retries, the end of a run) at once and
everything else at most every 200 ms. On reopen it cuts a torn last line
before appending. The reader skips a torn last line quietly, reports a bad
line in the middle as corruption, and refuses a newer schema.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

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
    """Appends events to a run log. Not thread-safe: the engine's loop owns it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.repaired = repair_tail(path)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._dirty = False
        self._last_sync = time.monotonic()

    def write(self, ev: Event) -> None:
        """Append one event; decisions are synced to disk before returning."""
        data = encode(ev)
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self._dirty = True
        now = time.monotonic()
        if isinstance(ev, DECISIONS) or now - self._last_sync >= FSYNC_INTERVAL_S:
            self.sync()

    def sync(self) -> None:
        """Flush what was written to the disk itself."""
        if self._dirty and self._fd >= 0:
            os.fsync(self._fd)
            self._dirty = False
            self._last_sync = time.monotonic()

    def close(self) -> None:
        """Sync and close; safe to call twice."""
        if self._fd >= 0:
            self.sync()
            os.close(self._fd)
            self._fd = -1


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
    """Yield the events of a log, tolerating damage; details go into ``report``."""
    report = report if report is not None else ReadReport()
    if not path.exists():
        raise LogError(f"{path}: no such run log")
    with path.open("rb") as fh:
        number = 0
        pending: tuple[int, bytes] | None = None
        for raw in fh:
            number += 1
            if pending is not None:
                report.corrupt_lines.append(pending[0])
                pending = None
            if not raw.strip():
                continue
            try:
                ev = decode(raw)
            except DecodeError as exc:
                if not raw.endswith(b"\n"):
                    report.torn_tail = True
                    continue
                if str(exc).startswith("unknown event type"):
                    name = _type_name(raw)
                    report.unknown_types[name] = report.unknown_types.get(name, 0) + 1
                    continue
                pending = (number, raw)
                continue
            if isinstance(ev, RunStarted):
                report.schema = ev.schema
                if ev.schema > SCHEMA_VERSION:
                    raise LogError(
                        f"{path}: written by a newer delegate-tui (log schema {ev.schema}, "
                        f"this version reads up to {SCHEMA_VERSION}); upgrade to read it"
                    )
            yield ev
        if pending is not None:
            # A bad *last* line that still ends in a newline: torn by a crash mid-write.
            report.torn_tail = True


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
    """Every run log of a repository, newest first (run ids sort by time)."""
    root = runs_dir(repo)
    if not root.is_dir():
        return []
    logs = [p / LOG_NAME for p in root.iterdir() if (p / LOG_NAME).is_file()]
    return sorted(logs, key=lambda p: p.parent.name, reverse=True)
