"""Sandboxed agents under real bubblewrap: real processes, real git, real kernel refusals.

Each shell task below tries its writes with ``if ... then echo ESCAPED`` so that a
write the kernel allowed shows up in the output, and a refused one as the shell's
own ``Read-only file system``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from delegate_tui.core import sandbox
from delegate_tui.core.engine import Engine
from delegate_tui.core.events import (
    FilesChanged,
    SandboxDenied,
    TaskOutput,
    TaskSandboxed,
)
from delegate_tui.core.plan import Plan
from delegate_tui.core.reaper import group_alive
from delegate_tui.core.replay import final_state
from delegate_tui.core.runlog import read_events
from delegate_tui.core.state import RunState
from tests.conftest import Recorder, git, run_engine

SUPPORT = sandbox.probe()
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not SUPPORT.ok, reason=f"no sandbox on this machine: {SUPPORT.reason}"),
]
PlanWriter = Callable[..., Plan]
RUN = (sys.executable, "-m", "delegate_tui", "run")


@pytest.fixture(autouse=True)
def scratch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("mine\n")
    monkeypatch.setenv("HOME", str(home))
    yield home


def plan_text(repo: Path, tasks: str, **top: object) -> str:
    head = f"name: sandboxed\nrepo: {repo}\n" + "".join(f"{k}: {v}\n" for k, v in top.items())
    return head + "tasks:\n" + textwrap.indent(textwrap.dedent(tasks), "  ")


def output_of(recorder: Recorder, task: str) -> str:
    data = b"".join(e.data for e in recorder.of(TaskOutput) if e.task == task)
    return data.decode(errors="replace")


def denied(recorder: Recorder, task: str) -> list[str]:
    return [e.path for e in recorder.of(SandboxDenied) if e.task == task]


def attempt_write(path: str, label: str) -> str:
    """Shell that tries to write ``path`` and says ESCAPED-label if the kernel let it."""
    return f'if echo x > "{path}"; then echo ESCAPED-{label}; fi; '


def run_api(
    repo: Path, write_plan: PlanWriter, command: str, **options: Any
) -> tuple[RunState, Recorder, str]:
    """A run of one shell task ``api`` (edits ``src/**``) under ``sandbox: worktree``:
    its state, its events and the task's output."""
    plan = write_plan(
        plan_text(
            repo,
            f"- id: api\n  agent: shell\n  edits: ['src/**']\n  command: {json.dumps(command)}\n",
            sandbox="worktree",
        )
    )
    state, recorder, _ = run_engine(plan, **options)
    return state, recorder, output_of(recorder, "api")


def integration_file(state_repo: Path, branch: str, path: str) -> str | None:
    proc = subprocess.run(
        ["git", "show", f"{branch}:{path}"], cwd=state_repo, capture_output=True, text=True
    )
    return proc.stdout if proc.returncode == 0 else None


# ---------------------------------------------------------------- scope and worktree


@pytest.mark.parametrize("mode", ["scope", "worktree"])
def test_writes_inside_and_outside_the_scope(
    mode: str, repo: Path, write_plan: PlanWriter, scratch_home: Path
) -> None:
    command = (
        "mkdir -p src/api && echo 'ROUTE = 1' > src/api/routes.py && echo in-scope-ok; "
        + attempt_write("README.md", "worktree-root")
        + attempt_write(str(repo / "README.md"), "checkout")
        + attempt_write(str(scratch_home / "notes.txt"), "home")
        + attempt_write(str(repo / ".git" / "config"), "git-config")
        + "true"
    )
    plan = write_plan(
        plan_text(
            repo,
            f"- id: api\n  agent: shell\n  edits: ['src/api/**']\n  command: {json.dumps(command)}\n",
            sandbox=mode,
        )
    )
    state, recorder, _ = run_engine(plan)
    out = output_of(recorder, "api")
    task = state.tasks["api"]
    assert task.status == "succeeded", out
    assert "in-scope-ok" in out
    merged = integration_file(repo, state.integration_branch, "src/api/routes.py")
    assert merged == "ROUTE = 1\n", "the write inside the scope is merged"
    # The operator's checkout, the rest of $HOME and the repository's config: refused in both.
    for label in ("checkout", "home", "git-config"):
        assert f"ESCAPED-{label}" not in out
    assert (repo / "README.md").read_text() == "# test repo\n"
    assert (scratch_home / "notes.txt").read_text() == "mine\n"
    assert "Read-only file system" in out
    refused = denied(recorder, "api")
    assert str(repo / "README.md") in refused and str(scratch_home / "notes.txt") in refused
    # Outside the scope but inside the worktree: refused under scope only.
    readme = integration_file(repo, state.integration_branch, "README.md")
    if mode == "scope":
        assert "ESCAPED-worktree-root" not in out and "README.md" in refused
        assert readme == "# test repo\n"
    else:
        assert "ESCAPED-worktree-root" in out and "README.md" not in refused
        assert readme == "x\n"
    (sandboxed,) = recorder.of(TaskSandboxed)
    assert sandboxed.mode == mode
    assert task.attempts[0].sandbox == f"{mode}, network on"
    assert task.attempts[0].sandbox_denied == tuple(refused)


@pytest.mark.parametrize("mode", ["worktree", "scope"])
def test_another_tasks_worktree_is_read_only(mode: str, repo: Path, write_plan: PlanWriter) -> None:
    nosy = (
        "sleep 0.5; echo nosy > nosy.txt; "
        + attempt_write("$DELEGATE_WORKDIR/../slow-1/planted.txt", "sibling")
        + "ls ../slow-1 >/dev/null && echo saw-sibling"
    )
    plan = write_plan(
        plan_text(
            repo,
            f"""\
            - id: slow
              agent: shell
              edits: [slow.txt]
              command: "sleep 2; echo slow > slow.txt"
            - id: nosy
              agent: shell
              edits: [nosy.txt]
              command: {json.dumps(nosy)}
            """,
            sandbox=mode,
        )
    )
    state, recorder, _ = run_engine(plan)
    out = output_of(recorder, "nosy")
    assert state.tasks["nosy"].status == "succeeded", out
    assert state.tasks["slow"].status == "succeeded"
    assert "saw-sibling" in out, "the sibling worktree is there to read"
    assert "ESCAPED-sibling" not in out and "Read-only file system" in out
    assert integration_file(repo, state.integration_branch, "planted.txt") is None
    refused = denied(recorder, "nosy")
    assert any(p.endswith("slow-1/planted.txt") for p in refused), (refused, out)


def test_a_refused_write_that_fails_the_agent_says_so_in_its_outcome(
    repo: Path, write_plan: PlanWriter
) -> None:
    target = repo / "src" / "shared.py"
    plan = write_plan(
        plan_text(
            repo,
            "- id: stray\n  agent: shell\n  edits: [docs/**]\n"
            f"  command: {json.dumps(f'echo hacked > {target}')}\n",
            sandbox="scope",
        )
    )
    state, _, engine = run_engine(plan)
    task = state.tasks["stray"]
    assert task.status == "failed"
    reason = task.attempts[-1].reason
    assert "sandbox (scope, network on) refused writes to" in reason and str(target) in reason
    assert "hacked" not in target.read_text()
    # The log holds the same: the sandbox and the refusal, for replay and stats.
    logged = [type(e).__name__ for e in read_events(engine.log_path)]
    assert logged.index("TaskSandboxed") < logged.index("TaskStarted")
    assert "SandboxDenied" in logged
    from delegate_tui import report
    from delegate_tui.core import metrics

    lines = report.stats_lines(state, metrics.stats(state))
    assert f"    sandbox (scope, network on) refused writes to {target}" in lines


def test_a_consult_task_under_scope_can_write_nothing(repo: Path, write_plan: PlanWriter) -> None:
    plan = write_plan(
        plan_text(
            repo,
            "- id: ask\n  agent: shell\n  kind: consult\n  command: "
            + json.dumps(attempt_write("notes.md", "consult") + "echo answered")
            + "\n",
            sandbox="scope",
        )
    )
    state, recorder, _ = run_engine(plan)
    out = output_of(recorder, "ask")
    assert state.tasks["ask"].status == "succeeded", out
    assert "answered" in out and "ESCAPED-consult" not in out
    assert denied(recorder, "ask") == ["notes.md"]


@pytest.mark.parametrize("isolation", ["shared", "none"])
def test_in_the_operators_own_folder_git_and_the_run_log_stay_read_only(
    isolation: str, repo: Path, tmp_path: Path, write_plan: PlanWriter
) -> None:
    folder = repo
    if isolation == "none":
        folder = tmp_path / "plain"
        folder.mkdir()
    command = (
        "echo new > made.txt && echo made; "
        + attempt_write(".git/config", "git")
        + 'for log in .delegate/runs/*/events.jsonl; do if echo forged >> "$log"; '
        "then echo ESCAPED-log; fi; done; true"
    )
    plan = write_plan(
        plan_text(
            folder,
            f"- id: here\n  agent: shell\n  command: {json.dumps(command)}\n",
            sandbox="worktree",
            isolation=isolation,
        )
    )
    state, recorder, engine = run_engine(plan)
    out = output_of(recorder, "here")
    assert state.tasks["here"].status == "succeeded", out
    assert "made" in out and (folder / "made.txt").read_text() == "new\n"
    assert "ESCAPED" not in out
    assert "Read-only file system" in out
    lines = engine.log_path.read_bytes().splitlines()
    assert b"forged" not in lines, "no line of the run log was appended by the agent"
    assert all(json.loads(line) for line in lines)


