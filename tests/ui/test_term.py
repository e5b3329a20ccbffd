"""The terminal buffer behind each pane: output in any chunking reads the same."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from delegate_tui.ui.term import TermBuffer
from delegate_tui.ui.widgets.agent_pane import _tail


def fed(chunks: list[bytes], max_lines: int = 1000) -> list[str]:
    buffer = TermBuffer(max_lines)
    for chunk in chunks:
        buffer.feed(chunk)
    return buffer.plain_lines()


def test_a_line_may_arrive_in_pieces_without_a_newline() -> None:
    # A prompt waiting for an answer is a chunk with no newline at all.
    assert fed([b"Continue? [y/N] "]) == ["Continue? [y/N] "]
    assert fed([b"abc", b"def\n", b"ghi", b"jkl"]) == ["abcdef", "ghijkl"]
    assert fed([b"one\r\n", b"two"]) == ["one", "two"]


def test_carriage_return_rewrites_the_line_and_colour_is_parsed() -> None:
    assert fed([b"10%\r50%\r100%\n", b"\x1b[32mok\x1b[0m\n"]) == ["100%", "ok", ""]


def test_the_ring_keeps_only_the_newest_lines() -> None:
    buffer = TermBuffer(100)
    buffer.feed(b"".join(b"line %d\n" % i for i in range(1000)))
    lines = buffer.plain_lines()
    assert len(lines) <= 101 and lines[-2] == "line 999"
    assert buffer.dropped + len(lines) == 1001


pieces = st.lists(
    st.sampled_from(
        [b"a", b"bc ", b"\n", b"\r\n", b"\r", b"\x1b[1m", b"\x1b[0m", b"\xc3\xa9", b"\t", b"x" * 30]
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(stream=pieces, cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8))
def test_any_chunking_reads_the_same_as_the_whole(stream: list[bytes], cuts: list[int]) -> None:
    data = b"".join(stream)
    points = sorted({c for c in cuts if c < len(data)})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    assert fed(chunks) == fed([data])


def test_a_flood_tail_starts_at_a_line_and_keeps_the_end() -> None:
    chunks = [b"".join(b"%06d\n" % (i * 100 + j) for j in range(100)) for i in range(100)]
    tail = _tail(chunks, 5000)
    joined = b"".join(tail)
    assert joined.endswith(b"009999\n")
    assert joined.startswith(b"00") and len(joined) <= 5000 and joined[6:7] == b"\n"
    assert b"".join(chunks).endswith(joined)
