"""From a goal to a plan: the drafting prompt, the checks, the rounds, the comments.

Owns the pure half of ``delegate-tui draft``. An agent is asked (by whoever
calls :func:`draft`, through the ``ask`` function it is given) to decompose a
goal into a plan, with a prompt made of the delegation rules the batcher
encodes (``shared/design/PATTERNS.md``) and the plan's JSON Schema. Its answer
is read (one fenced YAML or JSON block), checked by the same validator every
plan file meets (:func:`plan.parse_plan`) and by the draft rules below, and
every problem, named by file, line and field, goes back to the agent, for at
most :data:`MAX_ROUNDS` answers in all. The result is YAML with a comment above
each task saying why it is its own task, what it may touch and when it runs.

Draft rules are stricter than the batcher: the batcher keeps two independent
tasks that write one file apart by running them one after the other, in an
order nobody chose; a draft must say the order itself (``depends_on``) or give
the file to one task. So independent tasks whose declared scopes meet (edits,
shared config files, reads of another's edits), a code task with no declared
edits or with no ``run:`` criterion that proves it done, and more than four
tasks at once are problems in a draft. For a plan
written by hand they are only shown (``plan --review``).

(About 590 lines: the prompt with its delegation rules, the draft rules and the
feedback rounds are one conversation with the drafting agent, kept in one place.)
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from delegate_tui.core import batching, graph
from delegate_tui.core.forecast import Forecast, forecast
from delegate_tui.core.plan import Plan, PlanError, Problem, json_schema, parse_plan

#: Answers asked of the agent at most: the first draft and two corrections.
MAX_ROUNDS = 3
#: Tasks at once a draft may ask for (PATTERNS: three or four is the sensible default).
MAX_DRAFT_PARALLEL = 4
#: The first line of every drafting prompt (the demo agent knows a draft request by it).
DRAFT_HEADER = "# delegate-tui: draft a plan"
PROBLEMS_HEADER = "--- Problems with your previous draft (fix every one) ---"
PREVIOUS_HEADER = "--- Your previous draft, as delegate-tui read it ---"
#: Files of the repository listed in the prompt; the rest are counted.
REPO_FILES_LISTED = 120

RULES = """\
Rules (delegate-tui's batcher enforces them; any doubt means sequential):
1. Tasks run at once only when they are independent: neither needs the other's
   output, they edit different files, and order does not matter. When one needs
   another's result, say so with depends_on (its prompt may quote it with
   {{ outputs.ID }}).
2. Shared configuration (package.json, lock files, .env, docker-compose.yml,
   pyproject.toml, requirements*.txt, go.mod, Cargo.toml and the like) is never
   written by two tasks that may run at once: give it to one task, or chain the
   tasks that need it with depends_on.
3. Contracts first: an interface, schema or API contract that several tasks build
   on is its own task, and they depend on it.
4. Parallel, then sequential: independent work in parallel, then the task that
   combines it (integration, wiring, review) after it.
