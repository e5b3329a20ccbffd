"""The timeline view (``g``) in the live and the replay screen.

The scene is a run with a failure retried by the operator that then would
not merge, a kill, a skip and a batch waiting for approval, played through
the real ``apply`` on the fake source. The tests read the drawn lines back
from the widget, so they check what the operator sees: bars and their end
glyphs, waits, marks, the agents row, selection shared with the task graph,
following a replay's cursor, and scrolling at 80x24.
"""

from __future__ import annotations

import dataclasses

import pytest

from delegate_tui.core.events import (
    BatchApproved,
    BatchProposed,
    CriteriaChecked,
    Event,
    KillRequested,
    MergeConflict,
    Metrics,
    RetryScheduled,
    RunFinished,
    TaskBlocked,
    TaskCommitted,
    TaskExited,
    TaskFinished,
    TaskMerged,
    TaskPreparing,
    TaskSkipped,
    TaskStarted,
)
from delegate_tui.core.plan import parse_plan
from delegate_tui.core.replay import ReplaySource
from delegate_tui.core.state import RunState
from delegate_tui.ui.widgets.task_graph import TaskGraph
from delegate_tui.ui.widgets.timeline import TimelineView
from tests.ui.conftest import Running, StartApp
from tests.ui.fake_source import T0, FakeSource


def begin(source: FakeSource, task: str, at: float, attempt: int = 1) -> None:
    source.emit(TaskPreparing(task=task, attempt=attempt, workdir=f"/w/{task}"), at)
    source.emit(
        TaskStarted(
            task=task,
            attempt=attempt,
            agent="codex",
            argv=("x",),
            cwd="/w",
            pid=7,
            pgid=7,
            prompt="p",
        ),
        at + 1,
    )


def merged(source: FakeSource, task: str, at: float, attempt: int = 1) -> None:
    source.emit(TaskExited(task=task, attempt=attempt, exit_code=0), at)
    source.emit(CriteriaChecked(task=task, attempt=attempt, results=(), passed=True), at)
    source.emit(TaskCommitted(task=task, attempt=attempt, commit="c"), at + 1)
    source.emit(TaskMerged(task=task, attempt=attempt, commit="m"), at + 2)
    source.emit(TaskFinished(task=task, attempt=attempt, status="succeeded"), at + 2)


def eventful(source: FakeSource, *, finish: bool = True) -> None:
    """contract merged; schema failed and merged once the operator retried it; service
    killed (endpoints blocked by it); hotfix skipped; login-ui would not merge (seconds)."""
    source.start_run()
    source.emit(BatchProposed(batch=1, tasks=("contract",)), 0)
    source.emit(BatchApproved(batch=1, tasks=("contract",)), 4)
    begin(source, "contract", 4)
    merged(source, "contract", 20)
    source.emit(BatchProposed(batch=2, tasks=("schema",)), 22)
    source.emit(BatchApproved(batch=2, tasks=("schema",)), 30)
    begin(source, "schema", 30)
    source.emit(TaskExited(task="schema", attempt=1, exit_code=2), 50)
    source.emit(
        TaskFinished(task="schema", attempt=1, status="failed", reason="exited with status 2"), 50
    )
    source.emit(RetryScheduled(task="schema", attempt=2, prompt="p", context="use uuid keys"), 70)
    begin(source, "schema", 70, attempt=2)
    merged(source, "schema", 100, attempt=2)
    source.emit(BatchProposed(batch=3, tasks=("service", "login-ui", "hotfix")), 110)
    source.emit(BatchApproved(batch=3, tasks=("service", "login-ui")), 125)
    begin(source, "service", 125)
    begin(source, "login-ui", 125)
    source.emit(TaskSkipped(task="hotfix", reason="done by hand"), 126)
    source.emit(KillRequested(task="service", attempt=1), 140)
    source.emit(
        TaskExited(task="service", attempt=1, exit_code=None, signal=15, reason="killed"), 141
    )
    source.emit(
        TaskFinished(task="service", attempt=1, status="killed", reason="killed by the operator"),
        141,
    )
    source.emit(
        TaskBlocked(task="endpoints", by="service", reason="dependency service killed"), 141
    )
    source.emit(TaskExited(task="login-ui", attempt=1, exit_code=0), 150)
    source.emit(CriteriaChecked(task="login-ui", attempt=1, results=(), passed=True), 150)
    source.emit(TaskCommitted(task="login-ui", attempt=1, commit="c3"), 151)
    source.emit(MergeConflict(task="login-ui", attempt=1, paths=("web/app.ts",)), 152)
    source.emit(
        TaskFinished(
            task="login-ui",
            attempt=1,
            status="merge-conflict",
            reason="merge conflict in web/app.ts",
        ),
        152,
    )
    if finish:
        source.emit(RunFinished(status="partial", metrics=Metrics()), 160)


