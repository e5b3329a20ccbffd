"""A bounded, line-oriented terminal for agent output.

Owns turning an agent's raw bytes into the lines a terminal would show:
SGR colours and attributes, ``\\r`` progress lines, backspace, erase-line,
cursor up/down/column moves (how spinners and multi-line status blocks
redraw), tabs, and UTF-8 split across chunks. Everything else (titles,
clipboard, hyperlinks, mode switches, bells) is parsed and dropped, so no
control sequence from an agent reaches the operator's terminal.

Lines live in a ring bounded by ``max_lines``; the full output stays in the
run log. Plain output (no escapes, no ``\\r``) takes a fast path that is a
split and an append. No Textual or Rich here: a line is text plus style runs,
and styles are small ints that the pane maps to Rich styles.
"""

from __future__ import annotations

import codecs
import re
from collections import deque
from dataclasses import dataclass, field

# An SGR state: (fg, bg, bold, dim, italic, underline, reverse, strike).
# Colours are "" (default), "color(n)" for the 256 palette, or "#rrggbb".
SgrState = tuple[str, str, bool, bool, bool, bool, bool, bool]
DEFAULT_SGR: SgrState = ("", "", False, False, False, False, False, False)

_TOKEN = re.compile(
    r"""
    (?P<csi>\x1b\[(?P<params>[0-?]*)[ -/]*(?P<final>[@-~]))
  | (?P<osc>\x1b\][^\x07\x1b]*(?:\x07|\x1b\\))
  | (?P<string>\x1b[PX^_][^\x1b]*\x1b\\)
  | (?P<esc>\x1b[ -/]*[0-OQ-WYZ\\`-~])   # not the introducers [ ] P X ^ _
  | (?P<ctl>[\r\n\x08\t])
  | (?P<junk>[\x00-\x07\x0b-\x1f\x7f])
    """,
    re.VERBOSE,
)
_SLOW = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")
#: A trailing escape this short may still be completed by the next chunk.
_MAX_PENDING = 4096


@dataclass(slots=True)
class Line:
    """One line: its text and style runs ``(end, style_id)`` covering it in order."""

    text: str = ""
    runs: list[tuple[int, int]] = field(default_factory=list)
    #: Bumped on every change, so a renderer can cache a drawn line safely.
    version: int = 0

    def append(self, text: str, style: int) -> None:
        """Add text at the end in one style."""
        if not text:
            return
        self.version += 1
        end = len(self.text) + len(text)
        self.text += text
        if self.runs and self.runs[-1][1] == style:
            self.runs[-1] = (end, style)
        else:
            self.runs.append((end, style))

    def write(self, col: int, text: str, style: int) -> None:
        """Overwrite from column ``col`` (padding with spaces if it is past the end)."""
        length = len(self.text)
        if col >= length:
            if col > length:
                self.append(" " * (col - length), 0)
            self.append(text, style)
            return
        self.version += 1
        stop = col + len(text)
        before = self._slice(0, col)
        after = self._slice(stop, length)
        self.text, self.runs = "", []
        for part_text, part_runs in (before, (text, [(len(text), style)]), after):
            offset = len(self.text)
            self.text += part_text
            for end, sid in part_runs:
                if self.runs and self.runs[-1][1] == sid:
                    self.runs[-1] = (offset + end, sid)
                else:
                    self.runs.append((offset + end, sid))

    def _slice(self, start: int, stop: int) -> tuple[str, list[tuple[int, int]]]:
        runs: list[tuple[int, int]] = []
        begin = 0
        for end, sid in self.runs:
            lo, hi = max(begin, start), min(end, stop)
            if lo < hi:
                runs.append((hi - start, sid))
            begin = end
        return self.text[start:stop], runs

    def truncate(self, col: int) -> None:
        """Erase from ``col`` to the end of the line."""
        if col < len(self.text):
            self.version += 1
            self.text, self.runs = self._slice(0, col)

    def erase_before(self, col: int) -> None:
        """Erase from the start to ``col`` inclusive (blank, not removed)."""
        width = min(col + 1, len(self.text))
        if width > 0:
            self.write(0, " " * width, 0)

    def spans(self) -> list[tuple[str, int]]:
        """``(text, style_id)`` pieces in order."""
        out = []
        begin = 0
        for end, sid in self.runs:
            out.append((self.text[begin:end], sid))
            begin = end
        return out


def _colour_256(n: int) -> str:
    return f"color({n})"


