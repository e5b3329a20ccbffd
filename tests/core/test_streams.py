"""The structured-stream parsers (core/streams/) over streams shaped as each CLI prints them.

Recorded streams of the real CLIs (tests/streams/, made against the loopback stand-ins)
are read in tests/agents/; these cover each branch with small hand-made streams,
noise lines and lines split across reads included.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from delegate_tui.core import state as state_mod
from delegate_tui.core.events import (
    AgentApiRetry,
    AgentMessage,
    AgentResult,
    AgentSession,
    AgentToolFinished,
    AgentToolStarted,
    AgentUsage,
    Event,
    RunStarted,
    TaskStarted,
    TokenUsage,
)
from delegate_tui.core.metrics import cost_text, stats, tokens_text, usd_of
from delegate_tui.core.prices import Price, PriceError, PriceTable, read_prices
from delegate_tui.core.streams import MAX_LINE, parser_for

W = "/work/wt/t-1"
SONNET = "claude-sonnet-4-5-20250929"


def lines(*objs: object) -> bytes:
    return b"".join((o if isinstance(o, bytes) else json.dumps(o).encode()) + b"\n" for o in objs)


def of(events: list[Event], kind: type[Event]) -> list[Event]:
    return [e for e in events if isinstance(e, kind)]


def claude_write_stream() -> bytes:
    usage1 = {
        "input_tokens": 100,
        "cache_creation_input_tokens": 50,
        "cache_read_input_tokens": 1000,
        "output_tokens": 20,
    }
    return lines(
        {"type": "system", "subtype": "init", "session_id": "S1", "model": SONNET, "tools": []},
        b"[warn] MCP server failed to start",
        {
            "type": "assistant",
            "message": {
                "id": "msg_1",
                "model": SONNET,
                "content": [{"type": "text", "text": "I'll write it.\nThen check."}],
                "usage": usage1,
            },
        },
        {
            "type": "assistant",
            "message": {
                "id": "msg_1",
                "model": SONNET,
                "content": [
                    {
                        "type": "tool_use",
                        "id": "tu1",
                        "name": "Write",
                        "input": {"file_path": f"{W}/src/a.py", "content": "x = 1\n"},
                    }
                ],
                "usage": usage1,  # the same message again: counted once
            },
        },
        {
            "type": "user",
            "message": {
                "content": [{"type": "tool_result", "tool_use_id": "tu1", "content": "ok"}]
            },
        },
        {
            "type": "assistant",
            "message": {
                "id": "msg_2",
                "model": SONNET,
                "content": [
                    {
                        "type": "tool_use",
                        "id": "tu2",
                        "name": "Bash",
                        "input": {"command": "pytest -q"},
                    }
                ],
                "usage": {"input_tokens": 10, "cache_read_input_tokens": 1200, "output_tokens": 5},
            },
        },
        {
            "type": "user",
            "message": {
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "tu2",
                        "is_error": True,
                        "content": [{"type": "text", "text": "1 failed\nin 0.2s"}],
                    }
                ]
            },
        },
        {
            "type": "result",
            "subtype": "success",
            "is_error": False,
            "num_turns": 3,
            "result": "Wrote src/a.py.",
            "session_id": "S1",
            "total_cost_usd": 0.0123,
            "modelUsage": {
                SONNET: {
                    "inputTokens": 110,
                    "outputTokens": 25,
                    "cacheReadInputTokens": 2200,
                    "cacheCreationInputTokens": 50,
                    "costUSD": 0.01,
                },
                "claude-haiku-4-5": {"inputTokens": 300, "outputTokens": 10, "costUSD": 0.0023},
            },
            "permission_denials": [],
        },
    )


def test_claude_stream_reads_tools_usage_and_result() -> None:
    parser = parser_for("claude", "t", 1, workdir=W, price=PriceTable.load().estimate)
    data = claude_write_stream()
    events: list[Event] = []
    for i in range(0, len(data), 97):  # lines split across reads
        events += parser.feed(data[i : i + 97])
    events += parser.close()

    (session,) = of(events, AgentSession)
    assert isinstance(session, AgentSession) and session.session_id == "S1"
    assert session.model == SONNET
    raw = [e for e in of(events, AgentMessage) if isinstance(e, AgentMessage) and e.kind == "raw"]
    assert [e.text for e in raw] == ["[warn] MCP server failed to start"]
    tools = [e for e in events if isinstance(e, AgentToolStarted)]
    assert [(t.name, t.paths, t.command, t.writes) for t in tools] == [
        ("Write", ("src/a.py",), "", True),
        ("Bash", (), "pytest -q", False),
    ]
    done = [e for e in events if isinstance(e, AgentToolFinished)]
    assert [(d.tool_id, d.ok, d.detail) for d in done] == [
        ("tu1", True, ""),
        ("tu2", False, "1 failed in 0.2s"),
    ]
    usages = [e for e in events if isinstance(e, AgentUsage)]
    # Live: msg_1 once (not twice) plus msg_2, estimated; then claude's own figures.
    live = usages[-2]
    assert live.usage == (
        TokenUsage(model=SONNET, input=160, cached=2200, cache_write=50, output=25),
    )
    assert live.cost_source == "estimated" and live.cost_usd is not None
    final = usages[-1]
    assert final.cost_usd == 0.0123 and final.cost_source == "cli"
    assert {u.model for u in final.usage} == {SONNET, "claude-haiku-4-5"}
    assert final.turns == 3
    (result,) = of(events, AgentResult)
    assert isinstance(result, AgentResult)
    assert (result.ok, result.reason, result.text) == (True, "completed", "Wrote src/a.py.")


@pytest.mark.parametrize(
    ("subtype", "text", "reason"),
    [
        ("error_max_turns", "", "max_turns"),
        ("error_max_budget_usd", "", "budget"),
        ("error_during_execution", "boom", "error"),
        ("success", "Invalid API key · Please run /login", "auth"),
    ],
)
def test_claude_failures_say_why(subtype: str, text: str, reason: str) -> None:
    parser = parser_for("claude", "t", 1)
    obj = {"type": "result", "subtype": subtype, "is_error": True, "result": text}
    (result,) = of(parser.feed(lines(obj)), AgentResult)
    assert isinstance(result, AgentResult) and not result.ok and result.reason == reason


def test_claude_permission_denials_are_listed() -> None:
    parser = parser_for("claude", "t", 1)
    obj = {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "result": "I could not run the tests.",
        "permission_denials": [
            {"tool_name": "Bash", "tool_use_id": "x", "tool_input": {"command": "npm test"}}
        ],
    }
    (result,) = of(parser.feed(lines(obj)), AgentResult)
    assert isinstance(result, AgentResult) and result.ok
    assert result.denials == ("Bash: npm test",)


def test_claude_api_retries_carry_the_status() -> None:
    parser = parser_for("claude", "t", 1)
    retry = {"type": "system", "subtype": "api_retry", "attempt": 2, "error_status": 401}
    (ev,) = parser.feed(lines(retry))
    assert isinstance(ev, AgentApiRetry) and ev.status == 401 and ev.retry == 2


def codex_stream(*, input_tokens: int = 5000, cached: int = 4000) -> bytes:
    return lines(
        b"Reading prompt from stdin...",
        {"type": "thread.started", "thread_id": "T1"},
        {"type": "turn.started"},
        {"type": "item.completed", "item": {"id": "i0", "type": "reasoning", "text": "plan"}},
        {
            "type": "item.started",
            "item": {
                "id": "i1",
                "type": "command_execution",
                "command": "bash -lc 'cat src/a.py'",
                "status": "in_progress",
            },
        },
        {
            "type": "item.completed",
            "item": {
                "id": "i1",
                "type": "command_execution",
                "command": "bash -lc 'cat src/a.py'",
                "exit_code": 1,
                "status": "failed",
            },
        },
        {
            "type": "item.completed",
            "item": {
                "id": "i2",
                "type": "file_change",
                "changes": [{"path": f"{W}/src/a.py", "kind": "add"}],
                "status": "completed",
            },
        },
        {"type": "item.completed", "item": {"id": "i3", "type": "agent_message", "text": "Done."}},
        {"type": "future.event", "x": 1},
        {
            "type": "turn.completed",
            "usage": {
                "input_tokens": input_tokens,
                "cached_input_tokens": cached,
                "output_tokens": 300,
                "reasoning_output_tokens": 200,
            },
        },
    )


def test_codex_stream_reads_commands_patches_and_usage() -> None:
    parser = parser_for("codex", "t", 1, workdir=W, model="gpt-5", price=PriceTable.load().estimate)
    events = parser.feed(codex_stream()) + parser.close()
    (session,) = of(events, AgentSession)
    assert isinstance(session, AgentSession) and session.session_id == "T1"
    tools = [e for e in events if isinstance(e, AgentToolStarted)]
    assert [(t.name, t.paths, t.writes) for t in tools] == [
        ("shell", ("src/a.py",), False),  # what `cat` reads joins the read set
        ("apply_patch", ("src/a.py",), True),
    ]
    assert tools[0].command == "bash -lc 'cat src/a.py'"
    done = [e for e in events if isinstance(e, AgentToolFinished)]
    assert [(d.ok, d.detail) for d in done] == [(False, "exit 1"), (True, "")]
    (usage,) = of(events, AgentUsage)
    assert isinstance(usage, AgentUsage)
    assert usage.usage == (
        TokenUsage(model="gpt-5", input=1000, cached=4000, output=500, reasoning=200),
    )
    # gpt-5 at 1.25 / 0.125 / 10 per million: 0.00125 + 0.0005 + 0.005
    assert usage.cost_source == "estimated" and usage.cost_usd == pytest.approx(0.00675)
    raw = [e.text for e in events if isinstance(e, AgentMessage) and e.kind == "raw"]
    assert raw[0] == "Reading prompt from stdin..." and raw[1].startswith("[future.event]")
    (result,) = of(events, AgentResult)
    assert isinstance(result, AgentResult) and result.ok and result.text == "Done."


def test_the_model_a_session_names_prices_its_usage() -> None:
    """A model named by the stream's own session event prices the usage: codex's
    ``thread.started`` (where a CLI names one), gemini's ``init`` when its result gives
    no figures per model. Without one, codex's usage is "codex", which has no price."""
    price = PriceTable.load(Path("/nonexistent")).estimate
    finished = {"type": "turn.completed", "usage": {"input_tokens": 1_000_000, "output_tokens": 0}}
    named = parser_for("codex", "t", 1, price=price)
    events = named.feed(lines({"type": "thread.started", "thread_id": "T", "model": "o4-mini"}))
    events += named.feed(lines(finished))
    (usage,) = of(events, AgentUsage)
    assert isinstance(usage, AgentUsage) and usage.usage[0].model == "o4-mini"
    assert usage.cost_usd == pytest.approx(1.1) and usage.cost_source == "estimated"
    unnamed = parser_for("codex", "t", 1, price=price)
    (usage,) = of(
        unnamed.feed(lines({"type": "thread.started", "thread_id": "T"}, finished)), AgentUsage
    )
    assert isinstance(usage, AgentUsage) and usage.usage[0].model == "codex"
    assert usage.cost_usd is None and usage.cost_source == ""
    gemini = parser_for("gemini", "t", 1, price=price)
    stats_only = {"input_tokens": 1_000_000, "output_tokens": 0, "total_tokens": 1_000_000}
    events = gemini.feed(
        lines(
            {"type": "init", "session_id": "G", "model": "gemini-2.5-pro"},
            {"type": "result", "status": "success", "stats": stats_only},
        )
    )
    (usage,) = of(events, AgentUsage)
    assert isinstance(usage, AgentUsage) and usage.usage[0].model == "gemini-2.5-pro"
    assert usage.cost_usd == pytest.approx(1.25)


