"""The run screens' keys: bindings, which of them are commands, the palette, the help.

Owns every key of the live and the replay screen as data, and the reference
that ``?`` shows for each, so a key and its help are changed in one place.
Which commands the run accepts right now is not decided here but by
:func:`delegate_tui.core.commands.refusal`, which the screens ask.
"""

from __future__ import annotations

from collections.abc import Iterator

from rich.style import Style
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.screen import Screen

from delegate_tui.core.commands import Command
from delegate_tui.ui.style import ICONS, MEANINGS

BOLD = Style(bold=True)
DIM = Style(dim=True)

#: The keys of a live run (operator ids, for rebinding in the config file, where given).
LIVE_BINDINGS: list[BindingType] = [
    Binding("a", "approve(False)", "Approve", id="approve"),
    Binding("A", "approve(True)", "Approve all", id="approve_all", show=False),
    Binding("space", "toggle_task", "Toggle", id="toggle", show=False),
    Binding("h", "hold", "Hold", id="hold", show=False),
    Binding("enter", "details", "Details", id="details"),
    Binding("k", "kill", "Kill", id="kill"),
    Binding("r", "retry", "Retry", id="retry"),
    Binding("s", "skip", "Skip", id="skip"),
    Binding("p", "pause", "Pause", id="pause"),
    Binding("i", "input", "Input", id="input", show=False),
    Binding("slash", "search", "Search", id="search", show=False),
    Binding("n", "next_match(1)", "Next match", show=False),
    Binding("N", "next_match(-1)", "Previous match", show=False),
    Binding("z", "zoom", "Zoom", id="zoom"),
    Binding("v", "raw_view", "Raw stream", id="raw_view", show=False),
    Binding("g", "timeline", "Timeline", id="timeline", show=False),
    Binding("H", "health", "How each task ended", id="health", show=False),
    # The task list's own keys, for when it is hidden (zoomed) or not focused.
    Binding("up", "step_task(-1)", "Previous task", show=False),
    Binding("down", "step_task(1)", "Next task", show=False),
    Binding("m", "merge", "Merge", id="merge", show=False),
    Binding("f", "finish", "Finish", id="finish", show=False),
    Binding("e", "end", "End run", id="end", show=False),
    Binding("o", "copy_path", "Copy path", id="copy_path", show=False),
    Binding("c", "sidebar", "Sidebar", id="sidebar", show=False),
    Binding("d", "diff", "Diff", id="diff", show=False),
    Binding("right_square_bracket", "finding(1)", "Next collision", id="next_finding", show=False),
    Binding(
        "left_square_bracket",
        "finding(-1)",
        "Previous collision",
        id="previous_finding",
        show=False,
    ),
    Binding("pageup", "scroll_pane(-1)", "Scroll up", show=False),
    Binding("pagedown", "scroll_pane(1)", "Scroll down", show=False),
    Binding("G", "follow", "Follow", show=False),
    Binding("t", "app.next_theme", "Theme", id="theme", show=False),
    Binding("question_mark", "help", "Help", id="help"),
    Binding("q", "app.request_quit", "Quit", id="quit"),
]

#: The keys a replay adds: playback (its screen refuses the commands above).
REPLAY_BINDINGS: list[BindingType] = [
    Binding("left", "replay_seek(-10)", "−10 s", show=False),
    Binding("right", "replay_seek(10)", "+10 s", show=False),
    Binding("comma", "replay_step(-1)", "Back one event", show=False),
    Binding("full_stop", "replay_step(1)", "One event", show=False),
    Binding("less_than_sign", "replay_edge(0)", "Start", show=False),
    Binding("greater_than_sign", "replay_edge(1)", "End", show=False),
    Binding("plus,equals_sign", "replay_speed(1)", "Faster", show=False),
    Binding("minus", "replay_speed(-1)", "Slower", show=False),
    Binding("ctrl+left", "replay_jump('notable', -1)", "Previous notable", show=False),
    Binding("ctrl+right", "replay_jump('notable', 1)", "Next notable", show=False),
    Binding("F", "replay_jump('failure', 1)", "Next failure", show=False),
    Binding("C", "replay_jump('conflict', 1)", "Next conflict", show=False),
    Binding("escape", "back", "Runs"),  # shown only when opened from the runs list
]

