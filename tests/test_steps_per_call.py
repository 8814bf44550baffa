"""steps_per_call = k: k batches per Lightning call, one optimizer step each. The same training as k = 1,
only with Lightning's per-batch cost paid once per k steps."""

from __future__ import annotations

import pytest
import torch

from emblab.data.base import IndexBatchSampler
from emblab.train import train
from emblab.training.build import build
from emblab.training.steps import KBatches

from conftest import compose_cfg, run_cli


def test_k_batches_are_the_same_batches_in_order():
    inner = IndexBatchSampler(1000, 64, shuffle=True, seed=3)
    inner.set_epoch(2)
    grouped = KBatches(IndexBatchSampler(1000, 64, shuffle=True, seed=3), 5)
    grouped.sampler.set_epoch(2)  # what Lightning calls: the batch sampler's sampler
    assert [len(g) for g in grouped] == [320, 320, 320, 40] and len(grouped) == 4
    assert torch.equal(torch.cat(list(grouped)), torch.cat(list(inner)))


def trained_weights(overrides, tmp_path):
    cfg = compose_cfg(
        [*overrides, "trainer.max_epochs=2", "trainer.limit_val_batches=2", "~callbacks.progress_bar", "logger=csv"],
        tmp_path,
    )
    metrics = train(cfg)
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    return metrics, ckpt


@pytest.mark.parametrize(
    "model,extra",
    [
        ("collab", ["data.batch_size=512"]),
        ("collab_nn", ["data.batch_size=512"]),  # dropout: the RNG stream must be consumed in the same order too
        ("mixed_input", ["data.batch_size=256", "model.layers=[64,32]"]),
        # clipping: the model clips each of its k steps as Lightning clips each batch (0.05 always bites)
        ("collab", ["data.batch_size=512", "trainer.gradient_clip_val=0.05"]),
        (
            "collab_nn",
            ["data.batch_size=512", "trainer.gradient_clip_val=0.01", "trainer.gradient_clip_algorithm=value"],
        ),
        (
            "char_rnn",
            [
                "data=text",
                "data.path={corpus}",
                "data.batch_size=256",
                "model.n_hidden=32",
                "trainer.gradient_clip_val=0.1",
            ],
        ),
        ("char_seq_rnn", ["data=text", "data.path={corpus}", "data.batch_size=64", "model.n_hidden=32"]),
        # mixed precision: the k steps go through Lightning's optimizer path, clipping in on_before_optimizer_step
        ("collab", ["data.batch_size=4096", "trainer.gradient_clip_val=0.05", "trainer.precision=bf16-mixed"]),
    ],
)
def test_k_steps_per_call_train_exactly_like_one(model, extra, tmp_path):
    corpus = tmp_path / "corpus.txt"  # char models: a small text instead of the 5 M characters of Shakespeare
    corpus.write_text("the quick brown fox jumps over the lazy dog; the dog sleeps.\n" * 300)
    extra = [e.format(corpus=corpus) for e in extra]
    m1, c1 = trained_weights([f"model={model}", *extra, "model.steps_per_call=1"], tmp_path / "k1")
    m8, c8 = trained_weights([f"model={model}", *extra, "model.steps_per_call=8"], tmp_path / "k8")
    steps = c1["emblab"]["optimizer_steps"]
    assert steps == c8["emblab"]["optimizer_steps"] == m1["optimizer_steps"] == m8["optimizer_steps"] > 16
    assert c1["global_step"] == steps and c8["global_step"] == m8["global_step"] < steps  # Lightning counts calls
    for name, w in c1["state_dict"].items():
        assert torch.allclose(w, c8["state_dict"][name], atol=1e-5), name
    assert m8["val/loss"]["final"] == pytest.approx(m1["val/loss"]["final"], rel=1e-5)
    # the schedule ran to its end in both (onecycle: the last rate is the tiny final one)
    s1, s8 = c1["lr_schedulers"][0], c8["lr_schedulers"][0]
    assert s1["last_epoch"] == s8["last_epoch"] == steps and s8["_last_lr"] == pytest.approx(s1["_last_lr"])


