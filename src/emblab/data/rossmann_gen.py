"""Rossmann-like sales in the exact Kaggle schema, for training without the real train.csv.

    python -m emblab.rossmann_synth out=data/rossmann/synth n_stores=200 seed=0
    python -m emblab.rossmann_synth out=DIR store_csv=$EMBLAB_SHARED_DIR/rossmann/kaggle/store.csv \
        store_states_csv=$EMBLAB_SHARED_DIR/rossmann/extras/store_states.csv

writes train.csv (Store,DayOfWeek,Date,Sales,Customers,Open,Promo,StateHoliday,SchoolHoliday; Date
descending then Store, 2013-01-01..2015-07-31 by default, as Kaggle), test.csv (Id, ..., 2015-08-01..
2015-09-17), store.csv and store_states.csv, quoted the way Kaggle's files are. Deterministic by seed.

log(Sales) is a sum of readable effects (all vectorised over a stores x days grid): store level (type, assortment, a
random store effect), the state (a level and a seasonal pattern that are smooth functions of the real state's
location, so embeddings have geography to find), day of week, season and the run-up to Christmas, a yearly trend,
Promo (Mon-Fri of alternate weeks), Promo2 months, the days before and after a state holiday (shops shut on it),
school holidays, a competitor opening nearby, and refurbishment closures with a clearance rush before and a
reopening rush after. Sundays and state holidays are closed except for store type b.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from emblab.data.germany import STATES

log = logging.getLogger(__name__)

# bumped whenever the generated numbers change, so a cached folder of older data is not reused
GENERATOR_VERSION = 2
TRAIN_START, TRAIN_END = "2013-01-01", "2015-07-31"
TEST_START, TEST_END = "2015-08-01", "2015-09-17"

# The 12 codes of Kaggle's store_states.csv and roughly how many of the 1,115 stores each has.
KAGGLE_STATE_SHARE = {
    "NW": 286,
    "BY": 180,
    "SH": 115,
    "HE": 112,
    "BE": 92,
    "SN": 75,
    "BW": 73,
    "ST": 56,
    "RP": 40,
    "TH": 36,
    "HH": 28,
    "HB,NI": 22,
}

PROMO_INTERVALS = ["Jan,Apr,Jul,Oct", "Feb,May,Aug,Nov", "Mar,Jun,Sept,Dec"]
MONTHS = {
    "Jan": 1,
    "Feb": 2,
    "Mar": 3,
    "Apr": 4,
    "May": 5,
    "Jun": 6,
    "Jul": 7,
    "Aug": 8,
    "Sept": 9,
    "Sep": 9,
    "Oct": 10,
    "Nov": 11,
    "Dec": 12,
}
EASTER = {2013: "2013-03-31", 2014: "2014-04-20", 2015: "2015-04-05"}


def state_effect(lat: float, lon: float) -> float:
    """log-sales offset that varies smoothly over Germany: higher in the south-west and the north."""
    return 0.08 * np.tanh((49.8 - lat) / 1.5) - 0.05 * (lon - 10.3) / 3 + 0.06 * np.exp(-((lat - 53.6) ** 2) / 0.5)


def state_holidays(states: list[str], years) -> dict[str, dict[pd.Timestamp, str]]:
    """{state: {date: 'a' public | 'b' Easter | 'c' Christmas}} for 2013-2015 (no Sundays counted)."""
    out = {}
    for st in states:
        codes = set(st.split(","))
        days: dict[pd.Timestamp, str] = {}
        for y in years:
            e = pd.Timestamp(EASTER[y]) if y in EASTER else pd.Timestamp(f"{y}-04-10")
            for d in (f"{y}-01-01", f"{y}-05-01", f"{y}-10-03"):
                days[pd.Timestamp(d)] = "a"
            for off in (39, 50):  # Ascension, Whit Monday
                days[e + pd.Timedelta(days=off)] = "a"
            for off in (-2, 1):  # Good Friday, Easter Monday
                days[e + pd.Timedelta(days=off)] = "b"
            days[pd.Timestamp(f"{y}-12-25")] = days[pd.Timestamp(f"{y}-12-26")] = "c"
            if codes & {"BW", "BY", "ST"}:
                days[pd.Timestamp(f"{y}-01-06")] = "a"  # Epiphany
            if codes & {"BW", "BY", "HE", "NW", "RP", "SL"}:
                days[e + pd.Timedelta(days=60)] = "a"  # Corpus Christi
            if codes & {"BW", "BY", "NW", "RP", "SL"}:
                days[pd.Timestamp(f"{y}-11-01")] = "a"  # All Saints
            if codes & {"BB", "MV", "SN", "ST", "TH"}:
                days[pd.Timestamp(f"{y}-10-31")] = "a"  # Reformation Day
            if "SL" in codes:
                days[pd.Timestamp(f"{y}-08-15")] = "a"  # Assumption
        out[st] = days
    return out


def school_holidays(states: list[str], dates: pd.DatetimeIndex, rng: np.random.Generator) -> np.ndarray:
    """(n_states, n_days) bool: Christmas, two Easter weeks, six summer weeks (staggered by state, as
    Germany rotates them), a week or two in autumn."""
    out = np.zeros((len(states), len(dates)), dtype=bool)
    for i, _ in enumerate(states):
        for y in range(dates[0].year - 1, dates[-1].year + 1):
            e = pd.Timestamp(EASTER.get(y, f"{y}-04-10"))
            summer = pd.Timestamp(f"{y}-06-20") + pd.Timedelta(days=int(rng.integers(0, 45)))
            autumn = pd.Timestamp(f"{y}-10-05") + pd.Timedelta(days=int(rng.integers(0, 21)))
            for start, n in (
                (pd.Timestamp(f"{y}-12-22"), 14),
                (e - pd.Timedelta(days=int(rng.integers(3, 10))), 14),
                (summer, 44),
                (autumn, int(rng.integers(7, 15))),
            ):
                out[i] |= (dates >= start) & (dates < start + pd.Timedelta(days=n))
    return out


def make_stores(n_stores: int, rng: np.random.Generator) -> pd.DataFrame:
    """A store table like Kaggle's store.csv: types, assortments, competition, Promo2."""
    n = n_stores
    comp_known = rng.random(n) < 0.68
    promo2 = rng.random(n) < 0.51
    df = pd.DataFrame(
        {
            "Store": np.arange(1, n + 1),
            "StoreType": rng.choice(list("abcd"), n, p=[0.54, 0.02, 0.13, 0.31]),
            "Assortment": rng.choice(list("abc"), n, p=[0.53, 0.01, 0.46]),
            "CompetitionDistance": np.round(np.exp(rng.normal(7.7, 1.3, n)) / 10) * 10,
            "CompetitionOpenSinceMonth": np.where(comp_known, rng.integers(1, 13, n), np.nan),
            "CompetitionOpenSinceYear": np.where(
                comp_known, np.clip(2015 - rng.geometric(0.22, n), 1961, 2015), np.nan
            ),
            "Promo2": promo2.astype(int),
            "Promo2SinceWeek": np.where(promo2, rng.integers(1, 51, n), np.nan),
            "Promo2SinceYear": np.where(promo2, rng.integers(2009, 2016, n), np.nan),
            "PromoInterval": np.where(promo2, rng.choice(PROMO_INTERVALS, n, p=[0.58, 0.23, 0.19]), None),
        }
    )
    df.loc[rng.random(n) < 0.003, "CompetitionDistance"] = np.nan  # a few unknown, as in Kaggle's file
    df["StoreType"] = np.where(df.Store % 50 == 0, "b", df.StoreType)  # at least a few type b (Sunday) stores
    return df


