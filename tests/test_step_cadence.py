"""Step-counted settings mean optimizer steps whatever steps_per_call is: checkpoints every N steps,
validation every N steps, a training loss logged every N steps, max_steps exact; a setting that a
Lightning batch of k steps cannot honour is refused in one line."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from emblab.core.errors import ConfigError
from emblab.train import train

from conftest import compose_cfg

BASE = [
    "logger=csv",
    "~callbacks.progress_bar",
    "~callbacks.model_summary",
    "trainer.max_epochs=-1",
    "trainer.max_steps=512",
    "trainer.num_sanity_val_steps=0",
    "trainer.limit_val_batches=1",
    "data.eval_batch_size=512",
]


def run(tmp_path, k: int, extra: list[str]):
    out = tmp_path / f"k{k}"
    metrics = train(compose_cfg([*BASE, f"model.steps_per_call={k}", *extra], out))
    return metrics, out, pd.read_csv(out / "csv" / "metrics.csv")


@pytest.mark.parametrize("k", [1, 64])
def test_checkpoint_and_validation_cadence_in_optimizer_steps(tmp_path, k):
    metrics, out, rows = run(
        tmp_path,
        k,
        [
            "callbacks.model_checkpoint.every_n_train_steps=128",
            "callbacks.model_checkpoint.save_top_k=-1",
            "callbacks.model_checkpoint.monitor=null",
            "callbacks.model_checkpoint.filename='step_{step}'",
            "trainer.val_check_interval=128",
            "trainer.log_every_n_steps=64",
        ],
    )
    assert metrics["optimizer_steps"] == 512
    saved = sorted(
        torch.load(p, weights_only=True)["emblab"]["optimizer_steps"] for p in (out / "checkpoints").glob("step_*.ckpt")
    )
    assert saved == [128, 256, 384, 512]  # (a file name's {step} is Lightning's count of batches)
    assert rows["val/loss"].notna().sum() == 4
    assert rows["train/loss"].notna().sum() == 512 // 64  # one logged loss per 64 steps


@pytest.mark.parametrize("k, max_steps", [(64, 128), (8, 104), (1, 7)])
def test_max_steps_is_exact(tmp_path, k, max_steps):
    metrics = train(
        compose_cfg(
            [*BASE, f"model.steps_per_call={k}", f"trainer.max_steps={max_steps}", "trainer.limit_val_batches=0"],
            tmp_path,
        )
    )
    assert metrics["optimizer_steps"] == max_steps and metrics["global_step"] == max_steps // k


@pytest.mark.parametrize(
    "setting",
    ["callbacks.model_checkpoint.every_n_train_steps=100", "trainer.val_check_interval=100", "trainer.max_steps=100"],
)
def test_a_cadence_k_steps_cannot_honour_is_refused(tmp_path, setting):
    with pytest.raises(ConfigError, match=r"=100 is not a multiple of model.steps_per_call=64"):
        train(compose_cfg([*BASE, "model.steps_per_call=64", setting], tmp_path))
