"""The demo agent as a planner: a deterministic plan for a goal, and fixes read from feedback.

Owns what the ``demo`` agent answers to a drafting prompt (one that starts with
``core/drafting.DRAFT_HEADER``), so ``delegate-tui draft "GOAL" --agent demo``
goes from goal to draft to review to run with no AI account. The plan follows
the delegation rules: a contract first; the module, its tests and (when the
repository has a ``package.json``) a UI task in parallel, the UI being the one
writer of ``package.json``; then the wiring into the app; then a read-only
review. Paths come from the repository the agent runs in.

``$DELEGATE_DEMO_DRAFT`` makes it draft badly on purpose, as the tests and a
curious operator need: ``flawed`` answers first with a dependency cycle and a
second writer of ``package.json`` running beside the first, then fixes what the
problems section of the next prompt names (it reads them: a cycle loses the
edge that points forward in the file, "add depends_on: [x]" is done);
``stubborn`` answers the flawed plan every time.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import yaml

#: The first line of a drafting prompt (``core/drafting.DRAFT_HEADER``; a test keeps them equal).
DRAFT_HEADER = "# delegate-tui: draft a plan"
_PROBLEMS_HEADER = "--- Problems with your previous draft (fix every one) ---"
_STOP = {
    "a", "an", "the", "to", "for", "of", "and", "with", "in", "on", "add", "implement",
    "support", "make", "new", "some", "into", "our", "my", "please",
}  # fmt: skip
_CYCLE_RE = re.compile(r"dependency cycle: (.+)$")
_ADD_DEP_RE = re.compile(r"'([A-Za-z0-9._-]+)' .*add depends_on: \[([A-Za-z0-9._-]+)\]")


def is_draft_request(prompt: str) -> bool:
    """True when ``prompt`` asks for a plan."""
    return prompt.startswith(DRAFT_HEADER)


def goal_of(prompt: str) -> str:
    """The goal line(s) of a drafting prompt."""
    lines = prompt.splitlines()
    try:
        start = lines.index("Goal:") + 1
    except ValueError:
        return "the change"
    goal: list[str] = []
    for line in lines[start:]:
        if not line.strip():
            break
        goal.append(line.strip())
    return " ".join(goal) or "the change"


def slug(goal: str) -> str:
    """``"Add rate limiting to the API"`` -> ``"rate_limiting_api"``."""
    words = [w for w in re.findall(r"[a-z0-9]+", goal.lower()) if w not in _STOP]
    return "_".join(words[:3]) or "feature"


def _package(root: Path) -> str:
    """Where the code lives: the first Python package under src/, else src."""
    src = root / "src"
    if src.is_dir():
        for child in sorted(src.iterdir()):
            if (child / "__init__.py").is_file():
                return f"src/{child.name}"
    return "src"


def good_plan(goal: str, root: Path) -> dict[str, Any]:
    """The plan the demo drafts for ``goal`` in the repository at ``root``."""
    name, package = slug(goal), _package(root)
    kebab = name.replace("_", "-")
    app = f"{package}/app.py" if (root / package / "app.py").is_file() else f"{package}/main.py"
    contract = f"docs/api/{kebab}.md"
    module = f"{package}/{name}.py"
    tests = f"tests/test_{name}.py"
    tasks: list[dict[str, Any]] = [
        {
            "id": "contract",
            "title": f"Contract: {goal}",
            "why": "The module, its tests and the UI all build on one contract, so it comes first.",
            "prompt": f"Write the contract for this change to {contract}: {goal}.\n"
            "Name every function, its inputs, its outputs and its errors.",
            "edits": [contract],
            "criteria": [
                "The contract names every input and error",
                {"run": f"test -s {contract}"},
            ],
            "estimate": "6s",
        },
        {
            "id": "module",
            "title": f"Implement {kebab}",
            "why": "The core of the change owns one new file and needs only the contract, "
            "so it runs beside the tests.",
            "depends_on": ["contract"],
            "prompt": f"Goal: {goal}. Implement it in {module}, as the contract says:\n"
            "{{ outputs.contract }}",
            "edits": [module],
            "reads": [contract],
            "criteria": [{"run": f"python3 -m py_compile {module}"}],
            "estimate": "10s",
        },
        {
            "id": "tests",
            "title": f"Tests for {kebab}",
            "why": "Tests are written against the contract, not the code, so they run in "
            "parallel with the module.",
            "depends_on": ["contract"],
            "prompt": f"Goal: {goal}. Write its tests in {tests}, from the contract in {contract}.",
            "edits": [tests],
            "reads": [contract],
            "criteria": [{"run": f"python3 -m py_compile {tests}"}],
            "estimate": "8s",
        },
    ]
    if (root / "package.json").is_file():
        tasks.append(
            {
                "id": "ui",
                "title": f"UI for {kebab}",
                "why": "The only task that writes package.json (shared configuration), "
                "so nothing else may write it at once.",
                "depends_on": ["contract"],
                "prompt": f"Goal: {goal}. Show it in the UI (ui/{kebab}.js) and add what it "
                "needs to package.json.",
                "edits": [f"ui/{kebab}.js", "package.json"],
                "reads": [contract],
                "criteria": [
                    {"run": f"test -s ui/{kebab}.js"},
                    {"run": "python3 -m json.tool package.json"},
                ],
                "estimate": "8s",
            }
        )
    tasks += [
        {
            "id": "wire",
            "title": f"Wire {kebab} into the app",
            "why": "Connecting the module needs the module itself: the sequential tail.",
            "depends_on": ["module"],
            "prompt": f"Use {module} from {app}.",
            "edits": [app],
            "reads": [module],
            "criteria": [{"run": f"python3 -m py_compile {app}"}],
            "estimate": "6s",
        },
        {
            "id": "review",
            "title": "Review the change",
            "why": "A read-only check of the finished work; it edits nothing, so it is a "
            "consult task at the end.",
            "kind": "consult",
            "persona": "Reviewer",
            "depends_on": ["wire", "tests"]
            + (["ui"] if any(t["id"] == "ui" for t in tasks) else []),
            "prompt": f"Review the change for: {goal}. Say what is missing, if anything.",
            "estimate": "6s",
        },
    ]
    return {
        "name": goal[:1].upper() + goal[1:],
        "description": "Contract first; module, tests and UI in parallel; then wiring and review",
        "agent": "demo",
        "max_parallel": 3,
        "tasks": tasks,
    }


def flawed_plan(goal: str, root: Path) -> dict[str, Any]:
    """The good plan with a dependency cycle and a second parallel writer of package.json."""
    plan = good_plan(goal, root)
    tasks = plan["tasks"]
    by_id = {t["id"]: t for t in tasks}
    by_id["tests"]["depends_on"] = ["contract", "wire"]  # and wire needs tests: a cycle
    by_id["wire"]["depends_on"] = ["module", "tests"]
    if "ui" in by_id:
        kebab = slug(goal).replace("_", "-")
        tasks.insert(
            tasks.index(by_id["ui"]) + 1,
            {
                "id": "ui-client",
                "title": f"UI client for {kebab}",
                "why": "The API client is separate from the widget.",
                "depends_on": ["contract"],
                "prompt": f"Goal: {goal}. Add an API client for it (ui/{kebab}-client.js) "
                "and its dependency to package.json.",
                "edits": [f"ui/{kebab}-client.js", "package.json"],
                "criteria": [{"run": f"test -s ui/{kebab}-client.js"}],
                "estimate": "6s",
            },
        )
        by_id["review"]["depends_on"].append("ui-client")
    return plan


def problems_of(prompt: str) -> list[str]:
    """The problem lines of a drafting prompt's feedback section."""
    lines = prompt.splitlines()
    if _PROBLEMS_HEADER not in lines:
        return []
    out = []
    for line in lines[lines.index(_PROBLEMS_HEADER) + 1 :]:
        if not line.startswith("- "):
            break
        out.append(line[2:])
    return out


