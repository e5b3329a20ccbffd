"""Plan files: the YAML operators write, validated into frozen domain objects.

Owns the plan contract of ``shared/design/PLAN_FORMAT.md``: parsing, every
validation rule, and errors that name the file, line, field and expectation.
The models are pydantic models frozen like dataclasses; pydantic also gives the
JSON Schema that ``delegate-tui schema`` prints. A plan that loads here is safe
to schedule: ids are valid path and branch components, dependencies exist and
form no cycle, agents resolve, and ``{{ outputs.x }}`` names a real dependency.

(About 690 lines, most of them the plan's field declarations with the help text
that the JSON Schema and the error messages are made from.)
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from delegate_tui.core import graph
from delegate_tui.core.agents import AgentDef, AgentError, AgentSpec, resolve_agents

TASK_ID_RE = re.compile(r"^[A-Za-z0-9._-]+$")
OUTPUT_REF_RE = re.compile(r"\{\{\s*outputs\.([A-Za-z0-9._-]+)\s*\}\}")
_DURATION_RE = re.compile(
    r"^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*$"
)

#: Configuration files that serialise every task declaring them, unless a plan
#: sets its own ``shared_files``. Two tasks adding a dependency each must not
#: both rewrite the manifest and its lock file at once.
DEFAULT_SHARED_FILES: tuple[str, ...] = (
    "package.json",
    "package-lock.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "pyproject.toml",
    "poetry.lock",
    "uv.lock",
    "requirements*.txt",
    "Cargo.toml",
    "Cargo.lock",
    "go.mod",
    "go.sum",
    "Gemfile.lock",
    ".env",
    "docker-compose.yml",
    "docker-compose.yaml",
)


def parse_duration(value: object) -> float | None:
    """``90``, ``"90s"``, ``"20m"``, ``"1h30m"`` -> seconds; ``None`` stays ``None``."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("expected a duration like 90s, 20m or 1h30m")
    if isinstance(value, int | float):
        if value <= 0:
            raise ValueError("expected a positive duration")
        return float(value)
    if isinstance(value, str):
        match = _DURATION_RE.match(value)
        if match and value.strip() and any(match.groups()):
            hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
            total = hours * 3600 + minutes * 60 + seconds
            if total > 0:
                return total
    raise ValueError(f"expected a duration like 90s, 20m or 1h30m, got {value!r}")


def _yaml_switch(value: object) -> object:
    """YAML reads a bare ``on``/``off`` as true/false; take them back as words."""
    if value is True:
        return "on"
    if value is False:
        return "off"
    return value


