"""Pilot tests: under a flood of output the screen draws less, and still shows the newest.

Four agents print as fast as the test can feed them. What is counted is what
Textual itself asks of each pane: how often the compositor has it draw itself
(``render_lines``, once per frame the pane is in) and how often its first row is
drawn anew (``render_line(0)``: Textual asks again only for rows a refresh made
dirty). A flooded pane redraws at most four times a second when selected and
once a second otherwise, in frames it shares with the others; when the flood
stops, the selected pane's last line is on screen within a second (its quarter
second, longer while a busy machine makes the loop lag), the others' within their
second and a half.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
from textual.geometry import Region
from textual.strip import Strip

from delegate_tui.ui.widgets.agent_pane import AgentPane
from delegate_tui.ui.widgets.task_graph import TaskGraph
from tests.ui.conftest import Running, StartApp
from tests.ui.fake_source import FakeSource

RUNNING = ("schema", "service", "login-ui", "hotfix")
FLOOD_S = 5.0


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Counter[str], Counter[str]]]:
    """Per task: frames its pane was drawn in, and times its first row was drawn anew."""
    frames: Counter[str] = Counter()
    rows: Counter[str] = Counter()
    render_lines, render_line = AgentPane.render_lines, AgentPane.render_line

    def counted_lines(self: AgentPane, crop: Region) -> list[Strip]:
        frames[self.task_id] += 1
        return render_lines(self, crop)

    def counted_line(self: AgentPane, y: int) -> Strip:
        if y == 0:
            rows[self.task_id] += 1
        return render_line(self, y)

    monkeypatch.setattr(AgentPane, "render_lines", counted_lines)
    monkeypatch.setattr(AgentPane, "render_line", counted_line)
    yield frames, rows


def running_four() -> FakeSource:
    source = FakeSource()
    source.start_run()
    source.start_task("contract", at=0.5, pid=1000)
    source.succeed_task("contract", at=1.0)
    for n, task in enumerate(RUNNING):
        source.start_task(task, at=1.5, pid=2000 + n)
    return source


async def flood(ui: Running, source: FakeSource, seconds: float) -> int:
    """Every agent prints 100 lines every 20 ms for ``seconds``; the lines printed each."""
    printed = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for task in RUNNING:
            source.output(
                task,
                b"".join(
                    b"%s %07d %s\r\n" % (task.encode(), printed + i, b"x" * 60) for i in range(100)
                ),
            )
        printed += 100
        await ui.pilot.pause(0.02)
    return printed


def shown(pane: AgentPane) -> list[str]:
    """The pane's rows as the screen shows them."""
    return [pane.render_line(y).text.rstrip() for y in range(pane.size.height)]


@pytest.mark.asyncio
async def test_a_flooded_pane_redraws_a_few_times_a_second_in_shared_frames(
    start_app: StartApp, drawn: tuple[Counter[str], Counter[str]]
) -> None:
    frames, rows = drawn
    source = running_four()
    async with start_app(source, size=(200, 60)) as ui:
        await ui.select("schema")
        assert {p.task_id for p in ui.screen.query(AgentPane)} == set(RUNNING)
        frames.clear()
        rows.clear()
        await flood(ui, source, FLOOD_S)
    # Four redraws a second for the selected pane, one for the others (each may come
    # up to half an interval early once, when its flood begins, and a busy machine may
    # split a redraw in two), whatever the flood. (Two a second, the old cadence, is 10.)
    # The selected pane's title clock also steps once a second, apart from its redraws.
    assert 0 < rows["schema"] <= 5 * FLOOD_S + 2, (rows, frames)
    for task in RUNNING[1:]:
        assert 0 < rows[task] <= 1 * FLOOD_S + 3, (rows, frames)
    # Each pane is in few frames: the panes redraw together, not on every tick in turn
    # (four frames a second, and a few more when a busy machine splits one in two).
    for task in RUNNING:
        assert frames[task] <= 6 * FLOOD_S + 2, (frames, rows)


