"""Live conflict detection: real agents editing real worktrees, found before any merge."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from delegate_tui.core.engine import Engine
from delegate_tui.core.events import (
    ConflictDetected,
    ConflictResolved,
    FilesChanged,
    TaskFinished,
    TaskMerged,
)
from delegate_tui.core.plan import Plan
from tests.conftest import Recorder, git, run_engine

pytestmark = pytest.mark.e2e
PlanWriter = Callable[..., Plan]


def plan_text(repo: Path, tasks: str) -> str:
    return f"name: live\nrepo: {repo}\nmax_parallel: 4\ntasks:\n" + textwrap.indent(
        textwrap.dedent(tasks), "  "
    )


def detected(recorder: Recorder) -> list[ConflictDetected]:
    return [e for e in recorder.events if isinstance(e, ConflictDetected)]


def first_merge_seq(recorder: Recorder) -> int:
    merged = [e.seq for e in recorder.events if isinstance(e, TaskMerged)]
    return min(merged) if merged else 10**9


def hold(flag: Path) -> str:
    """Shell that waits for ``flag`` (30 s at most): the agent runs on until the test lets it go."""
    return f"for i in $(seq 600); do if [ -e {flag} ]; then break; fi; sleep 0.05; done"


def release_when(
    ready: Callable[[Recorder], bool], *flags: Path
) -> Callable[[Engine, Recorder], Coroutine[object, object, None]]:
    """A ``during`` driver: create each flag in turn once ``ready`` holds (30 s at most).

    The agents hold until then, so what the test looks for is found while they
    run (live), however slow the machine, without a fixed sleep.
    """

    async def drive(engine: Engine, recorder: Recorder) -> None:
        loop = asyncio.get_running_loop()
        for flag in flags:
            deadline = loop.time() + 30
            while not ready(recorder) and loop.time() < deadline:
                await asyncio.sleep(0.02)
            flag.touch()

    return drive


def found_all(*wanted: tuple[str, tuple[str, ...], tuple[str, ...]]) -> Callable[[Recorder], bool]:
    """``ready`` for `release_when`: every (kind, tasks, paths) has been detected."""

    def ready(recorder: Recorder) -> bool:
        found = {(e.kind, e.tasks, e.paths) for e in detected(recorder)}
        return all(w in found for w in wanted)

    return ready


def last_files(recorder: Recorder, task: str) -> FilesChanged:
    changes = [
        e for e in recorder.events if isinstance(e, FilesChanged) and e.task == task and e.files
    ]
    assert changes, f"no FilesChanged for {task}"
    return changes[-1]


def test_same_lines_predicted_conflict_before_any_merge(
    repo: Path, write_plan: PlanWriter, tmp_path: Path
) -> None:
    go_first, go_second = tmp_path / "first", tmp_path / "second"
    plan = write_plan(
        plan_text(
            repo,
            f"""\
            - {{id: first, agent: shell, edits: [src/a.py], command: "sed -i 's/nobody/first/' src/shared.py; echo a > src/a.py; {hold(go_first)}"}}
            - {{id: second, agent: shell, edits: [src/b.py], command: "sed -i 's/nobody/second/' src/shared.py; echo b > src/b.py; {hold(go_second)}"}}
            """,
        )
    )
    seen = found_all(
        ("predicted-conflict", ("first", "second"), ("src/shared.py",)),
        ("out-of-scope", ("first",), ("src/shared.py",)),
    )

    def ready(recorder: Recorder) -> bool:
        """Both found live; then first ends, and second only after first merged."""
        if not go_first.exists():
            return seen(recorder)
        return any(isinstance(e, TaskMerged) and e.task == "first" for e in recorder.events)

    state, recorder, _ = run_engine(plan, during=release_when(ready, go_first, go_second))
    found = {(e.kind, e.tasks, e.paths) for e in detected(recorder)}
    assert ("predicted-conflict", ("first", "second"), ("src/shared.py",)) in found
    predicted = next(e for e in detected(recorder) if e.kind == "predicted-conflict")
    assert predicted.seq < first_merge_seq(recorder), "caught live, before anything merged"
    assert ("out-of-scope", ("first",), ("src/shared.py",)) in found
    # After the first merges, the loser's conflict is against the integration branch.
    assert ("predicted-conflict", ("second",), ("src/shared.py",)) in found
    assert state.tasks["second"].status == "merge-conflict"


def test_same_file_different_places_is_an_overlap_not_a_conflict(
    repo: Path, write_plan: PlanWriter, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    plan = write_plan(
        plan_text(
            repo,
            f"""\
            - {{id: top, agent: shell, edits: [src/shared.py], command: "sed -i '1i # top' src/shared.py; {hold(go)}"}}
            - {{id: bottom, agent: shell, edits: [src/shared.py], command: "echo '# bottom' >> src/shared.py; {hold(go)}"}}
            """,
        ).replace("max_parallel: 4", "max_parallel: 4\nshared_files: []")
    )
    # Both declare the file, so the batcher would serialise them: force them together.
    plan = plan.model_copy(
        update={"tasks": tuple(t.model_copy(update={"edits": ()}) for t in plan.tasks)}
    )
    seen = found_all(("overlap", ("bottom", "top"), ("src/shared.py",)))
    state, recorder, _ = run_engine(plan, during=release_when(seen, go))
    found = {(e.kind, e.tasks, e.paths) for e in detected(recorder)}
    assert ("overlap", ("bottom", "top"), ("src/shared.py",)) in found
    assert not [e for e in detected(recorder) if e.kind == "predicted-conflict"]
    assert state.status == "succeeded"
    assert git(repo, "show", f"{state.integration_branch}:src/shared.py").splitlines()[0] == "# top"


def test_consult_task_that_writes_and_a_revert_that_resolves(
    repo: Path, write_plan: PlanWriter, tmp_path: Path
) -> None:
    found, reverted = tmp_path / "found", tmp_path / "reverted"
    plan = write_plan(
        plan_text(
            repo,
            f"""\
            - {{id: advice, agent: shell, kind: consult, command: "echo notes > NOTES.md; {hold(found)}; rm NOTES.md; {hold(reverted)}"}}
            """,
        )
    )

    def ready(recorder: Recorder) -> bool:
        kinds = [e.kind for e in detected(recorder)]
        if not found.exists():
            return "out-of-scope" in kinds
        return any(isinstance(e, ConflictResolved) for e in recorder.events)

    state, recorder, _ = run_engine(plan, during=release_when(ready, found, reverted))
    (finding,) = [e for e in detected(recorder) if e.kind == "out-of-scope"]
    assert finding.severity == "error" and finding.paths == ("NOTES.md",)
    resolved = [
        e for e in recorder.events if isinstance(e, ConflictResolved) and e.key == finding.key
    ]
    assert resolved and resolved[0].seq > finding.seq, "reverting the edit resolved the finding"
    assert state.findings == {}


def test_change_sets_cover_renames_deletions_commits_binary_and_odd_names(
    repo: Path, write_plan: PlanWriter
) -> None:
    (repo / "src" / "old.py").write_text("x = 1\n" * 20)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "add old.py")
    script = (
        "git mv src/old.py src/new.py && git rm -q README.md && "
        "printf 'committed\\n' > committed.txt && git add committed.txt && "
        "git -c user.name=a -c user.email=a@b commit -q -m 'agent commit' && "
        "printf '\\000\\001\\002binary' > blob.bin && printf 'hi\\n' > 'my file é.txt' && sleep 2.5"
    )
    plan = write_plan(plan_text(repo, f"- {{id: mover, agent: shell, command: {script!r}}}\n"))
    state, recorder, _ = run_engine(plan)
    assert state.status == "succeeded"
    files = {f.path: f for f in last_files(recorder, "mover").files}
    assert files["src/new.py"].status == "R" and files["src/new.py"].old_path == "src/old.py"
    assert files["README.md"].status == "D"
    assert files["committed.txt"].status == "A", "work the agent committed itself is seen"
    assert files["blob.bin"].binary
    assert files["my file é.txt"].added == 1
    # The watcher never touched the worktree's real index.
    assert (repo / "README.md").exists(), "the operator's tree is untouched"


def test_all_events_reach_the_log_in_order(repo: Path, write_plan: PlanWriter) -> None:
    plan = write_plan(
        plan_text(
            repo, "- {id: w, agent: shell, edits: [w.txt], command: 'echo w > w.txt; sleep 1.5'}\n"
        )
    )
    _, recorder, engine = run_engine(plan)
    from delegate_tui.core.runlog import read_events

    logged: list[FilesChanged] = [
        e for e in read_events(engine.log_path) if isinstance(e, FilesChanged)
    ]
    live = [e for e in recorder.events if isinstance(e, FilesChanged)]
    assert logged == live and any(e.files for e in logged)


def test_shared_tree_changes_are_attributed_by_scope(repo: Path, write_plan: PlanWriter) -> None:
    (repo / "wip.txt").write_text("the operator's own uncommitted work\n")
    plan = write_plan(
        plan_text(
            repo,
            """\
            - {id: a, agent: shell, edits: ["a/**"], command: "mkdir -p a && echo 1 > a/x.txt && echo ? > stray.txt; sleep 2.5"}
            - {id: b, agent: shell, edits: ["b/**"], command: "mkdir -p b && echo 2 > b/y.txt; sleep 2.5"}
            """,
        ).replace("max_parallel: 4", "max_parallel: 4\nisolation: shared")
    )
    state, recorder, _ = run_engine(plan)
    assert state.status == "succeeded"
    assert [f.path for f in last_files(recorder, "a").files] == ["a/x.txt"]
    assert [f.path for f in last_files(recorder, "b").files] == ["b/y.txt"]
    unattributed = [e for e in detected(recorder) if e.kind == "unattributed"]
    assert unattributed and unattributed[0].paths == ("stray.txt",) and unattributed[0].tasks == ()
    seen = {f.path for e in recorder.events if isinstance(e, FilesChanged) for f in e.files}
    assert "wip.txt" not in seen, "the operator's own work is not blamed on an agent"
    assert (repo / "wip.txt").read_text().startswith("the operator's")


def test_a_worktree_the_os_will_not_watch_is_polled_and_conflicts_are_still_found(
    repo: Path, write_plan: PlanWriter, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import watchfiles

    real_awatch = watchfiles.awatch
    refused: list[str] = []

    def limited(*paths: Any, **kwargs: Any) -> Any:
        """inotify's max_user_watches reached: only polling works."""
        if not kwargs.get("force_polling"):
            refused.append(str(paths[0]))
            raise OSError(28, "OS file watch limit reached")
        return real_awatch(*paths, **kwargs)

    monkeypatch.setattr(watchfiles, "awatch", limited)
    go = tmp_path / "go"
    plan = write_plan(
        plan_text(
            repo,
            f"""\
            - {{id: first, agent: shell, edits: [src/a.py], command: "sed -i 's/nobody/first/' src/shared.py; echo a > src/a.py; {hold(go)}"}}
            - {{id: second, agent: shell, edits: [src/b.py], command: "sed -i 's/nobody/second/' src/shared.py; echo b > src/b.py; {hold(go)}"}}
            """,
        )
    )
    seen = found_all(("predicted-conflict", ("first", "second"), ("src/shared.py",)))
    state, recorder, _ = run_engine(plan, during=release_when(seen, go))
    assert len(refused) == 2  # one refusal per worktree, then polling
    warnings = [n.message for n in state.notices if "polling it instead" in n.message]
    assert len(warnings) == 2
    assert "OS file watch limit reached" in warnings[0]
    found = [e for e in detected(recorder) if e.kind == "predicted-conflict"]
    assert found and found[0].seq < first_merge_seq(recorder)


