"""What the live and the replay screen offer: which keys act, what help says, what runs git.

The footer shows a command the run would refuse now as disabled (the same
``core.commands.refusal`` the engine asks), a replay shows playback instead
of commands, and a diff never runs a program from the repository's config,
nor any git at all in a replay.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from rich.console import Console, RenderableType

from delegate_tui.core.events import Event
from delegate_tui.core.replay import ReplaySource
from delegate_tui.ui.screens.dialogs import TextScreen
from tests.conftest import git
from tests.ui.conftest import Running, StartApp
from tests.ui.fake_source import FakeSource


def footer(ui: Running) -> dict[str, bool]:
    """The keys shown in the footer: what each is called, and whether it is enabled."""
    return {
        str(getattr(key, "description", "")): not key.has_class("-disabled")
        for key in ui.app.screen.query("FooterKey")
        if getattr(key, "description", "")
    }


def plain(renderable: RenderableType) -> str:
    """A renderable as the text a terminal would show."""
    console = Console(width=120, color_system=None)
    with console.capture() as captured:
        console.print(renderable)
    return captured.get()


async def dialog(ui: Running, seconds: float = 5.0) -> TextScreen | None:
    """The text dialog once it is open (diffs load on a thread), or None."""
    for _ in range(int(seconds / 0.1)):
        if isinstance(ui.app.screen, TextScreen):
            return ui.app.screen
        await ui.pilot.pause(0.1)
    return None


@pytest.mark.asyncio
async def test_refused_commands_show_disabled_and_their_keys_say_why(start_app: StartApp) -> None:
    source = FakeSource()
    source.start_run()
    source.start_task("contract")
    async with start_app(source, size=(160, 40)) as ui:
        await ui.select("schema")  # pending: it can be skipped, not killed or retried
        keys = footer(ui)
        assert keys["Kill"] is False and keys["Retry"] is False and keys["Approve"] is False
        assert keys["Skip"] and keys["Pause"] and keys["Details"]
        await ui.press("k")
        assert source.commands == []
        assert "schema is not running (pending)" in ui.toasts()
        await ui.select("contract")  # running: it can be killed, not skipped
        keys = footer(ui)
        assert keys["Kill"] and not keys["Skip"] and not keys["Retry"]
        source.fail_task("contract")
        await ui.settle()
        keys = footer(ui)
        assert keys["Retry"] and not keys["Kill"]
        source.propose(1, ("schema",))
        await ui.settle()
        assert footer(ui)["Approve"]


def recorded(scene: FakeSource) -> list[Event]:
    """The events of a scene played on a fake source, as a log holds them."""
    events: list[Event] = []
    scene.subscribe(events.append)
    return events


@pytest.mark.asyncio
async def test_replay_offers_playback_not_commands(start_app: StartApp) -> None:
    live = FakeSource()
    events = recorded(live)
    live.mid_run()
    source = ReplaySource(events)
    source.playing = False
    async with start_app(source, size=(160, 40), read_only=True) as ui:
        await ui.press("greater_than_sign")
        keys = footer(ui)
        assert "Pause" in keys and not {"Approve", "Kill", "Retry", "Skip"} & set(keys)
        titles = [title for title, _, _ in ui.screen.palette_commands()]
        assert "Play or pause" in titles and "Kill task" not in titles
        await ui.press("question_mark")
        assert isinstance(ui.app.screen, TextScreen)
        help_text, legend = str(ui.app.screen.body).split("Task glyphs")
        assert "play or pause" in help_text and "next failure" in help_text
        assert "killed" in legend  # statuses are named; their keys are not
        for live_only in ("approve", "kill", "retry", "skip", "merge", "finish", "diff"):
            assert live_only not in help_text, live_only


@pytest.mark.asyncio
@pytest.mark.parametrize("tool", ["diff.external", "textconv"])
async def test_a_diff_runs_no_diff_tool_configured_in_the_repository(
    start_app: StartApp, repo: Path, tmp_path: Path, tool: str
) -> None:
    marker = tmp_path / "the-repository's-tool-ran"
    script = tmp_path / "tool.sh"
    script.write_text(f'#!/bin/sh\ntouch "{marker}"\ncat "$1"\n')
    script.chmod(0o755)
    if tool == "diff.external":
        git(repo, "config", "diff.external", str(script))
    else:
        git(repo, "config", "diff.conv.textconv", str(script))
        (repo / ".git" / "info").mkdir(exist_ok=True)
        (repo / ".git" / "info" / "attributes").write_text("*.py diff=conv\n")
    base = git(repo, "rev-parse", "HEAD").strip()
    (repo / "src" / "shared.py").write_text("OWNER = 'service'\nA = 1\nB = 2\n")
    git(repo, "commit", "-qam", "the service's work")
    tip = git(repo, "rev-parse", "HEAD").strip()
    source = FakeSource()
    source.start_run(repo=str(repo), base_commit=base)
    source.start_task("service", base_commit=base)
    source.commit_task("service", tip)
    async with start_app(source, size=(160, 40)) as ui:
        await ui.select("service")
        await ui.press("d")
        shown = await dialog(ui)
        assert shown is not None and shown.title_text == "Diff: service"
        assert "+OWNER = 'service'" in plain(shown.body)  # git's own diff
    assert not marker.exists(), f"{tool} ran"


@pytest.mark.asyncio
async def test_a_replay_runs_no_git_for_a_diff(
    start_app: StartApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "git-ran"
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "git").write_text(f'#!/bin/sh\ntouch "{marker}"\n')
    (fake_bin / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:{os.environ['PATH']}")

    def scene(source: FakeSource) -> None:
        source.start_run(repo=str(tmp_path), base_commit="b0")
        source.start_task("service", base_commit="b0")
        source.commit_task("service", "c1")

    # A live run asks git (the fake one on PATH): the marker shows it would be seen.
    live = FakeSource()
    scene(live)
    async with start_app(live, size=(160, 40)) as ui:
        await ui.select("service")
        await ui.press("d")
        assert await dialog(ui) is not None
    assert marker.exists()
    marker.unlink()
    # The same run replayed: `d` says it is a replay and nothing runs.
    recording = FakeSource()
    events = recorded(recording)
    scene(recording)
    replay = ReplaySource(events)
    replay.playing = False
    async with start_app(replay, size=(160, 40), read_only=True) as ui:
        await ui.press("greater_than_sign")
        await ui.select("service")
        await ui.press("d")
        assert await dialog(ui, seconds=1.0) is None
        assert any("this is a replay" in toast for toast in ui.toasts())
        ui.screen.action_diff()  # not through the key either
        await asyncio.sleep(0.5)
    assert not marker.exists(), "a replay ran git"
