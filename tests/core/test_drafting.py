"""Drafting a plan from a goal: prompt, answer reading, checks, rounds, comments (pure)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from delegate_tui.core import drafting
from delegate_tui.core.drafting import Answer, DraftError
from delegate_tui.core.plan import Task, parse_plan
from delegate_tui.demo import drafts
from delegate_tui.demo.scaffold import make_demo_repo

GOOD = """\
name: Rate limiting
agent: demo
tasks:
  - id: contract
    why: Everything else builds on it.
    prompt: Write the contract.
    edits: [docs/api/rl.md]
    criteria: [{run: test -s docs/api/rl.md}]
  - id: impl
    why: The code.
    depends_on: [contract]
    prompt: |
      Implement it:
      {{ outputs.contract }}
    edits: [src/rl.py]
    criteria: [{run: python3 -m py_compile src/rl.py}]
  - id: tests
    depends_on: [contract]
    prompt: Test it.
    edits: [tests/test_rl.py]
    criteria: [{run: python3 -m pytest -q tests/test_rl.py}]
"""

# A cycle (impl <-> tests) and two tasks that may run at once both writing package.json.
BAD = """\
name: Rate limiting
agent: demo
tasks:
  - id: contract
    prompt: Write the contract.
    edits: [docs/api/rl.md]
    criteria: [{run: test -s docs/api/rl.md}]
  - id: impl
    depends_on: [contract, tests]
    prompt: Implement it.
    edits: [src/rl.py]
    criteria: [{run: test -s src/rl.py}]
  - id: tests
    depends_on: [impl]
    prompt: Test it.
    edits: [tests/test_rl.py]
    criteria: [{run: test -s tests/test_rl.py}]
  - id: ui
    depends_on: [contract]
    prompt: The UI.
    edits: [ui/rl.js, package.json]
    criteria: [{run: test -s ui/rl.js}]
  - id: ui-client
    depends_on: [contract]
    prompt: The client.
    edits: [ui/client.js, package.json]
    criteria: [{run: test -s ui/client.js}]
