"""The real agent CLIs: installing them once from npm, and running them against a stand-in.

``install()`` puts exact versions of ``@anthropic-ai/claude-code``, ``@openai/codex`` and
``@google/gemini-cli`` into one cache folder outside the repository
(``$DELEGATE_TUI_TEST_CLIS`` or ``~/.cache/delegate-tui-test-clis``); ``.ci/run`` calls it
before pytest (``python -m tests.standins.clis``) and the session fixture calls it again
(a no-op once installed). ``AGENTS[name].prepare(home, url, key)`` writes what that CLI needs
into a scratch ``HOME`` and returns the environment that points it at the stand-in and stops
it phoning home; ``run()`` runs it and keeps stdout, stderr, exit status and wall time.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: npm package and exact version per CLI (check for newer ones with ``npm view PKG version``).
PACKAGES: dict[str, tuple[str, str]] = {
    "claude": ("@anthropic-ai/claude-code", "2.1.332"),
    "codex": ("@openai/codex", "0.171.0"),
    "gemini": ("@google/gemini-cli", "0.61.0"),
}

#: the oldest Node.js the three run on (gemini-cli asks for 20; claude is a native binary)
MIN_NODE = 20

#: variables a developer's shell may hold that would point a CLI elsewhere or at a real key
VENDOR_PREFIXES = ("ANTHROPIC_", "CLAUDE_", "OPENAI_", "CODEX_", "GEMINI_", "GOOGLE_")

#: the model each stand-in run names (any name works for claude and gemini; codex needs one it
#: has metadata for, or it offers no apply_patch tool and warns on every run)
CODEX_MODEL = "gpt-5.5"


class Unavailable(Exception):
    """The CLIs cannot be installed or run here; the message says why, for a skip."""


def cache_root() -> Path:
    configured = os.environ.get("DELEGATE_TUI_TEST_CLIS")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "delegate-tui-test-clis"


def binary(root: Path, name: str) -> Path:
    return root / "node_modules" / ".bin" / name


def installed_version(root: Path, package: str) -> str | None:
    manifest = root / "node_modules" / package / "package.json"
    try:
        return str(json.loads(manifest.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def missing(root: Path) -> list[str]:
    """``package@version`` for every pinned CLI not installed under ``root`` at that version."""
    return [
        f"{package}@{version}"
        for name, (package, version) in PACKAGES.items()
        if installed_version(root, package) != version or not binary(root, name).exists()
    ]


def node_major() -> int | None:
    node = shutil.which("node")
    if node is None:
        return None
    out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30)
    match = re.match(r"v(\d+)", out.stdout.strip())
    return int(match.group(1)) if match else None


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def install(root: Path | None = None, *, timeout: float = 900) -> dict[str, Path]:
    """Install the pinned CLIs under ``root`` unless already there; their executables by name."""
    root = root or cache_root()
    major = node_major()
    if major is None or major < MIN_NODE:
        raise Unavailable(f"node >= {MIN_NODE} is needed, found {major or 'none'}")
    with _locked(root):
        wanted = missing(root)
        npm = shutil.which("npm")
        if wanted and npm is None:
            raise Unavailable(f"npm is not on PATH to install {', '.join(wanted)}")
        if wanted and npm is not None:
            try:
                done = subprocess.run(
                    [
                        npm,
                        "install",
                        "--prefix",
                        str(root),
                        "--save-exact",
                        "--no-audit",
                        "--no-fund",
                        "--loglevel=error",
                        # without a network, fail in seconds rather than minutes
                        "--fetch-retries=1",
                        "--fetch-retry-mintimeout=2000",
                        "--fetch-retry-maxtimeout=10000",
                        *wanted,
                    ],
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                    stdin=subprocess.DEVNULL,
                )
            except subprocess.TimeoutExpired as exc:
                raise Unavailable(f"npm install took over {timeout:.0f} s (no network?)") from exc
            if done.returncode != 0:
                said = [
                    line.removeprefix("npm error").strip()
                    for line in (done.stderr or done.stdout).splitlines()
                    if line.strip() and line.strip() != "npm error"
                ]
                raise Unavailable(
                    f"npm install {' '.join(wanted)} failed: {'; '.join(said[:3])[:300]}"
                )
            still = missing(root)
            if still:
                raise Unavailable(f"npm install left these out: {', '.join(still)}")
    return {name: binary(root, name) for name in PACKAGES}


def scrubbed_environ() -> dict[str, str]:
    """``os.environ`` without anything naming a vendor (keys, base URLs, config folders)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(VENDOR_PREFIXES)}


