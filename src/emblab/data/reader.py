"""Reading an interactions file: CSV or TSV with any separator (guessed, or given), a header or named columns, or
Parquet, with pyarrow; no Python runs per row, except to name the line and column of a bad one. Ids are read as
text and become integers only when every one is an integer, so a column is read alike in training and predict."""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv

from emblab.core.errors import DataError, closest

log = logging.getLogger(__name__)


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


SEPARATORS = ("\t", ",", ";", "|", " ")


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
    raise DataError(
        path,
        "one column only in its first lines (no tab, comma, semicolon, pipe or space splits them "
        "alike): give data.sep=...",
        line=1,
    )


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
            raise DataError(
                path, f"no column {name!r} (data.{role}_col){closest(name, names)}; its columns: {names}", line=1
            )
    types = {
        "user": pa.string(),
        "item": pa.string(),
        "time": pa.string(),
        "rating": pa.float64(),
        "weight": pa.float64(),
    }
    try:
        if parquet:
            table = pq.read_table(path, columns=list(roles.values()))
            table = pa.table({role: table[col].cast(types[role]) for role, col in roles.items()})
        else:
            table = pv.read_csv(
                path,
                read_options=pv.ReadOptions(column_names=names if layout.columns else None),
                parse_options=pv.ParseOptions(delimiter=sep),
                convert_options=pv.ConvertOptions(
                    include_columns=list(roles.values()),
                    column_types={roles[r]: types[r] for r in roles},
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            ).rename_columns(list(roles))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, UnicodeDecodeError) as e:
        if parquet:
            raise DataError(
                path, f"a column cannot be read as its role needs ({str(e).splitlines()[0][:160]})"
            ) from None
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
            ok = fits_float32(out[role]) & (out[role] > 0 if role == "weight" else True)
            bad[role] = ~ok
    for role, mask in bad.items():
        if mask.any():
            row = int(np.flatnonzero(mask)[0])
            if parquet:
                raise DataError(
                    path,
                    f"row {row + 1}: a {'blank id' if role in ('user', 'item') else 'bad value'}",
                    column=roles[role],
                )
            first_problem(path, layout, sep, names, data_row=row)
    if "time" in roles:
        out["time"] = parse_times(path, table["time"].combine_chunks(), roles["time"])
    return out


def fits_float32(x):
    """Finite, and finite still as float32 (the tensors a model trains on)."""
    return np.abs(x) <= np.finfo(np.float32).max


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
                raise DataError(
                    path, f"not UTF-8 text ({e.reason}, byte {e.start + 1} of the line)", line=lineno
                ) from None
            if (lineno == 1 and not layout.columns) or not line.strip():
                continue
            n_data += 1
            if data_row is not None and n_data != data_row + 1:
                continue
            try:
                fields = next(csv.reader([line], delimiter=sep), [])
            except csv.Error as e:  # a lone carriage return inside the line, say
                raise DataError(path, f"cannot be split into fields ({e}): {line[:80]!r}", line=lineno) from None
            if len(fields) != len(names):
                raise DataError(
                    path,
                    f"expected {len(names)} fields separated by {sep!r}, found {len(fields)}: {line[:80]!r}",
                    line=lineno,
                )
            for role, j in index.items():
                value, col = fields[j].strip(), names[j]
                if role in ("user", "item") and not value:
                    raise DataError(path, f"a blank {role} id", line=lineno, column=col)
                if role in ("rating", "weight"):
                    try:
                        number = float(value)
                    except ValueError:
                        raise DataError(path, f"{value!r} is not a number", line=lineno, column=col) from None
                    if not fits_float32(number) or (role == "weight" and number <= 0):
                        what = (
                            "not a finite number"
                            if not np.isfinite(number)
                            else "beyond float32's range, what training holds (+-3.4e38)"
                            if not fits_float32(number)
                            else "not above 0 (a count or a confidence)"
                        )
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
