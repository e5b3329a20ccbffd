"""End to end: finished work whose input changed under it is re-checked before it merges
(issue 19). Real git, real processes: the reader's criteria run again on its commit merged
onto the new integration tip; a failure keeps it out, and its retry carries the diff."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from delegate_tui.core.engine import Engine
from delegate_tui.core.events import ConflictDetected, CriteriaChecked, RetryScheduled, TaskMerged
from delegate_tui.core.metrics import stats
from delegate_tui.core.plan import Plan
from delegate_tui.core.replay import ReplaySource
from tests.conftest import Recorder, git, run_engine

pytestmark = pytest.mark.e2e
PlanWriter = Callable[..., Plan]

SCHEMA_CMD = 'sleep {delay}; echo \'FIELDS = (\\"id\\", \\"email\\")\' > src/schema.py'


def stale_plan(repo: Path, *, merge: str, schema_delay: float, client: str, retries: int) -> str:
    tasks = f"""\
    - id: schema
      agent: shell
      edits: [src/schema.py]
      command: "{SCHEMA_CMD.format(delay=schema_delay)}"
    - id: client
      agent: shell
      edits: [src/client.py]
      reads: [src/schema.py]
      reads_stale_ok: true
      retries: {retries}
      command: "{client}"
      criteria:
        - text: the client follows the schema
          run: cmp src/client.py src/schema.py
    """
    return f"name: recheck\nrepo: {repo}\nmerge: {merge}\nmax_parallel: 2\ntasks:\n" + (
        textwrap.indent(textwrap.dedent(tasks), "  ")
    )


@pytest.fixture
def schema_repo(repo: Path) -> Path:
    (repo / "src" / "schema.py").write_text('FIELDS = ("id",)\n')
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "schema")
    return repo


def checks(recorder: Recorder, task: str) -> list[tuple[int, bool]]:
    return [
        (e.attempt, e.passed)
        for e in recorder.events
        if isinstance(e, CriteriaChecked) and e.task == task
    ]


def test_a_stale_reader_fails_its_recheck_and_its_retry_merges_on_the_new_tip(
    schema_repo: Path, write_plan: PlanWriter
) -> None:
    repo = schema_repo
    client = (
        "cp src/schema.py src/client.py; "
        "if ! printf '%s' \\\"$DELEGATE_PROMPT\\\" | grep -q 'merged a change'; then sleep 2.5; fi"
    )
    plan = write_plan(stale_plan(repo, merge="auto", schema_delay=0.3, client=client, retries=1))
    state, recorder, engine = run_engine(plan)
    assert state.status == "succeeded", state.summary
    first, second = state.tasks["client"].attempts
    # Its criteria passed in its own worktree, then failed on the rebased result.
    assert checks(recorder, "client") == [(1, True), (1, False), (2, True)]
    assert first.status == "failed" and first.reason == (
        "criteria failed on the new integration tip (schema merged a change to "
        "src/schema.py): cmp src/client.py src/schema.py"
    )
    assert not first.merged_commit and second.merged_commit
    (retry,) = [e for e in recorder.events if isinstance(e, RetryScheduled)]
    assert '+FIELDS = ("id", "email")' in retry.prompt  # the merged diff in its prompt
    shown = git(repo, "show", f"{state.integration_branch}:src/client.py")
    assert shown == 'FIELDS = ("id", "email")\n'
    # The scratch worktree and branch of the re-check are gone.
    assert "-recheck" not in git(repo, "worktree", "list")
    assert "-recheck" not in git(repo, "branch", "--list", "delegate/*")
    # Replay shows the finding at the moment it was found: not before schema merged, and
    # from the finding on; "next conflict" jumps to it.
    source = ReplaySource.from_log(engine.log_path)
    kinds = [(i, e) for i, e in enumerate(source.events)]
    merged = next(i for i, e in kinds if isinstance(e, TaskMerged) and e.task == "schema")
    found = next(i for i, e in kinds if isinstance(e, ConflictDetected) and e.kind == "stale-input")
    assert merged < found
    source.seek(merged + 1)
    assert not [f for f in source.state.findings.values() if f.kind == "stale-input"]
    source.seek(found + 1)
    (finding,) = [f for f in source.state.findings.values() if f.kind == "stale-input"]
    assert (finding.tasks, finding.paths) == (("client", "schema"), ("src/schema.py",))
    assert source.state.tasks["client"].status == "running", "found while it ran"
    source.seek(0)
    assert source.jump("conflict", 1) and source.index == found + 1


def test_finished_unmerged_work_is_rechecked_when_the_operator_merges_it(
    schema_repo: Path, write_plan: PlanWriter
) -> None:
    repo = schema_repo
    plan = write_plan(
        stale_plan(
            repo,
            merge="manual",
            schema_delay=0.8,
            client="cp src/schema.py src/client.py",
            retries=0,
        )
    )

    async def operator(engine: Engine, recorder: Recorder) -> None:
        async def until(task: str, status: str) -> None:
            while (t := engine.state.tasks.get(task)) is None or t.status != status:
                await asyncio.sleep(0.05)

        await until("client", "awaiting-merge")
        await until("schema", "awaiting-merge")
        assert engine.merge("schema") == ""
        await until("schema", "succeeded")
        assert engine.merge("client") == ""

    state, recorder, _ = run_engine(plan, during=operator)
    task = state.tasks["client"]
    assert task.status == "failed"
    assert task.attempts[-1].reason.startswith("criteria failed on the new integration tip")
    assert checks(recorder, "client") == [(1, True), (1, False)]
    assert stats(state)["tasks"]["client"]["ending_text"] == (  # type: ignore[index]
        "criteria failed on the new integration tip: cmp src/client.py src/schema.py (exit 1)"
    )
    assert "src/client.py" not in git(
        repo, "ls-tree", "-r", "--name-only", state.integration_branch
    )


def test_a_reader_whose_input_did_not_change_merges_without_a_recheck(
    schema_repo: Path, write_plan: PlanWriter
) -> None:
    repo = schema_repo
    plan_text = (
        stale_plan(
            repo,
            merge="auto",
            schema_delay=0.3,
            client="cp src/schema.py src/client.py; sleep 1.5",
            retries=0,
        )
        .replace("edits: [src/schema.py]\n", "edits: [src/schema.py, notes.txt]\n")
        .replace("> src/schema.py", "> notes.txt")
    )
    state, recorder, _ = run_engine(write_plan(plan_text))
    assert state.status == "succeeded", state.summary
    assert checks(recorder, "client") == [(1, True)]