"""


def fenced(text: str, lang: str = "yaml") -> str:
    return f"Here is the plan.\n\n```{lang}\n{text}```\nDone.\n"


# ---------------------------------------------------------------- the prompt


def test_prompt_carries_goal_rules_files_and_schema() -> None:
    prompt = drafting.build_prompt(
        "add rate limiting", agent="codex", repo_files=["src/app.py", "package.json"]
    )
    assert prompt.startswith(drafting.DRAFT_HEADER)
    assert "Goal:\nadd rate limiting\n" in prompt
    assert "`agent: codex`" in prompt
    for rule in (
        "package.json",
        "depends_on",
        "Contracts first",
        "max_parallel 3",
        "kind: consult",
    ):
        assert rule in prompt
    assert "  src/app.py\n  package.json" in prompt
    schema = json.loads(prompt.split("The plan's JSON Schema:\n", 1)[1])
    assert schema["$defs"]["Task"]["properties"]["why"]["type"] == "string"
    assert drafting.PROBLEMS_HEADER not in prompt  # a first round has no feedback


def test_prompt_lists_a_large_repository_in_part() -> None:
    files = [f"f{i}.py" for i in range(drafting.REPO_FILES_LISTED + 5)]
    prompt = drafting.build_prompt("x", agent="demo", repo_files=files)
    assert f"  f{drafting.REPO_FILES_LISTED - 1}.py" in prompt
    assert f"  f{drafting.REPO_FILES_LISTED}.py" not in prompt
    assert "and 5 more file(s)" in prompt


def test_a_later_round_quotes_the_draft_with_line_numbers_and_every_problem() -> None:
    previous = "name: x\ntasks: []\n"
    _plan, problems = drafting.check(BAD, "plan.yaml")
    prompt = drafting.build_prompt("x", agent="demo", previous=previous, problems=problems)
    assert "1 | name: x\n2 | tasks: []" in prompt
    section = prompt.split(drafting.PROBLEMS_HEADER, 1)[1]
    assert all(f"- {p}" in section for p in problems)


def test_schema_for_drafts_is_the_plan_schema_plus_why() -> None:
    schema = drafting.draft_schema()
    task_fields = {f.alias or name for name, f in Task.model_fields.items()}
    assert set(schema["$defs"]["Task"]["properties"]) == task_fields | {"why"}
    assert "source" not in schema["properties"]


# ---------------------------------------------------------------- reading the answer


def test_the_last_fenced_block_is_the_plan() -> None:
    first = "name: old\ntasks: [{id: a, prompt: x}]\n"
    answer = fenced(first) + fenced(GOOD)
    assert drafting.extract_plan(answer)["name"] == "Rate limiting"


def test_json_answers_and_a_plan_wrapper_are_read() -> None:
    data = yaml.safe_load(GOOD)
    answer = fenced(json.dumps(data) + "\n", "json")
    assert drafting.extract_plan(answer)["tasks"][0]["id"] == "contract"
    wrapped = json.dumps({"plan": data})
    assert drafting.extract_plan(wrapped)["name"] == "Rate limiting"
    assert drafting.extract_plan("Sure! Here it is:\n" + GOOD)["name"] == "Rate limiting"


def test_an_answer_without_a_plan_says_what_was_expected() -> None:
    with pytest.raises(ValueError, match="no plan"):
        drafting.extract_plan("I think you should write tests first.")
    with pytest.raises(ValueError, match="not valid YAML"):
        drafting.extract_plan("```yaml\nname: [unclosed\n```\n")


def test_normalise_takes_why_out_and_sets_repo_and_agent() -> None:
    data = yaml.safe_load(GOOD)
    del data["agent"]
    data["repo"] = "/somewhere/else"
    cleaned, why = drafting.normalise(data, agent="gemini", repo="..")
    assert why == {"contract": "Everything else builds on it.", "impl": "The code."}
    assert list(cleaned)[:3] == ["name", "repo", "agent"]
    assert cleaned["repo"] == ".." and cleaned["agent"] == "gemini"
    assert all("why" not in t for t in cleaned["tasks"])


def test_to_yaml_round_trips_and_keeps_multiline_prompts_as_blocks() -> None:
    cleaned, _ = drafting.normalise(yaml.safe_load(GOOD), agent="demo", repo=".")
    text = drafting.to_yaml(cleaned)
    assert yaml.safe_load(text) == cleaned
    assert "    prompt: |\n      Implement it:\n      {{ outputs.contract }}\n" in text
    assert "    edits: [src/rl.py]\n" in text
    assert "criteria:\n      - run: test -s docs/api/rl.md" in text  # a mapping stays a block


# ---------------------------------------------------------------- checking


def test_a_good_draft_has_no_problems() -> None:
    cleaned, _ = drafting.normalise(yaml.safe_load(GOOD), agent="demo", repo=".")
    plan, problems = drafting.check(drafting.to_yaml(cleaned), "plan.yaml")
    assert plan is not None and problems == []


def test_a_cycle_and_two_parallel_package_json_writers_are_both_named_with_lines() -> None:
    plan, problems = drafting.check(BAD, "plan.yaml")
    assert plan is None
    text = [str(p) for p in problems]
    assert text[0] == "plan.yaml:9: tasks[1].depends_on: dependency cycle: impl -> tests -> impl"
    assert text[1].startswith(
        "plan.yaml:24: tasks[4].depends_on: 'ui-client' shares config file package.json with ui, and "
        "neither depends on the other"
    )
    assert "add depends_on: [ui]" in text[1]
    assert len(problems) == 2


def test_draft_rules_overlapping_edits_reads_and_missing_edits() -> None:
    text = """\
name: x
agent: demo
tasks:
  - {id: a, prompt: p, edits: ["src/**"], criteria: [{run: t}]}
  - {id: b, prompt: p, edits: [src/b.py], criteria: [{run: t}]}
  - {id: c, prompt: p, edits: [docs/c.md], reads: [src/b.py], criteria: [{run: t}]}
  - {id: d, prompt: p, criteria: [{run: t}]}
  - {id: e, prompt: p, kind: consult}
  - {id: f, prompt: p, edits: [f.txt], resources: [db], criteria: [{run: t}]}
  - {id: g, prompt: p, edits: [g.txt], resources: [db], criteria: [{run: t}]}
  - {id: h, prompt: p, edits: [src/h.py], depends_on: [a], criteria: [{run: t}]}
"""
    plan, problems = drafting.check(text, "p.yaml")
    assert plan is not None  # the validator accepts it: the batcher would serialise
    by_task = {p.field: p.message for p in problems}
    assert "edits overlap with a on src/b.py / src/**" in by_task["tasks[1].depends_on"]
    assert "reads src/b.py, which b edits" in by_task["tasks[2].depends_on"]
    assert "a code task declares the files it may change" in by_task["tasks[3].edits"]
    assert set(by_task) == {"tasks[1].depends_on", "tasks[2].depends_on", "tasks[3].edits"}
    # a consult task needs no edits; a shared resource is declared on purpose;
    # h overlaps a but waits for it.


def test_a_code_task_without_a_run_criterion_goes_back_with_its_line() -> None:
    text = """\
