"""End to end: real agent processes in real git worktrees, driven by the real engine."""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from delegate_tui.core.engine import Engine, PreflightError
from delegate_tui.core.events import (
    BatchProposed,
    InputSent,
    MergeConflict,
    Notice,
    RetryScheduled,
    RunFinished,
    RunStarted,
    TaskExited,
    TaskOutput,
    TaskStarted,
)
from delegate_tui.core.plan import Plan
from delegate_tui.core.runlog import read_events
from delegate_tui.core.state import build
from tests.conftest import Recorder, git, run_engine

pytestmark = pytest.mark.e2e
PlanWriter = Callable[..., Plan]


def plan_text(repo: Path, tasks: str, **top: object) -> str:
    head = f"name: test\nrepo: {repo}\n" + "".join(f"{k}: {v}\n" for k, v in top.items())
    return head + "tasks:\n" + textwrap.indent(textwrap.dedent(tasks), "  ")


def output_of(recorder: Recorder, task: str) -> bytes:
    return b"".join(e.data for e in recorder.of(TaskOutput) if e.task == task)


def wait_for(
    recorder: Recorder, predicate: Callable[[], bool], timeout: float = 20
) -> asyncio.Future[None]:
    async def poll() -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while not predicate():
            if loop.time() > end:
                raise TimeoutError("condition never held")
            await asyncio.sleep(0.02)

    return asyncio.ensure_future(poll())


def test_parallel_tasks_merge_and_dependent_sees_their_work(
    repo: Path, write_plan: PlanWriter
) -> None:
    plan = write_plan(
        plan_text(
            repo,
            """\
            - {id: users, agent: demo, prompt: Add users, edits: [src/users.py]}
            - {id: orders, agent: demo, prompt: Add orders, edits: [src/orders.py]}
            - id: report
              agent: shell
              depends_on: [users, orders]
              command: ["sh", "-c", "ls src > listing.txt && cat listing.txt"]
              edits: [listing.txt]
            """,
        )
    )
    state, recorder, engine = run_engine(plan)
    assert state.status == "succeeded", state.summary
    first = recorder.of(BatchProposed)[0]
    assert first.tasks == ("users", "orders")
    starts = {e.task: e for e in recorder.of(TaskStarted)}
    assert starts["users"].cwd != starts["orders"].cwd  # one worktree each
    assert "/.delegate/worktrees/" in starts["users"].cwd
    # The dependent ran on the integration branch with both merged.
    assert b"orders.py" in output_of(recorder, "report") and b"users.py" in output_of(
        recorder, "report"
    )
    integration = state.integration_branch
    assert git(repo, "show", f"{integration}:listing.txt").split() == [
        "orders.py",
        "shared.py",
        "users.py",
    ]
    # The operator's branch and tree were not touched.
    assert git(repo, "status", "--porcelain") == ""
    assert git(repo, "rev-parse", "main") == git(repo, "rev-parse", state.base_commit)
    assert ".delegate/" in (repo / ".git" / "info" / "exclude").read_text()
    assert not (repo / ".gitignore").read_text().count("delegate")
    # Merged worktrees are cleaned up; branches stay.
    assert not Path(starts["users"].cwd).exists()
    assert f"delegate/{engine.run_id}/tasks/users" in git(repo, "branch", "--list", "delegate/*")
    # The log replays to the same state.
    replayed = build(read_events(engine.log_path))
    assert {t: s.status for t, s in replayed.tasks.items()} == {
        t: s.status for t, s in state.tasks.items()
    }
    assert replayed.integration_tip == state.integration_tip


