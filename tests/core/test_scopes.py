"""Glob overlap must be exact, including for files that do not exist yet."""

from __future__ import annotations

import itertools
from fnmatch import fnmatchcase

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from delegate_tui.core.scopes import first_overlap, glob_matches, globs_overlap, shared_hits


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("src/**", "src/auth/x.ts", True),
        ("src/auth/**", "src/ui/**", False),
        ("src/*.py", "src/a/b.py", False),
        ("src/**/*.py", "src/a/b.py", True),
        ("src/**/*.py", "src/b.py", True),
        ("*.lock", "yarn.lock", True),
        ("*.lock", "sub/yarn.lock", False),
        ("docs/api/**", "docs/api", True),
        ("src/auth", "src/auth/login.ts", True),
        ("src/auth/", "src/auth/deep/x", True),
        ("a/b", "a/bc", False),
        ("src/a*.py", "src/b*.py", False),
        ("src/[a-c]*.py", "src/[!a]x.py", True),
        ("src/[a-c]x.py", "src/[!a-c]x.py", False),
        ("src/*/x", "src/**/y", False),
        ("**", "anything/at/all", True),
        ("./src/x.py", "src/x.py", True),
        ("src/models/user.py", "src/models/order.py", False),
    ],
)
def test_overlap_table(a: str, b: str, expected: bool) -> None:
    assert globs_overlap(a, b) is expected
    assert globs_overlap(b, a) is expected


def test_matching_real_paths() -> None:
    assert glob_matches("src/**", "src/a/b.py")
    assert glob_matches("src/auth", "src/auth/login.ts")
    assert not glob_matches("src/auth", "src/authx/login.ts")
    assert glob_matches("*.lock", "yarn.lock")
    assert glob_matches("docs/my file é.md", "docs/my file é.md")
    assert not glob_matches("src/*.py", "src/a/b.py")


def test_first_overlap_and_shared_hits() -> None:
    overlap = first_overlap(["web/**", "src/**"], ["docs/**", "src/auth/x.ts"])
    assert overlap is not None and overlap.describe() == "src/** / src/auth/x.ts"
    assert first_overlap(["a/**"], ["b/**"]) is None
    assert shared_hits(["web/**", "package.json"], ["package.json", "*.lock"]) == ["package.json"]
    assert shared_hits(["**"], ["package.json", "*.lock"]) == ["package.json", "*.lock"]


# ------------------------------------------------- property: agree with brute force

_SEGMENTS = ["a", "b", "*", "?", "a*", "*b", "[ab]", "[!a]", "**"]
_ALPHABET = "abx"


def _seg_paths(max_segments: int) -> list[str]:
    segs = ["".join(p) for n in (1, 2) for p in itertools.product(_ALPHABET, repeat=n)]
    paths = []
    for n in range(1, max_segments + 1):
        paths += ["/".join(p) for p in itertools.product(segs, repeat=n)]
    return paths


_PATHS = _seg_paths(3)


def _matches(pattern: str, path: str) -> bool:
    """An independent matcher: recursive over segments, fnmatch within one."""
    parts = pattern.split("/")
    if not any(c in pattern for c in "*?["):
        parts.append("**")
    names = path.split("/")

    def match(i: int, j: int) -> bool:
        if i == len(parts):
            return j == len(names)
        if parts[i] == "**":
            return any(match(i + 1, k) for k in range(j, len(names) + 1))
        return j < len(names) and fnmatchcase(names[j], parts[i]) and match(i + 1, j + 1)

    return match(0, 0)


_glob = st.lists(st.sampled_from(_SEGMENTS), min_size=1, max_size=2).map("/".join)


@settings(max_examples=300, deadline=None)
@given(_glob, _glob)
def test_overlap_agrees_with_brute_force(a: str, b: str) -> None:
    witness = any(_matches(a, p) and _matches(b, p) for p in _PATHS)
    if witness:
        assert globs_overlap(a, b), (a, b)
    else:
        # Patterns this small always have a witness within three segments.
        assert not globs_overlap(a, b), (a, b)
    for p in _PATHS[:200]:
        assert glob_matches(a, p) == _matches(a, p), (a, p)


# ------------------------------------------ shared_files are globs (issue 20)


def test_shared_files_entries_are_globs_not_plain_paths() -> None:
    """``requirements*.txt`` (a default shared file) covers requirements-dev.txt: two tasks
    that each add a dependency must not run at once, and whoever touches one is told."""
    from delegate_tui.core import batching, conflicts
    from delegate_tui.core.plan import DEFAULT_SHARED_FILES, parse_plan
    from delegate_tui.core.state import RunState, TaskState

    assert "requirements*.txt" in DEFAULT_SHARED_FILES
    assert shared_hits(["requirements-dev.txt"], ["requirements*.txt"]) == ["requirements*.txt"]
    assert shared_hits(["requirements.txt"], ["requirements*.txt"]) == ["requirements*.txt"]
    assert shared_hits(["requirements/base.in"], ["requirements*.txt"]) == []
    assert shared_hits(["docs/requirements.txt"], ["requirements*.txt"]) == []
    assert shared_hits(["*.txt"], ["requirements*.txt", "yarn.lock"]) == ["requirements*.txt"]

    plan = parse_plan(
        "name: p\ntasks:\n"
        "  - {id: api, prompt: x, edits: ['api/**', requirements.txt]}\n"
        "  - {id: tests, prompt: x, edits: ['tests/**', requirements-dev.txt]}\n"
    )
    state = RunState(plan=plan, isolation="worktree")
    state.tasks = {t.id: TaskState(t.id) for t in plan.tasks}
    proposal = batching.next_batch(plan, state, auto_approve=True)
    assert proposal is not None and proposal.tasks == ("api",)
    assert [(h.task, h.reason) for h in proposal.held] == [
        ("tests", "shares config file requirements*.txt with api")
    ]
    found = conflicts.analyze(plan, {"tests": ["tests/test_x.py", "requirements-dev.txt"]})
    assert [(f.kind, f.tasks, f.paths) for f in found] == [
        ("shared-file", ("tests",), ("requirements-dev.txt",))
    ]


