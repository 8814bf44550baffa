"""Rossmann: the generator, the real Kaggle and external files parsed untouched, the notebook's
features, training wiring, and a submission on the real test.csv."""

from __future__ import annotations

import json
import logging
import re

import numpy as np
import pandas as pd
import pytest
import torch

from emblab.core.errors import DataError
from emblab.data.rossmann import CAT_VARS, CONT_VARS, RossmannDataModule, add_elapsed
from emblab.data.rossmann_files import (
    git_blob_id,
    read_googletrend,
    read_sales,
    read_store,
    read_store_states,
    read_weather,
)
from emblab.data.rossmann_gen import generate, write
from emblab.data.tabular import TabularProcessor
from emblab.models.tabular import MixedInputModel
from emblab.rossmann_submit import predict_test
from emblab.train import train

from conftest import FAST, compose_cfg, run_cli, shared_path

KAGGLE_TRAIN_HEADER = '"Store","DayOfWeek","Date","Sales","Customers","Open","Promo","StateHoliday","SchoolHoliday"'
KAGGLE_TEST_HEADER = '"Id","Store","DayOfWeek","Date","Open","Promo","StateHoliday","SchoolHoliday"'


def extras_or_none():
    from conftest import SHARED

    path = SHARED / "rossmann" / "extras"
    return str(path) if path.is_dir() else None


# ---------------------------------------------------------------- generator
def test_generator_is_deterministic_by_seed():
    a, b, c = generate(12, seed=3), generate(12, seed=3), generate(12, seed=4)
    for x, y in ((a.train, b.train), (a.test, b.test), (a.store, b.store), (a.store_states, b.store_states)):
        pd.testing.assert_frame_equal(x, y)
    assert not a.train.Sales.equals(c.train.Sales)


def test_generator_writes_the_kaggle_schema(tmp_path):
    gen = generate(10, seed=0)
    write(gen, tmp_path)
    header, first = (tmp_path / "train.csv").read_text().splitlines()[:2]
    assert header == KAGGLE_TRAIN_HEADER
    assert re.fullmatch(r'1,5,2015-07-31,\d+,\d+,[01],[01],"[0abc]","[01]"', first), first
    assert (tmp_path / "test.csv").read_text().splitlines()[0] == KAGGLE_TEST_HEADER
    train = read_sales(tmp_path / "train.csv")
    assert len(train) == 10 * 942 and train.Date.min() == pd.Timestamp("2013-01-01")
    assert train.Date.max() == pd.Timestamp("2015-07-31")
    test = read_sales(tmp_path / "test.csv", test=True)
    assert test.Date.min() == pd.Timestamp("2015-08-01") and test.Id.tolist() == list(range(1, len(test) + 1))
    assert set(read_store_states(tmp_path / "store_states.csv").State) <= {
        "NW",
        "BY",
        "SH",
        "HE",
        "BE",
        "SN",
        "BW",
        "ST",
        "RP",
        "TH",
        "HH",
        "HB,NI",
    }
    assert json.loads((tmp_path / "generated.json").read_text())["generator_version"] >= 2
    store = read_store(tmp_path / "store.csv")
    pd.testing.assert_series_equal(store.CompetitionDistance, gen.store.CompetitionDistance.astype(float))


def test_generated_sales_have_the_lesson_structure():
    t = generate(60, seed=1).train
    open_ = t[t.Open == 1]
    # shut on Sundays except store type b, and on state holidays; no sales when shut
    assert (t.loc[t.Open == 0, "Sales"] == 0).all()
    assert (open_.DayOfWeek == 7).mean() < 0.05
    assert (open_.StateHoliday != "0").mean() < 0.01
    # promotions lift sales; Monday above Saturday
    assert open_[open_.Promo == 1].Sales.mean() > 1.1 * open_[open_.Promo == 0].Sales.mean()
    by_day = open_.groupby("DayOfWeek").Sales.mean()
    assert by_day[1] > by_day[6]