@dataclass
class Generated:
    train: pd.DataFrame
    test: pd.DataFrame
    store: pd.DataFrame
    store_states: pd.DataFrame


def generate(
    n_stores: int = 200,
    seed: int = 0,
    store: pd.DataFrame | None = None,
    store_states: pd.DataFrame | None = None,
    train_start: str = TRAIN_START,
) -> Generated:
    """The four tables. `store` (e.g. the real store.csv) replaces the random store table, and then
    all its stores are generated; `store_states` likewise for the state of each store."""
    rng = np.random.default_rng(seed)
    store = make_stores(n_stores, rng) if store is None else store.copy()
    S = len(store)
    if store_states is None:
        codes, counts = zip(*KAGGLE_STATE_SHARE.items(), strict=False)
        p = np.array(counts) / sum(counts)
        store_states = pd.DataFrame({"Store": store.Store.to_numpy(), "State": rng.choice(codes, S, p=p)})
    st = store.merge(store_states, on="Store", how="left")
    st["State"] = st["State"].fillna("NW")
    dates = pd.date_range(train_start, TEST_END, freq="D")  # (D,)
    D = len(dates)
    dow = dates.day_of_week.to_numpy()  # Monday 0
    doy = dates.day_of_year.to_numpy()

    # ---- calendars per state -> per store (S, D)
    state_list = sorted(st.State.unique())
    s_idx = st.State.map({s: i for i, s in enumerate(state_list)}).to_numpy()
    hol = state_holidays(state_list, range(dates[0].year, dates[-1].year + 1))
    hol_code = np.full((len(state_list), D), "0", dtype=object)
    for i, s in enumerate(state_list):
        for day, code in hol[s].items():
            j = (day - dates[0]).days
            if 0 <= j < D:
                hol_code[i, j] = code
    hol_code = hol_code[s_idx]  # (S, D)
    is_hol = hol_code != "0"
    school = school_holidays(state_list, dates, rng)[s_idx]  # (S, D)

    # ---- opening: Sundays and holidays shut except type b; refurbishment closures
    type_b = (st.StoreType == "b").to_numpy()[:, None]
    open_ = ~(((dow == 6)[None, :] | is_hol) & ~type_b)  # (S, D)
    refurb = rng.random(S) < 0.10
    start = rng.integers(0, max(1, D - 60), S)
    length = rng.integers(5, 45, S)
    day = np.arange(D)[None, :]
    closed = refurb[:, None] & (day >= start[:, None]) & (day < (start + length)[:, None])
    open_ &= ~closed
    before_close = refurb[:, None] & (day >= (start - 7)[:, None]) & (day < start[:, None])
    after_open = refurb[:, None] & (day >= (start + length)[:, None]) & (day < (start + length + 10)[:, None])

    # ---- promotions: Mon-Fri of every other week, the same weeks for all stores
    week = (np.arange(D) + dates[0].day_of_week) // 7
    promo = np.broadcast_to(((week % 2 == 0) & (dow < 5))[None, :], (S, D)).copy()
    p2_since = pd.to_datetime(st.Promo2SinceYear.fillna(2100).astype(int).astype(str) + "-01-01") + pd.to_timedelta(
        (st.Promo2SinceWeek.fillna(1) - 1) * 7, unit="D"
    )
    p2_months = np.zeros((S, 13), dtype=bool)
    for i, iv in enumerate(st.PromoInterval.fillna("")):
        for m in filter(None, str(iv).split(",")):
            p2_months[i, MONTHS[m]] = True
    promo2 = (dates.values[None, :] >= p2_since.values[:, None]) & p2_months[:, dates.month.to_numpy()]

    # ---- holiday run-up and aftermath: days to the next / since the last holiday (per store)
    t = np.arange(D)[None, :].repeat(S, 0)
    last = np.maximum.accumulate(np.where(is_hol, t, -10_000), axis=1)
    nxt = np.flip(np.minimum.accumulate(np.flip(np.where(is_hol, t, 10_000), 1), axis=1), 1)
    since, until = t - last, nxt - t
    xmas = (dates.month == 12) & (dates.day >= 1) & (dates.day <= 24)

    # ---- competition: a competitor opening cuts sales, more when it is close
    comp_since = pd.to_datetime(
        st.CompetitionOpenSinceYear.fillna(1900).astype(int).astype(str)
        + "-"
        + st.CompetitionOpenSinceMonth.fillna(1).astype(int).astype(str)
        + "-01"
    )
    comp_open = dates.values[None, :] >= comp_since.values[:, None]
    dist = st.CompetitionDistance.fillna(100_000).to_numpy()

    # ---- log sales
    base = {"a": 8.6, "b": 9.2, "c": 8.65, "d": 8.75}
    lat, lon = (np.array(v) for v in zip(*(STATES.get(s, STATES["NW"])[:2] for s in st.State), strict=False))
    # the season itself depends on where a store is: a summer peak that grows towards the coast and a
    # winter tilt from west to east. A store's own embedding cannot carry this (it is store x date),
    # so the State embedding has a reason to learn geography.
    yearly = 2 * np.pi * doy / 365.25
    state_season = (0.08 * (lat - 51.0) / 2.5)[:, None] * np.sin(yearly - 2 * np.pi * 110 / 365.25)[None, :] + (
        0.06 * (lon - 10.3) / 3.0
    )[:, None] * np.cos(yearly)[None, :]
    level = (
        st.StoreType.map(base).to_numpy()
        + st.Assortment.map({"a": 0.0, "b": 0.15, "c": 0.1}).to_numpy()
        + np.array([state_effect(a, o) for a, o in zip(lat, lon, strict=False)])
        + rng.normal(0, 0.3, S)
        + 0.03 * np.log(np.clip(dist, 20, None) / 2000)
    )
    dow_eff = np.array([0.15, 0.03, 0.0, 0.0, 0.05, -0.08, -0.1])[dow]
    season = 0.04 * np.sin(2 * np.pi * (doy - 80) / 365.25) + 0.25 * xmas * (dates.day.to_numpy() / 24) ** 2
    trend = 0.02 * (np.arange(D) / 365.25)
    promo_gain = np.clip(rng.normal(0.22, 0.06, S), 0.05, None)[:, None] * (1 + 0.3 * (dow == 0))[None, :]
    logs = (
        level[:, None]
        + (dow_eff + season + trend)[None, :]
        + state_season
        + promo * promo_gain
        + 0.03 * promo2
        + 0.12 * (until == 1)
        + 0.06 * (until == 2)
        + 0.08 * (since == 1)
        + 0.03 * (since == 2)
        + 0.04 * school
        - comp_open * 0.15 * np.exp(-dist / 3000)[:, None]
        + 0.2 * before_close
        + 0.3 * after_open * np.exp(-(t - (start + length)[:, None]) / 5)
        + rng.normal(0, 0.08, (S, D))
    )
    sales = np.where(open_, np.round(np.exp(logs)), 0).astype(np.int64)
    basket = np.exp(rng.normal(2.2, 0.15, S))[:, None] * (1 + 0.1 * promo)
    customers = np.where(open_, np.round(sales / basket * np.exp(rng.normal(0, 0.05, (S, D)))), 0).astype(np.int64)
    zero_day = open_ & (rng.random((S, D)) < 5e-5)  # a few open days without sales, as in Kaggle's data
    sales[zero_day] = customers[zero_day] = 0

    # ---- to long tables, Kaggle's order: Date descending, then Store
    order_days = np.arange(D)[::-1]
    grid = lambda a: a[:, order_days].T.reshape(-1)  # (S, D) -> (D*S,) date-major  # noqa: E731
    long = pd.DataFrame(
        {
            "Store": np.tile(st.Store.to_numpy(), D),
            "DayOfWeek": np.repeat(dow[order_days] + 1, S),
            "Date": np.repeat(dates[order_days].strftime("%Y-%m-%d"), S),
            "Sales": grid(sales),
            "Customers": grid(customers),
            "Open": grid(open_).astype(int),
            "Promo": grid(promo).astype(int),
            "StateHoliday": grid(hol_code),
            "SchoolHoliday": grid(school).astype(int),
        }
    )
    is_test = long.Date >= TEST_START
    train = long[~is_test].reset_index(drop=True)
    test = long[is_test].drop(columns=["Sales", "Customers"]).reset_index(drop=True)
    test.insert(0, "Id", np.arange(1, len(test) + 1))
    return Generated(train, test, store, store_states[["Store", "State"]])


