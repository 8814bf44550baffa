"""Embeddings beyond the network: export tables, PCA maps, State vs geography, the learner comparison."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch

from emblab.analysis.embeddings import (
    compare,
    embedding_figures,
    export_tables,
    haversine_km,
    markdown_table,
    state_distance_correlation,
)
from emblab.core import cli
from emblab.core.settings import plain
from emblab.data.germany import STATES
from emblab.data.rossmann import RossmannDataModule
from emblab.data.tabular import TabularDataModule
from emblab.embeddings import Args, run
from emblab.models.tabular import MixedInputModel
from emblab.training.checkpoint import CheckpointContents

from conftest import run_cli

STATE_CODES = ["BE", "BW", "BY", "HE", "HH", "NW", "RP", "SH", "SN", "ST", "TH", "HB,NI"]


@pytest.fixture(scope="module")
def table_model(tmp_path_factory):
    rng = np.random.default_rng(0)
    n = 300
    df = pd.DataFrame(
        {
            "State": rng.choice(STATE_CODES, n),
            "DayOfWeek": rng.integers(1, 8, n),
            "Month": rng.integers(1, 13, n),
            "x": rng.normal(size=n),
            "y": rng.uniform(1, 10, n),
        }
    )
    path = tmp_path_factory.mktemp("t") / "t.csv"
    df.to_csv(path, index=False)
    dm = TabularDataModule.of(path=str(path), cat_cols=["State", "DayOfWeek", "Month"], cont_cols=["x"], target="y")
    dm.setup()
    torch.manual_seed(0)
    return MixedInputModel.of(**dm.dims(), layers=[8], ps=[0.0]), dm


def test_export_tables_join_back_onto_the_data(table_model, tmp_path):
    model, dm = table_model
    paths = export_tables(model, dm.artifacts(), tmp_path)
    assert sorted(p.name for p in paths) == sorted(
        f"{c}.{ext}" for c in ("State", "DayOfWeek", "Month") for ext in ("csv", "parquet")
    )
    dow = pd.read_parquet(tmp_path / "DayOfWeek.parquet")
    assert dow.columns.tolist() == ["DayOfWeek"] + [f"DayOfWeek_emb{i}" for i in range(4)]  # min(50, (8+1)//2)
    assert dow.DayOfWeek.tolist() == list(range(1, 8)) and dow.DayOfWeek.dtype == np.int64
    w = model.embedding("DayOfWeek").numpy()
    assert np.allclose(dow.iloc[:, 1:].to_numpy(), w[1:])  # row 0 (unknown) left out
    states = pd.read_csv(tmp_path / "State.csv", keep_default_na=False)
    assert sorted(states.State) == sorted(STATE_CODES)
    joined = pd.DataFrame({"State": ["HB,NI", "BY"]}).merge(states, on="State", how="inner")
    assert len(joined) == 2


def test_haversine_known_distance():
    berlin, hamburg = np.array([[52.52, 13.405]]), np.array([[53.551, 9.994]])
    assert haversine_km(berlin, hamburg)[0] == pytest.approx(255, abs=5)


def test_state_correlation_finds_geography_when_it_is_there(table_model):
    model, dm = table_model
    art = dm.artifacts()
    values = art["processor"]["classes"]["State"]
    emb = model.net.embs[model.cat_names.index("State")]
    with torch.no_grad():  # make the embedding the map itself (a degree of longitude is cos(51°) of one of latitude)
        emb.weight.zero_()
        emb.weight[1:, :2] = torch.tensor(
            [(STATES[v][0], STATES[v][1] * np.cos(np.radians(51))) for v in values], dtype=torch.float32
        )
    corr = state_distance_correlation(model, art)
    assert corr["pairs"] == 66 and corr["pearson"] > 0.95 and corr["spearman"] > 0.95
    with torch.no_grad():  # distances unrelated to the map: correlation near 0
        emb.weight.copy_(torch.randn_like(emb.weight, generator=torch.Generator().manual_seed(1)))
    assert abs(state_distance_correlation(model, art)["pearson"]) < 0.4


def test_pca_figures(table_model, tmp_path):
    model, dm = table_model
    images = embedding_figures(model, dm.artifacts(), tmp_path)
    assert sorted(images) == ["emb_pca_DayOfWeek", "emb_pca_Month", "emb_pca_State"]
    for path in images.values():
        assert path.stat().st_size > 5000 and path.read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "state_geo.json").read_text())["pairs"] == 66


@pytest.fixture(scope="module")
def rossmann_ckpt(tmp_path_factory):
    """A MixedInputModel fitted for a few batches on 10 generated stores, saved as train.py would."""
    root = tmp_path_factory.mktemp("ross")
    dm = RossmannDataModule.of(data_dir=str(root / "data"), n_stores=10, gen_start="2014-03-01", batch_size=256)
    pl.seed_everything(0)
    model = MixedInputModel.of(**(dm.setup() or dm.dims()), layers=[64], ps=[0.0])
    contents = CheckpointContents({"_target_": RossmannDataModule.Config._target_, **plain(dm.cfg)})
    trainer = pl.Trainer(
        callbacks=[contents],  # what train() adds: the data's codes and settings, for the commands
        max_epochs=1,
        limit_train_batches=20,
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(model, datamodule=dm)
    path = root / "run" / "checkpoints" / "last.ckpt"
    trainer.save_checkpoint(path)
    return path, model, dm


def test_comparison_table(rossmann_ckpt):
    _, model, dm = rossmann_ckpt
    table = compare(model.eval(), dm.artifacts(), max_train=3000, knn_max_train=1000, n_jobs=1)
    assert table.learner.tolist() == ["KNN (k=10)", "Random forest", "LightGBM", "MixedInputModel (network)"]
    scores = table[["raw codes", "learned embeddings"]].to_numpy()[:3]
    assert np.isfinite(scores).all() and (scores > 0).all() and (scores < 1).all()
    rows = table.set_index("learner")["learned embeddings train rows"]
    n = len(dm.train_ds)
    assert rows["KNN (k=10)"] == min(1000, n) and rows["Random forest"] == min(3000, n)
    assert rows["LightGBM"] == n  # LightGBM on every training row unless told otherwise
    md = markdown_table(table)
    assert md.count("\n") == 5 and "| MixedInputModel (network) | — |" in md


def test_export_command_and_its_errors(rossmann_ckpt, tmp_path, capsys):
    path, model, _ = rossmann_ckpt
    res = run_cli("-m", "emblab.embeddings", f"ckpt_path={path}", "action=export", f"out={tmp_path}")
    assert res.returncode == 0, res.stderr[-2000:]
    store = pd.read_parquet(tmp_path / "Store.parquet")
    assert store.Store.tolist() == list(range(1, 11)) and np.allclose(store.iloc[:, 1:], model.embedding("Store")[1:])
    with pytest.raises(SystemExit) as exit_:
        cli.main(Args, run, [f"ckpt_path={path}", "action=nope"])
    assert exit_.value.code == 2 and capsys.readouterr().err.startswith("error: action='nope'")


@pytest.mark.slow
def test_embeddings_command_all(rossmann_ckpt, tmp_path):
    path, _, _ = rossmann_ckpt
    res = run_cli(
        "-m",
        "emblab.embeddings",
        f"ckpt_path={path}",
        "action=all",
        f"out={tmp_path}",
        "max_train=2000",
        "knn_max_train=500",
        "n_jobs=1",
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "| LightGBM |" in res.stdout and (tmp_path / "Store.parquet").is_file()
    assert (tmp_path / "emb_pca_DayOfWeek.png").is_file() and (tmp_path / "comparison.md").is_file()


def test_lesson_style_rmspe_averages_batches_by_hand():
    from emblab.analysis.embeddings import exp_rmspe_lesson
    from emblab.models.metrics import exp_rmspe

    truth = np.log(np.array([100.0, 100.0, 100.0]))
    pred = np.log(np.array([110.0, 100.0, 50.0]))  # errors 10 %, 0 %, 50 %
    assert exp_rmspe_lesson(pred, truth, batch=2) == pytest.approx((2 * np.sqrt(0.01 / 2) + 0.5) / 3)
    assert exp_rmspe_lesson(pred, truth, batch=3) == pytest.approx(exp_rmspe(pred, truth))


def test_rossmann_gap_scores_the_windows(rossmann_ckpt, tmp_path):
    from emblab.bench.rossmann_gap import gap

    _, model, dm = rossmann_ckpt
    res = gap(model.eval(), dm.artifacts())
    assert list(res["windows"]) == ["validation", "training, one year earlier", "training, last 48 days"]
    val = res["windows"]["validation"]
    assert val["rows"] == len(dm.val_ds) and 0 < val["exp_rmspe_without_10_worst"] <= val["exp_rmspe"]
    assert set(res["val_cont_mean_in_train_sd"]) == set(dm.cont_vars)
    assert res["windows"]["training, one year earlier"]["rows"] == 0  # the generated days begin 2014-03-01
    assert res["windows"]["training, last 48 days"]["rows"] > 0
