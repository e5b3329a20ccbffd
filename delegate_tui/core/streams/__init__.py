"""The agents' structured streams (claude, codex, gemini), read into one vocabulary.

Owns turning the lines an agent CLI prints in its structured mode (claude
``--output-format stream-json --verbose``, codex ``exec --json``, gemini
``-o stream-json``) into the run's own events: :class:`AgentSession`,
:class:`AgentMessage`, :class:`AgentToolStarted` / :class:`AgentToolFinished`,
:class:`AgentUsage` (tokens per model, cost), :class:`AgentApiRetry` and
:class:`AgentResult`. One parser per attempt, fed the raw output bytes as they
come; it keeps no I/O and decides nothing (the attempt acts on what it reports:
budgets, authentication failures, files touched).

The CLIs mix other lines into their streams (warnings, stack traces, progress):
a line that is not a JSON object, or an event type a parser does not know,
becomes an ``AgentMessage(kind="raw")`` and is never an error. The raw bytes
stay in the log as ``TaskOutput`` either way.

Usage is kept as totals for the attempt (each ``AgentUsage`` replaces the last):
claude's per-message ``usage`` live, then its final ``modelUsage`` (which
counts side calls too); codex's ``turn.completed`` totals are cumulative over a
thread, and claude's final figures over a session, so a resumed session's
earlier totals (``baseline``) are taken off;
gemini reports once, at its end, and bills thinking as output
(``total_tokens - input_tokens``). Where the CLI gives no cost, the price table
(:mod:`delegate_tui.core.prices`) estimates one and says so.
"""

from __future__ import annotations

from collections.abc import Iterable

from delegate_tui.core.events import TokenUsage
from delegate_tui.core.streams.base import (
    FORMATS,
    MAX_LINE,
    PriceFn,
    StreamParser,
    is_auth_failure,
)
from delegate_tui.core.streams.claude import ClaudeStream
from delegate_tui.core.streams.codex import CodexStream, read_paths
from delegate_tui.core.streams.gemini import GeminiStream

_PARSERS: dict[str, type[StreamParser]] = {
    "claude": ClaudeStream,
    "codex": CodexStream,
    "gemini": GeminiStream,
}

__all__ = [
    "CLI_COST",
    "CUMULATIVE",
    "FORMATS",
    "MAX_LINE",
    "ClaudeStream",
    "CodexStream",
    "GeminiStream",
    "StreamParser",
    "is_auth_failure",
    "parser_for",
    "read_paths",
]


def parser_for(
    fmt: str,
    task: str,
    attempt: int,
    *,
    workdir: str = "",
    model: str = "",
    price: PriceFn | None = None,
    baseline: Iterable[TokenUsage] = (),
    baseline_cost: float | None = None,
) -> StreamParser:
    """A parser of ``fmt`` (one of :data:`FORMATS`) for one attempt.

    ``baseline`` (and ``baseline_cost``) are what the conversation this attempt
    continues had used before it, for the formats whose totals count a whole
    session (:data:`CUMULATIVE`); others ignore them.
    """
    return _PARSERS[fmt](
        task,
        attempt,
        workdir=workdir,
        model=model,
        price=price,
        baseline=baseline if fmt in CUMULATIVE else (),
        baseline_cost=baseline_cost if fmt in CUMULATIVE else None,
    )


#: Formats whose usage (and cost) in a resumed session counts the whole session:
#: claude's final ``modelUsage`` and ``total_cost_usd``, codex's ``turn.completed``.
CUMULATIVE = frozenset({"claude", "codex"})
#: Formats whose CLI reports its own cost (claude's ``total_cost_usd``): the others are
#: priced from the price table alone, and a model missing from it has no cost.
CLI_COST = frozenset({"claude"})
