"""Plan files: valid plans load; every mistake is named with file, line and field."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from delegate_tui.core.plan import PlanError, json_schema, load_plan, parse_duration, parse_plan


def problems(text: str) -> list[str]:
    with pytest.raises(PlanError) as info:
        parse_plan(textwrap.dedent(text), "plan.yaml")
    return [str(p) for p in info.value.problems]


def test_full_plan_loads_with_every_field(tmp_path: Path) -> None:
    (tmp_path / "briefs").mkdir()
    (tmp_path / "briefs" / "contract.md").write_text("Define the contract\n")
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(
        textwrap.dedent(
            """\
            name: OAuth login
            description: Contract first
            repo: .
            base: main
            isolation: worktree
            max_parallel: 4
            approve: auto
            merge: manual
            shared_files: [package.json, "*.lock"]
            worktree_setup:
              copy: [".env"]
              link: [node_modules]
              run: ["npm ci"]
            agents:
              codex-fast:
                extends: codex
                args: ["-m", "gpt-5-mini"]
            tasks:
              - id: contract
                title: Define the API contract
                agent: claude
                persona: Architect
                model: sonnet
                prompt_file: briefs/contract.md
                edits: ["docs/api/**"]
                reads: ["src/models/**"]
                criteria:
                  - Contract names every field
                  - run: test -f docs/api/user.md
                timeout: 20m
                retries: 1
                estimate: 5m
              - id: service
                agent: codex-fast
                depends_on: [contract]
                prompt: "Implement {{ outputs.contract }}"
                edits: ["src/services/auth/**"]
                resources: [database]
              - id: review
                agent: gemini
                kind: consult
                depends_on: [service]
                approve: true
                prompt: Review it
            """
        )
    )
    plan = load_plan(plan_file)
    contract = plan.task("contract")
    assert contract.prompt == "Define the contract\n"
    assert contract.timeout == 1200.0
    assert contract.criteria[1].run == "test -f docs/api/user.md"
    assert contract.criteria[0].run is None
    assert plan.worktree_setup.copy_paths == (".env",)
    assert plan.task("review").approve and plan.task("review").kind == "consult"
    assert plan.resolved_agents()["codex-fast"].args == ("-m", "gpt-5-mini")
    assert plan.where("service", "agent") == f"{plan_file}:34: tasks[1].agent"


def test_unknown_dependency_names_line_field_and_suggestion() -> None:
    found = problems(
        """\
        name: p
        tasks:
          - id: service
            prompt: x
          - id: ui
            prompt: y
            depends_on: [servce]
        """
    )
    assert found == [
        "plan.yaml:7: tasks[1].depends_on: unknown task 'servce' (did you mean 'service'?)"
    ]


def test_cycle_is_printed_whole() -> None:
    (found,) = problems(
        """\
        name: p
        tasks:
          - {id: a, prompt: x, depends_on: [c]}
          - {id: b, prompt: x, depends_on: [a]}
          - {id: c, prompt: x, depends_on: [b]}
        """
    )
    assert found == "plan.yaml:3: tasks[0].depends_on: dependency cycle: a -> c -> b -> a"


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("  - {id: 'bad id', prompt: x}", "plan.yaml:3: tasks[0].id: expected letters, digits"),
        ("  - {id: ..x, prompt: x}", "plan.yaml:3: tasks[0].id: '..x' cannot be a git branch name"),
        (
            "  - {id: a, prompt: x, timeout: soon}",
            "plan.yaml:3: tasks[0].timeout: expected a duration",
        ),
        (
            "  - {id: a, prompt: x, kind: helper}",
            "plan.yaml:3: tasks[0].kind: expected 'code' or 'consult'",
        ),
        (
            "  - {id: a, prompt: x, depnds_on: []}",
            "plan.yaml:3: tasks[0].depnds_on: unknown field (did you mean 'depends_on'?)",
        ),
        (
            "  - {id: a, prompt: x, retries: -1}",
            "plan.yaml:3: tasks[0].retries: Input should be greater than or equal to 0",
        ),
        ("  - {id: a}", "plan.yaml:3: tasks[0].prompt: required: `prompt` or `prompt_file`"),
        (
            "  - {id: a, prompt: x, agent: cladue}",
            "plan.yaml:3: tasks[0].agent: unknown agent 'cladue' (did you mean 'claude'?)",
        ),
        (
            "  - {id: a, agent: shell}",
            "plan.yaml:3: tasks[0]: agent 'shell' runs the task's `command`, and this task has none",
        ),
        (
            "  - {id: a, prompt: x, kind: consult, edits: [src/**]}",
            "plan.yaml:3: tasks[0].edits: a consult task edits nothing",
        ),
        (
            "  - {id: a, prompt: '{{ outputs.b }}'}",
            "plan.yaml:3: tasks[0].prompt: {{ outputs.b }}: 'b' is not a task of 'a'",
        ),
    ],
)
def test_task_errors(snippet: str, expected: str) -> None:
    found = problems("name: p\ntasks:\n" + snippet + "\n")
    assert any(p.startswith(expected) for p in found), found


def test_output_reference_must_be_a_dependency() -> None:
    (found,) = problems(
        """\
        name: p
        tasks:
          - {id: research, prompt: x}
          - {id: build, prompt: "use {{ outputs.research }}"}
        """
    )
    assert (
        found
        == "plan.yaml:4: tasks[1].prompt: {{ outputs.research }}: 'research' is not a dependency of 'build'"
    )


def test_duplicate_ids_and_keys() -> None:
    found = problems(
        """\
        name: p
        name: q
        tasks:
          - {id: a, prompt: x}
          - {id: a, prompt: y}
        """
    )
    assert "plan.yaml:2: name: duplicate key" in found
    assert "plan.yaml:5: tasks[1].id: duplicate task id 'a' (first at tasks[0])" in found


def test_plan_level_errors() -> None:
    assert problems("tasks: []\n") == [
        "plan.yaml:1: name: required field is missing",
        "plan.yaml:1: tasks: a plan needs at least one task",
    ]
    assert problems("name: p\nisolation: docker\ntasks: [{id: a, prompt: x}]\n") == [
        "plan.yaml:2: isolation: expected 'worktree', 'shared' or 'none', got 'docker'"
    ]
    assert problems("- just\n- a list\n") == [
        "plan.yaml:1: a plan is a mapping with `name` and `tasks`"
    ]
    (bad_yaml,) = problems("name: p\ntasks: [\n")
    assert bad_yaml.startswith("plan.yaml:3: invalid YAML")


def test_agent_extends_errors() -> None:
    (found,) = problems(
        """\
        name: p
        agents:
          mine: {extends: nope}
        tasks: [{id: a, prompt: x, agent: mine}]
        """
    )
    assert found == "plan.yaml:3: agents.mine: unknown agent 'nope'"


def test_missing_prompt_file_and_plan_file(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("name: p\ntasks:\n  - id: a\n    prompt_file: nope.md\n")
    with pytest.raises(PlanError) as info:
        load_plan(path)
    assert str(info.value).startswith(f"{path}:4: tasks[0].prompt_file: cannot read")
    with pytest.raises(PlanError, match="no such file"):
        load_plan(tmp_path / "absent.yaml")


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(90, 90.0), ("90s", 90.0), ("20m", 1200.0), ("1h30m", 5400.0), ("2.5m", 150.0)],
)
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


def test_schema_describes_plan_fields() -> None:
    schema = json_schema()
    assert schema["required"] == ["name", "tasks"]
    task = schema["$defs"]["Task"]["properties"]
    assert {"depends_on", "edits", "criteria", "kind", "approve", "resources"} <= set(task)
    assert "source" not in schema["properties"]
    assert "copy" in schema["$defs"]["WorktreeSetup"]["properties"]
    json.dumps(schema)


SAMPLES = Path(__file__).parents[2] / "sample_plans"

#: What each sample plan promises in its header comment, as the batches it runs in when
#: every task succeeds: (tasks started together, {held task: reason}) per batch.
SAMPLE_BATCHES: dict[str, list[tuple[set[str], dict[str, str]]]] = {
    "collision": [({"payments", "shipping"}, {}), ({"release-notes"}, {})],
    "contract-first": [
        ({"contract"}, {}),
        ({"schema"}, {}),
        ({"service", "login-ui", "auth-tests"}, {}),
        ({"endpoints"}, {}),
    ],
    "dashboard": [
        ({"layout"}, {}),
        (
            {"widget-traffic", "widget-errors", "widget-latency"},
            {
                "widget-deploys": "max_parallel (3) reached",
                "widget-costs": "max_parallel (3) reached",
            },
        ),
        ({"widget-deploys", "widget-costs"}, {}),
    ],
    "demo": [
        (
            {"contract", "storage-advice"},
            {"guide": "edits overlap with contract on docs/** / docs/api/**"},
        ),
        ({"pricing", "payments", "shipping"}, {"guide": "max_parallel (3) reached"}),
        ({"service", "guide"}, {}),
        ({"tests"}, {}),
    ],
    "impl-consult": [({"server", "advice"}, {}), ({"apply-advice"}, {})],
    "research-build": [
        ({"research-authn", "research-authz", "research-sessions"}, {}),
        ({"plan"}, {}),
        ({"build-authn", "build-authz", "build-sessions"}, {}),
        ({"integrate"}, {}),
        ({"review"}, {}),
    ],
    "reviews": [
        ({"refunds"}, {}),
        ({"security-review", "backend-review", "finance-review"}, {}),
        ({"sign-off"}, {}),
    ],
    "shared-config": [
        (
            {"charts", "styles"},
            {"date-picker": "shares config file package-lock.json, package.json with charts"},
        ),
        ({"date-picker"}, {}),
    ],
    "three-models": [
        ({"user-model", "order-model", "product-model"}, {}),
        ({"user-tests", "order-tests", "product-tests"}, {}),
    ],
}


def batches_when_all_succeed(path: Path) -> list[tuple[set[str], dict[str, str]]]:
    """Load a plan and run its batcher to the end, every task succeeding at once."""
    from delegate_tui.core import batching
    from delegate_tui.core.state import RunState, TaskState

    plan = load_plan(path)
    state = RunState(plan=plan, isolation=plan.isolation or "worktree")
    state.max_parallel = plan.max_parallel
    state.tasks = {t.id: TaskState(t.id) for t in plan.tasks}
    out = []
    while (proposal := batching.next_batch(plan, state, auto_approve=True)) is not None:
        out.append((set(proposal.tasks), {h.task: h.reason for h in proposal.held}))
        for task_id in proposal.tasks:
            state.tasks[task_id].status = "succeeded"
    assert batching.run_outcome(plan, state) == "succeeded", f"{path.name} left tasks behind"
    return out


def test_every_sample_plan_is_listed_here() -> None:
    assert sorted(p.stem for p in SAMPLES.glob("*.yaml")) == sorted(SAMPLE_BATCHES)


@pytest.mark.parametrize("name", sorted(SAMPLE_BATCHES))
def test_sample_plan_runs_in_the_batches_its_comment_promises(name: str) -> None:
    """A sample that loads but no longer shows its pattern (parallel middle, a shared
    config file serialising two features, a slot limit) teaches the wrong thing."""
    assert batches_when_all_succeed(SAMPLES / f"{name}.yaml") == SAMPLE_BATCHES[name]