@pytest.mark.asyncio
async def test_the_newest_output_is_on_screen_soon_after_a_flood_stops(
    start_app: StartApp,
) -> None:
    source = running_four()
    async with start_app(source, size=(200, 60)) as ui:
        await ui.select("schema")
        printed = await flood(ui, source, 1.5)
        for task in RUNNING:
            source.output(task, b"%s the end\r\n" % task.encode())
        stopped = time.monotonic()
        panes = {p.task_id: p for p in ui.screen.query(AgentPane)}
        took: dict[str, float] = {}
        while len(took) < len(RUNNING) and time.monotonic() - stopped < 3:
            await ui.pilot.pause(0.02)
            for task in RUNNING:
                if task not in took and f"{task} the end" in shown(panes[task]):
                    took[task] = time.monotonic() - stopped
        assert set(took) == set(RUNNING), f"not on screen 3 s after the flood: {took}"
        assert took["schema"] < 1.0, f"the selected pane's last line: {took}"
        assert max(took.values()) < 1.6, f"the last lines took {took}"
        for task in RUNNING:  # the line before it too: nothing was left behind
            assert any(f"{task} {printed - 1:07d}" in row for row in shown(panes[task]))
        # Once the panes are quiet, a new line shows at the next tick or so.
        await ui.pilot.pause(1.0)
        source.output("hotfix", b"hotfix one more\r\n")
        quiet = time.monotonic()
        while "hotfix one more" not in shown(panes["hotfix"]) and time.monotonic() - quiet < 2:
            await ui.pilot.pause(0.01)
        assert time.monotonic() - quiet < 0.5, "a quiet pane redraws at once"


class AttachedSource(FakeSource):
    """A source that, as an attached view's client does, lets the view's input go first."""

    def __init__(self) -> None:
        super().__init__()
        self.input_pending: Callable[[], bool] | None = None

    def yield_to(self, input_pending: Callable[[], bool]) -> None:
        self.input_pending = input_pending


@pytest.mark.asyncio
async def test_a_key_holds_an_attached_views_events_until_its_frame_is_drawn(
    start_app: StartApp,
) -> None:
    source = AttachedSource()
    source.start_run()
    for n, task in enumerate(RUNNING):
        source.start_task(task, at=1.5, pid=2000 + n)
    async with start_app(source, size=(200, 60)) as ui:
        assert source.input_pending is not None, "the app lets its source know of keys"
        frames: list[bool] = []  # whether the key still waited, at each frame after it
        ui.app.key_arrived()  # as the driver's input thread says, before the loop has it
        assert source.input_pending(), "a key on its way holds the events back"
        await ui.pilot.press("down")
        ui.app.call_after_refresh(lambda: frames.append(source.input_pending()))
        ui.app.screen.refresh()
        await ui.settle()
        assert frames == [False], "once the key's frame is drawn, the events go on"
        assert not source.input_pending()


@pytest.mark.asyncio
async def test_a_pane_selected_under_a_flood_is_highlighted_with_its_next_redraw(
    start_app: StartApp, drawn: tuple[Counter[str], Counter[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The highlight moves with the newly selected pane's redraw (which comes at the
    selected pane's pace at once), not in a frame of its own nor at its old pace."""
    _, rows = drawn
    synced: Counter[str] = Counter()
    sync = AgentPane.sync

    def counted_sync(self: AgentPane) -> bool:
        changed = sync(self)
        synced[self.task_id] += changed
        return changed

    monkeypatch.setattr(AgentPane, "sync", counted_sync)
    source = running_four()
    async with start_app(source, size=(200, 60)) as ui:
        await ui.select("schema")
        pane = ui.screen.query_one(f"#{AgentPane.id_for('login-ui')}", AgentPane)
        flooding = asyncio.create_task(flood(ui, source, 3.0))
        await ui.pilot.pause(1.0)
        ui.screen.query_one(TaskGraph).select("login-ui")  # as the cursor keys do
        moved = time.monotonic()
        rows.clear()
        synced.clear()
        highlighted_at = 0.0
        while not highlighted_at and time.monotonic() - moved < 3:
            await ui.pilot.pause(0.01)
            if pane.has_class("selected"):
                highlighted_at = time.monotonic() - moved
        await ui.pilot.pause(0.3)
        await flooding
    assert highlighted_at, "the selected pane is highlighted"
    assert highlighted_at < 1.0, f"highlighted after {highlighted_at:.2f} s"
    # Each time it was drawn anew it had new output: the highlight took no frame of its own
    # (fewer frames than syncs when a busy machine draws two syncs in one frame).
    assert 0 < rows["login-ui"] <= synced["login-ui"], (rows, synced)
