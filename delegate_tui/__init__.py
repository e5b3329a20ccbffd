"""delegate-tui: run a plan of AI coding agents in parallel, safely and visibly."""

__version__ = "0.1.0"
