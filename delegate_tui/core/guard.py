"""The scope guard: agents' file writes outside their task's scope are refused before they happen.

Owns the decision (:func:`decide`, pure) and the two ends around it: the
per-attempt guard file and what installs it as a hook in the agent's CLI
(:func:`install`), and the hook itself (``python -m delegate_tui.guard
GUARD_FILE CLI``, :func:`main`), which the CLI runs before each of its file
writes. A refused call never reaches the disk; the model reads the reason
("api/schema.py belongs to task contract; say in your final message what you
need instead") and the refusal is appended to the attempt's denials file,
which the attempt reports as :class:`GuardDenied` events.

* **claude**: a ``PreToolUse`` hook on ``Write``, ``Edit``, ``MultiEdit`` and
  ``NotebookEdit``, passed as ``--settings`` JSON.
* **gemini** (0.61): a ``BeforeTool`` hook on ``write_file`` and ``replace``
  (both name their file in ``file_path``), answered ``{"decision": "deny",
  "reason": ...}``; the model reads "Tool execution blocked: <reason>". gemini
  takes hooks only from settings files, and has no flag for one: the attempt
  runs it with ``GEMINI_CLI_HOME`` pointing at a folder in the run folder whose
  ``.gemini/`` links every entry of the operator's own ``~/.gemini`` (its
  credentials, sessions, extensions, GEMINI.md) except ``settings.json``, a copy
  of the operator's settings with the hook added (:func:`gemini_home`). Neither
  the operator's files nor the worktree are touched. (``GEMINI_CLI_SYSTEM_SETTINGS_PATH``
  does not do: gemini skips a system settings file unless it and every folder
  above it are owned by root and writable by no one else, so the guard would
  silently be missing for an ordinary user, or under ``/tmp``.)
* **codex** (0.171) has ``PreToolUse`` hooks too, and runs them for
  ``apply_patch``, but a hook given on the command line (``-c hooks...``) runs
  only once "trusted", which is recorded in the operator's ``~/.codex``, or with
  ``--dangerously-bypass-hook-trust``, which also runs every untrusted hook the
  repository itself declares (an earlier task could have merged one). Neither
  is done: for codex the live conflict detection sees out-of-scope writes after
  the fact, and ``sandbox: scope`` refuses them at the filesystem.

Shell commands are not guarded here (they stay under live detection).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from delegate_tui.core import scopes

#: The tools whose writes the guard decides on, and where each names its file: claude's
#: and gemini's (their names do not overlap).
WRITE_TOOLS: Mapping[str, str] = {
    "Write": "file_path",
    "Edit": "file_path",
    "MultiEdit": "file_path",
    "NotebookEdit": "notebook_path",
    "write_file": "file_path",
    "replace": "file_path",
}
#: The CLIs the guard hooks into, and their write tools (what each hook is matched on).
CLI_TOOLS: Mapping[str, tuple[str, ...]] = {
    "claude": ("Write", "Edit", "MultiEdit", "NotebookEdit"),
    "gemini": ("write_file", "replace"),
}
#: The name gemini knows the guard's hook by (``hooksConfig.disabled`` lists hooks by name).
GEMINI_HOOK_NAME = "delegate-tui-guard"
#: In a guard home's ``.gemini``, the link to the operator's own (what a sandbox keeps
#: writable along with the guard home: the other links lead there).
OPERATOR_LINK = ".delegate-tui-operator"
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


def install(
    spec: GuardSpec, folder: Path, name: str, cli: str = "claude", source: Path | None = None
) -> tuple[str, Path]:
    """Write the guard file and its denials file's place; what installs the hook in ``cli``.

    Returns that (claude: the ``--settings`` JSON; gemini: the folder to run it with as
    ``GEMINI_CLI_HOME``, made by :func:`gemini_home` from ``source``, the operator's
    ``.gemini`` folder) and the denials file (JSON lines, one per refusal, appended by
    the hook).
    """
    if cli not in CLI_TOOLS:
        raise ValueError(f"the scope guard has no hook for {cli!r}")
    folder.mkdir(parents=True, exist_ok=True)
    guard_file = folder / f"{name}.json"
    denials = folder / f"{name}.denials.jsonl"
    guard_file.write_text(
        json.dumps({**spec_to_json(spec), "denials": str(denials)}), encoding="utf-8"
    )
    # If the hook cannot even start (no Python where it was), it refuses: a guard that
    # fails open would let every write through with the CLI reporting only a hook error.
    unreadable = _deny(cli, f"{MARK}: the guard could not start; ask the operator")
    command = (
        f"{shlex.quote(sys.executable)} -m delegate_tui.guard {shlex.quote(str(guard_file))}"
        f" {cli} || printf '%s\\n' {shlex.quote(unreadable)}"
    )
    if cli == "gemini":
        home = gemini_home(folder / f"{name}.gemini-home", source, command)
        return str(home), denials
    settings = {
        "hooks": {
            "PreToolUse": [
                {
                    "matcher": "|".join(CLI_TOOLS[cli]),
                    "hooks": [{"type": "command", "command": command, "timeout": 30}],
                }
            ]
        }
    }
    return json.dumps(settings), denials


def gemini_home(home: Path, source: Path | None, command: str) -> Path:
    """A ``GEMINI_CLI_HOME`` for one attempt: ``home/.gemini`` links every entry of
    ``source`` (the operator's ``~/.gemini``) but ``settings.json``, which is theirs with
    the guard's ``BeforeTool`` hook first and hooks on. Returns ``home``.

    Hooks the operator turned off (``hooksConfig.enabled: false``) stay off: only the
    guard's runs. Settings gemini could not read either (not JSON, even without its
    comments) are left out, the guard kept: gemini then says what it misses.
    """
    dot = home / ".gemini"
    dot.mkdir(parents=True, exist_ok=True, mode=0o700)
    home.chmod(0o700)  # it holds a copy of the operator's settings (tokens, at times)
    settings: dict[str, Any] = {}
    if source is not None and not source.exists():
        source.mkdir(parents=True, mode=0o700)  # as gemini's first run would make it
    if source is not None and source.is_dir():
        if not (dot / OPERATOR_LINK).is_symlink():
            (dot / OPERATOR_LINK).symlink_to(source.absolute())
        for entry in sorted(source.iterdir()):
            link = dot / entry.name
            if entry.name == "settings.json" or link.is_symlink() or link.exists():
                continue
            link.symlink_to(entry.absolute())
        try:
            loaded = json.loads(strip_json_comments((source / "settings.json").read_text("utf-8")))
        except (OSError, ValueError):
            loaded = {}
        settings = loaded if isinstance(loaded, dict) else {}
    hooks_config = settings.get("hooksConfig")
    hooks_config = dict(hooks_config) if isinstance(hooks_config, dict) else {}
    hooks = settings.get("hooks")
    hooks = (
        dict(hooks) if isinstance(hooks, dict) and hooks_config.get("enabled") is not False else {}
    )
    before = hooks.get("BeforeTool")
    ours = {
        "matcher": "^(" + "|".join(CLI_TOOLS["gemini"]) + ")$",
        "hooks": [
            # gemini's timeout is in milliseconds (claude's in seconds)
            {"name": GEMINI_HOOK_NAME, "type": "command", "command": command, "timeout": 30000}
        ],
    }
    hooks["BeforeTool"] = [ours, *(before if isinstance(before, list) else [])]
    disabled = hooks_config.get("disabled")
    hooks_config["disabled"] = [
        d for d in (disabled if isinstance(disabled, list) else []) if d != GEMINI_HOOK_NAME
    ]
    hooks_config["enabled"] = True
    settings = {**settings, "hooksConfig": hooks_config, "hooks": hooks}
    target = dot / "settings.json"
    target.unlink(missing_ok=True)  # a link left by an earlier look at this folder
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(json.dumps(settings, indent=2))
    return home


def gemini_home_return(home: Path) -> list[str]:
    """Move what gemini made in an attempt's :func:`gemini_home` (its first
    ``projects.json``, a ``tmp/`` for a new project, credentials after a login) to
    the operator's own ``.gemini``, where it would have gone without the guard; what
    is already there stays as it is. Returns the names moved."""
    dot = home / ".gemini"
    operator = dot / OPERATOR_LINK
    if not operator.is_symlink():
        return []
    target = operator.resolve()
    moved: list[str] = []
    for entry in sorted(dot.iterdir()):
        if entry.is_symlink() or entry.name in ("settings.json", OPERATOR_LINK):
            continue
        if not (target / entry.name).exists():
            shutil.move(str(entry), str(target / entry.name))
            moved.append(entry.name)
    return moved


def strip_json_comments(text: str) -> str:
    """``text`` without ``//`` and ``/* */`` comments outside strings (gemini's settings
    files may have them, as its ``strip-json-comments`` allows)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif text.startswith("//", i):
            while i < n and text[i] != "\n":
                i += 1
        elif text.startswith("/*", i):
            close = text.find("*/", i + 2)
            i = n if close < 0 else close + 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


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
    """The hook: the exit code and what it prints for the CLI (a refusal, or nothing).

    ``argv`` is the guard file, then the CLI whose hook input arrives on stdin and
    whose answer is printed (``claude`` when left out).
    """
    if len(argv) not in (1, 2) or (len(argv) == 2 and argv[1] not in CLI_TOOLS):
        return 1, ""  # the command's fallback refuses
    cli = argv[1] if len(argv) == 2 else "claude"
    try:
        obj = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
        spec = spec_from_json(obj)
        event = json.loads(stdin or "{}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        # A guard that cannot read its own file refuses: writes are what it protects.
        reason = f"{MARK}: the guard could not read its settings ({exc}); ask the operator"
        return 0, _deny(cli, reason)
    tool, tool_input = hook_call(event)
    verdict = decide(spec, tool, tool_input)
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
    return 0, _deny(cli, verdict.reason)


def hook_call(event: Any) -> tuple[str, Mapping[str, Any]]:
    """The tool and its input from a hook's input: claude's ``PreToolUse`` and gemini's
    ``BeforeTool`` both send ``tool_name`` and ``tool_input``."""
    if not isinstance(event, dict):
        return "", {}
    tool_input = event.get("tool_input")
    return str(event.get("tool_name", "")), tool_input if isinstance(tool_input, dict) else {}


def _deny(cli: str, reason: str) -> str:
    if cli == "gemini":
        return json.dumps({"decision": "deny", "reason": reason})
    return json.dumps(
        {
            "hookSpecificOutput": {
                "hookEventName": "PreToolUse",
                "permissionDecision": "deny",
                "permissionDecisionReason": reason,
            }
        }
    )
