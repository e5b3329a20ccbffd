"""The agents' structured streams (claude, codex, gemini), read into one vocabulary.

Owns turning the lines an agent CLI prints in its structured mode (claude
``--output-format stream-json --verbose``, codex ``exec --json``, gemini
``-o stream-json``) into the run's own events: :class:`AgentSession`,
:class:`AgentMessage`, :class:`AgentToolStarted` / :class:`AgentToolFinished`,
:class:`AgentUsage` (tokens per model, cost), :class:`AgentApiRetry` and
:class:`AgentResult`. One parser per attempt, fed the raw output bytes as they
come; it keeps no I/O and decides nothing (the attempt acts on what it reports:
budgets, authentication failures, files touched).

The CLIs mix other lines into their streams (warnings, stack traces, progress):
a line that is not a JSON object, or an event type a parser does not know,
becomes an ``AgentMessage(kind="raw")`` and is never an error. The raw bytes
stay in the log as ``TaskOutput`` either way.

Usage is kept as totals for the attempt (each ``AgentUsage`` replaces the last):
claude's per-message ``usage`` live, then its final ``modelUsage`` (which
counts side calls too); codex's ``turn.completed`` totals are cumulative over a
thread, and claude's final figures over a session, so a resumed session's
earlier totals (``baseline``) are taken off;
gemini reports once, at its end, and bills thinking as output
(``total_tokens - input_tokens``). Where the CLI gives no cost, the price table
(:mod:`delegate_tui.core.prices`) estimates one and says so.
"""

from __future__ import annotations

import re
import shlex
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
_GEMINI_RETRY_RE = re.compile(r"Attempt (\d+) failed with status (\d{3})")

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


class StreamParser:
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

    def event(self, obj: dict[str, Any]) -> list[Event]:
        """The events for one JSON object of the stream."""
        raise NotImplementedError

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


