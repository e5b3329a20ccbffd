"""Prompts carried between attempts and tasks; argv built without a shell."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from delegate_tui.core import prompts, sandbox
from delegate_tui.core.agents import (
    PRESETS,
    AgentDef,
    AgentError,
    agent_prompt,
    build_argv,
    configured_model,
    resolve_agents,
)
from delegate_tui.core.events import CriterionResult
from delegate_tui.core.plan import Plan, parse_plan
from delegate_tui.core.prompts import final_output, plain_text, retry_prompt, tail_text
from delegate_tui.core.state import AttemptState, RunState, TaskState


def test_plain_text_renders_like_a_terminal() -> None:
    raw = b"\x1b[32mok\x1b[0m\n10%\r50%\r100%\nab\x08c\x1b]0;title\x07\x1b]52;c;Zm9v\x07x\n\x1b[?25lspin"
    assert plain_text(raw) == "ok\n100%\nac x\nspin".replace(" ", "")


def test_tail_text_is_bounded_and_cut_at_a_line() -> None:
    text = "\n".join(f"line {i}" for i in range(1000))
    tail = tail_text(text, 100)
    assert tail.startswith("[...]\nline ") and tail.endswith("line 999") and len(tail) <= 110


def test_retry_prompt_carries_failure_output_and_operator_words() -> None:
    failed = AttemptState(1, exit_code=2, exit_reason="exit", started_ts=1.0)
    failed.tail.extend(b"\x1b[31mTypeError: x is None\x1b[0m\n")
    failed.criteria = (CriterionResult("tests pass", "pytest -q", False, 1, "1 failed"),)
    prompt = retry_prompt("Implement login.", failed, "Use the session helper in src/session.py")
    assert prompt.startswith("Implement login.\n")
    assert "Previous attempt (1) failed: exited with status 2" in prompt
    assert "TypeError: x is None" in prompt and "\x1b" not in prompt
    assert "Criterion failed: pytest -q (exit 1)" in prompt
    assert prompt.rstrip().endswith(
        "--- Operator's note ---\nUse the session helper in src/session.py"
    )


def test_final_output_prefers_the_last_message() -> None:
    attempt = AttemptState(1)
    attempt.tail.extend(b"noise\nUse streams.\n")
    assert final_output(attempt, "  Use 64 KiB chunks.\n") == "Use 64 KiB chunks."
    assert final_output(attempt, None) == "noise\nUse streams."


def test_prompt_is_one_argument_never_a_shell_string() -> None:
    hostile = "x'; rm -rf / #\n$(touch pwned)"
    argv = build_argv(
        PRESETS["claude"],
        prompt=hostile,
        task_id="t",
        workdir="/w",
        last_message="/m",
        model="opus",
    )
    assert argv == [
        "claude",
        "-p",
        "--output-format",
        "stream-json",
        "--verbose",
        "--permission-mode",
        "acceptEdits",
        "--model",
        "opus",
        "--",
        hostile,
    ]
    codex = build_argv(PRESETS["codex"], prompt="p", task_id="t", workdir="/w", last_message="/m")
    assert codex == [
        "codex",
        "exec",
        "--json",
        "--skip-git-repo-check",
        "--disable",
        "unbounded_connection_retries",
        "--output-last-message",
        "/m",
        "-c",
        'sandbox_mode="workspace-write"',
        "--",
        "p",
    ]
    # gemini with a model: options before the prompt, which is one `--prompt=` argument
    # (issue 14: `-p --model M PROMPT` failed with "Not enough arguments following: p").
    assert build_argv(
        PRESETS["gemini"], prompt="p", task_id="t", workdir="/w", last_message="", model="m"
    ) == [
        "gemini",
        "--skip-trust",
        "--output-format",
        "stream-json",
        "--approval-mode",
        "auto_edit",
        "--model",
        "m",
        "--prompt=p",
    ]
    assert build_argv(PRESETS["aider"], prompt="p", task_id="t", workdir="/w", last_message="") == [
        "aider",
        "--yes-always",
        "--no-gitignore",
        "--no-check-update",
        "--analytics-disable",
        "--message=p",
    ]
    demo = build_argv(
        PRESETS["demo"], prompt="p", task_id="t", workdir="/w", last_message="/m", persona="Tester"
    )
    assert demo[:3] == [sys.executable, "-m", "delegate_tui.demo.agent"] and demo[-1] == "p"
    assert "--persona" in demo


def test_a_prompt_starting_with_a_dash_is_never_an_option() -> None:
    prompt = "---\ntitle: front matter\n---\n- a Markdown list"
    for name in ("claude", "codex"):
        argv = build_argv(PRESETS[name], prompt=prompt, task_id="t", workdir="", last_message="")
        assert argv[-2:] == ["--", prompt]
    gemini = build_argv(PRESETS["gemini"], prompt=prompt, task_id="t", workdir="", last_message="")
    assert gemini[-1] == "--prompt=" + prompt
    aider = build_argv(PRESETS["aider"], prompt=prompt, task_id="t", workdir="", last_message="")
    assert aider[-1] == "--message=" + prompt


def test_resume_budgets_and_tool_permissions() -> None:
    claude = build_argv(
        PRESETS["claude"],
        prompt="go on",
        task_id="t",
        workdir="",
        last_message="",
        session="S1",
        budget_usd=0.5,
        max_turns=7,
    )
    assert claude[claude.index("--resume") + 1] == "S1"
    assert claude[claude.index("--max-budget-usd") + 1] == "0.5"
    assert claude[claude.index("--max-turns") + 1] == "7"
    assert claude[-2:] == ["--", "go on"]
    codex = build_argv(
        PRESETS["codex"], prompt="go on", task_id="t", workdir="", last_message="", session="T9"
    )
    assert codex[:3] == ["codex", "exec", "resume"] and codex[-3:] == ["T9", "--", "go on"]
    # codex and gemini have no budget flags: delegate-tui enforces those itself.
    gemini = build_argv(
        PRESETS["gemini"], prompt="p", task_id="t", workdir="", last_message="", budget_usd=1.0
    )
    assert not any("budget" in a for a in gemini) and "--resume" not in gemini
    # gemini's session goes before the options, the prompt stays last.
    resumed = build_argv(
        PRESETS["gemini"], prompt="p", task_id="t", workdir="", last_message="", session="G2"
    )
    assert resumed[:3] == ["gemini", "--resume", "G2"] and resumed[-1] == "--prompt=p"
    # tools: all lets claude run Bash and gemini run everything without asking.
    agents = resolve_agents(
        {
            "c": AgentDef(extends="claude", tools="all"),
            "g": AgentDef(extends="gemini", tools="all"),
        }
    )
    c = build_argv(agents["c"], prompt="p", task_id="t", workdir="", last_message="")
    assert c[c.index("--allowedTools") + 1] == "Bash"
    g = build_argv(agents["g"], prompt="p", task_id="t", workdir="", last_message="")
    assert g[g.index("--approval-mode") + 1] == "yolo"
    assert agents["c"].stream == "claude" and agents["c"].resume_command


def test_an_agent_with_its_own_command_forgets_its_preset_stream() -> None:
    agents = resolve_agents(
        {
            "mine": AgentDef(extends="claude", command=("my-claude-wrapper", "{prompt}")),
            "json": AgentDef(extends="shell", command=("x", "{prompt}"), stream="codex"),
            "own": AgentDef(command=("x", "{prompt}"), stream="codex"),
            "plain": AgentDef(command=("x", "{prompt}")),
        }
    )
    assert agents["mine"].stream is None and agents["mine"].resume_command == ()
    assert agents["mine"].budget_args == ()
    assert agents["json"].stream == "codex"
    # What reads codex's stream is a codex: stdin /dev/null, as the preset has it
    # (a plain command keeps its pipe for the operator's input).
    assert agents["json"].stdin == agents["own"].stdin == "devnull"
    assert agents["plain"].stdin == "pipe"


def test_the_model_a_codex_agent_runs_is_read_from_its_args_or_config(tmp_path: Path) -> None:
    """codex's stream names no model: the one an agent's `args` pass (the README's
    `codex-fast` with `-m gpt-5-mini`) prices its tokens, else its config.toml's."""
    agents = resolve_agents(
        {
            "fast": AgentDef(extends="codex", args=("-m", "gpt-5-mini")),
            "long": AgentDef(extends="codex", args=("--model=o3",)),
            "conf": AgentDef(extends="codex", args=("-c", 'model="o4-mini"')),
            "bare": AgentDef(extends="codex"),
            "json": AgentDef(command=("x", "{prompt}"), stream="gemini", args=("-m", "y")),
        }
    )
    env = {"CODEX_HOME": str(tmp_path)}
    assert configured_model(agents["fast"], env) == "gpt-5-mini"
    assert configured_model(agents["long"], env) == "o3"
    assert configured_model(agents["conf"], env) == "o4-mini"
    assert configured_model(agents["bare"], env) == ""
    (tmp_path / "config.toml").write_text('model = "gpt-5"\n')
    assert configured_model(agents["bare"], env) == "gpt-5"
    assert configured_model(agents["fast"], env) == "gpt-5-mini"  # the argv wins
    assert configured_model(agents["json"], env) == ""  # gemini's stream names its model