# ---------------------------------------------------------------- git inside the sandbox


def test_the_agent_commits_on_its_own_branch_and_nowhere_else(
    repo: Path, write_plan: PlanWriter
) -> None:
    command = (
        "mkdir -p src/api && echo 'A = 1' > src/api/a.py && git add -A "
        "&& git commit -qm 'the agent commits itself' && echo committed; "
        "if git branch rogue 2>&1; then echo ESCAPED-branch; fi; "
        "if git config user.name Rogue; then echo ESCAPED-config; fi; "
        "if git update-ref refs/heads/main HEAD; then echo ESCAPED-main; fi; "
        "echo 'B = 2' > src/api/b.py"
    )
    plan = write_plan(
        plan_text(
            repo,
            f"- id: api\n  agent: shell\n  edits: ['src/api/**']\n  command: {json.dumps(command)}\n",
            sandbox="scope",
        )
    )
    main_before = git(repo, "rev-parse", "main").strip()
    state, recorder, _ = run_engine(plan)
    out = output_of(recorder, "api")
    assert state.tasks["api"].status == "succeeded", out
    assert "committed" in out
    assert "ESCAPED" not in out
    assert git(repo, "rev-parse", "main").strip() == main_before
    assert "rogue" not in git(repo, "branch", "--list", "rogue")
    assert "Rogue" not in git(repo, "config", "--get", "user.name")
    # One commit on the attempt's start (the engine's, outside the sandbox) with all
    # the agent left, its own commit's subject in the message.
    attempt = state.tasks["api"].attempts[0]
    assert git(repo, "rev-parse", f"{attempt.commit}^@").split() == [attempt.base_commit]
    assert "- the agent commits itself" in git(repo, "log", "-1", "--format=%B", attempt.commit)
    tip = state.integration_branch
    assert integration_file(repo, tip, "src/api/a.py") == "A = 1\n"
    assert integration_file(repo, tip, "src/api/b.py") == "B = 2\n"


