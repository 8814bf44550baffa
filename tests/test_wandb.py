"""W&B: an offline run holds the logged metrics, the resolved config and the plots; no network."""

from __future__ import annotations

import pytest
from wandb_offline import read_offline_run

from emblab.train import train

from conftest import compose_cfg


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)  # the config's default must be offline by itself
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_API_KEY", "emblab-test-FAKE-KEY-0123456789abcdef0123456789abcdef")


def test_offline_run_holds_metrics_config_and_plots(offline, tmp_path):
    cfg = compose_cfg(
        [
            "logger=wandb",
            "debug=limit",
            "trainer.limit_train_batches=10",
            "~callbacks.progress_bar",
            "data.batch_size=256",
            "trainer.log_every_n_steps=5",
        ],
        tmp_path,
    )
    metrics = train(cfg)
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, "one W&B run per training, written offline"
    run = read_offline_run(runs[0], wait_s=60)
    logged_rmse = [row["val/rmse"] for row in run["history"] if "val/rmse" in row]
    assert run["finished"], "train() ends its W&B run before returning"
    assert logged_rmse[-1] == pytest.approx(metrics["val/rmse"]["final"], rel=1e-6)
    assert len(logged_rmse) == 2  # one per epoch
    assert any("train/loss" in row for row in run["history"])
    assert run["config"]["model"]["n_factors"] == 50 and run["config"]["data"]["source"] == "embedded"
    pngs = [p.name for p in (runs[0] / "files" / "media" / "images").rglob("*.png")]
    assert any("pca_items" in p for p in pngs) and any("loss_curves" in p for p in pngs), pngs
    assert "plots/pca_items/filenames" in run["summary"]
    # a file caught mid-write (the service writes on its own schedule) reads up to its last whole record
    (run_file,) = runs[0].glob("run-*.wandb")
    whole = run_file.read_bytes()
    for cut in range(8, len(whole), max(1, len(whole) // 97)):
        run_file.write_bytes(whole[:cut])
        assert len(read_offline_run(runs[0])["history"]) <= len(run["history"])
    run_file.write_bytes(whole)
    assert "EmbeddingDotBias" in run["summary"]["model/summary"] and run["summary"]["model/params"] > 100_000
    # the API key in the environment never lands in anything the run wrote
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert b"FAKE-KEY" not in path.read_bytes(), path


def test_a_broken_wandb_never_stops_training(offline, tmp_path, monkeypatch):
    """W&B failing to start (no network, a bad key: here its init raising) is a warning, never a failed run; a
    wrong setting (mode) is refused before any work, as every setting is."""
    import wandb

    from emblab.core.errors import ConfigError

    with pytest.raises(ConfigError, match="logger.wandb.mode='nonsense'"):
        train(compose_cfg(["logger=wandb", "logger.wandb.mode=nonsense"], tmp_path / "bad"))

    def no_network(*args, **kwargs):
        raise wandb.errors.CommError("could not reach api.wandb.ai")

    monkeypatch.setattr(wandb, "init", no_network)
    cfg = compose_cfg(
        ["logger=wandb", "debug=limit", "trainer.limit_train_batches=3", "~callbacks.progress_bar"], tmp_path
    )
    with pytest.warns(UserWarning, match="logger wandb could not start"):
        metrics = train(cfg)
    assert metrics["val/rmse"]["final"] > 0
    assert (tmp_path / "csv" / "metrics.csv").is_file()


def test_gradient_histograms_reach_wandb(offline, tmp_path):
    cfg = compose_cfg(
        [
            "logger=wandb",
            "wandb_watch=gradients",
            "debug=limit",
            "trainer.limit_train_batches=10",
            "trainer.log_every_n_steps=2",
            "~callbacks.progress_bar",
        ],
        tmp_path,
    )
    train(cfg)
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    keys = {k for row in read_offline_run(run_dir, wait_s=60)["history"] for k in row}
    assert any(k.startswith("gradients/net.i_weight") for k in keys), sorted(keys)[:20]
