"""Pilot tests: at 80x24 dialogs fit or scroll to the focused field, and toasts
cover neither the batch bar nor a dialog (issue 12, item 10)."""

from __future__ import annotations

import pytest
from textual.geometry import Region
from textual.widget import Widget

from delegate_tui.ui.screens.dialogs import RetryDialog
from delegate_tui.ui.widgets.batch_bar import BatchBar
from tests.ui.conftest import Running, StartApp
from tests.ui.fake_source import FakeSource


def seen(ui: Running, widget: Widget) -> bool:
    """The whole widget is on screen, and nothing covers its middle."""
    region = widget.region
    screen = ui.app.screen
    if not region or not screen.region.contains_region(region):
        return False
    under, _ = screen.get_widget_at(region.x + region.width // 2, region.y + region.height // 2)
    return under is widget or widget in under.ancestors


def toast_regions(ui: Running) -> list[Region]:
    """Where toasts are drawn now (hidden ones are not)."""
    return [
        toast.region
        for toast in ui.app.screen.query("Toast")
        if toast.visible and toast.region and toast.styles.visibility != "hidden"
    ]


@pytest.mark.asyncio
async def test_the_retry_dialog_shows_each_field_as_it_is_focused_at_80x24(
    start_app: StartApp,
) -> None:
    source = FakeSource()
    source.start_run()
    source.start_task("contract")
    source.output("contract", b"".join(b"line %d of the failure\r\n" % i for i in range(40)))
    source.fail_task("contract")
    async with start_app(source, size=(80, 24)) as ui:
        await ui.select("contract")
        await ui.press("r")
        dialog = ui.app.screen
        assert isinstance(dialog, RetryDialog)
        assert seen(ui, dialog.query_one("#context")), "typing is not blind"
        await ui.press("h", "i")
        assert dialog.query_one("#context").has_focus
        for field in ("#keep", "#retry", "#cancel"):
            await ui.press("tab")
            widget = dialog.query_one(field)
            assert widget.has_focus and seen(ui, widget), field
        await ui.press("shift+tab", "shift+tab", "shift+tab")
        assert seen(ui, dialog.query_one("#context"))


@pytest.mark.asyncio
async def test_toasts_cover_neither_the_batch_bar_nor_a_dialog(start_app: StartApp) -> None:
    source = FakeSource()
    source.mid_run()  # batch 2 waits
    async with start_app(source, size=(80, 24)) as ui:
        for n in range(3):
            ui.app.notify(f"something happened {n}", timeout=30)
        await ui.settle()
        bar = ui.screen.query_one(BatchBar).region
        assert bar and toast_regions(ui)
        assert not any(toast.overlaps(bar) for toast in toast_regions(ui))
        await ui.select("contract")
        await ui.press("question_mark")  # help: a dialog over the run screen
        await ui.settle()
        dialog = ui.app.screen.query_one(".dialog").region
        assert not any(toast.overlaps(dialog) for toast in toast_regions(ui))
