"""The git packs a run's repository travels in to Ray nodes: the base once, then, for
each commit an attempt starts from, what it adds to those before.

Owns the Ray executor's packs (:mod:`ray_executor`). The run's base commit is one
pack (:func:`~delegate_tui.core.ray_clones.make_pack`) put in Ray's object store
once per run and fetched once per node. Each later commit an attempt starts from
(the integration tip after a merge, a retry's kept work) gets one pack, made once
as soon as an attempt asks for it (while Ray places that attempt): what it adds to
the base and every start commit before it, without deltas, small (one merge's
objects, say), which a host indexes itself. An attempt brings its node's host the
packs that no attempt there was sent yet, up to its own start commit's, joined
into one; in the call when small, else through the object store, in order, each
taken in once, after the ones before it. The engine does not wait for those calls,
so an attempt names the packs an earlier one brings, and the host waits for them.
Ray is imported only inside the functions that need it.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from delegate_tui.core.ray_clones import join_packs, make_pack
from delegate_tui.core.ray_placement import off_loop

#: A start commit's pack at most this big travels in the call that needs it, not
#: through the object store (under Ray's inline size for call arguments, 100 KiB).
INLINE_PACK = 64 * 1024


class RunPacks:
    """The packs of one run's repository, for each node's host."""

    def __init__(self, repo: Path, timings: dict[str, list[float]]) -> None:
        self.repo = repo
        self.timings = timings  # seconds per phase (bench/ray_overhead.py reads them)
        self._base: tuple[asyncio.Future[Any], str] | None = None  # the base pack's ref, commit
        #: Start commits in the order their packs were made (the base first): each pack
        #: holds what its commit adds to all those before it.
        self._order: list[str] = []
        self._packs: dict[str, asyncio.Future[Any]] = {}  # start commit -> its pack
        #: Node id -> the start commits whose packs its host said it took in.
        self._taken: dict[str, set[str]] = {}

    def _base_job(self, start: str) -> tuple[asyncio.Future[Any], str]:
        """The run's base pack (its object ref to come) and commit: the first start's."""
        if self._base is None:
            self._base = (
                asyncio.ensure_future(self._put(start, [], "base pack (once a run)")),
                start,
            )
            self._order = [start]
        return self._base

    async def base(self, start: str) -> tuple[Any, str]:
        """The base pack's object ref, and the base commit."""
        job, base_commit = self._base_job(start)
        try:
            return await asyncio.shield(job), base_commit
        except Exception:
            self._reset()
            raise

    def start(self, start: str) -> None:
        """Begin making ``start``'s pack, unless it is made or the base (an attempt that
        starts there asks before Ray places it)."""
        self._base_job(start)
        if start not in self._packs and start != self._order[0]:
            exclude = list(self._order)
            self._packs[start] = asyncio.ensure_future(
                self._put(start, exclude, "start pack (once per start commit)")
            )
            self._order.append(start)

    async def for_node(self, node_id: str, start: str) -> list[tuple[list[str], Any]]:
        """The packs node ``node_id``'s host needs for ``start``, in order: for each, the
        start commits it brings and the pack, or ``None`` for those an earlier attempt
        there was sent (its call may not have reached the host yet: the host waits for
        it)."""
        self.start(start)
        if start == self._order[0]:
            return []
        taken = self._taken.setdefault(node_id, set())
        needed = self._order[1 : self._order.index(start) + 1]
        brought: list[tuple[list[str], Any]] = [([c], None) for c in needed if c in taken]
        packs = []
        for commit in (c for c in needed if c not in taken):
            try:
                packs.append((commit, await asyncio.shield(self._packs[commit])))
            except Exception:
                self._reset()
                raise
        small = [pack for _, pack in packs if isinstance(pack, bytes)]
        if len(small) == len(packs) > 1:  # one pack for the host to take in
            return [*brought, ([c for c, _ in packs], join_packs(small))]
        return [*brought, *(([c], pack) for c, pack in packs)]

    def taken(self, node_id: str, start: str) -> None:
        """Node ``node_id``'s host was sent the packs up to ``start``'s (in a call whose
        reply is not waited for: a failure there makes the engine :meth:`forget` them)."""
        if start in self._order:
            self._taken.setdefault(node_id, set()).update(
                self._order[1 : self._order.index(start) + 1]
            )

    async def _put(self, commit: str, exclude: list[str], phase: str) -> Any:
        """A pack of ``commit`` (without what ``exclude`` has): in the object store, or
        its bytes when small enough to travel in the call that needs it."""
        import ray

        began = time.monotonic()
        data = await off_loop(make_pack, self.repo, commit, exclude)
        packed = data if exclude and len(data) <= INLINE_PACK else ray.put(data)
        self.timings.setdefault(phase, []).append(time.monotonic() - began)
        return packed

    def _reset(self) -> None:
        """A pack could not be made: the next attempts start the packs afresh from a new
        base pack (a host takes in again only what it lacks)."""
        self._base, self._order, self._packs, self._taken = None, [], {}, {}

    def forget(self, node_id: str) -> None:
        """Node ``node_id``'s host may have lost what it was sent (a new host, a failed
        call): its next attempt brings it every pack since the base."""
        self._taken.pop(node_id, None)
