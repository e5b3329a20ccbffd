"""The git packs a run's repository travels in to Ray nodes: the base once, then what
each node lacks of each commit an attempt starts from.

Owns the Ray executor's packs (:mod:`ray_executor`). The run's base commit is one
pack (:func:`~delegate_tui.core.ray_clones.make_pack`) put in Ray's object store
once per run and fetched once per node. A commit an attempt starts from that is not
the base (the integration tip after a merge, a retry's kept work) is packed for the
node Ray placed the attempt on, from what that node's host was sent before: a small
pack without deltas, sent with the attempt (in the call when it is small, else
through the object store), which the host indexes itself. Packs sent to a
node that its host has not yet said it took in go again with each attempt there, in
order, so a host takes each in after the ones it builds on, whichever attempt comes
first. Ray is imported only inside the functions that need it.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from delegate_tui.core.ray_clones import make_pack

#: A start commit's pack at most this big travels in the call that needs it, not
#: through the object store (under Ray's inline size for call arguments, 100 KiB).
INLINE_PACK = 64 * 1024


class _NodePacks:
    """The start commits whose packs were made for one node's host this run."""

    def __init__(self, base: str) -> None:
        #: In the order made, the base first: each pack holds only what these before it
        #: do not (the host takes them in in the order it is sent them).
        self.order = [base]
        self.packs: dict[str, asyncio.Future[Any]] = {}  # sent, not yet said taken in
        self.taken: set[str] = set()


class RunPacks:
    """The packs of one run's repository, for each node's host."""

    def __init__(self, repo: Path, timings: dict[str, list[float]]) -> None:
        self.repo = repo
        self.timings = timings  # seconds per phase (bench/ray_overhead.py reads them)
        self._base: tuple[asyncio.Future[Any], str] | None = None  # the base pack's ref, commit
        #: Node id -> the start commits whose packs were made for its host this run.
        self._nodes: dict[str, _NodePacks] = {}

    def _base_job(self, start: str) -> tuple[asyncio.Future[Any], str]:
        """The run's base pack (its object ref to come) and commit: the first start's."""
        if self._base is None:
            self._base = (
                asyncio.ensure_future(self._put(start, [], "base pack (once a run)")),
                start,
            )
        return self._base

    async def base(self, start: str) -> tuple[Any, str]:
        """The base pack's object ref, and the base commit."""
        job, base_commit = self._base_job(start)
        try:
            return await asyncio.shield(job), base_commit
        except Exception:
            self._base = None  # the next attempt tries again
            raise

    async def for_node(self, node_id: str, start: str, base_commit: str) -> list[tuple[str, Any]]:
        """What node ``node_id`` may lack of ``start`` (nothing at the base): the packs,
        in order, of the start commits sent there this run that its host has not yet
        said it took in, up to ``start``'s own (from what the host has before it)."""
        if start == base_commit:
            return []
        node = self._nodes.setdefault(node_id, _NodePacks(base_commit))
        if start not in node.packs and start not in node.taken:
            node.packs[start] = asyncio.ensure_future(
                self._put(start, list(node.order), "start pack (once per start commit and node)")
            )
            node.order.append(start)
        due = [c for c in node.order if c in node.packs]
        due = due[: due.index(start) + 1] if start in due else []
        try:
            return [(c, await asyncio.shield(node.packs[c])) for c in due]
        except Exception:
            self._nodes.pop(node_id, None)  # the next attempt there starts from the base
            raise

    def taken(self, node_id: str, packs: list[tuple[str, Any]]) -> None:
        """Node ``node_id``'s host took ``packs`` in: later attempts there need them not."""
        node = self._nodes.get(node_id)
        if node is not None:
            for commit, _ in packs:
                node.packs.pop(commit, None)
                node.taken.add(commit)

    async def _put(self, commit: str, exclude: list[str], phase: str) -> Any:
        """A pack of ``commit`` (without what ``exclude`` has): in the object store, or
        its bytes when small enough to travel in the call that needs it."""
        import ray

        began = time.monotonic()
        data = await asyncio.to_thread(make_pack, self.repo, commit, exclude)
        packed = data if exclude and len(data) <= INLINE_PACK else ray.put(data)
        self.timings.setdefault(phase, []).append(time.monotonic() - began)
        return packed

    def forget(self, node_id: str) -> None:
        """Node ``node_id``'s host may have lost what it was sent (a new host, a failed
        call): its next pack holds all since the base."""
        self._nodes.pop(node_id, None)
