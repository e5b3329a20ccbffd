"""Agent presets and argv templating.

Owns how a task becomes a command line. Every agent is an argv *template*:
placeholders are substituted one argument at a time, so a prompt is always a
single argv element and never passes through a shell. The presets were checked
against each CLI's own ``--help`` (claude 2.1.332, codex-cli 0.171.0, gemini 0.61.0,
aider 0.86); plans can override or extend them under ``agents:``.

claude, codex and gemini run in their structured modes (``stream``: the parser in
``core/streams/`` that reads them), so the run knows each agent's tool calls,
tokens and cost; a prompt never reaches them where an option could be read (it
follows ``--`` or is one ``--prompt=`` argument, so a prompt starting with ``-``
is still a prompt). A retry continues the agent's conversation through
``resume_command`` where its CLI can. (About 470 lines: the agent definitions a plan
may write, the presets, and how an argv and an environment are built from them, read
side by side when a CLI's flags change.)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Transport = Literal["pty", "pipes"]

#: Placeholders an argv template may use. ``{last_message}`` is a file the agent
#: may write its final answer to (codex's ``--output-last-message``); the engine
#: reads it back as the task's output for dependents.
PLACEHOLDERS = (
    "prompt",
    "model",
    "persona",
    "task_id",
    "workdir",
    "last_message",
    "python",
    "session",
    "budget_usd",
    "max_turns",
    "guard_settings",
)
StreamFormat = Literal["claude", "codex", "gemini"]
Tools = Literal["edits", "all"]
_PLACEHOLDER_RE = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")


class AgentDef(BaseModel):
    """An agent as a plan declares it under ``agents:``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    extends: str | None = Field(default=None, description="Preset or agent to start from.")
    command: tuple[str, ...] | None = Field(
        default=None, description="argv template, e.g. ['my-agent', '--prompt', '{prompt}']."
    )
    args: tuple[str, ...] = Field(default=(), description="Extra arguments appended to argv.")
    model_args: tuple[str, ...] | None = Field(
        default=None, description="Arguments added only when a task sets `model`."
    )
    persona_args: tuple[str, ...] | None = Field(
        default=None,
        description="Arguments added only when a task sets `persona`; without them the "
        "persona is prepended to the prompt.",
    )
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables.")
    transport: Transport | None = Field(
        default=None, description="pty (default: colours, line buffering) or pipes."
    )
    stream: StreamFormat | None = Field(
        default=None,
        description="The structured output it prints (claude, codex, gemini), read for its "
        "tool calls, tokens and cost. Inherited through `extends`.",
    )
    tools: Tools | None = Field(
        default=None,
        description="edits (default: the agent may change files) or all (it may also run "
        "shell commands, e.g. the project's tests, without asking).",
    )
    resume_command: tuple[str, ...] | None = Field(
        default=None,
        description="argv template that continues conversation {session} with {prompt}.",
    )


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """A fully resolved agent: what to run and how."""

    name: str
    command: tuple[str, ...]
    args: tuple[str, ...] = ()
    model_args: tuple[str, ...] = ()
    persona_args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    transport: Transport = "pty"
    #: The ``shell`` preset runs the task's own ``command:`` instead of ``command``.
    uses_task_command: bool = False
    #: The preset this agent extends, through any chain (its own name for a preset).
    preset: str = ""
    #: The structured stream it prints, read by ``core/streams/`` (``None``: plain text).
    stream: StreamFormat | None = None
    #: How its stdin is wired on the pipes transport: ``devnull`` for CLIs that would
    #: otherwise wait for the end of stdin (codex), ``pipe`` to take the operator's input.
    stdin: Literal["pipe", "devnull"] = "pipe"
    #: Arguments by tool permission (``tools``): what the agent may do without asking.
    tools_args: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    tools: Tools = "edits"
    #: argv template that continues a conversation (``{session}``) with a new ``{prompt}``.
    resume_command: tuple[str, ...] = ()
    #: Limits the CLI enforces itself; others are enforced by delegate-tui from live usage.
    budget_args: tuple[str, ...] = ()
    turns_args: tuple[str, ...] = ()
    #: How the scope guard is installed (claude: ``--settings`` with a PreToolUse hook),
    #: in arguments and in environment variables (gemini: ``GEMINI_CLI_HOME``, a folder
    #: whose settings hold a BeforeTool hook); ``{guard_settings}`` is what
    #: :func:`delegate_tui.core.guard.install` made for the attempt.
    guard_args: tuple[str, ...] = ()
    guard_env: Mapping[str, str] = field(default_factory=dict)
    #: Files the agent writes for itself in the worktree, never part of the task's work.
    own_files: tuple[str, ...] = ()