#: Actions that are operator commands, and the command whose refusal decides them
#: (``pause`` is ``pause`` or ``resume`` by the state: see ``RunScreen.refusal_of``).
COMMAND_ACTIONS: dict[str, Command] = {
    "approve": "approve",
    "hold": "hold",
    "kill": "kill",
    "retry": "retry",
    "skip": "skip",
    "input": "input",
    "merge": "merge",
    "finish": "finish",
    "end": "end",
}

#: Actions that change a run (or run git): refused in a replay, hidden from its footer.
LIVE_ONLY_ACTIONS = frozenset(
    {
        "approve",
        "toggle_task",
        "hold",
        "kill",
        "retry",
        "skip",
        "input",
        "merge",
        "finish",
        "end",
        "diff",
    }
)

#: A command palette entry: title, help, action and the action's arguments.
PaletteEntry = tuple[str, str, str, tuple[object, ...]]

#: The run screen's entries in the command palette.
LIVE_PALETTE: tuple[PaletteEntry, ...] = (
    ("Approve batch", "Approve the waiting batch (ticked tasks)", "approve", (False,)),
    ("Kill task", "End the selected task's process group", "kill", ()),
    ("Retry task", "Retry the selected task with extra context", "retry", ()),
    ("Skip task", "Skip the selected task", "skip", ()),
    ("Pause or resume scheduling", "Stop or restart proposing batches", "pause", ()),
    ("Send input", "Type a line to the selected agent", "input", ()),
    ("Search pane", "Search the selected task's output", "search", ()),
    ("Zoom pane", "Show one pane full size", "zoom", ()),
    ("Raw stream", "Show agents' raw streams instead of their transcripts", "raw_view", ()),
    ("Timeline", "Show or hide the run as a schedule", "timeline", ()),
    ("Health report", "How each task ended, or how far it got", "health", ()),
    ("Copy worktree path", "Copy the selected task's worktree path", "copy_path", ()),
    ("Finish run", "End and merge into your branch when clean", "finish", ()),
    ("Keys and glyphs", "Every key, and what each task glyph means", "help", ()),
)

#: A replay's: ``pause`` plays and pauses; commands are left out.
REPLAY_PALETTE: tuple[PaletteEntry, ...] = (
    ("Play or pause", "Play or pause the replay", "pause", ()),
    *(entry for entry in LIVE_PALETTE if entry[2] not in LIVE_ONLY_ACTIONS | {"pause"}),
)


#: A key reference: sections, each a heading and its (keys, what they do) rows.
HelpSections = list[tuple[str, list[tuple[str, str]]]]

_TIMELINE = (
    "Timeline (g)",
    [
        ("g", "show or hide the timeline"),
        ("↑ ↓", "select a task (everywhere)"),
        ("shift+← →", "step through its bars and waits"),
        ("esc", "follow the run again"),
        ("z Z", "zoom time in / out"),
    ],
)

_PANES = (
    "Panes",
    [
        ("z", "zoom the selected pane to the whole screen, and back"),
        ("v", "agents' raw streams / their transcripts"),
        ("/", "search in the pane"),
        ("n N", "next / previous match"),
        ("pgup pgdn", "scroll the pane"),
        ("G", "follow the newest output"),
    ],
)

#: The keys of a live run.
LIVE_HELP: HelpSections = [
    (
        "Batches",
        [
            ("a", "approve the batch (the tasks still ticked)"),
            ("A", "approve all of it"),
            ("space", "tick or untick the selected task in the batch"),
            ("h", "hold: decline for now, pause"),
        ],
    ),
    (
        "Tasks",
        [
            ("↑ ↓", "select a task"),
            ("enter", "details"),
            ("k", "kill (asks first)"),
            ("r", "retry with extra context"),
            ("s", "skip"),
            ("i", "type a line to the agent"),
            ("m", "merge (merge: manual)"),
            ("o", "copy the worktree path"),
            ("] [", "next / previous collision"),
            ("d", "the diffs of the collision or task"),
        ],
    ),
    _PANES,
    _TIMELINE,
    (
        "Run",
        [
            ("H", "how each task ended (the health report)"),
            ("p", "pause or resume scheduling"),
            ("f", "finish: merge into your branch"),
            ("e", "end the run (asks while agents run or work is pending)"),
            ("t", "next theme"),
            ("c", "show or hide the sidebar"),
            ("ctrl+p", "command palette"),
            ("?", "this help"),
            ("q", "quit"),
        ],
    ),
]

