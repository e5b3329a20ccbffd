"""Model prices: estimating an agent's cost from its tokens when its CLI gives none.

Owns the price table: ``delegate_tui/data/prices.toml`` shipped with the
package, overridden entry by entry by ``$XDG_CONFIG_HOME/delegate-tui/prices.toml``
(``~/.config/...``). A model takes the longest key it is, or that it continues
with a version or a date only (``claude-sonnet-4-5-20250929`` takes
``claude-sonnet-4``, ``gpt-5.1`` takes ``gpt-5``); another word makes another
model (``o3-mini`` is not ``o3``, ``gpt-4.1-mini`` not ``gpt-4.1``). Else it takes
the longest family pattern (``claude-opus-*``) that matches it, else it has no
price (its cost is unknown, and said so). A cost from this table is an estimate
(``cost_source: estimated``); a CLI's own figure (claude's) always wins over it.
"""

from __future__ import annotations

import fnmatch
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from delegate_tui.core.events import TokenUsage

_SHIPPED = Path(__file__).resolve().parent.parent / "data" / "prices.toml"
#: What may follow a key in a name of the same model: versions and dates
#: (``-20250929``, ``.1``, ``@20250514``), ``-latest``, ``-preview``, ``-exp``.
_SAME_MODEL_RE = re.compile(r"(?:[-.@:_](?:\d+|latest|preview|exp|experimental))*")


class PriceError(ValueError):
    """A price file that cannot be read; the message names the file and the entry."""


@dataclass(frozen=True, slots=True)
class Price:
    """US dollars per million tokens."""

    input: float
    output: float
    cached_input: float | None = None
    cache_write: float | None = None

    def cost(self, u: TokenUsage) -> float:
        """What ``u`` costs at this price."""
        fresh = max(0, u.input - u.cache_write)
        cached = self.input if self.cached_input is None else self.cached_input
        write = self.input if self.cache_write is None else self.cache_write
        return (
            fresh * self.input + u.cache_write * write + u.cached * cached + u.output * self.output
        ) / 1_000_000


def user_prices_path() -> Path:
    """Where a user's own prices live."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "delegate-tui" / "prices.toml"


def read_prices(path: Path) -> dict[str, Price]:
    """The ``[models."NAME"]`` entries of one price file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise PriceError(f"{path}: {exc}") from None
    models = data.get("models", {})
    if not isinstance(models, dict):
        raise PriceError(f"{path}: `models` must be a table of models")
    table: dict[str, Price] = {}
    for name, entry in models.items():
        if not isinstance(entry, dict):
            raise PriceError(f"{path}: models.{name}: expected a table")
        figures: dict[str, float] = {}
        for key, value in entry.items():
            if key not in ("input", "output", "cached_input", "cache_write"):
                raise PriceError(f"{path}: models.{name}.{key}: unknown field")
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise PriceError(f"{path}: models.{name}.{key}: expected a price >= 0")
            figures[key] = float(value)
        for key in ("input", "output"):
            if key not in figures:
                raise PriceError(f"{path}: models.{name}.{key}: missing")
        table[name] = Price(**figures)
    return table


class PriceTable:
    """Prices by model-name prefix."""

    def __init__(self, prices: Mapping[str, Price]) -> None:
        self._prices = dict(prices)
        # Names (prefixes) first, longest first; then families (globs), longest first.
        self._keys = sorted(self._prices, key=lambda k: (any(c in k for c in "*?["), -len(k)))

    @classmethod
    def load(cls, user_file: Path | None = None) -> PriceTable:
        """The shipped table with the user's file (if any) on top."""
        prices = read_prices(_SHIPPED)
        path = user_file if user_file is not None else user_prices_path()
        if path.is_file():
            prices.update(read_prices(path))
        return cls(prices)

    def price(self, model: str) -> Price | None:
        """The price of ``model``: the longest name it is (give or take a version or a
        date after it), else the longest family (a key with ``*``, e.g.
        ``claude-opus-*``) it matches; ``None`` when neither."""
        name = model.lower()
        for key in self._keys:
            pattern = key.lower()
            if any(c in pattern for c in "*?["):
                if fnmatch.fnmatchcase(name, pattern):
                    return self._prices[key]
            elif name.startswith(pattern) and _SAME_MODEL_RE.fullmatch(name[len(pattern) :]):
                return self._prices[key]
        return None

    def estimate(self, usage: Iterable[TokenUsage]) -> float | None:
        """What ``usage`` costs; ``None`` when a model that used tokens has no price."""
        total = 0.0
        for u in usage:
            if not (u.input or u.cached or u.output):
                continue
            price = self.price(u.model)
            if price is None:
                return None
            total += price.cost(u)
        return total
