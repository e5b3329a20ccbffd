"""Entry point for ``python -m delegate_tui``."""

from delegate_tui.cli import main

if __name__ == "__main__":
    main()
