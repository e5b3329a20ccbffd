"""The Gemini API stand-in, as the gemini CLI calls it with an API key.

``POST /{version}/models/{model}:streamGenerateContent?alt=sse`` (SSE, one
``GenerateContentResponse`` per event), ``:generateContent`` (one JSON answer), ``:countTokens``
and ``:embedContent``. A request that declares functions is the CLI's main loop and takes the
next scripted turn; a ``WriteFile`` turn becomes a ``functionCall`` of the declared
``write_file`` (``file_path``, ``content``), a ``RunCommand`` one a ``functionCall`` of
``run_shell_command``. Side calls without functions (the model router's
classifier, the next-speaker and loop checks) ask for JSON with a schema: they get the
smallest object the schema allows, its enums answered with their first value.
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

VENDOR = "gemini"
SIDE_ANSWER = "ok"
SHELL_TOOL = "run_shell_command"


def api_key(request: web.Request) -> str | None:
    return request.headers.get("x-goog-api-key") or request.query.get("key")


def declared_functions(body: dict[str, Any]) -> list[str]:
    names: list[str] = []
    for tool in body.get("tools") or []:
        for declaration in tool.get("functionDeclarations") or []:
            names.append(str(declaration.get("name", "")))
    return names


def write_tool(names: list[str]) -> str:
    for name in ("write_file", "WriteFile"):
        if name in names:
            return name
    raise LookupError(f"gemini declared no write_file function; it declared {names}")


def fill_schema(schema: dict[str, Any]) -> Any:
    """A small value a JSON schema (OpenAPI subset as Gemini uses it) accepts (numbers: 1)."""
    kind = str(schema.get("type", "object")).lower()
    if schema.get("enum"):
        return schema["enum"][0]
    if kind == "object":
        properties = schema.get("properties") or {}
        required = schema.get("required") or list(properties)
        return {name: fill_schema(properties[name]) for name in required if name in properties}
    if kind == "array":
        return []
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)
    if kind == "boolean":
        return False
    return SIDE_ANSWER


def side_parts(body: dict[str, Any]) -> list[dict[str, Any]]:
    config = body.get("generationConfig") or {}
    schema = config.get("responseJsonSchema") or config.get("responseSchema")
    if schema or config.get("responseMimeType") == "application/json":
        return [{"text": json.dumps(fill_schema(schema or {"type": "object"}))}]
    return [{"text": SIDE_ANSWER}]


WORKDIR_RE = re.compile(r"\*\*Workspace Directories:\*\*\n\s*- (/[^\n]+)")


def workdir(body: dict[str, Any]) -> str | None:
    """The first workspace directory gemini states in its session context."""
    for content in body.get("contents", []):
        for part in content.get("parts", []):
            match = WORKDIR_RE.search(str(part.get("text", "")))
            if match:
                return match.group(1).strip()
    return None


def turn_parts(turn: Turn, functions: list[str], cwd: str | None = None) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    if turn.text:
        parts.append({"text": turn.text})
    if isinstance(turn, Reply | Fail):
        return parts
    if isinstance(turn, RunCommand):
        # called even when not declared (auto_edit leaves it out), as a model might
        parts.append({"functionCall": {"name": SHELL_TOOL, "args": {"command": turn.command}}})
        return parts
    if isinstance(turn, ReadFile):
        args = {"file_path": resolve(turn.path, cwd)}
        parts.append({"functionCall": {"name": "read_file", "args": args}})
        return parts
    parts.append(
        {
            "functionCall": {
                "name": write_tool(functions),
                "args": {"file_path": resolve(turn.path, cwd), "content": turn.content},
            }
        }
    )
    return parts


def usage_fields(usage: Usage) -> dict[str, Any]:
    fields = {
        "promptTokenCount": usage.prompt_total,
        "candidatesTokenCount": usage.output_tokens,
        "totalTokenCount": usage.prompt_total + usage.output_tokens + usage.reasoning,
    }
    if usage.cache_read:
        fields["cachedContentTokenCount"] = usage.cache_read
    if usage.reasoning:
        fields["thoughtsTokenCount"] = usage.reasoning
    return fields


def answer(model: str, parts: list[dict[str, Any]], usage: Usage) -> dict[str, Any]:
    return {
        "candidates": [
            {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}
        ],
        "usageMetadata": usage_fields(usage),
        "modelVersion": model,
        "responseId": secrets.token_hex(10),
    }


def error_body(status: int) -> dict[str, Any]:
    kind = {
        400: "INVALID_ARGUMENT",
        401: "UNAUTHENTICATED",
        403: "PERMISSION_DENIED",
        404: "NOT_FOUND",
        429: "RESOURCE_EXHAUSTED",
    }.get(status, "INTERNAL")
    message = (
        "API key not valid. Please pass a valid API key."
        if status in (400, 401, 403)
        else f"the stand-in answers {status}"
    )
    return {"error": {"code": status, "message": message, "status": kind}}


def add_routes(app: web.Application, server: StandInServer) -> None:
    async def model_call(request: web.Request) -> web.StreamResponse:
        spec = request.match_info["spec"]
        model, _, method = spec.partition(":")
        recorded, conversation = await server.receive(VENDOR, request, api_key(request))
        if conversation is None or recorded.status != 200:
            return web.json_response(error_body(recorded.status), status=recorded.status)
        body = recorded.body if isinstance(recorded.body, dict) else {}
        if method == "countTokens":
            return web.json_response({"totalTokens": max(1, len(recorded.text) // 4)})
        if method in ("embedContent", "batchEmbedContents"):
            return web.json_response({"embedding": {"values": [0.0] * 8}})
        functions = declared_functions(body)
        if functions:
            turn = conversation.take_turn(recorded)
            if isinstance(turn, Fail):
                recorded.status = turn.status
                return web.json_response(error_body(turn.status), status=turn.status)
            parts = turn_parts(turn, functions, workdir(body))
            usage = turn.usage
        else:
            parts = side_parts(body)
            usage = Usage(input_tokens=10, output_tokens=1)
        if method == "streamGenerateContent":
            return await send_sse(request, [(None, answer(model, parts, usage))])
        return web.json_response(answer(model, parts, usage))

    app.router.add_post("/{version}/models/{spec}", model_call)


def user_texts(request: Request) -> list[str]:
    """Every text part of the user turns in a generateContent request, oldest first."""
    body = request.body if isinstance(request.body, dict) else {}
    texts: list[str] = []
    for content in body.get("contents", []):
        if content.get("role") != "user":
            continue
        for part in content.get("parts", []):
            if "text" in part:
                texts.append(part["text"])
    return texts
