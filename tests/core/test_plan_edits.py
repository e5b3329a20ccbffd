"""The review's edits of plan data, and what the checks make of the result (pure)."""

from __future__ import annotations

import pytest
import yaml

from delegate_tui.core import drafting, plan_edits
from delegate_tui.core.plan_edits import EditError

PLAN = """\
name: Shop
agent: demo
tasks:
  - id: contract
    prompt: Write the contract.
    edits: [docs/api.md]
    criteria: [{run: test -s docs/api.md}]
  - id: module
    depends_on: [contract]
    prompt: |
      Build it:
      {{ outputs.contract }}
    edits: [src/module.py]
    criteria: [{run: python3 -m py_compile src/module.py}]
  - id: tests
    depends_on: [contract]
    prompt: Test it.
    edits: [tests/test_module.py]
    criteria: [{run: test -s tests/test_module.py}]
  - id: wire
    depends_on: [module, tests]
    prompt: Wire it.
    edits: [src/app.py]
    criteria: [{run: python3 -m py_compile src/app.py}]
"""


def data() -> plan_edits.PlanData:
    loaded = yaml.safe_load(PLAN)
    assert isinstance(loaded, dict)
    return loaded


def batches(d: plan_edits.PlanData) -> list[tuple[str, ...]]:
    a = plan_edits.assess(d, {}, "plan.yaml")
    assert a.outlook is not None
    return [b.tasks for b in a.outlook.batches]


def test_assess_batches_a_good_plan_and_renders_its_comments() -> None:
    a = plan_edits.assess(data(), {"module": "The code."}, "plan.yaml")
    assert a.runnable and a.problems == () and a.warnings == ()
    assert batches(data()) == [("contract",), ("module", "tests"), ("wire",)]
    assert "  # · why: The code.\n  # · may change src/module.py\n" in a.text


def test_dropping_a_task_hands_its_dependencies_to_its_dependents() -> None:
    d = plan_edits.drop_task(data(), "module")
    assert plan_edits.ids(d) == ["contract", "tests", "wire"]
    wire = plan_edits.tasks_of(d)[2]
    assert wire["depends_on"] == ["tests", "contract"]
    assert batches(d) == [("contract",), ("tests",), ("wire",)]
    assert plan_edits.ids(data()) == ["contract", "module", "tests", "wire"]  # not changed in place


def test_dropping_a_task_whose_output_is_quoted_is_a_problem_not_a_crash() -> None:
    a = plan_edits.assess(plan_edits.drop_task(data(), "contract"), {}, "plan.yaml")
    assert not a.runnable
    assert [p.field for p in a.problems] == ["tasks[0].prompt"]
    assert "'contract' is not a task of 'module'" in a.problems[0].message


def test_editing_a_prompt_edits_and_dependencies() -> None:
    d = plan_edits.update_task(
        data(), "tests", prompt="Test it well.", edits=["tests/**"], reads=[], depends_on=[]
    )
    tests = plan_edits.tasks_of(d)[2]
    assert tests["prompt"] == "Test it well." and tests["edits"] == ["tests/**"]
    assert "depends_on" not in tests and "reads" not in tests
    a = plan_edits.assess(d, {}, "plan.yaml")
    assert a.runnable  # the batcher keeps it apart; the draft rules say why
    assert batches(d)[0] == ("contract", "tests")
    with pytest.raises(EditError, match="no task 'nope'"):
        plan_edits.update_task(data(), "nope", prompt="x")


def test_an_unknown_dependency_typed_in_is_a_problem_with_its_line() -> None:
    d = plan_edits.update_task(data(), "wire", depends_on=["module", "testz"])
    a = plan_edits.assess(d, {}, "plan.yaml")
    assert not a.runnable and a.outlook is None
    assert str(a.problems[0]).endswith(
        "tasks[3].depends_on: unknown task 'testz' (did you mean 'tests'?)"
    )


def test_overlapping_edits_are_warnings_in_review_not_problems() -> None:
    d = plan_edits.update_task(data(), "tests", edits=["src/**"])
    a = plan_edits.assess(d, {}, "plan.yaml")
    assert a.runnable
    assert [w.field for w in a.warnings] == ["tasks[2].depends_on"]
    assert "edits overlap with module" in a.warnings[0].message
    assert ("module",) in batches(d) and ("tests",) in batches(d)


def test_merging_two_tasks_joins_prompts_scopes_and_dependents() -> None:
    d = plan_edits.merge_tasks(data(), "module", "tests")
    assert plan_edits.ids(d) == ["contract", "module", "wire"]
    module = plan_edits.tasks_of(d)[1]
    assert module["prompt"] == "Build it:\n{{ outputs.contract }}\n\nTest it.\n"
    assert module["edits"] == ["src/module.py", "tests/test_module.py"]
    assert module["criteria"] == [
        {"run": "python3 -m py_compile src/module.py"},
        {"run": "test -s tests/test_module.py"},
    ]
    assert module["depends_on"] == ["contract"]
    assert plan_edits.tasks_of(d)[2]["depends_on"] == ["module"]
    assert batches(d) == [("contract",), ("module",), ("wire",)]
    with pytest.raises(EditError):
        plan_edits.merge_tasks(data(), "module", "module")


def test_merging_a_task_with_its_own_dependency_drops_the_dependency() -> None:
    d = plan_edits.merge_tasks(data(), "wire", "module")
    wire = plan_edits.tasks_of(d)[2]
    assert wire["depends_on"] == ["tests", "contract"]
    assert plan_edits.assess(d, {}, "plan.yaml").runnable


def test_a_task_replaced_from_the_editor_and_renamed_keeps_its_dependents() -> None:
    text = plan_edits.task_text(data(), "tests")
    assert text.startswith("id: tests\n")
    d = plan_edits.replace_task(data(), "tests", text.replace("id: tests", "id: checks"))
    assert plan_edits.ids(d) == ["contract", "module", "checks", "wire"]
    assert plan_edits.tasks_of(d)[3]["depends_on"] == ["module", "checks"]
    with pytest.raises(EditError, match="not valid YAML"):
        plan_edits.replace_task(data(), "tests", "id: [x")
    with pytest.raises(EditError, match="mapping with an `id`"):
        plan_edits.replace_task(data(), "tests", "just text")


def test_why_comes_back_from_the_comments_drafting_wrote() -> None:
    long_why = "A reason long enough to wrap over more than one comment line " * 2
    a = plan_edits.assess(data(), {"module": long_why.strip(), "wire": "Last."}, "plan.yaml")
    loaded, why = plan_edits.load_review(a.text)
    assert why == {"module": " ".join(long_why.split()), "wire": "Last."}
    assert loaded == data()
    with pytest.raises(EditError):
        plan_edits.load_review("- a list\n")
    assert drafting.NOTE_MARK in a.text


def test_split_list_takes_commas_and_spaces() -> None:
    assert plan_edits.split_list("a, b  c,,d") == ["a", "b", "c", "d"]
    assert plan_edits.split_list("  ") == []