def stale_plan(repo: Path, policy: str, flags: Path) -> str:
    """schema changes what client reads while client runs, whatever the load: schema
    writes only once client has started, and client's first attempt holds until the
    test lets it go (``flags / "go"``) or it is ended, 30 s at most. A restart is told
    what merged, and copies the new schema. (The repository gets the old schema.)"""
    (repo / "src" / "schema.py").write_text('FIELDS = ("id",)\n')
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "schema")
    started, go = flags / "client-started", flags / "go"
    return plan_text(
        repo,
        f"""\
        - id: schema
          agent: shell
          edits: [src/schema.py]
          command: "{hold(started)}; echo 'FIELDS = (\\"id\\", \\"email\\")' > src/schema.py"
        - id: notes
          agent: shell
          edits: [notes.txt]
          command: "sleep 0.3; echo n > notes.txt"
        - id: client
          agent: shell
          edits: [src/client.py]
          reads: [src/schema.py]
          reads_stale_ok: true
          on_stale_input: {policy}
          command: "touch {started}; if printf '%s' \\"$DELEGATE_PROMPT\\" | grep -q 'merged a change to src/schema.py'; then cp src/schema.py src/client.py; else {hold(go)}; echo old > src/client.py; fi"
        """,
    )


def stale_found(engine: Engine) -> bool:
    return any(f.kind == "stale-input" for f in engine.state.findings.values())


