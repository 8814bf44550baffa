"""What a table's columns are, found from its training rows, so that naming the target is enough (data=tabular with
cat_cols / cont_cols / task left at auto): fastai's `cont_cat_split` rule for inputs, `add_datepart` for dates,
row ids dropped. Every choice is logged, per column, and can be overridden by naming the columns."""

from __future__ import annotations

import logging
import re

import numpy as np
import pandas as pd

from emblab.core.errors import DataError

log = logging.getLogger(__name__)

DATE_PARTS = ("Year", "Month", "Week", "Day", "Dayofweek", "Dayofyear")
DT_NAMES = {"Dayofweek": "day_of_week", "Dayofyear": "day_of_year"}  # fastai's part names, pandas' attributes
DATE_FLAGS = ("Is_month_end", "Is_month_start", "Is_quarter_end", "Is_quarter_start", "Is_year_end", "Is_year_start")
# what spreadsheets and R write for a missing number (Kaggle's House Prices: "NA"); only in a column that is
# otherwise all numbers is such a text a missing value, elsewhere it stays a category ("NA": no alley)
MISSING_MARKERS = ("NA", "N/A", "n/a", "NaN", "nan", "NULL", "null", "None", "?", "-", ".")
MAX_CLASSES = 10  # task=auto: a numeric target with at most this many distinct whole values is a class label
# is_code_column: a column of whole numbers whose values are codes or recurring amounts (a capital gain of 7688)
# rather than a measure of size: its distinct values are sparse on their range's grid and each recurs
CODE_MAX_FILL = 1 / 20  # distinct values over the whole numbers (on their common step) between min and max
CODE_MIN_ROWS = 5  # training rows per distinct value, the commonest value left aside
# id_gain: a densely numbered id (people, schools, communes in a panel) fills its range as an age does, so only the
# target tells them apart: an id's own values predict it where its neighbours' do not
ID_BINS = 48  # the number as the net sees it: quantile bins, as many as the piecewise-linear encoding's (model.n_bins)
ID_FOLDS = 5
ID_MIN_GAIN = 0.03  # of the target's variance, on held-out folds: an embedding per value must have that to learn


def add_dateparts(df: pd.DataFrame, col: str, path) -> tuple[list[str], list[str]]:
    """fastai's add_datepart, in place: `col` becomes <prefix>Year, Month, Week (ISO), Day, Dayofweek, Dayofyear,
    the six Is_* flags and Elapsed (seconds since 1970), prefix = col without a trailing Date/date; the column
    itself is dropped. A blank date leaves its parts missing; a value that is not a date is an error naming its
    line. Times with differing UTC offsets (a zone's summer and winter time, or some with an offset and some
    without) are read in UTC, with a log line. Returns (parts that are codes, parts that are quantities) for when
    the user names the columns."""
    raw = df[col]
    try:
        dates = pd.to_datetime(raw, errors="coerce")
    except ValueError:  # pandas reads one offset per column; UTC is the one time every value has
        dates = pd.to_datetime(raw, errors="coerce", utc=True)
        log.warning("%s: %s holds times with differing UTC offsets: its parts are read in UTC", path, col)
    bad = dates.isna() & raw.notna() & (raw.astype("string").str.strip() != "")
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        line = None if str(path).lower().endswith((".parquet", ".pq")) else row + 2
        raise DataError(path, f"{raw.iloc[row]!r} is not a date (data.date_cols)", line=line, column=col)
    prefix = re.sub("[Dd]ate$", "", col)
    for part in DATE_PARTS:
        values = dates.dt.isocalendar().week if part == "Week" else getattr(dates.dt, DT_NAMES.get(part, part.lower()))
        df[prefix + part] = values.astype("Int64")
    for flag in DATE_FLAGS:
        df[prefix + flag] = getattr(dates.dt, flag.lower()).where(dates.notna()).astype("boolean")
    naive = dates.dt.tz_convert(None) if dates.dt.tz is not None else dates
    epoch = pd.Timestamp(0).as_unit(naive.dt.unit)  # in the dates' own unit: year 200 overflows nanoseconds
    df[prefix + "Elapsed"] = (naive - epoch).dt.total_seconds()  # NaN where the date is blank
    del df[col]
    return date_part_names(col)


def date_part_names(col: str) -> tuple[list[str], list[str]]:
    """The parts add_dateparts makes of `col`: (codes, quantities)."""
    prefix = re.sub("[Dd]ate$", "", col)
    return [prefix + p for p in (*DATE_PARTS, *DATE_FLAGS)], [prefix + "Elapsed"]