def fix(plan: dict[str, Any], problems: list[str]) -> list[str]:
    """Change ``plan`` as each problem asks; return what was done, one line each."""
    tasks = plan["tasks"]
    order = [t["id"] for t in tasks]
    by_id = {t["id"]: t for t in tasks}
    done: list[str] = []
    for problem in problems:
        cycle = _CYCLE_RE.search(problem)
        if cycle:
            path = [p.strip() for p in cycle.group(1).split("->")]
            for task_id, dep in itertools.pairwise(path):
                if task_id in by_id and dep in order and order.index(dep) > order.index(task_id):
                    by_id[task_id]["depends_on"].remove(dep)
                    done.append(f"{task_id} no longer waits for {dep} (it broke the cycle)")
                    break
            continue
        add = _ADD_DEP_RE.search(problem)
        if add and add.group(1) in by_id:
            deps = by_id[add.group(1)].setdefault("depends_on", [])
            if add.group(2) not in deps:
                deps.append(add.group(2))
                done.append(f"{add.group(1)} now runs after {add.group(2)}")
    return done


def answer(prompt: str, root: Path, say: Any) -> str:
    """The demo's answer to a drafting prompt (printed by ``say``); returns the answer."""
    goal = goal_of(prompt)
    mode = os.environ.get("DELEGATE_DEMO_DRAFT", "")
    problems = problems_of(prompt)
    if mode == "stubborn" or (mode == "flawed" and not problems):
        plan = flawed_plan(goal, root)
    elif mode == "flawed":
        plan = flawed_plan(goal, root)
        for line in fix(plan, problems):
            say(f"  fixed: {line}")
    else:
        plan = good_plan(goal, root)
    if problems and mode == "stubborn":
        say(f"  ({len(problems)} problem(s) reported; keeping the plan as it is)")
    body = yaml.safe_dump(plan, sort_keys=False, allow_unicode=True, width=100)
    text = f"Here is the plan for: {goal}\n\n```yaml\n{body}```\n"
    for line in text.splitlines():
        say(line)
    return text


def json_key(path: Path, key: str) -> None:
    """Add ``"key": true`` to a JSON object file (how the demo edits package.json)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    data[key] = True
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":  # pragma: no cover - a manual look at the plan
    sys.stdout.write(
        yaml.safe_dump(
            good_plan(" ".join(sys.argv[1:]) or "add rate limiting", Path.cwd()), sort_keys=False
        )
    )
