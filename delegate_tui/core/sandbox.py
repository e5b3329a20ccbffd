"""Sandboxes: what an agent may write, enforced by bubblewrap (``bwrap``).

Owns the meaning of ``sandbox: off | worktree | scope`` and ``network: on | off``:
which paths a task's agent may write, the ``bwrap`` command line that makes the
rest of the machine read-only to it, whether this machine can run that at all,
and spotting the writes it refused in the agent's output.

* ``worktree``: the whole filesystem is read-only except the attempt's worktree,
  the git metadata its own commits need, the agent CLI's own config home, the
  plan's ``sandbox_writable`` folders, and a private, empty ``/tmp``.
* ``scope``: the same, but inside the worktree only the folders its declared
  ``edits`` name are writable (the deepest folder of each glob; a declared file's
  folder); a ``consult`` task gets nothing writable in its worktree and no git
  metadata.

The git metadata a linked worktree writes when its agent commits: its own
``.git/worktrees/<name>`` (HEAD, index, its reflog; not the files that point git
at the repository and its config, nor the engine's own index of the worktree),
an object store of its own in that folder (``GIT_OBJECT_DIRECTORY``, reading the
repository's through ``GIT_ALTERNATE_OBJECT_DIRECTORIES``: the repository's
``objects`` stay read-only, so an agent can delete none of them, and what it wrote
is taken in, checked, when it ends: :func:`object_store.take_objects`), and the folder
of its branch under ``refs/heads`` and ``logs/refs/heads`` (``delegate/<run>/tasks``:
a ref is written as ``<ref>.lock`` renamed over the ref, so its folder must be
writable; the run's other task branches sit in the same folder). The repository's
``config``, ``hooks``, ``info``, ``packed-refs``, every other branch and the
operator's checkout stay read-only, so an agent can neither plant a hook nor
move the operator's branch; so does the worktree's own ``.git`` file (pointed
elsewhere, the engine's commit would land elsewhere). The engine's own commit
after the agent runs outside the sandbox, as the operator, from its own index
of the worktree; the agent's last-message file is writable.

The agent also runs in new PID and IPC namespaces with every capability dropped
(bwrap started as root keeps them otherwise, and a root with ``CAP_SYS_ADMIN``
could remount ``/`` read-write), in the task's own process group, and dies
with it. ``network: off`` adds a network namespace with only a loopback device.
A read-only file system does not stop a socket's ``connect()``: the operator's
runtime folder (D-Bus and the like) is replaced by an empty one, docker's socket
by an empty file, and the session's socket addresses are not passed on
(:func:`session_sockets`, :func:`sandbox_env`).

(About 800 lines: the pure layout, the bwrap command line, what git needs writable,
the refused-write scanner and the machine check belong to one decision, what an
agent may touch, and are read together when that decision changes.)
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from delegate_tui.core import guard, object_store, workspace

if TYPE_CHECKING:
    from delegate_tui.core.plan import Plan, Task

#: How to get bwrap, for the refusal and ``doctor``.
INSTALL_HINT = (
    "install bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`, "
    "Fedora: `dnf install bubblewrap`, Arch: `pacman -S bubblewrap`)"
)
#: The folder every sandbox gets empty and private.
PRIVATE_TMP = Path("/tmp")
#: Refused writes reported per attempt (one event per distinct path); the rest are
#: still in the agent's output.
MAX_DENIALS = 50

_GLOB_CHARS = re.compile(r"[*?\[]")


class SandboxError(Exception):
    """A sandbox that cannot be set up; the message says what and why."""


# --------------------------------------------------------------------------- settings


def effective(plan: Plan, task: Task) -> tuple[str, bool]:
    """``(mode, network on)`` of ``task``: its own settings, else the plan's."""
    mode = task.sandbox or plan.sandbox
    network = task.network or plan.network
    return mode, network == "on"


def with_mode(plan: Plan, mode: str | None) -> Plan:
    """``plan`` with every task in sandbox ``mode`` (``run --sandbox``); as is for ``None``.

    ``off`` lifts ``network: off`` too: only a sandbox can take the network away, and
    ``--sandbox off`` is what a machine without bubblewrap is told to use.
    """
    if mode is None:
        return plan
    update: dict[str, object] = {"sandbox": mode}
    if mode == "off":
        update["network"] = "on"
    tasks = tuple(
        t.model_copy(update={**update, "network": None} if mode == "off" else update)
        for t in plan.tasks
    )
    return plan.model_copy(update={**update, "tasks": tasks})


