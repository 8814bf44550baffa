"""Where an interactions file is and how it is laid out: what the interactions reader needs to read it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    """A file's separator (None: guessed), its columns' names when it has no header (None: the header names
    them), and which column is what (rating None: implicit data, every row an interaction)."""

    sep: str | None = None
    columns: tuple[str, ...] | None = None
    user: str = "user"
    item: str = "item"
    rating: str | None = "rating"
    time: str | None = None
    weight: str | None = None

    def roles(self) -> dict[str, str]:
        """{role: column} of the columns read (user, item, and those named of rating, time, weight)."""
        named = dict(user=self.user, item=self.item, rating=self.rating, time=self.time, weight=self.weight)
        return {role: col for role, col in named.items() if col}


@dataclass(frozen=True)
class Files:
    """An interactions file (or a canonical split's base and test files), its layout and rating scale (None: the
    training ratings' own), and where item names come from: a file read with `items` (id and name columns) or
    a reader of a known format (`titles`: {raw id: name})."""

    path: Path
    layout: Layout
    rating_range: tuple[float, float] | None = None
    canonical: tuple[Path, Path] | None = None
    items_path: Path | None = None
    items: Layout | None = None
    titles: Callable[[], dict] | None = None
    side: dict | None = None  # MovieLens: its user and film files, for side features
