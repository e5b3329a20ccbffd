"""A real terminal for the benchmarks: a tmux server of their own.

Each Terminal runs its own tmux server (a private socket), so one run never
meets the previous one's server as it shuts down (a new session made on a
dying server vanishes with it). The server starts on an idle shell first, and
the measured command is started into that pane with `respawn-pane`: a
benchmark's clock does not include tmux starting.

Each Terminal also gives what it runs a scratch HOME and XDG_CONFIG_HOME of its
own (a temporary folder, removed at close): a benchmark never reads or writes
the operator's config (a saved theme, rebound keys) nor their tmux.conf. A
command that needs the real home passes it with `env HOME=...`.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

_numbers = itertools.count()


class Terminal:
    """One tmux pane of ``width`` x ``height`` that commands run in."""

    def __init__(self, width: int = 200, height: int = 60) -> None:
        self.socket = f"delegate-bench-{os.getpid()}-{next(_numbers)}"
        self.home = Path(tempfile.mkdtemp(prefix="delegate-bench-home-"))
        # The server is started with this environment, and its panes inherit it.
        self.env = {
            **{k: v for k, v in os.environ.items() if k not in ("XDG_DATA_HOME", "XDG_STATE_HOME")},
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
        }
        session = ("new-session", "-d", "-s", "main", "-x", str(width), "-y", str(height))
        if self._tmux(*session, "sleep 3600") is None:
            shutil.rmtree(self.home, ignore_errors=True)
            raise RuntimeError("tmux did not start")

    def _tmux(self, *args: str) -> str | None:
        """Run a tmux command against this server: its output, or None if it failed."""
        result = subprocess.run(
            ["tmux", "-L", self.socket, *args],
            capture_output=True,
            text=True,
            check=False,
            env=self.env,
        )
        return result.stdout if result.returncode == 0 else None

    def start(self, command: str, cwd: str | None = None) -> None:
        """Replace whatever runs in the pane with ``command`` (run by sh, in ``cwd``)."""
        line = f"cd {cwd} && {command}" if cwd else command
        self._tmux("respawn-pane", "-k", "-t", "main", line)

    def screen(self, *, escapes: bool = False) -> str:
        """What the pane shows now (with colour escapes when asked)."""
        return self._tmux("capture-pane", "-p", *(["-e"] if escapes else []), "-t", "main") or ""

    def pane_pid(self) -> int:
        """The pid of the process the pane runs (the shell running the command); 0 if gone."""
        out = self._tmux("display-message", "-p", "-t", "main", "#{pane_pid}") or ""
        return int(out.strip() or 0)

    def send(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "main", *keys)

    def alive(self) -> bool:
        """Whether the server and its pane are still there."""
        return self._tmux("has-session", "-t", "main") is not None

    def wait_for(self, predicate: object, timeout: float, poll: float = 0.005) -> float:
        """Poll the screen until ``predicate(screen)`` holds; the seconds it took."""
        start = time.perf_counter()
        while time.perf_counter() - start < timeout:
            if predicate(self.screen()):  # type: ignore[operator]
                return time.perf_counter() - start
            time.sleep(poll)
        raise TimeoutError(f"not on screen within {timeout} s; the screen:\n{self.screen()}")

    def close(self) -> None:
        self._tmux("kill-server")
        shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
