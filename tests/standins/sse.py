"""Writing server-sent events with aiohttp, the way all three vendors stream."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web


async def send_sse(
    request: web.Request, events: list[tuple[str | None, dict[str, Any]]]
) -> web.StreamResponse:
    """Stream server-sent events (``event:`` name optional) and end the response."""
    response = web.StreamResponse(
        status=200,
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"},
    )
    await response.prepare(request)
    for name, data in events:
        chunk = f"event: {name}\n" if name else ""
        chunk += f"data: {json.dumps(data, ensure_ascii=False)}\n\n"
        await response.write(chunk.encode())
    await response.write_eof()
    return response
