"""A node's clones (core/ray_clones.py) with real git and no Ray: a start commit's pack
indexed without git, and a clone's git folder made new for its next attempt."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from delegate_tui.core.ray_clones import (
    CLONE_CONFIG,
    RunClones,
    check_out,
    fresh_git_dir,
    join_packs,
    make_pack,
    sweep_gone_runs,
    write_pack,
)


def git(cwd: Path, *args: str, data: bytes | None = None) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, input=data, check=True, capture_output=True
    ).stdout.decode()


def source(tmp_path: Path) -> tuple[Path, str, str]:
    """A repository with a base commit and a later one that adds, edits, removes and
    links files (one executable, one binary): the repository, the base, the later."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "T")
    git(repo, "config", "user.email", "t@example.invalid")
    (repo / "keep.txt").write_text("keep\n" * 100)
    (repo / "gone.txt").write_text("gone\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    base = git(repo, "rev-parse", "HEAD").strip()
    (repo / "keep.txt").write_text("keep\n" * 99 + "changed\n")
    (repo / "gone.txt").unlink()
    (repo / "src").mkdir()
    (repo / "src" / "tool.sh").write_text("echo tool\n")
    (repo / "src" / "tool.sh").chmod(0o755)
    (repo / "src" / "blob.bin").write_bytes(bytes(range(256)) * 40)
    os.symlink("tool.sh", repo / "src" / "link")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "later")
    return repo, base, git(repo, "rev-parse", "HEAD").strip()


def checked_out(tmp_path: Path, bare: Path, commit: str) -> Path:
    """A work folder with a fresh git folder on ``bare``'s objects, ``commit`` checked out."""
    work = tmp_path / "work"
    work.mkdir()
    fresh_git_dir(work, bare / "objects")
    check_out(work, commit)
    return work


def test_a_start_commits_pack_is_indexed_without_git_and_checks_out_exactly(
    tmp_path: Path,
) -> None:
    repo, base, later = source(tmp_path)
    bare = tmp_path / "base.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(bare, "index-pack", "--stdin", data=make_pack(repo, base))
    packs = bare / "objects" / "pack"
    before = set(packs.glob("*.idx"))
    assert write_pack(make_pack(repo, later, [base]), bare / "objects")
    (made,) = set(packs.glob("*.idx")) - before
    git(bare, "verify-pack", str(made))  # git's own check of the index made here
    git(bare, "fsck", "--strict", later)
    work = checked_out(tmp_path, bare, later)
    assert git(work, "rev-parse", "HEAD^{tree}") == git(repo, "rev-parse", "HEAD^{tree}")
    assert git(work, "status", "--porcelain") == ""
    assert os.access(work / "src" / "tool.sh", os.X_OK)
    assert os.readlink(work / "src" / "link") == "tool.sh"
    assert not (work / "gone.txt").exists()
    # The same pack again (a host asked twice): nothing breaks.
    assert write_pack(make_pack(repo, later, [base]), bare / "objects")
    git(bare, "fsck", "--strict", later)