name: x
agent: demo
tasks:
  - id: a
    prompt: p
    edits: [a.py]
    criteria: [It reads well]
  - id: b
    prompt: p
    edits: [b.py]
  - {id: c, prompt: p, edits: [c.py], criteria: [Fine, {run: test -s c.py}]}
  - {id: d, prompt: p, kind: consult, criteria: [Says what is missing]}
  - {id: e, agent: shell, command: "make e", edits: [e.txt]}
"""
    plan, problems = drafting.check(text, "p.yaml")
    assert plan is not None  # the validator accepts it; only a draft must prove itself
    assert [str(p) for p in problems] == [
        "p.yaml:7: tasks[0].criteria: a code task proves it is done: add a criterion with "
        "`run:` (a command run in its worktree after the agent, exit 0 passes), e.g. its tests",
        "p.yaml:8: tasks[1].criteria: a code task proves it is done: add a criterion with "
        "`run:` (a command run in its worktree after the agent, exit 0 passes), e.g. its tests",
    ]
    # ... and it goes back to the drafting agent like every other problem.
    agent = Scripted(fenced(text), fenced(GOOD))
    result = drafting.draft("x", agent, agent="demo", file="p.yaml")
    assert result.valid and len(agent.prompts) == 2
    assert "tasks[1].criteria: a code task proves it is done" in agent.prompts[1]


def test_too_many_at_once_is_a_draft_problem() -> None:
    text = (
        "name: x\nagent: demo\nmax_parallel: 8\n"
        "tasks: [{id: a, prompt: p, edits: [a], criteria: [{run: t}]}]\n"
    )
    _plan, problems = drafting.check(text, "p.yaml")
    assert [p.field for p in problems] == ["max_parallel"]


# ---------------------------------------------------------------- the rounds


class Scripted:
    """An agent that answers from a list, and records what it was asked."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.prompts: list[str] = []

    def __call__(self, prompt: str, number: int) -> Answer:
        self.prompts.append(prompt)
        assert number == len(self.prompts)
        return Answer(
            self.answers[min(number, len(self.answers)) - 1], seconds=2.0, run_id=f"r{number}"
        )


def test_problems_go_back_and_the_second_round_fixes_them() -> None:
    fixed = BAD.replace("depends_on: [contract, tests]", "depends_on: [contract]").replace(
        "  - id: ui-client\n    depends_on: [contract]", "  - id: ui-client\n    depends_on: [ui]"
    )
    agent = Scripted(fenced(BAD), fenced(fixed))
    seen: list[int] = []
    result = drafting.draft(
        "add rate limiting",
        agent,
        agent="demo",
        repo="..",
        file="plan.yaml",
        on_round=lambda r: seen.append(len(r.problems)),
    )
    assert result.valid and seen == [2, 0] and len(result.rounds) == 2
    assert "dependency cycle: impl -> tests -> impl" in agent.prompts[1]
    assert "shares config file package.json with ui" in agent.prompts[1]
    assert result.seconds == 4.0
    assert result.plan is not None and result.plan.repo == ".."
    assert "# · may change ui/client.js, package.json" in result.text


def test_a_draft_that_never_becomes_valid_stops_after_the_rounds() -> None:
    agent = Scripted(fenced(BAD))
    result = drafting.draft("x", agent, agent="demo", rounds=3)
    assert not result.valid and len(agent.prompts) == 3
    assert [p.field for p in result.problems] == ["tasks[1].depends_on", "tasks[4].depends_on"]
    assert result.text.startswith("name: Rate limiting")  # printed for the operator to fix


def test_an_answer_without_a_plan_is_a_problem_sent_back() -> None:
    agent = Scripted("I would start with the tests.", fenced(GOOD))
    result = drafting.draft("x", agent, agent="demo")
    assert result.valid
    assert "(no plan could be read from your answer)" in agent.prompts[1]
    assert "the answer holds no plan" in agent.prompts[1]


def test_an_empty_goal_is_refused_before_asking() -> None:
    agent = Scripted(fenced(GOOD))
    with pytest.raises(DraftError):
        drafting.draft("  ", agent, agent="demo")
    assert agent.prompts == []