class ClaudeStream(StreamParser):
    """``claude -p --output-format stream-json --verbose``."""

    format = "claude"
    WRITE_TOOLS = frozenset({"write", "edit", "multiedit", "notebookedit"})
    _REASONS: ClassVar[dict[str, str]] = {
        "success": "completed",
        "error_max_turns": "max_turns",
        "error_max_budget_usd": "budget",
        "error_during_execution": "error",
    }

    def __init__(self, task: str, attempt: int, **kwargs: Any) -> None:
        super().__init__(task, attempt, **kwargs)
        self._messages: dict[str, TokenUsage] = {}  # usage per assistant message id
        self._message_turns: set[str] = set()
        self._retries = 0

    def event(self, obj: dict[str, Any]) -> list[Event]:
        kind = _str(obj.get("type"))
        if kind == "system":
            return self._system(obj)
        if kind == "assistant":
            return self._assistant(_dict(obj.get("message")))
        if kind == "user":
            return self._user(_dict(obj.get("message")))
        if kind == "result":
            return self._end(obj)
        if kind in ("stream_event", "rate_limit_event"):
            return []  # partial-message deltas and rate-limit notes: the full events follow
        return self._unknown(obj)

    def _system(self, obj: dict[str, Any]) -> list[Event]:
        subtype = _str(obj.get("subtype"))
        if subtype == "init":
            return self._session(_str(obj.get("session_id")), _str(obj.get("model")))
        if subtype == "api_retry":
            self._retries += 1
            status = obj.get("error_status")
            status = status if isinstance(status, int) else _status_in(_str(obj.get("error")))
            retry = _int(obj.get("attempt")) or self._retries
            detail = _str(obj.get("error")) or _str(obj.get("message"))
            return [self._retry(status, retry, detail or f"HTTP {status}")]
        if subtype in ("status", "hook_response", "hook_started", "compact_boundary"):
            return []
        return self._unknown(obj)

    def _assistant(self, message: dict[str, Any]) -> list[Event]:
        out: list[Event] = []
        msg_id = _str(message.get("id"))
        if msg_id and msg_id not in self._message_turns:
            self._message_turns.add(msg_id)
            self._turn_over()  # each API response is a turn of its own
        for block in _list(message.get("content")):
            block = _dict(block)
            btype = _str(block.get("type"))
            if btype == "text":
                out += self._say(_str(block.get("text")))
            elif btype == "tool_use":
                out.append(self._tool_use(block))
            elif btype == "thinking":
                self._turn()
        usage = _dict(message.get("usage"))
        if usage and msg_id:
            model = _str(message.get("model")) or self.model
            self._messages[msg_id] = TokenUsage(
                model=model,
                input=_int(usage.get("input_tokens"))
                + _int(usage.get("cache_creation_input_tokens")),
                cached=_int(usage.get("cache_read_input_tokens")),
                cache_write=_int(usage.get("cache_creation_input_tokens")),
                output=_int(usage.get("output_tokens")),
            )
            out += self._set_usage(_sum_by_model(self._messages.values()))
        return out

    def _tool_use(self, block: dict[str, Any]) -> AgentToolStarted:
        name = _str(block.get("name")) or "tool"
        params = _dict(block.get("input"))
        paths = [
            _str(params.get(key))
            for key in ("file_path", "notebook_path", "path")
            if _str(params.get(key))
        ]
        return self._tool(
            _str(block.get("id")), name, paths=paths, command=_str(params.get("command"))
        )

    def _user(self, message: dict[str, Any]) -> list[Event]:
        out: list[Event] = []
        for block in _list(message.get("content")):
            block = _dict(block)
            if _str(block.get("type")) != "tool_result":
                continue
            error = block.get("is_error") is True
            detail = _content_text(block.get("content")) if error else ""
            out.append(self._tool_done(_str(block.get("tool_use_id")), not error, detail))
        return out

    def _end(self, obj: dict[str, Any]) -> list[Event]:
        out = self._session(_str(obj.get("session_id")), "") if not self.session_id else []
        usage: dict[str, TokenUsage] = {}
        for model, figures in _dict(obj.get("modelUsage")).items():
            f = _dict(figures)
            usage[model] = TokenUsage(
                model=model,
                input=_int(f.get("inputTokens")) + _int(f.get("cacheCreationInputTokens")),
                cached=_int(f.get("cacheReadInputTokens")),
                cache_write=_int(f.get("cacheCreationInputTokens")),
                output=_int(f.get("outputTokens")),
                cost_usd=_float(f.get("costUSD")),
            )
        self.turns = max(self.turns, _int(obj.get("num_turns")))
        cost = _float(obj.get("total_cost_usd"))
        if usage or cost is not None:
            # A resumed session's figures count the whole session: take the earlier off.
            out += self._set_usage(usage or self.usage, cli_cost=cost, subtract_baseline=True)
        subtype = _str(obj.get("subtype"))
        is_error = obj.get("is_error") is True or subtype not in ("", "success")
        text = _str(obj.get("result"))
        reason = self._REASONS.get(subtype, "error" if is_error else "completed")
        if is_error and reason in ("error", "completed") and is_auth_failure(text):
            reason = "auth"
        denials = tuple(_denial(d) for d in _list(obj.get("permission_denials")))
        if is_error and reason == "error" and denials:
            reason = "permission_denied"
        out.append(self._result(not is_error, reason, text, denials))
        return out


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = [_str(_dict(c).get("text")) for c in _list(content)]
    return "\n".join(p for p in parts if p)


def _denial(obj: Any) -> str:
    d = _dict(obj)
    name = _str(d.get("tool_name")) or "tool"
    params = _dict(d.get("tool_input"))
    what = _str(params.get("command")) or _str(params.get("file_path"))
    return f"{name}: {_one_line(what, 120)}" if what else name