def whole_numbers(s: pd.Series) -> bool:
    """An integer column, or a float one whose values are all whole (an integer column with blanks reads as float)."""
    if pd.api.types.is_bool_dtype(s) or not pd.api.types.is_numeric_dtype(s):
        return False
    if pd.api.types.is_integer_dtype(s):
        return True
    v = s.dropna().to_numpy(dtype="float64")
    return len(v) > 0 and bool(np.all(whole_values(v)))


def whole_values(v: np.ndarray) -> np.ndarray:
    """Which values are whole numbers held exactly (beyond 2^53 a float is not); NaN and inf are not."""
    return (v == np.round(v)) & (np.abs(v) < 2**53)


def rows_per_value(counts: np.ndarray) -> float:
    """Rows per distinct value, the commonest left aside: in a column mostly 0 the other values must recur too."""
    return (counts.sum() - counts.max()) / (len(counts) - 1)


def is_code_column(s: pd.Series) -> bool:
    """Whole numbers whose exact values matter more than their distances: few distinct values spread thinly over
    their range (on the step that their differences share) and each value recurring. A tree's split isolates
    such a value; a smooth encoding of the number blurs it with its neighbours (data.value_cols=codes)."""
    if not whole_numbers(s):
        return False
    values, counts = np.unique(s.dropna().to_numpy(dtype="float64"), return_counts=True)
    if len(values) < 3:
        return False
    step = int(np.gcd.reduce(np.diff(values).astype(np.int64)))
    fill = len(values) / ((values[-1] - values[0]) / step + 1)
    return bool(fill < CODE_MAX_FILL and rows_per_value(counts) >= CODE_MIN_ROWS)


def id_gain(x: np.ndarray, y: np.ndarray) -> float:
    """How much better each value's own mean predicts the target than its quantile bin's mean does, on held-out
    folds of the training rows, as a share of the target's variance (so its scale does not matter). x: (N,)
    numbers without missing; y: (N, d), the target as one column (regression) or one-hot (classes). Near 0 for a
    measure (an age: neighbours alike) and below 0 for one whose values are too few rows each; large for an id
    whose values differ in the target."""
    n = len(x)
    fold = np.random.default_rng(0).permutation(n) % ID_FOLDS
    edges = np.unique(np.quantile(x, np.linspace(0, 1, ID_BINS + 1)))
    groups = {"value": np.unique(x, return_inverse=True)[1], "bin": np.searchsorted(edges[1:-1], x, side="right")}
    err = dict.fromkeys(groups, 0.0)
    for f in range(ID_FOLDS):
        tr, te = fold != f, fold == f
        for name, g in groups.items():
            m = int(g.max()) + 1
            sums = np.zeros((m, y.shape[1]))
            np.add.at(sums, g[tr], y[tr])
            counts = np.bincount(g[tr], minlength=m)[:, None]
            means = np.where(counts > 0, sums / np.maximum(counts, 1), y[tr].mean(0))  # unseen: the overall mean
            err[name] += float(((means[g[te]] - y[te]) ** 2).sum())
    total = float(((y - y.mean(0)) ** 2).sum())
    return (err["bin"] - err["value"]) / total if total > 0 else 0.0


def id_columns(train: pd.DataFrame, columns: list[str], y: np.ndarray, max_card: int) -> dict[str, float]:
    """{column: id_gain} for the continuous columns read as ids (data.value_cols=codes): whole numbers, not codes
    already, at most max_card values, each recurring (CODE_MIN_ROWS), and id_gain >= ID_MIN_GAIN."""
    found = {}
    for c in columns:
        s = train[c]
        if not whole_numbers(s) or is_code_column(s):
            continue
        keep = s.notna().to_numpy()
        values, counts = np.unique(s[keep].to_numpy(dtype="float64"), return_counts=True)
        if not 3 <= len(values) <= max_card or rows_per_value(counts) < CODE_MIN_ROWS:
            continue
        gain = id_gain(s[keep].to_numpy(dtype="float64"), y[keep])
        if gain >= ID_MIN_GAIN:
            found[c] = gain
    return found


def missing_markers(train: pd.DataFrame, columns: list[str]) -> dict[str, list[str]]:
    """{column: [marker, ...]} for each text column whose training values are numbers but for MISSING_MARKERS."""
    found = {}
    for c in columns:
        s = train[c]
        if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
            continue
        text = s.dropna().astype("string").str.strip()
        markers = text.isin(MISSING_MARKERS)
        if markers.any() and not markers.all() and pd.to_numeric(text[~markers], errors="coerce").notna().all():
            found[c] = sorted(text[markers].unique().tolist())
    return found


