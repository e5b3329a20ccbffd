"""The Anthropic Messages API stand-in, as Claude Code calls it.

``POST /v1/messages`` (streamed as SSE when ``stream`` is true, one JSON message otherwise)
``POST /v1/messages/count_tokens`` and ``HEAD /api/hello`` (the connectivity check claude
makes at start-up unless ``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC`` is set). A request that offers tools is Claude Code's main
loop and takes the next scripted turn; a ``WriteFile`` turn becomes a ``tool_use`` block for
the tool named ``Write`` (``file_path``, ``content``), a ``ReadFile`` one for ``Read``, a ``RunCommand`` one for ``Bash``. Requests without tools (title and
topic side calls, the quota probe) get a short text and take no turn.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.standins.script import (
    Fail,
    ReadFile,
    Reply,
    Request,
    RunCommand,
    Turn,
    Usage,
    resolve,
)
from tests.standins.sse import send_sse

if TYPE_CHECKING:
    from tests.standins.server import StandInServer

VENDOR = "anthropic"
SIDE_ANSWER = "ok"


def api_key(request: web.Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key
    auth = request.headers.get("authorization", "")
    return auth.removeprefix("Bearer ").strip() or None


def write_tool(tools: list[dict[str, Any]]) -> str:
    """The name of the file-writing tool Claude Code offered."""
    names = [str(t.get("name", "")) for t in tools]
    for name in ("Write", "write_file", "str_replace_based_edit_tool"):
        if name in names:
            return name
    raise LookupError(f"claude offered no file-writing tool; it offered {names}")


def is_main(body: Any) -> bool:
    return isinstance(body, dict) and bool(body.get("tools"))


WORKDIR_RE = re.compile(r"Primary working directory: (/[^\n]+)")


def workdir(body: Any) -> str | None:
    """The working directory claude states now: the last one it stated, since a resumed
    session in another folder says "Primary working directory: NEW (was OLD)" after the
    earlier turns, which still carry OLD."""
    found = WORKDIR_RE.findall(_text(body))
    return found[-1].split(" (was ")[0].strip() if found else None


def _text(body: Any) -> str:
    """The system prompt and every text block of the messages, one string."""
    if not isinstance(body, dict):
        return ""
    parts: list[Any] = []
    for holder in [body.get("system"), *(m.get("content") for m in body.get("messages", []))]:
        if isinstance(holder, str):
            parts.append({"text": holder})
        elif isinstance(holder, list):
            parts.extend(holder)
    return "\n".join(str(p.get("text", "")) for p in parts if isinstance(p, dict))


def content_blocks(
    turn: Turn, tools: list[dict[str, Any]], cwd: str | None = None
) -> list[dict[str, Any]]:
    """The assistant message's content for a turn (not a ``Fail``)."""
    if isinstance(turn, Reply | Fail):
        return [{"type": "text", "text": turn.text}]
    blocks: list[dict[str, Any]] = []
    if turn.text:
        blocks.append({"type": "text", "text": turn.text})
    if isinstance(turn, RunCommand):
        name = "Bash"
        arguments = {"command": turn.command, "description": "Run a command"}
    elif isinstance(turn, ReadFile):
        name = "Read"
        arguments = {"file_path": resolve(turn.path, cwd)}
    else:
        name = write_tool(tools)
        arguments = {"file_path": resolve(turn.path, cwd), "content": turn.content}
    blocks.append(
        {
            "type": "tool_use",
            "id": "toolu_" + secrets.token_hex(12),
            "name": name,
            "input": arguments,
        }
    )
    return blocks


def usage_fields(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "cache_creation_input_tokens": usage.cache_write,
        "cache_read_input_tokens": usage.cache_read,
        "output_tokens": usage.output_tokens,
    }


def stream_events(
    model: str, blocks: list[dict[str, Any]], usage: Usage
) -> list[tuple[str | None, dict[str, Any]]]:
    """The SSE events of one streamed message."""
    stop = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
    start_usage = {**usage_fields(usage), "output_tokens": 1}
    events: list[tuple[str | None, dict[str, Any]]] = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_" + secrets.token_hex(12),
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": start_usage,
                },
            },
        )
    ]
    for index, block in enumerate(blocks):
        if block["type"] == "text":
            events.append(
                (
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "text", "text": ""},
                    },
                )
            )
            events.append(
                (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "text_delta", "text": block["text"]},
                    },
                )
            )
        else:
            events.append(
                (
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {
                            "type": "tool_use",
                            "id": block["id"],
                            "name": block["name"],
                            "input": {},
                        },
                    },
                )
            )
            events.append(
                (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {
                            "type": "input_json_delta",
                            "partial_json": json.dumps(block["input"]),
                        },
                    },
                )
            )
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": usage_fields(usage),
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def error_body(status: int) -> dict[str, Any]:
    kind = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        429: "rate_limit_error",
        529: "overloaded_error",
    }.get(status, "api_error")
    message = "invalid x-api-key" if status == 401 else f"the stand-in answers {status}"
    return {"type": "error", "error": {"type": kind, "message": message}}


def add_routes(app: web.Application, server: StandInServer) -> None:
    async def messages(request: web.Request) -> web.StreamResponse:
        recorded, conversation = await server.receive(VENDOR, request, api_key(request))
        if conversation is None or recorded.status != 200:
            return web.json_response(error_body(recorded.status), status=recorded.status)
        body = recorded.body if isinstance(recorded.body, dict) else {}
        model = str(body.get("model", "claude-standin"))
        if is_main(body):
            turn = conversation.take_turn(recorded)
            if isinstance(turn, Fail):
                recorded.status = turn.status
                return web.json_response(error_body(turn.status), status=turn.status)
            blocks = content_blocks(turn, body["tools"], workdir(body))
            usage = turn.usage
        else:
            blocks = [{"type": "text", "text": SIDE_ANSWER}]
            usage = Usage(input_tokens=10, output_tokens=1)
        if body.get("stream"):
            return await send_sse(request, stream_events(model, blocks, usage))
        stop = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
        return web.json_response(
            {
                "id": "msg_" + secrets.token_hex(12),
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": blocks,
                "stop_reason": stop,
                "stop_sequence": None,
                "usage": usage_fields(usage),
            }
        )

    async def count_tokens(request: web.Request) -> web.StreamResponse:
        recorded, conversation = await server.receive(VENDOR, request, api_key(request))
        if conversation is None or recorded.status != 200:
            return web.json_response(error_body(recorded.status), status=recorded.status)
        return web.json_response({"input_tokens": max(1, len(recorded.text) // 4)})

    async def hello(request: web.Request) -> web.StreamResponse:
        # claude's connectivity check at start-up, unless CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC
        return web.Response(status=200)

    app.router.add_post("/v1/messages", messages)
    app.router.add_get("/api/hello", hello)  # and HEAD
    app.router.add_post("/v1/messages/count_tokens", count_tokens)


def user_texts(request: Request) -> list[str]:
    """Every text block the user side of a Messages request carries, oldest first."""
    body = request.body if isinstance(request.body, dict) else {}
    texts: list[str] = []
    for message in body.get("messages", []):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
            continue
        for block in content or []:
            if block.get("type") == "text":
                texts.append(block.get("text", ""))
    return texts
