"""A view reads the run's plan from its log without pydantic, and reads the same plan.

``read_plans_as_logged`` makes the plans of RunStarted events LoggedPlans (what
``delegate-tui attach`` does before its first frame): each must answer every
field and method a view asks exactly as the validated pydantic Plan of the same
JSON does, fall back to that model for the rest, and leave pydantic unloaded.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from delegate_tui.core import logged_plan
from delegate_tui.core.logged_plan import LoggedPlan, read_plan
from delegate_tui.core.plan import Criterion, Plan, Task, load_plan, parse_plan

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = sorted((ROOT / "sample_plans").glob("*.yaml"))

RICH = textwrap.dedent(
    """\
    name: rich
    description: every kind of field
    agent: codex
    max_parallel: 4
    budget_usd: 2.5
    sandbox: worktree
    network: "off"
    shared_files: [package.json]
    worktree_setup: {copy: [.env], link: [node_modules], run: [make deps]}
    agents:
      mine: {extends: claude, args: [--fast], env: {A: b}}
    tasks:
      - id: a
        title: The first
        prompt: do a
        edits: [src/a/**]
        reads: [docs/*.md]
        resources: [db]
        criteria: [tests pass, {run: make test}]
        timeout: 20m
        retries: 2
        approve: true
        guard: "off"
      - {id: b, agent: mine, model: m1, prompt: do b, depends_on: [a],
         kind: consult, sandbox: scope, estimate: 90s, max_turns: 7}
      - {id: c, prompt: "use {{ outputs.a }}", depends_on: [a, b], on_stale_input: restart}
      - {id: d, agent: shell, command: [sh, -c, "echo hi"]}
    """
)


def as_logged(plan: Plan) -> dict[str, Any]:
    """What a RunStarted carries (as the engine writes it)."""
    return plan.model_dump(mode="json", by_alias=True)


def same(light: object, model: object, where: str) -> None:
    """``light`` reads as ``model``, field by field (tuples of models, item by item)."""
    if isinstance(model, tuple) and model and isinstance(model[0], (Task, Criterion)):
        assert isinstance(light, tuple) and len(light) == len(model), where
        for i, (one, other) in enumerate(zip(light, model, strict=True)):
            for name in type(other).model_fields:
                same(getattr(one, name), getattr(other, name), f"{where}[{i}].{name}")
        return
    if isinstance(model, BaseModel):
        for name in type(model).model_fields:
            same(getattr(light, name), getattr(model, name), f"{where}.{name}")
        return
    assert light == model, where
    assert type(light) is type(model), where


@pytest.mark.parametrize("text", [RICH, *(p.read_text() for p in SAMPLES)], ids=lambda t: t[:20])
def test_a_logged_plan_reads_as_the_validated_model_of_the_same_json(text: str) -> None:
    data = as_logged(parse_plan(text))
    model = Plan.model_validate(data)
    light = LoggedPlan.of(data)
    assert light is not None
    for name in Plan.model_fields:
        same(getattr(light, name), getattr(model, name), name)
    assert light.ids == model.ids and light.deps == model.deps
    for task in model.tasks:
        mine = light.task(task.id)
        assert mine.label == task.label
        assert light.agent_of(mine) == model.agent_of(task)
    assert light.resolved_agents() == model.resolved_agents()  # answered by the model
    assert light.where(model.ids[-1], "agent") == model.where(model.ids[-1], "agent")
    assert light.validated() == model


def test_a_logged_plan_is_read_only_and_equal_to_the_same_logged_plan() -> None:
    data = as_logged(parse_plan(RICH))
    light, again = LoggedPlan.of(data), LoggedPlan.of(as_logged(parse_plan(RICH)))
    assert light is not None and again is not None
    assert light == again and hash(light) == hash(again)
    assert light.task("b") == again.task("b") and light.task("a") != light.task("b")
    with pytest.raises(AttributeError):
        light.name = "other"
    with pytest.raises(KeyError):
        light.task("nope")


@pytest.mark.parametrize(
    "data",
    [None, [], {"name": "x"}, {"name": "x", "tasks": []}, {"name": "x", "tasks": [{"id": 3}]}],
)
def test_a_foreign_plan_is_none_whichever_way_plans_are_read(
    data: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert read_plan(data) is None
    monkeypatch.setattr(logged_plan, "_as_logged", True)
    assert read_plan(data) is None


def test_a_view_reads_a_runs_state_from_its_log_without_pydantic(tmp_path: Path) -> None:
    """The state a view catches up to, in a fresh interpreter: its plan is a LoggedPlan,
    what the first frame asks of it is answered, and pydantic was never imported."""
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(RICH)
    plan = load_plan(plan_file)
    from delegate_tui.core.events import RunStarted, TaskOutput
    from delegate_tui.core.runlog import LogWriter
    from delegate_tui.core.state import RunState, apply, snapshot

    log = tmp_path / "events.jsonl"
    writer, state = LogWriter(log), RunState()
    for seq, ev in enumerate(
        [
            RunStarted(
                run_id="r",
                plan=as_logged(plan),
                plan_path=str(plan_file),
                repo="/r",
                isolation="worktree",
            ),
            *(TaskOutput(task="a", attempt=1, data=b"x\n") for _ in range(3000)),
        ],
        1,
    ):
        object.__setattr__(ev, "seq", seq)
        apply(state, ev)
        writer.write(ev, lambda: snapshot(state))
    writer.close()
    code = textwrap.dedent(
        f"""\
        import sys
        from pathlib import Path
        from delegate_tui.core.logged_plan import read_plans_as_logged
        from delegate_tui.core.replay import final_state
        from delegate_tui.core import batching
        read_plans_as_logged()
        state, _ = final_state(Path({str(log)!r}))
        plan = state.plan
        print(type(plan).__name__, plan.ids, plan.task("b").label, plan.agent_of(plan.task("a")))
        print(batching.declared_overlaps(plan, "worktree"), state.last_seq)
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("pydantic", "yaml")
                     or m in ("delegate_tui.core.plan", "delegate_tui.core.agents")))
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    kind, overlaps, modules = run.stdout.splitlines()
    assert kind == "LoggedPlan ['a', 'b', 'c', 'd'] b codex"
    from delegate_tui.core import batching

    assert overlaps == f"{batching.declared_overlaps(plan, 'worktree')} 3001"
    assert modules == "[]"