def view(ui: Running) -> TimelineView:
    return ui.screen.query_one(TimelineView)


def lines(ui: Running) -> list[str]:
    """The timeline as drawn, one string a line."""
    widget = view(ui)
    return [widget.render_line(y).text for y in range(widget.size.height)]


def bottom(ui: Running) -> list[str]:
    """The agents row and the lines under it: what the cursor is on, its marks, the legend."""
    drawn = lines(ui)
    start = next(i for i, ln in enumerate(drawn) if ln.startswith("agents"))
    return drawn[start:]


def row_of(ui: Running, task: str) -> str:
    """The drawn row of a task (its name column cut off)."""
    widget = view(ui)
    (line,) = [
        ln for ln in lines(ui) if ln.startswith(f"{'✔✘✖⤼⚠▶◌⊘'} {task} ") or f" {task} " in ln[:20]
    ]
    return line[widget._name_width() + 1 :]


def timed(source: FakeSource) -> list[Event]:
    events: list[Event] = []
    source.subscribe(events.append)
    return events


@pytest.mark.asyncio
async def test_g_toggles_the_timeline_in_place_of_the_panes(start_app: StartApp) -> None:
    source = FakeSource()
    eventful(source)
    async with start_app(source, size=(120, 32)) as ui:
        assert not ui.screen.query(TimelineView) and ui.screen.query_one("#main").display
        await ui.press("g")
        widget = view(ui)
        assert widget.display and not ui.screen.query_one("#main").display
        assert widget.has_focus
        drawn = lines(ui)
        assert drawn[0].startswith("2s/col") or "/col" in drawn[0]
        assert any("batches" in ln for ln in drawn)
        await ui.press("g")
        assert not widget.display and ui.screen.query_one("#main").display
        assert ui.screen.query_one(TaskGraph).has_focus


@pytest.mark.asyncio
async def test_bars_waits_and_marks_of_a_failure_retry_kill_skip_and_conflict(
    start_app: StartApp,
) -> None:
    source = FakeSource()
    eventful(source)
    async with start_app(source, size=(120, 32)) as ui:
        await ui.press("g")
        schema = row_of(ui, "schema")
        # waited for contract, then for approval; failed; waited for the retry; merged.
        assert "·" in schema and "░" in schema
        assert "✘" in schema and "↻" in schema and "◆" in schema
        assert schema.index("·") < schema.index("✘") < schema.index("↻") < schema.index("◆")
        assert schema.count("█") >= 20
        service = row_of(ui, "service")
        assert "✖" in service and "█" in service
        hotfix = row_of(ui, "hotfix")
        assert "⤼" in hotfix and "█" not in hotfix
        contract = row_of(ui, "contract")
        assert contract.rstrip().endswith("◆") and "✓" in contract
        login = row_of(ui, "login-ui")
        assert "⚠" in login and "◆" not in login
        endpoints = row_of(ui, "endpoints")
        assert "·" in endpoints and "─" in endpoints and "█" not in endpoints
        drawn = lines(ui)
        agents = next(ln for ln in drawn if ln.startswith("agents"))
        assert "agents ≤2" in agents and "2" in agents[10:] and "1" in agents[10:]
        batches = next(ln for ln in drawn if ln.startswith("batches"))
        assert batches.count("?") == 3 and batches.count("✓") == 3