def apply_markers(df: pd.DataFrame, markers: dict[str, list[str]], path) -> None:
    """The marker texts of each column become missing (filled and flagged as any missing number), counted in the log."""
    counts, found = {}, {}
    for c, tokens in markers.items():
        if c in df.columns and not pd.api.types.is_numeric_dtype(df[c]):
            hit = df[c].astype("string").str.strip().isin(tokens)
            if hit.any():
                counts[c] = int(hit.sum())
                found[c] = sorted(df[c][hit].astype("string").str.strip().unique().tolist())
            masked = df[c].mask(hit)
            numbers = pd.to_numeric(masked, errors="coerce")
            # a text that is neither a number nor a marker stays, for numeric_column to name its line
            df[c] = numbers if bool((numbers.notna() | masked.isna()).all()) else masked
    if counts:
        log.info(
            "%s: read as missing numbers: %s",
            path,
            "; ".join(f"{c} {'/'.join(map(repr, found[c]))} in {k} rows" for c, k in counts.items()),
        )


def new_rows_markers(markers: dict[str, list[str]], cont_cols: list[str]) -> dict[str, list[str]]:
    """For rows after training (validation, test, predict): the training markers, and in any column training
    found continuous every marker (a test file may write NA where the training rows had no missing number)."""
    return {**{c: list(MISSING_MARKERS) for c in cont_cols}, **markers}


def is_row_id(s: pd.Series) -> bool:
    """Text or whole numbers, every value present and different: an id (a name, a row number), not a feature."""
    if len(s) < 2 or s.isna().any() or pd.api.types.is_bool_dtype(s):
        return False
    if pd.api.types.is_numeric_dtype(s) and not whole_numbers(s):
        return False
    return bool(s.nunique() == len(s))


def cont_cat_split(train: pd.DataFrame, columns: list[str], max_card: int) -> tuple[list[str], list[str], dict]:
    """fastai's rule on the training rows: a float column, or whole numbers with more than max_card distinct values,
    is continuous; text, booleans and whole numbers with at most max_card values are categorical.
    Returns (cat, cont, {column: the reason, for the log})."""
    cat, cont, why = [], [], {}
    for c in columns:
        s = train[c]
        n = int(s.nunique())
        if pd.api.types.is_bool_dtype(s) or not pd.api.types.is_numeric_dtype(s):
            cat.append(c)
            why[c] = f"{'boolean' if pd.api.types.is_bool_dtype(s) else 'text'}, {n} values"
        elif whole_numbers(s) and n <= max_card:
            cat.append(c)
            why[c] = f"whole numbers, {n} values <= data.max_card {max_card}"
        else:
            cont.append(c)
            why[c] = "fractions" if not whole_numbers(s) else f"whole numbers, {n} values > data.max_card {max_card}"
    return cat, cont, why


def find_task(target: pd.Series) -> tuple[str, str]:
    """task=auto: text, booleans or at most MAX_CLASSES distinct whole numbers are classes; other numbers a
    regression. Returns (task, the reason)."""
    n = int(target.nunique())
    if not pd.api.types.is_numeric_dtype(target) and not pd.api.types.is_bool_dtype(target):
        numbers = pd.to_numeric(target.dropna(), errors="coerce")
        if numbers.notna().mean() >= 0.9:  # numbers with a stray word: the numeric check names the word's line
            target = numbers
    if pd.api.types.is_bool_dtype(target) or not pd.api.types.is_numeric_dtype(target):
        return "classification", f"a text or boolean target with {n} classes"
    if whole_numbers(target) and n <= MAX_CLASSES:
        return "classification", f"{n} distinct whole numbers (at most {MAX_CLASSES}: classes)"
    return "regression", f"numbers, {n} distinct values"


def log_choices(path, cat: list[str], cont: list[str], why: dict, dropped: list[str]) -> None:
    def listed(cols):
        return "; ".join(f"{c} ({why[c]})" for c in cols) or "none"

    log.info("%s: categorical columns (auto): %s", path, listed(cat))
    log.info("%s: continuous columns (auto): %s", path, listed(cont))
    for c in dropped:
        log.info("%s: column %s is different on every training row (an id): dropped from the inputs", path, c)
