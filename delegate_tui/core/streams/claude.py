"""claude ``-p --output-format stream-json --verbose``: its events read into the run's vocabulary."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from delegate_tui.core.events import AgentToolStarted, Event, TokenUsage
from delegate_tui.core.streams.base import (
    StreamParser,
    _content_text,
    _dict,
    _float,
    _int,
    _list,
    _one_line,
    _status_in,
    _str,
    is_auth_failure,
)


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
