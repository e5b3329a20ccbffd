"""With DELEGATE_AGENT_NICE=N a run service starts its agents N nicer than itself.

Read back from /proc for real agent processes: their niceness and, where Linux
schedules sessions as groups, their session's (autogroup's) niceness, which is
the one that weighs against the service and the UI. Off by default, and a
headless run (one process, no UI) leaves agents as they are.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from delegate_tui.core import service as service_module
from delegate_tui.core.engine import Engine, EngineOptions
from delegate_tui.core.plan import Plan
from delegate_tui.core.process import autogroups_enabled
from delegate_tui.core.service import RunService

pytestmark = pytest.mark.e2e

OWN_NICE = os.getpriority(os.PRIO_PROCESS, 0)


def nice_of(pid: int) -> int:
    """A process's niceness, as the kernel has it (/proc/PID/stat, field 19)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[16])


def autogroup_nice(pid: int) -> int:
    """The niceness of a process's autogroup (/proc/PID/autogroup: "/autogroup-N nice K")."""
    return int(Path(f"/proc/{pid}/autogroup").read_text().split()[-1])


def plan_with_agent(write_plan: Callable[..., Plan], repo: Path, folder: Path) -> Plan:
    """One agent that starts a child, notes both pids, and waits."""
    command = f"sleep 30 & echo $! > {folder}/child.pid; echo $$ > {folder}/agent.pid; wait"
    return write_plan(
        f"name: p\nrepo: {repo}\nagent: shell\napprove: auto\ntasks:\n"
        f"  - {{id: a, command: {command!r}, edits: [a]}}\n"
    )


async def agent_pids(folder: Path) -> tuple[int, int]:
    deadline = time.monotonic() + 20
    while not (folder / "child.pid").exists() or not (folder / "agent.pid").exists():
        assert time.monotonic() < deadline, "the agent did not start"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # its session's niceness is set just after it starts
    return int((folder / "agent.pid").read_text()), int((folder / "child.pid").read_text())


async def served_agent(
    write_plan: Callable[..., Plan], repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[int, int]:
    """Start the plan under a run service; the niceness of its agent and the agent's
    child, and of the agent's autogroup (-1 without autogroups). Ends the run."""
    monkeypatch.setattr(service_module, "LINGER_S", 0.2)  # no view comes
    engine = Engine(plan_with_agent(write_plan, repo, tmp_path), EngineOptions(kill_grace_s=1.0))
    serving = asyncio.create_task(RunService(engine).run())
    try:
        agent, child = await agent_pids(tmp_path)
        assert nice_of(child) == nice_of(agent)  # what the agent runs inherits it
        group = autogroup_nice(agent) if autogroups_enabled() else -1
        return nice_of(agent), group
    finally:
        engine.stop("test over")
        await asyncio.wait_for(serving, 20)


async def test_delegate_agent_nice_starts_a_services_agents_nicer_than_it(
    repo: Path, write_plan: Callable[..., Plan], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DELEGATE_AGENT_NICE", "5")
    nice, group = await served_agent(write_plan, repo, tmp_path, monkeypatch)
    assert nice == min(19, OWN_NICE + 5)
    if group >= 0:  # each agent is a session: its group's niceness is what counts
        assert group == 5


async def test_by_default_a_services_agents_run_at_its_priority(
    repo: Path, write_plan: Callable[..., Plan], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DELEGATE_AGENT_NICE", raising=False)
    nice, group = await served_agent(write_plan, repo, tmp_path, monkeypatch)
    assert nice == OWN_NICE
    assert group in (-1, 0)


async def test_a_headless_run_leaves_agents_as_they_are(
    repo: Path, write_plan: Callable[..., Plan], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DELEGATE_AGENT_NICE", "5")
    engine = Engine(plan_with_agent(write_plan, repo, tmp_path), EngineOptions(kill_grace_s=1.0))
    running = asyncio.create_task(engine.run())
    try:
        agent, _ = await agent_pids(tmp_path)
        assert nice_of(agent) == OWN_NICE
        if autogroups_enabled():
            assert autogroup_nice(agent) == 0
    finally:
        engine.stop("test over")
        await asyncio.wait_for(running, 20)


#: Root may change autogroups' niceness as often as it likes: the test's child runs
#: without CAP_SYS_ADMIN (util-linux's setpriv), under the limit users have.
AS_A_USER = (
    [] if os.geteuid() != 0 else ["setpriv", "--bounding-set=-sys_admin", "--inh-caps=-sys_admin"]
)


@pytest.mark.skipif(not autogroups_enabled(), reason="Linux's autogroups are off here")
@pytest.mark.skipif(
    bool(AS_A_USER) and shutil.which("setpriv") is None,
    reason="running as root: needs setpriv (util-linux) to give up CAP_SYS_ADMIN",
)
def test_agents_started_together_by_a_user_all_get_their_groups_niceness() -> None:
    """A user's process may change one autogroup's niceness per 100 ms (for the whole
    machine): agents started at once get theirs over the next second."""
    script = textwrap.dedent(
        """\
        import asyncio, os, sys
        from pathlib import Path
        from delegate_tui.core.process import AgentProcess

        async def main():
            procs = [
                AgentProcess.spawn(["sleep", "10"], cwd="/", env={"PATH": os.environ["PATH"]},
                                   on_output=lambda data: None, transport=t, nice=3)
                for t in ("pipes", "pty", "pipes", "pty")
            ]
            await asyncio.sleep(1.5)
            for p in procs:
                print(Path(f"/proc/{p.pid}/autogroup").read_text().split()[-1])
            for p in procs:
                p.signal_group(9)
                await p.wait()

        asyncio.run(main())
        """
    )
    result = subprocess.run(
        [*AS_A_USER, sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["3", "3", "3", "3"]
