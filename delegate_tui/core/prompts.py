"""What each attempt is asked: rendered prompts, retry prompts, passed-on outputs.

Owns the text that flows between tasks and back to agents. All pure: the
engine calls these with state and gets strings. ``plain_text`` turns raw
terminal output (colours, ``\\r`` progress lines, backspaces) into what a
person would read on screen, so neither a retry prompt nor a dependent's
``{{ outputs.x }}`` carries escape codes.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from delegate_tui.core import sandbox, scopes
from delegate_tui.core.events import ACTIVE_STATUSES
from delegate_tui.core.state import AttemptState, RunState

if TYPE_CHECKING:
    from delegate_tui.core.plan import Plan

#: Characters of output carried into a retry prompt or a dependent's prompt.
OUTPUT_LIMIT = 6000
RETRY_TAIL_LIMIT = 3000

_ESCAPE_RE = re.compile(
    r"""
    \x1b\][^\x07\x1b]*(?:\x07|\x1b\\)   # OSC ... BEL or ST (titles, hyperlinks, clipboard)
  | \x1b[P^_X][^\x1b]*\x1b\\            # DCS, PM, APC, SOS strings
  | \x1b\[[0-?]*[ -/]*[@-~]             # CSI sequences (colours, cursor moves)
  | \x1b[ -/]*[0-~]                     # two-character escapes
  | [\x00-\x08\x0b\x0c\x0e-\x1f\x7f]    # other C0 controls, except \t \n \r
    """,
    re.VERBOSE,
)


_BACKSPACE_RE = re.compile("[^\x08\r]\x08")


def plain_text(data: bytes | str) -> str:
    """Raw terminal output as the lines a person would see (no escape codes)."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = text.replace("\r\n", "\n")
    lines = []
    for raw in text.split("\n"):
        # Backspace erases the previous character, as a terminal shows it.
        while "\x08" in raw:
            erased = _BACKSPACE_RE.sub("", raw, count=1)
            raw = erased if erased != raw else raw.replace("\x08", "")
        # A carriage return rewinds: what follows overwrites from the start.
        segments = raw.split("\r")
        line = ""
        for seg in segments:
            seg = _ESCAPE_RE.sub("", seg)
            line = seg + line[len(seg) :]
        lines.append(line.rstrip())
    return "\n".join(lines)


def tail_text(data: bytes | str, limit: int) -> str:
    """The last ``limit`` characters of readable output, cut at a line start."""
    text = plain_text(data).strip("\n")
    if len(text) <= limit:
        return text
    cut = text[-limit:]
    newline = cut.find("\n")
    return "[...]\n" + (cut[newline + 1 :] if 0 <= newline < limit // 2 else cut)


def final_output(attempt: AttemptState, last_message: str | None) -> str:
    """What a finished attempt hands its dependents: its last message (a file the agent
    wrote, or the final text of its structured stream), else the tail of its output."""
    for candidate in (last_message, attempt.result_text):
        if candidate and candidate.strip():
            text = candidate.strip()
            return text if len(text) <= OUTPUT_LIMIT else text[:OUTPUT_LIMIT] + "\n[...]"
    return tail_text(_readable_output(attempt), OUTPUT_LIMIT)


def _readable_output(attempt: AttemptState) -> str:
    """The attempt's output as a person reads it: its transcript when its agent spoke
    in a structured stream (the raw tail is JSON), else its terminal output."""
    if attempt.transcript:
        return "\n".join(attempt.transcript)
    return plain_text(bytes(attempt.tail))


def render_prompt(plan: Plan, state: RunState, task_id: str) -> str:
    """A task's prompt with ``{{ outputs.x }}`` replaced by each dependency's output."""
    from delegate_tui.core.plan import OUTPUT_REF_RE  # opened later: not at a view's start

    prompt = plan.task(task_id).prompt or ""

    def substitute(match: re.Match[str]) -> str:
        dep = match.group(1)
        dep_state = state.tasks.get(dep)
        return dep_state.output if dep_state and dep_state.output else f"(no output from {dep})"

    return OUTPUT_REF_RE.sub(substitute, prompt)


def failure_summary(attempt: AttemptState) -> str:
    """One line on how an attempt failed."""
    if attempt.reason:
        return attempt.reason
    if attempt.sandbox_denied and attempt.exit_code not in (None, 0):
        shown = ", ".join(p or "?" for p in attempt.sandbox_denied[:3])
        return (
            f"exited with status {attempt.exit_code} after the sandbox ({attempt.sandbox}) "
            f"refused writes to {shown} (read-only file system)"
        )
    if attempt.exit_reason == "timeout":
        return "timed out"
    if attempt.exit_reason == "killed":
        return "killed by the operator"
    if attempt.signal:
        return f"ended by signal {attempt.signal}"
    if attempt.exit_code not in (None, 0):
        return f"exited with status {attempt.exit_code}"
    if attempt.criteria_passed is False:
        failed = [c.text for c in attempt.criteria if not c.passed]
        return "criteria failed: " + "; ".join(failed)
    if attempt.conflict_paths:
        return "merge conflict in " + ", ".join(attempt.conflict_paths)
    return "failed"


def next_prompt(
    original: str,
    last: AttemptState | None,
    operator_text: str = "",
    changed: str = "",
    found: str = "",
) -> str:
    """The prompt of a task's next attempt.

    After an attempt that ran, the retry prompt (:func:`retry_prompt`); when
    no attempt ran yet (or the last never started its agent), the task's own
    prompt with the operator's words, if any. ``changed`` says what merged
    under the last attempt (stale inputs), under a header of its own; ``found``
    what the run's live findings asked of it (:func:`notes.while_you_worked`).
    """
    if last is not None and last.started_ts:
        prompt = retry_prompt(original, last, operator_text)
    elif operator_text.strip():
        prompt = "\n".join([original.rstrip(), "", _NOTE_HEADER, operator_text.strip()]) + "\n"
    else:
        prompt = original
    if changed.strip():
        prompt = "\n".join([prompt.rstrip(), "", _CHANGED_HEADER, changed.strip()]) + "\n"
    if found.strip():
        prompt = "\n".join([prompt.rstrip(), "", FOUND_HEADER, found.strip()]) + "\n"
    return prompt


_NOTE_HEADER = "--- Operator's note ---"
_CHANGED_HEADER = "--- Merged while you worked (from delegate-tui) ---"
FOUND_HEADER = "--- Found while you worked (from delegate-tui, which watches every agent) ---"


def retry_prompt(original: str, failed: AttemptState, operator_text: str = "") -> str:
    """The prompt for the next attempt: the task, how it failed, the operator's words."""
    parts = [
        original.rstrip(),
        "",
        f"--- Previous attempt ({failed.number}) failed: {failure_summary(failed)} ---",
        *_what_failed(failed),
    ]
    if failed.conflict_paths:
        parts[-1] += " Start from the current integration branch and redo the change on top of it."
    tail = tail_text(_readable_output(failed), RETRY_TAIL_LIMIT)
    if tail:
        parts += ["Last output of the failed attempt:", tail]
    if operator_text.strip():
        parts += ["", _NOTE_HEADER, operator_text.strip()]
    return "\n".join(parts).strip() + "\n"


def _what_failed(failed: AttemptState) -> list[str]:
    """The failed criteria with their output, and the files a merge conflicted in."""
    lines = []
    for c in failed.criteria:
        if not c.passed:
            lines.append(f"Criterion failed: {c.command or c.text} (exit {c.exit_code})")
            if c.output.strip():
                lines.append(tail_text(c.output, 800))
    if failed.conflict_paths:
        lines.append(
            "Your changes did not merge cleanly with work that landed meanwhile, in: "
            + ", ".join(failed.conflict_paths)
            + "."
        )
    return lines


def continue_prompt(
    failed: AttemptState,
    operator_text: str = "",
    *,
    changed: str = "",
    kept: bool = False,
    found: str = "",
) -> str:
    """The message that continues an agent's own conversation (a resumed session): it
    has the task and its earlier work in its history, so only what happened since."""
    parts = [
        f"--- delegate-tui: your last attempt ended: {failure_summary(failed)} ---",
        *_what_failed(failed),
    ]
    if kept:
        parts.append("You continue in a new worktree that holds your earlier changes.")
    else:
        parts.append(
            "You continue in a new worktree made from the current integration branch: your "
            "earlier changes are not in it; make again what is still needed."
        )
    if operator_text.strip():
        parts += ["", _NOTE_HEADER, operator_text.strip()]
    if changed.strip():
        parts += ["", _CHANGED_HEADER, changed.strip()]
    if found.strip():
        parts += ["", FOUND_HEADER, found.strip()]
    return "\n".join(parts).strip() + "\n"


#: Entries of each list in the scope section; the rest are counted, not listed.
SCOPE_ENTRIES = 8
#: Globs shown of one owner, and of the task's own edits; the rest are counted.
SCOPE_GLOBS = 4
SCOPE_OWN_GLOBS = 12
#: Characters of one line of the section (a long path is cut with "…").
SCOPE_LINE = 160
#: The section stays under this many characters, whatever the plan: owners that do not
#: fit are counted instead of listed.
SCOPE_CHARS = 1500
SCOPE_HEADER = "--- Who owns what (from delegate-tui, which runs other agents beside you) ---"
_OWNING = {"awaiting-merge": "waiting to merge", "pending": "queued", "proposed": "queued"}


def _globs(globs: tuple[str, ...] | list[str], limit: int) -> str:
    """The first ``limit`` of ``globs`` that fit on a line, and how many more."""
    shown: list[str] = []
    size = 0
    for glob in globs[:limit]:
        if shown and size + len(glob) > SCOPE_LINE - 60:
            break
        shown.append(glob)
        size += len(glob) + 2
    rest = len(globs) - len(shown)
    return ", ".join(shown) + (f" and {rest} more" if rest else "")


def _line(text: str) -> str:
    return text if len(text) <= SCOPE_LINE else text[: SCOPE_LINE - 1] + "…"


def _no_folders(_rel: str) -> bool:
    return False


def _folders(glob: str) -> tuple[str, ...]:
    """The folders a glob's fixed start names: ``src/api/**`` and ``src/api/x.py`` give
    ``("src", "api")``."""
    parts: list[str] = []
    for part in glob.strip("/").split("/"):
        if any(c in part for c in "*?["):
            return tuple(parts)
        parts.append(part)
    return tuple(parts[:-1])


def nearness(mine: Sequence[str], theirs: Sequence[str]) -> int:
    """How near two tasks' files are: the most leading folders one of ``mine`` shares
    with one of ``theirs`` (0: nothing shared but the top of the repository)."""
    shared = _prefixes(tuple(mine)) & _prefixes(tuple(theirs))
    return max(map(len, shared), default=0)


@functools.lru_cache(maxsize=4096)
def _prefixes(globs: tuple[str, ...]) -> frozenset[tuple[str, ...]]:
    """Every leading run of folders of each glob (kept per task's globs: a plan's
    sections ask for each task's again and again)."""
    return frozenset(
        folders[:i] for folders in map(_folders, globs) for i in range(1, len(folders) + 1)
    )


def scope_section(
    plan: Plan, state: RunState, task_id: str, is_dir: Callable[[str], bool] = _no_folders
) -> str:
    """The end of every attempt's prompt: what this task may change, what others own.

    Short and stable for large plans: the owners nearest this task's files first
    (:func:`nearness`: the most leading folders shared), and among those as near,
    running tasks, then those waiting to merge, then queued ones; at most
    :data:`SCOPE_ENTRIES` of them and
    :data:`SCOPE_GLOBS` globs of each, then counts; never over :data:`SCOPE_CHARS`.
    ``is_dir`` tells which declared paths are folders in the attempt's worktree (a
    sandbox opens a declared folder itself, a declared file's folder otherwise).
    """
    task = plan.task(task_id)
    head = [SCOPE_HEADER]
    if task.kind == "consult":
        head.append(
            "This is a consult task: change no file; give your answer in your final message."
        )
    elif task.edits:
        head.append(_line("You may change: " + _globs(task.edits, SCOPE_OWN_GLOBS)))
    else:
        head.append("No files were declared for you: change only what the task needs.")
    owners: list[tuple[int, int, str]] = []
    order = {"running": 0, "waiting to merge": 1, "queued": 2}
    for other in plan.tasks:
        if other.id == task_id or not other.edits:
            continue
        status = state.tasks[other.id].status if other.id in state.tasks else "pending"
        how = "running" if status in ACTIVE_STATUSES else _OWNING.get(status)
        if how is None:
            continue  # done, failed or skipped: owns nothing now
        owners.append(
            (
                -nearness(task.edits, other.edits),
                order[how],
                f"  {_globs(other.edits, SCOPE_GLOBS)}: {other.id} ({how})",
            )
        )
    tail = _sandbox_lines(plan, task_id, is_dir)
    mine = set(scopes.shared_hits(task.edits, plan.shared_files))
    shared = [f for f in plan.shared_files if f not in mine]
    if shared and task.kind != "consult":
        tail.append(
            _line(
                "Shared config files only their declared owner may change: "
                + _globs(shared, SCOPE_ENTRIES)
            )
        )
    lines = head
    if owners:
        owners.sort(key=lambda o: (o[0], o[1]))
        lines.append(
            "Other agents own these; do not change them, say in your final message what you need instead:"
        )
        # What is left for owners once the rest is written (and a count of those left out).
        # Every other line is capped (SCOPE_LINE; the sandbox's folders and the shared
        # files are counted past a few), so the rest stays under 800 characters.
        room = SCOPE_CHARS - sum(len(line) + 1 for line in (*lines, *tail)) - 40
        listed = 0
        for _, _, line in owners[:SCOPE_ENTRIES]:
            line = _line(line)
            if len(line) + 1 > room:
                break
            lines.append(line)
            room -= len(line) + 1
            listed += 1
        if len(owners) > listed:
            lines.append(f"  and {len(owners) - listed} more task(s)")
    return "\n".join([*lines, *tail]) + "\n"


def _sandbox_lines(plan: Plan, task_id: str, is_dir: Callable[[str], bool]) -> list[str]:
    """What a sandboxed agent should know before it tries a write that will fail: the
    folders :func:`sandbox.prepare` opens, from the same :func:`sandbox.scope_dirs`."""
    task = plan.task(task_id)
    mode, network = sandbox.effective(plan, task)
    if mode == "off":
        return []
    folders = ("",) if mode == "worktree" else sandbox.scope_dirs(task.edits, is_dir)
    if (mode == "scope" and task.kind == "consult") or not folders:
        where = "no file of the repository"
    elif "" in folders:
        where = "in your working directory"
    else:  # the first few, and a count: the section stays under SCOPE_CHARS
        where = _line("only under " + _globs([f"{d}/" for d in folders], SCOPE_OWN_GLOBS))
    text = f"You run in a sandbox: you may write {where} (and /tmp); any other write fails "
    text += "with 'Read-only file system'."
    if not network:
        text += " You have no network."
    return [text]


def with_scope_section(
    prompt: str,
    plan: Plan,
    state: RunState,
    task_id: str,
    is_dir: Callable[[str], bool] = _no_folders,
) -> str:
    """``prompt`` with :func:`scope_section` at its end."""
    return prompt.rstrip() + "\n\n" + scope_section(plan, state, task_id, is_dir)
