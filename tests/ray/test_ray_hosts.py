"""A node's host on a real local Ray cluster: one that cannot start says why, and a
clone taken again by a later attempt keeps nothing of the earlier agent's git folder."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from delegate_tui.core.events import TaskCommitted, TaskStarted
from delegate_tui.core.plan import Plan
from tests.conftest import git, logging_git, run_engine
from tests.ray.conftest import LEAN, NODE_B

pytestmark = [pytest.mark.e2e, pytest.mark.ray, pytest.mark.xdist_group("ray_cluster")]
PlanWriter = Callable[..., Plan]

NOT_INSTALLED = """\
import sys


class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "delegate_tui":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


sys.meta_path.insert(0, NotInstalled())
"""


def plan_text(repo: Path, tasks: str, max_parallel: int = 4) -> str:
    return (
        f"name: hosts\nrepo: {repo}\nexecutor: ray\nmax_parallel: {max_parallel}\ntasks:\n"
        + textwrap.indent(textwrap.dedent(tasks), "  ")
    )


def test_a_node_whose_host_cannot_start_fails_the_attempt_with_the_hosts_error(
    ray_cluster: Any,
    repo: Path,
    write_plan: PlanWriter,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A node where delegate-tui is not installed: its Pythons find no module of that name
    # (a site hook on their path; Ray puts the driver's own folder first on it).
    hook = tmp_path / "no-delegate-tui"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(NOT_INSTALLED)
    with monkeypatch.context() as env:  # the new node's processes inherit it; nothing else
        env.setenv("PYTHONPATH", str(hook))
        broken = ray_cluster.add_node(
            num_cpus=1, node_ip_address="127.0.0.1", resources={"broken": 1}, **LEAN
        )
    try:
        ray_cluster.wait_for_nodes()
        plan = write_plan(
            plan_text(
                repo,
                """\
                - {id: t, agent: shell, edits: [t.txt], resources: [broken], command: "echo never > t.txt"}
                - {id: fine, agent: shell, edits: [f.txt], command: "echo ok > f.txt"}
                """,
            )
        )
        state, recorder, _ = run_engine(plan)
    finally:
        ray_cluster.remove_node(broken)
    task = state.tasks["t"]
    reason = task.attempts[-1].reason
    assert task.status == "failed", reason
    assert "the Ray host could not start on 127.0.0.1/" in reason, reason
    assert "No module named 'delegate_tui'" in reason and "pip install" in reason, reason
    assert "node lost" not in reason
    assert not [e for e in recorder.of(TaskStarted) if isinstance(e, TaskStarted) and e.task == "t"]
    assert state.tasks["fine"].status == "succeeded"


def test_a_clone_taken_again_keeps_no_hook_or_config_of_the_earlier_agent(
    ray_cluster: Any, repo: Path, write_plan: PlanWriter, tmp_path: Path
) -> None:
    seen = tmp_path / "seen"
    seen.mkdir()
    # The first agent plants a hook, an alias and a hooks path in its clone's .git.
    (tmp_path / "plant.sh").write_text(
        textwrap.dedent(
            f"""\
            stat -c %i . > {seen}/clone-plant
            printf '#!/bin/sh\\ntouch {seen}/hooked\\n' > .git/hooks/pre-commit
            chmod +x .git/hooks/pre-commit
            git config alias.planted '!touch {seen}/aliased'
            git config core.hooksPath .git/hooks
            echo plant > a.txt
            """
        )
    )
    # The next agent on that node commits, as agents do: a planted hook would run.
    (tmp_path / "later.sh").write_text(
        textwrap.dedent(
            f"""\
            stat -c %i . > {seen}/clone-later
            ls -A .git/hooks > {seen}/hooks-later
            git config --local --list > {seen}/config-later
            echo later > b.txt
            git add b.txt
            git -c user.name=Agent -c user.email=agent@example.invalid commit -qm later
            git planted 2>/dev/null || true
            """
        )
    )
    # One at a time, on one node: the second attempt takes the first one's clone.
    plan = write_plan(
        plan_text(
            repo,
            f"""\
            - {{id: plant, agent: shell, edits: [a.txt], resources: [{NODE_B}], command: "sh {tmp_path}/plant.sh"}}
            - {{id: later, agent: shell, edits: [b.txt], resources: [{NODE_B}], depends_on: [plant], command: "sh {tmp_path}/later.sh"}}
            """,
            max_parallel=1,
        )
    )
    state, _, _ = run_engine(plan)
    assert state.status == "succeeded", {t.id: t.attempts[-1].reason for t in state.tasks.values()}
    assert (seen / "clone-later").read_text() == (seen / "clone-plant").read_text(), (
        "the later attempt got a clone of its own: nothing was taken again"
    )
    assert not (seen / "hooked").exists(), "the earlier agent's hook ran"
    assert not (seen / "aliased").exists(), "the earlier agent's alias ran"
    assert (seen / "hooks-later").read_text() == ""
    config = (seen / "config-later").read_text()
    assert "planted" not in config and "hookspath" not in config.lower(), config
    assert git(repo, "show", f"{state.integration_tip}:b.txt") == "later\n"


def test_the_clones_checkout_goes_on_after_its_call_and_its_first_process_waits_for_it(
    ray_cluster: Any, repo: Path
) -> None:
    """A node's host answers the attempt's prepare call before the clone is checked out
    (the checkout overlaps the reply's way back and the engine's own preparation); the
    first process starts in the checked-out clone, and a checkout that fails fails it
    with git's words. An attempt that never starts a process gives its clone back."""
    import asyncio

    from delegate_tui.core.ray_clones import make_pack
    from delegate_tui.core.ray_host import NodeHost
    from delegate_tui.core.workspace import GitError

    tip = git(repo, "rev-parse", "HEAD").strip()
    base = make_pack(repo, tip)

    async def main() -> None:
        host = NodeHost()
        run = "checkout-test"
        await host.begin(run, 1.0, [base], tip, 0)
        try:
            info = await host.prepare(run, 1.0, f"{run}/t-1", [base], tip, [], tip, {})
            assert not (Path(info["work"]) / "README.md").exists(), "checked out in the call"
            reply = await host.spawn(
                f"{run}/t-1", ["cat", "README.md"], {}, "pipes", (80, 24), "devnull", {}, False, ""
            )
            assert reply["checkout_s"] > 0 and reply["checkout_wait_s"] >= 0
            out, polled = bytearray(), dict[str, Any](exit=None)
            while polled["exit"] is None:  # as the engine reads it
                polled = await host.poll(f"{run}/t-1", 1.0)
                out += polled["out"]
            assert polled["exit"] == 0 and bytes(out) == b"# test repo\n"
            await host.cleanup(f"{run}/t-1")
            # A start commit the node does not have: the first process fails, as git says.
            await host.prepare(run, 1.0, f"{run}/t-2", [base], tip, [], "0" * 40, {})
            with pytest.raises(GitError):
                await host.spawn(
                    f"{run}/t-2", ["true"], {}, "pipes", (80, 24), "devnull", {}, False, ""
                )
            # Placed, never started: its clone (checked out meanwhile) is given back.
            await host.prepare(run, 1.0, f"{run}/t-3", [base], tip, [], tip, {})
            await host.cleanup(f"{run}/t-3")
            await host.prepare(run, 1.0, f"{run}/t-4", [base], tip, [], tip, {})
            reply = await host.spawn(
                f"{run}/t-4", ["true"], {}, "pipes", (80, 24), "devnull", {}, False, ""
            )
            assert reply["warm"], "no clone given back was taken again"
        finally:
            await host.forget_run(run)
            if host._supervisor is not None:
                await host._supervisor.close()

    asyncio.run(main())


