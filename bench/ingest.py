"""Benchmark 1 (headless part): 8 agents flooding output, against the limits.

Workload (the contract, do not shrink it): 8 processes each print N lines of
80 characters (default 200,000) as fast as they can. Measured in one run, so
machine noise cancels in the ratios:

* devnull   - the same 8 processes writing to /dev/null (the producers' own cost)
* bare-pipe - a minimal reader draining 8 pipes (select + os.read, nothing else),
              pipes of delegate-tui's size (1 MiB)
* bare-pty  - the same over 8 pseudo-terminals
* headless  - `delegate-tui run --headless --yes` on a plan of 8 shell tasks,
              until it exits with every byte in the run log (checked)

Usage: python bench/ingest.py [--lines N] [--transport pty|pipes|both]
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import pty
import selectors
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from delegate_tui.core.process import PIPE_SIZE

LINE = "x" * 79
AGENTS = 8


def producer_code(lines: int) -> str:
    """A flooding agent: print() of 80-byte lines, buffered as Python buffers them."""
    return f"for _ in range({lines}): print({LINE!r})"


def producer(lines: int) -> list[str]:
    """The flooding agent's argv."""
    return [sys.executable, "-c", producer_code(lines)]


def bench_devnull(lines: int) -> float:
    start = time.perf_counter()
    procs = [subprocess.Popen(producer(lines), stdout=subprocess.DEVNULL) for _ in range(AGENTS)]
    for p in procs:
        p.wait()
    return time.perf_counter() - start


def bench_bare(lines: int, transport: str) -> tuple[float, int]:
    start = time.perf_counter()
    sel = selectors.DefaultSelector()
    procs = []
    for _ in range(AGENTS):
        if transport == "pty":
            master, slave = pty.openpty()
            p = subprocess.Popen(
                producer(lines), stdin=slave, stdout=slave, stderr=slave, start_new_session=True
            )
            os.close(slave)
            fd = master
        else:
            p = subprocess.Popen(producer(lines), stdout=subprocess.PIPE, start_new_session=True)
            assert p.stdout is not None
            fd = p.stdout.fileno()
            # The same transport as delegate-tui's: its pipes hold 1 MiB, not 64 KiB.
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        procs.append(p)
        sel.register(fd, selectors.EVENT_READ)
    total, open_fds = 0, AGENTS
    while open_fds:
        for key, _ in sel.select():
            try:
                data = os.read(key.fd, 65536)
            except OSError:
                data = b""
            if data:
                total += len(data)
            else:
                sel.unregister(key.fd)
                open_fds -= 1
    for p in procs:
        p.wait()
    return time.perf_counter() - start, total


def bench_headless(lines: int, transport: str) -> tuple[float, int]:
    with tempfile.TemporaryDirectory(prefix="delegate-bench-") as tmp:
        folder = Path(tmp)
        argv = json.dumps(producer(lines))
        tasks = "".join(
            f"  - {{id: flood{i}, agent: shell, command: {argv}}}\n" for i in range(AGENTS)
        )
        plan = folder / "plan.yaml"
        plan.write_text(
            f"name: ingest\nrepo: .\nisolation: none\nmax_parallel: {AGENTS}\ntasks:\n{tasks}"
        )
        start = time.perf_counter()
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "delegate_tui",
                "run",
                str(plan),
                "--headless",
                "--yes",
                "--transport",
                transport,
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "NO_COLOR": "1"},
        )
        elapsed = time.perf_counter() - start
        if result.returncode != 0:
            raise SystemExit(f"headless run failed:\n{result.stdout}\n{result.stderr}")
        from delegate_tui.core.events import TaskOutput
        from delegate_tui.core.runlog import list_run_logs, read_events

        (log,) = list_run_logs(folder)
        total = sum(len(e.data) for e in read_events(log) if isinstance(e, TaskOutput))
        return elapsed, total


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--transport", choices=["pty", "pipes", "both"], default="both")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    transports = ["pipes", "pty"] if args.transport == "both" else [args.transport]
    expected = AGENTS * args.lines * 80
    results: dict[str, object] = {
        "lines_per_agent": args.lines,
        "agents": AGENTS,
        "bytes": expected,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
    }
    results["devnull_s"] = round(bench_devnull(args.lines), 2)
    for transport in transports:
        bare, bare_bytes = bench_bare(args.lines, transport)
        headless, logged = bench_headless(args.lines, transport)
        # A PTY turns each \n into \r\n: one more byte a line.
        want = expected + (AGENTS * args.lines if transport == "pty" else 0)
        results[f"bare_{transport}_s"] = round(bare, 2)
        results[f"headless_{transport}_s"] = round(headless, 2)
        results[f"headless_{transport}_ratio"] = round(headless / bare, 2)
        results[f"headless_{transport}_bytes_ok"] = logged == want and bare_bytes == want
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(
        f"ingest: {AGENTS} agents x {args.lines:,} lines of 80 bytes ({expected / 1e6:.0f} MB), {results['machine']}"
    )
    print(f"  /dev/null            {results['devnull_s']:>6.2f} s")
    for transport in transports:
        ok = (
            "every byte in the log"
            if results[f"headless_{transport}_bytes_ok"]
            else "BYTES MISSING"
        )
        print(f"  bare {transport:<5} reader    {results[f'bare_{transport}_s']:>6.2f} s")
        print(
            f"  headless ({transport:<5})    {results[f'headless_{transport}_s']:>6.2f} s  "
            f"= {results[f'headless_{transport}_ratio']}x the bare reader (target 1.5x); {ok}"
        )


if __name__ == "__main__":
    main()
