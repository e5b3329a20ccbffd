"""delegate_tui.core must never load textual or rich (ARCHITECTURE.md's one rule)."""

from __future__ import annotations

import subprocess
import sys


def test_core_imports_neither_textual_nor_rich() -> None:
    code = (
        "import pkgutil, importlib, sys, delegate_tui.core as core\n"
        "for m in pkgutil.iter_modules(core.__path__):\n"
        "    importlib.import_module('delegate_tui.core.' + m.name)\n"
        "import delegate_tui.demo.agent\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in ('textual', 'rich'))\n"
        "print(','.join(bad))\n"
        "print(len([n for n in sys.modules if n.startswith('delegate_tui.core.')]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    loaded_ui, core_count = out.splitlines()
    assert loaded_ui == ""
    assert int(core_count) >= 14  # every core module really was imported
