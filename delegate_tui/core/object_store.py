"""A sandboxed agent's own git object store, and taking what it wrote into the repository.

Owns where a sandboxed agent's git writes objects and how they come into the
repository. The repository's ``objects`` folder is read-only to such an agent, so
that it can delete none of them (an operator's recent commit is loose objects until
git packs it). Its git writes to a store of its own instead, in its worktree's own
git folder (``GIT_OBJECT_DIRECTORY``), and reads the repository's objects through
``GIT_ALTERNATE_OBJECT_DIRECTORIES`` (:func:`store_env`).

When the agent ends, :func:`take_objects` brings its objects in, as git takes
objects from a source it does not trust (a fetch): every loose object is named by
its own content (a file named for other content is left out), and each pack, made
here of its loose objects or written by the agent, goes through ``git index-pack
--strict`` into a folder beside the store first; only a pack git accepted is moved
into the repository. The engine's commit of the work never needs these objects (it
hashes the worktree's files itself: :func:`workspace.snapshot_worktree`); they keep
the agent's own commits readable (their subjects in the engine's commit, a kept
worktree's log).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

from delegate_tui.core import workspace

#: In a linked worktree's own git folder: the object store a sandboxed agent writes.
OWN_OBJECTS = "delegate-objects"

_HEX = re.compile(r"[0-9a-f]+")
#: An object id's length in hex: the hash it is named with.
_ALGORITHMS = {40: "sha1", 64: "sha256"}


def store_env(store: Path, common_dir: Path) -> dict[str, str]:
    """git's environment for an agent whose new objects go to ``store``: it reads the
    repository's objects (``common_dir/objects``) through it, and adds none to them."""
    return {
        "GIT_OBJECT_DIRECTORY": str(store),
        "GIT_ALTERNATE_OBJECT_DIRECTORIES": str(common_dir / "objects"),
    }


def take_objects(workdir: Path, store: Path) -> str | None:
    """Take the objects an agent wrote into its own ``store`` into the repository of
    ``workdir``, then remove the store; ``None`` when all were taken (or there were
    none), else what was left out and why."""
    if not store.is_dir():
        return None
    left_out: list[str] = []
    try:
        packs = sorted((store / "pack").glob("*.pack")) if (store / "pack").is_dir() else []
        loose, misnamed = _loose_objects(store)
        if not packs and not loose and not misnamed:
            return None  # (the store goes all the same)
        common = Path(
            workspace.git(
                ["rev-parse", "--path-format=absolute", "--git-common-dir"], workdir
            ).stdout.strip()
        )
        with tempfile.TemporaryDirectory(prefix="delegate-take-", dir=store.parent) as tmp:
            checking = Path(tmp)
            for number, pack in enumerate(packs):  # the agent's own (a `git repack`)
                os.replace(pack, checking / f"agent-{number}.pack")
            if misnamed:
                left_out.append(f"{misnamed} object(s) not named by their content")
            if loose:
                why = _pack_loose(workdir, store, common, loose, checking / "loose.pack")
                if why:
                    left_out.append(why)
            for pack in sorted(checking.glob("*.pack")):
                why = _index_and_move(workdir, pack, common / "objects" / "pack")
                if why:
                    left_out.append(why)
    except (OSError, workspace.GitError) as exc:
        left_out.append(str(exc))
    finally:
        shutil.rmtree(store, ignore_errors=True)
    return "; ".join(left_out) or None


def _loose_objects(store: Path) -> tuple[list[str], int]:
    """The ids of ``store``'s loose objects that are named by their content, and how
    many are not (or cannot be read)."""
    named: list[str] = []
    misnamed = 0
    for folder in store.iterdir():
        if len(folder.name) != 2 or not _HEX.fullmatch(folder.name) or not folder.is_dir():
            continue
        for path in folder.iterdir():
            oid = folder.name + path.name
            if len(oid) not in _ALGORITHMS or not _HEX.fullmatch(path.name):
                continue
            if _content_id(path, _ALGORITHMS[len(oid)]) == oid:
                named.append(oid)
            else:
                misnamed += 1
    return named, misnamed


def _content_id(path: Path, algorithm: str) -> str | None:
    """The id of the loose object in ``path`` computed from its content; ``None`` when it
    is no loose object at all."""
    digest = hashlib.new(algorithm)
    inflate = zlib.decompressobj()
    try:
        for chunk in _chunks(path):
            digest.update(inflate.decompress(chunk))
        digest.update(inflate.flush())
    except (OSError, zlib.error):
        return None
    return digest.hexdigest() if inflate.eof else None


def _chunks(path: Path, size: int = 1 << 16) -> Iterator[bytes]:
    with path.open("rb") as data:
        while chunk := data.read(size):
            yield chunk


def _pack_loose(workdir: Path, store: Path, common: Path, oids: list[str], out: Path) -> str | None:
    """Pack the loose objects ``oids`` of ``store`` into ``out``; why not, if git could not."""
    argv, env = workspace.git_command(["pack-objects", "--stdout", "-q"], store_env(store, common))
    with out.open("wb") as pack:
        proc = subprocess.run(
            argv,
            cwd=workdir,
            env=env,
            input="".join(f"{oid}\n" for oid in oids).encode(),
            stdout=pack,
            stderr=subprocess.PIPE,
            check=False,
        )
    return _refusal("the agent's objects could not be packed", proc) if proc.returncode else None


def _index_and_move(workdir: Path, pack: Path, into: Path) -> str | None:
    """Check ``pack`` with ``git index-pack --strict`` and move it, with its index, into
    the repository's ``into`` (``objects/pack``); why not, if git refused it."""
    index = pack.with_suffix(".idx")
    argv, env = workspace.git_command(["index-pack", "--strict", "-o", str(index), str(pack)])
    proc = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, check=False)
    if proc.returncode:
        return _refusal(f"git refused {pack.name}", proc)
    name = proc.stdout.decode(errors="replace").split()[-1]
    if not _HEX.fullmatch(name):
        return f"git gave {pack.name} no name"
    # As git does: the pack first, its index last (an index makes a pack visible).
    os.replace(pack, into / f"pack-{name}.pack")
    os.replace(index, into / f"pack-{name}.idx")
    return None


def _refusal(what: str, proc: subprocess.CompletedProcess[bytes]) -> str:
    lines = (proc.stderr or b"").decode(errors="replace").strip().splitlines()
    return f"{what}: {lines[-1]}" if lines else what