def _base_env(home: Path) -> dict[str, str]:
    tmp = home / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    return {
        **scrubbed_environ(),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        # codex refuses to make its apply_patch helper when its home is under the temp
        # folder, and gemini writes error reports there: give both a temp folder of their own
        "TMPDIR": str(tmp),
        "NO_COLOR": "1",
    }


@dataclass(frozen=True)
class Agent:
    """How to point one CLI at a stand-in and what to run it with."""

    name: str

    def prepare(
        self, home: Path, url: str, key: str, *, max_retries: int | None = 0
    ) -> dict[str, str]:
        """Write the CLI's config into ``home``; the environment to run it with.

        ``max_retries`` caps the CLI's own retries of failed API calls (0: fail at the first
        error, which keeps a 401 test short); None leaves the CLI's default (claude: 10 over
        about three minutes; codex: a few per request, and reconnecting forever when it cannot
        connect at all).
        """
        env = _base_env(home)
        if self.name == "claude":
            env.update(
                ANTHROPIC_BASE_URL=url,
                ANTHROPIC_API_KEY=key,
                # no telemetry, error reports, auto-update or feedback calls
                CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
                DISABLE_AUTOUPDATER="1",
                DISABLE_TELEMETRY="1",
                DISABLE_ERROR_REPORTING="1",
            )
            if max_retries is not None:
                env["CLAUDE_CODE_MAX_RETRIES"] = str(max_retries)
        elif self.name == "codex":
            codex_home = home / ".codex"
            codex_home.mkdir(parents=True, exist_ok=True)
            retries = features = ""
            if max_retries is not None:
                retries = (
                    f"request_max_retries = {max_retries}\nstream_max_retries = {max_retries}\n"
                )
                # without this codex ignores the caps when it cannot connect and prints
                # "Reconnecting... waiting for network" forever
                features = "unbounded_connection_retries = false\n"
            (codex_home / "config.toml").write_text(
                f'model = "{CODEX_MODEL}"\n'
                'model_provider = "standin"\n'
                "check_for_update_on_startup = false\n"
                "\n"
                "[model_providers.standin]\n"
                'name = "stand-in"\n'
                f'base_url = "{url}/v1"\n'
                'env_key = "STANDIN_OPENAI_API_KEY"\n'
                'wire_api = "responses"\n'
                f"{retries}"
                "\n"
                "[analytics]\n"
                "enabled = false\n"
                "\n"
                "[features]\n"
                # the plugin sync at start-up calls api.github.com and chatgpt.com
                "plugins = false\n"
                f"{features}"
            )
            env["STANDIN_OPENAI_API_KEY"] = key
        elif self.name == "gemini":
            settings = {
                "security": {"auth": {"selectedType": "gemini-api-key"}},
                "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False},
                "privacy": {"usageStatisticsEnabled": False},
                "telemetry": {"enabled": False},
            }
            gemini_home = home / ".gemini"
            gemini_home.mkdir(parents=True, exist_ok=True)
            (gemini_home / "settings.json").write_text(json.dumps(settings, indent=2))
            env.update(
                GOOGLE_GEMINI_BASE_URL=url,
                GEMINI_API_KEY=key,
                # one node process instead of a relaunch with a bigger heap
                GEMINI_CLI_NO_RELAUNCH="true",
            )
        else:
            raise ValueError(f"no agent named {self.name!r}")
        return env

    def write_args(self, prompt: str) -> list[str]:
        """The CLI's structured, non-interactive mode with edits allowed, for one prompt."""
        if self.name == "claude":
            return [
                "-p",
                "--output-format",
                "stream-json",
                "--verbose",
                "--permission-mode",
                "acceptEdits",
                "--",
                prompt,
            ]
        if self.name == "codex":
            return [
                "exec",
                "--json",
                "--skip-git-repo-check",
                "--sandbox",
                "workspace-write",
                "--",
                prompt,
            ]
        return [
            "-o",
            "stream-json",
            "--approval-mode",
            "auto_edit",
            "--skip-trust",
            f"--prompt={prompt}",
        ]

    def resume_args(self, session: str, prompt: str) -> list[str]:
        """Continue session ``session`` (as ``session_id`` names it) with one more prompt."""
        if self.name == "claude":
            return [*self.write_args(prompt)[:-2], "--resume", session, "--", prompt]
        if self.name == "codex":
            # `exec resume` has no --sandbox of its own: it goes before the subcommand
            return [
                "exec",
                "--sandbox",
                "workspace-write",
                "resume",
                "--json",
                "--skip-git-repo-check",
                "--",
                session,
                prompt,
            ]
        return [*self.write_args(prompt)[:-1], "--resume", session, f"--prompt={prompt}"]