def _sum_by_model(usages: Iterable[TokenUsage]) -> dict[str, TokenUsage]:
    totals: dict[str, TokenUsage] = {}
    for u in usages:
        t = totals.get(u.model)
        totals[u.model] = (
            u
            if t is None
            else TokenUsage(
                model=u.model,
                input=t.input + u.input,
                cached=t.cached + u.cached,
                cache_write=t.cache_write + u.cache_write,
                output=t.output + u.output,
                reasoning=t.reasoning + u.reasoning,
            )
        )
    return totals


# ---------------------------------------------------------------- codex


class CodexStream(StreamParser):
    """``codex exec --json``."""

    format = "codex"
    _TOOL_ITEMS: ClassVar[frozenset[str]] = frozenset(
        {"command_execution", "file_change", "mcp_tool_call", "web_search"}
    )

    def __init__(self, task: str, attempt: int, **kwargs: Any) -> None:
        super().__init__(task, attempt, **kwargs)
        self._started: set[str] = set()
        self._last_text = ""
        self._retries = 0
        self._ending: tuple[bool, str, str] | None = None

    def _finish(self) -> list[Event]:
        if self._ending is None:
            return []
        ok, reason, text = self._ending
        return [self._result(ok, reason, text)]

    def event(self, obj: dict[str, Any]) -> list[Event]:
        kind = _str(obj.get("type"))
        if kind == "thread.started":
            return self._session(_str(obj.get("thread_id")), self.model)
        if kind == "turn.started":
            return []
        if kind in ("item.started", "item.updated", "item.completed"):
            return self._item(_dict(obj.get("item")), done=kind == "item.completed")
        if kind == "turn.completed":
            u = _dict(obj.get("usage"))
            cached = _int(u.get("cached_input_tokens"))
            write = _int(u.get("cache_write_input_tokens"))
            total_in = _int(u.get("input_tokens"))
            model = self.model or "codex"
            usage = TokenUsage(
                model=model,
                input=max(0, total_in - cached),
                cached=cached,
                cache_write=write,
                output=_int(u.get("output_tokens")) + _int(u.get("reasoning_output_tokens")),
                reasoning=_int(u.get("reasoning_output_tokens")),
            )
            # How the run ended is told once, when its stream ends (a run may hold
            # several turns): the last turn's outcome stands.
            self._ending = (True, "completed", self._last_text)
            return self._set_usage({model: usage}, subtract_baseline=True)
        if kind == "turn.failed":
            message = _str(_dict(obj.get("error")).get("message"))
            reason = "auth" if is_auth_failure(message) else "error"
            self._ending = (False, reason, message)
            return []
        if kind == "error":
            message = _str(obj.get("message"))
            status = _status_in(message)
            if "reconnect" in message.lower() or "retry" in message.lower() or status:
                self._retries += 1
                return [self._retry(status, self._retries, message)]
            return [self._raw(message)]
        return self._unknown(obj)

    def _item(self, item: dict[str, Any], *, done: bool) -> list[Event]:
        item_type = _str(item.get("type"))
        item_id = _str(item.get("id"))
        if item_type == "agent_message":
            if not done:
                return []
            self._last_text = _str(item.get("text"))
            return self._say(self._last_text)
        if item_type in ("reasoning", "todo_list"):
            if done:
                self._turn()
            return []
        if item_type == "error":
            return [self._raw(_str(item.get("message")))] if done else []
        if item_type not in self._TOOL_ITEMS:
            return self._unknown(item) if done else []
        out: list[Event] = []
        if item_id not in self._started:
            self._started.add(item_id)
            if item_type == "command_execution":
                command = _str(item.get("command"))
                out.append(self._tool(item_id, "shell", command=command, paths=read_paths(command)))
            elif item_type == "file_change":
                paths = [_str(_dict(c).get("path")) for c in _list(item.get("changes"))]
                out.append(self._tool(item_id, "apply_patch", paths=paths, writes=True))
            elif item_type == "mcp_tool_call":
                name = f"{_str(item.get('server'))}.{_str(item.get('tool'))}".strip(".")
                out.append(self._tool(item_id, name or "mcp", writes=False))
            else:
                out.append(self._tool(item_id, item_type, command=_str(item.get("query"))))
        if done:
            status = _str(item.get("status"))
            exit_code = item.get("exit_code")
            ok = status not in ("failed", "declined") and exit_code in (None, 0)
            detail = f"exit {exit_code}" if isinstance(exit_code, int) and exit_code else ""
            if not ok and not detail:
                detail = _str(_dict(item.get("error")).get("message")) or status
            out.append(self._tool_done(item_id, ok, detail))
        return out


