"""Theme files (``themes/*.yaml``) turned into Textual themes.

Owns validating theme data: colours are checked with ``Color.parse``, a bad
file is reported and skipped (never fatal), and every theme gets the status
colour variables the widgets use, so all themes colour statuses the same way.
Also the command palette's theme picker, which offers these themes only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path

import yaml
from textual.color import Color, ColorParseError
from textual.theme import Theme, ThemeProvider

DEFAULT_THEME = "delegate-dark"
STATUS_VARIABLES = {
    "status-pending": "#808080",
    "status-proposed": "#d0a000",
    "status-running": "#40a0ff",
    "status-succeeded": "#40c040",
    "status-failed": "#ff4040",
    "status-blocked": "#a0a0a0",
    "status-skipped": "#808080",
    "status-attention": "#ff8000",
}
_COLOUR_FIELDS = (
    "primary",
    "secondary",
    "accent",
    "foreground",
    "background",
    "surface",
    "panel",
    "success",
    "warning",
    "error",
    "boost",
)


def parse_theme(data: object, source: str) -> Theme:
    """One theme from parsed YAML; ValueError names the file and field."""
    if not isinstance(data, dict):
        raise ValueError(f"{source}: a theme is a mapping")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{source}: name: required")
    unknown = set(data) - {
        *_COLOUR_FIELDS,
        "name",
        "dark",
        "variables",
        "luminosity_spread",
        "text_alpha",
    }
    if unknown:
        raise ValueError(f"{source}: unknown field(s): {', '.join(sorted(unknown))}")
    colours: dict[str, str] = {}
    for key in _COLOUR_FIELDS:
        if key in data:
            try:
                Color.parse(str(data[key]))
            except ColorParseError:
                raise ValueError(f"{source}: {key}: not a colour: {data[key]!r}") from None
            colours[key] = str(data[key])
    if "primary" not in colours:
        raise ValueError(f"{source}: primary: required")
    variables = data.get("variables") or {}
    if not isinstance(variables, dict):
        raise ValueError(f"{source}: variables: expected a mapping")
    for key, value in variables.items():
        if str(key).startswith("status-"):
            try:
                Color.parse(str(value))
            except ColorParseError:
                raise ValueError(f"{source}: variables.{key}: not a colour: {value!r}") from None
    return Theme(
        name=name,
        dark=bool(data.get("dark", True)),
        luminosity_spread=float(data.get("luminosity_spread", 0.15)),
        text_alpha=float(data.get("text_alpha", 0.95)),
        variables={**STATUS_VARIABLES, **{str(k): str(v) for k, v in variables.items()}},
        **colours,  # type: ignore[arg-type]
    )


#: libyaml's safe loader where PyYAML was built with it: the themes are read before
#: the first frame, and it reads the four shipped ones in 0.7 ms, not 5.4.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_themes(folders: Iterable[Path]) -> tuple[list[Theme], list[str]]:
    """Every valid theme in ``folders`` (later folders override), and the problems."""
    themes: dict[str, Theme] = {}
    problems: list[str] = []
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.y*ml")):
            try:
                data = yaml.load(path.read_text(encoding="utf-8"), Loader=_SAFE_LOADER)
                theme = parse_theme(data, str(path))
            except (OSError, yaml.YAMLError, ValueError) as exc:
                problems.append(str(exc) if isinstance(exc, ValueError) else f"{path}: {exc}")
                continue
            themes[theme.name] = theme
    return list(themes.values()), problems


class AppThemes(ThemeProvider):
    """The command palette's theme list: delegate-tui's themes (shipped and the
    operator's), not Textual's built-in ones, which style none of the status
    colours and left the task rows on another theme's background."""

    @property
    def commands(self) -> list[tuple[str, Callable[[], None]]]:
        names: list[str] = getattr(self.app, "theme_names", [])
        return [(name, partial(setattr, self.app, "theme", name)) for name in names]