def sandboxed_tasks(plan: Plan) -> list[str]:
    """Ids of the tasks that run in a sandbox (mode other than ``off``)."""
    return [t.id for t in plan.tasks if effective(plan, t)[0] != "off"]


# --------------------------------------------------------------------------- the machine


@dataclass(frozen=True, slots=True)
class Support:
    """Whether this machine can sandbox: ``ok``, else ``reason`` says why not."""

    ok: bool
    bwrap: str = ""
    version: str = ""
    reason: str = ""


_support_cache: dict[str, Support] = {}


def probe(bwrap: str | None = None, *, fresh: bool = False) -> Support:
    """Find ``bwrap`` and check it can make the namespaces a sandbox needs.

    Runs ``bwrap`` once (a few milliseconds) and remembers the answer per path.
    """
    exe = bwrap or shutil.which("bwrap") or ""
    if not exe:
        return Support(False, reason=f"bubblewrap (`bwrap`) is not installed; {INSTALL_HINT}")
    if not fresh and exe in _support_cache:
        return _support_cache[exe]
    argv = [exe, *_isolation_flags(network=False), "--ro-bind", "/", "/", "--", "true"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
        version = subprocess.run(
            [exe, "--version"], capture_output=True, text=True, timeout=20, check=False
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        support = Support(False, exe, reason=f"{exe} cannot run: {exc}")
    else:
        if proc.returncode == 0:
            support = Support(True, exe, version)
        else:
            said = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
            support = Support(
                False,
                exe,
                version,
                f"{exe} cannot create the namespaces a sandbox needs ({said}); allow "
                "unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, or on "
                "Ubuntu kernel.apparmor_restrict_unprivileged_userns=0) or install bwrap setuid",
            )
    _support_cache[exe] = support
    return support


# --------------------------------------------------------------------------- scope


def scope_dirs(edits: Iterable[str], is_dir: Callable[[str], bool]) -> tuple[str, ...]:
    """The folders (relative to the worktree, ``""`` for all of it) that ``edits`` allow.

    Each glob gives its deepest folder without a wildcard: ``src/api/**`` and
    ``src/api/*.py`` give ``src/api``; a plain path gives itself when it is a folder
    (``is_dir``, or written with a trailing ``/``) and its folder otherwise, since a
    file is replaced by renaming a new one over it. Folders inside another are
    dropped. Raises :class:`SandboxError` on a glob that leaves the worktree.
    """
    found: set[str] = set()
    for glob in edits:
        text = glob.strip()
        trailing = text.endswith("/")
        parts = [p for p in PurePosixPath(text).parts if p not in ("", ".")]
        if text.startswith("/") or ".." in parts:
            raise SandboxError(f"edits glob {glob!r} leaves the worktree")
        fixed: list[str] = []
        wild = False
        for part in parts:
            if _GLOB_CHARS.search(part):
                wild = True
                break
            fixed.append(part)
        if not wild and fixed and not trailing and not is_dir("/".join(fixed)):
            fixed = fixed[:-1]
        found.add("/".join(fixed))
    if "" in found:
        return ("",)
    kept = [d for d in sorted(found) if not any(d.startswith(o + "/") for o in found if o != d)]
    return tuple(kept)


# --------------------------------------------------------------------------- git metadata


@dataclass(frozen=True, slots=True)
class GitMeta:
    """Where a worktree's git metadata lives (absolute paths)."""

    git_dir: Path
    common_dir: Path
    branch: str = ""  # the ref HEAD points at (refs/heads/...), "" when detached

    @property
    def linked(self) -> bool:
        """A linked worktree (``git worktree add``), not the repository's main checkout."""
        return self.git_dir != self.common_dir


def git_meta(workdir: Path) -> GitMeta | None:
    """The git metadata of ``workdir``, ``None`` outside a git repository."""
    proc = workspace.git(
        [
            "rev-parse",
            "--path-format=absolute",
            "--git-dir",
            "--git-common-dir",
            "--symbolic-full-name",
            "HEAD",
        ],
        workdir,
        check=False,
    )
    lines = proc.stdout.splitlines()
    if proc.returncode != 0 or len(lines) < 2:
        return None
    branch = lines[2] if len(lines) > 2 and lines[2].startswith("refs/") else ""
    return GitMeta(Path(lines[0]).resolve(), Path(lines[1]).resolve(), branch)


def git_writable(meta: GitMeta) -> tuple[Path, ...]:
    """What an agent's own ``git add`` / ``git commit`` in a linked worktree writes.

    Nothing for the main checkout (isolation ``shared`` or ``none``): there a
    commit would move the operator's own branch.
    """
    if not meta.linked:
        return ()
    paths = [meta.git_dir]
    if meta.branch:
        folder = PurePosixPath(meta.branch).parent
        paths += [meta.common_dir / folder, meta.common_dir / "logs" / folder]
    return tuple(paths)


#: In a linked worktree's own git folder, what tells git (the engine's too) where the
#: repository is and which config to read: rewritten by an agent, the engine's next
#: ``git add`` would read a config of the agent's making (a clean filter runs a program).
_WORKTREE_POINTERS = ("commondir", "gitdir", "config.worktree")


def git_protected(meta: GitMeta) -> tuple[Path, ...]:
    """What stays read-only inside :func:`git_writable`'s folders: the worktree's
    pointers to its repository (``commondir``, ``gitdir``, ``config.worktree``) and
    the engine's own index of it (:data:`workspace.OWN_INDEX`)."""
    if not meta.linked:
        return ()
    return tuple(meta.git_dir / name for name in (*_WORKTREE_POINTERS, workspace.OWN_INDEX))


def git_objects(meta: GitMeta) -> tuple[Path, Path] | None:
    """``(the agent's own object store, the repository's objects)`` for an agent
    that may commit in linked worktree ``meta``; ``None`` for a main checkout."""
    if not meta.linked:
        return None
    return meta.git_dir / object_store.OWN_OBJECTS, meta.common_dir / "objects"


# --------------------------------------------------------------------------- agent homes


def agent_homes(preset: str, env: Mapping[str, str], home: Path) -> tuple[Path, ...]:
    """The state and config paths the agent CLI ``preset`` writes as it works.

    From each CLI's documentation: claude keeps ``~/.claude/`` (or
    ``$CLAUDE_CONFIG_DIR``) and ``~/.claude.json``; codex ``$CODEX_HOME`` (default
    ``~/.codex``); gemini ``~/.gemini`` (or ``$GEMINI_CLI_HOME/.gemini``, and, for the
    home the scope guard makes it, the folder its links lead to: the operator's own);
    aider ``~/.aider``. Other agents: none.
    """
    if preset == "claude":
        config = env.get("CLAUDE_CONFIG_DIR")
        return (Path(config) if config else home / ".claude", home / ".claude.json")
    if preset == "codex":
        return (Path(env.get("CODEX_HOME") or home / ".codex"),)
    if preset == "gemini":
        own = env.get("GEMINI_CLI_HOME")
        if not own:
            return (home / ".gemini",)
        dot = Path(own) / ".gemini"
        operator = dot / guard.OPERATOR_LINK
        return (dot, operator.resolve()) if operator.is_symlink() else (dot,)
    if preset == "aider":
        return (home / ".aider",)
    return ()


#: codex's own sandbox is bubblewrap too, which cannot nest inside this one (no
#: capabilities to map users): inside a sandbox, codex runs its commands unsandboxed
#: and this sandbox holds them.
_CODEX_OWN = {
    'sandbox_mode="workspace-write"': 'sandbox_mode="danger-full-access"',
    'sandbox_mode="read-only"': 'sandbox_mode="danger-full-access"',
}


def inner_argv(preset: str, argv: Sequence[str]) -> list[str]:
    """``argv`` as the agent CLI ``preset`` must run inside a sandbox.

    codex: its ``sandbox_mode`` (``-c sandbox_mode=...`` or ``--sandbox MODE``)
    becomes ``danger-full-access``; its commands then get this sandbox's network,
    which ``network: off`` takes away for the whole agent.
    """
    out = list(argv)
    if preset != "codex":
        return out
    for i, arg in enumerate(out):
        if arg in _CODEX_OWN:
            out[i] = _CODEX_OWN[arg]
        elif arg in ("workspace-write", "read-only") and i and out[i - 1] in ("--sandbox", "-s"):
            out[i] = "danger-full-access"
    return out


# --------------------------------------------------------------------------- layout


@dataclass(frozen=True, slots=True)
class Layout:
    """One attempt's sandbox: what is mounted how. Paths are absolute and resolved."""

    mode: str
    network: bool
    workdir: Path
    writable: tuple[Path, ...]
    #: Read-only even where they sit inside a writable path (``.git``, ``.delegate``).
    protected: tuple[Path, ...] = ()
    #: Read-only paths put back over the private ``/tmp`` (a repository under /tmp).
    visible: tuple[Path, ...] = ()
    #: Folders replaced by an empty one (the operator's runtime folder: its sockets).
    emptied: tuple[Path, ...] = ()
    #: Files replaced by an empty one (a docker socket outside the runtime folder).
    masked: tuple[Path, ...] = ()
    #: The agent's own object store and the repository's objects it reads (git's
    #: environment: :func:`sandbox_env`); ``None`` when it has no git to write.
    objects: tuple[Path, Path] | None = None

    def mounts(self) -> list[tuple[str, Path]]:
        """``(how, path)`` in the order bwrap must apply them, outer before inner; ``how``
        is ``ro``, ``rw``, ``empty`` (a tmpfs) or ``mask`` (an empty file over it)."""
        ordered: list[tuple[int, int, str, Path]] = []
        for rank, (how, paths) in enumerate(
            (
                ("ro", self.visible),
                ("rw", self.writable),
                ("ro", self.protected),
                ("empty", self.emptied),
                ("mask", self.masked),
            )
        ):
            ordered += [(len(p.parts), rank, how, p) for p in paths]
        ordered.sort(key=lambda m: (m[0], m[1]))
        seen: set[tuple[str, Path]] = set()
        out: list[tuple[str, Path]] = []
        for _, _, how, path in ordered:
            if (how, path) not in seen:
                seen.add((how, path))
                out.append((how, path))
        return out

    def argv(self, command: Sequence[str], bwrap: str = "bwrap") -> list[str]:
        """``bwrap ... -- command``: ``command`` run in this sandbox."""
        argv = [bwrap, *_isolation_flags(network=self.network)]
        argv += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        argv += ["--tmpfs", str(PRIVATE_TMP)]
        for how, path in self.mounts():
            if how == "empty":
                argv += ["--tmpfs", str(path)]
            elif how == "mask":
                argv += ["--ro-bind", os.devnull, str(path)]
            else:
                argv += ["--bind" if how == "rw" else "--ro-bind", str(path), str(path)]
        argv += ["--chdir", str(self.workdir), "--", *command]
        return argv

    def describe(self) -> str:
        """``scope, network off`` — one line for the details and the headless log."""
        return f"{self.mode}, network {'on' if self.network else 'off'}"


def _isolation_flags(*, network: bool) -> list[str]:
    flags = ["--die-with-parent", "--unshare-pid", "--unshare-ipc", "--cap-drop", "ALL"]
    return flags if network else [*flags, "--unshare-net"]


def _under(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def plan_layout(
    mode: str,
    *,
    network: bool,
    workdir: Path,
    repo: Path,
    git: GitMeta | None,
    edits: Sequence[str],
    consult: bool,
    extra: Sequence[Path] = (),
    home: Path | None = None,
    is_dir: Callable[[str], bool] = lambda _: False,
) -> Layout:
    """The sandbox of one attempt (pure: every path given is already resolved).

    ``extra``: the agent's homes, its last-message file and the plan's
    ``sandbox_writable``; ``home``: the operator's ``$HOME``, kept visible
    (read-only) when it lives under ``/tmp``.
    """
    if mode not in ("worktree", "scope"):
        raise SandboxError(f"sandbox mode {mode!r} has no layout")
    writable: list[Path] = []
    if mode == "worktree":
        writable.append(workdir)
    elif not consult:
        writable += [workdir / d if d else workdir for d in scope_dirs(edits, is_dir)]
    objects = None
    if git is not None and not (mode == "scope" and consult):
        writable += git_writable(git)
        objects = git_objects(git)
    writable += extra
    protected = [repo / ".delegate", workdir / ".git"]
    if git is not None:
        protected += [git.common_dir, *git_protected(git)]
    protected_inside = tuple(
        p for p in dict.fromkeys(protected) if any(_under(p, w) and p != w for w in writable)
    )
    keep = [repo, home] + ([git.common_dir] if git is not None else [])
    visible = tuple(p for p in dict.fromkeys(keep) if p is not None and _under(p, PRIVATE_TMP))
    return Layout(
        mode=mode,
        network=network,
        workdir=workdir,
        writable=tuple(dict.fromkeys(writable)),
        protected=protected_inside,
        visible=visible,
        objects=objects,
    )


def with_visible(layout: Layout, paths: Iterable[Path]) -> Layout:
    """``layout`` with ``paths`` kept visible (read-only) where they are under ``/tmp``: the
    top folder under ``/tmp`` of each (the Python and the delegate-tui that run the scope
    guard's hook, when installed there)."""
    extra = [
        PRIVATE_TMP / p.relative_to(PRIVATE_TMP).parts[0]
        for p in paths
        if _under(p, PRIVATE_TMP) and p != PRIVATE_TMP
    ]
    if not extra:
        return layout
    return dataclasses.replace(layout, visible=tuple(dict.fromkeys((*layout.visible, *extra))))


def with_program(layout: Layout, program: str, path_env: str | None) -> Layout:
    """``layout`` with the agent's program kept visible (read-only) when it is installed
    under ``/tmp``, which the sandbox replaces with an empty one: its folder under
    ``/tmp`` (e.g. a CLI installed there by npm, or a virtual environment's Python),
    for the program as found on ``PATH`` and for where its links lead."""
    found = shutil.which(program, path=path_env) if "/" not in program else program
    if not found:
        return layout
    return with_visible(layout, (Path(os.path.abspath(found)), Path(os.path.realpath(found))))


def make_room(layout: Layout, inside: Path) -> None:
    """Create the writable folders missing under ``inside`` (a scope's new folder).

    Raises :class:`SandboxError` when one resolves outside ``inside`` (a symlink
    in the worktree pointing elsewhere would make elsewhere writable).
    """
    root = inside.resolve()
    for path in layout.writable:
        if not _under(path, inside):
            continue
        if not _under(path.resolve(), root):
            raise SandboxError(f"{path} leads outside {inside} (a symbolic link); refusing it")
        if not path.exists():
            path.mkdir(parents=True)


# --------------------------------------------------------------------------- refused writes

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")
_DENIED = re.compile(r"read-only file system|\bEROFS\b|\[Errno 30\]|os error 30", re.IGNORECASE)
_QUOTED = re.compile(r"""['"‘`]([^'"’`\n]+)['"’`]""")
#: In every wording :func:`denial_in` knows ("Read-only file system", "EROFS: read-only
#: file system"): output without it is passed over with one scan.
_MARK = b"ead-only"
_BEFORE = re.compile(r"(\S+):\s*(?:read-only file system|EROFS)", re.IGNORECASE)
_BARE_PATH = re.compile(r"(?<![\w.-])(/[^\s'\"’`:,;)]+)")


@dataclass(frozen=True, slots=True)
class Denial:
    """A write the sandbox refused, as the agent reported it."""

    path: str  # best effort: the path named in the message, "" when none is
    line: str


def denial_in(line: str) -> Denial | None:
    """The refused write reported by one line of output, if it reports one.

    Knows the wording of coreutils, sh, Python, Node, Rust and git
    (``Read-only file system``, ``EROFS``, ``[Errno 30]``, ``os error 30``).
    """
    text = _ANSI.sub("", line).replace("\r", "").strip()
    if not _DENIED.search(text):
        return None
    path = ""
    for quoted in _QUOTED.findall(text):
        if "/" in quoted or "." in quoted:
            path = quoted
            break
    if not path:
        before = _BEFORE.search(text)
        path = (
            before.group(1) if before and ("/" in before.group(1) or "." in before.group(1)) else ""
        )
    if not path:
        bare = _BARE_PATH.search(text)
        path = bare.group(1) if bare else ""
    return Denial(path, text[:300])


class DenialScanner:
    """Feeds on an agent's output chunks; yields each new refused write once."""

    def __init__(self, limit: int = MAX_DENIALS) -> None:
        self._partial = b""
        self._marked = False
        self._seen: set[str] = set()
        self._limit = limit

    def feed(self, data: bytes) -> list[Denial]:
        """Denials completed by ``data`` (lines end at ``\\n``)."""
        if len(self._seen) >= self._limit:
            return []
        seam = self._partial[-len(_MARK) :] + data[: len(_MARK)]
        if not self._marked and _MARK not in data and _MARK not in seam:  # one C scan
            cut = data.rfind(b"\n")
            self._partial = data[cut + 1 :][-4096:] if cut >= 0 else (self._partial + data)[-4096:]
            return []
        chunk = self._partial + data
        *lines, rest = chunk.split(b"\n")
        self._partial = rest[-4096:]
        self._marked = _MARK in self._partial  # a refusal whose line has not ended yet
        found: list[Denial] = []
        for raw in lines:
            if _MARK not in raw:
                continue
            for text in _lines_of(raw.decode("utf-8", "replace")):
                denial = denial_in(text)
                if denial is None or denial.path in self._seen:
                    continue
                self._seen.add(denial.path)
                found.append(denial)
                if len(self._seen) >= self._limit:
                    return found
        return found


def _lines_of(line: str) -> list[str]:
    """The lines of text in one line of output: itself, or for a line of a structured
    stream (JSON: claude's stream-json, codex --json, gemini stream-json) the lines of
    every string in it, where a tool's output travels with its newlines escaped."""
    stripped = line.strip()
    if not stripped.startswith("{"):
        return [line]
    try:
        obj = json.loads(stripped)
    except ValueError:
        return [line]
    out: list[str] = []
    stack: list[object] = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out += item.splitlines()
        elif isinstance(item, dict):
            stack += reversed(list(item.values()))
        elif isinstance(item, list):
            stack += reversed(item)
    return out


# --------------------------------------------------------------------------- before a run


def writable_extras(plan: Plan, home: Path) -> tuple[Path, ...]:
    """The plan's ``sandbox_writable`` folders, ``~`` expanded against ``home``."""
    out: list[Path] = []
    for text in plan.sandbox_writable:
        path = home / text[2:] if text == "~" or text.startswith("~/") else Path(text)
        out.append((path if path.is_absolute() else plan.repo_path() / path).resolve())
    return tuple(out)


def check_plan(plan: Plan, home: Path, support: Callable[[], Support] = probe) -> None:
    """Refuse, before anything starts, a plan whose sandboxes cannot be made.

    Raises :class:`SandboxError` naming the file and field: ``network: off``
    without a sandbox, a scope glob that leaves the worktree, a
    ``sandbox_writable`` folder that does not exist, or a machine without a
    working ``bwrap`` (with the reason and how to install it).
    """
    boxed = sandboxed_tasks(plan)
    for task in plan.tasks:
        mode, network = effective(plan, task)
        if not network and mode == "off":
            field = "network" if task.network else "sandbox"
            raise SandboxError(
                f"{plan.where(task.id, field)}: network: off runs the agent in a sandbox, and "
                "this task's sandbox is off; set sandbox: worktree or scope"
            )
        if mode == "scope":
            try:
                scope_dirs(task.edits, lambda _: False)
            except SandboxError as exc:
                raise SandboxError(f"{plan.where(task.id, 'edits')}: {exc}") from None
    if not boxed:
        return
    for path in writable_extras(plan, home):
        if not path.is_dir():
            raise SandboxError(f"{plan.source}: sandbox_writable: {path} is not an existing folder")
    found = support()
    if not found.ok:
        raise SandboxError(
            f"{plan.source}: sandbox: tasks {', '.join(boxed)} run in a sandbox, and "
            f"{found.reason}; or run with --sandbox off"
        )


# --------------------------------------------------------------------------- one attempt


def prepare(
    plan: Plan,
    task: Task,
    *,
    preset: str,
    workdir: Path,
    repo: Path,
    files: Sequence[Path],
    env: Mapping[str, str],
    home: Path,
) -> Layout | None:
    """The sandbox of one attempt of ``task``, with its mount points made; ``None`` when off.

    Creates what must exist to be mounted: the scope's new folders inside the
    worktree, the folders of the task's branch refs, the agent's config folders
    (as the CLI would on its first run) and ``files``, the files the agent writes
    for delegate-tui to read back (its last message, the scope guard's refusals). A config
    *file* that does not exist yet (``~/.claude.json``) is left read-only.
    Raises :class:`SandboxError`.
    """
    mode, network = effective(plan, task)
    if mode == "off":
        return None
    try:
        return _prepare(plan, task, mode, network, preset, workdir, repo, files, env, home)
    except OSError as exc:
        raise SandboxError(str(exc)) from exc


def _prepare(
    plan: Plan,
    task: Task,
    mode: str,
    network: bool,
    preset: str,
    workdir: Path,
    repo: Path,
    files: Sequence[Path],
    env: Mapping[str, str],
    home: Path,
) -> Layout:
    wd = workdir.resolve()
    meta = git_meta(wd)
    if meta is not None and meta.linked:
        for path in git_writable(meta):
            path.mkdir(parents=True, exist_ok=True)
        # Made if missing, so that they are there to be kept read-only (an empty
        # config.worktree changes nothing, and read-only it cannot be made to). The
        # engine's index is made before any agent runs, so it is git's own.
        (meta.git_dir / "config.worktree").touch(exist_ok=True)
        if not (meta.git_dir / workspace.OWN_INDEX).exists():
            workspace.seed_index(wd)
        store = meta.git_dir / object_store.OWN_OBJECTS
        object_store.take_objects(wd, store)  # an earlier agent's, had it not been taken
        store.mkdir()
    for path in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)
    homes: list[Path] = []
    for path in agent_homes(preset, env, home):
        if path.suffix != ".json":
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        if path.exists():
            homes.append(path.resolve())
    layout = plan_layout(
        mode,
        network=network,
        workdir=wd,
        repo=repo.resolve(),
        git=meta,
        edits=task.edits,
        consult=task.kind == "consult",
        extra=[*homes, *(p.resolve() for p in files), *writable_extras(plan, home)],
        home=home.resolve(),
        is_dir=lambda rel: (wd / rel).is_dir(),
    )
    make_room(layout, wd)
    emptied, masked = session_sockets(env)
    return dataclasses.replace(
        layout,
        protected=tuple(p for p in layout.protected if p.exists()),
        emptied=emptied,
        masked=masked,
    )


#: The sockets of the operator's session an agent must not reach: a read-only mount
#: does not stop ``connect()``, and through them a program runs outside the sandbox
#: (``systemd-run --user`` over D-Bus, a container through docker) or signs as the
#: operator (ssh-agent, gpg-agent).
SESSION_SOCKETS = ("DBUS_SESSION_BUS_ADDRESS", "SSH_AUTH_SOCK", "GPG_AGENT_INFO", "DOCKER_HOST")
DOCKER_SOCKETS = (Path("/run/docker.sock"), Path("/var/run/docker.sock"))


def session_sockets(env: Mapping[str, str]) -> tuple[tuple[Path, ...], tuple[Path, ...]]:
    """``(folders to empty, files to mask)`` in a sandbox: the runtime folder
    (``$XDG_RUNTIME_DIR``, else ``/run/user/<uid>``) and the docker sockets found."""
    runtime = Path(env.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}")
    folders = (runtime.resolve(),) if runtime.is_dir() else ()
    files = tuple(
        dict.fromkeys(
            p.resolve()
            for p in DOCKER_SOCKETS
            if p.exists() and not any(_under(p.resolve(), f) for f in folders)
        )
    )
    return folders, files


def sandbox_env(env: Mapping[str, str], layout: Layout | None = None) -> dict[str, str]:
    """``env`` for an agent in a sandbox: ``TMPDIR`` is the private ``/tmp``, no
    address of the operator's session sockets (:data:`SESSION_SOCKETS`), git writes
    new objects to the agent's own store (``layout.objects``), and git does no
    automatic housekeeping (``gc --auto`` would rewrite ``packed-refs``, which the
    sandbox keeps read-only)."""
    out = {k: v for k, v in env.items() if k not in SESSION_SOCKETS}
    out["TMPDIR"] = str(PRIVATE_TMP)
    if layout is not None and layout.objects is not None:
        out.update(object_store.store_env(layout.objects[0], layout.objects[1].parent))
    if "GIT_CONFIG_COUNT" not in out:
        out.update(
            {
                "GIT_CONFIG_COUNT": "2",
                "GIT_CONFIG_KEY_0": "gc.auto",
                "GIT_CONFIG_VALUE_0": "0",
                "GIT_CONFIG_KEY_1": "maintenance.auto",
                "GIT_CONFIG_VALUE_1": "false",
            }
        )
    return out


def scanning(
    sink: Callable[[bytes], None], report: Callable[[Denial], None]
) -> Callable[[bytes], None]:
    """``sink`` that also calls ``report`` for each refused write the output reports."""
    scanner = DenialScanner()

    def out(data: bytes) -> None:
        sink(data)
        for denial in scanner.feed(data):
            report(denial)

    return out
