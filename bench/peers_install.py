"""The peers of bench/peers.py, from the npm registry into a scratch folder.

Owns which peer versions are measured and installing them. Standard library
only, so that CI can run it before the project is installed:
`python3 bench/peers_install.py [DIR]` (default: the folder bench/peers.py and
its smoke test use).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

PEERS = ("concurrently@9.2.5", "mprocs@0.9.6", "turbo@2.11.11")
DEFAULT_DIR = Path(tempfile.gettempdir()) / "delegate-bench-peers"


def install_peers(folder: Path) -> Path:
    """The peers' bin folder, installed from npm into ``folder`` if not there yet."""
    bin_dir = folder / "node_modules" / ".bin"
    if not all((bin_dir / name).exists() for name in ("concurrently", "mprocs", "turbo")):
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "package.json").exists():
            (folder / "package.json").write_text(
                '{"name": "delegate-bench-peers", "private": true}'
            )
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--silent", *PEERS],
            cwd=folder,
            check=True,
        )
    return bin_dir


if __name__ == "__main__":
    print(install_peers(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DIR))
