"""Interactions from any file: (user, item[, rating][, time][, weight]) rows -> index tensors for collaborative
filtering. The file is read by data/reader.py (any separator, header or named columns, Parquet); ids of any type
(integers, ASINs, UUIDs) are mapped to contiguous indices, the raw ids kept for the checkpoint; then come the
filters and splits a recommender needs. MovieLens is a preset: movielens.py says where its files are and how they
are laid out.

Rating models (kind "ratings") train on (user, item, rating) triples. Ranking models (kind "interactions")
train on the positive interactions, (user, item, weight), and are scored on each user's held-out positives
ranked among the items they have not seen (emblab.models.metrics).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from torch import Tensor

from emblab.core.errors import ConfigError
from emblab.core.settings import setting
from emblab.data import movielens
from emblab.data.base import DataConfig, EmblabDataModule, TensorBatchDataset, split_digest
from emblab.data.prepare import SPLITS, as_time, count_unseen, filter_rows, split_rows
from emblab.data.reader import Files, Layout, encode_ids, read_file
from emblab.data.rows import UserRows, csr

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- the settings and the DataModule
@dataclass
class InteractionsConfig(DataConfig):
    """data=interactions (any file: data.path) and data=movielens (its preset: data.source=embedded | ml-100k |
    ml-latest-small | ml-25m, under data.root or downloaded).

    Columns: user_col, item_col, rating_col (null: implicit data), time_col, weight_col (a count or confidence, such
    as play counts), named by the file's header or, for a file without one, by data.columns; sep: null guesses
    it. items_path: item names (items_id_col, items_name_col; items_sep, items_columns as for the file).
    rating_range: the scale (default: the training ratings' lowest and highest); a rating outside a declared
    scale follows out_of_range (error | drop, counted). min_rating: ratings at or above it are a ranking model's
    positives and, unless relevant_rating says otherwise, what its evaluation looks for; min_interactions: an
    iterative k-core on users and items. duplicates: last (by time, else file order) | mean | sum | error.
    split: random | user_random | time | time_global (| u1..u5, ua, ub of ml-100k); val_frac, test_frac (a test
    part is scored once at the end, never used to choose); holdout, test_holdout (time); cutoff, test_cutoff
    (time_global). subsample, subsample_users: seeded smaller copies, before the split. side_features: MovieLens
    users' and films' attributes (model.arch=dot)."""

    _target_: str = "emblab.data.interactions.InteractionsDataModule"
    source: str = setting("file", choices=("file", *movielens.SOURCES))
    path: str | None = None
    root: str | None = None
    data_dir: str = "data"
    download: bool = True
    sep: str | None = None
    columns: list[str] | None = None
    user_col: str = "user"
    item_col: str = "item"
    rating_col: str | None = "rating"
    time_col: str | None = None
    weight_col: str | None = None
    items_path: str | None = None
    items_sep: str | None = None
    items_columns: list[str] | None = None
    items_id_col: str = "item"
    items_name_col: str = "name"
    rating_range: list[float] | None = None
    out_of_range: str = setting("error", choices=("error", "drop"))
    min_rating: float | None = None
    relevant_rating: float | None = None
    min_interactions: int = setting(0, ge=0)
    duplicates: str = setting("last", choices=("last", "mean", "sum", "error"))
    split: str = setting("random", choices=(*SPLITS, *movielens.CANONICAL_SPLITS))
    val_frac: float = setting(0.2, ge=0, lt=1)
    test_frac: float = setting(0.0, ge=0, lt=1)
    split_seed: int = setting(42, ge=0)
    holdout: int = setting(5, ge=1)
    test_holdout: int = setting(0, ge=0)
    cutoff: str | None = None
    test_cutoff: str | None = None
    subsample: float = setting(1.0, gt=0, le=1)
    subsample_users: float = setting(1.0, gt=0, le=1)
    side_features: bool = False

    def check(self, prefix: str) -> None:
        if self.source == "file" and not self.path:
            raise ConfigError(
                f"{prefix}.path is required: set {prefix}.path=FILE (or {prefix}.source=, a MovieLens set)"
            )
        if self.split in movielens.CANONICAL_SPLITS and self.source != "ml-100k":
            raise ConfigError(f"{prefix}.split={self.split} is a GroupLens ml-100k split: use {prefix}.source=ml-100k")
        if self.val_frac + self.test_frac >= 1:
            raise ConfigError(
                f"{prefix}.val_frac + {prefix}.test_frac = {self.val_frac + self.test_frac:g} leaves "
                "nothing to train on"
            )
        if self.split in ("random", "user_random") and not self.val_frac:
            raise ConfigError(f"{prefix}.val_frac=0 leaves nothing to validate on (a fraction above 0)")
        if self.rating_range is not None and (
            len(self.rating_range) != 2 or self.rating_range[0] >= self.rating_range[1]
        ):
            raise ConfigError(f"{prefix}.rating_range={self.rating_range}: expected [lo, hi] with lo < hi")
        if self.side_features and self.source == "file":
            raise ConfigError(f"{prefix}.side_features=true needs a MovieLens source (its user and film files)")
        for key in ("cutoff", "test_cutoff"):
            if getattr(self, key) is not None:
                try:
                    as_time(getattr(self, key))
                except ValueError:
                    raise ConfigError(f"{prefix}.{key}={getattr(self, key)!r}: not a date or a number") from None


def renumber(codes: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(the codes still present, each row's new code 0..len-1): after filters, the ids no row uses are gone."""
    present = np.bincount(codes, minlength=n) > 0
    if present.all():  # nothing left out: the codes are already 0..n-1 (a sort of the whole column saved)
        return np.arange(n), codes
    new = np.cumsum(present) - 1
    return np.flatnonzero(present), new[codes]


class InteractionsDataModule(EmblabDataModule):
    """An interactions file (or a MovieLens set) as index tensors; `kind` is what the model trains on: "ratings"
    (rating models) or "interactions" (ranking models)."""

    Config = InteractionsConfig
    kind = "ratings"
    kinds = ("ratings", "interactions")

    def __init__(self, cfg: InteractionsConfig, kind: str | None = None):
        super().__init__(cfg, kind)
        self.ids, self.side = None, {}
        if self.kind == "ratings" and cfg.rating_col is None:
            raise ConfigError(
                "a rating model needs ratings, and data.rating_col is null (implicit data): train "
                "model=collab_rank on it, or name the rating column"
            )

    def files(self) -> Files:
        cfg = self.cfg
        if cfg.source != "file":
            root = Path(cfg.root) if cfg.root else Path(cfg.data_dir) / "movielens" / cfg.source
            return movielens.files(cfg.source, root, cfg.split, cfg.download, cfg.side_features)
        items = Layout(
            cfg.items_sep,
            tuple(cfg.items_columns) if cfg.items_columns else None,
            cfg.items_id_col,
            cfg.items_name_col,
            None,
        )
        columns = tuple(cfg.columns) if cfg.columns else None
        layout = Layout(cfg.sep, columns, cfg.user_col, cfg.item_col, cfg.rating_col, cfg.time_col, cfg.weight_col)
        return Files(
            Path(cfg.path),
            layout,
            tuple(cfg.rating_range) if cfg.rating_range else None,
            items_path=Path(cfg.items_path) if cfg.items_path else None,
            items=items,
        )

    def prepare_data(self) -> None:
        self.files()  # downloads when needed; verifies checksums

    def setup(self, stage: str | None = None) -> None:
        if self.ids is not None:
            return
        cfg, f = self.cfg, self.files()
        parts = [read_file(p, f.layout) for p in (f.canonical or [f.path])]
        raw = {
            role: pa.concat_arrays([p[role] for p in parts])
            if role in ("user", "item")
            else np.concatenate([p[role] for p in parts])
            for role in parts[0]
        }
        u, user_ids = encode_ids(raw.pop("user"), "user", f.path)
        i, item_ids = encode_ids(raw.pop("item"), "item", f.path)
        df = pd.DataFrame({"u": u, "i": i, **raw})
        if f.canonical:
            df["part"] = np.repeat([0, 1], [len(p["user"]) for p in parts]).astype(np.int8)
        df = filter_rows(df, cfg, f)
        users, df["u"] = renumber(df["u"].to_numpy(), len(user_ids))  # the ids left, renumbered 0..n-1
        items, df["i"] = renumber(df["i"].to_numpy(), len(item_ids))
        self.ids = {"user": _take(user_ids, users), "item": _take(item_ids, items)}
        part = df.pop("part").to_numpy() if "part" in df else split_rows(df, cfg, f.path)
        self.split_id = split_digest(part)
        u, i = df["u"].to_numpy(), df["i"].to_numpy()
        rating = df["rating"].to_numpy(np.float32) if "rating" in df else np.ones(len(df), np.float32)
        self.rating_range = [float(x) for x in (f.rating_range or (rating[part == 0].min(), rating[part == 0].max()))]
        self.titles = self.item_names(f)
        self.item_counts = torch.from_numpy(np.bincount(i, minlength=len(items))).int()
        self.seen = csr(u, i, len(users))  # every known (user, item): recommendations skip them
        if cfg.side_features:
            self.side = movielens.side_tables_for(f, self.ids["user"], self.ids["item"])
        if self.kind == "ratings":
            t = [torch.from_numpy(a) for a in (u, i, rating)]
            sets = {p: TensorBatchDataset(*(x[torch.from_numpy(part == p)] for x in t)) for p in (0, 1, 2)}
        else:
            sets = self.ranking_sets(df, part, rating)
        self.train_ds, self.val_ds = sets[0], sets[1]
        self.test_ds = sets[2] if (part == 2).any() else None
        self.unseen = count_unseen(u, i, part)
        log.info(
            "%s: %d users, %d items; %d train / %d validation / %d test interactions (split=%s)%s",
            f.path,
            len(users),
            len(items),
            *(int((part == p).sum()) for p in (0, 1, 2)),
            cfg.split,
            "".join(
                f"; {s}: {n} of a{'n' * (c == 'item')} {c} never seen in training"
                for s, counts in self.unseen.items()
                for c, n in counts.items()
            ),
        )

    def ranking_sets(self, df: pd.DataFrame, part: np.ndarray, rating: np.ndarray) -> dict:
        """Training users with their positives and weights (rated at least min_rating, or every row of implicit
        data); per validation (test) user, the items it had in training (and validation) and the relevant held-out
        ones (rated at least relevant_rating, default min_rating)."""
        cfg, u, i, n_u = self.cfg, df["u"].to_numpy(), df["i"].to_numpy(), len(self.ids["user"])
        positive = rating >= cfg.min_rating if cfg.min_rating is not None else np.ones(len(df), bool)
        threshold = cfg.relevant_rating if cfg.relevant_rating is not None else cfg.min_rating
        relevant = rating >= threshold if threshold is not None else np.ones(len(df), bool)
        weight = df["weight"].to_numpy(np.float32) if "weight" in df else np.ones(len(df), np.float32)
        train = (part == 0) & positive
        sets = {0: UserRows(torch.from_numpy(np.unique(u[train])), csr(u[train], i[train], n_u, weight[train]))}
        for p in (1, 2):
            seen, target = part < p, (part == p) & relevant
            users = torch.from_numpy(np.unique(u[target]))
            sets[p] = UserRows(users, csr(u[seen], i[seen], n_u), csr(u[target], i[target], n_u))
        return sets

    def item_names(self, f: Files) -> list[str]:
        ids = self.ids["item"]
        if f.titles is not None:
            names = f.titles()
        elif f.items_path is not None:
            table = read_file(f.items_path, f.items)
            names = dict(zip(table["user"].to_pylist(), table["item"].to_pylist(), strict=True))
        else:
            return [f"item {x}" for x in ids]
        return [names.get(x, names.get(str(x), f"item {x}")) for x in ids]

    def dims(self) -> dict[str, Any]:
        dims = {"n_users": len(self.ids["user"]), "n_items": len(self.ids["item"]), "rating_range": self.rating_range}
        if self.cfg.side_features:
            dims["n_user_codes"] = self.side.get("n_user_codes", 0)
            dims["n_user_fields"] = self.side["user_codes"].shape[1] if "user_codes" in self.side else 0
            dims["n_item_feats"] = self.side["item_feats"].shape[1]
        return dims

    def unseen_counts(self) -> dict[str, dict[str, int]]:
        return self.unseen

    @property
    def user_ids(self) -> Tensor | list[str]:
        """The raw user ids in index order, as checkpoints keep them: an int64 tensor, or text."""
        return as_saved(self.ids["user"])

    @property
    def item_ids(self) -> Tensor | list[str]:
        return as_saved(self.ids["item"])

    def artifacts(self) -> dict[str, Any]:
        return {
            "source": self.cfg.source,
            "user_ids": self.user_ids,
            "item_ids": self.item_ids,
            "item_titles": list(self.titles),
            "item_counts": self.item_counts,
            "seen_indptr": self.seen[0].int(),
            "seen_items": self.seen[1].int(),
            "rating_range": self.rating_range,
            "split": self.split_id,
        }


def as_saved(ids) -> Tensor | list[str]:
    return torch.from_numpy(ids) if isinstance(ids, np.ndarray) else list(ids)


def _take(ids, keep: np.ndarray):
    return ids[keep] if isinstance(ids, np.ndarray) else [ids[j] for j in keep]
