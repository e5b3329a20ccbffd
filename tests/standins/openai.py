"""The OpenAI Responses API stand-in, as the codex CLI calls it.

``POST /v1/responses`` streamed as SSE (``response.created``, ``response.output_item.added``
/ ``.done``, text deltas, ``response.completed`` with usage), and ``GET /v1/models``. Every
request that offers tools takes the next scripted turn. A ``WriteFile`` turn becomes a call
of codex's ``apply_patch`` tool with an ``*** Add File:`` patch: a ``custom_tool_call`` when
codex offered it as a freeform (``custom``) tool, a ``function_call`` with ``{"input": ...}``
when it offered a function. A ``RunCommand`` turn calls ``exec_command``. Codex sends the whole history each time (no
``previous_response_id`` with ``store = false``), so a resumed thread shows up as a request
whose ``input`` holds the earlier items.
"""

from __future__ import annotations

import json
import secrets
import shlex
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.standins.script import Fail, ReadFile, Reply, Request, RunCommand, Turn, Usage
from tests.standins.sse import send_sse

if TYPE_CHECKING:
    from tests.standins.server import StandInServer

VENDOR = "openai"
SIDE_ANSWER = "ok"


def api_key(request: web.Request) -> str | None:
    auth = request.headers.get("authorization", "")
    return auth.removeprefix("Bearer ").strip() or None


def add_file_patch(path: str, content: str) -> str:
    """An apply_patch patch that creates ``path`` holding ``content``."""
    lines = content.splitlines()
    body = "".join(f"+{line}\n" for line in lines)
    return f"*** Begin Patch\n*** Add File: {path}\n{body}*** End Patch\n"


def patch_tool(tools: list[dict[str, Any]]) -> dict[str, Any]:
    for tool in tools:
        if tool.get("name") == "apply_patch":
            return tool
    names = [t.get("name") or t.get("type") for t in tools]
    raise LookupError(f"codex offered no apply_patch tool; it offered {names}")


def shell_call(command: str, tools: list[dict[str, Any]]) -> dict[str, Any]:
    """A call of codex's shell tool: ``exec_command`` (``cmd``) or the older ``shell``."""
    names = {t.get("name") for t in tools}
    arguments: dict[str, Any]
    if "exec_command" in names:
        name, arguments = "exec_command", {"cmd": command}
    elif "shell" in names:
        name, arguments = "shell", {"command": ["bash", "-lc", command]}
    else:
        raise LookupError(f"codex offered no shell tool; it offered {sorted(map(str, names))}")
    return {
        "type": "function_call",
        "id": "fc_" + secrets.token_hex(12),
        "status": "completed",
        "call_id": "call_" + secrets.token_hex(12),
        "name": name,
        "arguments": json.dumps(arguments),
    }