PRESETS: dict[str, AgentSpec] = {
    "claude": AgentSpec(
        name="claude",
        command=("claude", "-p", "--output-format", "stream-json", "--verbose", "--", "{prompt}"),
        model_args=("--model", "{model}"),
        persona_args=("--append-system-prompt", "You are {persona}."),
        transport="pipes",
        # On a pipe claude waits 3 s for stdin data ("no stdin data received in 3s").
        stdin="devnull",
        stream="claude",
        tools_args={
            "edits": ("--permission-mode", "acceptEdits"),
            "all": ("--permission-mode", "acceptEdits", "--allowedTools", "Bash"),
        },
        resume_command=(
            "claude",
            "-p",
            "--resume",
            "{session}",
            "--output-format",
            "stream-json",
            "--verbose",
            "--",
            "{prompt}",
        ),
        budget_args=("--max-budget-usd", "{budget_usd}"),
        turns_args=("--max-turns", "{max_turns}"),
        guard_args=("--settings", "{guard_settings}"),
    ),
    "codex": AgentSpec(
        name="codex",
        command=(
            "codex",
            "exec",
            "--json",
            "--skip-git-repo-check",
            # Without network codex otherwise reconnects forever ("Reconnecting... waiting
            # for network"); bounded, it gives up after its retries (codex-cli 0.171.0).
            "--disable",
            "unbounded_connection_retries",
            "--output-last-message",
            "{last_message}",
            "--",
            "{prompt}",
        ),
        model_args=("--model", "{model}"),
        transport="pipes",
        stdin="devnull",
        stream="codex",
        # `exec resume` takes no --sandbox: the config key says the same.
        tools_args={
            "edits": ("-c", 'sandbox_mode="workspace-write"'),
            "all": ("-c", 'sandbox_mode="workspace-write"'),
        },
        resume_command=(
            "codex",
            "exec",
            "resume",
            "--json",
            "--skip-git-repo-check",
            "--disable",
            "unbounded_connection_retries",
            "--output-last-message",
            "{last_message}",
            "{session}",
            "--",
            "{prompt}",
        ),
    ),
    "gemini": AgentSpec(
        name="gemini",
        command=("gemini", "--skip-trust", "--output-format", "stream-json", "--prompt={prompt}"),
        model_args=("--model", "{model}"),
        transport="pipes",
        stdin="devnull",
        stream="gemini",
        tools_args={
            "edits": ("--approval-mode", "auto_edit"),
            "all": ("--approval-mode", "yolo"),
        },
        # gemini has no flag for a settings file: its scope guard is a home of its own,
        # linking the operator's ~/.gemini, with the hook in its settings (core/guard.py).
        guard_env={"GEMINI_CLI_HOME": "{guard_settings}"},
        # gemini keeps sessions per project folder, and a retry runs in a new worktree:
        # gemini_hand_over puts the session where gemini takes it over from (0.61.0).
        resume_command=(
            "gemini",
            "--resume",
            "{session}",
            "--skip-trust",
            "--output-format",
            "stream-json",
            "--prompt={prompt}",
        ),
    ),
    "aider": AgentSpec(
        name="aider",
        command=(
            "aider",
            "--yes-always",
            "--no-gitignore",
            "--no-check-update",
            "--analytics-disable",
            "--message={prompt}",
        ),
        model_args=("--model", "{model}"),
        own_files=(".aider*",),
    ),
    "shell": AgentSpec(name="shell", command=(), uses_task_command=True),
    "demo": AgentSpec(
        name="demo",
        command=(
            "{python}",
            "-m",
            "delegate_tui.demo.agent",
            "--last-message",
            "{last_message}",
            "{prompt}",
        ),
        model_args=("--model", "{model}"),
        persona_args=("--persona", "{persona}"),
    ),
}


