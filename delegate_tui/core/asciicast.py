"""asciicast v2 (asciinema) recordings as single-task runs.

Owns importing a terminal session recorded elsewhere, so it can be looked at
with replay: the header becomes the run (its command, size and start time),
each output frame a ``TaskOutput`` at its moment, and the end of the
recording the task's exit. Input frames become ``InputSent``. Nothing runs.
"""

from __future__ import annotations

import json
from pathlib import Path

from delegate_tui.core.events import (
    Event,
    InputSent,
    Metrics,
    RunFinished,
    RunStarted,
    TaskExited,
    TaskFinished,
    TaskOutput,
    TaskStarted,
)


class CastError(ValueError):
    """Not an asciicast v2 file; the message says where and why."""


def looks_like_cast(path: Path) -> bool:
    """True when the file's first line is an asciicast v2 header."""
    try:
        with path.open("rb") as fh:
            first = json.loads(fh.readline() or b"null")
    except (OSError, ValueError):
        return False
    return isinstance(first, dict) and first.get("version") == 2


def to_events(path: Path) -> list[Event]:
    """The events of a run that shows the recording as one task, ``session``."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    if not lines:
        raise CastError(f"{path}: empty file")
    try:
        header = json.loads(lines[0])
    except ValueError as exc:
        raise CastError(f"{path}:1: header: not JSON ({exc})") from None
    if not isinstance(header, dict) or header.get("version") != 2:
        raise CastError(f'{path}:1: header: expected an asciicast v2 header with "version": 2')
    start = float(header.get("timestamp") or 0.0)
    command = str(header.get("command") or header.get("title") or "recorded session")
    plan = {
        "name": str(header.get("title") or f"asciicast: {path.name}"),
        "isolation": "none",
        "tasks": [{"id": "session", "agent": "shell", "command": command, "title": command}],
    }
    seq = 0

    def stamp(ev: Event, at: float) -> Event:
        nonlocal seq
        seq += 1
        object.__setattr__(ev, "seq", seq)
        object.__setattr__(ev, "ts", start + at)
        return ev

    events: list[Event] = [
        stamp(
            RunStarted(
                run_id=f"cast-{path.stem}",
                plan=plan,
                plan_path=str(path),
                repo=str(path.parent),
                isolation="none",
            ),
            0.0,
        ),
        stamp(
            TaskStarted(
                task="session",
                attempt=1,
                agent="asciicast",
                argv=(command,),
                cwd=str(path.parent),
                pid=0,
                pgid=0,
                prompt="",
                transport="pty",
            ),
            0.0,
        ),
    ]
    end = 0.0
    for number, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        try:
            at, kind, data = json.loads(line)
            at = float(at)
        except (ValueError, TypeError) as exc:
            raise CastError(f"{path}:{number}: expected [time, type, data] ({exc})") from None
        end = max(end, at)
        if kind == "o":
            events.append(stamp(TaskOutput(task="session", attempt=1, data=str(data).encode()), at))
        elif kind == "i":
            events.append(stamp(InputSent(task="session", attempt=1, text=str(data)), at))
    events.append(stamp(TaskExited(task="session", attempt=1, exit_code=0, duration_s=end), end))
    events.append(stamp(TaskFinished(task="session", attempt=1, status="succeeded"), end))
    events.append(
        stamp(RunFinished(status="succeeded", metrics=Metrics(wall_s=end, sequential_s=end)), end)
    )
    return events
