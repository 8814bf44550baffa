"""Generic tabular data and MixedInputModel: codes and mapper learned on train and reused, unknown
values, missing values, exact errors, splits, and a model that learns."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch

from emblab.core.errors import ConfigError, DataError
from emblab.data.tabular import TabularDataModule, TabularProcessor, auto_y_range, category_values
from emblab.models.tabular import ExpRMSPE, MixedInputModel, emb_size
from emblab.train import train

from conftest import FAST, compose_cfg


def make_table(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    color = rng.choice(["red", "green", "blue"], n)
    size = rng.integers(1, 6, n)
    x = rng.normal(10, 3, n)
    x[rng.random(n) < 0.1] = np.nan
    z = rng.uniform(0, 1, n)
    y = 5 + 3 * (color == "red") + 0.5 * size + 0.2 * np.nan_to_num(x, nan=10) + z + rng.normal(0, 0.1, n)
    dates = pd.date_range("2020-01-01", periods=n, freq="D")
    return pd.DataFrame(
        {
            "color": color,
            "size": size,
            "x": x,
            "z": z,
            "y": y,
            "date": dates.strftime("%Y-%m-%d"),
            "label": np.where(y > np.median(y), "hi", "lo"),
        }
    )


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "t.csv"
    make_table().to_csv(path, index=False)
    return path


def test_codes_and_mapper_come_from_train_and_are_reused():
    train = pd.DataFrame({"c": ["b", "a", "b", None], "x": [1.0, 3.0, np.nan, 5.0]})
    test = pd.DataFrame({"c": ["a", "b", "zzz", None], "x": [np.nan, 3.0, 100.0, 1.0]})
    proc = TabularProcessor.fit(train, ["c"], ["x"])
    assert proc.cat_cols == ["c", "x_na"] and proc.classes["c"] == ["a", "b"]
    assert proc.stats["x"]["median"] == 3.0
    cats_tr, conts_tr = proc.transform(train)
    cats_te, conts_te = proc.transform(test)
    # the same value gets the same code in both; unseen and missing values get the reserved 0
    assert cats_tr[:, 0].tolist() == [2, 1, 2, 0]
    assert cats_te[:, 0].tolist() == [1, 2, 0, 0]
    # the flag column: code 1 = "False" (present), 2 = "True" (was missing)
    assert cats_tr[:, 1].tolist() == [1, 1, 2, 1] and cats_te[:, 1].tolist() == [2, 1, 1, 1]
    # the training mapper: filled train column [1, 3, 3, 5] has mean 3 and std sqrt(2)
    s = np.sqrt(2.0)
    assert torch.allclose(conts_tr[:, 0], torch.tensor([-2 / s, 0, 0, 2 / s], dtype=torch.float32))
    assert torch.allclose(
        conts_te[:, 0], torch.tensor([0, 0, 97 / s, -2 / s], dtype=torch.float32)
    )  # NaN -> train median 3
    assert not torch.isnan(conts_te).any()


def test_codes_do_not_depend_on_how_the_reader_typed_a_column():
    proc = TabularProcessor.fit(pd.DataFrame({"store": [3, 1, 2]}), ["store"], [])
    as_float = pd.DataFrame({"store": [1.0, np.nan, 3.0]})  # a CSV integer column with a blank
    as_text = pd.DataFrame({"store": ["1", "2", "3"]})
    assert proc.transform(as_float)[0][:, 0].tolist() == [1, 0, 3]
    assert proc.transform(as_text)[0][:, 0].tolist() == [1, 2, 3]


def test_processor_state_survives_a_weights_only_checkpoint(tmp_path):
    df = make_table()
    proc = TabularProcessor.fit(df, ["color", "size"], ["x", "z"])
    torch.save({"p": proc.state()}, tmp_path / "s.pt")
    again = TabularProcessor.from_state(torch.load(tmp_path / "s.pt", weights_only=True)["p"])
    for a, b in zip(proc.transform(df), again.transform(df), strict=False):
        assert torch.equal(a, b)


def test_datamodule_train_and_val_share_codes(table):
    dm = TabularDataModule.of(path=str(table), cat_cols=["color", "size"], cont_cols=["x", "z"], target="y")
    dm.setup()
    df = pd.read_csv(table)
    assert dm.dims()["emb_card"] == [4, 6, 3]  # 3 colors, 5 sizes, x_na flag (+ unknown each)
    cats, conts, y = dm.train_ds.tensors
    vc, _, _ = dm.val_ds.tensors
    assert len(cats) + len(vc) == len(df) and len(vc) == 80
    assert cats.min() >= 1 and vc.min() >= 1  # every value of this table is known
    assert dm.dims()["y_range"] == pytest.approx([0.0, 1.2 * float(y.max())])
    assert not torch.isnan(conts).any()


def test_split_by_cutoff_and_window(table):
    common = dict(cat_cols=["color"], cont_cols=["z"], target="y", date_col="date")
    dm = TabularDataModule.of(path=str(table), split="cutoff", cutoff="2020-12-01", **common)
    dm.setup()
    assert len(dm.val_ds) == (pd.to_datetime(pd.read_csv(table)["date"]) >= "2020-12-01").sum()
    dm = TabularDataModule.of(path=str(table), split="window", val_start="2020-02-01", val_end="2020-02-10", **common)
    dm.setup()
    assert len(dm.val_ds) == 10
    with pytest.raises(ConfigError, match="date_col"):
        TabularDataModule.of(
            path=str(table), split="cutoff", cutoff="2020-12-01", cat_cols=["color"], target="y"
        ).setup()


def test_parquet_and_empty_cat_or_cont(tmp_path):
    path = tmp_path / "t.parquet"
    make_table().to_parquet(path)
    only_cont = TabularDataModule.of(path=str(path), cat_cols=[], cont_cols=["z"], target="y")
    only_cont.setup()
    only_cat = TabularDataModule.of(path=str(path), cat_cols=["color"], cont_cols=[], target="y")
    only_cat.setup()
    for dm in (only_cont, only_cat):
        model = MixedInputModel.of(**dm.dims(), layers=[8], ps=[0.0])
        cats, conts, _ = dm.train_ds[torch.arange(5)]
        assert model(cats, conts).shape == (5,)
    assert only_cont.train_ds.tensors[0].shape[1] == 0 and only_cat.train_ds.tensors[1].shape[1] == 0


@pytest.mark.parametrize(
    "bad, expected",
    [
        ({"col": "z", "row": 7, "value": "abc"}, r"t\.csv, line 9, column 'z': 'abc' is not a number"),
        ({"col": "y", "row": 3, "value": "seven"}, r"t\.csv, line 5, column 'y': 'seven' is not a number"),
    ],
)
def test_bad_values_name_file_line_and_column(tmp_path, bad, expected):
    df = make_table().astype({bad["col"]: object})
    df.loc[bad["row"], bad["col"]] = bad["value"]
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    with pytest.raises(DataError, match=expected):
        TabularDataModule.of(path=str(path), cat_cols=["color"], cont_cols=["z"], target="y").setup()


def test_missing_column_is_named(table):
    with pytest.raises(DataError, match=r"missing column\(s\) \['nope'\]"):
        TabularDataModule.of(path=str(table), cat_cols=["nope"], cont_cols=["z"], target="y").setup()


def test_emb_size_rules():
    assert [emb_size(c) for c in (2, 8, 1116)] == [1, 4, 50]
    assert emb_size(1116, "fastai2") == round(1.6 * 1116**0.56)


def test_exp_rmspe_against_hand_computed_value():
    y = torch.tensor([100.0, 200.0, 50.0])
    y_hat = torch.tensor([110.0, 180.0, 50.0])
    m = ExpRMSPE()
    m.update(torch.log(y_hat[:2]), torch.log(y[:2]))  # two batches accumulate
    m.update(torch.log(y_hat[2:]), torch.log(y[2:]))
    # ((100-110)/100)^2 = 0.01, ((200-180)/200)^2 = 0.01, 0 -> sqrt(0.02 / 3)
    assert float(m.compute()) == pytest.approx(np.sqrt(0.02 / 3), rel=1e-6)
    m = ExpRMSPE()  # a zero-sales row (log 0 = -inf) is left out, as in Kaggle's metric
    m.update(torch.log(torch.tensor([110.0, 5.0])), torch.log(torch.tensor([100.0, 0.0])))
    assert float(m.compute()) == pytest.approx(0.1, rel=1e-6)


def test_auto_y_range():
    assert auto_y_range(np.array([1.0, 10.0])) == [0.0, 12.0]
    assert auto_y_range(np.array([-1.0, 1.0])) == pytest.approx([-1.4, 1.4])


def test_overfits_a_small_batch(table):
    pl.seed_everything(0)
    dm = TabularDataModule.of(
        path=str(table), cat_cols=["color", "size"], cont_cols=["x", "z"], target="y", batch_size=64
    )
    dm.setup()
    model = MixedInputModel.of(
        **dm.dims(),
        layers=[64, 32],
        ps=[0.0, 0.0],
        emb_drop=0.0,
        optim={"name": "adam", "lr": 1e-2, "schedule": "constant"},
    )
    cats, conts, y = dm.train_ds[torch.arange(64)]
    opt = model.configure_optimizers()
    losses = []
    for _ in range(150):
        loss = model.loss(model(cats, conts), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.05 * losses[0], losses[::30]


def test_classification_head(table):
    dm = TabularDataModule.of(
        path=str(table), cat_cols=["color", "size"], cont_cols=["x"], target="label", task="classification"
    )
    dm.setup()
    assert dm.dims()["out_sz"] == 2 and dm.dims()["y_range"] is None
    model = MixedInputModel.of(**dm.dims(), layers=[16], ps=[0.0])
    cats, conts, y = dm.train_ds[torch.arange(10)]
    assert model(cats, conts).shape == (10, 2) and y.dtype == torch.int64
    assert model.loss(model(cats, conts), y).ndim == 0


def test_fast_dev_run_on_a_user_table(table, tmp_path):
    cfg = compose_cfg(
        [
            "model=mixed_input",
            "data=tabular",
            f"data.path={table}",
            "data.target=y",
            "data.cat_cols=[color,size]",
            "data.cont_cols=[x,z]",
            "model.layers=[16,8]",
            *FAST,
        ],
        tmp_path / "run",
    )
    metrics = train(cfg)
    assert math.isfinite(metrics["val/loss"]["final"]) and metrics["val/loss"]["final"] > 0


def test_architecture_follows_the_lesson():
    model = MixedInputModel.of(
        emb_card=[1116, 8],
        n_cont=3,
        cat_names=["Store", "DayOfWeek"],
        layers=[1000, 500],
        ps=[0.001, 0.01],
        use_bn=True,
        y_range=[0.0, 12.0],
    )
    net = model.net
    assert [e.embedding_dim for e in net.embs] == [50, 4] and net.emb_drop.p == 0.04
    kinds = [type(m).__name__ for m in net.layers]
    assert kinds == ["Linear", "ReLU", "BatchNorm1d", "Dropout"] * 2
    assert [m.p for m in net.layers if isinstance(m, torch.nn.Dropout)] == [0.001, 0.01]
    first = net.layers[0]
    assert first.in_features == 54 + 3
    assert float(first.weight.std()) == pytest.approx(np.sqrt(2 / first.in_features), rel=0.05)  # Kaiming (ReLU)
    model.eval()
    out = model(torch.tensor([[1, 2], [0, 7]]), torch.zeros(2, 3))
    assert out.shape == (2,) and bool(((out > 0) & (out < 12)).all())  # sigmoid scaled to y_range


def mixed_table(n: int = 300, seed: int = 1) -> pd.DataFrame:
    """One column of each kind a user's table has, and an id."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "Id": np.arange(1, n + 1),  # a row number: an id
            "name": [f"customer {k}" for k in rng.permutation(n)],  # text unique per row: an id
            "job": rng.choice(["admin", "technician", "services"], n),  # text: categorical
            "rooms": rng.integers(1, 6, n),  # few whole numbers: categorical
            "age": rng.integers(18, 90, n),  # many whole numbers: continuous
            "balance": rng.normal(1000, 300, n).round(2),  # fractions: continuous
            "member": rng.random(n) < 0.5,  # booleans: categorical
            "saledate": pd.date_range("2021-01-01", periods=n, freq="D").strftime("%Y-%m-%d"),
        }
    )
    df["y"] = np.where(df["balance"] + 50 * df["rooms"] > 1150, "yes", "no")
    return df