def test_persona_without_persona_args_goes_into_the_prompt() -> None:
    gemini = PRESETS["gemini"]
    sent = agent_prompt(gemini, "Review", "Auditor")
    assert sent == "You are Auditor.\n\nReview"
    # An agent that takes the persona as an argument gets the prompt unchanged.
    assert agent_prompt(PRESETS["claude"], "Review", "Auditor") == "Review"
    argv = build_argv(
        gemini,
        prompt=sent,
        task_id="t",
        workdir="",
        last_message="",
        persona="Auditor",
    )
    assert argv[-1] == "--prompt=You are Auditor.\n\nReview"


def test_shell_agent_runs_the_task_command() -> None:
    shell = PRESETS["shell"]
    assert build_argv(
        shell,
        prompt="p",
        task_id="t",
        workdir="/w",
        last_message="",
        task_command=("make", "{task_id}"),
    ) == ["make", "t"]
    assert build_argv(
        shell,
        prompt="$(evil)",
        task_id="t",
        workdir="",
        last_message="",
        task_command="echo {prompt}",
    ) == ["sh", "-c", "echo {prompt}"]
    with pytest.raises(AgentError):
        build_argv(shell, prompt="p", task_id="t", workdir="", last_message="")


def test_agents_extend_and_override() -> None:
    agents = resolve_agents(
        {
            "fast": AgentDef(extends="codex", args=("-m", "mini")),
            "faster": AgentDef(extends="fast", env={"X": "1"}, transport="pipes"),
            "custom": AgentDef(command=("my-agent", "{prompt}")),
        }
    )
    assert agents["faster"].args == ("-m", "mini") and agents["faster"].transport == "pipes"
    assert agents["faster"].preset == "codex" and agents["custom"].preset == "custom"
    with pytest.raises(AgentError, match="cycle"):
        resolve_agents({"x": AgentDef(extends="y"), "y": AgentDef(extends="x")})
    with pytest.raises(AgentError, match="needs `command` or `extends`"):
        resolve_agents({"bare": AgentDef()})