AGENTS = {name: Agent(name) for name in PACKAGES}


@dataclass(frozen=True)
class CliRun:
    """One finished CLI run."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def events(self) -> list[dict[str, Any]]:
        """The stdout lines that are JSON objects (the structured stream without noise)."""
        found: list[dict[str, Any]] = []
        for line in self.stdout.splitlines():
            try:
                value = json.loads(line.strip())
            except ValueError:
                continue
            if isinstance(value, dict):
                found.append(value)
        return found

    def session_id(self) -> str:
        """The session (claude, gemini) or thread (codex) id the stream announced."""
        for event in self.events():
            for field in ("session_id", "thread_id"):
                value = event.get(field)
                if isinstance(value, str) and value:
                    return value
        raise LookupError(f"no session id in the stream of {self.argv}:\n{self.stdout}")

    def describe(self) -> str:
        return (
            f"{' '.join(self.argv[:3])}… exited {self.returncode} after {self.seconds:.1f} s\n"
            f"--- stdout ---\n{self.stdout[-4000:]}\n--- stderr ---\n{self.stderr[-4000:]}"
        )


def _set_controlling_tty() -> None:  # in the child, after setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _run_pty(argv: list[str], *, cwd: Path, env: dict[str, str], timeout: float) -> tuple[int, str]:
    """Run on a 120x40 pseudo-terminal, as delegate-tui's pty transport does; all output."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env={**env, "TERM": env.get("TERM") or "xterm-256color"},
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            preexec_fn=_set_controlling_tty,
            close_fds=True,
        )
    finally:
        os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise subprocess.TimeoutExpired(argv, timeout, b"".join(chunks))
            ready, _, _ = select.select([master], [], [], 0.2)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer of the terminal is gone
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    return proc.wait(timeout=30), b"".join(chunks).decode("utf-8", "replace")


def run(
    executable: Path,
    args: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    timeout: float = 100,
    transport: str = "pipes",
) -> CliRun:
    """Run a CLI to its end, its stdin from /dev/null (codex reads a piped stdin to its end).

    ``transport``: ``pipes`` merges stderr into stdout as delegate-tui's pipes transport
    does (the noise lines land between the JSON lines); ``pty`` runs it on a terminal as the
    pty transport does (CRLF line ends; stdin is the terminal); ``split`` keeps stderr apart.
    """
    argv = [str(executable), *args]
    started = time.monotonic()
    if transport == "pty":
        code, out = _run_pty(argv, cwd=cwd, env=env, timeout=timeout)
        return CliRun(argv, code, out, "", time.monotonic() - started)
    done = subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if transport == "pipes" else subprocess.PIPE,
        text=True,
        timeout=timeout,
    )
    return CliRun(argv, done.returncode, done.stdout, done.stderr or "", time.monotonic() - started)


def main() -> int:
    """``python -m tests.standins.clis``: install the CLIs (CI runs this before pytest)."""
    try:
        paths = install()
    except Unavailable as exc:
        print(f"agent CLIs not installed: {exc}", file=sys.stderr)
        return 1
    for name, path in paths.items():
        print(f"{name}: {path} ({PACKAGES[name][0]}@{PACKAGES[name][1]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
