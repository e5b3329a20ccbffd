"""merge_into's three cases, on a real repository: already merged, fast-forward, a real merge.

One ``git merge-base`` decides the first two (issue 15: it was two
``merge-base --is-ancestor`` calls on every merge).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from delegate_tui.core import workspace
from tests.conftest import git

pytestmark = pytest.mark.e2e


def _commit(repo: Path, name: str, text: str) -> str:
    (repo / name).write_text(text)
    git(repo, "add", name)
    git(repo, "commit", "-qm", name)
    return git(repo, "rev-parse", "HEAD").strip()


def test_merge_into_tells_already_merged_fast_forward_and_a_real_merge(repo: Path) -> None:
    base = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "branch", "integration", base)
    first = _commit(repo, "a.txt", "a\n")

    forward = workspace.merge_into(repo, "integration", first, "merge a")
    assert (forward.ok, forward.fast_forward, forward.commit) == (True, True, first)
    assert git(repo, "rev-parse", "integration").strip() == first

    again = workspace.merge_into(repo, "integration", base, "merge base")
    assert (again.ok, again.detail, again.commit) == (True, "already merged", first)
    assert git(repo, "rev-parse", "integration").strip() == first

    git(repo, "checkout", "-q", "-b", "side", base)
    side = _commit(repo, "b.txt", "b\n")
    merged = workspace.merge_into(repo, "integration", side, "merge b")
    assert merged.ok and not merged.fast_forward
    parents = git(repo, "rev-list", "--parents", "-n1", "integration").split()[1:]
    assert parents == [first, side]

    git(repo, "checkout", "-q", "-b", "clash", base)
    clash = _commit(repo, "a.txt", "other\n")
    refused = workspace.merge_into(repo, "integration", clash, "merge clash")
    assert not refused.ok and refused.conflicts == ("a.txt",)
    assert git(repo, "rev-parse", "integration").strip() == merged.commit
