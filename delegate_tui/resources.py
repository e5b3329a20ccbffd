"""Where the files shipped with delegate-tui live (sample plans, themes).

In a source checkout they are the repository's own ``sample_plans/`` and
``themes/``; in an installed wheel they are packaged under ``_data/``.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """The folder ``sample_plans`` or ``themes``, wherever this install keeps it."""
    for candidate in (_PACKAGE.parent / name, _PACKAGE / "_data" / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"delegate-tui is missing its {name}/ folder")