# ---------------------------------------------------------------- writing in Kaggle's exact quoting
def _q(s: pd.Series) -> pd.Series:
    return '"' + s.fillna("").astype(str) + '"'


def _int(s: pd.Series) -> pd.Series:
    return s.astype("Int64").astype("string").fillna("")


def write_csv(df: pd.DataFrame, path: Path, quoted: list[str], header_quoted: bool = True) -> None:
    out = df.copy()
    for c in out.columns:
        if c in quoted:
            out[c] = _q(out[c])
        elif pd.api.types.is_float_dtype(out[c]):
            out[c] = _int(out[c])
        else:
            out[c] = out[c].astype(str)
    header = ",".join(f'"{c}"' if header_quoted else c for c in out.columns)
    lines = out[out.columns[0]]
    for c in out.columns[1:]:  # fields are formatted already; a csv writer would re-quote "Jan,Apr,..."
        lines = lines + "," + out[c]
    with open(path, "w", newline="") as f:
        f.write(header + "\n")
        f.write("\n".join(lines.tolist()) + "\n")


def write(gen: Generated, final: Path, params: dict | None = None) -> None:
    """The four CSV files, and generated.json saying how they were made (so nobody takes them for Kaggle's).
    Written into a folder of their own, renamed into place when complete: a crash, or another process
    generating the same data at once, never leaves a reader half the files."""
    final.parent.mkdir(parents=True, exist_ok=True)
    out = Path(tempfile.mkdtemp(dir=final.parent, prefix=final.name + ".part-"))
    (out / "generated.json").write_text(
        json.dumps({"generator_version": GENERATOR_VERSION, **(params or {})}, indent=2) + "\n"
    )
    write_csv(gen.train, out / "train.csv", ["StateHoliday", "SchoolHoliday"])
    write_csv(gen.test, out / "test.csv", ["StateHoliday", "SchoolHoliday"])
    write_csv(gen.store, out / "store.csv", ["StoreType", "Assortment", "PromoInterval"])
    states = gen.store_states.copy()  # unquoted header, only "HB,NI" quoted, as in the original
    states["State"] = np.where(states.State.str.contains(","), '"' + states.State + '"', states.State)
    write_csv(states, out / "store_states.csv", [], header_quoted=False)
    try:
        out.rename(final)
    except OSError:  # the folder exists (a user's out=DIR, or another process finished first): file by file,
        for f in sorted(out.iterdir(), key=lambda f: f.name == "train.csv"):  # train.csv, what readers look for, last
            os.replace(f, final / f.name)
        shutil.rmtree(out, ignore_errors=True)
    log.info(
        "generated Rossmann data in %s: %d stores, %d train rows, %d test rows",
        final,
        len(gen.store),
        len(gen.train),
        len(gen.test),
    )