#: A retained line: a plain ``str`` (default style, never rewritten: the cheap,
#: common case under floods) or a :class:`Line` with styles.
AnyLine = str | Line


def text_of(line: AnyLine) -> str:
    """The characters of a line."""
    return line if isinstance(line, str) else line.text


def spans_of(line: AnyLine) -> list[tuple[str, int]]:
    """``(text, style_id)`` pieces of a line."""
    return [(line, 0)] if isinstance(line, str) else line.spans()


def version_of(line: AnyLine) -> int:
    """Changes when the line changes (plain lines never do)."""
    return 0 if isinstance(line, str) else line.version


class TermBuffer:
    """Agent output as terminal lines, bounded to ``max_lines``."""

    def __init__(self, max_lines: int = 5000) -> None:
        self.max_lines = max(10, max_lines)
        self.lines: deque[AnyLine] = deque([Line()])
        #: Lines dropped from the top so far: a stable index for scroll positions.
        self.dropped = 0
        #: Bumped on every change, so a pane knows when to redraw.
        self.version = 0
        self.bytes_fed = 0
        self._row = 0  # cursor row, as an index into ``lines``
        self._col = 0
        self._sgr: SgrState = DEFAULT_SGR
        self._style = 0
        self._styles: dict[SgrState, int] = {DEFAULT_SGR: 0}
        self.style_table: list[SgrState] = [DEFAULT_SGR]
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""

    # ------------------------------------------------------------ public

    def feed(self, data: bytes) -> None:
        """Take a chunk of raw output."""
        if not data:
            return
        self.bytes_fed += len(data)
        self.version += 1
        text = self._pending + self._decoder.decode(data)
        self._pending = ""
        at_end = self._row == len(self.lines) - 1 and self._col == len(text_of(self.lines[-1]))
        if at_end and "\x1b" not in text:
            plain = text.replace("\r\n", "\n") if "\r" in text else text
            if not _SLOW.search(plain) and not plain.endswith("\r"):
                self._fast(plain)
                return
        self._slow(text)

    def plain_lines(self) -> list[str]:
        """Every retained line as text (for search, tests and copying)."""
        return [text_of(line) for line in self.lines]

    def _editable(self, row: int) -> Line:
        """The line at ``row`` as a Line (a plain str becomes one when written to)."""
        line = self.lines[row]
        if isinstance(line, str):
            editable = Line()
            editable.append(line, 0)
            self.lines[row] = editable
            return editable
        return line

    def __len__(self) -> int:
        return len(self.lines)

    # ------------------------------------------------------------ parsing

    def _fast(self, text: str) -> None:
        parts = text.split("\n")
        lines = self.lines
        style = self._style
        self._editable(len(lines) - 1).append(parts[0], style)
        rest = parts[1:]
        if not rest:  # no newline: the cursor's line only grew (a prompt, half a line)
            self._col = len(text_of(lines[-1]))
            return
        # Lines this chunk would push out of the ring at once are only counted.
        skip = max(0, len(rest) - self.max_lines)
        if skip:
            self.dropped += skip + len(lines)
            lines.clear()
            rest = rest[skip:]
        if style == 0:
            lines.extend(rest[:-1])  # plain lines stay str: no object per line
            last = Line()
            last.append(rest[-1], 0)
            lines.append(last)  # the cursor's line may still be written to
        else:
            lines.extend([Line(part, [(len(part), style)] if part else []) for part in rest])
        self._row = len(lines) - 1
        self._col = len(text_of(lines[-1]))
        self._trim()

    def _slow(self, text: str) -> None:
        # Hold back an escape sequence the next chunk may complete.
        cut = text.rfind("\x1b")
        if cut >= 0 and len(text) - cut < _MAX_PENDING:
            match = _TOKEN.match(text, cut)
            if match is None or match.lastgroup == "junk":
                self._pending = text[cut:]
                text = text[:cut]
        pos = 0
        for match in _TOKEN.finditer(text):
            if match.start() > pos:
                self._put(text[pos : match.start()])
            pos = match.end()
            kind = match.lastgroup
            if kind == "ctl":
                self._control(match.group())
            elif kind == "csi":
                self._csi(match.group("params"), match.group("final"))
            # osc, string, esc and junk are dropped on purpose.
        if pos < len(text):
            self._put(text[pos:])
        self._trim()

    def _put(self, text: str) -> None:
        if "\x1b" in text:  # a lone ESC that matched nothing: drop it
            text = text.replace("\x1b", "")
        if text:
            self._editable(self._row).write(self._col, text, self._style)
            self._col += len(text)

    def _control(self, ch: str) -> None:
        if ch == "\n":
            self._row += 1
            if self._row >= len(self.lines):
                self.lines.append(Line())
                self._row = len(self.lines) - 1
            self._col = 0  # PTYs send \r\n; a bare \n from pipes also starts a line
        elif ch == "\r":
            self._col = 0
        elif ch == "\x08":
            self._col = max(0, self._col - 1)
        elif ch == "\t":
            self._col = (self._col // 8 + 1) * 8

    def _csi(self, params: str, final: str) -> None:
        if params.startswith("?") or params.startswith(">") or params.startswith("="):
            return  # private modes (cursor visibility, alternate screen...): ignore
        numbers = [int(p) if p.isdigit() else 0 for p in params.split(";")] if params else []
        first = numbers[0] if numbers else 0
        count = max(1, first)
        if final == "m":
            self._set_sgr(numbers or [0])
        elif final == "K":
            line = self._editable(self._row)
            if first == 0:
                line.truncate(self._col)
            elif first == 1:
                line.erase_before(self._col)
            else:
                line.truncate(0)
        elif final == "A":
            self._row = max(0, self._row - count)
        elif final in "BE":
            self._row = min(len(self.lines) - 1, self._row + count)
            if final == "E":
                self._col = 0
        elif final == "F":
            self._row = max(0, self._row - count)
            self._col = 0
        elif final == "C":
            self._col += count
        elif final == "D":
            self._col = max(0, self._col - count)
        elif final == "G":
            self._col = max(0, count - 1)
        elif final in "Hf":
            # Absolute moves land in the last screenful (40 rows), as on a terminal.
            top = max(0, len(self.lines) - 40)
            row = top + max(1, first) - 1
            while row >= len(self.lines):
                self.lines.append(Line())
            self._row = row
            self._col = max(1, numbers[1] if len(numbers) > 1 else 1) - 1
        elif final == "J" and first == 2:
            # Clear screen: keep history, start the new screen on a fresh line.
            if text_of(self.lines[-1]):
                self.lines.append(Line())
            self._row = len(self.lines) - 1
            self._col = 0

    def _set_sgr(self, numbers: list[int]) -> None:
        fg, bg, bold, dim, italic, underline, reverse, strike = self._sgr
        i = 0
        while i < len(numbers):
            n = numbers[i]
            if n == 0:
                fg, bg, bold, dim, italic, underline, reverse, strike = DEFAULT_SGR
            elif n == 1:
                bold = True
            elif n == 2:
                dim = True
            elif n == 3:
                italic = True
            elif n == 4:
                underline = True
            elif n == 7:
                reverse = True
            elif n == 9:
                strike = True
            elif n == 22:
                bold = dim = False
            elif n == 23:
                italic = False
            elif n == 24:
                underline = False
            elif n == 27:
                reverse = False
            elif n == 29:
                strike = False
            elif 30 <= n <= 37:
                fg = _colour_256(n - 30)
            elif 90 <= n <= 97:
                fg = _colour_256(n - 90 + 8)
            elif n == 39:
                fg = ""
            elif 40 <= n <= 47:
                bg = _colour_256(n - 40)
            elif 100 <= n <= 107:
                bg = _colour_256(n - 100 + 8)
            elif n == 49:
                bg = ""
            elif n in (38, 48) and i + 1 < len(numbers):
                colour = ""
                if numbers[i + 1] == 5 and i + 2 < len(numbers):
                    colour = _colour_256(numbers[i + 2] % 256)
                    i += 2
                elif numbers[i + 1] == 2 and i + 4 < len(numbers):
                    r, g, b = (max(0, min(255, v)) for v in numbers[i + 2 : i + 5])
                    colour = f"#{r:02x}{g:02x}{b:02x}"
                    i += 4
                if n == 38:
                    fg = colour
                else:
                    bg = colour
            i += 1
        self._sgr = (fg, bg, bold, dim, italic, underline, reverse, strike)
        style = self._styles.get(self._sgr)
        if style is None:
            style = len(self.style_table)
            self._styles[self._sgr] = style
            self.style_table.append(self._sgr)
        self._style = style

    def _trim(self) -> None:
        excess = len(self.lines) - self.max_lines
        if excess > 0:
            lines = self.lines
            popleft = lines.popleft
            for _ in range(excess):
                popleft()
            self.dropped += excess
            self._row = max(0, self._row - excess)