class AgentError(ValueError):
    """An agent definition that cannot be resolved; ``name`` says which."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


def resolve_agents(defs: Mapping[str, AgentDef]) -> dict[str, AgentSpec]:
    """Resolve presets plus a plan's ``agents:`` (with ``extends``) into specs."""
    resolved: dict[str, AgentSpec] = dict(PRESETS)

    def resolve(name: str, chain: tuple[str, ...]) -> AgentSpec:
        if name in chain:
            raise AgentError(
                chain[0], "agents extend each other in a cycle: " + " -> ".join([*chain, name])
            )
        if name not in defs:
            if name in PRESETS:
                return PRESETS[name]
            raise AgentError(chain[-1] if chain else name, f"unknown agent '{name}'")
        spec = defs[name]
        base: AgentSpec | None = None
        if spec.extends is not None:
            base = resolve(spec.extends, (*chain, name))
        if base is None and spec.command is None:
            raise AgentError(name, "an agent needs `command` or `extends`")
        command = spec.command if spec.command is not None else base.command if base else ()
        inherited = base or AgentSpec(name=name, command=())
        # A new command is a new program: what the preset knew of its CLI stays only
        # if the agent says so (`stream:`, `resume_command:`).
        stream = spec.stream or (inherited.stream if spec.command is None else None)
        # A CLI in a structured mode takes no typed input, and codex reads its stdin to
        # the end before it starts: any agent that prints that stream (its own command,
        # a wrapper around the CLI, the shell's) gets the stdin the CLI's preset gives.
        return AgentSpec(
            name=name,
            command=command,
            args=(base.args if base else ()) + spec.args,
            model_args=spec.model_args
            if spec.model_args is not None
            else (base.model_args if base else ()),
            persona_args=spec.persona_args
            if spec.persona_args is not None
            else (base.persona_args if base else ()),
            env={**(base.env if base else {}), **spec.env},
            transport=spec.transport or (base.transport if base else "pty"),
            uses_task_command=(base.uses_task_command if base else False) and spec.command is None,
            preset=(base.preset or base.name) if base else name,
            stream=stream,
            stdin=PRESETS[stream].stdin if stream else inherited.stdin,
            tools_args=inherited.tools_args,
            tools=spec.tools or inherited.tools,
            resume_command=spec.resume_command
            if spec.resume_command is not None
            else (inherited.resume_command if spec.command is None else ()),
            budget_args=inherited.budget_args if spec.command is None else (),
            turns_args=inherited.turns_args if spec.command is None else (),
            guard_args=inherited.guard_args if spec.command is None else (),
            guard_env=inherited.guard_env if spec.command is None else {},
            own_files=inherited.own_files,
        )

    for name in defs:
        resolved[name] = resolve(name, ())
    return resolved


def fill(template: str, values: Mapping[str, str]) -> str:
    """Substitute known ``{placeholders}`` in one argument; other braces stay."""
    return _PLACEHOLDER_RE.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def agent_prompt(spec: AgentSpec, prompt: str, persona: str | None) -> str:
    """The prompt exactly as the agent gets it: a persona goes in front of it when
    the agent has no ``persona_args`` to take it separately."""
    if persona and not spec.persona_args:
        return f"You are {persona}.\n\n{prompt}"
    return prompt


def _prompt_tail(command: tuple[str, ...]) -> int:
    """How many trailing arguments carry the prompt (``{prompt}``, ``-- {prompt}``,
    ``--prompt={prompt}``, a ``{session}`` before them): options go before them."""
    if not command or "{prompt}" not in command[-1]:
        return 0
    tail = 2 if len(command) >= 2 and command[-2] == "--" else 1
    if len(command) > tail and command[-tail - 1] == "{session}":
        tail += 1  # `codex exec resume [OPTIONS] SESSION -- PROMPT`
    return tail


