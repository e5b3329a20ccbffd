"""The stand-in server over real loopback HTTP, without the CLIs (runs where npm is missing)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.standins.script import Fail, Reply, Usage, WriteFile
from tests.standins.server import StandInServer


@pytest.fixture
def server() -> Iterator[StandInServer]:
    with StandInServer() as running:
        yield running


def post(url: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, str]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **headers},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as failed:
        return failed.code, failed.read().decode()


def sse_data(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


CLAUDE_TOOLS = [{"name": "Read"}, {"name": "Write"}]


def test_anthropic_main_calls_take_turns_in_order_and_side_calls_take_none(
    server: StandInServer,
) -> None:
    talk = server.converse(
        [WriteFile("/w/a.txt", "hi\n", usage=Usage(1000, 50, 200, 300)), Reply("done")]
    )
    url, key = server.url + "/v1/messages", {"x-api-key": talk.key}

    side_status, side = post(url, {"messages": [], "stream": False}, key)
    first_status, first = post(url, {"tools": CLAUDE_TOOLS, "stream": True}, key)
    _, second = post(url, {"tools": CLAUDE_TOOLS, "stream": False}, key)

    assert (side_status, json.loads(side)["content"]) == (200, [{"type": "text", "text": "ok"}])
    events = sse_data(first)
    assert first_status == 200 and events[0]["type"] == "message_start"
    assert events[0]["message"]["usage"]["cache_read_input_tokens"] == 200
    tool = events[1]["content_block"]
    assert (tool["type"], tool["name"]) == ("tool_use", "Write")
    assert json.loads(events[2]["delta"]["partial_json"]) == {
        "file_path": "/w/a.txt",
        "content": "hi\n",
    }
    finish = next(e for e in events if e["type"] == "message_delta")
    assert finish["delta"]["stop_reason"] == "tool_use"
    assert finish["usage"]["output_tokens"] == 50
    assert json.loads(second)["content"] == [{"type": "text", "text": "done"}]
    assert [r.turn for r in talk.requests] == [None, 0, 1]
    assert talk.overruns == 0


def test_openai_write_is_an_add_file_patch_and_usage_counts_the_whole_prompt(
    server: StandInServer,
) -> None:
    talk = server.converse([WriteFile("notes/a.txt", "one\ntwo\n", usage=Usage(100, 5, 40))])
    tools = [{"type": "custom", "name": "apply_patch"}, {"type": "function", "name": "x"}]

    status, text = post(
        server.url + "/v1/responses",
        {"tools": tools, "stream": True},
        {"Authorization": f"Bearer {talk.key}"},
    )

    events = sse_data(text)
    assert status == 200 and events[0]["type"] == "response.created"
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert [(i["type"], i["name"]) for i in done] == [("custom_tool_call", "apply_patch")]
    assert done[0]["input"] == (
        "*** Begin Patch\n*** Add File: notes/a.txt\n+one\n+two\n*** End Patch\n"
    )
    usage = events[-1]["response"]["usage"]
    assert (usage["input_tokens"], usage["input_tokens_details"]["cached_tokens"]) == (140, 40)


def test_gemini_json_side_calls_get_an_object_their_schema_accepts(
    server: StandInServer,
) -> None:
    talk = server.converse([Reply("main")])
    schema = {
        "type": "OBJECT",
        "properties": {
            "complexity_reasoning": {"type": "STRING"},
            "complexity_score": {"type": "INTEGER"},
            "choice": {"type": "STRING", "enum": ["flash", "pro"]},
        },
        "required": ["complexity_reasoning", "complexity_score", "choice"],
    }

    status, text = post(
        server.url + "/v1beta/models/gemini-flash:generateContent",
        {"contents": [], "generationConfig": {"responseJsonSchema": schema}},
        {"x-goog-api-key": talk.key},
    )

    answer = json.loads(json.loads(text)["candidates"][0]["content"]["parts"][0]["text"])
    assert status == 200
    assert answer == {"complexity_reasoning": "ok", "complexity_score": 1, "choice": "flash"}
    assert talk.turns_taken == 0


def test_rejected_keys_unknown_keys_and_scripted_failures_answer_in_each_vendors_shape(
    server: StandInServer,
) -> None:
    rejected = server.converse([], reject=401)
    flaky = server.converse([Fail(529), Reply("after")])
    gemini_url = server.url + "/v1beta/models/m:streamGenerateContent?alt=sse"
    tools = {"tools": [{"functionDeclarations": [{"name": "write_file"}]}]}

    claude = post(server.url + "/v1/messages", {}, {"x-api-key": rejected.key})
    codex = post(server.url + "/v1/responses", {}, {"Authorization": f"Bearer {rejected.key}"})
    gemini = post(gemini_url, tools, {"x-goog-api-key": rejected.key})
    stranger = post(server.url + "/v1/messages", {}, {"x-api-key": "nobody"})
    overloaded = post(
        server.url + "/v1/messages", {"tools": CLAUDE_TOOLS}, {"x-api-key": flaky.key}
    )
    retried = post(server.url + "/v1/messages", {"tools": CLAUDE_TOOLS}, {"x-api-key": flaky.key})

    assert claude[0] == 401 and json.loads(claude[1])["error"]["type"] == "authentication_error"
    assert codex[0] == 401 and json.loads(codex[1])["error"]["code"] == "invalid_api_key"
    assert gemini[0] == 401 and json.loads(gemini[1])["error"]["status"] == "UNAUTHENTICATED"
    assert [r.status for r in rejected.requests] == [401, 401, 401]
    assert stranger[0] == 401 and [r.headers["x-api-key"] for r in server.strays] == ["nobody"]
    assert overloaded[0] == 529 and json.loads(overloaded[1])["error"]["type"] == "overloaded_error"
    assert retried[0] == 200 and [r.status for r in flaky.requests] == [529, 200]


def test_a_script_the_cli_cannot_take_is_kept_as_an_error_for_the_test(
    server: StandInServer,
) -> None:
    talk = server.converse([WriteFile("/w/a.txt", "x")])

    status, _ = post(
        server.url + "/v1/messages", {"tools": [{"name": "Read"}]}, {"x-api-key": talk.key}
    )

    assert status == 500
    assert len(server.errors) == 1 and "no file-writing tool" in server.errors[0]


def test_a_relative_write_path_is_taken_against_the_working_directory_the_cli_states(
    server: StandInServer,
) -> None:
    talk = server.converse([WriteFile("notes/a.txt", "x"), WriteFile("b.txt", "y")])
    claude_body = {
        "tools": CLAUDE_TOOLS,
        "system": [{"type": "text", "text": "env:\n - Primary working directory: /w/tree\n"}],
    }
    gemini_body = {
        "tools": [{"functionDeclarations": [{"name": "write_file"}]}],
        "contents": [
            {"role": "user", "parts": [{"text": "- **Workspace Directories:**\n  - /w/gem\n"}]}
        ],
    }

    _, claude = post(server.url + "/v1/messages", claude_body, {"x-api-key": talk.key})
    _, gemini = post(
        server.url + "/v1beta/models/m:generateContent", gemini_body, {"x-goog-api-key": talk.key}
    )

    assert json.loads(claude)["content"][0]["input"]["file_path"] == "/w/tree/notes/a.txt"
    call = json.loads(gemini)["candidates"][0]["content"]["parts"][0]["functionCall"]
    assert call["args"]["file_path"] == "/w/gem/b.txt"
