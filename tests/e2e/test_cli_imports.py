"""What each command loads: a command pays at start for what it uses, and no more.

Starting is most of what a short command costs (the suite starts the CLI about
200 times), and the UI's first frame waits for it. So `delegate-tui --help` loads
no plan models, the commands that read plans and logs load neither Textual nor the
engine, the UI's process checks a run without the engine (its service runs
it), and `attach` reads its run's plan without the plan's pydantic models. Checked as the modules a command left in ``sys.modules`` in a fresh
interpreter, never as timings; and a run refused by the UI's process is refused
as a headless run is, with the same message, before anything is created.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bench.tmux_term import Terminal
from tests.conftest import run_cli

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample_plans" / "contract-first.yaml"
ENGINE = "delegate_tui.core.engine"
#: What only running agents needs: the engine and its parts.
ENGINE_PARTS = (ENGINE, "delegate_tui.core.attempt", "delegate_tui.core.supervisor")
#: Run the CLI's ``main`` on argv[2:], then write the modules it left to argv[1].
PROBE = textwrap.dedent(
    """\
    import sys
    from delegate_tui.cli import main
    try:
        main(sys.argv[2:], prog_name="delegate-tui")
    finally:
        with open(sys.argv[1], "w") as fh:
            fh.write("\\n".join(sorted(sys.modules)))
    """
)


def probe(
    tmp_path: Path, *args: str, cwd: Path | None = None
) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """``delegate-tui ARGS`` in a fresh interpreter; its result and the modules it loaded."""
    out = tmp_path / f"modules-{time.monotonic_ns()}.txt"
    env = {
        **os.environ,
        "HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "home" / ".config"),
        "NO_COLOR": "1",
        "DELEGATE_DEMO_SPEED": "0",
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(out), *args],
        cwd=cwd or tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        stdin=subprocess.DEVNULL,
    )
    return done, set(out.read_text().split())


def tops(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_importing_the_cli_loads_only_click_and_the_launcher() -> None:
    code = "import sys, delegate_tui.cli; print(' '.join(sorted(sys.modules)))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(run.stdout.split())
    ours = {m for m in loaded if m.startswith("delegate_tui")}
    assert ours == {"delegate_tui", "delegate_tui.cli", "delegate_tui.launch"}
    assert not tops(loaded) & {"textual", "rich", "pydantic", "yaml", "orjson", "asyncio"}


@pytest.mark.parametrize(
    ("args", "said"),
    [
        pytest.param(("--help",), "Usage: delegate-tui", id="help"),
        pytest.param(("run", "--help"), "--max-parallel", id="run-help"),
        pytest.param(("schema",), '"$schema"', id="schema"),
        pytest.param(("validate", str(SAMPLE)), "task(s) in", id="validate"),
        pytest.param(("plan", str(SAMPLE)), "Layers", id="plan"),
        pytest.param(("runs", "."), "no runs in", id="runs"),
        pytest.param(("stats", "--all", "--repo", "."), "no runs in", id="stats-all"),
        pytest.param(("doctor",), "git", id="doctor"),
    ],
)
def test_commands_that_run_no_agent_load_neither_textual_nor_the_engine(
    tmp_path: Path, args: tuple[str, ...], said: str
) -> None:
    done, loaded = probe(tmp_path, *args)
    assert said in done.stdout + done.stderr  # it did its work (or said why not)
    assert not tops(loaded) & {"textual", "rich"}
    assert not loaded & set(ENGINE_PARTS)
    if args[-1] == "--help":
        assert not tops(loaded) & {"pydantic", "yaml", "asyncio"}
        ours = {m for m in loaded if m.startswith("delegate_tui.")}
        assert ours == {"delegate_tui.cli", "delegate_tui.launch"}


#: Opened later, if ever: imported when first opened, not before the first frame.
OPENED_LATER = {
    "delegate_tui.ui.screens.dialogs",
    "delegate_tui.ui.screens.replay",
    "delegate_tui.ui.screens.review",
    "delegate_tui.ui.screens.runs",
    "delegate_tui.ui.widgets.timeline",
    "delegate_tui.ui.details",
    "delegate_tui.ui.diffs",
    "delegate_tui.core.scheduler",
    "delegate_tui.report",
    "delegate_tui.share",
}


def test_the_ui_of_a_live_run_loads_only_what_its_first_frame_draws() -> None:
    """What the UI's process imports to attach to its run service (launch.attach_run)."""
    code = (
        "import sys\n"
        "from delegate_tui import cli, launch\n"
        "from delegate_tui.core import client, plan, preflight, service\n"
        "from delegate_tui.ui import app\n"
        "print(' '.join(sorted(sys.modules)))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(run.stdout.split())
    assert "delegate_tui.ui.screens.run" in loaded
    assert not loaded & OPENED_LATER
    assert not loaded & set(ENGINE_PARTS)


def plan_file(tmp_path: Path, repo: Path, extra: str = "", agent: str = "demo") -> Path:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        f"name: p\nrepo: {repo}\n{extra}tasks:\n"
        f"  - {{id: a, agent: {agent}, prompt: write a, edits: [a.txt]}}\n"
    )
    return plan


def test_a_detached_run_is_checked_and_started_without_the_engine(
    tmp_path: Path, repo: Path
) -> None:
    done, loaded = probe(tmp_path, "run", str(plan_file(tmp_path, repo)), "--detach", "--yes")
    assert done.returncode == 0, done.stderr
    assert "goes on in the background" in done.stdout
    assert not loaded & set(ENGINE_PARTS)
    assert not tops(loaded) & {"textual", "rich"}
    log = next((repo / ".delegate" / "runs").iterdir()) / "events.jsonl"
    deadline = time.monotonic() + 60
    while b'"RunFinished"' not in (log.read_bytes() if log.exists() else b""):
        assert time.monotonic() < deadline, "the service did not finish the run"
        time.sleep(0.1)
    stats = run_cli("stats", "--repo", str(repo), cwd=tmp_path, home=tmp_path / "home")
    assert "succeeded" in stats.stdout


