"""A fake event source for the UI: it posts the very events the engine posts.

Events go through the real ``state.apply``; operator commands are recorded
instead of acted on, so a test can check that a key reached the engine's
command with the right arguments, and then play the engine's answer.
"""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Callable
from typing import Any

from delegate_tui.core.events import (
    BatchProposed,
    ChangedFile,
    ConflictDetected,
    Event,
    FilesChanged,
    HeldTask,
    RunStarted,
    TaskCommitted,
    TaskExited,
    TaskFinished,
    TaskOutput,
    TaskPreparing,
    TaskStarted,
)
from delegate_tui.core.plan import Plan, parse_plan
from delegate_tui.core.state import RunState, apply

T0 = 1_790_000_000.0  # a fixed clock: screenshots must not depend on the time of day

PLAN_TEXT = textwrap.dedent(
    """\
    name: OAuth login
    tasks:
      - {id: contract, agent: claude, prompt: Define the contract, edits: ["docs/api/**"]}
      - {id: schema, agent: codex, prompt: Add tables, edits: ["db/**"], depends_on: [contract]}
      - {id: service, agent: codex, prompt: Build it, edits: ["src/auth/**"], depends_on: [schema]}
      - {id: login-ui, agent: claude, prompt: Page, edits: ["web/login/**"], depends_on: [schema]}
      - {id: hotfix, agent: gemini, prompt: Fix, edits: ["src/auth/session.ts"], depends_on: [schema]}
      - {id: endpoints, agent: codex, prompt: Wire, edits: ["src/api/**"], depends_on: [service, login-ui]}
    """
)


