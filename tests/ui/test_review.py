"""The review screen in Pilot: edit a prompt, drop a task, see the batches change, start the run.

The plan is the demo agent's draft for a goal in the demo repository, written
as ``delegate-tui draft`` writes it; the run started from the review goes
through the real engine.
"""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest
import yaml
from textual.widgets import Input, OptionList, Static, TextArea

from delegate_tui.core import drafting, plan_edits
from delegate_tui.core.events import TaskStarted
from delegate_tui.core.plan import load_plan
from delegate_tui.demo import drafts
from delegate_tui.demo.scaffold import make_demo_repo
from delegate_tui.ui.config import UserConfig
from delegate_tui.ui.screens.review import ReviewApp, ReviewScreen, TaskEditDialog
from tests.conftest import run_engine


@pytest.fixture
def drafted(tmp_path: Path) -> Path:
    """The demo agent's plan for "add rate limiting", written as `draft` writes it."""
    repo = make_demo_repo(tmp_path / "demo").parent.parent
    data, why = drafting.normalise(
        drafts.good_plan("add rate limiting", repo), agent="demo", repo=".."
    )
    path = repo / ".plans" / "rl.yaml"
    a = plan_edits.assess(data, why, str(path))
    assert a.runnable
    path.write_text(a.text)
    return path


def app_for(path: Path, theme: str | None = None, hand_written: bool = False) -> ReviewApp:
    return ReviewApp(
        path,
        path.read_text(),
        theme=theme,
        config=UserConfig(path=path.parent / "no-config.yaml"),
        hand_written=hand_written,
    )


def screen_of(app: ReviewApp) -> ReviewScreen:
    (screen,) = [s for s in app.screen_stack if isinstance(s, ReviewScreen)]
    return screen


def text_of(app: ReviewApp, selector: str) -> str:
    return str(screen_of(app).query_one(selector, Static).render())


async def select(app: ReviewApp, task: str) -> None:
    tasks = screen_of(app).query_one("#review-tasks", OptionList)
    ids = [str(tasks.get_option_at_index(i).id) for i in range(tasks.option_count)]
    tasks.highlighted = ids.index(task)


async def test_edit_a_prompt_drop_a_task_see_batches_change_and_start_the_run(
    drafted: Path,
) -> None:
    app = app_for(drafted)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        screen = screen_of(app)
        outlook = text_of(app, "#review-outlook")
        assert "First batch: contract" in outlook
        assert "2.     at 6s: module, tests, ui" in outlook
        assert "✔ ready" in text_of(app, "#review-title")

        # Edit the module's prompt inline.
        await select(app, "module")
        await pilot.pause()
        assert "Implement it in src/shop/rate_limiting.py" in text_of(app, "#review-task")
        await pilot.press("e")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, TaskEditDialog)
        area = dialog.query_one("#edit-prompt", TextArea)
        area.text = "Add a token bucket in src/shop/rate_limiting.py:\n{{ outputs.contract }}\n"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "Add a token bucket" in text_of(app, "#review-task")
        assert "● unsaved" in text_of(app, "#review-title")

        # Drop the UI task: the second batch loses it.
        await select(app, "ui")
        await pilot.press("d")
        await pilot.pause()
        outlook = text_of(app, "#review-outlook")
        assert "2.     at 6s: module, tests\n" in outlook
        assert "ui" not in plan_edits.ids(screen.data)
        assert screen.selected == "wire"  # the cursor stays where the dropped task was
        review = next(t for t in plan_edits.tasks_of(screen.data) if t["id"] == "review")
        assert review["depends_on"] == ["wire", "tests", "contract"]

        # Enter starts the run: the reviewed plan is saved first.
        await pilot.press("enter")
        await pilot.pause()
    assert app.return_value == "run"
    plan = load_plan(drafted)
    assert "ui" not in plan.ids
    prompt = plan.task("module").prompt
    assert prompt is not None and prompt.startswith("Add a token bucket")
    assert "  # · why: The core of the change owns one new file" in drafted.read_text()

    # The run the review started: the real engine, the reviewed plan.
    state, recorder, _engine = await asyncio.to_thread(run_engine, plan)
    assert state.status == "succeeded"
    started = {e.task: e for e in recorder.of(TaskStarted) if isinstance(e, TaskStarted)}
    assert set(started) == set(plan.ids)
    assert started["module"].prompt.startswith("Add a token bucket in src/shop/rate_limiting.py")


