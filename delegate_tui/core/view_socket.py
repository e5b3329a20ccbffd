"""A view's connection to its run service: a Unix socket drained by a thread of its own.

Owns :class:`ViewSocket`. A Unix socket holds about 200 KB in flight, and a
view on the asyncio loop reads it only between the loop's other work: a UI
that draws on two busy cores came round a few times a second, read about
2 MB/s of a 15 MB/s flood, and the service (rightly) dropped it behind, which
cost it a reload from the log every few seconds. Here a thread does the
blocking reads (the GIL is let go while it waits), keeps what it read, and
wakes the loop, which takes all of it at once and splits it into lines. The
thread stops reading when :data:`BUFFER_BYTES` wait unread (the loop is
stalled): then the service's own bound applies, as before. Commands go the
other way with a plain ``sendall`` (a few hundred bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading

#: What one read may take.
READ_BYTES = 1 << 20
#: Bytes read and not yet taken by the loop at which the thread stops reading.
BUFFER_BYTES = 64 << 20


class ViewSocket:
    """A connected socket whose incoming lines the loop takes in batches."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(True)
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._room = threading.Condition()
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._ended = False
        self._closed = False
        self._ready = asyncio.Event()
        self._partial = b""
        self._thread = threading.Thread(target=self._pump, name="view-socket", daemon=True)
        self._thread.start()

    @property
    def closed(self) -> bool:
        """Closed by this side (a view that detached)."""
        return self._closed

    def _pump(self) -> None:
        """The thread: read until the service closes, waking the loop for each new batch."""
        try:
            while True:
                data = self._sock.recv(READ_BYTES)
                if not data:
                    break
                with self._room:
                    while self._buffered > BUFFER_BYTES and not self._closed:
                        self._room.wait()
                    if self._closed:
                        break
                    self._chunks.append(data)
                    self._buffered += len(data)
                    first = len(self._chunks) == 1
                if first:
                    self._wake()
        except OSError:
            pass
        finally:
            with self._room:
                self._ended = True
            self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody to wake
            self._loop.call_soon_threadsafe(self._ready.set)

    async def lines(self) -> list[bytes] | None:
        """The complete lines (without their newline) read since the last call, waiting
        for one; None once the service closed the connection."""
        while True:
            with self._room:
                chunks, self._chunks = self._chunks, []
                self._buffered = 0
                ended = self._ended
                self._ready.clear()
                self._room.notify()
            if chunks:
                data = self._partial + b"".join(chunks) if self._partial else b"".join(chunks)
                lines = data.split(b"\n")
                self._partial = lines.pop()
                if lines:
                    return lines
                continue
            if ended:
                return None
            await self._ready.wait()

    def send(self, data: bytes) -> None:
        """Send a message (a command: small, and the service always reads)."""
        self._sock.sendall(data)

    def close(self) -> None:
        """Stop reading and close the connection (the run goes on)."""
        with self._room:
            self._closed = True
            self._room.notify()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