def test_generator_takes_a_real_store_table():
    store = read_store(shared_path("rossmann", "kaggle", "store.csv"))
    states = read_store_states(shared_path("rossmann", "extras", "store_states.csv"))
    gen = generate(seed=0, store=store, store_states=states, train_start="2015-07-01")
    assert gen.train.Store.nunique() == 1115 and len(gen.train) == 1115 * 31
    merged = gen.train.merge(store, on="Store")
    assert merged[merged.StoreType == "b"].Open.mean() > merged[merged.StoreType != "b"].Open.mean()


def test_writing_the_real_store_table_reproduces_the_file_byte_for_byte(tmp_path):
    path = shared_path("rossmann", "kaggle", "store.csv")
    gen = generate(seed=0, store=read_store(path), train_start="2015-07-25")
    write(gen, tmp_path)
    assert (tmp_path / "store.csv").read_bytes() == path.read_bytes()


# ---------------------------------------------------------------- the real files, untouched
def test_real_store_csv():
    store = read_store(shared_path("rossmann", "kaggle", "store.csv"))
    assert len(store) == 1115 and store.Store.tolist() == list(range(1, 1116))
    assert set(store.StoreType) == set("abcd") and store.CompetitionDistance.isna().sum() == 3
    assert set(store.PromoInterval.dropna()) == {"Jan,Apr,Jul,Oct", "Feb,May,Aug,Nov", "Mar,Jun,Sept,Dec"}


def test_real_test_csv_blank_open_is_read_as_open_and_counted(caplog):
    with caplog.at_level(logging.WARNING):
        test = read_sales(shared_path("rossmann", "kaggle", "test.csv"), test=True)
    assert len(test) == 41_088 and test.Store.nunique() == 856
    assert test.attrs["blank_open"] == 11 and "11 rows with a blank Open (stores [622])" in caplog.text
    assert test.Open.notna().all() and set(test.StateHoliday) == {"0", "a"}


def test_real_store_states_keeps_the_combined_code():
    states = read_store_states(shared_path("rossmann", "extras", "store_states.csv"))
    assert len(states) == 1115 and (states.State == "HB,NI").sum() == 22 and states.State.nunique() == 12


def test_real_googletrend_with_german_headers():
    trend = read_googletrend(shared_path("rossmann", "extras", "googletrend"))
    assert set(trend.State) == {"DE", "BE", "BW", "BY", "HB,NI", "HE", "HH", "NW", "RP", "SH", "SL", "SN", "ST", "TH"}
    assert trend.WeekStart.min() == pd.Timestamp("2012-12-02") and (trend.WeekStart.dt.day_of_week == 6).all()
    assert trend.trend.between(0, 100).all()


def test_real_weather_semicolon_files():
    weather = read_weather(shared_path("rossmann", "extras", "weather"))
    assert weather.State.nunique() == 17  # 16 files; Niedersachsen also serves "HB,NI"
    assert weather.Date.min() == pd.Timestamp("2013-01-01") and weather.Date.max() == pd.Timestamp("2015-09-17")
    nds = weather[weather.State == "HB,NI"].set_index("Date")
    assert nds.Mean_TemperatureC.equals(weather[weather.State == "NI"].set_index("Date").Mean_TemperatureC)


def test_git_blob_id_is_what_git_hash_object_prints(tmp_path):
    import subprocess

    path = tmp_path / "train.csv"
    path.write_text(KAGGLE_TRAIN_HEADER + '\n1,5,2015-07-31,5263,555,1,1,"0","1"\n')
    expected = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True, check=True).stdout
    assert git_blob_id(path) == expected.strip()