@pytest.mark.asyncio
async def test_stepping_through_a_tasks_bars_says_what_each_was(start_app: StartApp) -> None:
    source = FakeSource()
    eventful(source)
    async with start_app(source, size=(120, 32)) as ui:
        await ui.press("g")
        await ui.press("down")  # schema
        assert ui.screen.selected == "schema"
        described = []
        for _ in range(6):
            await ui.press("shift+right")
            described.append(bottom(ui)[1])
        assert described[0].startswith("▸ schema: waited 0:22 (0:00–0:22) for a dependency")
        assert "for the operator's approval: batch 2 waited for approval" in described[1]
        assert "attempt 1 0:30–0:50 (0:20) failed (agent, setup or checks)" in described[2]
        assert "for the operator to retry it: failed; waited for a retry" in described[3]
        assert "attempt 2 1:10–1:42 (0:32) succeeded and merged" in described[4]
        assert described[5].startswith("schema (succeeded): attempt 2"), "past the last: follow"
        marks = bottom(ui)[2]
        assert "↻ 1:10 retried (by the operator): use uuid keys" in marks


@pytest.mark.asyncio
async def test_selecting_in_the_timeline_selects_the_task_everywhere(start_app: StartApp) -> None:
    source = FakeSource()
    eventful(source)
    async with start_app(source, size=(120, 32)) as ui:
        await ui.select("service")
        await ui.press("g")
        assert view(ui).selected == "service"
        await ui.press("down")
        assert ui.screen.selected == "login-ui"
        assert ui.screen.query_one(TaskGraph).selected == "login-ui"
        # A click on a bar selects its task too.
        widget = view(ui)
        drawn = lines(ui)
        y = next(i for i, ln in enumerate(drawn) if " contract " in ln[:20])
        x = widget._name_width() + 1 + row_of(ui, "contract").index("█")
        await ui.pilot.click(TimelineView, offset=(x + 1, y + 1))  # +1: the border
        await ui.settle()
        assert ui.screen.selected == "contract"
        assert bottom(ui)[1].startswith("▸ contract: attempt 1")
        await ui.press("g")
        assert ui.screen.query_one(TaskGraph).selected == "contract"


@pytest.mark.asyncio
async def test_it_follows_the_live_run(start_app: StartApp) -> None:
    source = FakeSource()
    eventful(source, finish=False)
    async with start_app(source, size=(120, 32)) as ui:
        await ui.press("g")
        before = row_of(ui, "service")
        assert "▶" not in before and "↻" not in before
        source.emit(RetryScheduled(task="service", attempt=2, prompt="p"), 165)
        begin(source, "service", 166, attempt=2)
        source.output("service", b"working\n", at=190)  # the run goes on: now is 190 s in
        await ui.settle()
        service = row_of(ui, "service")
        assert "↻" in service and service.rstrip().endswith("▶"), "a running bar ends at now"
        assert service.index("✖") < service.index("↻") < service.index("▶")
        axis = lines(ui)[0]
        widget = view(ui)
        assert axis.index("▼") - widget._name_width() - 1 == widget._scale.col(T0 + 190)


@pytest.mark.asyncio
async def test_hidden_it_costs_nothing(start_app: StartApp) -> None:
    source = FakeSource()
    eventful(source, finish=False)
    async with start_app(source, size=(120, 32)) as ui:
        for at in range(161, 170):
            source.output("login-ui", b"working\n", at=at)
            await ui.settle()
        assert not ui.screen.query(TimelineView)  # not even made until it is asked for
        await ui.press("g")
        widget = view(ui)
        assert widget.projections >= 1
        await ui.press("g")
        count = widget.projections
        source.emit(BatchProposed(batch=4, tasks=("endpoints",)), 170)
        await ui.settle()
        assert widget.projections == count