# ---------------------------------------------------------------- who owns what


def _scope_plan(text: str) -> tuple[Plan, RunState]:
    plan = parse_plan(text)
    state = RunState(plan=plan)
    state.tasks = {t.id: TaskState(t.id) for t in plan.tasks}
    return plan, state


def test_each_prompt_names_what_the_others_own() -> None:
    plan, state = _scope_plan(
        "name: p\ntasks:\n"
        "  - {id: auth, prompt: x, edits: ['src/auth/**']}\n"
        "  - {id: shop, prompt: x, edits: ['src/shop/**', package.json]}\n"
        "  - {id: docs, prompt: x, edits: [README.md]}\n"
        "  - {id: advice, prompt: x, kind: consult}\n"
    )
    state.tasks["shop"].status = "running"
    state.tasks["docs"].status = "awaiting-merge"
    section = prompts.scope_section(plan, state, "auth")
    assert section.splitlines()[:5] == [
        prompts.SCOPE_HEADER,
        "You may change: src/auth/**",
        "Other agents own these; do not change them, say in your final message what you need instead:",
        "  src/shop/**, package.json: shop (running)",
        "  README.md: docs (waiting to merge)",
    ]
    assert "Shared config files only their declared owner may change: package.json," in section
    # shop owns package.json itself: it is not listed to shop as someone else's.
    shop = prompts.scope_section(plan, state, "shop")
    assert "src/auth/**: auth (queued)" in shop
    assert "only their declared owner may change: package-lock.json" in shop
    consult = prompts.scope_section(plan, state, "advice")
    assert "This is a consult task: change no file" in consult
    assert "Shared config" not in consult
    # A finished task owns nothing any more.
    state.tasks["shop"].status = "succeeded"
    assert "shop" not in prompts.scope_section(plan, state, "auth")
    full = prompts.with_scope_section("Do it.\n\n", plan, state, "auth")
    assert full.startswith("Do it.\n\n" + prompts.SCOPE_HEADER)


