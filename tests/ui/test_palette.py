"""Pilot tests: the command palette offers what works here (issue 12, items 8 and 15).

Its theme picker lists delegate-tui's themes only (Textual's built-in ones
style none of the status colours), its Quit asks first like ``q``, and
Textual's entries that do nothing useful here are left out.
"""

from __future__ import annotations

import pytest
from textual.command import CommandList, CommandPalette

from delegate_tui.resources import data_dir
from delegate_tui.ui.screens.dialogs import QuitDialog
from delegate_tui.ui.themes import load_themes
from tests.ui.conftest import Running, StartApp
from tests.ui.fake_source import FakeSource


async def palette_hits(ui: Running, query: str) -> list[str]:
    """The palette open on ``query``: the titles it offers."""
    await ui.press(*query)
    await ui.pilot.pause(0.5)
    options = ui.app.screen.query_one(CommandList)
    return [
        str(options.get_option_at_index(i).prompt).split("\n")[0]
        for i in range(options.option_count)
    ]


@pytest.mark.asyncio
async def test_the_theme_picker_lists_the_apps_themes_only(start_app: StartApp) -> None:
    source = FakeSource()
    source.mid_run()
    async with start_app(source, size=(120, 32)) as ui:
        await ui.press("ctrl+p")
        assert isinstance(ui.app.screen, CommandPalette)
        titles = await palette_hits(ui, "theme")
        assert titles[0] == "Theme", titles
        await ui.press("enter")  # the theme picker
        await ui.pilot.pause(0.5)
        options = ui.app.screen.query_one(CommandList)
        offered = sorted(
            str(options.get_option_at_index(i).prompt) for i in range(options.option_count)
        )
        shipped, _ = load_themes([data_dir("themes")])  # the test's config folder has none
        assert offered == sorted(theme.name for theme in shipped)
        assert {"delegate-dark", "delegate-light"} <= set(offered)
        assert not [name for name in offered if name.startswith("textual-")]
        assert "nord" not in offered and "gruvbox" not in offered


@pytest.mark.asyncio
async def test_the_palettes_quit_asks_first_and_its_dead_entries_are_gone(
    start_app: StartApp,
) -> None:
    source = FakeSource()
    source.start_run()
    source.start_task("contract")
    async with start_app(source, size=(120, 32)) as ui:
        await ui.press("ctrl+p")
        titles = await palette_hits(ui, "quit")
        assert titles and titles[0] == "Quit"
        await ui.press("enter")
        await ui.settle()
        assert isinstance(ui.app.screen, QuitDialog), "the palette's Quit asks like q"
        assert source.commands == [], "no agent was ended"
        await ui.press("escape")
        await ui.press("ctrl+p")
        titles = await palette_hits(ui, "maximize")
        assert "Maximize" not in titles
        await ui.press(*["backspace"] * 8)
        titles = await palette_hits(ui, "keys")
        assert "Keys and glyphs" in titles and "Keys" not in titles


@pytest.mark.asyncio
@pytest.mark.parametrize("read_only", [False, True], ids=["live", "replay"])
async def test_every_footer_key_shows_whole_at_80_columns(
    start_app: StartApp, read_only: bool
) -> None:
    """The roomy footer cut "q Quit" off at 80 columns."""
    source = FakeSource()
    source.mid_run()
    async with start_app(source, size=(80, 24), read_only=read_only) as ui:
        keys = list(ui.screen.query("FooterKey"))
        assert any("Quit" in str(getattr(key, "description", "")) for key in keys)
        for key in keys:
            assert key.region.right <= 80 and key.region.width > 0, key
            covering = [k for k in keys if k is not key and k.region.overlaps(key.region)]
            assert not covering, (key, covering)  # "^p palette" sat on "? Help q Quit"
