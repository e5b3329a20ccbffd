"""What the review screen does to a plan before it runs: pure edits of plan data.

Owns the review's model. A plan under review is its parsed YAML (a dict, so
fields the operator did not touch stay exactly as written) plus each task's
``why``; every edit (a task's prompt, edits or dependencies, a whole task from
``$EDITOR``, dropping a task, merging two) returns new data, and
:func:`assess` says at once what the validator, the draft rules and the
batcher make of it: the plan (or the problems that stop it), the layers, the
first batch, every held reason and the expected batches. Nothing here runs.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from delegate_tui.core import drafting
from delegate_tui.core.forecast import Forecast, forecast
from delegate_tui.core.plan import Plan, Problem

PlanData = dict[str, Any]


class EditError(ValueError):
    """An edit that cannot be made (unknown task, text that is not a task)."""


@dataclass(frozen=True, slots=True)
class Assessment:
    """What the checks make of plan data under review."""

    text: str
    """The plan file as it would be written (commented YAML)."""
    plan: Plan | None
    problems: tuple[Problem, ...]
    """The validator's: while there are any, the plan cannot run."""
    warnings: tuple[Problem, ...] = ()
    """The draft rules': shown, never blocking (the batcher keeps such tasks apart)."""
    outlook: Forecast | None = None
    """The batches ``delegate-tui plan`` prints (first batch, held reasons, expected batches)."""

    @property
    def runnable(self) -> bool:
        """True when the plan may start."""
        return self.plan is not None and not self.problems


def assess(data: Mapping[str, Any], why: Mapping[str, str], file: str) -> Assessment:
    """Validate plan data, batch it, and render the file that would be written."""
    text = drafting.to_yaml(data)
    plan, errors, rules = drafting.check_apart(text, file)
    problems, warnings = tuple(errors), tuple(rules)
    if plan is None:
        return Assessment(text, None, problems, warnings)
    outlook = forecast(plan, isolation=plan.isolation or "worktree", max_parallel=plan.max_parallel)
    text = drafting.annotate(text, drafting.task_notes(plan, why, outlook))
    return Assessment(text, plan, problems, warnings, outlook)