BROKEN_PRICES = "[models.x\n"


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("agent-override", "--agent-override: unknown agent 'nobody'"),
        ("no-git", "isolation: worktree needs a git repository"),
        ("base", "base: "),
        ("not-installed", "agent 'aider' runs 'aider', which is not installed"),
        ("ray-shared", "executor: ray needs isolation: worktree"),
        ("prices", "prices.toml"),
    ],
)
def test_a_run_the_ui_would_start_is_refused_as_a_headless_one_before_anything_is_made(
    tmp_path: Path, repo: Path, case: str, expected: str
) -> None:
    flags: tuple[str, ...] = ()
    target = repo
    extra, agent = "", "demo"
    if case == "agent-override":
        flags = ("--agent-override", "nobody")
    elif case == "no-git":
        target = tmp_path / "plain"
        target.mkdir()
        extra = "isolation: worktree\n"
    elif case == "base":
        extra = "base: no-such-branch\n"
    elif case == "not-installed":
        agent = "aider"
    elif case == "ray-shared":
        extra = "isolation: shared\nexecutor: ray\n"
    elif case == "prices":
        prices = tmp_path / "home" / ".config" / "delegate-tui" / "prices.toml"
        prices.parent.mkdir(parents=True)
        prices.write_text(BROKEN_PRICES)
    plan = str(plan_file(tmp_path, target, extra, agent))
    detached, loaded = probe(tmp_path, "run", plan, "--detach", "--yes", *flags)
    headless, _ = probe(tmp_path, "run", plan, "--headless", "--yes", *flags)
    assert detached.returncode == headless.returncode == 2
    assert expected in detached.stderr
    assert detached.stderr == headless.stderr
    assert detached.stdout == ""
    assert not (target / ".delegate").exists()
    if case != "ray-shared":  # a cluster's executor is made to be checked, and loads its parts
        assert not loaded & set(ENGINE_PARTS)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux for a real terminal")
def test_a_resume_the_ui_would_start_is_refused_as_a_headless_one(
    tmp_path: Path, repo: Path
) -> None:
    """In a terminal, `resume` checks the run without the engine before a service starts."""
    home = tmp_path / "home"
    plan = plan_file(tmp_path, repo)
    assert run_cli("run", str(plan), "--headless", "--yes", cwd=repo, home=home).returncode == 0
    headless = run_cli("resume", "--headless", cwd=repo, home=home)
    assert headless.returncode == 2 and "already ended (succeeded)" in headless.stderr
    modules = tmp_path / "modules.txt"
    env = f"HOME={home} XDG_CONFIG_HOME={home / '.config'} NO_COLOR=1"
    probe_cmd = shlex.join([sys.executable, "-c", PROBE, str(modules), "resume"])
    with Terminal(400, 10) as term:
        term.start(f"cd {repo} && env {env} {probe_cmd} 2>&1; echo EXIT=$?; sleep 30")
        term.wait_for(lambda screen: "EXIT=" in screen, 30)
        shown = term.screen()
    assert headless.stderr.strip() in shown and "EXIT=2" in shown
    assert len(list((repo / ".delegate" / "runs").iterdir())) == 1  # no service, no new run
    loaded = set(modules.read_text().split())
    assert not loaded & set(ENGINE_PARTS) and not tops(loaded) & {"textual", "rich"}


#: What a view of an existing run never needs before its first frame: the plan's
#: pydantic models (its plan is read as the log has it) and what runs agents.
NOT_FOR_A_VIEW = {"delegate_tui.core.plan", "delegate_tui.core.agents", *ENGINE_PARTS}


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux for a real terminal")
def test_attaching_to_a_live_run_loads_no_plan_models_and_no_engine(
    tmp_path: Path, repo: Path
) -> None:
    """`attach` in a real terminal: the whole run on screen, then detached; what it loaded."""
    home = tmp_path / "home"
    plan = plan_file(tmp_path, repo, agent="shell")
    plan.write_text(
        f"name: p\nrepo: {repo}\nisolation: none\napprove: auto\ntasks:\n"
        "  - {id: a, agent: shell, command: 'echo attached-a; exec sleep 60'}\n"
    )
    started = run_cli("run", str(plan), "--detach", "--yes", cwd=repo, home=home)
    assert started.returncode == 0, started.stderr
    modules = tmp_path / "modules.txt"
    env = f"HOME={home} XDG_CONFIG_HOME={home / '.config'}"
    probe_cmd = shlex.join([sys.executable, "-c", PROBE, str(modules), "attach"])
    try:
        with Terminal(120, 30) as term:
            term.start(f"cd {repo} && env {env} {probe_cmd}; echo EXIT=$?; sleep 30")
            term.wait_for(lambda screen: "attached-a" in screen and "Tasks" in screen, 60)
            term.send("q")
            term.wait_for(lambda screen: "etach" in screen, 10)
            term.send("d")
            term.wait_for(lambda screen: "EXIT=0" in screen, 30)
    finally:
        run_cli("stop", cwd=repo, home=home)
    loaded = set(modules.read_text().split())
    assert "delegate_tui.ui.screens.run" in loaded  # it drew the run
    assert not loaded & NOT_FOR_A_VIEW
    assert "pydantic" not in tops(loaded)