def test_the_logged_wall_time_ends_at_the_run_finished_event(
    repo: Path, write_plan: PlanWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``RunFinished``'s metrics end at its own stamp, however long they take to work out
    (a replay reckons the wall time from the stamps; under load the two differed)."""
    import time

    from delegate_tui.core import metrics

    compute = metrics.compute

    def slow_compute(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.05)  # a busy machine, between reading the clock and the stamp
        return compute(*args, **kwargs)

    monkeypatch.setattr(metrics, "compute", slow_compute)
    plan = write_plan(
        plan_text(repo, "- {id: t, agent: shell, edits: [t.txt], command: 'echo t > t.txt'}")
    )
    state, recorder, _ = run_engine(plan)
    assert state.status == "succeeded"
    (started,) = recorder.of(RunStarted)
    (finished,) = recorder.of(RunFinished)
    assert finished.metrics.wall_s == round(finished.ts - started.ts, 3)


def test_failure_then_automatic_retry_with_context(repo: Path, write_plan: PlanWriter) -> None:
    plan = write_plan(
        plan_text(
            repo,
            """\
            - id: flaky
              agent: demo-flaky
              prompt: Fix the bug
              edits: [src/fix.py]
              retries: 1
            """,
            agents="{demo-flaky: {extends: demo, args: [--fail-first]}}",
        )
    )
    state, recorder, _ = run_engine(plan)
    assert state.status == "succeeded"
    (retry,) = recorder.of(RetryScheduled)
    assert retry.automatic and retry.attempt == 2
    assert "Previous attempt (1) failed: exited with status 1" in retry.prompt
    assert "simulated failure" in retry.prompt
    attempts = state.tasks["flaky"].attempts
    assert [a.status for a in attempts] == ["failed", "succeeded"]
    assert attempts[1].branch.endswith("/tasks/flaky-2")


def test_failure_blocks_dependents_and_run_is_partial(repo: Path, write_plan: PlanWriter) -> None:
    plan = write_plan(
        plan_text(
            repo,
            """\
            - {id: broken, agent: shell, command: "echo doomed; exit 3", edits: [a]}
            - {id: after, agent: shell, command: "true", depends_on: [broken], edits: [b]}
            - {id: other, agent: shell, command: "true", edits: [c]}
            """,
        )
    )
    state, recorder, _ = run_engine(plan)
    assert state.status == "partial"
    assert state.tasks["broken"].status == "failed"
    assert state.tasks["after"].status == "blocked" and state.tasks["after"].blocked_by == "broken"
    assert state.tasks["other"].status == "succeeded"
    (finished,) = recorder.of(RunFinished)
    assert "failed: broken (exited with status 3)" in finished.summary
    assert "blocked: after (needs broken)" in finished.summary


def test_operator_kill_of_agent_that_ignores_sigterm(repo: Path, write_plan: PlanWriter) -> None:
    plan = write_plan(
        plan_text(
            repo,
            """\
            - id: stubborn
              agent: shell
              command: "trap '' TERM; echo ready; (sleep 300 &); while true; do sleep 0.1; done"
              edits: [x]
            """,
        )
    )

    async def drive(engine: Engine, recorder: Recorder) -> None:
        await wait_for(recorder, lambda: b"ready" in output_of(recorder, "stubborn"))
        assert engine.kill("nope") == "no task 'nope'"
        assert engine.kill("stubborn") == ""

    state, recorder, _ = run_engine(plan, during=drive, kill_grace_s=0.5)
    assert state.tasks["stubborn"].status == "killed"
    (exited,) = recorder.of(TaskExited)
    assert exited.signal == 9 and exited.reason == "killed"
    pgid = state.tasks["stubborn"].attempts[0].pgid
    from delegate_tui.core.reaper import group_alive

    assert not group_alive(pgid), "the whole group, sleep included, is gone"


def test_timeout_ends_the_agent(repo: Path, write_plan: PlanWriter) -> None:
    plan = write_plan(
        plan_text(
            repo, "- {id: slow, agent: shell, command: 'sleep 30', timeout: 1s, edits: [x]}\n"
        )
    )
    state, recorder, _ = run_engine(plan)
    assert state.tasks["slow"].status == "timed-out"
    (exited,) = recorder.of(TaskExited)
    assert exited.reason == "timeout" and exited.duration_s < 5
    assert any("timed out after 1s" in n.message for n in recorder.of(Notice))


def test_merge_conflict_is_aborted_cleanly(repo: Path, write_plan: PlanWriter) -> None:
    plan = write_plan(
        plan_text(
            repo,
            """\
            - {id: first, agent: shell, command: "sed -i 's/nobody/first/' src/shared.py", edits: [src/a.py]}
            - {id: second, agent: shell, command: "sleep 0.5; sed -i 's/nobody/second/' src/shared.py", edits: [src/b.py]}
            """,
        )
    )
    state, recorder, _ = run_engine(plan)
    assert state.tasks["first"].status == "succeeded"
    assert state.tasks["second"].status == "merge-conflict"
    (conflict,) = recorder.of(MergeConflict)
    assert conflict.paths == ("src/shared.py",)
    # The integration branch holds exactly the first task's clean work.
    assert "OWNER = 'first'" in git(repo, "show", f"{state.integration_branch}:src/shared.py")
    assert git(repo, "status", "--porcelain") == ""
    # The conflicting work is kept on its branch and in its worktree for the operator.
    second = state.tasks["second"].attempts[0]
    assert Path(second.workdir).exists()
    assert "second" in git(repo, "show", f"{second.branch}:src/shared.py")


def test_output_is_passed_to_a_dependent(repo: Path, write_plan: PlanWriter) -> None:
    plan = write_plan(
        plan_text(
            repo,
            """\
            - {id: advice, agent: demo, kind: consult, prompt: Streams or buffers?}
            - id: build
              agent: shell
              depends_on: [advice]
              prompt: "Apply: {{ outputs.advice }}"
              command: ["sh", "-c", "printf '%s' \\"$DELEGATE_PROMPT\\" > applied.txt"]
              edits: [applied.txt]
            """,
        )
    )
    state, _, _ = run_engine(plan)
    assert state.status == "succeeded"
    applied = git(repo, "show", f"{state.integration_branch}:applied.txt")
    assert applied.startswith(
        "Apply: advice: answered without editing files. Recommendation: use streams"
    )


def test_criteria_run_in_the_worktree_and_fail_the_task(repo: Path, write_plan: PlanWriter) -> None:
    plan = write_plan(
        plan_text(
            repo,
            """\
            - id: checked
              agent: demo
              prompt: Add a module
              edits: [src/mod.py]
              criteria:
                - run: python3 -m py_compile src/mod.py
                - run: test -f does-not-exist
            """,
        )
    )
    state, _, _ = run_engine(plan)
    attempt = state.tasks["checked"].attempts[0]
    assert [c.passed for c in attempt.criteria] == [True, False]
    assert state.tasks["checked"].status == "failed"
    assert attempt.reason == "criteria failed: test -f does-not-exist"


def test_send_input_to_an_agent_waiting_for_it(repo: Path, write_plan: PlanWriter) -> None:
    plan = write_plan(
        plan_text(
            repo,
            "- {id: asker, agent: demo-ask, prompt: Change it, edits: [src/q.py]}\n",
            agents="{demo-ask: {extends: demo, args: [--ask]}}",
        )
    )

    async def drive(engine: Engine, recorder: Recorder) -> None:
        await wait_for(recorder, lambda: b"[y/N]" in output_of(recorder, "asker"))
        assert engine.send_input("asker", "y") == ""

    state, recorder, _ = run_engine(plan, during=drive)
    assert state.tasks["asker"].status == "succeeded"
    assert b"answer: y" in output_of(recorder, "asker")
    assert [e.text for e in recorder.of(InputSent)] == ["y"]


def test_operator_retry_with_context_reaches_the_prompt(repo: Path, write_plan: PlanWriter) -> None:
    plan = write_plan(
        plan_text(
            repo,
            """\
            - id: job
              agent: shell
              prompt: Do the job
              command: ["sh", "-c", "echo \\"$DELEGATE_PROMPT\\" > prompt.txt; test \\"$DELEGATE_ATTEMPT\\" = 2"]
              edits: [prompt.txt]
            """,
            approve="batch",
        )
    )
    retried: list[str] = []

    async def drive(engine: Engine, recorder: Recorder) -> None:
        await wait_for(recorder, lambda: engine.state.proposal is not None)
        assert engine.approve() == ""
        await wait_for(recorder, lambda: engine.state.tasks["job"].status == "failed")
        assert engine.retry("job", "Use the staging database", keep_worktree=True) == ""
        retried.append("yes")

    state, recorder, _ = run_engine(plan, during=drive, auto_approve=False, hold_at_end=True)
    assert retried and state.tasks["job"].status == "succeeded"
    prompt = git(repo, "show", f"{state.integration_branch}:prompt.txt")
    assert prompt.startswith("Do the job")
    assert "--- Operator's note ---\nUse the staging database" in prompt
    (retry,) = recorder.of(RetryScheduled)
    assert not retry.automatic and retry.keep_worktree


def test_skip_hold_pause_and_resume(repo: Path, write_plan: PlanWriter) -> None:
    plan = write_plan(
        plan_text(
            repo,
            """\
            - {id: a, agent: shell, command: "true", edits: [a]}
            - {id: b, agent: shell, command: "true", edits: [b], depends_on: [a]}
            - {id: c, agent: shell, command: "true", edits: [c]}
            """,
            approve="batch",
        )
    )

    async def drive(engine: Engine, recorder: Recorder) -> None:
        await wait_for(recorder, lambda: engine.state.proposal is not None)
        assert engine.hold() == ""
        assert engine.state.paused and engine.state.proposal is None
        assert engine.skip("a") == ""
        assert engine.resume() == ""
        await wait_for(recorder, lambda: engine.state.proposal is not None)
        proposal = engine.state.proposal
        assert proposal is not None and proposal.tasks == ("c",)
        assert engine.approve(["c"]) == ""
        await wait_for(recorder, lambda: engine.state.tasks["c"].status == "succeeded")
        await wait_for(
            recorder,
            lambda: any(
                isinstance(e, Notice) and "waiting for you" in e.message for e in recorder.events
            ),
        )
        assert not engine.state.finished, "with an operator present, a partial run waits"
        assert engine.end() == ""

    state, _, _ = run_engine(plan, during=drive, auto_approve=False, hold_at_end=True)
    assert {t: s.status for t, s in state.tasks.items()} == {
        "a": "skipped",
        "b": "blocked",
        "c": "succeeded",
    }
    assert state.status == "partial"


def test_agent_that_cannot_start_is_a_clear_failure(repo: Path, write_plan: PlanWriter) -> None:
    plan = write_plan(
        plan_text(repo, "- {id: x, agent: shell, command: [/nonexistent/agent], edits: [x]}\n")
    )
    state, recorder, _ = run_engine(plan)
    assert state.tasks["x"].status == "failed"
    assert "could not start '/nonexistent/agent'" in state.tasks["x"].attempts[0].reason
    assert b"No such file" in output_of(recorder, "x")


def test_preflight_refuses_missing_agent_cli_before_creating_anything(
    repo: Path, write_plan: PlanWriter
) -> None:
    plan = write_plan(
        plan_text(
            repo,
            "- {id: x, agent: mine, prompt: p}\n",
            agents="{mine: {command: [no-such-agent-cli, '{prompt}']}}",
        )
    )
    with pytest.raises(
        PreflightError,
        match=r"plan.yaml:\d+: tasks\[0\].agent: agent 'mine' runs 'no-such-agent-cli'",
    ):
        Engine(plan).preflight()
    assert not (repo / ".delegate").exists()


def test_worktree_setup_copies_links_runs_and_fails_as_setup(
    repo: Path, write_plan: PlanWriter
) -> None:
    (repo / ".env").write_text("SECRET=1\n")
    (repo / ".git" / "info" / "exclude").write_text(".env\nnode_modules/\n")
    (repo / "node_modules").mkdir()
    (repo / "node_modules" / "lib.js").write_text("//")
    plan = write_plan(
        plan_text(
            repo,
            """\
            - {id: uses-env, agent: shell, command: "cat .env && ls node_modules", edits: [x]}
            """,
            worktree_setup="{copy: [.env, missing.txt], link: [node_modules], run: ['echo setting up']}",
        )
    )
    state, recorder, _ = run_engine(plan)
    assert state.status == "succeeded"
    setup = b"".join(e.data for e in recorder.of(TaskOutput) if e.stream == "setup")
    assert (
        b"copied .env" in setup
        and b"missing.txt does not exist" in setup
        and b"setting up" in setup
    )
    assert b"SECRET=1" in output_of(recorder, "uses-env") and b"lib.js" in output_of(
        recorder, "uses-env"
    )

    failing = write_plan(
        plan_text(
            repo,
            "- {id: t, agent: shell, command: 'true', edits: [x]}\n",
            worktree_setup="{run: ['exit 7']}",
        ),
        name="failing.yaml",
    )
    state, recorder, _ = run_engine(failing)
    assert state.tasks["t"].status == "failed"
    assert state.tasks["t"].attempts[0].reason == "setup failed: `exit 7` exited with status 7"
    assert not recorder.of(TaskStarted), "the agent never started"


def test_dirty_tree_is_reported_and_excluded_unless_asked(
    repo: Path, write_plan: PlanWriter
) -> None:
    (repo / "wip.txt").write_text("work in progress\n")
    plan = write_plan(plan_text(repo, "- {id: look, agent: shell, command: 'ls', edits: [x]}\n"))
    state, recorder, _ = run_engine(plan)
    assert any("uncommitted changes (wip.txt)" in n.message for n in recorder.of(Notice))
    assert b"wip.txt" not in output_of(recorder, "look") and state.status == "succeeded"
    state, recorder, _ = run_engine(plan, include_dirty=True)
    assert b"wip.txt" in output_of(recorder, "look") and state.status == "succeeded"
    assert (repo / "wip.txt").read_text() == "work in progress\n"
    assert git(repo, "status", "--porcelain").strip() == "?? wip.txt"


def test_finish_merges_into_the_operator_branch(repo: Path, write_plan: PlanWriter) -> None:
    plan = write_plan(
        plan_text(repo, "- {id: feat, agent: demo, prompt: Add feature, edits: [src/feature.py]}\n")
    )
    state, _, _ = run_engine(plan, finish=True)
    assert state.final_merge is not None and state.final_merge.ok, state.final_merge
    assert (repo / "src" / "feature.py").exists()
    assert git(repo, "rev-parse", "main") == git(repo, "rev-parse", state.integration_branch)


def test_manual_merge_waits_for_the_operator(repo: Path, write_plan: PlanWriter) -> None:
    plan = write_plan(
        plan_text(
            repo,
            """\
            - {id: a, agent: shell, command: "echo a > a.txt", edits: [a.txt]}
            - {id: b, agent: shell, command: "cat a.txt", edits: [b.txt], depends_on: [a]}
            """,
            merge="manual",
        )
    )

    async def drive(engine: Engine, recorder: Recorder) -> None:
        await wait_for(recorder, lambda: engine.state.tasks["a"].status == "awaiting-merge")
        await asyncio.sleep(0.2)
        assert engine.state.tasks["b"].status == "pending"  # dependents wait for the merge
        assert engine.merge("a") == ""
        await wait_for(recorder, lambda: engine.state.tasks["b"].status == "awaiting-merge")
        assert engine.merge("b") == ""

    state, recorder, _ = run_engine(plan, during=drive)
    assert state.status == "succeeded"
    assert b"a" in output_of(recorder, "b")


@pytest.mark.parametrize("transport", ["pty", "pipes"])
def test_binary_and_flood_output_reach_the_log_exactly(
    repo: Path, write_plan: PlanWriter, transport: str
) -> None:
    plan = write_plan(
        plan_text(
            repo,
            "- {id: noisy, agent: demo-noisy, prompt: go, edits: [n.py]}\n",
            agents="{demo-noisy: {extends: demo, args: [--flood, '20000', --binary]}}",
        )
    )
    state, recorder, engine = run_engine(plan, transport=transport)
    assert state.status == "succeeded"
    live = output_of(recorder, "noisy")
    logged = b"".join(
        e.data
        for e in read_events(engine.log_path)
        if isinstance(e, TaskOutput) and e.task == "noisy"
    )
    assert live == logged
    assert b"binary:\xff\xfe\x00\x01\x80\xc3(" in logged
    assert logged.count(b"xxxxxxxxxx") >= 20000


def test_shared_and_none_isolation(tmp_path: Path, repo: Path, write_plan: PlanWriter) -> None:
    plan = write_plan(
        plan_text(
            repo,
            "- {id: s, agent: shell, command: 'echo hi > shared.txt', edits: [shared.txt]}\n",
            isolation="shared",
        )
    )
    state, _, _ = run_engine(plan)
    assert state.status == "succeeded" and (repo / "shared.txt").read_text() == "hi\n"
    folder = tmp_path / "plain"
    folder.mkdir()
    plan = write_plan(
        plan_text(
            folder, "- {id: n, agent: shell, command: 'echo x > out.txt', edits: [out.txt]}\n"
        ),
        name="none.yaml",
    )
    state, _, engine = run_engine(plan)
    assert state.isolation == "none" and state.status == "succeeded"
    assert (folder / "out.txt").exists() and engine.log_path.is_file()
    with pytest.raises(PreflightError, match="needs a git repository"):
        Engine(plan.model_copy(update={"isolation": "worktree"})).preflight()


def test_the_prompt_as_logged_is_the_prompt_as_sent_and_names_the_other_owners(
    repo: Path, write_plan: PlanWriter
) -> None:
    plan = write_plan(
        plan_text(
            repo,
            """\
            - id: one
              agent: shell
              persona: a careful reviewer
              prompt: First job
              command: ["sh", "-c", "printf '%s' \\"$DELEGATE_PROMPT\\" > one.txt; sleep 0.5"]
              edits: [one.txt]
            - id: two
              agent: shell
              prompt: Second job
              command: ["sh", "-c", "printf '%s' \\"$DELEGATE_PROMPT\\" > two.txt; sleep 0.5"]
              edits: [two.txt]
            """,
        )
    )
    state, recorder, _ = run_engine(plan)
    assert state.status == "succeeded"
    for task, other in (("one", "two"), ("two", "one")):
        (started,) = [e for e in recorder.of(TaskStarted) if e.task == task]
        sent = git(repo, "show", f"{state.integration_branch}:{task}.txt")
        assert started.prompt == sent
        assert f"You may change: {task}.txt" in sent
        assert f"  {other}.txt: {other} (running)" in sent
    assert sent.startswith("Second job")
    one = git(repo, "show", f"{state.integration_branch}:one.txt")
    assert one.startswith("You are a careful reviewer.\n\nFirst job")  # the persona, as sent


# ---------------------------------------------------------------- what an agent does to git


def test_an_agent_that_moves_head_to_the_operators_branch_commits_nowhere_but_its_own(
    repo: Path, write_plan: PlanWriter
) -> None:
    command = "git symbolic-ref HEAD refs/heads/main && echo 'A = 1' > a.py"
    plan = write_plan(
        plan_text(repo, f"- {{id: a, agent: shell, edits: [a.py], command: {command!r}}}\n")
    )
    main_before = git(repo, "rev-parse", "main")
    state, recorder, _ = run_engine(plan)
    assert state.status == "succeeded", output_of(recorder, "a")
    assert git(repo, "rev-parse", "main") == main_before, "the operator's branch did not move"
    assert git(repo, "show", f"{state.integration_branch}:a.py") == "A = 1\n"


def test_an_agent_that_commits_on_the_newer_integration_tip_undoes_no_merged_work(
    repo: Path, write_plan: PlanWriter
) -> None:
    # b waits until a has merged, then commits its work on the integration branch's new
    # tip (git reset --soft): its tree lacks a.py, and a fast-forward would drop it.
    rogue = (
        'i=0; until tip=$(git rev-parse -q --verify "$(git for-each-ref '
        "--format='%(refname)' 'refs/heads/delegate/*/integration')\" ) "
        '&& git cat-file -e "$tip:a.py"; do i=$((i+1)); [ $i -gt 400 ] && exit 3; '
        "sleep 0.05; done; "
        "git reset -q --soft \"$tip\" && echo 'B = 1' > b.py && git add b.py "
        "&& git commit -qm 'b on the newer tip' && echo rebased"
    )
    plan = write_plan(
        plan_text(
            repo,
            f"""\
            - {{id: a, agent: shell, edits: [a.py], command: "echo 'A = 1' > a.py"}}
            - {{id: b, agent: shell, edits: [b.py], command: {json.dumps(rogue)}}}
            """,
        )
    )
    state, recorder, _ = run_engine(plan)
    assert state.status == "succeeded", output_of(recorder, "b")
    assert b"rebased" in output_of(recorder, "b")
    tip = state.integration_branch
    assert git(repo, "show", f"{tip}:a.py") == "A = 1\n", "a's merged work is still there"
    assert git(repo, "show", f"{tip}:b.py") == "B = 1\n"
    b = state.tasks["b"].attempts[-1]
    assert [f.path for f in b.changed] == ["b.py"]
    assert git(repo, "rev-parse", f"{b.commit}^").strip() == b.base_commit  # one on its start


def test_a_budget_on_an_agent_whose_cost_cannot_be_read_is_said_to_not_act(
    repo: Path, write_plan: PlanWriter
) -> None:
    from delegate_tui.core.events import Notice

    plan = write_plan(
        "name: limits\n"
        f"repo: {repo}\n"
        "agents:\n"
        "  plain: {command: [sh, -c, 'echo done > p.txt', '{prompt}']}\n"
        "tasks:\n"
        "  - {id: p, agent: plain, prompt: go, edits: [p.txt], budget_usd: 0.5}\n"
        "  - {id: s, agent: shell, command: 'echo s > s.txt', edits: [s.txt], budget_usd: 0.5}\n"
    )
    state, recorder, _ = run_engine(plan)
    assert state.status == "succeeded", state.summary
    said = [n.message for n in recorder.of(Notice) if "do not act" in n.message]
    assert said == [
        "the budget and turn limits do not act on p: their agent plain prints no stream "
        "delegate-tui reads for cost and turns (claude, codex and gemini do)"
    ]


def test_an_aider_agents_own_files_stay_out_of_its_commit(
    repo: Path, write_plan: PlanWriter
) -> None:
    """aider keeps its chat history and caches in the repository (``.aider*``): they are
    its own, not the task's work, so they are neither committed nor merged."""
    work = "echo history > .aider.chat.history.md; mkdir -p .aider.tags.cache.v4; echo x > src/x.py"
    plan = write_plan(
        "name: own\n"
        f"repo: {repo}\n"
        "agents:\n"
        f"  my-aider: {{extends: aider, command: [sh, -c, {json.dumps(work)}, '{{prompt}}']}}\n"
        "tasks:\n"
        "  - {id: a, agent: my-aider, prompt: go, edits: [src/x.py]}\n"
    )
    state, recorder, _ = run_engine(plan)
    assert state.status == "succeeded", output_of(recorder, "a")
    attempt = state.tasks["a"].attempts[-1]
    assert [f.path for f in attempt.changed] == ["src/x.py"]
    tree = git(repo, "ls-tree", "-r", "--name-only", state.integration_branch).split()
    assert "src/x.py" in tree and not [p for p in tree if p.startswith(".aider")]


def test_a_retry_that_keeps_work_moved_onto_the_newer_tip_undoes_no_merged_work(
    repo: Path, write_plan: PlanWriter
) -> None:
    # b's first attempt waits for a's merge, moves its branch onto the newer integration
    # tip (its files lack a.py) and fails; the retry keeps its work and succeeds.
    first = (
        'i=0; until tip=$(git rev-parse -q --verify "$(git for-each-ref '
        "--format='%(refname)' 'refs/heads/delegate/*/integration')\" ) "
        '&& git cat-file -e "$tip:a.py"; do i=$((i+1)); [ $i -gt 400 ] && exit 3; '
        "sleep 0.05; done; git reset -q --soft \"$tip\" && echo 'B = 1' > b.py && exit 1"
    )
    command = f'if [ "$DELEGATE_ATTEMPT" = 1 ]; then {first}; fi; echo "C = 1" > c.py'
    plan = write_plan(
        plan_text(
            repo,
            f"""\
            - {{id: a, agent: shell, edits: [a.py], command: "echo 'A = 1' > a.py"}}
            - {{id: b, agent: shell, edits: [b.py, c.py], command: {json.dumps(command)}}}
            """,
        )
    )

    async def drive(engine: Engine, recorder: Recorder) -> None:
        await wait_for(recorder, lambda: engine.state.tasks["b"].status == "failed", 40)
        assert engine.retry("b", "go on", keep_worktree=True) == ""

    state, recorder, _ = run_engine(plan, during=drive, hold_at_end=True)
    assert state.tasks["b"].status == "succeeded", output_of(recorder, "b")
    tip = state.integration_branch
    assert git(repo, "show", f"{tip}:a.py") == "A = 1\n", "a's merged work is still there"
    assert git(repo, "show", f"{tip}:b.py") == "B = 1\n"
    assert git(repo, "show", f"{tip}:c.py") == "C = 1\n"