async def test_a_plan_with_problems_does_not_start_and_undo_brings_it_back(drafted: Path) -> None:
    app = app_for(drafted)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await select(app, "wire")
        await pilot.press("e")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, TaskEditDialog)
        dialog.query_one("#edit-depends", Input).value = "modul"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "✘ 1 problem" in text_of(app, "#review-title")
        assert "unknown task 'modul' (did you mean 'module'?)" in text_of(app, "#review-outlook")
        before = drafted.read_text()
        await pilot.press("enter")
        await pilot.pause()
        assert app.is_running and isinstance(app.screen, ReviewScreen)
        assert drafted.read_text() == before  # nothing saved, nothing started
        await pilot.press("u")
        await pilot.pause()
        assert "✔ ready" in text_of(app, "#review-title")
        assert "● unsaved" not in text_of(app, "#review-title")
        await pilot.press("q")
        await pilot.pause()
    assert app.return_value is None


async def test_merge_two_tasks_and_quit_asks_before_losing_the_edit(drafted: Path) -> None:
    app = app_for(drafted)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await select(app, "module")
        await pilot.press("m")
        await pilot.pause()
        await pilot.press(*"wire", "enter")
        await pilot.pause()
        screen = screen_of(app)
        assert plan_edits.ids(screen.data) == ["contract", "module", "tests", "ui", "review"]
        module = plan_edits.tasks_of(screen.data)[1]
        assert module["edits"] == ["src/shop/rate_limiting.py", "src/shop/app.py"]
        await pilot.press("q")
        await pilot.pause()
        assert app.is_running  # the first q warns about the unsaved merge
        await pilot.press("s")
        await pilot.pause()
        await pilot.press("q")
        await pilot.pause()
    assert app.return_value is None
    assert load_plan(drafted).ids == ["contract", "module", "tests", "ui", "review"]


async def test_a_task_edited_in_editor_replaces_it(drafted: Path, tmp_path: Path) -> None:
    editor = tmp_path / "editor.sh"
    editor.write_text(
        "#!/bin/sh\nsed -i 's/^id: tests$/id: checks/; s/^estimate: 8s$/estimate: 3s/' \"$1\"\n"
    )
    editor.chmod(editor.stat().st_mode | stat.S_IEXEC)
    os.environ["EDITOR"] = str(editor)
    os.environ.pop("VISUAL", None)
    try:
        app = app_for(drafted)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            await select(app, "tests")
            await pilot.press("E")
            await pilot.pause()
            screen = screen_of(app)
            assert "checks" in plan_edits.ids(screen.data)
            wire = next(t for t in plan_edits.tasks_of(screen.data) if t["id"] == "review")
            assert "checks" in wire["depends_on"]
            assert screen.selected == "checks"
            assert "why: Tests are written against the contract" in text_of(app, "#review-task")
            assert screen.assessment.runnable
    finally:
        del os.environ["EDITOR"]


async def test_a_hand_written_plan_is_kept_in_bak_when_the_review_rewrites_it(
    tmp_path: Path,
) -> None:
    path = make_demo_repo(tmp_path / "demo")
    original = path.read_text()
    app = app_for(path, hand_written=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("s")  # nothing changed: the file stays as written
        await pilot.pause()
        assert path.read_text() == original
        await select(app, "guide")
        await pilot.press("d")
        await pilot.press("s")
        await pilot.pause()
    assert path.with_name("demo.yaml.bak").read_text() == original
    assert "guide" not in load_plan(path).ids
    assert yaml.safe_load(path.read_text())["agents"] == yaml.safe_load(original)["agents"]


@pytest.mark.parametrize("theme", ["delegate-dark", "delegate-light"])
async def test_the_review_fits_80x24(drafted: Path, theme: str) -> None:
    app = app_for(drafted, theme=theme)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert app.theme == theme
        screen = screen_of(app)
        assert screen.has_class("-short")
        for selector in ("#review-tasks", "#review-detail", "#review-batches"):
            region = screen.query_one(selector).region
            assert region.width > 0 and region.height >= 5, selector
            assert region.right <= 80 and region.bottom <= 23, selector
        await pilot.press("e")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, TaskEditDialog)
        save = dialog.query_one("#save")
        dialog.query_one("#task-edit").scroll_to_widget(save, animate=False)
        await pilot.pause()
        assert save.region.bottom <= 24