def test_the_scope_section_stays_short_for_a_large_plan() -> None:
    tasks = "".join(f"  - {{id: t{i}, prompt: x, edits: ['src/m{i}/**']}}\n" for i in range(200))
    plan, state = _scope_plan("name: p\ntasks:\n" + tasks)
    for i in range(0, 200, 3):
        state.tasks[f"t{i}"].status = "running"
    section = prompts.scope_section(plan, state, "t1")
    assert len(section) < 1200
    listed = [line for line in section.splitlines() if line.startswith("  src/")]
    assert len(listed) == prompts.SCOPE_ENTRIES
    assert all("(running)" in line for line in listed), "running owners come first"
    assert "  and 191 more task(s)" in section


def test_the_scope_section_stays_short_however_many_globs_each_task_has() -> None:
    """Ten running tasks of sixty globs each (and a task of sixty, long paths, many shared
    files): globs are counted past a few per owner, and the section stays under
    SCOPE_CHARS characters (it was 6,362 when only entries were capped)."""
    long = "services/payments/internal/adapters/stripe/webhooks/handlers/v2/" * 2

    def globs(i: int) -> str:
        return ", ".join(f"'src/pkg{i}/module{j}/**/*.py'" for j in range(60))

    tasks = "".join(
        f"  - {{id: t{i}, prompt: x, edits: [{globs(i)}, '{long}{i}.py']}}\n" for i in range(12)
    )
    shared = ", ".join(f"'config/{'x' * 40}{j}.toml'" for j in range(30))
    plan, state = _scope_plan(f"name: p\nshared_files: [{shared}]\ntasks:\n" + tasks)
    for i in range(1, 11):
        state.tasks[f"t{i}"].status = "running"
    section = prompts.scope_section(plan, state, "t0")
    assert len(section) < prompts.SCOPE_CHARS, len(section)
    lines = section.splitlines()
    mine = next(line for line in lines if line.startswith("You may change: "))
    shown, more = mine.removeprefix("You may change: ").split(" and ")
    assert shown.split(", ")[0] == "src/pkg0/module0/**/*.py"
    assert len(shown.split(", ")) + int(more.removesuffix(" more")) == 61, "the rest counted"
    owners = [line for line in lines if line.startswith("  src/pkg")]
    assert owners and owners[0].startswith("  src/pkg1/module0/**/*.py, src/pkg1/module1/**/*.py")
    assert owners[0].endswith(" more: t1 (running)")
    assert f"  and {11 - len(owners)} more task(s)" in section  # t11 is queued
    assert all(len(line) <= prompts.SCOPE_LINE for line in lines)
    # The same holds for every task of the plan, and for a plan of 200 such tasks. Its
    # tasks differ only in their number and whether they run, so a sample stands for all
    # (all 200 sections took 2.5 s of CPU, 20-25 s on a loaded machine, mostly matching
    # 61 globs against 30 shared files): running and queued ones, the first, the longest
    # ids and the last.
    assert all(
        len(prompts.scope_section(plan, state, t.id)) < prompts.SCOPE_CHARS for t in plan.tasks
    )
    tasks = "".join(
        f"  - {{id: t{i}, prompt: x, edits: [{globs(i)}, '{long}{i}.py']}}\n" for i in range(200)
    )
    plan, state = _scope_plan(f"name: p\nshared_files: [{shared}]\ntasks:\n" + tasks)
    for i in range(0, 200, 2):
        state.tasks[f"t{i}"].status = "running"
    sample = [f"t{i}" for i in (0, 1, 10, 11, 100, 101, 198, 199)]
    sections = [prompts.scope_section(plan, state, t) for t in sample]
    assert len(plan.tasks) == 200
    assert max(len(section) for section in sections) < prompts.SCOPE_CHARS
    assert all(" more task(s)" in section for section in sections), "owners are counted"