def test_a_resumed_codex_thread_counts_only_its_own_tokens() -> None:
    before = TokenUsage(model="gpt-5", input=1000, cached=4000, output=500, reasoning=200)
    parser = parser_for("codex", "t", 2, model="gpt-5", baseline=[before])
    events = parser.feed(codex_stream(input_tokens=9000, cached=7000))
    (usage,) = of(events, AgentUsage)
    assert isinstance(usage, AgentUsage)
    assert usage.usage == (
        TokenUsage(model="gpt-5", input=1000, cached=3000, output=0, reasoning=0),
    )


def test_codex_auth_failure_and_reconnects() -> None:
    parser = parser_for("codex", "t", 1)
    events = parser.feed(
        lines(
            {
                "type": "error",
                "message": "Reconnecting... 1/5 (unexpected status 401 Unauthorized)",
            },
            {"type": "turn.failed", "error": {"message": "unexpected status 401 Unauthorized"}},
        )
    )
    events += parser.close()  # how the run ended is told when its stream ends
    retry, result = events
    assert isinstance(retry, AgentApiRetry) and retry.status == 401
    assert isinstance(result, AgentResult) and result.reason == "auth" and not result.ok


def gemini_stream() -> bytes:
    return lines(
        b"\x1b[33mLoaded cached credentials.\x1b[0m",
        {"type": "init", "session_id": "G1", "model": "gemini-2.5-pro"},
        {"type": "message", "role": "user", "content": "the prompt"},
        {"type": "message", "role": "assistant", "content": "I will ", "delta": True},
        {"type": "message", "role": "assistant", "content": "write it.", "delta": True},
        {
            "type": "tool_use",
            "tool_name": "write_file",
            "tool_id": "w1",
            "parameters": {"file_path": f"{W}/src/a.py", "content": "x"},
        },
        {"type": "tool_result", "tool_id": "w1", "status": "success", "output": ""},
        {
            "type": "tool_use",
            "tool_name": "run_shell_command",
            "tool_id": "s1",
            "parameters": {"command": "make test"},
        },
        {
            "type": "tool_result",
            "tool_id": "s1",
            "status": "error",
            "error": {"type": "x", "message": "not allowed in auto_edit"},
        },
        {"type": "message", "role": "assistant", "content": "Done.", "delta": True},
        {
            "type": "result",
            "status": "success",
            "stats": {
                "total_tokens": 1700,
                "input_tokens": 1000,
                "output_tokens": 200,
                "cached": 400,
                "tool_calls": 2,
            },
        },
    )