def test_bad_sales_value_names_file_line_and_column(tmp_path):
    write(generate(3, seed=0, train_start="2015-07-25"), tmp_path)
    lines = (tmp_path / "train.csv").read_text().splitlines()
    fields = lines[4].split(",")
    fields[3] = "lots"
    lines[4] = ",".join(fields)
    (tmp_path / "train.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"train\.csv, line 5, column 'Sales': 'lots' is not a number"):
        read_sales(tmp_path / "train.csv")


# ---------------------------------------------------------------- features
def test_elapsed_days_and_window_counts_by_hand():
    dates = pd.date_range("2015-01-01", periods=8)
    df = pd.DataFrame(
        {"Store": 1, "Date": dates, "Promo": [0, 1, 0, 0, 0, 1, 0, 0], "SchoolHoliday": 0, "StateHoliday": False}
    )
    out = add_elapsed(df.sample(frac=1, random_state=0).copy()).sort_values("Date")  # row order does not matter
    assert out.AfterPromo.tolist() == [0, 0, 1, 2, 3, 0, 1, 2]  # 0 before any promo, as the notebook's fillna(0)
    assert out.BeforePromo.tolist() == [-1, 0, -3, -2, -1, 0, 0, 0]  # the notebook's sign: date - next event
    assert out.Promo_bw.tolist() == [0, 1, 1, 1, 1, 2, 2, 2]
    assert out.Promo_fw.tolist() == [2, 2, 1, 1, 1, 1, 0, 0]


@pytest.fixture(scope="module")
def small_rossmann(tmp_path_factory):
    dm = RossmannDataModule.of(
        data_dir=str(tmp_path_factory.mktemp("data")), n_stores=15, gen_start="2014-06-01", extras=extras_or_none()
    )
    dm.prepare_data()
    dm.setup()
    return dm


def test_every_feature_column_present_and_finite(small_rossmann):
    dm = small_rossmann
    joined, is_test, have = dm.load_frames()
    expected = CAT_VARS + CONT_VARS if all(have.values()) else dm.cat_vars + dm.cont_vars
    missing = [c for c in expected if c not in joined.columns]
    assert not missing
    assert dm.cat_vars + dm.cont_vars == [c for c in expected]
    for ds in (dm.train_ds, dm.val_ds):
        cats, conts, y = ds.tensors
        assert torch.isfinite(conts).all() and torch.isfinite(y).all()
        assert cats.min() >= 0 and (cats.max(0).values < torch.tensor(dm.dims()["emb_card"])).all()
    assert dm.dims()["y_range"] == pytest.approx([0.0, 1.2 * float(dm.train_ds.tensors[2].max())])


def test_codes_and_mapper_identical_between_train_and_test(small_rossmann):
    dm = small_rossmann
    joined, is_test, _ = dm.load_frames()
    again = TabularProcessor.from_state(dm.artifacts()["processor"])
    test_cats, test_conts = again.transform(joined[is_test])
    # the same store gets the same code in training and test rows
    j = dm.proc.cat_cols.index("Store")
    train_rows = joined[~is_test & (joined.Open == 1) & (joined.Sales > 0)]
    tr_cats, _ = dm.proc.transform(train_rows)
    code_of = dict(zip(train_rows.Store, tr_cats[:, j].tolist(), strict=False))
    assert all(code_of[s] == c for s, c in zip(joined[is_test].Store, test_cats[:, j].tolist(), strict=False))
    # and the mapper is the training one: normalising the test Promo column by hand agrees
    k = dm.cont_vars.index("Promo")
    stats = dm.proc.stats["Promo"]
    by_hand = (joined[is_test].Promo.to_numpy() - stats["mean"]) / stats["std"]
    assert np.allclose(test_conts[:, k].numpy(), by_hand, atol=1e-6)


def test_validation_window_and_dropped_days(small_rossmann):
    dm = small_rossmann
    raw = read_sales(dm.files_dir() / "train.csv")
    in_val = raw.Date.between("2014-08-01", "2014-09-17")
    sold = (raw.Open == 1) & (raw.Sales > 0)
    assert len(dm.val_ds) == int((in_val & sold).sum()) and len(dm.train_ds) == int((~in_val & sold).sum())


def test_fit_all_trains_on_the_window_too(small_rossmann, tmp_path):
    held = small_rossmann
    dm = RossmannDataModule.of(
        data_dir=held.data_dir, n_stores=15, gen_start="2014-06-01", extras=extras_or_none(), fit_all=True
    )
    dm.setup()
    assert len(dm.train_ds) == len(held.train_ds) + len(held.val_ds) and len(dm.val_ds) == len(held.val_ds)


def test_fast_dev_run(tmp_path):
    cfg = compose_cfg(
        [
            "model=mixed_input",
            "data.n_stores=8",
            "data.gen_start=2014-06-01",
            f"paths.data_dir={tmp_path / 'data'}",
            *FAST,
        ],
        tmp_path / "run",
    )
    train(cfg)


def test_overfits_a_small_batch(small_rossmann):
    torch.manual_seed(0)
    dm = small_rossmann
    model = MixedInputModel.of(
        **dm.dims(),
        layers=[64, 32],
        ps=[0.0, 0.0],
        emb_drop=0.0,
        optim={"name": "adam", "lr": 3e-3, "schedule": "constant"},
    )
    cats, conts, y = dm.train_ds[torch.arange(64)]
    opt = model.configure_optimizers()
    first = None
    for _ in range(150):
        loss = model.loss(model(cats, conts), y)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05 * first


# ---------------------------------------------------------------- submission on the real test.csv
@pytest.fixture(scope="module")
def real_store_data(tmp_path_factory):
    """Sales generated for the 1,115 real stores (from 2014-06-01, to keep it quick) with real extras."""
    store_csv = shared_path("rossmann", "kaggle", "store.csv")
    states_csv = shared_path("rossmann", "extras", "store_states.csv")
    dm = RossmannDataModule.of(
        data_dir=str(tmp_path_factory.mktemp("data")),
        store_csv=str(store_csv),
        store_states_csv=str(states_csv),
        gen_start="2014-06-01",
        extras=str(shared_path("rossmann", "extras")),
    )
    dm.prepare_data()
    dm.setup()
    return dm


def test_submission_on_the_real_test_csv(real_store_data):
    dm = real_store_data
    torch.manual_seed(0)
    model = MixedInputModel.of(**dm.dims(), layers=[32], ps=[0.0]).eval()
    sub = predict_test(
        model,
        dm.artifacts(),
        test_csv=str(shared_path("rossmann", "kaggle", "test.csv")),
        store_csv=str(shared_path("rossmann", "kaggle", "store.csv")),
    )
    sample = pd.read_csv(shared_path("rossmann", "kaggle", "sample_submission.csv"))
    test = pd.read_csv(shared_path("rossmann", "kaggle", "test.csv"))
    assert len(sub) == 41_088 and sub.Id.tolist() == sample.Id.tolist()
    assert sub.Sales.notna().all() and (sub.Sales >= 0).all()
    closed = sub.Id.isin(test.loc[test.Open == 0, "Id"])
    assert (sub.Sales[closed] == 0).all() and (sub.Sales[~closed] > 0).all()
    blank = sub.Id.isin(test.loc[test.Open.isna(), "Id"])
    assert blank.sum() == 11 and (sub.Sales[blank] > 0).all()


@pytest.mark.slow
def test_submission_command_end_to_end(real_store_data, tmp_path):
    """train.py for a few batches on generated sales of the real stores, then the submit command."""
    dm = real_store_data
    res = run_cli(
        "train.py",
        "model=mixed_input",
        "logger=csv",
        f"data.root={dm.files_dir()}",
        f"data.extras={dm.extras}",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=20",
        "model.layers=[64]",
        "model.ps=[0.0]",
        f"hydra.run.dir={tmp_path / 'run'}",
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    out = tmp_path / "sub.csv"
    res = run_cli(
        "-m",
        "emblab.rossmann_submit",
        f"ckpt_path={tmp_path / 'run' / 'checkpoints' / 'last.ckpt'}",
        f"test_csv={shared_path('rossmann', 'kaggle', 'test.csv')}",
        f"store_csv={shared_path('rossmann', 'kaggle', 'store.csv')}",
        f"out={out}",
    )
    assert res.returncode == 0, res.stderr[-2000:]
    sub = pd.read_csv(out)
    sample = pd.read_csv(shared_path("rossmann", "kaggle", "sample_submission.csv"))
    assert sub.columns.tolist() == ["Id", "Sales"] and sub.Id.tolist() == sample.Id.tolist()
    assert sub.Sales.notna().all() and (sub.Sales >= 0).all()
