"""The review screen: a plan before it runs, edited and checked live, started with enter.

Owns what ``delegate-tui draft`` (in a terminal) and ``delegate-tui plan PLAN
--review`` show: the tasks by layer, the selected task's prompt, scopes and
the reason it was split so, and what the batcher makes of the plan (the first
batch, every held reason, the expected batches), with the validator's
problems and the draft rules' warnings above them. The operator edits a task
inline (``e``: prompt, edits, reads, depends_on) or whole in ``$EDITOR``
(``E``), drops (``d``) or merges (``m``) tasks, undoes (``u``), saves (``s``)
and starts the run (``enter``); every edit is re-validated at once by
:func:`core.plan_edits.assess`, and a plan with problems does not start.
Nothing runs before the operator says so: the app only writes the plan file
and returns ``"run"``; the command line starts the run.

(About 490 lines: the screen's panes and its editing keys; the edits themselves are
pure functions in ``core/plan_edits.py``.)
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Literal

from textual import events
from textual.app import App, ComposeResult, SuspendNotSupported
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.markup import escape
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, Label, OptionList, Static, TextArea
from textual.widgets.option_list import Option

from delegate_tui import report
from delegate_tui.core import graph, plan_edits
from delegate_tui.core.plan_edits import Assessment, EditError, PlanData
from delegate_tui.resources import data_dir
from delegate_tui.ui.config import UserConfig, config_dir
from delegate_tui.ui.screens.dialogs import Dialog, LineDialog
from delegate_tui.ui.themes import DEFAULT_THEME, STATUS_VARIABLES, load_themes

ReviewOutcome = Literal["run"] | None
_UI = Path(__file__).resolve().parent.parent


def _list(values: Any) -> list[str]:
    if values is None:
        return []
    return [values] if isinstance(values, str) else [str(v) for v in values]


class TaskEditDialog(Dialog[dict[str, Any] | None]):
    """A task's prompt, edits, reads and dependencies, edited in place; ctrl+s saves."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", show=False),
        Binding("ctrl+s", "submit", "Save", show=False),
    ]

    def __init__(self, task: dict[str, Any]) -> None:
        super().__init__(classes="dialog-screen")
        self.task_data = task

    def compose(self) -> ComposeResult:
        task = self.task_data
        with VerticalScroll(classes="dialog dialog-wide", id="task-edit"):
            yield Label(f"Edit {task.get('id')}", classes="dialog-title")
            yield Label("Prompt")
            yield TextArea(str(task.get("prompt") or ""), id="edit-prompt", classes="edit-prompt")
            yield Label("Edits (globs, comma-separated)")
            yield Input(", ".join(_list(task.get("edits"))), id="edit-edits")
            yield Label("Reads")
            yield Input(", ".join(_list(task.get("reads"))), id="edit-reads")
            yield Label("Depends on (task ids)")
            yield Input(", ".join(_list(task.get("depends_on"))), id="edit-depends")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Save (ctrl+s)", variant="primary", id="save")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#edit-prompt", TextArea).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save":
            self.action_submit()
        else:
            self.dismiss(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_submit()

    def action_submit(self) -> None:
        split = plan_edits.split_list
        self.dismiss(
            {
                "prompt": self.query_one("#edit-prompt", TextArea).text,
                "edits": split(self.query_one("#edit-edits", Input).value),
                "reads": split(self.query_one("#edit-reads", Input).value),
                "depends_on": split(self.query_one("#edit-depends", Input).value),
            }
        )

    def action_cancel(self) -> None:
        self.dismiss(None)


class ReviewScreen(Screen[None]):
    """The plan under review; the app holds the data, this screen shows and edits it."""

    BINDINGS = [
        Binding("enter", "run", "Run", priority=True),
        Binding("e", "edit", "Edit"),
        Binding("E", "editor", "$EDITOR"),
        Binding("d", "drop", "Drop"),
        Binding("m", "merge", "Merge"),
        Binding("u", "undo", "Undo"),
        Binding("s", "save", "Save"),
        Binding("q", "quit_review", "Quit"),
    ]

    def __init__(self, data: PlanData, why: dict[str, str], path: Path) -> None:
        super().__init__()
        self.data = data
        self.why = why
        self.path = path
        self.history: list[PlanData] = []
        self.assessment: Assessment = plan_edits.assess(data, why, str(path))
        self.saved_text = ""
        """The text last written to ``path`` (the file's own text before any save)."""
        self._quit_armed = False
        self.backup = False
        """Copy the file to ``PLAN.bak`` before its first save (a plan written by hand)."""
        self.note = ""
        """Where the plan came from (a draft's rounds, time and runs), above the batches."""

    # ------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield Static(id="review-title", markup=True)
        with Horizontal(id="review-main"):
            yield OptionList(id="review-tasks")
            with VerticalScroll(id="review-detail"):
                yield Static(id="review-task", markup=True)
        with VerticalScroll(id="review-batches"):
            yield Static(id="review-outlook", markup=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#review-tasks", OptionList).border_title = "Tasks by layer"
        self.query_one("#review-detail").border_title = "Task"
        self.query_one("#review-batches").border_title = "Batches"
        self.refresh_view()
        self.query_one("#review-tasks", OptionList).focus()

    def on_resize(self, event: events.Resize) -> None:
        self.set_class(event.size.height < 32, "-short")

    # ------------------------------------------------------------ drawing

    @property
    def selected(self) -> str | None:
        """The id of the highlighted task."""
        tasks = self.query_one("#review-tasks", OptionList)
        if tasks.highlighted is None or not tasks.option_count:
            return None
        return str(tasks.get_option_at_index(tasks.highlighted).id)

    def _order(self) -> list[tuple[int, str]]:
        """(layer, id) of every task, by layer then file order (file order if no graph)."""
        data_ids = plan_edits.ids(self.data)
        plan = self.assessment.plan
        if plan is None:
            return [(-1, t) for t in data_ids]
        return [(n, t) for n, layer in enumerate(graph.layers(plan.deps)) for t in layer]

    def refresh_view(self, select: str | None = None) -> None:
        """Redraw everything from :attr:`assessment`."""
        keep = select or self.selected
        tasks = self.query_one("#review-tasks", OptionList)
        tasks.clear_options()
        by_id = {str(t.get("id")): t for t in plan_edits.tasks_of(self.data)}
        for layer, task_id in self._order():
            task = by_id.get(task_id, {})
            deps = _list(task.get("depends_on"))
            mark = "?" if layer < 0 else str(layer)
            consult = " [$text-muted](consult)[/]" if task.get("kind") == "consult" else ""
            after = f" [$text-muted]← {escape(', '.join(deps))}[/]" if deps else ""
            tasks.add_option(
                Option(f"[$accent]{mark}[/] {escape(task_id)}{consult}{after}", id=task_id)
            )
        ids = [t for _, t in self._order()]
        if ids:
            tasks.highlighted = ids.index(keep) if keep in ids else 0
        self._draw_title()
        self._draw_task()
        self._draw_outlook()

    def _draw_title(self) -> None:
        a = self.assessment
        name = escape(str(self.data.get("name") or self.path.name))
        count = len(plan_edits.tasks_of(self.data))
        if a.runnable:
            verdict = "[$success]✔ ready[/]  enter runs it"
        else:
            n = len(a.problems)
            verdict = f"[$error]✘ {n} problem{'s' if n != 1 else ''}[/]  fix before running"
        changed = "  [$warning]● unsaved[/]" if self.dirty else ""
        self.query_one("#review-title", Static).update(
            f" [b]Review[/b] {name}  ·  {count} task{'s' if count != 1 else ''}  ·  "
            f"{verdict}{changed}"
        )

    def _draw_task(self) -> None:
        task_id = self.selected
        panel = self.query_one("#review-task", Static)
        detail = self.query_one("#review-detail")
        if task_id is None:
            panel.update("[$text-muted]No tasks.[/]")
            return
        detail.border_title = f"Task {task_id}"
        task = next(t for t in plan_edits.tasks_of(self.data) if str(t.get("id")) == task_id)
        lines = [f"[b]{escape(str(task.get('title') or task_id))}[/b]"]
        if self.why.get(task_id):
            lines.append(f"[$text-muted]why:[/] {escape(self.why[task_id])}")
        agent = task.get("agent") or self.data.get("agent") or "claude"
        kind = task.get("kind") or "code"
        lines.append(f"[$text-muted]agent:[/] {escape(str(agent))}  [$text-muted]kind:[/] {kind}")
        for label, key in (("after", "depends_on"), ("may change", "edits"), ("reads", "reads")):
            values = _list(task.get(key))
            if values:
                lines.append(f"[$text-muted]{label}:[/] {escape(', '.join(values))}")
        if kind == "code" and not task.get("edits"):
            lines.append("[$warning]may change: nothing declared[/]")
        for criterion in task.get("criteria") or []:
            text = criterion.get("run") if isinstance(criterion, dict) else criterion
            prefix = "$ " if isinstance(criterion, dict) and "run" in criterion else "✓ "
            lines.append(f"[$text-muted]check:[/] {escape(prefix + str(text))}")
        prompt = task.get("prompt")
        if prompt is None and task.get("prompt_file"):
            prompt = f"(from {task['prompt_file']})"
        lines += ["", "[$text-muted]prompt:[/]", escape(str(prompt or "(none)").rstrip())]
        panel.update("\n".join(lines))

    def _draw_outlook(self) -> None:
        a = self.assessment
        lines: list[str] = [f"[$text-muted]{escape(self.note)}[/]"] if self.note else []
        for problem in a.problems:
            lines.append(f"[$error]✘ {escape(_short(problem))}[/]")
        for warning in a.warnings:
            lines.append(f"[$warning]! {escape(_short(warning))}[/]")
        if a.plan is not None and a.outlook is not None:
            first = a.outlook.first
            if first is not None:
                lines.append(f"[b]First batch:[/b] {escape(', '.join(first.tasks))}")
                for held in first.held:
                    lines.append(f"  [$warning]held[/] {escape(held.task)}: {escape(held.reason)}")
                for note in first.notes:
                    lines.append(
                        f"  [$text-muted]note[/] {escape(note.task)}: {escape(note.reason)}"
                    )
            lines.append("[b]Expected batches[/b] (if every task succeeds):")
            for number, batch in enumerate(a.outlook.batches, 1):
                when = (
                    f"at {report.duration(batch.start)}"
                    if a.outlook.estimated
                    else f"step {batch.start:.0f}"
                )
                lines.append(f"  {number}. {when:>9}: {escape(', '.join(batch.tasks))}")
            if a.outlook.estimated and a.outlook.parallel:
                lines.append(
                    f"[$text-muted]about {report.duration(a.outlook.parallel)} "
                    f"(sequential {report.duration(a.outlook.sequential)})[/]"
                )
        self.query_one("#review-outlook", Static).update("\n".join(lines))

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self._draw_task()

    # ------------------------------------------------------------ edits

    @property
    def dirty(self) -> bool:
        """True when the plan on screen differs from the file."""
        return self.assessment.text != self.saved_text

    def apply(self, data: PlanData, select: str | None = None) -> None:
        """Take edited data, re-validate it, redraw."""
        self.history.append(self.data)
        self.data = data
        self.assessment = plan_edits.assess(data, self.why, str(self.path))
        self._quit_armed = False
        self.refresh_view(select)

    def action_edit(self) -> None:
        task_id = self.selected
        if task_id is None:
            return
        task = next(t for t in plan_edits.tasks_of(self.data) if str(t.get("id")) == task_id)

        def done(fields: dict[str, Any] | None) -> None:
            if fields is not None:
                self.apply(plan_edits.update_task(self.data, task_id, **fields), task_id)

        self.app.push_screen(TaskEditDialog(task), done)

    def action_editor(self) -> None:
        task_id = self.selected
        if task_id is None:
            return
        text = plan_edits.task_text(self.data, task_id)
        try:
            edited = edit_in_editor(self.app, text)
        except OSError as exc:
            self.notify(f"could not start the editor: {exc}", severity="error")
            return
        if edited is None or edited == text:
            return
        try:
            data = plan_edits.replace_task(self.data, task_id, edited)
        except EditError as exc:
            self.notify(str(exc), title="not changed", severity="error", timeout=10)
            return
        new_id = str(plan_edits.tasks_of(data)[plan_edits.ids(self.data).index(task_id)]["id"])
        if new_id != task_id and task_id in self.why:
            self.why[new_id] = self.why.pop(task_id)
        self.apply(data, new_id)

    def action_drop(self) -> None:
        task_id = self.selected
        if task_id is None:
            return
        if len(plan_edits.tasks_of(self.data)) == 1:
            self.notify("a plan needs at least one task", severity="warning")
            return
        order = [t for _, t in self._order()]
        at = order.index(task_id)
        neighbour = (order[at + 1 :] or order[:at])[0]  # the next task keeps the cursor's place
        self.apply(plan_edits.drop_task(self.data, task_id), neighbour)
        self.notify(f"dropped {task_id} (u undoes)", timeout=4)

    def action_merge(self) -> None:
        task_id = self.selected
        if task_id is None:
            return
        others = [t for t in plan_edits.ids(self.data) if t != task_id]

        def done(other: str | None) -> None:
            if not other:
                return
            try:
                data = plan_edits.merge_tasks(self.data, task_id, other.strip())
            except EditError as exc:
                self.notify(str(exc), severity="error")
                return
            self.apply(data, task_id)
            self.notify(f"merged {other.strip()} into {task_id} (u undoes)", timeout=4)

        self.app.push_screen(
            LineDialog(
                f"Merge which task into {task_id}?",
                hint="Its prompt is added to this one's, scopes and dependencies are joined: "
                + ", ".join(others),
                placeholder="task id",
            ),
            done,
        )

    def action_undo(self) -> None:
        if not self.history:
            self.notify("nothing to undo", timeout=3)
            return
        self.data = self.history.pop()
        self.assessment = plan_edits.assess(self.data, self.why, str(self.path))
        self.refresh_view()

    def action_save(self) -> bool:
        """Write the plan file (only a plan the validator accepts); True when written."""
        if not self.assessment.runnable:
            self.notify(
                "the plan has problems: fix them before saving", severity="error", timeout=6
            )
            return False
        if self.dirty:
            if self.backup and self.path.is_file():
                backup = self.path.with_name(self.path.name + ".bak")
                backup.write_bytes(self.path.read_bytes())
                self.backup = False
                self.notify(f"your own version is kept in {backup}", timeout=8)
            save_plan(self.path, self.assessment.text)
            self.saved_text = self.assessment.text
            self.notify(f"saved {self.path}", timeout=3)
        self._draw_title()
        return True

    def action_run(self) -> None:
        if not self.assessment.runnable:
            self.notify(
                "the plan has problems (in red): fix them, then enter", severity="error", timeout=6
            )
            return
        if self.action_save():
            self.app.exit("run")

    def action_quit_review(self) -> None:
        if self.dirty and not self._quit_armed:
            self._quit_armed = True
            self.notify("unsaved changes: s saves them, q again quits without", severity="warning")
            return
        self.app.exit(None)


def _short(problem: object) -> str:
    """A problem without its folder (the screen says which file it is)."""
    text = str(problem)
    head, sep, rest = text.partition(": ")
    return Path(head).name + sep + rest if sep and "/" in head else text


def save_plan(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole (a temporary file renamed over it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def edit_in_editor(app: App[Any], text: str) -> str | None:
    """``text`` after the operator edited it in ``$VISUAL``/``$EDITOR`` (vi by default).

    The app gives the terminal to the editor while it runs; where it cannot
    (a headless test) the editor runs as it is. ``None`` when the editor failed.
    """
    command = shlex.split(os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False, encoding="utf-8") as fh:
        fh.write(text)
        name = fh.name
    try:
        try:
            with app.suspend():
                rc = subprocess.run([*command, name]).returncode
        except SuspendNotSupported:
            rc = subprocess.run(
                [*command, name], stdin=subprocess.DEVNULL, capture_output=True
            ).returncode
        if rc != 0:
            app.notify(f"{command[0]} exited with status {rc}: nothing changed", severity="warning")
            return None
        return Path(name).read_text(encoding="utf-8")
    finally:
        os.unlink(name)


class ReviewApp(App[ReviewOutcome]):
    """The review screen as an app of its own: returns ``"run"`` (plan saved) or None."""

    CSS_PATH = [_UI / "app.tcss", _UI / "review.tcss"]
    TITLE = "delegate-tui review"

    def __init__(
        self,
        path: Path,
        text: str,
        *,
        theme: str | None = None,
        config: UserConfig | None = None,
        hand_written: bool = False,
        note: str = "",
    ) -> None:
        """Review ``text``, the plan in ``path``; a file written by hand is kept in
        ``PLAN.bak`` the first time the review rewrites it (its comments would be lost)."""
        super().__init__()
        data, why = plan_edits.load_review(text)
        self.review = ReviewScreen(data, why, path)
        self.review.saved_text = self.review.assessment.text
        self.review.backup = hand_written
        self.review.note = note
        self.config = config if config is not None else UserConfig.load()
        self._requested_theme = theme

    def get_theme_variable_defaults(self) -> dict[str, str]:
        return {**super().get_theme_variable_defaults(), **STATUS_VARIABLES}

    def on_mount(self) -> None:
        themes, problems = load_themes([data_dir("themes"), config_dir() / "themes"])
        for theme in themes:
            self.register_theme(theme)
        for problem in problems:
            self.notify(problem, title="config", severity="warning", timeout=10)
        wanted = self._requested_theme or self.config.theme or DEFAULT_THEME
        self.theme = wanted if wanted in self.available_themes else DEFAULT_THEME
        self.push_screen(self.review)
