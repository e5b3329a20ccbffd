"""A simulated coding agent: a real process that streams output and edits real files.

Owns the ``demo`` agent preset, so anyone can try delegate-tui with no AI
account and the tests can exercise every path with real processes. It
behaves like a coding agent on a terminal: thinking, tool calls, coloured
diffs, ``\\r`` spinners, over a few seconds; it edits files in its working
directory chosen from the task's declared ``edits`` (``$DELEGATE_EDITS``).
Flags make it misbehave on purpose: fail, fail only the first attempt,
flood, hang, ignore SIGTERM, ask for input, print binary, or edit a file
outside its scope. ``$DELEGATE_DEMO_SPEED`` scales every delay (0 = instant).

A retry is read, not guessed: the agent parses its prompt's retry sections
(the previous attempt's failure, the failed criteria, the operator's note;
see ``core/prompts.retry_prompt``) and acts on what they name. A failed
``grep`` criterion makes it add what the check looks for; a name in backticks
or in CONSTANT_CASE in the operator's note is added too; a file named as
conflicting (or in the note) is left alone, so its out-of-scope edit is not
made again. Nothing else changes on a later attempt.

Asked to draft a plan (``delegate-tui draft``), it answers with the plan of
``demo/drafts.py`` for the goal, and edits nothing.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shlex
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from delegate_tui.demo import drafts

RESET = "\x1b[0m"
DIM = "\x1b[2m"
BOLD = "\x1b[1m"
GREEN = "\x1b[32m"
RED = "\x1b[31m"
CYAN = "\x1b[36m"
YELLOW = "\x1b[33m"
MAGENTA = "\x1b[35m"
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


def _speed() -> float:
    try:
        return max(0.0, float(os.environ.get("DELEGATE_DEMO_SPEED", "1")))
    except ValueError:
        return 1.0


def pause(seconds: float) -> None:
    """Sleep, scaled by ``$DELEGATE_DEMO_SPEED``."""
    scaled = seconds * _speed()
    if scaled > 0:
        time.sleep(scaled)


def say(text: str = "") -> None:
    """Print a line and flush, as a streaming agent does."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def spin(label: str, seconds: float) -> None:
    """A ``\\r`` spinner line that ends in a tick."""
    steps = max(1, int(seconds / 0.08))
    for i in range(steps):
        sys.stdout.write(f"\r{CYAN}{SPINNER[i % len(SPINNER)]}{RESET} {label}")
        sys.stdout.flush()
        pause(0.08)
    sys.stdout.write(f"\r{GREEN}✔{RESET} {label}\x1b[K\n")
    sys.stdout.flush()


def target_for(glob: str, task_id: str) -> str:
    """A concrete file a task declared as ``glob`` would plausibly edit."""
    glob = glob.strip().rstrip("/")
    magic = any(c in glob for c in "*?[")
    if not magic:
        last = glob.rsplit("/", 1)[-1]
        return glob if "." in last else f"{glob}/{task_id}.py"
    if glob.endswith("**") or glob.rsplit("/", 1)[-1] == "*":
        folder = "/".join(p for p in glob.split("/")[:-1] if not any(c in p for c in "*?["))
        ext = ".md" if folder.startswith("docs") else ".py"
        return f"{folder}/{task_id}{ext}" if folder else f"{task_id}{ext}"
    path = glob.replace("**/", "")
    path = re.sub(r"\[[^\]]*\]", "x", path).replace("?", "x").replace("*", task_id)
    return path.strip("/")


def comment_for(path: str) -> str:
    """The line-comment marker for a file type."""
    suffix = Path(path).suffix
    if suffix in (".py", ".sh", ".yaml", ".yml", ".toml", ".rb"):
        return "#"
    if suffix in (".md", ".txt", ""):
        return ""
    return "//"


