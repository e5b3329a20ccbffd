"""codex ``exec --json``: its events read into the run's vocabulary, and what its shell
commands visibly read."""

from __future__ import annotations

import shlex
from typing import Any, ClassVar

from delegate_tui.core.events import Event, TokenUsage
from delegate_tui.core.streams.base import (
    StreamParser,
    _dict,
    _int,
    _list,
    _status_in,
    _str,
    is_auth_failure,
)


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
            # codex 0.171 names no model here; a later one that does is priced by it.
            return self._session(_str(obj.get("thread_id")), _str(obj.get("model")))
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


#: Commands that read the files they name (their other arguments are options or patterns).
_READERS = frozenset({"cat", "head", "tail", "less", "more", "nl", "wc", "sed", "awk", "bat"})
_SEARCHERS = frozenset({"grep", "rg", "ag", "ack"})


def read_paths(command: str) -> tuple[str, ...]:
    """The files a shell command visibly reads: ``cat api/schema.py``, ``sed -n 1,80p f``,
    ``rg -n Foo src/`` (what codex shows of its commands), unwrapping ``/bin/bash -lc '...'``.
    Commands it cannot read this way give nothing; it never guesses."""
    try:
        words = shlex.split(command)
    except ValueError:
        return ()
    shell = words[0].rsplit("/", 1)[-1] if words else ""
    if len(words) >= 3 and shell in ("bash", "sh", "zsh") and words[1] in ("-lc", "-c"):
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