def tasks_of(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The task mappings of plan data (an empty list when there are none)."""
    tasks = data.get("tasks")
    return [t for t in tasks if isinstance(t, dict)] if isinstance(tasks, list) else []


def _index(data: Mapping[str, Any], task_id: str) -> int:
    for i, task in enumerate(data.get("tasks") or []):
        if isinstance(task, dict) and task.get("id") == task_id:
            return i
    raise EditError(f"no task '{task_id}'")


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def split_list(text: str) -> list[str]:
    """``"a, b  c"`` -> ``["a", "b", "c"]``: a list as the operator types it."""
    return [part for part in text.replace(",", " ").split() if part]


def update_task(data: Mapping[str, Any], task_id: str, **fields: Any) -> PlanData:
    """Plan data with ``fields`` of ``task_id`` replaced (a value of None or [] removes it)."""
    out = copy.deepcopy(dict(data))
    index = _index(out, task_id)
    task = dict(out["tasks"][index])
    for key, value in fields.items():
        if value is None or value == [] or value == "":
            task.pop(key, None)
        else:
            task[key] = value
    if fields.get("prompt"):
        task.pop("prompt_file", None)
    out["tasks"][index] = task
    return out


def replace_task(data: Mapping[str, Any], task_id: str, text: str) -> PlanData:
    """Plan data with ``task_id`` replaced by the task written in ``text`` (YAML)."""
    try:
        task = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise EditError(f"the task is not valid YAML: {exc}".replace("\n", " ")) from None
    if isinstance(task, list) and len(task) == 1:
        task = task[0]
    if not isinstance(task, dict) or not task.get("id"):
        raise EditError("a task is a mapping with an `id`")
    out = copy.deepcopy(dict(data))
    index = _index(out, task_id)
    out["tasks"][index] = task
    new_id = str(task["id"])
    if new_id != task_id:
        for other in tasks_of(out):
            deps = _as_list(other.get("depends_on"))
            if task_id in deps:
                other["depends_on"] = [new_id if d == task_id else d for d in deps]
    return out


def task_text(data: Mapping[str, Any], task_id: str) -> str:
    """One task as YAML, for ``$EDITOR``."""
    return drafting.to_yaml(data["tasks"][_index(data, task_id)])


def drop_task(data: Mapping[str, Any], task_id: str) -> PlanData:
    """Plan data without ``task_id``; its dependents wait for what it waited for."""
    out = copy.deepcopy(dict(data))
    index = _index(out, task_id)
    dropped = out["tasks"].pop(index)
    inherited = _as_list(dropped.get("depends_on"))
    for task in tasks_of(out):
        deps = _as_list(task.get("depends_on"))
        if task_id in deps:
            merged = [d for d in deps if d != task_id]
            merged += [d for d in inherited if d not in merged and d != task.get("id")]
            if merged:
                task["depends_on"] = merged
            else:
                task.pop("depends_on", None)
    return out


def merge_tasks(data: Mapping[str, Any], keep: str, other: str) -> PlanData:
    """``other`` folded into ``keep``: prompts joined, scopes and dependencies united.

    Tasks that waited for ``other`` wait for ``keep``. Merging a task with its own
    dependency is allowed (the dependency simply disappears).
    """
    if keep == other:
        raise EditError("a task cannot be merged with itself")
    out = copy.deepcopy(dict(data))
    first = out["tasks"][_index(out, keep)]
    second = out["tasks"][_index(out, other)]
    first_prompt = str(first.get("prompt") or "").rstrip()
    second_prompt = str(second.get("prompt") or "").rstrip()
    if second_prompt:
        first["prompt"] = (first_prompt + "\n\n" if first_prompt else "") + second_prompt + "\n"
    for key in ("edits", "reads", "resources", "criteria"):
        joined = _as_list(first.get(key)) if key != "criteria" else list(first.get(key) or [])
        extra = _as_list(second.get(key)) if key != "criteria" else list(second.get(key) or [])
        joined += [item for item in extra if item not in joined]
        if joined:
            first[key] = joined
    deps = [
        d
        for d in _as_list(first.get("depends_on")) + _as_list(second.get("depends_on"))
        if d not in (keep, other)
    ]
    if deps:
        first["depends_on"] = list(dict.fromkeys(deps))
    else:
        first.pop("depends_on", None)
    if second.get("kind", "code") == "code" and first.get("kind") == "consult":
        first.pop("kind")  # the merged task changes files: it is code
    out["tasks"].pop(_index(out, other))
    for task in tasks_of(out):
        if task is first:
            continue
        task_deps = _as_list(task.get("depends_on"))
        if other in task_deps:
            task["depends_on"] = list(dict.fromkeys(keep if d == other else d for d in task_deps))
    return out


def load_review(text: str) -> tuple[PlanData, dict[str, str]]:
    """Plan text -> its data and the ``why`` of each task (from the comments drafting wrote).

    Raises :class:`EditError` when the text is not a YAML mapping.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise EditError(f"not valid YAML: {exc}".replace("\n", " ")) from None
    if not isinstance(data, dict):
        raise EditError("a plan is a mapping with `name` and `tasks`")
    return data, read_why(text)


def read_why(text: str) -> dict[str, str]:
    """The ``why`` comment above each task, as :func:`drafting.annotate` wrote it."""
    why: dict[str, str] = {}
    pending: list[str] = []
    prefix = drafting.NOTE_MARK + " why: "
    more = drafting.NOTE_MARK + "   "
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(prefix):
            pending = [stripped[len(prefix) :]]
        elif stripped.startswith(more) and pending:
            pending.append(stripped[len(more) :])
        elif stripped.startswith("- id:") and pending:
            task_id = stripped[len("- id:") :].strip().strip("'\"")
            why[task_id] = " ".join(pending)
            pending = []
        elif not stripped.startswith(drafting.NOTE_MARK):
            pending = []
    return why


def ids(data: Mapping[str, Any]) -> list[str]:
    """The task ids of plan data, in order."""
    return [str(t.get("id")) for t in tasks_of(data)]


def depends_text(values: Sequence[str]) -> str:
    """A list as the review's inputs show it."""
    return ", ".join(values)