def test_the_agent_can_neither_point_git_elsewhere_nor_take_history_away(
    repo: Path, write_plan: PlanWriter
) -> None:
    git(repo, "repack", "-a", "-d", "-q")  # the repository's history, in a pack
    common = repo / ".git"
    fake = "/tmp/fake-repository"
    command = (
        "gitdir=$(git rev-parse --absolute-git-dir); "
        + attempt_write("$gitdir/commondir", "commondir").replace("echo x", f"echo {fake}")
        + attempt_write("$gitdir/gitdir", "gitdir")
        + attempt_write("$gitdir/config.worktree", "worktree-config")
        + attempt_write(str(common / "objects/info/alternates"), "alternates")
        + f'if mv "{common}/objects/pack" "{common}/objects/pack.gone"; then echo ESCAPED-mv; fi; '
        + f'if rm -f "{common}"/objects/pack/*.pack; then ls "{common}/objects/pack" | grep -q pack '
        + "|| echo ESCAPED-rm; fi; "
        + "mkdir -p src && echo 'A = 1' > src/a.py && git add -A "
        + "&& git commit -qm 'still commits' && echo committed"
    )
    state, _, out = run_api(repo, write_plan, command)
    assert state.tasks["api"].status == "succeeded", out
    assert "ESCAPED" not in out
    assert "committed" in out, "new loose objects and the task's own branch stay writable"
    assert list((common / "objects/pack").glob("*.pack")), "the pack is still there"
    assert git(repo, "log", "--format=%s", "main").strip().splitlines()[-1] == "initial"
    checked = git(repo, "fsck", "--connectivity-only")  # the agent's own commit dangles
    assert "missing" not in checked and "broken" not in checked, checked
    tip = state.integration_branch
    assert integration_file(repo, tip, "src/a.py") == "A = 1\n"


