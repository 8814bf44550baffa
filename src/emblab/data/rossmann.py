"""Rossmann Store Sales as in fast.ai's lesson notebook: Kaggle's train/test/store files, optionally
the external store_states.csv, googletrend/ and weather/, turned into 22 categorical and 16
continuous columns, log(Sales) as the target.

Without `root` the data come from emblab's generator (rossmann_synth.py) in the exact Kaggle schema;
with `root=DIR` the same recipe reads the user's real files, no code change.

The files are read, and their quirks handled, in rossmann_files.py.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from emblab.core.errors import ConfigError, DataError
from emblab.core.settings import checked, setting
from emblab.data.base import DataConfig, EmblabDataModule, TensorBatchDataset, split_digest
from emblab.data.rossmann_files import (
    KAGGLE_TRAIN_BLOB,
    WEATHER_COLS,
    git_blob_id,
    read_googletrend,
    read_sales,
    read_store,
    read_store_states,
    read_weather,
)
from emblab.data.rossmann_gen import GENERATOR_VERSION, generate, write
from emblab.data.tabular import TabularProcessor, target_prior

log = logging.getLogger(__name__)

# the notebook's columns
CAT_VARS = [
    "Store",
    "DayOfWeek",
    "Year",
    "Month",
    "Day",
    "StateHoliday",
    "CompetitionMonthsOpen",
    "Promo2Weeks",
    "StoreType",
    "Assortment",
    "PromoInterval",
    "CompetitionOpenSinceYear",
    "Promo2SinceYear",
    "State",
    "Week",
    "Events",
    "Promo_fw",
    "Promo_bw",
    "StateHoliday_fw",
    "StateHoliday_bw",
    "SchoolHoliday_fw",
    "SchoolHoliday_bw",
]
CONT_VARS = [
    "CompetitionDistance",
    *WEATHER_COLS,
    "trend",
    "trend_DE",
    "AfterStateHoliday",
    "BeforeStateHoliday",
    "Promo",
    "SchoolHoliday",
]
NEEDS = {
    "State": "store_states",
    "Events": "weather",
    "trend": "googletrend",
    "trend_DE": "googletrend",
    **{c: "weather" for c in WEATHER_COLS},
}
EVENTS = ["SchoolHoliday", "StateHoliday", "Promo"]


# ---------------------------------------------------------------- features (fast.ai notebook)
def add_elapsed(df: pd.DataFrame, fields: Sequence[str] = EVENTS) -> pd.DataFrame:
    """Per store: days since the last (After<f>, >= 0) and until the next (Before<f>, as a negative
    number of days, as in the notebook) day with each event, 0 on the day itself and where there is
    none; and the event count over this and the previous 6
    days (<f>_bw) and this and the next 6 (<f>_fw). Computed on a stores x days grid with cumulative
    max/min/sum, no per-store Python loop; train and test rows together, so test sees its past."""
    stores, s_idx = np.unique(df.Store.to_numpy(), return_inverse=True)
    d0 = df.Date.min()
    day = (df.Date - d0).dt.days.to_numpy()
    S, D = len(stores), int(day.max()) + 1
    t = np.arange(D)[None, :]
    for f in fields:
        E = np.zeros((S, D), dtype=bool)
        E[s_idx, day] = df[f].to_numpy().astype(bool)
        last = np.maximum.accumulate(np.where(E, t, -1), axis=1)  # (S, D) last event day <= t
        nxt = np.flip(np.minimum.accumulate(np.flip(np.where(E, t, D), 1), axis=1), 1)  # first event day >= t
        # the notebook's get_elapsed: date minus the last (After, >= 0) or the next (Before, <= 0)
        # event date, 0 where there is none (its NaN filled with 0)
        after = np.where(last >= 0, t - last, 0)
        before = np.where(nxt < D, t - nxt, 0)
        c = np.concatenate(
            [np.zeros((S, 7), np.int64), np.cumsum(E, axis=1), np.repeat(np.cumsum(E, axis=1)[:, -1:], 6, 1)], 1
        )
        # c[:, k + 7] = events on days 0..k; bw(t) = events in t-6..t; fw(t) = events in t..t+6
        bw = c[:, 7 : D + 7] - c[:, 0:D]
        fw = c[:, 13 : D + 13] - c[:, 6 : D + 6]
        df[f"After{f}"], df[f"Before{f}"] = after[s_idx, day], before[s_idx, day]
        df[f"{f}_bw"], df[f"{f}_fw"] = bw[s_idx, day], fw[s_idx, day]
    return df


def iso_week_monday(year: pd.Series, week: pd.Series) -> pd.Series:
    """The Monday of ISO week `week` of ISO year `year` (week 1 holds January 4th)."""
    jan4 = pd.to_datetime(year.astype(int).astype(str) + "-01-04")
    return jan4 - pd.to_timedelta(jan4.dt.day_of_week, unit="D") + pd.to_timedelta((week.astype(int) - 1) * 7, unit="D")


def add_features(
    df: pd.DataFrame,
    store: pd.DataFrame,
    states: pd.DataFrame | None = None,
    trend: pd.DataFrame | None = None,
    weather: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Train and test rows (any order) -> the notebook's joined table, same row order."""
    df = df.copy()
    df["StateHoliday"] = df["StateHoliday"] != "0"  # the notebook keeps only holiday / not
    df["_row"] = np.arange(len(df))
    df = df.merge(store, on="Store", how="left", validate="many_to_one")
    if df["StoreType"].isna().any():
        missing = sorted(df.loc[df.StoreType.isna(), "Store"].unique().tolist())[:10]
        raise DataError("store.csv", f"no row for store(s) {missing} that the sales files name")
    if states is not None:
        df = df.merge(states, on="Store", how="left", validate="many_to_one")
    d = df["Date"]
    df["Year"], df["Month"], df["Day"] = d.dt.year, d.dt.month, d.dt.day
    df["Week"] = d.dt.isocalendar().week.astype("int64")
    # competition open for how many months (0 when unknown or long ago), capped at 24
    df["CompetitionDistance"] = df["CompetitionDistance"].fillna(100_000)
    cy, cm = df.CompetitionOpenSinceYear.fillna(1900), df.CompetitionOpenSinceMonth.fillna(1)
    # the notebook dates an opening to the 15th of its month
    since = pd.to_datetime(pd.DataFrame({"year": cy, "month": cm, "day": 15}).astype(int))
    days_open = (d - since).dt.days.where(cy >= 1990, 0).clip(lower=0)
    df["CompetitionMonthsOpen"] = (days_open // 30).clip(upper=24)
    df["CompetitionOpenSinceYear"] = cy.astype(int)
    # Promo2 running for how many weeks, capped at 25
    py, pw = df.Promo2SinceYear.fillna(1900).astype(int), df.Promo2SinceWeek.fillna(1).astype(int)
    p2_since = iso_week_monday(py, pw)  # the notebook: isoweek's Week(year, week).monday()
    p2_days = (d - p2_since).dt.days.where(py >= 1990, 0).clip(lower=0)
    df["Promo2Weeks"] = (p2_days // 7).clip(upper=25)
    df["Promo2SinceYear"] = py
    df = add_elapsed(df)
    if trend is not None and states is not None:
        # The notebook's join: on (State, Year, Week), the trend row's Year and ISO Week taken from the
        # Sunday that starts its week, the sales row's from its own date. An ISO week runs Monday..Sunday,
        # so Monday..Saturday take the trend week starting the coming Sunday, and a year's last days
        # that fall in ISO week 1 take that calendar year's week 1 (the notebook's own quirk, kept).
        ws = trend["WeekStart"]
        keyed = trend.assign(Year=ws.dt.year.astype("int64"), Week=ws.dt.isocalendar().week.astype("int64"))
        keyed = keyed.drop(columns="WeekStart").drop_duplicates(["State", "Year", "Week"])
        key = df[["Year", "Week"]].astype("int64")
        df = df.assign(_y=key.Year, _w=key.Week)
        st = keyed[keyed.State != "DE"].rename(columns={"Year": "_y", "Week": "_w"})
        df = df.merge(st, on=["State", "_y", "_w"], how="left", validate="many_to_one")
        de = (
            keyed[keyed.State == "DE"]
            .drop(columns="State")
            .rename(columns={"Year": "_y", "Week": "_w", "trend": "trend_DE"})
        )
        df = df.merge(de, on=["_y", "_w"], how="left", validate="many_to_one").drop(columns=["_y", "_w"])
    if weather is not None and states is not None:
        df = df.merge(weather, on=["State", "Date"], how="left")
    return df.sort_values("_row").drop(columns="_row").reset_index(drop=True)


# ---------------------------------------------------------------- the settings
@dataclass
class RossmannConfig(DataConfig):
    """data=rossmann. root: the folder of Kaggle's train/test/store.csv, or null to generate n_stores x
    gen_start..2015-07-31 with gen_seed under data_dir/rossmann/. extras: store_states.csv, googletrend/,
    weather/ (default: root); each missing part drops its columns. store_csv / store_states_csv: tables the
    generator takes as its own. Validation: the days val_start..val_end (inclusive); fit_all: train on every
    day, the window included (a final fit; its val/ figures are then in-sample)."""

    _target_: str = "emblab.data.rossmann.RossmannDataModule"
    root: str | None = None
    extras: str | None = None
    data_dir: str = "data"
    n_stores: int = setting(100, ge=1)
    gen_seed: int = setting(0, ge=0)
    gen_start: str = "2013-01-01"
    store_csv: str | None = None
    store_states_csv: str | None = None
    val_start: str = "2014-08-01"
    val_end: str = "2014-09-17"
    cat_vars: list[str] = setting(CAT_VARS)
    cont_vars: list[str] = setting(CONT_VARS)
    fit_all: bool = False
    num_transform: str = setting("standard", choices=("standard", "quantile"))  # as data=tabular's
    value_max_card: int = setting(0, ge=0)  # as data=tabular's
    value_cols: str = setting("all", choices=("all", "codes"))  # as data=tabular's
    member_batches: int = setting(1, ge=1)  # shared, as Rossmann's figures were measured (data=tabular: one each)
    batch_size: int = setting(512, ge=1)

    def check(self, prefix: str) -> None:
        unknown = sorted(set(self.cat_vars + self.cont_vars) - set(CAT_VARS + CONT_VARS))
        if unknown:
            raise ConfigError(
                f"{prefix}.cat_vars / cont_vars name unknown columns {unknown}; known: {CAT_VARS + CONT_VARS}"
            )
        for key in ("gen_start", "val_start", "val_end"):
            try:
                pd.Timestamp(getattr(self, key))
            except ValueError:
                raise ConfigError(f"{prefix}.{key}={getattr(self, key)!r}: not a date (YYYY-MM-DD)") from None
        if pd.Timestamp(self.val_start) > pd.Timestamp(self.val_end):
            raise ConfigError(f"{prefix}.val_start={self.val_start} is after {prefix}.val_end={self.val_end}")


# ---------------------------------------------------------------- the DataModule
class RossmannDataModule(EmblabDataModule):
    """root: folder with train.csv, test.csv, store.csv (the real Kaggle files, or null to generate
    n_stores x gen_start..2015-07-31 with gen_seed under data_dir/rossmann/). extras: folder with
    store_states.csv, googletrend/, weather/ (default: root); each missing part drops its columns.
    store_csv / store_states_csv: tables the generator takes as its own (e.g. the real store.csv).
    Validation: the days val_start..val_end of train.csv (inclusive); training: the other days,
    closed or zero-sales days dropped (fit_all: all days, the window included, for a final fit)."""

    kind = "tabular"

    Config = RossmannConfig

    def __init__(self, cfg: RossmannConfig, kind: str | None = None):
        super().__init__(cfg, kind)
        for name in ("root", "extras", "store_csv", "store_states_csv"):
            value = getattr(cfg, name)
            if value and Path(value).parts[0] == "None":  # ${paths.shared_dir}/... with shared_dir unset
                raise ConfigError(
                    f"data.{name}={value}: paths.shared_dir is not set; set EMBLAB_SHARED_DIR=DIR "
                    "or paths.shared_dir=DIR (the folder holding rossmann/kaggle and rossmann/extras)"
                )
        self.root, self.extras, self.data_dir = cfg.root, cfg.extras, cfg.data_dir
        self.n_stores, self.gen_seed, self.gen_start = cfg.n_stores, cfg.gen_seed, cfg.gen_start
        self.store_csv, self.store_states_csv = cfg.store_csv, cfg.store_states_csv
        self.val_start, self.val_end, self.fit_all = cfg.val_start, cfg.val_end, cfg.fit_all
        self.cat_vars_cfg, self.cont_vars_cfg = list(cfg.cat_vars), list(cfg.cont_vars)
        self.proc: TabularProcessor | None = None

    # -------- where the files are
    def files_dir(self) -> Path:
        if self.root:
            return Path(self.root)
        tag = f"synth{GENERATOR_VERSION}-" + (f"n{self.n_stores}" if not self.store_csv else Path(self.store_csv).stem)
        tag += f"-seed{self.gen_seed}" + ("" if self.gen_start == "2013-01-01" else f"-from{self.gen_start}")
        return Path(self.data_dir) / "rossmann" / tag

    def prepare_data(self) -> None:
        out = self.files_dir()
        if self.root or (out / "train.csv").is_file():
            return
        store = read_store(self.store_csv) if self.store_csv else None
        states = read_store_states(self.store_states_csv) if self.store_states_csv else None
        params = {
            "n_stores": self.n_stores,
            "seed": self.gen_seed,
            "store_csv": self.store_csv,
            "store_states_csv": self.store_states_csv,
            "train_start": self.gen_start,
        }
        write(generate(self.n_stores, self.gen_seed, store, states, self.gen_start), out, params)

    def load_frames(self, test_csv: str | Path | None = None, store_csv: str | Path | None = None):
        """(joined features of train + test rows, which rows are test, extras present)."""
        root = self.files_dir()
        if not (root / "train.csv").is_file():
            if self.root:
                raise DataError(root / "train.csv", "file not found (data.root names the folder of Kaggle's files)")
            self.prepare_data()
        if not (root / "generated.json").is_file() and (root / "train.csv").stat().st_size > 30_000_000:
            # a large train.csv that emblab did not generate: say whether it is Kaggle's own
            blob = git_blob_id(root / "train.csv")
            log.info(
                "%s: git blob %s, %s",
                root / "train.csv",
                blob,
                "Kaggle's original train.csv"
                if blob == KAGGLE_TRAIN_BLOB
                else f"not Kaggle's original ({KAGGLE_TRAIN_BLOB})",
            )
        train = read_sales(root / "train.csv")
        test = read_sales(test_csv or root / "test.csv", test=True)
        store = read_store(store_csv or root / "store.csv")
        extras = Path(self.extras) if self.extras else root
        states_path = (
            root / "store_states.csv" if (root / "store_states.csv").is_file() else extras / "store_states.csv"
        )
        states = read_store_states(states_path) if states_path.is_file() else None
        trend = read_googletrend(extras / "googletrend") if (extras / "googletrend").is_dir() else None
        weather = read_weather(extras / "weather") if (extras / "weather").is_dir() else None
        have = {"store_states": states is not None, "googletrend": trend is not None, "weather": weather is not None}
        self.blank_open = test.attrs["blank_open"]
        both = pd.concat([train.assign(_test=False), test.assign(_test=True)], ignore_index=True)
        joined = add_features(both, store, states, trend, weather)
        return joined, joined.pop("_test").to_numpy(), have

    def setup(self, stage: str | None = None) -> None:
        if self.proc is not None:
            return
        joined, is_test, have = self.load_frames()
        self.cat_vars = [c for c in self.cat_vars_cfg if have.get(NEEDS.get(c, ""), True)]
        self.cont_vars = [c for c in self.cont_vars_cfg if have.get(NEEDS.get(c, ""), True)]
        dropped = [c for c in self.cat_vars_cfg + self.cont_vars_cfg if c not in self.cat_vars + self.cont_vars]
        if dropped:
            log.info("Rossmann: no %s files, so no columns %s", sorted({NEEDS[c] for c in dropped}), dropped)
        train, test = joined[~is_test], joined[is_test]
        shut = (train.Open == 0) | (train.Sales == 0)
        in_val = (train.Date >= pd.Timestamp(self.val_start)) & (train.Date <= pd.Timestamp(self.val_end))
        if not in_val.any():
            raise ConfigError(f"no train.csv day falls in the validation window {self.val_start}..{self.val_end}")
        # fit_all (the final fit before a submission): the window's days train too; its "validation"
        # figures are then in-sample, logged only to show the run went as the held-out one did
        trn, val = (
            (train[~shut], train[~shut & in_val]) if self.fit_all else (train[~shut & ~in_val], train[~shut & in_val])
        )
        if self.fit_all:
            log.warning(
                "data.fit_all: training on every day through %s, the validation window %s..%s included; "
                "its val/ figures are not held out",
                train.Date.max().date(),
                self.val_start,
                self.val_end,
            )
        self.split_id = split_digest(in_val.to_numpy(), self.fit_all)
        self.proc = TabularProcessor.fit(
            trn, self.cat_vars, self.cont_vars, self.cfg.num_transform, self.cfg.value_max_card, self.cfg.value_cols
        )
        y_trn = torch.from_numpy(np.log(trn.Sales.to_numpy(np.float64)).astype(np.float32))
        y_val = torch.from_numpy(np.log(val.Sales.to_numpy(np.float64)).astype(np.float32))
        self.y_range = [0.0, 1.2 * float(y_trn.max())]
        self.train_ds = TensorBatchDataset(*self.proc.transform(trn), y_trn)
        self.val_ds = TensorBatchDataset(*self.proc.transform(val, "validation"), y_val)
        # Kaggle's test.csv has no sales: there is no test split here; emblab.rossmann_submit predicts it
        log.info(
            "Rossmann %s: %d stores, %d training days (%d closed or zero-sales dropped), %d validation "
            "days %s..%s, %d test rows (%d blank Open read as open); %d categorical, %d continuous columns",
            self.files_dir(),
            train.Store.nunique(),
            len(trn),
            int(shut.sum()),
            len(val),
            self.val_start,
            self.val_end,
            len(test),
            self.blank_open,
            len(self.proc.cat_cols),
            len(self.cont_vars),
        )

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> RossmannDataModule:
        """Rebuilt from `config()`'s settings (a checkpoint's artifacts), checked."""
        return cls(checked(RossmannConfig, settings, "checkpoint: data"))

    def config(self) -> dict[str, Any]:
        """What rebuilds this data module elsewhere (submission, embedding comparison)."""
        return {
            "root": str(self.files_dir()),
            "extras": self.extras,
            "val_start": self.val_start,
            "val_end": self.val_end,
            "cat_vars": self.cat_vars_cfg,
            "cont_vars": self.cont_vars_cfg,
        }

    def train_dataloader(self):
        return self._loader(self.train_ds, train=True, members=self.cfg.member_batches)

    def dims(self) -> dict[str, Any]:
        return {
            "emb_card": self.proc.cardinalities(),
            "n_cont": len(self.cont_vars),
            "cat_names": self.proc.cat_cols,
            "out_sz": 1,
            "task": "regression",
            "y_range": self.y_range,
            "log_target": True,
            "prior": target_prior(self.train_ds.tensors[2], "regression", 0),
        }

    def artifacts(self) -> dict[str, Any]:
        return {
            "processor": self.proc.state(),
            "target": "Sales",
            "task": "regression",
            "log_target": True,
            "rossmann": self.config(),
            "split": self.split_id,
        }