def test_packs_of_consecutive_start_commits_joined_into_one_bring_the_last(
    tmp_path: Path,
) -> None:
    repo, base, later = source(tmp_path)
    (repo / "third.txt").write_text("third\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "third")
    third = git(repo, "rev-parse", "HEAD").strip()
    bare = tmp_path / "base.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(bare, "index-pack", "--stdin", data=make_pack(repo, base))
    # Each start commit's pack holds what it adds to those before it.
    joined = join_packs([make_pack(repo, later, [base]), make_pack(repo, third, [base, later])])
    assert write_pack(joined, bare / "objects")
    git(bare, "fsck", "--strict", third)
    work = checked_out(tmp_path, bare, third)
    assert git(work, "rev-parse", "HEAD^{tree}") == git(repo, "rev-parse", "HEAD^{tree}")


def test_a_pack_with_deltas_is_left_to_git(tmp_path: Path) -> None:
    repo, _, later = source(tmp_path)
    git(repo, "gc", "-q", "--aggressive")  # keep.txt's two versions become a delta
    objects = tmp_path / "objects"
    objects.mkdir()
    assert not write_pack(make_pack(repo, later), objects)
    assert list(objects.iterdir()) == [], "nothing written"


def test_a_clone_taken_again_gets_a_new_git_folder_with_its_index(tmp_path: Path) -> None:
    repo, base, later = source(tmp_path)
    bare = tmp_path / "base.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(bare, "index-pack", "--stdin", data=make_pack(repo, later))
    work = checked_out(tmp_path, bare, base)
    # What an agent leaves: a hook, config, refs, an object of its own.
    (work / ".git" / "hooks" / "post-checkout").write_text("#!/bin/sh\ntouch ../ran\n")
    (work / ".git" / "hooks" / "post-checkout").chmod(0o755)
    git(work, "config", "core.hooksPath", ".git/hooks")
    git(work, "config", "filter.x.smudge", "touch ../ran; cat")
    (work / ".git" / "info" / "attributes").write_text("* filter=x\n")
    git(work, "tag", "mine")
    git(work, "hash-object", "-w", "--stdin", data=b"planted\n")
    index = (work / ".git" / "index").read_bytes()
    fresh_git_dir(work, bare / "objects")
    git_dir = work / ".git"
    assert (git_dir / "config").read_text() == CLONE_CONFIG
    assert list((git_dir / "hooks").iterdir()) == []
    assert list((git_dir / "info").iterdir()) == []
    assert git(work, "for-each-ref") == ""
    assert sorted(p.name for p in (git_dir / "objects").iterdir()) == ["info", "pack"]
    assert (git_dir / "index").read_bytes() == index, "the index is kept"
    check_out(work, later)  # git's checkout runs hooks and filters here
    assert not (tmp_path / "ran").exists()
    assert git(work, "rev-parse", "HEAD^{tree}") == git(repo, "rev-parse", "HEAD^{tree}")


def test_an_attempt_waits_for_the_pack_another_attempts_call_brings(tmp_path: Path) -> None:
    """The engine does not wait for an attempt's prepare call, so a later attempt at the
    same node may be told that an earlier one brings its start commit's pack, and reach
    the host first: its clone waits for that pack, however the calls arrive."""
    import asyncio

    from delegate_tui.core.ray_clones import RunClones

    repo, base, later = source(tmp_path)
    (repo / "third.txt").write_text("third\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "third")
    third = git(repo, "rev-parse", "HEAD").strip()
    joined = join_packs([make_pack(repo, later, [base]), make_pack(repo, third, [base, later])])

    async def main() -> None:
        run = RunClones(tmp_path / "node", 1.0)
        got = run.fetch(base, make_pack(repo, base), base=True)
        # Attempt B at `later`: its pack comes with attempt A's call, not yet here.
        waits = run.fetch([later], None)
        _, _, b_clone = await run.take(tmp_path / "b", later, [got, waits])
        await asyncio.sleep(0.2)
        assert not b_clone.done(), "checked out before its pack came"
        # A's call: one pack for `later` and `third`.
        brings = run.fetch([later, third], joined)
        _, _, a_clone = await run.take(tmp_path / "a", third, [got, brings])
        await asyncio.gather(a_clone, b_clone)
        assert (tmp_path / "b" / "src" / "tool.sh").read_text() == "echo tool\n"
        assert git(tmp_path / "b", "rev-parse", "HEAD").strip() == later
        assert git(tmp_path / "a", "rev-parse", "HEAD").strip() == third
        assert (tmp_path / "a" / "third.txt").read_text() == "third\n"
        assert not (tmp_path / "b" / "third.txt").exists()
        assert git(tmp_path / "b", "status", "--porcelain") == ""
        await run.close()

    asyncio.run(main())


def _dead_pid() -> int:
    """A process id that was a process's and is no more."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_what_gone_hosts_left_is_swept_and_a_live_hosts_folder_is_kept(tmp_path: Path) -> None:
    """A run whose only host on a node died (a lost node, kill -9) left its clones with
    no host to remove them: the next host to take a run on sweeps them. A host's claim
    (a flock held while it lives) says it is alive even when the pid in its folder's
    name looks dead, as between containers sharing the temporary folder."""
    top = tmp_path / "delegate-ray"
    dead = _dead_pid()
    # An older host's folder (no claim) whose process is gone: swept with its run's folder.
    old = top / "run-1" / f"host-{dead}"
    (old / "t-1" / "work").mkdir(parents=True)
    (old / "t-1" / "work" / "f.txt").write_text("left behind\n")
    # A host that died after claiming its folder: its flock went with it.
    claimed = top / "run-2" / f"host-{os.getpid()}"
    claimed.mkdir(parents=True)
    (claimed / ".host").write_text("")
    # A live host in another process: its folder's name has a dead pid, its claim holds.
    held = top / "run-3" / f"host-{dead}"
    (held / "t-1").mkdir(parents=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time; from pathlib import Path\n"
            "from delegate_tui.core.ray_clones import RunClones\n"
            "run = RunClones(Path(sys.argv[1]), 1.0)\n"
            "print('held', flush=True); time.sleep(60)",
            str(held),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        # This process's own host, taking run-4 on: its own folder is claimed and kept.
        mine = RunClones(top / "run-4" / f"host-{os.getpid()}", 1.0)
        sweep_gone_runs(top)
        assert sorted(p.name for p in top.iterdir()) == ["run-3", "run-4"]
        assert (held / "t-1").is_dir() and mine.root.is_dir()
    finally:
        holder.kill()
        holder.wait()
    # Its holder gone, the claim is free: the next sweep takes that folder too.
    sweep_gone_runs(top)
    assert sorted(p.name for p in top.iterdir()) == ["run-4"]
