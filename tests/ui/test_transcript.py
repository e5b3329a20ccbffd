"""Pilot tests: an agent with a structured stream shows a transcript, its tokens and cost.

The pane reads the agent's words and tool calls (not its JSON), ``v`` switches to the
raw stream and back, the pane title, task list and header carry the cost, the pane's
bottom line says what the agent does now, and a retry offers a fresh conversation.
"""

from __future__ import annotations

import json

import pytest

from delegate_tui.core.events import (
    AgentMessage,
    AgentSession,
    AgentToolFinished,
    AgentToolStarted,
    AgentUsage,
    TaskFinished,
    TaskOutput,
    TokenUsage,
)
from delegate_tui.ui.screens.dialogs import RetryDialog
from delegate_tui.ui.widgets.agent_grid import AgentGrid
from delegate_tui.ui.widgets.header import RunHeader
from tests.ui.conftest import Running, StartApp
from tests.ui.fake_source import FakeSource

RAW = json.dumps({"type": "assistant", "message": {"id": "m1", "content": []}}) + "\n"


def play_claude(source: FakeSource) -> None:
    source.start_run()
    source.start_task("contract")
    source.emit(TaskOutput(task="contract", attempt=1, data=RAW.encode()), 1.5)
    source.emit(
        AgentSession(task="contract", attempt=1, session_id="sess-1234abcd", model="m"), 1.5
    )
    source.emit(AgentMessage(task="contract", attempt=1, text="I will write the contract."), 2.0)
    source.emit(
        AgentToolStarted(
            task="contract",
            attempt=1,
            tool_id="t1",
            name="Write",
            paths=("docs/api/user.md",),
            writes=True,
        ),
        2.5,
    )
    source.emit(AgentToolFinished(task="contract", attempt=1, tool_id="t1", ok=True), 3.0)
    source.emit(
        AgentToolStarted(
            task="contract", attempt=1, tool_id="t2", name="Bash", command="make docs"
        ),
        3.5,
    )
    source.emit(
        AgentToolFinished(task="contract", attempt=1, tool_id="t2", ok=False, detail="exit 2"),
        4.0,
    )
    source.emit(
        AgentUsage(
            task="contract",
            attempt=1,
            usage=(TokenUsage(model="m", input=12_000, cached=3_000, output=900),),
            cost_usd=0.42,
            cost_source="cli",
            turns=2,
        ),
        4.0,
    )


def pane_lines(ui: Running, task: str) -> list[str]:
    pane = ui.screen.query_one(AgentGrid).panes[task]
    return [line for line in pane.buffer.plain_lines() if line.strip()]


@pytest.mark.asyncio
async def test_the_pane_reads_the_agents_transcript_and_v_shows_the_raw_stream(
    start_app: StartApp,
) -> None:
    source = FakeSource()
    async with start_app(source, size=(160, 40)) as ui:
        play_claude(source)  # live, as the agent works
        await ui.select("contract")
        lines = pane_lines(ui, "contract")
        assert lines == [
            "conversation sess-1234abcd · m",
            "I will write the contract.",
            "→ Write docs/api/user.md",
            "  ✓ done",
            "→ Bash: make docs",
            "  ✗ exit 2",
        ]
        pane = ui.screen.query_one(AgentGrid).panes["contract"]
        assert "$0.42 15.9k tok" in str(pane.border_title)
        assert str(pane.border_subtitle) == "Bash: make docs"  # what it does now
        assert "$0.42" in str(ui.screen.query_one(RunHeader).render())
        from tests.ui.test_batch import row

        assert "$0.42" in row(ui, "contract"), "the task list shows each task's cost"
        assert "$" not in row(ui, "schema")
        await ui.press("v")
        assert pane_lines(ui, "contract") == [RAW.strip()]
        await ui.press("v")
        assert pane_lines(ui, "contract")[2] == "→ Write docs/api/user.md"


@pytest.mark.asyncio
async def test_a_pane_opened_later_reads_what_the_state_kept_of_the_transcript(
    start_app: StartApp,
) -> None:
    source = FakeSource()
    play_claude(source)  # before the app: a resumed or attached run
    async with start_app(source, size=(160, 40)) as ui:
        await ui.select("contract")
        assert pane_lines(ui, "contract") == [
            "I will write the contract.",
            "→ Write docs/api/user.md",
            "  ✓ done",
            "→ Bash: make docs",
            "  ✗ Bash: make docs: exit 2",
        ]


@pytest.mark.asyncio
async def test_a_retry_offers_a_new_conversation_when_the_agent_has_one(
    start_app: StartApp,
) -> None:
    source = FakeSource()
    play_claude(source)
    source.emit(TaskFinished(task="contract", attempt=1, status="failed", reason="x"), 5.0)
    async with start_app(source, size=(160, 40)) as ui:
        await ui.select("contract")
        await ui.press("r")
        dialog = ui.app.screen
        assert isinstance(dialog, RetryDialog) and dialog.session == "sess-1234abcd"
        # The failure's context shown is the transcript, not the JSON stream.
        assert "→ Write docs/api/user.md" in dialog.tail and '{"type"' not in dialog.tail
        await ui.pilot.click("#fresh")
        await ui.press("ctrl+s")
        assert source.last() == ("retry", "contract", "", False, True)


@pytest.mark.asyncio
async def test_a_cost_with_spend_of_no_known_price_is_marked_partial(
    start_app: StartApp,
) -> None:
    """Usage of a model with no price adds nothing to the cost: the figures say so."""
    source = FakeSource()
    async with start_app(source, size=(160, 40)) as ui:
        play_claude(source)  # contract: $0.42, priced
        source.start_task("schema", at=4.5)
        source.emit(
            AgentUsage(
                task="schema",
                attempt=1,
                usage=(TokenUsage(model="unpriced-9", input=5_000, output=100),),
                cost_usd=None,
                cost_source="",
                turns=1,
            ),
            5.0,
        )
        await ui.select("contract")
        assert "$0.42+" in str(ui.screen.query_one(RunHeader).render()), "the run's is partial"
        grid = ui.screen.query_one(AgentGrid)
        assert "$0.42 " in str(grid.panes["contract"].border_title), "contract's is all of it"
        assert "$" not in str(grid.panes["schema"].border_title), "schema's is unknown"
