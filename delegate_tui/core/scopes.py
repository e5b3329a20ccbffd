"""Declared scopes: do two tasks' globs possibly touch the same file?

Owns glob semantics for ``edits``, ``reads`` and ``shared_files``. Globs are
relative to the repository root: ``*`` and ``?`` stay inside one path segment,
``**`` spans any number of segments, ``[abc]``/``[!a-z]`` are classes, a
trailing ``/`` means "everything under", and a plain path with no wildcard
also covers everything under it (``src/auth`` is the folder and its files).

Two globs *overlap* when some path, existing or not, matches both. That is
regular-language intersection, decided here exactly with a product of the two
patterns' automata, first per segment and then per character, so
``src/**`` and ``src/auth/x.ts`` overlap even before ``x.ts`` exists.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

# A character token: ("lit", "a") | ("any", "") | ("star", "") | ("class", (negated, ranges))
_Range = tuple[str, str]
_ClassSpec = tuple[bool, tuple[_Range, ...]]
_Tok = tuple[str, str | _ClassSpec]
_Segment = tuple[_Tok, ...]
_DSTAR = "**"


def _parse_class(pattern: str, start: int) -> tuple[_Tok, int] | None:
    """Parse ``[...]`` at ``start``; ``None`` if it is not a well-formed class."""
    i = start + 1
    negated = i < len(pattern) and pattern[i] in "!^"
    if negated:
        i += 1
    ranges: list[_Range] = []
    first = True
    while i < len(pattern) and (pattern[i] != "]" or first):
        first = False
        lo = pattern[i]
        if i + 2 < len(pattern) and pattern[i + 1] == "-" and pattern[i + 2] != "]":
            ranges.append((lo, pattern[i + 2]))
            i += 3
        else:
            ranges.append((lo, lo))
            i += 1
    if i >= len(pattern):
        return None
    return ("class", (negated, tuple(ranges))), i + 1


@lru_cache(maxsize=8192)
def _parse_segment(segment: str) -> _Segment:
    tokens: list[_Tok] = []
    i = 0
    while i < len(segment):
        ch = segment[i]
        if ch == "*":
            if not tokens or tokens[-1][0] != "star":
                tokens.append(("star", ""))
            i += 1
        elif ch == "?":
            tokens.append(("any", ""))
            i += 1
        elif ch == "[":
            parsed = _parse_class(segment, i)
            if parsed is None:
                tokens.append(("lit", ch))
                i += 1
            else:
                tokens.append(parsed[0])
                i = parsed[1]
        else:
            tokens.append(("lit", ch))
            i += 1
    return tuple(tokens)


def _has_magic(text: str) -> bool:
    return any(c in text for c in "*?[")


@lru_cache(maxsize=8192)
def compile_glob(pattern: str) -> tuple[str | _Segment, ...]:
    """Split a glob into segments; ``**`` stays a marker, others become tokens."""
    pattern = pattern.strip().replace("\\", "/")
    while pattern.startswith("./"):
        pattern = pattern[2:]
    pattern = pattern.lstrip("/")
    trailing_dir = pattern.endswith("/")
    parts = [p for p in pattern.split("/") if p and p != "."]
    if trailing_dir or (parts and not _has_magic(pattern)):
        # A folder, written as "dir/" or as a plain path: itself and all below it.
        parts.append(_DSTAR)
    segments: list[str | _Segment] = []
    for part in parts:
        if part == _DSTAR:
            if not segments or segments[-1] != _DSTAR:
                segments.append(_DSTAR)
        else:
            segments.append(_parse_segment(part))
    return tuple(segments)


def _literal_segments(path: str) -> tuple[str | _Segment, ...]:
    parts = [p for p in path.replace("\\", "/").strip("/").split("/") if p and p != "."]
    return tuple(tuple(("lit", c) for c in part) for part in parts)


def _char_candidates(a: _Segment, b: _Segment) -> list[str]:
    """Characters enough to witness any non-empty class intersection.

    Intersections of interval unions and their complements begin at an
    endpoint or one past it, so those (plus one character no pattern names)
    are the only ones worth trying.
    """
    chars: set[str] = set()
    for tok in (*a, *b):
        kind, value = tok
        if kind == "lit":
            chars.add(str(value))
        elif isinstance(value, tuple):
            for lo, hi in value[1]:
                for c in (lo, hi):
                    chars.update({c, chr(max(ord(c) - 1, 1)), chr(ord(c) + 1)})
    chars.add("\ue000")  # private-use: in no literal and no class a user writes
    chars.discard("/")
    return sorted(chars)


def _tok_accepts(tok: _Tok, ch: str) -> bool:
    kind, value = tok
    if kind == "lit":
        return ch == value
    if kind in ("any", "star"):
        return True
    assert isinstance(value, tuple)
    negated, ranges = value
    inside = any(lo <= ch <= hi for lo, hi in ranges)
    return inside != negated


@lru_cache(maxsize=65536)
def _segments_intersect(a: _Segment, b: _Segment) -> bool:
    """Is there a non-empty segment (no '/') matching both segment patterns?"""
    candidates = _char_candidates(a, b)
    start = (0, 0, False)
    seen = {start}
    todo = [start]
    while todo:
        i, j, consumed = todo.pop()
        # Epsilon moves: a star may match nothing.
        moves: list[tuple[int, int, bool]] = []
        if i < len(a) and a[i][0] == "star":
            moves.append((i + 1, j, consumed))
        if j < len(b) and b[j][0] == "star":
            moves.append((i, j + 1, consumed))
        if i == len(a) and j == len(b) and consumed:
            return True
        if i < len(a) and j < len(b):
            for ch in candidates:
                if _tok_accepts(a[i], ch) and _tok_accepts(b[j], ch):
                    ni = i if a[i][0] == "star" else i + 1
                    nj = j if b[j][0] == "star" else j + 1
                    moves.append((ni, nj, True))
        for move in moves:
            if move not in seen:
                seen.add(move)
                todo.append(move)
    return False


def _paths_intersect(a: tuple[str | _Segment, ...], b: tuple[str | _Segment, ...]) -> bool:
    start = (0, 0)
    seen = {start}
    todo = [start]
    while todo:
        i, j = todo.pop()
        if i == len(a) and j == len(b):
            return True
        moves: list[tuple[int, int]] = []
        a_dstar = i < len(a) and a[i] == _DSTAR
        b_dstar = j < len(b) and b[j] == _DSTAR
        if a_dstar:
            moves.append((i + 1, j))
        if b_dstar:
            moves.append((i, j + 1))
        if i < len(a) and j < len(b):
            if a_dstar and not b_dstar:
                moves.append((i, j + 1))  # ** swallows b's segment
            elif b_dstar and not a_dstar:
                moves.append((i + 1, j))
            elif not a_dstar and not b_dstar:
                seg_a, seg_b = a[i], b[j]
                assert not isinstance(seg_a, str) and not isinstance(seg_b, str)
                if _segments_intersect(seg_a, seg_b):
                    moves.append((i + 1, j + 1))
        for move in moves:
            if move not in seen:
                seen.add(move)
                todo.append(move)
    return False


@lru_cache(maxsize=8192)
def plain_parts(pattern: str) -> tuple[str, ...] | None:
    """A pattern without wildcards as its path's parts (it covers them and all below);
    ``None`` for a glob, or a pattern naming no path."""
    if _has_magic(pattern):
        return None
    parts = tuple(p for p in pattern.strip().replace("\\", "/").split("/") if p and p != ".")
    return parts or None


def _prefix(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    return a == b[: len(a)]


def globs_overlap(a: str, b: str) -> bool:
    """True when some path (existing or not) matches both globs.

    Two plain paths (the common case: a task's own files) overlap when one is
    the other or a folder above it, answered without automata and without
    keeping the pair: a thousand tasks make a million pairs, and caching them
    all was most of a long run's memory growth (issue 15).
    """
    plain_a, plain_b = plain_parts(a), plain_parts(b)
    if plain_a is not None and plain_b is not None:
        return _prefix(plain_a, plain_b) or _prefix(plain_b, plain_a)
    return _globs_overlap(a, b)


@lru_cache(maxsize=65536)
def _globs_overlap(a: str, b: str) -> bool:
    return _paths_intersect(compile_glob(a), compile_glob(b))


def glob_matches(pattern: str, path: str) -> bool:
    """True when ``path`` (relative to the repo root) matches ``pattern``."""
    plain = plain_parts(pattern)
    if plain is not None:
        return _prefix(
            plain, tuple(p for p in path.replace("\\", "/").split("/") if p and p != ".")
        )
    return _glob_matches(pattern, path)


@lru_cache(maxsize=65536)
def _glob_matches(pattern: str, path: str) -> bool:
    return _paths_intersect(compile_glob(pattern), _literal_segments(path))


def matches_any(patterns: Iterable[str], path: str) -> bool:
    """True when ``path`` matches at least one of ``patterns``."""
    return any(glob_matches(p, path) for p in patterns)


@dataclass(frozen=True, slots=True)
class Overlap:
    """Where two glob lists meet: the first pair of globs that overlap."""

    mine: str
    theirs: str

    def describe(self) -> str:
        """``src/auth/**`` or ``src/** / src/auth/x.ts`` when they differ."""
        return self.mine if self.mine == self.theirs else f"{self.mine} / {self.theirs}"


def first_overlap(mine: Sequence[str], theirs: Sequence[str]) -> Overlap | None:
    """The first pair of overlapping globs between two lists, or ``None``."""
    for a in mine:
        for b in theirs:
            if globs_overlap(a, b):
                return Overlap(a, b)
    return None


def shared_hits(edits: Sequence[str], shared_files: Sequence[str]) -> list[str]:
    """The ``shared_files`` entries that a task's ``edits`` may touch."""
    return list(_shared_hits(tuple(edits), tuple(shared_files)))


@lru_cache(maxsize=65536)
def _shared_hits(edits: tuple[str, ...], shared_files: tuple[str, ...]) -> tuple[str, ...]:
    # Asked for every pair of tasks on every scheduling pass: the answer per task is kept.
    return tuple(s for s in shared_files if any(globs_overlap(e, s) for e in edits))
