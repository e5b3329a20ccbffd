"""The batcher's rules, and a human reason for every ready task it holds back."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import cast, get_args

from hypothesis import given, settings
from hypothesis import strategies as st

from delegate_tui.core import batching, metrics
from delegate_tui.core.events import RunStarted, TaskFinished, TaskStarted, TaskStatus
from delegate_tui.core.metrics import stats
from delegate_tui.core.plan import Plan, parse_plan
from delegate_tui.core.state import AttemptState, RunState, TaskState, apply
from delegate_tui.core.streams import parser_for


def plan_of(tasks: str, **top: object) -> Plan:
    head = "name: p\n" + "".join(f"{k}: {v}\n" for k, v in top.items())
    return parse_plan(head + "tasks:\n" + textwrap.indent(textwrap.dedent(tasks), "  "))


def task_status(name: str) -> TaskStatus:
    """``name`` as a task status; a name that is none (a typo in a test) fails the test."""
    assert name in get_args(TaskStatus), f"no task status {name!r}"
    return cast(TaskStatus, name)


def state_of(plan: Plan, isolation: str = "worktree", **statuses: str) -> RunState:
    state = RunState(plan=plan, isolation=isolation, max_parallel=plan.max_parallel)
    state.tasks = {
        t.id: TaskState(t.id, status=task_status(statuses.get(t.id, "pending"))) for t in plan.tasks
    }
    return state


def propose(plan: Plan, state: RunState, auto: bool = True) -> batching.Proposal:
    proposal = batching.next_batch(plan, state, auto_approve=auto)
    assert proposal is not None
    return proposal


def held(proposal: batching.Proposal) -> dict[str, str]:
    return {h.task: h.reason for h in proposal.held}


def test_disjoint_tasks_share_a_batch_up_to_max_parallel() -> None:
    plan = plan_of(
        """\
        - {id: a, prompt: x, edits: [a/**]}
        - {id: b, prompt: x, edits: [b/**]}
        - {id: c, prompt: x, edits: [c/**]}
        """,
        max_parallel=2,
    )
    proposal = propose(plan, state_of(plan))
    assert proposal.tasks == ("a", "b")
    assert held(proposal) == {"c": "max_parallel (2) reached"}


def test_overlap_with_a_file_that_does_not_exist_yet() -> None:
    plan = plan_of(
        """\
        - {id: wide, prompt: x, edits: ["src/**"]}
        - {id: narrow, prompt: x, edits: [src/auth/x.ts]}
        """
    )
    proposal = propose(plan, state_of(plan))
    assert proposal.tasks == ("wide",)
    assert held(proposal) == {"narrow": "edits overlap with wide on src/auth/x.ts / src/**"}


def test_running_task_blocks_overlap_and_takes_a_slot() -> None:
    plan = plan_of(
        """\
        - {id: service, prompt: x, edits: ["src/auth/**"]}
        - {id: fix, prompt: x, edits: ["src/auth/login.ts"]}
        - {id: docs, prompt: x, edits: ["docs/**"]}
        """,
        max_parallel=2,
    )
    state = state_of(plan, service="running")
    proposal = propose(plan, state)
    assert proposal.tasks == ("docs",)
    assert held(proposal) == {
        "fix": "edits overlap with service on src/auth/login.ts / src/auth/** (running)"
    }


def test_shared_config_and_resources_serialise() -> None:
    plan = plan_of(
        """\
        - {id: charts, prompt: x, edits: ["web/charts/**", package.json]}
        - {id: dates, prompt: x, edits: ["web/dates/**", package.json]}
        - {id: migrate-a, prompt: x, edits: [db/a.sql], resources: [database]}
        - {id: migrate-b, prompt: x, edits: [db/b.sql], resources: [database]}
        """,
        max_parallel=4,
    )
    proposal = propose(plan, state_of(plan))
    assert proposal.tasks == ("charts", "migrate-a")
    assert held(proposal) == {
        "dates": "shares config file package.json with charts",
        "migrate-b": "shares resource database with migrate-a",
    }


def test_lock_files_are_shared_by_default() -> None:
    plan = plan_of(
        """\
        - {id: a, prompt: x, edits: [yarn.lock, web/a/**]}
        - {id: b, prompt: x, edits: [Cargo.lock, web/b/**]}
        """
    )
    proposal = propose(plan, state_of(plan))
    assert held(proposal)["b"].startswith("shares config file")


def test_longest_remaining_chain_goes_first() -> None:
    plan = plan_of(
        """\
        - {id: quick, prompt: x, edits: [q/**]}
        - {id: head, prompt: x, edits: [h/**], estimate: 5m}
        - {id: tail, prompt: x, edits: [t/**], depends_on: [head], estimate: 5m}
        """,
        max_parallel=1,
    )
    proposal = propose(plan, state_of(plan))
    assert proposal.tasks == ("head",)
    assert held(proposal) == {"quick": "max_parallel (1) reached"}


def test_approve_true_is_proposed_alone_and_needs_the_operator() -> None:
    plan = plan_of(
        """\
        - {id: deploy, prompt: x, edits: [deploy/**], approve: true, estimate: 9m}
        - {id: docs, prompt: x, edits: [docs/**]}
        """
    )
    proposal = propose(plan, state_of(plan), auto=True)
    assert proposal.tasks == ("deploy",) and proposal.needs_approval
    assert held(proposal) == {"docs": "deploy needs its own approval"}
    state = state_of(plan, deploy="running")
    assert propose(plan, state, auto=True) == batching.Proposal(("docs",), (), (), False)


def test_undeclared_scope_worktree_vs_shared() -> None:
    plan = plan_of(
        """\
        - {id: loose, prompt: x}
        - {id: tidy, prompt: x, edits: [docs/**]}
        """
    )
    proposal = propose(plan, state_of(plan, "worktree"))
    assert proposal.tasks == ("loose", "tidy")
    assert [(n.task, n.reason) for n in proposal.notes] == [
        ("loose", "scope undeclared: no edits declared")
    ]
    shared = propose(plan, state_of(plan, "shared"))
    assert shared.tasks == ("loose",)
    assert held(shared) == {"tidy": "loose has no declared edits and runs alone in shared mode"}


def test_consult_tasks_run_beside_anything() -> None:
    plan = plan_of(
        """\
        - {id: build, prompt: x, edits: ["**"]}
        - {id: advice, prompt: x, kind: consult}
        """
    )
    assert propose(plan, state_of(plan, "shared")).tasks == ("build", "advice")


def test_readiness_blocking_and_outcome() -> None:
    plan = plan_of(
        """\
        - {id: a, prompt: x, edits: [a]}
        - {id: b, prompt: x, edits: [b], depends_on: [a]}
        - {id: c, prompt: x, edits: [c], depends_on: [b]}
        """
    )
    state = state_of(plan)
    assert batching.ready(plan, state) == ["a"]
    assert batching.waiting_reason(plan, state, "b") == "waits for a (pending)"
    state.tasks["a"].status = "succeeded"
    assert batching.ready(plan, state) == ["b"]
    state.tasks["b"].status = "failed"
    assert batching.newly_blocked(plan, state) == [("c", "b", "dependency b failed")]
    assert batching.run_outcome(plan, state) is None
    state.tasks["c"].status = "blocked"
    assert batching.run_outcome(plan, state) == "partial"
    state.tasks["a"].status = "failed"
    assert batching.run_outcome(plan, state) == "failed"
    for task in state.tasks.values():
        task.status = "succeeded"
    assert batching.run_outcome(plan, state) == "succeeded"
    assert batching.next_batch(plan, state, auto_approve=True) is None


def test_retry_policy_and_whole_batch_failure() -> None:
    plan = plan_of(
        """\
        - {id: a, prompt: x, edits: [a], retries: 1}
        - {id: b, prompt: x, edits: [b]}
        """
    )
    state = state_of(plan, a="failed", b="failed")
    state.tasks["a"].attempts = [AttemptState(1)]
    state.tasks["b"].attempts = [AttemptState(1)]
    assert batching.auto_retry_allowed(plan, state, "a")
    assert not batching.auto_retry_allowed(plan, state, "b")
    state.tasks["a"].attempts.append(AttemptState(2))
    assert not batching.auto_retry_allowed(plan, state, "a")
    state.tasks["a"].status = "killed"
    assert not batching.auto_retry_allowed(plan, state, "a")
    assert batching.batch_all_failed(state, ["a", "b"])
    state.tasks["b"].status = "succeeded"
    assert not batching.batch_all_failed(state, ["a", "b"])
    assert not batching.batch_all_failed(state, ["a"])


# ------------------------------------------ bugs a user would hit (issue 20)


def test_task_awaiting_manual_merge_still_holds_its_scope() -> None:
    """With ``merge: manual`` a finished task's work is not merged yet: an overlapping task
    started now would branch without it and collide with it at merge time."""
    plan = plan_of(
        """\
        - {id: api, prompt: x, edits: ["src/api/**"]}
        - {id: fix, prompt: x, edits: [src/api/login.py]}
        - {id: docs, prompt: x, edits: ["docs/**"]}
        """,
        merge="manual",
    )
    proposal = propose(plan, state_of(plan, api="awaiting-merge"))
    assert proposal.tasks == ("docs",)
    assert held(proposal) == {
        "fix": "edits overlap with api on src/api/login.py / src/api/** (awaiting-merge)"
    }


def test_every_active_status_holds_scope_but_finished_ones_do_not() -> None:
    plan = plan_of(
        """\
        - {id: first, prompt: x, edits: [shared.py]}
        - {id: second, prompt: x, edits: [shared.py]}
        """
    )
    for status in ("starting", "running", "checking", "merging", "awaiting-merge"):
        state = state_of(plan, first=status)
        assert batching.next_batch(plan, state, auto_approve=True) is None, status
        assert batching.ready(plan, state) == ["second"]
    for status in ("succeeded", "failed", "killed", "skipped", "merge-conflict"):
        assert propose(plan, state_of(plan, first=status)).tasks == ("second",), status


def test_awaiting_merge_does_not_take_a_parallel_slot() -> None:
    plan = plan_of(
        """\
        - {id: a, prompt: x, edits: [a/**]}
        - {id: b, prompt: x, edits: [b/**]}
        """,
        max_parallel=1,
    )
    assert propose(plan, state_of(plan, a="awaiting-merge")).tasks == ("b",)
    assert batching.next_batch(plan, state_of(plan, a="running"), auto_approve=True) is None


def test_run_whose_only_non_success_is_a_skip_is_partial_not_succeeded() -> None:
    plan = plan_of(
        """\
        - {id: a, prompt: x, edits: [a]}
        - {id: b, prompt: x, edits: [b]}
        """
    )
    assert batching.run_outcome(plan, state_of(plan, a="succeeded", b="skipped")) == "partial"
    assert batching.run_outcome(plan, state_of(plan, a="skipped", b="skipped")) == "failed"
    assert batching.run_outcome(plan, state_of(plan, a="succeeded", b="succeeded")) == "succeeded"


def test_run_outcome_waits_while_any_task_can_still_move() -> None:
    plan = plan_of(
        """\
        - {id: a, prompt: x, edits: [a]}
        - {id: b, prompt: x, edits: [b]}
        """
    )
    for status in ("pending", "proposed", "starting", "running", "checking", "merging"):
        assert batching.run_outcome(plan, state_of(plan, a="succeeded", b=status)) is None, status
    assert batching.run_outcome(plan, state_of(plan, a="succeeded", b="awaiting-merge")) is None
    for status in sorted(batching.FAILED_STATUSES):
        assert batching.run_outcome(plan, state_of(plan, a="succeeded", b=status)) == "partial"
        assert batching.run_outcome(plan, state_of(plan, a="failed", b=status)) == "failed"


# ------------------------------------------ reasons and limits the operator reads


def test_free_slots_are_max_parallel_minus_running_tasks() -> None:
    plan = plan_of(
        """\
        - {id: a, prompt: x, edits: [a/**]}
        - {id: b, prompt: x, edits: [b/**]}
        - {id: c, prompt: x, edits: [c/**]}
        - {id: d, prompt: x, edits: [d/**]}
        """,
        max_parallel=3,
    )
    proposal = propose(plan, state_of(plan, a="running", b="merging"))
    assert proposal.tasks == ("c",)
    assert held(proposal) == {"d": "max_parallel (3) reached"}
    full = state_of(plan, a="running", b="checking", c="starting")
    assert batching.next_batch(plan, full, auto_approve=True) is None


def test_an_approve_task_waits_for_its_own_batch_and_holds_the_rest_while_proposed() -> None:
    plan = plan_of(
        """\
        - {id: docs, prompt: x, edits: [docs/**], estimate: 9m}
        - {id: deploy, prompt: x, edits: [deploy/**], approve: true, estimate: 5m}
        """
    )
    proposal = propose(plan, state_of(plan))
    assert proposal.tasks == ("docs",) and not proposal.needs_approval
    assert held(proposal) == {"deploy": "approve: true, so it is proposed on its own"}
    plan = plan_of(
        """\
        - {id: deploy, prompt: x, edits: [deploy/**], approve: true, estimate: 9m}
        - {id: docs, prompt: x, edits: [docs/**]}
        - {id: blog, prompt: x, edits: [blog/**]}
        """
    )
    proposal = propose(plan, state_of(plan))
    assert proposal.tasks == ("deploy",) and proposal.needs_approval
    assert held(proposal) == {
        "docs": "deploy needs its own approval",
        "blog": "deploy needs its own approval",
    }


def test_a_plan_without_isolation_set_is_batched_as_worktree() -> None:
    plan = plan_of(
        """\
        - {id: loose, prompt: x}
        - {id: tidy, prompt: x, edits: [docs/**]}
        """
    )
    proposal = propose(plan, state_of(plan, isolation=""))
    assert proposal.tasks == ("loose", "tidy")
    assert [(n.task, n.reason) for n in proposal.notes] == [
        ("loose", "scope undeclared: no edits declared")
    ]


def test_shared_mode_names_the_task_without_declared_edits() -> None:
    plan = plan_of(
        """\
        - {id: tidy, prompt: x, edits: [docs/**]}
        - {id: loose, prompt: x}
        """
    )
    state = state_of(plan, "shared", tidy="running")
    assert batching.next_batch(plan, state, auto_approve=True) is None
    tidy, loose = plan.task("tidy"), plan.task("loose")
    expected = "loose has no declared edits and runs alone in shared mode"
    assert batching.conflict_reason(plan, loose, tidy, isolation="shared") == expected
    assert batching.conflict_reason(plan, tidy, loose, isolation="shared") == expected
    assert batching.conflict_reason(plan, tidy, loose, isolation="worktree") == ""


def test_config_file_reason_names_the_files_both_touch_else_all_of_them() -> None:
    plan = plan_of(
        """\
        - {id: deps, prompt: x, edits: [package.json, yarn.lock]}
        - {id: script, prompt: x, edits: [package.json]}
        - {id: lock, prompt: x, edits: [yarn.lock]}
        """,
        shared_files='[package.json, "*.lock"]',
    )
    deps, script, lock = plan.task("deps"), plan.task("script"), plan.task("lock")
    reason = batching.conflict_reason
    assert reason(plan, script, deps, isolation="worktree") == (
        "shares config file package.json with deps"
    )
    assert reason(plan, lock, script, isolation="worktree") == (
        "shares config file *.lock, package.json with script"
    )


def test_resources_reason_lists_every_shared_resource() -> None:
    plan = plan_of(
        """\
        - {id: a, prompt: x, edits: [a], resources: [db, gpu, port-8080]}
        - {id: b, prompt: x, edits: [b], resources: [port-8080, db]}
        """
    )
    assert batching.conflict_reason(plan, plan.task("b"), plan.task("a"), isolation="worktree") == (
        "shares resource db, port-8080 with a"
    )


def test_waiting_reason_names_every_unfinished_dependency() -> None:
    plan = plan_of(
        """\
        - {id: a, prompt: x, edits: [a]}
        - {id: b, prompt: x, edits: [b]}
        - {id: c, prompt: x, edits: [c], depends_on: [a, b]}
        """
    )
    state = state_of(plan, a="running", b="failed")
    assert batching.waiting_reason(plan, state, "c") == "waits for a (running), b (failed)"
    state = state_of(plan, a="succeeded", b="running")
    assert batching.waiting_reason(plan, state, "c") == "waits for b (running)"
    state = state_of(plan, a="succeeded", b="succeeded")
    assert batching.waiting_reason(plan, state, "c") == ""


def test_a_proposed_task_whose_dependency_failed_is_blocked_too() -> None:
    plan = plan_of(
        """\
        - {id: a, prompt: x, edits: [a]}
        - {id: b, prompt: x, edits: [b]}
        - {id: c, prompt: x, edits: [c], depends_on: [a, b]}
        """
    )
    state = state_of(plan, a="killed", b="skipped", c="proposed")
    assert batching.newly_blocked(plan, state) == [("c", "a", "dependency a killed")]
    for status in ("running", "blocked", "succeeded"):
        assert batching.newly_blocked(plan, state_of(plan, a="failed", c=status)) == []


def test_unestimated_tasks_weigh_one_second_each_in_the_longest_chain_first() -> None:
    plan = plan_of(
        """\
        - {id: solo, prompt: x, edits: [s/**], estimate: 3s}
        - {id: head, prompt: x, edits: [h/**]}
        - {id: tail, prompt: x, edits: [t/**], depends_on: [head]}
        """,
        max_parallel=1,
    )
    assert batching.priorities(plan) == {"solo": 3.0, "head": 2.0, "tail": 1.0}
    assert propose(plan, state_of(plan)).tasks == ("solo",)


def test_a_batch_has_failed_only_if_every_task_in_it_failed_on_its_own() -> None:
    plan = plan_of(
        """\
        - {id: a, prompt: x, edits: [a]}
        - {id: b, prompt: x, edits: [b]}
        """
    )
    for status in ("failed", "killed", "timed-out", "merge-conflict", "interrupted"):
        assert batching.batch_all_failed(state_of(plan, a="failed", b=status), ["a", "b"]), status
    for status in ("skipped", "blocked", "succeeded", "running"):
        assert not batching.batch_all_failed(state_of(plan, a="failed", b=status), ["a", "b"])


def test_automatic_retries_cover_timeouts_and_merge_conflicts_but_never_a_kill() -> None:
    plan = plan_of("- {id: a, prompt: x, edits: [a], retries: 2}\n")

    def allowed(status: str, attempts: int = 1, kill: bool = False) -> bool:
        state = state_of(plan, a=status)
        state.tasks["a"].attempts = [AttemptState(n + 1) for n in range(attempts)]
        state.tasks["a"].attempts[-1].kill_requested = kill
        return batching.auto_retry_allowed(plan, state, "a")

    assert allowed("failed") and allowed("timed-out") and allowed("merge-conflict")
    assert allowed("failed", attempts=2) and not allowed("failed", attempts=3)
    assert not allowed("failed", kill=True), "the operator ended it: do not start it again"
    assert not allowed("killed") and not allowed("skipped") and not allowed("succeeded")
    assert not batching.auto_retry_allowed(plan, state_of(plan, a="failed"), "a")


STREAMS = Path(__file__).resolve().parents[1] / "streams"


def ended_attempt(stream: str, fmt: str, reason: str, retries: int = 2) -> RunState:
    """A run whose task ``t`` (with ``retries``) read ``stream`` (a recorded one, or the
    text of one) and ended ``failed`` with ``reason``, through the state's own events."""
    plan = {"name": "p", "tasks": [{"id": "t", "prompt": "x", "retries": retries}]}
    state = RunState()
    start = RunStarted(run_id="r", plan=plan, plan_path="p.yaml", repo="/r", isolation="worktree")
    apply(state, start)
    apply(
        state,
        TaskStarted(task="t", attempt=1, agent=fmt, argv=(), cwd="/w", pid=1, pgid=1, prompt=""),
    )
    parser = parser_for(fmt, "t", 1)
    data = (STREAMS / stream).read_bytes() if stream.endswith(".jsonl") else stream.encode()
    for ev in [*parser.feed(data), *parser.close()]:
        apply(state, ev)
    apply(state, TaskFinished(task="t", attempt=1, status="failed", reason=reason))
    return state


def test_a_refused_key_is_not_retried_automatically_and_the_ending_says_why() -> None:
    """A rejected key is rejected again: ``retries:`` does not spend an attempt on it,
    whether the CLI said so itself (codex's ``turn.failed`` 401, gemini's error result,
    recorded from the real CLIs) or the attempt stopped it after repeated 401s."""
    said = "authentication failed: unexpected status 401 Unauthorized"
    for stream, fmt in (("codex-auth-fail.jsonl", "codex"), ("gemini-auth-fail.jsonl", "gemini")):
        state = ended_attempt(stream, fmt, said)
        assert state.tasks["t"].attempts[-1].result_reason == "auth", stream
        assert state.plan is not None
        assert not batching.auto_retry_allowed(state.plan, state, "t"), stream
        ((_, kind, words),) = metrics.health(state)
        assert kind == "agent-failed" and words.endswith(
            "; not retried automatically: the same key would be refused again"
        ), words
        assert stats(state)["tasks"]["t"]["ending_text"] == words  # type: ignore[index]
    # Stopped by the attempt: three 401 retries, no result line.
    refused = "".join(
        json.dumps({"type": "error", "message": f"Reconnecting... {n}/5 (status 401)"}) + "\n"
        for n in range(1, 4)
    )
    state = ended_attempt(refused, "codex", "authentication failed: the API answered HTTP 401")
    assert state.plan is not None and not batching.auto_retry_allowed(state.plan, state, "t")
    # Any other failure is retried; without retries left the ending adds nothing.
    other = ended_attempt("codex-no-network.jsonl", "codex", "the agent reported an error")
    assert other.plan is not None and batching.auto_retry_allowed(other.plan, other, "t")
    assert "not retried" not in metrics.health(other)[0][2]
    spent = ended_attempt("codex-auth-fail.jsonl", "codex", said, retries=0)
    assert "not retried" not in metrics.health(spent)[0][2]


def test_the_plan_view_lists_independent_pairs_its_scopes_keep_apart() -> None:
    plan = plan_of(
        """\
        - {id: api, prompt: x, edits: ["src/api/**"]}
        - {id: fix, prompt: x, edits: [src/api/login.py]}
        - {id: after, prompt: x, edits: ["src/api/**"], depends_on: [api]}
        - {id: db-a, prompt: x, edits: [db/a.sql], resources: [database]}
        - {id: db-b, prompt: x, edits: [db/b.sql], resources: [database]}
        """
    )
    assert batching.declared_overlaps(plan, "worktree") == [
        ("api", "fix", "edits overlap with api on src/api/login.py / src/api/**"),
        ("fix", "after", "edits overlap with fix on src/api/** / src/api/login.py"),
        ("db-a", "db-b", "shares resource database with db-a"),
    ], "api and after are on one chain: they never run together anyway"
    assert batching.declared_overlaps(plan, "worktree", limit=4) == []
    assert len(batching.declared_overlaps(plan, "worktree", limit=5)) == 3


def test_without_explanations_the_batch_is_the_same_and_nothing_is_held() -> None:
    """The forecast of a large plan asks for batches only: the same tasks, no reasons."""
    plan = plan_of(
        """\
        - {id: a, prompt: x, edits: [a/**]}
        - {id: b, prompt: x, edits: [b/**]}
        - {id: c, prompt: x, edits: [c/**]}
        """,
        max_parallel=2,
    )
    quick = batching.next_batch(plan, state_of(plan), auto_approve=True, explain=False)
    assert quick == batching.Proposal(("a", "b"), (), (), False)
    assert held(propose(plan, state_of(plan))) == {"c": "max_parallel (2) reached"}
    plan = plan_of(
        """\
        - {id: deploy, prompt: x, edits: [deploy/**], approve: true, estimate: 9m}
        - {id: docs, prompt: x, edits: [docs/**]}
        """
    )
    quick = batching.next_batch(plan, state_of(plan), auto_approve=True, explain=False)
    assert quick == batching.Proposal(("deploy",), (), (), True)


def test_the_plan_view_skips_only_the_pairs_on_one_chain_and_knows_shared_mode() -> None:
    plan = plan_of(
        """\
        - {id: api, prompt: x, edits: ["src/api/**"]}
        - {id: after, prompt: x, edits: [docs/**], depends_on: [api]}
        - {id: fix, prompt: x, edits: [src/api/login.py]}
        - {id: loose, prompt: x}
        """
    )
    assert batching.declared_overlaps(plan, "worktree") == [
        ("api", "fix", "edits overlap with api on src/api/login.py / src/api/**"),
    ]
    assert ("after", "loose", "loose has no declared edits and runs alone in shared mode") in (
        batching.declared_overlaps(plan, "shared")
    )


_PLAIN = ["src", "src/a.py", "src/b.py", "src/", "docs/x.md", "lib", "a.py", "lib/conf.toml"]
_GLOBS = st.sampled_from(_PLAIN * 4 + ["src/*.py", "**/a.py"])  # mostly plain paths
_RESOURCES = st.sampled_from([[], [], [], ["db"], ["gpu"]])
_SHARED = st.sampled_from([[], [], [], ["src/a.py"], ["lib/conf.toml"]])


@given(
    st.lists(_GLOBS, max_size=3),
    st.lists(_GLOBS, max_size=2),
    st.lists(_GLOBS, max_size=3),
    st.lists(_GLOBS, max_size=2),
    _RESOURCES,
    _RESOURCES,
    _SHARED,
    st.booleans(),
    st.sampled_from(["worktree", "shared", "none"]),
)
@settings(max_examples=400, deadline=None)
def test_tasks_the_path_index_clears_have_no_conflict_reason(
    edits_a: list[str],
    reads_a: list[str],
    edits_b: list[str],
    reads_b: list[str],
    res_a: list[str],
    res_b: list[str],
    shared: list[str],
    stale_ok: bool,
    isolation: str,
) -> None:
    """The batcher skips comparing a task with a group its paths cannot meet (issue 15:
    a thousand ready tasks against sixteen running ones, every pass): never one with
    which conflict_reason would have found something."""
    import json

    def spec(name: str, edits: list[str], reads: list[str], res: list[str]) -> str:
        return (
            f"- {{id: {name}, prompt: x, edits: {json.dumps(edits)}, reads: {json.dumps(reads)}, "
            f"resources: {json.dumps(res)}, reads_stale_ok: {str(stale_ok).lower()}}}\n"
        )

    plan = plan_of(
        spec("a", edits_a, reads_a, res_a) + spec("b", edits_b, reads_b, res_b),
        shared_files=json.dumps(shared),
    )
    for task, other in ((plan.task("a"), plan.task("b")), (plan.task("b"), plan.task("a"))):
        group = batching._Index()
        group.add(batching._plain_paths(plan, other))
        if group.clear_of(batching._plain_paths(plan, task)):
            assert batching.conflict_reason(plan, task, other, isolation=isolation) == ""
            assert batching.conflict_reason(plan, other, task, isolation=isolation) == ""