@pytest.mark.asyncio
async def test_it_follows_the_replay_cursor(start_app: StartApp) -> None:
    scene = FakeSource()
    events = timed(scene)
    eventful(scene)
    replay = ReplaySource(events)
    replay.seek(0)
    replay.playing = False
    async with start_app(replay, size=(120, 32), read_only=True) as ui:
        await ui.press("g")
        widget = view(ui)
        await ui.press("less_than_sign")  # the run's start
        assert widget.timeline is not None and widget.timeline.end == T0
        at_kill = next(i for i, e in enumerate(events) if isinstance(e, KillRequested)) + 1
        replay.seek(at_kill)
        await ui.settle()
        assert widget.timeline is not None and widget.timeline.end == T0 + 140
        service = row_of(ui, "service")
        assert "✖" in service and "█" in service
        axis = lines(ui)[0]
        cursor = axis.index("▼") - widget._name_width() - 1
        # The cursor sits at 140 s of 160 on an axis that spans the whole recording.
        scale = widget._scale
        assert cursor == int((140) / scale.step) - scale.col0
        assert "✘" in row_of(ui, "schema")
        login = row_of(ui, "login-ui")
        assert "◆" not in login, "the future is not drawn"
        await ui.press("greater_than_sign")
        assert "⚠" in row_of(ui, "login-ui")


WIDE_PLAN = "name: wide\ntasks:\n" + "".join(
    f'  - {{id: t{n:02d}, agent: demo, prompt: p, edits: ["f{n}/**"]}}\n' for n in range(1, 25)
)


@pytest.mark.asyncio
async def test_at_80x24_the_rows_scroll_and_zoom_scrolls_time(start_app: StartApp) -> None:
    source = FakeSource(parse_plan(WIDE_PLAN, "wide.yaml"))
    source.start_run()
    for n in range(1, 25):
        begin(source, f"t{n:02d}", n * 5)
        merged(source, f"t{n:02d}", n * 5 + 30)
    source.emit(RunFinished(status="succeeded", metrics=Metrics()), 200)
    async with start_app(source, size=(80, 24)) as ui:
        await ui.press("g")
        widget = view(ui)
        drawn = lines(ui)
        assert widget.size.width == 78 and all(len(ln) == 78 for ln in drawn)
        visible = [ln[2:5] for ln in drawn if ln.startswith("✔ t")]
        assert visible[0] == "t01" and 8 <= len(visible) < 24, "24 tasks do not fit: rows scroll"
        await ui.press("end")
        assert ui.screen.selected == "t24"
        assert widget.row0 > 0 and any(ln.startswith("✔ t24") for ln in lines(ui))
        assert not any(ln.startswith("✔ t01") for ln in lines(ui))
        assert "▼" in lines(ui)[0] and bottom(ui)[0].startswith("agents ≤6 ")
        await ui.press("home")
        assert widget.row0 == 0 and lines(ui)[2].startswith("✔ t01")
        fitted = widget._scale.step
        await ui.press("z", "z")
        assert widget._scale.step < fitted
        # Zoomed in and following: the end of the run is in view, its start is not.
        assert widget._scale.col0 > 0
        await ui.press("shift+right")  # the first span of contract: scrolls back to it
        assert widget._scale.col0 == 0
        await ui.press("Z", "Z", "Z")
        assert widget._scale.step == fitted and widget.step is None