def test_a_merge_under_a_reader_is_a_stale_input_and_restart_starts_it_on_the_new_tip(
    repo: Path, write_plan: PlanWriter, tmp_path: Path
) -> None:
    plan = write_plan(stale_plan(repo, "restart", tmp_path))
    state, recorder, _ = run_engine(plan)
    assert state.status == "succeeded"
    stale = [e for e in detected(recorder) if e.kind == "stale-input"]
    assert [(e.tasks, e.paths) for e in stale] == [(("client", "schema"), ("src/schema.py",))]
    merged = next(e for e in recorder.events if isinstance(e, TaskMerged) and e.task == "schema")
    assert 0 <= stale[0].ts - merged.ts < 1.0, "the finding comes within a second of the merge"
    # Nobody read notes.txt: its merge is no finding.
    assert not [e for e in detected(recorder) if "notes" in e.tasks]
    first, second = state.tasks["client"].attempts
    assert first.status == "killed"
    assert "schema merged a change to src/schema.py" in second.prompt
    assert "--- Merged while you worked (from delegate-tui) ---" in second.prompt
    assert "Operator's note" not in second.prompt, "nobody said it: it is not the operator's"
    assert '+FIELDS = ("id", "email")' in second.prompt  # the diff itself
    shown = git(repo, "show", f"{state.integration_branch}:src/client.py")
    assert shown == 'FIELDS = ("id", "email")\n', "the restart started from the new tip"