def build_argv(
    spec: AgentSpec,
    *,
    prompt: str,
    task_id: str,
    workdir: str,
    last_message: str,
    model: str | None = None,
    persona: str | None = None,
    task_command: tuple[str, ...] | str | None = None,
    session: str | None = None,
    budget_usd: float | None = None,
    max_turns: int | None = None,
    guard_settings: str | None = None,
) -> list[str]:
    """The argv list for one attempt of a task. Never a shell string built from a prompt.

    ``prompt`` is passed as it is: make it with :func:`agent_prompt` first. With
    ``session`` (and a ``resume_command``) the agent continues that conversation.
    ``budget_usd`` and ``max_turns`` become the CLI's own limits where it has them.

    A ``shell`` task given a command *string* runs it with ``sh -c`` as the
    operator wrote it; its prompt reaches it only through ``$DELEGATE_PROMPT``.
    """
    values = {
        "prompt": prompt,
        "model": model or "",
        "persona": persona or "",
        "task_id": task_id,
        "workdir": workdir,
        "last_message": last_message,
        "python": sys.executable,
        "session": session or "",
        "budget_usd": f"{budget_usd:g}" if budget_usd is not None else "",
        "max_turns": str(max_turns) if max_turns is not None else "",
        "guard_settings": guard_settings or "",
    }
    if spec.uses_task_command:
        if task_command is None:
            raise AgentError(spec.name, "the shell agent needs the task's `command`")
        if isinstance(task_command, str):
            return ["sh", "-c", task_command, *[fill(a, values) for a in spec.args]]
        command: tuple[str, ...] = tuple(task_command)
    else:
        command = spec.resume_command if session and spec.resume_command else spec.command
    head = [fill(a, values) for a in command]
    extra: list[str] = [fill(a, values) for a in spec.tools_args.get(spec.tools, ())]
    if model:
        extra += [fill(a, values) for a in spec.model_args]
    if persona:
        extra += [fill(a, values) for a in spec.persona_args]
    if budget_usd is not None:
        extra += [fill(a, values) for a in spec.budget_args]
    if max_turns is not None:
        extra += [fill(a, values) for a in spec.turns_args]
    if guard_settings:
        extra += [fill(a, values) for a in spec.guard_args]
    extra += [fill(a, values) for a in spec.args]
    # Options go before the trailing prompt, so CLIs that stop option parsing at
    # the first positional (or at `--`) still see them.
    tail = 0 if spec.uses_task_command else _prompt_tail(command)
    if tail:
        return [*head[:-tail], *extra, *head[-tail:]]
    return [*head, *extra]


def guard_environment(spec: AgentSpec, guard_settings: str | None) -> dict[str, str]:
    """The environment variables that install the scope guard for ``spec``'s CLI."""
    if not guard_settings:
        return {}
    return {k: fill(v, {"guard_settings": guard_settings}) for k, v in spec.guard_env.items()}


def configured_model(spec: AgentSpec, env: Mapping[str, str]) -> str:
    """The model an agent uses when the task names none, where its stream does not say
    (codex): its own ``args`` (``-m M``, ``--model M``, ``--model=M``, ``-c model="M"``),
    else ``model`` in ``$CODEX_HOME/config.toml`` (``~/.codex``). ``""`` if unknown."""
    if spec.stream != "codex":
        return ""
    model = ""
    for i, arg in enumerate(spec.args):
        following = spec.args[i + 1] if i + 1 < len(spec.args) else ""
        if arg in ("-m", "--model") and following:
            model = following
        elif arg.startswith("--model="):
            model = arg.removeprefix("--model=")
        elif arg in ("-c", "--config") and following.replace(" ", "").startswith("model="):
            model = following.split("=", 1)[1].strip().strip("\"'")
    if model:
        return model
    home = env.get("CODEX_HOME") or os.path.join(env.get("HOME", ""), ".codex")
    try:
        with open(os.path.join(home, "config.toml"), "rb") as fh:
            model = tomllib.load(fh).get("model", "")
    except (OSError, tomllib.TOMLDecodeError):
        return ""
    return model if isinstance(model, str) else ""


def gemini_hand_over(gemini_dir: Path, old_root: Path, new_root: Path) -> bool:
    """Let gemini resume, in ``new_root``, a session it kept for ``old_root``; False when
    there is no such session to hand over.

    gemini keeps a project's sessions under ``gemini_dir/tmp/<slug>/chats``, the slug
    registered for the project's folder in ``gemini_dir/projects.json``, so a retry in
    a new worktree finds none ("No previous sessions found for this project"). At its
    start gemini moves a project's folder from its older place, ``tmp/<sha256 of the
    project's path>``, to the new one when that is still empty: the old project's
    chats are copied there for the new worktree, and gemini takes them over itself.
    """
    try:
        registry = json.loads((gemini_dir / "projects.json").read_text("utf-8"))
        slug = registry["projects"][os.path.abspath(old_root)]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    chats = gemini_dir / "tmp" / str(slug) / "chats"
    if not chats.is_dir():
        return False
    digest = hashlib.sha256(os.path.abspath(new_root).encode()).hexdigest()
    legacy = gemini_dir / "tmp" / digest
    if legacy.exists():
        return False
    shutil.copytree(chats, legacy / "chats")
    return True