# ---------------------------------------------------------------- gemini


class GeminiStream(StreamParser):
    """``gemini -o stream-json``."""

    format = "gemini"
    WRITE_TOOLS = frozenset({"write_file", "replace", "edit"})

    def __init__(self, task: str, attempt: int, **kwargs: Any) -> None:
        super().__init__(task, attempt, **kwargs)
        self._text: list[str] = []
        self._all_text: list[str] = []

    def event(self, obj: dict[str, Any]) -> list[Event]:
        kind = _str(obj.get("type"))
        if kind != "message" or _str(obj.get("role")) != "assistant":
            out = self._flush_text()
        else:
            out = []
        if kind == "init":
            return out + self._session(_str(obj.get("session_id")), _str(obj.get("model")))
        if kind == "message":
            if _str(obj.get("role")) == "assistant":
                self._turn()
                content = _content_text(obj.get("content"))
                if obj.get("delta") is True:
                    self._text.append(content)
                    return out
                self._text = [content]
                return out + self._flush_text()
            return out
        if kind == "tool_use":
            params = _dict(obj.get("parameters"))
            paths = [
                _str(params.get(key))
                for key in ("file_path", "absolute_path", "path", "dir_path")
                if _str(params.get(key))
            ]
            paths += [_str(p) for p in _list(params.get("paths")) if _str(p)]
            return [
                *out,
                self._tool(
                    _str(obj.get("tool_id")),
                    _str(obj.get("tool_name")) or "tool",
                    paths=paths,
                    command=_str(params.get("command")),
                ),
            ]
        if kind == "tool_result":
            status = _str(obj.get("status"))
            error = _dict(obj.get("error"))
            detail = _str(error.get("message")) or (_str(obj.get("error")) if not error else "")
            return [*out, self._tool_done(_str(obj.get("tool_id")), status == "success", detail)]
        if kind == "error":
            message = _str(obj.get("message"))
            http = _status_in(message)
            if http:
                return [*out, self._retry(http, 0, message)]
            return [*out, self._raw(message)]
        if kind == "result":
            return out + self._end(obj)
        return out + self._unknown(obj)

    def text_line(self, text: str) -> list[Event]:
        # gemini says its API retries only in plain text, on stderr.
        match = _GEMINI_RETRY_RE.match(text)
        if match:
            return [self._retry(int(match.group(2)), int(match.group(1)), text)]
        return [self._raw(text)]

    def _flush_text(self) -> list[Event]:
        if not self._text:
            return []
        text, self._text = "".join(self._text), []
        self._all_text.append(text)
        return self._say(text)

    def _finish(self) -> list[Event]:
        return self._flush_text()

    def _end(self, obj: dict[str, Any]) -> list[Event]:
        stats = _dict(obj.get("stats"))
        usage: dict[str, TokenUsage] = {}
        for model, figures in _dict(stats.get("models")).items():
            f = _dict(figures)
            if f:
                usage[model] = _gemini_usage(model, f)
        if not usage and stats:
            model = self.model or "gemini"
            usage[model] = _gemini_usage(model, stats)
        out = self._set_usage(usage) if usage else []
        status = _str(obj.get("status"))
        error = obj.get("error")
        message = _str(_dict(error).get("message")) if isinstance(error, dict) else _str(error)
        ok = status == "success"
        reason = "completed" if ok else ("auth" if is_auth_failure(message) else "error")
        final = self._all_text[-1] if self._all_text else ""
        out.append(self._result(ok, reason, final if ok else message or final))
        return out