# ---------------------------------------------------------------- comments


def test_comments_leave_the_plan_unchanged_and_are_replaced_not_repeated() -> None:
    cleaned, why = drafting.normalise(yaml.safe_load(GOOD), agent="demo", repo=".")
    text = drafting.to_yaml(cleaned)
    plan = parse_plan(text)
    rendered = drafting.render(plan, text, why)
    assert parse_plan(rendered).model_dump() == plan.model_dump()
    lines = rendered.splitlines()
    at = lines.index("  - id: impl")
    assert lines[at - 3 : at] == [
        "  # · why: The code.",
        "  # · may change src/rl.py",
        "  # · after contract; batch 2 with tests",
    ]
    assert "  # · first; batch 1, alone" in lines
    again = drafting.render(plan, rendered, why)
    assert again == rendered


def test_a_long_why_wraps_onto_continuation_lines() -> None:
    plan = parse_plan(
        drafting.to_yaml(drafting.normalise(yaml.safe_load(GOOD), agent="demo", repo=".")[0])
    )
    notes = drafting.task_notes(plan, {"impl": "word " * 40})
    assert notes["impl"][0].startswith("why: word")
    assert notes["impl"][1].startswith("  word")
    assert all(len(n) <= drafting.NOTE_WIDTH + 2 for n in notes["impl"][:2])


# ---------------------------------------------------------------- the demo agent's drafts


def test_the_demo_agent_knows_a_drafting_prompt() -> None:
    assert drafts.DRAFT_HEADER == drafting.DRAFT_HEADER
    assert drafts._PROBLEMS_HEADER == drafting.PROBLEMS_HEADER
    prompt = drafting.build_prompt("add rate limiting\nto the API", agent="demo")
    assert drafts.is_draft_request(prompt)
    assert drafts.goal_of(prompt) == "add rate limiting to the API"
    assert drafts.slug("Add rate limiting to the API") == "rate_limiting_api"


def test_the_demo_plan_is_valid_and_its_flawed_plan_is_fixed_from_the_feedback(
    tmp_path: Path,
) -> None:
    repo = make_demo_repo(tmp_path).parent.parent
    good = drafts.good_plan("add rate limiting", repo)
    cleaned, why = drafting.normalise(good, agent="demo", repo=".")
    plan, problems = drafting.check(drafting.to_yaml(cleaned), "plan.yaml")
    assert plan is not None and problems == []
    assert set(why) == set(plan.ids)
    assert plan.task("module").edits == ("src/shop/rate_limiting.py",)
    assert "package.json" in plan.task("ui").edits

    flawed = drafts.flawed_plan("add rate limiting", repo)
    text = drafting.to_yaml(drafting.normalise(flawed, agent="demo", repo=".")[0])
    _plan, problems = drafting.check(text, "plan.yaml")
    messages = [p.message for p in problems]
    assert any("dependency cycle" in m for m in messages)
    assert any("shares config file package.json" in m for m in messages)
    done = drafts.fix(flawed, [str(p) for p in problems])
    assert done == [
        "tests no longer waits for wire (it broke the cycle)",
        "ui-client now runs after ui",
    ]
    text = drafting.to_yaml(drafting.normalise(flawed, agent="demo", repo=".")[0])
    assert drafting.check(text, "plan.yaml")[1] == []


def test_the_default_drafting_agent_is_the_first_cli_installed_else_demo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from delegate_tui.core.consult import default_agent

    monkeypatch.setenv("PATH", str(tmp_path))
    assert default_agent() == "demo"
    for name in ("gemini", "codex"):
        cli = tmp_path / name
        cli.write_text("#!/bin/sh\n")
        cli.chmod(0o755)
    assert default_agent() == "codex", "codex comes before gemini"
    (tmp_path / "claude").write_text("#!/bin/sh\n")
    (tmp_path / "claude").chmod(0o755)
    assert default_agent() == "claude"


def test_an_unknown_dependency_goes_back_with_its_line_and_field() -> None:
    text = """\
name: x
agent: demo
tasks:
  - {id: a, prompt: p, edits: [a.py], criteria: [{run: t}]}
  - {id: b, prompt: p, edits: [b.py], depends_on: [nope], criteria: [{run: t}]}
"""
    plan, problems = drafting.check(text, "plan.yaml")
    assert plan is None
    assert [str(p) for p in problems] == ["plan.yaml:5: tasks[1].depends_on: unknown task 'nope'"]