def test_a_finding_is_told_to_the_agents_it_asks_something_of() -> None:
    from delegate_tui.core import notes
    from delegate_tui.core.events import ConflictDetected
    from delegate_tui.core.state import AttemptState

    def finding(kind: str, tasks: tuple[str, ...], ts: float = 5.0) -> ConflictDetected:
        paths = ("src/shop/config.py", "a", "b", "c")
        return ConflictDetected(
            key=f"{kind}:{tasks}", kind=kind, severity="warning", tasks=tasks, paths=paths, ts=ts
        )

    overlap = finding("overlap", ("cart", "payments"))
    assert notes.typed_note(overlap, "cart") == (
        "[delegate-tui] payments is changing src/shop/config.py, a, b (+1 more) too; keep to "
        "your own files and say in your final message what you need there."
    )
    stale = finding("stale-input", ("cart", "payments"))
    assert "payments merged a change to src/shop/config.py" in notes.sentence(stale, "cart")
    assert notes.sentence(stale, "payments") == "", "the merged task is done"
    claimed = finding("undeclared-collision", ("cart", "payments"))
    assert "belongs to task payments" in notes.sentence(claimed, "cart")
    assert notes.sentence(claimed, "payments") == "", "the owner did nothing wrong"
    assert notes.sentence(finding("shared-file", ("cart",)), "cart") == ""
    assert notes.sentence(overlap, "docs") == "", "it does not name docs"
    to_integration = finding("predicted-conflict", ("cart",))
    assert "what has merged meanwhile" in notes.sentence(to_integration, "cart")
    # A one-shot agent reads them in its next prompt: those since its attempt started,
    # once each, stale inputs aside (they come with their diff).
    state = RunState()
    state.finding_history = [finding("overlap", ("cart", "payments"), ts=1.0), overlap, overlap]
    state.finding_history.append(stale)
    last = AttemptState(1, started_ts=2.0, status="failed", reason="exited with status 1")
    found = notes.while_you_worked(state, "cart", last)
    assert found == "- " + notes.sentence(overlap, "cart")
    resumed = prompts.continue_prompt(last, found=found)
    assert resumed.endswith(prompts.FOUND_HEADER + "\n" + found + "\n")
    fresh = prompts.next_prompt("Do it.", last, found=found)
    assert prompts.FOUND_HEADER + "\n" + found in fresh
    assert prompts.FOUND_HEADER not in prompts.next_prompt("Do it.", last)


def test_a_sandboxed_prompt_names_the_folders_its_sandbox_opens() -> None:
    """A declared folder is opened itself, a declared file's folder otherwise: the prompt
    says the same, from the attempt's worktree."""
    plan = parse_plan(
        "name: p\nsandbox: scope\ntasks:\n"
        "  - {id: api, prompt: x, edits: [src/api, docs/api.md], network: 'off'}\n"
    )
    state = RunState()
    section = prompts.scope_section(plan, state, "api", lambda rel: rel == "src/api")
    assert (
        "You run in a sandbox: you may write only under docs/, src/api/ (and /tmp); any "
        "other write fails with 'Read-only file system'. You have no network." in section
    ), section


