"""The stream parsers (core/streams/) over the real CLIs' recorded streams (tests/streams/).

Each file is what a real CLI printed against the stand-ins, noise lines included, with the
usage the stand-in's script reported (tests/streams/README.md says which). The figures here
are worked out from those scripts, not read back from the parser: write runs report
input 1000 + 1200 uncached, 300 cache writes, 200 + 400 cache reads, output 50 + 10 and
7 reasoning tokens.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from delegate_tui.core.events import (
    AgentApiRetry,
    AgentMessage,
    AgentResult,
    AgentSession,
    AgentToolFinished,
    AgentToolStarted,
    AgentUsage,
    Event,
)
from delegate_tui.core.streams import parser_for

STREAMS = Path(__file__).parent.parent / "streams"


def parse(name: str) -> list[Event]:
    fmt = name.split("-")[0]
    parser = parser_for(fmt, "t1", 1)
    data = (STREAMS / f"{name}.jsonl").read_bytes()
    # fed in uneven pieces, as a pipe delivers it
    events: list[Event] = []
    for start in range(0, len(data), 777):
        events += parser.feed(data[start : start + 777])
    return events + parser.close()


def of(events: list[Event], kind: type[Event]) -> list[Event]:
    return [e for e in events if isinstance(e, kind)]


def result(events: list[Event]) -> AgentResult:
    results = of(events, AgentResult)
    assert len(results) == 1, results
    found = results[0]
    assert isinstance(found, AgentResult)
    return found


def final_usage(events: list[Event]) -> AgentUsage:
    usages = of(events, AgentUsage)
    assert usages
    last = usages[-1]
    assert isinstance(last, AgentUsage)
    return last


def test_every_recorded_stream_is_read_to_one_result_and_one_session() -> None:
    names = sorted(p.stem for p in STREAMS.glob("*.jsonl"))
    assert len(names) >= 18
    for name in names:
        events = parse(name)
        sessions = of(events, AgentSession)
        assert len(sessions) == 1, name
        if name != "codex-no-network-default":  # killed while still reconnecting
            result(events)


@pytest.mark.parametrize("cli", ["claude", "codex", "gemini"])
def test_a_write_run_reads_as_one_write_tool_that_succeeded_and_the_scripted_tokens(
    cli: str,
) -> None:
    events = parse(f"{cli}-write")

    started = of(events, AgentToolStarted)
    finished = of(events, AgentToolFinished)
    assert [(t.name, t.writes) for t in started if isinstance(t, AgentToolStarted)] == [
        ({"claude": "Write", "codex": "apply_patch", "gemini": "write_file"}[cli], True)
    ]
    assert isinstance(started[0], AgentToolStarted)
    assert started[0].paths[0].endswith("notes/hello.txt")
    assert [(f.tool_id, f.ok) for f in finished if isinstance(f, AgentToolFinished)] == [
        (started[0].tool_id, True)
    ]
    assert (result(events).ok, result(events).reason, result(events).text) == (
        True,
        "completed",
        "done",
    )
    usage = final_usage(events)
    main = [u for u in usage.usage if u.input > 100]  # gemini's router call is a side model
    assert len(main) == 1
    figures = (main[0].input, main[0].cached, main[0].output)
    if cli == "claude":
        # claude reports no reasoning apart; it prices the run itself
        assert figures == (2200 + 300, 600, 60)
        assert usage.cost_source == "cli" and usage.cost_usd is not None and usage.cost_usd > 0
    else:
        assert figures == (2200 + 300, 600, 60 + 7)
        assert main[0].reasoning == 7


@pytest.mark.parametrize("cli", ["claude", "codex", "gemini"])
def test_a_rejected_key_reads_as_an_authentication_failure(cli: str) -> None:
    events = parse(f"{cli}-auth-fail")

    found = result(events)
    assert (found.ok, found.reason) == (False, "auth")
    retries = [r.status for r in of(events, AgentApiRetry) if isinstance(r, AgentApiRetry)]
    assert retries == {"claude": [401, 401], "codex": [401], "gemini": []}[cli]


def test_claudes_default_retries_read_as_ten_401s_then_an_authentication_failure() -> None:
    events = parse("claude-auth-fail-default-retries")

    retries = [r for r in of(events, AgentApiRetry) if isinstance(r, AgentApiRetry)]
    assert [(r.retry, r.status) for r in retries] == [(n, 401) for n in range(1, 11)]
    assert result(events).reason == "auth"


def test_claudes_own_limits_read_as_budget_and_max_turns() -> None:
    budget = parse("claude-budget")
    turns = parse("claude-max-turns")

    assert (result(budget).ok, result(budget).reason) == (False, "budget")
    assert final_usage(budget).cost_usd == pytest.approx(4.002)
    # the budget stopped it before the Write ran: started, never finished
    assert len(of(budget, AgentToolStarted)) == 1 and of(budget, AgentToolFinished) == []
    assert (result(turns).ok, result(turns).reason) == (False, "max_turns")
    assert [f.ok for f in of(turns, AgentToolFinished) if isinstance(f, AgentToolFinished)] == [
        True
    ]


def test_a_program_in_edit_mode_reads_as_refused_by_claude_and_gemini_and_run_by_codex() -> None:
    outcomes = {}
    for cli in ("claude", "codex", "gemini"):
        events = parse(f"{cli}-command-pty")
        started = [t for t in of(events, AgentToolStarted) if isinstance(t, AgentToolStarted)]
        finished = [f for f in of(events, AgentToolFinished) if isinstance(f, AgentToolFinished)]
        assert len(started) == 1 and "ran.txt" in started[0].command, cli
        outcomes[cli] = (finished[0].ok, result(events).ok, len(result(events).denials))

    assert outcomes == {
        "claude": (False, True, 1),  # refused, listed in permission_denials
        "codex": (True, True, 0),
        "gemini": (False, True, 0),  # no shell tool in auto_edit: tool_not_registered
    }


def test_noise_lines_become_raw_messages_and_never_stop_the_reading() -> None:
    events = parse("gemini-auth-fail")

    raw = [m.text for m in of(events, AgentMessage) if isinstance(m, AgentMessage)]
    assert any(text.startswith("Warning: 256-color support") for text in raw)
    assert any("at throwErrorIfNotOK" in text for text in raw)
    assert isinstance(events[-1], AgentResult)


def test_codex_without_network_reads_as_reconnect_retries() -> None:
    forever = parse("codex-no-network-default")
    bounded = parse("codex-no-network")

    assert len(of(forever, AgentApiRetry)) >= 3 and of(forever, AgentResult) == []
    assert len(of(bounded, AgentApiRetry)) == 1
    assert (result(bounded).ok, result(bounded).reason) == (False, "error")


@pytest.mark.parametrize("cli", ["claude", "codex", "gemini"])
def test_a_server_error_then_an_answer_reads_as_completed(cli: str) -> None:
    events = parse(f"{cli}-retry")

    retries = [r.status for r in of(events, AgentApiRetry) if isinstance(r, AgentApiRetry)]
    # codex retries silently; gemini says so only in a plain-text line, which is read too
    assert retries == {"claude": [500], "codex": [], "gemini": [500]}[cli]
    assert (result(events).ok, result(events).text) == (True, "after the retry")
