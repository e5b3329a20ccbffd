"""The scope guard: agents' file writes outside their task's scope are refused before they happen.

Owns the decision (:func:`decide`, pure) and the two ends around it: the
per-attempt guard file and claude settings that install it as a ``PreToolUse``
hook (:func:`install`), and the hook itself (``python -m delegate_tui.guard
GUARD_FILE``, :func:`main`), which claude runs before each of its
``Write``, ``Edit``, ``MultiEdit`` and ``NotebookEdit`` calls. A refused call
never reaches the disk; the model reads the reason ("api/schema.py belongs to
task contract; say in your final message what you need instead") and the
refusal is appended to the attempt's denials file, which the attempt reports
as :class:`GuardDenied` events.

Only claude has such hooks (codex and gemini have no per-path rule for their
write tools); for them the live conflict detection sees out-of-scope writes
after the fact, and ``sandbox: scope`` refuses them at the filesystem.
Shell commands are not guarded here either (they stay under live detection).
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from delegate_tui.core import scopes

#: The tools whose writes the guard decides on, and where each names its file.
WRITE_TOOLS: Mapping[str, str] = {
    "Write": "file_path",
    "Edit": "file_path",
    "MultiEdit": "file_path",
    "NotebookEdit": "notebook_path",
}
#: Marks a refusal as the guard's in what the model and the transcript read.
MARK = "delegate-tui guard"


@dataclass(frozen=True, slots=True)
class GuardSpec:
    """What one attempt may write: its worktree, its globs, who owns the rest."""

    root: str
    task: str
    edits: tuple[str, ...] = ()
    consult: bool = False
    #: Other tasks' globs, by task id (running, queued or unmerged ones).
    owners: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    shared_files: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Verdict:
    """Allowed, or refused with the path (relative to the worktree) and why."""

    allowed: bool
    path: str = ""
    reason: str = ""


def decide(spec: GuardSpec, tool: str, tool_input: Mapping[str, Any]) -> Verdict:
    """Whether ``tool`` may write what ``tool_input`` names."""
    key = WRITE_TOOLS.get(tool)
    if key is None:
        return Verdict(True)
    raw = tool_input.get(key)
    if not isinstance(raw, str) or not raw:
        return Verdict(True)  # nothing to judge: the tool itself will complain
    root = os.path.normpath(spec.root)
    target = os.path.normpath(raw if os.path.isabs(raw) else os.path.join(root, raw))
    if target != root and not target.startswith(root + os.sep):
        return Verdict(
            False,
            target,
            f"{MARK}: {target} is outside your worktree ({root}); change files only there",
        )
    rel = os.path.relpath(target, root).replace(os.sep, "/")
    if rel == ".git" or rel.startswith(".git/"):
        return Verdict(False, rel, f"{MARK}: {rel} is git's own data; do not write it")
    if spec.consult:
        return Verdict(
            False,
            rel,
            f"{MARK}: task {spec.task} is a consult task and changes no file; "
            "give your answer in your final message instead",
        )
    if not spec.edits or scopes.matches_any(spec.edits, rel):
        return Verdict(True, rel)
    owner = next((t for t, globs in spec.owners.items() if scopes.matches_any(globs, rel)), "")
    if owner:
        why = f"{rel} belongs to task {owner}"
    elif scopes.matches_any(spec.shared_files, rel):
        why = f"{rel} is a shared config file that task {spec.task} does not own"
    else:
        why = f"{rel} is outside what task {spec.task} may change ({', '.join(spec.edits)})"
    return Verdict(False, rel, f"{MARK}: {why}; say in your final message what you need instead")


def spec_to_json(spec: GuardSpec) -> dict[str, Any]:
    """The guard file's content."""
    return {
        "root": spec.root,
        "task": spec.task,
        "edits": list(spec.edits),
        "consult": spec.consult,
        "owners": {k: list(v) for k, v in spec.owners.items()},
        "shared_files": list(spec.shared_files),
    }


def spec_from_json(obj: Mapping[str, Any]) -> GuardSpec:
    """The inverse of :func:`spec_to_json`."""
    return GuardSpec(
        root=str(obj["root"]),
        task=str(obj["task"]),
        edits=tuple(str(g) for g in obj.get("edits", ())),
        consult=bool(obj.get("consult", False)),
        owners={str(k): tuple(str(g) for g in v) for k, v in obj.get("owners", {}).items()},
        shared_files=tuple(str(g) for g in obj.get("shared_files", ())),
    )


def install(spec: GuardSpec, folder: Path, name: str) -> tuple[str, Path]:
    """Write the guard file and its denials file's place; the ``--settings`` JSON for claude.

    Returns the settings (a JSON string) and the denials file (JSON lines, one per
    refusal, appended by the hook).
    """
    folder.mkdir(parents=True, exist_ok=True)
    guard_file = folder / f"{name}.json"
    denials = folder / f"{name}.denials.jsonl"
    guard_file.write_text(
        json.dumps({**spec_to_json(spec), "denials": str(denials)}), encoding="utf-8"
    )
    # If the hook cannot even start (no Python where it was), it refuses: a guard that
    # fails open would let every write through with claude reporting only a hook error.
    unreadable = _deny(f"{MARK}: the guard could not start; ask the operator")
    command = (
        f"{shlex.quote(sys.executable)} -m delegate_tui.guard {shlex.quote(str(guard_file))}"
        f" || printf '%s\\n' {shlex.quote(unreadable)}"
    )
    settings = {
        "hooks": {
            "PreToolUse": [
                {
                    "matcher": "|".join(WRITE_TOOLS),
                    "hooks": [{"type": "command", "command": command, "timeout": 30}],
                }
            ]
        }
    }
    return json.dumps(settings), denials


def read_denials(path: Path, seen: int = 0) -> list[dict[str, str]]:
    """The refusals recorded in a denials file, from the ``seen``-th on."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    out = []
    for line in lines[seen:]:
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            out.append({k: str(v) for k, v in obj.items()})
    return out


def main(argv: Sequence[str], stdin: str) -> tuple[int, str]:
    """The hook: the exit code and what it prints for claude (a decision, or nothing)."""
    if len(argv) != 1:
        return 1, ""
    try:
        obj = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
        spec = spec_from_json(obj)
        event = json.loads(stdin or "{}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        # A guard that cannot read its own file refuses: writes are what it protects.
        reason = f"{MARK}: the guard could not read its settings ({exc}); ask the operator"
        return 0, _deny(reason)
    tool = str(event.get("tool_name", ""))
    tool_input = event.get("tool_input") if isinstance(event.get("tool_input"), dict) else {}
    verdict = decide(spec, tool, tool_input or {})
    if verdict.allowed:
        return 0, ""
    denials = obj.get("denials")
    if isinstance(denials, str) and denials:
        try:
            with open(denials, "a", encoding="utf-8") as fh:
                record = {"tool": tool, "path": verdict.path, "reason": verdict.reason}
                fh.write(json.dumps(record) + "\n")
        except OSError:
            pass  # the refusal stands; the stream still shows it
    return 0, _deny(verdict.reason)


def _deny(reason: str) -> str:
    return json.dumps(
        {
            "hookSpecificOutput": {
                "hookEventName": "PreToolUse",
                "permissionDecision": "deny",
                "permissionDecisionReason": reason,
            }
        }
    )
