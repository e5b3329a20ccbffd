"""Pytest fixtures for running the real agent CLIs against the stand-ins.

Import them into a ``conftest.py`` (``from tests.standins.fixtures import *``):

* ``agent_clis`` (session): the three CLIs installed once from npm into the cache folder;
  skips every test that uses it, with the reason, when npm, node or the network is missing.
* ``standin_server`` (session): one loopback server for all vendors and all tests.
* ``standin`` (per test): that server; after the test it fails the test if a stand-in could
  not answer a request (a script the CLI could not take) or saw a key it did not know.
* ``agents`` (per test): runs a CLI by name against a conversation with a scratch HOME.

With ``DELEGATE_TUI_RECORD_STREAMS=DIR`` set, ``agents.run(..., record="claude-write")``
also saves the run's output (stdout with stderr merged in, as delegate-tui's transports read
it) as ``DIR/claude-write.jsonl``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.standins.clis import AGENTS, CliRun, Unavailable, install, run
from tests.standins.script import Conversation
from tests.standins.server import StandInServer

__all__ = [
    "AgentRunner",
    "agent_clis",
    "agents",
    "save_stream",
    "standin",
    "standin_server",
]

RECORD_ENV = "DELEGATE_TUI_RECORD_STREAMS"


@pytest.fixture(scope="session")
def agent_clis() -> dict[str, Path]:
    """The pinned claude, codex and gemini executables (installed on first use)."""
    try:
        # under pytest's own 120 s limit, so a slow or absent network skips instead of failing
        return install(timeout=100)
    except Unavailable as exc:
        pytest.skip(f"the agent CLIs are not available: {exc}")


@pytest.fixture(scope="session")
def standin_server() -> Iterator[StandInServer]:
    with StandInServer() as server:
        yield server


@pytest.fixture
def standin(standin_server: StandInServer) -> Iterator[StandInServer]:
    errors_before = len(standin_server.errors)
    strays_before = len(standin_server.strays)
    yield standin_server
    errors = standin_server.errors[errors_before:]
    strays = standin_server.strays[strays_before:]
    problems = errors + [f"stray {r.method} {r.path} (answered {r.status})" for r in strays]
    if problems:
        pytest.fail("the stand-in could not answer:\n" + "\n".join(problems))


def save_stream(record: str, done: CliRun) -> None:
    """Save a run's output as ``RECORD.jsonl`` when ``$DELEGATE_TUI_RECORD_STREAMS`` is set."""
    folder = os.environ.get(RECORD_ENV)
    if folder:
        target = Path(folder)
        target.mkdir(parents=True, exist_ok=True)
        (target / f"{record}.jsonl").write_text(done.stdout)


class AgentRunner:
    """Runs a CLI by name against a conversation, each CLI with its own scratch HOME."""

    def __init__(self, server: StandInServer, clis: dict[str, Path], root: Path) -> None:
        self.server = server
        self.clis = clis
        self.root = root
        self.runs: list[tuple[str, CliRun]] = []

    def home(self, name: str) -> Path:
        """The scratch HOME of CLI ``name`` in this test (kept across its runs, for resume)."""
        home = self.root / f"home-{name}"
        home.mkdir(parents=True, exist_ok=True)
        return home

    def run(
        self,
        name: str,
        conversation: Conversation,
        args: list[str],
        *,
        cwd: Path,
        max_retries: int | None = 0,
        timeout: float = 100,
        record: str | None = None,
        transport: str = "pipes",
    ) -> CliRun:
        env = AGENTS[name].prepare(
            self.home(name), self.server.url, conversation.key, max_retries=max_retries
        )
        done = run(self.clis[name], args, cwd=cwd, env=env, timeout=timeout, transport=transport)
        self.runs.append((name, done))
        if record:
            save_stream(record, done)
        return done


@pytest.fixture
def agents(agent_clis: dict[str, Path], standin: StandInServer, tmp_path: Path) -> AgentRunner:
    return AgentRunner(standin, agent_clis, tmp_path / "agent-homes")
