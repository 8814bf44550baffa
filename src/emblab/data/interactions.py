"""Interactions from any file: (user, item[, rating][, time][, weight]) rows -> index tensors for collaborative
filtering. CSV or TSV with any separator (guessed, or data.sep), a header or data.columns naming the columns of
a headerless file, or Parquet; ids of any type (integers, ASINs, UUIDs) mapped to contiguous indices, the raw
ids kept for the checkpoint; the filters and splits a recommender needs. MovieLens is a preset: movielens.py
says where its files are and how they are laid out. Reading is pyarrow's; no Python runs per row, except to
name the line of a bad row.

Rating models (kind "ratings") train on (user, item, rating) triples. Ranking models (kind "interactions")
train on the positive interactions, (user, item, weight), and are scored on each user's held-out positives
ranked among the items they have not seen (emblab.models.metrics).
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv
import torch
from torch import Tensor

from emblab.core.errors import ConfigError, DataError, closest
from emblab.core.settings import setting
from emblab.data import movielens
from emblab.data.base import DataConfig, EmblabDataModule, TensorBatchDataset, split_digest
from emblab.data.files import Files, Layout

log = logging.getLogger(__name__)

SEPARATORS = ("\t", ",", ";", "|", " ")
SPLITS = ("random", "user_random", "time", "time_global")


# ---------------------------------------------------------------- reading, with exact error locations
def guess_sep(path: Path, lines: int = 50) -> str:
    """The separator that splits most of the first lines into the same number (>= 2) of fields."""
    with open(path, "rb") as f:
        head = [raw.decode("utf-8", "replace").rstrip("\r\n") for raw, _ in zip(f, range(lines), strict=False)]
    head = [line for line in head if line.strip()]
    for sep in SEPARATORS:
        counts = pd.Series([len(line.split(sep)) for line in head])
        if len(counts) and counts.mode()[0] >= 2 and (counts == counts.mode()[0]).mean() >= 0.8:
            return sep
    raise DataError(path, "one column only in its first lines (no tab, comma, semicolon, pipe or space splits them "
                          "alike): give data.sep=...", line=1)


def read_file(path: str | Path, layout: Layout) -> dict[str, Any]:
    """{role: values}: user and item ids as pyarrow strings, rating and weight as float64, time as float64
    seconds. A value a role cannot take (a blank id, a rating that is not a number, a weight not above 0) is
    named by file, line and column."""
    path, roles = Path(path), layout.roles()
    if not path.is_file():
        raise DataError(path, "file not found")
    parquet = path.suffix.lower() in (".parquet", ".pq")
    if parquet:
        import pyarrow.parquet as pq

        names, sep = pq.read_schema(path).names, None
    else:
        sep = layout.sep or guess_sep(path)
        names = list(layout.columns) if layout.columns else header(path, sep)
    for role, name in roles.items():
        if name not in names:
            raise DataError(path, f"no column {name!r} (data.{role}_col){closest(name, names)}; its columns: {names}",
                            line=1)
    types = {"user": pa.string(), "item": pa.string(), "time": pa.string(), "rating": pa.float64(),
             "weight": pa.float64()}
    try:
        if parquet:
            table = pq.read_table(path, columns=list(roles.values()))
            table = pa.table({role: table[col].cast(types[role]) for role, col in roles.items()})
        else:
            table = pv.read_csv(
                path,
                read_options=pv.ReadOptions(column_names=names if layout.columns else None),
                parse_options=pv.ParseOptions(delimiter=sep),
                convert_options=pv.ConvertOptions(include_columns=list(roles.values()),
                                                  column_types={roles[r]: types[r] for r in roles},
                                                  strings_can_be_null=False, quoted_strings_can_be_null=False),
            ).rename_columns(list(roles))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, UnicodeDecodeError) as e:
        if parquet:
            raise DataError(path, f"a column cannot be read as its role needs ({str(e).splitlines()[0][:160]})") from None
        first_problem(path, layout, sep, names)
    if not table.num_rows:
        raise DataError(path, "holds no interactions" + (" (a header only)" if not layout.columns else ""))
    out, bad = {}, {}
    for role in ("user", "item"):
        out[role] = pc.utf8_trim_whitespace(table[role].combine_chunks())
        bad[role] = pc.equal(out[role], "").fill_null(True).to_numpy(zero_copy_only=False)
    for role in ("rating", "weight"):
        if role in roles:
            out[role] = table[role].to_numpy()
            ok = np.isfinite(out[role]) & (out[role] > 0 if role == "weight" else True)
            bad[role] = ~ok
    for role, mask in bad.items():
        if mask.any():
            row = int(np.flatnonzero(mask)[0])
            if parquet:
                raise DataError(path, f"row {row + 1}: a {'blank id' if role in ('user', 'item') else 'bad value'}",
                                column=roles[role])
            first_problem(path, layout, sep, names, data_row=row)
    if "time" in roles:
        out["time"] = parse_times(path, table["time"].combine_chunks(), roles["time"])
    return out


def read_frame(path: str | Path, layout: Layout) -> pd.DataFrame:
    """A whole interactions file as a DataFrame (user, item[, rating][, time][, weight]): ids as int64 when every
    one is an integer, else as text."""
    cols = read_file(path, layout)
    for role in ("user", "item"):
        index, ids = encode_ids(cols[role], role, path)
        cols[role] = np.asarray(ids, dtype=object if isinstance(ids, list) else np.int64)[index]
    return pd.DataFrame(cols)


def header(path: Path, sep: str) -> list[str]:
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        return next(csv.reader([f.readline().rstrip("\r\n")], delimiter=sep), [])  # quoted names too


def parse_times(path: Path, raw: pa.Array, column: str) -> np.ndarray:
    """Times as float64 seconds: numbers as they are (unix seconds), dates and datetimes since 1970."""
    try:
        seconds = pc.cast(raw, pa.float64()).to_numpy()
    except pa.ArrowInvalid:
        dates = pd.to_datetime(pd.Series(raw.to_pandas()), errors="coerce", utc=True)
    else:
        bad = ~np.isfinite(seconds)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(path, f"time {raw[row].as_py()} is not a finite number (row {row + 1})", column=column)
        return seconds
    if dates.isna().any():
        row = int(np.flatnonzero(dates.isna().to_numpy())[0])
        raise DataError(path, f"{raw[row].as_py()!r} is neither a number nor a date (row {row + 1})", column=column)
    return (dates.astype("int64") // 10**9).to_numpy(np.float64)


def first_problem(path: Path, layout: Layout, sep: str, names: list[str], data_row: int | None = None) -> None:
    """Raise the first bad line's DataError: a wrong number of fields, a blank id, a rating or weight that is
    not a (positive, finite) number. With data_row, the bad row is known: only its line is looked at."""
    index = {role: names.index(col) for role, col in layout.roles().items()}
    n_data = 0
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise DataError(path, f"not UTF-8 text ({e.reason}, byte {e.start + 1} of the line)",
                                line=lineno) from None
            if (lineno == 1 and not layout.columns) or not line.strip():
                continue
            n_data += 1
            if data_row is not None and n_data != data_row + 1:
                continue
            fields = next(csv.reader([line], delimiter=sep), [])
            if len(fields) != len(names):
                raise DataError(path, f"expected {len(names)} fields separated by {sep!r}, found {len(fields)}: "
                                      f"{line[:80]!r}", line=lineno)
            for role, j in index.items():
                value, col = fields[j].strip(), names[j]
                if role in ("user", "item") and not value:
                    raise DataError(path, f"a blank {role} id", line=lineno, column=col)
                if role in ("rating", "weight"):
                    try:
                        number = float(value)
                    except ValueError:
                        raise DataError(path, f"{value!r} is not a number", line=lineno, column=col) from None
                    if not np.isfinite(number) or (role == "weight" and number <= 0):
                        what = "not a finite number" if not np.isfinite(number) else "not above 0 (a count or a confidence)"
                        raise DataError(path, f"{role} {value} is {what}", line=lineno, column=col)
    if not n_data:
        raise DataError(path, "holds no interactions" + (" (a header only)" if not layout.columns else ""))
    raise DataError(path, "could not be read as an interactions file (no single bad line found)")


def encode_ids(raw: pa.Array, what: str, path) -> tuple[np.ndarray, np.ndarray | list[str]]:
    """Raw ids (N,) -> (index (N,) int64, sorted ids): integers (every id an integer within 64 bits) as an int64
    array, any others as text, so a column that mixes numbers and text is text alike in training and predict."""
    if pc.all(pc.match_substring_regex(raw, r"^(0|-?[1-9]\d{0,17})$")).as_py():  # "007" stays text: no id changes
        raw = pc.cast(raw, pa.int64())
    else:
        log.info("%s: %s ids are read as text (not all of them integers)", path, what)
    coded = raw.dictionary_encode()  # the distinct ids in order of appearance, and each row's position among them
    order = pc.array_sort_indices(coded.dictionary).to_numpy()
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    ids = pc.take(coded.dictionary, pa.array(order)).to_numpy(zero_copy_only=False)
    return rank[coded.indices.to_numpy()], ids if ids.dtype.kind == "i" else [str(x) for x in ids]


# ---------------------------------------------------------------- filters
def resolve_duplicates(df: pd.DataFrame, policy: str, path) -> pd.DataFrame:
    """Several rows of one (user, item): last (the latest by time, else by file order), mean, sum (of counts), or
    error. Counted in the log."""
    key = df["u"].to_numpy() * (int(df["i"].max()) + 1) + df["i"].to_numpy()
    dup = pd.Series(key).duplicated(keep=False).to_numpy()
    if not dup.any():
        return df
    n_pairs = len(np.unique(key[dup]))
    if policy == "error":
        raise DataError(path, f"{n_pairs} (user, item) pairs occur more than once, the first in data row "
                              f"{int(np.flatnonzero(dup)[0]) + 1} (data.duplicates=last, mean or sum accepts them)")
    before = len(df)
    if policy == "last":
        order = np.argsort(df["time"].to_numpy(), kind="stable") if "time" in df else np.arange(len(df))
        last = pd.Series(key[order]).duplicated(keep="last").to_numpy()
        df = df.iloc[np.sort(order[~last])]
    else:
        how = {c: policy if c in ("rating", "weight") else "max" for c in df.columns if c not in ("u", "i")}
        df = df.groupby(["u", "i"], as_index=False, sort=False).agg(how)
    log.warning("%s: %d (user, item) pairs occur more than once; data.duplicates=%s turned %d rows into %d", path,
                n_pairs, policy, before, len(df))
    return df.reset_index(drop=True)


def k_core(u: np.ndarray, i: np.ndarray, k: int) -> np.ndarray:
    """Rows kept when users and items with fewer than k interactions are dropped, again until none is left (an
    iterative k-core); (N,) bool."""
    keep = np.ones(len(u), bool)
    while True:
        n_u, n_i = np.bincount(u[keep], minlength=u.max() + 1), np.bincount(i[keep], minlength=i.max() + 1)
        drop = keep & ((n_u[u] < k) | (n_i[i] < k))
        if not drop.any():
            return keep
        keep &= ~drop


def subsample_mask(users: np.ndarray, frac: float, user_frac: float, seed: int) -> np.ndarray:
    """Which rows a smaller copy keeps: each user with probability user_frac (all of their rows), then each row
    with probability frac. Seeded, so every model and run sees the same smaller set; (N,) bool."""
    g = np.random.default_rng(seed)
    ids = np.unique(users)
    keep = np.isin(users, ids[g.random(len(ids)) < user_frac]) if user_frac < 1 else np.ones(len(users), bool)
    return keep & (g.random(len(users)) < frac) if frac < 1 else keep


# ---------------------------------------------------------------- splits
def split_rows(df: pd.DataFrame, cfg: InteractionsConfig, path) -> np.ndarray:
    """Each row's part, 0 train, 1 validation, 2 test. random: seeded global fractions; user_random: each user's
    rows split at random by the fractions (RecBole's 8:1:1 per user, the floor of each part); time: each user's
    last test_holdout rows by time test, the holdout before them validate (users with no more rows train only);
    time_global: rows at or after cutoff validate, at or after test_cutoff test."""
    n, part = len(df), np.zeros(len(df), np.int8)
    rng = np.random.default_rng(cfg.split_seed)
    if cfg.split == "random":
        order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.split_seed)).numpy()
        n_val, n_test = int(round(n * cfg.val_frac)), int(round(n * cfg.test_frac))
        part[order[:n_val]], part[order[n_val : n_val + n_test]] = 1, 2
    elif cfg.split in ("user_random", "time"):
        if cfg.split == "time" and "time" not in df:
            raise ConfigError("data.split=time needs data.time_col (a timestamp or date column)")
        key = rng.random(n) if cfg.split == "user_random" else df["time"].to_numpy()
        u = df["u"].to_numpy()
        order = np.lexsort((np.arange(n), key, u))  # by user, then key, then file order
        su = u[order]
        size = np.bincount(u)[su]
        from_end = size - 1 - (np.arange(n) - np.searchsorted(su, su))  # 0: the user's last row
        if cfg.split == "user_random":  # RecBole's counts: floors, a part of less than one row bumped to one
            n_test, n_val = np.floor(size * cfg.test_frac), np.floor(size * cfg.val_frac)
            for frac in (cfg.test_frac, cfg.val_frac):
                n_train = size - n_test - n_val
                bump = (n_train > 1) & (size * frac > 0) & (size * frac < 1)
                if frac is cfg.test_frac:
                    n_test = n_test + bump
                else:
                    n_val = n_val + bump
        else:
            enough = size > cfg.holdout + cfg.test_holdout
            n_test, n_val = np.where(enough, cfg.test_holdout, 0), np.where(enough, cfg.holdout, 0)
        part[order] = np.where(from_end < n_test, 2, np.where(from_end < n_test + n_val, 1, 0))
    else:  # time_global
        if "time" not in df or not cfg.cutoff:
            raise ConfigError("data.split=time_global needs data.time_col and data.cutoff (a date or a number)")
        t = df["time"].to_numpy()
        part[t >= as_time(cfg.cutoff)] = 1
        if cfg.test_cutoff:
            part[t >= as_time(cfg.test_cutoff)] = 2
    for p, what in ((1, "validate"), (0, "train")):
        if not (part == p).any():
            raise DataError(path, f"{n} interactions leave nothing to {what} on with data.split={cfg.split} (its "
                                  "fractions, holdout or cutoff)")
    return part


def as_time(value: str | float) -> float:
    try:
        return float(value)
    except ValueError:
        return pd.Timestamp(value, tz="UTC").value / 1e9


def csr(rows: np.ndarray, cols: np.ndarray, n_rows: int, values: np.ndarray | None = None) -> tuple[Tensor, ...]:
    """(indptr (n_rows + 1,), indices[, values]) of (row, col) pairs, each row's columns sorted."""
    order = np.lexsort((cols, rows))
    indptr = np.r_[0, np.cumsum(np.bincount(rows, minlength=n_rows))]
    out = (torch.from_numpy(indptr.astype(np.int64)), torch.from_numpy(cols[order].astype(np.int64)))
    return out if values is None else (*out, torch.from_numpy(values[order].astype(np.float32)))


def gather(indptr: Tensor, indices: Tensor, users: Tensor) -> tuple[Tensor, Tensor]:
    """The (row in the batch, column) pairs of a batch of CSR rows, (S,) each, and their positions in indices."""
    lo, counts = indptr[users], indptr[users + 1] - indptr[users]
    rows = torch.repeat_interleave(torch.arange(len(users), device=users.device), counts)
    pos = lo[rows] + torch.arange(len(rows), device=users.device) - (torch.cumsum(counts, 0) - counts)[rows]
    return rows, pos


class UserRows(torch.utils.data.Dataset):
    """Users, each with lists of items (CSR: indptr, indices[, values]): an index batch of users answers
    (users (U,), then per list its (row in the batch (S,), item (S,)[, value (S,)]) pairs). Training lists a
    user's positives and their weights; evaluation what it has seen and what it should find."""

    row_sliceable = False  # a batch is users with all their items: it cannot be cut into row slices

    def __init__(self, users: Tensor, *lists: tuple[Tensor, ...]):
        self.users, self.lists = users, lists

    def __len__(self) -> int:
        return len(self.users)

    def __getitems__(self, idx: Tensor) -> tuple[Tensor, ...]:
        users, out = self.users[idx], []
        for indptr, indices, *values in self.lists:
            rows, pos = gather(indptr, indices, users)
            out += [rows, indices[pos], *(v[pos] for v in values)]
        return users, *out

    __getitem__ = __getitems__


# ---------------------------------------------------------------- the settings and the DataModule
@dataclass
class InteractionsConfig(DataConfig):
    """data=interactions (any file: data.path) and data=movielens (its preset: data.source=embedded | ml-100k |
    ml-latest-small | ml-25m, under data.root or downloaded).

    Columns: user_col, item_col, rating_col (null: implicit data), time_col, weight_col (a count or confidence,
    such as play counts), named by the file's header or, for a file without one, by data.columns; sep: null
    guesses it. items_path: item names (items_id_col, items_name_col; items_sep, items_columns as for the
    file). rating_range: the scale (default: the training ratings' lowest and highest); a rating outside a
    declared scale follows out_of_range (error | drop, counted). min_rating: ratings at or above it are a ranking
    model's positives and, unless relevant_rating says otherwise, what its evaluation looks for; min_interactions: an iterative k-core on users and
    items. duplicates: last (by time, else file order) | mean | sum | error. split: random | user_random | time |
    time_global (| u1..u5, ua, ub of ml-100k); val_frac, test_frac (a test part is scored once at the end, never
    used to choose); holdout, test_holdout (time); cutoff, test_cutoff (time_global). subsample,
    subsample_users: seeded smaller copies, before the split. side_features: MovieLens users' and films'
    attributes (model.arch=dot)."""

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
            raise ConfigError(f"{prefix}.path is required: set {prefix}.path=FILE (or {prefix}.source=, a MovieLens set)")
        if self.split in movielens.CANONICAL_SPLITS and self.source != "ml-100k":
            raise ConfigError(f"{prefix}.split={self.split} is a GroupLens ml-100k split: use {prefix}.source=ml-100k")
        if self.val_frac + self.test_frac >= 1:
            raise ConfigError(f"{prefix}.val_frac + {prefix}.test_frac = {self.val_frac + self.test_frac:g} leaves "
                              "nothing to train on")
        if self.split in ("random", "user_random") and not self.val_frac:
            raise ConfigError(f"{prefix}.val_frac=0 leaves nothing to validate on (a fraction above 0)")
        if self.rating_range is not None and (len(self.rating_range) != 2 or self.rating_range[0] >= self.rating_range[1]):
            raise ConfigError(f"{prefix}.rating_range={self.rating_range}: expected [lo, hi] with lo < hi")
        if self.side_features and self.source == "file":
            raise ConfigError(f"{prefix}.side_features=true needs a MovieLens source (its user and film files)")
        for key in ("cutoff", "test_cutoff"):
            if getattr(self, key) is not None:
                try:
                    as_time(getattr(self, key))
                except ValueError:
                    raise ConfigError(f"{prefix}.{key}={getattr(self, key)!r}: not a date or a number") from None


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
            raise ConfigError("a rating model needs ratings, and data.rating_col is null (implicit data): train "
                              "model=collab_rank on it, or name the rating column")

    def files(self) -> Files:
        cfg = self.cfg
        if cfg.source != "file":
            root = Path(cfg.root) if cfg.root else Path(cfg.data_dir) / "movielens" / cfg.source
            return movielens.files(cfg.source, root, cfg.split, cfg.download, cfg.side_features)
        items = Layout(cfg.items_sep, tuple(cfg.items_columns) if cfg.items_columns else None, cfg.items_id_col,
                       cfg.items_name_col, None)
        columns = tuple(cfg.columns) if cfg.columns else None
        layout = Layout(cfg.sep, columns, cfg.user_col, cfg.item_col, cfg.rating_col, cfg.time_col, cfg.weight_col)
        return Files(Path(cfg.path), layout, tuple(cfg.rating_range) if cfg.rating_range else None,
                     items_path=Path(cfg.items_path) if cfg.items_path else None, items=items)

    def prepare_data(self) -> None:
        self.files()  # downloads when needed; verifies checksums

    def setup(self, stage: str | None = None) -> None:
        if self.ids is not None:
            return
        cfg, f = self.cfg, self.files()
        parts = [read_file(p, f.layout) for p in (f.canonical or [f.path])]
        raw = {role: pa.concat_arrays([p[role] for p in parts]) if role in ("user", "item")
               else np.concatenate([p[role] for p in parts]) for role in parts[0]}
        u, user_ids = encode_ids(raw.pop("user"), "user", f.path)
        i, item_ids = encode_ids(raw.pop("item"), "item", f.path)
        df = pd.DataFrame({"u": u, "i": i, **raw})
        if f.canonical:
            df["part"] = np.repeat([0, 1], [len(p["user"]) for p in parts]).astype(np.int8)
        df = self.filter(df, f)
        users, df["u"] = np.unique(df["u"].to_numpy(), return_inverse=True)  # the ids left, renumbered 0..n-1
        items, df["i"] = np.unique(df["i"].to_numpy(), return_inverse=True)
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
        log.info("%s: %d users, %d items; %d train / %d validation / %d test interactions (split=%s)%s", f.path,
                 len(users), len(items), *(int((part == p).sum()) for p in (0, 1, 2)), cfg.split,
                 "".join(f"; {s}: {n} of a{'n' * (c == 'item')} {c} never seen in training"
                         for s, counts in self.unseen.items() for c, n in counts.items()))

    def filter(self, df: pd.DataFrame, f: Files) -> pd.DataFrame:
        """A declared scale, duplicates, the subsample and the k-core, each counted in the log."""
        cfg = self.cfg
        if f.rating_range and "rating" in df:
            lo, hi = f.rating_range
            out = ~df["rating"].between(lo, hi).to_numpy()
            if out.any() and cfg.out_of_range == "error":
                row = int(np.flatnonzero(out)[0])
                line = None if f.canonical or f.path.suffix in (".parquet", ".pq") else row + 1 + (not f.layout.columns)
                raise DataError(f.path, f"rating {df['rating'].iloc[row]:g} is outside [{lo:g}, {hi:g}] "
                                        "(data.out_of_range=drop drops such rows)", line=line, column=f.layout.rating)
            if out.any():
                log.warning("%s: data.out_of_range=drop removes %d ratings outside [%g, %g]", f.path, out.sum(), lo, hi)
                df = df[~out].reset_index(drop=True)
        df = resolve_duplicates(df, cfg.duplicates, f.path)
        if cfg.subsample < 1 or cfg.subsample_users < 1:
            keep = subsample_mask(df["u"].to_numpy(), cfg.subsample, cfg.subsample_users, cfg.split_seed)
            log.info("%s: subsample=%s subsample_users=%s keep %d of %d rows", f.path, cfg.subsample,
                     cfg.subsample_users, int(keep.sum()), len(df))
            df = df[keep].reset_index(drop=True)
        if cfg.min_interactions > 1:
            keep = k_core(df["u"].to_numpy(), df["i"].to_numpy(), cfg.min_interactions)
            log.info("%s: data.min_interactions=%d (iterative k-core) removes %d of %d interactions", f.path,
                     cfg.min_interactions, int((~keep).sum()), len(df))
            df = df[keep].reset_index(drop=True)
        if not len(df):
            raise DataError(f.path, "no interactions are left after the filters (data.min_interactions, subsample)")
        return df

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
        return {"source": self.cfg.source, "user_ids": self.user_ids, "item_ids": self.item_ids,
                "item_titles": list(self.titles), "item_counts": self.item_counts, "seen_indptr": self.seen[0].int(),
                "seen_items": self.seen[1].int(), "rating_range": self.rating_range, "split": self.split_id}


def as_saved(ids) -> Tensor | list[str]:
    return torch.from_numpy(ids) if isinstance(ids, np.ndarray) else list(ids)


def count_unseen(u: np.ndarray, i: np.ndarray, part: np.ndarray) -> dict[str, dict[str, int]]:
    """Validation and test rows whose user or item training never saw (they are scored with an untrained row)."""
    trained_u, trained_i = np.bincount(u[part == 0], minlength=u.max() + 1) > 0, np.bincount(
        i[part == 0], minlength=i.max() + 1) > 0
    out = {}
    for name, p in (("validation", 1), ("test", 2)):
        counts = {"user": int((~trained_u[u[part == p]]).sum()), "item": int((~trained_i[i[part == p]]).sum())}
        if any(counts.values()):
            out[name] = {k: n for k, n in counts.items() if n}
    return out


def _take(ids, keep: np.ndarray):
    return ids[keep] if isinstance(ids, np.ndarray) else [ids[j] for j in keep]