def test_the_exits_change_set_comes_in_the_exits_own_reply(ray_cluster: Any, repo: Path) -> None:
    """The change set taken at a process's exit travels with the exit: one reply, not a
    reply with the change set and another poll for the exit."""
    import asyncio

    from delegate_tui.core.ray_clones import make_pack
    from delegate_tui.core.ray_host import NodeHost

    tip = git(repo, "rev-parse", "HEAD").strip()
    base = make_pack(repo, tip)

    async def main() -> None:
        host, run = NodeHost(), "exit-reply-test"
        try:
            await host.prepare(run, 1.0, f"{run}/t-1", [base], tip, [], tip, {})
            command = ["sh", "-c", "sleep 0.2; echo new > new.txt"]
            # Run-folder files to read back at the exit: many, so that reading them takes
            # long enough for a poll woken by the change set alone to answer first.
            files = {f"f{n}": b"x" for n in range(3000)}
            await host.spawn(
                f"{run}/t-1", command, {}, "pipes", (80, 24), "devnull", files, False, ""
            )
            replies = [await host.poll(f"{run}/t-1", 5.0)]
            while replies[-1]["exit"] is None:
                replies.append(await host.poll(f"{run}/t-1", 5.0))
            *before, last = replies
            assert not [r for r in before if r["snap"] is not None], "the change set came alone"
            assert last["exit"] == 0 and last["settled"] and len(last["files"]) == 3000
            assert last["snap"]["files"] == {"new.txt": (0o100644, b"new\n")}
        finally:
            await host.forget_run(run)
            if host._supervisor is not None:
                await host._supervisor.close()

    asyncio.run(main())


