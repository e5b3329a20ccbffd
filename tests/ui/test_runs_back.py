"""Pilot tests: esc in a replay opened from ``runs --open`` goes back to the runs
list, on the run that was open (issue 12, item 17)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from delegate_tui.core.events import Event, encode
from delegate_tui.core.replay import ReplaySource
from delegate_tui.ui.screens.runs import RunsApp, browse
from tests.ui.conftest import StartApp
from tests.ui.fake_source import FakeSource
from tests.ui.test_screens import footer

RUN_IDS = ("20260101-000000-aaaa", "20260102-000000-bbbb", "20260103-000000-cccc")


def recorded_runs(repo: Path) -> list[Path]:
    """Three runs' logs in ``repo``, oldest first."""
    logs = []
    for run_id in RUN_IDS:
        folder = repo / ".delegate" / "runs" / run_id
        folder.mkdir(parents=True)
        source = FakeSource()
        events: list[Event] = []
        source.subscribe(events.append)
        source.start_run()
        log = folder / "events.jsonl"
        log.write_bytes(
            b"".join(
                encode(dataclasses.replace(e, run_id=run_id) if hasattr(e, "run_id") else e)  # type: ignore[call-arg]
                for e in events
            )
        )
        logs.append(log)
    return logs


@pytest.mark.asyncio
@pytest.mark.parametrize("from_list", [True, False], ids=["from-runs-list", "replay-alone"])
async def test_esc_in_a_replay_goes_back_to_the_runs_list(
    start_app: StartApp, from_list: bool
) -> None:
    live = FakeSource()
    events: list[Event] = []
    live.subscribe(events.append)
    live.mid_run()
    source = ReplaySource(events)
    source.playing = False
    async with start_app(source, size=(120, 32), read_only=True) as ui:
        went_back: list[bool] = []
        if from_list:
            ui.app.context.back = lambda: went_back.append(True)
            ui.screen.refresh_bindings()
        await ui.settle()
        assert ("Runs" in footer(ui)) is from_list, "esc is offered only with a list to go to"
        await ui.press("escape")
        assert went_back == ([True] if from_list else [])


@pytest.mark.asyncio
async def test_the_runs_list_opens_on_the_run_that_was_open(tmp_path: Path) -> None:
    logs = recorded_runs(tmp_path)
    app = RunsApp(tmp_path, current=logs[0])  # the oldest, last in the list
    async with app.run_test(size=(120, 20)) as pilot:
        for _ in range(100):  # the screen reads the logs in the background
            await pilot.pause(0.05)
            if app.rows:
                break
        await pilot.pause(0.2)
        await pilot.press("enter")
        await pilot.pause(0.2)
    assert app.return_value == logs[0]


def test_browse_goes_back_to_the_list_until_a_replay_is_quit(tmp_path: Path) -> None:
    logs = recorded_runs(tmp_path)
    shown_lists: list[Path | None] = []
    replays: list[Path] = []
    picks = iter([logs[2], logs[1], logs[0]])

    def pick(current: Path | None) -> Path | None:
        shown_lists.append(current)
        return next(picks)

    def replay(log: Path, back: object) -> None:
        replays.append(log)
        if len(replays) < 3:
            back()  # type: ignore[operator]  # esc: back to the list
        # the third is quit with q: the loop ends

    browse(tmp_path, replay, pick)
    assert replays == [logs[2], logs[1], logs[0]]
    assert shown_lists == [None, logs[2], logs[1]], "the list opens on the run just left"
    shown_lists.clear()
    browse(tmp_path, replay, lambda current: shown_lists.append(current))
    assert shown_lists == [None], "no run picked: nothing replayed"
