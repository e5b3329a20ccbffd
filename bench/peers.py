"""Benchmark 1 whole, in one run: delegate-tui against its limits and its peers.

The ingest workload (8 processes x N lines of 80 bytes, as fast as Python prints)
run, one after the other in the same invocation, by:
* the limits: the processes writing to /dev/null; a bare reader that only drains
  their PTYs, or pipes (select + os.read, as delegate-tui's transports);
* delegate-tui headless on PTYs (its default) and on pipes, every byte checked
  in its log;
* delegate-tui with its full UI, in a real terminal (tmux, 200x60), on PTYs and on
  pipes, timed from launch to the end shown on screen;
* concurrently (npm), no UI, its output to /dev/null: as it is usually run (each
  line prefixed with its process), and with `--raw` (bytes passed through);
* mprocs (npm), its TUI in the same tmux terminal, `--on-all-finished '{c: quit}'`;
* Turborepo (npm) `turbo run flood --ui=tui`, eight workspace packages, no cache.
Each time is from start to exit. The peers come from the npm registry into a
scratch folder (`--peers DIR`, installed there on first use).

Usage: python bench/peers.py [--lines 200000] [--peers DIR] [--json]
Needs tmux, node and npm.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import AGENTS, bench_bare, bench_devnull, bench_headless, producer
from peers_install import install_peers
from tmux_term import Terminal
from ui_flood import run_ui

NO_TELEMETRY = {"TURBO_TELEMETRY_DISABLED": "1", "DO_NOT_TRACK": "1"}


def timed_in_terminal(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Run a TUI in a 200x60 tmux terminal until it exits; its wall time."""
    result = cwd / "elapsed"
    timer = (
        "import subprocess, sys, time; t = time.perf_counter(); "
        "rc = subprocess.run(sys.argv[2:]).returncode; "
        "open(sys.argv[1], 'w').write(f'{time.perf_counter() - t} {rc}')"
    )
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    command = shlex.join([sys.executable, "-c", timer, str(result), *argv])
    with Terminal() as term:
        term.start(f"env {exports} {command}; sleep 30", cwd=str(cwd))
        deadline = time.monotonic() + 300
        while not result.exists():
            if time.monotonic() > deadline:
                raise SystemExit(f"{argv[0]} did not finish in 300 s:\n{term.screen()}")
            time.sleep(0.05)
        time.sleep(0.05)
        seconds, code = result.read_text().split()
        if code != "0":
            raise SystemExit(f"{argv[0]} failed (exit {code}):\n{term.screen()}")
        return float(seconds)


def bench_concurrently(bin_dir: Path, lines: int, *, raw: bool) -> float:
    commands = [shlex.join(producer(lines))] * AGENTS
    mode = ["--raw"] if raw else []
    start = time.perf_counter()
    subprocess.run(
        [str(bin_dir / "concurrently"), *mode, "--max-processes", str(AGENTS), *commands],
        stdout=subprocess.DEVNULL,
        check=True,
    )
    return time.perf_counter() - start


def bench_mprocs(bin_dir: Path, lines: int) -> float:
    with tempfile.TemporaryDirectory(prefix="delegate-peers-mprocs-") as tmp:
        commands = [shlex.join(producer(lines))] * AGENTS
        argv = [str(bin_dir / "mprocs"), "--on-all-finished", "{c: quit}", *commands]
        return timed_in_terminal(argv, Path(tmp), {})