def test_naming_the_target_is_enough(tmp_path, caplog):
    path = tmp_path / "t.csv"
    mixed_table().to_csv(path, index=False)
    with caplog.at_level("INFO", logger="emblab"):
        dm = TabularDataModule.of(path=str(path), target="y", date_cols=["saledate"])
        dm.setup()
    assert dm.task == "classification" and dm.target_classes == ["no", "yes"]
    assert dm.dropped == ["Id", "name"]
    # fastai's rule: text, booleans and <= 20 whole values are codes; fractions and many whole values amounts;
    # the date's parts go through the same rule (Day, Week, Dayofyear have more than 20 values)
    assert dm.cat_cols == [
        "job", "rooms", "member", "saleYear", "saleMonth", "saleDayofweek",
        "saleIs_month_end", "saleIs_month_start", "saleIs_quarter_end", "saleIs_quarter_start",
        "saleIs_year_end", "saleIs_year_start",
    ]  # fmt: skip
    assert dm.cont_cols == ["age", "balance", "saleWeek", "saleDay", "saleDayofyear", "saleElapsed"]
    text = caplog.text
    assert "job (text, 3 values)" in text and re.search(r"age \(whole numbers, \d+ values > data.max_card 20\)", text)
    assert "column Id is different on every training row (an id): dropped" in text
    assert "data.task=auto: classification" in text
    # a float target with many values is a regression
    df = mixed_table()
    df["y"] = df["balance"] * 2.5
    df.to_csv(path, index=False)
    dm = TabularDataModule.of(path=str(path), target="y", cont_cols=["age"], cat_cols="auto")
    dm.setup()
    assert dm.task == "regression" and dm.cont_cols == ["age", "balance"] and dm.cat_cols == ["job", "rooms", "member"]
    # one list named, the other auto: the named columns take that type, the rule types the rest (an id numbered
    # densely reads as a number by the rule; naming it makes it a category without naming every other column)
    dm = TabularDataModule.of(path=str(path), target="y", cat_cols=["age"])
    dm.setup()
    assert dm.cat_cols == ["age", "job", "rooms", "member"] and dm.cont_cols == ["balance"]