def edit_file(root: Path, rel: str, task_id: str, prompt: str) -> tuple[int, int]:
    """Append a plausible change to ``rel``; return (lines added, lines removed)."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    mark = comment_for(rel)
    summary = (prompt.strip().splitlines() or ["change"])[0][:70]
    if path.suffix == ".py":
        name = re.sub(r"\W", "_", task_id).lower()
        body = [
            "",
            "",
            f"def {name}_handler(request: dict) -> dict:",
            f'    """{summary}"""',
            f"    result = {{'task': '{task_id}', 'ok': True}}",
            "    result.update(request)",
            "    return result",
        ]
    elif mark:
        body = [
            "",
            f"{mark} {task_id}: {summary}",
            f"export const {re.sub(chr(92) + 'W', '_', task_id)} = true;",
        ]
    else:
        body = ["", f"## {task_id}", "", summary, ""]
    if path.suffix == ".json":  # a manifest stays valid JSON: one key more
        drafts.json_key(path, task_id)
        return 1, 0
    existing = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    path.write_text(existing + "\n".join(body) + "\n", encoding="utf-8")
    return len(body), 0


def collide(root: Path, rel: str, task_id: str) -> None:
    """Rewrite the first line of ``rel`` (the collision scenario's shared edit)."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    line = f"OWNER = {task_id!r}  # set by {task_id}"
    if lines:
        lines[0] = line
    else:
        lines = [line]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


_FAILED_HEADER = re.compile(r"^--- Previous attempt \((\d+)\) failed: (.*) ---$")
_CRITERION = re.compile(r"^Criterion failed: (.*) \(exit -?\d+\)$")
_NOTE_HEADER = "--- Operator's note ---"
_TAIL_HEADER = "Last output of the failed attempt:"
_OTHER_HEADER = re.compile(r"^--- .* ---$")
_NAMED = re.compile(r"`([^`\n]+)`|\b([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)\b")


@dataclass
class Feedback:
    """What a retry prompt tells the agent: the failure, failed checks, the operator's note."""

    failure: str = ""
    criteria: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # the failure section, without the old output
    note: str = ""

    def __bool__(self) -> bool:
        return bool(self.failure or self.note)

    def wanted(self) -> list[tuple[str, str, str]]:
        """``(text, file, why)`` for each thing the feedback asks to be written.

        A failed ``grep PATTERN FILE`` asks for PATTERN in FILE; a name in
        backticks or CONSTANT_CASE in the operator's note asks for itself
        (``file`` empty: the task's own file)."""
        out: list[tuple[str, str, str]] = []
        for command in self.criteria:
            found = grep_target(command)
            if found:
                out.append((found[0], found[1], f"the failed check `{command}` looks for it"))
        for match in _NAMED.finditer(self.note):
            name = (match.group(1) or match.group(2)).strip()
            if name and not any(name == w[0] for w in out) and "/" not in name:
                out.append((name, "", "the operator's note asks for it"))
        return out

    def names_path(self, rel: str) -> bool:
        """True when the failure or the note names ``rel`` (e.g. as a merge conflict)."""
        text = "\n".join([*self.lines, self.note])
        return rel in text


def read_feedback(prompt: str) -> Feedback:
    """The retry sections of ``prompt`` (empty on a first attempt without a note).

    The previous attempt's output, quoted in the prompt, is skipped: it is what
    the agent printed, not what it is told."""
    fb = Feedback()
    section = ""
    note: list[str] = []
    for line in prompt.splitlines():
        header = _FAILED_HEADER.match(line.strip())
        if header:
            section, fb.failure = "failure", header.group(2)
            continue
        if line.strip() == _NOTE_HEADER:
            section = "note"
            continue
        if line.strip() == _TAIL_HEADER:
            section = "tail"
            continue
        if _OTHER_HEADER.match(line.strip()):
            section = ""  # another section (e.g. who owns what): not feedback
            continue
        if section == "failure":
            fb.lines.append(line)
            criterion = _CRITERION.match(line.strip())
            if criterion:
                fb.criteria.append(criterion.group(1))
        elif section == "note":
            note.append(line)
    fb.note = "\n".join(note).strip()
    return fb


def grep_target(command: str) -> tuple[str, str] | None:
    """``(pattern, file)`` of a plain ``grep [-options] PATTERN FILE`` command, else None."""
    try:
        argv = shlex.split(command)
    except ValueError:
        return None
    if len(argv) < 3 or Path(argv[0]).name not in ("grep", "egrep", "fgrep"):
        return None
    rest = [a for a in argv[1:] if not a.startswith("-")]
    if len(rest) != 2 or any(c in rest[0] for c in "^$[]*+?\\|(){}"):
        return None  # a fixed word in one file: anything fancier is not guessed at
    return rest[0], rest[1]


def add_line(root: Path, rel: str, text: str, why: str) -> str:
    """Append a line carrying ``text`` to ``rel``; return the line."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    mark = comment_for(rel)
    line = f"{mark} {text}: added because {why}" if mark else f"{text}: added because {why}"
    existing = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    if existing and not existing.endswith("\n"):
        existing += "\n"
    path.write_text(existing + line + "\n", encoding="utf-8")
    return line


def show_diff(rel: str, added: list[str]) -> None:
    """Print a small coloured diff as agents do."""
    say(f"{BOLD}✎ Edit{RESET} {rel}")
    say(f"{DIM}@@ -1,3 +1,{3 + len(added)} @@{RESET}")
    for line in added[:6]:
        say(f"{GREEN}+{line}{RESET}")


def read_retry(feedback: Feedback) -> None:
    """Say what the retry prompt asks, before acting on it."""
    if feedback.failure:
        say(f"{YELLOW}↻ The previous attempt failed:{RESET} {feedback.failure}")
        for command in feedback.criteria:
            if command not in feedback.failure:
                say(f"  {DIM}failed check:{RESET} {command}")
    if feedback.note:
        say(f"{YELLOW}✉ Operator's note:{RESET} {feedback.note.splitlines()[0][:100]}")
        for line in feedback.note.splitlines()[1:4]:
            say(f"  {line[:100]}")
    say("I'll fix what it names and keep the rest of the change as it was.")
    say()


def draft(prompt: str, root: Path, last_message: str, step: float) -> int:
    """Answer a drafting prompt with a plan (see ``demo/drafts.py``); edit nothing."""
    say(f"{DIM}Thinking about how to split the goal…{RESET}")
    spin("Reading project structure", step)
    problems = drafts.problems_of(prompt)
    if problems:
        say(f"{YELLOW}↻ delegate-tui sent back {len(problems)} problem(s):{RESET}")
        for problem in problems[:6]:
            say(f"  {DIM}{problem[:160]}{RESET}")
    spin("Drafting the plan", step)
    text = drafts.answer(prompt, root, say)
    if last_message:
        Path(last_message).write_text(text, encoding="utf-8")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the simulated agent."""
    parser = argparse.ArgumentParser(prog="delegate-tui-demo-agent")
    parser.add_argument("prompt", nargs="?", default="")
    parser.add_argument("--last-message", default="")
    parser.add_argument("--model", default="demo-1")
    parser.add_argument("--persona", default="")
    parser.add_argument("--duration", type=float, default=6.0, help="seconds of simulated work")
    parser.add_argument("--fail", action="store_true", help="exit 1 after working")
    parser.add_argument("--fail-first", action="store_true", help="fail on attempt 1 only")
    parser.add_argument("--flood", type=int, default=0, help="print N lines as fast as possible")
    parser.add_argument("--hang", action="store_true", help="never finish")
    parser.add_argument("--hang-first", action="store_true", help="never finish on attempt 1 only")
    parser.add_argument("--ignore-sigterm", action="store_true")
    parser.add_argument("--ask", action="store_true", help="ask a question and read stdin")
    parser.add_argument("--binary", action="store_true", help="print invalid UTF-8 bytes")
    parser.add_argument("--collide", default="", help="also rewrite line 1 of this file")
    parser.add_argument("--no-edit", action="store_true")
    parser.add_argument(
        "--min-seconds",
        type=float,
        default=0.0,
        help="work at least this long in real seconds, whatever the speed "
        "(so a stray edit is seen live even in a fast test run)",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()

    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    task_id = os.environ.get("DELEGATE_TASK_ID", "task")
    attempt = int(os.environ.get("DELEGATE_ATTEMPT", "1") or 1)
    edits = [e for e in os.environ.get("DELEGATE_EDITS", "").split("\n") if e.strip()]
    root = Path.cwd()
    rng = random.Random(task_id)
    step = args.duration / 6
    prompt = args.prompt or os.environ.get("DELEGATE_PROMPT", "")
    feedback = read_feedback(prompt)

    say(
        f"{MAGENTA}◆ demo-agent{RESET} {DIM}model={args.model} task={task_id} attempt={attempt}{RESET}"
    )
    if args.persona:
        say(f"{DIM}persona: {args.persona}{RESET}")
    first = (prompt.strip().splitlines() or ["(no prompt)"])[0]
    say(f"{BOLD}> {first[:100]}{RESET}")
    say()
    if feedback:
        read_retry(feedback)
    if drafts.is_draft_request(prompt):
        return draft(prompt, root, args.last_message, step)
    say(f"{DIM}Thinking…{RESET}")
    pause(step * 0.5)
    say("I'll read the relevant files first, then make the smallest change that works.")
    spin("Reading project structure", step)
    files = sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and ".git" not in p.parts
    )
    for name in files[:4]:
        say(f"  {DIM}read{RESET} {name}")
    if args.flood:
        line = "x" * 78
        out = sys.stdout
        for i in range(args.flood):
            out.write(f"{i:08d} {line[:70]}\n")
        out.flush()
    if args.binary:
        sys.stdout.flush()
        sys.stdout.buffer.write(b"binary:\xff\xfe\x00\x01\x80\xc3(\n")
        sys.stdout.buffer.flush()
    if args.ask:
        sys.stdout.write(f"{YELLOW}?{RESET} Apply these changes? [y/N] ")
        sys.stdout.flush()
        answer = sys.stdin.readline().strip().lower()
        say(f"answer: {answer or '(none)'}")
        if answer not in ("y", "yes"):
            say(f"{RED}✘ Not applying changes.{RESET}")
            return 1
    changed: list[str] = []
    if args.collide and feedback.names_path(args.collide):
        say(f"{YELLOW}!{RESET} {args.collide} is named in the retry prompt: leaving it alone")
    elif args.collide:
        # Early, as a real agent's stray edit is: it stays live while the rest is done.
        collide(root, args.collide, task_id)
        show_diff(args.collide, [f"OWNER = {task_id!r}"])
        changed.append(args.collide)
    spin("Planning the change", step)

    if not args.no_edit:
        targets = [target_for(g, task_id) for g in edits] or []
        for rel in dict.fromkeys(targets):
            added, _ = edit_file(root, rel, task_id, prompt)
            show_diff(rel, [f"# {task_id}: {first[:60]}", "..."][: max(1, added // 3)])
            changed.append(rel)
            pause(step * 0.5)
        default = targets[0] if targets else ""
        for text, rel, why in feedback.wanted():
            rel = rel or default
            if not rel:
                continue
            current = root / rel
            if current.is_file() and text in current.read_text(encoding="utf-8", errors="replace"):
                continue
            show_diff(rel, [add_line(root, rel, text, why)])
            if rel not in changed:
                changed.append(rel)

    say(f"{DIM}$ running checks{RESET}")
    for i in range(0, 101, 20):
        sys.stdout.write(f"\r  tests {i:3d}% [{'#' * (i // 10):<10}]")
        sys.stdout.flush()
        pause(step * 0.15)
    sys.stdout.write("\n")
    passed = rng.randint(8, 40)
    say(f"  {GREEN}{passed} passed{RESET} in {rng.uniform(0.4, 3.0):.2f}s")

    if args.hang or (args.hang_first and attempt == 1):
        say(f"{DIM}Waiting…{RESET}")
        while True:
            time.sleep(1)

    left = args.min_seconds - (time.monotonic() - started)
    if left > 0:
        time.sleep(left)

    fail = args.fail or (args.fail_first and attempt == 1)
    summary = (
        f"{task_id}: changed {', '.join(changed)}."
        if changed
        else f"{task_id}: answered without editing files. Recommendation: use streams for "
        "large files, buffers for small ones."
    )
    if args.last_message:
        Path(args.last_message).write_text(summary + "\n", encoding="utf-8")
    if fail:
        say(f"{RED}✘ Error: tests failed after the change (simulated failure){RESET}")
        return 1
    say(f"{GREEN}✔ Done.{RESET} {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