class Criterion(BaseModel):
    """A success criterion: text shown to the operator, or a command run after the agent."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str = Field(description="What the operator reads.")
    run: str | None = Field(
        default=None, description="Shell command run in the task's worktree; exit 0 passes."
    )

    @model_validator(mode="before")
    @classmethod
    def _from_yaml(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"text": value}
        if isinstance(value, dict) and "run" in value and "text" not in value:
            return {**value, "text": str(value["run"])}
        return value


class Task(BaseModel):
    """One unit of work for one agent."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(description="Unique id: letters, digits, '.', '_' and '-'.")
    title: str | None = Field(default=None, description="Short human title; default: the id.")
    agent: str | None = Field(default=None, description="A preset or an entry of `agents`.")
    persona: str | None = None
    model: str | None = None
    prompt: str | None = Field(default=None, description="What the agent is asked to do.")
    prompt_file: str | None = Field(
        default=None, description="File holding the prompt, relative to the plan."
    )
    command: tuple[str, ...] | str | None = Field(
        default=None, description="For the `shell` agent: argv list, or a string run by sh -c."
    )
    depends_on: tuple[str, ...] = ()
    edits: tuple[str, ...] = Field(default=(), description="Globs this task may change.")
    reads: tuple[str, ...] = Field(
        default=(),
        description="Globs it reads: it waits for a task that edits them, and is flagged "
        "(stale input) when a merged change touches them while it runs.",
    )
    reads_stale_ok: bool = Field(
        default=False,
        description="It may start while a task that edits its reads runs (a merged change "
        "to them is still flagged as stale input).",
    )
    on_stale_input: Literal["warn", "restart"] = Field(
        default="warn",
        description="When a merge changes what it read while it runs: show it (warn), or "
        "restart it on the new integration tip with the change in its prompt (restart).",
    )
    criteria: tuple[Criterion, ...] = ()
    timeout: float | None = Field(default=None, description="Seconds, or '90s', '20m', '1h'.")
    retries: int = Field(default=0, ge=0, le=10, description="Automatic retries on failure.")
    kind: Literal["code", "consult"] = Field(
        default="code", description="consult tasks edit nothing; any edit is flagged."
    )
    resources: tuple[str, ...] = Field(
        default=(), description="Tasks sharing a resource never run at once."
    )
    approve: bool = Field(
        default=False, description="Needs the operator's approval even under --yes."
    )
    estimate: float | None = Field(
        default=None, description="Expected duration, for `delegate-tui plan` estimates."
    )
    budget_usd: float | None = Field(
        default=None,
        gt=0,
        description="Most this task may spend in US dollars per attempt; then it is stopped "
        "as over-budget.",
    )
    max_turns: int | None = Field(
        default=None, ge=1, description="Most model turns per attempt (default: the plan's)."
    )
    guard: Literal["on", "off"] | None = Field(
        default=None,
        description="Refuse the agent's file writes outside `edits` before they happen "
        "(claude, gemini; default: the plan's).",
    )
    sandbox: Literal["off", "worktree", "scope"] | None = Field(
        default=None,
        description="Override the plan's `sandbox` for this task: off, worktree (only its "
        "worktree is writable) or scope (only the folders its `edits` name).",
    )
    network: Literal["on", "off"] | None = Field(
        default=None,
        description="Override the plan's `network` for this task; off: a sandbox with "
        "loopback only (needs a sandbox mode other than off).",
    )

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not TASK_ID_RE.match(value):
            raise ValueError(f"expected letters, digits, '.', '_' or '-', got {value!r}")
        if value.startswith((".", "-")) or ".." in value or value.endswith(".lock"):
            raise ValueError(
                f"{value!r} cannot be a git branch name (no leading '.' or '-', no '..', "
                "no '.lock' ending)"
            )
        return value

    @field_validator("timeout", "estimate", mode="before")
    @classmethod
    def _duration(cls, value: object) -> float | None:
        return parse_duration(value)

    @field_validator("sandbox", "network", "guard", mode="before")
    @classmethod
    def _switch(cls, value: object) -> object:
        return _yaml_switch(value)

    @property
    def label(self) -> str:
        """The title if given, else the id."""
        return self.title or self.id


