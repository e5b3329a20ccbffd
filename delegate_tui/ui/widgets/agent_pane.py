"""Agent panes: live terminal output of one task, and the store that feeds them.

The store keeps each task's raw output bytes, bounded, as they arrive; it
parses nothing. A pane parses only while it is on screen (into a
:class:`TermBuffer`), catching up from the store when it is shown again, so
hidden panes cost nothing. Panes draw only their visible lines (Line API),
follow the tail until the operator scrolls up, and highlight search matches.
A pane read back (scrolled up, or on a search hit) holds still under a flood:
it parses only what its ring takes without dropping a line, and the rest
waits in the store until the operator scrolls to the end.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field

from rich.segment import Segment
from rich.style import Style
from textual.geometry import Region
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from delegate_tui.ui.style import set_virtual_height
from delegate_tui.ui.term import (
    DEFAULT_SGR,
    AnyLine,
    SgrState,
    TermBuffer,
    spans_of,
    text_of,
    version_of,
)

#: Raw bytes kept per task for panes that are shown later; the log has it all.
STORE_BYTES = 2 * 1024 * 1024
#: A pane following a flood parses only the end of its backlog, this much: the
#: lines before it would scroll past unseen in the same frame. What it skipped is
#: parsed from the store the moment the operator scrolls up or searches.
TAIL_BYTES = 64 * 1024


@dataclass(slots=True)
class _TaskOutput:
    chunks: deque[tuple[int, bytes]] = field(default_factory=deque)
    size: int = 0
    next_seq: int = 0
    first_seq: int = 0
    attempt: int = 0


class OutputStore:
    """Raw output per task, bounded; panes pull from it by sequence number."""

    def __init__(self, limit: int = STORE_BYTES) -> None:
        self.limit = limit
        self._tasks: dict[str, _TaskOutput] = {}

    def append(self, task: str, attempt: int, data: bytes) -> None:
        """Add a chunk; a new attempt starts with a separator line."""
        out = self._tasks.setdefault(task, _TaskOutput())
        if attempt != out.attempt:
            if out.attempt:
                self._add(out, f"\r\n\x1b[2m── attempt {attempt} ──\x1b[0m\r\n".encode())
            out.attempt = attempt
        self._add(out, data)

    def _add(self, out: _TaskOutput, data: bytes) -> None:
        out.chunks.append((out.next_seq, data))
        out.next_seq += 1
        out.size += len(data)
        while out.size > self.limit and len(out.chunks) > 1:
            _, old = out.chunks.popleft()
            out.size -= len(old)
            out.first_seq = out.chunks[0][0]

    def since(self, task: str, seq: int) -> tuple[list[bytes], int, bool]:
        """Chunks from ``seq`` on, the next seq, and whether older ones were dropped."""
        out = self._tasks.get(task)
        if out is None:
            return [], seq, False
        dropped = seq < out.first_seq
        start = max(seq, out.first_seq) - out.first_seq  # seqs are contiguous: an index
        chunks = [data for _, data in itertools.islice(out.chunks, start, None)]
        return chunks, out.next_seq, dropped

    def size_since(self, task: str, seq: int) -> int:
        """Bytes that arrived from ``seq`` on (what a pane has yet to parse)."""
        out = self._tasks.get(task)
        if out is None:
            return 0
        start = max(seq, out.first_seq) - out.first_seq
        return sum(len(data) for _, data in itertools.islice(out.chunks, start, None))

    def has(self, task: str) -> bool:
        """Whether ``task`` has any output here."""
        return task in self._tasks

    def version(self, task: str) -> int:
        """Changes whenever the task's output grows."""
        out = self._tasks.get(task)
        return out.next_seq if out else 0


