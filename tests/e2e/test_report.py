"""`delegate-tui report` on a real run: the demo plan run headless with the demo agent.

Real processes and real git make the run (a held task, a failed check retried,
a collision that ends in a merge conflict); the report is read back with an
HTML parser every time (structure, every task, the timeline's rows and bars,
nothing loaded from a network, no script), as Markdown, and, where Debian's
chromium is installed, opened in it headless: the screenshot must show the
timeline's bars in their colours.
"""

from __future__ import annotations

import itertools
import re
import shutil
import struct
import subprocess
import zlib
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest

from delegate_tui import share
from delegate_tui.core.events import AgentUsage, RetryScheduled, TokenUsage
from delegate_tui.core.replay import final_state
from delegate_tui.core.timeline import project
from delegate_tui.demo.scaffold import make_demo_repo
from delegate_tui.share import OUTCOME_COLOURS
from tests.conftest import run_cli
from tests.core.test_metrics import T0, attempt, batch, finish, fold, run_started
from tests.core.test_timeline import eventful

# The module fixture is a whole demo run: one worker runs every test that reads it, so
# it is run once (not once per worker that picks up one of them).
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("report_demo")]
CHECK = "grep -q ROUND_HALF_EVEN src/shop/pricing.py"
TASKS = [
    "contract",
    "storage-advice",
    "guide",
    "pricing",
    "payments",
    "shipping",
    "service",
    "tests",
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """The demo repository after one headless run, the run's log, and a scratch HOME."""
    tmp = tmp_path_factory.mktemp("report")
    plan = make_demo_repo(tmp)
    repo = plan.parent.parent
    home = tmp / "home"
    result = run_cli("run", str(plan), "--headless", "--yes", cwd=repo, home=home, timeout=180)
    assert result.returncode == 1, result.stdout + result.stderr  # partial: shipping conflicts
    (log,) = (repo / ".delegate" / "runs").glob("*/events.jsonl")
    return repo, log, home


@dataclass
class Page(HTMLParser):
    """What the report's HTML holds, as far as the tests ask."""

    tags: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    text: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def all(self, tag: str, **wanted: str) -> list[dict[str, str]]:
        return [
            a
            for t, a in self.tags
            if t == tag and all(a.get(k.replace("_", "-")) == v for k, v in wanted.items())
        ]

    @property
    def plain(self) -> str:
        return " ".join(" ".join(self.text).split())


def parse(text: str) -> Page:
    page = Page()
    page.feed(text)
    page.close()
    return page


def test_the_html_report_holds_the_run(demo: tuple[Path, Path, Path]) -> None:
    repo, log, home = demo
    result = run_cli("report", "--repo", str(repo), cwd=repo, home=home)
    assert result.returncode == 0, result.stderr
    target = log.parent / "report.html"
    assert result.stdout.strip() == f"report: {target}"
    page = parse(target.read_text(encoding="utf-8"))
    text = page.plain
    assert "Shop checkout (demo)" in text
    for label in (
        "Time saved",
        "Operator waits",
        "Conflict rate",
        "Rework rate",
        "Tokens and cost",
    ):
        assert label in text
    assert "Tokens and cost not reported by this run's agents" in text  # the demo agent's
    assert "1 merge conflict left for you in shipping" in text
    # The timeline: one SVG, a row per task in plan order, bars by outcome.
    (svg,) = page.all("svg", id="timeline")
    assert svg["role"] == "img"
    assert [a["data-task"] for a in page.all("g", **{"class": "row"})] == TASKS
    outcomes = [a["data-outcome"] for a in page.all("g", **{"class": "bar"})]
    assert sorted(outcomes) == sorted(["merged"] * 7 + ["failed", "conflict"])
    whys = {a["data-why"] for a in page.all("rect", **{"class": "wait"})}
    assert {"dependency", "scope"} <= whys, whys
    kinds = [a["data-kind"] for a in page.all("text", **{"class": "mark"})]
    assert "retry" in kinds and "finding" in kinds
    # Every task, its attempts, prompts, checks and files.
    assert [a["id"] for a in page.all("section", **{"class": "task"})] == [
        f"task-{t}" for t in TASKS
    ]
    assert len(page.all("pre", **{"class": "prompt"})) == 9  # pricing ran twice
    assert CHECK in text and "failed (exit 1)" in text and "passed" in text
    assert "src/shop/pricing.py" in text and "docs/api/contract.md" in text
    # Every finding, and the merges.
    findings = page.all("tr", **{"class": "finding"})
    assert len(findings) >= 3 and "predicted-conflict" in text
    assert len(page.all("tr", **{"class": "merge"})) == 7
    # Self-contained: nothing to fetch, nothing to run.
    assert not page.all("script") and not page.all("link") and not page.all("img")
    for tag, attrs in page.tags:
        for name, value in attrs.items():
            if name in ("src", "href", "action", "data") or value.startswith(("http:", "https:")):
                assert (tag, name) == ("svg", "xmlns"), (tag, name, value)


def test_the_markdown_report_is_for_a_pull_request(demo: tuple[Path, Path, Path]) -> None:
    repo, _log, home = demo
    out = repo.parent / "pr.md"
    result = run_cli("report", "--repo", str(repo), "-o", str(out), cwd=repo, home=home)
    assert result.returncode == 0, result.stderr
    text = out.read_text(encoding="utf-8")
    assert text.startswith("## Shop checkout (demo): run `")
    assert "```mermaid\ngantt\n  dateFormat x" in text
    pricing = text.index("  section pricing\n")
    assert text[pricing:].splitlines()[1].startswith("  attempt 1 failed :crit, ")
    assert "| shipping | merge-conflict | 1 |" in text
    assert "merge conflict in src/shop/config.py" in text
    assert "<script" not in text


def test_the_gantt_bars_are_exact_to_the_millisecond_and_never_overlap() -> None:
    # a fails from 4.2 s to 5.6 s and its retry runs from 5.6 s to 6.9 s (in whole
    # seconds: 1004-1006 then 1005-1007, one over the other); b lasts 0.4 ms.
    events = [
        run_started(),
        *batch(1, 0, "a", "b"),
        *attempt("a", 4.2, 5.6, status="failed"),
        RetryScheduled(task="a", attempt=2, prompt="again", ts=T0 + 5.6),
        *attempt("a", 5.6, 6.9, number=2),
        *attempt("b", 3.0, 3.0004),
    ]
    text = share.render_markdown(finish(fold(events), 7.0))
    chart = text[text.index("```mermaid") : text.index("### Tasks")].strip().splitlines()
    assert chart == [
        "```mermaid",
        "gantt",
        "  dateFormat x",
        "  axisFormat %H:%M:%S",
        "  section a",
        "  attempt 1 failed :crit, 1004200, 1005600",
        "  attempt 2 succeeded :done, 1005600, 1006900",
        "  section b",
        "  attempt 1 succeeded :done, 1003000, 1003001",  # at least a millisecond
        "```",
    ]


def test_report_to_standard_output_and_bad_input(demo: tuple[Path, Path, Path]) -> None:
    repo, log, home = demo
    result = run_cli("report", str(log), "-o", "-", cwd=repo, home=home)
    assert result.returncode == 0 and result.stdout.startswith("<!DOCTYPE html>")
    missing = run_cli("report", "no-such-run", "--repo", str(repo), cwd=repo, home=home)
    assert missing.returncode == 2 and "no-such-run" in missing.stderr
    nowhere = repo.parent / "missing" / "r.html"
    bad = run_cli("report", "--repo", str(repo), "-o", str(nowhere), cwd=repo, home=home)
    assert bad.returncode == 2
    assert bad.stderr.strip() == f"delegate-tui: {nowhere.parent}: no such folder"
    assert not nowhere.parent.exists()
    help_text = run_cli("report", "--help", cwd=repo, home=home).stdout
    assert "--format [html|md]" in help_text and "-o, --output FILE" in help_text


def test_the_projection_of_the_real_run(demo: tuple[Path, Path, Path]) -> None:
    _repo, log, _home = demo
    state, _ = final_state(log)
    timeline = project(state)
    pricing, shipping, guide = (timeline.row(t) for t in ("pricing", "shipping", "guide"))
    assert pricing is not None and shipping is not None and guide is not None
    assert [b.outcome for b in pricing.bars] == ["failed", "merged"]
    assert [(m.kind, m.by) for m in pricing.marks if m.kind == "retry"] == [("retry", "policy")]
    assert [b.outcome for b in shipping.bars] == ["conflict"]
    scope = [w for w in guide.waits if w.why == "scope"]
    assert scope and "edits overlap with contract" in scope[0].detail
    assert 2 <= timeline.peak <= 3
    for row in timeline.rows:
        spans = row.spans()
        assert all(a.end <= b.start + 1e-6 for a, b in itertools.pairwise(spans)), row.task


def test_spend_prompts_and_markup_in_the_report() -> None:
    """Tokens and cost where the agents reported them; the plan's and agents' text is text."""
    play = eventful()
    play.at(
        29,
        AgentUsage(
            task="build",
            attempt=1,
            usage=(TokenUsage(model="m", input=10_000, cached=2_000, output=300),),
            cost_usd=0.42,
            cost_source="cli",
        ),
    )
    play.at(81, RetryScheduled(task="ui", attempt=2, prompt="<script>alert(1)</script> & go"))
    state = play.state
    page = parse(share.render_html(state))
    text = page.plain
    assert "Tokens and cost 12.3k tok (in 10,000, cached 2,000, out 300), $0.42" in text
    assert "<script>alert(1)</script> & go" in text and not page.all("script")
    assert [a["data-task"] for a in page.all("g", **{"class": "row"})] == [
        "build",
        "docs",
        "api",
        "extra",
        "ui",
        "legacy",
    ]
    markdown = share.render_markdown(state)
    assert "| build | merge-conflict | 2 |" in markdown
    assert "12.3k tok (in 10,000, cached 2,000, out 300), $0.42 |" in markdown
    assert "| docs | succeeded | 1 | 14s (waited 5s) | 0 | - |  |" in markdown


# ---------------------------------------------------------------- in a real browser


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and rows (RGB(A), 8 bits) of a PNG, with its filters undone."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    width = height = channels = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _c, _f, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and not interlace
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        flt = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            if flt == 1:
                line[i] = (line[i] + a) & 255
            elif flt == 2:
                line[i] = (line[i] + b) & 255
            elif flt == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif flt == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, [bytes(r[i : i + 3]) for r in rows for i in range(0, stride, channels)]


def test_the_report_opens_in_a_real_browser(demo: tuple[Path, Path, Path], tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no chromium on this machine (Debian: apt install chromium)")
    repo, log, home = demo
    page = tmp_path / "report.html"
    assert run_cli("report", str(log), "-o", str(page), cwd=repo, home=home).returncode == 0
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--host-resolver-rules=MAP * ~NOTFOUND",  # it must not need a network
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1100,1000",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
    )
    width, height, pixels = png_pixels(shot.read_bytes())
    assert (width, height) == (1100, 1000)

    def count(colour: str) -> int:
        rgb = bytes.fromhex(colour[1:])
        return sum(p == rgb for p in pixels)

    def drawn(colour: str) -> float:
        """The pixels the page asks for in ``colour``: its agents' bars (16 px high, full
        colour; their widths follow the run's timing) and the legend's 12x12 swatch."""
        bars = re.findall(rf'<rect [^>]*width="([0-9.]+)" height="16" [^>]*fill="{colour}"', html)
        return 144 + sum(float(w) * 16 for w in bars)

    # The merged bars (eight of them), the failed first attempt and the conflict: each
    # drawn by the browser as the page says (rounded corners and edges cost a few pixels).
    html = page.read_text()
    for outcome, at_least in (("merged", 8), ("failed", 1), ("conflict", 1)):
        colour = OUTCOME_COLOURS[outcome]
        wanted = drawn(colour)
        assert wanted >= 144 + at_least * 2 * 16, (outcome, wanted)
        assert count(colour) >= 0.8 * wanted, (outcome, count(colour), wanted)
