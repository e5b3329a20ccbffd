"""One loopback HTTP server that plays all three vendors' APIs for scripted conversations.

The server runs aiohttp on its own event loop in a daemon thread, on 127.0.0.1 and a port the
kernel picks, so synchronous tests can run a CLI with ``subprocess.run`` while it answers.
Requests are routed to a ``Conversation`` by the API key they carry (``x-api-key``,
``Authorization: Bearer``, ``x-goog-api-key`` or ``?key=``), so one server serves a whole test
session and tests never see each other's turns. A request with a key nobody registered, or
for a path no stand-in implements, is kept in ``strays`` and answered 401 or 404.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web

from tests.standins import anthropic, gemini, openai
from tests.standins.script import Conversation, Request, Turn

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class StandInServer:
    """The Anthropic, OpenAI Responses and Gemini stand-ins behind one port."""

    def __init__(self) -> None:
        self.conversations: dict[str, Conversation] = {}
        self.strays: list[Request] = []
        #: exceptions a stand-in raised while answering (a script the CLI could not take)
        self.errors: list[str] = []
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- the test-facing side -------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def converse(self, turns: Sequence[Turn], *, reject: int | None = None) -> Conversation:
        """Register a scripted conversation; the CLI reaches it with ``conversation.key``."""
        conversation = Conversation(turns, reject=reject)
        with self._lock:
            self.conversations[conversation.key] = conversation
        return conversation

    def start(self) -> StandInServer:
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._open())
            except BaseException as exc:  # reported to the starting thread
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._close())
            loop.close()

        self._thread = threading.Thread(target=serve, name="standin-server", daemon=True)
        self._thread.start()
        ready.wait(30)
        if failure:
            raise failure[0]
        if not self.port:
            raise RuntimeError("the stand-in server did not start within 30 s")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
            self._loop = None

    def __enter__(self) -> StandInServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the server side ------------------------------------------------------------------

    async def _open(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[self._keep_errors])
        anthropic.add_routes(app, self)
        openai.add_routes(app, self)
        gemini.add_routes(app, self)
        app.router.add_route("*", "/{tail:.*}", self._stray)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1]

    async def _close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _keep_errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Keep a stand-in's own failure for the test to report; the CLI sees a 500."""
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except ConnectionResetError:
            # The CLI went away while it was answered (delegate-tui ended it, say over
            # its budget, with a side request in flight): not the stand-in's failure.
            raise
        except Exception as exc:
            with self._lock:
                self.errors.append(f"{request.method} {request.path}: {exc!r}")
            return web.json_response(
                {"error": {"message": f"stand-in failure: {exc}", "type": "standin_error"}},
                status=500,
            )

    async def receive(
        self, vendor: str, request: web.Request, key: str | None
    ) -> tuple[Request, Conversation | None]:
        """Read and record a request; find the conversation its key names."""
        raw = await request.read()
        body: Any
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        recorded = Request(
            vendor=vendor,
            method=request.method,
            path=request.path,
            query=request.query_string,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
        )
        with self._lock:
            conversation = self.conversations.get(key or "")
        if conversation is None:
            recorded.status = 401
            with self._lock:
                self.strays.append(recorded)
        else:
            conversation.record(recorded)
            if conversation.reject is not None:
                recorded.status = conversation.reject
        return recorded, conversation

    async def _stray(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        recorded = Request(
            vendor="unknown",
            method=request.method,
            path=request.path,
            query=request.query_string,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=raw.decode("utf-8", "replace"),
            status=404,
        )
        with self._lock:
            self.strays.append(recorded)
        return web.json_response(
            {"error": {"message": f"the stand-in has no {request.path}", "type": "not_found"}},
            status=404,
        )