def bench_turbo(bin_dir: Path, lines: int) -> float:
    with tempfile.TemporaryDirectory(prefix="delegate-peers-turbo-") as tmp:
        root = Path(tmp)
        npm_version = subprocess.run(
            ["npm", "--version"], capture_output=True, text=True, check=True
        ).stdout.strip()
        (root / "package.json").write_text(
            json.dumps(
                {
                    "name": "flood",
                    "private": True,
                    "workspaces": ["packages/*"],
                    "packageManager": f"npm@{npm_version}",
                }
            )
        )
        (root / "turbo.json").write_text(
            json.dumps({"tasks": {"flood": {"cache": False, "outputs": []}}})
        )
        for i in range(AGENTS):
            package = root / "packages" / f"flood{i}"
            package.mkdir(parents=True)
            package_json = {"name": f"flood{i}", "scripts": {"flood": shlex.join(producer(lines))}}
            (package / "package.json").write_text(json.dumps(package_json))
        subprocess.run(["git", "init", "-q"], cwd=root, check=True)
        subprocess.run(["npm", "install", "--silent"], cwd=root, check=True)
        argv = [
            str(bin_dir / "turbo"),
            "run",
            "flood",
            "--ui=tui",
            f"--concurrency={AGENTS}",
        ]
        return timed_in_terminal(argv, root, NO_TELEMETRY)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument(
        "--peers", type=Path, default=Path(tempfile.gettempdir()) / "delegate-bench-peers"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    for tool in ("tmux", "npm", "node"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench/peers.py needs {tool}")
    bin_dir = install_peers(args.peers)
    lines = args.lines
    devnull = bench_devnull(lines)
    bare, _ = bench_bare(lines, "pty")
    headless, logged = bench_headless(lines, "pty")
    # concurrently reads pipes, and a writer to a pipe is block-buffered (a PTY makes
    # it write a line at a time): delegate-tui on pipes is its like-for-like.
    bare_pipes, _ = bench_bare(lines, "pipes")
    headless_pipes, logged_pipes = bench_headless(lines, "pipes")
    ui = run_ui(lines, probe="")
    ui_pipes = run_ui(lines, probe="", transport="pipes")
    ui_wall, ui_rss = ui.to_end_s, ui.rss_mb
    peers = {
        "concurrently": bench_concurrently(bin_dir, lines, raw=False),
        "concurrently_raw": bench_concurrently(bin_dir, lines, raw=True),
        "mprocs": bench_mprocs(bin_dir, lines),
        "turbo": bench_turbo(bin_dir, lines),
    }
    result: dict[str, object] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "lines_per_agent": lines,
        "devnull_s": round(devnull, 2),
        "bare_pty_s": round(bare, 2),
        "headless_pty_s": round(headless, 2),
        "headless_ratio": round(headless / bare, 2),
        "headless_bytes_ok": logged == AGENTS * lines * 81 and logged_pipes == AGENTS * lines * 80,
        "bare_pipes_s": round(bare_pipes, 2),
        "headless_pipes_s": round(headless_pipes, 2),
        "ui_s": round(ui_wall, 2),
        "ui_ratio": round(ui_wall / bare, 2),
        "ui_pipes_s": round(ui_pipes.to_end_s, 2),
        "ui_pipes_ratio": round(ui_pipes.to_end_s / bare_pipes, 2),
        "ui_peak_rss_mb": round(ui_rss),
        **{f"{name}_s": round(seconds, 2) for name, seconds in peers.items()},
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"benchmark 1: {AGENTS} agents x {lines:,} lines of 80 bytes, {result['machine']}")
    print(f"  /dev/null                 {devnull:6.2f} s")
    print(f"  bare PTY reader           {bare:6.2f} s")
    print(
        f"  delegate-tui headless     {headless:6.2f} s = {headless / bare:.2f}x the bare reader (target 1.5x)"
    )
    print(f"  bare pipe reader          {bare_pipes:6.2f} s")
    print(
        f"  delegate-tui headless     {headless_pipes:6.2f} s on pipes = {headless_pipes / bare_pipes:.2f}x the bare pipe reader"
    )
    print(
        f"  delegate-tui UI (tmux)    {ui_wall:6.2f} s = {ui_wall / bare:.2f}x the bare reader (target 2.5x)"
    )
    print(
        f"  delegate-tui UI, pipes    {ui_pipes.to_end_s:6.2f} s = "
        f"{ui_pipes.to_end_s / bare_pipes:.2f}x the bare pipe reader"
    )
    for name, seconds in peers.items():
        name = name.replace("_raw", " --raw")
        print(f"  {name:<25} {seconds:6.2f} s")


if __name__ == "__main__":
    main()