def test_gemini_stream_joins_deltas_and_bills_thinking_as_output() -> None:
    parser = parser_for("gemini", "t", 1, workdir=W, price=PriceTable.load().estimate)
    events = parser.feed(gemini_stream()) + parser.close()
    said = [e.text for e in events if isinstance(e, AgentMessage) and e.kind == "assistant"]
    assert said == ["I will write it.", "Done."]
    raw = [e.text for e in events if isinstance(e, AgentMessage) and e.kind == "raw"]
    assert raw == ["Loaded cached credentials."]  # colours stripped
    tools = [e for e in events if isinstance(e, AgentToolStarted)]
    assert [(t.name, t.paths, t.writes) for t in tools] == [
        ("write_file", ("src/a.py",), True),
        ("run_shell_command", (), False),
    ]
    done = [e for e in events if isinstance(e, AgentToolFinished)]
    assert [(d.ok, d.detail) for d in done] == [(True, ""), (False, "not allowed in auto_edit")]
    (usage,) = of(events, AgentUsage)
    assert isinstance(usage, AgentUsage)
    assert usage.usage == (
        TokenUsage(model="gemini-2.5-pro", input=600, cached=400, output=700, reasoning=500),
    )
    assert usage.cost_source == "estimated"
    (result,) = of(events, AgentResult)
    assert isinstance(result, AgentResult) and result.ok and result.text == "Done."


