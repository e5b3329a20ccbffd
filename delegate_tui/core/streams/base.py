"""The parts every structured-stream parser shares: line splitting, JSON or not, and the
events of the run's vocabulary made from what a parser found (see the package's docstring).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import orjson

from delegate_tui.core.events import (
    AgentApiRetry,
    AgentMessage,
    AgentResult,
    AgentSession,
    AgentToolFinished,
    AgentToolStarted,
    AgentUsage,
    Event,
    TokenUsage,
)

#: The structured formats delegate-tui reads, by the name a preset gives.
FORMATS = ("claude", "codex", "gemini")
#: A line longer than this is not read as an event (it stays in the raw output).
MAX_LINE = 4 * 1024 * 1024
#: Characters of a raw line kept as a transcript message.
RAW_LIMIT = 500
#: Characters of an assistant message kept in one event (the raw stream has it all).
TEXT_LIMIT = 16_000
#: Characters of a tool's error or shell command kept.
DETAIL_LIMIT = 300

_ANSI_RE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-_]")
_AUTH_RE = re.compile(
    r"\b(401|403)\b|unauthori[sz]ed|authentication|invalid api key|api key not valid|"
    r"permission denied.*api|forbidden",
    re.IGNORECASE,
)
_STATUS_RE = re.compile(r"\b([45]\d\d)\b")

PriceFn = Callable[[Iterable[TokenUsage]], float | None]


def is_auth_failure(text: str, status: int | None = None) -> bool:
    """Whether an API error is the vendor refusing the credentials (401/403)."""
    if status in (401, 403):
        return True
    return bool(_AUTH_RE.search(text or ""))


def _status_in(text: str) -> int | None:
    match = _STATUS_RE.search(text or "")
    return int(match.group(1)) if match else None


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _float(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _short(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _one_line(text: str, limit: int = DETAIL_LIMIT) -> str:
    return _short(" ".join(text.split()), limit)


class StreamParser(ABC):
    """Reads one attempt's structured stream; :meth:`feed` returns the events it found."""

    format: ClassVar[str] = ""
    #: Tool names (lower case) that change files.
    WRITE_TOOLS: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        task: str,
        attempt: int,
        *,
        workdir: str = "",
        model: str = "",
        price: PriceFn | None = None,
        baseline: Iterable[TokenUsage] = (),
        baseline_cost: float | None = None,
    ) -> None:
        self.task = task
        self.attempt = attempt
        self.workdir = workdir.rstrip("/")
        self.model = model
        self._price = price
        self._baseline = {u.model: u for u in baseline}
        self._baseline_cost = baseline_cost
        self._buf = bytearray()
        self._overflow = False
        self.session_id = ""
        self.turns = 0
        self._in_turn = False
        self.usage: dict[str, TokenUsage] = {}
        self.cost_usd: float | None = None
        self.cost_source = ""
        self.result: AgentResult | None = None
        self._last_usage_key: tuple[Any, ...] = ()
        self._tool_names: dict[str, str] = {}

    # ------------------------------------------------------------ input

    def feed(self, data: bytes) -> list[Event]:
        """Events for the complete lines in ``data`` (a partial line waits for the rest)."""
        out: list[Event] = []
        self._buf += data
        while True:
            newline = self._buf.find(b"\n")
            if newline < 0:
                if len(self._buf) > MAX_LINE:
                    if not self._overflow:
                        out.append(self._raw(f"[a line over {MAX_LINE // 1024 // 1024} MiB]"))
                    self._overflow = True
                    self._buf.clear()
                return out
            line = bytes(self._buf[:newline])
            del self._buf[: newline + 1]
            if self._overflow:
                self._overflow = False
                continue
            out += self._read_line(line)

    def close(self) -> list[Event]:
        """Events for what is left when the stream ends."""
        line, self._buf = bytes(self._buf), bytearray()
        out = self._read_line(line) if line.strip() and not self._overflow else []
        return out + self._finish()

    def _finish(self) -> list[Event]:
        return []

    def _read_line(self, line: bytes) -> list[Event]:
        stripped = line.strip()
        if not stripped:
            return []
        if stripped.startswith(b"{"):
            try:
                obj = orjson.loads(stripped)
            except orjson.JSONDecodeError:
                obj = None
            if isinstance(obj, dict):
                try:
                    return self.event(obj)
                except (TypeError, ValueError, AttributeError, KeyError):
                    # A known type with an unexpected shape: show it, never fail on it.
                    return [self._raw(stripped.decode("utf-8", "replace"))]
        text = _ANSI_RE.sub("", stripped.decode("utf-8", "replace")).strip()
        return self.text_line(text) if text else []

    def text_line(self, text: str) -> list[Event]:
        """The events for a line of the stream that is not JSON (shown as it is)."""
        return [self._raw(text)]

    @abstractmethod
    def event(self, obj: dict[str, Any]) -> list[Event]:
        """The events for one JSON object of the stream (each CLI's parser says how)."""

    # ------------------------------------------------------------ helpers

    def _raw(self, text: str) -> AgentMessage:
        return AgentMessage(
            task=self.task, attempt=self.attempt, text=_short(text, RAW_LIMIT), kind="raw"
        )

    def _unknown(self, obj: dict[str, Any]) -> list[Event]:
        kind = _str(obj.get("type")) or "?"
        body = orjson.dumps(obj).decode("utf-8", "replace")
        return [self._raw(f"[{kind}] {body}")]

    def _say(self, text: str) -> list[Event]:
        self._turn()
        text = text.strip()
        if not text:
            return []
        return [AgentMessage(task=self.task, attempt=self.attempt, text=_short(text, TEXT_LIMIT))]

    def _turn(self) -> None:
        """An assistant action: a new turn begins unless one is already under way."""
        if not self._in_turn:
            self._in_turn = True
            self.turns += 1

    def _turn_over(self) -> None:
        self._in_turn = False

    def _relative(self, path: str) -> str:
        if self.workdir and path.startswith(self.workdir + "/"):
            return path[len(self.workdir) + 1 :]
        return path

    def _tool(
        self,
        tool_id: str,
        name: str,
        *,
        paths: Iterable[str] = (),
        command: str = "",
        writes: bool | None = None,
    ) -> AgentToolStarted:
        self._turn()
        self._tool_names[tool_id] = name
        rel = tuple(dict.fromkeys(self._relative(p) for p in paths if p))
        return AgentToolStarted(
            task=self.task,
            attempt=self.attempt,
            tool_id=tool_id,
            name=name,
            paths=rel,
            command=_one_line(command) if command else "",
            writes=name.lower() in self.WRITE_TOOLS if writes is None else writes,
        )

    def _tool_done(self, tool_id: str, ok: bool, detail: str = "") -> AgentToolFinished:
        self._turn_over()
        return AgentToolFinished(
            task=self.task,
            attempt=self.attempt,
            tool_id=tool_id,
            ok=ok,
            detail=_one_line(detail) if detail else "",
        )

    def _session(self, session_id: str, model: str, resumed: bool = False) -> list[Event]:
        self.session_id = session_id or self.session_id
        self.model = model or self.model
        if not self.session_id:
            return []
        return [
            AgentSession(
                task=self.task,
                attempt=self.attempt,
                session_id=self.session_id,
                model=self.model,
                resumed=resumed,
            )
        ]

    def _set_usage(
        self,
        usage: Mapping[str, TokenUsage],
        *,
        cli_cost: float | None = None,
        subtract_baseline: bool = False,
    ) -> list[Event]:
        """Replace the attempt's totals; an ``AgentUsage`` when anything changed."""
        totals: dict[str, TokenUsage] = {}
        for model, u in usage.items():
            base = self._baseline.get(model) if subtract_baseline else None
            if base is not None:
                u = TokenUsage(
                    model=model,
                    input=max(0, u.input - base.input),
                    cached=max(0, u.cached - base.cached),
                    cache_write=max(0, u.cache_write - base.cache_write),
                    output=max(0, u.output - base.output),
                    reasoning=max(0, u.reasoning - base.reasoning),
                    cost_usd=u.cost_usd,
                )
            totals[model] = u
        self.usage = totals
        if cli_cost is not None and subtract_baseline and self._baseline_cost is not None:
            cli_cost = max(0.0, cli_cost - self._baseline_cost)
        if cli_cost is not None:
            self.cost_usd, self.cost_source = cli_cost, "cli"
        elif self.cost_source != "cli":
            estimate = self._price(totals.values()) if self._price else None
            self.cost_usd = estimate
            self.cost_source = "estimated" if estimate is not None else ""
        key = (tuple(sorted(totals.items())), self.cost_usd, self.cost_source, self.turns)
        if key == self._last_usage_key:
            return []
        self._last_usage_key = key
        return [
            AgentUsage(
                task=self.task,
                attempt=self.attempt,
                usage=tuple(totals[m] for m in sorted(totals)),
                cost_usd=None if self.cost_usd is None else round(self.cost_usd, 6),
                cost_source=self.cost_source,
                turns=self.turns,
            )
        ]

    def _result(
        self, ok: bool, reason: str, text: str = "", denials: tuple[str, ...] = ()
    ) -> AgentResult:
        self.result = AgentResult(
            task=self.task,
            attempt=self.attempt,
            ok=ok,
            reason=reason,
            text=_short(text, TEXT_LIMIT),
            denials=denials,
        )
        return self.result

    def _retry(self, status: int | None, retry: int, detail: str) -> AgentApiRetry:
        return AgentApiRetry(
            task=self.task,
            attempt=self.attempt,
            status=status,
            retry=retry,
            detail=_one_line(detail),
        )


# ---------------------------------------------------------------- claude


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = [_str(_dict(c).get("text")) for c in _list(content)]
    return "\n".join(p for p in parts if p)