def test_named_columns_take_the_date_parts_and_a_bad_date_names_its_line(tmp_path):
    path = tmp_path / "t.csv"
    df = mixed_table()
    df.to_csv(path, index=False)
    dm = TabularDataModule.of(path=str(path), target="y", cat_cols=["job"], cont_cols=["age"], date_cols=["saledate"])
    dm.setup()
    assert dm.cat_cols[:2] == ["job", "saleYear"] and dm.cont_cols == ["age", "saleElapsed"]
    assert dm.dropped == []  # named columns: nothing is guessed
    df.loc[7, "saledate"] = "soon"
    df.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"line 9, column 'saledate': 'soon' is not a date"):
        TabularDataModule.of(path=str(path), target="y", date_cols=["saledate"]).setup()
    with pytest.raises(ConfigError, match="data.cat_cols=3: expected auto or a list"):
        TabularDataModule.of(path=str(path), target="y", cat_cols=3)


def test_times_with_summer_and_winter_offsets_are_read_in_utc(caplog):
    from emblab.data.columns import add_dateparts

    # one zone's winter (+01:00) and summer (+02:00) time: pandas refuses such a column unless told UTC
    df = pd.DataFrame({"visit": ["2021-01-31T23:30:00+01:00", "2021-07-01T12:00:00+02:00", None]})
    with caplog.at_level("WARNING"):
        add_dateparts(df, "visit", "v.csv")
    assert df["visitDay"].tolist()[:2] == [31, 1] and df["visitMonth"].tolist()[:2] == [1, 7]  # 22:30 and 10:00 UTC
    assert df["visitDay"].isna().tolist() == [False, False, True]
    assert "v.csv: visit holds times with differing UTC offsets" in caplog.text