class FakeSource:
    """Records commands; ``emit`` plays events as the engine would."""

    def __init__(self, plan: Plan | None = None) -> None:
        self.plan = plan or parse_plan(PLAN_TEXT, "plan.yaml")
        self.state = RunState()
        self.commands: list[tuple[Any, ...]] = []
        self.listeners: list[Callable[[Event], None]] = []
        self.seq = 0
        self.done = asyncio.Event()
        self.answer = ""  # what commands return (the engine's refusal, or "")

    def subscribe(self, listener: Callable[[Event], None]) -> None:
        self.listeners.append(listener)

    def emit(self, ev: Event, at: float = 0.0) -> None:
        import dataclasses

        self.seq += 1
        ev = dataclasses.replace(ev, seq=self.seq, ts=T0 + at)
        apply(self.state, ev)
        for listener in self.listeners:
            listener(ev)

    async def run(self) -> RunState:
        await self.done.wait()
        return self.state

    def last(self) -> tuple[Any, ...]:
        """The latest command sent (a method: mypy would carry a narrowed ``commands[-1]`` on)."""
        return self.commands[-1]

    def _record(self, *command: Any) -> str:
        self.commands.append(command)
        return self.answer

    def approve(self, tasks: list[str] | None = None) -> str:
        return self._record("approve", tasks)

    def hold(self) -> str:
        return self._record("hold")

    def kill(self, task_id: str) -> str:
        return self._record("kill", task_id)

    def retry(
        self, task_id: str, context: str = "", *, keep_worktree: bool = False, fresh: bool = False
    ) -> str:
        return self._record("retry", task_id, context, keep_worktree, fresh)

    def skip(self, task_id: str, reason: str = "skipped by the operator") -> str:
        return self._record("skip", task_id)

    def pause(self) -> str:
        return self._record("pause")

    def resume(self) -> str:
        return self._record("resume")

    def send_input(self, task_id: str, text: str) -> str:
        return self._record("send_input", task_id, text)

    def merge(self, task_id: str) -> str:
        return self._record("merge", task_id)

    def finish(self) -> str:
        return self._record("finish")

    def end(self) -> str:
        return self._record("end")

    def stop(self, reason: str = "") -> str:
        self.done.set()
        return self._record("stop", reason)

    # ------------------------------------------------------------ scenes

    def start_run(self, repo: str = "/repo", base_commit: str = "base") -> None:
        self.emit(
            RunStarted(
                run_id="20261122-120000-abcd",
                plan=self.plan.model_dump(mode="json", by_alias=True),
                plan_path="plan.yaml",
                repo=repo,
                isolation="worktree",
                base_commit=base_commit,
                integration_branch="delegate/20261122-120000-abcd/integration",
            )
        )

    def start_task(
        self, task: str, at: float = 1.0, pid: int = 4242, base_commit: str = ""
    ) -> None:
        self.emit(
            TaskPreparing(
                task=task,
                attempt=1,
                workdir=f"/repo/.delegate/worktrees/r/{task}-1",
                branch=f"delegate/r/tasks/{task}",
                base_commit=base_commit,
            ),
            at,
        )
        self.emit(
            TaskStarted(
                task=task,
                attempt=1,
                agent="claude",
                argv=("claude",),
                cwd="/w",
                pid=pid,
                pgid=pid,
                prompt="p",
            ),
            at,
        )

    def output(self, task: str, data: bytes, at: float = 2.0) -> None:
        self.emit(TaskOutput(task=task, attempt=1, data=data), at)

    def fail_task(self, task: str, at: float = 5.0) -> None:
        self.emit(TaskExited(task=task, attempt=1, exit_code=2, duration_s=4.0), at)
        self.emit(
            TaskFinished(task=task, attempt=1, status="failed", reason="exited with status 2"), at
        )

    def commit_task(self, task: str, commit: str, at: float = 4.5) -> None:
        """The attempt's work committed on its branch (the commit a diff is taken to)."""
        self.emit(TaskExited(task=task, attempt=1, exit_code=0, duration_s=4.0), at)
        self.emit(TaskCommitted(task=task, attempt=1, commit=commit), at)

    def succeed_task(self, task: str, at: float = 5.0) -> None:
        self.emit(TaskExited(task=task, attempt=1, exit_code=0, duration_s=4.0), at)
        self.emit(TaskFinished(task=task, attempt=1, status="succeeded"), at)

    def propose(
        self, batch: int, tasks: tuple[str, ...], held: tuple[HeldTask, ...] = (), at: float = 6.0
    ) -> None:
        self.emit(BatchProposed(batch=batch, tasks=tasks, held=held, needs_approval=True), at)

    def mid_run(self) -> None:
        """contract done, schema running with colourful output, a batch waiting."""
        self.start_run()
        self.start_task("contract", at=0.5, pid=1001)
        self.output("contract", b"\x1b[32m\xe2\x9c\x94 contract written\x1b[0m\r\n", at=1.0)
        self.succeed_task("contract", at=3.0)
        self.start_task("schema", at=3.5, pid=1002)
        self.output(
            "schema",
            b"\x1b[35m\xe2\x97\x86 codex\x1b[0m thinking\r\n\x1b[1m\xe2\x9c\x8e Edit\x1b[0m db/001.sql\r\n"
            b"\x1b[32m+CREATE TABLE users (id uuid primary key);\x1b[0m\r\n"
            b"  tests  10%\r  tests  60%\r  tests 100% [##########]\r\n\x1b]0;evil title\x07\x1b[31m1 failed\x1b[0m\r\n",
            at=4.0,
        )
        self.succeed_task("schema", at=6.0)
        self.propose(
            2,
            ("service", "login-ui"),
            held=(
                HeldTask(
                    "hotfix", "edits overlap with service on src/auth/session.ts / src/auth/**"
                ),
            ),
            at=6.5,
        )

    def collision(self) -> None:
        """service and hotfix running, colliding live on src/auth/session.ts."""
        self.start_run()
        for task in ("contract", "schema"):
            self.start_task(task, at=0.5)
            self.succeed_task(task, at=1.0)
        self.start_task("service", at=2.0, pid=2001)
        self.start_task("hotfix", at=2.0, pid=2002)
        self.output("service", b"\x1b[1mEdit\x1b[0m src/auth/session.ts\r\n", at=3.0)
        self.output(
            "hotfix",
            b"\x1b[1mEdit\x1b[0m src/auth/session.ts\r\n\x1b[1mEdit\x1b[0m config/app.yaml\r\n",
            at=3.0,
        )
        self.emit(
            FilesChanged(
                task="service",
                attempt=1,
                files=(ChangedFile("src/auth/session.ts", "M", 12, 3),),
                snapshot="s1",
            ),
            3.5,
        )
        self.emit(
            FilesChanged(
                task="hotfix",
                attempt=1,
                snapshot="s2",
                files=(
                    ChangedFile("src/auth/session.ts", "M", 2, 2),
                    ChangedFile("config/app.yaml", "M", 1, 1),
                ),
            ),
            3.6,
        )
        self.emit(
            ConflictDetected(
                key="predicted-conflict:hotfix,service:src/auth/session.ts",
                kind="predicted-conflict",
                severity="error",
                tasks=("hotfix", "service"),
                paths=("src/auth/session.ts",),
                detail="would not merge cleanly with each other",
            ),
            3.7,
        )
        self.emit(
            ConflictDetected(
                key="out-of-scope:hotfix:config/app.yaml",
                kind="out-of-scope",
                severity="warning",
                tasks=("hotfix",),
                paths=("config/app.yaml",),
                detail="outside its declared edits: src/auth/session.ts",
            ),
            3.7,
        )
