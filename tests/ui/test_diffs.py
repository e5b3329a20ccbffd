"""Pilot tests: ``d`` on a collision shows both of its sides (issue 12, item 17).

A predicted conflict between two tasks shows each task's diff; one with the
integration branch shows the task's diff and what was merged there since the
task started (the finding names one task, but a conflict has two sides).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from delegate_tui.core.events import ChangedFile, ConflictDetected, FilesChanged, TaskMerged
from tests.conftest import git
from tests.ui.conftest import StartApp
from tests.ui.fake_source import FakeSource
from tests.ui.test_screens import dialog, plain


def commit_on(repo: Path, base: str, branch: str, first_line: str) -> str:
    """A commit on a new branch from ``base`` that rewrites src/shared.py's first line."""
    git(repo, "checkout", "-q", "-b", branch, base)
    (repo / "src" / "shared.py").write_text(f"{first_line}\nA = 1\nB = 2\n")
    git(repo, "commit", "-qam", branch)
    tip = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "checkout", "-q", "main")
    return tip


@pytest.mark.asyncio
async def test_d_on_a_conflict_with_the_integration_branch_shows_both_sides(
    start_app: StartApp, repo: Path
) -> None:
    base = git(repo, "rev-parse", "HEAD").strip()
    payments = commit_on(repo, base, "payments", "OWNER = 'payments'")
    shipping = commit_on(repo, base, "shipping", "OWNER = 'shipping'")
    source = FakeSource()
    source.start_run(repo=str(repo), base_commit=base)
    source.start_task("service", at=1.0, base_commit=base)  # plays "payments"
    source.start_task("hotfix", at=1.0, base_commit=base)  # plays "shipping"
    source.commit_task("service", payments, at=2.0)
    source.emit(TaskMerged(task="service", attempt=1, commit=payments), 2.5)
    source.emit(
        FilesChanged(
            task="hotfix",
            attempt=1,
            files=(ChangedFile("src/shared.py", "M", 1, 1),),
            snapshot=shipping,
        ),
        3.0,
    )
    source.emit(
        ConflictDetected(
            key="predicted-conflict:hotfix:src/shared.py",
            kind="predicted-conflict",
            severity="error",
            tasks=("hotfix",),
            paths=("src/shared.py",),
            detail="would not merge cleanly with the integration branch",
        ),
        3.1,
    )
    async with start_app(source, size=(160, 40)) as ui:
        await ui.press("right_square_bracket")  # step to the collision
        assert ui.screen.selected == "hotfix"
        await ui.press("d")
        shown = await dialog(ui)
        assert shown is not None
        assert (
            shown.title_text
            == "Diff: hotfix ✕ integration branch (service merged since hotfix started)"
        )
        body = plain(shown.body)
        assert "+OWNER = 'shipping'" in body, "the task's side"
        assert "+OWNER = 'payments'" in body, "the integration branch's side"
        assert body.index("hotfix: src/shared.py") < body.index("integration branch")
        await ui.press("escape")
        await ui.select("contract")
        await ui.select("hotfix")
        await ui.press("d")  # again, after moving away and back: the same two sides
        shown = await dialog(ui)
        assert shown is not None and "+OWNER = 'payments'" in plain(shown.body)
