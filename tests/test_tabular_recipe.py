"""model=tabular, the recipe for any table: numeric columns through their training quantiles, piecewise-linear
(or periodic) embeddings, an ensemble in one net, the output started at the target's prior, the epochs chosen on
validation; and what tables in the wild bring (a ; separator, "NA" for a missing number)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from test_tabular import mixed_table

from emblab.core.errors import ConfigError
from emblab.data.columns import apply_markers, missing_markers
from emblab.data.tabular import TabularDataModule, TabularProcessor, read_table, to_normal
from emblab.models.tabular import MixedInputModel
from emblab.nets.tabular import PeriodicEmbeddings, PiecewiseEmbeddings, TabularNet
from emblab.train import train

from conftest import compose_cfg


def test_quantile_transform_is_scikit_learns():
    from sklearn.preprocessing import QuantileTransformer

    rng = np.random.default_rng(0)
    x = np.r_[rng.exponential(size=3000), np.zeros(1000)]  # skewed, and a quarter of ties at the minimum
    q = np.quantile(x, np.linspace(0, 1, 300))
    ref = QuantileTransformer(n_quantiles=300, output_distribution="normal", subsample=10**9).fit(x[:, None])
    ours, theirs = to_normal(x, q), ref.transform(x[:, None])[:, 0]
    assert np.allclose(ours[x > 0], theirs[x > 0], atol=1e-6)
    # ties at the minimum sit at their rank's middle (scikit-learn: at -5.2, the clip); beyond the range: clipped
    assert np.allclose(ours[x == 0], -1.1503, atol=0.01)  # the quarter at the minimum: the 12.5 % point
    assert to_normal(np.array([-1.0, 1e9]), q).tolist() == pytest.approx([-5.199, 5.199], abs=1e-3)


def test_processor_fits_quantiles_on_training_rows_and_keeps_them_as_plain_lists():
    df = pd.DataFrame({"a": np.r_[np.arange(100.0), np.nan], "k": ["x"] * 101})
    proc = TabularProcessor.fit(df, ["k"], ["a"], num_transform="quantile")
    assert isinstance(proc.stats["a"]["quantiles"], list) and len(proc.stats["a"]["quantiles"]) == 10
    _, conts = TabularProcessor.from_state(proc.state()).transform(df)
    a = conts[:100, 0]  # 0..99 onto N(0, 1): in order, symmetric, the ends at the clip
    assert (a[1:] > a[:-1]).all() and a.mean().abs() < 1e-4 and a[0] == pytest.approx(-5.199, abs=1e-3)
    assert a[25].item() == pytest.approx(-0.6745, abs=0.02)  # the value a quarter up: the normal's quartile
    assert conts[100, 0] == pytest.approx(0.0, abs=0.05)  # missing: the median, the normal's middle


def test_a_continuous_column_of_few_values_is_a_category_too(caplog):
    """value_max_card: a column of few distinct training values also gets `<col>_value`, a code per value;
    a column of more values does not; a value training never saw or a missing one is code 0."""
    gain = np.r_[np.zeros(6), 7688.0, 7688.0, 3103.0, np.nan]
    df = pd.DataFrame({"gain": gain, "weight": np.arange(10.0), "k": ["x"] * 10})
    with caplog.at_level("INFO", logger="emblab"):
        proc = TabularProcessor.fit(df, ["k"], ["gain", "weight"], num_transform="quantile", value_max_card=3)
    assert proc.cat_cols == ["k", "gain_na", "gain_value"] and "values" not in proc.stats["weight"]
    assert proc.classes["gain_value"] == ["0", "3103", "7688"] and proc.cardinalities() == [2, 3, 4]
    assert "gain (3 values)" in caplog.text
    new = pd.DataFrame({"gain": [7688.0, 0.0, 5.0, np.nan], "weight": [1.0] * 4, "k": ["x"] * 4})
    cats, conts = TabularProcessor.from_state(proc.state()).transform(new, "new")
    assert cats[:, 2].tolist() == [3, 1, 0, 0] and cats[:, 1].tolist() == [1, 1, 1, 2]
    assert conts.shape == (4, 2)  # the continuous column is still read, in order
    assert TabularProcessor.fit(df, ["k"], ["gain"]).cat_cols == ["k", "gain_na"]  # off by default
    wide = TabularProcessor.fit(pd.DataFrame({"a": [1234567.0, 1234568.0]}), [], ["a"], value_max_card=2)
    assert wide.classes["a_value"] == ["1234567", "1234568"]  # labels (embedding tables' rows) stay distinct


def test_code_like_columns_are_told_from_measures(caplog, tmp_path):
    """data.value_cols=codes: whole numbers spread thinly over their range, each value recurring (capital gains,
    codes, ids of a panel) are read as categories too; a dense count, fractions and a sparse column of one-off values
    are not."""
    from emblab.data.columns import is_code_column

    rng = np.random.default_rng(0)
    gains = pd.Series(rng.choice([0, 0, 0, 0, 2174, 7688, 14084, 3103, 594], 500))
    assert is_code_column(gains)
    assert not is_code_column(pd.Series(rng.integers(17, 90, 500)))  # ages: every whole number between
    assert not is_code_column(pd.Series(rng.choice(np.arange(0, 20_000, 100), 500) + 0.5))  # fractions
    one_off = pd.Series(np.r_[np.zeros(480), rng.choice(np.arange(1, 5000), 20, replace=False)])
    assert not is_code_column(one_off)  # sparse, but each value on one row: nothing to learn per value
    assert not is_code_column(pd.Series(rng.choice([0, 100, 200, 300], 500)))  # on its step, every value is there
    df = pd.DataFrame({"gain": gains.astype(float), "age": rng.integers(17, 90, 500).astype(float)})
    with caplog.at_level("INFO", logger="emblab"):
        proc = TabularProcessor.fit(df, [], ["gain", "age"], value_max_card=255, value_cols="codes")
    assert proc.cat_cols == ["gain_value"] and "data.value_cols codes): gain (" in caplog.text
    assert TabularProcessor.fit(df, [], ["gain", "age"], value_max_card=255).cat_cols == ["gain_value", "age_value"]
    # a person's id in a panel (8 rows each, 600 people numbered sparsely): each person gets an embedding
    ids = pd.Series(np.repeat(rng.choice(np.arange(10, 20_000), 600, replace=False), 8).astype(float))
    assert is_code_column(ids)
    cfg = compose_cfg(["model=tabular"], tmp_path)
    proc = TabularProcessor.fit(pd.DataFrame({"nr": ids}), [], ["nr"], value_max_card=cfg.data.value_max_card,
                                value_cols=cfg.data.value_cols)  # fmt: skip
    assert proc.cat_cols == ["nr_value"] and len(proc.classes["nr_value"]) == 600


def test_a_densely_numbered_id_is_told_from_an_age_by_the_target(caplog, tmp_path):
    """data.value_cols=codes in data=tabular: an id numbered 1..N (a person in a panel) fills its range as an age
    does; it is read as a category too because each value's mean predicts the target where its neighbours' do not
    (columns.id_gain), for regression and classes alike. An age with a smooth effect is not, nor an id whose values
    do not move the target."""
    from emblab.data.columns import ID_MIN_GAIN, id_gain

    rng = np.random.default_rng(0)
    n_people, rows = 300, 12
    person = np.repeat(np.arange(1, n_people + 1), rows).astype(float)  # dense: every number 1..300
    age = rng.integers(18, 80, len(person)).astype(float)
    effect = rng.normal(size=n_people)[person.astype(int) - 1]
    y = effect + 0.02 * age + rng.normal(size=len(person))
    assert id_gain(person, y[:, None]) >= ID_MIN_GAIN
    assert id_gain(age, y[:, None]) < ID_MIN_GAIN
    assert id_gain(person, (0.02 * age + rng.normal(size=len(person)))[:, None]) < ID_MIN_GAIN  # ids, no effect
    df = pd.DataFrame({"person": person, "age": age, "yes": np.where(y > 0.8, "yes", "no"), "y": y})
    df.drop(columns="y").to_csv(tmp_path / "c.csv", index=False)
    df.drop(columns="yes").to_csv(tmp_path / "r.csv", index=False)
    for path, target in (("c.csv", "yes"), ("r.csv", "y")):
        dm = TabularDataModule.of(path=str(tmp_path / path), target=target, value_max_card=10000, value_cols="codes")
        with caplog.at_level("INFO", logger="emblab"):
            dm.setup()
        assert dm.cont_cols == ["person", "age"] and dm.proc.cat_cols == ["person_value"], (path, dm.proc.cat_cols)
        assert "read as ids too" in caplog.text and "person (gain" in caplog.text
        assert len(dm.proc.classes["person_value"]) == n_people  # every person in training (12 rows each)
        caplog.clear()
    every = TabularDataModule.of(path=str(tmp_path / "r.csv"), target="y", value_max_card=10000, value_cols="all")
    every.setup()
    assert every.proc.cat_cols == ["person_value", "age_value"]  # value_cols=all: every column, as before


def test_a_semicolon_file_and_na_for_missing_numbers(tmp_path, caplog):
    path = tmp_path / "t.csv"
    path.write_text('"age";"area";"alley";"y"\n30;12.5;NA;1\n40;NA;Grvl;0\n50;7;Pave;1\n60;9;NA;0\n')
    df = read_table(path)
    assert list(df.columns) == ["age", "area", "alley", "y"]
    markers = missing_markers(df, ["age", "area", "alley"])
    assert markers == {"area": ["NA"]}  # alley's NA is a category (no alley), area's a missing number
    with caplog.at_level("INFO", logger="emblab"):
        apply_markers(df, markers, path)
    assert df["area"].isna().tolist() == [False, True, False, False] and df["alley"].tolist()[0] == "NA"
    assert "area 'NA' in 1 rows" in caplog.text


def test_periodic_embeddings():
    emb = PeriodicEmbeddings(3, k=8, d=5, scale=0.01, scale_max=1.0)
    out = emb(torch.randn(7, 3))
    assert out.shape == (7, 15) and (out >= 0).all()  # ReLU'd, one d-wide embedding per column
    spread = emb.freq.detach().abs().mean(0)  # (k,): the init scales rise from 0.01 to 1
    assert spread[-1] > 10 * spread[0]


def test_piecewise_embeddings_encode_the_place_among_the_bins_and_start_linear():
    emb = PiecewiseEmbeddings(2, n_bins=4, d=3)  # the normal's quartiles: -5.2, -0.674, 0, 0.674, 5.2
    x = torch.tensor([[-9.0, 0.0], [-0.6745, 0.3372], [9.0, 0.0]])
    t = (x[..., None] - emb.left) / emb.width
    out = emb(x)
    assert out.shape == (3, 6)
    # at init the piecewise part is zero: a linear embedding of each column
    assert torch.allclose(out.view(3, 2, 3), x[..., None] * emb.weight + emb.bias, atol=1e-6)
    with torch.no_grad():
        emb.ple_weight.copy_(torch.eye(4)[None, :, :3].expand(2, 4, 3))  # read bins 1-3 of the encoding out
        emb.weight.zero_()
        emb.bias.zero_()
    enc = emb(x).view(3, 2, 3)
    assert enc[1, 0].tolist() == pytest.approx([1.0, 0.0, 0.0], abs=1e-3)  # at the first quartile: bin 1 full
    assert enc[1, 1].tolist() == pytest.approx([1.0, 1.0, 0.5], abs=1e-3)  # halfway through the third bin
    assert enc[2, 0].tolist() == [1.0, 1.0, 1.0]  # above every bin
    assert enc[0, 0, 0] < 0 and t[0, 0, 0] < 0  # the outer bins are not clamped: below the range, below 0


def test_piecewise_bins_are_the_training_quantiles_after_the_quantile_transform():
    df = pd.DataFrame({"a": np.random.default_rng(0).lognormal(size=4000), "k": ["x"] * 4000})
    proc = TabularProcessor.fit(df, ["k"], ["a"], num_transform="quantile")
    _, conts = proc.transform(df)
    emb = PiecewiseEmbeddings(1, n_bins=8, d=2)
    in_bin = ((conts[:, :1] >= emb.left) & (conts[:, :1] < emb.left + emb.width)).float().mean(0)  # (8,)
    assert torch.allclose(in_bin, torch.full((8,), 1 / 8), atol=0.01)


def test_num_emb_piecewise_is_a_model_setting_and_builds_on_the_meta_device():
    kwargs = dict(emb_card=[4], n_cont=2, layers=[16], ps=[0.0], num_emb="piecewise", n_bins=6, d_num_emb=5)
    with torch.device("meta"):  # how the memory check counts a model's size before building it
        assert MixedInputModel.of(**kwargs).net.num_emb.ple_weight.shape == (2, 6, 5)
    model = MixedInputModel.of(**kwargs).eval()
    assert isinstance(model.net.num_emb, PiecewiseEmbeddings) and model.net.bn_cont is None
    assert model(torch.zeros(3, 1, dtype=torch.long), torch.randn(3, 2)).shape == (3,)


def test_dropout_before_the_output_layer_alone_leaves_evaluation_unbiased():
    """Dropout right before the linear output layer averages out exactly: evaluation, without dropout, predicts
    the mean of what training saw. Dropout in an earlier layer feeds a ReLU, whose mean moves with the noise, so
    evaluation predicts what training never fitted (a regression's outputs pulled toward its mean)."""
    conts = torch.randn(256, 3)

    def gap(ps: list[float]) -> float:
        torch.manual_seed(0)
        net = TabularNet(
            [], 3, 1, [64, 64, 64], ps, 0.0, num_emb=dict(kind="periodic", k=4, d=4, scale=0.1, scale_max=1.0)
        )
        cats = torch.zeros(256, 0, dtype=torch.long)
        with torch.no_grad():
            evaluated = net.eval()(cats, conts)
            trained = torch.stack([net.train()(cats, conts) for _ in range(2000)]).mean(0)
        return ((trained - evaluated).abs().mean() / evaluated.abs().mean()).item()

    last_only, every_layer = gap([0.0, 0.0, 0.5]), gap([0.5, 0.5, 0.5])
    assert last_only < 0.02 and every_layer > 5 * last_only, (last_only, every_layer)


def members_model(task: str, k: int, prior):
    return MixedInputModel.of(
        emb_card=[4],
        n_cont=2,
        out_sz=3 if task == "classification" else 1,
        task=task,
        prior=prior,
        layers=[16],
        ps=[0.0],
        num_emb="periodic",
        sigmoid_range=False,
        start_at_prior=True,
        n_members=k,
    )


def test_an_ensemble_in_one_net_predicts_its_members_mean_and_trains_each():
    torch.manual_seed(0)
    model = members_model("classification", 4, [0.7, 0.2, 0.1]).eval()  # no dropout: one output per call
    cats, conts, y = torch.randint(0, 4, (9, 1)), torch.randn(9, 2), torch.randint(0, 3, (9,))
    members = model.members(cats, conts)  # (B, k, C)
    assert members.shape == (9, 4, 3)
    probs = torch.softmax(model(cats, conts), -1)
    assert torch.allclose(probs, torch.softmax(members, -1).mean(1), atol=1e-6)
    expected = torch.stack([F.cross_entropy(members[:, j], y) for j in range(4)]).mean()
    assert torch.allclose(model.train_loss((cats, conts, y)), expected, atol=1e-6)
    # each member's head starts at the class prior
    assert torch.allclose(model.net.member_bias, torch.tensor([0.7, 0.2, 0.1]).log().expand(4, 3))


def test_each_member_can_train_on_rows_of_its_own():
    """TabM's batches not shared: k orders, one per member; a (B, k) batch trains member j on column j's rows."""
    from emblab.data.base import IndexBatchSampler, TensorBatchDataset

    sampler = IndexBatchSampler(10, 4, shuffle=True, seed=1, members=3)
    batches = list(sampler)
    assert [tuple(b.shape) for b in batches] == [(4, 3), (4, 3), (2, 3)]
    order = torch.cat(batches)  # (n, k): each column a permutation of its own
    assert all(sorted(order[:, j].tolist()) == list(range(10)) for j in range(3))
    assert not torch.equal(order[:, 0], order[:, 1])
    # one member: the order of a plain sampler, so runs without members are unchanged
    assert torch.equal(torch.cat(list(IndexBatchSampler(10, 4, True, 1, members=1))), order[:, 0])
    # DDP: each rank shards every member's order, nothing lost
    ranks = [torch.cat(list(IndexBatchSampler(11, 3, True, 5, r, 2, members=2))) for r in range(2)]
    assert all(set(torch.cat([r[:, j] for r in ranks]).tolist()) == set(range(11)) for j in range(2))

    torch.manual_seed(0)
    model = members_model("classification", 2, [0.5, 0.3, 0.2]).eval()
    ds = TensorBatchDataset(torch.randint(0, 4, (10, 1)), torch.randn(10, 2), torch.randint(0, 3, (10,)))
    cats, conts, y = ds[batches[0][:, :2]]  # (4, 2, 1), (4, 2, 2), (4, 2)
    member = [model.members(cats[:, j], conts[:, j])[:, j] for j in range(2)]  # member j on its own rows
    expected = torch.stack([F.cross_entropy(member[j], y[:, j]) for j in range(2)]).mean()
    assert torch.allclose(model.train_loss((cats, conts, y)), expected, atol=1e-6)
    with pytest.raises(ConfigError, match="data.member_batches=3 with model.n_members=2"):
        model.train_loss(ds[batches[0]])


def test_regression_starts_at_the_targets_mean_in_its_std_units():
    torch.manual_seed(0)
    model = members_model("regression", 1, [100.0, 5.0])
    model.eval()
    with torch.no_grad():
        net = model.net(torch.zeros(2000, 1, dtype=torch.long), torch.randn(2000, 2))[:, 0]
        out = model(torch.zeros(2000, 1, dtype=torch.long), torch.randn(2000, 2))
    assert model.net.y_range is None and out.shape == (2000,)
    assert torch.allclose(out.mean(), 100 + 5 * net.mean(), atol=0.5)  # 100 + 5 x the net's output
    # the shift comes from the prior (in the hyperparameters), so a checkpoint's weights cannot change it
    assert model.y_loc.tolist() == [100.0, 5.0] and "y_loc" not in model.state_dict()


def test_the_lessons_model_is_unchanged_by_the_recipes_options():
    model = MixedInputModel.of(emb_card=[4], n_cont=2, layers=[16], ps=[0.0], y_range=[0, 10])
    assert model.net.bn_cont is not None and model.net.num_emb is None and model.net.n_members == 1
    assert model.net.y_range == (0, 10) and "y_loc" not in model.state_dict()


def test_model_tabular_learns_a_rule_naming_only_the_target(tmp_path):
    """The recipe unchanged on a small table: columns found, early stopping chooses the epochs, best kept."""
    df = mixed_table(600)
    df.to_csv(tmp_path / "t.csv", index=False)
    cfg = compose_cfg(
        [
            "model=tabular",
            f"data.path={tmp_path / 't.csv'}",
            "data.target=y",
            "model.layers=[32,32]",
            "model.ps=[0.1,0.1]",
            "model.n_members=2",
            "callbacks.early_stopping.patience=4",
            "trainer.max_epochs=200",
            "logger=csv",
            "~callbacks.progress_bar",
        ],
        tmp_path / "run",
    )
    assert cfg.data.num_transform == "quantile" and cfg.model.optim.schedule == "plateau"
    metrics = train(cfg)
    assert metrics["val/acc"]["best"] > 0.8, metrics["val/acc"]
    assert metrics["epochs"] < 200  # early stopping ended it, not max_epochs
    assert metrics["epochs"] - metrics["val/loss"]["best_epoch"] >= 4  # patience 4 after the best validation loss
    assert "epoch_" in metrics["best_checkpoint"]  # the best epoch kept apart from last.ckpt


def test_members_with_batches_of_their_own_train_end_to_end(tmp_path):
    mixed_table(400).to_csv(tmp_path / "t.csv", index=False)
    overrides = ["model=tabular", f"data.path={tmp_path / 't.csv'}", "data.target=y", "model.layers=[16]"]
    overrides += ["model.ps=[0.0]", "model.n_members=2", "data.member_batches=2", "trainer.max_epochs=3"]
    metrics = train(compose_cfg([*overrides, "logger=csv", "~callbacks.progress_bar"], tmp_path / "run"))
    assert metrics["status"] == "finished" and metrics["val/acc"]["best"] > 0.5, metrics
    with pytest.raises(ConfigError, match="data.member_batches=3 with model.n_members=2"):
        train(compose_cfg([*overrides[:-1], "data.member_batches=3", "trainer.max_epochs=1"], tmp_path / "bad"))


def test_model_tabular_takes_the_rossmann_data(tmp_path):
    cfg = compose_cfg(["experiment=rossmann", "model=tabular"], tmp_path)
    assert cfg.data._target_.endswith("RossmannDataModule") and cfg.data.num_transform == "quantile"
    assert cfg.model.num_emb == "piecewise"
    # dropout before the output layer alone (the test above says why); values as categories for codes alone
    assert cfg.model.ps[-1] > 0 and not any(cfg.model.ps[:-1])
    assert cfg.data.value_max_card == 10000 and cfg.data.value_cols == "codes"
    assert cfg.data.member_batches == 1  # Rossmann's figures were measured with shared batches
    assert "quantile_cap" not in cfg.data  # and with plain quantiles


def test_each_member_draws_batches_of_its_own_on_any_table(tmp_path):
    """data=tabular gives each of model=tabular's members its own stream, following model.n_members; one net
    (the lesson's model) reads one."""
    table = [f"data.path={tmp_path / 't.csv'}", "data.target=y"]
    assert compose_cfg(["model=tabular", *table], tmp_path / "a").data.member_batches == 8
    assert compose_cfg(["model=tabular", "model.n_members=4", *table], tmp_path / "b").data.member_batches == 4
    assert compose_cfg(["model=mixed_input", "data=tabular", *table], tmp_path / "c").data.member_batches == 1


def test_a_sentinel_takes_one_bin_of_the_quantiles_on_any_table(tmp_path):
    """data=tabular caps a value's share of a column's quantiles at one of model=tabular's bins (model.n_bins)."""
    table = [f"data.path={tmp_path / 't.csv'}", "data.target=y"]
    assert compose_cfg(["model=tabular", *table], tmp_path / "a").data.quantile_cap == 48
    assert compose_cfg(["model=tabular", "model.n_bins=16", *table], tmp_path / "b").data.quantile_cap == 16
    rng = np.random.default_rng(0)
    days = np.where(rng.random(600) < 0.8, -1, rng.integers(1, 400, 600))  # Bank's pdays: -1 is "never called"
    pd.DataFrame({"pdays": days, "y": rng.normal(size=600)}).to_csv(tmp_path / "t.csv", index=False)
    for cap, share in ((0, 0.7), (48, 0.05)):
        dm = TabularDataModule.of(
            path=str(tmp_path / "t.csv"), target="y", cont_cols=["pdays"], num_transform="quantile", quantile_cap=cap
        )
        dm.setup()
        q = np.asarray(dm.proc.stats["pdays"]["quantiles"])
        assert (np.mean(q == -1) > share) if cap == 0 else (np.mean(q == -1) < share)


def test_classification_datamodule_gives_the_class_prior(tmp_path):
    mixed_table(200).to_csv(tmp_path / "t.csv", index=False)
    dm = TabularDataModule.of(path=str(tmp_path / "t.csv"), target="y")
    dm.setup()
    prior = dm.dims()["prior"]
    y = dm.train_ds.tensors[2]
    assert prior == pytest.approx([(y == 0).float().mean().item(), (y == 1).float().mean().item()])


def test_new_rows_may_write_na_where_training_had_numbers(tmp_path):
    """Kaggle's House Prices test.csv writes NA in numeric columns whose training values were all present."""
    from emblab.data.columns import new_rows_markers

    df = pd.DataFrame({"area": ["12", "NA", "7"], "alley": ["NA", "Grvl", "NA"]})
    apply_markers(df, new_rows_markers({}, ["area"]), tmp_path / "new.csv")
    assert df["area"].isna().tolist() == [False, True, False] and df["alley"].tolist() == ["NA", "Grvl", "NA"]


def test_model_tabular_learns_exact_values_and_predicts_new_rows_with_them(tmp_path):
    """A number whose exact values matter (as a capital gain of 7688 does): model=tabular's recipe reads it as a
    category too (a code-like column), the net learns which values say yes, and `emblab.predict` codes new rows
    the same way."""
    from conftest import run_cli

    rng = np.random.default_rng(0)
    amounts = rng.choice(np.arange(1, 10_000), 40, replace=False)  # sparse on 1..10000, each on about 30 rows
    gain = rng.choice(amounts, 1200).astype(float)  # 40 values: continuous by max_card 20, a category by 255
    yes = np.isin(gain, amounts[[3, 4, 11, 19, 20, 27, 33, 38]])  # no order or period tells these apart
    df = pd.DataFrame({"gain": gain, "noise": rng.normal(size=1200), "y": np.where(yes, "yes", "no")})
    df.iloc[:1000].to_csv(tmp_path / "train.csv", index=False)
    df.iloc[1000:].drop(columns=["y"]).to_csv(tmp_path / "new.csv", index=False)
    cfg = compose_cfg(
        [
            "model=tabular",
            f"data.path={tmp_path / 'train.csv'}",
            "data.target=y",
            "model.layers=[32]",
            "model.ps=[0.0]",
            "model.n_members=2",
            "callbacks.early_stopping.patience=4",
            "trainer.max_epochs=30",
            "logger=csv",
            "~callbacks.progress_bar",
        ],
        tmp_path / "run",
    )
    metrics = train(cfg)
    assert metrics["val/acc"]["best"] > 0.99, metrics["val/acc"]
    r = run_cli("-m", "emblab.predict", f"ckpt_path={metrics['best_checkpoint']}", f"table={tmp_path / 'new.csv'}",
                f"out={tmp_path / 'preds.csv'}")  # fmt: skip
    assert r.returncode == 0, r.stderr
    preds = pd.read_csv(tmp_path / "preds.csv")
    assert (preds["y"] == df["y"].iloc[1000:].to_numpy()).mean() > 0.99
