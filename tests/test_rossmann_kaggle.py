"""The notebook's features on the real Kaggle files, pinned on hand-checked (store, date) rows, and the
real file's shape: counts, the 180 stores with the 2014 gap, the validation window, codes and mapper
shared by train and test. Every expected value below was read off the raw CSV lines by hand (the line
is quoted beside it), not from emblab's output. Skipped, with the reason, where ../shared/data is absent."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from emblab.data.rossmann import CAT_VARS, CONT_VARS, RossmannDataModule

from conftest import shared_path


@pytest.fixture(scope="module")
def real():
    """The real files read once: (data module after setup, joined train+test table, test mask)."""
    root = shared_path("rossmann", "kaggle", "train.csv").parent
    extras = shared_path("rossmann", "extras", "weather").parent
    dm = RossmannDataModule.of(root=str(root), extras=str(extras), on_device=False)
    joined, is_test, have = dm.load_frames()
    assert all(have.values())
    dm.setup()
    return dm, joined, is_test


def row(joined, store, date):
    r = joined[(joined.Store == store) & (joined.Date == pd.Timestamp(date))]
    assert len(r) == 1, (store, date, len(r))
    return r.iloc[0]


# ---------------------------------------------------------------- pinned values
def test_store_1_on_2015_07_31_every_joined_column(real):
    _, joined, _ = real
    r = row(joined, 1, "2015-07-31")
    # train.csv: 1,5,2015-07-31,5263,555,1,1,"0","1"
    assert (r.DayOfWeek, r.Sales, r.Promo, r.StateHoliday, r.SchoolHoliday) == (5, 5263, 1, False, 1)
    assert (r.Year, r.Month, r.Day, r.Week) == (2015, 7, 31, 31)
    # store.csv: 1,"c","a",1270,9,2008,0,,,""  -> competition since 2008-09-15: capped at 24 months
    assert (r.StoreType, r.Assortment, r.CompetitionDistance) == ("c", "a", 1270)
    assert (r.CompetitionOpenSinceYear, r.CompetitionMonthsOpen) == (2008, 24)
    assert (r.Promo2SinceYear, r.Promo2Weeks) == (1900, 0) and pd.isna(r.PromoInterval)
    assert r.State == "HE"  # store_states.csv: 1,HE
    # ISO week 31 = Mon 07-27..Sun 08-02; the notebook joins the trend week starting that Sunday:
    # Rossmann_DE_HE.csv "2015-08-02 - 2015-08-08,85", Rossmann_DE.csv "2015-08-02 - 2015-08-08,83"
    assert (r.trend, r.trend_DE) == (85, 83)
    # Hessen.csv: 2015-07-31;23;16;8;9;6;3;98;54;18;1021;1018;1015;31;15;10;24;11;NA;0;1;"Fog";13
    weather = [
        r.Max_TemperatureC,
        r.Mean_TemperatureC,
        r.Min_TemperatureC,
        r.Max_Humidity,
        r.Mean_Humidity,
        r.Min_Humidity,
        r.Max_Wind_SpeedKm_h,
        r.Mean_Wind_SpeedKm_h,
        r.CloudCover,
    ]
    assert weather == [23, 16, 8, 98, 54, 18, 24, 11, 1] and r.Events == "Fog"


def test_trend_week_at_a_year_end_follows_the_notebook(real):
    _, joined, _ = real
    # 2013-12-30 is in ISO week 1 of 2014 but calendar year 2013: the notebook's (Year, Week) key
    # finds 2013's week 1, Rossmann_DE_HE.csv "2013-01-06 - 2013-01-12,73", Rossmann_DE.csv "...,62"
    r = row(joined, 1, "2013-12-30")
    assert (r.trend, r.trend_DE) == (73, 62)
    # store 28 is in ST; Mon 2015-02-09, ISO week 7 -> "2015-02-15 - 2015-02-21": ST 60, DE 74
    r = row(joined, 28, "2015-02-09")
    assert (r.State, r.trend, r.trend_DE) == ("ST", 60, 74)


def test_competition_months_open_from_the_15th(real):
    _, joined, _ = real
    # store.csv: 28,"a","a",1200,10,2014,1,6,2015,... -> open since 2014-10-15; 2015-02-09 is 117 days on
    assert row(joined, 28, "2015-02-09").CompetitionMonthsOpen == 3
    # 197,"c","a",4210,3,2015,0 -> since 2015-03-15
    assert row(joined, 197, "2015-03-14").CompetitionMonthsOpen == 0  # not open yet
    assert row(joined, 197, "2015-04-14").CompetitionMonthsOpen == 1  # 30 days
    assert row(joined, 197, "2015-07-31").CompetitionMonthsOpen == 4  # 138 days
    assert row(joined, 197, "2015-07-31").CompetitionOpenSinceYear == 2015


def test_promo2_weeks_from_the_iso_week_monday(real):
    _, joined, _ = real
    # store 28: Promo2 since ISO week 6 of 2015, whose Monday is 2015-02-02
    assert row(joined, 28, "2015-02-01").Promo2Weeks == 0  # before it began
    assert row(joined, 28, "2015-02-08").Promo2Weeks == 0  # 6 days
    assert row(joined, 28, "2015-02-09").Promo2Weeks == 1  # 7 days
    assert row(joined, 28, "2015-02-09").Promo2SinceYear == 2015
    # store 2: since week 13 of 2010, long capped
    assert row(joined, 2, "2013-01-02").Promo2Weeks == 25


def test_elapsed_event_columns_count_closed_days(real):
    _, joined, _ = real
    # store 1: StateHoliday "b" on 2015-04-03 (closed) and 04-06 (closed), next "a" on 05-01 (closed)
    r = row(joined, 1, "2015-04-08")
    assert (r.AfterStateHoliday, r.BeforeStateHoliday) == (2, -23)
    assert (r.StateHoliday_bw, r.StateHoliday_fw) == (2, 0)  # 04-02..04-08 / 04-08..04-14
    assert row(joined, 1, "2015-04-03").StateHoliday_fw == 2
    # last promo on 04-03, a closed day with Promo 1 ("1,5,2015-04-03,0,0,0,1,\"b\",\"1\""): closed days count
    assert (r.AfterPromo, r.SchoolHoliday, r.AfterSchoolHoliday) == (5, 1, 0)
    # Promo 07-27..31 in train.csv, then test.csv: 08-01 no, 08-02 no (Sunday), 08-03 and 08-04 yes
    r = row(joined, 1, "2015-07-29")
    assert (r.Promo_bw, r.Promo_fw) == (3, 5)
    t = row(joined, 1, "2015-08-01")  # a test row sees train's past
    assert (t.AfterPromo, t.BeforePromo, t.Promo_bw) == (1, -2, 5)


# ---------------------------------------------------------------- the real file's shape
def test_row_and_store_counts(real):
    dm, joined, is_test = real
    train, test = joined[~is_test], joined[is_test]
    assert len(train) == 1_017_209 and train.Store.nunique() == 1115
    assert len(test) == 41_088 and test.Store.nunique() == 856
    assert (train.Date.min(), train.Date.max()) == (pd.Timestamp("2013-01-01"), pd.Timestamp("2015-07-31"))
    sold = (train.Open == 1) & (train.Sales > 0)
    in_val = train.Date.between("2014-08-01", "2014-09-17")
    assert len(dm.train_ds) == int((sold & ~in_val).sum()) and len(dm.val_ds) == int((sold & in_val).sum())


def test_the_180_stores_without_2014_h2(real):
    _, joined, is_test = real
    train = joined[~is_test]
    h2 = train.Date.between("2014-07-01", "2014-12-31")
    gap = set(train.Store.unique()) - set(train.loc[h2, "Store"].unique())
    assert len(gap) == 180
    days = train.groupby("Store").Date.nunique()
    assert (days[sorted(gap)] == 942 - 184).all()
    assert days.drop(sorted(gap)).drop(988).eq(942).all() and days[988] == 941


def test_no_validation_day_in_training(real):
    dm, joined, is_test = real
    # the training tensor's rows are exactly the sold days outside the window: Day/Month codes of
    # training never meet a (Month, Day) pair of 2014-08-01..09-17 in 2014
    cats = dm.train_ds.tensors[0]
    cols = dm.proc.cat_cols
    code = {c: {v: i + 1 for i, v in enumerate(dm.proc.classes[c])} for c in ("Year", "Month", "Day")}
    y, m, d = (cats[:, cols.index(c)] for c in ("Year", "Month", "Day"))
    aug = (y == code["Year"]["2014"]) & (
        (m == code["Month"]["8"]) | ((m == code["Month"]["9"]) & (d <= code["Day"]["17"]))
    )
    assert not bool(aug.any())
    vy, vm = dm.val_ds.tensors[0][:, cols.index("Year")], dm.val_ds.tensors[0][:, cols.index("Month")]
    assert bool((vy == code["Year"]["2014"]).all()) and set(vm.unique().tolist()) == {
        code["Month"]["8"],
        code["Month"]["9"],
    }


def test_every_feature_finite_and_codes_in_range(real):
    dm, _, _ = real
    assert dm.cat_vars == CAT_VARS and dm.cont_vars == CONT_VARS
    card = torch.tensor(dm.dims()["emb_card"])
    for ds in (dm.train_ds, dm.val_ds):
        cats, conts, y = ds.tensors
        assert torch.isfinite(conts).all() and torch.isfinite(y).all()
        assert cats.min() >= 0 and (cats.max(0).values < card).all()


def test_codes_and_normaliser_identical_between_train_and_test(real):
    dm, joined, is_test = real
    test = joined[is_test]
    cats, conts = dm.proc.transform(test)
    assert torch.isfinite(conts).all()
    # every test store and weekday has its training code; unknown (0) only where training never saw a value
    j = dm.proc.cat_cols.index("Store")
    assert (cats[:, j] > 0).all()
    assert dm.proc.classes["Store"][int(cats[0, j]) - 1] == str(int(test.Store.iloc[0]))
    for c in CONT_VARS:  # the mapper is the training one, applied unchanged
        s = dm.proc.stats[c]
        k = dm.proc.cont_cols.index(c)
        by_hand = (test[c].astype("float64").fillna(s["median"]).to_numpy() - s["mean"]) / s["std"]
        assert np.allclose(conts[:, k].numpy(), by_hand, atol=1e-5), c


# ---------------------------------------------------------------- the recipe's config
def test_kaggle_recipe_reads_the_shared_dir_setting(tmp_path):
    from omegaconf import OmegaConf

    from conftest import compose_cfg

    cfg = compose_cfg(["experiment=rossmann_kaggle", "paths.shared_dir=/some/where"], tmp_path)
    data = OmegaConf.to_container(cfg.data, resolve=True)
    assert (data["root"], data["extras"]) == ("/some/where/rossmann/kaggle", "/some/where/rossmann/extras")
    from conftest import CONF

    for path in (CONF / "experiment").glob("rossmann*.yaml"):
        assert "../shared" not in path.read_text(), path  # the shared data only through paths.shared_dir


def test_kaggle_recipe_without_the_shared_dir_stops_in_one_line():
    import os
    import subprocess
    import sys

    from conftest import ROOT

    env = {k: v for k, v in os.environ.items() if k != "EMBLAB_SHARED_DIR"}
    res = subprocess.run(
        [sys.executable, "train.py", "experiment=rossmann_kaggle", "hydra.run.dir=/tmp/emblab-test-noshared"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**env, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"},
    )
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode != 0 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert lines[-1].startswith("error: ") and "paths.shared_dir is not set" in lines[-1], lines[-1]