class WorktreeSetup(BaseModel):
    """How a new worktree gets the untracked files its agent needs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    copy_paths: tuple[str, ...] = Field(
        default=(), alias="copy", description="Untracked files copied from the repo."
    )
    link: tuple[str, ...] = Field(default=(), description="Folders shared by symlink.")
    run: tuple[str, ...] = Field(default=(), description="Setup commands (sh -c), in order.")


class Plan(BaseModel):
    """A whole plan file."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    name: str = Field(min_length=1)
    description: str = ""
    repo: str = Field(default=".", description="Repository, relative to the plan's folder.")
    base: str = Field(default="HEAD", description="Branch or commit to start from.")
    isolation: Literal["worktree", "shared", "none"] | None = Field(
        default=None, description="Default: worktree in a git repo, none elsewhere."
    )
    max_parallel: int = Field(default=3, ge=1, le=64)
    executor: str = Field(
        default="local",
        description="Where agents run: local (this machine), ray (the Ray cluster RAY_ADDRESS "
        "names, or this machine's `ray start --head`), or ray://HOST:PORT. Needs "
        "`pip install 'delegate-tui[ray]'`.",
    )
    approve: Literal["batch", "auto"] = "batch"
    merge: Literal["auto", "manual"] = "auto"
    agent: str = Field(default="claude", description="Agent for tasks that name none.")
    budget_usd: float | None = Field(
        default=None,
        gt=0,
        description="Most the whole run may spend in US dollars: once reached, no new task "
        "starts and the operator is told.",
    )
    max_turns: int | None = Field(
        default=None, ge=1, description="Most model turns per attempt, for tasks that set none."
    )
    guard: Literal["on", "off"] = Field(
        default="on",
        description="Refuse agents' file writes outside their task's `edits` before they "
        "happen, where the agent's CLI has hooks for it (claude, gemini).",
    )
    sandbox: Literal["off", "worktree", "scope"] = Field(
        default="off",
        description="Run agents under bubblewrap: off, worktree (the filesystem read-only "
        "but the task's worktree) or scope (only the folders its `edits` name).",
    )
    network: Literal["on", "off"] = Field(
        default="on", description="off: sandboxed agents get loopback only."
    )
    sandbox_writable: tuple[str, ...] = Field(
        default=(),
        description="Folders every sandboxed agent may also write (e.g. ~/.cache/uv).",
    )
    shared_files: tuple[str, ...] = Field(default=DEFAULT_SHARED_FILES)
    worktree_setup: WorktreeSetup = Field(default_factory=WorktreeSetup)
    agents: dict[str, AgentDef] = Field(default_factory=dict)
    tasks: tuple[Task, ...] = Field(min_length=1)
    source: SkipJsonSchema[str] = Field(default="", exclude=True)
    field_lines: SkipJsonSchema[dict[str, int]] = Field(default_factory=dict, exclude=True)
    #: Tasks by id, for the tasks tuple it was made from (scheduling asks for every task).
    _index: tuple[tuple[Task, ...], dict[str, Task]] | None = PrivateAttr(default=None)

    @field_validator("sandbox", "network", "guard", mode="before")
    @classmethod
    def _switch(cls, value: object) -> object:
        return _yaml_switch(value)

    @field_validator("executor")
    @classmethod
    def _check_executor(cls, value: str) -> str:
        from delegate_tui.core.executor import parse_executor

        parse_executor(value)  # ValueError names what is accepted
        return value.strip() or "local"

    def where(self, task_id: str, field: str = "") -> str:
        """``plan.yaml:14: tasks[2].agent``: where a task (field) sits in its file."""
        index = self.ids.index(task_id)
        line = self.field_lines.get(f"{index}.{field}") or self.field_lines.get(f"{index}.", 0)
        location = f"{self.source or 'plan'}:{line}" if line else (self.source or "plan")
        return f"{location}: tasks[{index}]" + (f".{field}" if field else "")

    def task(self, task_id: str) -> Task:
        """The task with this id (KeyError if none)."""
        index = self._index
        if index is None or index[0] is not self.tasks:  # a copy with other tasks
            index = (self.tasks, {t.id: t for t in self.tasks})
            self._index = index
        return index[1][task_id]

    @property
    def ids(self) -> list[str]:
        """Task ids in file order."""
        return [t.id for t in self.tasks]

    @property
    def deps(self) -> dict[str, tuple[str, ...]]:
        """Task id -> the ids it depends on."""
        return {t.id: t.depends_on for t in self.tasks}

    def agent_of(self, task: Task) -> str:
        """The agent name a task runs with."""
        return task.agent or self.agent

    def resolved_agents(self) -> dict[str, AgentSpec]:
        """Presets plus this plan's ``agents:``."""
        return resolve_agents(self.agents)

    def repo_path(self) -> Path:
        """The repository folder, resolved against the plan's folder."""
        base = Path(self.source).parent if self.source else Path.cwd()
        return (base / self.repo).resolve()


# --------------------------------------------------------------------------- errors


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a plan, located in its file."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


