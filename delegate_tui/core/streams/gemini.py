"""gemini ``-o stream-json``: its events read into the run's vocabulary (and its
plain-text API retries)."""

from __future__ import annotations

import re
from typing import Any

from delegate_tui.core.events import Event, TokenUsage
from delegate_tui.core.streams.base import (
    StreamParser,
    _content_text,
    _dict,
    _int,
    _list,
    _status_in,
    _str,
    is_auth_failure,
)

_GEMINI_RETRY_RE = re.compile(r"Attempt (\d+) failed with status (\d{3})")


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
