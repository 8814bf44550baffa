"""Bring-your-own table for MixedInputModel: a CSV or Parquet file with categorical columns, continuous
columns and a target, processed the way fast.ai's lesson did it.

- Categorify: each categorical column's values, learned on the training part only, become codes
  1..n; a value never seen in training (or missing) is the reserved code 0, "unknown".
- Normalize (the lesson's "mapper"): continuous columns minus the training mean, over the training
  std; or, with num_transform=quantile, each column through its training quantiles onto a standard
  normal (scikit-learn's QuantileTransformer, as Gorishniy et al. 2021 prepare tables: skew and
  outliers no longer decide a column's scale). A continuous value missing is filled with the training
  median, and a boolean `<col>_na` categorical column (decided on training data) says it was missing.
- Values as categories (value_max_card > 0): a continuous column with at most value_max_card distinct
  training values is also read as a category, `<col>_value`, each training value a code of its own (a
  value training never saw: code 0). A net can then give an exact value (a capital gain of 7688, 40 hours
  a week) its own effect, as a tree's split on a column of few values does, while the continuous column
  keeps the order and the distances between values. With value_cols=codes only columns whose values look like
  codes or recurring amounts (columns.is_code_column) are read so, and in data=tabular densely numbered ids
  whose values predict the target where their neighbours' do not (columns.id_gain); a measure (an age, a count
  of rooms) is not.
Both are fitted once, kept as plain containers in the checkpoint, and applied unchanged to
validation, test and prediction data. rossmann.py uses the same TabularProcessor.
"""

from __future__ import annotations

import csv
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import MISSING
from scipy.special import ndtri
from torch import Tensor