def output_items(turn: Turn, tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The response's output items for a turn."""
    items: list[dict[str, Any]] = []
    text = turn.text
    if text:
        items.append(
            {
                "type": "message",
                "id": "msg_" + secrets.token_hex(12),
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        )
    if isinstance(turn, Reply | Fail):
        return items
    if isinstance(turn, RunCommand):
        items.append(shell_call(turn.command, tools))
        return items
    if isinstance(turn, ReadFile):  # codex has no reading tool: its models cat the file
        items.append(shell_call(f"cat {shlex.quote(turn.path)}", tools))
        return items
    patch = add_file_patch(turn.path, turn.content)
    tool = patch_tool(tools)
    call_id = "call_" + secrets.token_hex(12)
    if tool.get("type") == "custom":
        items.append(
            {
                "type": "custom_tool_call",
                "id": "ctc_" + secrets.token_hex(12),
                "status": "completed",
                "call_id": call_id,
                "name": "apply_patch",
                "input": patch,
            }
        )
    else:
        items.append(
            {
                "type": "function_call",
                "id": "fc_" + secrets.token_hex(12),
                "status": "completed",
                "call_id": call_id,
                "name": "apply_patch",
                "arguments": json.dumps({"input": patch}),
            }
        )
    return items


def usage_fields(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.prompt_total,
        "input_tokens_details": {"cached_tokens": usage.cache_read},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning},
        "total_tokens": usage.prompt_total + usage.output_tokens,
    }


def stream_events(
    model: str, items: list[dict[str, Any]], usage: Usage
) -> list[tuple[str | None, dict[str, Any]]]:
    response_id = "resp_" + secrets.token_hex(12)
    shell = {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()),
        "model": model,
        "status": "in_progress",
        "output": [],
    }
    events: list[tuple[str | None, dict[str, Any]]] = [
        ("response.created", {"type": "response.created", "response": shell}),
        ("response.in_progress", {"type": "response.in_progress", "response": shell}),
    ]
    for index, item in enumerate(items):
        added = {**item, "status": "in_progress"}
        if item["type"] == "message":
            added["content"] = []
        events.append(
            (
                "response.output_item.added",
                {"type": "response.output_item.added", "output_index": index, "item": added},
            )
        )
        if item["type"] == "message":
            text = item["content"][0]["text"]
            events.append(
                (
                    "response.output_text.delta",
                    {
                        "type": "response.output_text.delta",
                        "item_id": item["id"],
                        "output_index": index,
                        "content_index": 0,
                        "delta": text,
                    },
                )
            )
        events.append(
            (
                "response.output_item.done",
                {"type": "response.output_item.done", "output_index": index, "item": item},
            )
        )
    done = {**shell, "status": "completed", "output": items, "usage": usage_fields(usage)}
    events.append(("response.completed", {"type": "response.completed", "response": done}))
    return events


def error_body(status: int) -> dict[str, Any]:
    if status == 401:
        return {
            "error": {
                "message": "Incorrect API key provided (the stand-in rejects this key).",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_api_key",
            }
        }
    return {
        "error": {
            "message": f"the stand-in answers {status}",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }


def add_routes(app: web.Application, server: StandInServer) -> None:
    async def responses(request: web.Request) -> web.StreamResponse:
        recorded, conversation = await server.receive(VENDOR, request, api_key(request))
        if conversation is None or recorded.status != 200:
            return web.json_response(error_body(recorded.status), status=recorded.status)
        body = recorded.body if isinstance(recorded.body, dict) else {}
        model = str(body.get("model", "gpt-standin"))
        if body.get("tools"):
            turn = conversation.take_turn(recorded)
            if isinstance(turn, Fail):
                recorded.status = turn.status
                return web.json_response(error_body(turn.status), status=turn.status)
            items = output_items(turn, body["tools"])
            usage = turn.usage
        else:
            items = output_items(Reply(SIDE_ANSWER), [])
            usage = Usage(input_tokens=10, output_tokens=1)
        return await send_sse(request, stream_events(model, items, usage))

    async def models(request: web.Request) -> web.StreamResponse:
        recorded, conversation = await server.receive(VENDOR, request, api_key(request))
        if conversation is None or recorded.status != 200:
            return web.json_response(error_body(recorded.status), status=recorded.status)
        return web.json_response({"object": "list", "data": [], "models": []})

    app.router.add_post("/v1/responses", responses)
    app.router.add_get("/v1/models", models)


def input_texts(request: Request) -> list[str]:
    """Every text of the user (and developer) messages in a Responses request's input."""
    body = request.body if isinstance(request.body, dict) else {}
    texts: list[str] = []
    items = body.get("input", [])
    if isinstance(items, str):
        return [items]
    for item in items:
        if item.get("type", "message") != "message" or item.get("role") != "user":
            continue
        content = item.get("content")
        if isinstance(content, str):
            texts.append(content)
            continue
        for part in content or []:
            if part.get("type") in ("input_text", "text"):
                texts.append(part.get("text", ""))
    return texts
