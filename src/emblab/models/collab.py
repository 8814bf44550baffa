"""Collaborative filtering: EmbeddingDotBias (fastai lesson 4/5) and EmbeddingNN, in a LightningModule."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanAbsoluteError, MeanSquaredError, MetricCollection

from emblab.errors import ConfigError
from emblab.models.base import EmblabModule


def embedding(n: int, dim: int) -> nn.Embedding:
    e = nn.Embedding(n, dim)
    nn.init.trunc_normal_(e.weight, std=0.01, a=-0.02, b=0.02)  # fastai's init: small, so sigmoid starts mid-range
    return e


def scaled_sigmoid(x: Tensor, y_range) -> Tensor:
    lo, hi = y_range
    return torch.sigmoid(x) * (hi - lo) + lo


class EmbeddingDotBias(nn.Module):
    """rating = sigmoid(u·i + u_bias + i_bias) scaled to y_range."""

    def __init__(self, n_users: int, n_items: int, n_factors: int = 50, y_range=(0.0, 5.5)):
        super().__init__()
        self.y_range = tuple(y_range)
        self.u_weight, self.i_weight = embedding(n_users, n_factors), embedding(n_items, n_factors)
        self.u_bias, self.i_bias = embedding(n_users, 1), embedding(n_items, 1)

    def forward(self, users: Tensor, items: Tensor) -> Tensor:  # (B,), (B,) -> (B,)
        dot = (self.u_weight(users) * self.i_weight(items)).sum(1)  # (B, F) -> (B,)
        res = dot + self.u_bias(users).squeeze(1) + self.i_bias(items).squeeze(1)
        return scaled_sigmoid(res, self.y_range)


class EmbeddingNN(nn.Module):
    """The neural variant: concatenated user and item embeddings -> MLP with dropout -> scaled sigmoid."""

    def __init__(self, n_users: int, n_items: int, n_factors: int = 50, hidden=(100,), emb_drop: float = 0.05,
                 dropout=(0.5,), y_range=(0.0, 5.5)):
        super().__init__()
        self.y_range = tuple(y_range)
        self.u_weight, self.i_weight = embedding(n_users, n_factors), embedding(n_items, n_factors)
        self.emb_drop = nn.Dropout(emb_drop)
        sizes, layers = [2 * n_factors, *hidden], []
        for n_in, n_out, p in zip(sizes[:-1], sizes[1:], dropout):
            layers += [nn.Linear(n_in, n_out), nn.ReLU(), nn.Dropout(p)]
        self.layers = nn.Sequential(*layers, nn.Linear(sizes[-1], 1))

    def forward(self, users: Tensor, items: Tensor) -> Tensor:  # (B,), (B,) -> (B,)
        x = self.emb_drop(torch.cat([self.u_weight(users), self.i_weight(items)], dim=1))  # (B, 2F)
        return scaled_sigmoid(self.layers(x).squeeze(1), self.y_range)


ARCHS = {"dot": EmbeddingDotBias, "nn": EmbeddingNN}


class CollabModel(EmblabModule):
    """Trains either arch on (user, item, rating) batches with MSE; validates MSE, RMSE, MAE."""

    data_kind = "ratings"

    def __init__(self, n_users: int, n_items: int, arch: str = "dot", n_factors: int = 50,
                 y_range=(0.0, 5.5), hidden=(100,), emb_drop: float = 0.05, dropout=(0.5,), optim: dict | None = None,
                 steps_per_call: int = 1):
        super().__init__()
        self.save_hyperparameters()
        self.set_steps_per_call(steps_per_call)
        self.check_hparams(positive=("n_users", "n_items", "n_factors", "hidden"), fractions=("emb_drop", "dropout"))
        if arch == "dot":
            self.net = EmbeddingDotBias(n_users, n_items, n_factors, y_range)
        elif arch == "nn":
            if len(dropout) != len(hidden):
                raise ConfigError(f"model.dropout has {len(dropout)} values for {len(hidden)} hidden layers")
            self.net = EmbeddingNN(n_users, n_items, n_factors, hidden, emb_drop, dropout, y_range)
        else:
            raise ConfigError(f"model.arch={arch!r}: expected one of {', '.join(ARCHS)}")
        self.val_metrics = MetricCollection({"mse": MeanSquaredError(), "rmse": MeanSquaredError(squared=False),
                                             "mae": MeanAbsoluteError()}, prefix="val/")
        self.test_metrics = self.val_metrics.clone(prefix="test/")

    def forward(self, users: Tensor, items: Tensor) -> Tensor:
        return self.net(users, items)

    def train_loss(self, batch) -> Tensor:
        users, items, ratings = batch  # (B,), (B,), (B,)
        return F.mse_loss(self(users, items), ratings)

    def validation_step(self, batch, batch_idx):
        users, items, ratings = batch
        preds = self(users, items)
        self.log("val/loss", F.mse_loss(preds, ratings), prog_bar=True, sync_dist=True)
        self.val_metrics.update(preds, ratings)
        self.log_dict(self.val_metrics, prog_bar=False)

    def test_step(self, batch, batch_idx):
        users, items, ratings = batch
        preds = self(users, items)
        self.log("test/loss", F.mse_loss(preds, ratings), sync_dist=True)
        self.test_metrics.update(preds, ratings)
        self.log_dict(self.test_metrics)