def test_the_agent_can_delete_no_object_and_its_own_commits_are_taken_in_checked(
    repo: Path, write_plan: PlanWriter
) -> None:
    """An operator's recent commit is loose objects until git packs it: a sandboxed agent
    must not be able to delete them. Its own objects go to a store of its own and come
    into the repository when it ends, through git's check of untrusted objects."""
    git(repo, "switch", "-q", "-c", "wip")
    (repo / "wip.txt").write_text("the operator's unpacked work\n")
    git(repo, "add", "wip.txt")
    git(repo, "commit", "-qm", "wip")
    git(repo, "switch", "-q", "main")
    loose = sorted(p for p in (repo / ".git/objects").glob("??/*"))
    command = (
        "common=$(git rev-parse --path-format=absolute --git-common-dir); "
        'for f in "$common"/objects/??/*; do if rm -f "$f"; then echo ESCAPED-rm; fi; done; '
        + attempt_write("$gitdir/delegate-index", "own-index").replace(
            "$gitdir", "$(git rev-parse --absolute-git-dir)"
        )
        + "mkdir -p src && echo 'A = 1' > src/a.py && git add -A && git commit -qm first "
        + "&& echo 'B = 2' > src/b.py && git add -A && git commit -qm second && echo committed"
    )
    state, _, out = run_api(repo, write_plan, command)
    assert state.tasks["api"].status == "succeeded", out
    assert "ESCAPED" not in out and "Read-only file system" in out, out
    assert "committed" in out, "the agent's git writes its own store"
    assert all(path.exists() for path in loose), "every loose object is still there"
    assert git(repo, "show", "wip:wip.txt") == "the operator's unpacked work\n"
    fsck = subprocess.run(
        ["git", "fsck", "--full", "--strict", "--no-dangling"],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    assert fsck.returncode == 0 and not fsck.stderr.strip(), fsck.stderr
    # Its commits were taken in (their subjects are read for the engine's commit), and
    # its store is gone.
    attempt = state.tasks["api"].attempts[0]
    body = git(repo, "log", "-1", "--format=%B", attempt.commit)
    assert "The agent's own commits:\n- first\n- second" in body, body
    assert not list((repo / ".git/worktrees").glob("*/delegate-objects/*"))


def test_a_failed_sandboxed_agents_commits_stay_readable_in_its_kept_worktree(
    repo: Path, write_plan: PlanWriter
) -> None:
    command = "echo 'A = 1' > src/a.py && git add -A && git commit -qm 'half done' && exit 3"
    state, recorder, _ = run_api(repo, write_plan, command)
    assert state.tasks["api"].status == "failed", output_of(recorder, "api")
    kept = Path(state.tasks["api"].attempts[0].workdir)
    assert kept.is_dir(), "unmerged work is kept for inspection"
    assert git(kept, "log", "-1", "--format=%s").strip() == "half done"
    assert git(kept, "show", "HEAD:src/a.py") == "A = 1\n"


def test_what_a_sandboxed_agent_stages_is_seen_while_it_runs(
    repo: Path, write_plan: PlanWriter
) -> None:
    """The agent's index names objects of its own store; the engine looks at the worktree
    through its own index, so its look works while the agent runs."""
    seen = Path(os.environ["HOME"]) / "seen"  # visible to the agent, read-only
    command = (
        # An older file than the index git writes: not "racily clean", so git trusts the
        # entry's object id without hashing the file again.
        "echo 'A = 1' > src/a.py && touch -d '-5 seconds' src/a.py && git add src/a.py "
        "&& echo staged; "
        f"for i in $(seq 100); do [ -e {seen} ] && break; sleep 0.1; done; "
        f"if [ -e {seen} ]; then echo flag-seen; else echo flag-timeout; fi"
    )

    async def during(engine: Engine, recorder: Recorder) -> None:
        while not any(
            e.task == "api" and any(f.path == "src/a.py" for f in e.files)
            for e in recorder.of(FilesChanged)
        ):
            await asyncio.sleep(0.05)
        seen.touch()

    state, _, out = run_api(repo, write_plan, command, during=during)
    assert "flag-seen" in out, out  # the engine saw the staged file while the agent ran
    assert state.tasks["api"].status == "succeeded", out


# ---------------------------------------------------------------- network


@pytest.mark.parametrize("network", ["on", "off"])
def test_network_off_cannot_reach_a_loopback_port_outside(
    network: str, repo: Path, write_plan: PlanWriter
) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    probe = (
        f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=3); "
        "print('CONNECTED')"
    )
    plan = write_plan(
        plan_text(
            repo,
            f"- id: net\n  agent: shell\n  edits: [x]\n  network: {network}\n"
            f"  command: {json.dumps([sys.executable, '-c', probe])}\n",
            sandbox="worktree",
        )
    )
    try:
        state, recorder, _ = run_engine(plan)
    finally:
        server.close()
    out = output_of(recorder, "net")
    if network == "on":
        assert state.tasks["net"].status == "succeeded" and "CONNECTED" in out, out
    else:
        assert state.tasks["net"].status == "failed" and "CONNECTED" not in out
        assert "Connection refused" in out or "Network is unreachable" in out, out
        assert state.tasks["net"].attempts[0].sandbox == "worktree, network off"


