"""The pure part of sandboxes: scope folders, mount layout, bwrap argv, refused writes."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from delegate_tui.core import sandbox
from delegate_tui.core.plan import PlanError, parse_plan
from delegate_tui.core.sandbox import (
    DenialScanner,
    GitMeta,
    Layout,
    SandboxError,
    Support,
    agent_homes,
    denial_in,
    plan_layout,
    scope_dirs,
)

REPO = Path("/work/repo")
WT = REPO / ".delegate/worktrees/run1/api-1"
META = GitMeta(
    git_dir=REPO / ".git/worktrees/api-1",
    common_dir=REPO / ".git",
    branch="refs/heads/delegate/run1/tasks/api",
)


def dirs(*edits: str, existing: tuple[str, ...] = ()) -> tuple[str, ...]:
    return scope_dirs(edits, lambda rel: rel in existing)


# ---------------------------------------------------------------- scope folders


def test_a_glob_gives_its_deepest_folder_without_a_wildcard() -> None:
    assert dirs("src/api/**") == ("src/api",)
    assert dirs("src/api/*.py") == ("src/api",)
    assert dirs("src/api/v[12]/x.py") == ("src/api",)
    assert dirs("docs/?.md", "tests/unit/**/test_*.py") == ("docs", "tests/unit")


def test_a_declared_file_gives_its_folder_and_a_folder_gives_itself() -> None:
    assert dirs("src/auth/login.py") == ("src/auth",)
    assert dirs("src/auth", existing=("src/auth",)) == ("src/auth",)
    assert dirs("src/auth") == ("src",)  # not there yet: a file or a folder, so its parent
    assert dirs("src/new/") == ("src/new",)  # a trailing slash says folder
    assert dirs("./src/x.py") == ("src",)


def test_a_root_file_or_a_root_wildcard_opens_the_whole_worktree() -> None:
    assert dirs("README.md") == ("",)
    assert dirs("**/*.py", "src/a.py") == ("",)
    assert dirs("*.md") == ("",)


def test_folders_inside_another_are_dropped_but_siblings_with_a_common_prefix_stay() -> None:
    assert dirs("src/**", "src/api/x.py", "srcs/y.py") == ("src", "srcs")


def test_no_edits_give_no_folder() -> None:
    assert dirs() == ()


@pytest.mark.parametrize("glob", ["../other/**", "src/../../x", "/etc/passwd"])
def test_a_glob_that_leaves_the_worktree_is_refused(glob: str) -> None:
    with pytest.raises(SandboxError, match="leaves the worktree"):
        dirs(glob)


# ---------------------------------------------------------------- git metadata


def test_a_linked_worktree_writes_its_gitdir_and_its_branch_folder_not_the_objects() -> None:
    assert sandbox.git_writable(META) == (
        REPO / ".git/worktrees/api-1",
        REPO / ".git/refs/heads/delegate/run1/tasks",
        REPO / ".git/logs/refs/heads/delegate/run1/tasks",
    )
    # New objects go to a store of the agent's own in its git folder; it reads the
    # repository's through it.
    assert sandbox.git_objects(META) == (
        REPO / ".git/worktrees/api-1/delegate-objects",
        REPO / ".git/objects",
    )


def test_the_main_checkout_writes_no_git_metadata_and_a_detached_head_no_ref() -> None:
    assert sandbox.git_writable(GitMeta(REPO / ".git", REPO / ".git", "refs/heads/main")) == ()
    detached = GitMeta(META.git_dir, META.common_dir, "")
    assert sandbox.git_writable(detached) == (META.git_dir,)
    assert sandbox.git_objects(GitMeta(REPO / ".git", REPO / ".git", "refs/heads/main")) is None


# ---------------------------------------------------------------- layouts


def layout(mode: str, **kw: object) -> Layout:
    args: dict[str, object] = {
        "network": True,
        "workdir": WT,
        "repo": REPO,
        "git": META,
        "edits": ("src/api/**",),
        "consult": False,
    }
    args.update(kw)
    return plan_layout(mode, **args)  # type: ignore[arg-type]


def test_worktree_mode_writes_the_worktree_and_its_git_metadata_only() -> None:
    box = layout("worktree", extra=[Path("/home/op/.claude")])
    assert box.writable == (WT, *sandbox.git_writable(META), Path("/home/op/.claude"))
    # The worktree's own `.git` file stays read-only: pointed elsewhere, it would make
    # the engine's commit after the agent land in another repository. So do the files
    # of its git folder that point at the repository and its config, and the engine's
    # own index of the worktree.
    assert box.protected == (
        WT / ".git",
        META.git_dir / "commondir",
        META.git_dir / "gitdir",
        META.git_dir / "config.worktree",
        META.git_dir / "delegate-index",
    )
    assert REPO / ".git/objects" not in box.writable
    assert box.objects == sandbox.git_objects(META)
    assert box.visible == ()  # nothing under /tmp to put back


def test_scope_mode_writes_only_the_edits_folders_in_the_worktree() -> None:
    box = layout("scope", edits=("src/api/**", "docs/api.md"))
    assert box.writable[:2] == (WT / "docs", WT / "src/api")
    assert WT not in box.writable
    assert META.git_dir in box.writable


def test_a_consult_task_under_scope_writes_nothing_of_its_worktree_or_git() -> None:
    box = layout("scope", consult=True, edits=(), extra=[Path("/home/op/.codex")])
    assert box.writable == (Path("/home/op/.codex"),)
    assert box.objects is None


def test_the_agents_git_writes_its_own_store_and_reaches_no_session_socket() -> None:
    env = {"PATH": "/usr/bin", "SSH_AUTH_SOCK": "/run/user/1/ssh", "HOME": "/home/op"}
    out = sandbox.sandbox_env(env, layout("worktree"))
    assert out["GIT_OBJECT_DIRECTORY"] == str(REPO / ".git/worktrees/api-1/delegate-objects")
    assert out["GIT_ALTERNATE_OBJECT_DIRECTORIES"] == str(REPO / ".git/objects")
    assert "SSH_AUTH_SOCK" not in out and out["TMPDIR"] == "/tmp"
    consult = sandbox.sandbox_env(env, layout("scope", consult=True, edits=()))
    assert "GIT_OBJECT_DIRECTORY" not in consult


def test_in_the_operators_checkout_git_and_delegate_stay_read_only() -> None:
    main = GitMeta(REPO / ".git", REPO / ".git", "refs/heads/main")
    box = layout("worktree", workdir=REPO, git=main)
    assert box.writable == (REPO,)
    assert set(box.protected) == {REPO / ".delegate", REPO / ".git"}
    mounts = box.mounts()
    assert mounts.index(("rw", REPO)) < mounts.index(("ro", REPO / ".git"))


def test_mounts_go_outer_before_inner_so_the_inner_one_wins() -> None:
    home = Path("/tmp/scratch/home")
    box = layout("worktree", repo=Path("/tmp/r"), workdir=Path("/tmp/r/.delegate/w/t-1"),
                 git=GitMeta(Path("/tmp/r/.git/worktrees/t-1"), Path("/tmp/r/.git"), ""),
                 home=home, extra=[home / ".gemini"])  # fmt: skip
    assert box.visible == (Path("/tmp/r"), home, Path("/tmp/r/.git"))
    order = [path for _, path in box.mounts()]
    assert order.index(Path("/tmp/r")) < order.index(Path("/tmp/r/.git"))
    assert order.index(Path("/tmp/r/.git")) < order.index(Path("/tmp/r/.git/worktrees/t-1"))
    assert order.index(home) < order.index(home / ".gemini")
    assert order.index(Path("/tmp/r")) < order.index(Path("/tmp/r/.delegate/w/t-1"))


def test_the_bwrap_argv_drops_capabilities_and_hides_tmp_before_any_bind() -> None:
    argv = layout("worktree").argv(["claude", "-p", "hi"], "/usr/bin/bwrap")
    assert argv[0] == "/usr/bin/bwrap"
    assert argv[-4:] == ["--", "claude", "-p", "hi"]
    assert "--cap-drop" in argv and argv[argv.index("--cap-drop") + 1] == "ALL"
    assert {"--die-with-parent", "--unshare-pid"} <= set(argv)
    assert "--unshare-net" not in argv
    assert argv.index("--tmpfs") < argv.index("--bind")
    assert argv[argv.index("--ro-bind") : argv.index("--ro-bind") + 3] == ["--ro-bind", "/", "/"]
    assert argv[argv.index("--chdir") + 1] == str(WT)
    binds = [argv[i + 1] for i, a in enumerate(argv) if a == "--bind"]
    assert sorted(binds) == sorted(str(p) for p in layout("worktree").writable)


def test_network_off_adds_a_network_namespace() -> None:
    box = layout("scope", network=False)
    assert "--unshare-net" in box.argv(["x"])
    assert box.describe() == "scope, network off"


def test_off_has_no_layout() -> None:
    with pytest.raises(SandboxError):
        layout("off")


# ---------------------------------------------------------------- agent homes


def test_each_agent_cli_gets_its_documented_config_home() -> None:
    home = Path("/home/op")
    assert agent_homes("claude", {}, home) == (home / ".claude", home / ".claude.json")
    assert agent_homes("claude", {"CLAUDE_CONFIG_DIR": "/cfg/c"}, home)[0] == Path("/cfg/c")
    assert agent_homes("codex", {}, home) == (home / ".codex",)
    assert agent_homes("codex", {"CODEX_HOME": "/cfg/x"}, home) == (Path("/cfg/x"),)
    assert agent_homes("gemini", {}, home) == (home / ".gemini",)
    assert agent_homes("aider", {}, home) == (home / ".aider",)
    assert agent_homes("shell", {}, home) == ()


# ---------------------------------------------------------------- refused writes


@pytest.mark.parametrize(
    ("line", "path"),
    [
        ("touch: cannot touch '/work/repo/README.md': Read-only file system", "/work/repo/README.md"),
        ("sh: 1: cannot create /root/x.txt: Read-only file system", "/root/x.txt"),
        ("sh: 1: cannot create README.md: Read-only file system", "README.md"),
        ("OSError: [Errno 30] Read-only file system: '/etc/zz'", "/etc/zz"),
        ("Error: EROFS: read-only file system, open '/home/op/notes.md'", "/home/op/notes.md"),
        ("fatal: Unable to create '/r/.git/index.lock': Read-only file system", "/r/.git/index.lock"),
        ("\x1b[31mError\x1b[0m: Read-only file system (os error 30)", ""),
        ("mkdir: cannot create directory ‘src/x’: Read-only file system", "src/x"),
    ],
)  # fmt: skip
def test_refused_writes_are_recognised_with_their_path(line: str, path: str) -> None:
    found = denial_in(line)
    assert found is not None and found.path == path
    assert "\x1b" not in found.line


@pytest.mark.parametrize(
    "line", ["wrote src/api/x.py", "Permission denied", "the file system is fine", ""]
)
def test_other_lines_are_not_refused_writes(line: str) -> None:
    assert denial_in(line) is None


def test_the_scanner_joins_chunks_reports_each_path_once_and_stops_at_its_limit() -> None:
    scanner = DenialScanner(limit=2)
    assert scanner.feed(b"touch: cannot touch '/a': Read-only") == []
    (first,) = scanner.feed(b" file system\r\nok\n")
    assert first.path == "/a"
    assert scanner.feed(b"touch: cannot touch '/a': Read-only file system\n") == []
    found = scanner.feed(
        b"sh: cannot create /b: Read-only file system\nsh: cannot create /c: Read-only file system\n"
    )
    assert [d.path for d in found] == ["/b"]
    assert scanner.feed(b"sh: cannot create /d: Read-only file system\n") == []


# ---------------------------------------------------------------- plans


def plan(body: str, top: str = "") -> str:
    return f"name: p\n{top}tasks:\n" + textwrap.indent(textwrap.dedent(body), "  ")


def test_yaml_on_and_off_are_read_as_the_words_they_are() -> None:
    parsed = parse_plan(
        plan(
            """\
            - {id: a, prompt: x, sandbox: scope, network: off}
            - {id: b, prompt: x, sandbox: off}
            - {id: c, prompt: x}
            """,
            "sandbox: worktree\nnetwork: on\n",
        )
    )
    a, b, c = parsed.tasks
    assert sandbox.effective(parsed, a) == ("scope", False)
    assert sandbox.effective(parsed, b) == ("off", True)
    assert sandbox.effective(parsed, c) == ("worktree", True)
    assert sandbox.sandboxed_tasks(parsed) == ["a", "c"]


def test_the_guard_switch_reads_yaml_on_and_off_too() -> None:
    parsed = parse_plan(plan("- {id: a, prompt: x, guard: off}\n", "guard: on\n"))
    assert (parsed.guard, parsed.tasks[0].guard) == ("on", "off")


def test_a_wrong_sandbox_mode_names_its_line_and_field() -> None:
    with pytest.raises(PlanError) as err:
        parse_plan(plan("- id: a\n  prompt: x\n  sandbox: on\n"))
    assert "plan.yaml:5: tasks[0].sandbox: expected 'off', 'worktree' or 'scope', got 'on'" in str(
        err.value
    )


def test_run_sandbox_puts_every_task_in_its_mode() -> None:
    parsed = parse_plan(plan("- {id: a, prompt: x, sandbox: scope}\n- {id: b, prompt: x}\n"))
    forced = sandbox.with_mode(parsed, "off")
    assert [sandbox.effective(forced, t)[0] for t in forced.tasks] == ["off", "off"]
    assert sandbox.with_mode(parsed, None) is parsed


def ok() -> Support:
    return Support(True, "/usr/bin/bwrap")


def test_network_off_without_a_sandbox_is_refused_naming_the_field(tmp_path: Path) -> None:
    parsed = parse_plan(plan("- id: a\n  prompt: x\n  network: off\n"), "p.yaml")
    with pytest.raises(SandboxError, match=r"p.yaml:5: tasks\[0\].network: network: off runs"):
        sandbox.check_plan(parsed, tmp_path, ok)


def test_a_machine_without_bwrap_refuses_sandboxed_plans_only(tmp_path: Path) -> None:
    def missing() -> Support:
        return sandbox.probe(str(tmp_path / "no-such-bwrap"))

    boxed = parse_plan(
        plan(
            "- {id: a, prompt: x, sandbox: worktree}\n- {id: b, prompt: x}\n"
            "- {id: c, prompt: x, sandbox: scope, network: 'off'}\n"
        )
    )
    with pytest.raises(SandboxError) as err:
        sandbox.check_plan(boxed, tmp_path, missing)
    assert "tasks a, c run in a sandbox" in str(err.value) and "--sandbox off" in str(err.value)
    # What the refusal says to do always works, network: off included (it needs a sandbox).
    unboxed = sandbox.with_mode(boxed, "off")
    sandbox.check_plan(unboxed, tmp_path, missing)
    assert [sandbox.effective(unboxed, t) for t in unboxed.tasks] == [("off", True)] * 3


def test_a_bwrap_that_cannot_run_is_reported_with_its_reason(tmp_path: Path) -> None:
    found = sandbox.probe("/bin/false", fresh=True)
    assert not found.ok and "cannot create the namespaces" in found.reason
    assert not sandbox.probe(str(tmp_path / "nope"), fresh=True).ok


def test_sandbox_writable_folders_must_exist(tmp_path: Path) -> None:
    (tmp_path / ".cache").mkdir()
    good = parse_plan(
        plan("- {id: a, prompt: x}\n", "sandbox: worktree\nsandbox_writable: [~/.cache]\n")
    )
    assert sandbox.writable_extras(good, tmp_path) == ((tmp_path / ".cache").resolve(),)
    sandbox.check_plan(good, tmp_path, ok)
    bad = parse_plan(
        plan("- {id: a, prompt: x}\n", "sandbox: worktree\nsandbox_writable: [~/nope]\n")
    )
    with pytest.raises(SandboxError, match=r"sandbox_writable: .*nope is not an existing folder"):
        sandbox.check_plan(bad, tmp_path, ok)


def test_a_scope_glob_leaving_the_worktree_is_refused_before_the_run(tmp_path: Path) -> None:
    bad = parse_plan(plan("- {id: a, prompt: x, sandbox: scope, edits: ['../x/**']}\n"))
    with pytest.raises(SandboxError, match=r"tasks\[0\].edits: .*leaves the worktree"):
        sandbox.check_plan(bad, tmp_path, ok)


# ---------------------------------------------------------------- events, state, stats


def test_the_sandbox_and_its_refusals_reach_state_stats_and_the_log_codec() -> None:
    from delegate_tui.core import metrics
    from delegate_tui.core.events import SandboxDenied, TaskSandboxed, decode, encode
    from delegate_tui.core.state import RunState, apply

    events = [
        TaskSandboxed(
            task="api",
            attempt=1,
            mode="scope",
            network=False,
            writable=("/r/.delegate/worktrees/x/api-1/src",),
            wrapper=("bwrap", "--unshare-net"),
        ),
        SandboxDenied(task="api", attempt=1, path="/r/README.md", detail="sh: ... Read-only"),
        SandboxDenied(task="api", attempt=1, path="", detail="Read-only file system"),
    ]
    state = RunState()
    for ev in events:
        assert decode(encode(ev)) == ev
        apply(state, ev)
    attempt = state.tasks["api"].attempts[0]
    assert attempt.sandbox == "scope, network off"
    assert attempt.sandbox_writable == ("/r/.delegate/worktrees/x/api-1/src",)
    assert attempt.sandbox_denied == ("/r/README.md", "")
    report = metrics.stats(state)["tasks"]["api"]  # type: ignore[index]
    assert report["sandbox"] == "scope, network off"
    assert report["sandbox_denied"] == ["/r/README.md", ""]


def test_refused_writes_are_found_inside_a_structured_stream() -> None:
    line = (
        '{"type":"user","message":{"role":"user","content":[{"tool_use_id":"toolu_1",'
        '"type":"tool_result","content":"in-scope-ok\\nsh: 1: cannot create README.md: '
        'Read-only file system\\nsh: 1: cannot create /r/src/x.py: Read-only file system",'
        '"is_error":false}]}}\n'
    )
    found = DenialScanner().feed(line.encode())
    assert [d.path for d in found] == ["README.md", "/r/src/x.py"]
    assert found[0].line == "sh: 1: cannot create README.md: Read-only file system"


def test_a_refusal_split_across_chunks_in_the_middle_of_its_words_is_still_found() -> None:
    scanner = DenialScanner()
    assert scanner.feed(b"lots of output\ntouch: cannot touch '/a': Read-on") == []
    (found,) = scanner.feed(b"ly file system\n")
    assert found.path == "/a"
    long_line = b"y" * 10_000  # no newline for a while: only the line's tail is kept
    assert scanner.feed(long_line) == [] and scanner.feed(b"\n") == []


def test_a_scope_folder_that_is_a_link_out_of_the_worktree_is_refused(tmp_path: Path) -> None:
    wt, outside = tmp_path / "wt", tmp_path / "elsewhere"
    wt.mkdir()
    outside.mkdir()
    (wt / "src").symlink_to(outside)
    box = plan_layout(
        "scope", network=True, workdir=wt, repo=wt, git=None, edits=["src/api/**"], consult=False
    )
    with pytest.raises(SandboxError, match="leads outside"):
        sandbox.make_room(box, wt)
    assert not (outside / "api").exists()
    fine = plan_layout(
        "scope", network=True, workdir=wt, repo=wt, git=None, edits=["lib/new/**"], consult=False
    )
    sandbox.make_room(fine, wt)
    assert (wt / "lib" / "new").is_dir(), "a scope folder not there yet is made for its mount"


def test_a_refusal_whose_line_ends_in_the_next_chunk_is_found() -> None:
    scanner = DenialScanner()
    # The whole message, then its line's end alone (a PTY read can stop between \r and \n).
    assert scanner.feed(b"sh: 1: cannot create /w/x.txt: Read-only file system\r") == []
    (found,) = scanner.feed(b"\nsaw-sibling\r\n")
    assert found.path == "/w/x.txt"
    assert scanner.feed(b"more\n") == []


def test_codex_runs_without_its_own_sandbox_inside_this_one() -> None:
    argv = ["codex", "exec", "-c", 'sandbox_mode="workspace-write"', "--", "hi"]
    assert sandbox.inner_argv("codex", argv) == [
        "codex",
        "exec",
        "-c",
        'sandbox_mode="danger-full-access"',
        "--",
        "hi",
    ]
    assert sandbox.inner_argv("codex", ["codex", "--sandbox", "workspace-write", "x"])[2] == (
        "danger-full-access"
    )
    assert sandbox.inner_argv("claude", argv) == argv  # other CLIs as they are


def test_a_program_installed_under_tmp_stays_visible_in_the_sandbox(tmp_path: Path) -> None:
    """The sandbox's /tmp is private: an agent CLI (or a venv's Python) installed under
    /tmp would be "No such file or directory" inside it (seen: bwrap: execvp claude)."""
    from delegate_tui.core.sandbox import Layout, with_program

    base = Layout(mode="worktree", network=True, workdir=tmp_path, writable=(tmp_path,))
    tool = Path("/tmp") / f"dt-test-{os.getpid()}" / "bin"
    tool.mkdir(parents=True, exist_ok=True)
    try:
        (tool / "agent-cli").write_text("#!/bin/sh\n")
        (tool / "agent-cli").chmod(0o755)
        layout = with_program(base, "agent-cli", str(tool))
        assert layout.visible == (Path("/tmp") / f"dt-test-{os.getpid()}",)
        argv = layout.argv(["agent-cli"])
        at = argv.index("--ro-bind", argv.index("--tmpfs"))
        assert argv[at + 1] == str(Path("/tmp") / f"dt-test-{os.getpid()}")
        assert with_program(base, "sh", "/usr/bin:/bin") == base  # not under /tmp: unchanged
        assert with_program(base, "no-such-program", str(tool)) == base
    finally:
        import shutil

        shutil.rmtree(tool.parent)


def test_the_runtime_folder_is_emptied_after_the_folder_that_holds_it_is_put_back() -> None:
    import dataclasses

    home = Path("/tmp/op")
    box = dataclasses.replace(
        layout("worktree", home=home, repo=Path("/tmp/op/repo")),
        emptied=(home / "run",),
        masked=(Path("/run/docker.sock"),),
    )
    argv = box.argv(["true"])
    assert argv.index("--tmpfs", argv.index("/tmp") + 1) > argv.index(str(home))
    assert argv[argv.index(str(home / "run")) - 1] == "--tmpfs"
    at = argv.index("/run/docker.sock")
    assert argv[at - 2 : at] == ["--ro-bind", "/dev/null"]
