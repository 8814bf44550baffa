"""The throughput bench times the same steps on both sides, takes a device and a large batch, and the GPU
script runs end to end on a CPU (tiny sizes). The GPU figures themselves come from a GPU machine."""

from __future__ import annotations

import subprocess

import pytest
import torch

from emblab.bench import throughput
from emblab.core.errors import ConfigError

from conftest import ROOT


def test_both_sides_time_the_same_steps_for_a_k_step_family(tmp_path):
    """char_rnn takes 8 steps per Lightning call: after a warm-up call both sides time the same 2 calls."""
    from emblab.training.build import build

    fam = throughput.FAMILIES["char_rnn"]
    cfg = throughput.compose(
        [
            *fam.overrides,
            "logger=csv",
            "trainer.max_steps=24",
            "trainer.max_epochs=-1",
            "trainer.limit_val_batches=0",
            "trainer.num_sanity_val_steps=0",
            "model.n_hidden=16",
            "~callbacks.progress_bar",
            "~callbacks.model_summary",
        ],
        tmp_path,
    )
    _, dm, model, s = build(cfg)
    lightning_s, lightning_n = throughput.lightning_run(type(model), s, dm)
    loop_s, loop_n = throughput.loop_run(s, dm, fam, 24, warm=8)
    assert lightning_n == loop_n == 16 * dm.batch_size and lightning_s > 0 and loop_s > 0


def test_large_batches_and_per_step_times_are_reported(tmp_path):
    result = throughput.main(
        throughput.Args(out=str(tmp_path), quick=True, families="EmbeddingDotBias", reps=1, large=True, clock="cpu")
    )
    assert result["clock"] == "cpu"
    r = result["families"]["EmbeddingDotBias"]
    assert r["batch_size"] == throughput.LARGE_BATCH["EmbeddingDotBias"] and r["steps"] % r["steps_per_call"] == 0
    assert r["lightning_ms_per_step"] > 0 and r["loop_ms_per_step"] > 0 and r["device"] == "cpu"
    assert "Lightning ms/step" in (tmp_path / "throughput.md").read_text()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: device=cuda is valid")
def test_device_cuda_without_a_gpu_is_one_error(tmp_path):
    with pytest.raises(ConfigError, match="device=cuda: torch sees no GPU"):
        throughput.main(throughput.Args(out=str(tmp_path), device="cuda"))
    with pytest.raises(ConfigError, match="expected cpu or cuda"):
        throughput.main(throughput.Args(out=str(tmp_path), device="tpu"))


def test_gpu_script_refuses_an_unknown_argument(tmp_path):
    res = subprocess.run(
        ["bash", "src/emblab/bench/gpu.sh", str(tmp_path), "bogus=1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2 and res.stderr.startswith("error: unknown argument bogus=1")


@pytest.mark.slow
def test_gpu_script_runs_on_the_cpu_with_tiny_sizes(tmp_path):
    res = subprocess.run(
        ["bash", "src/emblab/bench/gpu.sh", str(tmp_path), "device=cpu", "quick=true"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert res.returncode == 0, res.stdout[-3000:]
    tables = (tmp_path / "tables.md").read_text()
    assert "EmbeddingDotBias" in tables and "device cpu" in tables


def test_peers_side_by_side_with_fastai(tmp_path):
    pytest.importorskip("fastai.collab", reason="fastai (the peers extra, make bench-peers) is not installed")
    from emblab.bench import peers

    result = peers.main(peers.Args(out=str(tmp_path), quick=True, families="collab"))
    r = result["families"]["collab"]
    assert r["emblab"]["rmse"] < 1.0 and r["fastai collab_learner"]["rmse"] < 1.1
    assert "fastai collab_learner" in (tmp_path / "peers.md").read_text()