def _gemini_usage(model: str, f: dict[str, Any]) -> TokenUsage:
    total_in = _int(f.get("input_tokens")) or _int(f.get("input"))
    cached = _int(f.get("cached"))
    total = _int(f.get("total_tokens"))
    visible_out = _int(f.get("output_tokens"))
    billed_out = max(visible_out, total - total_in) if total else visible_out
    return TokenUsage(
        model=model,
        input=max(0, total_in - cached),
        cached=cached,
        output=billed_out,
        reasoning=max(0, billed_out - visible_out),
    )


#: Commands that read the files they name (their other arguments are options or patterns).
_READERS = frozenset({"cat", "head", "tail", "less", "more", "nl", "wc", "sed", "awk", "bat"})
_SEARCHERS = frozenset({"grep", "rg", "ag", "ack"})


def read_paths(command: str) -> tuple[str, ...]:
    """The files a shell command visibly reads: ``cat api/schema.py``, ``sed -n 1,80p f``,
    ``rg -n Foo src/`` (what codex shows of its commands), unwrapping ``bash -lc '...'``.
    Commands it cannot read this way give nothing; it never guesses."""
    try:
        words = shlex.split(command)
    except ValueError:
        return ()
    if len(words) >= 3 and words[0] in ("bash", "sh", "zsh") and words[1] in ("-lc", "-c"):
        return read_paths(words[2])
    paths: list[str] = []
    for part in _split_pipeline(words):
        if not part:
            continue
        name = part[0].rsplit("/", 1)[-1]
        args = [a for a in part[1:] if not a.startswith("-")]
        if name in _SEARCHERS and args:
            args = args[1:]  # the pattern
        elif name in ("sed", "awk") and args:
            args = args[1:]  # the script
        elif name not in _READERS:
            continue
        paths += [a.rstrip("/") or a for a in args if _looks_like_path(a)]
    return tuple(dict.fromkeys(paths))


def _split_pipeline(words: list[str]) -> list[list[str]]:
    parts: list[list[str]] = [[]]
    for word in words:
        if word in ("|", "&&", "||", ";"):
            parts.append([])
        else:
            parts[-1].append(word)
    return parts


def _looks_like_path(arg: str) -> bool:
    return (
        bool(arg)
        and not any(c in arg for c in "*?$`<>|;&=")
        and ("/" in arg or "." in arg.lstrip("."))
        and not arg.startswith(("http://", "https://"))
    )


_PARSERS: dict[str, type[StreamParser]] = {
    "claude": ClaudeStream,
    "codex": CodexStream,
    "gemini": GeminiStream,
}


def parser_for(
    fmt: str,
    task: str,
    attempt: int,
    *,
    workdir: str = "",
    model: str = "",
    price: PriceFn | None = None,
    baseline: Iterable[TokenUsage] = (),
    baseline_cost: float | None = None,
) -> StreamParser:
    """A parser of ``fmt`` (one of :data:`FORMATS`) for one attempt.

    ``baseline`` (and ``baseline_cost``) are what the conversation this attempt
    continues had used before it, for the formats whose totals count a whole
    session (:data:`CUMULATIVE`); others ignore them.
    """
    return _PARSERS[fmt](
        task,
        attempt,
        workdir=workdir,
        model=model,
        price=price,
        baseline=baseline if fmt in CUMULATIVE else (),
        baseline_cost=baseline_cost if fmt in CUMULATIVE else None,
    )


#: Formats whose usage (and cost) in a resumed session counts the whole session:
#: claude's final ``modelUsage`` and ``total_cost_usd``, codex's ``turn.completed``.
CUMULATIVE = frozenset({"claude", "codex"})
