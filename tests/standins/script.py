"""The scripted conversation every stand-in plays: turns, usage, and the requests it saw.

A test writes what the fake model says, turn by turn (``WriteFile``, ``ReadFile``,
``RunCommand``, ``Reply``, or a ``Fail`` of that one request), and gets a
``Conversation`` with its own API key. Each request the CLI makes for its main loop (the one
that offers tools) takes the next turn; side calls (titles, routing, quota probes) get a
short default answer and take no turn. Every request is recorded, so a test can read the
prompt that arrived, the history a resumed session sent, or the tool results the CLI
returned. A conversation made with ``reject=401`` answers every request with that status.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Usage:
    """Token counts the fake model reports for one answer.

    ``input_tokens`` counts the prompt tokens that were neither read from nor written to the
    cache (Anthropic's meaning); the OpenAI and Gemini stand-ins report the prompt total as
    ``input_tokens + cache_read + cache_write`` with ``cache_read`` as its cached part, the
    way those APIs count.
    """

    input_tokens: int = 100
    output_tokens: int = 20
    cache_read: int = 0
    cache_write: int = 0
    reasoning: int = 0

    @property
    def prompt_total(self) -> int:
        return self.input_tokens + self.cache_read + self.cache_write


@dataclass(frozen=True)
class WriteFile:
    """The model calls the CLI's own file-writing tool (Write, apply_patch, write_file).

    ``path`` may be relative: it is then taken against the working directory the CLI
    states in its request (as a model would), so a test need not know where delegate-tui
    put the worktree.
    """

    path: str
    content: str
    text: str = ""
    usage: Usage = field(default_factory=Usage)


@dataclass(frozen=True)
class RunCommand:
    """The model calls the CLI's shell tool (Bash, exec_command, run_shell_command).

    gemini does not offer its shell tool in ``auto_edit`` mode; the stand-in calls it anyway,
    as a model would, and the CLI answers with an error the next request carries.
    """

    command: str
    text: str = ""
    usage: Usage = field(default_factory=Usage)


@dataclass(frozen=True)
class ReadFile:
    """The model calls the CLI's file-reading tool (claude ``Read``, gemini ``read_file``;
    codex has none and runs ``cat PATH`` through its shell tool, as its models do).

    ``path`` may be relative, as for :class:`WriteFile`.
    """

    path: str
    text: str = ""
    usage: Usage = field(default_factory=Usage)


@dataclass(frozen=True)
class Fail:
    """The API answers this main-loop request with an HTTP error (the CLI may retry it)."""

    status: int = 500
    text: str = ""


@dataclass(frozen=True)
class Reply:
    """The model answers with text and ends its turn."""

    text: str
    usage: Usage = field(default_factory=Usage)


Turn = WriteFile | ReadFile | RunCommand | Reply | Fail


def resolve(path: str, workdir: str | None) -> str:
    """``path`` made absolute against the CLI's working directory."""
    if path.startswith("/"):
        return path
    if not workdir:
        raise LookupError(f"no working directory in the request to resolve {path!r} against")
    return workdir.rstrip("/") + "/" + path


#: What a main-loop request gets when the script has no turns left.
OVERRUN_TEXT = "(the stand-in's script has no more turns)"


@dataclass
class Request:
    """One HTTP request a stand-in received."""

    vendor: str
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any
    #: the index of the scripted turn this request took, or None for a side call
    turn: int | None = None
    status: int = 200

    @property
    def text(self) -> str:
        """The body as JSON text, for ``in`` checks over everything the CLI sent."""
        return json.dumps(self.body, ensure_ascii=False)


class Conversation:
    """A script and the requests it served, reached through its own API key."""

    def __init__(self, turns: Sequence[Turn], *, reject: int | None = None) -> None:
        self.key = "standin-" + secrets.token_hex(12)
        self.turns = list(turns)
        self.reject = reject
        self.requests: list[Request] = []
        self.overruns = 0
        self._next = 0
        self._lock = threading.Lock()

    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def take_turn(self, request: Request) -> Turn:
        """The next scripted turn for a main-loop request (a text turn once they run out)."""
        with self._lock:
            index = self._next
            self._next += 1
            request.turn = index
            if index < len(self.turns):
                return self.turns[index]
            self.overruns += 1
            return Reply(OVERRUN_TEXT)

    @property
    def turns_taken(self) -> int:
        return min(self._next, len(self.turns))

    def main_requests(self) -> list[Request]:
        """The requests that took a scripted turn, in order."""
        return [r for r in self.requests if r.turn is not None]

    def __repr__(self) -> str:
        return (
            f"Conversation({len(self.turns)} turns, {self._next} taken, "
            f"{len(self.requests)} requests, reject={self.reject})"
        )
