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


def wait_file(path: Path) -> str:
    """Shell that waits for ``path`` to exist (30 s at most)."""
    return f"for i in $(seq 600); do [ -e {path} ] && break; sleep 0.05; done"


def test_a_merge_that_lands_while_a_reader_is_rechecked_is_checked_too(
    schema_repo: Path, write_plan: PlanWriter, tmp_path: Path
) -> None:
    """The re-check runs outside the merge lock: a merge that lands during it is checked
    again before the reader merges (not let through on the tip the re-check saw).

    The interleaving is driven by the tasks themselves: v2 starts only once the client's
    re-check (on the tip with v1) is under way, and that re-check ends only once v2 is
    merged. The client's criterion accepts any schema but v2.
    """
    repo = schema_repo
    started, rechecking = tmp_path / "client-started", tmp_path / "rechecking"
    integration = "delegate/$DELEGATE_RUN_ID/integration"
    v2_merged = f"git show {integration}:src/schema.py | grep -q v2"
    criterion = (
        f"case $PWD in *-recheck) touch {rechecking}; "
        f"for i in $(seq 600); do {v2_merged} && break; sleep 0.05; done;; esac; "
        "! grep -q v2 src/schema.py"
    )
    plan_text = f"""\
    name: recheck race
    repo: {repo}
    max_parallel: 3
    tasks:
      - id: v1
        agent: shell
        edits: [src/schema.py]
        command: "{wait_file(started)}; echo v1 > src/schema.py"
      - id: v2
        agent: shell
        edits: [src/schema.py]
        command: "{wait_file(rechecking)}; echo v2 > src/schema.py"
      - id: client
        agent: shell
        edits: [src/client.py]
        reads: [src/schema.py]
        reads_stale_ok: true
        command: "touch {started}; for i in $(seq 600); do git show {integration}:src/schema.py | grep -q v1 && break; sleep 0.05; done; echo c > src/client.py"
        criteria:
          - text: the client works with the schema
            run: "{criterion}"
    """
    state, recorder, _ = run_engine(write_plan(textwrap.dedent(plan_text)))
    assert state.tasks["v1"].status == state.tasks["v2"].status == "succeeded"
    # Its own check, the re-check on v1's tip, and one more once v2 landed under it.
    assert checks(recorder, "client") == [(1, True), (1, True), (1, False)]
    task = state.tasks["client"]
    assert task.status == "failed", "not merged on a re-check that v2 overtook"
    assert task.attempts[-1].reason.startswith(
        "criteria failed on the new integration tip (v1 merged a change to src/schema.py; "
        "v2 merged a change to src/schema.py)"
    )
    assert "src/client.py" not in git(
        repo, "ls-tree", "-r", "--name-only", state.integration_branch
    )


def test_a_retry_that_keeps_old_work_is_stale_by_ancestry_and_rechecked(
    schema_repo: Path, write_plan: PlanWriter, tmp_path: Path
) -> None:
    """A retry that keeps its worktree starts from the old tip, however late it is
    prepared: a merge since that tip is a stale input of the new attempt too, and the
    attempt is re-checked before it merges."""
    repo = schema_repo
    go = tmp_path / "schema-go"
    # The first attempt copies the schema as it was and fails; the kept retry adds nothing.
    client = "if [ $DELEGATE_ATTEMPT = 1 ]; then cp src/schema.py src/client.py; exit 1; fi"
    plan_text = (
        stale_plan(repo, merge="auto", schema_delay=0, client=client, retries=0)
        .replace("sleep 0;", f"{wait_file(go)};")
        .replace("reads_stale_ok: true\n", "reads_stale_ok: true\n    on_stale_input: restart\n")
    )

    async def operator(engine: Engine, recorder: Recorder) -> None:
        async def until(task: str, status: str) -> None:
            while (t := engine.state.tasks.get(task)) is None or t.status != status:
                await asyncio.sleep(0.05)

        await until("client", "failed")
        go.touch()  # the schema merges after the client's first attempt ended
        await until("schema", "succeeded")
        assert engine.retry("client", "finish it", keep_worktree=True) == ""
        while len(engine.state.tasks["client"].attempts) < 2:
            await asyncio.sleep(0.05)
        await until("client", "failed")
        assert engine.end() == ""

    state, recorder, _ = run_engine(write_plan(plan_text), during=operator, hold_at_end=True)
    assert state.tasks["schema"].status == "succeeded"
    first, second = state.tasks["client"].attempts
    assert (
        first.status == "failed"
        and second.base_commit != state.tasks["schema"].attempts[0].merged_commit
    )
    stale = [
        e for e in recorder.events if isinstance(e, ConflictDetected) and e.kind == "stale-input"
    ]
    assert [e.tasks for e in stale] == [("client", "schema")], "the kept work's input is stale"
    assert second.status == "failed", "its kept work, an old copy of the schema, did not merge"
    assert second.reason.startswith("criteria failed on the new integration tip (schema merged")
    # It passed in its own (old) worktree, then failed on the new tip.
    assert checks(recorder, "client") == [(2, True), (2, False)]
    # on_stale_input: restart did not end it: it started from that old work knowing
    # (its prompt says what merged since), and the merge re-checked it.
    assert not second.kill_requested and "schema merged a change" in second.prompt
