"""The collab models' per-rating penalty (model.reg, model.reg_power): what it adds to the loss, that
its strength does not depend on the size of the data, and that fitting weighs it by the training
ratings."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from emblab.core.errors import ConfigError
from emblab.models.collab import CollabModel
from emblab.training.build import build

from conftest import FAST, compose_cfg


def batch(n_users: int, n_items: int, n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randint(n_users, (n,), generator=g),
        torch.randint(n_items, (n,), generator=g),
        torch.rand(n, generator=g) * 4 + 1,
    )


@pytest.mark.parametrize("arch", ["dot", "nn"])
def test_penalty_is_mse_plus_reg_times_weighted_row_norms(arch):
    torch.manual_seed(0)
    m = CollabModel.of(
        n_users=7, n_items=5, arch=arch, n_factors=3, reg=0.3, reg_power=0.5, emb_drop=0.0, dropout=(0.0,)
    )
    users, items, ratings = batch(7, 5, 40)
    m.count_rows(users, items)
    n_u, n_i = torch.bincount(users, minlength=7).clamp(min=1), torch.bincount(items, minlength=5).clamp(min=1)
    net = m.net
    u_sq = net.u_weight(users).pow(2).sum(1) + (net.u_bias(users).squeeze(1) ** 2 if arch == "dot" else 0)
    i_sq = net.i_weight(items).pow(2).sum(1) + (net.i_bias(items).squeeze(1) ** 2 if arch == "dot" else 0)
    penalty = (u_sq / n_u[users].sqrt() + i_sq / n_i[items].sqrt()).mean()
    expected = F.mse_loss(m(users, items), ratings) + 0.3 * penalty
    assert float(m.train_loss((users, items, ratings))) == pytest.approx(float(expected), rel=1e-6)
    m.cfg.reg = 0.0
    assert float(m.train_loss((users, items, ratings))) == pytest.approx(float(F.mse_loss(m(users, items), ratings)))


@pytest.mark.parametrize("reg_power", [0.0, 0.5])
def test_strength_does_not_depend_on_the_number_of_ratings(reg_power):
    """Two disjoint copies of a data set (twice the users, items and ratings, each copy's rows equal to
    the original's) have the same loss, so the same optimum: the penalty's strength against the data
    is set by each row's own ratings, not by how many ratings there are in all."""
    torch.manual_seed(1)
    small = CollabModel.of(n_users=6, n_items=4, n_factors=3, reg=0.5, reg_power=reg_power)
    big = CollabModel.of(n_users=12, n_items=8, n_factors=3, reg=0.5, reg_power=reg_power)
    with torch.no_grad():
        for name, p in small.net.named_parameters():
            dict(big.net.named_parameters())[name].copy_(torch.cat([p, p]))
    users, items, ratings = batch(6, 4, 30, seed=2)
    big_batch = (torch.cat([users, users + 6]), torch.cat([items, items + 4]), torch.cat([ratings, ratings]))
    small.count_rows(users, items)
    big.count_rows(*big_batch[:2])
    assert float(big.train_loss(big_batch)) == pytest.approx(float(small.train_loss((users, items, ratings))), rel=1e-6)


def test_fit_weighs_the_penalty_by_the_training_ratings(tmp_path):
    cfg = compose_cfg(["model.reg=0.5", "model.reg_power=0.5", *FAST, "~callbacks.progress_bar"], tmp_path)
    trainer, dm, model, _ = build(cfg)
    trainer.fit(model, datamodule=dm)
    users, items, _ = dm.train_ds.tensors
    assert torch.allclose(model.u_reg_w, torch.bincount(users, minlength=len(dm.user_ids)).clamp(min=1) ** -0.5)
    assert torch.allclose(model.i_reg_w, torch.bincount(items, minlength=len(dm.item_ids)).clamp(min=1) ** -0.5)
    assert "u_reg_w" not in model.state_dict()  # inference has no use for them: checkpoints stay as they were


def test_default_collab_regularises_in_the_loss_not_by_weight_decay(tmp_path):
    cfg = compose_cfg(["experiment=collab_ml100k"], tmp_path)
    assert cfg.model.reg > 0 and cfg.model.optim.weight_decay == 0
    assert compose_cfg([], tmp_path).model.reg == cfg.model.reg  # the default model is the recipe's


def test_negative_reg_is_a_config_error():
    with pytest.raises(ConfigError, match="model.reg=-1"):
        CollabModel.of(n_users=3, n_items=3, reg=-1)
