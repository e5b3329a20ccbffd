"""Where a key's time goes in the attached UI during a flood: a trace, phase by phase.

Runs bench/ui_flood.py's workload (8 agents x N lines on PTYs, the full UI in
tmux at 200x60, attached to its run service) with the UI process traced, and
moves the task list's selection every 250 ms as ui_flood's probe does. Inside
the UI process (this file, run as ``_ui``, patches Textual and delegate-tui's
classes before the UI starts; nothing of the product is changed) it records:

* **read**: the input thread has parsed the key (Textual's driver thread);
* **loop**: the app's loop takes the Key event (it waited in the app's queue);
* **handled**: the task list moved its selection (the key's handler ran);
* **frame**: each screen update (Textual's ``_on_timer_update``): start, end, its
  thread CPU time, and whether agent panes were in it; the key's frame is the first
  to start after its handler;
* the main thread's ``/proc/.../schedstat`` at each of those points: the time it
  ran, the time it waited for a CPU (runnable, not running), and the rest (asleep:
  idle, or waiting for the GIL);
* a probe thread that sleeps 20 ms at a time and notes how late it woke, and how
  much of that its schedstat calls waiting for a CPU (the rest is the GIL);
* the view socket's reads (how many, how big) and the loop's busy share.

The bench side notes when it sent each key (before ``tmux send-keys``) and when
``capture-pane`` first showed the selection moved. Monotonic clocks are one clock
across processes, so the phases line up.

Usage: python bench/key_trace.py [--lines 200000] [--rounds 2] [--env NAME=VALUE] [--keep DIR]
(``--env PYTHONPATH=TREE`` traces another tree's delegate-tui, for old/new pairs.)
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

if not os.environ.get("PYTHONPATH"):  # PYTHONPATH=TREE: trace that tree's delegate-tui
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

TICKS_NS = 1  # schedstat is in nanoseconds


def schedstat(tid: int) -> tuple[int, int]:
    """(ns run, ns waited for a CPU) of thread ``tid``."""
    try:
        with open(f"/proc/self/task/{tid}/schedstat") as f:
            run, wait, _ = f.read().split()
        return int(run), int(wait)
    except OSError:
        return 0, 0


# ---------------------------------------------------------------- inside the UI


def trace_ui(out: str, argv: list[str]) -> None:
    """Patch, then run delegate-tui with ``argv``; the trace goes to ``out`` at exit."""
    from textual.drivers.linux_driver import LinuxDriver
    from textual.events import Key
    from textual.screen import Screen

    from delegate_tui.core import view_socket
    from delegate_tui.ui.app import DelegateApp
    from delegate_tui.ui.widgets.agent_pane import AgentPane
    from delegate_tui.ui.widgets.task_graph import TaskGraph

    records: list[dict[str, Any]] = []
    lock = threading.Lock()
    main_tid = threading.main_thread().native_id
    assert main_tid is not None
    mono = time.monotonic

    def note(kind: str, **fields: Any) -> None:
        run, wait = schedstat(main_tid)
        with lock:
            records.append({"kind": kind, "t": mono(), "run": run, "wait": wait, **fields})

    process_message = LinuxDriver.process_message

    def traced_process_message(self: LinuxDriver, message: Any) -> None:
        if isinstance(message, Key):
            note("read", key=message.key)
        process_message(self, message)

    LinuxDriver.process_message = traced_process_message  # type: ignore[method-assign]

    on_event = DelegateApp.on_event

    async def traced_on_event(self: DelegateApp, event: Any) -> None:
        if isinstance(event, Key):
            note("loop", key=event.key)
        await on_event(self, event)

    DelegateApp.on_event = traced_on_event  # type: ignore[method-assign]

    select = TaskGraph.select

    def traced_select(self: TaskGraph, task_id: str, *, post: bool = True) -> None:
        select(self, task_id, post=post)
        if post:
            note("handled", task=task_id)

    TaskGraph.select = traced_select  # type: ignore[method-assign]

    on_timer_update = Screen._on_timer_update

    def traced_timer_update(self: Screen[Any]) -> None:
        dirty = list(self._dirty_widgets)
        panes = sum(isinstance(w, AgentPane) for w in dirty)
        layout = bool(self._layout_required)
        why = sorted(set(pending))[:4] if layout else []
        pending.clear()
        start, cpu = mono(), time.thread_time()
        note("frame_start")
        on_timer_update(self)
        note(
            "frame",
            start=start,
            cpu=time.thread_time() - cpu,
            panes=panes,
            dirty=len(dirty),
            layout=layout,
            why=why,
            widgets=sorted({type(w).__name__ for w in dirty}),
        )

    Screen._on_timer_update = traced_timer_update  # type: ignore[method-assign]

    recv = socket.socket.recv
    reads: list[tuple[float, int, float]] = []

    def traced_recv(self: socket.socket, size: int, *args: Any) -> bytes:
        if threading.current_thread().name != "view-socket":
            return recv(self, size, *args)
        before = mono()
        data = recv(self, size, *args)
        reads.append((before, len(data), mono() - before))
        return data

    socket.socket.recv = traced_recv  # type: ignore[method-assign]
    assert view_socket.ViewSocket  # the class reads through socket.socket.recv

    from textual.widget import Widget

    layouts: Counter[str] = Counter()
    pending: list[str] = []  # layout requests since the last frame
    refresh = Widget.refresh

    def traced_refresh(self: Widget, *regions: Any, **kwargs: Any) -> Widget:
        if kwargs.get("layout") or kwargs.get("recompose"):
            frames = []
            caller = sys._getframe(1)
            while caller is not None and len(frames) < 6:
                frames.append(f"{caller.f_code.co_name}:{caller.f_lineno}")
                caller = caller.f_back
            where = " <- ".join(frames)
            layouts[f"{type(self).__name__}: {where}"] += 1
            pending.append(f"{type(self).__name__}: {where}")
        return refresh(self, *regions, **kwargs)

    Widget.refresh = traced_refresh  # type: ignore[method-assign]

    probes: list[tuple[float, float, float]] = []  # (t, late, of which waiting for a CPU)

    def probe() -> None:
        tid = threading.get_native_id()
        while True:
            _, wait0 = schedstat(tid)
            t0 = time.perf_counter()
            time.sleep(0.02)
            late = time.perf_counter() - t0 - 0.02
            _, wait1 = schedstat(tid)
            probes.append((mono(), late, (wait1 - wait0) / 1e9))

    threading.Thread(target=probe, name="gil-probe", daemon=True).start()

    def dump() -> None:
        with open(out, "w") as f:
            json.dump({"records": records, "reads": reads, "probes": probes, "layouts": layouts}, f)

    atexit.register(dump)
    from delegate_tui.cli import main

    sys.argv = ["delegate-tui", *argv]
    main()


# ---------------------------------------------------------------- the bench side


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * share) - 1)] if ordered else float("nan")


def run_traced(
    lines: int, trace: Path, env: dict[str, str], *, keys_on: bool = True
) -> list[tuple[float, float]]:
    """One flood with the traced UI; the keys' (sent, seen) monotonic times."""
    from tmux_term import Terminal
    from ui_flood import flood_plan, selected_row

    keys: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory(prefix="delegate-keytrace-") as tmp, Terminal() as term:
        folder = Path(tmp)
        flood_plan(folder, lines)
        prefix = " ".join(f"{k}={v}" for k, v in env.items())
        command = f"{prefix} {sys.executable} {Path(__file__).resolve()} _ui {trace} run plan.yaml"
        term.start(f"{command}; sleep 30", cwd=str(folder))
        term.wait_for(lambda screen: "Agents" in screen, 60)
        # Keys move a selection: the first is drawn once the run's state has come (the
        # service started, the view attached). Probing before that timed the start-up.
        deadline = time.monotonic() + 300
        while selected_row(term) < 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        while time.monotonic() < deadline:
            head = (term.screen().splitlines() or [""])[0]
            if "run succeeded" in head or "run failed" in head or "run partial" in head:
                break
            if not keys_on:
                time.sleep(0.05)
                continue
            row = selected_row(term)
            sent = time.monotonic()
            term.send("Down" if row < 6 else "Up")
            while selected_row(term) == row and time.monotonic() - sent < 5:
                time.sleep(0.002)
            keys.append((sent, time.monotonic()))
            time.sleep(0.25)
        term.send("q")
        stop = time.monotonic() + 20
        while not trace.exists() and time.monotonic() < stop:
            time.sleep(0.1)
        time.sleep(0.5)
    return keys


