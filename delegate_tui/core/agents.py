"""Agent presets and argv templating.

Owns how a task becomes a command line. Every agent is an argv *template*:
placeholders are substituted one argument at a time, so a prompt is always a
single argv element and never passes through a shell. The presets were checked
against each CLI's own ``--help`` (claude 2.1.197, codex-cli 0.169.0, gemini 0.61.0,
aider 0.86); plans can override or extend them under ``agents:``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Transport = Literal["pty", "pipes"]

#: Placeholders an argv template may use. ``{last_message}`` is a file the agent
#: may write its final answer to (codex's ``--output-last-message``); the engine
#: reads it back as the task's output for dependents.
PLACEHOLDERS = ("prompt", "model", "persona", "task_id", "workdir", "last_message", "python")
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


PRESETS: dict[str, AgentSpec] = {
    "claude": AgentSpec(
        name="claude",
        command=("claude", "-p", "--permission-mode", "acceptEdits", "{prompt}"),
        model_args=("--model", "{model}"),
        persona_args=("--append-system-prompt", "You are {persona}."),
    ),
    "codex": AgentSpec(
        name="codex",
        command=(
            "codex",
            "exec",
            "--sandbox",
            "workspace-write",
            "--skip-git-repo-check",
            "--output-last-message",
            "{last_message}",
            "{prompt}",
        ),
        model_args=("--model", "{model}"),
    ),
    "gemini": AgentSpec(
        name="gemini",
        command=("gemini", "--skip-trust", "--approval-mode", "auto_edit", "-p", "{prompt}"),
        model_args=("--model", "{model}"),
    ),
    "aider": AgentSpec(
        name="aider",
        command=("aider", "--yes-always", "--message", "{prompt}"),
        model_args=("--model", "{model}"),
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
) -> list[str]:
    """The argv list for one attempt of a task. Never a shell string built from a prompt.

    ``prompt`` is passed as it is: make it with :func:`agent_prompt` first.

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
    }
    if spec.uses_task_command:
        if task_command is None:
            raise AgentError(spec.name, "the shell agent needs the task's `command`")
        if isinstance(task_command, str):
            return ["sh", "-c", task_command, *[fill(a, values) for a in spec.args]]
        head = [fill(a, values) for a in task_command]
    else:
        head = [fill(a, values) for a in spec.command]
    extra: list[str] = []
    if model:
        extra += [fill(a, values) for a in spec.model_args]
    if persona:
        extra += [fill(a, values) for a in spec.persona_args]
    extra += [fill(a, values) for a in spec.args]
    # Options go before a trailing prompt argument, so CLIs that stop option
    # parsing at the first positional still see them.
    if head and spec.command and spec.command[-1] == "{prompt}" and not spec.uses_task_command:
        return [*head[:-1], *extra, head[-1]]
    return [*head, *extra]