def test_r_on_a_stale_running_reader_restarts_it_on_the_new_tip(
    repo: Path, write_plan: PlanWriter, tmp_path: Path
) -> None:
    """on_stale_input: warn, and the operator presses r on the running reader: it is
    ended and started again on the new tip, with the merged change and their words."""
    plan = write_plan(stale_plan(repo, "warn", tmp_path))

    async def operator(engine: Engine, recorder: Recorder) -> None:
        while not stale_found(engine):
            await asyncio.sleep(0.05)
        assert engine.state.tasks["client"].status == "running"
        assert engine.retry("client", "use the new field") == ""

    state, _, _ = run_engine(plan, during=operator)
    assert state.status == "succeeded"
    first, second = state.tasks["client"].attempts
    assert first.status == "killed" and not first.merged_commit
    assert "schema merged a change to src/schema.py" in second.prompt
    assert '+FIELDS = ("id", "email")' in second.prompt
    assert "use the new field" in second.prompt
    marks = [m for m in state.marks if m.kind == "retry"]
    assert [(m.tasks, m.by) for m in marks] == [(("client",), "operator")]
    shown = git(repo, "show", f"{state.integration_branch}:src/client.py")
    assert shown == 'FIELDS = ("id", "email")\n', "the restart started from the new tip"