def test_a_sandbox_of_a_hundred_folders_keeps_the_scope_section_under_its_cap() -> None:
    """The sandbox's folders are counted past a few, as globs are: a task whose edits give
    100 folders still hears who owns what (its folder list alone was over SCOPE_CHARS,
    and every owner was dropped)."""

    def plan_of(folder: str, shared: str = "") -> tuple[Plan, RunState]:
        edits = ", ".join(f"'{folder}{i:03}/x.py'" for i in range(100))
        others = "".join(f"  - {{id: o{i}, prompt: x, edits: ['lib/o{i}/**']}}\n" for i in range(3))
        plan, state = _scope_plan(
            f"name: p\nsandbox: scope\nnetwork: 'off'\nshared_files: [{shared}]\ntasks:\n"
            f"  - {{id: big, prompt: x, edits: [{edits}]}}\n" + others
        )
        for i in range(3):
            state.tasks[f"o{i}"].status = "running"
        return plan, state

    plan, state = plan_of("src/module")
    assert len(sandbox.scope_dirs(plan.task("big").edits, lambda _rel: False)) == 100
    section = prompts.scope_section(plan, state, "big")
    assert len(section) < prompts.SCOPE_CHARS, len(section)
    lines = section.splitlines()
    assert [line for line in lines if line.startswith("  lib/")] == [
        f"  lib/o{i}/**: o{i} (running)" for i in range(3)
    ], "every owner is still listed"
    (sandboxed,) = [line for line in lines if line.startswith("You run in a sandbox")]
    assert sandboxed.endswith(
        " (and /tmp); any other write fails with 'Read-only file system'. You have no network."
    )
    where = sandboxed.removeprefix("You run in a sandbox: you may write only under ")
    shown, more = where.removesuffix(sandboxed[sandboxed.index(" (and /tmp)") :]).split(" and ")
    assert shown.split(", ")[:2] == ["src/module000/", "src/module001/"]
    assert len(shown.split(", ")) + int(more.removesuffix(" more")) == 100, "the rest counted"
    # The worst case: long folders, long own globs, many long shared files: still under.
    deep = "services/payments/internal/adapters/stripe/webhooks/handlers/v2/" * 3
    shared = ", ".join(f"'config/{'x' * 60}{j}.toml'" for j in range(30))
    plan, state = plan_of(deep + "module", shared)
    section = prompts.scope_section(plan, state, "big")
    assert len(section) < prompts.SCOPE_CHARS, len(section)
    assert "  lib/o0/**: o0 (running)" in section.splitlines()


def test_the_nearest_owners_come_first() -> None:
    """The owners whose files sit nearest this task's are the ones its agent may touch by
    mistake: they are named first, whatever their status; among those as near, running
    tasks before queued ones."""
    plan, state = _scope_plan(
        "name: p\ntasks:\n"
        "  - {id: api, prompt: x, edits: ['src/api/**']}\n"
        "  - {id: docs, prompt: x, edits: ['docs/**']}\n"
        "  - {id: web, prompt: x, edits: ['src/web/**']}\n"
        "  - {id: v2, prompt: x, edits: ['src/api/v2/**']}\n"
        "  - {id: css, prompt: x, edits: ['src/web/css/**']}\n"
    )
    state.tasks["docs"].status = "running"
    state.tasks["web"].status = "running"
    section = prompts.scope_section(plan, state, "api")
    named = [line.rsplit(": ", 1)[1] for line in section.splitlines() if line.startswith("  ")]
    assert named == ["v2 (queued)", "web (running)", "css (queued)", "docs (running)"]
    assert prompts.nearness(["src/api/**"], ["src/api/v2/*.py"]) == 2
    assert prompts.nearness(["README.md"], ["docs/**"]) == 0