5. A few tasks at a time: max_parallel 3 (at most 4); prefer 3 to 8 tasks in all.
6. Every code task declares `edits` (globs of the files it may change; no two
   independent tasks' edits may overlap) and `reads` (globs of what it needs to
   read), and has criteria, at least one `run:` command that proves it done
   (exit 0 passes, run in the task's worktree).
7. A task that only answers a question or reviews work is `kind: consult`: it
   edits nothing and declares no edits.
8. Each task has a `why`: one sentence saying why it is a task of its own and
   why it runs where it does. (delegate-tui moves it into a comment.)
"""


class DraftError(Exception):
    """Drafting could not start or an agent could not be asked (not a bad draft)."""


# --------------------------------------------------------------------------- the ask


@dataclass(frozen=True, slots=True)
class Answer:
    """What the agent answered in one round, and what the round cost."""

    text: str
    seconds: float = 0.0
    run_id: str = ""
    """The consult run that asked it (``delegate-tui stats RUN`` shows it), if any."""
    cost: str = ""
    """Tokens and money, when the agent's stream told them."""
    notes: tuple[str, ...] = ()
    """Warnings about the round (e.g. the agent changed files it was told not to)."""


#: ``ask(prompt, round)``: run the agent on ``prompt`` and return its answer.
Ask = Callable[[str, int], Answer]


@dataclass(frozen=True, slots=True)
class Round:
    """One question to the agent and what came of it."""

    number: int
    prompt: str
    answer: Answer
    text: str
    """The draft as plan YAML (without the ``why`` fields); empty when none was found."""
    problems: tuple[Problem, ...]


@dataclass(frozen=True, slots=True)
class Draft:
    """The outcome of drafting: the last round's plan, valid or not, and every round."""

    goal: str
    file: str
    rounds: tuple[Round, ...]
    plan: Plan | None
    """The plan, when the last draft passed the validator (draft rules may still complain)."""
    text: str
    """The last draft as commented YAML, ready to write."""
    why: Mapping[str, str] = field(default_factory=dict)

    @property
    def problems(self) -> tuple[Problem, ...]:
        """What is still wrong with the last draft (empty: valid)."""
        return self.rounds[-1].problems if self.rounds else ()

    @property
    def valid(self) -> bool:
        """True when the last draft has no problem left."""
        return self.plan is not None and not self.problems

    @property
    def seconds(self) -> float:
        """Time the agent spent over every round."""
        return sum(r.answer.seconds for r in self.rounds)


# --------------------------------------------------------------------------- the prompt


def draft_schema() -> dict[str, Any]:
    """The plan's JSON Schema, with the ``why`` every drafted task carries."""
    schema = json_schema()
    task = schema["$defs"]["Task"]
    task["properties"]["why"] = {
        "type": "string",
        "description": "Why this is a task of its own and runs where it does (becomes a comment).",
    }
    for name in ("source", "field_lines"):
        schema["properties"].pop(name, None)
    return schema


def build_prompt(
    goal: str,
    *,
    agent: str,
    repo_files: Sequence[str] = (),
    previous: str = "",
    problems: Sequence[Problem] = (),
) -> str:
    """The prompt of one drafting round: goal, rules, repository, schema, feedback."""
    files = list(repo_files)
    listed = "\n".join(f"  {f}" for f in files[:REPO_FILES_LISTED])
    if len(files) > REPO_FILES_LISTED:
        listed += f"\n  and {len(files) - REPO_FILES_LISTED} more file(s)"
    parts = [
        DRAFT_HEADER,
        "",
        "Goal:",
        goal.strip(),
        "",
        "Split this goal into a delegate-tui plan: tasks that AI coding agents run, several",
        "at once in separate git worktrees of this repository. Do not change any file: read",
        "what you need, then answer with the plan only, as YAML (or JSON) in one fenced",
        "```yaml block. Use `agent: " + agent + "` at the top; leave out `repo` (delegate-tui",
        "sets it).",
        "",
        RULES,
        "Files of the repository (paths are relative to its root; so are globs):",
        listed or "  (none)",
        "",
        "The plan's JSON Schema:",
        json.dumps(draft_schema(), separators=(",", ":")),
    ]
    if problems:
        parts += [
            "",
            PREVIOUS_HEADER,
            _numbered(previous) if previous else "(no plan could be read from your answer)",
            "",
            PROBLEMS_HEADER,
            *(f"- {p}" for p in problems),
            "",
            "Answer with the whole corrected plan in one fenced ```yaml block.",
        ]
    return "\n".join(parts).rstrip() + "\n"


def _numbered(text: str) -> str:
    lines = text.splitlines()
    width = len(str(len(lines)))
    return "\n".join(f"{i:>{width}} | {line}" for i, line in enumerate(lines, 1))


# --------------------------------------------------------------------------- reading answers


_FENCE_RE = re.compile(r"^```[ \t]*([A-Za-z0-9_-]*)[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)


def extract_plan(answer: str) -> Any:
    """The plan data in an agent's answer: its last fenced YAML/JSON block, else the text.

    Raises ``ValueError`` saying what was wrong when no plan can be read.
    """
    blocks = [
        (lang.lower(), body)
        for lang, body in _FENCE_RE.findall(answer.replace("\r\n", "\n"))
        if lang.lower() in ("", "yaml", "yml", "json")
    ]
    candidates = [body for _lang, body in reversed(blocks)] or [answer]
    if not blocks:  # prose around an unfenced plan: from its first line on
        start = re.search(r"^(?:\{|name:)", answer, re.M)
        if start is not None and start.start() > 0:
            candidates.append(answer[start.start() :])
    error = "the answer holds no plan (expected one fenced ```yaml block)"
    for body in candidates:
        try:
            data = yaml.safe_load(body)
        except yaml.YAMLError as exc:
            error = f"the plan in the answer is not valid YAML: {exc}".replace("\n", " ")
            continue
        if isinstance(data, dict) and "tasks" in data:
            return data
        if isinstance(data, dict) and isinstance(data.get("plan"), dict):
            return data["plan"]
    raise ValueError(error)


def normalise(
    data: Mapping[str, Any], *, agent: str, repo: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """Plan data as delegate-tui writes it, and each task's ``why`` (taken out of it)."""
    out = {k: v for k, v in data.items() if k not in ("repo", "why")}
    out.setdefault("agent", agent)
    why: dict[str, str] = {}
    tasks = data.get("tasks")
    if isinstance(tasks, list):
        cleaned = []
        for task in tasks:
            if isinstance(task, dict):
                reason = task.get("why")
                if isinstance(reason, str) and isinstance(task.get("id"), str):
                    why[task["id"]] = " ".join(reason.split())
                task = {k: v for k, v in task.items() if k != "why"}
            cleaned.append(task)
        out["tasks"] = cleaned
    # `repo` goes right after the header fields, where a person looks for it.
    head: dict[str, Any] = {k: out[k] for k in ("name", "description") if k in out}
    rest = {k: v for k, v in out.items() if k not in head and k != "tasks"}
    ordered: dict[str, Any] = {**head, "repo": repo, **rest}
    if "tasks" in out:
        ordered["tasks"] = out["tasks"]
    return ordered, why


class _Dumper(yaml.SafeDumper):
    """Block lists of mappings indented under their key; multi-line text as ``|`` blocks."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        text = "\n".join(line.rstrip() for line in value.splitlines()) + "\n"
        return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _str)


def to_yaml(data: Mapping[str, Any]) -> str:
    """Plan data as YAML a person reads: keys in their order, short lists on one line."""
    text = yaml.dump(dict(data), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    return _inline_short_lists(text)


_LIST_START_RE = re.compile(r"^(\s*)([A-Za-z_][A-Za-z0-9_]*):\s*$")
_FLOW_SAFE_RE = re.compile(r"^[^\s#,\[\]{}:'\"&*!|>%@`]([^,\[\]{}#]*[^\s,\[\]{}#:])?$")


def _inline_short_lists(text: str) -> str:
    """``edits:\\n- a\\n- b`` -> ``edits: [a, b]`` for lists of short plain strings."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        match = _LIST_START_RE.match(line)
        if match:
            indent = match.group(1)
            items: list[str] = []
            j = i + 1
            while j < len(lines) and lines[j].startswith(indent + "  - "):
                item = lines[j][len(indent) + 4 :]
                if lines[j + 1 : j + 2] and lines[j + 1].startswith(indent + "    "):
                    items = []
                    break
                items.append(item)
                j += 1
            flow = ", ".join(items)
            plain = all(_FLOW_SAFE_RE.match(it) and ": " not in it for it in items)
            if items and plain and len(flow) < 70:
                out.append(f"{line} [{flow}]")
                i = j
                continue
        out.append(line)
        i += 1
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- checking


def check(text: str, file: str) -> tuple[Plan | None, list[Problem]]:
    """The validator's verdict on plan text, plus the draft rules, sorted by line.

    The draft rules are checked even when the validator refuses the plan for
    something they do not depend on (a cycle, an unknown agent), so one round
    of feedback names everything at once.
    """
    plan, errors, rules = check_apart(text, file)
    return plan, sorted([*errors, *rules], key=lambda p: (p.line, p.field))


def check_apart(text: str, file: str) -> tuple[Plan | None, list[Problem], list[Problem]]:
    """``(plan or None, the validator's problems, the draft rules' problems)``."""
    plan: Plan | None = None
    errors: list[Problem] = []
    try:
        plan = parse_plan(text, file)
    except PlanError as exc:
        errors = list(exc.problems)
    shape = plan if plan is not None else _shape(text, file)
    seen = {(p.line, p.field, p.message) for p in errors}
    rules = [
        p
        for p in (draft_rules(shape) if shape is not None else [])
        if (p.line, p.field, p.message) not in seen
    ]
    return plan, errors, rules


def _shape(text: str, file: str) -> Plan | None:
    """The plan's fields without the semantic checks (``None`` when even they fail)."""
    try:
        data = yaml.safe_load(text)
        plan = Plan.model_validate({**data, "source": file})
    except Exception:  # any failure here is already one of the validator's problems
        return None
    lines = _task_lines(text)
    return plan.model_copy(update={"field_lines": lines})


def _task_lines(text: str) -> dict[str, int]:
    """``{"2.": line, "2.edits": line}``: the lines of tasks and their fields."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    out: dict[str, int] = {}
    if not isinstance(root, yaml.MappingNode):
        return out
    for key, value in root.value:
        if key.value != "tasks" or not isinstance(value, yaml.SequenceNode):
            continue
        for index, item in enumerate(value.value):
            out[f"{index}."] = item.start_mark.line + 1
            if isinstance(item, yaml.MappingNode):
                for field_key, field_value in item.value:
                    out[f"{index}.{field_key.value}"] = field_value.start_mark.line + 1
    return out


def _problem(plan: Plan, index: int, field: str, message: str) -> Problem:
    lines = plan.field_lines
    line = lines.get(f"{index}.{field}") or lines.get(f"{index}.", 0)
    return Problem(
        plan.source or "plan", line, f"tasks[{index}]" + (f".{field}" if field else ""), message
    )


def draft_rules(plan: Plan) -> list[Problem]:
    """What a draft must not leave to the batcher (see the module's docstring)."""
    problems: list[Problem] = []
    if plan.max_parallel > MAX_DRAFT_PARALLEL:
        problems.append(
            Problem(
                plan.source or "plan",
                0,
                "max_parallel",
                f"a draft runs at most {MAX_DRAFT_PARALLEL} tasks at once, got {plan.max_parallel}",
            )
        )
    index = {t.id: i for i, t in enumerate(plan.tasks)}
    for i, task in enumerate(plan.tasks):
        if task.kind == "code" and not task.edits and task.command is None:
            problems.append(
                _problem(
                    plan,
                    i,
                    "edits",
                    "a code task declares the files it may change: add `edits`, "
                    "or make it `kind: consult` if it changes nothing",
                )
            )
        if task.kind == "code" and task.command is None and not any(c.run for c in task.criteria):
            problems.append(
                _problem(
                    plan,
                    i,
                    "criteria",
                    "a code task proves it is done: add a criterion with `run:` (a command "
                    "run in its worktree after the agent, exit 0 passes), e.g. its tests",
                )
            )
    deps = {t.id: tuple(d for d in t.depends_on if d in index) for t in plan.tasks}
    upstream = {t.id: graph.ancestors(deps, t.id) for t in plan.tasks}
    for a_pos, a in enumerate(plan.tasks):
        for b in plan.tasks[a_pos + 1 :]:
            if a.id in upstream[b.id] or b.id in upstream[a.id] or a.id == b.id:
                continue
            reason = batching.conflict_reason(plan, b, a, isolation="worktree")
            if not reason or reason.startswith("shares resource"):
                continue  # a shared resource is declared on purpose: the batcher serialises it
            reason = reason.split(": waits for it")[0]
            problems.append(
                _problem(
                    plan,
                    index[b.id],
                    "depends_on",
                    f"'{b.id}' {reason}, and neither depends on the other, so they could run "
                    f"at once: add depends_on: [{a.id}] (or the reverse), or give the "
                    "files to one task",
                )
            )
    return problems


# --------------------------------------------------------------------------- comments

#: Every comment line this module writes above a task starts so; old ones are replaced.
NOTE_MARK = "# ·"
#: Width of a ``why`` comment line's text.
NOTE_WIDTH = 90


def task_notes(
    plan: Plan, why: Mapping[str, str], outlook: Forecast | None = None
) -> dict[str, list[str]]:
    """The comment lines above each task: why, what it may touch, when it runs."""
    if outlook is None:
        outlook = forecast(
            plan, isolation=plan.isolation or "worktree", max_parallel=plan.max_parallel
        )
    batch_of = {t: n for n, b in enumerate(outlook.batches, 1) for t in b.tasks}
    members = {n: b.tasks for n, b in enumerate(outlook.batches, 1)}
    notes: dict[str, list[str]] = {}
    for task in plan.tasks:
        lines = []
        if why.get(task.id):
            wrapped = textwrap.wrap(f"why: {why[task.id]}", NOTE_WIDTH)
            lines += [wrapped[0], *(f"  {more}" for more in wrapped[1:])]
        if task.kind == "consult":
            touch = "changes nothing (consult)"
        elif task.edits:
            touch = "may change " + ", ".join(task.edits)
        else:
            touch = "no declared edits"
        if task.reads:
            touch += "; reads " + ", ".join(task.reads)
        lines.append(touch)
        batch = batch_of.get(task.id)
        when = f"after {', '.join(task.depends_on)}" if task.depends_on else "first"
        if batch is not None:
            alongside = [t for t in members[batch] if t != task.id]
            when += f"; batch {batch}" + (
                f" with {', '.join(alongside)}" if alongside else ", alone"
            )
        lines.append(when)
        notes[task.id] = lines
    return notes


def annotate(text: str, notes: Mapping[str, Sequence[str]]) -> str:
    """``text`` with a comment block above each task; the YAML itself is unchanged.

    Comment lines written by an earlier call (they start with :data:`NOTE_MARK`)
    are replaced, so a reviewed plan written again keeps one block per task.
    """
    lines = [line for line in text.splitlines() if not line.lstrip().startswith(NOTE_MARK)]
    clean = "\n".join(lines) + "\n"
    try:
        root = yaml.compose(clean, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return clean
    starts: dict[int, str] = {}
    if isinstance(root, yaml.MappingNode):
        for key, value in root.value:
            if key.value == "tasks" and isinstance(value, yaml.SequenceNode):
                for item in value.value:
                    if not isinstance(item, yaml.MappingNode):
                        continue
                    for field_key, field_value in item.value:
                        if field_key.value == "id" and isinstance(field_value, yaml.ScalarNode):
                            starts[item.start_mark.line] = str(field_value.value)
    out: list[str] = []
    for number, line in enumerate(lines):
        task_id = starts.get(number)
        if task_id is not None and notes.get(task_id):
            dash = line.find("-")
            indent = " " * (dash if dash >= 0 else len(line) - len(line.lstrip()))
            out += [f"{indent}{NOTE_MARK} {note}" for note in notes[task_id]]
        out.append(line)
    return "\n".join(out) + "\n"


def render(plan: Plan, text: str, why: Mapping[str, str]) -> str:
    """The plan file to write: ``text`` with the comment block of each task."""
    return annotate(text, task_notes(plan, why))


# --------------------------------------------------------------------------- the rounds


def draft(
    goal: str,
    ask: Ask,
    *,
    agent: str,
    repo: str = ".",
    file: str = "plan.yaml",
    repo_files: Sequence[str] = (),
    rounds: int = MAX_ROUNDS,
    on_round: Callable[[Round], None] | None = None,
) -> Draft:
    """Ask for a plan, check it, send its problems back, up to ``rounds`` answers.

    ``ask`` runs the agent (a consult task in the real command); ``repo`` is the
    plan's ``repo`` as it will be written (relative to the plan's folder), and
    ``file`` the name problems are reported under. ``on_round`` hears of each round.
    """
    if not goal.strip():
        raise DraftError("the goal is empty: say what the plan should achieve")
    done: list[Round] = []
    previous, problems = "", ()  # type: tuple[str, tuple[Problem, ...]]
    why: dict[str, str] = {}
    plan: Plan | None = None
    text = ""
    for number in range(1, max(1, rounds) + 1):
        prompt = build_prompt(
            goal, agent=agent, repo_files=repo_files, previous=previous, problems=problems
        )
        answer = ask(prompt, number)
        try:
            data = extract_plan(answer.text)
        except ValueError as exc:
            plan, text = None, ""
            problems = (Problem(file, 0, "", str(exc)),)
        else:
            cleaned, why = normalise(data, agent=agent, repo=repo)
            text = to_yaml(cleaned)
            plan, found = check(text, file)
            problems = tuple(found)
        done.append(Round(number, prompt, answer, text, problems))
        if on_round is not None:
            on_round(done[-1])
        if plan is not None and not problems:
            break
        previous = text
    final = render(plan, text, why) if plan is not None else text
    return Draft(goal, file, tuple(done), plan, final, why)