def test_a_remote_agents_work_is_committed_from_the_last_look_at_its_worktree(
    ray_cluster: Any,
    repo: Path,
    tmp_path: Path,
    write_plan: PlanWriter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When the exit's change set came with the exit (nothing left to collect), the
    conflict monitor's last look at the task's worktree here is the commit, as for a
    local agent: git reads the worktree once, not again for the commit."""
    log = logging_git(tmp_path / "bin", monkeypatch)  # this process's: the nodes started before
    command = "echo new > new.txt && echo loose > loose.txt && rm src/shared.py"
    plan = write_plan(
        plan_text(
            repo,
            f'- {{id: work, agent: shell, edits: [new.txt, loose.txt, src], command: "{command}"}}',
        )
    )
    state, recorder, _ = run_engine(plan)
    assert state.status == "succeeded", state.tasks["work"].attempts[-1].reason
    (committed,) = recorder.of(TaskCommitted)
    assert sorted((f.path, f.status) for f in committed.changed) == [
        ("loose.txt", "A"),
        ("new.txt", "A"),
        ("src/shared.py", "D"),
    ]
    assert git(repo, "show", f"{committed.commit}:new.txt") == "new\n"
    worktree = state.tasks["work"].attempts[-1].workdir
    adds = [
        line
        for line in log.read_text().splitlines()
        if line.startswith(f"{worktree} :: ") and " add -A" in line
    ]
    assert len(adds) == 1, adds


def test_a_process_asked_for_before_its_prepare_call_is_done_waits_for_it(
    ray_cluster: Any, repo: Path
) -> None:
    """The engine does not wait for an attempt's prepare call: its first process (or its
    cleanup) may reach the host first, and waits for the clone there."""
    import asyncio

    from delegate_tui.core.ray_clones import make_pack
    from delegate_tui.core.ray_host import NodeHost, attempt_folder

    tip = git(repo, "rev-parse", "HEAD").strip()
    base = make_pack(repo, tip)

    async def main() -> None:
        host, run = NodeHost(), "early-spawn-test"
        await host.begin(run, 1.0, [base], tip, 1)
        try:
            key = f"{run}/t-1"
            spawning = asyncio.ensure_future(
                host.spawn(
                    key, ["cat", "README.md"], {}, "pipes", (80, 24), "devnull", {}, False, ""
                )
            )
            await asyncio.sleep(0.2)
            assert not spawning.done()
            info = await host.prepare(run, 1.0, key, [base], tip, [], tip, {})
            assert info["work"] == attempt_folder(host.where(), key) + "/work"
            reply = await spawning
            assert reply["prepare_wait_s"] > 0.1
            out, polled = bytearray(), dict[str, Any](exit=None)
            while polled["exit"] is None:
                polled = await host.poll(key, 1.0)
                out += polled["out"]
            assert polled["exit"] == 0 and bytes(out) == b"# test repo\n"
            await host.cleanup(key)
            # A cleanup that comes while the prepare call runs waits for it, then gives
            # the clone back: the next attempt takes it.
            preparing = asyncio.ensure_future(
                host.prepare(run, 1.0, f"{run}/t-2", [base], tip, [], tip, {})
            )
            await asyncio.sleep(0)
            await host.cleanup(f"{run}/t-2")
            assert preparing.done() and f"{run}/t-2" not in host._attempts
            await host.prepare(run, 1.0, f"{run}/t-3", [base], tip, [], tip, {})
            reply = await host.spawn(
                f"{run}/t-3", ["true"], {}, "pipes", (80, 24), "devnull", {}, False, ""
            )
            assert reply["warm"], "the clone given back was not taken again"
        finally:
            await host.forget_run(run)
            if host._supervisor is not None:
                await host._supervisor.close()

    asyncio.run(main())
