"""Pilot tests: agent panes stay readable at every size (issue 12, items 12 and 13).

Panes are never squeezed under MIN_PANE_COLS columns: they stack in one column,
the running agents that do not fit are named under the grid, and ``z`` shows
the selected pane alone on the whole screen. A scrolled-back or searched pane
stays on the lines the operator reads while output floods in.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from delegate_tui.ui.config import UserConfig
from delegate_tui.ui.term import text_of
from delegate_tui.ui.widgets.agent_grid import MIN_PANE_COLS, MIN_PANE_ROWS, AgentGrid, grid_shape
from delegate_tui.ui.widgets.agent_pane import AgentPane
from tests.ui.conftest import Running, StartApp
from tests.ui.fake_source import FakeSource

RUNNING = ("schema", "service", "login-ui", "hotfix")


def four_running() -> FakeSource:
    """contract done and selected by default; four agents running with some output."""
    source = FakeSource()
    source.start_run()
    source.start_task("contract", at=0.5, pid=1000)
    source.output("contract", b"contract written\r\n", at=0.6)
    source.succeed_task("contract", at=1.0)
    for n, task in enumerate(RUNNING):
        source.start_task(task, at=1.5, pid=2000 + n)
        source.output(task, b"".join(b"%s line %d\r\n" % (task.encode(), i) for i in range(30)))
    return source


def panes(ui: Running) -> list[AgentPane]:
    return list(ui.screen.query(AgentPane))


def test_grid_shape_never_squeezes_a_pane() -> None:
    assert grid_shape(0, 200, 50) == (0, 0)
    assert grid_shape(3, 84, 36) == (1, 3), "stacked: two columns would be 42 wide"
    assert grid_shape(3, 119, 36) == (1, 3)
    assert grid_shape(3, 121, 36) == (2, 2)
    assert grid_shape(8, 46, 36) == (1, 36 // MIN_PANE_ROWS), "rows that fit, no more"
    assert grid_shape(1, 20, 3) == (1, 1), "one pane however small the screen"
    for count in range(1, 10):
        for width in range(20, 300, 7):
            columns, rows = grid_shape(count, width, 50)
            assert columns <= count and columns * (rows - 1) < count, "no empty row"
            if columns > 1:
                assert (width - (columns - 1)) // columns >= MIN_PANE_COLS


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "size", [(80, 24), (120, 40), (200, 60)], ids=lambda s: "x".join(map(str, s))
)
async def test_panes_are_readable_and_the_agents_left_out_are_named(
    start_app: StartApp, size: tuple[int, int]
) -> None:
    async with start_app(four_running(), size=size) as ui:
        await ui.settle()
        shown = panes(ui)
        assert shown, "at least the selected task's pane"
        grid = ui.screen.query_one(AgentGrid)
        for pane in shown:  # as wide as a readable pane, or (when narrower) the grid
            readable = min(MIN_PANE_COLS, grid.size.width)
            assert pane.outer_size.width >= readable, (pane.task_id, pane.outer_size)
            assert pane.outer_size.height >= MIN_PANE_ROWS - 1, (pane.task_id, pane.outer_size)
        left_out = [t for t in RUNNING if t not in {p.task_id for p in shown}]
        subtitle = str(grid.border_subtitle)
        if left_out:
            assert f"also running: {', '.join(left_out)}" in subtitle
        else:
            assert "also running" not in subtitle
        if size == (120, 40):  # the case: stacked full width, 36 rows hold four
            assert [p.task_id for p in shown] == ["contract", *RUNNING[:3]]
            assert {p.outer_size.width for p in shown} == {grid.size.width}


@pytest.mark.asyncio
async def test_selecting_an_agent_left_out_shows_its_pane(start_app: StartApp) -> None:
    async with start_app(four_running(), size=(80, 24)) as ui:
        grid = ui.screen.query_one(AgentGrid)
        assert "hotfix" in grid.off_screen
        await ui.select("hotfix")
        assert grid.pane("hotfix") is not None and "hotfix" not in grid.off_screen


@pytest.mark.asyncio
@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
async def test_z_shows_the_selected_pane_on_the_whole_screen_and_back(
    start_app: StartApp, size: tuple[int, int]
) -> None:
    async with start_app(four_running(), size=size) as ui:
        await ui.select("service")
        await ui.press("z")
        (pane,) = panes(ui)
        assert pane.task_id == "service"
        assert pane.outer_size.width == size[0] - 2, "the whole width, less the grid's border"
        assert not ui.screen.query_one("#left").display
        assert not ui.screen.query_one("#sidebar").display
        assert "zoomed" in str(ui.screen.query_one(AgentGrid).border_subtitle)
        await ui.press("down")  # the task list is hidden: its keys still select
        assert ui.screen.selected == "login-ui"
        (pane,) = panes(ui)
        assert pane.task_id == "login-ui"
        await ui.press("z")
        assert ui.screen.query_one("#left").display and len(panes(ui)) > 1
        assert "zoomed" not in str(ui.screen.query_one(AgentGrid).border_subtitle)
        await ui.press("up")
        assert ui.screen.selected == "service"


@pytest.mark.asyncio
async def test_the_sidebar_gives_way_to_a_readable_pane_until_there_is_a_conflict(
    start_app: StartApp,
) -> None:
    async with start_app(four_running(), size=(120, 40)) as ui:
        assert not ui.screen.query_one("#sidebar").display, "nothing to say: the pane gets the room"
        await ui.press("c")
        assert ui.screen.query_one("#sidebar").display, "asked for"
    source = FakeSource()
    source.collision()
    async with start_app(source, size=(120, 40)) as ui:
        assert ui.screen.query_one("#sidebar").display, "a collision shows it"
    async with start_app(four_running(), size=(140, 40)) as ui:
        assert ui.screen.query_one("#sidebar").display, "room for both"
        for pane in panes(ui):
            assert pane.outer_size.width >= MIN_PANE_COLS


def top_line(pane: AgentPane) -> str:
    """The text of the first line on screen."""
    return text_of(pane.buffer.lines[int(pane.scroll_y)])


async def flood(ui: Running, source: FakeSource, task: str, lines: int, start: int) -> int:
    """``lines`` new lines in chunks of 100, with redraws in between; the next number."""
    for first in range(start, start + lines, 100):
        source.output(task, b"".join(b"flood %06d\r\n" % i for i in range(first, first + 100)))
        await ui.pilot.pause(0.03)
    await ui.settle()
    return start + lines


@pytest.mark.asyncio
async def test_a_scrolled_back_pane_stays_put_under_a_flood_until_scrolled_to_the_end(
    start_app: StartApp, tmp_path: Path
) -> None:
    """The ring keeps 200 lines; 1,000 arrive while the operator reads back."""
    source = FakeSource()
    source.start_run()
    source.start_task("contract")
    source.output("contract", b"".join(b"line %06d\r\n" % i for i in range(300)))
    config = UserConfig(path=tmp_path / "c.yaml", scrollback=200)
    async with start_app(source, size=(120, 32), config=config) as ui:
        await ui.select("contract")
        pane = ui.screen.query_one("#pane-contract", AgentPane)
        await ui.press("pageup", "pageup")
        reading = top_line(pane)
        assert not pane.follow and reading.startswith("line ")
        after = await flood(ui, source, "contract", 1000, 0)
        assert top_line(pane) == reading, "the lines read stay on screen"
        assert not pane.follow
        assert "new output waits" in str(pane.border_subtitle)
        for _ in range(20):  # page down to the end of what was read: following again
            if pane.follow:
                break
            await ui.press("pagedown")
        assert pane.follow
        await ui.settle()
        last = [line for line in pane.buffer.plain_lines() if line][-1]
        assert last == f"flood {after - 1:06d}" and pane.is_vertical_scroll_end
        assert "new output waits" not in str(pane.border_subtitle or "")


@pytest.mark.asyncio
async def test_a_search_hit_stays_on_screen_under_a_flood(
    start_app: StartApp, tmp_path: Path
) -> None:
    source = FakeSource()
    source.start_run()
    source.start_task("contract")
    source.output(
        "contract",
        b"".join(b"line %06d\r\n" % i for i in range(150))
        + b"needle one\r\n"
        + b"".join(b"line %06d\r\n" % i for i in range(20))
        + b"needle two\r\n"
        + b"".join(b"line %06d\r\n" % i for i in range(20)),
    )
    config = UserConfig(path=tmp_path / "c.yaml", scrollback=200)
    async with start_app(source, size=(120, 32), config=config) as ui:
        await ui.select("contract")
        await ui.press("slash")
        await ui.press(*"needle", "enter")
        pane = ui.screen.query_one("#pane-contract", AgentPane)
        visible = pane.buffer.plain_lines()[
            int(pane.scroll_y) : int(pane.scroll_y) + pane.size.height
        ]
        assert "needle two" in visible
        reading = top_line(pane)
        await flood(ui, source, "contract", 1000, 0)
        assert top_line(pane) == reading, "the hit did not slide away"
        assert len(pane.matches) == 2
        await ui.press("N")  # the previous hit, from the one on screen
        visible = pane.buffer.plain_lines()[
            int(pane.scroll_y) : int(pane.scroll_y) + pane.size.height
        ]
        assert "needle one" in visible


@pytest.mark.asyncio
async def test_a_pane_draws_its_newest_lines_from_its_first_frame(
    start_app: StartApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A view attaching to a run mounts its panes with their output already in them: the
    first frame that draws a pane shows the end of its output (the frame after, when the
    pane had heard its size, did; the first showed its oldest lines)."""
    first: dict[str, tuple[float, int, int]] = {}
    render_lines = AgentPane.render_lines

    def noting_first_paint(pane: AgentPane, crop: object) -> object:
        if pane.size.height and pane.task_id not in first:
            first[pane.task_id] = (pane.scroll_y, pane.max_scroll_y, len(pane.buffer))
        return render_lines(pane, crop)  # type: ignore[arg-type]

    monkeypatch.setattr(AgentPane, "render_lines", noting_first_paint)
    async with start_app(four_running(), size=(120, 40)) as ui:
        await ui.settle()
        shown = {p.task_id for p in panes(ui)}
    running = shown & set(RUNNING)
    assert running and running <= set(first)
    for task in running:
        scroll_y, max_scroll_y, lines = first[task]
        assert max_scroll_y > 0 and lines > 20, (task, first[task])  # more than it can show
        assert scroll_y == max_scroll_y, (task, first[task])