class PlanError(Exception):
    """A plan that cannot be used; ``problems`` are sorted by line."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.file, p.line))
        super().__init__("\n".join(str(p) for p in self.problems))


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# --------------------------------------------------------------------------- YAML with lines


class _Lines:
    """Line numbers (1-based) of every value and key in a YAML document."""

    def __init__(self) -> None:
        self.values: dict[tuple[int | str, ...], int] = {}
        self.keys: dict[tuple[int | str, ...], int] = {}
        self.duplicates: list[tuple[tuple[int | str, ...], int]] = []

    def walk(self, node: yaml.Node, path: tuple[int | str, ...]) -> None:
        self.values[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = str(key_node.value)
                if key in seen:
                    self.duplicates.append(((*path, key), key_node.start_mark.line + 1))
                seen.add(key)
                self.keys[(*path, key)] = key_node.start_mark.line + 1
                self.walk(value_node, (*path, key))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.walk(item, (*path, index))

    def line(self, loc: tuple[int | str, ...], *, key: bool = False) -> int:
        """The line of ``loc`` or of its nearest ancestor that exists in the file."""
        path = tuple(loc)
        if key and path in self.keys:
            return self.keys[path]
        while path:
            if path in self.values:
                return self.values[path]
            path = path[:-1]
        return self.values.get((), 1)


_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _parse_yaml(text: str, file: str) -> tuple[Any, _Lines]:
    lines = _Lines()
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        raise PlanError([Problem(file, line, "", f"invalid YAML: {exc.problem}")]) from None
    except yaml.YAMLError as exc:
        raise PlanError([Problem(file, 0, "", f"invalid YAML: {exc}")]) from None
    if node is not None:
        lines.walk(node, ())
    return data, lines


# --------------------------------------------------------------------------- loading


_MESSAGES = {
    "missing": "required field is missing",
    "string_type": "expected text",
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "tuple_type": "expected a list",
    "list_type": "expected a list",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
}


def _pydantic_problem(error: Mapping[str, Any], file: str, lines: _Lines) -> Problem:
    loc: tuple[int | str, ...] = tuple(error["loc"])
    kind = error["type"]
    # Unions (task `command`) report each branch; name the field, not the branch.
    loc = tuple(
        p for p in loc if p not in ("str", "tuple[str, ...]", "function-before[_from_yaml()]")
    )
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        allowed = sorted(_aliases(parent)) if parent else []
        hint = _did_you_mean(str(loc[-1]), allowed)
        message = (
            f"unknown field{hint}"
            if hint
            else "unknown field; expected one of: " + ", ".join(allowed)
        )
        return Problem(file, lines.line(loc, key=True), _field_path(loc), message)
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        message = f"expected {expected}, got {error.get('input')!r}"
    elif kind in ("value_error", "assertion_error"):
        message = str(error.get("ctx", {}).get("error", error["msg"]))
    elif kind == "too_short" and loc and loc[-1] == "tasks":
        message = "a plan needs at least one task"
    else:
        message = _MESSAGES.get(kind, error["msg"])
    line = lines.line(loc, key=kind == "missing")
    return Problem(file, line, _field_path(loc), message)


def _aliases(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items() if name != "source"]


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """Which model a location inside the plan refers to (for field suggestions)."""
    parts = [p for p in loc if not isinstance(p, int)]
    if not parts:
        return Plan
    if parts[0] == "tasks":
        return Criterion if len(parts) >= 2 and parts[1] == "criteria" else Task
    if parts[0] == "worktree_setup":
        return WorktreeSetup
    if parts[0] == "agents" and len(parts) >= 2:
        return AgentDef
    return None


def load_plan(path: str | Path) -> Plan:
    """Read, validate and resolve a plan file. Raises :class:`PlanError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlanError([Problem(str(path), 0, "", "no such file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError([Problem(str(path), 0, "", f"cannot read: {exc}")]) from None
    return parse_plan(text, str(path))


def parse_plan(text: str, file: str = "plan.yaml") -> Plan:
    """Validate plan text; ``file`` is used in messages and to resolve relative paths."""
    data, lines = _parse_yaml(text, file)
    problems = [
        Problem(file, line, _field_path(loc), "duplicate key") for loc, line in lines.duplicates
    ]
    if not isinstance(data, dict):
        raise PlanError(
            [*problems, Problem(file, 1, "", "a plan is a mapping with `name` and `tasks`")]
        )
    try:
        plan = Plan.model_validate({**data, "source": file})
    except ValidationError as exc:
        problems += [_pydantic_problem(e, file, lines) for e in exc.errors()]
        raise PlanError(problems) from None
    field_lines = {
        f"{path[1]}.{path[2] if len(path) > 2 else ''}": line
        for path, line in {**lines.values, **lines.keys}.items()
        if len(path) in (2, 3) and path[0] == "tasks" and isinstance(path[1], int)
    }
    plan = plan.model_copy(update={"field_lines": field_lines})
    try:
        with_prompts = _read_prompt_files(plan, file, lines)
    except PlanError as exc:
        problems += exc.problems
        with_prompts = plan
    problems += list(_semantic_problems(plan, file, lines, with_prompts))
    if problems:
        raise PlanError(problems)
    return with_prompts


def _semantic_problems(
    plan: Plan, file: str, lines: _Lines, with_prompts: Plan
) -> Iterator[Problem]:
    ids = plan.ids
    first_index: dict[str, int] = {}
    for index, task in enumerate(plan.tasks):
        if task.id in first_index:
            yield Problem(
                file,
                lines.line(("tasks", index, "id")),
                f"tasks[{index}].id",
                f"duplicate task id '{task.id}' (first at tasks[{first_index[task.id]}])",
            )
        else:
            first_index[task.id] = index

    try:
        agents = plan.resolved_agents()
    except AgentError as exc:
        yield Problem(file, lines.line(("agents", exc.name)), f"agents.{exc.name}", str(exc))
        agents = None

    deps = plan.deps
    for index, task in enumerate(plan.tasks):
        where = ("tasks", index)
        field = f"tasks[{index}]"
        for d_index, dep in enumerate(task.depends_on):
            if dep == task.id:
                yield Problem(
                    file,
                    lines.line((*where, "depends_on", d_index)),
                    f"{field}.depends_on",
                    "a task cannot depend on itself",
                )
            elif dep not in first_index:
                yield Problem(
                    file,
                    lines.line((*where, "depends_on", d_index)),
                    f"{field}.depends_on",
                    f"unknown task '{dep}'{_did_you_mean(dep, ids)}",
                )
        agent_name = plan.agent_of(task)
        if agents is not None and agent_name not in agents:
            loc = (*where, "agent") if task.agent else ("agent",)
            yield Problem(
                file,
                lines.line(loc),
                f"{field}.agent",
                f"unknown agent '{agent_name}'{_did_you_mean(agent_name, sorted(agents))}; "
                "define it under `agents:` or use a preset (" + ", ".join(sorted(agents)) + ")",
            )
        uses_command = (
            agents is not None and agent_name in agents and agents[agent_name].uses_task_command
        )
        if uses_command and task.command is None:
            yield Problem(
                file,
                lines.line(where),
                field,
                f"agent '{agent_name}' runs the task's `command`, and this task has none",
            )
        if task.prompt is not None and task.prompt_file is not None:
            yield Problem(
                file,
                lines.line((*where, "prompt_file")),
                f"{field}.prompt_file",
                "give `prompt` or `prompt_file`, not both",
            )
        if task.prompt is None and task.prompt_file is None and not uses_command:
            yield Problem(
                file,
                lines.line(where, key=True),
                f"{field}.prompt",
                "required: `prompt` or `prompt_file`",
            )
        if task.kind == "consult" and task.edits:
            yield Problem(
                file,
                lines.line((*where, "edits")),
                f"{field}.edits",
                "a consult task edits nothing; remove `edits` or use kind: code",
            )

    cycle = graph.find_cycle({k: v for k, v in deps.items() if k in first_index})
    if cycle:
        index = first_index[cycle[0]]
        yield Problem(
            file,
            lines.line(("tasks", index, "depends_on")),
            f"tasks[{index}].depends_on",
            "dependency cycle: " + " -> ".join(cycle),
        )
    else:
        for index, task in enumerate(with_prompts.tasks):
            if task.prompt is None:
                continue
            upstream = graph.ancestors(deps, task.id)
            for ref in OUTPUT_REF_RE.findall(task.prompt):
                if ref not in upstream:
                    what = "is not a task" if ref not in first_index else "is not a dependency"
                    yield Problem(
                        file,
                        lines.line(("tasks", index, "prompt")),
                        f"tasks[{index}].prompt",
                        f"{{{{ outputs.{ref} }}}}: '{ref}' {what} of '{task.id}'"
                        + (_did_you_mean(ref, sorted(upstream)) if upstream else ""),
                    )


def _read_prompt_files(plan: Plan, file: str, lines: _Lines) -> Plan:
    base = Path(file).parent
    tasks = list(plan.tasks)
    problems: list[Problem] = []
    for index, task in enumerate(tasks):
        if task.prompt_file is None:
            continue
        prompt_path = base / task.prompt_file
        try:
            prompt = prompt_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = "no such file" if isinstance(exc, FileNotFoundError) else str(exc)
            problems.append(
                Problem(
                    file,
                    lines.line(("tasks", index, "prompt_file")),
                    f"tasks[{index}].prompt_file",
                    f"cannot read '{prompt_path}': {reason}",
                )
            )
            continue
        tasks[index] = task.model_copy(update={"prompt": prompt})
    if problems:
        raise PlanError(problems)
    return plan.model_copy(update={"tasks": tuple(tasks)})


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a plan file, for editors."""
    schema = Plan.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "delegate-tui plan"
    return schema
