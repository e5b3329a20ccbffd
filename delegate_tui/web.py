"""The run as a web page: ``delegate-tui serve`` shows a live run's full UI in a browser.

Owns the web server of ``serve`` and its life. The server is textual-serve's,
with a guard in front of it; every browser tab gets a process of its own,
``delegate-tui attach RUN`` driven through Textual's web driver, so a tab is
one more attached view of the run, like a terminal: it sees everything and
may command, and closing it only detaches (the run goes on).

Who may open the page: the server binds loopback by default (from another
machine, forward the port over SSH), and everything it serves needs the
random token printed at start (``/?token=...``); a wrong or missing token is
answered 403. The page loaded with the token sets a cookie holding it
(HttpOnly, SameSite=Strict, named after the token so that two pages on one
host do not collide), which the page's own scripts and websocket carry: the
websocket URL is built by textual-serve's script, with no room for a token.
Cookies do not tell ports apart, so the websocket must also come from the
page's own origin (another local site cannot open it with the cookie). The
page asks nothing of the internet: a Content-Security-Policy keeps every load
on this server (textual-serve's page would fetch its font from Google; the
terminal falls back to a local monospace font), and the token never leaves
in a Referer header.

The server follows the run: it holds a connection to the run service that
asks only for its status (not a view: no events, not counted by ``runs``)
and waits for the service to close it. Once the run has ended, or its
service died, a new tab is told so (410), and the server exits when the last
open tab closes.
Ctrl+C (or SIGTERM) stops the page, never the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import os
import secrets
import shlex
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
from aiohttp import web
from textual_serve.server import Server

from delegate_tui.core.replay import final_state
from delegate_tui.core.runlog import LOG_NAME
from delegate_tui.core.service import message, reachable, service_status, socket_path
from delegate_tui.launch import EXIT_OK, Refused

#: Random bytes in the page's token (URL-safe base64 of them: 32 characters).
TOKEN_BYTES = 24
#: Seconds the server waits for tabs' handlers when it stops (they are cancelled first).
SHUTDOWN_GRACE_S = 5.0

#: Headers on every answer that is not a websocket: nothing is loaded from elsewhere,
#: nothing frames the page, no Referer carries the token away.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self' 'unsafe-inline'; "
        "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; "
        "connect-src 'self'; worker-src 'self' blob:; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def attach_command(run_dir: Path, theme: str | None) -> str:
    """The shell command each tab runs: ``delegate-tui attach RUN`` on this run."""
    argv = [sys.executable, "-m", "delegate_tui", "attach", str(run_dir.resolve())]
    if theme:
        argv += ["--theme", theme]
    return shlex.join(argv)


def page_url(host: str, port: int, token: str) -> str:
    """The URL to open (a wildcard address is shown as this machine's name)."""
    shown = socket.gethostname() if host in ("", "0.0.0.0", "::") else host
    if ":" in shown:
        shown = f"[{shown}]"  # an IPv6 address
    return f"http://{shown}:{port}/?token={token}"


def is_loopback(host: str) -> bool:
    """Does ``host`` (an address or a name) listen on this machine only?"""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_live(run_dir: Path) -> None:
    """Refused unless a run service answers for ``run_dir`` (the check ``attach`` makes)."""
    if service_status(run_dir) is not None:
        return
    state, _ = final_state(run_dir / LOG_NAME)
    if state.finished:
        raise Refused(
            f"run {run_dir.name} has ended ({state.status}); nothing to serve "
            f"(`delegate-tui replay {run_dir.name}` plays it back)"
        )
    raise Refused(
        f"no run service is running for {run_dir}; the run is not live "
        f"(`delegate-tui resume {run_dir.name}` continues it)"
    )


class RunPage(Server):
    """textual-serve's server for one run, behind the token and origin checks."""

    def __init__(
        self, run_dir: Path, *, token: str, host: str, port: int, theme: str | None
    ) -> None:
        super().__init__(
            attach_command(run_dir, theme),
            host=host,
            port=port,
            title=f"delegate-tui · run {run_dir.name}",
        )
        self.run_dir = run_dir
        self.token = token
        self.cookie = "delegate-tui-" + hashlib.sha256(token.encode()).hexdigest()[:12]
        self.ended = ""
        """Why the run is no longer live (empty while it is)."""
        self.tabs: set[asyncio.Task[Any]] = set()
        self._stop = asyncio.Event()

    # ------------------------------------------------------------ the guard

    def _token_of(self, request: web.Request) -> tuple[str, bool]:
        """The token the request carries, and whether it came in the URL."""
        if "token" in request.query:
            return request.query["token"], True
        return request.cookies.get(self.cookie, ""), False

    def _same_origin(self, request: web.Request) -> bool:
        origin = request.headers.get("Origin")
        if origin is None:
            return True  # not a browser: the token alone decides
        parts = urlsplit(origin)
        return parts.scheme == request.scheme and parts.netloc == request.host

    @web.middleware
    async def guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """403 without the token (or from another origin); 410 for a new tab after the run."""
        token, in_url = self._token_of(request)
        if not hmac.compare_digest(token.encode(), self.token.encode()):
            raise web.HTTPForbidden(
                text="403 Forbidden: open the URL with the token that `delegate-tui serve` printed\n",
                headers=SECURITY_HEADERS,
            )
        if not self._same_origin(request):
            raise web.HTTPForbidden(text="403 Forbidden: another site's page\n")
        if self.ended and request.path in ("/", "/ws"):
            raise web.HTTPGone(text=f"{self.ended}\n", headers=SECURITY_HEADERS)
        response = await handler(request)
        if not response.prepared:  # a websocket or a download has answered already
            response.headers.update(SECURITY_HEADERS)
            if in_url:
                response.set_cookie(self.cookie, self.token, httponly=True, samesite="Strict")
        return response

    async def _make_app(self) -> web.Application:
        app = await super()._make_app()
        app.middlewares.append(self.guard)
        return app

    # ------------------------------------------------------------ textual-serve's handlers

    async def handle_index(self, request: web.Request) -> web.StreamResponse:
        """The page, its URLs built from the address the browser used (an SSH tunnel's
        local port, a host name), so its scripts and websocket reach this server."""
        self.public_url = f"{request.scheme}://{request.host}"
        return await super().handle_index(request)

    async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
        """One tab: an ``attach`` process for as long as the websocket lives."""
        task = asyncio.current_task()
        assert task is not None
        self.tabs.add(task)
        try:
            return await super().handle_websocket(request)
        finally:
            self.tabs.discard(task)
            if self.ended and not self.tabs:
                self._stop.set()

    async def on_startup(self, app: web.Application) -> None:
        """(textual-serve prints its banner here; ``serve`` prints its own lines.)"""

    # ------------------------------------------------------------ its life

    async def _follow(self) -> None:
        """Wait for the run service to close its connection: the run ended, or it died."""
        with contextlib.suppress(OSError):
            with reachable(socket_path(self.run_dir)) as address:
                reader, writer = await asyncio.open_unix_connection(address)
            writer.write(message({"status": 1}))
            while await reader.read(1 << 12):
                pass
            writer.close()
        state, _ = final_state(self.run_dir / LOG_NAME)
        run = self.run_dir.name
        if state.finished:
            self.ended = (
                f"run {run} has ended ({state.status}); `delegate-tui replay {run}` plays it back"
            )
        else:
            self.ended = (
                f"the service of run {run} is gone (killed or crashed); "
                f"`delegate-tui resume {run}` continues the run"
            )
        click.echo(
            self.ended
            + (
                f"; the page stops when its last tab closes ({len(self.tabs)} open)"
                if self.tabs
                else ""
            )
        )
        if not self.tabs:
            self._stop.set()

    async def run_until_stopped(self, url: Callable[[int], str]) -> None:
        """Listen, print where (``url`` of the port bound), serve until stopped."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._stop.set)
        runner = web.AppRunner(
            await self._make_app(), access_log=None, shutdown_timeout=SHUTDOWN_GRACE_S
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
            port = self.port or runner.addresses[0][1]  # the port the OS chose for --port 0
            click.echo(f"serving run {self.run_dir.name} at {url(port)}")
            click.echo("  every tab is an attached view; anyone with this URL can command the run")
            click.echo("  Ctrl+C stops the page (the run goes on)")
            follower = asyncio.create_task(self._follow())
            await self._stop.wait()
            follower.cancel()
            for tab in list(self.tabs):
                tab.cancel()  # each closes its websocket and ends its attach process
            await asyncio.gather(*self.tabs, return_exceptions=True)
        finally:
            await runner.cleanup()


def serve_web(run_dir: Path, *, host: str, port: int, theme: str | None) -> int:
    """Serve the live run in ``run_dir`` as a web page until it ends; the exit code."""
    check_live(run_dir)
    if not is_loopback(host):
        click.echo(
            f"delegate-tui: listening on {host}: anyone who can reach it and has the URL can "
            "command the run, and plain HTTP carries the token unencrypted; prefer the default "
            "(127.0.0.1) and an SSH tunnel",
            err=True,
        )
    token = secrets.token_urlsafe(TOKEN_BYTES)

    async def serve() -> str:
        page = RunPage(run_dir, token=token, host=host, port=port, theme=theme)
        await page.run_until_stopped(lambda bound: page_url(host, bound, token))
        return page.ended

    try:
        ended = asyncio.run(serve())
    except OSError as exc:
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        raise Refused(f"cannot listen on {host}:{port}: {why}") from exc
    if ended:
        click.echo("web page stopped")
    else:
        click.echo(f"web page stopped; run {run_dir.name} goes on")
        click.echo(f"  watch it: delegate-tui attach {run_dir.name}")
    return EXIT_OK