@pytest.mark.skipif(int(pd.__version__.split(".")[0]) < 3, reason="pandas 2 reads dates in nanoseconds only")
def test_dates_outside_nanosecond_timestamps_take_their_parts():
    from emblab.data.columns import add_dateparts

    df = pd.DataFrame({"built": ["1600-01-01", "1970-01-02"]})  # before 1677: past what nanoseconds reach
    add_dateparts(df, "built", "h.csv")
    assert df["builtYear"].tolist() == [1600, 1970] and df["builtElapsed"].tolist() == [-11676096000.0, 86400.0]


def test_predict_new_rows_from_a_tabular_checkpoint(tmp_path):
    from conftest import run_cli

    df = mixed_table(400)
    df.iloc[:300].to_csv(tmp_path / "train.csv", index=False)
    new = df.iloc[300:].drop(columns=["y"]).copy()
    new.loc[new.index[0], "job"] = "astronaut"  # a category training never saw
    new.to_csv(tmp_path / "new.csv", index=False)
    cfg = compose_cfg(
        [
            "model=mixed_input",
            "data=tabular",
            f"data.path={tmp_path / 'train.csv'}",
            "data.target=y",
            "data.date_cols=[saledate]",
            "model.layers=[16]",
            "model.ps=[0]",
            "trainer.max_epochs=2",
            "logger=csv",
        ],
        tmp_path / "run",
    )
    metrics = train(cfg)
    r = run_cli("-m", "emblab.predict", f"ckpt_path={metrics['last_checkpoint']}", f"table={tmp_path / 'new.csv'}",
                f"out={tmp_path / 'preds.csv'}")  # fmt: skip
    assert r.returncode == 0, r.stderr
    preds = pd.read_csv(tmp_path / "preds.csv")
    # the ids training left out come back first, then the likeliest class and each class's probability
    assert list(preds.columns) == ["Id", "name", "y", "p_no", "p_yes"] and len(preds) == 100
    assert preds["Id"].tolist() == new["Id"].tolist()
    assert np.allclose(preds["p_no"] + preds["p_yes"], 1, atol=1e-3)
    assert (preds["y"] == np.where(preds["p_yes"] > preds["p_no"], "yes", "no")).all()
    assert "job 1" in r.stderr  # the unseen category, counted
    r = run_cli("-m", "emblab.predict", f"ckpt_path={metrics['last_checkpoint']}",
                f"table={tmp_path / 'train.csv'}", "user=1")  # fmt: skip
    assert r.returncode == 2 and r.stderr.count("error:") == 1