class AgentPane(ScrollView, can_focus=True):
    """One task's output, rendered as a terminal shows it."""

    DEFAULT_CSS = ""
    follow: reactive[bool] = reactive(True)
    """Keep the newest line in view; off once the operator scrolls up."""

    @staticmethod
    def id_for(task_id: str) -> str:
        """The pane's DOM id: one per task id (``a.b`` and ``a_b`` must not collide)."""
        return "pane-" + task_id.replace("_", "__").replace(".", "_d")

    def __init__(self, task_id: str, store: OutputStore, scrollback: int) -> None:
        super().__init__(id=self.id_for(task_id), classes="agent-pane")
        self.task_id = task_id
        self.store = store
        self.scrollback = scrollback
        self.buffer = TermBuffer(scrollback)
        self.seq = 0
        self.next_sync = 0.0  # monotonic time of the next allowed redraw (set by the grid)
        self._dropped_seen = 0
        self._styles: dict[int, Style] = {}
        self._strips: dict[
            int, tuple[int, int, int, Strip]
        ] = {}  # abs line -> (id, version, width, strip)
        self.search: str = ""
        self.matches: list[int] = []
        self._match_index = -1
        self._match_line = -1  # the current match's line, counted from the first ever
        self.partial = False  # the buffer holds only the tail of what the store has
        self.title_meaning: tuple[object, ...] = ()  # set by the grid with the title
        self._base: Style | None = None

    # ------------------------------------------------------------ data

    def sync(self) -> bool:
        """Parse new output from the store; True when something changed.

        While the operator reads back (scrolled up, or on a search hit), only the
        output the ring holds without dropping a line is parsed; the rest waits in
        the store (:attr:`held`) until they scroll to the end or press ``G``.
        """
        chunks, next_seq, dropped = self.store.since(self.task_id, self.seq)
        if not chunks:
            return False
        if not self.follow:
            fitting = self._fitting(chunks)
            next_seq -= len(chunks) - len(fitting)
            if not fitting:
                return False
            chunks = fitting
            if dropped:  # what the store no longer has never reached this pane
                chunks.insert(0, SKIPPED_MARK)
        elif not self.search and sum(map(len, chunks)) > TAIL_BYTES:
            # A flood, followed: parse only what can still be on screen after it.
            chunks = _tail(chunks, TAIL_BYTES)
            self._restart()
            self.partial = True
        elif dropped:
            # Fell behind what the store keeps: start again from what it has.
            self._restart()
        for chunk in chunks:
            self.buffer.feed(chunk)
        self.seq = next_seq
        newly_dropped = self.buffer.dropped - self._dropped_seen
        self._dropped_seen = self.buffer.dropped
        set_virtual_height(self, len(self.buffer))
        if self.follow:
            # Before its first layout a pane shows no scrollbar yet, and Textual scrolls
            # only a view that shows one: forced, the first frame shows the newest lines
            # (the layout brings the position within the pane's height), not the oldest
            # for a frame until the pane hears its size.
            self.scroll_end(animate=False, immediate=True, x_axis=False, force=not self.size)
        elif newly_dropped:
            # Keep the operator's view still while old lines scroll out of the ring.
            self.scroll_to(y=max(0, self.scroll_y - newly_dropped), animate=False, immediate=True)
        if self.search:
            self._find()
        self.refresh()
        return True

    def use_store(self, store: OutputStore) -> None:
        """Show another store's output for this task (its transcript, or its raw stream)."""
        if store is self.store:
            return
        self.store = store
        self.seq = 0
        self.partial = False
        self._restart()
        if not store.has(self.task_id):
            set_virtual_height(self, 0)
        # Else the next sync (at once: the pane is fresh) sets the height; going through
        # 0 hid and showed the scrollbar, and each costs a layout of the screen.
        self.refresh()

    def _fitting(self, chunks: list[bytes]) -> list[bytes]:
        """The first of ``chunks`` that the ring takes without dropping a line: the
        lines read stay where they are, and the end of what is parsed stays put once
        the ring is full (scrolling down reaches it, and following resumes there)."""
        room = self.buffer.max_lines - len(self.buffer)
        fitting: list[bytes] = []
        for chunk in chunks:
            room -= chunk.count(b"\n")
            if room < 0:
                break
            fitting.append(chunk)
        return fitting

    @property
    def held(self) -> bool:
        """New output waits in the store while the operator reads back."""
        return not self.follow and self.store.version(self.task_id) > self.seq

    def _restart(self) -> None:
        """An empty terminal, and nothing drawn from the old one."""
        self.buffer = TermBuffer(self.scrollback)
        self._dropped_seen = 0
        self._strips.clear()

    def complete(self) -> None:
        """Parse everything the store still holds, where a flood was only tailed.

        The view keeps its distance from the newest line.
        """
        if not self.partial:
            return
        from_end = len(self.buffer) - self.scroll_y
        chunks, self.seq, _ = self.store.since(self.task_id, 0)
        self._restart()
        for chunk in chunks:
            self.buffer.feed(chunk)
        self._dropped_seen = self.buffer.dropped
        self.partial = False
        set_virtual_height(self, len(self.buffer))
        self.scroll_to(y=max(0, len(self.buffer) - from_end), animate=False, immediate=True)
        self.refresh()

    def watch_follow(self, following: bool) -> None:
        if not following:
            self.complete()  # the operator looks back: give them all of it

    def on_resize(self) -> None:
        set_virtual_height(self, len(self.buffer))
        if self.follow:
            # A pane mounted this tick had no height yet when it first scrolled.
            self.scroll_end(animate=False, immediate=True, x_axis=False)

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        at_end = new >= self.max_scroll_y - 0.5
        if new < old and not at_end:
            self.follow = False
        elif at_end:
            self.follow = True

    def page(self, direction: int) -> None:
        """Scroll a page up (-1) or down (1); following stops unless at the end."""
        step = max(1, self.size.height - 1) * direction
        self.scroll_to(y=max(0, self.scroll_y + step), animate=False, immediate=True)
        self.follow = self.scroll_y >= self.max_scroll_y

    def resume_follow(self) -> None:
        """Jump to the newest output and keep following it."""
        self.follow = True
        self.scroll_end(animate=False, immediate=True, x_axis=False)

    # ------------------------------------------------------------ search

    def set_search(self, text: str) -> int:
        """Highlight ``text`` (case-insensitive) and jump to its last match."""
        self.complete()
        self.search = text
        self._match_line = -1
        self._find()
        self._match_index = len(self.matches)
        self.refresh()
        return self.next_match(-1) if self.matches else 0

    def _find(self) -> None:
        needle = self.search.lower()
        self.matches = [
            i
            for i, line in enumerate(self.buffer.lines)
            if needle and needle in text_of(line).lower()
        ]
        # The current match stays current when lines above it leave the ring.
        current = self._match_line - self.buffer.dropped
        if current in self.matches:
            self._match_index = self.matches.index(current)

    def next_match(self, step: int = 1) -> int:
        """Move to the next (or previous) match; returns the number of matches."""
        if not self.matches:
            return 0
        self._match_index = (self._match_index + step) % len(self.matches)
        line = self.matches[self._match_index]
        self._match_line = line + self.buffer.dropped
        self.follow = False
        self.scroll_to(y=max(0, line - self.size.height // 2), animate=False, immediate=True)
        self.refresh()
        return len(self.matches)

    # ------------------------------------------------------------ drawing

    def _style(self, sid: int, table: list[SgrState]) -> Style:
        style = self._styles.get(sid)
        if style is None:
            fg, bg, bold, dim, italic, underline, reverse, strike = (
                table[sid] if sid < len(table) else DEFAULT_SGR
            )
            style = Style(
                color=fg or None,
                bgcolor=bg or None,
                bold=bold or None,
                dim=dim or None,
                italic=italic or None,
                underline=underline or None,
                reverse=reverse or None,
                strike=strike or None,
            )
            self._styles[sid] = style
        return style

    def render_lines(self, crop: Region) -> list[Strip]:
        """Textual's one call per repaint: the base style is worked out once for it
        (``rich_style`` walks every ancestor's styles; per line it was a tenth of
        the UI's time under a flood)."""
        self._base = self.rich_style
        return super().render_lines(crop)

    @property
    def base_style(self) -> Style:
        """The pane's own style, as of its last repaint."""
        return self._base if self._base is not None else self.rich_style

    def render_line(self, y: int) -> Strip:
        scroll_y = self.scroll_offset.y
        index = scroll_y + y
        width = self.size.width
        if index >= len(self.buffer.lines):
            return Strip.blank(width, self.base_style)
        line = self.buffer.lines[index]
        key = index + self.buffer.dropped
        cached = self._strips.get(key)
        if (
            cached is not None
            and cached[0] == id(line)
            and cached[1] == version_of(line)
            and cached[2] == width
            and not self.search
        ):
            return cached[3]
        strip = self._draw(line, index, width)
        if len(self._strips) > 4 * max(50, self.size.height):
            self._strips.clear()
        self._strips[key] = (id(line), version_of(line), width, strip)
        return strip

    def _draw(self, line: AnyLine, index: int, width: int) -> Strip:
        """One line as a single Strip, cut or padded to the width."""
        base = self.base_style
        table = self.buffer.style_table
        segments: list[Segment] = []
        used = 0
        for text, sid in spans_of(line):
            if not text or used >= width:
                continue
            if used + len(text) > width:
                text = text[: width - used]
            segments.append(Segment(text, base + self._style(sid, table)))
            used += len(text)
        if self.search and index in self.matches:
            segments = self._highlight(segments, text_of(line)[:used], base)
        if used < width:
            segments.append(Segment(" " * (width - used), base))
        return Strip(segments, width)

    def forget_drawing(self) -> None:
        """Drop cached lines (the theme changed)."""
        self._strips.clear()
        self.refresh()

    def _highlight(self, segments: list[Segment], text: str, base: Style) -> list[Segment]:
        lowered, needle = text.lower(), self.search.lower()
        marks = bytearray(len(text))
        start = lowered.find(needle)
        while start >= 0:
            marks[start : start + len(needle)] = b"\x01" * len(needle)
            start = lowered.find(needle, start + 1)
        highlight = Style(reverse=True, bold=True)
        out: list[Segment] = []
        pos = 0
        for seg in segments:
            piece, style = seg.text, seg.style or base
            run_start = 0
            for i in range(1, len(piece) + 1):
                if i == len(piece) or marks[pos + i] != marks[pos + run_start]:
                    chunk = piece[run_start:i]
                    out.append(
                        Segment(chunk, style + highlight if marks[pos + run_start] else style)
                    )
                    run_start = i
            pos += len(piece)
        return out


#: Where a pane that was reading back missed output the store had already dropped.
SKIPPED_MARK = b"\r\n\x1b[2m\xe2\x94\x80\xe2\x94\x80 output skipped here (the run log has it) \xe2\x94\x80\xe2\x94\x80\x1b[0m\r\n"


def _tail(chunks: list[bytes], limit: int) -> list[bytes]:
    """The last ``limit`` bytes or so of ``chunks``, starting at a line."""
    kept: list[bytes] = []
    size = 0
    for chunk in reversed(chunks):
        if size + len(chunk) < limit:
            kept.append(chunk)
            size += len(chunk)
            continue
        cut = chunk.find(b"\n", len(chunk) - (limit - size))
        if cut >= 0:
            kept.append(chunk[cut + 1 :])
        break
    kept.reverse()
    return kept
