"""Modal dialogs: confirm, retry with context, a line of input, task details, help.

Every dialog fits an 80x24 terminal: on a short screen (under 40 rows) it drops
its margins and shrinks its output boxes (the ``-short`` class), and a form
that is still too tall scrolls, so the focused field is always in view. Toasts
are not drawn over a dialog (app.tcss): they wait for it to close.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from rich.console import RenderableType
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Static, TextArea

R = TypeVar("R")
#: Rows under which dialogs go compact.
SHORT_ROWS = 40


class Dialog(ModalScreen[R]):
    """A modal dialog that goes compact on a short screen."""

    def on_resize(self, event: events.Resize) -> None:
        self.set_class(event.size.height < SHORT_ROWS, "-short")


class ConfirmDialog(Dialog[bool]):
    """Yes or no; y confirms, Escape/n cancels, Enter presses the focused button (the
    confirming one, or Cancel with ``cancel_first`` where a slip would lose work)."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes", show=False),
        Binding("n,escape", "answer(False)", "No", show=False),
    ]

    def __init__(self, question: str, confirm: str = "Yes", *, cancel_first: bool = False) -> None:
        super().__init__(classes="dialog-screen")
        self.question = question
        self.confirm = confirm
        self.cancel_first = cancel_first

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question, classes="dialog-title")
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.confirm} (y)", variant="error", id="yes")
                yield Button("Cancel (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no" if self.cancel_first else "#yes", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)


class QuitDialog(Dialog[str]):
    """Leaving a live run: detach (it goes on), end it (resumable), or cancel.

    Dismissed with ``"detach"``, ``"end"`` or ``""``; without ``can_detach`` (a
    run in this process) only ending it or cancelling is offered.
    """

    BINDINGS = [
        Binding("d", "answer('detach')", "Detach", show=False),
        Binding("e", "answer('end')", "End the run", show=False),
        Binding("n,escape", "answer('')", "Cancel", show=False),
    ]

    def __init__(self, question: str, *, can_detach: bool) -> None:
        super().__init__(classes="dialog-screen")
        self.question = question
        self.can_detach = can_detach

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question, classes="dialog-title")
            with Horizontal(classes="dialog-buttons"):
                if self.can_detach:
                    yield Button("Detach (d)", variant="primary", id="detach")
                yield Button("End the run (e)", variant="error", id="end")
                yield Button("Cancel (n)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#detach" if self.can_detach else "#cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss("" if event.button.id == "cancel" else str(event.button.id))

    def action_answer(self, value: str) -> None:
        if value == "detach" and not self.can_detach:
            return
        self.dismiss(value)


@dataclass(frozen=True, slots=True)
class RetryRequest:
    """What the operator asked for in the retry dialog."""

    context: str
    keep_worktree: bool
    fresh: bool = False  # a new conversation, not the agent's own continued


class RetryDialog(Dialog[RetryRequest | None]):
    """Show how the attempt failed; take extra context for the next one."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", show=False),
        Binding("ctrl+s", "submit", "Retry", show=False),
    ]

    def __init__(
        self, task_id: str, summary: str, tail: str, *, can_keep: bool, session: str = ""
    ) -> None:
        super().__init__(classes="dialog-screen")
        self.task_id = task_id
        self.summary = summary
        self.tail = tail
        self.can_keep = can_keep
        self.session = session  # the agent's conversation, when its CLI can continue it

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog dialog-wide"):
            yield Label(f"Retry {self.task_id}", classes="dialog-title")
            yield Label(f"Last attempt: {self.summary}", classes="dialog-subtitle")
            with VerticalScroll(classes="failure-tail"):
                yield Static(Text(self.tail or "(no output)"))
            yield Label("Extra context for the agent (added to its prompt):")
            yield TextArea(id="context", classes="retry-context")
            yield Checkbox(
                "Keep the failed attempt's work (else start fresh from integration)",
                value=False,
                id="keep",
                disabled=not self.can_keep,
            )
            if self.session:
                yield Checkbox(
                    f"Start a new conversation (else the agent continues its own, {self.session[:8]})",
                    value=False,
                    id="fresh",
                )
            with Horizontal(classes="dialog-buttons"):
                yield Button("Retry (ctrl+s)", variant="primary", id="retry")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#context", TextArea).focus()
        # The end of the output is where the failure is.
        self.query_one(".failure-tail", VerticalScroll).scroll_end(animate=False)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "retry":
            self.action_submit()
        else:
            self.dismiss(None)

    def action_submit(self) -> None:
        context = self.query_one("#context", TextArea).text
        keep = self.query_one("#keep", Checkbox).value
        fresh = bool(self.session) and self.query_one("#fresh", Checkbox).value
        self.dismiss(RetryRequest(context, keep, fresh))

    def action_cancel(self) -> None:
        self.dismiss(None)


class LineDialog(Dialog[str | None]):
    """One line of text: input for an agent, or a search."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", show=False)]

    def __init__(self, title: str, hint: str = "", value: str = "", placeholder: str = "") -> None:
        super().__init__(classes="dialog-screen")
        self.title_text = title
        self.hint = hint
        self.value = value
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog dialog-wide"):
            yield Label(self.title_text, classes="dialog-title")
            if self.hint:
                yield Static(Text(self.hint), classes="dialog-subtitle")
            yield Input(value=self.value, placeholder=self.placeholder, id="line")

    def on_mount(self) -> None:
        self.query_one("#line", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class TextScreen(Dialog[None]):
    """A scrollable page of text (task details, help); Escape or q closes it."""

    BINDINGS = [Binding("escape,q,enter,question_mark", "close", "Close", show=False)]

    def __init__(self, title: str, body: RenderableType) -> None:
        super().__init__(classes="dialog-screen")
        self.title_text = title
        self.body = body

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog dialog-page"):
            yield Label(self.title_text, classes="dialog-title")
            with VerticalScroll(classes="page-body"):
                yield Static(self.body)
            yield Label("esc close", classes="dialog-subtitle")

    def action_close(self) -> None:
        self.dismiss(None)
