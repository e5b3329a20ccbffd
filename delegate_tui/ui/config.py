"""The operator's settings: theme, key bindings, scrollback.

Owns ``$XDG_CONFIG_HOME/delegate-tui/config.yaml`` (``~/.config/...``). A
bad file is reported and the defaults used; the chosen theme is saved back
when the operator changes it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

DEFAULT_SCROLLBACK = 5000


def config_dir() -> Path:
    """The folder for the config file and user themes."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "delegate-tui"


@dataclass(slots=True)
class UserConfig:
    """Settings, with where they came from and what was wrong with them."""

    theme: str | None = None
    keys: dict[str, str] = field(default_factory=dict)
    scrollback: int = DEFAULT_SCROLLBACK
    path: Path | None = None
    problems: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path | None = None) -> UserConfig:
        """Read the config file (missing is fine, bad is reported)."""
        path = path or config_dir() / "config.yaml"
        config = cls(path=path)
        if not path.exists():
            return config
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            config.problems.append(f"{path}: {exc}")
            return config
        if not isinstance(data, dict):
            config.problems.append(f"{path}: expected a mapping")
            return config
        theme = data.get("theme")
        if theme is not None:
            config.theme = str(theme)
        keys = data.get("keys") or {}
        if isinstance(keys, dict):
            config.keys = {str(k): str(v) for k, v in keys.items()}
        else:
            config.problems.append(f"{path}: keys: expected a mapping of action to key")
        scrollback = data.get("scrollback", DEFAULT_SCROLLBACK)
        if isinstance(scrollback, int) and scrollback >= 100:
            config.scrollback = scrollback
        else:
            config.problems.append(f"{path}: scrollback: expected a whole number of at least 100")
        return config

    def save_theme(self, theme: str) -> None:
        """Remember the theme, keeping the rest of the file."""
        self.theme = theme
        if self.path is None:
            return
        data: dict[str, object] = {}
        if self.path.exists():
            try:
                loaded = yaml.safe_load(self.path.read_text(encoding="utf-8"))
                data = loaded if isinstance(loaded, dict) else {}
            except (OSError, yaml.YAMLError):
                return  # never overwrite a file we could not read
        data["theme"] = theme
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        except OSError:
            pass