# ------------------------------------------ character classes, as shells and git read them


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("src/[b-d].py", "src/b.py", True),
        ("src/[b-d].py", "src/d.py", True),
        ("src/[b-d].py", "src/a.py", False),
        ("src/[b-d].py", "src/e.py", False),
        ("[!b-d]x", "ax", True),
        ("[!b-d]x", "cx", False),
        ("[^a]x", "bx", True),  # ^ negates too, as in bash and git
        ("[^a]x", "ax", False),
        ("[]]x", "]x", True),  # a ] right after [ is a member, not the end
        ("[]]x", "ax", False),
        ("[!]]x", "ax", True),
        ("[!]]x", "]x", False),
        ("[a-]x", "-x", True),  # a - before the closing ] is a member
        ("[a-]x", "ax", True),
        ("[a-]x", "bx", False),
        ("[ab-]", "b", True),
        ("a[b", "a[b", True),  # an unclosed [ is a plain character
        ("a[b", "ab", False),
        ("x[", "x[", True),
        ("x[!", "x[!", True),
        ("x[a-", "x[a-", True),
        # (mutmut maps a test to the functions it reaches; the glob cache means only
        # the first case of a pattern reaches the parser, so it is the telling one)
        ("[Xa]b", "cb", False),  # only ! and ^ negate
        ("[Xa]b", "Xb", True),
        ("[a-c][x-z]", "bz", True),
        ("[a-c][x-z]", "bw", False),
    ],
)
def test_character_classes(pattern: str, path: str, expected: bool) -> None:
    assert glob_matches(pattern, path) is expected
    assert globs_overlap(pattern, path) is expected


def test_an_overlap_of_one_glob_with_itself_is_named_once() -> None:
    overlap = first_overlap(["docs/**", "src/x.py"], ["src/x.py"])
    assert overlap is not None and overlap.describe() == "src/x.py"


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("src/**", "/src/a.py", True),  # a leading / is the repository root
        ("src/**", "src\\a.py", True),  # a Windows separator in a path
        ("src/a.py", "src/./a.py", True),
        ("src/a.py", "src//a.py", True),
        ("src/X11", "src/X11/x.c", True),  # a plain path, capital letters and all, is a folder
        ("src/x.py", "src/x.pyc", False),
    ],
)
def test_paths_are_read_the_way_git_and_people_write_them(
    pattern: str, path: str, expected: bool
) -> None:
    assert glob_matches(pattern, path) is expected


def test_a_class_can_only_overlap_on_a_character_a_file_name_can_hold() -> None:
    """``[.-0]`` spans ``.``, ``/`` and ``0``; with ``[!.0]`` only ``/`` is left, which is
    never part of a name: no file matches both."""
    assert not globs_overlap("a[.-0]", "a[!.0]")
    assert globs_overlap("a[.-0]", "a[!.]")
    assert globs_overlap("[!a-c]", "[!e-g]"), "a character in neither range exists"


_PART = st.sampled_from(["src", "a", "b", "x.py", ".", "auth", "a.b"])
_PLAIN = st.lists(_PART, min_size=1, max_size=4).map("/".join) | st.lists(
    _PART, min_size=1, max_size=3
).map(lambda parts: "./" + "/".join(parts) + "/")


@given(_PLAIN, _PLAIN)
@settings(max_examples=300, deadline=None)
def test_plain_paths_answer_as_the_automata_do(a: str, b: str) -> None:
    from delegate_tui.core import scopes

    assert globs_overlap(a, b) == scopes._globs_overlap(a, b)
    path = b.strip("./") or "x"
    assert glob_matches(a, path) == scopes._glob_matches(a, path)


def test_pairs_of_plain_paths_are_not_kept() -> None:
    """A thousand tasks' own files make a million pairs: none is cached (issue 15: the
    cache of every pair asked was what grew a long run's memory)."""
    from delegate_tui.core import scopes

    before = scopes._globs_overlap.cache_info().currsize, scopes._glob_matches.cache_info().currsize
    for i in range(300):
        for j in range(16):
            assert globs_overlap(f"out/t{i}.txt", f"out/u{j}.txt") is False
            assert glob_matches(f"out/t{i}.txt", f"out/u{j}.txt") is False
    assert globs_overlap("out", "out/t1.txt") and glob_matches("out", "out/t1.txt")
    after = scopes._globs_overlap.cache_info().currsize, scopes._glob_matches.cache_info().currsize
    assert after == before
