"""Pilot tests: keys reach the engine's commands; the screen shows what the events say."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import TextArea

from delegate_tui.core.events import BatchApproved, Event, SchedulingPaused, TaskOutput
from delegate_tui.ui.config import UserConfig
from delegate_tui.ui.screens.dialogs import QuitDialog, RetryDialog, TextScreen
from delegate_tui.ui.screens.run import RunScreen
from delegate_tui.ui.widgets.agent_pane import AgentPane
from tests.ui.conftest import StartApp
from tests.ui.fake_source import FakeSource


@pytest.mark.asyncio
async def test_approve_whole_batch_and_a_toggled_selection(start_app: StartApp) -> None:
    source = FakeSource()
    source.mid_run()
    async with start_app(source, size=(160, 40)) as ui:
        await ui.pilot.press("a")
        assert source.last() == ("approve", ["service", "login-ui"])
        await ui.select("login-ui")
        await ui.press("space")
        await ui.pilot.press("a")
        assert source.last() == ("approve", ["service"])
        await ui.pilot.press("A")
        assert source.last() == ("approve", ["service", "login-ui"])
        await ui.pilot.press("h")
        assert source.last() == ("hold",)


@pytest.mark.asyncio
async def test_kill_asks_first_then_reaches_the_engine(start_app: StartApp) -> None:
    source = FakeSource()
    source.start_run()
    source.start_task("contract")
    async with start_app(source, size=(120, 32)) as ui:
        await ui.select("contract")
        await ui.press("k")
        await ui.press("n")  # cancelled: nothing sent
        assert source.commands == []
        await ui.press("k")
        await ui.press("y")
        assert source.commands == [("kill", "contract")]


@pytest.mark.asyncio
async def test_retry_dialog_shows_the_failure_and_sends_the_operators_words(
    start_app: StartApp,
) -> None:
    source = FakeSource()
    source.start_run()
    source.start_task("contract")
    source.output("contract", b"Traceback: \x1b[31mKeyError: 'email'\x1b[0m\r\n")
    source.fail_task("contract")
    async with start_app(source, size=(140, 40)) as ui:
        await ui.select("contract")
        await ui.press("r")
        dialog = ui.app.screen
        assert isinstance(dialog, RetryDialog)
        assert dialog.summary == "exited with status 2"
        assert "KeyError: 'email'" in dialog.tail and "\x1b" not in dialog.tail
        dialog.query_one(TextArea).insert("Use the users table from db/001.sql")
        await ui.press("ctrl+s")
        assert source.commands == [
            ("retry", "contract", "Use the users table from db/001.sql", False, False)
        ]


@pytest.mark.asyncio
async def test_skip_pause_resume_input_merge_and_refusals(start_app: StartApp) -> None:
    source = FakeSource()
    source.start_run()
    source.start_task("contract")
    async with start_app(source, size=(120, 32)) as ui:
        await ui.select("contract")
        await ui.press("i")
        await ui.press(*"yes", "enter")
        assert source.last() == ("send_input", "contract", "yes")
        await ui.pilot.press("p")
        assert source.last() == ("pause",)
        source.emit(SchedulingPaused())
        await ui.settle()
        await ui.pilot.press("p")
        assert source.last() == ("resume",)
        await ui.select("schema")
        source.answer = "schema is running; kill it first"
        await ui.press("s")
        assert source.last() == ("skip", "schema")
        assert any("kill it first" in toast for toast in ui.toasts())  # the engine's answer


@pytest.mark.asyncio
async def test_output_is_rendered_like_a_terminal(start_app: StartApp) -> None:
    source = FakeSource()
    source.mid_run()
    async with start_app(source, size=(160, 40)) as ui:
        await ui.select("schema")
        pane = ui.app.screen.query_one("#pane-schema", AgentPane)
        lines = [line for line in pane.buffer.plain_lines() if line]
        assert lines == [
            "◆ codex thinking",
            "✎ Edit db/001.sql",
            "+CREATE TABLE users (id uuid primary key);",
            "  tests 100% [##########]",
            "1 failed",
        ]
        assert all("\x1b" not in line for line in pane.buffer.plain_lines())
        assert "schema" in str(pane.border_title) and "succeeded" in str(pane.border_title)


@pytest.mark.asyncio
async def test_follow_tail_stops_when_scrolled_up_and_resumes(start_app: StartApp) -> None:
    source = FakeSource()
    source.start_run()
    source.start_task("contract")
    source.output("contract", b"".join(b"line %d\r\n" % i for i in range(300)))
    async with start_app(source, size=(120, 32)) as ui:
        await ui.select("contract")
        pane = ui.app.screen.query_one("#pane-contract", AgentPane)
        assert pane.follow and pane.is_vertical_scroll_end
        await ui.press("pageup")
        assert not pane.follow
        top = pane.scroll_y
        source.output("contract", b"more\r\n" * 20)
        await ui.settle()
        assert pane.scroll_y == top, "scrolled-up view stays put while output arrives"
        await ui.press("G")
        assert pane.follow and pane.is_vertical_scroll_end


@pytest.mark.asyncio
async def test_a_followed_flood_is_tailed_and_filled_in_when_scrolled_up(
    start_app: StartApp,
) -> None:
    source = FakeSource()
    source.start_run()
    source.start_task("contract")
    async with start_app(source, size=(120, 32)) as ui:
        await ui.select("contract")
        pane = ui.app.screen.query_one("#pane-contract", AgentPane)
        # 20,000 lines (about 300 KB) arrive between two redraws: far more than a
        # screen, so the following pane parses only the end of them.
        source.output("contract", b"".join(b"line %05d\r\n" % i for i in range(20_000)))
        await ui.settle()
        lines = pane.buffer.plain_lines()
        assert pane.partial and lines[-2] == "line 19999"
        assert len(lines) < 10_000  # the tail only, not everything
        assert pane.is_vertical_scroll_end
        await ui.press("pageup")
        # Looking back: the pane now holds its whole scrollback, parsed from the store,
        # and the view did not jump: the newest line is still a page away.
        lines = pane.buffer.plain_lines()
        assert not pane.partial and not pane.follow
        scrollback = ui.app.context.scrollback
        assert len(lines) == scrollback and lines[-2] == "line 19999"
        assert lines[0] == f"line {20_000 - scrollback + 1:05d}"  # the ring is full
        assert len(lines) - pane.scroll_y < 3 * pane.size.height


@pytest.mark.asyncio
async def test_search_highlights_and_counts_matches(start_app: StartApp) -> None:
    source = FakeSource()
    source.start_run()
    source.start_task("contract")
    source.output("contract", b"alpha\r\nerror: one\r\nbeta\r\nERROR two\r\n")
    async with start_app(source, size=(120, 32)) as ui:
        await ui.select("contract")
        await ui.press("slash")
        await ui.press(*"error", "enter")
        pane = ui.app.screen.query_one("#pane-contract", AgentPane)
        assert pane.matches == [1, 3]
        assert "2 match(es)" in str(pane.border_subtitle)


@pytest.mark.asyncio
async def test_theme_switch_is_remembered(start_app: StartApp, tmp_path: Path) -> None:
    source = FakeSource()
    source.start_run()
    async with start_app(source, size=(120, 32)) as ui:
        assert ui.app.theme == "delegate-dark"
        await ui.press("t")
        assert ui.app.theme == "delegate-light"
        assert ui.app.theme_variables["status-failed"] == "#cf222e"
    assert UserConfig.load(tmp_path / "config.yaml").theme == "delegate-light"


@pytest.mark.asyncio
async def test_bad_theme_file_is_reported_not_fatal(
    start_app: StartApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    themes = tmp_path / "xdg" / "delegate-tui" / "themes"
    themes.mkdir(parents=True)
    (themes / "broken.yaml").write_text("name: broken\nprimary: not-a-colour\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    source = FakeSource()
    source.start_run()
    async with start_app(source, size=(120, 32), theme="phosphor") as ui:
        assert ui.app.theme == "phosphor"
        assert any("broken.yaml: primary: not a colour" in toast for toast in ui.toasts())


@pytest.mark.asyncio
async def test_resize_hides_and_shows_the_sidebar(start_app: StartApp) -> None:
    source = FakeSource()
    source.mid_run()
    async with start_app(source, size=(200, 60)) as ui:
        assert ui.app.screen.query_one("#sidebar").display
        await ui.pilot.resize_terminal(80, 24)
        await ui.settle()
        assert not ui.app.screen.query_one("#sidebar").display
        await ui.press("c")
        assert ui.app.screen.query_one("#sidebar").display


@pytest.mark.asyncio
async def test_replay_mode_refuses_commands(start_app: StartApp) -> None:
    source = FakeSource()
    source.mid_run()
    async with start_app(source, size=(120, 32), read_only=True) as ui:
        await ui.press("a", "k", "r", "s")
        assert source.commands == []
        assert any("this is a replay" in toast for toast in ui.toasts()), "and it says so"


@pytest.mark.asyncio
async def test_details_and_help_screens(start_app: StartApp) -> None:
    source = FakeSource()
    source.mid_run()
    async with start_app(source, size=(140, 40)) as ui:
        await ui.select("hotfix")
        await ui.press("enter")
        assert isinstance(ui.app.screen, TextScreen)
        body = str(ui.app.screen.body)
        assert "edits overlap with service on src/auth/session.ts" in body
        assert "depends on  schema (succeeded)" in body
        await ui.press("escape", "question_mark")
        assert isinstance(ui.app.screen, TextScreen) and "retry with extra context" in str(
            ui.app.screen.body
        )


@pytest.mark.asyncio
async def test_quit_with_running_agents_asks_and_stops_them(start_app: StartApp) -> None:
    source = FakeSource()
    source.start_run()
    source.start_task("contract")
    async with start_app(source, size=(120, 32)) as ui:
        await ui.press("q")
        assert source.commands == []
        assert isinstance(ui.app.screen, QuitDialog)
        assert "1 agent(s) still running (contract)" in ui.app.screen.question
        assert not ui.app.screen.query("#detach"), "a run in this process cannot be detached"
        await ui.press("d")  # not offered: nothing happens
        assert isinstance(ui.app.screen, QuitDialog)
        await ui.press("e")
        assert source.commands[0][0] == "stop"
    assert ui.app.return_code == 1


@pytest.mark.asyncio
async def test_quit_with_nothing_running_still_asks_before_ending_the_run(
    start_app: StartApp,
) -> None:
    """A batch waiting for approval is work pending: q asks instead of ending the run."""
    source = FakeSource()
    source.start_run()
    source.propose(1, ("contract",))
    async with start_app(source, size=(120, 32)) as ui:
        await ui.press("q")
        assert isinstance(ui.app.screen, QuitDialog)
        assert "Batch 1 waits for your approval" in ui.app.screen.question
        await ui.press("escape")
        assert source.commands == []
        assert not isinstance(ui.app.screen, QuitDialog)


class AttachedSource(FakeSource):
    """A source that is a view of a run going on elsewhere (the run service's client)."""

    def __init__(self) -> None:
        super().__init__()
        self.detached = False

    def detach(self) -> None:
        self.detached = True


@pytest.mark.asyncio
async def test_quit_from_an_attached_view_offers_to_detach(start_app: StartApp) -> None:
    source = AttachedSource()
    source.start_run()
    source.start_task("contract")
    async with start_app(source, size=(80, 24)) as ui:
        await ui.press("q")
        assert isinstance(ui.app.screen, QuitDialog)
        assert ui.app.screen.query("#detach")
        await ui.press("d")
    assert source.detached and source.commands == []  # the run goes on
    assert ui.app.return_code == 0


@pytest.mark.asyncio
async def test_output_events_are_not_one_message_each(start_app: StartApp) -> None:
    """A flood of output chunks lands in the store, and panes redraw on the timer."""
    source = FakeSource()
    source.start_run()
    source.start_task("contract")
    async with start_app(source, size=(120, 32)) as ui:
        for i in range(2000):
            source.emit(
                TaskOutput(task="contract", attempt=1, data=b"%04d " % i + b"x" * 70 + b"\r\n"), 3.0
            )
        await ui.settle()
        pane = ui.app.screen.query_one("#pane-contract", AgentPane)
        shown = [pane.render_line(y).text.rstrip() for y in range(pane.size.height)]
        assert shown[-2].startswith("1999 x"), "the pane shows the newest line, at its foot"
        assert ui.app.context.store.version("contract") == 2000  # every chunk is kept
        source.emit(BatchApproved(batch=1, tasks=()))


@pytest.mark.asyncio
async def test_keys_are_rebindable_from_the_config(start_app: StartApp, tmp_path: Path) -> None:
    source = FakeSource()
    source.start_run()
    source.start_task("contract")
    config = UserConfig(path=tmp_path / "config.yaml", keys={"kill": "x", "pause": "ctrl+p"})
    async with start_app(source, config=config) as ui:
        await ui.select("contract")
        await ui.press("k")  # the default key no longer kills
        assert source.commands == [] and isinstance(ui.app.screen, RunScreen)
        await ui.press("x")
        await ui.press("y")
        assert source.commands == [("kill", "contract")]


def test_config_file_is_read_and_bad_values_reported(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("theme: phosphor\nkeys: {kill: x}\nscrollback: 12\n")
    config = UserConfig.load(path)
    assert config.theme == "phosphor" and config.keys == {"kill": "x"}
    assert config.scrollback == 5000
    assert config.problems == [f"{path}: scrollback: expected a whole number of at least 100"]
    config.save_theme("delegate-light")
    assert "theme: delegate-light" in path.read_text() and "kill: x" in path.read_text()


@pytest.mark.asyncio
async def test_collisions_show_in_sidebar_batch_warning_and_diff(start_app: StartApp) -> None:
    source = FakeSource()
    source.collision()
    async with start_app(source, size=(160, 40)) as ui:
        # Read as words: a long reason wraps onto lines of its own, indented.
        sidebar = " ".join(str(ui.app.screen.query_one("#conflicts").render()).split())
        assert "Collisions" in sidebar and "src/auth/session.ts" in sidebar
        assert "hotfix ✕ service" in sidebar and "predicted conflict: would not merge" in sidebar
        assert "out of scope: outside its declared edits" in sidebar
        assert ui.app.screen.query_one("#sidebar").border_title == "Conflicts (1)"
        await ui.select("hotfix")
        await ui.pilot.press("d")
        await ui.pilot.pause(0.5)
        assert isinstance(ui.app.screen, TextScreen) and ui.app.screen.title_text == "Diff: hotfix"
        await ui.pilot.press("escape")
        await ui.select("contract")
        await ui.press("right_square_bracket")  # the most severe collision first
        screen = ui.screen
        assert screen.finding.startswith("predicted-conflict:") and screen.selected == "hotfix"
        assert "▸ hotfix ✕ service" in str(ui.app.screen.query_one("#conflicts").render())
        await ui.pilot.press("d")
        await ui.pilot.pause(0.5)
        assert (
            isinstance(ui.app.screen, TextScreen)
            and ui.app.screen.title_text == "Diff: hotfix ✕ service"
        )


@pytest.mark.asyncio
async def test_header_counts_collisions_and_batch_bar_warns(start_app: StartApp) -> None:
    from delegate_tui.ui.widgets.batch_bar import BatchBar
    from delegate_tui.ui.widgets.header import RunHeader

    source = FakeSource()
    source.collision()
    source.propose(3, ("login-ui", "hotfix"), at=4.0)
    async with start_app(source, size=(200, 50)) as ui:
        header = str(ui.app.screen.query_one(RunHeader).render())
        assert "✘ 1 collision" in header and "⚠ 1" in header
        bar = str(ui.app.screen.query_one(BatchBar).render())
        assert "⚠ predicted-conflict: hotfix ✕ service on src/auth/session.ts" in bar
        await ui.select("hotfix")
        await ui.press("space")  # leave hotfix out: the warning goes with it
        assert "predicted-conflict" not in str(ui.app.screen.query_one(BatchBar).render())


@pytest.mark.asyncio
async def test_replay_in_the_app_seeks_with_keys(start_app: StartApp) -> None:
    from delegate_tui.core.replay import ReplaySource
    from delegate_tui.ui.widgets.replay_bar import ReplayBar

    events: list[Event] = []
    live = FakeSource()
    live.subscribe(events.append)
    live.mid_run()
    source = ReplaySource(events)
    source.playing = False
    async with start_app(source, size=(160, 40), read_only=True) as ui:
        assert source.index == 0
        await ui.press("greater_than_sign")
        assert source.index == len(events) and source.state.tasks["schema"].status == "succeeded"
        assert "event 12/12" in str(ui.app.screen.query_one(ReplayBar).render())
        await ui.press("comma", "comma")
        assert source.index == len(events) - 2
        await ui.press("less_than_sign")
        # The start is the run's first event: its plan shows, every task pending.
        assert source.index == 1 and source.state.plan is not None
        assert {t.status for t in source.state.tasks.values()} == {"pending"}
        assert "event 1/12" in str(ui.app.screen.query_one(ReplayBar).render())
        await ui.pilot.press("p")
        assert source.playing


@pytest.mark.asyncio
async def test_seeking_back_and_forth_faster_than_panes_are_removed(start_app: StartApp) -> None:
    """A seek drops every pane; the next one must not mount a pane whose twin is still going."""
    from delegate_tui.core.replay import ReplaySource
    from delegate_tui.ui.widgets.agent_pane import AgentPane

    events: list[Event] = []
    live = FakeSource()
    live.subscribe(events.append)
    live.mid_run()
    live.start_task("service", pid=2002)
    live.start_task("login-ui", pid=2003)
    source = ReplaySource(events)
    source.playing = False
    async with start_app(source, size=(160, 40), read_only=True) as ui:
        await ui.press("greater_than_sign")
        running = {t.id for t in source.state.tasks.values() if t.status == "running"}
        assert running, "the scene has agents running at its end"
        for _ in range(3):
            ui.screen.reset_panes()  # a seek, then the refresh that rebuilds panes
            ui.app._tick()
            await ui.press("comma", "greater_than_sign")
        panes = {p.task_id for p in ui.app.screen.query(AgentPane)}
        assert running <= panes


@pytest.mark.asyncio
async def test_a_pane_a_seek_dropped_comes_back_in_a_paused_replay(start_app: StartApp) -> None:
    """The redraw after a seek may find the old pane still being removed: it comes back
    at the next tick even when nothing else asks for one (paused, nothing running)."""
    from delegate_tui.core.replay import ReplaySource

    events: list[Event] = []
    live = FakeSource()
    live.subscribe(events.append)
    live.mid_run()  # at its end nothing runs: a paused replay has no reason to redraw
    source = ReplaySource(events)
    source.playing = False
    async with start_app(source, size=(160, 40), read_only=True) as ui:
        await ui.press("greater_than_sign")
        assert {p.task_id for p in ui.app.screen.query(AgentPane)} == {"contract"}
        source.seek(len(events))  # a seek to where it is: every pane is dropped...
        ui.app._tick()  # ...and the redraw comes before the old pane is gone
        await ui.settle()
        await ui.pilot.pause(0.3)
        assert {p.task_id for p in ui.app.screen.query(AgentPane)} == {"contract"}
        assert not ui.app.screen.query_one("#panes-empty").display


@pytest.mark.asyncio
async def test_runs_screen_lists_runs_and_opens_the_picked_one(tmp_path: Path) -> None:
    from delegate_tui.core.events import encode
    from delegate_tui.ui.screens.runs import RunsApp

    for run_id in ("20260101-000000-aaaa", "20260102-000000-bbbb"):
        folder = tmp_path / ".delegate" / "runs" / run_id
        folder.mkdir(parents=True)
        source = FakeSource()
        events: list[Event] = []
        source.subscribe(events.append)
        source.start_run()
        (folder / "events.jsonl").write_bytes(
            b"".join(
                encode(
                    __import__("dataclasses").replace(e, run_id=run_id)
                    if hasattr(e, "run_id")
                    else e
                )
                for e in events
            )
        )
    app = RunsApp(tmp_path)
    async with app.run_test(size=(120, 20)) as pilot:
        for _ in range(100):  # the screen reads the logs in the background
            await pilot.pause(0.05)
            if app.rows:
                break
        assert [row.run_id for row in app.rows] == [
            "20260102-000000-bbbb",
            "20260101-000000-aaaa",
        ]
        await pilot.pause(0.1)
        await pilot.press("down", "enter")
        await pilot.pause(0.2)
    assert (
        app.return_value
        == tmp_path / ".delegate" / "runs" / "20260101-000000-aaaa" / "events.jsonl"
    )


@pytest.mark.asyncio
async def test_a_long_held_list_is_cut_with_the_selected_task_kept(start_app: StartApp) -> None:
    from delegate_tui.core.events import HeldTask
    from delegate_tui.core.plan import parse_plan
    from delegate_tui.ui.widgets.conflict_sidebar import LIST_CAP, ConflictSidebar

    ids = [f"t{i:02d}" for i in range(40)]
    plan = parse_plan(
        "name: wide\ntasks:\n"
        + "".join(
            f"  - {{id: {i}, agent: shell, command: 'true', edits: [src/**]}}\n" for i in ids
        ),
        "plan.yaml",
    )
    source = FakeSource(plan)
    source.start_run()
    held = tuple(HeldTask(i, f"edits overlap with t00 on src/** ({i})") for i in ids[1:])
    source.propose(1, ("t00",), held=held)
    async with start_app(source, size=(200, 60)) as ui:
        await ui.select("t33")
        await ui.settle()
        text = str(ui.app.screen.query_one(ConflictSidebar).render())
        shown = [
            i for _, i in sorted((text.index(f"({i})"), i) for i in ids[1:] if f"({i})" in text)
        ]
        assert len(shown) == LIST_CAP and shown[0] == "t33"  # the selected task comes first
        assert f"… and {39 - LIST_CAP} more" in text


def test_pane_ids_are_one_per_task_id() -> None:
    """Task ids may hold dots; pane ids may not. ``a.b`` and ``a_b`` need different panes."""
    import re

    from delegate_tui.ui.widgets.agent_pane import AgentPane

    ids = ["a.b", "a_b", "a__b", "a_db", "a-b", "a..b", "v1.2_x"]
    panes = {AgentPane.id_for(t) for t in ids}
    assert len(panes) == len(ids)
    assert all(re.fullmatch(r"[A-Za-z_-][A-Za-z0-9_-]*", p) for p in panes)


@pytest.mark.asyncio
async def test_a_theme_for_one_run_is_not_saved(start_app: StartApp, tmp_path: Path) -> None:
    """`--theme NAME` is for this run; only `t` and the palette change the saved theme."""
    path = tmp_path / "config.yaml"
    path.write_text("theme: phosphor\n")
    source = FakeSource()
    source.start_run()
    async with start_app(source, theme="delegate-light", config=UserConfig.load(path)) as ui:
        assert ui.app.theme == "delegate-light"
    assert UserConfig.load(path).theme == "phosphor"
    async with start_app(source, theme="delegate-light", config=UserConfig.load(path)) as ui:
        await ui.press("t")
        chosen = ui.app.theme
    assert chosen != "delegate-light" and UserConfig.load(path).theme == chosen