def test_max_steps_counts_optimizer_steps(tmp_path):
    cfg = compose_cfg(
        [
            "model.steps_per_call=8",
            "trainer.max_steps=24",
            "trainer.max_epochs=-1",
            "trainer.limit_val_batches=0",
            "trainer.num_sanity_val_steps=0",
            "~callbacks.progress_bar",
        ],
        tmp_path,
    )
    metrics = train(cfg)
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert metrics["optimizer_steps"] == ckpt["emblab"]["optimizer_steps"] == 24 and ckpt["global_step"] == 3
    assert ckpt["lr_schedulers"][0]["last_epoch"] == 24  # the schedule is as long as the steps


def test_loader_groups_only_the_training_batches(tmp_path):
    cfg = compose_cfg(["model.steps_per_call=4", "data.batch_size=1000"], tmp_path)
    _, dm, model, _ = build(cfg)

    class FakeTrainer:  # what the data module asks of a trainer (rank, world, overfit): never the model
        global_rank, world_size, overfit_batches = 0, 1, 0

    dm.trainer = FakeTrainer()
    first = next(iter(dm.train_dataloader()))  # k batches gathered at once: (users, items, ratings) of 4000 rows
    assert len(first) == 3 and len(first[0]) == 4000 and model.batch == 1000 and model.steps_per_call == 4
    val = next(iter(dm.val_dataloader()))
    assert len(val) == 3 and len(val[0]) == dm.eval_batch_size  # validation: plain batches


@pytest.mark.integration
def test_gradient_accumulation_with_k_steps_is_one_line_error():
    r = run_cli(
        "train.py",
        "model.steps_per_call=4",
        "trainer.accumulate_grad_batches=2",
        "debug=fast_dev_run",
        "logger=csv",
        timeout=120,
    )
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        "error: model.steps_per_call=4 steps the optimizer itself: set model.steps_per_call=1 to use "
        "trainer.accumulate_grad_batches"
    )


def test_clipping_is_applied_by_the_model_when_it_steps_itself(tmp_path):
    """Without clipping the same run ends elsewhere: the k-step path really clips."""
    base = ["model=collab", "data.batch_size=512", "model.steps_per_call=8"]
    _, clipped = trained_weights([*base, "trainer.gradient_clip_val=0.05"], tmp_path / "clip")
    _, free = trained_weights(base, tmp_path / "free")
    w = "net.u_weight.weight"
    assert not torch.allclose(clipped["state_dict"][w], free["state_dict"][w], atol=1e-3)


def test_clipping_in_mixed_precision_turns_fusion_off():
    """Lightning's mixed-precision plugin refuses to clip for a fused optimizer (which unscales 16-bit
    gradients inside its step); the bf16 case above trains, so this checks the 16-mixed decision."""
    from types import SimpleNamespace

    from emblab.models.collab import CollabModel
    from emblab.training.steps import with_steps_per_call

    def fused(precision_plugin, clip, grad_clip=None) -> bool:
        """Whether configure_optimizers builds a fused optimizer for this (fake) trainer."""
        cls = with_steps_per_call(CollabModel, object, 8, 64, grad_clip)[0] if grad_clip else CollabModel
        m = cls.of(n_users=10, n_items=10, n_factors=4, optim={"schedule": "constant"})
        m._trainer = SimpleNamespace(precision_plugin=precision_plugin, gradient_clip_val=clip)
        return bool(m.configure_optimizers().defaults.get("fused"))

    mixed = SimpleNamespace(scaler=object())
    if not fused(SimpleNamespace(), None):
        pytest.skip("this torch has no fused AdamW on the CPU")
    assert not fused(mixed, 1.0) and not fused(mixed, None, (1.0, "norm"))  # clipping in mixed precision
    assert fused(mixed, None) and fused(SimpleNamespace(), 1.0)  # no clipping, or fp32


def test_stateful_models_take_one_chunk_per_call(tmp_path):
    from emblab.core.errors import ConfigError

    cfg = compose_cfg(["model=char_lstm", "model.steps_per_call=4", "debug=fast_dev_run", "model.n_hidden=8"], tmp_path)
    with pytest.raises(ConfigError, match="stateful model's stream"):
        train(cfg)