def test_a_stale_input_with_warn_is_shown_and_the_task_goes_on(
    repo: Path, write_plan: PlanWriter, tmp_path: Path
) -> None:
    plan = write_plan(stale_plan(repo, "warn", tmp_path))

    async def operator(engine: Engine, recorder: Recorder) -> None:
        while not stale_found(engine):
            await asyncio.sleep(0.05)
        (tmp_path / "go").touch()  # the client goes on, and finishes on its own
        # The client has no run: check to re-run on the new tip: it is not merged
        # unchecked, it waits for the operator, who merges it as it is.
        while (t := engine.state.tasks.get("client")) is None or t.status != "awaiting-merge":
            await asyncio.sleep(0.05)
        assert engine.merge("client") == ""

    state, recorder, _ = run_engine(plan, during=operator)
    assert state.status == "succeeded"
    assert [e.tasks for e in detected(recorder) if e.kind == "stale-input"] == [
        ("client", "schema")
    ]
    assert len(state.tasks["client"].attempts) == 1
    (held,) = [
        e
        for e in recorder.events
        if isinstance(e, TaskFinished) and e.task == "client" and e.status == "awaiting-merge"
    ]
    assert held.reason == (
        "its input changed under it and it has no run: check to re-run "
        "(schema merged a change to src/schema.py)"
    )
    assert any(
        "client waits for your merge" in n.message and "r restarts it on the new tip" in n.message
        for n in state.notices
    )
    assert state.tasks["client"].output, "its output reaches dependents once merged"
    assert not [f for f in state.findings.values() if f.kind == "stale-input"], (
        "resolved once the reader merged"
    )
    from delegate_tui.core.metrics import stats

    found = stats(state)["conflicts"]
    assert isinstance(found, list)
    listed = [c for c in found if c["kind"] == "stale-input"]
    assert listed == [
        {
            "kind": "stale-input",
            "severity": "warning",
            "files": ["src/schema.py"],
            "tasks": ["client", "schema"],
            "detail": listed[0]["detail"],
            "open": False,
        }
    ], listed


def test_r_on_a_stale_reader_waiting_for_its_merge_restarts_it_on_the_new_tip(
    repo: Path, write_plan: PlanWriter, tmp_path: Path
) -> None:
    """The reader finished before anyone restarted it and waits for the operator (no
    run: check to re-run): r drops its unmerged work and starts it on the new tip."""
    plan = write_plan(stale_plan(repo, "warn", tmp_path))

    async def operator(engine: Engine, recorder: Recorder) -> None:
        while not stale_found(engine):
            await asyncio.sleep(0.05)
        (tmp_path / "go").touch()
        while (t := engine.state.tasks.get("client")) is None or t.status != "awaiting-merge":
            await asyncio.sleep(0.05)
        assert engine.retry("client", "use the new field") == ""

    state, _, _ = run_engine(plan, during=operator)
    assert state.status == "succeeded"
    first, second = state.tasks["client"].attempts
    assert not first.merged_commit, "the stale work was never merged"
    assert "schema merged a change to src/schema.py" in second.prompt
    assert "use the new field" in second.prompt
    shown = git(repo, "show", f"{state.integration_branch}:src/client.py")
    assert shown == 'FIELDS = ("id", "email")\n', "the restart started from the new tip"


def test_merge_predictions_are_kept_only_for_current_commits(
    repo: Path, write_plan: Callable[..., Plan]
) -> None:
    """Every merge moves the integration tip and each running task is predicted against
    the new one; the predictions about tips gone by are dropped (issue 15: the cache
    grew with every merge of a long run)."""
    tasks = "\n".join(
        f"  - {{id: t{i}, agent: shell, command: 'sleep 0.{i % 3 + 2} && echo {i} > t{i}.txt', "
        f"edits: [t{i}.txt]}}"
        for i in range(14)
    )
    plan = write_plan(f"name: cache\nrepo: {repo}\nmax_parallel: 4\ntasks:\n{tasks}\n")
    sizes: list[int] = []

    async def during(engine: Engine, _recorder: Recorder) -> None:
        while not engine.state.finished:
            if engine._monitor is not None:
                sizes.append(len(engine._monitor._predictions))
            await asyncio.sleep(0.02)

    state, _, _ = run_engine(plan, during=during)
    assert state.status == "succeeded", state.summary
    assert sizes and max(sizes) <= 4 + 6  # each task against the tip, and the pairs of four