# ---------------------------------------------------------------- kill and timeout


def processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline:
                found.append(int(entry.name))
    return found


def test_timeout_ends_a_sandboxed_agent_and_what_it_started_even_in_a_new_session(
    repo: Path, write_plan: PlanWriter
) -> None:
    marker = f"{time.time_ns() % 10**6 + 1000}.25"  # a unique sleep length
    plan = write_plan(
        plan_text(
            repo,
            f"- {{id: slow, agent: shell, edits: [x], timeout: 1s,"
            f" command: 'setsid sleep {marker} & trap \"\" TERM; sleep {marker}'}}\n",
            sandbox="worktree",
        )
    )
    state, _, _ = run_engine(plan, kill_grace_s=0.5)
    assert state.tasks["slow"].status == "timed-out"
    pgid = state.tasks["slow"].attempts[0].pgid
    deadline = time.monotonic() + 3
    while (processes_with(f"sleep {marker}") or group_alive(pgid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not group_alive(pgid)
    # setsid left the group; the PID namespace ending with the agent took it along.
    assert processes_with(f"sleep {marker}") == []


def test_operator_kill_of_a_sandboxed_agent_leaves_nothing(
    repo: Path, write_plan: PlanWriter
) -> None:
    marker = f"{time.time_ns() % 10**6 + 1000}.5"
    plan = write_plan(
        plan_text(
            repo,
            f"- {{id: busy, agent: shell, edits: [x],"
            f" command: 'echo ready; sleep {marker} & sleep {marker}'}}\n",
            sandbox="scope",
        )
    )

    async def drive(engine: Engine, recorder: Recorder) -> None:
        import asyncio

        while "ready" not in output_of(recorder, "busy"):
            await asyncio.sleep(0.02)
        assert engine.kill("busy") == ""

    state, _, _ = run_engine(plan, during=drive, kill_grace_s=0.5)
    assert state.tasks["busy"].status == "killed"
    assert not group_alive(state.tasks["busy"].attempts[0].pgid)
    assert processes_with(f"sleep {marker}") == []


# ---------------------------------------------------------------- the demo and the command line


def test_the_demo_plan_runs_sandboxed_as_it_runs_without(tmp_path: Path) -> None:
    from delegate_tui.demo.scaffold import make_demo_repo

    outcomes = {}
    for mode in ("off", "worktree"):
        plan_path = make_demo_repo(tmp_path / mode)
        env = {**os.environ, "DELEGATE_DEMO_SPEED": "0", "NO_COLOR": "1"}
        result = subprocess.run(
            [*RUN, str(plan_path), "--headless", "--yes", "--sandbox", mode],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        (log,) = (plan_path.parent.parent / ".delegate" / "runs").glob("*/events.jsonl")
        events = list(read_events(log))
        state, _ = final_state(log)
        outcomes[mode] = (result.returncode, {t: s.status for t, s in state.tasks.items()})
        boxed = [e for e in events if isinstance(e, TaskSandboxed)]
        refused = [e for e in events if isinstance(e, SandboxDenied)]
        if mode == "worktree":
            assert len(boxed) >= 8 and not refused, result.stdout
        else:
            assert not boxed
    # The same tasks succeed (the demo's one collision is left on purpose; see the README).
    assert outcomes["worktree"] == outcomes["off"]


def test_a_sandboxed_plan_is_refused_before_anything_starts_where_bwrap_is_missing(
    repo: Path, tmp_path: Path, write_plan: PlanWriter
) -> None:
    plan = write_plan(
        plan_text(repo, "- {id: a, agent: shell, command: 'true', edits: [x]}\n", sandbox="scope")
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("git", "sh"):
        found = shutil.which(tool)
        assert found
        (bin_dir / tool).symlink_to(found)
    env = {**os.environ, "PATH": str(bin_dir), "HOME": str(tmp_path / "home")}

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*RUN, plan.source, "--headless", "--yes", *extra],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )

    refused = run()
    assert refused.returncode == 2
    assert "bubblewrap (`bwrap`) is not installed" in refused.stderr
    assert "apt-get install bubblewrap" in refused.stderr and "--sandbox off" in refused.stderr
    assert not (repo / ".delegate").exists(), "nothing was created"
    assert "delegate/" not in git(repo, "branch", "--list", "delegate/*")
    assert run("--sandbox", "off").returncode == 0  # off always works


# ---------------------------------------------------------------- the terminal, input, extras


def test_a_sandboxed_demo_agent_takes_input_in_its_terminal(
    repo: Path, write_plan: PlanWriter
) -> None:
    plan = write_plan(
        plan_text(
            repo,
            "- {id: asker, agent: demo-ask, prompt: Change it, edits: [src/q.py]}\n",
            agents="{demo-ask: {extends: demo, args: [--ask]}}",
            sandbox="scope",
        )
    )

    async def drive(engine: Engine, recorder: Recorder) -> None:
        import asyncio

        while b"[y/N]" not in output_of(recorder, "asker").encode():
            await asyncio.sleep(0.02)
        assert engine.send_input("asker", "y") == ""

    state, recorder, _ = run_engine(plan, during=drive)
    assert state.tasks["asker"].status == "succeeded"
    assert "answer: y" in output_of(recorder, "asker")
    (started,) = [e for e in recorder.events if type(e).__name__ == "TaskStarted"]
    assert started.transport == "pty"  # type: ignore[attr-defined]
    assert state.tasks["asker"].attempts[0].sandbox == "scope, network on"


def test_sandbox_writable_folders_are_writable_and_the_rest_of_home_is_not(
    repo: Path, write_plan: PlanWriter, scratch_home: Path
) -> None:
    (scratch_home / "cache").mkdir()
    command = (
        'echo cached > "$HOME/cache/entry" && echo cache-ok; '
        + attempt_write("$HOME/other.txt", "home")
        + "true"
    )
    plan = write_plan(
        plan_text(
            repo,
            f"- id: c\n  agent: shell\n  edits: [x]\n  command: {json.dumps(command)}\n",
            sandbox="worktree",
            sandbox_writable="['~/cache']",
        )
    )
    state, recorder, _ = run_engine(plan)
    out = output_of(recorder, "c")
    assert state.tasks["c"].status == "succeeded", out
    assert "cache-ok" in out and (scratch_home / "cache" / "entry").read_text() == "cached\n"
    assert "ESCAPED-home" not in out and not (scratch_home / "other.txt").exists()


def test_doctor_says_what_the_machine_supports(tmp_path: Path) -> None:
    def doctor(path: str) -> dict[str, object]:
        env = {**os.environ, "PATH": path, "HOME": str(tmp_path)}
        result = subprocess.run(
            [sys.executable, "-m", "delegate_tui", "doctor", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        data: dict[str, object] = json.loads(result.stdout)
        return data

    here = doctor(os.environ["PATH"])
    assert here["sandbox"] == {
        "ok": True,
        "bwrap": SUPPORT.bwrap,
        "version": SUPPORT.version,
        "reason": "",
    }
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "git").symlink_to(str(shutil.which("git")))
    without = doctor(str(bin_dir))["sandbox"]
    assert isinstance(without, dict) and without["ok"] is False
    assert "apt-get install bubblewrap" in without["reason"]


# ---------------------------------------------------------------- the run's own socket

COMMAND_THE_RUN = """
import glob, os, socket, sys
path = glob.glob(sys.argv[1] + "/.delegate/runs/*/control.sock")[0]
os.chdir(os.path.dirname(path))  # the path may be longer than a socket address may be
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect("control.sock")
try:
    sock.sendall(b'{"hello": 1}\\n')
except OSError:
    pass  # a refusal may come, and the connection close, before the hello is sent
print("ANSWER", sock.recv(65536).decode(errors="replace").splitlines()[0], flush=True)
try:
    sock.sendall(b'{"cmd": "stop", "args": {"reason": "the agent"}, "id": 1}\\n')
    sock.recv(65536)
except OSError:
    pass  # refused: the service closed the connection
"""


async def test_a_sandboxed_agent_cannot_command_its_own_run(
    repo: Path, write_plan: PlanWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It runs as the operator's own user, so only its PID namespace tells it apart."""
    import asyncio

    from delegate_tui.core import service as service_module
    from delegate_tui.core.engine import EngineOptions
    from delegate_tui.core.service import RunService

    monkeypatch.setattr(service_module, "LINGER_S", 0.2)
    command = [sys.executable, "-c", COMMAND_THE_RUN, str(repo)]
    plan = write_plan(
        plan_text(
            repo,
            f"- id: rogue\n  agent: shell\n  edits: [x]\n  command: {json.dumps(command)}\n",
            sandbox="worktree",
        )
    )
    engine = Engine(plan, EngineOptions(auto_approve=True, kill_grace_s=1.0))
    recorder = Recorder()
    engine.subscribe(recorder)
    service = RunService(engine)
    await asyncio.wait_for(service.run(), 60)
    out = output_of(recorder, "rogue")
    assert "ANSWER" in out, out
    assert "its own PID namespace" in out
    assert "welcome" not in out
    state = engine.state
    assert state.tasks["rogue"].status == "succeeded", out
    assert state.status == "succeeded", "the agent's stop was never carried out"


def test_resume_where_bwrap_cannot_run_is_refused_and_the_log_untouched(
    tmp_path: Path, repo: Path, write_plan: PlanWriter, scratch_home: Path
) -> None:
    """The machine that resumes a run may not be the one that started it."""
    import signal

    from tests.conftest import run_cli

    plan = write_plan(
        plan_text(
            repo,
            "- id: slow\n  agent: shell\n  edits: [x]\n  command: 'printf AGENT-%s UP; sleep 30'\n",
            sandbox="worktree",
        )
    )
    env = {**os.environ, "HOME": str(scratch_home), "XDG_CONFIG_HOME": str(scratch_home / ".c")}
    proc = subprocess.Popen(
        [*RUN, str(plan.source), "--headless", "--yes"],
        cwd=repo,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    runs = repo / ".delegate" / "runs"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(
        b"AGENT-UP" in p.read_bytes() for p in runs.glob("*/events.jsonl")
    ):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 1
    log = next(runs.glob("*/events.jsonl"))
    before = log.read_bytes()
    assert b"AGENT-UP" in before
    # A PATH with git but no bwrap: this machine cannot sandbox.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "git").symlink_to(shutil.which("git") or "/usr/bin/git")
    old_path = os.environ["PATH"]
    os.environ["PATH"] = str(bin_dir)
    try:
        resumed = run_cli("resume", str(log), "--headless", "--yes", cwd=repo, home=scratch_home)
    finally:
        os.environ["PATH"] = old_path
    assert resumed.returncode == 2, resumed.stdout + resumed.stderr
    assert "bubblewrap" in resumed.stderr and "--sandbox off" in resumed.stderr
    assert log.read_bytes() == before, "nothing was written to the run's log"


def test_the_prompt_names_the_folder_the_sandbox_opens(repo: Path, write_plan: PlanWriter) -> None:
    from delegate_tui.core.events import TaskStarted

    (repo / "src" / "api").mkdir()
    (repo / "src" / "api" / "routes.py").write_text("R = 1\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "api folder")
    command = "echo 'R = 2' > src/api/routes.py && touch src/elsewhere.py"
    plan = write_plan(
        plan_text(
            repo,
            f"- id: api\n  agent: shell\n  edits: [src/api]\n  command: {json.dumps(command)}\n",
            sandbox="scope",
        )
    )
    state, recorder, _ = run_engine(plan)
    (started,) = recorder.of(TaskStarted)
    assert "you may write only under src/api/ (and /tmp)" in started.prompt, started.prompt
    assert state.tasks["api"].status == "failed", "src/ itself is not open: touch fails"
    assert "Read-only file system" in output_of(recorder, "api")


def test_the_operators_session_sockets_are_out_of_reach(
    repo: Path, write_plan: PlanWriter, scratch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only mount does not stop connect(): through a D-Bus or ssh-agent socket an
    agent would run programs outside the sandbox or sign as the operator."""
    runtime = scratch_home / "run-user"
    runtime.mkdir(mode=0o700)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(runtime / "bus"))
    server.listen(1)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("SSH_AUTH_SOCK", str(runtime / "bus"))
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={runtime / 'bus'}")
    probe = textwrap.dedent(
        f"""\
        import os, socket
        print("ENV", os.environ.get("SSH_AUTH_SOCK"), os.environ.get("DBUS_SESSION_BUS_ADDRESS"))
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect({str(runtime / "bus")!r})
            print("CONNECTED")
        except OSError as exc:
            print("REFUSED", exc.errno)
        """
    )
    plan = write_plan(
        plan_text(
            repo,
            f"- id: s\n  agent: shell\n  edits: [x]\n"
            f"  command: {json.dumps([sys.executable, '-c', probe])}\n",
            sandbox="worktree",
        )
    )
    try:
        state, recorder, _ = run_engine(plan)
    finally:
        server.close()
    out = output_of(recorder, "s")
    assert state.tasks["s"].status == "succeeded", out
    assert "ENV None None" in out
    assert "REFUSED" in out and "CONNECTED" not in out, out