from emblab.core.errors import ConfigError, DataError
from emblab.core.settings import setting
from emblab.data.base import DataConfig, EmblabDataModule, TensorBatchDataset, split_digest
from emblab.data.columns import (
    add_dateparts,
    apply_markers,
    cont_cat_split,
    date_part_names,
    find_task,
    id_columns,
    is_code_column,
    is_row_id,
    log_choices,
    missing_markers,
    new_rows_markers,
    whole_values,
)

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- reading with exact error locations
def read_table(path: str | Path, columns: Sequence[str] | None = None, dtype=None) -> pd.DataFrame:
    """CSV (by pandas' parser, so quoted headers work; UTF-8, a byte-order mark is read; the separator the
    header uses: , ; tab or |) or Parquet, with the named columns checked; dtype=str reads every value as written."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            df = pd.read_parquet(path).reset_index(drop=True)  # row i is the file's row i (errors name it)
            df = df.astype(dtype) if dtype is not None else df
        else:
            # only a blank field is missing: text such as "nan" or "inf" is a value, checked by its column
            sep = header_separator(path)
            df = pd.read_csv(
                path,
                sep=sep,
                low_memory=False,
                keep_default_na=False,
                na_values=[""],
                encoding="utf-8-sig",
                dtype=dtype,
            )
    except UnicodeDecodeError as e:
        raise DataError(path, f"not UTF-8 text ({e.reason})", line=_line_of_byte(path, e.start)) from None
    except pd.errors.EmptyDataError:
        raise DataError(path, "is empty (no header)") from None
    except pd.errors.ParserError as e:
        m = re.search(r"line (\d+)", str(e))
        raise DataError(
            path, re.sub(r"^.*C error: ", "", str(e).strip())[:200], line=int(m.group(1)) if m else None
        ) from None
    except (OSError, ValueError) as e:  # pyarrow: not a Parquet file, a broken footer, ...
        raise DataError(path, f"cannot be read as a table ({str(e).splitlines()[0][:200]})") from None
    if path.suffix.lower() in (".parquet", ".pq"):
        header = list(df.columns)
    else:  # the header as written: pandas has renamed a repeated name already
        first = pd.read_csv(path, sep=sep, nrows=1, header=None, dtype=str, encoding="utf-8-sig", keep_default_na=False)
        header = list(first.iloc[0])
    if not isinstance(df.index, pd.RangeIndex):  # pandas made the first column(s) an index in silence
        line = _first_line_longer_than(path, sep, len(header))
        raise DataError(path, f"has more fields than its header's {len(header)} columns", line=line)
    twice = sorted({c for c in header if header.count(c) > 1})
    if twice:  # pandas would rename the second to "x.1" and use the first in silence
        cols = [i + 1 for i, c in enumerate(header) if c == twice[0]]
        raise DataError(
            path,
            f"column {twice[0]!r} appears {len(cols)} times in the header (columns "
            f"{', '.join(map(str, cols))}): rename one",
            line=1,
        )
    if df.empty:
        raise DataError(path, f"has a header ({len(df.columns)} columns) but no rows")
    if columns:
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise DataError(path, f"missing column(s) {missing}; the file has {list(df.columns)}", line=1)
    return df


def header_separator(path: Path) -> str:
    """The separator of a CSV: of , ; tab and |, the one its header line holds most often outside quotes
    (a header of one column: ,). Europe's spreadsheets write ; (UCI's bank marketing file, for one)."""
    with open(path, "rb") as f:
        line = f.readline().decode("utf-8", errors="replace")
    line = re.sub(r'"[^"]*"', "", line)
    counts = {sep: line.count(sep) for sep in (",", ";", "\t", "|")}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def _first_line_longer_than(path: Path, sep: str, n: int) -> int | None:
    """The 1-based line where the first record of more than n fields ends (an error's path only)."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        records = csv.reader(f, delimiter=sep)
        return next((records.line_num for rec in records if len(rec) > n), None)


def _line_of_byte(path: Path, offset: int) -> int:
    """The 1-based line holding byte `offset` of a file (for decoding errors, which count bytes)."""
    with open(path, "rb") as f:
        return f.read(offset).count(b"\n") + 1


def where(path: Path | str, row: int) -> dict[str, Any]:
    """DataError location of the file's row `row` (0-based; read_table's index): a CSV line or a Parquet row."""
    row = int(row)
    if str(path).lower().endswith((".parquet", ".pq")):
        return {"line": None, "row_note": f"row {row + 1}"}
    return {"line": row + 2, "row_note": ""}  # line 1 is the header


def numeric_column(df: pd.DataFrame, col: str, path, allow_nan: bool = True) -> pd.Series:
    """df[col] as float64. A value that is not a number (or a NaN where none is allowed) is an error
    naming the file, column and the first offending row."""
    raw = df[col]
    nested = raw.map(lambda v: isinstance(v, (list, tuple, dict, np.ndarray))) if raw.dtype == object else None
    if nested is not None and nested.any():  # a Parquet list or struct column
        row = int(np.flatnonzero(nested.to_numpy())[0])
        loc = where(path, raw.index[row])
        raise DataError(
            path,
            f"holds {type(raw.iloc[row]).__name__}s, not numbers ({loc['row_note'] or 'first'}); "
            "a continuous column needs one number per row",
            line=loc["line"],
            column=col,
        )
    values = pd.to_numeric(raw, errors="coerce").astype("float64")
    # a number that is not finite (inf, 1e400, or NaN typed out where none is allowed) would train to a
    # NaN loss; a blank (missing) value is filled by the processor and flagged in `<col>_na`
    # (tensors are float32: a finite float64 beyond its range would become inf there)
    bad = (values.isna() & raw.notna()) | ~(values.abs() <= np.finfo(np.float32).max) & values.notna()
    if not allow_nan:
        bad |= values.isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        loc = where(path, raw.index[row])  # the file's row: rows without a target may have been left out
        v = raw.iloc[row]
        shown = repr(v) if isinstance(v, str) else str(float(v)) if pd.api.types.is_number(v) else repr(str(v))
        what = (
            "missing (NaN)"
            if pd.isna(v)
            else f"{shown} is not a number"
            if pd.isna(values.iloc[row])
            else f"{shown} is not a finite number"
            if np.isinf(values.iloc[row])
            else f"{shown} is beyond the float32 range"
        )
        note = f" ({loc['row_note']})" if loc["row_note"] else ""
        raise DataError(path, f"{what}{note}; {int(bad.sum())} such row(s)", line=loc["line"], column=col)
    return values


# ---------------------------------------------------------------- the processor
def category_values(s: pd.Series, float_text: bool = False) -> pd.Series:
    """A column as strings, so codes do not depend on how a reader typed it: 1, 1.0 and "1" are all
    "1" (a CSV integer column with a blank reads as float). Missing stays missing (-> code 0).
    float_text: numbers as Python writes floats ("1.0"), as a column holding fractions was coded before."""
    if pd.api.types.is_bool_dtype(s):
        return s.astype("string")
    if pd.api.types.is_numeric_dtype(s):
        v = s.astype("float64")
        out = v.astype("string")
        if float_text:
            return out
        whole = whole_values(v.to_numpy())  # value by value: a part with 1.5 or inf in it codes 1 as "1" too
        out[whole] = v[whole].astype("int64").astype("string")
        return out
    return s.astype("string")


FLOAT_WHOLE, WHOLE = re.compile(r"-?\d+\.0"), re.compile(r"-?\d+")  # 1 written as a float ("1.0"), and as "1"


def codes_in(values, categories) -> np.ndarray:
    """The position of each value among `categories` (unique), -1 for a value not among them or missing."""
    return pd.Index(categories).get_indexer(pd.Index(values)).astype(np.int64)


def _sort_key(v: str):
    try:
        return (0, float(v), v)  # numbers in numeric order: DayOfWeek 1..7, Month 1..12
    except ValueError:
        return (1, 0.0, v)


class TabularProcessor:
    """Categorify + FillMissing + Normalize, fitted on training rows and frozen after.

    State (plain containers, checkpoint-safe):
      cat_cols: categorical columns, then one `<col>_na` flag per continuous column missing in training,
                then `<col>_value` per continuous column read as a category too
      classes:  {cat col: [value, ...]}, value i has code i + 1; code 0 is unknown / missing
      stats:    {cont col: {"mean", "std", "median", "na"[, "quantiles"][, "values"]}}
    """

    def __init__(self, cat_cols: Sequence[str], cont_cols: Sequence[str], classes: dict, stats: dict):
        self.cat_cols, self.cont_cols = list(cat_cols), list(cont_cols)
        self.classes, self.stats = classes, stats
        self.unseen: dict[str, dict[str, int]] = {}  # label -> {column: rows with a value training never saw}
        # a checkpoint from before whole numbers were coded value by value holds a column with fractions as
        # "1.0", "1.5" (never "1"): such a column's new rows are coded as it was
        self.float_text = {
            c
            for c, values in classes.items()
            if any(FLOAT_WHOLE.fullmatch(v) for v in values) and not any(WHOLE.fullmatch(v) for v in values)
        }

    @classmethod
    def fit(
        cls,
        df: pd.DataFrame,
        cat_cols: Sequence[str],
        cont_cols: Sequence[str],
        num_transform: str = "standard",
        value_max_card: int = 0,
        value_cols: str = "all",
        id_cols: Sequence[str] = (),
        quantile_cap: int = 0,
    ) -> TabularProcessor:
        stats = {}
        for c in cont_cols:
            x = df[c].astype("float64")
            median = float(x.median()) if x.notna().any() else 0.0
            filled = x.fillna(median)
            std = float(filled.std(ddof=0))
            stats[c] = {
                "mean": float(filled.mean()),
                "std": std if std > 0 and math.isfinite(std) else 1.0,
                "median": median,
                "na": bool(x.isna().any()),
            }
            if num_transform == "quantile":
                # scikit-learn's default resolution, fewer for small tables so each quantile has rows behind it
                n_q = max(min(len(filled) // 10, 1000), 2)
                stats[c]["quantiles"] = capped_quantiles(filled.to_numpy(), n_q, quantile_cap).tolist()
            values = np.unique(x.dropna().to_numpy(dtype="float64"))  # missing is no value: `_na` says it
            if 0 < len(values) <= value_max_card and (value_cols == "all" or is_code_column(x) or c in id_cols):
                stats[c]["values"] = values.tolist()
        na_cols = [f"{c}_na" for c in cont_cols if stats[c]["na"]]
        flags = pd.DataFrame({f"{c}_na": df[c].isna() for c in cont_cols if stats[c]["na"]}, index=df.index)
        classes = {}
        for c in cat_cols:
            vals = category_values(df[c]).dropna().unique().tolist()
            classes[c] = sorted((str(v) for v in vals), key=_sort_key)
        for c in na_cols:
            classes[c] = ["False", "True"]
        as_values = [f"{c}_value" for c in cont_cols if "values" in stats[c]]
        for c in as_values:
            classes[c] = [f"{v:.15g}" for v in stats[c[:-6]]["values"]]  # 6 digits (:g) would merge 1234567 and 1234568
        if as_values:
            log.info(
                "continuous columns also categorical (<= data.value_max_card %d values, data.value_cols %s): %s",
                value_max_card,
                value_cols,
                ", ".join(f"{c[:-6]} ({len(classes[c])} values)" for c in as_values),
            )
        if len(flags.columns):
            log.info(
                "continuous columns with missing values in training (filled with the median, flagged): %s",
                ", ".join(c[:-3] for c in na_cols),
            )
        return cls(list(cat_cols) + na_cols + as_values, cont_cols, classes, stats)

    def computed(self, c: str) -> str | None:
        """For a categorical column computed from a continuous one (`<col>_na`, `<col>_value`), its kind."""
        if c.endswith("_na") and c[:-3] in self.stats:
            return "na"
        if c.endswith("_value") and "values" in self.stats.get(c[:-6], {}):
            return "value"
        return None

    def cardinalities(self) -> list[int]:
        """Embedding rows per categorical column: the training values plus the unknown row 0."""
        return [len(self.classes[c]) + 1 for c in self.cat_cols]

    def transform(self, df: pd.DataFrame, label: str | None = None) -> tuple[Tensor, Tensor]:
        """-> cats (N, n_cat) int64 codes, conts (N, n_cont) float32 normalised. With a label (validation,
        test, ...) the rows whose category training never saw (code 0, "unknown") are counted per
        column, kept in `unseen[label]` and logged."""
        n = len(df)
        cats = np.zeros((n, len(self.cat_cols)), dtype=np.int64)
        unseen = {}
        for j, c in enumerate(self.cat_cols):
            kind = self.computed(c) if c not in df.columns else None  # computed, not read
            if kind == "value":  # exact values: a new one is code 0, as the continuous column still reads it
                values = df[c[:-6]].astype("float64")
                cats[:, j] = codes_in(values, self.stats[c[:-6]]["values"]) + 1
                continue
            if kind == "na":
                values = df[c[:-3]].isna().astype("string")
            else:
                values = category_values(df[c], float_text=c in self.float_text)
            cats[:, j] = codes_in(values, self.classes[c]) + 1  # -1 -> 0
            n_unseen = int(((cats[:, j] == 0) & values.notna().to_numpy()).sum())
            if n_unseen:
                unseen[c] = n_unseen
        if label is not None:
            self.unseen[label] = unseen
            if unseen:
                log.warning(
                    "%s: %d rows; values never seen in training (coded 0, 'unknown'): %s",
                    label,
                    n,
                    ", ".join(f"{c} {k} rows ({k / max(n, 1):.0%})" for c, k in unseen.items()),
                )
        conts = np.zeros((n, len(self.cont_cols)), dtype=np.float32)
        for j, c in enumerate(self.cont_cols):
            s = self.stats[c]
            x = df[c].astype("float64").fillna(s["median"]).to_numpy()
            conts[:, j] = to_normal(x, np.asarray(s["quantiles"])) if "quantiles" in s else (x - s["mean"]) / s["std"]
        return torch.from_numpy(cats), torch.from_numpy(conts)

    def state(self) -> dict[str, Any]:
        return {"cat_cols": self.cat_cols, "cont_cols": self.cont_cols, "classes": self.classes, "stats": self.stats}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TabularProcessor:
        return cls(state["cat_cols"], state["cont_cols"], state["classes"], state["stats"])


def capped_quantiles(x: np.ndarray, n_q: int, cap: int = 0) -> np.ndarray:
    """x's n_q quantiles, each value's rows counted up to a 1/cap share of the column: a value holding more (zero
    in a column of counts, a sentinel such as -1 for "never") spans one of cap equal bins instead of its whole
    share, as a histogram GBDT gives a frequent value a bin of its own, and the rest keeps its resolution. A column
    without such a value, or cap=0, gets numpy's quantiles. Where every value holds more than a share (fewer
    distinct values than cap, each common: a day of the month) the share shrinks toward 0 and each value spans the
    same width; the loop's 50 steps stop short of the exact fixed point where nearly cap values are capped."""
    values, counts = np.unique(x, return_counts=True)
    share = len(x) / cap if cap else np.inf
    if counts.max() <= share:
        return np.quantile(x, np.linspace(0, 1, n_q))
    for _ in range(50):  # the share is of the capped total: its fixed point, approached from above
        share = np.minimum(counts, share).sum() / cap
    cum = np.cumsum(np.minimum(counts, share))
    at = np.searchsorted(cum / cum[-1], np.linspace(0, 1, n_q), side="left")
    return values[np.minimum(at, len(values) - 1)].astype("float64")


def to_normal(x: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """x through the training quantiles onto N(0, 1), as QuantileTransformer(output_distribution="normal")
    does it: interpolated up and down and averaged, so repeated values (a column of few distinct values)
    map to their rank's middle; values beyond the training range to the tails' clip. One difference: ties
    at the minimum (a column of mostly zeros) also go to their rank's middle, where scikit-learn sends
    them to the far tail."""
    refs = np.linspace(0, 1, len(quantiles))
    p = 0.5 * (np.interp(x, quantiles, refs) - np.interp(-x, -quantiles[::-1], -refs[::-1]))
    eps = 1e-7  # scikit-learn's BOUNDS_THRESHOLD: +-5.2 standard deviations at the ends
    return ndtri(np.clip(p, eps, 1 - eps))


def _row_name(path, row: int) -> str:
    loc = where(path, row)
    return loc["row_note"] or f"line {loc['line']}"


def target_prior(y: Tensor, task: str, n_classes: int) -> list[float]:
    """What a model knows before it sees a column: the class frequencies, or the target's [mean, std]."""
    if task == "classification":
        return (torch.bincount(y, minlength=n_classes).double() / len(y)).tolist()
    return [float(y.double().mean()), float(y.double().std(correction=0)) or 1.0]


def auto_y_range(y: np.ndarray) -> list[float]:
    """The lesson's y_range for a non-negative target: (0, 1.2 * max), so the sigmoid can reach the
    top values; a target with negatives gets 20 % headroom at both ends."""
    lo, hi = float(np.min(y)), float(np.max(y))
    if lo >= 0:
        return [0.0, 1.2 * hi]
    span = hi - lo
    return [lo - 0.2 * span, hi + 0.2 * span]


# ---------------------------------------------------------------- splits
def split_mask(
    df: pd.DataFrame,
    path,
    split: str,
    val_frac: float,
    split_seed: int,
    date_col: str | None,
    cutoff: str | None,
    val_start: str | None,
    val_end: str | None,
) -> np.ndarray:
    """Boolean validation mask: random (seeded fraction), cutoff (date >= cutoff) or window
    (val_start <= date <= val_end, both inclusive)."""
    if split == "random":
        rng = np.random.default_rng(split_seed)
        mask = np.zeros(len(df), dtype=bool)
        mask[rng.permutation(len(df))[: int(round(val_frac * len(df)))]] = True
        return mask
    if split not in ("cutoff", "window"):
        raise ConfigError(f"data.split={split!r}: expected random, cutoff or window")
    if not date_col:
        raise ConfigError(f"data.split={split} needs data.date_col")
    if date_col not in df.columns:
        raise DataError(path, f"missing date column {date_col!r}", line=1)
    dates = pd.to_datetime(df[date_col], errors="coerce")
    bad = dates.isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            path, f"{df[date_col].iloc[row]!r} is not a date", line=where(path, row)["line"], column=date_col
        )
    if split == "cutoff":
        if not cutoff:
            raise ConfigError("data.split=cutoff needs data.cutoff=YYYY-MM-DD")
        return (dates >= pd.Timestamp(cutoff)).to_numpy(copy=True)
    if not (val_start and val_end):
        raise ConfigError("data.split=window needs data.val_start and data.val_end")
    return ((dates >= pd.Timestamp(val_start)) & (dates <= pd.Timestamp(val_end))).to_numpy(copy=True)


# ---------------------------------------------------------------- the settings
@dataclass
class TabularConfig(DataConfig):
    """data=tabular: any CSV or Parquet table; naming the target is enough.

    cat_cols, cont_cols: lists, or auto (emblab.data.columns: every column not named, typed by fastai's cont_cat_split
    rule on the training rows with max_card; one list named and the other auto: the named columns take the named
    type, the rest are typed by the rule; a column different on every row, text or whole numbers, is an id and
    dropped; each choice logged). date_cols: dates expanded into parts (fastai's add_datepart). task: auto (text,
    booleans or few whole numbers: classification) | regression (log_target: train on log(y), as for sales) |
    classification. y_range: auto ((0, 1.2 * max) of the training target, the lesson's rule), [lo, hi], or null
    for no sigmoid. split: random (val_frac, split_seed) | cutoff (date_col >= cutoff) | window (val_start..val_end
    inclusive). test_path: a second table processed with the training codes (test/ metrics if it has the target).
    num_transform: standard (minus mean, over std: the lesson's) | quantile (onto a normal by training quantiles).
    quantile_cap: k > 0 counts a value's rows in a column's quantiles up to a 1/k share, so a value holding more
    (zero, a sentinel) takes one of k bins and the rest of the column the others (capped_quantiles); 0: plain.
    value_max_card: a continuous column with at most this many distinct training values is a category too,
    `<col>_value` (TabularProcessor); 0: off, the lesson's. value_cols: all (every such column) | codes (only
    whole numbers that look like codes or recurring amounts, columns.is_code_column, or ids whose values predict
    the target beyond their neighbours', columns.id_gain). member_batches: k > 1 gives
    each of model=tabular's k ensemble members training batches of its own (conf/data/tabular.yaml: model.n_members)."""

    _target_: str = "emblab.data.tabular.TabularDataModule"
    path: str = MISSING
    target: str = MISSING
    cat_cols: Any = "auto"
    cont_cols: Any = "auto"
    date_cols: list[str] = setting([])
    max_card: int = setting(20, ge=1)
    num_transform: str = setting("standard", choices=("standard", "quantile"))
    value_max_card: int = setting(0, ge=0)
    value_cols: str = setting("all", choices=("all", "codes"))
    quantile_cap: int = setting(0, ge=0)
    task: str = setting("auto", choices=("auto", "regression", "classification"))
    log_target: bool = False
    y_range: Any = "auto"
    split: str = setting("random", choices=("random", "cutoff", "window"))
    val_frac: float = setting(0.2, gt=0, lt=1)
    split_seed: int = setting(42, ge=0)
    date_col: str | None = None
    cutoff: str | None = None
    val_start: str | None = None
    val_end: str | None = None
    test_path: str | None = None
    batch_size: int = setting(128, ge=1)
    member_batches: int = setting(1, ge=1)

    def check(self, prefix: str) -> None:
        for key in ("cat_cols", "cont_cols"):
            value = getattr(self, key)
            if value != "auto" and not (isinstance(value, list) and all(isinstance(c, str) for c in value)):
                raise ConfigError(f"{prefix}.{key}={value!r}: expected auto or a list of column names")
        named = [c for c in (self.cat_cols, self.cont_cols) if c != "auto"]
        if len(named) == 2 and not self.cat_cols and not self.cont_cols:
            raise ConfigError(f"{prefix}.cat_cols and {prefix}.cont_cols are both empty: the model needs some input")
        inputs = [c for cols in named for c in cols] + list(self.date_cols)
        if self.target in inputs:
            raise ConfigError(
                f"{prefix}.target={self.target} is also an input ({prefix}."
                f"{next(k for k in ('cat_cols', 'cont_cols', 'date_cols') if self.target in getattr(self, k))}): "
                "the model would train on the answer"
            )
        twice = sorted({c for c in inputs if inputs.count(c) > 1})
        if twice:
            raise ConfigError(f"{prefix}: column(s) {twice} named more than once in cat_cols / cont_cols / date_cols")
        if self.log_target and self.task == "classification":
            raise ConfigError(f"{prefix}.log_target=true is for a regression target; task=classification")
        if self.y_range not in (None, "auto") and not (
            isinstance(self.y_range, list)
            and len(self.y_range) == 2
            and all(isinstance(v, (int, float)) for v in self.y_range)
            and self.y_range[0] < self.y_range[1]
        ):
            raise ConfigError(f"{prefix}.y_range={self.y_range}: expected auto, null or [lo, hi] with lo < hi")


# ---------------------------------------------------------------- the DataModule
class TabularDataModule(EmblabDataModule):
    """A table -> (cats, conts, y) tensors batched by index.

    task: regression (float target; log_target=true trains on log(y), as for sales) or classification
    (target values become classes 0..C-1, learned on training rows; an unseen class in validation is
    an error). y_range: auto (from the training target), a [lo, hi] pair, or null for no sigmoid.
    """

    kind = "tabular"

    Config = TabularConfig

    def __init__(self, cfg: TabularConfig, kind: str | None = None):
        super().__init__(cfg, kind)
        self.path, self.target, self.date_cols = cfg.path, cfg.target, list(cfg.date_cols)
        # None: auto, found from the training rows in setup
        self.cat_cols = None if cfg.cat_cols == "auto" else list(cfg.cat_cols)
        self.cont_cols = None if cfg.cont_cols == "auto" else list(cfg.cont_cols)
        self.task, self.log_target, self.y_range_cfg = cfg.task, cfg.log_target, cfg.y_range
        self.split_args = dict(
            split=cfg.split,
            val_frac=cfg.val_frac,
            split_seed=cfg.split_seed,
            date_col=cfg.date_col,
            cutoff=cfg.cutoff,
            val_start=cfg.val_start,
            val_end=cfg.val_end,
        )
        self.test_path = cfg.test_path
        self.proc: TabularProcessor | None = None
        self.target_classes: list[str] | None = None
        self.dropped: list[str] = []  # id columns left out of the inputs (auto)
        self.markers: dict[str, list[str]] = {}  # numeric columns' texts for missing ("NA"), found on training rows

    def _read(self, path, need_target: bool) -> pd.DataFrame:
        """The table with every named column checked present and its dates expanded into parts."""
        parts = {p for c in self.date_cols for names in date_part_names(c) for p in names}
        named = [c for c in (*(self.cat_cols or []), *(self.cont_cols or [])) if c not in parts] + self.date_cols
        df = read_table(path, named + ([self.target] if need_target else []))
        for c in self.date_cols:
            add_dateparts(df, c, path)
        if self.proc is not None:  # rows after training's (the test file)
            apply_markers(df, new_rows_markers(self.markers, self.cont_cols), path)
        return df

    def _numbers(self, df: pd.DataFrame, path) -> pd.DataFrame:
        for c in self.cont_cols:
            df[c] = numeric_column(df, c, path)
        return df

    def _find_columns(self, df: pd.DataFrame, train: pd.DataFrame) -> None:
        """cat_cols / cont_cols left at auto, and the task, from the training rows (emblab.data.columns)."""
        if self.task == "auto":
            self.task, why = find_task(train[self.target])
            log.info("%s: data.task=auto: %s (target %s: %s)", self.path, self.task, self.target, why)
        codes = [p for c in self.date_cols for p in date_part_names(c)[0]]
        amounts = [p for c in self.date_cols for p in date_part_names(c)[1]]
        if self.cat_cols is not None and self.cont_cols is not None:  # named: date parts join them
            self.cat_cols += codes
            self.cont_cols += amounts
            return
        split_date = self.split_args["date_col"]
        taken = {self.target, split_date, *(self.cat_cols or []), *(self.cont_cols or [])}
        rest = [c for c in df.columns if c not in taken]
        self.dropped = [c for c in rest if c not in {*codes, *amounts} and is_row_id(train[c])]
        # one list named: its columns have the type named, every other column is typed by the rule (name only what
        # the rule gets wrong: an id numbered 1..N is a category the rule reads as a number)
        cat, cont, why = cont_cat_split(train, [c for c in rest if c not in self.dropped], self.cfg.max_card)
        self.cat_cols = [*(self.cat_cols or []), *cat]
        self.cont_cols = [*(self.cont_cols or []), *cont]
        log_choices(self.path, cat, cont, why, self.dropped)
        if split_date in df.columns:
            log.info(
                "%s: %s splits the rows; data.date_cols=[%s] would also make it inputs",
                self.path,
                split_date,
                split_date,
            )

    def _labelled(self, df: pd.DataFrame, path) -> np.ndarray:
        """Which rows have a target. A blank target, or a missing-number text ("NA", as R writes it) in a numeric
        one, cannot be trained on or scored: those rows are left out, counted in the log."""
        apply_markers(df, missing_markers(df, [self.target]), path)
        missing = df[self.target].isna().to_numpy()
        if missing.any():
            log.warning(
                "%s: %d of %d rows have no target %s (first at %s): left out",
                path,
                int(missing.sum()),
                len(df),
                self.target,
                _row_name(path, df.index[np.flatnonzero(missing)[0]]),
            )
        return ~missing

    def _known_classes(self, df: pd.DataFrame, path, part: str) -> np.ndarray:
        """Rows whose class training saw: a class only in validation or test rows (a rare one the split put
        there) has no output to score; those rows are left out of that part, counted in the log."""
        values = category_values(df[self.target])
        known = values.isin(self.target_classes).to_numpy()
        if not known.all():
            unknown = values[~known]
            log.warning(
                "%s: %d %s rows of classes the training rows never hold (%s; first at %s): left out of %s",
                path,
                int((~known).sum()),
                part,
                ", ".join(f"{v!r} {k}" for v, k in unknown.value_counts().head(5).items()),
                _row_name(path, unknown.index[0]),
                part,
            )
        return known

    def _target_matrix(self, train_df: pd.DataFrame) -> np.ndarray:
        """(N, d) training targets for columns.id_columns: one-hot classes, or the (log) number as one column."""
        if self.task == "classification":
            return pd.get_dummies(category_values(train_df[self.target])).to_numpy(dtype="float64")
        return self._targets(train_df, self.path).double().numpy()[:, None]

    def _targets(self, df: pd.DataFrame, path) -> Tensor:
        if self.task == "classification":
            codes = codes_in(category_values(df[self.target]), self.target_classes)
            return torch.from_numpy(codes)  # every row labelled, of a known class (setup)
        y = numeric_column(df, self.target, path, allow_nan=False).to_numpy()
        if self.log_target:
            if (y <= 0).any():
                row = int(np.flatnonzero(y <= 0)[0])
                raise DataError(
                    path,
                    f"log_target needs positive targets, found {y[row]}",
                    line=where(path, df.index[row])["line"],
                    column=self.target,
                )
            y = np.log(y)
        return torch.from_numpy(y.astype(np.float32))

    def setup(self, stage: str | None = None) -> None:
        if self.proc is not None:
            return
        df = read_table(self.path, [self.target])
        is_val = split_mask(df, self.path, **self.split_args)  # before the dates become parts: split_date may be one
        df = self._read(self.path, need_target=True)
        labelled = self._labelled(df, self.path)
        df, is_val = df[labelled], is_val[labelled]
        if not len(df):
            raise DataError(self.path, f"no row has a target ({self.target})", column=self.target)
        inputs = [c for c in df.columns if c != self.target]
        self.markers = missing_markers(df[~is_val], inputs)
        apply_markers(df, self.markers, self.path)
        self.split_id = split_digest(is_val)
        self._find_columns(df, df[~is_val])
        if not self.cat_cols and not self.cont_cols:
            raise DataError(self.path, f"no input columns besides the target {self.target!r}")
        df = self._numbers(df, self.path)
        train_df, val_df = df[~is_val], df[is_val]
        ids = {}
        if self.cfg.value_cols == "codes" and self.cfg.value_max_card:
            ids = id_columns(train_df, self.cont_cols, self._target_matrix(train_df), self.cfg.value_max_card)
            if ids:
                log.info(
                    "%s: continuous columns read as ids too (each value's mean predicts the target beyond its "
                    "neighbours', columns.id_gain): %s",
                    self.path,
                    ", ".join(f"{c} (gain {g:.3f})" for c, g in ids.items()),
                )
        self.proc = TabularProcessor.fit(
            train_df,
            self.cat_cols,
            self.cont_cols,
            self.cfg.num_transform,
            self.cfg.value_max_card,
            self.cfg.value_cols,
            list(ids),
            self.cfg.quantile_cap if self.cfg.num_transform == "quantile" else 0,
        )
        if self.task == "classification":
            self.target_classes = sorted(
                category_values(train_df[self.target]).dropna().unique().tolist(), key=_sort_key
            )
            if len(self.target_classes) < 2:
                raise DataError(
                    self.path,
                    f"the target has one class in the training rows ({self.target_classes}): nothing to classify",
                    column=self.target,
                )
            known = self._known_classes(df, self.path, "validation") | ~is_val
            df, is_val, val_df = df[known], is_val[known], val_df[known[is_val]]
        y_all = self._targets(df, self.path)
        y_tr, y_val = y_all[torch.from_numpy(~is_val)], y_all[torch.from_numpy(is_val)]
        self.train_ds = TensorBatchDataset(*self.proc.transform(train_df), y_tr)
        self.val_ds = TensorBatchDataset(*self.proc.transform(val_df, "validation"), y_val) if len(val_df) else None
        if self.test_path:
            has_target = self.target in read_table(self.test_path).columns
            test_df = self._read(self.test_path, need_target=has_target)
            if has_target:
                test_df = test_df[self._labelled(test_df, self.test_path)]
                if self.task == "classification":
                    test_df = test_df[self._known_classes(test_df, self.test_path, "test")]
            test_df = self._numbers(test_df, self.test_path)
            cats, conts = self.proc.transform(test_df, "test")
            y = self._targets(test_df, self.test_path) if has_target else torch.zeros(len(test_df))
            self.test_ds = TensorBatchDataset(cats, conts, y)
        log.info(
            "table %s: %d train / %d validation rows, %d categorical (%s), %d continuous",
            self.path,
            len(train_df),
            len(val_df),
            len(self.proc.cat_cols),
            ", ".join(self.proc.cat_cols) or "none",
            len(self.cont_cols),
        )

    def y_range(self) -> list[float] | None:
        if self.task == "classification" or self.y_range_cfg is None:
            return None
        if self.y_range_cfg == "auto":
            return auto_y_range(self.train_ds.tensors[2].numpy())
        return [float(v) for v in self.y_range_cfg]

    def train_dataloader(self):
        return self._loader(self.train_ds, train=True, members=self.cfg.member_batches)

    def dims(self) -> dict[str, Any]:
        return {
            "emb_card": self.proc.cardinalities(),
            "n_cont": len(self.cont_cols),
            "cat_names": self.proc.cat_cols,
            "out_sz": len(self.target_classes) if self.task == "classification" else 1,
            "task": self.task,
            "y_range": self.y_range(),
            "log_target": self.log_target,
            "prior": target_prior(self.train_ds.tensors[2], self.task, len(self.target_classes or [])),
        }

    def unseen_counts(self) -> dict[str, dict[str, int]]:
        return dict(self.proc.unseen) if self.proc else {}

    def artifacts(self) -> dict[str, Any]:
        return {
            "processor": self.proc.state(),
            "target": self.target,
            "task": self.task,
            "log_target": self.log_target,
            "target_classes": self.target_classes,
            "date_cols": self.date_cols,  # expanded into parts again for new rows (emblab.predict table=)
            "dropped": self.dropped,  # id columns: predict copies them to its output
            "markers": self.markers,  # texts read as missing numbers, for new rows too
            "split": self.split_id,
        }
