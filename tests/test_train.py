"""Training end to end: every model runs, loss falls, outputs land in one run folder."""

from __future__ import annotations

import json

import pytest
import pytorch_lightning as pl
import torch

from emblab.core.errors import ConfigError
from emblab.train import metric_value, train

from conftest import FAST, compose_cfg, model_names, run_cli

COLLAB_MODELS = [m for m in model_names() if m.startswith("collab")]


@pytest.mark.parametrize("model", COLLAB_MODELS)
def test_fast_dev_run(model, tmp_path):
    cfg = compose_cfg([f"model={model}", *FAST], tmp_path)
    metrics = train(cfg)
    assert cfg.monitor in metrics and metrics["status"] == "finished"


@pytest.mark.parametrize("model", COLLAB_MODELS)
def test_overfit_small_batch_loss_falls(model, tmp_path):
    no_dropout = ["model.emb_drop=0", "model.dropout=[0]"] if model == "collab_nn" else []
    no_reg = ["model.reg_scale=0"] if model == "collab_rank" else ["model.reg=0", "model.optim.weight_decay=0"]
    cfg = compose_cfg(
        [
            f"model={model}",
            "debug=overfit",
            *no_dropout,
            "data.batch_size=32",
            "model.optim.lr=0.05",
            *no_reg,
            "model.optim.schedule=constant",
            "~callbacks.progress_bar",
        ],
        tmp_path,
    )
    train(cfg)
    import pandas as pd

    curve = pd.read_csv(tmp_path / "csv" / "metrics.csv")["train/loss"].dropna().to_numpy()
    assert len(curve) >= 20
    if model != "collab_rank":
        assert curve[-5:].mean() < 0.1 * curve[:5].mean(), curve
        return
    # a softmax over the catalogue for each positive cannot reach 0: its floor is reached by spreading a user's
    # mass evenly over its n positives, log(n) each; the two overfit batches' floors, from their users
    from emblab.training.build import build

    _, dm, _, _ = build(cfg)
    n_pos = dm.train_ds.lists[0][0].diff().double()  # positives per training user
    floors = []
    for n in (n_pos[:32], n_pos[32:64]):  # overfit_batches: the first two batches, in order
        floors.append(float((n * n.log()).sum() / n.sum()))
    assert curve[-5:].max() < 1.02 * max(floors) and curve[-5:].min() < 1.02 * min(floors), (curve, floors)
    assert curve[:5].mean() > 1.3 * max(floors)


def test_overfit_batches_keeps_our_index_batches_in_order(tmp_path):
    """Lightning swaps in a per-sample SequentialSampler when the loader's sampler shuffles; ours is a
    batch_sampler, so it stays: the same first batches of the training split, one gather each."""
    from emblab.data.base import IndexBatchSampler
    from emblab.training.build import build

    cfg = compose_cfg(
        ["debug=overfit", "trainer.max_epochs=1", "data.batch_size=32", "~callbacks.progress_bar"], tmp_path
    )
    trainer, dm, model, _ = build(cfg)
    seen = []

    class Spy(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append(batch[0].clone())

    trainer.callbacks.append(Spy())
    trainer.fit(model, datamodule=dm)
    loader = trainer.train_dataloader
    assert type(loader.batch_sampler) is IndexBatchSampler and not loader.batch_sampler.shuffle
    users = dm.train_ds.tensors[0]
    assert len(seen) == 2 and all(torch.equal(b, users[32 * j : 32 * (j + 1)]) for j, b in enumerate(seen))


def test_every_trainer_emblab_builds_keeps_lightning_info_lines_off_the_console(tmp_path, caplog):
    """The benchmarks build their Trainers with build_trainer, not train(): quiet there too."""
    import logging

    from emblab.training.build import build

    logging.getLogger("pytorch_lightning.utilities.rank_zero").setLevel(logging.NOTSET)
    cfg = compose_cfg([*FAST, "~callbacks.progress_bar"], tmp_path)
    with caplog.at_level(logging.INFO):
        trainer, dm, model, _ = build(cfg)
        trainer.fit(model, datamodule=dm)
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "GPU available" not in said and "Tip:" not in said, said


def test_short_run_writes_everything_into_one_folder(tmp_path):
    cfg = compose_cfg(["debug=limit", "trainer.limit_train_batches=20", "~callbacks.progress_bar"], tmp_path)
    train(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for name in ("val/loss", "val/mse", "val/rmse", "val/mae"):
        assert set(metrics[name]) == {"final", "best", "best_epoch"}
        assert metrics[name]["best"] <= metrics[name]["final"] + 1e-9
    assert metrics["wall_seconds"] > 0 and metrics["epochs"] == 2
    assert (tmp_path / "config.yaml").is_file()
    assert (tmp_path / "csv" / "metrics.csv").is_file()
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / metrics["best_checkpoint"]).is_file()
    for png in ("loss_curves.png", "pca_items.png"):
        assert (tmp_path / "plots" / png).stat().st_size > 10_000
    assert "Highest item bias" in (tmp_path / "plots" / "interpretation.md").read_text()


def test_optimized_metric_must_exist():
    with pytest.raises(ConfigError, match="optimized_metric='val/rmsee' was never logged; logged metrics: val/rmse"):
        metric_value({"val/rmse": {"best": 1.0}}, "val/rmsee")
    assert metric_value({"val/rmse": {"best": 1.0, "final": 2.0}}, "val/rmse") == 1.0


@pytest.mark.integration
def test_train_py_honours_hydra_run_dir(tmp_path):
    out = tmp_path / "run"
    res = run_cli(
        "train.py", "debug=limit", "trainer.limit_train_batches=3", f"hydra.run.dir={out}", "data.batch_size=1024"
    )
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["val/rmse"]["final"] > 0
    assert (out / "config.yaml").is_file() and (out / "checkpoints" / "last.ckpt").is_file()


def test_lr_find_saves_plot_and_applies_suggestion(tmp_path):
    cfg = compose_cfg(
        [
            "lr_find=apply",
            "lr_find_steps=80",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=100",
            "~callbacks.progress_bar",
            "data.batch_size=256",
        ],
        tmp_path,
    )
    train(cfg)
    assert (tmp_path / "plots" / "lr_find.png").stat().st_size > 5_000
    from emblab.training.loading import load_checkpoint

    lr = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["hyper_parameters"]["optim"]["lr"]
    assert lr != 5e-3  # the suggestion replaced the configured rate


def test_torch_threads_is_applied(tmp_path):
    import torch

    before = torch.get_num_threads()
    try:
        for threads in (2, 1):  # from a value other than the one asked for (the suite runs on 1)
            torch.set_num_threads(3 - threads)
            train(compose_cfg([f"torch_threads={threads}", *FAST], tmp_path / str(threads)))
            assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)


def test_a_one_cycle_too_short_for_its_warm_up_runs_at_constant_lr_and_says_so(tmp_path, caplog):
    """torch's OneCycleLR divides by zero when pct_start * total_steps is 1 (4 steps at 0.25): a tiny
    data set must not end in a traceback."""
    import logging

    overrides = ["trainer.max_steps=4", "trainer.max_epochs=-1", "trainer.limit_val_batches=1", "logger=csv"]
    cfg = compose_cfg([*overrides, "model.steps_per_call=1", "~callbacks.progress_bar"], tmp_path)
    with caplog.at_level(logging.WARNING, logger="emblab.models.base"):
        metrics = train(cfg)
    assert metrics["optimizer_steps"] == 4, metrics
    assert any("leaves its warm-up (pct_start=0.25) under 2 steps" in r.getMessage() for r in caplog.records)
