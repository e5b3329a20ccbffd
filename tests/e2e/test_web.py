"""The run as a web page: `delegate-tui serve` in a real browser.

Real processes, real sockets, real git, a real browser: a run started with
`run --detach`, the page served by `delegate-tui serve` in a subprocess, and
Debian's chromium driven by Playwright. Where chromium or Playwright is
missing the test is skipped, and the skip says what to install.
"""

from __future__ import annotations

import http.client
import os
import queue
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from delegate_tui.core.events import BatchApproved
from delegate_tui.core.replay import final_state
from delegate_tui.core.runlog import read_events
from delegate_tui.core.service import socket_path

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")

#: Runs before the page's scripts: keeps each xterm.js terminal textual-serve's script
#: makes (it assigns `this.terminal = new Terminal(...)`), so the test reads what the
#: browser's terminal holds; the screen is drawn on a canvas, not in the DOM.
KEEP_TERMINALS = """
window.__terminals = [];
Object.defineProperty(Object.prototype, "terminal", {
  configurable: true,
  set(value) {
    Object.defineProperty(this, "terminal", {value, writable: true, configurable: true, enumerable: true});
    if (value && value.buffer && value.buffer.active) window.__terminals.push(value);
  },
});
"""

#: The rows the page's terminal shows, as text (null before the terminal exists).
SCREEN_TEXT = """() => {
  const term = window.__terminals[0];
  if (!term) return null;
  const buffer = term.buffer.active, rows = [];
  for (let y = 0; y < term.rows; y++) {
    const line = buffer.getLine(buffer.viewportY + y);
    rows.push(line ? line.translateToString(true) : "");
  }
  return rows.join("\\n");
}"""

#: The background of the cell in the middle of the page's terminal, as 0xRRGGBB.
MIDDLE_BACKGROUND = """() => {
  const term = window.__terminals[0], buffer = term.buffer.active;
  const cell = buffer.getLine(buffer.viewportY + (term.rows >> 1)).getCell(term.cols >> 1);
  return cell.isBgRGB() ? cell.getBgColor() : -1;
}"""


def playwright_or_skip() -> Any:
    """Playwright's sync API, or a skip naming what is missing and how to install it."""
    try:
        from playwright import sync_api
    except ImportError:
        pytest.skip(
            "playwright is not installed: `pip install -e '.[test]'` (or `pip install playwright`)"
        )
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} is missing: `apt-get install -y --no-install-recommends chromium` "
            "(Debian's browser; `playwright install` downloads browsers and cannot work here)"
        )
    return sync_api


def env_for(home: Path) -> dict[str, str]:
    return {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}


def cli(*args: str, cwd: Path, home: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "delegate_tui", *args],
        cwd=cwd,
        env=env_for(home),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def slow_plan(tmp_path: Path, repo: Path) -> Path:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        textwrap.dedent(
            f"""\
            name: web
            repo: {repo}
            agent: shell
            tasks:
              - id: slowpoke
                command: "for i in $(seq 120); do echo tick $i; sleep 0.5; done; echo done > out.txt"
                edits: [out.txt]
            """
        )
    )
    return plan


class Served:
    """`delegate-tui serve` in a subprocess, its output read as it comes."""

    def __init__(self, *args: str, cwd: Path, home: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "delegate_tui", "serve", *args],
            cwd=cwd,
            env=env_for(home),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def wait_for_line(self, needle: str, seconds: float = 60) -> str:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None and self.lines.empty():
                    break
                continue
            self.output.append(line)
            if needle in line:
                return line
        raise AssertionError(f"serve never printed {needle!r}; it printed: {''.join(self.output)}")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(15)


def status_of(base: str, path: str, headers: dict[str, str] | None = None) -> int:
    """The HTTP status of GET ``path`` (a websocket handshake when ``headers`` ask for one)."""
    host = base.removeprefix("http://")
    conn = http.client.HTTPConnection(host, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        return conn.getresponse().status
    finally:
        conn.close()


def websocket_status(base: str, path: str, origin: str | None = None) -> int:
    headers = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    }
    if origin:
        headers["Origin"] = origin
    return status_of(base, path, headers)


def wait_until(check: Callable[[], object], what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_a_browser_tab_watches_and_commands_a_live_run(repo: Path, tmp_path: Path) -> None:
    sync_api = playwright_or_skip()
    home = tmp_path / "home"
    started = cli("run", str(slow_plan(tmp_path, repo)), "--detach", cwd=repo, home=home)
    assert started.returncode == 0, started.stderr
    run_dir = next((repo / ".delegate" / "runs").iterdir())
    log = run_dir / "events.jsonl"
    served = Served("--port", "0", "--theme", "textual-light", cwd=repo, home=home)
    stopped = False
    try:
        url = served.wait_for_line("serving run").split(" at ")[1].split()[0]
        base, token = url.split("/?token=")
        assert base.startswith("http://127.0.0.1:") and len(token) >= 32

        # Without the token (or with a wrong one) neither the page nor its websocket opens.
        assert status_of(base, "/") == 403
        assert status_of(base, "/?token=wrong") == 403
        assert websocket_status(base, "/ws") == 403
        assert websocket_status(base, "/ws?token=wrong") == 403
        # The token from another site's page (another port on this host) is refused too.
        assert websocket_status(base, f"/ws?token={token}", "http://127.0.0.1:1") == 403

        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                assert page.goto(base + "/").status == 403
                assert "token" in page.inner_text("body")

                loaded: list[str] = []
                page.on("requestfinished", lambda request: loaded.append(request.url))
                page.add_init_script(KEEP_TERMINALS)
                assert page.goto(url).status == 200

                def screen() -> str:
                    return str(page.evaluate(SCREEN_TEXT) or "")

                wait_until(lambda: "slowpoke" in screen(), "the task list in the page", 60)
                assert "waits for approval" in screen()
                background = int(page.evaluate(MIDDLE_BACKGROUND))
                assert background > 0 and all(
                    (background >> shift) & 0xFF > 0xB0 for shift in (16, 8, 0)
                ), f"not the light theme asked for: #{background:06x}"
                assert all(u.startswith(base + "/") for u in loaded), loaded  # nothing from afar

                page.evaluate("() => window.__terminals[0].focus()")
                page.keyboard.press("a")

                def approved() -> bool:
                    return any(
                        isinstance(ev, BatchApproved) and ev.tasks == ("slowpoke",)
                        for ev in read_events(log)
                    )

                wait_until(approved, "the batch approved in the run log")
                state, _ = final_state(log)
                assert state.tasks["slowpoke"].status in ("starting", "running")
                wait_until(lambda: "tick" in screen(), "the agent's output in the page")
                page.close()  # closing the tab detaches it; the run goes on
            finally:
                browser.close()

        time.sleep(1)
        state, _ = final_state(log)
        assert not state.finished and socket_path(run_dir).exists()
        assert state.tasks["slowpoke"].status == "running"

        stop = cli("stop", cwd=repo, home=home)
        stopped = stop.returncode == 0
        assert stopped, stop.stderr
        assert "stopped" in stop.stdout
        # The run has ended and no tab is open: the page stops by itself.
        served.wait_for_line("has ended (stopped)")
        assert served.process.wait(30) == 0

        refused = cli("serve", run_dir.name, "--port", "0", cwd=repo, home=home)
        assert refused.returncode == 2
        assert f"run {run_dir.name} has ended (stopped)" in refused.stderr
    finally:
        served.close()
        if not stopped:
            cli("stop", cwd=repo, home=home)