def test_tabular_bench_puts_peers_on_the_same_rows(tmp_path):
    from emblab.bench import tabular as bench

    mixed_table(500).to_csv(tmp_path / "t.csv", index=False)
    result = bench.main(
        bench.Args(
            path=str(tmp_path / "t.csv"),
            target="y",
            drop=["name"],
            overrides=["data.date_cols=[saledate]", "trainer.max_epochs=2", "model.layers=[16]", "model.ps=[0]"],
            seeds="0",
            models="mixed_input,lightgbm,lightgbm_all,lightgbm_tuned",
            out=str(tmp_path / "bench"),
        )
    )
    # LightGBM's defaults on the training rows, and on training + validation (what its user would fit)
    assert result["models"]["lightgbm"]["params"] == [{"rows": 320}]
    assert result["models"]["lightgbm_all"]["params"] == [{"rows": 400}]
    assert result["task"] == "classification" and "400 train" not in result["data"]
    assert "320 train / 80 validation / 100 test rows" in result["data"]
    for name, r in result["models"].items():
        assert 0.5 <= r["acc"]["mean"] <= 1 and 0 < r["logloss"]["mean"] and 0 <= r["auc"]["mean"] <= 1, name
    # the target is a rule on two columns: boosting finds it
    assert result["models"]["lightgbm_tuned"]["auc"]["mean"] > 0.9
    assert set(result["models"]["lightgbm_tuned"]["params"][0]) == {*bench.LGBM_GRID, "trees"}
    assert "| lightgbm_tuned |" in (tmp_path / "bench" / "tabular-table.md").read_text()


def test_tabular_bench_leaves_out_rows_without_a_target(tmp_path):
    from emblab.bench import tabular as bench

    df = mixed_table(300)
    df.loc[:9, "y"] = None  # blank in the CSV: those rows neither train nor score, for every model alike
    df.to_csv(tmp_path / "t.csv", index=False)
    args = bench.Args(path=str(tmp_path / "t.csv"), target="y", drop=["name"], seeds="0", models="lightgbm",
                      overrides=["data.date_cols=[saledate]"], out=str(tmp_path / "bench"))  # fmt: skip
    result = bench.main(args)
    assert "186 train / 46 validation / 58 test rows" in result["data"]
    assert 0.5 <= result["models"]["lightgbm"]["acc"]["mean"] <= 1