def test_gemini_error_result_names_an_auth_failure() -> None:
    parser = parser_for("gemini", "t", 1)
    error = {"type": "result", "status": "error", "error": {"message": "API key not valid."}}
    (result,) = of(parser.feed(lines(error)), AgentResult)
    assert isinstance(result, AgentResult) and result.reason == "auth"


def test_a_huge_line_is_dropped_not_held_and_reading_goes_on() -> None:
    parser = parser_for("claude", "t", 1)
    events = parser.feed(b"{" + b"x" * (MAX_LINE + 10))
    assert [e.text for e in events if isinstance(e, AgentMessage)] == ["[a line over 4 MiB]"]
    events = parser.feed(b"yyy\n" + lines({"type": "system", "subtype": "init", "session_id": "S"}))
    assert [type(e) for e in events] == [AgentSession]


def test_a_known_type_with_an_odd_shape_is_shown_not_fatal() -> None:
    parser = parser_for("claude", "t", 1)
    events = parser.feed(lines({"type": "assistant", "message": {"content": "not a list"}}))
    assert events == []  # nothing to read in it, and no exception
    events = parser.feed(b"{not json\n")
    assert [e.text for e in events if isinstance(e, AgentMessage)] == ["{not json"]


def test_state_sums_tokens_and_costs_and_stats_reports_them() -> None:
    parser = parser_for("claude", "t", 1, workdir=W, price=PriceTable.load().estimate)
    st = state_mod.RunState()
    state_mod.apply(
        st,
        RunStarted(
            run_id="r",
            plan={"name": "p", "tasks": [{"id": "t", "prompt": "x"}]},
            plan_path="p.yaml",
            repo="/r",
            isolation="worktree",
            ts=1.0,
        ),
    )
    state_mod.apply(
        st,
        TaskStarted(
            task="t", attempt=1, agent="claude", argv=(), cwd=W, pid=1, pgid=1, prompt="", ts=2.0
        ),
    )
    for ev in parser.feed(claude_write_stream()):
        state_mod.apply(st, ev)
    attempt = st.tasks["t"].attempts[-1]
    assert attempt.session_id == "S1" and attempt.tool_calls == 2 and attempt.tool_errors == 1
    assert attempt.wrote == ["src/a.py"] and attempt.result_text == "Wrote src/a.py."
    assert attempt.transcript[:2] == [
        "  [warn] MCP server failed to start",
        "I'll write it.\nThen check.",
    ]
    assert "→ Write src/a.py" in attempt.transcript and "→ Bash: pytest -q" in attempt.transcript
    assert st.cost_usd == pytest.approx(0.0123) and st.cost_source == "cli"
    data = stats(st)
    assert data["cost_usd"] == 0.0123 and data["cost_source"] == "cli"
    assert data["tokens"] == {"input": 460, "cached": 2200, "output": 35}
    task = data["tasks"]["t"]  # type: ignore[index]
    assert task["tokens"] == {"input": 460, "cached": 2200, "output": 35}
    assert task["tool_calls"] == 2 and task["turns"] == 3
    assert cost_text(0.0123, "cli") == "$0.01" and cost_text(1.5, "estimated") == "~$1.50"
    assert cost_text(None, "") == "" and tokens_text(st.tokens) == "2.7k tok"
    assert usd_of(1.5, 1.0) == "$1.50 of $1.00" and usd_of(0.0512, 0.05) == "$0.051 of $0.050"


