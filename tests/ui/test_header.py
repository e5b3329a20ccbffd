"""Pilot tests: the header keeps what needs the operator and the counts in view,
cutting the plan's name instead (issue 12, item 11)."""

from __future__ import annotations

import pytest

from delegate_tui.core.plan import parse_plan
from delegate_tui.ui.widgets.header import RunHeader
from tests.ui.conftest import StartApp
from tests.ui.fake_source import PLAN_TEXT, FakeSource

LONG_NAME = "OAuth login for the web shop, the admin console and the partner API"


@pytest.mark.asyncio
@pytest.mark.parametrize("width", [80, 120, 200])
async def test_counts_and_the_flag_come_before_the_plan_name_which_is_cut(
    start_app: StartApp, width: int
) -> None:
    source = FakeSource(parse_plan(PLAN_TEXT.replace("OAuth login", LONG_NAME), "plan.yaml"))
    source.mid_run()  # contract and schema done, batch 2 waits
    async with start_app(source, size=(width, 24)) as ui:
        line = ui.screen.query_one(RunHeader).render_line(0).text
        # two wait for their dependencies, two are the batch that waits for approval
        for count in ("✔2", "▶0", "✘0", "◌2", "◎2"):
            assert count in line, (count, line)
        assert "◉" not in line and "⊘" not in line, "counts of none are left out"
        assert "⚑ batch 2 waits for approval" in line
        assert line.index("◎2") < line.index("⚑") < line.index("OAuth")
        if width < 150:
            assert LONG_NAME not in line and "…" in line, "the name is what is cut"


@pytest.mark.asyncio
async def test_the_flag_stays_whole_at_80_columns_beside_collisions(start_app: StartApp) -> None:
    source = FakeSource()
    source.collision()  # a collision and a warning, time saved
    source.propose(3, ("login-ui",), at=4.0)
    async with start_app(source, size=(80, 24)) as ui:
        line = ui.screen.query_one(RunHeader).render_line(0).text
        assert "⚑ batch 3 waits for approval" in line, line
