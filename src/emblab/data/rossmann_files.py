"""Kaggle's Rossmann files and the lesson's external tables, read with exact error locations:
train.csv, test.csv, store.csv, store_states.csv, googletrend/, weather/. Shared by the DataModule
(rossmann.py) and the generator's command (rossmann_synth.py), which builds on a real store table.

Quirks of the real files, all read untouched:
- store.csv, test.csv, train.csv quote their header and string fields; pandas' CSV parser handles it.
- test.csv: store 622 has a blank Open on 11 weekdays (2015-09-05..17, no holiday). We read them as
  open (Open=1), count them in the log, and predict sales: Kaggle scores no zero-sales day, so a
  prediction for a day that was shut costs nothing, while 0 for an open day would be a 100 % error.
- train.csv (real one): StateHoliday mixes "0" and 0; everything is read as text first.
- store_states.csv: Bremen and Lower Saxony share the code "HB,NI" (quoted). Its trend is NI's and
  its weather Niedersachsen's, as in the notebook.
- googletrend/Rossmann_DE[_XX].csv: German header ("Woche", "Dez. 2012 - Sep. 2015"); weeks run
  Sunday..Saturday; a day takes the week the notebook's (State, Year, ISO Week) join gives it (see
  add_features). Rossmann_DE is Germany (trend_DE).
- weather/<Land>.csv: `;`-separated, CRLF, "NA" for missing, one file per state named in German.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from emblab.core.errors import DataError
from emblab.data.germany import STATES
from emblab.data.tabular import numeric_column, read_table

log = logging.getLogger(__name__)

TRAIN_COLS = ["Store", "DayOfWeek", "Date", "Sales", "Customers", "Open", "Promo", "StateHoliday", "SchoolHoliday"]
TEST_COLS = ["Id", "Store", "DayOfWeek", "Date", "Open", "Promo", "StateHoliday", "SchoolHoliday"]
STORE_COLS = [
    "Store",
    "StoreType",
    "Assortment",
    "CompetitionDistance",
    "CompetitionOpenSinceMonth",
    "CompetitionOpenSinceYear",
    "Promo2",
    "Promo2SinceWeek",
    "Promo2SinceYear",
    "PromoInterval",
]
WEATHER_COLS = [
    "Max_TemperatureC",
    "Mean_TemperatureC",
    "Min_TemperatureC",
    "Max_Humidity",
    "Mean_Humidity",
    "Min_Humidity",
    "Max_Wind_SpeedKm_h",
    "Mean_Wind_SpeedKm_h",
    "CloudCover",
]
# `git hash-object train.csv` of Kaggle's original train.csv: a user's copy can be checked against it
KAGGLE_TRAIN_BLOB = "3c07a69870c2d50f7120df84f90378703c78e599"


def git_blob_id(path) -> str:
    """What `git hash-object FILE` prints: sha1 of b"blob <size>\\0" + the file's bytes."""
    path = Path(path)
    h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------- readers
def _ints(df: pd.DataFrame, cols: Sequence[str], path, allow_nan: bool = False) -> None:
    for c in cols:
        df[c] = numeric_column(df, c, path, allow_nan=allow_nan)


def _dates(df: pd.DataFrame, path, col: str = "Date") -> None:
    dates = pd.to_datetime(df[col], format="%Y-%m-%d", errors="coerce")
    if dates.isna().any():
        row = int(np.flatnonzero(dates.isna().to_numpy())[0])
        raise DataError(path, f"{df[col].iloc[row]!r} is not a YYYY-MM-DD date", line=row + 2, column=col)
    df[col] = dates


def read_sales(path, test: bool = False) -> pd.DataFrame:
    """train.csv or test.csv. StateHoliday stays text ("0", "a", "b", "c"); test's blank Open -> 1."""
    path = Path(path)
    cols = TEST_COLS if test else TRAIN_COLS
    if not path.is_file():
        raise DataError(path, "file not found")
    df = pd.read_csv(path, dtype={"StateHoliday": str}, low_memory=False)
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise DataError(path, f"missing column(s) {missing}; the file has {list(df.columns)}", line=1)
    df = df[cols].copy()
    _dates(df, path)
    _ints(df, [c for c in cols if c not in ("Date", "StateHoliday", "Open")], path)
    n_blank = int(df["Open"].isna().sum())
    if n_blank and not test:
        row = int(np.flatnonzero(df["Open"].isna().to_numpy())[0])
        raise DataError(path, "Open is blank", line=row + 2, column="Open")
    if n_blank:
        stores = sorted(df.loc[df.Open.isna(), "Store"].astype(int).unique().tolist())
        log.warning("%s: %d rows with a blank Open (stores %s) read as open", path, n_blank, stores)
    df["Open"] = numeric_column(df.fillna({"Open": 1}), "Open", path)
    df["StateHoliday"] = df["StateHoliday"].fillna("0").astype(str)
    df.attrs["blank_open"] = n_blank  # read by the caller before any join drops attrs
    return df