def test_prices_match_the_longest_prefix_and_the_user_file_wins(tmp_path: Path) -> None:
    user = tmp_path / "prices.toml"
    user.write_text('[models."claude-sonnet-4-5"]\ninput = 1.0\noutput = 2.0\n')
    table = PriceTable.load(user)
    assert table.price("claude-sonnet-4-5-20250929") == Price(input=1.0, output=2.0)
    assert table.price("claude-sonnet-4-20250514") == Price(3.0, 15.0, 0.3, 3.75)
    assert table.price("mystery-model") is None
    # A model newer than the table takes its family's price; a known name wins.
    assert table.price("claude-opus-5-5") == Price(5.0, 25.0, 0.5, 6.25)
    assert table.price("gemini-3.5-flash-lite") == Price(0.1, 0.4, 0.01)
    assert table.price("gemini-3.8-flash") == Price(0.3, 2.5, 0.03)
    assert table.price("gemini-2.5-flash-lite-001") == Price(0.1, 0.4, 0.01)
    assert table.estimate([TokenUsage(model="mystery-model", input=5)]) is None
    assert table.estimate([TokenUsage(model="mystery-model")]) == 0.0  # used nothing
    # A missing cached price costs as input.
    assert Price(2.0, 4.0).cost(TokenUsage(input=1_000_000, cached=1_000_000)) == 4.0


