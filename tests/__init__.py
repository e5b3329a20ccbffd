"""The test suite (a package, so test modules import shared helpers as ``tests.…``).

Imported before any conftest or test module: it turns bytecode caching back on. The
suite starts Python about 500 times (the CLI, run services, demo agents) and each xdist
worker rewrites every test module's asserts; where PYTHONDONTWRITEBYTECODE is set (as on
CI's machine) every start compiled delegate_tui anew (0.15 s of CPU a CLI start) and
every worker rewrote every test module (5 s). Bytecode goes to the ``__pycache__``
folders beside the sources (ignored by git), for this process and its children.
"""

import os
import sys

sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