#: The keys of a replay: playback instead of the operator's commands.
REPLAY_HELP: HelpSections = [
    (
        "Playback",
        [
            ("p", "play or pause"),
            ("← →", "10 seconds back / on"),
            (", .", "one event back / on"),
            ("< >", "the run's start / end"),
            ("+ -", "faster / slower"),
            ("ctrl+← →", "previous / next notable event"),
            ("F", "next failure"),
            ("C", "next conflict"),
            ("esc", "back to the runs list (runs --open)"),
        ],
    ),
    (
        "Tasks",
        [
            ("↑ ↓", "select a task"),
            ("enter", "details"),
            ("o", "copy the worktree path"),
            ("] [", "next / previous collision"),
        ],
    ),
    _PANES,
    _TIMELINE,
    (
        "View",
        [
            ("H", "how each task ended (the health report)"),
            ("t", "next theme"),
            ("c", "show or hide the sidebar"),
            ("ctrl+p", "command palette"),
            ("?", "this help"),
            ("q", "quit"),
        ],
    ),
]


def help_text(sections: HelpSections, keymap: dict[str, str], rebindable: list[str]) -> Text:
    """The key reference, with the operator's rebindings applied.

    ``rebindable`` names the action ids the config file may rebind on this screen.
    """
    text = Text()
    for section, keys in sections:
        text.append(f"{section}\n", BOLD)
        for key, what in keys:
            text.append(f"  {key:<12}", Style(bold=True))
            text.append(f"{what}\n")
        text.append("\n")
    text.append("Task glyphs\n", BOLD)
    for status, icon in ICONS.items():
        text.append(f"  {icon} {status:<15}", Style(bold=True))
        text.append(f"{MEANINGS[status]}\n")
    text.append(f"  ‖ {'paused':<15}", Style(bold=True))
    text.append("(header) scheduling paused; running tasks go on\n\n")
    text.append("Marks left of a task\n", BOLD)
    for mark, what in (
        ("↑ ↓", "a dependency / a dependent of the selected task"),
        ("●", "in the batch waiting for approval"),
        ("○", "left out of that batch (space ticks it again)"),
    ):
        text.append(f"  {mark:<17}", Style(bold=True))
        text.append(f"{what}\n")
    text.append("\n")
    if keymap:
        text.append(
            "Your rebindings: " + ", ".join(f"{k} → {v}" for k, v in keymap.items()) + "\n", DIM
        )
    text.append("Keys can be rebound in ~/.config/delegate-tui/config.yaml under `keys:`\n", DIM)
    # One paragraph, wrapped by the dialog at its own width (a fixed fill at 90
    # columns broke each line again at 80).
    text.append(f"(by action id: {', '.join(rebindable)}).\n", DIM)
    return text


def bindings_of(screen: type[Screen[None]]) -> Iterator[Binding]:
    """A screen class's bindings, its bases' first."""
    for cls in reversed(screen.__mro__):
        for binding in cls.__dict__.get("BINDINGS", ()):
            if isinstance(binding, Binding):
                yield binding


def key_actions(screen: type[Screen[None]], rebound: dict[str, str]) -> dict[str, str]:
    """Key -> action name for a screen's bindings, with the operator's own keys."""
    actions: dict[str, str] = {}
    for binding in bindings_of(screen):
        keys = rebound.get(binding.id, binding.key) if binding.id else binding.key
        for key in keys.split(","):
            actions[key.strip()] = binding.action.split("(")[0]
    return actions