def read_store(path) -> pd.DataFrame:
    df = read_table(path, STORE_COLS)[STORE_COLS].copy()
    _ints(df, ["Store", "Promo2"], path)
    _ints(
        df,
        [
            "CompetitionDistance",
            "CompetitionOpenSinceMonth",
            "CompetitionOpenSinceYear",
            "Promo2SinceWeek",
            "Promo2SinceYear",
        ],
        path,
        allow_nan=True,
    )
    return df


def read_store_states(path) -> pd.DataFrame:
    df = read_table(path, ["Store", "State"])[["Store", "State"]].copy()
    _ints(df, ["Store"], path)
    unknown = ~df.State.isin(STATES)
    if unknown.any():
        row = int(np.flatnonzero(unknown.to_numpy())[0])
        raise DataError(path, f"unknown state code {df.State.iloc[row]!r}", line=row + 2, column="State")
    return df


def read_googletrend(folder) -> pd.DataFrame:
    """-> DataFrame(State, WeekStart, trend) for the states and "DE" for Germany as a whole."""
    frames = []
    for path in sorted(Path(folder).glob("Rossmann_DE*.csv")):
        df = pd.read_csv(path)
        if df.shape[1] != 2:
            raise DataError(path, f"expected 2 columns (week, trend), found {df.shape[1]}", line=1)
        week, trend = df.columns  # German headers: "Woche", "Dez. 2012 - Sep. 2015"
        start = df[week].astype(str).str.split(" - ", n=1).str[0]
        parsed = pd.to_datetime(start, format="%Y-%m-%d", errors="coerce")
        if parsed.isna().any():
            row = int(np.flatnonzero(parsed.isna().to_numpy())[0])
            raise DataError(path, f"{df[week].iloc[row]!r} is not 'YYYY-MM-DD - YYYY-MM-DD'", line=row + 2, column=week)
        code = path.stem.split("_")[2] if path.stem.count("_") >= 2 else "DE"
        frames.append(
            pd.DataFrame(
                {
                    "State": "HB,NI" if code == "NI" else code,
                    "WeekStart": parsed,
                    "trend": numeric_column(df, trend, path, allow_nan=False),
                }
            )
        )
    if not frames:
        raise DataError(folder, "no Rossmann_DE*.csv files")
    return pd.concat(frames, ignore_index=True)


def read_weather(folder) -> pd.DataFrame:
    """-> DataFrame(State, Date, weather columns..., Events) for every state whose file is there."""
    name_to_codes: dict[str, list[str]] = {}
    for code, (_, _, name) in STATES.items():
        name_to_codes.setdefault(name, []).append(code)
    frames = []
    for path in sorted(Path(folder).glob("*.csv")):
        if path.stem not in name_to_codes:
            raise DataError(path, f"weather file for an unknown state; expected one of {sorted(name_to_codes)}")
        df = read_table_sep(path, ["Date", *WEATHER_COLS, "Events"])
        _dates(df, path)
        for c in WEATHER_COLS:
            df[c] = numeric_column(df, c, path)
        for code in name_to_codes[path.stem]:  # Niedersachsen serves both NI and "HB,NI"
            frames.append(df[["Date", *WEATHER_COLS, "Events"]].assign(State=code))
    if not frames:
        raise DataError(folder, "no weather CSV files")
    return pd.concat(frames, ignore_index=True)


def read_table_sep(path: Path, columns: Sequence[str]) -> pd.DataFrame:
    df = pd.read_csv(path, sep=";", na_values=["NA"], keep_default_na=False, low_memory=False)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(path, f"missing column(s) {missing}; the file has {list(df.columns)}", line=1)
    df["Events"] = df["Events"].replace("", np.nan)
    return df