def test_tabular_bench_fastai_peer(tmp_path):
    pytest.importorskip("fastai.tabular.all", reason="fastai is the peers extra (make bench-peers)")
    from emblab.bench import tabular as bench

    mixed_table(500).to_csv(tmp_path / "t.csv", index=False)
    args = dict(path=str(tmp_path / "t.csv"), seeds="0", models="fastai", epochs_fastai=[1, 2])
    result = bench.main(bench.Args(target="y", drop=["name"], out=str(tmp_path / "c"), **args))
    r = result["models"]["fastai"]
    assert 0.5 <= r["acc"]["mean"] <= 1 and 0 < r["logloss"]["mean"]
    assert r["params"][0]["epochs"] in (1, 2) and r["params"][0]["lr"] in bench.FASTAI_LRS  # chosen on validation
    # regression through fastai's y_range: a target far from 0 is reached within two epochs
    result = bench.main(bench.Args(target="balance", drop=["name", "y"], out=str(tmp_path / "r"), **args))
    y = pd.read_csv(tmp_path / "t.csv")["balance"]
    assert result["models"]["fastai"]["rmse"]["mean"] < y.std() * 2


def test_a_category_is_coded_by_its_value_whatever_else_its_part_holds():
    """1 is "1" in a part that also holds 1.5 or inf as in one that does not (a test file without the fraction
    would otherwise code every row unseen), and inf or 1e300 are values, not a crash."""
    mixed = category_values(pd.Series([1.0, 2.0, np.nan, 1.5, np.inf, 1e300]))
    assert mixed.tolist()[:2] == category_values(pd.Series([1, 2])).tolist() == ["1", "2"]
    assert mixed.isna().tolist() == [False, False, True, False, False, False] and mixed.iloc[3] == "1.5"
    assert mixed.iloc[4] == "inf"


def test_a_checkpoint_that_coded_a_column_with_fractions_as_floats_still_knows_its_whole_values():
    """Before whole numbers were coded value by value, a column with 1.5 in it held 1 as "1.0": new rows of such a
    processor (a checkpoint's) are coded the same way, so its 1 is not counted unseen; today's are not touched."""
    from emblab.data.tabular import TabularProcessor

    new = pd.DataFrame({"grade": [1.0, 1.5, 7.0], "level": [1, 2, 3], "text": ["1.0", "2", "x"]})
    old = TabularProcessor(
        ["grade", "level", "text"], [], {"grade": ["1.0", "1.5", "2.0"], "level": ["1", "2"], "text": ["1.0", "2"]}, {}
    )
    cats, _ = old.transform(new, "new.csv")
    assert cats.tolist() == [[1, 1, 1], [2, 2, 2], [0, 0, 0]] and old.float_text == {"grade"}
    today = TabularProcessor.fit(new, ["grade", "level"], [])
    assert today.classes["grade"] == ["1", "1.5", "7"] and today.float_text == set()
    assert today.transform(new, "new.csv")[0].tolist() == [[1, 1], [2, 2], [3, 3]]


def test_a_frequent_value_takes_one_bin_and_the_rest_of_the_column_keeps_its_resolution():
    """data.quantile_cap: a sentinel on 82 % of the rows (Bank Marketing's pdays = -1) would leave the other values
    the top 18 % of the normal, a few of the embedding's bins; capped at one bin's share, they spread over it."""
    from emblab.data.tabular import capped_quantiles, to_normal

    x = np.r_[np.full(820, -1.0), np.arange(1, 181.0)]
    probe = np.array([-1.0, 1.0, 90.0])
    plain = to_normal(probe, capped_quantiles(x, 100))
    capped = to_normal(probe, capped_quantiles(x, 100, cap=48))
    assert plain[1] > 0.9 and capped[0] < -2.0 and abs(capped[2]) < 0.1  # the rest's middle: the normal's middle
    days = np.repeat(np.arange(1, 32.0), np.arange(50, 205, 5))  # 31 values, each past a 48th of the rows
    assert set(np.unique(capped_quantiles(days, 311, cap=48), return_counts=True)[1]) <= {9, 10, 11}  # equal widths
    y = np.random.default_rng(0).normal(size=1000)  # no value past the cap: numpy's quantiles, unchanged
    assert np.array_equal(capped_quantiles(y, 100, cap=48), np.quantile(y, np.linspace(0, 1, 100)))
