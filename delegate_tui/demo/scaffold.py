"""The demo repository: a small, real git project for the demo agents to work on.

Owns ``delegate-tui demo``'s scratch space: a temporary folder with a tiny
Python shop service committed on ``main``, and the demo plan copied beside it;
and how the demo runs with nobody at the keyboard (:func:`unattended`).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from delegate_tui.resources import data_dir

if TYPE_CHECKING:
    from delegate_tui.core.plan import Plan

FILES = {
    ".gitignore": "__pycache__/\n*.pyc\n.venv/\nnode_modules/\n",
    "README.md": "# shop\n\nA tiny shop service, used by the delegate-tui demo.\n",
    "src/shop/__init__.py": '"""The shop service."""\n',
    "src/shop/app.py": (
        '"""HTTP entry points."""\n\n\n'
        "def routes() -> dict:\n"
        '    return {"/health": lambda: "ok"}\n'
    ),
    "src/shop/models/__init__.py": '"""Domain models."""\n',
    "src/shop/config.py": 'OWNER = "nobody"\nDEBUG = False\nCURRENCY = "EUR"\n',
    "tests/test_app.py": (
        "from shop.app import routes\n\n\n"
        "def test_health() -> None:\n"
        '    assert routes()["/health"]() == "ok"\n'
    ),
    "docs/README.md": "# Docs\n",
    "package.json": '{\n  "name": "shop-ui",\n  "version": "0.1.0",\n  "dependencies": {}\n}\n',
}


def _git(args: list[str], cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def make_demo_repo(root: Path, plan_name: str = "demo.yaml") -> Path:
    """Create the demo repository under ``root``; return the plan's path inside it."""
    repo = root / "shop"
    repo.mkdir(parents=True)
    for rel, text in FILES.items():
        path = repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    _git(["init", "--quiet", "--initial-branch=main"], repo)
    _git(["config", "user.name", "Demo Operator"], repo)
    _git(["config", "user.email", "demo@example.invalid"], repo)
    _git(["add", "-A"], repo)
    _git(["commit", "--quiet", "-m", "Initial shop service"], repo)
    plans = repo / ".plans"
    plans.mkdir()
    shutil.copy2(data_dir("sample_plans") / plan_name, plans / plan_name)
    (repo / ".git" / "info" / "exclude").open("a").write("/.plans/\n")
    return plans / plan_name


def unattended(plan: Plan) -> Plan:
    """The demo plan for a run nobody watches (``--headless``, or no terminal): each task
    gets one automatic retry if it has none, since nobody is there to press ``r``.

    The collision the demo stages then ends as it does for an operator: ``shipping``'s
    merge conflict is retried with the conflict named in its prompt, its agent leaves
    the file alone, and the run succeeds, fully automatic.
    """
    tasks = tuple(t.model_copy(update={"retries": max(t.retries, 1)}) for t in plan.tasks)
    return plan.model_copy(update={"tasks": tasks})