def analyse(keys: list[tuple[float, float]], trace: dict[str, Any]) -> dict[str, Any]:
    """Each key's phases (ms), and the run's frames, socket reads and GIL probe."""
    records = trace["records"]
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_kind.setdefault(r["kind"], []).append(r)
    reads = [r for r in by_kind.get("read", []) if r["key"] in ("down", "up")]
    loops = [r for r in by_kind.get("loop", []) if r["key"] in ("down", "up")]
    handled = by_kind.get("handled", [])
    frames = by_kind.get("frame", [])
    phases: dict[str, list[float]] = {
        name: []
        for name in (
            "total",
            "send_to_read",
            "read_to_loop",
            "read_to_loop_running",
            "read_to_loop_cpu_wait",
            "loop_to_handled",
            "handled_to_frame",
            "handled_to_frame_running",
            "handled_to_frame_cpu_wait",
            "frame",
            "frame_cpu_wait",
            "frame_to_seen",
        )
    }
    key_frames_with_panes = 0
    matched = 0
    for sent, seen in keys:
        # Each key's records are the first of their kind after the one before.
        read = next((r for r in reads if r["t"] >= sent), None)
        loop = read and next((r for r in loops if r["t"] >= read["t"]), None)
        done = loop and next((r for r in handled if r["t"] >= loop["t"]), None)
        frame = done and next((f for f in frames if f["start"] >= done["t"]), None)
        if not (read and loop and done and frame) or seen < sent:
            continue
        matched += 1
        start = next(r for r in by_kind["frame_start"] if r["t"] >= frame["start"])
        ms = 1000.0
        phases["total"].append((seen - sent) * ms)
        phases["send_to_read"].append((read["t"] - sent) * ms)
        phases["read_to_loop"].append((loop["t"] - read["t"]) * ms)
        phases["read_to_loop_running"].append((loop["run"] - read["run"]) / 1e6)
        phases["read_to_loop_cpu_wait"].append((loop["wait"] - read["wait"]) / 1e6)
        phases["loop_to_handled"].append((done["t"] - loop["t"]) * ms)
        phases["handled_to_frame"].append((frame["start"] - done["t"]) * ms)
        phases["handled_to_frame_running"].append((start["run"] - done["run"]) / 1e6)
        phases["handled_to_frame_cpu_wait"].append((start["wait"] - done["wait"]) / 1e6)
        phases["frame"].append((frame["t"] - frame["start"]) * ms)
        phases["frame_cpu_wait"].append((frame["wait"] - start["wait"]) / 1e6)
        phases["frame_to_seen"].append((seen - frame["t"]) * ms)
        key_frames_with_panes += frame["panes"] > 0
    summary: dict[str, Any] = {"keys": matched}
    for name, values in phases.items():
        if values:
            summary[name] = {
                "median": round(statistics.median(values), 1),
                "p95": round(percentile(values, 0.95), 1),
                "mean": round(statistics.fmean(values), 1),
            }
    summary["key_frames_with_panes"] = key_frames_with_panes
    if frames:
        span = frames[-1]["t"] - frames[0]["start"]
        with_panes = [f for f in frames if f["panes"]]
        summary["frames_per_s"] = round(len(frames) / span, 1) if span else None
        summary["frames_with_panes_per_s"] = round(len(with_panes) / span, 1) if span else None
        summary["frame_cpu_ms_with_panes"] = (
            round(statistics.median(f["cpu"] for f in with_panes) * 1000, 1) if with_panes else None
        )
        first, last = records[0], records[-1]
        wall = last["t"] - first["t"]
        summary["main_thread_running_share"] = round((last["run"] - first["run"]) / 1e9 / wall, 3)
        summary["main_thread_cpu_wait_share"] = round(
            (last["wait"] - first["wait"]) / 1e9 / wall, 3
        )
    if trace["reads"]:
        sizes = [n for _, n, _ in trace["reads"]]
        span = trace["reads"][-1][0] - trace["reads"][0][0]
        summary["socket_reads_per_s"] = round(len(sizes) / span, 1) if span else None
        summary["socket_read_kb_median"] = round(statistics.median(sizes) / 1024, 1)
    summary["layout_requests"] = dict(Counter(trace.get("layouts", {})).most_common(12))
    if trace["probes"]:
        late = [p[1] * 1000 for p in trace["probes"]]
        cpu = [p[2] * 1000 for p in trace["probes"]]
        gil = [max(0.0, a - b) for a, b in zip(late, cpu, strict=True)]
        summary["probe_late_ms"] = {
            "median": round(statistics.median(late), 1),
            "p95": round(percentile(late, 0.95), 1),
        }
        summary["probe_cpu_wait_ms"] = {
            "median": round(statistics.median(cpu), 1),
            "p95": round(percentile(cpu, 0.95), 1),
        }
        summary["probe_rest_ms"] = {
            "median": round(statistics.median(gil), 1),
            "p95": round(percentile(gil, 0.95), 1),
        }
    return summary


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "_ui":
        trace_ui(sys.argv[2], sys.argv[3:])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the UI")
    parser.add_argument("--keep", help="a folder to keep the raw traces in")
    parser.add_argument("--no-keys", action="store_true", help="trace the flood, press nothing")
    args = parser.parse_args()
    if shutil.which("tmux") is None:
        raise SystemExit("bench/key_trace.py needs tmux")
    env = dict(item.split("=", 1) for item in args.env)
    results = []
    with tempfile.TemporaryDirectory(prefix="delegate-keytrace-out-") as tmp:
        out = Path(args.keep or tmp)
        out.mkdir(parents=True, exist_ok=True)
        for number in range(args.rounds):
            trace = out / f"trace{number}.json"
            keys = run_traced(args.lines, trace, env, keys_on=not args.no_keys)
            (out / f"keys{number}.json").write_text(json.dumps(keys))
            results.append(analyse(keys, json.loads(trace.read_text())))
    print(json.dumps(results, indent=1))
    print(f"load: {os.getloadavg()}", file=sys.stderr)


if __name__ == "__main__":
    main()
