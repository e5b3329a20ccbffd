"""A run's plan as its log recorded it, read without pydantic: what a view reads.

Owns :func:`read_plan`, which turns the plan a ``RunStarted`` carries (the
plan the run validated, dumped as JSON) back into a plan for the run's state,
and :class:`LoggedPlan`, the light form a process that only views runs reads
it into. Everywhere else the plan is validated again into the pydantic models
of :mod:`~delegate_tui.core.plan`; but importing pydantic (with the plan module
and the agent presets the models import) is about 30% of what a view's process
imports before its first frame, and a view only reads the plan: its tasks,
their fields, the plan's defaults. So ``delegate-tui attach`` (and the UI of
``run`` and ``resume``) calls :func:`read_plans_as_logged` first, and its plans
are LoggedPlans: every field of the plan and its tasks as a read-only
attribute (lists as tuples, as the models have them), the methods views ask
(``task``, ``ids``, ``deps``, ``agent_of``, a task's ``label``), and
anything else (``resolved_agents``, ``where``, the models' ``model_*`` API, a
field an older log lacks) answered by the validated model, which is made, and
pydantic imported, the first time one is asked. A plan not shaped as a logged
one (no name, no tasks with ids: a foreign or damaged log) is validated as
before, and is None when that fails.

A LoggedPlan stands where the state's type says :class:`Plan`: it reads the
same, field for field, as ``Plan.model_validate`` of the same JSON (the
tests compare the two); it is not a pydantic model (``isinstance`` and
passing it into a model need :meth:`LoggedPlan.validated`). Nothing that runs
agents uses it: the engine and ``resume`` read plans as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from delegate_tui.core.plan import Plan, Task

_as_logged = False


def read_plans_as_logged() -> None:
    """From now on, :func:`read_plan` gives LoggedPlans: this process only views runs."""
    global _as_logged
    _as_logged = True


def read_plan(data: object) -> Plan | None:
    """The plan a ``RunStarted`` recorded (None for a foreign or damaged one)."""
    if _as_logged:
        light = LoggedPlan.of(data)
        if light is not None:
            return cast("Plan", light)
    from delegate_tui.core.plan import Plan

    try:
        return Plan.model_validate(data)
    except Exception:  # a foreign or damaged log: show what we can
        return None


def _frozen(value: Any) -> Any:
    """JSON as the models hold it: lists as tuples."""
    if isinstance(value, list):
        return tuple(_frozen(item) for item in value)
    return value


class _Fields:
    """A model's fields as attributes, from its JSON."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.__dict__.update({key: _frozen(value) for key, value in data.items()})

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only (the log's plan)")

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items() if k[0] != "_")
        return f"{type(self).__name__}({fields})"


class LoggedCriterion(_Fields):
    """A task's success criterion: ``text``, ``run``."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LoggedCriterion) and self.__dict__ == other.__dict__

    def __hash__(self) -> int:
        return hash(tuple(self.__dict__.items()))


class LoggedSetup(_Fields):
    """The plan's ``worktree_setup``: ``copy_paths`` (``copy`` in the file), ``link``, ``run``."""

    def __init__(self, data: dict[str, Any]) -> None:
        data = dict(data)
        if "copy" in data:
            data["copy_paths"] = data.pop("copy")
        super().__init__(data)


class LoggedTask(_Fields):
    """One task of a :class:`LoggedPlan`, its fields as the validated Task has them."""

    id: str
    title: str | None

    def __init__(self, plan: LoggedPlan, data: dict[str, Any]) -> None:
        super().__init__(data)
        criteria = data.get("criteria")
        if isinstance(criteria, list):
            self.__dict__["criteria"] = tuple(
                LoggedCriterion(c) if isinstance(c, dict) else c for c in criteria
            )
        self.__dict__["_plan"] = plan

    @property
    def label(self) -> str:
        """The title if given, else the id."""
        return self.title or self.id

    def validated(self) -> Task:
        """The pydantic Task (the whole plan is validated, once)."""
        plan: LoggedPlan = self.__dict__["_plan"]
        return plan.validated().task(self.id)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.validated(), name)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LoggedTask):
            return NotImplemented
        mine = {k: v for k, v in self.__dict__.items() if k != "_plan"}
        return mine == {k: v for k, v in other.__dict__.items() if k != "_plan"}

    def __hash__(self) -> int:
        return hash(self.id)


class LoggedPlan(_Fields):
    """A plan as its run's log recorded it (see the module's docstring)."""

    name: str
    agent: str
    repo: str
    source: str
    field_lines: dict[str, int]
    tasks: tuple[LoggedTask, ...]

    @classmethod
    def of(cls, data: object) -> LoggedPlan | None:
        """The plan in ``data``, or None when it is not shaped as a logged plan is."""
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            return None
        tasks = data.get("tasks")
        if not isinstance(tasks, list) or not tasks:
            return None
        if not all(isinstance(t, dict) and isinstance(t.get("id"), str) for t in tasks):
            return None
        return cls(data)

    def __init__(self, data: dict[str, Any]) -> None:
        # The agents' definitions are the validated model's (a view never reads them).
        super().__init__({k: v for k, v in data.items() if k not in ("tasks", "agents")})
        fields = self.__dict__
        fields["_data"] = data
        fields["_model"] = None
        fields["tasks"] = tuple(LoggedTask(self, t) for t in data["tasks"])
        fields["_by_id"] = {t.id: t for t in self.tasks}
        if isinstance(data.get("worktree_setup"), dict):
            fields["worktree_setup"] = LoggedSetup(data["worktree_setup"])
        fields.setdefault("source", "")  # never logged, as in the validated model
        fields.setdefault("field_lines", {})

    def validated(self) -> Plan:
        """The pydantic Plan of the same JSON, made (and pydantic imported) once."""
        model = self.__dict__["_model"]
        if model is None:
            from delegate_tui.core.plan import Plan

            model = self.__dict__["_model"] = Plan.model_validate(self.__dict__["_data"])
        return cast("Plan", model)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.validated(), name)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LoggedPlan):
            return NotImplemented
        return bool(self.__dict__["_data"] == other.__dict__["_data"])

    def __hash__(self) -> int:
        return hash((self.name, tuple(self._by_id)))

    def __repr__(self) -> str:
        return f"LoggedPlan(name={self.name!r}, tasks={list(self._by_id)!r})"

    # The Plan's own methods a view asks (the same answers).

    def task(self, task_id: str) -> LoggedTask:
        """The task with this id (KeyError if none)."""
        found: LoggedTask = self.__dict__["_by_id"][task_id]
        return found

    @property
    def ids(self) -> list[str]:
        """Task ids in file order."""
        return [t.id for t in self.tasks]

    @property
    def deps(self) -> dict[str, tuple[str, ...]]:
        """Task id -> the ids it depends on."""
        return {t.id: t.depends_on for t in self.tasks}

    def agent_of(self, task: Any) -> str:
        """The agent name a task runs with."""
        return str(task.agent or self.agent)