def test_a_name_that_only_starts_with_a_key_is_another_model() -> None:
    """ "o3-mini" is a model of its own, at about half of "o3"'s price: it must not take
    "o3"'s (nor "gpt-4.1-mini" "gpt-4.1"'s); a version or a date after a key keeps it."""
    table = PriceTable.load(Path("/nonexistent"))
    o3 = table.price("o3")
    assert o3 is not None and o3.input == 2.0
    assert table.price("o3-mini") is None  # no entry: unknown, not o3's price
    assert table.price("o3-pro") is None
    assert table.price("o3-2025-04-16") == o3
    assert table.price("o4-mini-2025-04-16") == table.price("o4-mini") == Price(1.1, 4.4, 0.275)
    # gpt-4.1-mini is no gpt-4.1: it falls to the mini family, not the bigger model's price.
    assert table.price("gpt-4.1-mini") == Price(0.25, 2.0, 0.025)
    assert table.price("gpt-5.1") == table.price("gpt-5") == Price(1.25, 10.0, 0.125)
    assert table.price("gpt-5.1-codex-mini") == Price(0.25, 2.0, 0.025)
    # A pro tier is never its base model's price (an order of magnitude more).
    assert table.price("gpt-5-pro") == table.price("gpt-5.2-pro") == Price(15.0, 120.0)
    assert table.price("gpt-5-pro-2025-10-06") == Price(15.0, 120.0)
    assert table.price("claude-sonnet-4@20250514") == Price(3.0, 15.0, 0.3, 3.75)
    assert table.price("gemini-2.5-flash-preview-09-2025") == Price(0.3, 2.5, 0.03)
    # The longest key wins among those that fit.
    local = PriceTable({"o3": Price(2.0, 8.0), "o3-mini": Price(1.1, 4.4)})
    assert local.price("o3-mini-2025-01-31") == Price(1.1, 4.4)
    assert local.price("o3-2025-04-16") == Price(2.0, 8.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[models."m"]\ninput = "cheap"\noutput = 1\n', "models.m.input: expected a price >= 0"),
        ('[models."m"]\ninput = 1\n', "models.m.output: missing"),
        ('[models."m"]\ninput = 1\noutput = 1\nfree = 1\n', "models.m.free: unknown field"),
        ("[models\n", "line 1"),
    ],
)
def test_a_bad_price_file_is_named_with_its_entry(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(text)
    with pytest.raises(PriceError) as err:
        read_prices(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_a_resumed_claude_session_counts_only_this_attempt() -> None:
    """claude's final figures in a resumed session count the whole session (seen with
    the real CLI: tests/streams/claude-resume.jsonl); gemini's count the run alone."""
    before = TokenUsage(model=SONNET, input=100, cached=2000, cache_write=50, output=20)
    parser = parser_for("claude", "t", 2, baseline=[before], baseline_cost=0.01)
    events = parser.feed(claude_write_stream())
    final = [e for e in events if isinstance(e, AgentUsage)][-1]
    assert final.cost_usd == pytest.approx(0.0023) and final.cost_source == "cli"
    by_model = {u.model: u for u in final.usage}
    assert by_model[SONNET].input == 60 and by_model[SONNET].cached == 200
    assert by_model[SONNET].output == 5 and by_model["claude-haiku-4-5"].input == 300
    gemini = parser_for("gemini", "t", 2, baseline=[before], baseline_cost=1.0)
    (usage,) = of(gemini.feed(gemini_stream()), AgentUsage)
    assert isinstance(usage, AgentUsage) and usage.usage[0].input == 600


@pytest.mark.parametrize(
    ("command", "paths"),
    [
        ("bash -lc 'cat api/schema.py'", ("api/schema.py",)),
        # as the real codex shows them: the shell named by its path
        ("/bin/bash -lc 'cat src/schema.py'", ("src/schema.py",)),
        ("bash -lc \"sed -n '1,80p' src/app.py\"", ("src/app.py",)),
        ("rg -n 'class Foo' src/ tests/test_x.py", ("src", "tests/test_x.py")),
        ("cat a.txt | grep -v x README.md && wc -l docs/x.md", ("a.txt", "README.md", "docs/x.md")),
        ("ls src", ()),  # lists, does not read
        ("python -m pytest tests/", ()),  # runs: what it reads is not visible
        ("cat 'unterminated", ()),
        ("grep -r TODO", ()),  # a pattern, no path
    ],
)
def test_codex_commands_show_what_they_read(command: str, paths: tuple[str, ...]) -> None:
    from delegate_tui.core.streams import read_paths

    assert read_paths(command) == paths


def test_gemini_retries_said_in_plain_text_are_api_retries() -> None:
    parser = parser_for("gemini", "t", 1)
    line = b"Attempt 2 failed with status 503. Retrying with backoff... _ApiError: {}\n"
    (retry,) = parser.feed(line)
    assert isinstance(retry, AgentApiRetry) and (retry.status, retry.retry) == (503, 2)