#: What the legend explains: waits and bars, the marks, how an attempt ended.
LEGEND_ENTRIES = (
    *("█ agent", "▄ setup/checks", "· dependency", "┄ slot", "╌ scope"),
    *("░ you: approve/retry/merge", "‖ paused", "─ blocked"),
    *("✓ approved", "✖ kill", "↻ retry", "⤼ skip", "» input", "! finding"),
    *("▶ running", "◆ merged", "✘ failed", "⚠ conflict"),
)


@pytest.mark.asyncio
@pytest.mark.parametrize("size", [(80, 24), (200, 60)])
async def test_every_glyph_of_the_legend_is_on_the_screen(
    start_app: StartApp, size: tuple[int, int]
) -> None:
    source = FakeSource()
    eventful(source)
    async with start_app(source, size=size) as ui:
        await ui.press("g")
        # The screen as the terminal shows it, not the widget's own lines.
        screen = [strip.text for strip in ui.screen._compositor.render_strips()]
        assert len(screen) == size[1] and all(len(line) == size[0] for line in screen)
        start = next(i for i, line in enumerate(screen) if "█ agent" in line)
        shown = "\n".join(screen[start:])
        for entry in LEGEND_ENTRIES:
            assert entry in shown, f"{entry!r} is not on the {size} screen"
        if size[0] == 80:
            assert shown.count("\n") >= 2, "at 80 columns the legend takes several lines"
        # The task rows still fit above it, and what the cursor is on is still drawn.
        assert any(line.lstrip("│ ").startswith("agents ≤") for line in screen[:start])
        assert any("contract" in line for line in screen[:start])


def test_the_scene_is_what_it_says() -> None:
    """The scene's state, as the fold has it (the view tests lean on it)."""
    source = FakeSource()
    eventful(source)
    state: RunState = source.state
    assert {t: s.status for t, s in state.tasks.items()} == {
        "contract": "succeeded",
        "schema": "succeeded",
        "service": "killed",
        "login-ui": "merge-conflict",
        "hotfix": "skipped",
        "endpoints": "blocked",
    }
    assert [a.status for a in state.tasks["schema"].attempts] == ["failed", "succeeded"]
    assert dataclasses.asdict(state.marks[-1])["kind"] == "kill"


@pytest.mark.asyncio
async def test_g_in_a_view_attached_to_a_run_service(
    start_app: StartApp, repo: object, write_plan: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attached view (the real client, a real service and agents) has the timeline too."""
    import asyncio
    from collections.abc import Callable
    from typing import cast

    from delegate_tui.core import service as service_module
    from delegate_tui.core.client import RunClient
    from delegate_tui.core.engine import Engine, EngineOptions
    from delegate_tui.core.plan import Plan
    from delegate_tui.core.service import RunService

    monkeypatch.setattr(service_module, "LINGER_S", 0.2)
    plan = cast(Callable[..., Plan], write_plan)(
        f"name: p\nrepo: {repo}\nagent: shell\ntasks:\n"
        "  - {id: quick, command: 'echo hi', edits: [q]}\n"
        "  - {id: slow, command: 'sleep 20', edits: [s]}\n"
    )
    engine = Engine(plan, EngineOptions(auto_approve=True, kill_grace_s=1.0))
    listening = asyncio.Event()
    serving = asyncio.create_task(
        RunService(engine).run(on_listening=lambda _path: listening.set())
    )
    try:
        await asyncio.wait_for(listening.wait(), 20)
        async with start_app(RunClient(engine.run_dir), size=(120, 32)) as ui:
            for _ in range(100):  # the client catches up, then quick ends
                await ui.pilot.pause(0.05)
                tasks = ui.screen.state.tasks
                if tasks.get("quick") and tasks["quick"].status == "succeeded":
                    break
            await ui.press("g")
            assert view(ui).display
            assert row_of(ui, "quick").rstrip().endswith("◆"), "its bar ends where it merged"
            assert row_of(ui, "slow").rstrip().endswith("▶"), "the running agent's bar ends now"
    finally:
        engine.stop("test over")
        await asyncio.wait_for(serving, 20)
